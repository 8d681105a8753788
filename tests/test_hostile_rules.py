"""The three output rules of issue 25, tested across the commands rather than case by case
(docs/RELIABILITY.md, "The rules behind every cell"):

1. one function (`guard.check_output_file`) decides whether a path may be written: never an input,
   never the model in use, never an existing file without --overwrite, through symlinks and hard
   links;
2. a run takes an advisory lock on its output: a second run is refused naming the holder's PID, a
   dead run's lock is taken over, and temporaries are removed only when their writer is gone;
3. SIGTERM and SIGHUP do what Ctrl-C does.

Plus the data-loss items of the issue: video's Ctrl-C file (1), export over its model (2),
bench/evaluate replacing files (3), a linked input given twice (10), profile's formats (11) and
--skip-existing trusting a damaged output (18).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ficli.image import guard, io
from ficli.image.phantom import phantom, to_dtype

pytestmark = pytest.mark.hostile
ROOT = Path(__file__).resolve().parents[1]
LINE = ("--line", "2,16,29,16")


def _image(path: Path, seed: int = 1) -> Path:
    io.write_image(path, to_dtype(phantom(32, 32, seed=seed), np.uint8))
    return path


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        _image(folder / f"s{i}.png", seed=i)
    return folder


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- rule 1: one function decides whether a path may be written ----------------------------------------


def _link(kind: str, target: Path, link: Path) -> Path:
    if kind == "symlink":
        link.symlink_to(target)
    elif kind == "hardlink":
        os.link(target, link)
    else:
        return target
    return link


@pytest.mark.parametrize("command", ["degrade", "enhance", "profile", "evaluate"])
@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_an_output_linked_to_an_input_is_refused_by_every_command_even_with_overwrite(run_cli, images, tmp_path,
                                                                                      tiny_identity_model, command, kind):
    out = tmp_path / "out"
    out.mkdir()
    target = out / ("s0.png" if command in ("degrade", "enhance") else "result.png")
    _link(kind, images / "s0.png", target)
    args = {"degrade": ("degrade", images, "--out", out, "--scale", "2"),
            "enhance": ("enhance", images, "--out", out, "--model", tiny_identity_model),
            "profile": ("profile", images / "s0.png", *LINE, "--out", target),
            "evaluate": ("evaluate", images, images, "--csv", target)}[command]
    before = _snapshot(images)
    result = run_cli(*args, "--overwrite")
    assert result.exit_code == 1, result.output
    assert ("is one of the input" in result.output or "is the input file itself" in result.output), result.output
    assert "Traceback" not in result.output
    assert _snapshot(images) == before and os.path.samefile(target, images / "s0.png")


@pytest.mark.parametrize("kind", ["itself", "symlink", "hardlink"])
def test_export_never_writes_over_the_model_it_exports(run_cli, tiny_identity_model, tmp_path, kind):
    model = tmp_path / "m.safetensors"
    model.write_bytes(tiny_identity_model.read_bytes())
    out = _link(kind, model, tmp_path / "out.safetensors")
    before = model.read_bytes()
    result = run_cli("export", "--format", "torchscript", "--model", model, "--out", out, "--overwrite")
    assert result.exit_code == 1, result.output
    assert "is the model being exported" in result.output and "Traceback" not in result.output
    assert model.read_bytes() == before


@pytest.mark.parametrize("command", ["bench", "evaluate-csv", "evaluate-json"])
def test_score_and_timing_files_are_not_replaced_without_overwrite(run_cli, images, tmp_path, command):
    victim = images / "s0.png"  # the case: a PNG given as --json by mistake
    before = _snapshot(images)
    if command == "bench":
        args = ("bench", "--only", "tg", "--quick", "--json", victim)
    else:
        option = "--csv" if command == "evaluate-csv" else "--json"
        victim = tmp_path / "old-scores.txt"
        victim.write_text("last week's scores\n")
        args = ("evaluate", images, images, option, victim)
    result = run_cli(*args)
    assert result.exit_code == 1, result.output
    assert "exists; add --overwrite" in result.output
    assert _snapshot(images) == before
    if command != "bench":
        assert victim.read_text() == "last week's scores\n"
        assert run_cli(*args, "--overwrite").exit_code == 0 and "psnr" in victim.read_text()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_evaluate_scores_never_go_onto_an_input_through_a_link(run_cli, images, tmp_path, kind):
    scores = _link(kind, images / "s1.png", tmp_path / "scores.csv")
    before = _snapshot(images)
    result = run_cli("evaluate", images, images, "--csv", scores, "--overwrite")
    assert result.exit_code == 1 and "is one of the input images" in result.output
    assert _snapshot(images) == before


def test_the_one_rule_refuses_inputs_models_and_existing_files_through_links(tmp_path):
    data = _image(tmp_path / "a.png")
    hard = tmp_path / "hard.png"
    os.link(data, hard)
    soft = tmp_path / "soft.png"
    soft.symlink_to(data)
    for path in (data, hard, soft):
        with pytest.raises(io.OutputError, match="is one of the input images"):
            guard.check_output_file(path, "--out", overwrite=True, inputs=[data])
        with pytest.raises(io.OutputError, match="is the model in use"):
            guard.check_output_file(path, "--out", overwrite=True, keep={"the model in use": [data]})
        with pytest.raises(io.OutputError, match="exists; add --overwrite"):
            guard.check_output_file(path, "--out", overwrite=False)
    guard.check_output_file(tmp_path / "new.png", "--out", overwrite=False, inputs=[data])  # a new file passes


def test_train_never_writes_over_the_model_it_starts_from(run_cli, images, tmp_path, tiny_identity_model):
    run = tmp_path / "run"
    run.mkdir()
    model = run / "best.safetensors"
    model.write_bytes(tiny_identity_model.read_bytes())
    result = run_cli("train", "--data", images, "--val", images, "--out", run, "--init", model, "--overwrite",
                     "--epochs", "1", "--steps", "1", "--batch", "2", "--crop", "16", "--no-gan", "--device", "cpu")
    assert result.exit_code == 1, result.output
    assert "is the model this run starts from" in result.output
    assert model.read_bytes() == tiny_identity_model.read_bytes()


# --- item 1: video's Ctrl-C file ------------------------------------------------------------------------


def test_video_ctrl_c_never_writes_its_partial_file_over_the_input_or_an_existing_file(tiny_identity_model, tmp_path):
    from test_video import scene_frames, write_clip

    from ficli.model import modelfile
    from ficli.video import pipeline as video

    src = write_clip(tmp_path / "rec.partial.mp4", scene_frames(64, 48, 20))  # the input name
    kept = tmp_path / "rec.partial-2.mp4"
    kept.write_bytes(b"an earlier result")
    before = src.read_bytes()
    generator, _, _ = modelfile.load_model(tiny_identity_model)

    def ctrl_c(done, total):
        raise KeyboardInterrupt

    with pytest.raises(video.VideoInterrupted) as stop:
        video.enhance_video(src, generator, video.VideoOptions(out=tmp_path / "rec.mp4", preset="ultrafast", batch=4),
                            on_progress=ctrl_c)
    assert src.read_bytes() == before and kept.read_bytes() == b"an earlier result"
    assert stop.value.partial == tmp_path / "rec.partial-3.mp4" and stop.value.partial.stat().st_size > 0
    assert str(stop.value.partial) in str(stop.value)


# --- rule 2: one run per output ----------------------------------------------------------------------------

HOLD = """
import sys, time
from ficli.image import guard
guard.lock_output(sys.argv[1], folder=sys.argv[2] == "folder")
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder():
    """Start another process that holds the lock of an output: holder(path, folder) -> its PID."""
    procs = []

    def hold(path: Path, folder: bool) -> int:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "folder" if folder else "file"],
                                stdout=subprocess.PIPE, text=True, env=env)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc.pid

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def _second_run(command: str, images: Path, tmp_path: Path, model: Path):
    """(args, output, whether the output is a folder) of a command writing into tmp_path/out*."""
    if command in ("degrade", "enhance"):
        extra = ("--model", model) if command == "enhance" else ()
        return (command, images, "--out", tmp_path / "out", *extra), tmp_path / "out", True
    if command == "video":
        return ("video", images / "clip.mp4", "--out", tmp_path / "out.mp4", "--model", model), tmp_path / "out.mp4", False
    if command == "evaluate":
        return ("evaluate", images, images, "--csv", tmp_path / "out.csv"), tmp_path / "out.csv", False
    if command == "profile":
        return ("profile", images / "s0.png", *LINE, "--out", tmp_path / "out.png"), tmp_path / "out.png", False
    if command == "bench":
        return ("bench", "--only", "tg", "--quick", "--json", tmp_path / "out.json"), tmp_path / "out.json", False
    if command == "export":
        return ("export", "--format", "torchscript", "--model", model, "--out", tmp_path / "out.pt"), tmp_path / "out.pt", False
    return ("train", "--data", images, "--val", images, "--out", tmp_path / "out", "--epochs", "1", "--steps", "1",
            "--batch", "2", "--crop", "16", "--features", "8", "--no-gan", "--device", "cpu"), tmp_path / "out", True


@pytest.mark.parametrize("command", ["degrade", "enhance", "video", "evaluate", "profile", "bench", "export", "train"])
def test_a_second_run_into_the_same_output_is_refused_naming_the_first(run_cli, images, tmp_path, holder,
                                                                        tiny_identity_model, command):
    (images / "clip.mp4").write_bytes(b"")  # refused later than the lock; never read here
    args, out, folder = _second_run(command, images, tmp_path, tiny_identity_model)
    pid = holder(out, folder)
    before = _snapshot(tmp_path)
    result = run_cli(*args)
    assert result.exit_code == 1, result.output
    assert f"another ficli run (PID {pid}) is writing there" in result.output and "Traceback" not in result.output
    assert _snapshot(tmp_path) == before


def test_a_dead_runs_lock_is_taken_over_and_the_lock_file_goes_at_the_end(run_cli, images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / guard.LOCK_NAME).write_text("999999999\n")  # a killed run's lock file: nobody holds it
    result = run_cli("degrade", images, "--out", out, "--scale", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["s0.png", "s1.png", "s2.png"]


def test_a_refused_run_leaves_no_output_folder_or_lock_behind(run_cli, images, tmp_path):
    (images / "bad.png").write_bytes(b"")
    result = run_cli("enhance", images, "--out", tmp_path / "new" / "out", "--model", tmp_path / "missing.safetensors")
    assert result.exit_code == 1
    assert not (tmp_path / "new").exists()


def test_temporaries_of_a_live_writer_are_left_and_those_of_a_dead_one_removed(tmp_path, holder):
    target = tmp_path / "a.png"
    live_pid = holder(tmp_path / "elsewhere.png", False)  # any running process
    live = tmp_path / f".a.png.abcd1234.{live_pid}.part"
    dead = tmp_path / ".a.png.abcd1234.999999999.part"
    old = tmp_path / ".a.png.abcd1234.part"  # a name from before PIDs were recorded
    for path in (live, dead, old):
        path.write_bytes(b"x")
    assert io.remove_stale_parts([target]) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".a.png")) == [live.name]


def test_atomic_write_names_its_temporary_with_its_pid(tmp_path):
    with io.atomic_write(tmp_path / "a.txt") as tmp:
        assert tmp.name.startswith(".a.txt.") and tmp.name.endswith(f".{os.getpid()}.part")
        tmp.write_text("x")


# --- rule 3: SIGTERM and SIGHUP as Ctrl-C -------------------------------------------------------------------


def _signals_as_in_a_terminal():
    """In the child: SIGHUP and SIGINT as a command started from a terminal gets them. A suite run
    under nohup, or as a background job of a script, hands its children both ignored, and ficli
    rightly leaves an ignored signal ignored."""
    for sig in (signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # after exec, Python makes a default SIGINT its KeyboardInterrupt


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals and FIFOs")
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_sigterm_and_sighup_end_a_run_as_ctrl_c_does(images, tmp_path, sig, code):
    """profile writing into a FIFO nobody reads waits at its very end: signal it there."""
    fifo = tmp_path / "plot.png"
    os.mkfifo(fifo)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(temp)}
    proc = subprocess.Popen([sys.executable, "-m", "ficli", "profile", str(images / "s0.png"), *LINE, "--out", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_signals_as_in_a_terminal)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(temp.iterdir()):  # the plot is made, waiting for a reader
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, out + err
    assert "interrupted" in err and "nothing was written" in err and "Traceback" not in err
    if sig != signal.SIGINT:
        assert signal.Signals(sig).name in err
    assert list(temp.iterdir()) == []  # the temporary was removed


# --- item 10: one file given under two names ---------------------------------------------------------------------


def test_a_link_to_an_input_also_given_is_done_once_with_a_note(run_cli, images, tmp_path):
    link = tmp_path / "link.png"
    link.symlink_to(images / "s0.png")
    result = run_cli("degrade", images / "s0.png", link, "--out", tmp_path / "out", "--scale", "2")
    assert result.exit_code == 0, result.output
    assert "link.png: is the same file as" in result.output and "done once" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0.png"]


# --- item 11: profile writes the format its suffix names ---------------------------------------------------------


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".pdf", b"%PDF"), (".jpg", b"\xff\xd8\xff"), (".png", b"\x89PNG")])
def test_profile_writes_the_format_its_suffix_names(run_cli, images, tmp_path, suffix, magic):
    out = tmp_path / f"p{suffix}"
    result = run_cli("profile", images / "s0.png", *LINE, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic)


def test_profile_refuses_an_unknown_plot_suffix_and_one_file_for_both_outputs(run_cli, images, tmp_path):
    result = run_cli("profile", images / "s0.png", *LINE, "--out", tmp_path / "p.xyz")
    assert result.exit_code == 1 and "cannot write a plot of this type" in result.output
    result = run_cli("profile", images / "s0.png", *LINE, "--out", tmp_path / "p.png", "--csv", tmp_path / "p.png")
    assert result.exit_code == 1 and "is also given as --out" in result.output
    assert list(tmp_path.glob("p.*")) == []


# --- item 18: --skip-existing keeps only outputs that read whole ---------------------------------------------------


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_skip_existing_redoes_an_empty_or_truncated_output_with_a_note(run_cli, images, tmp_path, damage):
    out = tmp_path / "out"
    assert run_cli("degrade", images, "--out", out, "--scale", "2").exit_code == 0
    good = (out / "s0.png").read_bytes()
    bad = out / "s1.png"
    whole, pixels = bad.read_bytes(), io.read_image(bad).data
    bad.write_bytes(b"" if damage == "empty" else whole[: len(whole) // 2])
    result = run_cli("degrade", images, "--out", out, "--scale", "2", "--skip-existing")
    assert result.exit_code == 0, result.output
    assert "s1.png: the existing output" in result.output and "made again" in result.output
    # the same pixels (the file's provenance record carries the second it was written, so its bytes may differ)
    assert np.array_equal(io.read_image(bad).data, pixels) and (out / "s0.png").read_bytes() == good
    assert "1 done, 2 skipped" in result.output


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_to_video_keeps_the_frames_done_as_ctrl_c_does(tiny_identity_model, tmp_path):
    from test_video import FF, decode

    src = tmp_path / "long.mp4"
    subprocess.run([FF, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "120",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)], check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "ficli", "video", str(src), "--model", str(tiny_identity_model),
                             "--preset", "ultrafast"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p.name.startswith(".long_ficli.") and ".part" in p.name for p in tmp_path.iterdir()):
        time.sleep(0.1)  # the encoder's temporary file appears when streaming starts
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)  # to ficli alone, as `kill PID` or a job scheduler does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    partial = tmp_path / "long_ficli.partial.mp4"
    assert "interrupted by SIGTERM" in err and "saved, playable" in err and partial.exists()
    assert 0 < len(decode(partial, 64, 48)) < 3000
    assert not (tmp_path / "long_ficli.mp4").exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())
