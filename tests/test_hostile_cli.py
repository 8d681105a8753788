"""Each command under bad input and faults: the contract of docs/RELIABILITY.md, one test per cell.

Every test checks the message (names the file, says what to do, no traceback), the exit code, what
was written (only complete files, no temporary left) and that the inputs are untouched. Images are
16×16 and models tiny, so each test takes well under a second (training runs a few seconds).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ficli.image import io
from ficli.model import modelfile
from ficli.model.nets import Generator, GeneratorConfig
from conftest import TINY
from hostile_files import (
    BAD_FILES, deny_open, deny_writing, fill_disk_after, good_gray, leftovers, snapshot, write_bad,
)

hostile = pytest.mark.hostile
TRAIN_FAST = ("--epochs", "1", "--steps", "1", "--batch", "2", "--crop", "16", "--features", "8",
              "--no-gan", "--device", "cpu", "--val-size", "16")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model(tiny_identity_model) -> Path:
    return tiny_identity_model


@pytest.fixture
def src(tmp_path) -> Path:
    """An input folder holding one good 16×16 image."""
    io.write_image(tmp_path / "in" / "good.png", good_gray())
    return tmp_path / "in"


def run(run_cli, command: str, src: Path, out: Path, model: Path, *extra):
    """The command over folder `src`; `out` is its output folder (evaluate: --json file inside it; train: run folder)."""
    if command == "degrade":
        return run_cli("degrade", src, "--out", out, *extra)
    if command == "enhance":
        return run_cli("enhance", src, "--out", out, "--model", model, "--device", "cpu", *extra)
    if command == "evaluate":
        return run_cli("evaluate", src, src, "--json", out / "scores.json", *extra)
    if command == "train":
        return run_cli("train", "--data", src, "--val", src, "--out", out, *TRAIN_FAST, *extra)
    raise ValueError(command)


def clean_failure(result, *words):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert str(word) in result.output, (word, result.output)


def scores(out: Path) -> dict:
    return json.loads((out / "scores.json").read_text())


# ------------------------------------------------------------------------------ missing and empty


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance", "evaluate", "train"])
def test_missing_input(run_cli, tmp_path, model, command):
    missing = tmp_path / "missing"
    result = run(run_cli, command, missing, tmp_path / "out", model)
    clean_failure(result, missing, "not found" if command == "train" else "no such file or folder")
    assert not (tmp_path / "out").exists()


@hostile
def test_evaluate_missing_sr_folder(run_cli, src, tmp_path):
    result = run_cli("evaluate", src, tmp_path / "missing")
    clean_failure(result, tmp_path / "missing", "no such file or folder")


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance", "evaluate", "train"])
def test_empty_folder(run_cli, tmp_path, model, command):
    (tmp_path / "empty").mkdir()
    result = run(run_cli, command, tmp_path / "empty", tmp_path / "out", model)
    clean_failure(result, tmp_path / "empty", "holds no images" if command == "train" else "no images found")
    assert not (tmp_path / "out").exists()


@hostile
def test_evaluate_empty_sr_folder(run_cli, src, tmp_path):
    (tmp_path / "empty").mkdir()
    clean_failure(run_cli("evaluate", src, tmp_path / "empty"), tmp_path / "empty", "no images found")


@hostile
def test_train_validation_folder_without_images(run_cli, src, tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "notes.txt").write_text("no images here")
    result = run_cli("train", "--data", src, "--val", tmp_path / "val", "--out", tmp_path / "run", *TRAIN_FAST)
    clean_failure(result, "validation folder holds no images")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- folders with clutter


def _clutter(src: Path) -> None:
    io.write_image(src / "second.tif", good_gray(1).astype(np.uint16) * 200)
    (src / "notes.txt").write_text("acquired on Tuesday")
    (src / "plate.csv").write_text("well,dose\nA1,0\n")
    (src / "raw.czi").write_bytes(b"ZISRAWFILE" + bytes(100))
    (src / ".hidden.png").write_bytes(b"not even a png")
    io.write_image(src / "sub" / "deeper.png", good_gray(2))  # not searched without --recursive


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_folder_mixing_images_and_other_files(run_cli, src, tmp_path, model, command):
    _clutter(src)
    before = snapshot(src)
    result = run(run_cli, command, src, tmp_path / "out", model)
    assert result.exit_code == 0 and "2 done" in result.output, result.output
    assert sorted(snapshot(tmp_path / "out")) == ["good.png", "second.tif"]
    assert snapshot(src) == before


@hostile
def test_evaluate_folder_mixing_images_and_other_files(run_cli, src, tmp_path):
    _clutter(src)
    result = run(run_cli, "evaluate", src, tmp_path, None)
    assert result.exit_code == 0, result.output
    assert scores(tmp_path)["methods"][0]["n"] == 2 and scores(tmp_path)["problems"] == []


def _loop(src: Path) -> None:
    io.write_image(src / "sub" / "deeper.png", good_gray(2))
    (src / "sub" / "loop").symlink_to(src, target_is_directory=True)


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_symlink_loop_with_recursive(run_cli, src, tmp_path, model, command):
    _loop(src)
    result = run(run_cli, command, src, tmp_path / "out", model, "--recursive")
    assert result.exit_code == 0 and "2 done" in result.output, result.output
    assert sorted(snapshot(tmp_path / "out")) == ["good.png", "sub/deeper.png"]


@hostile
def test_evaluate_symlink_loop_with_recursive(run_cli, src, tmp_path):
    _loop(src)
    result = run(run_cli, "evaluate", src, tmp_path, None, "--recursive")
    assert result.exit_code == 0 and scores(tmp_path)["methods"][0]["n"] == 2, result.output


@hostile
def test_train_on_a_folder_with_other_files_and_a_symlink_loop(run_cli, src, tmp_path):
    _clutter(src)
    _loop(src)
    before = snapshot(src)
    result = run(run_cli, "train", src, tmp_path / "run", None)
    assert result.exit_code == 0, result.output
    assert modelfile.load_model(tmp_path / "run" / "best.safetensors")[1].features == 8
    assert snapshot(src) == before and leftovers(tmp_path / "run") == []


# ------------------------------------------------------------------------------------- bad files


@hostile
@pytest.mark.parametrize("name", list(BAD_FILES))
@pytest.mark.parametrize("command", ["degrade", "enhance", "evaluate", "train"])
def test_bad_file(run_cli, src, tmp_path, model, command, name):
    """degrade/enhance: the file fails alone; evaluate: listed, the rest scored; train: refused."""
    bad = write_bad(src, name)
    before = snapshot(src)
    out = tmp_path / "out"
    result = run(run_cli, command, src, out, model)
    clean_failure(result, bad, BAD_FILES[name][1])
    assert snapshot(src) == before
    if command in ("degrade", "enhance"):
        assert "1 done" in result.output and "1 failed" in result.output
        assert list(snapshot(out)) == ["good.png"] and io.read_image(out / "good.png").data.shape == (16, 16)
    elif command == "evaluate":
        report = scores(out)
        assert report["methods"][0]["n"] == 1 and [p["file"] for p in report["problems"]] == [str(bad)]
    else:
        assert not out.exists()  # refused while loading, before the run folder is made


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance", "evaluate", "train"])
def test_unreadable_file(run_cli, src, tmp_path, model, monkeypatch, command):
    """chmod 000 as a normal user sees it (simulated: the tests run as root here)."""
    locked = src / "locked.png"
    io.write_image(locked, good_gray(3))
    deny_open(monkeypatch, locked)
    result = run(run_cli, command, src, tmp_path / "out", model)
    clean_failure(result, locked, "permission denied")
    if command in ("degrade", "enhance"):
        assert "1 done" in result.output and list(snapshot(tmp_path / "out")) == ["good.png"]
    elif command == "evaluate":
        assert scores(tmp_path / "out")["methods"][0]["n"] == 1


@hostile
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode (the simulated test runs)")
def test_unreadable_file_for_real(run_cli, src, tmp_path):
    locked = src / "locked.png"
    io.write_image(locked, good_gray(3))
    locked.chmod(0)
    try:
        result = run_cli("degrade", src, "--out", tmp_path / "out")
    finally:
        locked.chmod(0o600)
    clean_failure(result, locked, "permission denied", "1 done")


# ------------------------------------------------------------------------------------ tiny images

TINY_IMAGES = {"dot.png": (1, 1), "three-by-five.png": (3, 5), "row.png": (1, 17), "column.tif": (17, 1), "rgb-dot.png": (1, 1, 3)}


def _write_tiny(folder: Path) -> dict[str, np.ndarray]:
    images = {}
    for name, shape in TINY_IMAGES.items():
        data = (np.arange(int(np.prod(shape))) * 37 % 256).astype(np.uint8).reshape(shape)
        io.write_image(folder / name, data)
        images[name] = data
    return images


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_tiny_images_keep_their_size_and_type(run_cli, tmp_path, model, command):
    images = _write_tiny(tmp_path / "tiny")
    result = run(run_cli, command, tmp_path / "tiny", tmp_path / "out", model)
    assert result.exit_code == 0 and f"{len(images)} done" in result.output, result.output
    for name, data in images.items():
        out = io.read_image(tmp_path / "out" / name).data
        assert out.shape == data.shape and out.dtype == data.dtype
        if command == "enhance" or data.size == 1:  # the identity model; a constant image degrades to itself
            assert np.array_equal(out, data), name


@hostile
def test_evaluate_tiny_images_are_listed_not_scored(run_cli, tmp_path):
    images = _write_tiny(tmp_path / "tiny")
    result = run(run_cli, "evaluate", tmp_path / "tiny", tmp_path, None)
    clean_failure(result, "too small for SSIM", "11×11")
    problems = scores(tmp_path)["problems"]
    assert sorted(Path(p["file"]).name for p in problems) == sorted(images) and {p["kind"] for p in problems} == {"unscorable"}


@hostile
def test_train_on_tiny_images(run_cli, src, tmp_path):
    _write_tiny(tmp_path / "tiny")
    result = run_cli("train", "--data", tmp_path / "tiny", "--val", src, "--out", tmp_path / "run", *TRAIN_FAST)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "best.safetensors").is_file()


@hostile
def test_train_refuses_tiny_validation_images_before_training(run_cli, src, tmp_path):
    _write_tiny(tmp_path / "tiny")
    result = run_cli("train", "--data", src, "--val", tmp_path / "tiny", "--out", tmp_path / "run", *TRAIN_FAST)
    clean_failure(result, tmp_path / "tiny", "11×11")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------- output folder


@hostile
@pytest.mark.parametrize("where", ["same", "symlink", "inside-recursive"])
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_output_folder_is_or_lies_in_the_input_folder(run_cli, src, tmp_path, model, command, where):
    out = {"same": src, "symlink": tmp_path / "link", "inside-recursive": src / "results"}[where]
    if where == "symlink":
        out.symlink_to(src, target_is_directory=True)
    before = snapshot(src)
    result = run(run_cli, command, src, out, model, *(["--recursive"] if where == "inside-recursive" else []))
    clean_failure(result, "input folder", "choose")
    assert snapshot(src) == before and not (src / "results").exists()


@hostile
@pytest.mark.parametrize("where", ["data", "inside-val"])
def test_train_run_folder_in_a_data_folder(run_cli, src, tmp_path, where):
    io.write_image(tmp_path / "val" / "v.png", good_gray(5))
    out = src if where == "data" else tmp_path / "val" / "run"
    before = snapshot(src), snapshot(tmp_path / "val")
    result = run_cli("train", "--data", src, "--val", tmp_path / "val", "--out", out, *TRAIN_FAST)
    clean_failure(result, "lies inside the", "choose a run folder outside it")
    assert (snapshot(src), snapshot(tmp_path / "val")) == before


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_output_file_would_be_the_input_file(run_cli, src, tmp_path, model, command):
    before = snapshot(src)
    result = run(run_cli, command, src / "good.png", src, model)
    clean_failure(result, "is the input folder")
    assert snapshot(src) == before


@hostile
def test_batch_refuses_an_output_equal_to_an_input_before_any_work(tmp_path):
    """Defence in depth below check_output_dir: run_batch checks every output path first."""
    from ficli.inference.batch import run_batch
    from ficli.errors import OutputError

    for name in ("a.png", "b.png"):
        io.write_image(tmp_path / "in" / name, good_gray())
    items = io.collect_inputs([tmp_path / "in"])
    before = snapshot(tmp_path / "in")
    done = []
    out_for = lambda item: item.path if item.rel.name == "b.png" else tmp_path / "out" / item.rel  # noqa: E731
    with pytest.raises(OutputError, match="b.png: is the input file itself"):
        run_batch(items, out_for, lambda item, out: done.append(out))
    assert done == [] and snapshot(tmp_path / "in") == before


@hostile
@pytest.mark.parametrize("option", ["--csv", "--json"])
def test_evaluate_scores_file_would_be_an_input_image(run_cli, src, option):
    before = snapshot(src)
    result = run_cli("evaluate", src, src, option, src / "good.png")
    clean_failure(result, "is one of the input images")
    assert snapshot(src) == before


@hostile
def test_train_run_folder_is_an_image_file(run_cli, src, tmp_path):
    io.write_image(tmp_path / "val" / "v.png", good_gray(5))
    target = tmp_path / "elsewhere.png"
    io.write_image(target, good_gray(6))
    before = target.read_bytes()
    result = run_cli("train", "--data", src, "--val", tmp_path / "val", "--out", target, *TRAIN_FAST)
    clean_failure(result, "exists and is not a folder")
    assert target.read_bytes() == before


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance", "evaluate", "train"])
def test_read_only_output_is_refused_before_any_work(run_cli, src, tmp_path, model, monkeypatch, command):
    """A folder a normal user cannot write (simulated: root writes anywhere)."""
    before = snapshot(src)
    deny_writing(monkeypatch)
    result = run(run_cli, command, src, tmp_path / "out", model)
    clean_failure(result, "cannot write here", "Permission denied")
    assert not (tmp_path / "out").exists() and snapshot(src) == before
    assert "n (images)" not in result.output and "epoch 1" not in result.output  # nothing was scored or trained


# --------------------------------------------------------------------------------------- disk full


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_disk_full_stops_the_batch_and_leaves_complete_files(run_cli, src, tmp_path, model, monkeypatch, command):
    io.write_image(src / "h2.png", good_gray(1))
    io.write_image(src / "h3.png", good_gray(2))
    before = snapshot(src)
    fill_disk_after(monkeypatch, 1)
    result = run(run_cli, command, src, tmp_path / "out", model)
    clean_failure(result, "h2.png: write failed (the disk is full)", "stopped after 1 file(s)", "--skip-existing")
    written = snapshot(tmp_path / "out")
    assert list(written) == ["good.png"] and io.read_image(tmp_path / "out" / "good.png").data.shape == (16, 16)
    assert snapshot(src) == before


@hostile
def test_evaluate_disk_full(run_cli, src, tmp_path, monkeypatch):
    fill_disk_after(monkeypatch, 0)
    result = run(run_cli, "evaluate", src, tmp_path / "out", None)
    clean_failure(result, "scores.json", "the disk is full")
    assert not (tmp_path / "out" / "scores.json").exists() and leftovers(tmp_path) == []


@hostile
def test_train_disk_full(run_cli, src, tmp_path, monkeypatch):
    fill_disk_after(monkeypatch, 0)
    result = run(run_cli, "train", src, tmp_path / "run", None)
    clean_failure(result, "the disk is full")
    assert snapshot(tmp_path / "run") == {}  # no partial model, checkpoint or temporary


# ------------------------------------------------------------------------------------- model files


def _bad_model(kind: str, folder: Path, model: Path) -> Path:
    import pickle

    path = folder / f"{kind}.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": {"w": torch.zeros(2)}}))
    elif kind == "truncated":
        raw = model.read_bytes()
        path.write_bytes(raw[: len(raw) * 2 // 3])
    elif kind == "foreign":  # a safetensors file from other software
        save_file({"conv.weight": torch.zeros(4, 1, 3, 3)}, str(path), metadata={"format": "pt"})
    elif kind == "other-architecture":  # ficli metadata, tensors of a wider network
        wide = GeneratorConfig(features=16, growth=4, layers=1, blocks=1)
        tensors = {k: v.contiguous() for k, v in Generator(wide, spectral_norm=False).state_dict().items()}
        save_file(tensors, str(path), metadata={"format": "ficli-generator", "format_version": "1",
                                                "config": json.dumps(dataclasses.asdict(TINY)), "scale": "4", "info": "{}"})
    return path


MODEL_DAMAGE = ["pickle", "truncated", "foreign", "other-architecture"]


@hostile
@pytest.mark.parametrize("kind", MODEL_DAMAGE)
def test_enhance_refuses_a_bad_model_file(run_cli, src, tmp_path, model, kind):
    bad = _bad_model(kind, tmp_path / "models", model)
    result = run_cli("enhance", src, "--out", tmp_path / "out", "--model", bad, "--device", "cpu")
    clean_failure(result, bad)
    assert not (tmp_path / "out").exists()


@hostile
@pytest.mark.parametrize("kind", [*MODEL_DAMAGE, "valid-other-architecture"])
def test_train_init_refuses_a_bad_model_file(run_cli, src, tmp_path, model, kind):
    # `model` is a valid file of a shallower network than the run's (--features 8, default depth).
    bad = model if kind == "valid-other-architecture" else _bad_model(kind, tmp_path / "models", model)
    result = run_cli("train", "--data", src, "--val", src, "--out", tmp_path / "run", "--init", bad, *TRAIN_FAST)
    clean_failure(result, bad, *(["architecture"] if kind == "valid-other-architecture" else []))
    assert not (tmp_path / "run").exists()
