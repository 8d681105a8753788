"""`ficli profile` under bad input and faults: the profile column of docs/RELIABILITY.md.

Each test checks the message (names the file or option, no traceback), the exit code, what was
written (nothing, or complete files only, no temporary) and that the inputs are untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ficli.image import io
from hostile_files import BAD_FILES, deny_open, deny_writing, fill_disk_after, good_gray, leftovers, snapshot, write_bad

pytestmark = pytest.mark.hostile
LINE = ("--line", "0,3,15,3")


@pytest.fixture
def src(tmp_path) -> Path:
    io.write_image(tmp_path / "in" / "good.png", good_gray())
    return tmp_path / "in"


def profile(run_cli, *images, out: Path, extra=()):
    return run_cli("profile", *images, *LINE, "--out", out / "p.png", "--csv", out / "p.csv", *extra)


def clean_failure(result, *words, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert str(word) in result.output, (word, result.output)


def test_profile_missing_file(run_cli, src, tmp_path):
    missing = src / "missing.png"
    result = profile(run_cli, src / "good.png", missing, out=tmp_path / "out")
    clean_failure(result, missing, "no such file")
    assert not (tmp_path / "out").exists() or snapshot(tmp_path / "out") == {}


def test_profile_of_a_folder_is_refused(run_cli, src, tmp_path):
    result = profile(run_cli, src, out=tmp_path / "out")
    clean_failure(result, src, "is a folder, not an image file")
    assert snapshot(tmp_path / "out") == {} if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_profile_bad_file(run_cli, src, tmp_path, name):
    bad = write_bad(src, name)
    before = snapshot(src)
    result = profile(run_cli, src / "good.png", bad, out=tmp_path / "out")
    clean_failure(result, bad, BAD_FILES[name][1])
    assert snapshot(src) == before and not (tmp_path / "out").exists()


def test_profile_unreadable_file(run_cli, src, tmp_path, monkeypatch):
    """chmod 000 as a normal user sees it (simulated: the tests run as root here)."""
    locked = src / "locked.png"
    io.write_image(locked, good_gray(3))
    deny_open(monkeypatch, locked)
    result = profile(run_cli, src / "good.png", locked, out=tmp_path / "out")
    clean_failure(result, locked, "permission denied")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line", ["0,0,16,3", "-1,2,5,2", "3,3,3,3", "1,2,x,4"])
def test_profile_line_outside_the_image_or_malformed(run_cli, src, tmp_path, line):
    result = run_cli("profile", src / "good.png", "--line", line, "--out", tmp_path / "p.png")
    clean_failure(result, "--line")
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (1, 9), (9, 1)])
def test_profile_of_tiny_images(run_cli, tmp_path, shape):
    import numpy as np

    data = (np.arange(shape[0] * shape[1], dtype=np.uint16).reshape(shape) * 7)
    io.write_image(tmp_path / "t.png", data)
    h, w = shape
    end = (w - 1, h - 1) if (w, h) != (1, 1) else None
    if end is None:  # one pixel: no line of any length fits
        result = run_cli("profile", tmp_path / "t.png", "--line", "0,0,0,0", "--out", tmp_path / "p.png")
        clean_failure(result, "--line", "same")
        return
    result = run_cli("profile", tmp_path / "t.png", "--line", f"0,0,{end[0]},{end[1]}", "--out", tmp_path / "p.png",
                     "--csv", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[1].split(",")[1] == "0" and float(rows[-1].split(",")[1]) == data[-1, -1]


def test_profile_images_of_different_sizes(run_cli, src, tmp_path):
    io.write_image(src / "big.png", good_gray().repeat(2, axis=0))
    result = profile(run_cli, src / "good.png", src / "big.png", out=tmp_path / "out")
    clean_failure(result, "differ in size")


def test_profile_read_only_output_is_refused_before_any_work(run_cli, src, tmp_path, monkeypatch):
    before = snapshot(src)
    deny_writing(monkeypatch)
    result = profile(run_cli, src / "good.png", out=tmp_path / "out")
    clean_failure(result, "cannot write here", "Permission denied")
    assert not (tmp_path / "out").exists() and snapshot(src) == before


def test_profile_output_is_a_folder(run_cli, src, tmp_path):
    (tmp_path / "out" / "p.png").mkdir(parents=True)
    result = profile(run_cli, src / "good.png", out=tmp_path / "out")
    clean_failure(result, "--out", "is a folder")


def test_profile_disk_full(run_cli, src, tmp_path, monkeypatch):
    fill_disk_after(monkeypatch, 0)
    result = profile(run_cli, src / "good.png", out=tmp_path / "out")
    clean_failure(result, "p.png", "the disk is full")
    assert snapshot(tmp_path / "out") == {} and leftovers(tmp_path) == []


def test_profile_ctrl_c_writes_nothing(run_cli, src, tmp_path, monkeypatch):
    from ficli.tools import profile as profile_module

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(profile_module, "line_profile", interrupt)
    result = profile(run_cli, src / "good.png", out=tmp_path / "out")
    assert result.exit_code == 130 and "interrupted: nothing was written; run it again" in result.output
    assert not (tmp_path / "out").exists() or snapshot(tmp_path / "out") == {}


def test_profile_rerun_removes_a_stale_temporary_of_its_outputs(run_cli, src, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".p.png.abcd1234.part"
    other = out / ".q.png.abcd1234.part"
    stale.write_bytes(b"half a plot")
    other.write_bytes(b"another run's")
    result = profile(run_cli, src / "good.png", out=out)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and other.exists()
    assert sorted(os.listdir(out)) == [".q.png.abcd1234.part", "p.csv", "p.png"]
