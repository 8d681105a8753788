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
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ficli import __version__
from ficli.image import io
from ficli.model import modelfile, nets
from ficli.image.degrade import COARSE_RADIUS, COARSE_SCALE_MAX, FREE_FROM, PSF_S_PER_SIGMA, gaussian_taps, keep_coarse
from ficli.tools import modelzoo
from ficli.tools.modelzoo import PAPER, PAPER_DOI
from ficli.defaults import HI_PCT, LO_PCT
from ficli.errors import ConfigError, FicliError, OutputError

FORMATS = ("onnx", "torchscript", "bioimageio")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "bioimageio": ".zip"}
ONNX_OPSET = 17  # ONNX Runtime >= 1.12, TensorRT >= 8.6
TOLERANCE = 1e-4  # largest difference allowed between an export and the generator, normalised scale
INSTALL_HINT = "install the export extra: pip install 'ficli[export]'"
SCALE_INPUT_HELP = ("second input 'scale': the blur scale s of the input, float32 of shape (1,) or (B,), as `ficli enhance "
                    "--scale S` takes it (1 = already sharp, 4 = as blurred as a x4 bicubic enlargement); values are told "
                    "at least 1 and at most the training scale {trained}; left out, s = {default:g}")


class ExportGraph(nn.Module):
    """The generator as exported: (B, C, H, W) -> (B, C, H, W), any H, W >= 4, float32 on the
    normalised scale. Pads to multiples of 4 by reflection (as ficli's engine), crops back. A
    scale-conditioned generator runs at the fixed blur scale `scale` (bioimage.io) or, with
    `scale` None, at the s given as the second input, a (1,) or (B,) float32 tensor told as
    `ficli enhance` tells it: at least 1, at most the model's training scale `trained`; with
    `coarse` (default) the output then keeps the input's coarse content (`keep_coarse`) where the s
    told is below FREE_FROM, as `ficli enhance` does by default (`degrade.coarse_kept`), or at every
    s for a generator trained with it kept (`config.coarse_kept`) or whose model file asks for it
    (`always_coarse`: metadata "keep_coarse" true, `runtime.check_coarse`). Uses only torch, so this
    class travels with nets.py as the architecture source of a bioimage.io package."""

    def __init__(self, generator: nn.Module, scale: float | None = None, trained: float = 4.0, coarse: bool = True,
                 always_coarse: bool = False):
        super().__init__()
        self.generator = generator
        self.scale = scale
        self.trained = float(trained)
        self.coarse = coarse
        self.free_from: Optional[float] = None if generator.config.coarse_kept or always_coarse else FREE_FROM

    def forward(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        padded = F.pad(x, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4), mode="reflect")
        told: Optional[torch.Tensor] = None
        if self.scale is not None:
            told = torch.full((1,), float(self.scale))
            y = self.generator(padded, self.scale)
        elif scale is not None:
            told = scale.clamp(1.0, self.trained)
            y = self.generator(padded, told)
        else:
            y = self.generator(padded)
        y = y[:, :, :h, :w]
        if self.coarse and told is not None:
            kept = keep_coarse(y, x, told)
            y = kept if self.free_from is None else torch.where(told.reshape(-1, 1, 1, 1) < self.free_from, kept, y)
        return y


def build_export_graph(channels: int, features: int, growth: int, layers: int, blocks: int,
                       scale_input: bool, scale: float | None = None, trained: float = 4.0, coarse_kept: bool = False,
                       always_coarse: bool = False) -> ExportGraph:
    """An `ExportGraph` of plain (folded) convolutions for the given GeneratorConfig fields: the
    callable a bioimage.io package names, to load its state dict into."""
    config = GeneratorConfig(channels=channels, features=features, growth=growth, layers=layers, blocks=blocks,
                             scale_input=scale_input, coarse_kept=coarse_kept)
    return ExportGraph(Generator(config, spectral_norm=False), scale, trained, always_coarse=always_coarse)


GeneratorConfig, Generator = nets.GeneratorConfig, nets.Generator  # the names build_export_graph uses in the package


@dataclass(frozen=True)
class ExportReport:
    path: Path
    format: str
    seconds: float  # export, check and write, model loading excluded
    bytes: int
    max_difference: float  # of the written file's output from the generator's, on the probe
    scale: float | None  # a scale-conditioned model's s: fixed (bioimageio) or the input's default; None for a plain one
    opset: int | None = None  # ONNX only

    def describe(self) -> str:
        if self.scale is None:
            told = ""
        elif self.format == "bioimageio":
            told = f", blur scale fixed at {self.scale:g}"
        else:
            told = f", blur scale s a second input named 'scale' (default {self.scale:g})"
        what = f"{self.format}" + (f" (opset {self.opset})" if self.opset else "") + told
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
                 scale: float | None = None, git_repo: str | None = None, maintainers: tuple[str, ...] = ()) -> ExportReport:
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
    trained = float(metadata.get("scale", 4))
    # bioimage.io takes one input: s is fixed there; ONNX and TorchScript take it as a second input.
    graph = ExportGraph(generator.requires_grad_(False).eval(), fixed if fmt == "bioimageio" else None, trained,
                        always_coarse=modelfile.asks_keep_coarse(metadata)).eval()
    start = time.perf_counter()
    settings = _settings(path, config, metadata, fixed, fmt)
    with io.atomic_write(out) as tmp:
        if fmt == "torchscript":
            difference = _write_torchscript(graph, config, tmp, settings, fixed)
        elif fmt == "onnx":
            difference = _write_onnx(graph, config, tmp, settings, fixed)
        else:
            difference = _write_bioimageio(graph, config, metadata, path, tmp, settings, project_info(git_repo, maintainers))
    return ExportReport(path=out, format=fmt, seconds=time.perf_counter() - start, bytes=out.stat().st_size,
                        max_difference=difference, scale=fixed, opset=ONNX_OPSET if fmt == "onnx" else None)


def project_info(git_repo: str | None, maintainers) -> dict:
    """Where the package says the project lives and who keeps it: `git_repo` (a URL) and
    `maintainers` (GitHub user names) as given, else the installed ficli's "Repository" URL
    (pyproject's [project.urls]) and no maintainer: bioimage.io names maintainers by GitHub user."""
    if git_repo is None:
        from importlib import metadata

        with contextlib.suppress(metadata.PackageNotFoundError):
            for entry in metadata.metadata("ficli").get_all("Project-URL") or []:
                label, _, url = entry.partition(",")
                if label.strip().lower() in ("repository", "source", "homepage"):
                    git_repo = url.strip()
                    break
    return {"git_repo": git_repo, "maintainers": tuple(maintainers)}


def _check_packages(fmt: str) -> None:
    needed = {"onnx": ["onnx", "onnxruntime"], "torchscript": [], "bioimageio": ["bioimageio.spec"]}[fmt]
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            raise FicliError(f"--format {fmt} needs the Python package {name}, which is not installed; {INSTALL_HINT}") from None


def _settings(path: Path, config, metadata: dict, scale: float | None, fmt: str) -> dict:
    """What an export records about where it came from and how to feed it."""
    norm = metadata.get("normalize", {"lo_pct": LO_PCT, "hi_pct": HI_PCT})
    told = {} if scale is None else (
        {"fixed_scale": scale} if fmt == "bioimageio" else
        {"scale_input": SCALE_INPUT_HELP.format(default=scale, trained=metadata.get("scale", 4)), "default_scale": scale})
    return {
        "exported_by": f"ficli {__version__}", "model_file": path.name, "config": asdict(config),
        "training_scale": metadata.get("scale"), **told,
        "input": "(B, C, H, W) float32, H and W >= 4: the image mapped by its own percentiles lo_pct -> 0, hi_pct -> 1 "
                 "(over the whole image or stack, without clipping)",
        "output": "(B, C, H, W) float32 on the same scale; map back with y * (hi - lo) + lo and clip to the pixel type",
        "normalize": norm,
    }


def _scales(default: float | None) -> list[torch.Tensor | None]:
    """The s values an export with a scale input is checked at: its default and two others (one
    above the training scale, which the graph clamps as ficli does); [None] without one."""
    return [None] if default is None else [torch.tensor([v], dtype=torch.float32) for v in (default, 1.0, 1.7, 9.0)]


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


def _trace(graph: ExportGraph, *example: torch.Tensor):
    with _quiet(), torch.no_grad():
        return torch.jit.trace(graph, example, check_trace=False)


class ScaleDefault(nn.Module):
    """A traced graph with a blur-scale input, callable without it: s is then `default`."""

    def __init__(self, traced, default: float):
        super().__init__()
        self.traced = traced
        self.default = default

    def forward(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        if scale is None:
            scale = torch.full([1], self.default, dtype=x.dtype, device=x.device)
        return self.traced(x, scale)


def _checked(graph: ExportGraph, config, default: float | None, run, fmt: str) -> float:
    """The largest difference between `run(x, s)` (s None: the input left out) and the graph, on
    the probe and, with a scale input, at its default (left out and given) and at other s."""
    probe, worst = _probe(config), 0.0
    with torch.no_grad():
        for s in _scales(default):
            want = graph(probe, s if s is not None else (None if default is None else torch.tensor([default])))
            worst = max(worst, _difference(want, run(probe, s)))
            if s is not None and float(s) == default:
                worst = max(worst, _difference(want, run(probe, None)))  # the documented default
    return _accept(worst, fmt)


def _write_torchscript(graph: ExportGraph, config, tmp: Path, settings: dict, default: float | None) -> float:
    example = torch.rand(1, config.channels, 64, 64)
    with _quiet():
        if default is None:
            module = _trace(graph, example)
        else:
            module = torch.jit.script(ScaleDefault(_trace(graph, example, torch.tensor([default])), default))
        torch.jit.save(module, str(tmp), _extra_files={"ficli.json": json.dumps(settings)})
        loaded = torch.jit.load(str(tmp), map_location="cpu")
    return _checked(graph, config, default, lambda x, s: loaded(x) if s is None else loaded(x, s), "torchscript")


def _write_onnx(graph: ExportGraph, config, tmp: Path, settings: dict, default: float | None) -> float:
    import onnx
    import onnxruntime
    from onnx import numpy_helper

    example = torch.rand(1, config.channels, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}
    args, names, dynamic = (example,), ["input"], {"input": axes, "output": axes}
    if default is not None:
        args, names, dynamic = (example, torch.tensor([default])), ["input", "scale"], {**dynamic, "scale": {0: "scales"}}
    with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".ficli-export.") as work:
        raw = Path(work) / "model.onnx"
        with _quiet(), torch.no_grad():
            torch.onnx.export(graph, args, str(raw), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=names, output_names=["output"], dynamic_axes=dynamic)
        proto = onnx.load(str(raw))
        if default is not None:  # an input with an initializer of its name: ONNX Runtime uses the value when it is left out
            proto.graph.initializer.append(numpy_helper.from_array(np.array([default], np.float32), "scale"))
        proto.doc_string = f"FI-GAN generator exported by ficli ({PAPER})"
        for key, value in {"ficli": json.dumps(settings), "opset": str(ONNX_OPSET)}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])

    def run(x, s):
        feed = {"input": x.numpy()} if s is None else {"input": x.numpy(), "scale": s.numpy()}
        return session.run(None, feed)[0]

    return _checked(graph, config, default, run, "onnx")


def architecture_source() -> str:
    """The Python source a bioimage.io package's state dict is built with: nets.py (torch only),
    then `degrade.keep_coarse` with its constants, ExportGraph and build_export_graph, which use their names."""
    return "\n\n".join([
        inspect.getsource(nets),
        "# --- added by ficli export: the generator as exported ---\n",
        "import torch.nn.functional as F\nfrom typing import Optional\n",
        f"PSF_S_PER_SIGMA = {PSF_S_PER_SIGMA!r}\nCOARSE_SCALE_MAX = {COARSE_SCALE_MAX!r}\nCOARSE_RADIUS = {COARSE_RADIUS!r}\n"
        f"FREE_FROM = {FREE_FROM!r}\n",
        inspect.getsource(gaussian_taps),
        inspect.getsource(keep_coarse),
        inspect.getsource(ExportGraph),
        inspect.getsource(build_export_graph),
    ])


def _write_bioimageio(graph: ExportGraph, config, metadata: dict, model_path: Path, tmp: Path, settings: dict,
                      project: dict) -> float:
    from bioimageio.spec import ValidationContext, save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bio

    norm = settings["normalize"]
    scale = graph.scale
    with tempfile.TemporaryDirectory(prefix=".ficli-export.", dir=tmp.parent) as work:
        work = Path(work)
        raw = modelzoo.camera_input(config.channels, scale)
        example = torch.from_numpy(modelzoo.normalise_like_ficli(raw, norm["lo_pct"], norm["hi_pct"]))
        with torch.no_grad():
            expected = graph(example).numpy()
        np.save(work / "test_input.npy", raw)
        np.save(work / "test_output.npy", expected)
        sample_in, sample_out = modelzoo.write_samples(raw, expected, work)
        modelzoo.cover(raw[0, 0], modelzoo.in_input_units(expected, raw, norm["lo_pct"], norm["hi_pct"])[0, 0], work / "cover.png")
        (work / "README.md").write_text(modelzoo.documentation(settings, metadata, model_path, scale, TOLERANCE), encoding="utf-8")
        (work / "ficli_generator.py").write_text(architecture_source(), encoding="utf-8")
        torch.save(graph.state_dict(), work / "weights.pt")
        with _quiet():
            torch.jit.save(_trace(graph, example), str(work / "weights_torchscript.pt"))
        tensors = _tensor_descriptions(bio, config, norm, work, sample_in, sample_out)
        # bioimageio.spec looks a maintainer up on GitHub and a URL up on the web: offline (a lab
        # server) that fails, so given either, the package's own files are the only ones it checks.
        offline = ValidationContext(perform_io_checks=False) if project["maintainers"] or project["git_repo"] else contextlib.nullcontext()
        try:
            with offline:
                descr = bio.ModelDescr(**_package_fields(bio, config, metadata, scale, settings, project, work), **tensors)
                zipped = work / "package.zip"
                save_bioimageio_package(descr, output_path=zipped)
        except Exception as exc:  # bioimageio.spec refused the description or could not write the zip
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FicliError(f"bioimageio.spec could not make the package ({type(exc).__name__}: {first[:300]}); nothing was "
                             "written. Please report this with the versions of ficli and bioimageio.spec") from None
        shutil.copyfile(zipped, tmp)
    return _check_package(tmp, graph, config, norm)


def _tensor_descriptions(bio, config, norm: dict, work: Path, sample_in: Path, sample_out: Path) -> dict:
    """inputs and outputs: any height and width from 4 px in steps of 1 (the graph pads inside)."""
    space = bio.ParameterizedSize(min=4, step=1)
    channels = bio.ChannelAxis(channel_names=[bio.Identifier(f"c{i}") for i in range(config.channels)])
    inputs = bio.InputTensorDescr(
        id=bio.TensorId("input"),
        description="blurred fluorescence image, any units",
        axes=[bio.BatchAxis(), channels, bio.SpaceInputAxis(id=bio.AxisId("y"), size=space),
              bio.SpaceInputAxis(id=bio.AxisId("x"), size=space)],
        test_tensor=bio.FileDescr(source=work / "test_input.npy"),
        sample_tensor=bio.FileDescr(source=sample_in),
        preprocessing=[bio.ScaleRangeDescr(kwargs=bio.ScaleRangeKwargs(
            axes=[bio.AxisId("y"), bio.AxisId("x")], min_percentile=norm["lo_pct"], max_percentile=norm["hi_pct"]))],
    )
    same = lambda axis: bio.SizeReference(tensor_id=bio.TensorId("input"), axis_id=bio.AxisId(axis))  # noqa: E731
    outputs = bio.OutputTensorDescr(
        id=bio.TensorId("output"),
        description=f"sharpened, on the input's normalised scale (0, 1: its {norm['lo_pct']}, {norm['hi_pct']} percentiles); units: y*(hi-lo)+lo",
        axes=[bio.BatchAxis(), channels, bio.SpaceOutputAxis(id=bio.AxisId("y"), size=same("y")),
              bio.SpaceOutputAxis(id=bio.AxisId("x"), size=same("x"))],
        test_tensor=bio.FileDescr(source=work / "test_output.npy"),
        sample_tensor=bio.FileDescr(source=sample_out),
    )
    return {"inputs": [inputs], "outputs": [outputs]}


def _package_fields(bio, config, metadata: dict, scale: float | None, settings: dict, project: dict, work: Path) -> dict:
    """Everything of the package's description but its tensors."""
    from bioimageio.spec.dataset import v0_3 as dataset

    kwargs = {**asdict(config), "scale": scale, "trained": float(metadata.get("scale", 4)),
              "always_coarse": modelfile.asks_keep_coarse(metadata)}
    torch_version = bio.Version(torch.__version__.split("+")[0])
    told = (f" at a fixed blur scale s = {scale:g}: for images blurred like a ×{scale:g} bicubic enlargement "
            "(s = 1: sharp to the pixel; the documentation says which s suits which data)") if scale is not None else ""
    return dict(
        # The format allows no "." in a name: 2.5 is written 2_5 there (and 2.5 in the description).
        name="ficli FI-GAN fluorescence sharpening" + (f" (blur scale {scale:g})".replace(".", "_") if scale is not None else ""),
        description=(f"Sharpens blurred fluorescence images at their own size{told}. FI-GAN generator trained with the "
                     "total gradient loss. Output on the input's percentile-normalised scale."),
        authors=[bio.Author(name="ficli contributors")],
        maintainers=[bio.Maintainer(github_user=user) for user in project.get("maintainers", ())],
        git_repo=project.get("git_repo"),
        version=bio.Version(__version__),
        cite=[bio.CiteEntry(text=PAPER, doi=bio.Doi(PAPER_DOI))],
        license=bio.LicenseId("MIT"),
        documentation=bio.FileDescr(source=work / "README.md"),
        covers=[bio.FileDescr(source=work / "cover.png")],
        # Same size in, same size out: a sharpening (deblurring) model, not super-resolution.
        tags=["fluorescence", "deblurring", "image-restoration", "2d", "pytorch", "ficli", "fi-gan"],
        training_data=dataset.DatasetDescr(name="ficli training images", description=modelzoo.training_data_text(metadata),
                                           authors=[bio.Author(name="ficli contributors")], cite=[], license=None),
        weights=bio.WeightsDescr(
            torchscript=bio.TorchscriptWeightsDescr(source=work / "weights_torchscript.pt", pytorch_version=torch_version,
                                                    parent="pytorch_state_dict"),
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
