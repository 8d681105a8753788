"""`ficli video` on real clips written in tmp_path with the bundled ffmpeg (tiny sizes, tiny models).

Outputs are checked with ffmpeg itself (its stream description and the decoded frames), not with
ficli's own probe. An identity model (a fresh generator: out_scale 0) must give the input back
within codec error.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import wave
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ficli.video import ffmpeg, frames, pipeline as video
from ficli.model import modelfile
from ficli.errors import ConfigError, InputError, OutputError
from ficli.image.phantom import phantom

FF = ffmpeg.ffmpeg_exe()
FAST = ("--preset", "ultrafast")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def identity_model(tiny_identity_model) -> Path:
    return tiny_identity_model


def scene_frames(width: int, height: int, count: int, colour: bool = False) -> list[np.ndarray]:
    """(H, W, 3) uint8 frames: a phantom moving 2 px right per frame (frames tell apart), gray as RGB."""
    base = phantom(height, width + 2 * count, seed=3, peak_photons=None, background=0.1)
    frames = []
    for i in range(count):
        gray = np.round(np.clip(base[:, 2 * i : 2 * i + width], 0, 1) * 220 + 20).astype(np.uint8)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        if colour:  # a green overlay, as fluorescence over white light
            rgb[..., 0] = rgb[..., 0] // 2
            rgb[..., 2] = rgb[..., 2] // 3
        frames.append(rgb)
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: str = "25", audio: bool = True,
               codec: tuple[str, ...] = ("-c:v", "libx264", "-preset", "ultrafast", "-crf", "10", "-pix_fmt", "yuv420p"),
               extra: tuple[str, ...] = ()) -> Path:
    h, w = frames[0].shape[:2]
    seconds = len(frames) / float(Fraction(fps))
    cmd = [FF, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-framerate", fps, "-i", "pipe:0"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=8000:duration={seconds}", "-c:a", "aac"]
    subprocess.run(cmd + [*codec, *extra, str(path)], input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def ff_info(path: Path) -> dict:
    """Size, fps and audio of a file, from ffmpeg's own description."""
    text = subprocess.run([FF, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    v = re.search(r"Stream #0:\d+.*: Video: .*?, (\d+)x(\d+)[ ,].*?([\d.]+) fps", text)
    return {"width": int(v.group(1)), "height": int(v.group(2)), "fps": float(v.group(3)),
            "audio": bool(re.search(r"Stream #0:\d+.*: Audio:", text)),
            "primaries": "bt709" in text}


def decode(path: Path, width: int, height: int) -> np.ndarray:
    """All frames (N, H, W, 3) as int16 (for differences)."""
    raw = subprocess.run([FF, "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3).astype(np.int16)


@pytest.fixture
def clip(tmp_path) -> Path:
    """64×48, 20 frames at 25 fps, gray stored as RGB, with AAC audio."""
    return write_clip(tmp_path / "clip.mp4", scene_frames(64, 48, 20))


# --- whole runs -------------------------------------------------------------------------------


def test_identity_round_trip_keeps_frames_rate_size_and_audio(run_cli, identity_model, clip):
    result = run_cli("video", clip, "--model", identity_model, *FAST)
    assert result.exit_code == 0, result.output
    out = clip.with_name("clip_ficli.mp4")
    info = ff_info(out)
    assert (info["width"], info["height"], info["fps"], info["audio"]) == (64, 48, 25.0, True)
    assert info["primaries"]
    src, dst = decode(clip, 64, 48), decode(out, 64, 48)
    assert len(dst) == len(src) == 20
    assert np.abs(dst - src).mean() < 3
    assert "frames/s end to end" in result.output and "channels gray" in result.output
    assert [p.name for p in clip.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_side_by_side_is_twice_as_wide_and_shows_both(run_cli, identity_model, clip, tmp_path):
    out = tmp_path / "sbs.mp4"
    result = run_cli("video", clip, "--model", identity_model, "--side-by-side", "--no-labels", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    info = ff_info(out)
    assert (info["width"], info["height"], info["audio"]) == (128, 48, True)
    frames, src = decode(out, 128, 48), decode(clip, 64, 48)
    assert np.abs(frames[:, :, :64] - src).mean() < 3 and np.abs(frames[:, :, 64:] - src).mean() < 3


def test_labels_and_compare_only_keep_the_width(run_cli, identity_model, clip, tmp_path):
    out = tmp_path / "cmp.mp4"
    result = run_cli("video", clip, "--model", identity_model, "--compare-only", "--out", out, "--max-frames", "3", *FAST)
    assert result.exit_code == 0, result.output
    assert (ff_info(out)["width"], ff_info(out)["height"]) == (64, 48)
    frame, src = decode(out, 64, 48)[0], decode(clip, 64, 48)[0]
    assert np.abs(frame[:, 32] - 128).mean() < 6  # the split line
    assert np.abs(frame[12:, 40:] - src[12:, 40:]).mean() < 3  # below the label
    assert np.abs(frame[:12, :30] - src[:12, :30]).max() > 60  # the label is drawn


def test_side_by_side_and_compare_only_exclude_each_other(run_cli, identity_model, clip):
    result = run_cli("video", clip, "--model", identity_model, "--side-by-side", "--compare-only")
    assert result.exit_code == 2


def test_upscale_enlarges_both_halves(run_cli, identity_model, clip, tmp_path):
    out = tmp_path / "up.mp4"
    result = run_cli("video", clip, "--model", identity_model, "--upscale", "2", "--side-by-side", "--max-frames", "2", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert (ff_info(out)["width"], ff_info(out)["height"]) == (256, 96)


def test_odd_frame_size_is_padded_by_one_repeated_pixel(run_cli, identity_model, tmp_path):
    frames = scene_frames(65, 47, 6)
    src = write_clip(tmp_path / "odd.mkv", frames, fps="30000/1001", audio=False, codec=("-c:v", "ffv1", "-pix_fmt", "bgr0"))
    out = tmp_path / "odd_out.mp4"
    result = run_cli("video", src, "--model", identity_model, "--out", out, "--crf", "0", *FAST)
    assert result.exit_code == 0, result.output
    info = ff_info(out)
    assert (info["width"], info["height"], info["audio"], info["fps"]) == (66, 48, False, 29.97)
    got = decode(out, 66, 48)
    assert len(got) == 6
    assert np.abs(got[:, :47, :65] - np.stack(frames)).mean() < 2
    assert np.abs(got[:, :, 65] - got[:, :, 64]).mean() < 2 and np.abs(got[:, 47] - got[:, 46]).mean() < 2


def test_max_frames_limits_video_and_audio(run_cli, identity_model, clip, tmp_path):
    out = tmp_path / "short.mp4"
    result = run_cli("video", clip, "--model", identity_model, "--max-frames", "7", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert len(decode(out, 64, 48)) == 7
    text = subprocess.run([FF, "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    seconds = float(re.search(r"Duration: 00:00:(\d+\.\d+)", text).group(1))
    assert "Audio:" in text and seconds < 0.45  # 7 frames = 0.28 s (AAC adds a little)


def test_start_and_duration_select_the_right_frames(run_cli, identity_model, clip, tmp_path):
    out = tmp_path / "mid.mp4"
    result = run_cli("video", clip, "--model", identity_model, "--start", "0.4", "--duration", "0.2", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    got, src = decode(out, 64, 48), decode(clip, 64, 48)
    assert len(got) == 5
    diffs = [np.abs(got[0] - s).mean() for s in src]
    assert int(np.argmin(diffs)) == 10  # 0.4 s at 25 fps


def test_variable_frame_rate_becomes_constant_and_keeps_its_timing(run_cli, identity_model, tmp_path):
    src = tmp_path / "vfr.mkv"  # 25 frames at 25 fps, then 25 frames at 12.5 fps: 50 frames over 2.96 s
    subprocess.run([FF, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2", "-vf",
                    "setpts='if(lt(N,25),N,25+2*(N-25))/(25*TB)'", "-fps_mode", "vfr", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)], check=True)
    out = tmp_path / "cfr.mp4"
    result = run_cli("video", src, "--model", identity_model, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    got = decode(out, 64, 48)
    assert ff_info(out)["fps"] == 25.0 and len(got) == 74  # slow frames repeated: 2.96 s at 25 fps
    repeats = [k for k in range(len(got) - 1) if np.abs(got[k + 1] - got[k]).mean() < 0.1]
    assert len(repeats) == 24 and min(repeats) >= 24  # each slow frame shown twice, none before


def test_long_sections_are_sampled_by_seeking(tmp_path):
    src = write_clip(tmp_path / "long.mp4", scene_frames(64, 48, 300), audio=False)
    info = ffmpeg.probe_video(src)
    samples = ffmpeg.sample_frames(info, ffmpeg.Section(), count=4)  # 300 frames > SEEK_THRESHOLD
    frames = decode(src, 64, 48) / 255
    found = [int(np.argmin([np.abs(f - s).mean() for f in frames])) for s in samples]
    assert np.abs(np.array(found) - [37.5, 112.5, 187.5, 262.5]).max() <= 1  # the middles of four equal parts
    short = ffmpeg.sample_frames(info, ffmpeg.Section(start=4, max_frames=50), count=3)  # one pass, thinned
    found = [int(np.argmin([np.abs(f - s).mean() for f in frames])) for s in short]
    assert found[0] == 100 and found[-1] >= 145 and found == sorted(set(found))  # across the section


def test_ctrl_c_while_sampling_drops_the_seeks_not_started_and_leaves_nothing(identity_model, tmp_path, monkeypatch):
    src = write_clip(tmp_path / "long.mp4", scene_frames(64, 48, 300), audio=False)
    generator, _, _ = modelfile.load_model(identity_model)
    calls = []
    to_unit = video.io.to_unit

    def interrupted_at_the_second_sample(frame):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return to_unit(frame)

    monkeypatch.setattr(video.io, "to_unit", interrupted_at_the_second_sample)
    with pytest.raises(KeyboardInterrupt):
        video.enhance_video(src, generator, video.VideoOptions(preset="ultrafast"))
    assert len(calls) < video.VideoOptions().samples  # not every one of the 32 seeks ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]


def test_start_past_the_end_is_refused(run_cli, identity_model, clip):
    result = run_cli("video", clip, "--model", identity_model, "--start", "5")
    assert result.exit_code == 1 and "past the end" in result.output


def test_frames_dir_gets_one_png_per_frame(run_cli, identity_model, clip, tmp_path):
    frames_dir = tmp_path / "frames"
    result = run_cli("video", clip, "--model", identity_model, "--max-frames", "4", "--frames-dir", frames_dir,
                     "--out", tmp_path / "o.mp4", *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in frames_dir.iterdir()) == [f"clip_{i:06d}.png" for i in range(1, 5)]


def test_colour_video_keeps_its_colours_through_luma(run_cli, identity_model, tmp_path):
    src = write_clip(tmp_path / "colour.mp4", scene_frames(64, 48, 5, colour=True), audio=False)
    out = tmp_path / "colour_out.mp4"
    result = run_cli("video", src, "--model", identity_model, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "channels luma" in result.output
    got, want = decode(out, 64, 48), decode(src, 64, 48)
    assert np.abs(got - want).mean(axis=(0, 1, 2)).max() < 3  # every channel


def test_channels_rgb_runs_each_channel(run_cli, identity_model, clip, tmp_path):
    out = tmp_path / "o.mp4"
    result = run_cli("video", clip, "--model", identity_model, "--channels", "rgb", "--no-normalize", "--max-frames", "3", "--out", out, *FAST)
    assert result.exit_code == 0 and "channels rgb" in result.output and "not normalised" in result.output
    assert np.abs(decode(out, 64, 48) - decode(clip, 64, 48)[:3]).mean() < 3


def test_sixteen_bit_gray_video_gives_sixteen_bit_frames(run_cli, identity_model, tmp_path):
    from ficli.image import io

    src = write_clip(tmp_path / "deep.mkv", scene_frames(64, 48, 3), audio=False, codec=("-c:v", "ffv1", "-pix_fmt", "gray16le"))
    result = run_cli("video", src, "--model", identity_model, "--frames-dir", tmp_path / "f", "--out", tmp_path / "o.mp4", *FAST)
    assert result.exit_code == 0, result.output
    assert "channels gray" in result.output
    png = io.read_image(tmp_path / "f" / "deep_000001.png").data
    assert png.dtype == np.uint16 and png.shape == (48, 64)


@pytest.mark.parametrize("batch", [1, 3])
def test_frames_are_what_the_network_makes_of_them_in_the_video_range(tmp_path, batch):
    """The pipeline's three steps (decoding, inference and encoding threads) against the same map
    written out in numpy: lossless 16-bit frames, a nonlinear network, groups of frames."""
    from ficli.image import io

    src = write_clip(tmp_path / "deep.mkv", scene_frames(64, 48, 5), audio=False, codec=("-c:v", "ffv1", "-pix_fmt", "gray16le"))
    options = video.VideoOptions(out=tmp_path / "o.mp4", frames_dir=tmp_path / "f", batch=batch, preset="ultrafast")
    report = video.enhance_video(src, lambda x: x * x, options)
    lo, hi = report.plan.range
    raw = subprocess.run([FF, "-loglevel", "error", "-i", str(src), "-f", "rawvideo", "-pix_fmt", "gray16le", "-"],
                         capture_output=True, check=True).stdout
    decoded = np.frombuffer(raw, "<u2").reshape(-1, 48, 64)
    assert report.frames == len(decoded) == 5
    for i, frame in enumerate(decoded):
        x = (frame / 65535.0 - lo) / (hi - lo)
        want = np.clip(np.rint((x * x * (hi - lo) + lo) * 65535), 0, 65535)
        got = io.read_image(tmp_path / "f" / f"deep_{i + 1:06d}.png").data.astype(np.float64)
        assert np.abs(got - want).max() <= 1  # float32 against float64 rounding


def test_help_states_how_the_range_is_computed(run_cli):
    result = run_cli("video", "--help")
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "whole selected section" in text and "32 frames" in text and "--channels" in text


def test_callbacks_get_the_plan_and_the_progress(identity_model, clip):
    generator, _, _ = modelfile.load_model(identity_model)
    plans, progress = [], []
    report = video.enhance_video(clip, generator, video.VideoOptions(preset="ultrafast", batch=8),
                                 on_start=plans.append, on_progress=lambda done, total: progress.append((done, total)))
    assert plans[0].frames == 20 and plans[0].channels == "gray" and plans[0].audio == "copied"
    assert progress[0] == (8, 20) and progress[-1] == (20, 20)
    assert report.frames == 20 and report.out == clip.with_name("clip_ficli.mp4") and report.fps > 0
    assert 0 < report.start_seconds < report.seconds and report.stream_fps > report.fps


# --- errors ------------------------------------------------------------------------------------


def test_audio_only_file_has_no_video_stream(run_cli, identity_model, tmp_path):
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.zeros(800, "<i2").tobytes())
    result = run_cli("video", path, "--model", identity_model)
    assert result.exit_code == 1
    assert "no video stream" in result.output and "tone.wav" in result.output and "Traceback" not in result.output


def test_not_a_video_is_a_clear_error(run_cli, identity_model, tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are notes, not a video\n")
    result = run_cli("video", path, "--model", identity_model)
    assert result.exit_code == 1 and "notes.mp4" in result.output and "not a video" in result.output


def test_truncated_file_is_a_clear_error(run_cli, identity_model, clip, tmp_path):
    path = tmp_path / "cut.mp4"
    path.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # the index (moov) is at the end
    result = run_cli("video", path, "--model", identity_model)
    assert result.exit_code == 1 and "cut.mp4" in result.output and "truncated" in result.output


def test_truncated_stream_with_its_index_first_gives_what_is_there(run_cli, identity_model, tmp_path):
    src = write_clip(tmp_path / "long.mkv", scene_frames(64, 48, 30), audio=False)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 6 // 10])
    result = run_cli("video", cut, "--model", identity_model, "--out", tmp_path / "o.mp4", *FAST)
    assert result.exit_code == 0, result.output
    assert 5 < len(decode(tmp_path / "o.mp4", 64, 48)) < 30


def test_missing_input(run_cli, identity_model, tmp_path):
    result = run_cli("video", tmp_path / "none.mp4", "--model", identity_model)
    assert result.exit_code == 1 and "none.mp4: no such file" in result.output


def test_existing_output_is_refused_and_untouched(run_cli, identity_model, clip):
    out = clip.with_name("clip_ficli.mp4")
    out.write_bytes(b"keep me")
    result = run_cli("video", clip, "--model", identity_model, *FAST)
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert out.read_bytes() == b"keep me"
    result = run_cli("video", clip, "--model", identity_model, "--overwrite", "--max-frames", "2", *FAST)
    assert result.exit_code == 0 and len(decode(out, 64, 48)) == 2


def test_the_input_is_never_the_output(run_cli, identity_model, clip):
    before = clip.read_bytes()
    result = run_cli("video", clip, "--model", identity_model, "--out", clip, "--overwrite")
    assert result.exit_code == 1 and "input" in result.output
    assert clip.read_bytes() == before


def test_ffmpeg_failure_reports_its_last_words(run_cli, identity_model, clip, monkeypatch):
    real = video.encoder_args
    monkeypatch.setattr(video, "encoder_args", lambda *a: [x if x != "libx264" else "no_such_encoder" for x in real(*a)])
    result = run_cli("video", clip, "--model", identity_model)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "ffmpeg could not encode" in result.output and "no_such_encoder" in result.output
    assert sorted(p.name for p in clip.parent.iterdir()) == ["clip.mp4"]
    for _ in range(50):  # the reader and writer threads end too
        if not any(t.name.startswith("ficli-") for t in threading.enumerate()):
            break
        time.sleep(0.05)
    assert not any(t.name.startswith("ficli-") for t in threading.enumerate())


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="--crf"):
        video.VideoOptions(crf=60)
    with pytest.raises(ConfigError, match="--preset"):
        video.VideoOptions(preset="quick")
    with pytest.raises(ConfigError, match="--channels"):
        video.VideoOptions(channels="cmyk")


# --- Ctrl-C -----------------------------------------------------------------------------------


def test_interrupt_keeps_a_playable_partial_file(identity_model, clip):
    generator, _, _ = modelfile.load_model(identity_model)

    def ctrl_c(done, total):
        raise KeyboardInterrupt

    with pytest.raises(video.VideoInterrupted) as stop:
        video.enhance_video(clip, generator, video.VideoOptions(preset="ultrafast", batch=4), on_progress=ctrl_c)
    partial = clip.with_name("clip_ficli.partial.mp4")
    assert stop.value.partial == partial and stop.value.frames == 4 and str(partial) in str(stop.value)
    assert not clip.with_name("clip_ficli.mp4").exists()
    assert len(decode(partial, 64, 48)) == 4 and ff_info(partial)["audio"]
    assert sorted(p.name for p in clip.parent.iterdir()) == ["clip.mp4", partial.name]


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to a process group")
def test_ctrl_c_in_a_terminal_keeps_the_frames_done(identity_model, tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: ffmpeg must not die before ficli closes."""
    src = tmp_path / "long.mp4"
    subprocess.run([FF, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f", "lavfi",
                    "-i", "sine=sample_rate=8000", "-t", "120", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
                    "yuv420p", "-c:a", "aac", str(src)], check=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ficli", "video", str(src), "--model", str(identity_model), "--preset", "ultrafast"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    partial = tmp_path / "long_ficli.partial.mp4"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p.name.startswith(".long_ficli.") and ".part" in p.name for p in tmp_path.iterdir()):
        time.sleep(0.1)  # the encoder's temporary file appears when streaming starts
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "saved, playable" in err and partial.exists() and not (tmp_path / "long_ficli.mp4").exists()
    frames = len(decode(partial, 64, 48))
    assert 0 < frames < 3000 and ff_info(partial)["audio"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_interrupt_before_any_frame_leaves_nothing(identity_model, clip, monkeypatch):
    generator, _, _ = modelfile.load_model(identity_model)

    def ctrl_c(self, frames):
        raise KeyboardInterrupt

    monkeypatch.setattr(frames.Inference, "network", ctrl_c)
    with pytest.raises(video.VideoInterrupted, match="no file was left") as stop:
        video.enhance_video(clip, generator, video.VideoOptions(preset="ultrafast"))
    assert stop.value.partial is None
    assert sorted(p.name for p in clip.parent.iterdir()) == ["clip.mp4"]


# --- parts ------------------------------------------------------------------------------------


def test_gray_in_rgb_is_detected_and_colour_is_not(tmp_path):
    gray = write_clip(tmp_path / "gray.mp4", scene_frames(64, 48, 8), audio=False)
    colour = write_clip(tmp_path / "colour.mp4", scene_frames(64, 48, 8, colour=True), audio=False)
    for path, gray_expected, mode in ((gray, True, "gray"), (colour, False, "luma")):
        info = ffmpeg.probe_video(path)
        samples = ffmpeg.sample_frames(info, ffmpeg.Section(), count=4)
        assert len(samples) == 4 and samples[0].shape == (48, 64, 3)
        assert frames.is_gray(samples) is gray_expected
        assert frames.choose_channels("auto", info, samples) == mode
    with pytest.raises(ConfigError, match="1-channel model"):
        frames.choose_channels("luma", info, samples, model_channels=3)


def test_one_range_for_the_whole_video_from_evenly_spread_frames():
    picked = ffmpeg._thinned(iter(range(1000)), 32)
    assert len(picked) == 32 and picked[0] == 0 and picked[-1] > 950
    steps = np.diff(picked)
    assert steps.max() - steps.min() <= 16  # evenly spread, to one step of the thinned set
    assert ffmpeg._thinned(iter(range(60)), 32) == list(np.linspace(0, 59, 32).round().astype(int))
    assert ffmpeg._thinned(iter(range(5)), 32) == [0, 1, 2, 3, 4]
    dark, bright = np.zeros((8, 8, 3), np.float32), np.ones((8, 8, 3), np.float32)
    lo, hi = frames.video_range([dark, bright], "gray")
    assert lo < 0.01 and hi > 0.99  # one range over all frames, not per frame


def test_probe_reads_ffmpeg_descriptions(tmp_path):
    text = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Duration: 01:02:03.50, start: 0.000000, bitrate: 113 kb/s
  Stream #0:0[0x1](und): Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 600x400, 90k tbr (attached pic)
  Stream #0:1[0x2](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p10le(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9], 29.97 fps, 29.97 tbr, 30k tbn (default)
    Side data:
      displaymatrix: rotation of -90.00 degrees
  Stream #0:2[0x3](und): Audio: pcm_s16le (lpcm / 0x6D63706C), 48000 Hz, stereo, s16, 1536 kb/s (default)
At least one output file must be specified
"""
    info = ffmpeg.parse_probe(text, Path("x.mp4"))
    assert (info.stream, info.width, info.height, info.codec, info.pix_fmt) == (1, 1080, 1920, "h264", "yuv420p10le")
    assert info.fps == Fraction(30000, 1001) and info.duration == pytest.approx(3723.5)
    assert info.frames == round(3723.5 * 30000 / 1001) and info.high_depth and info.audio == ("pcm_s16le",)
    assert ffmpeg.audio_plan(info, Path("o.mp4"))[0] == "re-encoded to AAC"
    assert ffmpeg.audio_plan(info, Path("o.mkv"))[0] == "copied"
    with pytest.raises(InputError, match="no video stream"):
        ffmpeg.parse_probe(text.replace("Video: h264", "Data: bin"), Path("x.mp4"))


def test_section_estimates_frames():
    info = ffmpeg.VideoInfo(path=Path("x.mp4"), width=64, height=48, fps=Fraction(25), duration=10.0, stream=0,
                           codec="h264", pix_fmt="yuv420p")
    assert ffmpeg.Section().frames(info) == 250
    assert ffmpeg.Section(start=9).frames(info) == 25
    assert ffmpeg.Section(start=1, duration=2).frames(info) == 50
    assert ffmpeg.Section(max_frames=7).frames(info) == 7
    assert ffmpeg.Section().frames(ffmpeg.VideoInfo(**{**info.__dict__, "duration": None})) is None


def test_check_output_refuses_unknown_types_and_folders(tmp_path):
    src = tmp_path / "a.mp4"
    with pytest.raises(OutputError, match="file type"):
        video.check_output(src, tmp_path / "a.gif", overwrite=False)
    with pytest.raises(OutputError, match="is a folder"):
        video.check_output(src, tmp_path, overwrite=True)


def test_compose_layouts_and_even_sides():
    orig = np.zeros((47, 65), np.uint8)
    enh = np.ones((47, 65), np.float32)
    assert frames.compose(None, enh, "enhanced", False).shape == (48, 66)
    sbs = frames.compose(orig, enh, "side-by-side", False)
    assert sbs.shape == (48, 130) and sbs[:, :65].max() == 0 and sbs[:47, 65:].min() == 255
    cmp = frames.compose(orig, enh, "compare", True)
    assert cmp.shape == (48, 66) and cmp[30:, :30].max() == 0 and cmp[30:, 40:60].min() == 255


def test_bench_video_reports_every_stage_and_the_limit():
    from ficli.tools import bench

    row = bench.bench_video((64, 48), frames=2)
    assert row["frames"] == 2 and row["e2e_fps"] > 0 and row["transfer_fps"] is None  # no transfer on the CPU
    rates = {stage: row[f"{stage}_fps"] for stage in bench.VIDEO_STAGES if row[f"{stage}_fps"] is not None}
    assert set(rates) == {"decode", "host", "model", "encode"} and all(r > 0 for r in rates.values())
    assert row["limit"] == min(rates, key=rates.get)
    assert row["e2e/model"] == pytest.approx(row["e2e_fps"] / row["model_fps"])
    assert row["pipeline_fps"] > row["e2e_fps"]  # an identity network is faster than the real one
    assert row["start_s"] > 0


def test_compile_option_compiles_the_generator_for_video(run_cli, identity_model, clip, monkeypatch):
    modes = []

    def fake_compile(module, mode=None):
        modes.append(mode)
        return lambda x: module(x)

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = run_cli("video", clip, "--model", identity_model, *FAST, "--compile")
    assert result.exit_code == 0, result.output
    assert modes == [None]  # CUDA graphs ("reduce-overhead") only on CUDA
    assert len(decode(clip.with_name("clip_ficli.mp4"), 64, 48)) == 20


def test_cli_tile_default_is_the_video_tile():
    import inspect

    from ficli import cli

    assert inspect.signature(cli.video).parameters["tile"].default == video.VIDEO_TILE
    assert video.VideoOptions().tile.tile == video.VIDEO_TILE


def test_gray_output_is_encoded_from_gray_with_neutral_chroma(run_cli, identity_model, clip, tmp_path):
    result = run_cli("video", clip, "--model", identity_model, *FAST, "--side-by-side")
    assert result.exit_code == 0, result.output
    raw = subprocess.run([FF, "-loglevel", "error", "-i", str(clip.with_name("clip_ficli.mp4")), "-f", "rawvideo",
                          "-pix_fmt", "yuv420p", "-"], capture_output=True, check=True).stdout
    w, h = 128, 48
    planes = np.frombuffer(raw, np.uint8).reshape(-1, w * h * 3 // 2)
    assert len(planes) == 20 and np.all(planes[:, w * h :] == 128)  # no tint from the gray -> YUV conversion


def test_raw_bytes_for_the_encoder():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert frames.raw_bytes(gray, "gray") == gray.tobytes()
    assert frames.raw_bytes(gray, "rgb24") == np.repeat(gray[..., None], 3, axis=2).tobytes()
    with pytest.raises(ValueError, match="gray encoder"):
        frames.raw_bytes(np.zeros((3, 4, 3), np.uint8), "gray")


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16])
def test_channel_mean_equals_numpy_mean(dtype):
    rng = np.random.default_rng(4)
    frame = (rng.random((37, 53, 3)) * (1 if dtype == np.float32 else np.iinfo(dtype).max)).astype(dtype)
    np.testing.assert_array_equal(frames.channel_mean(frame), frame.mean(axis=2, dtype=np.float32))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_channel_spread_equals_numpy_max_minus_min(channels):
    rng = np.random.default_rng(5)
    frame = rng.random((37, 53, channels), dtype=np.float32)
    np.testing.assert_array_equal(frames.channel_spread(frame), frame.max(axis=2) - frame.min(axis=2))
    assert frames.channel_spread(frame).shape == (37, 53)


def test_gray_test_tolerates_a_few_ringing_pixels_and_no_more():
    frame = np.full((100, 100, 3), 0.5, np.float32)
    frame[0, :10, 0] = 0.6  # 10 of 10,000 pixels (0.1 %) spread beyond the tolerance: still gray
    assert frames.is_gray([frame])
    frame[1, :1, 0] = 0.6  # one more pixel tips it over
    assert not frames.is_gray([frame])


def test_luma_planes_go_back_into_the_same_rgb_frame():
    rng = np.random.default_rng(6)
    frame = rng.random((37, 53, 3), dtype=np.float32)
    planes, chroma = frames.planes_of(frame, "luma")
    assert planes.shape == (1, 37, 53) and chroma.shape == (37, 53, 2)
    reference = cv2.cvtColor(np.concatenate([planes[0][..., None], chroma], axis=2), cv2.COLOR_YCrCb2RGB)
    np.testing.assert_array_equal(frames.frame_of(planes, chroma, "luma"), reference)
    # OpenCV's float YCrCb coefficients are not exact inverses: 2.5e-4 here, a 16th of a grey level.
    np.testing.assert_allclose(frames.frame_of(planes, chroma, "luma"), frame, atol=1e-3)
