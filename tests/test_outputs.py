"""Outputs in pipelines (issue 14.2, 14.11, 14.12): `profile` never replaces an input or an existing
file without --overwrite; "-" streams to stdout; FIFOs and symlinks are written through, not
replaced; strict JSON; file names that are not UTF-8."""

from __future__ import annotations

import csv
import io as pyio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from ficli.image import io
from ficli.image.phantom import phantom, to_dtype

pytestmark = pytest.mark.hostile
ROOT = Path(__file__).resolve().parents[1]
LATIN1 = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name: not UTF-8, held by Python as a surrogate escape


def _strict(text: str):
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"not strict JSON: {name}"))


@pytest.fixture
def pair(tmp_path):
    """HR and SR folders: a.png differs, b.png is identical (PSNR infinite)."""
    for folder in ("hr", "sr"):
        (tmp_path / folder).mkdir()
    a = to_dtype(phantom(32, 32, seed=1), np.uint8)
    io.write_image(tmp_path / "hr" / "a.png", a)
    io.write_image(tmp_path / "sr" / "a.png", a // 2)
    io.write_image(tmp_path / "hr" / "b.png", a)
    io.write_image(tmp_path / "sr" / "b.png", a)
    return tmp_path / "hr", tmp_path / "sr"


@pytest.fixture
def two_images(tmp_path):
    a = np.tile(np.arange(40, dtype=np.uint16) * 100, (30, 1))
    io.write_image(tmp_path / "hr.png", a)
    io.write_image(tmp_path / "sr.png", a // 2)
    return tmp_path / "hr.png", tmp_path / "sr.png"


# --- 14.2: profile never replaces an input, nor an existing file without --overwrite ---------------


@pytest.mark.parametrize("option", ["--out", "--csv"])
@pytest.mark.parametrize("via_link", [False, True], ids=["file", "symlink"])
def test_profile_refuses_to_replace_an_input_image(run_cli, two_images, tmp_path, option, via_link):
    hr, sr = two_images
    before = hr.read_bytes()
    target = hr
    if via_link:
        target = tmp_path / "link.png"
        target.symlink_to(hr)
    other = {"--out": tmp_path / "p.png", "--csv": tmp_path / "p.csv"}
    other[option] = target
    result = run_cli("profile", hr, sr, "--line", "0,5,39,5", "--out", other["--out"], "--csv", other["--csv"], "--overwrite")
    assert result.exit_code == 1, result.output
    assert f"{option} {target}: is one of the input images" in result.output
    assert hr.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("p.") or p.name.startswith(".")]  # no work done


@pytest.mark.parametrize("option", ["--out", "--csv"])
def test_profile_refuses_to_replace_an_existing_file_without_overwrite(run_cli, two_images, tmp_path, option):
    hr, sr = two_images
    outputs = {"--out": tmp_path / "p.png", "--csv": tmp_path / "p.csv"}
    outputs[option].write_bytes(b"earlier results")
    args = ("profile", hr, sr, "--line", "0,5,39,5", "--out", outputs["--out"], "--csv", outputs["--csv"])
    result = run_cli(*args)
    assert result.exit_code == 1 and f"{option} {outputs[option]}: exists; add --overwrite" in result.output
    assert outputs[option].read_bytes() == b"earlier results"
    other = outputs["--csv" if option == "--out" else "--out"]
    assert not other.exists()  # refused before any work
    result = run_cli(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert outputs[option].read_bytes() != b"earlier results"


def test_profile_streams_the_csv_or_the_plot_to_stdout(run_cli, two_images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hr, sr = two_images
    result = run_cli("profile", hr, sr, "--line", "0,5,39,5", "--out", "-", "--csv", "-")
    assert result.exit_code == 2  # only one output can go to stdout
    result = run_cli("profile", hr, sr, "--line", "0,5,39,5", "--out", hr.parent / "p.png", "--csv", "-")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(pyio.StringIO(result.stdout)))
    assert rows[0] == ["distance_px", "hr.png", "sr.png"] and len(rows) == 41
    assert "wrote" in result.stderr and not Path("-").exists()
    result = run_cli("profile", hr, sr, "--line", "0,5,39,5", "--out", "-")
    assert result.exit_code == 0 and result.stdout_bytes.startswith(b"\x89PNG\r\n\x1a\n")


# --- 14.11: "-", FIFOs and symlinks ---------------------------------------------------------------


def test_evaluate_streams_csv_to_stdout_and_the_table_to_stderr(run_cli, pair, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("evaluate", *pair, "--csv", "-")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(pyio.StringIO(result.stdout)))
    assert [r["hr"] for r in rows] == ["a.png", "b.png"] and float(rows[0]["psnr_db"]) > 0
    assert "PSNR dB" in result.stderr and not (tmp_path / "-").exists()


def test_evaluate_json_to_stdout_is_strict_and_has_every_image(run_cli, pair, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("evaluate", *pair, "--json", "-")
    assert result.exit_code == 0, result.output
    data = _strict(result.stdout)
    assert not (tmp_path / "-").exists()
    images = {row["hr"]: row for row in data["images"]}
    assert set(images) == {"a.png", "b.png"} and images["a.png"]["psnr_db"] > 0
    assert images["b.png"]["psnr_db"] is None and images["b.png"]["rmse"] == 0  # identical: PSNR infinite
    assert data["methods"][0]["psnr_db"] == {"mean": None, "std": None}  # was "inf", and NaN


def test_evaluate_refuses_csv_and_json_both_to_stdout(run_cli, pair, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("evaluate", *pair, "--csv", "-", "--json", "-")
    assert result.exit_code == 2 and "standard output" in result.output


def test_evaluate_writes_through_a_fifo(run_cli, pair, tmp_path):
    fifo = tmp_path / "scores.csv"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    result = run_cli("evaluate", *pair, "--csv", fifo)
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert got and got[0].startswith("hr,method,sr,psnr_db") and len(got[0].splitlines()) == 3
    assert fifo.is_fifo()  # still the FIFO, not replaced by a regular file
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_evaluate_writes_through_a_symlink_and_keeps_it(run_cli, pair, tmp_path, dangling):
    (tmp_path / "results").mkdir()
    target = tmp_path / "results" / "scores.json"
    if not dangling:
        target.write_text("{}")
    link = tmp_path / "scores.json"
    link.symlink_to(target)
    result = run_cli("evaluate", *pair, "--json", link, *(() if dangling else ("--overwrite",)))  # its target exists
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and Path(os.readlink(link)) == target
    assert len(_strict(target.read_text())["images"]) == 2


def test_devices_and_fifos_are_written_into_not_replaced(tmp_path):
    # Only the predicate on a real device: the code before the fix, run as root, replaced
    # /dev/null itself with a regular file, so no test writes to it.
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to("/dev/null")
    assert io.writes_through("-") and io.writes_through("/dev/null") and io.writes_through(tmp_path / "link")
    assert io.writes_through(tmp_path / "fifo")
    assert not io.writes_through(tmp_path / "file") and not io.writes_through(tmp_path / "new.csv")
    assert not io.writes_through(tmp_path)  # a folder is refused elsewhere


def test_atomic_write_through_a_link_replaces_the_target_not_the_link(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    (tmp_path / "l.txt").symlink_to("t.txt")  # relative link
    io.write_text(tmp_path / "l.txt", "new")
    assert (tmp_path / "l.txt").is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.txt", "t.txt"]


# --- 14.12: file names that are not UTF-8 -----------------------------------------------------------


def _latin1_pair(tmp_path):
    a = to_dtype(phantom(32, 32, seed=1), np.uint8)
    for folder in ("hr", "sr"):
        (tmp_path / folder).mkdir()
        io.write_image(tmp_path / folder / LATIN1, a if folder == "hr" else a // 2)
    return tmp_path / "hr", tmp_path / "sr"


def _ficli(*args, cwd):
    """A real process with a strict UTF-8 stdout, as under a UTF-8 locale (the crash needs it)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ficli", *map(str, args)], cwd=cwd, env=env, capture_output=True, timeout=300)


def test_evaluate_names_files_that_are_not_utf8(tmp_path):
    hr, sr = _latin1_pair(tmp_path)
    done = _ficli("evaluate", hr, sr, "--csv", "s.csv", "--json", "s.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"caf\xe9.png" in done.stdout  # the table, as ls prints the name
    line = (tmp_path / "s.csv").read_bytes().splitlines()[1]
    assert line.startswith(b"caf\xe9.png,sr,") and os.fsencode(sr / LATIN1) in line  # the file's own bytes
    data = _strict((tmp_path / "s.json").read_text(encoding="utf-8"))  # valid UTF-8
    assert data["images"][0]["hr"] == "caf\\xe9.png"


def test_profile_of_files_whose_names_are_not_utf8(tmp_path):
    hr, sr = _latin1_pair(tmp_path)
    done = _ficli("profile", hr / LATIN1, sr / LATIN1, "--line", "1,1,20,20", "--out", "p.png", "--csv", "p.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert (tmp_path / "p.csv").read_bytes().splitlines()[0] == b"distance_px,hr/caf\xe9.png,sr/caf\xe9.png"  # one header each
    assert io.read_image(tmp_path / "p.png").data.shape[0] > 100
