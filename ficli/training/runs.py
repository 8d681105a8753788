"""A training run: its settings, its folder, what it writes there and how it continues.

`TrainConfig` holds a run's settings; `PRESETS` the two stages' (docs/DESIGN.md section 3), which
`config_from_options` overrides with the options given, and `continued_config` reads back for
--resume (from RUN_DIR/checkpoint.pt) or --continue-from (from a model file's training state).
The run folder is checked before anything loads (`check_run_folder`, `check_new_run_folder`); the
run writes, each atomically, its checkpoint (`save_checkpoint`), its model files with their
training story (`export_model`), metrics.csv and curves.png.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import json
import math
import os
import platform
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import torch

from ficli.image import io
from ficli.model import modelfile
from ficli.inference.device import cpu_name
from ficli.errors import ConfigError, FicliError, InputError, ModelFileError, OutputError
from ficli.image.degrade import KERNELS, POISSON_PEAK_MAX
from ficli.image.intensity import HI_PCT, LO_PCT
from ficli.model.losses import FINETUNE, PRETRAIN, LossWeights
from ficli.model.nets import GeneratorConfig

CHECKPOINT = "checkpoint.pt"


# Everything a run writes into RUN_DIR (each atomically).
RUN_FILES = (CHECKPOINT, "last.safetensors", "best.safetensors", "metrics.csv", "curves.png", "summary.json")


LR_SCHEDULES = ("constant", "cosine")
# "paper": every input made by the paper's fixed ×scale PIL bicubic (optional PSF blur and noise from
# the TrainConfig ranges); "family": each crop drawn from the family of docs/DEGRADATIONS.md (four
# kernels, continuous s in [1, 4], PSF, Poisson-Gaussian noise, some crops left sharp) and the
# generator told its s (GeneratorConfig.scale_input); "chain": the family plus the acquisition chain of
# saved files; "resampling": the family's kernels and s alone; "noisy-resampling": those with the
# family's Poisson-Gaussian noise; "video": resampling with half of the blurred crops coded as H.264
# frames; "native": a Gaussian PSF at the native grid alone, told s = 2.4·σ (`pairs.RANGES`).
DEGRADATIONS = ("paper", "family", "chain", "resampling", "noisy-resampling", "video", "native")
CONDITIONED = ("family", "chain", "resampling", "noisy-resampling", "video", "native")  # the --degradations whose generator is told the blur scale
CONDITIONED_NAMES = ", ".join(CONDITIONED[:-1]) + " or " + CONDITIONED[-1]  # for messages: "family, chain, ... or native"


@dataclass(frozen=True)
class StagePreset:
    weights: LossWeights
    lr: float
    batch: int
    crop: int


# docs/DESIGN.md's table, section 3 (perceptual weights at 0: no ImageNet weights ship with ficli).
PRESETS = {
    "pretrain": StagePreset(PRETRAIN, lr=1e-3, batch=64, crop=64),
    "finetune": StagePreset(FINETUNE, lr=1e-6, batch=64, crop=32),
}


# The largest --crop: a training batch is held whole on the device (a 16×16 image padded to a
# 40000-pixel crop asked numpy for gigabytes, after the run folder was made, before this limit).
MAX_CROP = 4096


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...]
    val: str
    out: str
    stage: str = "pretrain"
    init: str | None = None
    weights: LossWeights = PRETRAIN
    gan: bool = True
    lr: float = 1e-3
    batch: int = 64
    crop: int = 64
    epochs: int = 100
    steps: int = 100  # batches per epoch
    patience: int = 10
    scale: int = 4
    psf_sigma_max: float = 0.0  # PSF sigma drawn uniformly in [0, max] per crop (HR pixels)
    poisson_peak_min: float = 0.0  # if > 0: peak photons drawn log-uniformly in [min, 10·min]
    gaussian_sigma_max: float = 0.0  # read noise drawn uniformly in [0, max] (fraction of max)
    val_size: int = 256  # validation images are centre-cropped to at most this side (0 = whole)
    val_limit: int = 0  # at most this many validation images (0 = all)
    tile: int = 512
    device: str = "auto"
    seed: int = 0
    generator: GeneratorConfig = GeneratorConfig()
    vgg_weights: str | None = None
    resnet_weights: str | None = None
    lr_schedule: str = "constant"  # "constant" or "cosine" (to 0 at the last step of --epochs)
    warmup_steps: int = 0  # linear warm-up of the learning rate over this many steps
    ema: float = 0.0  # decay of the generator's weight average used for validation and export; 0 = off
    channels_last: bool = True  # channels-last tensors in training: 1.39× per step at crop 64 on AMD EPYC (docs/BENCHMARKS.md)
    compile: bool = False  # torch.compile the generator and critic for training
    degradations: str = "paper"  # how inputs are made: one of DEGRADATIONS
    kernels: tuple[str, ...] = KERNELS  # family/chain: the resampling kernels crops are drawn from (and validated on)
    told_over: float = 1.0  # conditioned runs: half of the crops told up to this many times their s (DegradationRanges.told_over)
    noise_kept: bool = False  # conditioned runs: the target keeps the noise its input was given (DegradationRanges.noise_kept)
    noise_kept_peak: float = 0.0  # with noise_kept: only noise as weak as this many photons' shot noise is kept; 0 = all
    scale_min: float = 1.0  # conditioned runs: blurred crops' s in (scale_min, 4]; above 1 none left sharp (DegradationRanges.scale_min)

    def __post_init__(self):
        if self.degradations not in DEGRADATIONS:
            raise ConfigError(f"--degradations {self.degradations!r}: use {' or '.join(DEGRADATIONS)}")
        if not self.kernels or any(k not in KERNELS for k in self.kernels) or len(set(self.kernels)) != len(self.kernels):
            raise ConfigError(f"--kernels {','.join(self.kernels)!r}: a comma-separated list of distinct kernels from {','.join(KERNELS)}")
        for given, option in (
            (tuple(self.kernels) != KERNELS, "--kernels chooses among the family's kernels"),
            (self.told_over != 1.0, "--told-over tells a conditioned generator more than the blur scale"),
            (self.noise_kept, "--noise-kept keeps the noise of the degradation family in the target"),
            (self.scale_min != 1.0, "--scale-min narrows the blur scales of the degradation family"),
        ):
            if given and self.degradations not in CONDITIONED:
                raise ConfigError(option + ": give it with --degradations " + CONDITIONED_NAMES)
        if self.generator.scale_input != (self.degradations in CONDITIONED):
            raise ConfigError("a generator conditioned on the blur scale trains with --degradations " + CONDITIONED_NAMES + ", and only such a one")
        if self.generator.coarse_kept and not self.generator.scale_input:
            raise ConfigError("--keep-coarse keeps what a blur of the told scale passes: give it with --degradations " + CONDITIONED_NAMES)
        if self.noise_kept_peak and not self.noise_kept:
            raise ConfigError("--noise-kept-peak says which noise --noise-kept keeps: give it with --noise-kept")
        if not (math.isfinite(self.noise_kept_peak) and 0 <= self.noise_kept_peak <= POISSON_PEAK_MAX):
            raise ConfigError(f"--noise-kept-peak {self.noise_kept_peak}: photons from 0 (all noise kept) to 1e9")
        if not (math.isfinite(self.scale_min) and 1 <= self.scale_min < 4):
            raise ConfigError(f"--scale-min {self.scale_min}: a blur scale from 1 (the whole family) to below 4")
        if not (math.isfinite(self.told_over) and 1 <= self.told_over <= 4):
            raise ConfigError(f"--told-over {self.told_over}: a ratio from 1 (off) to 4")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"--lr-schedule {self.lr_schedule!r}: use {' or '.join(LR_SCHEDULES)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr {self.lr}: the learning rate must be a finite number above 0")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema {self.ema}: use 0 (off) or a decay in [0, 1), e.g. 0.999")
        if self.warmup_steps < 0 or self.batch < 1 or self.crop < 1 or self.steps < 1:
            raise ConfigError("--warmup-steps must be 0 or more; --batch, --crop and --steps 1 or more")
        if self.crop > MAX_CROP or self.batch * self.crop**2 > io.MAX_PIXELS:
            raise ConfigError(
                f"--crop {self.crop} with --batch {self.batch} is more than training can hold (a crop side of at most "
                f"{MAX_CROP}, and --batch × --crop² at most {io.MAX_PIXELS:,} pixels); crops of 32-64 pixels are usual "
                "(the paper's): give a smaller --crop"
            )

    @staticmethod
    def for_stage(stage: str, **overrides) -> "TrainConfig":
        """A config with the stage's presets, then `overrides` (None values are ignored)."""
        if stage not in PRESETS:
            raise ConfigError(f"unknown --stage {stage!r}; use pretrain or finetune")
        p = PRESETS[stage]
        base = dict(stage=stage, weights=p.weights, lr=p.lr, batch=p.batch, crop=p.crop)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig(**base)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        """The config `to_dict` gave; settings added since (absent in older runs) take their defaults."""
        d = dict(d)
        # Older runs recorded lo_pct/hi_pct, which training never read: it maps its images with
        # intensity.LO_PCT/HI_PCT, as enhance does, so those runs continue exactly without them.
        d.pop("lo_pct", None), d.pop("hi_pct", None)
        unknown = set(d) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise ConfigError(f"the run's settings hold {sorted(unknown)}, unknown to this ficli: update ficli")
        d["data"] = tuple(d["data"])
        d["kernels"] = tuple(d.get("kernels", KERNELS))
        d["weights"] = LossWeights(**d["weights"])
        d["generator"] = GeneratorConfig(**d["generator"])
        return TrainConfig(**d)


# ------------------------------------------------------------------------- settings from options


def config_from_options(stage: str, *, data, val, out, init=None, no_gan: bool = False, adv_weight=None, mse_weight=None,
                        l1_weight=None, tg_weight=None, vgg_weight: float = 0.0, resnet_weight: float = 0.0, k_max: str = "N/2",
                        features: int = 64, epochs: int | None = None, degradations: str = "paper", keep_coarse: bool = False,
                        **settings) -> TrainConfig:
    """A new run's settings from `ficli train`'s options: the stage's presets (`PRESETS`), each
    overridden by an option that was given (None: not given). `settings` are TrainConfig fields
    (lr, batch, crop: None for the stage's). FicliError for a missing folder, an unknown --stage or
    a crop that is not a multiple of 4 (the generator's grid)."""
    if not data or not val or not out:
        raise FicliError("give --data, --val and --out (or --resume RUN_DIR / --continue-from MODEL --out NEWDIR to continue a run)")
    preset = PRESETS.get(stage)
    if preset is None:
        raise FicliError(f"unknown --stage {stage!r}; use pretrain or finetune")
    w = preset.weights
    weights = LossWeights(
        adv=0.0 if no_gan else (w.adv if adv_weight is None else adv_weight),
        mse=w.mse if mse_weight is None else mse_weight,
        smooth_l1=w.smooth_l1 if l1_weight is None else l1_weight,
        vgg=vgg_weight,
        resnet=resnet_weight,
        tg=w.tg if tg_weight is None else tg_weight,
        k_max=int(k_max) if k_max.isdigit() else k_max,
    )
    cfg = TrainConfig.for_stage(stage, data=tuple(data), val=val, out=str(out), init=str(init) if init else None, weights=weights,
                                gan=not no_gan, epochs=epochs or 100, degradations=degradations,
                                generator=GeneratorConfig(features=features, scale_input=degradations in CONDITIONED, coarse_kept=keep_coarse),
                                **settings)
    if cfg.crop % 4:
        raise FicliError(f"--crop must be a multiple of 4, got {cfg.crop}")
    return cfg


# With --resume or --continue-from the run's own settings hold; these may be given anew (data that
# moved, more epochs, another device). Any other option given must equal the run's setting.
RUN_MAY_CHANGE = {"data", "val", "out", "resume", "continue_from", "epochs", "device", "overwrite", "quiet"}
# Options whose name or value differs from the setting they make: option -> (setting, value as stored).
_OPTION_SETTINGS = {"no_gan": ("gan", lambda v: not v), "tg_weight": ("tg", None), "adv_weight": ("adv", None), "mse_weight": ("mse", None),
                    "l1_weight": ("smooth_l1", None), "vgg_weight": ("vgg", None), "resnet_weight": ("resnet", None),
                    "init": ("init", lambda v: str(v) if v else None), "keep_coarse": ("coarse_kept", None),
                    "kernels": ("kernels", lambda v: kernel_list(v)), "k_max": ("k_max", lambda v: int(v) if str(v).isdigit() else v)}


def continued_config(*, resume=None, continue_from=None, out=None, data=None, val=None, epochs: int | None = None,
                     device: str = "auto", given: dict | None = None) -> TrainConfig:
    """The settings of a run continued with --resume RUN_DIR or --continue-from MODEL --out NEWDIR.

    --data, --val, --epochs and --device may be given anew; `given` (option name -> value, the
    options given on the command line) must otherwise match the run's settings, or ConfigError
    names those that differ."""
    if continue_from:
        if not out:
            raise FicliError("--continue-from needs --out NEWDIR, the folder the continued run writes to")
        cfg = read_continue_config(continue_from, str(out), data=tuple(data) if data else None, val=val, epochs=epochs,
                                   device=device if device != "auto" else None)
    else:
        cfg = read_run_config(resume)
        cfg = dataclasses.replace(cfg, out=str(resume), epochs=epochs or cfg.epochs, data=tuple(data) if data else cfg.data,
                                  val=val or cfg.val)
    differ = differing_settings(cfg, given or {})
    if differ:
        raise ConfigError(
            f"{resume or continue_from}: the run was made with other settings than {', '.join(differ)}; a continued run keeps its "
            "own settings (only --data, --val, --epochs, --device and -q may be given): drop those options, or start "
            "a new run with --out NEWDIR (--init FILE to start from its weights)"
        )
    return cfg


def kernel_list(text: str) -> tuple[str, ...]:
    """--kernels "pil, area" as the tuple TrainConfig holds."""
    return tuple(k.strip() for k in text.split(",") if k.strip())


def differing_settings(cfg: TrainConfig, given: dict) -> list[str]:
    """Of the options `given` (name -> value), those whose value differs from the run's setting in `cfg`
    ("--lr 0.01 (the run's: 0.001)"); options in RUN_MAY_CHANGE are not compared."""
    flat = {**dataclasses.asdict(cfg), **dataclasses.asdict(cfg.weights), **dataclasses.asdict(cfg.generator)}
    differ = []
    for name, value in given.items():
        if name in RUN_MAY_CHANGE:
            continue
        key, convert = _OPTION_SETTINGS.get(name, (name, None))
        value = convert(value) if convert else value
        if key not in flat or flat[key] != value:
            differ.append(f"--{name.replace('_', '-')} {given[name]} (the run's: {flat.get(key, 'not set')})")
    return differ


# ------------------------------------------------------------------- data record, folder, files


def data_fingerprint(folders) -> list[dict]:
    """Per training folder, in order: {"folder": as given, "files": {path inside it: size in bytes}}.

    What a run records of its data (names and sizes, not contents: cheap on every start), so that a
    resumed or moved run can tell that its data changed. Hidden and non-image files are not counted.
    """
    out = []
    for folder in folders:
        try:
            items = io.collect_inputs([folder], recursive=True)
        except InputError:
            items = []
        out.append({"folder": str(folder), "files": {item.rel.as_posix(): item.path.stat().st_size for item in items}})
    return out


def data_differences(recorded: list[dict], current: list[dict]) -> str:
    """'' when the data matches what the run recorded, else what differs (for the error message)."""
    if len(recorded) != len(current):
        return f"the run was trained on {len(recorded)} data folder(s), {len(current)} given"
    notes = []
    for old, new in zip(recorded, current):
        a, b = old["files"], new["files"]
        added, removed = sorted(set(b) - set(a)), sorted(set(a) - set(b))
        changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
        parts = [f"{len(names)} file(s) {what} ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})"
                 for what, names in (("added", added), ("missing", removed), ("changed size", changed)) if names]
        if parts:
            notes.append(f"{new['folder']} (recorded as {old['folder']}): " + "; ".join(parts))
    return "; ".join(notes)


def machine() -> dict:
    """What a session ran on: CPU model, cores, torch version (recorded in model files)."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": str(torch.__version__), "gpu": gpu, "host": platform.node()}


def check_new_run_folder(out: Path, overwrite: bool) -> None:
    """Refuse to start a new run where one was (a checkpoint or trained models), unless `overwrite`."""
    if overwrite:
        return
    if (out / CHECKPOINT).exists():
        raise OutputError(f"{out}: holds a run already; continue it with --resume {out}, choose another --out, or give --overwrite to replace it")
    models = [name for name in ("best.safetensors", "last.safetensors") if (out / name).exists()]
    if models:
        raise OutputError(
            f"{out}: holds trained models ({', '.join(models)}) but no {CHECKPOINT}, which --resume needs; "
            f"continue from a model file with --continue-from {out / models[-1]} --out NEWDIR, choose another --out, "
            "or give --overwrite to replace them"
        )


def check_data(recorded: list[dict] | None, current: list[dict], source, out: Path | None) -> None:
    """ConfigError naming what differs when the training data is not what the run recorded."""
    if recorded is None:
        return  # a run from before fingerprints were recorded
    differs = data_differences(recorded, current)
    if differs:
        raise ConfigError(
            f"the training data differs from what the run in {source} was trained on: {differs}. Give the run's "
            "data (--data FOLDER... in the recorded order), or start a new run from its weights with --init FILE "
            "(the step count and learning-rate schedule then start again)"
        )


def check_run_folder(cfg: TrainConfig) -> None:
    """Refuse a run folder inside a data or validation folder (both are searched with their
    subfolders: a later run would train on curves.png), or one that cannot be written."""
    out = Path(cfg.out).resolve()
    for role, folder in [*(("training", d) for d in cfg.data), ("validation", cfg.val)]:
        src = Path(folder).resolve()
        if out == src or out.is_relative_to(src):
            raise OutputError(
                f"{cfg.out}: lies inside the {role} folder {folder}, which is searched with its subfolders "
                "(the run's curves.png would be read as an image); choose a run folder outside it"
            )
    io.check_writable(out)


def training_state(cfg, epoch, history, best_psnr, best_epoch, rng_states, sessions, fingerprint) -> dict:
    """What a model file records so that a run can go on from it alone (`continue_from`)."""
    return {
        "epoch": epoch,
        "step": epoch * cfg.steps,
        "steps_per_epoch": cfg.steps,
        "lr_schedule": {"schedule": cfg.lr_schedule, "warmup_steps": cfg.warmup_steps, "total_steps": cfg.epochs * cfg.steps,
                        "position": epoch * cfg.steps, "lr": cfg.lr},
        "ema": cfg.ema,
        "rng": rng_states,  # the data order: every rank's crop-sampler state after this epoch
        "seed": cfg.seed,
        "train_seconds": round(history[-1]["train_seconds"], 1),
        "sessions": sessions,
        "data": fingerprint,
        "config": cfg.to_dict(),
        "history": history,
        "best_psnr": best_psnr,
        "best_epoch": best_epoch,
    }


def read_training_state(path: str | Path) -> dict:
    """The training state a model file recorded (see `training_state`); ModelFileError without one."""
    info = modelfile.model_info(path)["info"]
    state = info.get("training")
    if not isinstance(state, dict) or "config" not in state:
        raise ModelFileError(
            f"{path}: holds no training state (an exported model, or one written by an older ficli); "
            "start a new run from its weights with --init instead"
        )
    return state


def read_continue_config(path: str | Path, out: str, **overrides) -> TrainConfig:
    """The settings of the run that wrote model file `path`, moved to `out`; `overrides` (None values
    ignored) may give new data or validation folders, a higher --epochs or another --device."""
    cfg = TrainConfig.from_dict(read_training_state(path)["config"])
    return dataclasses.replace(cfg, out=str(out), **{k: v for k, v in overrides.items() if v is not None})


def export_model(G, path: Path, cfg: TrainConfig, history, best_epoch, stages, state: dict | None = None) -> None:
    """Write G as a safe model file (folded spectral norm) with its training story in the metadata."""
    best = next((r for r in history if r["epoch"] == best_epoch), history[-1])
    stage = {
        "stage": cfg.stage,
        "data": list(cfg.data),
        "val": cfg.val,
        "settings": {k: v for k, v in cfg.to_dict().items() if k not in ("data", "val", "out", "generator")},
        "epochs": len(history),
        "best_epoch": best_epoch,
        "seconds": round(history[-1].get("train_seconds", sum(r["seconds"] for r in history)), 1),
        "val_metrics": {k: v for k, v in best.items() if k.startswith("val_")},
    }
    if state is not None:
        stage["machines"] = sorted({f"{s['machine']['cpu']} ({s['machine']['cores']} cores, torch {s['machine']['torch']})"
                                    for s in state["sessions"]})
    meta = {"scale": cfg.scale, "normalize": {"lo_pct": LO_PCT, "hi_pct": HI_PCT}, "stages": stages + [stage]}
    if state is not None:
        meta["training"] = state
    modelfile.save_model(path, G, cfg.generator, meta)  # folds spectral norm into the saved weights


def save_checkpoint(path, G, D, opt_g, opt_d, ema, epoch, history, best_psnr, best_epoch, stages, rng_states, cfg,
                     sessions, fingerprint, saved_epoch) -> None:
    """checkpoint.pt, atomically: a failure while torch.save writes (a full disk) leaves the previous
    checkpoint in place and says so."""
    state = {
        "generator": G.state_dict(),
        "discriminator": D.state_dict() if D is not None else {},
        "opt_g": opt_g.state_dict(),
        "opt_d": opt_d.state_dict() if opt_d is not None else {},
        "ema": ema.state_dict() if ema is not None else None,
        "epoch": epoch,
        "history": history,
        "best_psnr": best_psnr,
        "best_epoch": best_epoch,
        "stages": stages,
        "rng": rng_states,
        "torch_rng": torch.get_rng_state(),
        "config": json.dumps(cfg.to_dict()),
        "sessions": sessions,
        "data_fingerprint": fingerprint,
    }
    try:
        with io.atomic_write(path) as tmp, open(tmp, "wb") as fh:
            try:
                torch.save(state, fh)
            except RuntimeError as exc:  # torch's writer wraps the file's OSError (ENOSPC...) in a RuntimeError
                cause = exc.__context__
                if isinstance(cause, OSError):
                    raise cause from None
                raise OSError(errno.EIO, str(exc).splitlines()[0][:120]) from None
    except OutputError as exc:
        kept = (f"the checkpoint of epoch {saved_epoch} is intact: free some space and continue with "
                f"ficli train --resume {path.parent}") if saved_epoch else "nothing to resume yet: free some space and start again"
        raise OutputError(f"{exc}; {kept}") from None


def load_checkpoint(path: Path, device) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from; start the run without --resume")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a damaged checkpoint is the user's to replace, not a crash
        raise ModelFileError(
            f"{path}: cannot be read as a ficli checkpoint ({str(exc).splitlines()[0][:120]}); it is damaged (cut short?): "
            f"continue from the run's last model file with --continue-from {path.parent / 'last.safetensors'} --out NEWDIR, "
            "or start a new run"
        ) from None


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The settings a run was started with, from its checkpoint (for --resume)."""
    path = Path(run_dir) / CHECKPOINT
    state = load_checkpoint(path, "cpu")
    try:
        return TrainConfig.from_dict(json.loads(state["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: holds no readable run settings ({exc}); it was not written by ficli train: start a new run") from None


def write_metrics(out: Path, history: list[dict]) -> None:
    buf = StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
    writer.writeheader()
    writer.writerows(history)
    io.write_text(out / "metrics.csv", buf.getvalue())


def plot_curves(out: Path) -> None:
    """curves.png: training losses and validation PSNR (model vs bicubic) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in rows[0]:
        if key.startswith("loss_") and key != "loss_total":
            ax1.plot(epochs, [float(r[key]) for r in rows], label=key[5:])
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_title("training losses (unweighted terms)")
    ax1.legend(fontsize=7)
    ax2.plot(epochs, [float(r["val_psnr"]) for r in rows], "o-", label="model")
    ax2.plot(epochs, [float(r["val_bicubic_psnr"]) for r in rows], "--", label="bicubic")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("PSNR (dB, normalised scale)")
    ax2.set_title("validation")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    with io.atomic_write(out / "curves.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
