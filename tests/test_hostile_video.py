"""`ficli video` under bad input and faults: the video column of docs/RELIABILITY.md.

Black-box tests through the CLI on tiny clips made with the bundled ffmpeg; they use nothing of
ficli.video.pipeline but ffmpeg_exe() and _encoder_args (to point the encoder at /dev/full, a real ENOSPC).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ficli.video import ffmpeg, pipeline as video
from ficli.model import modelfile
from ficli.model.nets import Generator, GeneratorConfig
from hostile_files import deny_writing, snapshot

hostile = pytest.mark.hostile
FF = ffmpeg.ffmpeg_exe()
FAST = ("--preset", "ultrafast", "--device", "cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model(tiny_identity_model) -> Path:
    return tiny_identity_model


def make_clip(path: Path, seconds: float = 0.4, size: str = "32x24") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([FF, "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=25", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def frame_count(path: Path) -> int:
    text = subprocess.run([FF, "-hide_banner", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"], capture_output=True, text=True).stderr
    return int(text.rsplit("frame=", 1)[1].split()[0])


def y4m(path: Path, width: int, height: int, frames: int = 5, colour: str = "mono") -> Path:
    """A raw YUV4MPEG2 clip: its header states the frame size, nothing is compressed."""
    size = width * height if colour == "mono" else width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)
    header = f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C{colour}\n".encode()
    path.write_bytes(header + b"".join(b"FRAME\n" + bytes(i * 37 % 256 for i in range(size)) for _ in range(frames)))
    return path


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_clip(tmp_path / "in" / "clip.mp4")


def clean_failure(result, *words):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert str(word) in result.output, (word, result.output)


@hostile
def test_missing_video(run_cli, tmp_path, model):
    clean_failure(run_cli("video", tmp_path / "none.mp4", "--model", model), "none.mp4: no such file")
    assert list(tmp_path.iterdir()) == []


@hostile
def test_a_folder_is_not_a_video(run_cli, tmp_path, model):
    (tmp_path / "folder").mkdir()
    clean_failure(run_cli("video", tmp_path / "folder", "--model", model), "folder: not a file")


@hostile
@pytest.mark.parametrize("damage", ["zero-byte", "truncated", "corrupt"])
def test_damaged_mp4(run_cli, clip, model, damage):
    raw = clip.read_bytes()
    bad = clip.with_name(f"{damage}.mp4")
    bad.write_bytes({"zero-byte": b"", "truncated": raw[: len(raw) // 2], "corrupt": raw[:32] + bytes(range(256)) * 4}[damage])
    before = snapshot(clip.parent)
    clean_failure(run_cli("video", bad, "--model", model, *FAST), bad, "not a video ffmpeg can read")
    assert snapshot(clip.parent) == before


@hostile
def test_header_claiming_a_huge_frame(run_cli, tmp_path, model):
    bomb = tmp_path / "bomb.y4m"
    bomb.write_bytes(b"YUV4MPEG2 W100000 H100000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    clean_failure(run_cli("video", bomb, "--model", model, *FAST), bomb, "not a video ffmpeg can read")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.y4m"]


@hostile
@pytest.mark.parametrize("width, height", [(1, 1), (3, 5), (1, 17)])
def test_tiny_frames_are_padded_to_even_sides(run_cli, tmp_path, model, width, height):
    src = y4m(tmp_path / "tiny.y4m", width, height)
    result = run_cli("video", src, "--model", model, "--out", tmp_path / "out.mp4", *FAST)
    assert result.exit_code == 0, result.output
    assert f"{width + width % 2}×{height + height % 2}" in result.output and frame_count(tmp_path / "out.mp4") == 5


@hostile
def test_unreadable_video_simulated(run_cli, clip, model, monkeypatch):
    import builtins

    real_open = builtins.open

    def deny(file, *args, **kwargs):  # what chmod 000 does for a normal user
        if str(file) == str(clip):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    result = run_cli("video", clip, "--model", model, *FAST)
    clean_failure(result, clip, "permission denied")


@hostile
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode (the simulated test above runs)")
def test_unreadable_video_for_real(run_cli, clip, model):
    clip.chmod(0)
    try:
        result = run_cli("video", clip, "--model", model, *FAST)
    finally:
        clip.chmod(0o600)
    clean_failure(result, clip)


@hostile
def test_read_only_output_folder(run_cli, clip, model, tmp_path, monkeypatch):
    deny_writing(monkeypatch)  # as a folder a normal user cannot write (root writes anywhere)
    result = run_cli("video", clip, "--model", model, "--out", tmp_path / "out" / "o.mp4", *FAST)
    clean_failure(result, "cannot write here", "Permission denied")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert sorted(p.name for p in clip.parent.iterdir()) == ["clip.mp4"]


@hostile
def test_output_is_the_input(run_cli, clip, model):
    before = clip.read_bytes()
    clean_failure(run_cli("video", clip, "--model", model, "--out", clip, "--overwrite", *FAST), "input")
    assert clip.read_bytes() == before and sorted(p.name for p in clip.parent.iterdir()) == ["clip.mp4"]


@hostile
def test_disk_full_while_encoding(run_cli, clip, model, monkeypatch):
    """The encoder writes to /dev/full, where every write fails with ENOSPC as on a full disk."""
    real = video.encoder_args  # noqa: SLF001
    monkeypatch.setattr(video, "encoder_args", lambda *a: [*real(*a)[:-1], "/dev/full"])
    result = run_cli("video", clip, "--model", model, *FAST)
    clean_failure(result, "ffmpeg could not encode", "No space left on device")
    assert sorted(p.name for p in clip.parent.iterdir()) == ["clip.mp4"]  # no output, no temporary


@hostile
@pytest.mark.parametrize("kind", ["pickle", "truncated", "foreign"])
def test_bad_model_file(run_cli, clip, model, tmp_path, kind):
    bad = tmp_path / f"{kind}.safetensors"
    if kind == "pickle":
        bad.write_bytes(pickle.dumps({"w": torch.zeros(2)}))
    elif kind == "truncated":
        bad.write_bytes(model.read_bytes()[:1000])
    else:
        save_file({"conv.weight": torch.zeros(4, 1, 3, 3)}, str(bad), metadata={"format": "pt"})
    clean_failure(run_cli("video", clip, "--model", bad, *FAST), bad)
    assert sorted(p.name for p in clip.parent.iterdir()) == ["clip.mp4"]


@hostile
@pytest.mark.slow
def test_killed_mid_video_then_the_same_command_again(run_cli, tmp_path):
    # The default depth at width 32 on 160×120 frames: a few seconds of work, time to kill it mid-way.
    config = GeneratorConfig(features=32, growth=16)
    model = modelfile.save_model(tmp_path / "slow.safetensors", Generator(config, spectral_norm=False), config, {"scale": 4})
    src = make_clip(tmp_path / "long.mp4", seconds=8, size="160x120")
    out = tmp_path / "long_ficli.mp4"
    args = ["video", str(src), "--model", str(model), *FAST]
    proc = subprocess.Popen([sys.executable, "-m", "ficli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".long_ficli.") and ".part" in p.name for p in tmp_path.iterdir()):  # streaming has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    time.sleep(0.3)
    assert proc.poll() is None, "the video was done before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not out.exists()  # OUT is only ever the renamed, complete file
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert frame_count(out) == 200
    assert "removed 1 unfinished temporary" in result.output  # the killed run's, by the rerun
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


@hostile
def test_rerun_removes_only_its_own_stale_temporaries(run_cli, clip, model):
    own = clip.with_name(f".{clip.stem}_ficli.k3j_9x0q.part.mp4")
    foreign = [clip.with_name(".other.k3j_9x0q.part.mp4"), clip.with_name(".notes.txt")]
    for path in (own, *foreign):
        path.write_bytes(b"left by a killed run")
    result = run_cli("video", clip, "--model", model, *FAST)
    assert result.exit_code == 0, result.output
    assert not own.exists() and all(p.exists() for p in foreign)
