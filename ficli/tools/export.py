"""Export a model file for other tools: ONNX, TorchScript, and a BioImage Model Zoo (bioimage.io) package.

What every export holds is `ExportGraph`: the generator with its input padded (reflect, bottom and
right, as `ficli.inference.engine` pads) to multiples of 4 and its output cropped back, so any height and
width of at least 4 pixels runs, and a scale-conditioned generator's blur scale fixed to one value.
Input and output are (B, C, H, W) float32 on the normalised scale (the image mapped by its 0.1 and
99.9 percentiles to 0 and 1, as `ficli enhance` does before the network); batch, height and width
are dynamic. For one tile of ficli's engine (an image up to 512 × 512 px at the defaults) the
result is ficli's own; larger images: run them in tiles, as ficli does.

- ONNX: the legacy TorchScript-based exporter (`torch.onnx.export(dynamo=False)`), opset
  `ONNX_OPSET`; ficli's settings in the file's metadata_props.
- TorchScript: `torch.jit.trace` (the padding arithmetic is traced on the shapes, so it follows the
  input's size); ficli's settings in the archive as extra file "ficli.json".
- bioimage.io: a zip made with `bioimageio.spec` (format 0.5): TorchScript weights and the state
  dict with its architecture source (nets.py plus `ExportGraph`, which imports only torch), the
  percentile normalisation as pre-processing, test input and output tensors, a cover, the model
  card as documentation, licence and citation. The format has no post-processing that inverts a
  per-image percentile map, so its output stays on the normalised scale; the package says so.

Each export is checked before it is put in place: the written file is loaded back and run on an
odd-sized probe, and must agree with the generator within `TOLERANCE`. Nothing is left at the
output path when anything fails.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ficli import __version__
from ficli.image import io
from ficli.model import modelfile, nets
from ficli.defaults import HI_PCT, LO_PCT
from ficli.errors import ConfigError, FicliError, OutputError

FORMATS = ("onnx", "torchscript", "bioimageio")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "bioimageio": ".zip"}
ONNX_OPSET = 17  # ONNX Runtime >= 1.12, TensorRT >= 8.6
TOLERANCE = 1e-4  # largest difference allowed between an export and the generator, normalised scale
PAPER = ("Zhang, Wang et al., Improved generative adversarial networks using the total gradient loss for the "
         "resolution enhancement of fluorescence images, Biomedical Optics Express 10 (2019)")
PAPER_DOI = "10.1364/BOE.10.004742"
INSTALL_HINT = "install the export extra: pip install 'ficli[export]'"


class ExportGraph(nn.Module):
    """The generator as exported: (B, C, H, W) -> (B, C, H, W), any H, W >= 4, float32 on the
    normalised scale. Pads to multiples of 4 by reflection (as ficli's engine), crops back; a
    scale-conditioned generator runs at the fixed blur scale `scale`. Uses only torch, so this
    class travels with nets.py as the architecture source of a bioimage.io package."""

    def __init__(self, generator: nn.Module, scale: float | None = None):
        super().__init__()
        self.generator = generator
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        padded = F.pad(x, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4), mode="reflect")
        y = self.generator(padded) if self.scale is None else self.generator(padded, self.scale)
        return y[:, :, :h, :w]


def build_export_graph(channels: int, features: int, growth: int, layers: int, blocks: int,
                       scale_input: bool, scale: float | None = None) -> ExportGraph:
    """An `ExportGraph` of plain (folded) convolutions for the given GeneratorConfig fields: the
    callable a bioimage.io package names, to load its state dict into."""
    config = GeneratorConfig(channels=channels, features=features, growth=growth, layers=layers, blocks=blocks,
                             scale_input=scale_input)
    return ExportGraph(Generator(config, spectral_norm=False), scale)


GeneratorConfig, Generator = nets.GeneratorConfig, nets.Generator  # the names build_export_graph uses in the package


@dataclass(frozen=True)
class ExportReport:
    path: Path
    format: str
    seconds: float  # export, check and write, model loading excluded
    bytes: int
    max_difference: float  # of the written file's output from the generator's, on the probe
    scale: float | None  # the fixed blur scale of a scale-conditioned model; None for a plain one
    opset: int | None = None  # ONNX only

    def describe(self) -> str:
        what = f"{self.format}" + (f" (opset {self.opset})" if self.opset else "") + (f", blur scale fixed at {self.scale:g}" if self.scale is not None else "")
        return (f"wrote {self.path}: {what}, {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s; "
                f"its output differs from ficli's generator by at most {self.max_difference:.1e} on a test image")


def check_format(fmt: str) -> str:
    """The format name, lower-case; ConfigError for an unknown one."""
    name = str(fmt).strip().lower()
    if name not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return name


def check_target(out: str | Path, overwrite: bool, model: str | Path | None = None) -> Path:
    """Refuse an output path that is a folder, stdout, the model being exported (also through a
    symlink or hard link, whatever `overwrite` says), or exists without `overwrite`; before any work."""
    if io.is_stdout(out):
        raise OutputError("--out -: an export is a file; give a file name")
    out = Path(out)
    io.check_output_file(out, "--out", overwrite=overwrite, keep={"the model being exported": [model]})
    return out


def export_model(model: str | Path | None, fmt: str, out: str | Path, *, overwrite: bool = False,
                 scale: float | None = None) -> ExportReport:
    """Export a model file (the default model when `model` is None) as `fmt` to `out`.

    Raises ConfigError (unknown format, --scale on a plain model or out of range), OutputError
    (existing output without `overwrite`, unwritable folder), ModelFileError (not a ficli model),
    FicliError (a package of the export extra missing, or an export that fails its check). The
    output appears only when complete and checked.
    """
    from ficli.inference.runtime import fixed_scale, resolve_model_path

    fmt = check_format(fmt)
    path = resolve_model_path(model)
    out = check_target(out, overwrite, path)
    info = modelfile.model_info(path)  # ModelFileError from the header, before the weights are read
    fixed = fixed_scale({"path": str(path), "config": nets.GeneratorConfig(**info["config"]), "scale": info["scale"]}, scale)
    _check_packages(fmt)
    generator, config, metadata = modelfile.load_model(path)
    graph = ExportGraph(generator.requires_grad_(False).eval(), fixed).eval()
    start = time.perf_counter()
    settings = _settings(path, config, metadata, fixed)
    with io.atomic_write(out) as tmp:
        if fmt == "torchscript":
            difference = _write_torchscript(graph, config, tmp, settings)
        elif fmt == "onnx":
            difference = _write_onnx(graph, config, tmp, settings)
        else:
            difference = _write_bioimageio(graph, config, metadata, path, tmp, settings)
    return ExportReport(path=out, format=fmt, seconds=time.perf_counter() - start, bytes=out.stat().st_size,
                        max_difference=difference, scale=fixed, opset=ONNX_OPSET if fmt == "onnx" else None)


def _check_packages(fmt: str) -> None:
    needed = {"onnx": ["onnx", "onnxruntime"], "torchscript": [], "bioimageio": ["bioimageio.spec"]}[fmt]
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            raise FicliError(f"--format {fmt} needs the Python package {name}, which is not installed; {INSTALL_HINT}") from None


def _settings(path: Path, config, metadata: dict, scale: float | None) -> dict:
    """What an export records about where it came from and how to feed it."""
    norm = metadata.get("normalize", {"lo_pct": LO_PCT, "hi_pct": HI_PCT})
    return {
        "exported_by": f"ficli {__version__}", "model_file": path.name, "config": asdict(config),
        "training_scale": metadata.get("scale"), "fixed_scale": scale,
        "input": "(B, C, H, W) float32, H and W >= 4: the image mapped by its own percentiles lo_pct -> 0, hi_pct -> 1 "
                 "(over the whole image or stack, without clipping)",
        "output": "(B, C, H, W) float32 on the same scale; map back with y * (hi - lo) + lo and clip to the pixel type",
        "normalize": norm,
    }


def _probe(config, height: int = 70, width: int = 53) -> torch.Tensor:
    """An odd-sized phantom batch of two (the padding and the dynamic batch are both exercised)."""
    from ficli.image.phantom import phantom

    frames = [phantom(height, width, seed=seed) for seed in (1, 2)]
    x = torch.from_numpy(np.stack(frames))[:, None].repeat(1, config.channels, 1, 1)
    return x.float()


def _difference(ours: torch.Tensor, theirs) -> float:
    theirs = torch.as_tensor(np.asarray(theirs))
    if theirs.shape != ours.shape:
        raise FicliError(f"the export gave shape {tuple(theirs.shape)} for {tuple(ours.shape)}; nothing was written")
    return float((ours - theirs).abs().max())


def _accept(difference: float, fmt: str) -> float:
    if not difference <= TOLERANCE:
        raise FicliError(f"the {fmt} export differs from the generator by {difference:.2e} (more than {TOLERANCE:g}) "
                         "on a test image; nothing was written. Please report this with the model file")
    return difference


@contextlib.contextmanager
def _quiet():
    """torch marks TorchScript and the legacy ONNX exporter deprecated, and the tracer warns about
    the generator's own shape checks, which the padding in front of them always satisfies: every
    written file is loaded back and checked instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _trace(graph: ExportGraph, example: torch.Tensor):
    with _quiet(), torch.no_grad():
        return torch.jit.trace(graph, example, check_trace=False)


def _write_torchscript(graph: ExportGraph, config, tmp: Path, settings: dict) -> float:
    example = torch.rand(1, config.channels, 64, 64)
    with _quiet():
        torch.jit.save(_trace(graph, example), str(tmp), _extra_files={"ficli.json": json.dumps(settings)})
        loaded = torch.jit.load(str(tmp), map_location="cpu")
    probe = _probe(config)
    with torch.no_grad():
        return _accept(_difference(graph(probe), loaded(probe)), "torchscript")


def _write_onnx(graph: ExportGraph, config, tmp: Path, settings: dict) -> float:
    import onnx
    import onnxruntime

    example = torch.rand(1, config.channels, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}
    with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".ficli-export.") as work:
        raw = Path(work) / "model.onnx"
        with _quiet(), torch.no_grad():
            torch.onnx.export(graph, (example,), str(raw), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": axes, "output": axes})
        proto = onnx.load(str(raw))
        proto.doc_string = f"FI-GAN generator exported by ficli ({PAPER})"
        for key, value in {"ficli": json.dumps(settings), "opset": str(ONNX_OPSET)}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    probe = _probe(config)
    with torch.no_grad():
        return _accept(_difference(graph(probe), session.run(None, {"input": probe.numpy()})[0]), "onnx")


def architecture_source() -> str:
    """The Python source a bioimage.io package's state dict is built with: nets.py (torch only),
    then ExportGraph and build_export_graph, which use its names."""
    return "\n\n".join([
        inspect.getsource(nets),
        "# --- added by ficli export: the generator as exported ---\n",
        "import torch.nn.functional as F\n",
        inspect.getsource(ExportGraph),
        inspect.getsource(build_export_graph),
    ])


def _test_images(config, scale: float | None) -> np.ndarray:
    """The package's test input: a phantom as a 12-bit camera records it, blurred as the model's
    input should be (×4 bicubic, or the fixed scale), as float32 (1, C, 128, 128) in camera counts."""
    from ficli.image.degrade import Degradation, degrade
    from ficli.image.phantom import phantom

    sharp = phantom(128, 128, seed=7, peak_photons=None)
    blurred = degrade(sharp, Degradation(scale=scale or 4), np.random.default_rng(0))
    counts = np.round(np.clip(blurred, 0, 1) * 4095).astype(np.float32)
    return np.repeat(counts[None, None], config.channels, axis=1)


def _normalise_like_ficli(x: np.ndarray, lo_pct: float, hi_pct: float) -> np.ndarray:
    from ficli.image.intensity import normalize, percentile_range

    lo, hi = percentile_range(x, lo_pct, hi_pct)
    return normalize(x, lo, hi)


def _cover(before: np.ndarray, after: np.ndarray, path: Path) -> None:
    """Input (left) and output (right), each mapped by the input's percentiles to 8 bits: 2:1."""
    lo, hi = np.percentile(before, (LO_PCT, HI_PCT))
    scale = lambda a: np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1)  # noqa: E731
    side = np.concatenate([scale(before), scale(after)], axis=1)
    io.write_image(path, np.round(side * 255).astype(np.uint8))


def _documentation(settings: dict, metadata: dict, model_path: Path, scale: float | None) -> str:
    norm = settings["normalize"]
    lines = [
        "# ficli FI-GAN generator", "",
        f"Exported by {settings['exported_by']} from `{model_path.name}`. Method: {PAPER} (doi:{PAPER_DOI}).", "",
        "## Input and output", "",
        f"- Input: a blurred grayscale fluorescence image (e.g. enlarged ×{metadata.get('scale', 4)} from low resolution), "
        "any size of at least 4 × 4 pixels, any intensity units.",
        f"- Pre-processing: each image is mapped by its own {norm['lo_pct']} and {norm['hi_pct']} percentiles to 0 and 1 "
        "(`scale_range`, over the whole image), as `ficli enhance` does.",
        "- Output: the sharpened image **on that normalised scale** (0 = the input's low percentile, 1 = its high "
        "percentile; values may fall a little outside). `ficli enhance` maps it back exactly, `y * (hi - lo) + lo`, "
        "to the input's own units; the bioimage.io format has no post-processing that inverts a per-image "
        "percentile map, so this package leaves that step out: multiply by (hi - lo) and add lo yourself where you "
        "need the input's units.",
    ]
    if scale is not None:
        lines.append(f"- This model is conditioned on the input's blur scale; this package runs it at a fixed scale of {scale:g} "
                     "(export again with `ficli export --scale S` for another).")
    lines += ["", "## Validation", ""]
    for stage in metadata.get("stages", []):
        m = stage.get("val_metrics", {})
        if "val_psnr" in m:
            lines.append(f"- {stage.get('stage', 'training')} stage, validated on `{Path(str(stage.get('val', '?'))).name}`: "
                         f"PSNR {m['val_psnr']:.2f} dB (bicubic input {m.get('val_bicubic_psnr', float('nan')):.2f} dB), "
                         f"SSIM {m.get('val_ssim', float('nan')):.4f} (bicubic {m.get('val_bicubic_ssim', float('nan')):.4f}), "
                         "on the normalised scale.")
    if not metadata.get("stages"):
        lines.append("- The model file records no validation scores.")
    lines += [f"- The test tensors of this package: ficli's own normalisation and generator; every weight format "
              f"reproduces them within {TOLERANCE:g}."]
    lines += ["", "Large images: ficli runs tiles of up to 512 × 512 px with 32 px of context per side, cross-faded "
              "(the default architecture's receptive field has a radius of 130 px, so tiles with less context than that "
              "differ slightly from a whole-image run).", ""]
    from ficli.inference.runtime import model_card_path

    card = model_card_path(model_path)
    if card:
        lines += ["---", "", card.read_text(encoding="utf-8")]
    return "\n".join(lines) + "\n"


def _write_bioimageio(graph: ExportGraph, config, metadata: dict, model_path: Path, tmp: Path, settings: dict) -> float:
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bio

    norm = settings["normalize"]
    scale = graph.scale
    with tempfile.TemporaryDirectory(prefix=".ficli-export.", dir=tmp.parent) as work:
        work = Path(work)
        raw = _test_images(config, scale)
        with torch.no_grad():
            expected = graph(torch.from_numpy(_normalise_like_ficli(raw, norm["lo_pct"], norm["hi_pct"]))).numpy()
        np.save(work / "test_input.npy", raw)
        np.save(work / "test_output.npy", expected)
        _cover(raw[0, 0], expected[0, 0] * (np.percentile(raw, norm["hi_pct"]) - np.percentile(raw, norm["lo_pct"]))
               + np.percentile(raw, norm["lo_pct"]), work / "cover.png")
        (work / "README.md").write_text(_documentation(settings, metadata, model_path, scale), encoding="utf-8")
        (work / "ficli_generator.py").write_text(architecture_source(), encoding="utf-8")
        torch.save(graph.state_dict(), work / "weights.pt")
        example = torch.from_numpy(_normalise_like_ficli(raw, norm["lo_pct"], norm["hi_pct"]))
        with _quiet():
            torch.jit.save(_trace(graph, example), str(work / "weights_torchscript.pt"))

        space = bio.ParameterizedSize(min=16, step=4)
        channels = bio.ChannelAxis(channel_names=[bio.Identifier(f"c{i}") for i in range(config.channels)])
        inputs = bio.InputTensorDescr(
            id=bio.TensorId("input"),
            description="blurred fluorescence image, any units",
            axes=[bio.BatchAxis(), channels, bio.SpaceInputAxis(id=bio.AxisId("y"), size=space),
                  bio.SpaceInputAxis(id=bio.AxisId("x"), size=space)],
            test_tensor=bio.FileDescr(source=work / "test_input.npy"),
            preprocessing=[bio.ScaleRangeDescr(kwargs=bio.ScaleRangeKwargs(
                axes=[bio.AxisId("y"), bio.AxisId("x")], min_percentile=norm["lo_pct"], max_percentile=norm["hi_pct"]))],
        )
        same = lambda axis: bio.SizeReference(tensor_id=bio.TensorId("input"), axis_id=bio.AxisId(axis))  # noqa: E731
        outputs = bio.OutputTensorDescr(
            id=bio.TensorId("output"),
            description=f"sharpened, on the input's normalised scale (0, 1: its {norm['lo_pct']}, {norm['hi_pct']} percentiles), not in its units",
            axes=[bio.BatchAxis(), channels, bio.SpaceOutputAxis(id=bio.AxisId("y"), size=same("y")),
                  bio.SpaceOutputAxis(id=bio.AxisId("x"), size=same("x"))],
            test_tensor=bio.FileDescr(source=work / "test_output.npy"),
        )
        kwargs = {**asdict(config), "scale": scale}
        torch_version = bio.Version(torch.__version__.split("+")[0])
        named = f" at blur scale {scale:g}" if scale is not None else ""
        try:
            descr = bio.ModelDescr(
                # The format allows no "." in a name: 2.5 is written 2_5 there (and 2.5 in the description).
                name="ficli FI-GAN fluorescence sharpening" + (f" (blur scale {scale:g})".replace(".", "_") if scale is not None else ""),
                description=(f"Sharpens blurred fluorescence images (×{metadata.get('scale', 4)} resolution enhancement at the same size){named}: "
                             "FI-GAN generator trained with the total gradient loss. Output on the input's percentile-normalised scale."),
                authors=[bio.Author(name="ficli contributors")],
                cite=[bio.CiteEntry(text=PAPER, doi=bio.Doi(PAPER_DOI))],
                license=bio.LicenseId("MIT"),
                documentation=bio.FileDescr(source=work / "README.md"),
                covers=[bio.FileDescr(source=work / "cover.png")],
                tags=["fluorescence", "super-resolution", "2d", "pytorch", "ficli", "fi-gan"],
                inputs=[inputs],
                outputs=[outputs],
                weights=bio.WeightsDescr(
                    torchscript=bio.TorchscriptWeightsDescr(source=work / "weights_torchscript.pt", pytorch_version=torch_version),
                    pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
                        source=work / "weights.pt", pytorch_version=torch_version,
                        architecture=bio.ArchitectureFromFileDescr(source=work / "ficli_generator.py",
                                                                   callable=bio.Identifier("build_export_graph"), kwargs=kwargs),
                    ),
                ),
                # bioimageio.core's own test_model compares the package's outputs with the test output at
                # ficli's tolerance, not its looser default (1e-3).
                config=bio.Config(bioimageio=bio.BioimageioConfig(reproducibility_tolerance=[
                    bio.ReproducibilityTolerance(absolute_tolerance=TOLERANCE, relative_tolerance=TOLERANCE)]), ficli=settings),
            )
            zipped = work / "package.zip"
            save_bioimageio_package(descr, output_path=zipped)
        except Exception as exc:  # bioimageio.spec refused the description or could not write the zip
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FicliError(f"bioimageio.spec could not make the package ({type(exc).__name__}: {first[:300]}); nothing was "
                             "written. Please report this with the versions of ficli and bioimageio.spec") from None
        shutil.copyfile(zipped, tmp)
    return _check_package(tmp, graph, config, norm)


def _check_package(package: Path, graph: ExportGraph, config, norm: dict) -> float:
    """The package's TorchScript weights, loaded from the zip, on the odd-sized probe."""
    import zipfile

    with zipfile.ZipFile(package) as archive, tempfile.TemporaryDirectory(prefix=".ficli-export.", dir=package.parent) as work:
        archive.extract("weights_torchscript.pt", work)
        with _quiet():
            loaded = torch.jit.load(str(Path(work) / "weights_torchscript.pt"), map_location="cpu")
    probe = _probe(config)
    with torch.no_grad():
        return _accept(_difference(graph(probe), loaded(probe)), "bioimageio")
