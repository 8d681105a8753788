"""Shared test helpers: real image files in tmp_path and a CLI runner."""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ficli.model import modelfile
from ficli.image.io import write_image
from ficli.model.nets import Generator, GeneratorConfig
from ficli.image.phantom import phantom, to_dtype

# ../shared/data beside the checkout; FICLI_SHARED_DATA elsewhere (the GPU machine gets the
# repository alone: benchmarks/gpu_prepare.sh copies the test images into it).
SHARED_DATA = Path(os.environ.get("FICLI_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture
def run_cli():
    """Invoke the ficli app in-process: run_cli("degrade", "a", "--out", "b") -> Result."""
    from ficli.cli import app

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
def phantom_folder(tmp_path) -> Path:
    """A folder with an 8-bit PNG, a 16-bit PNG and a 12-bit-in-16-bit TIFF phantom (64×48)."""
    folder = tmp_path / "hr"
    write_image(folder / "a8.png", to_dtype(phantom(64, 48, seed=1), np.uint8))
    write_image(folder / "b16.png", to_dtype(phantom(64, 48, seed=2), np.uint16))
    write_image(folder / "c12.tif", to_dtype(phantom(64, 48, seed=3), np.uint16, max_value=4095))
    return folder


def shipped_generator(device: str = "cpu", frames: list | None = None):
    """The default model's generator as the engine calls it: a model conditioned on the blur scale
    is told the s `--scale auto` picks for `frames` (its training scale without frames)."""
    from ficli.inference.runtime import load_generator, scale_chooser, told

    generator, info = load_generator(None, torch.device(device))
    choose = scale_chooser(info, None)
    return generator if choose is None else told(generator, choose(frames)[0] if frames else float(info.get("scale", 4)))


def example_module(name: str):
    """examples/NAME.py loaded as a module, for the tests of an example script."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_images(split: str, count: int) -> list[Path]:
    """A few real fluorescence images from ../shared/data, or skip the test with the reason."""
    folder = SHARED_DATA / "fluorescence" / split
    files = sorted(folder.glob("*.png"))[:count]
    if not files:
        pytest.skip(f"real images not found in {folder}")
    return files


# The smallest generator: one block of one layer. Fresh, it is the identity (out_scale 0).
TINY = GeneratorConfig(features=8, growth=4, layers=1, blocks=1)


@pytest.fixture
def one_torch_thread():
    """The machine's cores are busy: two spinning OpenMP pools on 2 cores can be many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def unboxed(output: str) -> str:
    """A usage error's text on one line, without Typer's box and line breaks."""
    return " ".join(output.replace("│", " ").split())


@pytest.fixture(scope="session")
def tiny_identity_model(tmp_path_factory) -> Path:
    """A model file whose generator returns its input unchanged."""
    return modelfile.save_model(tmp_path_factory.mktemp("model") / "identity.safetensors", Generator(TINY, spectral_norm=False), TINY, {"scale": 4})


TINY_CONDITIONED = GeneratorConfig(features=8, growth=4, layers=1, blocks=1, scale_input=True)


@pytest.fixture(scope="session")
def conditioned_model(tmp_path_factory) -> Path:
    """A tiny generator conditioned on the blur scale whose output depends on s (out_scale 0.05,
    random weights)."""
    torch.manual_seed(0)
    g = Generator(TINY_CONDITIONED, spectral_norm=False)
    with torch.no_grad():
        g.out_scale.fill_(0.05)
    return modelfile.save_model(tmp_path_factory.mktemp("m") / "cond.safetensors", g, TINY_CONDITIONED, {"scale": 4})


class RunsCodeOnLoad:
    """Unpickling this creates the file `marker`: proof that a loader ran code from a file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def code_pickle(path: Path, key: str, how: str, protocol: int | None = None) -> Path:
    """A weights file at `path` whose one tensor `key` runs code when unpickled (it creates the file
    "marker" beside `path`), written by `pickle` (with `protocol`) or by `torch.save` (`how`)."""
    payload = {key: RunsCodeOnLoad(str(path.parent / "marker"))}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
    else:
        torch.save(payload, path)
    return path


def random_model_file(path: Path, config: GeneratorConfig = TINY, scale: int = 4, seed: int = 0) -> Path:
    """A model file of a generator with random weights (seeded) that is not the identity."""
    torch.manual_seed(seed)
    generator = Generator(config, spectral_norm=False)
    with torch.no_grad():
        generator.out_scale.fill_(0.7)
    return modelfile.save_model(path, generator, config, {"scale": scale})
