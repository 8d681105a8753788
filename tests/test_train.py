"""Training on synthetic phantoms: learning, resume, DDP, and the errors a user can make."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ficli.model import modelfile
from ficli.image.io import write_image
from ficli.model.losses import LossWeights
from ficli.model.nets import GeneratorConfig
from ficli.image.phantom import phantom, to_dtype
from ficli.training.pairs import load_images, sample_batch
from ficli.training.train import TrainConfig, train

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


# ------------------------------------------------------------------ batches, schedule, continuing


def test_degrade_batch_matches_the_per_crop_degradation():
    from ficli.image.degrade import Degradation, degrade
    from ficli.training.pairs import degrade_batch, gaussian_blur_batch

    hr = torch.rand(5, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    lr, cond, target = degrade_batch(hr, TrainConfig(data=("x",), val="x", out="x"), np.random.default_rng(0))
    assert cond is None and lr.shape == hr.shape and target is hr
    for b in range(5):
        ref = degrade(hr[b, 0].numpy(), Degradation(scale=4), np.random.default_rng(0))
        np.testing.assert_allclose(lr[b, 0].numpy(), ref, atol=1e-5)
    import cv2

    sigmas = torch.tensor([0.0, 0.7, 1.5, 3.0, 2.2])
    blurred = gaussian_blur_batch(hr, sigmas)
    for b in range(5):
        ref = hr[b, 0].numpy() if sigmas[b] == 0 else cv2.GaussianBlur(hr[b, 0].numpy(), (0, 0), float(sigmas[b]))
        inner = (slice(13, -13), slice(13, -13))  # borders are mirrored differently (reflect-101 vs reflect)
        np.testing.assert_allclose(blurred[b, 0].numpy()[inner], ref[inner], atol=2e-3)


def test_make_batch_noise_ranges_and_degrader_hook(dataset):
    from ficli.training.pairs import make_batch

    images = load_images([str(dataset[0])], 1, "training")
    cfg = _config(dataset, "x", batch=6, psf_sigma_max=2.0, poisson_peak_min=50, gaussian_sigma_max=0.02)
    lr, hr, cond = make_batch(images, cfg, np.random.default_rng(1))
    assert lr.shape == hr.shape == (6, 1, 32, 32) and cond is None and torch.isfinite(lr).all()
    seen = {}

    def degrader(x, cfg, rng):  # e.g. a sampled blur scale s per crop, handed to the generator
        seen["shape"] = tuple(x.shape)
        return x * 0.5, torch.full((x.shape[0],), 2.5), x

    lr, hr, cond = make_batch(images, cfg, np.random.default_rng(1), degrader)
    assert seen["shape"] == (6, 1, 40, 40) and torch.equal(lr, hr * 0.5) and cond.shape == (6,)


def test_lr_schedule():
    from ficli.training.train import lr_factor

    assert [lr_factor(s, 10, "constant", 0) for s in (0, 9)] == [1.0, 1.0]
    assert [lr_factor(s, 10, "constant", 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(4, 10, "cosine", 4) == 1.0 and lr_factor(10, 10, "cosine", 4) == pytest.approx(0.0)
    assert lr_factor(7, 10, "cosine", 4) == pytest.approx(0.5)


def test_settings_of_older_runs_with_the_unused_percentiles_still_load(dataset, tmp_path):
    # Runs recorded lo_pct/hi_pct, which training never read (it maps images with
    # intensity.LO_PCT/HI_PCT): they are no setting now, and such runs still resume and continue.
    cfg = _config(dataset, tmp_path / "run")
    assert TrainConfig.from_dict({**cfg.to_dict(), "lo_pct": 0.1, "hi_pct": 99.9}) == cfg
    assert not {"lo_pct", "hi_pct"} & set(cfg.to_dict())


def test_a_run_moved_with_only_its_weights_file_continues_its_schedule(dataset, tmp_path):
    """Train 2 of 4 epochs, keep only last.safetensors (in another folder), continue elsewhere: the
    step count, the cosine learning rate and the data order go on as in an uninterrupted run."""
    import shutil
    from dataclasses import replace
    from ficli.training.runs import read_continue_config

    kw = dict(steps=3, lr_schedule="cosine", warmup_steps=2, patience=10)
    straight = tmp_path / "straight"
    train(_config(dataset, straight, epochs=4, **kw))
    first = tmp_path / "first"

    def stop_after_epoch_2(row):  # the session ends (Ctrl-C, a lost machine) half-way through the run
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    from ficli.training.train import Progress

    with pytest.raises(KeyboardInterrupt):
        train(_config(dataset, first, epochs=4, **kw), Progress(on_epoch=stop_after_epoch_2))
    moved = tmp_path / "elsewhere" / "weights.safetensors"
    moved.parent.mkdir()
    shutil.copy(first / "last.safetensors", moved)
    shutil.rmtree(first)
    meta = modelfile.model_info(moved)["info"]["training"]
    assert meta["step"] == 6 and meta["epoch"] == 2 and meta["train_seconds"] > 0
    assert meta["sessions"][0]["machine"]["torch"] and meta["sessions"][0]["machine"]["cores"] >= 1
    assert meta["data"][0]["files"] == {f"p{i}.png": (dataset[0] / f"p{i}.png").stat().st_size for i in range(4)}
    cfg = read_continue_config(moved, str(tmp_path / "second"))
    assert cfg.lr_schedule == "cosine" and cfg.epochs == 4
    train(cfg, continue_from=str(moved))
    a, b = _rows(straight), _rows(tmp_path / "second")
    assert [r["epoch"] for r in b] == ["1", "2", "3", "4"] and [r["step"] for r in b] == ["3", "6", "9", "12"]
    for i in (2, 3):
        assert float(b[i]["lr"]) == pytest.approx(float(a[i]["lr"]), rel=1e-9)  # the schedule continues
    assert float(b[3]["lr"]) < float(b[2]["lr"]) < float(b[1]["lr"])
    assert float(b[3]["train_seconds"]) > float(b[1]["train_seconds"])
    final = modelfile.model_info(tmp_path / "second" / "last.safetensors")["info"]["training"]
    assert final["step"] == 12 and len(final["sessions"]) == 2


def test_ema_run_resumes_exactly(dataset, tmp_path):
    from dataclasses import replace

    straight, split = tmp_path / "straight", tmp_path / "split"
    train(_config(dataset, straight, epochs=2, steps=4, ema=0.9))
    train(_config(dataset, split, epochs=1, steps=4, ema=0.9))
    train(replace(_config(dataset, split, epochs=2, steps=4, ema=0.9)), resume=True)
    assert float(_rows(split)[1]["val_psnr"]) == pytest.approx(float(_rows(straight)[1]["val_psnr"]), rel=1e-5)


TINY_COND = GeneratorConfig(features=16, growth=8, layers=2, blocks=2, scale_input=True)


def test_family_run_conditions_the_generator_and_measures_the_identity(dataset, tmp_path):
    """--degradations family: batches carry one s per crop, validation pairs a fixed s each, and
    the identity PSNR (G told s = 1 on sharp images) is logged; the model file is conditioned."""
    from ficli.training.pairs import VAL_SCALES, crop_margin, degrader_for, make_batch, validation_pairs

    cfg = _config(dataset, tmp_path / "fam", generator=TINY_COND, degradations="family", steps=4, epochs=2, lr=1e-3)
    images = load_images([str(dataset[0])], 1, "training")
    lr, hr, s = make_batch(images, cfg, np.random.default_rng(0), degrader_for(cfg))
    assert lr.shape == hr.shape == (8, 1, 32, 32) and s.shape == (8,)
    assert ((s >= 1) & (s <= 4)).all() and crop_margin(cfg) == 13  # ceil(2·4 + 3·1.5)
    sharp = s == 1
    assert torch.equal(lr[sharp], hr[sharp])  # sharp crops are left as they are
    assert [p[2] for p in validation_pairs(cfg)] == list(VAL_SCALES[:2])
    train(cfg)
    rows = _rows(tmp_path / "fam")
    assert all(float(r["val_identity_psnr"]) > 30 for r in rows)
    g, config, _ = modelfile.load_model(tmp_path / "fam" / "last.safetensors")
    assert config.scale_input
    with torch.no_grad():
        x = torch.rand(1, 1, 16, 16)
        assert not torch.equal(g(x, 1.0), g(x, 4.0))


def test_plain_model_starts_a_conditioned_run_as_itself(dataset, tmp_path):
    """--init of a model that is not conditioned: the new head weighs the scale map by zero, so the
    run starts from the old model's outputs whatever s (within spectral norm's re-estimate)."""
    from ficli.training.train import _init_from
    from ficli.model.nets import Generator

    plain_run = tmp_path / "plain"
    train(_config(dataset, plain_run, steps=5))
    plain = modelfile.load_model(plain_run / "last.safetensors")[0]
    G = Generator(TINY_COND)
    _init_from(G, str(plain_run / "last.safetensors"), torch.device("cpu"))
    G.eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        want = plain(x)
        for s in (1.0, 4.0):
            torch.testing.assert_close(G(x, s), want, atol=2e-3, rtol=0)


def test_conditioned_generator_needs_family_degradations(dataset, tmp_path):
    from ficli.errors import ConfigError

    with pytest.raises(ConfigError, match="family"):
        _config(dataset, tmp_path / "x", generator=TINY_COND)
    with pytest.raises(ConfigError, match="family"):
        _config(dataset, tmp_path / "x", degradations="family")
    with pytest.raises(ConfigError, match="degradations"):
        _config(dataset, tmp_path / "x", degradations="camera")


def test_data_from_a_list_file_and_patterns(dataset, tmp_path):
    """--data takes @list.txt and glob patterns besides folders (the held-out splits use them)."""
    listing = tmp_path / "split.txt"
    listing.write_text(f"# two of the four\n{dataset[0]}/p0.png\n{dataset[0]}/p[1].png\n")
    assert len(load_images([f"@{listing}"], 1, "training")) == 2
    assert len(load_images([f"{dataset[0]}/p*.png"], 1, "training")) == 4
    from ficli.errors import InputError

    with pytest.raises(InputError, match="missing.png"):
        listing.write_text(f"{dataset[0]}/missing.png\n")
        load_images([f"@{listing}"], 1, "training")


def test_kernels_choose_the_family_kernels_of_training_and_validation(dataset, tmp_path):
    """--kernels area: every validation pair is made by the area kernel (checked against `degrade`
    called directly), the training ranges hold only it, and --kernels is refused where there is no
    family or with an unknown kernel."""
    from ficli.errors import ConfigError
    from ficli.image.degrade import Degradation, degrade
    from ficli.training.pairs import family_ranges, validation_pairs
    from ficli.training.runs import differing_settings, kernel_list

    cfg = _config(dataset, tmp_path / "k", generator=TINY_COND, degradations="family", kernels=("area",))
    assert family_ranges(cfg).kernels == ("area",)
    for lr, hr, s in validation_pairs(cfg):
        want = degrade(hr[0], Degradation(scale=s, kernel="area"), np.random.default_rng(0))
        np.testing.assert_array_equal(lr[0], want)
        other = degrade(hr[0], Degradation(scale=s, kernel="cv2"), np.random.default_rng(0))
        assert not np.array_equal(lr[0], other)
    assert kernel_list(" pil, area ") == ("pil", "area")
    assert differing_settings(cfg, {"kernels": "area"}) == []
    assert differing_settings(cfg, {"kernels": "pil,area"}) == ["--kernels pil,area (the run's: ('area',))"]
    with pytest.raises(ConfigError, match="--kernels"):
        _config(dataset, tmp_path / "x", generator=TINY_COND, degradations="family", kernels=("lanczos",))
    with pytest.raises(ConfigError, match="--kernels"):
        _config(dataset, tmp_path / "x", generator=TINY_COND, degradations="family", kernels=("pil", "pil"))
    with pytest.raises(ConfigError, match="--degradations family"):
        _config(dataset, tmp_path / "x", kernels=("pil",))


def test_quiet_may_be_given_to_a_continued_run(dataset, tmp_path):
    """-q only changes the display: `ficli train --resume RUN -q` was refused as a changed setting."""
    from ficli.training.runs import differing_settings

    cfg = _config(dataset, tmp_path / "q")
    assert differing_settings(cfg, {"quiet": True, "epochs": 9}) == []
    assert differing_settings(cfg, {"lr": 0.5}) == [f"--lr 0.5 (the run's: {cfg.lr})"]


def test_keep_coarse_trains_on_the_kept_output_and_the_model_says_so(dataset, tmp_path):
    """--keep-coarse: the step's loss is on y − B_s(y − x) (`degrade.keep_coarse`, whose own tests
    compare it with a Gaussian written out), the file records `coarse_kept`, and validation scores
    the kept output (checked against `validate` of the same weights without it)."""
    import dataclasses

    from ficli.image.degrade import keep_coarse
    from ficli.model.nets import Generator
    from ficli.training.train import generate, validate
    from ficli.training.pairs import validation_pairs
    from ficli.inference.engine import TileConfig

    G = Generator(TINY_COND).eval()  # eval: spectral norm's power iteration would move between the calls
    with torch.no_grad():
        G.out_scale.fill_(0.5)
    x, s = torch.rand(2, 1, 32, 32), torch.tensor([1.5, 4.0])
    with torch.no_grad():
        torch.testing.assert_close(generate(G, x, s, coarse_kept=True), keep_coarse(G(x, s), x, s))
        assert not torch.allclose(generate(G, x, s), generate(G, x, s, coarse_kept=True))
    cfg = _config(dataset, tmp_path / "kept", degradations="family", generator=dataclasses.replace(TINY_COND, coarse_kept=True), steps=3)
    train(cfg)
    config = modelfile.load_model(tmp_path / "kept" / "last.safetensors")[1]
    assert config.coarse_kept and config.scale_input
    G = modelfile.load_model(tmp_path / "kept" / "last.safetensors")[0]
    pairs, tile = validation_pairs(cfg), TileConfig(tile=cfg.tile)
    kept, free = validate(G, pairs, tile, coarse_kept=True), validate(G, pairs, tile)
    with (tmp_path / "kept" / "metrics.csv").open(newline="") as f:
        last = list(csv.DictReader(f))[-1]
    assert float(last["val_psnr"]) == pytest.approx(kept["psnr"], abs=1e-6) and kept["psnr"] != free["psnr"]
    from ficli.errors import ConfigError

    with pytest.raises(ConfigError, match="family"):
        _config(dataset, tmp_path / "x", generator=dataclasses.replace(TINY, coarse_kept=True))


def test_resampling_degradations_are_the_family_without_psf_and_noise(dataset, tmp_path):
    """--degradations resampling: the family's kernels and s alone. A flat crop stays exactly flat
    (no noise), where the family puts noise on about half of such crops; the ranges are the family's
    with no PSF and no noise, and the generator is told s."""
    from ficli.training.pairs import FAMILY, family_degrader, family_ranges

    cfg = _config(dataset, tmp_path / "r", degradations="resampling", generator=TINY_COND)
    ranges = family_ranges(cfg)
    assert (ranges.psf_sigma_max, ranges.poisson_p, ranges.read_p) == (0.0, 0.0, 0.0)
    assert (ranges.kernels, ranges.scale_max, ranges.sharp_fraction) == (FAMILY.kernels, FAMILY.scale_max, FAMILY.sharp_fraction)
    flat = torch.full((32, 1, 40, 40), 0.5)
    lr, s, _ = family_degrader(flat, cfg, np.random.default_rng(0))
    assert torch.allclose(lr, flat, atol=1e-5) and s.shape == (32,) and (s > 1).any()
    noisy, _, _ = family_degrader(flat, _config(dataset, tmp_path / "f", degradations="family", generator=TINY_COND), np.random.default_rng(0))
    assert (noisy - flat).abs().amax(dim=(1, 2, 3)).gt(1e-3).sum() >= 8


def test_noisy_resampling_degradations_are_the_family_without_psf(dataset, tmp_path):
    """--degradations noisy-resampling: the family's kernels, s and noise, no PSF. Flat crops get
    noise on about as many as the family gives it (and no blur changes them), the ranges are the
    family's with psf_sigma_max 0, and --kernels narrows them."""
    from dataclasses import replace

    from ficli.training.pairs import FAMILY, family_degrader, family_ranges

    cfg = _config(dataset, tmp_path / "n", degradations="noisy-resampling", generator=TINY_COND, kernels=("pil", "area"))
    ranges = family_ranges(cfg)
    assert ranges == replace(FAMILY, psf_sigma_max=0.0, kernels=("pil", "area"))
    flat = torch.full((64, 1, 40, 40), 0.5)
    lr, s, _ = family_degrader(flat, cfg, np.random.default_rng(0))
    moved = (lr - flat).abs().amax(dim=(1, 2, 3)).gt(1e-3)
    assert 16 <= int(moved.sum()) <= 56 and not moved[s == 1].any()


def test_noise_kept_targets_hold_the_noise_the_input_was_given(dataset, tmp_path):
    """--noise-kept: the target is the HR crop plus its noise as degraded. For flat crops (which no
    kernel changes) the target then equals the input exactly, noisy or not; without it the target
    is the crop; the crops and s are drawn as without it; a run trains with it, and it is refused
    for an unconditioned run."""
    from ficli.errors import ConfigError
    from ficli.training.pairs import family_degrader, make_batch

    kept = _config(dataset, tmp_path / "k", degradations="noisy-resampling", generator=TINY_COND, noise_kept=True, steps=2)
    plain = _config(dataset, tmp_path / "p", degradations="noisy-resampling", generator=TINY_COND)
    flat = torch.full((64, 1, 40, 40), 0.5)
    lr, s, target = family_degrader(flat, kept, np.random.default_rng(0))
    assert torch.allclose(target, lr, atol=1e-5) and (lr - flat).abs().amax() > 1e-2
    _, s_plain, target_plain = family_degrader(flat, plain, np.random.default_rng(0))
    assert torch.equal(target_plain, flat) and torch.equal(s, s_plain)
    hr = torch.rand(16, 1, 40, 40)
    _, _, target = family_degrader(hr.clone(), kept, np.random.default_rng(1))
    _, _, target_p = family_degrader(hr.clone(), plain, np.random.default_rng(1))
    assert torch.equal(target_p, hr) and not torch.allclose(target, hr)
    images = [np.full((64, 64, 1), 0.5, np.float32)]
    lr_b, hr_b, _ = make_batch(images, kept, np.random.default_rng(2), family_degrader)
    assert torch.allclose(lr_b, hr_b, atol=1e-5)
    train(kept)
    assert float(_rows(Path(kept.out))[-1]["val_psnr"]) > 0
    with pytest.raises(ConfigError, match="--noise-kept"):
        _config(dataset, tmp_path / "q", noise_kept=True)


def test_noise_kept_peak_keeps_grain_and_takes_heavy_noise_out_of_the_target(dataset, tmp_path):
    """--noise-kept-peak P: a crop's noise stays in the target only if it is no stronger than shot
    noise of P photons at intensity 1 (relative variance 1/peak + read σ² ≤ 1/P). On flat crops the
    target is then either the noisy input (grain kept) or the flat crop (heavy noise removed); both
    occur, the removed noise is the stronger, and the crops and s are those of --noise-kept alone."""
    from ficli.errors import ConfigError
    from ficli.image.degrade import Degradation, noise_kept
    from ficli.training.pairs import family_degrader

    assert noise_kept(Degradation(poisson_peak=1000.0), 500.0) and not noise_kept(Degradation(poisson_peak=200.0), 500.0)
    assert not noise_kept(Degradation(poisson_peak=1000.0, gaussian_sigma=0.04), 500.0)  # 1e-3 + 1.6e-3 > 2e-3
    assert noise_kept(Degradation(gaussian_sigma=0.01), 0.0) and not noise_kept(Degradation(), 0.0)
    cfg = _config(dataset, tmp_path / "k", degradations="noisy-resampling", generator=TINY_COND, noise_kept=True, noise_kept_peak=300.0)
    all_kept = _config(dataset, tmp_path / "a", degradations="noisy-resampling", generator=TINY_COND, noise_kept=True)
    flat = torch.full((128, 1, 40, 40), 0.5)
    lr, s, target = family_degrader(flat, cfg, np.random.default_rng(0))
    lr_a, s_a, _ = family_degrader(flat, all_kept, np.random.default_rng(0))
    assert torch.equal(lr, lr_a) and torch.equal(s, s_a)
    noise = (lr - flat).std(dim=(1, 2, 3))
    kept = (target - lr).abs().amax(dim=(1, 2, 3)) < 1e-5
    removed = torch.eq(target, flat).flatten(1).all(1) & (noise > 1e-3)
    assert int((kept & (noise > 1e-3)).sum()) >= 10 and int(removed.sum()) >= 10
    assert noise[removed].median() > 2 * noise[kept & (noise > 1e-3)].median()
    with pytest.raises(ConfigError, match="--noise-kept-peak"):
        _config(dataset, tmp_path / "q", degradations="noisy-resampling", generator=TINY_COND, noise_kept_peak=300.0)


def test_video_degradations_code_half_the_blurred_crops_as_8_bit_frames(dataset, tmp_path):
    """--degradations video: resampling with about half of the blurred crops coded as H.264 frames:
    those sit on the 8-bit grid, the others (resampled floats) almost never do; sharp crops are
    never coded, and a short run trains and validates."""
    from ficli.training.pairs import RESAMPLING, family_degrader, family_ranges

    cfg = _config(dataset, tmp_path / "v", degradations="video", generator=TINY_COND, steps=2)
    assert family_ranges(cfg).h264_p == 0.5 and family_ranges(cfg).psf_sigma_max == RESAMPLING.psf_sigma_max
    hr = torch.rand(64, 1, 40, 40)
    lr, s, _ = family_degrader(hr, cfg, np.random.default_rng(0))
    on_grid = ((lr * 255 - (lr * 255).round()).abs().amax(dim=(1, 2, 3)) < 1e-3)
    blurred = s > 1
    assert torch.equal(lr[~blurred], hr[~blurred])
    assert 0.25 < on_grid[blurred].float().mean() < 0.75
    train(cfg)
    assert float(_rows(Path(cfg.out))[-1]["val_psnr"]) > 0


def test_told_over_tells_half_the_crops_more_than_their_blur_scale(dataset, tmp_path):
    """--told-over R: half of the crops are told between 1 and R times their s (at most the family's
    s_max), the others their s; the crops themselves are the same as without it."""
    from ficli.image.degrade import degrade_batch
    from ficli.training.pairs import family_ranges

    plain_cfg = _config(dataset, tmp_path / "a", degradations="resampling", generator=TINY_COND)
    over_cfg = _config(dataset, tmp_path / "b", degradations="resampling", generator=TINY_COND, told_over=2.0)
    hr = torch.rand(200, 1, 24, 24)
    rows = [degrade_batch(hr[i:i + 1], family_ranges(over_cfg), np.random.default_rng(i)) for i in range(200)]
    truth = [degrade_batch(hr[i:i + 1], family_ranges(plain_cfg), np.random.default_rng(i)) for i in range(200)]
    told = torch.cat([r[1] for r in rows])
    true = torch.cat([t[1] for t in truth])
    assert all(torch.equal(r[0], t[0]) for r, t in zip(rows, truth))  # the same crops
    ratio = told / true
    assert (ratio >= 1).all() and (ratio <= 2 + 1e-5).all() and (told <= 4 + 1e-5).all()
    raised = (ratio > 1 + 1e-6).float().mean()
    assert 0.3 < raised < 0.55  # half are drawn; those already at s_max cannot be raised


def test_told_over_is_refused_where_it_means_nothing(dataset, tmp_path):
    from ficli.errors import ConfigError

    with pytest.raises(ConfigError, match="--told-over"):
        _config(dataset, tmp_path / "p", told_over=2.0)  # the paper's runs tell no s
    with pytest.raises(ConfigError, match="--told-over"):
        _config(dataset, tmp_path / "q", degradations="resampling", generator=TINY_COND, told_over=5.0)


def test_scale_min_draws_large_blur_scales_only(dataset, tmp_path):
    """--scale-min 2.75: every crop is blurred with s in (2.75, 4] (none left sharp), validation
    uses the scales above it alone, a short run trains; it is refused where it means nothing."""
    from ficli.errors import ConfigError
    from ficli.training.pairs import VAL_SCALES, family_degrader, validation_pairs

    cfg = _config(dataset, tmp_path / "l", degradations="resampling", generator=TINY_COND, scale_min=2.75, steps=2)
    _, s, _ = family_degrader(torch.rand(200, 1, 24, 24), cfg, np.random.default_rng(0))
    assert float(s.min()) > 2.75 and float(s.max()) <= 4 + 1e-5 and float(s.std()) > 0.2
    assert {p[2] for p in validation_pairs(cfg)} == {v for v in VAL_SCALES if v > 2.75}
    train(cfg)
    assert float(_rows(Path(cfg.out))[-1]["val_psnr"]) > 0
    with pytest.raises(ConfigError, match="--scale-min"):
        _config(dataset, tmp_path / "p", scale_min=2.0)  # the paper's runs draw no s
    with pytest.raises(ConfigError, match="--scale-min"):
        _config(dataset, tmp_path / "q", degradations="resampling", generator=TINY_COND, scale_min=4.0)


def test_native_degradations_are_a_psf_at_the_native_grid(dataset, tmp_path):
    """--degradations native: every blurred crop is the crop under a Gaussian PSF of σ = s / 2.4 px
    (no resampling, no noise), checked against scipy's Gaussian filter inside the border; sharp
    crops come back as they are; the validation pairs are PSF-blurred too, told their s; a run trains."""
    from scipy.ndimage import gaussian_filter

    from ficli.image.degrade import PSF_S_PER_SIGMA
    from ficli.training.pairs import family_degrader, validation_pairs

    cfg = _config(dataset, tmp_path / "n", degradations="native", generator=TINY_COND, steps=2)
    hr = torch.from_numpy(np.random.default_rng(0).random((24, 1, 64, 64)).astype(np.float32))
    lr, s, target = family_degrader(hr.clone(), cfg, np.random.default_rng(1))
    assert torch.equal(target, hr) and (s == 1).any() and (s > 2).any()
    for i in range(len(s)):
        ref = hr[i, 0].numpy() if s[i] == 1 else gaussian_filter(hr[i, 0].numpy().astype(np.float64), float(s[i]) / PSF_S_PER_SIGMA)
        inner = (slice(12, -12), slice(12, -12))
        assert np.abs(lr[i, 0].numpy()[inner] - ref[inner]).max() < 2e-3, float(s[i])
    for lr_v, hr_v, scale in validation_pairs(cfg):
        ref = gaussian_filter(hr_v[0].astype(np.float64), scale / PSF_S_PER_SIGMA)
        assert scale > 1 and np.abs(lr_v[0][16:-16, 16:-16] - ref[16:-16, 16:-16]).max() < 2e-3
    train(cfg)
    assert float(_rows(Path(cfg.out))[-1]["val_psnr"]) > 0
