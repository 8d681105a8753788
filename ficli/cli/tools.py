"""`ficli bench, export and info`: the commands on models and machines."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from ficli.cli.app import DeviceOption, ModelOption, QuietOption, ResultQuietOption, app
from ficli.console import console, err_console, info_table, record_table, reporting_errors, stdout_console, usage_errors
from ficli.errors import ConfigError

# --------------------------------------------------------------------------------------------- bench


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="Small sizes and one repeat (about a minute on 2 CPU cores): checks that everything runs, not how fast."),
    device: DeviceOption = "auto",
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed runs per row after one warm-up; the best is reported."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write every table and the machine description here (rewritten after each table, so a run cut short keeps what it measured); '-' = standard output, once at the end (the tables then go to stderr)."),
    compile_model: bool = typer.Option(False, "--compile", help="Also time the generator and the video pipeline through torch.compile, as --compile runs them, at 1280×720 in half precision (compiling takes tens of seconds per shape)."),
    only: Optional[str] = typer.Option(None, "--only", help="Run only these tables, comma-separated: tg, generator, body, tiled, train, video [default: all]."),
    sizes_option: Optional[str] = typer.Option(None, "--sizes", help="Frame sizes for the generator, body and video tables, WIDTHxHEIGHT comma-separated, multiples of 4 [default: 640x360,1280x720,1920x1080; body 1280x720; video 640x360,1280x720]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
    quiet: ResultQuietOption = False,
):
    """Time the parts that decide speed: TG loss (direct vs FFT), the generator and its body, tiled
    vs whole, a training step (fp32/bf16, channels-last, compiled with --compile), each stage of
    `ficli video`; then the performance targets against what was measured.

    Best of --repeats runs after a warm-up (other jobs on a shared machine only add time). GFLOP
    are counted from the convolution shapes. Ratios measured in the same run are the numbers to
    compare across machines.
    """
    from ficli.inference.device import resolve_device
    from ficli.tools import bench as b
    from ficli.tools.timing import format_table, parse_sizes

    with reporting_errors():
        if json_file is not None:  # before any timing
            from ficli.image import io

            io.lock_output(json_file)
            io.check_output_file(json_file, "--json", overwrite=overwrite)
        with usage_errors():
            chosen_sizes = parse_sizes(sizes_option) if sizes_option else None
            dev = str(resolve_device(device))
        tables = b.bench_tables(quick, dev, repeats, compile_model, chosen_sizes)
        try:
            chosen = b.choose_tables(only, tables)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc), param_hint="--only") from None
        shown = stdout_console(json_file)  # stderr when the JSON goes to stdout

        def on_table(title: str, rows: list[dict]) -> None:
            shown.print(f"\n[bold]{title}[/]" + (" (judged only on the device they are set for)" if title == "Targets" else ""))
            shown.print(format_table(rows), highlight=False, markup=False)

        b.run_bench(tables, chosen, dev, quick, json_file,
                    on_machine=lambda info: shown.print(" · ".join(f"{k} {v}" for k, v in info.items()), highlight=False),
                    measuring=lambda title: contextlib.nullcontext() if quiet else err_console.status(f"timing: {title} …"),
                    on_table=on_table)


# -------------------------------------------------------------------------------------- export, info


@app.command()
def export(
    model: ModelOption = None,
    format_name: str = typer.Option(..., "--format", "-f", help="onnx (opset 17, dynamic batch, height and width), torchscript (torch.jit), or bioimageio (a BioImage Model Zoo package, .zip, for deepImageJ, ilastik, napari)."),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write (.onnx, .pt, .zip); written only when complete and checked."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file (never the model being exported)."),
    scale: Optional[float] = typer.Option(None, "--scale", help="For a model conditioned on the blur scale: the s (1 to 8) of the 'scale' input when it is left out (ONNX, TorchScript), or fixed in a bioimage.io package [default: the model's training scale]. Refused for a plain model."),
    git_repo: Optional[str] = typer.Option(None, "--git-repo", help="bioimageio: the project's repository URL for the package [default: the installed ficli's Repository URL, if it has one]."),
    maintainers: Optional[list[str]] = typer.Option(None, "--maintainer", help="bioimageio: a maintainer's GitHub user name (the format names maintainers so); repeat for several."),
    quiet: QuietOption = False,
):
    """Export a model for other tools: ONNX, TorchScript, or a bioimage.io package.

    The exported graph is the generator on the normalised scale: feed each image mapped by its own
    0.1 and 99.9 percentiles to 0 and 1, as `ficli enhance` does; map the output back with
    y·(hi − lo) + lo. Any height and width of at least 4 pixels (padded to multiples of 4 inside
    the graph). For a model conditioned on the blur scale (the default model), ONNX and
    TorchScript take s as a second input, 'scale' (float32, shape (1,)), told as `ficli enhance
    --scale S` tells it; left out, s is --scale (default: the training scale, 4). A bioimage.io
    package takes one input: s is fixed at --scale and named in the package. The written file is
    loaded back and checked against ficli's generator (within 1e-4) before it is put in place.
    ONNX and bioimageio need `pip install 'ficli[export]'`.

    Exit code: 2 for an unknown --format or a --scale the model cannot take; 1 for a file that is
    not a ficli model, an existing --out without --overwrite, or a missing package.
    """
    from ficli.image import io

    with reporting_errors("interrupted: nothing was written; run it again"):
        if model is not None:
            io.check_model_file(model)  # before torch is imported (seconds)
        with usage_errors():
            from ficli.tools.export import check_format, check_target

            check_format(format_name)
        io.lock_output(out)
        check_target(out, overwrite, model)
        from ficli.tools.export import export_model

        status = contextlib.nullcontext() if quiet else err_console.status(f"exporting to {format_name} …")
        with usage_errors(), status:  # --scale: a usage error
            report = export_model(model, format_name, out, overwrite=overwrite, scale=scale, git_repo=git_repo,
                                  maintainers=tuple(maintainers or ()))
        if not quiet:
            console.print(report.describe(), highlight=False, soft_wrap=True, markup=False)


@app.command()
def info(
    model: Optional[Path] = typer.Argument(None, help="Model file (.safetensors), or 'paper' / 'noise-kept' / 'deconvolve' for a shipped model [default: the shipped default model]; or an image (.tif, .png, .jpg), video (.mp4, .mov, .mkv) or OME-Zarr store (.ome.zarr) that ficli wrote: its record of how it was made."),
    json_output: bool = typer.Option(False, "--json", help="Print everything the file records as JSON on standard output, for scripts."),
    quiet: ResultQuietOption = False,  # noqa: ARG001 (info shows no progress; taken so that every command takes -q)
):
    """What a model file holds: architecture, blur scale, training stages (data, settings, time) and
    validation scores. Reads the file's header only (no weights are loaded).

    Given an output of `ficli enhance` or `ficli video` (told by its suffix), shows the record written
    into it: ficli's version, the model and its SHA-256, the blur scale and how it was chosen, the
    upscale, the intensity map, tiles, device, precision, date and the input's name."""
    import json

    with reporting_errors("interrupted"):
        if model is not None and _is_output(model):
            record = _read_record(model)
            if json_output:
                print(json.dumps(record, indent=2))
                return
            console.print(record_table(model, record))
            return
        if model is not None:
            from ficli.image import io

            io.check_model_file(model)  # before torch is imported (seconds)
        from ficli.api import model_summary

        summary = model_summary(model)
        if json_output:
            print(json.dumps(summary, indent=2))
            return
        console.print(info_table(summary))


def _is_output(path: Path) -> bool:
    """An image or video (by its suffix): `info` reads its record, not a model."""
    from ficli.image.io import IMAGE_SUFFIXES
    from ficli.video.ffmpeg import VIDEO_SUFFIXES

    return path.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES, ".zarr")


def _read_record(path: Path) -> dict:
    """The record ficli wrote into an image or video (`ficli.image.provenance`); FicliError naming the
    file when it is missing or holds none."""
    from ficli.errors import InputError
    from ficli.image import io, provenance
    from ficli.video.ffmpeg import VIDEO_SUFFIXES

    if path.suffix.lower() == ".zarr":  # an OME-Zarr store: the record is its attribute "ficli"
        from ficli.image import ngff

        ngff.open_image(path)  # names what is wrong with a store that is none
        record = ngff.read_record(path)
        if record is None:
            raise InputError(f"{path}: holds no ficli record (the store was not written by ficli enhance or degrade)")
        return record
    io.check_input_file(path)
    try:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            from ficli.video.ffmpeg import read_comment

            text = read_comment(path)
            record = provenance.from_text(text) if text else None
        else:
            record = provenance.read_image_record(path)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot be read ({io.first_line(exc)}); the file may be truncated or corrupt") from None
    if record is None:
        raise InputError(f"{path}: holds no ficli record (it was not written by ficli enhance or ficli video, or a program "
                         "that rewrote it dropped its metadata)")
    return record
