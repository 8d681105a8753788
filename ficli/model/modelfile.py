"""Model files: a generator's weights and metadata in one safetensors file (docs/DESIGN.md section 6).

A model file holds the generator's tensors with spectral norm folded into plain weights (what
inference runs) and string metadata:

    format          "ficli-generator"
    format_version  "1"
    config          JSON of GeneratorConfig
    scale           the degradation scale the model was trained for, e.g. "4"
    info            JSON of everything else (training stages, data, settings, validation metrics)

Loading reads the header first (safetensors parses it without executing anything), checks the
format tag and that every tensor name and shape matches the architecture the config describes, and
only then reads the tensors. Anything else (a missing file, a pickle, a truncated file, another
architecture) raises ModelFileError naming the file. Pickles are never unpickled: torch.load is
not called here.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ficli.image import io
from ficli.errors import ModelFileError
from ficli.model.nets import Generator, GeneratorConfig, folded_state_dict

FORMAT = "ficli-generator"
FORMAT_VERSION = "1"


def save_model(
    path: str | os.PathLike, generator: Generator, config: GeneratorConfig, metadata: dict
) -> Path:
    """Write `generator` to `path` (.safetensors) atomically; returns the path.

    Spectral norm is folded into the saved weights (the generator passed in is not changed). `metadata` must
    be JSON-serialisable; its "scale" (default 4) is stored on its own, the rest as "info".
    `load_model` gives back the same metadata dict.
    """
    path = Path(path)
    if generator.config != config:
        raise ValueError(f"generator was built with {generator.config}, not {config}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in folded_state_dict(generator).items()}
    bad = _non_finite(tensors)
    if bad:
        raise ModelFileError(
            f"{path}: not written: the generator holds NaN or infinite weights ({bad}), a training run that "
            "diverged; lower the learning rate (--lr) and train again"
        )
    info = {k: v for k, v in metadata.items() if k != "scale"}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(asdict(config)),
        "scale": str(int(metadata.get("scale", 4))),
        "info": json.dumps(info),
    }
    with io.atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def _read_header(path: Path) -> tuple[GeneratorConfig, dict, dict[str, tuple[int, ...]]]:
    """(config, metadata, tensor shapes) from a model file's header, without reading tensors."""
    if not path.is_file():
        raise ModelFileError(
            f"model file {path} does not exist; give --model with a .safetensors file written by `ficli train`"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # SafetensorError for a pickle, a truncated or a tampered file
        raise ModelFileError(
            f"{path} is not a readable safetensors model file ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "ficli loads only safetensors files written by `ficli train` (never pickles): "
            "use another file or train the model again"
        ) from None
    if header.get("format") != FORMAT:
        raise ModelFileError(
            f"{path} is a safetensors file but not a ficli model (format tag {header.get('format')!r}, "
            f"expected {FORMAT!r}); give a model written by `ficli train`"
        )
    if header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {header.get('format_version')!r}; this ficli reads version "
            f"{FORMAT_VERSION}: update ficli or use a model written by this version"
        )
    try:
        cfg = json.loads(header["config"])
        known = {f.name for f in fields(GeneratorConfig)}
        if not isinstance(cfg, dict) or set(cfg) - known:
            raise ValueError(f"unknown settings {sorted(set(cfg) - known) if isinstance(cfg, dict) else cfg}")
        config = GeneratorConfig(**cfg)
        metadata = {"scale": int(header["scale"]), **json.loads(header.get("info", "{}"))}
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path} has damaged metadata ({type(e).__name__}: {e}); use another model file") from None
    _check_settings(path, config, metadata["scale"])
    return config, metadata, shapes


# What a generator's settings may be (GeneratorConfig fields): whole numbers in these ranges, and
# scale_input a true/false. Anything else cannot have been written by `ficli train`.
SETTING_RANGES = {"channels": (1, 4), "features": (1, 4096), "growth": (1, 4096), "layers": (1, 256), "blocks": (1, 256)}


def _check_settings(path: Path, config: GeneratorConfig, scale: int) -> None:
    """ModelFileError naming the file and the setting when the metadata holds one no generator can
    have (features -5, blocks 0, features "x"), before anything is built from it."""
    for name, (low, high) in SETTING_RANGES.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ModelFileError(
                f"{path} has an impossible setting in its metadata: {name} = {value!r} (a whole number "
                f"{low}..{high} is expected); the file is damaged or was not written by ficli: use another model file"
            )
    if not isinstance(config.scale_input, bool):
        raise ModelFileError(f"{path} has an impossible setting in its metadata: scale_input = {config.scale_input!r} "
                             "(true or false is expected); use another model file")
    if not 1 <= scale <= 8:
        raise ModelFileError(f"{path} has an impossible setting in its metadata: scale = {scale} (1..8 is expected); "
                             "use another model file")


def _check_architecture(path: Path, config: GeneratorConfig, shapes: dict, expected: dict) -> None:
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = [f"{k} {shapes[k]} != {tuple(v.shape)}" for k, v in expected.items()
             if k in shapes and shapes[k] != tuple(v.shape)]
    if missing or unexpected or wrong:
        found = (missing and f"missing {', '.join(missing[:3])}") or (
            unexpected and f"unexpected {', '.join(unexpected[:3])}") or f"wrong shape {'; '.join(wrong[:3])}"
        raise ModelFileError(
            f"{path}: the tensors do not match the architecture in its metadata ({config}): {found}; "
            "the file is damaged or was written by other software: use another model file"
        )


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Generator, GeneratorConfig, dict]:
    """(generator in eval mode with plain weights on `device`, its config, its metadata).

    The metadata is what `save_model` was given (with "scale" as an int). Raises ModelFileError
    for a missing file, a file that is not safetensors (pickles are refused, never unpickled), a
    truncated or damaged file, an unknown format, or tensors that do not fit the config.
    """
    path = Path(path)
    config, metadata, shapes = _read_header(path)
    with torch.device("meta"):
        generator = Generator(config, spectral_norm=False)
    expected = generator.state_dict()
    _check_architecture(path, config, shapes, expected)
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as e:
        raise ModelFileError(f"{path} could not be read ({e}); use another model file") from None
    tensors = {k: v.to(expected[k].dtype) for k, v in tensors.items()}
    bad = _non_finite(tensors)
    if bad:  # a diverged run's weights: every output would be NaN (written as black images)
        raise ModelFileError(
            f"{path} holds NaN or infinite weights ({bad}): it comes from a training run that diverged; "
            "use another model file or train again with a lower --lr"
        )
    generator.load_state_dict(tensors, strict=True, assign=True)
    return generator.eval(), config, metadata


def _non_finite(tensors: dict[str, torch.Tensor]) -> str:
    """'' when every tensor is finite, else the names of the first few that are not."""
    names = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def asks_keep_coarse(metadata: dict) -> bool:
    """Whether a model file's metadata (`load_model`'s, or `model_info`'s "info") asks for the input's
    coarse content kept at every s unless --free-coarse is given ("keep_coarse": true; the noise-kept
    model)."""
    return metadata.get("keep_coarse") is True


def model_info(path: str | os.PathLike) -> dict:
    """A model file's metadata without its tensors.

    {"format_version", "config": GeneratorConfig fields, "scale", "parameters": count from the
    tensor shapes, "info": the rest of the metadata given to save_model}. Raises ModelFileError
    like `load_model` (tensor names and shapes are checked against the architecture; the tensors
    themselves are not read).
    """
    config, metadata, shapes = _read_header(Path(path))
    with torch.device("meta"):
        expected = Generator(config, spectral_norm=False).state_dict()
    _check_architecture(Path(path), config, shapes, expected)
    return {
        "format_version": FORMAT_VERSION,
        "config": asdict(config),
        "scale": metadata["scale"],
        "parameters": sum(int(torch.Size(s).numel()) for s in shapes.values()),
        "info": {k: v for k, v in metadata.items() if k != "scale"},
    }
