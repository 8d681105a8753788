"""The `ficli` command line: commands, their options and help, nothing else.

Each subcommand parses its options, calls one library function and reports, turning a `FicliError`
into one line on stderr and exit code 1 (no traceback for a user mistake). What they show
(consoles, progress bars, tables, error lines) is `ficli.console`'s.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from ficli import __version__
from ficli.console import (blur_scale_value, console, err_console, evaluate_table, info_table, note, one_stdout, plan_batch, print_evaluate_notes,
                           progress_bar, reporting_errors, run_files, stdout_console, tolerate_undecodable_names, training_display,
                           usage_errors, video_display)
from ficli.defaults import HI_PCT, LO_PCT, SCALE_CROP, SCALE_FRAMES, VIDEO_TILE
from ficli.errors import ConfigError, FicliError

app = typer.Typer(
    name="ficli",
    help="Sharpen fluorescence images and videos with FI-GAN (total gradient loss), and measure the result.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        console.print(f"ficli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Sharpen fluorescence images and videos with FI-GAN (total gradient loss), and measure the result."""
    tolerate_undecodable_names()


# Options that degrade, enhance and video share: one definition each, so their help cannot drift apart.
InputsHelp = ("files, folders or glob patterns (quote globs); - reads paths from standard input and @FILE from FILE, "
              "one a line (blank lines and # comments skipped).")
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output folder; the input tree is mirrored under it, names and formats kept. Two inputs of the same name from different folders (A/x.png B/x.png) keep their folders' names: OUT/A/x.png, OUT/B/x.png.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist already. Without it (or --skip-existing) a run that finds any refuses before starting. Inputs are never overwritten.")]
SkipOption = Annotated[bool, typer.Option("--skip-existing", help="Leave outputs that exist already untouched and do the rest (resume an interrupted batch).")]
SuffixOption = Annotated[str, typer.Option("--suffix", help="Text added to each output name before its extension: --suffix _sr writes x_sr.png for x.png (x_sr.ome.tif for x.ome.tif) [default: none].")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line; failures, errors and notes still go to stderr.")]


# ------------------------------------------------------------------------------------------- degrade


@app.command()
def degrade(
    inputs: list[str] = typer.Argument(..., help="HR images: " + InputsHelp),
    out: OutOption = ...,
    scale: str = typer.Option("4", "--scale", "-s", help="Shrink factor s of K_s, any number from 1 to 8 (e.g. 2.5); default 4. U then enlarges back to the input size; 1 with no blur and no noise leaves the image as it is. The sides padded to multiples of s stay within 400 million pixels."),
    kernel: str = typer.Option("pil", "--kernel", "-k", help="Downscale kernel K_s: 'pil' (default, the paper's: antialiased bicubic a=-0.5, as PIL/MATLAB shrink), 'cv2' (OpenCV INTER_CUBIC a=-0.75, not antialiased: what most OpenCV pipelines do), 'area' (mean over each pixel's footprint: what a camera pixel integrates), 'bilinear' (OpenCV INTER_LINEAR, not antialiased: cv2.resize's default). See docs/DEGRADATIONS.md."),
    psf_sigma: float = typer.Option(0.0, "--psf-sigma", help="Gaussian PSF blur before K_s, standard deviation in HR pixels, 0 to 50; default 0 = none."),
    poisson_peak: float = typer.Option(0.0, "--poisson-peak", help="Poisson (shot) noise on the small image: photon count at the image's maximum, up to 1e9; default 0 = none. Lower is noisier (e.g. 200)."),
    gaussian_sigma: float = typer.Option(0.0, "--gaussian-sigma", help="Gaussian read noise on the small image, standard deviation as a fraction of the image's maximum, 0 to 1; default 0 = none."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the noise; the same seed gives the same output for the same file name."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read images in subfolders."),
    overwrite: OverwriteOption = False,
    skip_existing: SkipOption = False,
    suffix: SuffixOption = "",
    quiet: QuietOption = False,
):
    """Simulate blurred, low-resolution images: Y = U(K_s(B(X)) + noise).

    B is an optional Gaussian PSF blur; K_s shrinks by --scale with the --kernel; Poisson, then
    Gaussian noise are added to the small image (where a camera counts photons); U enlarges back with
    the project's one bicubic resize, so each output has its input's size, pixel type and format.
    Sides that do not divide by the scale are reflect-padded before K_s and cropped back after U.
    """
    with reporting_errors():
        outs = plan_batch(inputs, out, recursive, suffix, overwrite, skip_existing)
        from ficli.image.degrade import SCALE_RANGE, Degradation, check_setting, degrade_file  # torch: after the paths are checked

        with usage_errors():
            try:
                scale = float(scale)
            except ValueError:
                check_setting("scale", scale, *SCALE_RANGE)  # refuses, naming the range
            settings = Degradation(scale=scale, psf_sigma=psf_sigma, poisson_peak=poisson_peak, gaussian_sigma=gaussian_sigma, kernel=kernel)
        run_files("degrade", outs, lambda item, dest, on_fraction: degrade_file(item.path, dest, settings, seed),
                   skip_existing, quiet)


# ------------------------------------------------------------------------------------------ evaluate


@app.command()
def evaluate(
    hr: str = typer.Argument(..., help="Ground-truth (HR) folder, image file or glob pattern."),
    sr: list[str] = typer.Argument(..., help="One or more folders of restored (SR) images, one per method; each gets its own column group."),
    data_range: str = typer.Option("dtype", "--data-range", help="Intensity scale mapped to [0, 1]: 'dtype' (integers ÷ their type's maximum, floats as they are), 'hr' (each HR image's min..max, same map on its SR image) or a number (e.g. 4095 for a 12-bit camera)."),
    crop_border: int = typer.Option(0, "--crop-border", min=0, help="Pixels cropped from each side of each image before scoring (e.g. the scale factor); 0 = none."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read images in subfolders; pairing uses the path inside each folder."),
    per_image: bool = typer.Option(True, "--per-image/--summary-only", help="Show one row per image, or only the mean ± std and count rows."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write per-image scores here (hr, method, sr, psnr_db, ssim, rmse, scale, texture_pct; nan where texture is not measured); '-' = standard output (the table then goes to stderr). File names that are not UTF-8 are written as their own bytes."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write everything here as strict JSON: scale, per-method mean/std/n, per-image scores, every problem by file; '-' = standard output. Infinite or undefined numbers (PSNR of identical images, texture not measured) are null; non-UTF-8 bytes of file names are written as \\xNN."),
    allow_unpaired: bool = typer.Option(False, "--allow-unpaired", help="Exit 0 even when some files have no partner in the other folder (they are still listed)."),
):
    """Score restorations against ground truth: PSNR (dB), SSIM, RMSE and texture (%) per image and per folder.

    SR images pair with HR images by path inside their folders, or by name without extension (HR
    a.tif with SR a.png). Images are scored on [0, 1] (see --data-range; the table title states the
    scale): RMSE, PSNR = 20·log10(1/RMSE), and SSIM with an 11×11 Gaussian window (σ = 1.5,
    Wang et al. 2004, as scikit-image computes it). texture % measures invented detail: the SR
    image's spectral power above the HR image's, summed over frequencies from 0.02 to 0.5 cycles/px
    (periods under 50 px; Welch spectra of Hann-windowed tiles of up to 256 px), in % of the HR
    image's power there. Blur only removes power, so a blurred copy of the HR image scores 0; detail
    the HR image lacks (texture, ringing, noise, over-sharpening) raises it, and so does more
    contrast (×1.05 scores 10 %). It is 0 or more, with no upper bound, the same on every
    --data-range, and blind to where detail sits (PSNR and SSIM see that); images under 32×32 px
    get – and a note, their other scores count. Colour images are averaged over channels (texture
    pools them), stacks over frames. Summary rows give the mean ± sample standard deviation (n − 1).

    Nothing is dropped silently: unpaired files, size or pixel-type mismatches (not scored: their
    units differ), images smaller than 11×11 after --crop-border and unreadable files are listed by
    name on stderr and in --json.

    Exit code: 0 when every image was scored; 1 when any file was listed as a problem (the table
    and --csv/--json still hold everything that could be scored) or nothing could be scored, or on
    a missing or empty folder; 2 for a bad option.
    """
    from ficli.tools import evaluate as ev

    with reporting_errors("interrupted: nothing was written (--csv and --json are written at the end); run it again"):
        try:
            scale = ev.parse_scale(data_range)
        except FicliError as exc:
            raise typer.BadParameter(str(exc).split(": ", 1)[-1], param_hint="--data-range") from None
        one_stdout(**{"--csv": csv_file, "--json": json_file})
        for path, option in ((csv_file, "--csv"), (json_file, "--json")):
            if path is not None:
                ev.check_output_file(path, option)
        out_console = stdout_console(csv_file, json_file)
        with progress_bar() as progress:
            task = progress.add_task("evaluate", total=None, rate="")
            report = ev.evaluate_folders(
                hr, sr, scale=scale, crop_border=crop_border, recursive=recursive,
                on_pair=lambda done, total: progress.update(task, completed=done, total=total),
                outputs=[path for path in (csv_file, json_file) if path is not None],
            )
        out_console.print(evaluate_table(report, per_image))
        print_evaluate_notes(report)
        if csv_file is not None:
            ev.write_csv(report, csv_file)
        if json_file is not None:
            ev.write_json(report, json_file)
        if not report.rows:
            raise FicliError("no image pair could be scored; see the problems above")
    if not report.ok(allow_unpaired=allow_unpaired):
        raise typer.Exit(1)


# Options that enhance and video share: one definition each, so their help cannot drift apart.
ModelOption = Annotated[Optional[Path], typer.Option("--model", "-m", help="Model file (.safetensors from 'ficli train'), or 'paper' for the shipped paper-protocol model (fixed ×4 PIL bicubic). Default: the shipped robust model, told the blur scale (--scale).")]
TileOption = Annotated[int, typer.Option("--tile", help="Largest tile side in pixels (multiple of 4). An image whose area is at most tile² runs whole; a larger one is cut into the fewest equal tiles of at most this side. Memory is about 0.5 GB per million pixels of a batch in fp32: smaller tiles use less.")]
OverlapOption = Annotated[int, typer.Option("--overlap", help="Context and cross-fade width between tiles, pixels per side (rounded up to 4).")]
CompileOption = Annotated[bool, typer.Option("--compile", help="Run the generator through torch.compile (on CUDA; on 2 CPU cores it measured 1.4× slower than without). The first frame or tile of each size waits for compilation (seconds to a minute); where compiling fails, ficli says so and runs without it.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N or mps.")]
ScaleOption = Annotated[str, typer.Option("--scale", callback=blur_scale_value, help="Blur scale s of the input, for a model conditioned on it: 1 = already sharp, 4 = as blurred as a ×4 bicubic enlargement; a number from 1 to 8, or auto (default): estimated from each image's power spectrum (docs/DEGRADATIONS.md), once per image or stack, and printed; an image too small or flat to estimate gets the model's training scale. An s above the model's training scale is told that scale. The shipped default model is conditioned; a plain one (--model paper) ignores auto and refuses S.")]
PrecisionOption = Annotated[str, typer.Option("--precision", help="fp32 (exact); fp16: CUDA autocast, within 1 grey level of 8-bit of fp32; bf16: CUDA, or a CPU with AVX-512 BF16/AMX (about 3× fp32 there), within 2 grey levels. A batch with NaN/Inf is redone in fp32.")]


# ------------------------------------------------------------------------------------------- enhance


@app.command()
def enhance(
    inputs: list[str] = typer.Argument(..., help="PNG, TIFF (stacks too), JPEG, BMP images: " + InputsHelp),
    out: OutOption = ...,
    model: ModelOption = None,
    scale: ScaleOption = "auto",
    upscale: int = typer.Option(1, "--upscale", min=1, help="Bicubic-enlarge each image by this factor before enhancing (the paper's re-up-scaling): use it for images at their native resolution. 1 = same size, for images already enlarged from low resolution or blurred. The output stays within 400 million pixels a frame."),
    tile: TileOption = 512,
    overlap: OverlapOption = 32,
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Tiles run through the network at once [default: 1 on the CPU, where it is fastest, 4 on a GPU]."),
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    compile_model: CompileOption = False,
    no_normalize: bool = typer.Option(False, "--no-normalize", help=f"Feed [0, 1]-scaled intensities as they are, without the {LO_PCT:g}/{HI_PCT:g}-percentile mapping (for data already spanning [0, 1])."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also read images in subfolders."),
    overwrite: OverwriteOption = False,
    skip_existing: SkipOption = False,
    suffix: SuffixOption = "",
    quiet: QuietOption = False,
):
    """Sharpen images with FI-GAN, tile by tile, keeping each file's pixel type and range.

    **What the default does**: at the default --upscale 1 the output has the input's size; the
    default model is told how blurred each image is (--scale auto: estimated from its spectrum and
    printed) and sharpens that much: an image enlarged from a low-resolution one (e.g. `ficli
    degrade` output, or data upsampled by the microscope software) gets up to a ×4 bicubic's worth,
    an image sharp to the pixel comes back nearly unchanged. To enlarge native-resolution images,
    give --upscale S: each is first enlarged S× (output S× larger) and then sharpened as read.

    Each image (or whole TIFF stack) is mapped by its own 0.1 and 99.9 intensity percentiles before
    the network and mapped back exactly after it, so intensities stay in the file's units. RGB images
    go through a 1-channel model channel by channel; alpha is kept. Under `torchrun --nproc-per-node N
    -m ficli enhance ...` each process takes every N-th file. Exit code: 1 if any file failed (the others are
    written) or outputs exist already; 2 for an option value that cannot work here.
    """
    with reporting_errors():
        outs = plan_batch(inputs, out, recursive, suffix, overwrite, skip_existing, share=True)
        if model is not None:
            from ficli.image import io

            io.check_model_file(model)
        # torch from here on: the paths are checked.
        from ficli.inference.device import default_batch, resolve_device, resolve_precision
        from ficli.inference.engine import TileConfig
        from ficli.inference.enhance import EnhanceOptions, enhance_file
        from ficli.inference.runtime import ready_generator, scale_chooser

        with usage_errors():  # once, not once per file
            dev = resolve_device(device)
            options = EnhanceOptions(
                upscale=upscale,
                normalize=not no_normalize,
                tile=TileConfig(tile=tile, overlap=overlap, batch=batch or default_batch(dev), device=str(dev), precision=precision),
            )
            resolve_precision(precision, dev)
        notices: set[str] = set()

        def notice(message: str):
            if message not in notices:
                notices.add(message)
                note(message)

        generator, info = ready_generator(model, dev, compile_model=compile_model, on_notice=notice)
        channels = info["config"].channels
        with usage_errors():
            options = dataclasses.replace(options, scale_for=scale_chooser(info, scale))

        run_files("enhance", outs,
                   lambda item, dest, on_fraction: enhance_file(item.path, dest, generator, options, channels, notice, on_fraction),
                   skip_existing, quiet)


# --------------------------------------------------------------------------------------------- train


def _positive_finite(value: Optional[float]) -> Optional[float]:
    """Typer callback: a number above 0 that is finite (exit 2 otherwise, before anything loads)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a finite number above 0")
    return value


def _finite(value: Optional[float]) -> Optional[float]:
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def _decay(value: float) -> float:
    if not 0 <= value < 1:  # also refuses nan
        raise typer.BadParameter(f"{value}: use 0 (off) or a decay in [0, 1), e.g. 0.999")
    return value


@app.command()
def train(
    ctx: typer.Context,
    data: list[str] = typer.Option(None, "--data", help="Folder(s) of HR training images (searched recursively; other files such as MANIFEST.csv are passed over); repeat for several, e.g. --data train --data train_extra."),
    val: Optional[str] = typer.Option(None, "--val", help="Folder of HR validation images."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder: checkpoint.pt, best/last.safetensors, metrics.csv, curves.png, summary.json."),
    stage: str = typer.Option("pretrain", "--stage", help="pretrain (natural images: lr 1e-3, batch 64, crop 64, ε 1e-3, θ 1) or finetune (fluorescence: lr 1e-6, batch 64, crop 32, ε 1, α β θ 10)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this model file (e.g. the pretrain run's best.safetensors); a new run: step count and schedule start at 0."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted run in this folder exactly where its last finished epoch ended (needs its checkpoint.pt); other options are taken from it."),
    continue_from: Optional[Path] = typer.Option(None, "--continue-from", help="Continue a run from its model file alone (RUN/last.safetensors, e.g. copied to another machine) into a new --out: step count, learning-rate schedule and data order go on; optimizer state (and the critic) start afresh. --data/--val give the data's new location; it must be the same files."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run or trained models already in --out (otherwise refused)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Maximum number of epochs [default: 100]; with --resume/--continue-from, raises the run's own limit."),
    steps: int = typer.Option(100, "--steps", min=1, help="Batches per epoch."),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Crops per batch, 1 or more [default: the stage's, 64]."),
    crop: Optional[int] = typer.Option(None, "--crop", min=8, help="HR crop side in pixels, a multiple of 4, at least 8 [default: the stage's, 64 or 32]."),
    lr: Optional[float] = typer.Option(None, "--lr", callback=_positive_finite, help="Adam learning rate, a finite number above 0 [default: the stage's, 1e-3 or 1e-6]."),
    lr_schedule: str = typer.Option("constant", "--lr-schedule", help="constant, or cosine: from --lr down to 0 at the last step of --epochs."),
    warmup_steps: int = typer.Option(0, "--warmup-steps", min=0, help="Raise the learning rate linearly from 0 to --lr over this many steps (0 = none)."),
    ema: float = typer.Option(0.0, "--ema", callback=_decay, help="Validate and export an exponential moving average of the generator's weights with this decay per step, in [0, 1), e.g. 0.999; 0 = off."),
    patience: int = typer.Option(10, "--patience", min=1, help="Stop after this many epochs without a higher validation PSNR."),
    no_gan: bool = typer.Option(False, "--no-gan", help="Train the generator alone (no discriminator, ε = 0): a warm-up."),
    tg_weight: Optional[float] = typer.Option(None, "--tg-weight", min=0, callback=_finite, help="θ, weight of the total gradient loss, finite, ≥ 0 [default: the stage's]."),
    k_max: str = typer.Option("N/2", "--k-max", help="Largest TG lag: 1, N/2, N or an integer."),
    adv_weight: Optional[float] = typer.Option(None, "--adv-weight", min=0, callback=_finite, help="ε, weight of the adversarial loss, finite, ≥ 0 [default: the stage's]."),
    mse_weight: Optional[float] = typer.Option(None, "--mse-weight", min=0, callback=_finite, help="α, weight of the MSE term, finite, ≥ 0 [default: the stage's]."),
    l1_weight: Optional[float] = typer.Option(None, "--l1-weight", min=0, callback=_finite, help="β, weight of the SmoothL1 term, finite, ≥ 0 [default: the stage's]."),
    vgg_weight: float = typer.Option(0.0, "--vgg-weight", min=0, callback=_finite, help="γ, VGG16 feature term; needs FICLI_VGG16_WEIGHTS (torchvision ImageNet file). The paper: 8e-3 / 8."),
    resnet_weight: float = typer.Option(0.0, "--resnet-weight", min=0, callback=_finite, help="η, ResNet152 feature term; needs FICLI_RESNET152_WEIGHTS. The paper: 1e-2 / 1."),
    psf_sigma_max: float = typer.Option(0.0, "--psf-sigma-max", min=0, max=20, help="Robustness: PSF blur sigma drawn in [0, this] HR pixels per crop, 0-20."),
    poisson_peak_min: float = typer.Option(0.0, "--poisson-peak-min", min=0, callback=_finite, help="Robustness: Poisson noise with peak photons drawn in [this, 10×this] per crop; 0 = none."),
    gaussian_sigma_max: float = typer.Option(0.0, "--gaussian-sigma-max", min=0, max=1, help="Robustness: Gaussian read noise sigma drawn in [0, this] (fraction of the maximum), 0-1."),
    degradations: str = typer.Option("paper", "--degradations", help="How training inputs are made: 'paper' (default: every crop ×--scale with PIL's bicubic, the paper's protocol, plus the --psf-sigma-max/--poisson-peak-min/--gaussian-sigma-max ranges) or 'family' (each crop with its own kernel pil|cv2|area|bilinear, blur scale s in [1, 4], PSF and Poisson-Gaussian noise, 15 % left sharp; the generator is told s and --scale auto can set it; see docs/DEGRADATIONS.md)."),
    val_size: int = typer.Option(256, "--val-size", min=0, help="Centre-crop validation images to this side in pixels (0 = whole images)."),
    val_limit: int = typer.Option(0, "--val-limit", min=0, help="Validate on at most this many images (0 = all)."),
    features: int = typer.Option(64, "--features", min=4, help="Generator width F (feature channels)."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="Channels-last (NHWC) tensors while training [default: on; a step at crop 64 measured 1.39× faster on an AMD EPYC CPU, crop 32 the same]."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the generator and critic for training (compiling takes a minute or more; see docs/BENCHMARKS.md)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps (bf16 autocast on CUDA)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (crops, augmentation, initial weights): repeatable on CPU."),
):
    """Train FI-GAN: stage 1 on natural images, stage 2 fine-tuning on fluorescence images.

    Each epoch draws --steps batches of random crops, makes their low-resolution inputs with the
    project's own degradation (×4 bicubic, optional blur/noise), and validates on the --val images
    through the tiled engine (PSNR/SSIM against the bicubic input). Samples/s, the share of each
    part of a step and an ETA go to the screen and metrics.csv. A run continues with --resume RUN
    (same folder) or --continue-from RUN/last.safetensors --out NEW (another folder or machine).
    Multi-GPU: `torchrun --nproc-per-node N -m ficli train ...`.
    """
    if resume and continue_from:
        raise typer.BadParameter("give one of --resume RUN_DIR and --continue-from MODEL_FILE", param_hint="--continue-from")
    from ficli.training import runs, train as training

    def interrupted() -> str:
        run_dir = resume or out
        if run_dir is not None and (Path(run_dir) / runs.CHECKPOINT).is_file():
            return f"interrupted: every finished epoch is saved in {run_dir}; continue with: ficli train --resume {run_dir}"
        return "interrupted before the first epoch finished: there is nothing to resume; start the run again"

    with reporting_errors(interrupted):
        if resume or continue_from:
            given = {name: value for name, value in ctx.params.items()  # the options typed, not their defaults
                     if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"}
            cfg = runs.continued_config(resume=resume, continue_from=continue_from, out=out, data=data, val=val, epochs=epochs,
                                        device=device, given=given)
        else:
            cfg = runs.config_from_options(
                stage, data=data, val=val, out=out, init=init, no_gan=no_gan, adv_weight=adv_weight, mse_weight=mse_weight,
                l1_weight=l1_weight, tg_weight=tg_weight, vgg_weight=vgg_weight, resnet_weight=resnet_weight, k_max=k_max,
                features=features, epochs=epochs, lr=lr, batch=batch, crop=crop, steps=steps, patience=patience,
                psf_sigma_max=psf_sigma_max, poisson_peak_min=poisson_peak_min, gaussian_sigma_max=gaussian_sigma_max,
                val_size=val_size, val_limit=val_limit, device=device, seed=seed, lr_schedule=lr_schedule,
                warmup_steps=warmup_steps, ema=ema, channels_last=channels_last, compile=compile_model, degradations=degradations,
            )
        with training_display(cfg.steps, cfg.epochs) as shown:
            summary = training.train(cfg, shown, resume=bool(resume), continue_from=str(continue_from) if continue_from else None,
                                     overwrite=overwrite)
        if summary["rank"] == 0:
            best = Path(cfg.out) / "best.safetensors"
            if summary["best_val_psnr"] is not None and best.is_file():
                console.print(f"best val PSNR {summary['best_val_psnr']:.2f} dB at epoch {summary['best_epoch']}; model: {best}", highlight=False)
            else:
                console.print(f"no epoch was run (the run had reached --epochs {cfg.epochs}); raise --epochs to go on", highlight=False)


# ------------------------------------------------------------------------------------------- profile


@app.command()
def profile(
    images: list[Path] = typer.Argument(..., help="Images of the same field and size: e.g. original, bicubic and enhanced."),
    line: str = typer.Option(..., "--line", help="x0,y0,x1,y1 in pixels (x to the right, y down; sub-pixel allowed)."),
    out: Path = typer.Option(..., "--out", "-o", help="The plot, a PNG file; '-' = standard output."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Also write the sampled values: distance_px and one column per image (headed by the file names; names that are not UTF-8 as their own bytes); '-' = standard output."),
    title: Optional[str] = typer.Option(None, "--title", help="Plot title [default: the line's end points]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out or --csv file. An input image is never replaced."),
):
    """Plot the intensity along one line through several images (like the paper's Figs. 5-7).

    One sample per pixel of line length, bilinear interpolation, in each file's own units; colour
    images give the mean over channels; a stack gives its first frame. --out and --csv are checked
    before any image is read: neither may name an input image, nor an existing file without
    --overwrite.
    """
    from ficli.tools.profile import check_outputs, parse_line, profile_files

    with reporting_errors("interrupted: nothing was written; run it again"):
        one_stdout(**{"--out": out, "--csv": csv_file})
        check_outputs(images, out, csv_file, overwrite=overwrite)
        profile_files(images, parse_line(line), out, csv_file, title)
        stdout_console(out, csv_file).print(f"wrote {out}" + (f" and {csv_file}" if csv_file else ""), highlight=False, markup=False)


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
):
    """Time the parts that decide speed: TG loss (direct vs FFT), the generator and its body, tiled
    vs whole, a training step (fp32/bf16, channels-last, compiled with --compile), each stage of
    `ficli video`; then the performance targets against what was measured.

    Best of --repeats runs after a warm-up (other jobs on a shared machine only add time). GFLOP
    are counted from the convolution shapes. Ratios measured in the same run are the numbers to
    compare across machines.
    """
    from ficli.tools import bench as b
    from ficli.inference.device import resolve_device
    from ficli.tools.timing import format_table, parse_sizes

    with reporting_errors():
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
                    measuring=lambda title: err_console.status(f"timing: {title} …"), on_table=on_table)


# --------------------------------------------------------------------------------------------- video


@app.command()
def video(
    src: Path = typer.Argument(..., help="Input video: anything ffmpeg reads (MP4, MOV, MKV, AVI...)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output video (.mp4, .m4v, .mov or .mkv). Default: NAME_ficli.mp4 next to the input NAME.ext."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (and frames in --frames-dir). The input is never overwritten."),
    model: ModelOption = None,
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Original (bicubic-enlarged with --upscale) left, enhanced right: twice the width."),
    compare_only: bool = typer.Option(False, "--compare-only", help="A split preview at the frame's own width: left half original, right half enhanced."),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="Small 'original' / 'ficli' labels in --side-by-side and --compare-only frames."),
    channels: str = typer.Option("auto", "--channels", help="auto: gray video (also gray stored as RGB: channels within 2 levels) as one channel, colour video by its luminance; gray: the channels' mean (gray output); luma: Y of YCrCb enhanced, chroma kept; rgb: each channel."),
    scale: str = typer.Option("auto", "--scale", callback=blur_scale_value, help=f"Blur scale s of the video, for a model conditioned on it: 1 = already sharp, 4 = as blurred as a ×4 bicubic enlargement; a number from 1 to 8, or auto (default): estimated once for the whole video from the power spectrum of {SCALE_FRAMES} of the frames sampled for the range (the central {SCALE_CROP}×{SCALE_CROP} pixels of each, as the network sees them after --upscale), and printed; frames too small or flat to estimate get the model's training scale. Lossy coding (H.264) adds noise where blur removed detail, so there auto may read low: give S where known. An s above the model's training scale is told that scale. The shipped default model is conditioned; a plain one (--model paper) ignores auto and refuses S."),
    upscale: int = typer.Option(1, "--upscale", min=1, help="Bicubic-enlarge frames by this factor before enhancing: for video at its native resolution. 1 = same size, for video enlarged from low resolution or blurred. The output stays within 400 million pixels a frame."),
    start: float = typer.Option(0.0, "--start", min=0, help="Start this many seconds into the video."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Process this many seconds (default: to the end)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Process at most this many frames."),
    frames_dir: Optional[Path] = typer.Option(None, "--frames-dir", help="Also write each enhanced frame here as NAME_000001.png, ... (16-bit PNG for high-bit-depth video)."),
    crf: int = typer.Option(18, "--crf", min=0, max=51, help="H.264 quality: 0 lossless, 18 visually lossless, 23 x264's default; lower is larger."),
    preset: str = typer.Option("medium", "--preset", help="x264 speed/size trade-off: ultrafast ... medium ... veryslow."),
    tile: TileOption = VIDEO_TILE,  # 720p frames whole, 1080p in two tiles
    overlap: OverlapOption = 32,
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Frames run through the network at once (the same tile of each) [default: 1 on the CPU, where it is fastest, 4 on a GPU]."),
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    compile_model: CompileOption = False,
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Feed [0, 1]-scaled intensities as they are, without the percentile mapping."),
    quiet: QuietOption = False,
):
    """Sharpen a video (e.g. a NIR surgical recording) frame by frame into an H.264 file.

    **What the default does**: at the default --upscale 1 the frames keep their size; the default
    model is told one blur scale for the video (--scale auto: estimated from sampled frames and
    printed) and sharpens that much; video sharp to the pixel comes back nearly unchanged. Give
    --upscale S to enlarge native-resolution video S× first (output S× larger).

    Frames stream from ffmpeg through the network and back into ffmpeg (decoding, inference and
    encoding overlap; memory stays small for hour-long files). The output is H.264 (yuv420p, BT.709)
    at the input's frame rate, with the input's audio copied unchanged (re-encoded to AAC only where
    MP4 cannot hold it). It is written to a temporary file and renamed when complete.

    **Normalisation**: one 0.1/99.9-percentile intensity range for the whole selected section
    (never per frame, which would flicker), computed from up to 32 frames spread evenly over it.
    **Blur scale** (a model conditioned on it): one s for the whole section, --scale S or estimated
    from 16 of those frames and printed; lossy coding (H.264) hides blur, so there it may read low.

    Variable-frame-rate input is made constant at the stream's nominal rate (frames repeated or
    dropped), so every frame keeps its time and the audio stays in step. An odd width or height is padded by one repeated pixel
    (yuv420p needs even sides). Ctrl-C finishes the encoder on the frames already done and keeps
    them, playable, as OUT.partial.mp4 (OUT is written only when complete).
    """
    from ficli.image import io

    with reporting_errors():
        if side_by_side and compare_only:
            raise typer.BadParameter("choose one of --side-by-side and --compare-only", param_hint="--compare-only")
        for path in (src, model):  # before torch is imported (seconds)
            if path is not None:
                io.check_input_file(path)
        from ficli.inference.device import default_batch, resolve_device, resolve_precision
        from ficli.inference.engine import TileConfig
        from ficli.inference.runtime import ready_generator, scale_chooser
        from ficli.video.pipeline import Section, VideoInterrupted, VideoOptions, check_video, enhance_video

        with usage_errors():
            dev = resolve_device(device)
            options = VideoOptions(
                out=out, overwrite=overwrite, layout="side-by-side" if side_by_side else "compare" if compare_only else "enhanced",
                labels=labels, channels=channels.lower(), upscale=upscale, normalize=not no_normalize,
                section=Section(start=start, duration=duration, max_frames=max_frames), frames_dir=frames_dir,
                crf=crf, preset=preset, batch=batch or default_batch(dev),
                tile=TileConfig(tile=tile, overlap=overlap, batch=1, device=str(dev), precision=precision),
            )
            resolve_precision(precision, dev)
        try:
            source = check_video(src, options)  # input and output problems before the model loads
            generator, info = ready_generator(model, dev, compile_model=compile_model, cuda_graphs=dev.type == "cuda", on_notice=note)
            with usage_errors():
                options = dataclasses.replace(options, scale_for=scale_chooser(info, scale))
            with video_display(quiet) as (on_start, on_progress, on_done):
                report = enhance_video(src, generator, options, info["config"].channels, info=source,
                                       on_start=on_start, on_progress=on_progress, on_notice=note)
                on_done(report.frames)
        except VideoInterrupted as stop:
            err_console.print(f"interrupted: {stop}", highlight=False, soft_wrap=True, markup=False)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            err_console.print("interrupted before any frame was written; no file was left")
            raise typer.Exit(130) from None
    if quiet:
        return
    console.print(
        f"video: {report.frames} frames in {report.seconds:.1f} s, {report.fps:.2f} frames/s end to end "
        f"(network alone {report.network_fps:.2f} frames/s) -> {report.out}",
        highlight=False, soft_wrap=True, markup=False,
    )


# -------------------------------------------------------------------------------------- export, info


@app.command()
def export(
    model: ModelOption = None,
    format_name: str = typer.Option(..., "--format", "-f", help="onnx (opset 17, dynamic batch, height and width), torchscript (torch.jit), or bioimageio (a BioImage Model Zoo package, .zip, for deepImageJ, ilastik, napari)."),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write (.onnx, .pt, .zip); written only when complete and checked."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    scale: Optional[float] = typer.Option(None, "--scale", help="For a model conditioned on the blur scale: the scale s (1 to 8) fixed in the exported graph [default: the model's training scale]. Refused for a plain model."),
):
    """Export a model for other tools: ONNX, TorchScript, or a bioimage.io package.

    The exported graph is the generator on the normalised scale: feed each image mapped by its own
    0.1 and 99.9 percentiles to 0 and 1, as `ficli enhance` does; map the output back with
    y·(hi − lo) + lo. Any height and width of at least 4 pixels (padded to multiples of 4 inside
    the graph). The written file is loaded back and checked against ficli's generator (within 1e-4)
    before it is put in place. ONNX and bioimageio need `pip install 'ficli[export]'`.

    Exit code: 2 for an unknown --format or a --scale the model cannot take; 1 for a file that is
    not a ficli model, an existing --out without --overwrite, or a missing package.
    """
    from ficli.image import io

    with reporting_errors("interrupted: nothing was written; run it again"):
        with usage_errors():
            from ficli.tools.export import check_format, check_target

            check_format(format_name)
        check_target(out, overwrite)
        if model is not None:
            io.check_model_file(model)
        from ficli.tools.export import export_model

        with usage_errors(), err_console.status(f"exporting to {format_name} …"):  # --scale: a usage error
            report = export_model(model, format_name, out, overwrite=overwrite, scale=scale)
        console.print(report.describe(), highlight=False, soft_wrap=True, markup=False)


@app.command()
def info(
    model: Optional[Path] = typer.Argument(None, help="Model file (.safetensors), or 'paper' for the shipped paper-protocol model [default: the shipped default model]."),
    json_output: bool = typer.Option(False, "--json", help="Print everything the file records as JSON on standard output, for scripts."),
):
    """What a model file holds: architecture, blur scale, training stages (data, settings, time) and
    validation scores. Reads the file's header only (no weights are loaded)."""
    import json

    from ficli.api import model_summary

    with reporting_errors("interrupted"):
        if model is not None:
            from ficli.image import io

            io.check_model_file(model)
        summary = model_summary(model)
        if json_output:
            print(json.dumps(summary, indent=2))
            return
        console.print(info_table(summary))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
