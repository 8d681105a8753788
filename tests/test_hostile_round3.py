"""Issue 25 (outputs users can trust, round 3): silently wrong results and tracebacks an outside
probe found, each reproduced here with real files and refused by name (docs/RELIABILITY.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ficli.image import io
from ficli.model import modelfile
from ficli.errors import ModelFileError
from hostile_files import good_gray

hostile = pytest.mark.hostile
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _with_metadata(source, dest, **changes):
    """A copy of model file `source` at `dest` whose config metadata has `changes` (tensors as they are)."""
    with safe_open(str(source), framework="pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["config"])
    config.update({k: v for k, v in changes.items() if k != "scale"})
    meta["config"] = json.dumps(config)
    if "scale" in changes:
        meta["scale"] = str(changes["scale"])
    save_file(load_file(str(source)), str(dest), metadata=meta)
    return dest


# ------------------------------------------------------------- 14: impossible settings in a model file


IMPOSSIBLE = [({"features": -5}, "features = -5"), ({"blocks": -1}, "blocks = -1"), ({"features": "x"}, "features = 'x'"),
              ({"layers": 0}, "layers = 0"), ({"growth": 2.5}, "growth = 2.5"), ({"scale_input": "yes"}, "scale_input = 'yes'"),
              ({"scale": 0}, "scale = 0")]


@hostile
@pytest.mark.parametrize("changes, words", IMPOSSIBLE, ids=[w.split(" =")[0] + str(i) for i, (_, w) in enumerate(IMPOSSIBLE)])
def test_model_file_with_impossible_settings_is_refused_naming_file_and_setting(tmp_path, tiny_identity_model, changes, words):
    bad = _with_metadata(tiny_identity_model, tmp_path / "bad.safetensors", **changes)
    for load in (modelfile.load_model, modelfile.model_info):
        with pytest.raises(ModelFileError) as caught:
            load(bad)
        assert str(bad) in str(caught.value) and words in str(caught.value), caught.value


@hostile
@pytest.mark.parametrize("command", ["info", "enhance", "export"])
def test_commands_refuse_a_model_file_with_impossible_settings(run_cli, tmp_path, tiny_identity_model, command):
    bad = _with_metadata(tiny_identity_model, tmp_path / "bad.safetensors", features=-5)
    io.write_image(tmp_path / "in" / "a.png", good_gray())
    args = {"info": ["info", bad], "enhance": ["enhance", tmp_path / "in", "--out", tmp_path / "out", "--model", bad, "--device", "cpu"],
            "export": ["export", "--model", bad, "--format", "torchscript", "--out", tmp_path / "m.pt"]}[command]
    result = run_cli(*args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "features = -5" in result.output and "bad.safetensors" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.pt").exists()


@hostile
def test_api_load_model_refuses_impossible_settings(tmp_path, tiny_identity_model):
    from ficli import api

    bad = _with_metadata(tiny_identity_model, tmp_path / "bad.safetensors", blocks=-1)
    with pytest.raises(ModelFileError, match="blocks = -1"):
        api.load_model(bad)


@hostile
def test_info_checks_the_tensors_against_the_metadata(run_cli, tmp_path, tiny_identity_model):
    # Issue 25 item 24: `info` called a file valid whose tensors do not fit its metadata.
    bad = _with_metadata(tiny_identity_model, tmp_path / "bad.safetensors", features=16)
    result = run_cli("info", bad)
    assert result.exit_code == 1 and "tensors do not match the architecture" in result.output, result.output


# ------------------------------------------------------------------ 13: `-` with standard input closed


def _ficli_shell(tmp_path, line: str):
    """Run `python -m ficli LINE` through bash (for redirections such as `<&-`) in `tmp_path`."""
    import os
    import shlex
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(["bash", "-c", f"{shlex.quote(sys.executable)} -m ficli {line}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@hostile
@pytest.mark.parametrize("command", ["degrade - --out out", "enhance - --out out --device cpu", "evaluate - sr"])
def test_dash_with_standard_input_closed_is_a_clear_error(tmp_path, command):
    io.write_image(tmp_path / "sr" / "a.png", good_gray())
    result = _ficli_shell(tmp_path, f"{command} <&-")
    assert result.returncode == 1, result.stderr
    assert "standard input (-): is closed" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@hostile
@pytest.mark.parametrize("stdin", ["none", "closed"])
def test_expand_lists_with_no_standard_input_raises_input_error(monkeypatch, tmp_path, stdin):
    import sys

    from ficli.errors import InputError

    source = None
    if stdin == "closed":
        source = open(tmp_path / "x.txt", "w")
        source.close()
    monkeypatch.setattr(sys, "stdin", source)
    with pytest.raises(InputError, match="standard input"):
        io.expand_lists(["-"])


# ----------------------------------------------------------------------- 24: a list file with a BOM


@hostile
def test_list_file_with_a_utf8_byte_order_mark(run_cli, tmp_path):
    io.write_image(tmp_path / "a.png", good_gray())
    io.write_image(tmp_path / "b.png", good_gray(1))
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + f"{tmp_path / 'a.png'}\r\n{tmp_path / 'b.png'}\r\n".encode())
    assert io.expand_lists([f"@{listing}"]) == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    result = run_cli("degrade", f"@{listing}", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


# -------------------------------------------------------------- 12: degrade on a file name not UTF-8


@hostile
def test_degrade_of_a_file_name_that_is_not_utf8(run_cli, tmp_path):
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    latin1 = os.fsdecode(b"caf\xe9.png")
    io.write_image(folder / latin1, good_gray())
    io.write_image(folder / "z.png", good_gray(1))
    result = run_cli("degrade", folder, "--out", tmp_path / "out")
    assert result.exit_code == 0 and "2 done" in result.output, result.output
    assert sorted(os.fsencode(p.name) for p in (tmp_path / "out").iterdir()) == [b"caf\xe9.png", b"z.png"]
    assert io.read_image(tmp_path / "out" / latin1).data.shape == (16, 16)


# ------------------------------------------------ 20: checks that need no torch run before it loads


def _fresh(cwd, *args: str) -> tuple[int, str, bool]:
    """Run ficli in a new interpreter: (exit code, output, whether torch was imported)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; from typer.testing import CliRunner; from ficli.cli import app\n"
        f"r = CliRunner().invoke(app, {list(args)!r})\n"
        "print(r.output); print('EXIT', r.exit_code, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)
    *text, last = done.stdout.strip().splitlines()
    _, exit_code, imported = last.split()
    return int(exit_code), "\n".join(text) + done.stderr, imported == "True"


TORCH_FREE = {
    "enhance --tile 30": (["enhance", "in", "--out", "out", "--tile", "30"], 2, "--tile must be a positive multiple of 4"),
    "enhance --overlap": (["enhance", "in", "--out", "out", "--tile", "64", "--overlap", "32"], 2, "too small for --overlap"),
    "video --tile 30": (["video", "in/a.png", "--tile", "30"], 2, "--tile must be a positive multiple of 4"),
    "info missing": (["info", "nope.safetensors"], 1, "nope.safetensors: no such file"),
    "export missing": (["export", "--model", "nope.safetensors", "--format", "onnx", "--out", "x.onnx"], 1, "nope.safetensors: no such file"),
    "train missing data": (["train", "--data", "nope", "--val", "in", "--out", "run"], 1, "nope: training folder not found"),
    "train missing val": (["train", "--data", "in", "--val", "nope", "--out", "run"], 1, "nope: validation folder not found"),
    "train missing init": (["train", "--data", "in", "--val", "in", "--out", "run", "--init", "nope.safetensors"], 1,
                           "nope.safetensors: no such file"),
    "train missing continue": (["train", "--data", "in", "--val", "in", "--out", "run", "--continue-from", "nope.safetensors"], 1,
                               "nope.safetensors: no such file"),
}


@hostile
@pytest.mark.parametrize("case", list(TORCH_FREE))
def test_checks_that_need_no_torch_run_before_torch_is_imported(tmp_path, case):
    args, code, words = TORCH_FREE[case]
    io.write_image(tmp_path / "in" / "a.png", good_gray())
    exit_code, output, imported = _fresh(tmp_path, *args)
    assert exit_code == code and words in output, output
    assert not imported, "torch was imported before the check"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


# ------------------------------------------------------------------- 16: a crop no training can hold


@hostile
@pytest.mark.parametrize("crop, batch", [(40000, 2), (4100, 1), (2048, 128)])
def test_train_refuses_an_absurd_crop_before_making_the_run_folder(run_cli, tmp_path, crop, batch):
    io.write_image(tmp_path / "in" / "a.png", good_gray())
    result = run_cli("train", "--data", tmp_path / "in", "--val", tmp_path / "in", "--out", tmp_path / "run", "--crop", crop,
                     "--batch", batch, "--steps", "1", "--epochs", "1", "--features", "8", "--no-gan", "--device", "cpu")
    assert result.exit_code == 1 and f"--crop {crop}" in result.output and "give a smaller --crop" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


# ------------------------------------------------------- 19: --continue-from into a new folder


@hostile
def test_continue_from_into_a_new_folder_saves_its_best_model(run_cli, tmp_path):
    for i in range(2):
        io.write_image(tmp_path / "in" / f"g{i}.png", good_gray(i))
    fast = ("--steps", "1", "--batch", "2", "--crop", "16", "--features", "8", "--no-gan", "--device", "cpu", "--val-size", "16")
    first = run_cli("train", "--data", tmp_path / "in", "--val", tmp_path / "in", "--out", tmp_path / "a", "--epochs", "1", *fast)
    assert first.exit_code == 0, first.output
    result = run_cli("train", "--continue-from", tmp_path / "a" / "last.safetensors", "--data", tmp_path / "in", "--val", tmp_path / "in",
                     "--out", tmp_path / "b", "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert "no epoch was run" not in result.output and "at epoch 2" in result.output, result.output
    assert (tmp_path / "b" / "best.safetensors").is_file()
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["best_epoch"] == 2 and summary["epochs_run"] == 2


# ------------------------------------------------------------ 21: big-endian arrays through the api


@hostile
@pytest.mark.parametrize("dtype", [">u2", ">f4", ">f8"])
def test_api_enhance_reads_big_endian_arrays_by_their_values(tiny_identity_model, dtype):
    from ficli import api

    model = api.load_model(tiny_identity_model, device="cpu")
    native = (good_gray().astype(np.float64) / 255 if dtype[1] == "f" else good_gray().astype(np.uint16) * 257).astype(dtype[1:])
    big = native.astype(dtype)
    assert not big.dtype.isnative
    assert np.array_equal(api.enhance(model, big), api.enhance(model, native))


@hostile
@pytest.mark.parametrize("value, words", [(1e-300, "as small as 1e-300"), (1e39, r"as large as 1e\+39")])
def test_api_enhance_refuses_float64_values_float32_cannot_hold(tiny_identity_model, value, words):
    from ficli import api
    from ficli.errors import InputError

    model = api.load_model(tiny_identity_model, device="cpu")
    image = np.zeros((16, 16))
    image[3:9, 4:12] = value
    with pytest.raises(InputError, match=words):
        api.enhance(model, image)


# ------------------------------------------------------------ 15: bench frames no memory can hold


@hostile
@pytest.mark.parametrize("sizes", ["100000x100000", "640x360,8196x8192"])
def test_bench_refuses_frames_beyond_its_limit_before_allocating(run_cli, tmp_path, sizes):
    result = run_cli("bench", "--only", "generator", "--quick", "--device", "cpu", "--sizes", sizes)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "bench's limit of 67,108,864" in result.output, result.output


# ---------------------------------------------- 24: a FIFO named directly, an --out under a device


@hostile
@pytest.mark.parametrize("command", ["degrade", "enhance", "evaluate", "profile", "video"])
def test_a_fifo_named_directly_is_refused_as_a_fifo(run_cli, tmp_path, tiny_identity_model, command):
    import os

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    io.write_image(tmp_path / "hr" / "pipe.png", good_gray())
    args = {"degrade": ["degrade", fifo, "--out", tmp_path / "out"],
            "enhance": ["enhance", fifo, "--out", tmp_path / "out", "--model", tiny_identity_model, "--device", "cpu"],
            "evaluate": ["evaluate", fifo, tmp_path / "hr"],
            "profile": ["profile", fifo, "--line", "0,0,5,5", "--out", tmp_path / "p.png"],
            "video": ["video", fifo, "--model", tiny_identity_model, "--device", "cpu"]}[command]
    result = run_cli(*args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "pipe.png: is a named pipe (FIFO)" in result.output, result.output


@hostile
def test_video_out_under_a_device_names_the_device(run_cli, tmp_path, tiny_identity_model):
    import subprocess

    from ficli.video import ffmpeg

    clip = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg.ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=25", "-t", "0.2",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)], check=True)
    result = run_cli("video", clip, "--out", "/dev/full/x.mp4", "--model", tiny_identity_model, "--device", "cpu")
    assert result.exit_code == 1 and "/dev/full is not a folder" in result.output, result.output
    assert "File exists" not in result.output
