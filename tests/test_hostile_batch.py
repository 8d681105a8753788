"""Batches in shell pipelines (issue 14): no output lost or replaced, settings checked once before
anything loads, memory limits, progress, --quiet, input lists and --suffix.

Rows 14.x of docs/RELIABILITY.md. Images are 16×16 and the model is the tiny identity, so every
test takes well under a second; the ones that need a fresh interpreter (torch not yet imported)
start one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ficli.image import io
from ficli.inference.engine import TileConfig, run_tiled
from ficli.errors import FicliError
from hostile_files import good_gray, snapshot, write_bad

hostile = pytest.mark.hostile
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")
# What torch's CPU allocator raises when malloc fails (torch.empty(10**12) on a 23 GB machine).
CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
           "you tried to allocate 4000000000000 bytes. Error code 12 (Cannot allocate memory)")


@pytest.fixture
def model(tiny_identity_model) -> Path:
    return tiny_identity_model


def batch(run_cli, command: str, model: Path, *args):
    extra = ("--model", model, "--device", "cpu") if command == "enhance" else ()
    return run_cli(command, *args, *extra)


def clean_failure(result, *words, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.replace("│", " ").split()) if code == 2 else result.output  # Typer's box wraps
    for word in words:
        assert str(word) in text, (word, result.output)


def same_name_in_two_folders(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "A" / "x.png", tmp_path / "B" / "x.png"
    io.write_image(a, good_gray(1))
    io.write_image(b, good_gray(2))
    return a, b


# ------------------------------------------------------------------ 14.1 same name, two folders


@hostile
@pytest.mark.parametrize("given", ["files", "folders"])
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_same_file_name_in_two_input_folders_keeps_both(run_cli, tmp_path, model, command, given):
    a, b = same_name_in_two_folders(tmp_path)
    inputs = (a, b) if given == "files" else (a.parent, b.parent)
    result = batch(run_cli, command, model, *inputs, "--out", tmp_path / "out")
    assert result.exit_code == 0 and "2 done" in result.output, result.output
    assert sorted(snapshot(tmp_path / "out")) == ["A/x.png", "B/x.png"]
    for src in (a, b):  # each result is its own input's (alone, into a fresh folder)
        alone = tmp_path / f"alone-{src.parent.name}"
        assert batch(run_cli, command, model, src, "--out", alone).exit_code == 0
        # the pixels: the bytes differ in the record of how each was made (its date, its output's name)
        assert np.array_equal(io.read_image(tmp_path / "out" / src.parent.name / "x.png").data, io.read_image(alone / "x.png").data)


def test_output_names_mirror_folders_only_when_names_clash(tmp_path):
    a, b = same_name_in_two_folders(tmp_path)
    io.write_image(tmp_path / "B" / "y.png", good_gray(3))
    assert [i.rel.as_posix() for i in io.collect_inputs([a, tmp_path / "B" / "y.png"])] == ["x.png", "y.png"]
    assert [i.rel.as_posix() for i in io.collect_inputs([a, b])] == ["A/x.png", "B/x.png"]
    io.write_image(tmp_path / "day1" / "well2" / "x.png", good_gray(4))
    assert [i.rel.as_posix() for i in io.collect_inputs([tmp_path / "A", tmp_path / "day1"], recursive=True)] == [
        "x.png", "well2/x.png"]  # no clash: as before
    io.write_image(tmp_path / "day1" / "X.png", good_gray(5))  # x.png and X.png: one file on some disks
    assert [i.rel.as_posix() for i in io.collect_inputs([tmp_path / "A", tmp_path / "day1"], recursive=True)] == [
        "A/x.png", "day1/X.png", "day1/well2/x.png"]


# ------------------------------------------------------------------------- 14.4 existing outputs


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_existing_outputs_are_not_replaced_without_overwrite(run_cli, tmp_path, model, command):
    src = tmp_path / "in"
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        io.write_image(src / name, good_gray(i))
    out = tmp_path / "out"
    io.write_image(out / "b.png", np.zeros((2, 2), np.uint8))  # a result the user keeps
    io.write_image(out / "c.png", np.zeros((2, 2), np.uint8))
    before = snapshot(out)
    result = batch(run_cli, command, model, src, "--out", out)
    clean_failure(result, "2 of the 3 outputs exist already", out / "b.png", "--overwrite", "--skip-existing")
    assert snapshot(out) == before  # nothing done, not even a.png
    result = batch(run_cli, command, model, src, "--out", out, "--skip-existing")
    assert result.exit_code == 0 and "1 done, 2 skipped" in result.output, result.output
    assert io.read_image(out / "b.png").data.shape == (2, 2)
    result = batch(run_cli, command, model, src, "--out", out, "--overwrite")
    assert result.exit_code == 0 and "3 done" in result.output, result.output
    assert io.read_image(out / "b.png").data.shape == (16, 16)


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_overwrite_and_skip_existing_together_is_a_usage_error(run_cli, tmp_path, model, command):
    io.write_image(tmp_path / "in" / "a.png", good_gray())
    result = batch(run_cli, command, model, tmp_path / "in", "--out", tmp_path / "out", "--overwrite", "--skip-existing")
    clean_failure(result, "--overwrite", "--skip-existing", code=2)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------- 13 out of memory, sizes


def _oom_above(side: int):
    """Identity that fails like torch's CPU allocator on tiles wider than `side` pixels."""
    def fn(x):
        if x.shape[-1] > side:
            torch.empty(10**13)  # the real allocator error, raised at once: no memory is touched
        return x
    return fn


def test_cpu_out_of_memory_halves_the_tile():
    image = np.random.default_rng(0).random((1, 96, 96), np.float32)
    notes = []
    result = run_tiled(_oom_above(48), image, TileConfig(tile=96, overlap=4, batch=1), on_notice=notes.append)
    np.testing.assert_allclose(result, image, atol=1e-6)
    assert len(notes) == 1 and "out of memory on cpu with 96-pixel tiles; retrying with 48-pixel tiles" in notes[0]


@hostile
def test_cpu_out_of_memory_even_at_the_smallest_tile_is_a_clear_error():
    def never(x):
        raise RuntimeError(CPU_OOM)

    with pytest.raises(FicliError, match="out of memory on cpu even with 28-pixel tiles"):
        run_tiled(never, np.zeros((1, 64, 64), np.float32), TileConfig(tile=64, overlap=4, batch=1))


def test_compiled_generator_passes_cpu_out_of_memory_on(monkeypatch):
    from ficli.inference.runtime import CompiledGenerator

    def oom(x):
        raise RuntimeError(CPU_OOM)

    monkeypatch.setattr(torch, "compile", lambda module, mode=None: oom)
    compiled = CompiledGenerator(torch.nn.Identity(), on_notice=lambda m: pytest.fail(m))
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        compiled(torch.rand(1, 1, 16, 16))


@hostile
def test_enhance_out_of_memory_fails_each_file_alone_with_no_traceback(run_cli, tmp_path, model, monkeypatch):
    from ficli.inference import runtime

    real = runtime.load_generator
    monkeypatch.setattr(runtime, "load_generator", lambda path, device: (_oom_above(0), real(path, device)[1]))
    for name in ("a.png", "b.png"):
        io.write_image(tmp_path / "in" / name, good_gray())
    result = batch(run_cli, "enhance", model, tmp_path / "in", "--out", tmp_path / "out")
    clean_failure(result, "a.png: out of memory on cpu", "b.png: out of memory on cpu", "nothing was written")
    assert "the others were written" not in result.output
    assert not (tmp_path / "out").exists() or snapshot(tmp_path / "out") == {}


@hostile
def test_output_larger_than_the_pixel_limit_is_refused_before_allocating(run_cli, tmp_path, model):
    io.write_image(tmp_path / "in" / "a.png", good_gray())
    result = batch(run_cli, "enhance", model, tmp_path / "in", "--out", tmp_path / "out", "--upscale", "100000")
    clean_failure(result, tmp_path / "in" / "a.png", "1600000×1600000", "400,000,000", "--upscale")
    assert "1 failed" in result.output and "nothing was written" in result.output


@hostile
def test_degrade_scale_beyond_its_range_is_a_usage_error_before_any_work(run_cli, tmp_path):
    """A --scale of 1000000 would pad a 16×16 image to 10¹² pixels: its range (1 to 8) refuses it first."""
    io.write_image(tmp_path / "in" / "a.png", good_gray())
    result = run_cli("degrade", tmp_path / "in", "--out", tmp_path / "out", "--scale", "1000000")
    assert result.exit_code == 2 and "scale" in result.output and "8" in result.output, result.output
    assert not (tmp_path / "out").exists()


@hostile
def test_video_upscale_beyond_the_pixel_limit_is_refused_before_the_model_loads(run_cli, tmp_path, model, monkeypatch):
    from ficli.video import ffmpeg

    src = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg.ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=25",
                    "-t", "0.2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)], check=True)
    from ficli.inference import runtime
    monkeypatch.setattr(runtime, "load_generator", lambda *a: pytest.fail("the model was loaded"))
    result = run_cli("video", src, "--model", model, "--device", "cpu", "--upscale", "1000")
    clean_failure(result, src, "32000×24000", "400,000,000", "--upscale")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


# ---------------------------------------------------------- 14 settings checked once, up front


def _fresh(*args: str, stdin: str = "") -> tuple[int, str, bool]:
    """Run ficli in a new interpreter: (exit code, output, whether torch was imported)."""
    code = (
        "import sys; from typer.testing import CliRunner; from ficli.cli import app\n"
        f"r = CliRunner().invoke(app, {list(args)!r})\n"
        "print(r.output); print('EXIT', r.exit_code, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    *text, last = done.stdout.strip().splitlines()
    _, exit_code, imported = last.split()
    return int(exit_code), "\n".join(text) + done.stderr, imported == "True"


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance", "video"])
def test_missing_path_is_reported_before_torch_is_imported(tmp_path, command):
    missing = str(tmp_path / "missing.png")
    args = [command, missing] + ([] if command == "video" else ["--out", str(tmp_path / "out")])
    code, output, imported = _fresh(*args)
    assert code == 1 and "missing.png" in output and "no such file" in output, output
    assert not imported


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_existing_outputs_are_refused_before_torch_is_imported(tmp_path, command):
    io.write_image(tmp_path / "in" / "a.png", good_gray())
    io.write_image(tmp_path / "out" / "a.png", good_gray(1))
    code, output, imported = _fresh(command, str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert code == 1 and "exist" in output and "--overwrite" in output, output
    assert not imported


@hostile
@pytest.mark.parametrize("setting", [("--precision", "fp16"), ("--device", "cuda:7"), ("--device", "gpu"),
                                     ("--tile", "30"), ("--precision", "fp64")])
def test_enhance_setting_the_device_cannot_do_fails_once_with_exit_2(run_cli, tmp_path, model, setting):
    for name in ("a.png", "b.png", "c.png"):
        io.write_image(tmp_path / "in" / name, good_gray())
    result = run_cli("enhance", tmp_path / "in", "--out", tmp_path / "out", "--model", model, "--device", "cpu", *setting)
    clean_failure(result, setting[1], code=2)
    assert "failed:" not in result.output and "were written" not in result.output
    assert not (tmp_path / "out").exists()


@hostile
@pytest.mark.parametrize("setting", [("--precision", "fp16"), ("--device", "cuda:7"), ("--tile", "30"),
                                     ("--channels", "cmyk"), ("--preset", "fastest")])
def test_video_setting_it_cannot_do_is_a_usage_error(run_cli, tmp_path, model, setting):
    from ficli.video import ffmpeg

    src = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg.ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=25",
                    "-t", "0.2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)], check=True)
    result = run_cli("video", src, "--model", model, "--device", "cpu", *setting)
    clean_failure(result, setting[1], code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@hostile
@pytest.mark.parametrize("setting", [("--only", "nothing"), ("--sizes", "640by360"), ("--device", "cuda:7")])
def test_bench_bad_option_value_is_a_usage_error(run_cli, setting):
    clean_failure(run_cli("bench", "--quick", *setting), code=2)


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_when_every_file_failed_nothing_is_said_to_be_written(run_cli, tmp_path, model, command):
    bad = write_bad(tmp_path / "in", "corrupt.png")
    result = batch(run_cli, command, model, tmp_path / "in", "--out", tmp_path / "out")
    clean_failure(result, bad, "1 file(s) failed; nothing was written")
    assert "the others were written" not in result.output


# --------------------------------------------------------------------------- 15 tile progress


def test_enhance_reports_progress_by_tile_within_a_file(tmp_path):
    from ficli.inference.enhance import EnhanceOptions, enhance_file

    io.write_image(tmp_path / "big.png", np.tile(good_gray(), (6, 6)))  # 96×96: 9 tiles of 40
    seen = []
    options = EnhanceOptions(tile=TileConfig(tile=40, overlap=4, batch=1))
    enhance_file(tmp_path / "big.png", tmp_path / "out.png", torch.nn.Identity(), options, on_progress=seen.append)
    assert len(seen) >= 9 and seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and 0 < seen[0] < 0.2


# ------------------------------------------------------------------- pipelines: quiet, lists


@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_quiet_prints_nothing_on_success_and_still_reports_failures(run_cli, tmp_path, model, command):
    io.write_image(tmp_path / "in" / "a.png", good_gray())
    result = batch(run_cli, command, model, tmp_path / "in", "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 0 and result.output == "", result.output
    bad = write_bad(tmp_path / "in", "corrupt.png")
    result = batch(run_cli, command, model, tmp_path / "in", "--out", tmp_path / "out2", "-q")
    clean_failure(result, bad, "1 file(s) failed")


def test_video_quiet_prints_nothing_on_success(run_cli, tmp_path, model):
    from ficli.video import ffmpeg

    src = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg.ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=25",
                    "-t", "0.2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)], check=True)
    result = run_cli("video", src, "--model", model, "--device", "cpu", "--preset", "ultrafast", "--quiet")
    assert result.exit_code == 0 and result.output == "", result.output
    assert (tmp_path / "clip_ficli.mp4").is_file()


@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_inputs_from_stdin_and_from_a_list_file(tmp_path, model, command, monkeypatch):
    from ficli.cli import app

    a, b = same_name_in_two_folders(tmp_path)
    io.write_image(tmp_path / "C" / "y.png", good_gray(3))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.txt").write_text("# plate 1\n\nA/x.png\n  C/y.png  \n")
    extra = ["--model", str(model), "--device", "cpu"] if command == "enhance" else []
    runner = CliRunner()
    result = runner.invoke(app, [command, "-", "--out", "o1", *extra], input=f"{a}\n{b}\n")
    assert result.exit_code == 0 and "2 done" in result.output, result.output
    assert sorted(snapshot(tmp_path / "o1")) == ["A/x.png", "B/x.png"]
    result = runner.invoke(app, [command, "@list.txt", "--out", "o2", *extra])
    assert result.exit_code == 0 and "2 done" in result.output, result.output
    assert sorted(snapshot(tmp_path / "o2")) == ["x.png", "y.png"]


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_list_file_naming_missing_files_is_refused_naming_them(run_cli, tmp_path, model, command):
    io.write_image(tmp_path / "a.png", good_gray())
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'a.png'}\n{tmp_path / 'gone.png'}\n# {tmp_path / 'ignored.png'}\n{tmp_path / 'lost.tif'}\n")
    result = batch(run_cli, command, model, f"@{listing}", "--out", tmp_path / "out")
    clean_failure(result, "list.txt", "2 listed path(s) do not exist", "gone.png (line 2)", "lost.tif (line 4)")
    assert "ignored.png" not in result.output and not (tmp_path / "out").exists()
    clean_failure(batch(run_cli, command, model, f"@{tmp_path / 'nolist.txt'}", "--out", tmp_path / "out"),
                  "nolist.txt", "no such file")


# --------------------------------------------------------------------------------------- suffix


@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_suffix_goes_before_the_extension(run_cli, tmp_path, model, command):
    io.write_image(tmp_path / "in" / "x.png", good_gray())
    io.write_image(tmp_path / "in" / "cells.ome.tif", good_gray().astype(np.uint16))
    result = batch(run_cli, command, model, tmp_path / "in", "--out", tmp_path / "out", "--suffix", "_sr")
    assert result.exit_code == 0, result.output
    assert sorted(snapshot(tmp_path / "out")) == ["cells_sr.ome.tif", "x_sr.png"]


@hostile
@pytest.mark.parametrize("suffix", ["/x", "a/../b", "\\x"])
def test_suffix_that_is_a_path_is_a_usage_error(run_cli, tmp_path, model, suffix):
    io.write_image(tmp_path / "in" / "x.png", good_gray())
    result = batch(run_cli, "enhance", model, tmp_path / "in", "--out", tmp_path / "out", "--suffix", suffix)
    clean_failure(result, "--suffix", "separator", code=2)
    assert not (tmp_path / "out").exists()


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance"])
def test_an_output_that_is_another_input_is_refused_before_any_work(run_cli, tmp_path, model, command):
    """`in` (with sub/y.png, -r) and out/sub/y.png given as a file: in's sub/y.png would land on it."""
    io.write_image(tmp_path / "in" / "sub" / "y.png", good_gray(1))
    io.write_image(tmp_path / "out" / "sub" / "y.png", good_gray(2))
    before = snapshot(tmp_path)
    result = batch(run_cli, command, model, tmp_path / "in", tmp_path / "out" / "sub" / "y.png", "-r",
                   "--out", tmp_path / "out", "--overwrite")
    clean_failure(result, tmp_path / "out" / "sub" / "y.png", "is one of the inputs")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------- 10 what the default size does


@pytest.mark.parametrize("command", ["enhance", "video"])
def test_help_says_what_the_default_size_does_and_when_to_use_it(run_cli, command):
    text = " ".join(run_cli(command, "--help").output.split())
    for words in ("native-resolution", "nearly unchanged", "--scale auto", "--upscale"):
        assert words in text, (words, text)


@hostile
def test_degrade_out_of_memory_fails_the_file_alone(run_cli, tmp_path, monkeypatch):
    import ficli.image.degrade as degrade_module

    real = degrade_module.degrade_file

    def short_of_memory(path, *args):
        if Path(path).name == "a.png":
            raise MemoryError("Unable to allocate 37.3 GiB for an array with shape (100000, 100000) and data type float32")
        return real(path, *args)

    monkeypatch.setattr(degrade_module, "degrade_file", short_of_memory)
    for name in ("a.png", "b.png"):
        io.write_image(tmp_path / "in" / name, good_gray())
    result = run_cli("degrade", tmp_path / "in", "--out", tmp_path / "out")
    clean_failure(result, "a.png: out of memory (Unable to allocate 37.3 GiB", "1 done", "the other 1 were written")
    assert sorted(snapshot(tmp_path / "out")) == ["b.png"]
