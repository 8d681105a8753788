"""ficli from Python: load a model, enhance numpy arrays and image files, read and write images.

The same functions the command line runs (`ficli.inference.enhance.enhance_frames` and `enhance_file`,
`ficli.image.io.read_image` and `write_image`), with the same intensity normalisation (each image or
stack mapped by its own 0.1/99.9 percentiles, mapped back exactly), the same tiling, the same blur
scale told a model conditioned on it (`runtime.scale_chooser`), and the same pixel-type handling
(an 8-bit array comes back 8-bit, a 16-bit one 16-bit, floats as floats).

    import ficli.api as ficli
    model = ficli.load_model()                      # the shipped default model, on the CPU
    sharp = ficli.inference.enhance(model, image)             # (H, W), (H, W, 3|4) or, with stack=True, (N, H, W[, C])
    ficli.write_image("sharp.tif", sharp)

Arrays: a 2-D image is (H, W); colour is (H, W, C) with C = 3 (RGB, each channel through a
1-channel model) or 4 (RGBA, alpha kept); a stack is (N, H, W) or (N, H, W, C) and needs
`stack=True` (a 3-D array is otherwise an (H, W, C) colour image).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ficli.image import io, provenance
from ficli.model import modelfile
from ficli.inference.device import default_batch, resolve_device
from ficli.inference.engine import TileConfig
from ficli.errors import ConfigError, InputError
from ficli.model.nets import GeneratorConfig

__all__ = ["Model", "load_model", "enhance", "enhance_file", "read_image", "write_image", "model_summary", "resolve_scale"]


@dataclass(frozen=True)
class Model:
    """A loaded model: the generator (eval mode, plain weights) on `device`, its settings and metadata."""

    generator: torch.nn.Module
    config: GeneratorConfig
    metadata: dict = field(repr=False)
    path: Path
    device: torch.device

    @property
    def training_scale(self) -> float:
        """The blur scale s the model was trained for (metadata "scale")."""
        return float(self.metadata["scale"])

    def chooser(self, scale: float | None = None) -> Callable[..., tuple[float, str]] | None:
        """`runtime.scale_chooser` for this model: what `ficli enhance --scale` does (None for a
        plain model; ConfigError for a scale it cannot take)."""
        from ficli.inference.runtime import scale_chooser

        return scale_chooser(_info(self.config, self.metadata, self.path), scale)

    def runner(self, scale: float | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """G as a callable of one (B, C, H, W) tensor: a scale-conditioned model gets `scale`
        (default: its training scale; above it: the training scale) bound to it; a plain model
        refuses a scale. A model trained with the coarse content kept (`GeneratorConfig.coarse_kept`)
        comes with it (`degrade.keep_coarse`): its output is an image only that way."""
        from ficli.image.degrade import keep_coarse
        from ficli.inference.runtime import told

        choose = self.chooser(scale)
        s = None if choose is None else choose()[0]
        run = told(self.generator, s)
        if self.config.coarse_kept:
            return lambda x: keep_coarse(run(x), x, s)
        return run


def _info(config: GeneratorConfig, metadata: dict, path: str | os.PathLike = "this model") -> dict:
    """A model's settings as `runtime.load_generator` gives them."""
    return {**metadata, "path": str(path), "config": config}


def resolve_scale(config: GeneratorConfig, metadata: dict, scale: float | None) -> float | None:
    """The blur scale to run a model at without looking at an image (`ficli export` fixes it in the
    graph): None for a plain model (a scale given is a ConfigError), `scale` or the training scale
    (metadata "scale") for a scale-conditioned one; ConfigError outside SCALE_RANGE (1..8). The
    rule is `runtime.fixed_scale`'s."""
    from ficli.inference.runtime import fixed_scale

    return fixed_scale(_info(config, metadata), scale)


def load_model(path: str | os.PathLike | None = None, device: str = "cpu") -> Model:
    """Load a model file (the shipped default when `path` is None) onto `device` ("cpu", "cuda",
    "cuda:N", "mps" or "auto"). Raises ModelFileError for a file that is missing, not a ficli
    model, or damaged, and ConfigError for a device this machine does not have."""
    from ficli.inference.runtime import load_generator

    dev = resolve_device(device)
    generator, info = load_generator(path, dev)
    metadata = {k: v for k, v in info.items() if k not in ("path", "config")}
    return Model(generator=generator, config=info["config"], metadata=metadata, path=Path(info["path"]), device=dev)


def _options(model: Model, scale: float | None, upscale: int, normalize: bool, tile: int, overlap: int, batch: int | None,
             precision: str, keep_coarse: bool | None = None):
    """`ficli enhance`'s options, with its choice of the blur scale (`Model.chooser`)."""
    from ficli.inference.enhance import EnhanceOptions
    from ficli.inference.runtime import check_coarse

    keep_coarse = check_coarse(_info(model.config, model.metadata, model.path), keep_coarse)
    return EnhanceOptions(
        upscale=upscale, normalize=normalize, scale_for=model.chooser(scale), keep_coarse=keep_coarse,
        tile=TileConfig(tile=tile, overlap=overlap, batch=batch or default_batch(model.device), device=str(model.device), precision=precision),
    )


def enhance(
    model: Model,
    image: np.ndarray,
    *,
    stack: bool = False,
    scale: float | None = None,
    upscale: int = 1,
    normalize: bool = True,
    tile: int = 512,
    overlap: int = 32,
    batch: int | None = None,
    precision: str = "fp32",
    keep_coarse: bool | None = None,
    return_record: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Enhance a numpy image or stack as `ficli enhance` does a file; returns a new array of the
    same dtype (in native byte order: a big-endian array is read by its values) and layout (sides ×
    `upscale`). float64 values float32 cannot hold are refused, as in files.

    `image`: (H, W); (H, W, 3) RGB or (H, W, 4) RGBA; with `stack=True` (N, H, W) or (N, H, W, C),
    the N frames mapped by one intensity range (no flicker). Unsigned 8/16/32-bit integers are read
    on their type's full scale and come back rounded and clipped to it; float32/float64 come back
    as floats, not clipped. `scale`: the input's blur scale (1..8), for a scale-conditioned model
    only; None (default) estimates it from the image as `ficli enhance --scale auto` does (one s per
    image or stack, on the frames before `upscale`, times `upscale`; the training scale where the image is too small
    or flat; an s above the training scale is told the training scale). `keep_coarse`: None
    (default) keeps the coarse content below a told s of `degrade.FREE_FROM` (3.25) as `ficli
    enhance` does, True always (`--keep-coarse`), False never (`--free-coarse`). The other options are those of `ficli enhance`. `return_record=True` returns (array, record): the record
    (`ficli.image.provenance`) that `ficli enhance` writes into its outputs, a dict: the model and
    its SHA-256, the blur scale told and how it was chosen, the upscale, the intensity map
    (percentiles and lo/hi in the array's units), tiles, device, precision, date.
    """
    from ficli.inference.enhance import enhance_frames

    array = _native(np.asarray(image))
    io.check_dtype(array.dtype)
    frames = _frames(array, stack)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError("the array holds NaN or infinite values; fix or mask them before enhancing")
    io.check_float32_range(array, "the array")
    options = _options(model, scale, upscale, normalize, tile, overlap, batch, precision, keep_coarse)
    report: dict = {}
    out = enhance_frames(model.generator, [io.to_unit(f) for f in frames], options, model.config.channels, report=report)
    result = [io.from_unit(f, array.dtype) for f in out]
    result = np.stack(result) if stack else result[0]
    if not return_record:
        return result
    from ficli.inference.enhance import provenance_fields

    fields = provenance_fields("", options, report, array.dtype, result.dtype)
    return result, {**_record_base(model), **{k: v for k, v in fields.items() if v is not None}}


def _record_base(model: Model) -> dict:
    """The common fields of a record of `model`'s work (`provenance.base`, "api" as the command)."""
    return provenance.base("api", **provenance.model_fields(model.path, _HASHES))


_HASHES: dict = {}  # SHA-256 of model files by path, computed once per process


def _native(array: np.ndarray) -> np.ndarray:
    """`array` in this machine's byte order (a big-endian array from another tool holds the same
    values; the result comes back in native order)."""
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def _frames(array: np.ndarray, stack: bool) -> list[np.ndarray]:
    single = array.ndim - int(stack)
    if single not in (2, 3) or 0 in array.shape:
        want = "(N, H, W) or (N, H, W, C)" if stack else "(H, W) or (H, W, C); a stack needs stack=True"
        raise InputError(f"an image array must be {want}, got shape {array.shape}")
    if single == 3 and array.shape[-1] not in (1, 3, 4):
        raise InputError(
            f"shape {array.shape}: the last axis ({array.shape[-1]}) is not 1, 3 (RGB) or 4 (RGBA) colour channels"
            + ("" if stack else "; for a stack of frames give stack=True")
        )
    return list(array) if stack else [array]


def enhance_file(
    model: Model,
    src: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    scale: float | None = None,
    upscale: int = 1,
    normalize: bool = True,
    tile: int = 512,
    overlap: int = 32,
    batch: int | None = None,
    precision: str = "fp32",
    keep_coarse: bool | None = None,
    return_record: bool = False,
    dtype: str | None = None,
    compression: str = "keep",
) -> Path | tuple[Path, dict]:
    """Enhance one image file into `dest` exactly as `ficli enhance` does (pixel type, TIFF axes,
    calibration, OME-XML, compression and PNG chunks kept; the blur scale as in `enhance`; the
    record of how it was made written into it; written atomically); returns `dest`, or with
    `return_record=True` (`dest`, the record). `dtype`, `compression`, `keep_coarse`: `ficli enhance
    --dtype float32`, `--compression`, `--keep-coarse/--free-coarse`. Never writes over `src`."""
    import dataclasses

    from ficli.inference.enhance import enhance_file as run

    options = dataclasses.replace(_options(model, scale, upscale, normalize, tile, overlap, batch, precision, keep_coarse),
                                  dtype=dtype, compression=compression)
    record = run(Path(src), Path(dest), model.generator, options, model.config.channels,
                 record={**_record_base(model), "output": io.printable(Path(dest).name)})
    return (Path(dest), record) if return_record else Path(dest)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The pixels of a PNG, TIFF (stacks: (N, H, W[, C])), JPEG or BMP file in the file's own dtype."""
    return io.read_image(path).data


def write_image(path: str | os.PathLike, image: np.ndarray, *, stack: bool = False) -> Path:
    """Write an array atomically in the format the suffix names (.png, .tif, .jpg, .bmp); a stack
    (`stack=True`, first axis the frames) only as TIFF. Returns the path."""
    io.write_image(path, _native(np.asarray(image)), is_stack=stack)
    return Path(path)


def model_summary(path: str | os.PathLike | None = None) -> dict:
    """What a model file holds, without loading its weights: `modelfile.model_info` plus the path,
    the file's size in bytes and its SHA-256 (the default model when `path` is None)."""
    from ficli.inference.runtime import resolve_model_path

    path = resolve_model_path(path)
    info = modelfile.model_info(path)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": provenance.sha256(path), **info}
