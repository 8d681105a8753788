"""Issue 25 (round 3), `ficli video`: options ffmpeg would refuse with its own words, frames a
variable frame rate would lose, notes that were false or missing (docs/RELIABILITY.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from ficli.video import ffmpeg

hostile = pytest.mark.hostile
FF = ffmpeg.ffmpeg_exe()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_clip(path: Path, seconds: float = 0.4, size: str = "32x24") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([FF, "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=25", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


# ----------------------------------------------------- 22: --start/--duration ffmpeg cannot take


@hostile
@pytest.mark.parametrize("option, value", [("--duration", "inf"), ("--duration", "0"), ("--duration", "-1"), ("--duration", "nan"),
                                           ("--start", "inf"), ("--start", "nan")])
def test_bad_section_options_are_usage_errors(run_cli, tmp_path, tiny_identity_model, option, value):
    clip = make_clip(tmp_path / "in" / "clip.mp4")
    result = run_cli("video", clip, "--model", tiny_identity_model, "--device", "cpu", option, value)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert option in result.output and "finite number of seconds" in result.output, result.output
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["clip.mp4"]


# ------------------------------------------------------------- 6: a variable frame rate loses no frame


def _levels(path: Path, shape=(24, 32)) -> list[int]:
    """The frame number each decoded frame of `path` shows (frames of gray level 10 + 12·i), in order."""
    raw = subprocess.run([FF, "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, *shape)
    return [int(round((f.mean() - 10) / 12)) for f in frames]


def variable_rate_clip(folder: Path) -> Path:
    """20 numbered gray frames: 40 ms apart, then five 20 ms apart, then 40 ms again (as a phone
    records when it speeds up); played at the average rate, frame 8 falls between two slots."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(20):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), np.full((24, 32), 10 + 12 * i, np.uint8))
    times = "if(lt(N,5),0.04*N,if(lt(N,10),0.20+0.02*(N-5),0.44+0.04*(N-10)))/TB"
    out = folder / "vfr.mp4"
    subprocess.run([FF, "-loglevel", "error", "-y", "-framerate", "25", "-i", str(folder / "f%02d.png"), "-vf",
                    f"settb=1/1000,setpts='{times}'", "-fps_mode", "passthrough", "-enc_time_base:v", "1/1000", "-c:v", "libx264",
                    "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", str(out)], check=True)
    assert _levels(out) == list(range(20))
    return out


@hostile
def test_variable_frame_rate_keeps_every_frame_and_says_so(run_cli, tmp_path, tiny_identity_model):
    src = variable_rate_clip(tmp_path / "in")
    out = tmp_path / "out.mp4"
    result = run_cli("video", src, "--out", out, "--model", tiny_identity_model, "--device", "cpu", "--no-normalize")
    assert result.exit_code == 0, result.output
    assert "variable frame rate" in result.output and "every frame kept" in result.output, result.output
    shown = _levels(out)
    assert sorted(set(shown)) == list(range(20)), shown  # every input frame, none missing
    assert shown == sorted(shown)  # in order (a frame repeated where it lasts longer)


# --------------------------------------------------------- 23: audio longer than the video is no truncation


@hostile
def test_audio_longer_than_the_video_gives_no_truncation_note(run_cli, tmp_path, tiny_identity_model):
    src = tmp_path / "in" / "long_audio.mp4"
    src.parent.mkdir()
    subprocess.run([FF, "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=25:duration=0.4", "-f", "lavfi",
                    "-i", "sine=frequency=440:duration=3", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(src)], check=True)
    result = run_cli("video", src, "--out", tmp_path / "out.mp4", "--model", tiny_identity_model, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "truncated" not in result.output and "10 frames" in result.output, result.output


# ------------------------------------------- 25 (video): what H.264 cannot hold is said, not dropped silently


@hostile
@pytest.mark.parametrize("pix_fmt", ["gray16le", "yuv444p10le"])
def test_high_bit_depth_video_says_the_output_holds_8_bits(run_cli, tmp_path, tiny_identity_model, pix_fmt):
    src = tmp_path / "in" / "deep.mkv"
    src.parent.mkdir()
    subprocess.run([FF, "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=25", "-t", "0.2", "-c:v", "ffv1",
                    "-pix_fmt", pix_fmt, str(src)], check=True)
    result = run_cli("video", src, "--out", tmp_path / "out.mp4", "--model", tiny_identity_model, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"more than 8 bits ({pix_fmt})" in result.output and "--frames-dir" in result.output, result.output
    result = run_cli("video", src, "--out", tmp_path / "out2.mp4", "--model", tiny_identity_model, "--device", "cpu",
                     "--frames-dir", tmp_path / "frames")
    assert result.exit_code == 0 and "more than 8 bits" not in result.output, result.output


def _subtitled(tmp_path: Path, codec: str) -> Path:
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,200\nhello\n")
    src = tmp_path / "in" / f"subs_{codec}.mkv"
    src.parent.mkdir(exist_ok=True)
    subprocess.run([FF, "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=25:duration=0.2", "-i", str(srt),
                    "-map", "0:v", "-map", "1:s", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:s", codec,
                    str(src)], check=True)
    return src


def _subtitle_codecs(path: Path) -> list[str]:
    from ficli.video import ffmpeg as ff

    return list(ff.probe_video(path).subtitles)


@hostile
@pytest.mark.parametrize("suffix, kept", [(".mkv", "subrip"), (".mp4", "mov_text")])
def test_text_subtitles_are_carried_into_the_output(run_cli, tmp_path, tiny_identity_model, suffix, kept):
    src = _subtitled(tmp_path, "srt")
    out = tmp_path / f"out{suffix}"
    result = run_cli("video", src, "--out", out, "--model", tiny_identity_model, "--device", "cpu")
    assert result.exit_code == 0 and "subtitle stream" not in result.output, result.output
    assert _subtitle_codecs(out) == [kept]


@hostile
def test_bitmap_subtitles_that_are_not_copied_are_named(tmp_path):
    # ffmpeg cannot make bitmap subtitles from text, so a probed clip is told it holds some.
    from dataclasses import replace

    from ficli.video import ffmpeg as ff

    info = replace(ff.probe_video(_subtitled(tmp_path, "srt")), subtitles=("hdmv_pgs_subtitle", "subrip"))
    for out in (tmp_path / "out.mp4", tmp_path / "out.mkv"):
        assert ff.subtitle_args(info, out) == []
        notes = ff.lost_in_output(info, None, out)
        assert any("2 subtitle stream(s) (hdmv_pgs_subtitle, subrip) are not copied" in n for n in notes), notes
