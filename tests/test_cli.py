"""The command line on real files: degrade, error paths, version and help."""

import os

import numpy as np
import pytest

from ficli import __version__
from ficli.image import io

from conftest import unboxed


def test_version_and_help(run_cli):
    assert __version__ in run_cli("--version").output
    result = run_cli("--help")
    assert result.exit_code == 0
    for command in ("degrade", "evaluate", "train", "enhance", "video"):
        assert command in result.output


def test_degrade_folder_keeps_names_types_and_sizes(run_cli, phantom_folder, tmp_path):
    out = tmp_path / "lr"
    result = run_cli("degrade", phantom_folder, "--out", out, "--psf-sigma", "1", "--poisson-peak", "200")
    assert result.exit_code == 0, result.output
    assert "3 done" in result.output
    for src in phantom_folder.iterdir():
        hr, lr = io.read_image(src).data, io.read_image(out / src.name).data
        assert lr.shape == hr.shape and lr.dtype == hr.dtype and not np.array_equal(lr, hr)


def test_degrade_is_deterministic_per_seed(run_cli, phantom_folder, tmp_path):
    args = ("--poisson-peak", "50", "--seed", "3")
    run_cli("degrade", phantom_folder, "--out", tmp_path / "a", *args)
    run_cli("degrade", phantom_folder / "a8.png", "--out", tmp_path / "b", *args)
    a = io.read_image(tmp_path / "a" / "a8.png").data
    assert np.array_equal(a, io.read_image(tmp_path / "b" / "a8.png").data)


def test_degrade_skip_existing_leaves_finished_files(run_cli, phantom_folder, tmp_path):
    out = tmp_path / "lr"
    run_cli("degrade", phantom_folder, "--out", out)
    marker = out / "a8.png"
    io.write_image(marker, np.zeros((2, 2), np.uint8))
    result = run_cli("degrade", phantom_folder, "--out", out, "--skip-existing")
    assert result.exit_code == 0 and "3 skipped" in result.output
    assert io.read_image(marker).data.shape == (2, 2)


def test_degrade_recursive_mirrors_the_tree(run_cli, phantom_folder, tmp_path):
    nested = phantom_folder / "day1" / "well2"
    nested.mkdir(parents=True)
    (phantom_folder / "a8.png").rename(nested / "a8.png")
    result = run_cli("degrade", phantom_folder, "--out", tmp_path / "lr", "--recursive")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lr" / "day1" / "well2" / "a8.png").is_file()


def test_one_corrupt_file_is_reported_and_the_rest_are_done(run_cli, phantom_folder, tmp_path):
    (phantom_folder / "broken.png").write_bytes((phantom_folder / "a8.png").read_bytes()[:50])
    (phantom_folder / "notes.txt").write_text("not an image")
    result = run_cli("degrade", phantom_folder, "--out", tmp_path / "lr")
    assert result.exit_code == 1
    assert "broken.png" in result.output and "3 done" in result.output and "1 failed" in result.output
    assert not (tmp_path / "lr" / "broken.png").exists()
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing", "no such file or folder"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no images found"),
    ],
)
def test_degrade_input_errors_exit_1_with_one_line(run_cli, tmp_path, make, message):
    result = run_cli("degrade", make(tmp_path), "--out", tmp_path / "lr")
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_degrade_refuses_output_equal_to_input_folder(run_cli, phantom_folder):
    before = {p.name: p.read_bytes() for p in phantom_folder.iterdir()}
    result = run_cli("degrade", phantom_folder, "--out", phantom_folder)
    assert result.exit_code == 1 and "is the input folder" in result.output
    assert {p.name: p.read_bytes() for p in phantom_folder.iterdir()} == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_degrade_unwritable_output_is_a_clear_error(run_cli, phantom_folder, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = run_cli("degrade", phantom_folder, "--out", out)
    finally:
        out.chmod(0o700)
    assert result.exit_code == 1 and "cannot write here" in result.output


def test_degrade_output_on_a_file_path_is_refused(run_cli, phantom_folder, tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_cli("degrade", phantom_folder, "--out", tmp_path / "file")
    assert result.exit_code == 1 and "not a folder" in result.output


def test_degrade_permission_denied_on_output_is_a_clear_error(run_cli, phantom_folder, tmp_path, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # what a read-only folder does for a normal user
    result = run_cli("degrade", phantom_folder, "--out", tmp_path / "lr")
    assert result.exit_code == 1 and "cannot write here" in result.output and "Permission denied" in result.output
    assert not list((tmp_path / "lr").rglob("*.png"))


def test_bench_quick_prints_every_table_and_writes_json(run_cli, tmp_path):
    import json

    result = run_cli("bench", "--quick", "--device", "cpu", "--json", tmp_path / "bench.json")
    assert result.exit_code == 0, result.output
    for title in ("Total gradient loss", "Generator forward", "Generator body", "Tiled engine", "One training step", "ficli video: each stage", "Targets"):
        assert title in result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["machine"]["torch"] and len(data["tables"]) == 7
    step = next(rows for title, rows in data["tables"].items() if title.startswith("One training step"))
    assert {r["precision"] for r in step} >= {"fp32", "data (batched)", "data (per crop)"}
    assert all(r["step_ms"] > 0 for r in step if r["precision"] == "fp32")
    assert [r["goal"] for r in data["tables"]["Targets"]] == [300, 40, 120, 2]
    tg = next(rows for title, rows in data["tables"].items() if title.startswith("Total gradient"))
    assert all(r["direct_ms"] > 0 and r["fft_ms"] > 0 for r in tg)


def test_bench_only_runs_the_tables_named(run_cli, tmp_path):
    import json

    result = run_cli("bench", "--quick", "--device", "cpu", "--only", "tiled, tg", "--json", tmp_path / "bench.json")
    assert result.exit_code == 0, result.output
    titles = list(json.loads((tmp_path / "bench.json").read_text())["tables"])
    assert [t.split()[0] for t in titles] == ["Tiled", "Total", "Targets"]
    assert "Generator forward" not in result.output
    refused = run_cli("bench", "--only", "generator,gpu")  # a usage error: exit 2, Typer's box (wrapped)
    assert refused.exit_code == 2 and "comma-separated list of tg, generator, body, tiled, train, video" in unboxed(refused.output)


def test_bench_cut_short_keeps_the_tables_it_finished(run_cli, tmp_path, monkeypatch):
    import json

    from ficli.tools import bench

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "bench_body", interrupted)
    result = run_cli("bench", "--quick", "--device", "cpu", "--only", "tg,body", "--json", tmp_path / "b.json")
    assert result.exit_code == 130
    titles = list(json.loads((tmp_path / "b.json").read_text())["tables"])
    assert len(titles) == 1 and titles[0].startswith("Total gradient loss")


def test_bench_sizes_choose_the_frames_timed(run_cli, tmp_path):
    import json

    from ficli.tools.timing import parse_sizes

    assert parse_sizes("1280x720, 64X48") == ((1280, 720), (64, 48))
    result = run_cli("bench", "--quick", "--device", "cpu", "--only", "generator,body", "--sizes", "96x64", "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    generator, body = list(json.loads((tmp_path / "b.json").read_text())["tables"].values())[:2]
    assert {(r["width"], r["height"]) for r in generator + body} == {(96, 64)}
    for bad in ("1280x722", "1280", "0x720"):
        refused = run_cli("bench", "--sizes", bad)
        assert refused.exit_code == 2 and "--sizes" in refused.output, bad


def test_file_names_with_brackets_are_printed_as_they_are(run_cli, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "[red]well[b].png").write_bytes(b"not a png")
    result = run_cli("degrade", tmp_path / "in", "--out", tmp_path / "out")
    assert result.exit_code == 1 and "[red]well[b].png" in result.output


