"""Folder pairing, scales, problems and files of `ficli evaluate`, library and command line."""

import csv
import json

import numpy as np
import pytest

from ficli.tools import evaluate as ev
from ficli.errors import ConfigError, InputError
from ficli.image.io import write_image
from ficli.image.phantom import phantom, to_dtype

skm = pytest.importorskip("skimage.metrics", reason="scikit-image is the reference for the metrics")

SSIM_REF = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)


def reference(a, b):
    return skm.peak_signal_noise_ratio(a, b, data_range=1), skm.structural_similarity(a, b, **SSIM_REF), np.sqrt(np.mean((a - b) ** 2))


def noisy(img: np.ndarray, seed: int = 0, top: int = 255) -> np.ndarray:
    """`img` (integer) plus Gaussian noise of 2 % of `top`, kept in range."""
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, 0.02 * top, img.shape), 0, top).round().astype(img.dtype)


@pytest.fixture
def folders(tmp_path):
    """HR and SR folders with two matching 8-bit images (40×36)."""
    hr, sr = tmp_path / "hr", tmp_path / "sr"
    for i, name in enumerate(("a.png", "b.png")):
        img = to_dtype(phantom(40, 36, seed=i), np.uint8)
        write_image(hr / name, img)
        write_image(sr / name, noisy(img, i))
    return hr, sr


def as_tuple(s: ev.Scores):
    return s.psnr, s.ssim, s.rmse


# ------------------------------------------------------------------------------------------- library


def test_parse_scale():
    assert ev.parse_scale("dtype") == ev.Scale("dtype")
    assert ev.parse_scale("HR") == ev.Scale("hr")
    assert ev.parse_scale("4095") == ev.Scale("value", 4095.0)
    for bad in ("zero", "0", "-3", "nan"):
        with pytest.raises(ConfigError):
            ev.parse_scale(bad)


def test_dtype_scale_matches_scikit_image(folders):
    hr, sr = folders
    report = ev.evaluate_folders(hr, [sr])
    assert report.ok() and len(report.rows) == 2
    for row in report.rows:
        a = ev.read_image(row.hr_path).data / 255.0
        b = ev.read_image(row.sr_path).data / 255.0
        np.testing.assert_allclose(as_tuple(row.scores), reference(a, b), rtol=0, atol=1e-6)


@pytest.mark.parametrize("text", ["hr", "4095"])
def test_hr_and_value_scales_match_scikit_image_on_mapped_arrays(tmp_path, text):
    img = to_dtype(phantom(48, 40, seed=5), np.uint16, max_value=4095)
    out = noisy(img, 1, top=4095)
    write_image(tmp_path / "hr" / "c.tif", img)
    write_image(tmp_path / "sr" / "c.tif", out)
    report = ev.evaluate_folders(tmp_path / "hr", [tmp_path / "sr"], scale=ev.parse_scale(text))
    a, b = img.astype(np.float64), out.astype(np.float64)
    if text == "hr":
        lo, hi = a.min(), a.max()
        a, b = (a - lo) / (hi - lo), (b - lo) / (hi - lo)
    else:
        a, b = a / 4095, b / 4095
    np.testing.assert_allclose(as_tuple(report.rows[0].scores), reference(a, b), rtol=0, atol=1e-6)
    assert report.narrow == []  # the hint belongs to the dtype scale only


def test_crop_border_scores_the_inner_part(folders):
    hr, sr = folders
    report = ev.evaluate_folders(hr, [sr], crop_border=4)
    row = report.rows[0]
    a = ev.read_image(row.hr_path).data[4:-4, 4:-4] / 255.0
    b = ev.read_image(row.sr_path).data[4:-4, 4:-4] / 255.0
    np.testing.assert_allclose(as_tuple(row.scores), reference(a, b), rtol=0, atol=1e-6)


def test_crop_border_too_large_is_a_problem_not_a_crash(folders):
    hr, sr = folders
    report = ev.evaluate_folders(hr, [sr], crop_border=13)  # leaves 10×14: too small for SSIM
    assert not report.rows and {p.kind for p in report.problems} == {"unscorable"}
    assert "too small for SSIM" in report.problems[0].message


def test_stacks_are_scored_frame_by_frame_and_averaged(tmp_path):
    stack = np.stack([to_dtype(phantom(32, 30, seed=s), np.uint8) for s in range(3)])
    out = noisy(stack, 2)
    write_image(tmp_path / "hr" / "s.tif", stack, is_stack=True)
    write_image(tmp_path / "sr" / "s.tif", out, is_stack=True)
    report = ev.evaluate_folders(tmp_path / "hr", [tmp_path / "sr"])
    expected = np.mean([reference(h / 255.0, s / 255.0) for h, s in zip(stack, out)], axis=0)
    np.testing.assert_allclose(as_tuple(report.rows[0].scores), expected, rtol=0, atol=1e-6)


def test_pairs_by_stem_when_extensions_differ(tmp_path):
    img = to_dtype(phantom(24, 24, seed=3), np.uint8)
    write_image(tmp_path / "hr" / "a.tif", img)
    write_image(tmp_path / "sr" / "a.png", noisy(img))
    report = ev.evaluate_folders(tmp_path / "hr", [tmp_path / "sr"])
    assert report.ok() and report.rows[0].sr_path.name == "a.png"


def test_pairs_relative_paths_recursively(tmp_path):
    img = to_dtype(phantom(24, 24, seed=3), np.uint8)
    for sub in ("x", "y"):
        write_image(tmp_path / "hr" / sub / "a.png", img)
        write_image(tmp_path / "sr" / sub / "a.png", noisy(img))
    report = ev.evaluate_folders(tmp_path / "hr", [tmp_path / "sr"], recursive=True)
    assert report.ok() and sorted(r.hr.as_posix() for r in report.rows) == ["x/a.png", "y/a.png"]


def test_unpaired_files_are_reported_by_name(folders):
    hr, sr = folders
    (sr / "b.png").rename(sr / "extra.png")
    report = ev.evaluate_folders(hr, [sr])
    named = {(p.kind, p.path.name) for p in report.problems}
    assert named == {("no-sr", "b.png"), ("no-hr", "extra.png")}
    assert not report.ok() and report.ok(allow_unpaired=True)


def test_size_and_dtype_mismatches_are_reported_and_not_scored(folders):
    hr, sr = folders
    write_image(sr / "a.png", np.zeros((20, 20), np.uint8))
    write_image(sr / "b.png", np.zeros((40, 36), np.uint16))
    report = ev.evaluate_folders(hr, [sr])
    assert not report.rows
    kinds = {p.path.name: p.kind for p in report.problems}
    assert kinds == {"a.png": "size", "b.png": "dtype"}
    assert "20×20" in report.problems[0].message or "20×20" in report.problems[1].message


def test_narrow_range_hr_is_noted_on_the_dtype_scale(phantom_folder, tmp_path):
    report = ev.evaluate_folders(phantom_folder, [phantom_folder])
    assert [p.name for p, *_ in report.narrow] == ["c12.tif"]


def test_csv_and_json_files(folders, tmp_path):
    hr, sr = folders
    (sr / "b.png").unlink()
    report = ev.evaluate_folders(hr, [sr, hr])
    ev.write_csv(report, tmp_path / "out" / "s.csv")
    ev.write_json(report, tmp_path / "out" / "s.json")
    rows = list(csv.DictReader(open(tmp_path / "out" / "s.csv")))
    assert [(r["hr"], r["method"]) for r in rows] == [("a.png", "sr"), ("a.png", "hr"), ("b.png", "hr")]
    assert float(rows[0]["psnr_db"]) == pytest.approx(report.rows[0].scores.psnr)
    summary = json.load(open(tmp_path / "out" / "s.json"))
    assert summary["scale"] == "dtype"
    by_name = {m["name"]: m for m in summary["methods"]}
    assert by_name["sr"]["n"] == 1 and by_name["sr"]["psnr_db"]["std"] is None
    # HR against itself: PSNR infinite, which strict JSON holds as null (issue 14.11), with rmse 0 beside it
    assert by_name["hr"]["psnr_db"]["mean"] is None and by_name["hr"]["ssim"]["mean"] == pytest.approx(1.0)
    assert by_name["hr"]["rmse"]["mean"] == 0
    assert [(p["kind"], p["method"]) for p in summary["problems"]] == [("no-sr", "sr")]
    assert [p.name for p in (tmp_path / "out").iterdir()] and not list((tmp_path / "out").glob(".*"))


def test_missing_folder_raises(tmp_path):
    with pytest.raises(InputError, match="nope"):
        ev.evaluate_folders(tmp_path / "nope", [tmp_path])


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_table_and_exit_zero(run_cli, folders):
    hr, sr = folders
    result = run_cli("evaluate", hr, sr)
    assert result.exit_code == 0, result.output
    for text in ("scale: dtype", "PSNR dB", "SSIM", "RMSE", "a.png", "b.png", "mean ± std"):
        assert text in result.output
    summary = run_cli("evaluate", hr, sr, "--summary-only", "--data-range", "hr")
    assert "scale: hr" in summary.output and "a.png" not in summary.output and "mean ± std" in summary.output


def test_cli_narrow_range_hint_for_12_bit_data(run_cli, phantom_folder, tmp_path):
    result = run_cli("evaluate", phantom_folder, phantom_folder)
    assert result.exit_code == 0, result.output
    assert result.output.count("--data-range hr") == 1 and "c12.tif" in result.output


def test_cli_missing_and_empty_folders(run_cli, folders, tmp_path):
    hr, _ = folders
    result = run_cli("evaluate", hr, tmp_path / "missing")
    assert result.exit_code == 1 and "missing" in result.output and "Traceback" not in result.output
    (tmp_path / "empty").mkdir()
    result = run_cli("evaluate", tmp_path / "empty", hr)
    assert result.exit_code == 1 and "no images found" in result.output


def test_cli_corrupt_png_is_named_and_the_rest_scored(run_cli, folders, tmp_path):
    hr, sr = folders
    (sr / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    result = run_cli("evaluate", hr, sr, "--csv", tmp_path / "s.csv")
    assert result.exit_code == 1
    assert "b.png" in result.output and "unreadable" in result.output
    assert [r["hr"] for r in csv.DictReader(open(tmp_path / "s.csv"))] == ["a.png"]


def test_cli_size_mismatch_and_bad_option(run_cli, folders):
    hr, sr = folders
    write_image(sr / "a.png", np.zeros((20, 20), np.uint8))
    result = run_cli("evaluate", hr, sr)
    assert result.exit_code == 1 and "size mismatches" in result.output and "a.png" in result.output
    assert run_cli("evaluate", hr, sr, "--data-range", "wide").exit_code == 2


def test_cli_unpaired_exit_code_and_allow_unpaired(run_cli, folders):
    hr, sr = folders
    (sr / "b.png").unlink()
    assert run_cli("evaluate", hr, sr).exit_code == 1
    result = run_cli("evaluate", hr, sr, "--allow-unpaired")
    assert result.exit_code == 0 and "b.png" in result.output
