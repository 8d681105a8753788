"""Training on synthetic phantoms: learning, resume, DDP, and the errors a user can make."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ficli import modelfile
from ficli.io import write_image
from ficli.losses import LossWeights
from ficli.nets import GeneratorConfig
from ficli.phantom import phantom, to_dtype
from ficli.train import TrainConfig, sample_batch, load_images, train

TINY = GeneratorConfig(features=16, growth=8, layers=2, blocks=2)


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, Path]:
    for i in range(4):
        write_image(tmp_path / "train" / f"p{i}.png", to_dtype(phantom(96, 96, seed=i, peak_photons=None), np.uint16))
    for i in range(2):
        write_image(tmp_path / "val" / f"v{i}.tif", to_dtype(phantom(64, 64, seed=50 + i, peak_photons=None), np.uint16, 4095))
    return tmp_path / "train", tmp_path / "val"


def _config(dataset, out, **kw) -> TrainConfig:
    base = dict(
        data=(str(dataset[0]),), val=str(dataset[1]), out=str(out), stage="pretrain", gan=False,
        weights=LossWeights(adv=0.0, mse=1.0, smooth_l1=1.0, tg=0.01), lr=2e-3, batch=8, crop=32,
        epochs=1, steps=25, patience=5, generator=TINY, device="cpu", seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_sample_batch_shapes_and_small_images(dataset):
    images = load_images([str(dataset[0])], 1, "training")
    images.append(np.random.default_rng(0).random((10, 7, 1)).astype(np.float32))  # smaller than the crop
    lr, hr = sample_batch(images, _config(dataset, "x", batch=16), np.random.default_rng(0))
    assert lr.shape == hr.shape == (16, 1, 32, 32) and lr.dtype == torch.float32
    assert not torch.equal(lr, hr)


def test_a_short_run_lowers_the_loss_and_beats_bicubic(dataset, tmp_path):
    torch.set_num_threads(2)
    cfg = _config(dataset, tmp_path / "run", epochs=2, steps=30)
    summary = train(cfg)
    rows = _rows(tmp_path / "run")
    assert float(rows[1]["loss_mse"]) < float(rows[0]["loss_mse"])
    assert summary["best_val_psnr"] > float(rows[0]["val_bicubic_psnr"]) + 0.1
    g, config, meta = modelfile.load_model(tmp_path / "run" / "best.safetensors")
    assert config == TINY and meta["stages"][0]["stage"] == "pretrain"
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000


def test_resume_continues_the_curve_exactly(dataset, tmp_path):
    straight = tmp_path / "straight"
    train(_config(dataset, straight, epochs=2, steps=6))
    split = tmp_path / "split"
    train(_config(dataset, split, epochs=1, steps=6))
    from dataclasses import replace

    train(replace(_config(dataset, split, epochs=2, steps=6)), resume=True)
    a, b = _rows(straight), _rows(split)
    assert len(b) == 2 and [r["epoch"] for r in b] == ["1", "2"]
    for key in ("loss_mse", "loss_tg", "val_psnr"):
        assert float(b[1][key]) == pytest.approx(float(a[1][key]), rel=1e-5), key


def test_gan_stage_runs_and_logs_the_critic(dataset, tmp_path):
    cfg = _config(dataset, tmp_path / "gan", gan=True, weights=LossWeights(adv=1e-3, tg=1.0), steps=3)
    train(cfg)
    row = _rows(tmp_path / "gan")[0]
    assert float(row["loss_d"]) > 0 and float(row["loss_adv"]) > 0


def test_init_from_a_model_file_starts_where_it_ended(dataset, tmp_path):
    first = tmp_path / "first"
    train(_config(dataset, first, steps=10))
    second = tmp_path / "second"
    train(_config(dataset, second, steps=1, lr=1e-9, init=str(first / "best.safetensors"), stage="finetune"))
    before = float(_rows(first)[0]["val_psnr"])
    after = float(_rows(second)[0]["val_psnr"])
    # Not exact: the model file holds weights folded with spectral norm's running estimate of σ, and
    # the new run re-wraps them in spectral norm, whose power iteration re-estimates σ (≈ 1).
    assert after == pytest.approx(before, abs=0.15)
    assert after > float(_rows(second)[0]["val_bicubic_psnr"])
    stages = modelfile.load_model(second / "best.safetensors")[2]["stages"]
    assert [s["stage"] for s in stages] == ["pretrain", "finetune"]


def test_cli_errors(run_cli, dataset, tmp_path):
    (tmp_path / "empty").mkdir()
    common = ("--epochs", "1", "--steps", "1", "--batch", "2", "--features", "8")
    result = run_cli("train", "--data", tmp_path / "empty", "--val", dataset[1], "--out", tmp_path / "r1", *common)
    assert result.exit_code == 1 and "training folder holds no images" in result.output
    result = run_cli("train", "--data", dataset[0], "--val", tmp_path / "empty", "--out", tmp_path / "r2", *common)
    assert result.exit_code == 1 and "validation folder holds no images" in result.output
    result = run_cli("train", "--data", dataset[0], "--val", dataset[1], "--out", tmp_path / "r3", "--vgg-weight", "8", *common)
    assert result.exit_code == 1 and "FICLI_VGG16_WEIGHTS" in result.output
    (tmp_path / "bad.safetensors").write_bytes(b"\x80\x04not a model")
    result = run_cli("train", "--data", dataset[0], "--val", dataset[1], "--out", tmp_path / "r4", "--init", tmp_path / "bad.safetensors", *common)
    assert result.exit_code == 1 and "bad.safetensors" in result.output
    result = run_cli("train", "--resume", tmp_path / "nothing")
    assert result.exit_code == 1 and "no checkpoint" in result.output
    assert "Traceback" not in result.output


def test_init_with_another_architecture_is_refused(run_cli, dataset, tmp_path):
    train(_config(dataset, tmp_path / "small", steps=1))
    result = run_cli(
        "train", "--data", dataset[0], "--val", dataset[1], "--out", tmp_path / "big", "--features", "32",
        "--init", tmp_path / "small" / "best.safetensors", "--epochs", "1", "--steps", "1",
    )
    assert result.exit_code == 1 and "architecture" in result.output


def test_cli_train_writes_a_run_and_refuses_to_clobber_it(run_cli, dataset, tmp_path):
    args = ("train", "--data", dataset[0], "--val", dataset[1], "--out", tmp_path / "run", "--epochs", "1", "--steps", "2",
            "--batch", "2", "--crop", "32", "--features", "8", "--no-gan", "--device", "cpu")
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert "best val PSNR" in result.output and (tmp_path / "run" / "best.safetensors").is_file()
    again = run_cli(*args)
    assert again.exit_code == 1 and "--resume" in again.output


def test_ddp_two_processes_on_cpu(dataset, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
        "-m", "ficli", "train", "--data", str(dataset[0]), "--val", str(dataset[1]), "--out", str(tmp_path / "ddp"),
        "--epochs", "1", "--steps", "2", "--batch", "2", "--crop", "32", "--features", "8", "--no-gan", "--device", "cpu",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(_rows(tmp_path / "ddp")) == 1 and (tmp_path / "ddp" / "best.safetensors").is_file()
