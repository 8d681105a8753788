"""One language across commands (issue 26, item 3): -q on every command, flags shown without a
value, evaluate --suffix, a note for skipped subfolders, evaluate's table at 100 columns, unique
profile CSV headers."""

from __future__ import annotations

import csv
import re
from io import StringIO

import numpy as np
import pytest
from rich.console import Console

from ficli.image import io
from ficli.image.phantom import phantom, to_dtype

COMMANDS = ("degrade", "evaluate", "enhance", "profile", "compare", "train", "video", "bench", "export", "info")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_quiet_and_shows_flags_without_a_value(run_cli, command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = run_cli(command, "--help")
    assert result.exit_code == 0, result.output
    assert re.search(r"--quiet\s+-q", result.output), f"{command} has no -q/--quiet"
    assert "<bool>" not in result.output  # a flag takes no value: its help shows none


@pytest.mark.hostile
def test_a_value_after_a_flag_is_told_it_takes_none(run_cli, phantom_folder, tmp_path):
    result = run_cli("degrade", phantom_folder, "--recursive", "true", "--out", tmp_path / "lr")
    assert result.exit_code == 1
    assert "takes no value" in result.output and not (tmp_path / "lr").exists()


def test_quiet_profile_and_export_print_nothing(run_cli, phantom_folder, tmp_path, tiny_identity_model):
    result = run_cli("profile", phantom_folder / "a8.png", "--line", "1,1,30,20", "--out", tmp_path / "p.png", "-q")
    assert result.exit_code == 0 and result.output == "" and (tmp_path / "p.png").is_file()
    result = run_cli("export", "--model", tiny_identity_model, "-f", "torchscript", "-o", tmp_path / "m.pt", "-q")
    assert result.exit_code == 0, result.output
    assert result.output == "" and (tmp_path / "m.pt").is_file()


def test_quiet_evaluate_and_info_still_show_their_result(run_cli, phantom_folder, tiny_identity_model):
    result = run_cli("evaluate", phantom_folder, phantom_folder, "-q")
    assert result.exit_code == 0 and "mean ± std" in result.output
    assert "parameters" in run_cli("info", tiny_identity_model, "-q").output


def test_evaluate_suffix_pairs_enhance_suffix_outputs(run_cli, phantom_folder, tmp_path):
    run_cli("degrade", phantom_folder, "--out", tmp_path / "lr", "--suffix", "_sr")
    assert (tmp_path / "lr" / "a8_sr.png").is_file() and (tmp_path / "lr" / "c12_sr.tif").is_file()
    unpaired = run_cli("evaluate", phantom_folder, tmp_path / "lr")
    assert unpaired.exit_code == 1
    result = run_cli("evaluate", phantom_folder, tmp_path / "lr", "--suffix", "_sr", "--csv", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "s.csv", encoding="utf-8")))
    assert sorted(row["hr"] for row in rows) == ["a8.png", "b16.png", "c12.tif"]
    assert all(row["sr"].endswith(("_sr.png", "_sr.tif")) for row in rows)


def test_skipped_subfolders_are_noted(run_cli, phantom_folder, tmp_path):
    nested = phantom_folder / "day2"
    io.write_image(nested / "deep" / "x.png", to_dtype(phantom(32, 32, seed=5), np.uint8))
    (phantom_folder / "empty").mkdir()
    result = run_cli("degrade", phantom_folder, "--out", tmp_path / "lr")
    assert result.exit_code == 0
    assert "1 subfolder(s) with images were skipped" in result.output and "day2" in result.output
    assert "empty" not in result.output.split("skipped")[1].split("\n")[0]
    recursive = run_cli("degrade", phantom_folder, "--out", tmp_path / "lr2", "-r")
    assert recursive.exit_code == 0 and "were skipped" not in recursive.output
    assert "subfolder(s) with images were skipped" in run_cli("evaluate", phantom_folder, tmp_path / "lr").output


def test_evaluate_table_with_three_methods_fits_100_columns(tmp_path):
    from ficli.console import evaluate_table
    from ficli.tools.evaluate import evaluate_folders

    hr = tmp_path / "hr"
    io.write_image(hr / "cells.png", to_dtype(phantom(64, 64, seed=1), np.uint8))
    methods = []
    for i, name in enumerate(("bicubic_baseline", "ficli_default_model", "care_reference")):
        noisy = phantom(64, 64, seed=1) + np.random.default_rng(i).normal(0, 0.02 * (i + 1), (64, 64))
        io.write_image(tmp_path / name / "cells.png", to_dtype(np.clip(noisy, 0, 1), np.uint8))
        methods.append(tmp_path / name)
    report = evaluate_folders(hr, methods)
    out = StringIO()
    Console(file=out, width=100).print(evaluate_table(report, True, width=100))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "…" not in text  # no number cut short
    for row in report.rows:
        assert f"{row.scores.psnr:.2f}" in text and f"{row.scores.ssim:.4f}" in text
    for method in ("bicubic_baseline", "ficli_default_model", "care_reference"):
        assert method in text


def test_profile_csv_headers_are_unique_when_names_are_shared(run_cli, phantom_folder, tmp_path):
    other = tmp_path / "enhanced" / "a8.png"
    io.write_image(other, to_dtype(phantom(64, 48, seed=9), np.uint8))
    result = run_cli("profile", phantom_folder / "a8.png", other, "--line", "1,1,40,30", "--out", tmp_path / "p.png",
                     "--csv", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    header = next(csv.reader(open(tmp_path / "p.csv", encoding="utf-8")))
    assert header == ["distance_px", "hr/a8.png", "enhanced/a8.png"]


@pytest.mark.slow  # two tiny training runs: about 2 minutes on the shared 2-core CPU
def test_quiet_train_prints_no_epoch_line_and_still_writes_the_run(run_cli, tmp_path):
    for i in range(2):
        io.write_image(tmp_path / "train" / f"p{i}.png", to_dtype(phantom(64, 64, seed=i, peak_photons=None), np.uint16))
    io.write_image(tmp_path / "val" / "v.png", to_dtype(phantom(48, 48, seed=9, peak_photons=None), np.uint16))
    args = ("train", "--data", tmp_path / "train", "--val", tmp_path / "val", "--epochs", "1", "--steps", "1",
            "--batch", "2", "--crop", "32", "--features", "8", "--no-gan", "--device", "cpu")
    loud = run_cli(*args, "--out", tmp_path / "loud")
    assert loud.exit_code == 0, loud.output
    assert "epoch 1:" in loud.output and "best val PSNR" in loud.output
    quiet = run_cli(*args, "--out", tmp_path / "quiet", "-q")
    assert quiet.exit_code == 0, quiet.output
    assert "epoch 1:" not in quiet.output and "best val PSNR" not in quiet.output
    assert (tmp_path / "quiet" / "best.safetensors").is_file() and (tmp_path / "quiet" / "metrics.csv").is_file()
