"""`ficli export` (ONNX, TorchScript, bioimage.io) and `ficli info`: the exported graphs against
ficli's own generator and engine, the package against bioimageio.core's own test, and bad input.

The default model is exported once per module for the real-image checks (seconds each); the
rest uses tiny models with random weights (a fresh generator is the identity, which would hide
a wrong graph).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ficli.image import io
from ficli.model import modelfile
from ficli.inference.engine import TileConfig, run_tiled
from ficli.image.degrade import coarse_kept, keep_coarse_array
from ficli.tools.export import ONNX_OPSET, TOLERANCE, export_model
from ficli.image.intensity import normalize, percentile_range
from ficli.model.nets import Generator, GeneratorConfig
from ficli.image.phantom import phantom
from ficli.inference.runtime import default_model_path
from conftest import TINY, random_model_file as _random_model, shared_images, unboxed
from hostile_files import leftovers, snapshot

hostile = pytest.mark.hostile
pytestmark = pytest.mark.usefixtures("one_torch_thread")
COND = GeneratorConfig(features=8, growth=4, layers=1, blocks=1, scale_input=True)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return _random_model(tmp_path_factory.mktemp("m") / "tiny.safetensors", TINY)


@pytest.fixture(scope="module")
def conditioned_model(tmp_path_factory) -> Path:
    return _random_model(tmp_path_factory.mktemp("m") / "cond.safetensors", COND, scale=3)


@pytest.fixture(scope="module")
def default_exports(tmp_path_factory) -> dict:
    """The default model as TorchScript and ONNX (when onnx/onnxruntime are installed)."""
    folder = tmp_path_factory.mktemp("exports")
    torch.set_num_threads(1)
    paths = {"torchscript": export_model(None, "torchscript", folder / "ficli.pt").path}
    if _have("onnx") and _have("onnxruntime"):
        paths["onnx"] = export_model(None, "onnx", folder / "ficli.onnx").path
    return paths


def _have(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def _runner(fmt: str, path: Path):
    """The exported file as a function of a (B, C, H, W) float32 array and, for a model with a
    blur-scale input, the s to tell it (None: the input left out, its default)."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        return lambda x, s=None: (module(torch.from_numpy(x)) if s is None else
                                  module(torch.from_numpy(x), torch.tensor([s], dtype=torch.float32))).detach().numpy()
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'ficli[export]')")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x, s=None: session.run(None, {"input": x, **({} if s is None else {"scale": np.array([s], np.float32)})})[0]


def _ficli(generator, x: np.ndarray, scale: float | None = None) -> np.ndarray:
    """ficli's own result for a normalised (C, H, W) image: the engine's whole-image run, and for a
    model told s the input's coarse content kept where `ficli enhance` keeps it by default
    (`degrade.coarse_kept`; OpenCV's filter, where the export has the torch form of `degrade.keep_coarse`)."""
    fn = generator if scale is None else (lambda t: generator(t, scale))
    y = run_tiled(fn, x, TileConfig(tile=1024, overlap=32, batch=1))
    return keep_coarse_array(y, x, scale) if coarse_kept(None, scale) else y


def _normalised(image: np.ndarray) -> np.ndarray:
    unit = io.to_unit(image)
    lo, hi = percentile_range(unit)
    return normalize(unit, lo, hi)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_equals_ficli_on_real_images(fmt, default_exports):
    files = shared_images("val", 2)
    if fmt not in default_exports:
        pytest.skip("onnx or onnxruntime is not installed (pip install 'ficli[export]')")
    run = _runner(fmt, default_exports[fmt])
    generator, config, meta = modelfile.load_model(default_model_path())
    scale = float(meta["scale"]) if config.scale_input else None  # what an export fixes: the training scale
    for path in files:
        image = io.read_image(path).data
        image = image if image.ndim == 2 else image[..., 0]
        x = _normalised(image[:203, :251])  # odd sides: the padding inside the graph is exercised
        got = run(x[None, None])[0]
        want = _ficli(generator, x[None], scale)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= TOLERANCE, path.name


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exports_match_ficli_enhance_told_the_same_scale(fmt, default_exports, run_cli, tmp_path):
    """`ficli enhance --scale S` on an odd-sized real image (as float32, so nothing is rounded) and
    the export told the same s, its output mapped back as the README says: within 1e-4."""
    import tifffile

    path = shared_images("test", 1)[0]
    if fmt not in default_exports:
        pytest.skip("onnx or onnxruntime is not installed (pip install 'ficli[export]')")
    image = io.read_image(path).data
    image = image if image.ndim == 2 else image[..., 0]
    unit = io.to_unit(image[:203, :251])  # odd sides: the padding inside the graph is exercised
    tifffile.imwrite(tmp_path / "cells.tif", unit)
    run = _runner(fmt, default_exports[fmt])
    lo, hi = percentile_range(unit)  # as the README tells users to map the image before the graph
    for s in ("1.5", "2.5", "4"):
        result = run_cli("enhance", tmp_path / "cells.tif", "--out", tmp_path / s, "--scale", s, "-q")
        assert result.exit_code == 0, result.output
        ficli = tifffile.imread(tmp_path / s / "cells.tif")
        got = run(normalize(unit, lo, hi)[None, None], float(s))[0, 0] * (hi - lo) + lo
        assert got.shape == ficli.shape == unit.shape
        assert np.abs(got - ficli).max() <= TOLERANCE, (path.name, s)
    left_out = run(normalize(unit, lo, hi)[None, None])[0, 0] * (hi - lo) + lo  # the default: the training scale, 4
    assert np.abs(left_out - ficli).max() <= TOLERANCE


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_equals_ficli_on_a_phantom_of_any_size_and_batch(fmt, tiny_model, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnx", reason="onnx is not installed (pip install 'ficli[export]')")
    report = export_model(tiny_model, fmt, tmp_path / f"m.{fmt}")
    assert report.max_difference <= TOLERANCE and report.bytes == report.path.stat().st_size > 0
    assert report.opset == (ONNX_OPSET if fmt == "onnx" else None)
    run = _runner(fmt, report.path)
    generator, _, _ = modelfile.load_model(tiny_model)
    for height, width, batch in ((64, 64, 1), (37, 61, 3), (5, 4, 2)):
        x = np.stack([normalize(phantom(height, width, seed=s), 0.02, 0.8) for s in range(batch)])[:, None]
        got = run(np.ascontiguousarray(x, np.float32))
        for k in range(batch):
            want = _ficli(generator, x[k])
            assert np.abs(got[k] - want).max() <= TOLERANCE, (height, width, k)
            assert np.abs(want - x[k]).max() > 1e-3  # the model really changes the image


def test_onnx_states_its_opset_and_dynamic_axes(tiny_model, tmp_path):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'ficli[export]')")
    proto = onnx.load(str(export_model(tiny_model, "onnx", tmp_path / "m.onnx").path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [ONNX_OPSET]
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["ficli"])["normalize"] == {"lo_pct": 0.1, "hi_pct": 99.9}


def test_a_model_file_that_asks_for_the_coarse_step_exports_with_it(conditioned_model, tmp_path):
    """Metadata "keep_coarse": true (the noise-kept model): the exported graph keeps the coarse
    content at a told s of 4 too, as `ficli enhance` runs that file."""
    generator, config, meta = modelfile.load_model(conditioned_model)
    x = normalize(phantom(45, 30, seed=4), 0.02, 0.8)[None]
    y = run_tiled(lambda t: generator(t, 4.0), x, TileConfig(tile=1024, overlap=32, batch=1))
    for asks, expected in ((True, keep_coarse_array(y, x, 4.0)), (False, y)):  # trained at ×4, told 4 ≥ FREE_FROM
        path = modelfile.save_model(tmp_path / f"{asks}.safetensors", generator, config, {**meta, "scale": 4, "keep_coarse": asks})
        run = _runner("torchscript", export_model(path, "torchscript", tmp_path / f"{asks}.pt").path)
        assert np.abs(run(x[None], 4.0)[0] - expected).max() <= TOLERANCE, asks
    assert np.abs(keep_coarse_array(y, x, 4.0) - y).max() > 10 * TOLERANCE


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_blur_scale_is_a_second_input_with_a_default(fmt, conditioned_model, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnx", reason="onnx is not installed (pip install 'ficli[export]')")
    generator, _, _ = modelfile.load_model(conditioned_model)
    x = normalize(phantom(45, 30, seed=4), 0.02, 0.8)[None]
    for default, expected_default in ((2.5, 2.5), (None, 3.0)):  # None: the model's training scale
        report = export_model(conditioned_model, fmt, tmp_path / f"s{default}.{fmt}", scale=default)
        assert report.scale == expected_default and "second input named 'scale'" in report.describe()
        run = _runner(fmt, report.path)
        assert np.abs(run(x[None])[0] - _ficli(generator, x, expected_default)).max() <= TOLERANCE  # left out: the default
        for s, told in ((1.0, 1.0), (1.8, 1.8), (3.0, 3.0), (6.0, 3.0), (0.5, 1.0)):  # told as ficli tells it: 1..training scale
            assert np.abs(run(x[None], s)[0] - _ficli(generator, x, told)).max() <= TOLERANCE, s
    assert np.abs(run(x[None], 1.0) - run(x[None], 3.0)).max() > 1e-3  # the scale really reaches the network
    if fmt == "onnx":
        import onnx

        proto = onnx.load(str(report.path))
        assert [i.name for i in proto.graph.input] == ["input", "scale"]
        assert [t.name for t in proto.graph.initializer if t.name == "scale"] == ["scale"]  # the default


def test_torchscript_records_where_it_came_from(conditioned_model, tmp_path):
    files = {"ficli.json": ""}
    torch.jit.load(str(export_model(conditioned_model, "torchscript", tmp_path / "m.pt", scale=2).path), _extra_files=files)
    settings = json.loads(files["ficli.json"])
    assert settings["default_scale"] == 2.0 and settings["training_scale"] == 3 and settings["config"]["scale_input"]
    assert "second input 'scale'" in settings["scale_input"]


def _package(model: Path, out: Path, **kw) -> Path:
    pytest.importorskip("bioimageio.spec", reason="bioimageio.spec is not installed (pip install 'ficli[export]')")
    return export_model(model, "bioimageio", out, **kw).path


@pytest.mark.parametrize("conditioned", [False, True], ids=["plain", "scale-conditioned"])
def test_bioimageio_package_passes_bioimageio_core_test_model(conditioned, tiny_model, conditioned_model, tmp_path):
    package = _package(conditioned_model if conditioned else tiny_model, tmp_path / "ficli.zip", **({"scale": 2.5} if conditioned else {}))
    core = pytest.importorskip("bioimageio.core", reason="bioimageio.core is not installed (pip install 'ficli[export]')")
    summary = core.test_model(package)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    ran = " ".join(d.name for d in summary.details)
    assert "Reproduce test outputs from test inputs (torchscript)" in ran
    assert "Reproduce test outputs from test inputs (pytorch_state_dict)" in ran


def test_bioimageio_package_holds_what_the_format_asks(conditioned_model, tmp_path):
    from ruyaml import YAML  # what bioimageio.spec reads and writes rdf.yaml with

    package = _package(conditioned_model, tmp_path / "ficli.zip", scale=2.5)
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        rdf = YAML(typ="safe").load(archive.read("rdf.yaml").decode())
        doc = rdf["documentation"]
        readme = archive.read(doc["source"] if isinstance(doc, dict) else doc).decode()
    assert {"weights.pt", "weights_torchscript.pt", "ficli_generator.py", "test_input.npy", "test_output.npy", "cover.png"} <= names
    assert "2_5" in rdf["name"] and "2.5" in rdf["description"]
    assert rdf["license"] == "MIT" and rdf["cite"][0]["doi"]
    pre = next(p for p in rdf["inputs"][0]["preprocessing"] if p["id"] == "scale_range")
    assert pre["kwargs"]["axes"] == ["y", "x"] and pre["kwargs"]["min_percentile"] == 0.1 and pre["kwargs"]["max_percentile"] == 99.9
    assert "normalised scale" in rdf["outputs"][0]["description"] and "normalised scale" in readme
    assert set(rdf["weights"]) == {"torchscript", "pytorch_state_dict"}
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["scale"] == 2.5


def test_default_model_package_documents_the_model_card(tmp_path):
    package = _package(None, tmp_path / "ficli.zip")
    with zipfile.ZipFile(package) as archive:
        readme = archive.read("README.md").decode()
    assert "Model card" in readme and "## Validation" in readme and "35.71 dB" in readme


# --- the command line: good and bad input -------------------------------------------------------


def test_cli_export_prints_size_time_and_check(run_cli, tiny_model, tmp_path):
    result = run_cli("export", "--model", tiny_model, "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "MB in" in result.output and "differs from ficli's generator by at most" in result.output


@hostile
def test_export_unknown_format_is_a_usage_error(run_cli, tiny_model, tmp_path):
    before = snapshot(tmp_path)
    result = run_cli("export", "--model", tiny_model, "--format", "tflite", "--out", tmp_path / "m.tflite")
    assert result.exit_code == 2
    assert "unknown format 'tflite'" in unboxed(result.output) and "onnx, torchscript, bioimageio" in unboxed(result.output)
    assert snapshot(tmp_path) == before


@hostile
@pytest.mark.parametrize("kind", ["text", "other-safetensors", "missing"])
def test_export_of_a_file_that_is_not_a_ficli_model(run_cli, tmp_path, kind):
    from safetensors.torch import save_file

    model = tmp_path / "model.safetensors"
    if kind == "text":
        model.write_text("not a model\n")
    elif kind == "other-safetensors":
        save_file({"w": torch.zeros(2)}, str(model))
    before = snapshot(tmp_path)
    result = run_cli("export", "--model", model, "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert result.exit_code == 1
    assert str(model) in result.output and "Traceback" not in result.output
    assert snapshot(tmp_path) == before


@hostile
def test_export_existing_output_needs_overwrite(run_cli, tiny_model, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"keep me")
    result = run_cli("export", "--model", tiny_model, "--format", "torchscript", "--out", out)
    assert result.exit_code == 1 and "exists; add --overwrite" in result.output
    assert out.read_bytes() == b"keep me"
    result = run_cli("export", "--model", tiny_model, "--format", "torchscript", "--out", out, "--overwrite")
    assert result.exit_code == 0 and torch.jit.load(str(out)) is not None
    assert not leftovers(tmp_path)


@hostile
@pytest.mark.parametrize("scale", ["2", "9"])
def test_export_scale_the_model_cannot_take_is_a_usage_error(run_cli, tiny_model, conditioned_model, tmp_path, scale):
    model = tiny_model if scale == "2" else conditioned_model  # --scale on a plain model; out of range
    before = snapshot(tmp_path)
    result = run_cli("export", "--model", model, "--format", "torchscript", "--out", tmp_path / "m.pt", "--scale", scale)
    assert result.exit_code == 2
    assert ("not conditioned on the blur scale" if scale == "2" else "outside 1..8") in unboxed(result.output)
    assert snapshot(tmp_path) == before


@hostile
def test_export_that_fails_its_check_leaves_nothing(run_cli, tiny_model, tmp_path, monkeypatch):
    from ficli.tools import export

    monkeypatch.setattr(export, "_difference", lambda ours, theirs: 1.0)  # every check now fails
    before = snapshot(tmp_path)
    for fmt in ("torchscript", "onnx", "bioimageio"):
        result = run_cli("export", "--model", tiny_model, "--format", fmt, "--out", tmp_path / f"m.{fmt}")
        assert result.exit_code == 1 and "nothing was written" in result.output, (fmt, result.output)
    assert snapshot(tmp_path) == before and not leftovers(tmp_path)


@hostile
def test_export_without_the_export_packages_says_how_to_install_them(run_cli, tiny_model, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    result = run_cli("export", "--model", tiny_model, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert result.exit_code == 1 and "pip install 'ficli[export]'" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_info_table_and_json(run_cli, conditioned_model):
    table = run_cli("info", conditioned_model)
    assert table.exit_code == 0, table.output
    assert "conditioned on the input's scale (trained at ×3)" in table.output and "8 features" in table.output
    result = run_cli("info", conditioned_model, "--json")
    data = json.loads(result.output)
    assert data["config"]["scale_input"] is True and data["scale"] == 3 and data["bytes"] == os.path.getsize(conditioned_model)
    assert data["parameters"] == sum(p.numel() for p in Generator(COND, spectral_norm=False).parameters())


def test_info_of_the_default_model_shows_its_training(run_cli):
    result = run_cli("info")
    assert result.exit_code == 0
    for text in ("1,427,266", "conditioned on the input's scale (trained at ×4)", "stage pretrain", "stage finetune", "val PSNR"):
        assert text in result.output
    result = run_cli("info", "paper")  # the shipped paper-protocol model, by its name
    assert result.exit_code == 0
    for text in ("ficli-paper.safetensors", "1,426,690", "×4 (fixed)", "stage finetune", "val PSNR 35.71 dB"):
        assert text in result.output
    assert "coarse content" not in unboxed(run_cli("info").output)
    assert "kept at every s unless --free-coarse is given" in unboxed(run_cli("info", "noise-kept").output)


@hostile
def test_info_of_a_file_that_is_not_a_model(run_cli, tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_text("hello")
    result = run_cli("info", bad)
    assert result.exit_code == 1 and str(bad) in result.output and "Traceback" not in result.output


def test_bioimageio_package_runs_a_640_by_639_image_in_bioimageio_core(conditioned_model, tmp_path):
    """Axes of step 1: bioimageio.core runs an odd-sized image whole, and gives ficli's result on
    the normalised scale (the package's scale_range is ficli's percentile map)."""
    package = _package(conditioned_model, tmp_path / "ficli.zip", scale=2.5)
    core = pytest.importorskip("bioimageio.core", reason="bioimageio.core is not installed (pip install 'ficli[export]')")
    counts = np.round(phantom(640, 639, seed=3) * 4095).astype(np.float32)
    sample = core.predict(model=str(package), inputs={"input": counts[None, None]})
    got = np.asarray(sample.members["output"].data)
    assert got.shape == (1, 1, 640, 639)
    generator, _, _ = modelfile.load_model(conditioned_model)
    lo, hi = percentile_range(counts)
    want = _ficli(generator, normalize(counts, lo, hi)[None], 2.5)
    assert np.abs(got[0] - want).max() <= 1e-3  # bioimageio.core's percentile estimate may differ slightly from numpy's


def test_bioimageio_package_describes_its_provenance_and_samples(conditioned_model, tmp_path):
    from ruyaml import YAML

    package = export_model(conditioned_model, "bioimageio", tmp_path / "ficli.zip", scale=1.5,
                           git_repo="https://github.com/example/ficli", maintainers=("example-user",)).path
    with zipfile.ZipFile(package) as archive:
        rdf = YAML(typ="safe").load(archive.read("rdf.yaml").decode())
        readme = archive.read("README.md").decode()
        names = set(archive.namelist())
    assert "super-resolution" not in rdf["tags"] and "deblurring" in rdf["tags"]
    assert rdf["git_repo"].rstrip("/") == "https://github.com/example/ficli" and rdf["maintainers"][0]["github_user"] == "example-user"
    assert rdf["version"] and rdf["training_data"]["name"] and rdf["training_data"]["description"]
    assert rdf["weights"]["torchscript"]["parent"] == "pytorch_state_dict"
    for tensor in (rdf["inputs"][0], rdf["outputs"][0]):
        sample = tensor["sample_tensor"]
        assert (sample["source"] if isinstance(sample, dict) else sample) in names
    for axis in rdf["inputs"][0]["axes"][2:]:
        assert axis["size"]["step"] == 1
    assert "1_5" in rdf["name"] and "s = 1.5" in rdf["description"]
    assert "which s suits which data" in rdf["description"] and "| your data | s |" in readme
    assert "y * (hi - lo) + lo" in readme and "scale_mean_variance" in readme


def test_readme_onnx_example_gives_ficli_enhance_result(default_exports, run_cli, tmp_path, monkeypatch):
    """The README's ONNX snippet, run as written on a real image, equals `ficli enhance --scale 1.5`."""
    import tifffile

    if "onnx" not in default_exports:
        pytest.skip("onnx or onnxruntime is not installed (pip install 'ficli[export]')")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it in Fiji", 1)[1].split("\n## ", 1)[0]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    image = io.read_image(shared_images("test", 1)[0]).data
    image = image if image.ndim == 2 else image[..., 0]
    tifffile.imwrite(tmp_path / "cells.tif", io.to_unit(image[:151, :97]))
    (tmp_path / "ficli.onnx").symlink_to(default_exports["onnx"])
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert run_cli("enhance", "cells.tif", "--out", "out", "--scale", "1.5", "-q").exit_code == 0
    assert np.abs(scope["sharp"] - tifffile.imread(tmp_path / "out" / "cells.tif")).max() <= TOLERANCE
