"""Interrupted runs (docs/RELIABILITY.md): Ctrl-C and kill -9, then the same command again.

Whatever the moment of the interruption, every file a command leaves is complete (reads back as a
valid image, model or checkpoint), Ctrl-C leaves no temporary, a killed run's temporaries are
removed by the rerun, and the rerun (--skip-existing for batches, --resume for training) finishes
the work. The subprocess tests run the real CLI and signal it mid-run; they take 5-15 s each and
are marked slow. The in-process tests raise KeyboardInterrupt at a chosen point and are fast.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ficli.image import io
from ficli.model import modelfile
from ficli.training import runs
from ficli.training import train as training
from ficli.model.nets import Generator, GeneratorConfig
from ficli.image.phantom import phantom, to_dtype
from hostile_files import good_gray, leftovers

hostile = pytest.mark.hostile
TRAIN_FAST = ("--batch", "2", "--crop", "16", "--features", "8", "--no-gan", "--device", "cpu", "--val-size", "16")
STALE = ".{name}.k3j_9x0q.part"  # what a killed atomic write of NAME leaves


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(folder: Path, count: int, side: int = 16) -> list[str]:
    for i in range(count):
        io.write_image(folder / f"f{i:03d}.png", to_dtype(phantom(side, side, seed=i), np.uint8) if side > 16 else good_gray(i))
    return [f"f{i:03d}.png" for i in range(count)]


def _all_valid(folder: Path, expect_shape: tuple) -> list[str]:
    """Names of the images in `folder`, after checking that each reads back whole."""
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name != "ficli-run.json")  # the run's record
    for name in names:
        assert io.read_image(folder / name).data.shape == expect_shape, name
    return names


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def _run_is_whole(run: Path) -> int:
    """Check every file of a training run reads back; returns the checkpoint's epoch."""
    state = runs.load_checkpoint(run / runs.CHECKPOINT, "cpu")
    for name in ("best.safetensors", "last.safetensors"):
        modelfile.load_model(run / name)
    assert [int(r["epoch"]) for r in _rows(run)][: state["epoch"]] == list(range(1, state["epoch"] + 1))
    return state["epoch"]


# ------------------------------------------------------------------------------- in-process, fast


@hostile
def test_degrade_ctrl_c_then_skip_existing(run_cli, tmp_path, monkeypatch):
    import ficli.image.degrade as degrade_module

    names = _images(tmp_path / "in", 4)
    real, calls = degrade_module.degrade_file, []

    def interrupt_third(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(*args, **kwargs)

    monkeypatch.setattr(degrade_module, "degrade_file", interrupt_third)
    out = tmp_path / "out"
    result = run_cli("degrade", tmp_path / "in", "--out", out)
    assert result.exit_code == 130 and "--skip-existing" in result.output
    assert _all_valid(out, (16, 16)) == names[:2] and leftovers(out) == []
    monkeypatch.setattr(degrade_module, "degrade_file", real)
    result = run_cli("degrade", tmp_path / "in", "--out", out, "--skip-existing")
    assert result.exit_code == 0 and "2 done, 2 skipped" in result.output
    assert _all_valid(out, (16, 16)) == names


@hostile
def test_evaluate_ctrl_c_writes_nothing(run_cli, tmp_path, monkeypatch):
    import ficli.tools.evaluate as evaluate_module

    _images(tmp_path / "in", 2)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "score_images", interrupt)
    result = run_cli("evaluate", tmp_path / "in", tmp_path / "in", "--csv", tmp_path / "s.csv", "--json", tmp_path / "s.json")
    assert result.exit_code == 130 and "nothing was written" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@hostile
@pytest.mark.parametrize("rows", [[], [1]], ids=["before-the-first-epoch", "after-epoch-1"])
def test_train_ctrl_c_then_resume(run_cli, tmp_path, monkeypatch, rows):
    """Ctrl-C during the validation of epoch len(rows) + 1; then --resume (with a killed run's temporary)."""
    _images(tmp_path / "data", 2)
    real, calls = training.validate, []

    def interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == len(rows) + 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "validate", interrupt)
    run = tmp_path / "run"
    result = run_cli("train", "--data", tmp_path / "data", "--val", tmp_path / "data", "--out", run, "--epochs", "2", "--steps", "1", *TRAIN_FAST)
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert leftovers(tmp_path) == []
    if not rows:
        assert "nothing to resume" in result.output and not (run / training.CHECKPOINT).exists()
        return
    assert f"--resume {run}" in result.output and _run_is_whole(run) == 1
    monkeypatch.setattr(training, "validate", real)
    (run / STALE.format(name=training.CHECKPOINT)).write_bytes(b"half a checkpoint")
    result = run_cli("train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert "removed 1 unfinished temporary file" in result.output and leftovers(run) == []
    assert _run_is_whole(run) == 2 and [r["epoch"] for r in _rows(run)] == ["1", "2"]


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_rerun_removes_only_its_own_stale_temporaries(run_cli, tmp_path, command):
    names = _images(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / STALE.format(name=n) for n in names]
    foreign = [out / STALE.format(name="other.png"), out / ".notes.txt"]
    for path in stale + foreign:
        path.write_bytes(b"x")
    model = modelfile.save_model(tmp_path / "m.safetensors", Generator(GeneratorConfig(features=8, growth=4, layers=1, blocks=1), spectral_norm=False),
                                 GeneratorConfig(features=8, growth=4, layers=1, blocks=1), {"scale": 4})
    args = ("--model", model, "--device", "cpu") if command == "enhance" else ()
    result = run_cli(command, tmp_path / "in", "--out", out, *args)
    assert result.exit_code == 0 and "removed 2 unfinished temporary file(s)" in result.output, result.output
    assert sorted(p.name for p in out.iterdir() if p.name != "ficli-run.json") == sorted([*names, *(p.name for p in foreign)])


@hostile
def test_evaluate_rerun_removes_a_stale_temporary_of_its_scores(run_cli, tmp_path):
    _images(tmp_path / "in", 2)
    (tmp_path / STALE.format(name="s.json")).write_bytes(b"{")
    result = run_cli("evaluate", tmp_path / "in", tmp_path / "in", "--json", tmp_path / "s.json")
    assert result.exit_code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["in", "s.json"]


# -------------------------------------------------------------------------- real signals, slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ficli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (rc {proc.returncode}) before the moment to interrupt it:\n{out}\n{err}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("the command did not reach the moment to interrupt it in time")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory) -> Path:
    """The default depth at width 32: about 30 ms per 160×160 image on one core, slow enough to hit."""
    config = GeneratorConfig(features=32, growth=16)
    return modelfile.save_model(tmp_path_factory.mktemp("model") / "slow.safetensors", Generator(config, spectral_norm=False), config, {"scale": 4})


@hostile
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_enhance_killed_mid_folder_then_skip_existing(run_cli, tmp_path, slow_model, sig):
    names = _images(tmp_path / "in", 60, side=160)
    out = tmp_path / "out"
    proc = _start("enhance", tmp_path / "in", "--out", out, "--model", slow_model, "--device", "cpu")
    _wait_for(proc, lambda: out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    done = _all_valid(out, (160, 160))  # whatever was there when the signal came is complete
    assert 1 <= len(done) < len(names), f"interrupted after {len(done)} of {len(names)} files"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "--skip-existing" in err and leftovers(out) == []
    else:
        assert proc.returncode == -signal.SIGKILL
        (out / STALE.format(name=names[-1])).write_bytes(b"half an image")  # as a kill mid-write leaves
    result = run_cli("enhance", tmp_path / "in", "--out", out, "--model", slow_model, "--device", "cpu", "--skip-existing")
    assert result.exit_code == 0 and f"{len(names) - len(done)} done, {len(done)} skipped" in result.output, result.output
    assert _all_valid(out, (160, 160)) == names and leftovers(out) == []
    # the run's record lists every file, those of the interrupted run too (after a kill, read from the files)
    assert [r["output"] for r in json.loads((out / "ficli-run.json").read_text())["files"]] == names


@hostile
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_train_killed_after_an_epoch_then_resume(run_cli, tmp_path, sig):
    _images(tmp_path / "data", 3, side=48)
    run = tmp_path / "run"
    proc = _start("train", "--data", tmp_path / "data", "--val", tmp_path / "data", "--out", run, "--epochs", "40", "--steps", "3", *TRAIN_FAST)
    _wait_for(proc, lambda: (run / training.CHECKPOINT).exists())
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and f"--resume {run}" in err and leftovers(run) == []
    else:
        assert proc.returncode == -signal.SIGKILL
        (run / STALE.format(name=training.CHECKPOINT)).write_bytes(b"half a checkpoint")
    epoch = _run_is_whole(run)
    assert 1 <= epoch < 40
    result = run_cli("train", "--resume", run, "--epochs", epoch + 2)
    assert result.exit_code == 0, result.output
    assert _run_is_whole(run) == epoch + 2 and [int(r["epoch"]) for r in _rows(run)] == list(range(1, epoch + 3))
    assert leftovers(run) == []
