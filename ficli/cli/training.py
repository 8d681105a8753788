"""`ficli train`: the training command and the checks on its numbers."""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path
from typing import Optional

import typer

from ficli.cli.app import app
from ficli.console import console, reporting_errors, training_display

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


def _check_paths(data: list[str] | None, val: str | None, init: Path | None, continue_from: Path | None) -> None:
    """InputError for a data folder or model file that does not exist, with the messages training
    would give after loading torch. A list file (@list.txt) or a pattern is left to training."""
    from ficli.errors import InputError
    from ficli.image import io

    for folders, role in ((data or [], "training"), ([val] if val else [], "validation")):
        for folder in folders:
            text = str(folder)
            if not (text.startswith("@") or glob.has_magic(text) or os.path.lexists(text)):
                raise InputError(f"{folder}: {role} folder not found")
    for path in (init, continue_from):
        if path is not None:
            io.check_model_file(path)


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
    degradations: str = typer.Option("paper", "--degradations", help="How training inputs are made: 'paper' (default: every crop ×--scale with PIL's bicubic, the paper's protocol, plus the --psf-sigma-max/--poisson-peak-min/--gaussian-sigma-max ranges) or 'family' (each crop with its own kernel pil|cv2|area|bilinear, blur scale s in [1, 4], PSF and Poisson-Gaussian noise, 15 % left sharp; the generator is told s and --scale auto can set it) or 'chain' (the family plus the acquisition chain of saved files: PSF at the native grid, shot noise down to 15 photons, rounding to 20-4095 grey levels; see docs/DEGRADATIONS.md) or 'resampling' (the family's kernels and s alone: no PSF, no noise) or 'noisy-resampling' (those with the family's Poisson-Gaussian noise, no PSF) or 'video' (resampling with half of the blurred crops coded as 8-bit H.264 frames at CRF 15-30, as ficli video's frames are) or 'native' (a Gaussian PSF at the native grid alone, σ = s/2.4 px, no resampling, no noise: a deconvolution model)."),
    kernels: str = typer.Option("pil,cv2,area,bilinear", "--kernels", help="With --degradations family, chain, resampling, noisy-resampling or video (native resamples nothing): the resampling kernels crops are drawn from and validated on, comma-separated (e.g. pil,area for a model of antialiased resampling: pixel integration, undersampled acquisitions)."),
    keep_coarse: bool = typer.Option(False, "--keep-coarse", help="With --degradations family, chain, resampling, noisy-resampling, video or native: train on the output with its input's coarse content kept, y − B_s(y − x) (B_s a Gaussian of σ = s/2.4 px; docs/DEGRADATIONS.md), as enhance applies it; the model then always runs that way (no --free-coarse)."),
    told_over: float = typer.Option(1.0, "--told-over", min=1, max=4, help="With --degradations family, chain, resampling, noisy-resampling, video or native: tell half of the crops a blur scale up to this many times their own (log-uniform, at most 4), as an estimate that reads high tells it, so that the model learns not to over-sharpen then; 1 (default) = always the true s.", show_default=False),
    noise_kept: bool = typer.Option(False, "--noise-kept", help="With --degradations family, chain, resampling, noisy-resampling, video or native: the target keeps the noise its input was given (the HR crop plus the noise as the degradation left it), so that the model learns to sharpen without removing the grain of an image (off by default: the target is the HR crop)."),
    noise_kept_peak: float = typer.Option(0.0, "--noise-kept-peak", min=0, callback=_finite, help="With --noise-kept: keep only noise as weak as shot noise of this many photons at full intensity or weaker (relative variance 1/peak + read σ² ≤ 1/this); stronger noise is removed from the target, so that the model learns to keep an image's grain and remove heavy noise. 0 (default) = all noise kept.", show_default=False),
    scale_min: float = typer.Option(1.0, "--scale-min", min=1, max=4, help="With --degradations family, chain, resampling, noisy-resampling, video or native: draw the blurred crops' blur scale s in (this, 4] and leave no crop sharp, and validate on those scales alone: a network for large s only (e.g. 2.75 for the second network of a model routed by the told s: training/large-s); 1 (default) = the whole family, 15 % of crops left sharp.", show_default=False),
    val_size: int = typer.Option(256, "--val-size", min=0, help="Centre-crop validation images to this side in pixels (0 = whole images)."),
    val_limit: int = typer.Option(0, "--val-limit", min=0, help="Validate on at most this many images (0 = all)."),
    features: int = typer.Option(64, "--features", min=4, help="Generator width F (feature channels)."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="Channels-last (NHWC) tensors while training [default: on; a step at crop 64 measured 1.39× faster on an AMD EPYC CPU, crop 32 the same]."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the generator and critic for training (compiling takes a minute or more; see docs/BENCHMARKS.md)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps (bf16 autocast on CUDA)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (crops, augmentation, initial weights): repeatable on CPU."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no line per epoch (metrics.csv still gets every epoch) and no closing line; errors and notes still go to stderr."),
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
    with reporting_errors("interrupted"):
        _check_paths(data, val, init, continue_from)  # before torch is imported (seconds)
    from ficli.image import guard
    from ficli.training import runs
    from ficli.training import train as training

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
                kernels=runs.kernel_list(kernels), keep_coarse=keep_coarse, told_over=told_over, noise_kept=noise_kept,
                noise_kept_peak=noise_kept_peak, scale_min=scale_min,
            )
        guard.lock_output(cfg.out, folder=True)  # one run per run folder
        with training_display(cfg.steps, cfg.epochs, quiet) as shown:
            summary = training.train(cfg, shown, resume=bool(resume), continue_from=str(continue_from) if continue_from else None,
                                     overwrite=overwrite)
        if summary["rank"] == 0 and not quiet:
            best = Path(cfg.out) / "best.safetensors"
            if summary["best_val_psnr"] is not None and best.is_file():
                console.print(f"best val PSNR {summary['best_val_psnr']:.2f} dB at epoch {summary['best_epoch']}; model: {best}", highlight=False)
            else:
                console.print(f"no epoch was run (the run had reached --epochs {cfg.epochs}); raise --epochs to go on", highlight=False)
