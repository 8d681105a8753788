"""The `ficli` command line: options, help, progress bars and error reporting, nothing else.

Each subcommand parses its options, calls one library function and turns a `FicliError` into one
line on stderr and exit code 1 (no traceback for a user mistake).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ficli import __version__
from ficli.errors import FicliError

app = typer.Typer(
    name="ficli",
    help="Sharpen fluorescence images and videos with FI-GAN (total gradient loss), and measure the result.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)


def _version(value: bool):
    if value:
        console.print(f"ficli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Sharpen fluorescence images and videos with FI-GAN (total gradient loss), and measure the result."""


@contextlib.contextmanager
def _reporting_errors():
    """Turn user errors into one line on stderr and exit 1; Ctrl-C into exit 130."""
    try:
        yield
    except FicliError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: finished files are complete, no partial file was left; rerun with --skip-existing to go on")
        raise typer.Exit(130) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=not err_console.is_terminal,
    )


def _run_files(description: str, items, out_for, process, skip_existing: bool):
    """Run a batch over files with a progress bar (files/s); report failures and a summary line."""
    from ficli.batch import run_batch

    start = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(description, total=len(items), rate="")

        def on_item(item, status, message):
            rate = (progress.tasks[task].completed + 1) / max(time.perf_counter() - start, 1e-9)
            progress.update(task, advance=1, rate=f"{rate:.2f} files/s")
            if status == "failed":
                progress.console.print(f"[red]failed:[/] {message}", highlight=False, soft_wrap=True)

        report = run_batch(items, out_for, process, skip_existing=skip_existing, on_item=on_item)
    console.print(f"{description}: {report.summary()} in {time.perf_counter() - start:.1f} s", highlight=False)
    if not report.ok:
        err_console.print(f"{len(report.failed)} file(s) failed; the others were written", highlight=False)
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------- degrade


@app.command()
def degrade(
    inputs: list[str] = typer.Argument(..., help="HR image files, folders or glob patterns (quote globs)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; the input tree is mirrored under it."),
    scale: int = typer.Option(4, "--scale", "-s", min=1, help="Shrink factor s of D (then U enlarges back to the input size)."),
    psf_sigma: float = typer.Option(0.0, "--psf-sigma", min=0, help="Gaussian PSF blur before D, standard deviation in HR pixels; 0 = none."),
    poisson_peak: float = typer.Option(0.0, "--poisson-peak", min=0, help="Poisson (shot) noise: photon count at the image's maximum; 0 = none. Lower is noisier (e.g. 200)."),
    gaussian_sigma: float = typer.Option(0.0, "--gaussian-sigma", min=0, help="Gaussian read noise, standard deviation as a fraction of the image's maximum; 0 = none."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the noise; the same seed gives the same output for the same file name."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read images in subfolders."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Leave outputs that already exist untouched (for reruns)."),
):
    """Simulate low-resolution images: Y = U(D(X)) with optional PSF blur and noise.

    D shrinks by --scale and U enlarges back with the project's one bicubic resize, so each output
    has its input's size, pixel type and format. Sides that are not multiples of the scale are
    reflect-padded before D and cropped back after U. Blur, then Poisson, then Gaussian noise are
    applied before D, in that order.
    """
    from ficli import io
    from ficli.degrade import Degradation, degrade_file

    with _reporting_errors():
        settings = Degradation(scale=scale, psf_sigma=psf_sigma, poisson_peak=poisson_peak, gaussian_sigma=gaussian_sigma)
        items = io.collect_inputs(inputs, recursive=recursive)
        io.check_output_dir(out, items, recursive=recursive)
        _run_files(
            "degrade",
            items,
            lambda item: io.output_path(item, out),
            lambda item, dest: degrade_file(item.path, dest, settings, seed),
            skip_existing,
        )


# ------------------------------------------------------------------------------------------ evaluate
# (section owned by the evaluate work: metrics.py / evaluate.py)


@app.command()
def evaluate():
    """Score restorations against ground truth: RMSE, PSNR, SSIM per image and per folder."""
    with _reporting_errors():
        raise FicliError("evaluate is not available yet")


# --------------------------------------------------------------------------------- not yet available


def _not_yet(name: str, issue: str):
    def command(ctx: typer.Context):
        with _reporting_errors():
            raise FicliError(f"'ficli {name}' is not available yet in {__version__} ({issue}); see the README's roadmap")

    command.__doc__ = f"(not available yet) {issue}."
    return command


for _name, _issue in (
    ("train", "two-stage FI-GAN training"),
    ("enhance", "sharpen images with the tiled engine"),
    ("video", "stream a recording through the engine"),
):
    app.command(_name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(_not_yet(_name, _issue))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
