"""`ficli train` under faults and bad settings (issue 14 items 3 and 5, issue 16's bad input).

Runs are tiny (16×16 images, width-8 generator, a step or three), so each test takes seconds.
"""

from __future__ import annotations

import errno
import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ficli.image import io
from ficli.model import modelfile
from ficli.training import runs
from ficli.training import train as training
from ficli.errors import ModelFileError
from ficli.model.nets import Generator
from conftest import TINY
from hostile_files import good_gray, leftovers, snapshot

hostile = pytest.mark.hostile
TRAIN_FAST = ("--epochs", "1", "--steps", "1", "--batch", "2", "--crop", "16", "--features", "8",
              "--no-gan", "--device", "cpu", "--val-size", "16")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def src(tmp_path):
    for i in range(2):
        io.write_image(tmp_path / "in" / f"g{i}.png", good_gray(i))
    return tmp_path / "in"


def _train(run_cli, src, out, *extra):
    return run_cli("train", "--data", src, "--val", src, "--out", out, *TRAIN_FAST, *extra)


def _strict_json(path):
    def refuse(name):
        raise ValueError(f"{path}: non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ----------------------------------------------------------------------------- 14.3 lost models


@hostile
def test_train_refuses_a_folder_with_models_but_no_checkpoint(run_cli, src, tmp_path):
    run = tmp_path / "run"
    assert _train(run_cli, src, run).exit_code == 0
    (run / training.CHECKPOINT).unlink()
    before = snapshot(run)
    result = _train(run_cli, src, run)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    for word in ("best.safetensors", "checkpoint.pt", "--resume", "--overwrite", "--out"):
        assert word in result.output, (word, result.output)
    assert snapshot(run) == before  # the trained models are still there, unchanged
    result = _train(run_cli, src, run, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (run / training.CHECKPOINT).is_file()


class _FullDisk:
    """A file that takes `room` bytes, then fails every write as a full disk does."""

    def __init__(self, fh, room: int):
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.fh.write(bytes(data)[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)


@hostile
def test_train_disk_full_inside_torch_save_keeps_the_last_checkpoint(run_cli, src, tmp_path, monkeypatch):
    """The disk fills while torch.save writes epoch 2's checkpoint (not at fsync): clear error, no
    temporary, the epoch-1 checkpoint intact, and --resume finishes the run."""
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        if hasattr(f, "write"):
            return real_save(obj, _FullDisk(f, 4096), *args, **kwargs)
        with open(f, "wb") as fh:
            return real_save(obj, _FullDisk(fh, 4096), *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    result = run_cli("train", "--data", src, "--val", src, "--out", run, *TRAIN_FAST, "--epochs", "2")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "disk is full" in result.output and "--resume" in result.output, result.output
    assert leftovers(tmp_path) == []
    assert runs.load_checkpoint(run / runs.CHECKPOINT, "cpu")["epoch"] == 1
    monkeypatch.setattr(torch, "save", real_save)
    result = run_cli("train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert runs.load_checkpoint(run / runs.CHECKPOINT, "cpu")["epoch"] == 2


# ------------------------------------------------------------------------- 14.5 diverged runs


def _diverged(run_cli, src, run, steps: str, lr: str, words: tuple[str, ...]) -> None:
    """`ficli train` at learning rate `lr` ends with exit 1, no traceback, every one of `words` in its
    message and no best model announced."""
    result = run_cli("train", "--data", src, "--val", src, "--out", run, *TRAIN_FAST, "--steps", steps, "--lr", lr)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in result.output, (word, result.output)
    assert "best val PSNR" not in result.output


@hostile
def test_a_diverging_run_stops_with_a_clear_message_and_writes_no_bad_model(run_cli, src, tmp_path):
    run = tmp_path / "run"
    _diverged(run_cli, src, run, "4", "1e10", ("diverged", "step", "--lr"))
    for path in run.glob("*.safetensors"):  # whatever was written holds finite weights
        assert all(torch.isfinite(t).all() for t in load_file(str(path)).values()), path
    if (run / "summary.json").exists():
        _strict_json(run / "summary.json")


@hostile
def test_a_run_that_blows_up_with_finite_losses_is_divergence_not_a_best_model(run_cli, src, tmp_path):
    # Issue 25 item 8: --lr 1e4 gives finite losses near 1e20 and validation far below the input's.
    run = tmp_path / "run"
    _diverged(run_cli, src, run, "3", "1e4", ("diverged in epoch 1", "below its input's", "--lr 10000"))
    assert not list(run.glob("*.safetensors"))


@hostile
def test_train_init_from_a_nan_model_is_refused(run_cli, src, tmp_path):
    bad = tmp_path / "nan.safetensors"
    modelfile.save_model(bad, Generator(TINY, spectral_norm=False), TINY, {"scale": 4})
    tensors = load_file(str(bad))
    tensors["tail.weight"] = torch.full_like(tensors["tail.weight"], math.nan)
    with safe_open(str(bad), framework="pt") as f:
        meta = f.metadata()
    save_file(tensors, str(bad), metadata=meta)  # written around save_model, which refuses it
    with pytest.raises(ModelFileError, match="nan.safetensors.*(NaN|infinite)"):
        modelfile.load_model(bad)
    result = run_cli("train", "--data", src, "--val", src, "--out", tmp_path / "run", *TRAIN_FAST, "--init", bad)
    assert result.exit_code == 1 and "nan.safetensors" in result.output and "Traceback" not in result.output
    result = run_cli("enhance", src, "--out", tmp_path / "out", "--model", bad, "--device", "cpu")
    assert result.exit_code == 1 and "nan.safetensors" in result.output and not (tmp_path / "out").exists()


@hostile
def test_save_model_refuses_non_finite_weights(tmp_path):
    g = Generator(TINY, spectral_norm=False)
    with torch.no_grad():
        g.tail.weight.fill_(math.inf)
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        modelfile.save_model(tmp_path / "m.safetensors", g, TINY, {"scale": 4})
    assert list(tmp_path.iterdir()) == []


@hostile
@pytest.mark.parametrize("option,value", [
    ("--lr", "0"), ("--lr", "-1e-3"), ("--lr", "inf"), ("--lr", "nan"), ("--lr", "fast"),
    ("--batch", "0"), ("--crop", "0"), ("--crop", "-32"), ("--tg-weight", "inf"), ("--warmup-steps", "-1"),
    ("--ema", "1"), ("--ema", "nan"),
])
def test_train_refuses_bad_option_values_with_exit_2(run_cli, src, tmp_path, option, value):
    result = _train(run_cli, src, tmp_path / "run", option, value)
    assert result.exit_code == 2, result.output
    assert option in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_summary_json_is_strict_json(run_cli, src, tmp_path):
    assert _train(run_cli, src, tmp_path / "run").exit_code == 0
    summary = _strict_json(tmp_path / "run" / "summary.json")
    assert np.isfinite(summary["best_val_psnr"])


# ------------------------------------------------------------- 16: resuming what does not fit


@hostile
def test_continue_or_resume_with_changed_data_is_refused(run_cli, src, tmp_path):
    run = tmp_path / "run"
    assert _train(run_cli, src, run).exit_code == 0
    io.write_image(src / "new.png", good_gray(7))
    (src / "g0.png").unlink()
    for args in (("--resume", run, "--epochs", "2"), ("--continue-from", run / "last.safetensors", "--out", tmp_path / "next", "--epochs", "2")):
        result = run_cli("train", *args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        for word in ("differs", "1 file(s) added (new.png)", "1 file(s) missing (g0.png)", "--init"):
            assert word in result.output, (word, result.output)
    assert not (tmp_path / "next").exists()


@hostile
def test_resume_with_options_of_another_run_is_refused(run_cli, src, tmp_path):
    run = tmp_path / "run"
    assert _train(run_cli, src, run).exit_code == 0
    before = snapshot(run)
    result = run_cli("train", "--resume", run, "--features", "16", "--epochs", "2")
    assert result.exit_code == 1 and "--features 16 (the run's: 8)" in result.output and "--out NEWDIR" in result.output, result.output
    assert snapshot(run) == before


@hostile
def test_resume_from_a_truncated_checkpoint_says_what_to_do(run_cli, src, tmp_path):
    run = tmp_path / "run"
    assert _train(run_cli, src, run).exit_code == 0
    raw = (run / training.CHECKPOINT).read_bytes()
    (run / training.CHECKPOINT).write_bytes(raw[: len(raw) // 2])
    result = run_cli("train", "--resume", run, "--epochs", "2")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "checkpoint.pt" in result.output and "--continue-from" in result.output and "last.safetensors" in result.output


@hostile
def test_continue_from_a_model_without_training_state(run_cli, src, tmp_path, tiny_identity_model):
    result = run_cli("train", "--continue-from", tiny_identity_model, "--out", tmp_path / "next")
    assert result.exit_code == 1 and "no training state" in result.output and "--init" in result.output
    assert not (tmp_path / "next").exists()


@hostile
def test_resume_a_checkpoint_of_another_architecture(run_cli, src, tmp_path):
    run = tmp_path / "run"
    assert _train(run_cli, src, run).exit_code == 0
    state = torch.load(run / training.CHECKPOINT, weights_only=True)
    config = json.loads(state["config"])
    config["generator"]["features"] = 12  # the settings say one width, the tensors another
    state["config"] = json.dumps(config)
    torch.save(state, run / training.CHECKPOINT)
    result = run_cli("train", "--resume", run, "--epochs", "2")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "do not fit" in result.output and "--continue-from" in result.output
