"""What the command line shows: consoles, errors as one line, progress bars, batch runs, tables.

`cli` declares the commands and their options; this module holds what they share in showing their
work: `reporting_errors` turns a FicliError into one line on stderr and exit 1 (Ctrl-C into its
message and exit 130; SIGTERM and SIGHUP the same, exit 143 and 129), `usage_errors` a ConfigError into Typer's usage error (exit 2),
`run_files` runs a batch over files with a progress bar, `evaluate_table` renders evaluate's
scores, `training_display` shows a training run. With `cli`, the only module importing typer and
rich.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ficli.errors import ConfigError, FicliError

# Into a file or a pipe, tables keep every digit instead of being squeezed into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 240)
err_console = Console(stderr=True)


def tolerate_undecodable_names() -> None:
    """A file name that is not UTF-8 (Python holds its bytes as surrogate escapes) is printed as its
    own bytes, as `ls` does, instead of crashing a strict UTF-8 stdout or stderr mid-table."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(Exception):
                stream.reconfigure(errors="surrogateescape")


def stdout_console(*outputs) -> Console:
    """Where tables and messages go: stderr when one of `outputs` is "-" (standard output), so
    that stdout holds the data alone."""
    from ficli.image.io import is_stdout

    return err_console if any(path is not None and is_stdout(path) for path in outputs) else console


def one_stdout(**options) -> None:
    """Usage error (exit 2) when more than one of `options` (name → path) is "-"."""
    from ficli.image.io import is_stdout

    named = [name for name, path in options.items() if path is not None and is_stdout(path)]
    if len(named) > 1:
        raise typer.BadParameter(f"only one output can go to standard output ('-'), not {' and '.join(named)}", param_hint=named[-1])


BATCH_INTERRUPTED = "interrupted: finished files are complete, no partial file was left; rerun with --skip-existing to go on"


@contextlib.contextmanager
def reporting_errors(interrupted=BATCH_INTERRUPTED):
    """Turn user errors into one line on stderr and exit 1; Ctrl-C into the `interrupted` message
    (a string, or a function giving it at that moment) and exit 130."""
    try:
        yield
    except FicliError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        from ficli.image import guard

        message = interrupted() if callable(interrupted) else interrupted
        if guard.signal_name() != "Ctrl-C":
            message = message.replace("interrupted", f"interrupted by {guard.signal_name()}", 1)
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            err_console.print(message, highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(guard.exit_code()) from None


@contextlib.contextmanager
def usage_errors():
    """A ConfigError (an option value that cannot work, here or on this machine) becomes Typer's
    usage error: exit 2, before any file is read or model loaded."""
    try:
        yield
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def note(message: str) -> None:
    """A yellow "note:" line on stderr (above a running progress bar); the message is printed as is."""
    err_console.print(f"[yellow]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


def progress_bar(quiet: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=quiet or not err_console.is_terminal,
    )


def run_files(description: str, outs: dict, process, skip_existing: bool, quiet: bool = False):
    """Run a batch over files (`outs`: input -> output path) with a progress bar that moves by file
    and, within a file, by tile (`process(item, dest, on_fraction)`); report failures and a summary."""
    from ficli.inference.batch import run_batch

    start = time.perf_counter()
    with progress_bar(quiet) as progress:
        task = progress.add_task(description, total=len(outs), rate="")
        finished, rate = [0], [""]

        def on_fraction(item, fraction):
            shown = f"{rate[0]}  {item.rel.name} {fraction:.0%}".strip()  # names may hold [brackets]
            progress.update(task, completed=finished[0] + min(fraction, 0.999), rate=escape(shown))

        def on_item(item, status, message):
            finished[0] += 1
            rate[0] = f"{finished[0] / max(time.perf_counter() - start, 1e-9):.2f} files/s"
            progress.update(task, completed=finished[0], rate=rate[0])
            if status == "failed":
                progress.console.print(f"[red]failed:[/] {escape(message)}", highlight=False, soft_wrap=True)  # names may hold [brackets]
            elif message:
                progress.console.print(f"[yellow]note:[/] {escape(message)}", highlight=False, soft_wrap=True)

        report = run_batch(list(outs), outs.__getitem__, lambda item, dest: process(item, dest, lambda f: on_fraction(item, f)),
                           skip_existing=skip_existing, on_item=on_item)
    if not quiet:
        console.print(f"{description}: {report.summary()} in {time.perf_counter() - start:.1f} s", highlight=False, soft_wrap=True)
    if not report.ok:
        written = f"the other {len(report.done)} were written" if report.done else "nothing was written"
        err_console.print(f"{len(report.failed)} file(s) failed; {written}", highlight=False)
        raise typer.Exit(1)


def plan_batch(inputs, out: Path, recursive: bool, suffix: str, overwrite: bool, skip_existing: bool, share=None,
               tiff_only: bool = False, shard: tuple[int, int] | None = None) -> dict:
    """Inputs and their checked outputs, before torch is imported or a model loaded: paths, an
    output folder that would overwrite inputs, clashes, existing outputs (see `batch.plan_outputs`).
    `tiff_only` (enhance --dtype float32): an input that is not a TIFF gets a .tif output. `shard`
    (I, N) of --shard: only the I-th of N parts of the inputs (`paths.shard_part`) is planned and
    done; each part takes its own lock on OUT, so N jobs write into one folder side by side."""
    from ficli.inference import batch
    from ficli.image import io
    from ficli.image.paths import shard_part

    with usage_errors():
        io.check_name_suffix(suffix)
        if overwrite and skip_existing:
            raise ConfigError("give one of --overwrite (replace existing outputs) and --skip-existing (leave them)")
    items = io.collect_inputs(inputs, recursive=recursive, on_note=note)
    note_skipped_subfolders(inputs, recursive)
    io.check_output_dir(out, items, recursive=recursive)
    io.lock_output(out, folder=True, part=shard_name(shard))  # before the outputs are looked for: a second run into OUT is refused
    mine = shard_part(items, shard)
    mine = batch.shard(mine) if share else mine
    def out_for(item):
        tif = not tiff_only or item.path.suffix.lower() in io.TIFF_SUFFIXES
        return io.output_path(item, out, suffix=None if tif else ".tif", name_suffix=suffix)

    outs = batch.plan_outputs(items, out_for,
                              overwrite=overwrite, skip_existing=skip_existing, share=mine)
    if shard is not None:
        note(f"--shard {shard[0]}/{shard[1]}: {len(mine)} of the {len(items)} inputs")
    return {item: outs[item] for item in mine}


def shard_name(shard: tuple[int, int] | None) -> str:
    """"shard3of10" for --shard 3/10 (in lock and record file names), "" without --shard."""
    return "" if shard is None else f"shard{shard[0]}of{shard[1]}"


def note_skipped_subfolders(inputs, recursive: bool) -> None:
    """A note when folders given hold images in subfolders that a run without -r passes over."""
    from ficli.image import io

    skipped = io.skipped_subfolders(inputs, recursive)
    if skipped:
        names = ", ".join(str(p) for p in skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        note(f"{len(skipped)} subfolder(s) with images were skipped ({names}); add -r/--recursive to include them")


EVALUATE_UNITS = {"psnr": "PSNR dB", "ssim": "SSIM", "rmse": "RMSE", "texture": "texture %"}


def evaluate_table(report, per_image: bool, width: int | None = None):
    """evaluate's scores: a column per method × metric where that fits in `width` columns (None:
    any width), else a row per image × method with a column per metric (3+ methods on a terminal)."""
    wide = _evaluate_wide(report, per_image)
    if width is None or Console(width=100_000).measure(wide).maximum <= width:
        return wide
    return _evaluate_long(report, per_image)


def _evaluate_frame(report):
    from rich.table import Table

    return Table(title=f"{report.hr} — scale: {report.scale.describe()}", title_justify="left",
                 caption=f"crop border {report.crop_border} px" if report.crop_border else None)


def _summary_cells(summary, metrics) -> tuple[list[str], list[str]]:
    """(the mean ± std cells, the n cells) of one method's summary."""
    means = [metric_cell(m, getattr(summary.mean, m) if summary.mean else None)
             + (f" ± {metric_text(m, getattr(summary.std, m))}" if summary.std else "") for m in metrics]
    counts = [str(summary.n) if m == "psnr" else str(summary.n_texture) if m == "texture" and summary.n_texture != summary.n else ""
              for m in metrics]
    return means, counts


def _evaluate_wide(report, per_image: bool):
    from ficli.tools.evaluate import METRICS

    table = _evaluate_frame(report)
    table.add_column("image", overflow="fold")
    for method in report.methods:
        for m in METRICS:
            table.add_column(f"{method.name}\n{EVALUATE_UNITS[m]}", justify="right", no_wrap=True)
    if per_image:
        scores = report.scores_by_image()
        for rel in report.hr_order:
            cells = [scores.get((rel, method.name)) for method in report.methods]
            if any(cells):
                table.add_row(rel.as_posix(), *[metric_cell(m, getattr(s, m) if s else None) for s in cells for m in METRICS])
        table.add_section()
    summaries = [_summary_cells(report.summary(method.name), METRICS) for method in report.methods]
    table.add_row("mean ± std", *[cell for means, _ in summaries for cell in means])
    table.add_row("n (images)", *[cell for _, counts in summaries for cell in counts])
    return table


def _evaluate_long(report, per_image: bool):
    from ficli.tools.evaluate import METRICS

    table = _evaluate_frame(report)
    table.add_column("image", overflow="fold")
    table.add_column("method", overflow="fold")
    for m in METRICS:
        table.add_column(EVALUATE_UNITS[m], justify="right", no_wrap=True)
    if per_image:
        scores = report.scores_by_image()
        for rel in report.hr_order:
            shown = [(method.name, scores[(rel, method.name)]) for method in report.methods if (rel, method.name) in scores]
            for i, (name, s) in enumerate(shown):
                table.add_row(rel.as_posix() if i == 0 else "", name, *[metric_cell(m, getattr(s, m)) for m in METRICS])
        table.add_section()
    for method in report.methods:
        means, _ = _summary_cells(report.summary(method.name), METRICS)
        table.add_row("mean ± std", method.name, *means)
    for method in report.methods:
        _, counts = _summary_cells(report.summary(method.name), METRICS)
        table.add_row("n (images)", method.name, *counts)
    return table


def metric_text(metric: str, value: float) -> str:
    if value != value:
        return "–"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return {"psnr": f"{value:.2f}", "ssim": f"{value:.4f}", "rmse": f"{value:.4g}", "texture": f"{value:.2f}"}[metric]


def metric_cell(metric: str, value) -> str:
    return "–" if value is None else metric_text(metric, value)


def print_evaluate_notes(report, shown: int = 10) -> None:
    """Problems grouped by kind and method, `shown` names each (all are in --json); the narrow-range hint
    and the images without a texture excess once each."""
    groups: dict = {}
    for problem in report.problems:
        groups.setdefault((problem.kind, problem.method), []).append(problem)
    titles = {
        "no-sr": "HR images without an SR image", "no-hr": "SR images without an HR image",
        "ambiguous": "ambiguous names", "unreadable": "unreadable images", "size": "size mismatches",
        "dtype": "pixel-type mismatches", "unscorable": "pairs that cannot be scored",
    }
    for (kind, method), problems in groups.items():
        where = f" in {method}" if method else ""
        err_console.print(f"[bold yellow]{titles.get(kind, kind)}{where}:[/] {len(problems)}", highlight=False)
        for problem in problems[:shown]:
            err_console.print(f"  {problem.message}", highlight=False, soft_wrap=True, markup=False)
        if len(problems) > shown:
            err_console.print(f"  … and {len(problems) - shown} more (all are listed with --json FILE)", highlight=False)
    if report.narrow:
        path, lo, hi, top = report.narrow[0]
        err_console.print(
            f"note: {len(report.narrow)} HR image(s) span less than 1/8 of their pixel type's range "
            f"(e.g. {path}: {lo:g}..{hi:g} of {top:g}); on the dtype scale their scores look better than they are — "
            "consider --data-range hr (or the camera's range, e.g. --data-range 4095)",
            highlight=False, soft_wrap=True, markup=False,
        )
    if report.unmeasured:
        path, why = report.unmeasured[0]
        err_console.print(
            f"note: texture % not measured for {len(report.unmeasured)} image(s), shown as – (e.g. {path}: {why}); "
            "their other scores count, and the texture mean is over the images measured (all are listed with --json FILE)",
            highlight=False, soft_wrap=True, markup=False,
        )


@contextlib.contextmanager
def training_display(steps: int, epochs: int, quiet: bool = False):
    """A progress bar by step (a line a minute in logs) and a line per epoch: the `train.Progress` to
    hand to training; with `quiet`, neither (notes still show)."""
    from ficli.training.train import Progress as TrainingProgress

    with Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), console=err_console, disable=quiet or not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("train", total=steps, epoch=0, info="")
        last_line = [time.perf_counter()]

        def on_step(epoch, step, total, terms):
            info = (f"G {terms['total']:.4g}  TG {terms['tg']:.3g}  {terms['samples_per_s']:.1f} samples/s  "
                    f"ETA {duration(terms['eta_s'])}")
            bar.update(task, completed=step, epoch=f"{epoch}/{epochs}", info=info)
            if bar.disable and not quiet and time.perf_counter() - last_line[0] > 60:  # logs and nohup: a line a minute
                last_line[0] = time.perf_counter()
                err_console.print(f"epoch {epoch}/{epochs} step {step}/{total}  {info}", highlight=False)

        def on_epoch(row):
            if quiet:
                return
            shares = "  ".join(f"{k[6:]} {row[k]:.0%}" for k in row if k.startswith("share_"))
            bar.console.print(
                f"epoch {row['epoch']}: loss {row['loss_total']:.4g}  val PSNR {row['val_psnr']:.2f} dB "
                f"(bicubic {row['val_bicubic_psnr']:.2f})  SSIM {row['val_ssim']:.4f} (bicubic {row['val_bicubic_ssim']:.4f})  "
                f"{row['seconds']:.0f} s, {row['samples_per_s']:.1f} samples/s, {row['steps_per_s']:.3g} steps/s  "
                f"({shares})  ETA {duration(row['eta_s'])}",
                highlight=False,
            )
            bar.reset(task, total=steps)

        yield TrainingProgress(on_step=on_step, on_epoch=on_epoch, on_notice=note)


@contextlib.contextmanager
def video_display(quiet: bool):
    """`ficli video`'s progress bar by frame, the plan's line above it (unless `quiet`): yields the
    callbacks (on_start(plan), on_progress(done, expected), on_done(frames))."""
    begun = [time.perf_counter()]
    with progress_bar(quiet) as progress:
        task = progress.add_task("video", total=None, rate="")

        def on_start(plan):
            begun[0] = time.perf_counter()
            progress.update(task, total=plan.frames)
            if not quiet:
                progress.console.print(plan.describe(), highlight=False, soft_wrap=True, markup=False)

        def on_progress(done, expected):
            total = None if expected is None else max(expected, done)
            rate = done / max(time.perf_counter() - begun[0], 1e-9)
            progress.update(task, completed=done, total=total, rate=f"{rate:.2f} frames/s")

        yield on_start, on_progress, lambda frames: progress.update(task, completed=frames, total=frames)

def duration(seconds: float) -> str:
    """12 s, 3 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def record_table(path, record: dict):
    """`ficli info`'s table of the record in an output ficli wrote (`ficli.image.provenance`)."""
    import json

    from rich.table import Table

    table = Table(title=escape(str(path)), title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    for key, value in record.items():
        table.add_row(escape(str(key)), escape(value if isinstance(value, str) else json.dumps(value)))
    return table


def info_table(summary: dict):
    """`ficli info`'s table of what a model file holds (`api.model_summary`)."""
    from rich.table import Table

    c = summary["config"]
    table = Table(title=escape(str(summary["path"])), title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    table.add_row("architecture", f"FI-GAN generator: {c['channels']} channel(s), {c['features']} features, {c['blocks']} residual dense blocks of {c['layers']} layers, growth {c['growth']}")
    table.add_row("parameters", f"{summary['parameters']:,}")
    table.add_row("blur scale", f"conditioned on the input's scale (trained at ×{summary['scale']})" if c.get("scale_input") else f"×{summary['scale']} (fixed)")
    if c.get("coarse_kept"):
        table.add_row("coarse content", "trained with it kept (train --keep-coarse): always run with it, no --free-coarse")
    elif summary["info"].get("keep_coarse") is True:
        table.add_row("coarse content", "kept at every s unless --free-coarse is given (the file asks for it, as --keep-coarse)")
    norm = summary["info"].get("normalize")
    if norm:
        table.add_row("normalisation", f"percentiles {norm['lo_pct']} / {norm['hi_pct']}")
    table.add_row("file", f"{summary['bytes'] / 1e6:.1f} MB, format version {summary['format_version']}, sha256 {summary['sha256'][:16]}…")
    for stage in summary["info"].get("stages", []):
        settings = stage.get("settings", {})
        m = stage.get("val_metrics", {})
        data = ", ".join(str(d) for d in stage.get("data", [])) or "?"
        text = (f"data {data}; val {stage.get('val', '?')}\n"
                f"{stage.get('epochs', '?')} epochs (best {stage.get('best_epoch', '?')}), {stage.get('seconds', 0) / 60:.1f} min on {settings.get('device', '?')}; "
                f"lr {settings.get('lr', '?')}, batch {settings.get('batch', '?')}, crop {settings.get('crop', '?')}")
        if "val_psnr" in m:
            text += (f"\nval PSNR {m['val_psnr']:.2f} dB (bicubic {m.get('val_bicubic_psnr', float('nan')):.2f}), "
                     f"SSIM {m.get('val_ssim', float('nan')):.4f} (bicubic {m.get('val_bicubic_ssim', float('nan')):.4f})")
        table.add_row(f"stage {stage.get('stage', '?')}", escape(text))
    return table


def blur_scale_value(value: str) -> float | None:
    """Typer callback of --scale: 'auto' (None) or a finite number from 1 to 8 (exit 2 otherwise,
    before torch loads)."""
    if value.strip().lower() == "auto":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 1 <= number <= 8:
        raise typer.BadParameter(f"{value}: use auto or a number from 1 (sharp) to 8")
    return number
