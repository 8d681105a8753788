"""ficli.api: the README's example runs as written, and arrays come out as `ficli enhance` writes files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tifffile
import pytest
import torch

from ficli import api
from ficli.image import io, provenance
from ficli.image.blurscale import estimate_scale
from ficli.image.degrade import Degradation, degrade
from ficli.errors import ConfigError, FicliError, InputError
from ficli.model.nets import GeneratorConfig
from ficli.image.phantom import phantom, to_dtype
from conftest import TINY, random_model_file

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_model(path: Path, config: GeneratorConfig = TINY, scale: int = 4) -> Path:
    return random_model_file(path, config, scale, seed=1)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return _random_model(tmp_path_factory.mktemp("m") / "tiny.safetensors")


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Use it from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section holds one Python example"
    return blocks[0]


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
    assert "1427266 parameters" in capsys.readouterr().out
    for name in ("cells.tif", "cells_sharp.tif", "sharp_rgb.png", "sharp_stack.tif"):
        assert (tmp_path / name).is_file(), name
    assert io.read_image(tmp_path / "sharp_stack.tif").is_stack
    assert io.read_image(tmp_path / "sharp_rgb.png").data.shape == (200, 300, 3)
    assert not np.array_equal(io.read_image(tmp_path / "cells_sharp.tif").data, io.read_image(tmp_path / "cells.tif").data)


@pytest.mark.parametrize("name, data", [
    ("a8.png", to_dtype(phantom(48, 61, seed=1), np.uint8)),
    ("b12.tif", to_dtype(phantom(48, 61, seed=2), np.uint16, max_value=4095)),
    ("rgb.png", np.stack([to_dtype(phantom(40, 52, seed=s), np.uint8) for s in (3, 4, 5)], axis=-1)),
    ("rgba.png", np.concatenate([np.stack([to_dtype(phantom(40, 52, seed=s), np.uint16) for s in (3, 4, 5)], axis=-1),
                                 np.full((40, 52, 1), 777, np.uint16)], axis=-1)),
    ("f32.tif", phantom(36, 44, seed=6)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_enhance_array_equals_the_command_line(name, data, model_file, tmp_path, run_cli):
    src = tmp_path / "in" / name
    io.write_image(src, data)
    result = run_cli("enhance", src, "--out", tmp_path / "out", "--model", model_file, "--device", "cpu", "--tile", "32", "--overlap", "4")
    assert result.exit_code == 0, result.output
    cli = io.read_image(tmp_path / "out" / name).data
    model = api.load_model(model_file)
    ours = api.enhance(model, api.read_image(src), tile=32, overlap=4)
    assert ours.dtype == data.dtype and ours.shape == data.shape
    np.testing.assert_array_equal(ours, cli)
    assert not np.array_equal(ours, data)  # it did something


def test_enhance_stack_uses_one_intensity_map_as_the_command_line(model_file, tmp_path, run_cli):
    stack = np.stack([to_dtype(phantom(32, 40, seed=s) * k, np.uint16) for s, k in ((1, 1.0), (2, 0.3), (3, 0.6))])
    src = tmp_path / "in" / "s.tif"
    io.write_image(src, stack, is_stack=True)
    assert run_cli("enhance", src, "--out", tmp_path / "out", "--model", model_file, "--device", "cpu").exit_code == 0
    model = api.load_model(model_file)
    ours = api.enhance(model, api.read_image(src), stack=True)
    np.testing.assert_array_equal(ours, io.read_image(tmp_path / "out" / "s.tif").data)
    one_by_one = np.stack([api.enhance(model, f) for f in stack])
    assert not np.array_equal(ours, one_by_one)  # frame by frame would map each frame by its own range


def test_enhance_file_writes_what_the_command_line_writes(model_file, tmp_path, run_cli):
    src = tmp_path / "in" / "c.tif"
    io.write_image(src, to_dtype(phantom(40, 40, seed=8), np.uint16, max_value=4095))
    assert run_cli("enhance", src, "--out", tmp_path / "out", "--model", model_file, "--device", "cpu").exit_code == 0
    dest = api.enhance_file(api.load_model(model_file), src, tmp_path / "api.tif")
    with tifffile.TiffFile(dest) as ours, tifffile.TiffFile(tmp_path / "out" / "c.tif") as cli:
        np.testing.assert_array_equal(ours.asarray(), cli.asarray())
        assert ours.pages.first.tags["Software"].value == cli.pages.first.tags["Software"].value
    # the same record but for what tells the two apart: the command ("api", "enhance") and the date
    same = lambda r: {k: v for k, v in r.items() if k not in ("command", "date", "output")}  # noqa: E731
    assert same(provenance.read_image_record(dest)) == same(provenance.read_image_record(tmp_path / "out" / "c.tif"))


COND = GeneratorConfig(features=8, growth=4, layers=1, blocks=1, scale_input=True)


@pytest.fixture(scope="module")
def conditioned_file(tmp_path_factory) -> Path:
    return _random_model(tmp_path_factory.mktemp("c") / "c.safetensors", COND, scale=3)


def _blurred(side: int = 96, s: float = 2.0) -> np.ndarray:
    x = degrade(phantom(side, side, seed=2, psf_sigma=0.6, peak_photons=None), Degradation(scale=s), np.random.default_rng(0))
    return to_dtype(np.clip(x, 0, 1), np.uint16)


def test_scale_conditioned_model_is_told_the_estimate_or_the_given_scale_as_the_command_line(conditioned_file):
    model = api.load_model(conditioned_file)
    image = _blurred()
    estimate = estimate_scale(io.to_unit(image)).scale
    assert abs(estimate - 2) <= 0.5  # not the training scale (3): the default below is the estimate
    assert np.array_equal(api.enhance(model, image), api.enhance(model, image, scale=estimate))
    assert not np.array_equal(api.enhance(model, image, scale=1.5), api.enhance(model, image))
    # above the training scale: told the training scale, as `ficli enhance` does
    assert np.array_equal(api.enhance(model, image, scale=5), api.enhance(model, image, scale=3))
    x = torch.from_numpy(io.to_unit(image)[None, None].astype(np.float32))
    with torch.no_grad():
        assert torch.equal(model.runner()(x), model.generator(x, 3.0))  # no image to estimate from: the training scale
        assert torch.equal(model.runner(6)(x), model.generator(x, 3.0))


def test_scale_conditioned_model_gives_the_pixels_of_the_command_line(conditioned_file, tmp_path, run_cli):
    src = tmp_path / "in" / "b.tif"
    io.write_image(src, _blurred())
    result = run_cli("enhance", src, "--out", tmp_path / "out", "--model", conditioned_file, "--device", "cpu")
    assert result.exit_code == 0 and "(estimated: learned " in result.output, result.output
    cli = io.read_image(tmp_path / "out" / "b.tif").data
    model = api.load_model(conditioned_file)
    np.testing.assert_array_equal(api.enhance(model, api.read_image(src)), cli)
    dest, record = api.enhance_file(model, src, tmp_path / "api.tif", return_record=True)
    np.testing.assert_array_equal(io.read_image(dest).data, cli)
    # the same record as the command line's, but for what tells them apart (the command, the date, the name)
    same = lambda r: {k: v for k, v in r.items() if k not in ("command", "date", "output")}  # noqa: E731
    assert same(record) == same(provenance.read_image_record(tmp_path / "out" / "b.tif")) == same(provenance.read_image_record(dest))
    assert record["blur_scale_source"] == "estimated" and record["model_sha256"] == api.model_summary(conditioned_file)["sha256"]


@pytest.mark.hostile
@pytest.mark.parametrize("shape, stack, error", [
    ((8, 8, 5), False, "not 1, 3 (RGB) or 4 (RGBA)"),
    ((2, 8, 8, 8), False, "a stack needs stack=True"),
    ((8, 8), True, "(N, H, W) or (N, H, W, C)"),
    ((0, 8), False, "got shape (0, 8)"),
])
def test_enhance_refuses_arrays_it_cannot_read(shape, stack, error, model_file):
    with pytest.raises(InputError, match=re.escape(error)):
        api.enhance(api.load_model(model_file), np.zeros(shape, np.uint8), stack=stack)


@pytest.mark.hostile
def test_enhance_refuses_bad_values_types_and_scales(model_file):
    model = api.load_model(model_file)
    with pytest.raises(InputError, match="NaN or infinite"):
        api.enhance(model, np.array([[0.0, np.nan], [1.0, 0.5]], np.float32))
    with pytest.raises(InputError, match="pixel type int16 is not supported"):
        api.enhance(model, np.zeros((8, 8), np.int16))
    with pytest.raises(ConfigError, match="not conditioned on the blur scale"):
        api.enhance(model, np.zeros((8, 8), np.uint8), scale=2)
    with pytest.raises(ConfigError, match="not conditioned on the blur scale"):
        api.resolve_scale(model.config, model.metadata, 2)


@pytest.mark.hostile
@pytest.mark.parametrize("scale", [0.5, 8.5, float("nan")])
def test_scale_outside_one_to_eight_is_refused_with_the_range(conditioned_file, scale):
    model = api.load_model(conditioned_file)
    for call in (lambda: api.enhance(model, np.zeros((8, 8), np.uint8), scale=scale), lambda: model.runner(scale),
                 lambda: api.resolve_scale(model.config, model.metadata, scale)):
        with pytest.raises(ConfigError, match=r"outside 1\.\.8"):
            call()
    with pytest.raises(FicliError, match="not a ficli model|not a readable safetensors"):
        api.load_model(README)
