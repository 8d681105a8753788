"""Issue 25 (round 3), `ficli video`: options ffmpeg would refuse with its own words, frames a
variable frame rate would lose, notes that were false or missing (docs/RELIABILITY.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
