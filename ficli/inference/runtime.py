"""A model ready to run: the generator of a model file (or one built in memory) as inference runs it.

`enhance`, `video` and `bench` get their generator here, so that each runs it alike: plain weights
(spectral norm folded by `modelfile`), eval mode, no gradients, channels-last (what oneDNN and
cuDNN convolutions run fastest on), cuDNN set up on CUDA, and, with --compile, `torch.compile`
with the eager module as its fallback (`CompiledGenerator`). Out-of-memory errors are told apart by
the one test of them, `errors.is_out_of_memory`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from ficli.image import blurscale, io
from ficli.model import modelfile
from ficli.image.degrade import FREE_FROM, SCALE_RANGE
from ficli.inference.device import configure_cuda
from ficli.errors import ConfigError, ModelFileError, is_out_of_memory

DEFAULT_MODEL_NAME = "ficli-default.safetensors"


def default_model_path(name: str | None = None) -> Path:
    """A shipped model (the default one unless `name` says otherwise): inside the installed package
    (wheel) or in the repository's models/."""
    name = name or DEFAULT_MODEL_NAME
    package = Path(__file__).resolve().parents[1]  # ficli/ (this file is ficli/inference/runtime.py)
    for candidate in (package / "_models" / name, package.parent / "models" / name):
        if candidate.is_file():
            return candidate
    raise ModelFileError(
        f"no shipped model {name} found (in the package or in models/); "
        "give one with --model PATH (train one with 'ficli train')"
    )


def resolve_model_path(path: str | Path | None) -> Path:
    """The file a --model value names: the default model for None, a shipped one for its name in
    `io.SHIPPED_MODELS` ("paper", "noise-kept", "deconvolve") unless a file of that name exists, else the path itself."""
    if path is None:
        return default_model_path()
    if str(path) in io.SHIPPED_MODELS and not Path(path).exists():
        return default_model_path(io.SHIPPED_MODELS[str(path)])
    return Path(path)


def model_card_path(model_path: Path) -> Path | None:
    """The model card beside a shipped model file: models/MODEL_CARD.md for the default model,
    models/MODEL_CARD_NAME.md for ficli-NAME.safetensors; None when there is none."""
    name = "MODEL_CARD.md" if model_path.name == DEFAULT_MODEL_NAME else f"MODEL_CARD_{model_path.stem.removeprefix('ficli-')}.md"
    card = model_path.parent / name
    return card if card.is_file() else None


def load_generator(path: str | Path | None, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The generator of a model file (the default model when `path` is None; the shipped
    paper-protocol model for "paper" and so on: `io.SHIPPED_MODELS`), ready for inference.

    See `prepare_generator` for what "ready" means.
    """
    path = resolve_model_path(path)
    generator, config, meta = modelfile.load_model(path, device=str(device))
    return prepare_generator(generator, device), {"path": str(path), "config": config, **meta}


class CompiledGenerator:
    """`torch.compile` of a module, with the module itself as the fallback.

    Compilation happens on the first call for each input shape; if it fails (no C++ compiler, no
    Triton, an unsupported platform or Python), the failure is reported once through `on_notice`
    and every later call runs the module eagerly, so `--compile` never costs a result. Out-of-memory
    errors (GPU or CPU) are passed on (the engine halves its tiles). `cuda_graphs` (fixed shapes: video frames)
    selects the "reduce-overhead" mode, which replays each shape's kernels as one CUDA graph.
    """

    def __init__(self, module: torch.nn.Module, cuda_graphs: bool = False, on_notice: Callable[[str], None] | None = None):
        self.module = module
        self.on_notice = on_notice
        self.compiled: Callable | None = None
        try:
            self.compiled = torch.compile(module, mode="reduce-overhead" if cuda_graphs else None)
        except Exception as exc:  # torch.compile itself refuses on some platforms and Pythons
            self._fall_back(exc)

    def __call__(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x, *args, **kwargs)
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise
                self._fall_back(exc)
        return self.module(x, *args, **kwargs)

    def _fall_back(self, exc: Exception) -> None:
        self.compiled = None
        if self.on_notice is not None:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.on_notice(f"--compile: torch.compile is not usable here ({type(exc).__name__}: {first[:200]}); "
                           "running without it")


def prepare_generator(generator: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """`generator` (already on `device`) set up for inference, in place: eval mode, no gradients,
    channels-last weights (the engine hands it channels-last tiles); on CUDA also cuDNN for
    inference (`device.configure_cuda`: algorithm search on, TF32 off)."""
    generator.requires_grad_(False).eval().to(memory_format=torch.channels_last)
    if torch.device(device).type == "cuda":
        configure_cuda()
    return generator


def ready_generator(path: str | Path | None, device: torch.device, *, compile_model: bool = False, cuda_graphs: bool = False,
                    on_notice: Callable[[str], None] | None = None) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict]:
    """(the callable to run, the model's metadata): `load_generator`, then with `compile_model` its
    `CompiledGenerator` (`cuda_graphs`: fixed shapes, e.g. video frames; failures told through
    `on_notice`, and the module runs eagerly)."""
    generator, info = load_generator(path, device)
    if compile_model:
        return CompiledGenerator(generator, cuda_graphs=cuda_graphs, on_notice=on_notice), info
    return generator, info


def check_scale(info: dict, requested: float | None) -> bool:
    """Whether the model of `info` (`load_generator`'s metadata: "path", "config", "scale") is
    conditioned on the blur scale. ConfigError for a `requested` s it cannot take: any s for a plain
    model, one outside `degrade.SCALE_RANGE` (1..8) for a conditioned one."""
    if not info["config"].scale_input:
        if requested is not None:
            raise ConfigError(f"--scale {requested:g}: {info['path']} is not conditioned on the blur scale (it was trained for "
                              f"×{info.get('scale', 4)} only); leave --scale out, or use a scale-conditioned model")
        return False
    lo, hi = SCALE_RANGE
    if requested is not None and not lo <= requested <= hi:
        raise ConfigError(f"--scale {requested:g} is outside {lo:g}..{hi:g}; give the blur scale of the input, e.g. 4")
    return True


def fixed_scale(info: dict, requested: float | None) -> float | None:
    """The blur scale to run a model at without looking at an image (`ficli export` fixes it in the
    graph): None for a plain model (a scale given is a ConfigError), `requested` or the training
    scale (metadata "scale") for a scale-conditioned one. The refusals are `check_scale`'s."""
    if not check_scale(info, requested):
        return None
    return float(info.get("scale", 4) if requested is None else requested)


def check_coarse(info: dict, keep_coarse: bool | None) -> bool | None:
    """`keep_coarse` as the model of `info` must run: True (always kept) for a model trained with the
    coarse content kept (`GeneratorConfig.coarse_kept`, `ficli train --keep-coarse`), whose raw output
    is not an image (ConfigError for --free-coarse, `keep_coarse` False); True when not given (None)
    for a model file whose metadata says "keep_coarse": true (its card's measured choice: the
    noise-kept model); else as given (None: the rule of `degrade.coarse_kept`)."""
    if getattr(info["config"], "coarse_kept", False):
        if keep_coarse is False:
            raise ConfigError(f"--free-coarse: {info['path']} was trained with the coarse content kept (ficli train --keep-coarse), "
                              "so its output is an image only with it; leave --free-coarse out, or use a model trained without it")
        return True
    if keep_coarse is None and modelfile.asks_keep_coarse(info):
        return True
    return keep_coarse


# An estimate whose 68 % interval spans more than this ratio (high / low) is unsure: its lower end
# is taken, which sharpens less (a blur told too small is left partly undone; one told too large is
# over-sharpened, the harm the default must not do).
UNSURE_RATIO = 1.6
# The template fit with a saved file's rounding noise taken off (`blurscale.estimate_below_floor`) is
# heeded only where it and the learned reading both place the told s at or above this, where the
# default takes its network's output as it is (degrade.FREE_FROM): there it reads 8-bit files shrunk
# ×4 that the plain fit reads as sharp; heeded at every s it also reads images smooth as they are as
# blurred (held-out worst image at ×1.5 −2.26 → −3.17 dB; 6 of 36 validation cells more with an image
# over 0.1 dB below its input), docs/DEGRADATIONS.md "Under the rounding noise".
BELOW_FLOOR_FROM = FREE_FROM


def scale_chooser(info: dict, requested: float | None) -> Callable[..., tuple[float, str]] | None:
    """For a model conditioned on the blur scale (`GeneratorConfig.scale_input`), the function that
    picks the s to tell it for one image's frames (float arrays at their native size, any affine
    intensity scale; any iterable, read once): `requested` (--scale S), else the estimate pooled
    over the frames (`blurscale.readings`, with its 68 % interval; `told_scale`: the
    smaller of it and the template fit), else, when the image is too small or flat to estimate
    or no frames are given (None), the model's training scale (metadata "scale"). With
    `upscale` k > 1 the frames are the small ones and the resampling part is known: s = k × the
    estimate of the blur that remains on the small grid. An s above the training scale is told the
    training scale. Returns (s, how it was chosen; `source` is added after "estimated", e.g.
    " from 16 frames"). None for a plain model, which is told nothing. The refusals are
    `check_scale`'s, before any image is read. After each call, `choose.residual` holds the
    estimate's spread (the learned estimate's σ of log s, or the template fit's RMS misfit in
    decades; the lower, the surer; None when nothing was estimated), which the record of an output
    keeps."""
    if not check_scale(info, requested):
        return None
    trained = float(info.get("scale", 4))

    def choose(frames: Iterable | None = None, source: str = "", upscale: int = 1) -> tuple[float, str]:
        choose.residual = None
        if requested is not None:
            s, how = float(requested), "given"
        elif frames is None:
            s, how = trained, "the model's training scale"
        else:
            estimate, template = blurscale.readings(frames)
            s, how = _estimated(estimate, template, source, upscale, trained)
            if estimate.scale is not None:
                choose.residual = round(estimate.residual, 4)
        if s > trained:
            return trained, f"{how}: {s:.2f}, above the {trained:g} the model was trained for: told {trained:g}"
        return max(s, 1.0), how

    return choose


def _estimated(estimate: blurscale.ScaleEstimate, template: blurscale.ScaleEstimate, source: str, upscale: int,
               trained: float) -> tuple[float, str]:
    """(s, how) from an estimate on the native grid, told `upscale`× for an enlargement."""
    if estimate.scale is None:
        return trained, f"{estimate.note}: the model's training scale"
    s, how = told_scale(estimate, template)  # with --upscale: on the small grid's readings (measured only without it)
    how = f"estimated{source}{how}"
    if upscale > 1:
        how += f"; {s:.2f} on the native grid × --upscale {upscale}"
        s *= upscale
    return s, how


def learned_reading(estimate: blurscale.ScaleEstimate) -> tuple[float, str]:
    """The learned `estimate`'s s and its words: its value with its 68 % interval, or the interval's
    lower end where the interval is wider than UNSURE_RATIO (`told_scale` without the template fit)."""
    if estimate.low is None:
        return estimate.scale, ""
    if estimate.high / max(estimate.low, 1e-6) > UNSURE_RATIO:
        return estimate.low, f": {estimate.confidence}; unsure, so its lower end {estimate.low:.2f}"
    return estimate.scale, f": {estimate.confidence}"


def told_scale(estimate: blurscale.ScaleEstimate, template: blurscale.ScaleEstimate) -> tuple[float, str]:
    """The s told for a learned `estimate` and the words after "estimated": its value with its
    68 % interval (where the interval is wider than UNSURE_RATIO, its lower end), or the
    `template` fit's where that reads lower. The learned estimate reads saved files right
    (docs/DEGRADATIONS.md), but told that s the default model over-sharpens images that are smooth
    as they are (sources never trained on: −4.2 dB at s = 1.5 against −1.5 with the smaller
    reading, models/MODEL_CARD.md), so the default tells the smaller of the two readings. Where the
    file's rounding noise hides the top of its spectrum, the template fit is the one with that
    noise taken off (`template.below_floor`) when the smaller of it and the learned reading is
    BELOW_FLOOR_FROM or more."""
    s, how = learned_reading(estimate)
    if estimate.low is None:
        return s, how
    below = template.below_floor
    if below is not None and min(s, below) >= BELOW_FLOOR_FROM:
        if below < s:
            return below, how + f"; the template fit under the file's rounding noise reads {below:.2f}, the smaller, which is told"
        return s, how + f"; the template fit under the file's rounding noise reads {below:.2f}"
    other = template.scale
    if other is not None and other < s:
        s, how = other, how + f"; the template fit reads {other:.2f}, the smaller, which is told"
    return s, how


def told(generator: Callable, scale: float | None) -> Callable:
    """`generator` with the blur scale bound (`G(x, scale=s)`), or as it is when `scale` is None."""
    return generator if scale is None else functools.partial(generator, scale=scale)
