"""OME-Zarr in and out (issue 28): NGFF 0.4 and 0.5 read and written, checked with ome-zarr-py's own
writer and reader; chunk-by-chunk enhancement equal to the in-memory engine; resume after an
interruption; a dask LocalCluster run equal to the local one; --shard parts that cover a folder once;
bad stores refused by name. Small arrays and a tiny random model (tests/conftest.py), real stores in
tmp_path."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr", reason="OME-Zarr needs the zarr extra: pip install -e '.[zarr]'")
pytest.importorskip("ome_zarr", reason="the NGFF reader of the tests: pip install -e '.[zarr]'")

import torch  # noqa: E402
from ome_zarr.format import FormatV04, FormatV05  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Multiscales, Reader  # noqa: E402
from ome_zarr.writer import write_image as ome_write_image  # noqa: E402

from conftest import random_model_file  # noqa: E402
from ficli.image import ngff  # noqa: E402
from ficli.image.degrade import Degradation, coarse_kept, degrade, keep_coarse_array, resize_array, seed_for  # noqa: E402
from ficli.image.intensity import denormalize, normalize  # noqa: E402
from ficli.image.io import from_unit, to_unit, write_image  # noqa: E402
from ficli.image.phantom import phantom, to_dtype  # noqa: E402
from ficli.inference import chunked  # noqa: E402
from ficli.inference.engine import TileConfig, run_tiled  # noqa: E402
from ficli.inference.runtime import load_generator, told  # noqa: E402
from ficli.model.nets import GeneratorConfig, receptive_field  # noqa: E402

COND = GeneratorConfig(features=8, growth=4, layers=1, blocks=1, scale_input=True)  # receptive field 22 px
FORMATS = {"0.4": FormatV04(), "0.5": FormatV05()}
TILE = ["--tile", "128", "--overlap", "24"]  # overlap >= the tiny model's receptive field: tiles are exact


@pytest.fixture(scope="module")
def cond_model(tmp_path_factory) -> Path:
    return random_model_file(tmp_path_factory.mktemp("zm") / "cond.safetensors", COND, seed=3)


def pixels(channels: int = 2, height: int = 300, width: int = 520) -> np.ndarray:
    return np.stack([to_dtype(phantom(height, width, seed=10 + c), np.uint16, max_value=4095) for c in range(channels)])


def ome_store(path: Path, data: np.ndarray, version: str = "0.5", axes: str = "cyx", chunk: int = 64, levels: int = 1) -> Path:
    """A store written by ome-zarr-py (the independent writer): pixel size 0.5 µm, omero channels."""
    fmt = FORMATS[version]
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    channels = [{"label": f"ch{c}", "color": "00FF00", "window": {"start": 0, "end": 4095, "min": 0, "max": 65535}}
                for c in range(data.shape[0])] if "c" in axes else None
    ome_write_image(data, group, axes=axes, fmt=fmt, scale_factors=tuple(2 ** k for k in range(1, levels)),
                    storage_options={"chunks": (1,) * (data.ndim - 2) + (chunk, chunk)},
                    scale={"y": 0.5, "x": 0.5}, axes_units={"y": "micrometer", "x": "micrometer"},
                    **({"omero": {"channels": channels}} if channels else {}))
    return path


def level0(path: Path) -> np.ndarray:
    return np.asarray(zarr.open_group(str(path), mode="r")["s0"][...])


def in_memory(model: Path, data: np.ndarray, scale: float, ranges, tile: TileConfig, upscale: int = 1) -> np.ndarray:
    """The whole-image engine on each channel, given the same intensity map and blur scale, the input's
    coarse content kept where `ficli enhance` keeps it (below a told s of 3.25): the reference."""
    generator, _ = load_generator(model, torch.device("cpu"))
    generator = told(generator, scale)
    out = []
    for plane, (lo, hi) in zip(data, ranges):
        x = to_unit(plane)
        if upscale > 1:
            x = resize_array(x, (x.shape[0] * upscale, x.shape[1] * upscale))
        x = normalize(x, lo, hi)[None]
        y = run_tiled(generator, x, tile)
        y = denormalize((keep_coarse_array(y, x, scale) if coarse_kept(None, scale) else y)[0], lo, hi)
        out.append(y * np.float32(65535))
    return np.stack(out)


# --- reading and writing NGFF -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_reads_what_ome_zarr_writes(tmp_path, version):
    data = pixels()
    image = ngff.open_image(ome_store(tmp_path / "in.ome.zarr", data, version, levels=2))
    assert (image.version, image.axes, image.shape, image.dtype) == (version, "cyx", data.shape, np.uint16)
    assert [lv.shape for lv in image.levels] == [data.shape, (2, 150, 260)]
    assert image.levels[0].scale == (1.0, 0.5, 0.5) and image.levels[1].scale == (1.0, 1.0, 1.0)
    assert [c["label"] for c in image.omero["channels"]] == ["ch0", "ch1"]
    assert np.array_equal(np.asarray(ngff.level_array(image)[...]), data)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_enhance_round_trip_is_read_by_ome_zarr(run_cli, tmp_path, cond_model, version):
    """enhance --upscale 2 --pyramid 2 writes the input's NGFF version; ome-zarr-py's reader (napari's)
    finds the axes, the pixel size halved, three levels, the channels and ficli's record."""
    src = ome_store(tmp_path / "in.ome.zarr", pixels(height=120, width=200), version)
    out = tmp_path / "out.ome.zarr"
    result = run_cli("enhance", src, "--out", out, "--model", cond_model, "--scale", "2", "--upscale", "2", "--pyramid", "2", *TILE)
    assert result.exit_code == 0, result.output
    nodes = list(Reader(parse_url(str(out)))())
    node = nodes[0]
    assert node.load(Multiscales) is not None
    meta = node.metadata
    assert [a["name"] for a in meta["axes"]] == ["c", "y", "x"]
    scales = [t[0]["scale"] for t in meta["coordinateTransformations"]]
    assert scales == [[1.0, 0.25, 0.25], [1.0, 0.5, 0.5], [1.0, 1.0, 1.0]]
    assert [tuple(d.shape) for d in node.data] == [(2, 240, 400), (2, 120, 200), (2, 60, 100)]
    assert meta["channel_names"] == ["ch0", "ch1"]
    group = zarr.open_group(str(out), mode="r")
    assert group.metadata.zarr_format == (2 if version == "0.4" else 3)
    attrs = dict(group.attrs)
    record = attrs["ficli"]
    assert (attrs.get("multiscales") or attrs["ome"]["multiscales"])[0]["datasets"][0]["path"] == "s0"
    assert record["complete"] is True and record["upscale"] == 2 and record["blur_scale"] == [2.0, 2.0]
    assert len(record["normalisation"]["lo_hi"]) == 2 and "percentiles of all" in record["normalisation"]["estimated_from"]
    assert not (out / ngff.PROGRESS_DIR).exists()
    shown = run_cli("info", out, "--json")
    assert shown.exit_code == 0 and json.loads(shown.output)["blur_scale"] == [2.0, 2.0]
    full = np.asarray(group["s0"][...]).astype(np.float64)  # level 1 is level 0's 2×2 means, rounded
    expect = (full[:, 0::2, 0::2] + full[:, 1::2, 0::2] + full[:, 0::2, 1::2] + full[:, 1::2, 1::2]) / 4
    assert np.array_equal(np.asarray(group["s1"][...]), np.rint(expect).astype(np.uint16))


def test_axes_tczyx_and_yx(tmp_path, cond_model, run_cli):
    """A 5-D store (t, c, z planes each their own blocks) and a bare 2-D one are enhanced plane by
    plane, into --out FOLDER under their names with --suffix before .ome.zarr."""
    five = pixels(2, 100, 140).reshape(1, 2, 1, 100, 140)
    src5 = ome_store(tmp_path / "five.ome.zarr", five, "0.5", axes="tczyx")
    two = ome_store(tmp_path / "two.ome.zarr", pixels(1, 100, 140)[0], "0.4", axes="yx")
    result = run_cli("enhance", src5, two, "--out", tmp_path / "o", "--model", cond_model, "--scale", "2", *TILE, "--suffix", "_sr")
    assert result.exit_code == 0, result.output
    assert level0(tmp_path / "o" / "five_sr.ome.zarr").shape == five.shape
    assert level0(tmp_path / "o" / "two_sr.ome.zarr").shape == (100, 140)


# --- chunk by chunk equals the in-memory engine -----------------------------------------------------


@pytest.mark.parametrize("scale", [2.0, 4.0])
def test_chunked_equals_in_memory(tmp_path, cond_model, one_torch_thread, scale):
    """Blocks of 256 px (several per channel) read with a halo of the receptive field give the whole
    image's engine result, given the same intensity map and s (2: the coarse content kept; 4: the
    output as it is, and the record says which): measured max |Δ| 0 grey levels on uint16 and below
    1e-3 grey levels (float32 output) everywhere, border included."""
    data = pixels(2, 300, 520)
    src = ome_store(tmp_path / "in.ome.zarr", data, chunk=100)  # 18 chunks a channel: all are sampled
    tile = TileConfig(tile=128, overlap=24, batch=1)
    options = chunked.StoreOptions(model=str(cond_model), scale=scale, tile=tile, block=256, dtype="float32")
    report = chunked.enhance_store(src, tmp_path / "out.ome.zarr", options)
    assert report.total == 2 * 2 * 3 and len(report.done) == report.total  # 2 channels × 2 × 3 blocks of 256
    record = ngff.read_record(tmp_path / "out.ome.zarr")
    ranges = [(lo / 65535, hi / 65535) for lo, hi in record["normalisation"]["lo_hi"]]
    expect_ranges = [(float(np.percentile(to_unit(p), 0.1)), float(np.percentile(to_unit(p), 99.9))) for p in data]
    assert np.allclose(ranges, expect_ranges, atol=1e-6)  # few chunks: all are read, as the whole image
    assert record["keep_coarse"] == [scale < 3.25] * 2
    reference = in_memory(cond_model, data, scale, ranges, tile)
    got = level0(tmp_path / "out.ome.zarr")
    assert got.dtype == np.float32
    assert np.abs(got - reference).max() < 1e-3


def test_chunked_with_upscale_equals_in_memory_away_from_the_border(tmp_path, cond_model, one_torch_thread):
    data = pixels(1, 150, 260)
    src = ome_store(tmp_path / "in.ome.zarr", data, chunk=64)
    tile = TileConfig(tile=128, overlap=24, batch=1)
    options = chunked.StoreOptions(model=str(cond_model), scale=2.0, upscale=2, tile=tile, block=256, dtype="float32")
    chunked.enhance_store(src, tmp_path / "out.ome.zarr", options)
    record = ngff.read_record(tmp_path / "out.ome.zarr")
    ranges = [(lo / 65535, hi / 65535) for lo, hi in record["normalisation"]["lo_hi"]]
    diff = np.abs(level0(tmp_path / "out.ome.zarr") - in_memory(cond_model, data, 2.0, ranges, tile, upscale=2))
    assert diff.shape == (1, 300, 520)
    assert diff[:, 8:-8, 8:-8].max() < 1e-2  # the bicubic's float rounding, away from the image border


@pytest.mark.slow
def test_default_model_blocks_equal_the_whole_image(tmp_path, run_cli):
    """The default model (receptive field 130 px) with tiles as large as a block's region: blocks of
    256 px give the whole-image pass (one tile), border included (measured: max |Δ| 0.0 in float32)."""
    data = pixels(1, 400, 400)
    src = ome_store(tmp_path / "in.ome.zarr", data, chunk=128)
    whole = tmp_path / "whole.tif"
    write_image(whole, data[0])
    common = ["--scale", "2", "--tile", "1024", "--dtype", "float32", "-q"]
    assert run_cli("enhance", src, "--out", tmp_path / "z.ome.zarr", "--block", "256", *common).exit_code == 0
    assert run_cli("enhance", whole, "--out", tmp_path / "m", *common).exit_code == 0
    from ficli.image.io import read_image

    reference = read_image(tmp_path / "m" / "whole.tif").data
    assert np.abs(level0(tmp_path / "z.ome.zarr")[0] - reference).max() < 1e-3


def test_receptive_radius_formula_matches_the_probe():
    small = GeneratorConfig(features=4, growth=4, layers=1, blocks=2)
    assert chunked.receptive_radius(small) == receptive_field(small)
    assert chunked.receptive_radius(GeneratorConfig()) == 130  # the probe's value, docs of ficli.model.nets


# --- resume, cluster ---------------------------------------------------------------------------------


@pytest.mark.hostile
def test_interrupted_run_resumes_at_the_first_unwritten_block(tmp_path, cond_model, run_cli, one_torch_thread):
    src = ome_store(tmp_path / "in.ome.zarr", pixels(2, 300, 520), chunk=64)
    args = ["--model", cond_model, "--scale", "2", "--block", "256", *TILE]
    assert run_cli("enhance", src, "--out", tmp_path / "whole.ome.zarr", *args).exit_code == 0
    options = chunked.StoreOptions(model=str(cond_model), scale=2.0, tile=TileConfig(tile=128, overlap=24, batch=1), block=256)
    seen = []

    def stop_after_five(block, message, total):
        seen.append(block.id)
        if len(seen) == 5:
            raise KeyboardInterrupt

    out = tmp_path / "out.ome.zarr"
    with pytest.raises(KeyboardInterrupt):
        chunked.enhance_store(src, out, options, on_block=stop_after_five)
    assert len(ngff.done_ids(out)) == 5 and ngff.read_record(out)["complete"] is False
    assert "32 of 45 chunks, evenly spread" in ngff.read_record(out)["normalisation"]["estimated_from"]
    refused = run_cli("enhance", src, "--out", out, *args)
    assert refused.exit_code == 1 and "exists already" in refused.output and "--skip-existing" in refused.output
    rest = []
    report = chunked.enhance_store(src, out, chunked.StoreOptions(**{**options.__dict__, "skip_existing": True}),
                                   on_block=lambda b, m, t: rest.append(b.id))
    assert (report.skipped, len(rest)) == (5, 12 - 5) and not set(rest) & set(seen)
    assert np.array_equal(level0(out), level0(tmp_path / "whole.ome.zarr"))
    assert ngff.read_record(out)["complete"] is True and not (out / ngff.PROGRESS_DIR).exists()
    again = run_cli("enhance", src, "--out", out, *args, "--skip-existing")
    assert again.exit_code == 0 and "already complete" in again.output


@pytest.mark.hostile
def test_ctrl_c_on_a_store_says_how_to_resume(tmp_path, cond_model, run_cli, monkeypatch):
    src = ome_store(tmp_path / "in.ome.zarr", pixels(1, 300, 520), chunk=64)
    real = chunked.write_block
    calls = []

    def write_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(chunked, "write_block", write_then_stop)
    result = run_cli("enhance", src, "--out", tmp_path / "o.ome.zarr", "--model", cond_model, "--scale", "2", "--block", "256", *TILE)
    assert result.exit_code == 130 and "--skip-existing to go on from the first one not written" in " ".join(result.output.split())
    assert len(ngff.done_ids(tmp_path / "o.ome.zarr")) == 2


@pytest.mark.hostile
def test_resume_with_other_settings_is_refused(tmp_path, cond_model, run_cli):
    src = ome_store(tmp_path / "in.ome.zarr", pixels(1, 120, 200), chunk=64)
    options = chunked.StoreOptions(model=str(cond_model), scale=2.0, tile=TileConfig(tile=128, overlap=24, batch=1), block=64)

    def stop(block, message, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        chunked.enhance_store(src, tmp_path / "o.ome.zarr", options, on_block=stop)
    result = run_cli("enhance", src, "--out", tmp_path / "o.ome.zarr", "--model", cond_model, "--scale", "3", *TILE, "--skip-existing")
    assert result.exit_code == 1 and "blur_scale" in result.output and "--overwrite" in result.output


def test_local_cluster_equals_the_local_run(tmp_path, cond_model, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    src = ome_store(tmp_path / "in.ome.zarr", pixels(2, 300, 520), chunk=64)
    tile = TileConfig(tile=128, overlap=24, batch=1)
    local = chunked.StoreOptions(model=str(cond_model), scale=2.0, tile=tile, block=256, dtype="float32")
    chunked.enhance_store(src, tmp_path / "local.ome.zarr", local)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        options = chunked.StoreOptions(**{**local.__dict__, "scheduler": cluster.scheduler_address})
        report = chunked.enhance_store(src, tmp_path / "cluster.ome.zarr", options)
        workers = len(cluster.workers)
    assert len(report.done) == 12 and workers == 2
    assert ngff.read_record(tmp_path / "cluster.ome.zarr")["scheduler"] == cluster.scheduler_address
    assert np.abs(level0(tmp_path / "cluster.ome.zarr") - level0(tmp_path / "local.ome.zarr")).max() < 1e-3


@pytest.mark.hostile
def test_scheduler_that_does_not_answer(tmp_path, cond_model, run_cli, monkeypatch):
    monkeypatch.setattr(chunked, "CONNECT_TIMEOUT", "1s")
    src = ome_store(tmp_path / "in.ome.zarr", pixels(1, 64, 64))
    result = run_cli("enhance", src, "--out", tmp_path / "o.ome.zarr", "--model", cond_model, "--scale", "2",
                     "--scheduler", "tcp://127.0.0.1:9")
    assert result.exit_code == 1 and "no dask scheduler answers" in result.output
    assert not (tmp_path / "o.ome.zarr").exists()


# --- shards of a folder ------------------------------------------------------------------------------


def test_shards_cover_a_folder_once(tmp_path, run_cli, tiny_identity_model):
    folder = tmp_path / "in"
    names = [f"im{i:02d}.png" for i in range(7)] + ["sub/x.png"]
    for i, name in enumerate(names):
        write_image(folder / name, to_dtype(phantom(24, 32, seed=i), np.uint8))
    out = tmp_path / "out"
    parts = []
    for i in (1, 2, 3):
        result = run_cli("enhance", folder, "-r", "--out", out, "--model", tiny_identity_model, "--shard", f"{i}/3")
        assert result.exit_code == 0, result.output
        parts.append({r["output"] for r in json.loads((out / f"ficli-run.shard{i}of3.json").read_text())["files"]})
    assert sum(len(p) for p in parts) == len(names) and set().union(*parts) == set(names)
    assert sorted(len(p) for p in parts) == [2, 3, 3]
    again = run_cli("enhance", folder, "-r", "--out", out, "--model", tiny_identity_model, "--shard", "2/3", "--skip-existing")
    assert again.exit_code == 0 and f"0 done, {len(parts[1])} skipped" in again.output


def test_shard_parts_do_not_depend_on_the_listing_order():
    from ficli.image.paths import InputFile, shard_part

    items = [InputFile(Path(f"/d/{n}"), Path(n)) for n in ("c.png", "a.png", "b.png", "e.png", "d.png")]
    parts = [shard_part(items, (i, 2)) for i in (1, 2)]
    assert parts == [shard_part(items[::-1], (i, 2)) for i in (1, 2)]
    assert [p.rel.name for p in parts[0]] == ["a.png", "c.png", "e.png"]


@pytest.mark.hostile
@pytest.mark.parametrize("value", ["0/3", "4/3", "a/b", "3", "1/0", "-1/2"])
def test_bad_shard_is_a_usage_error(run_cli, tmp_path, phantom_folder, value):
    result = run_cli("enhance", phantom_folder, "--out", tmp_path / "o", "--shard", value)
    assert result.exit_code == 2 and "--shard" in result.output
    assert not (tmp_path / "o").exists()


# --- degrade and evaluate ------------------------------------------------------------------------------


def test_degrade_store_plane_by_plane(run_cli, tmp_path):
    data = pixels(2, 96, 128)
    src = ome_store(tmp_path / "in.ome.zarr", data, "0.4")
    result = run_cli("degrade", src, "--out", tmp_path / "lr.ome.zarr", "--scale", "2", "--poisson-peak", "300", "--seed", "5")
    assert result.exit_code == 0, result.output
    assert zarr.open_group(str(tmp_path / "lr.ome.zarr"), mode="r").metadata.zarr_format == 2
    settings = Degradation(scale=2.0, poisson_peak=300.0)
    expect = np.stack([from_unit(degrade(to_unit(p), settings, seed_for(5, f"in.ome.zarr:{c}")), np.uint16) for c, p in enumerate(data)])
    assert np.array_equal(level0(tmp_path / "lr.ome.zarr"), expect)
    scores = run_cli("evaluate", src, tmp_path / "lr.ome.zarr", "--json", tmp_path / "s.json", "-q")
    assert scores.exit_code == 0, scores.output
    from ficli.tools.evaluate import score_images

    row = json.loads((tmp_path / "s.json").read_text())["images"][0]
    assert row["psnr_db"] == pytest.approx(score_images(data, expect, is_stack=True).psnr, abs=1e-6)


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.hostile
def test_zarr_group_that_is_not_ngff(run_cli, tmp_path):
    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    group.create_array("0", shape=(10, 10), dtype="uint8")
    result = run_cli("enhance", tmp_path / "plain.zarr", "--out", tmp_path / "o.ome.zarr")
    assert result.exit_code == 1 and "not an OME-Zarr image" in result.output and "multiscales" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o.ome.zarr").exists()


@pytest.mark.hostile
@pytest.mark.parametrize("attrs, words", [
    ({"multiscales": [{"version": "0.4", "datasets": [{"path": "0"}]}]}, "no 'axes'"),
    ({"multiscales": [{"version": "0.4", "axes": ["y", "x"], "datasets": []}]}, "lists no datasets"),
    ({"multiscales": [{"version": "0.4", "axes": ["x", "y"], "datasets": [{"path": "0"}]}]}, "axes x,y"),
    ({"multiscales": [{"version": "0.4", "axes": ["y", "x"], "datasets": [{"path": "missing"}]}]}, "has no zarr array"),
    ({"multiscales": [{"version": "0.3", "axes": ["y", "x"], "datasets": [{"path": "0"}]}]}, "version 0.3"),
], ids=["no-axes", "no-datasets", "axes-order", "missing-array", "old-version"])
def test_ngff_that_lacks_something_is_named(run_cli, tmp_path, attrs, words):
    group = zarr.open_group(str(tmp_path / "bad.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=(10, 10), dtype="uint8")
    group.attrs.update(attrs)
    result = run_cli("enhance", tmp_path / "bad.ome.zarr", "--out", tmp_path / "o.ome.zarr")
    assert result.exit_code == 1 and words in result.output and "bad.ome.zarr" in result.output


@pytest.mark.hostile
def test_signed_pixels_are_refused_before_the_model_loads(run_cli, tmp_path):
    src = ome_store(tmp_path / "in.ome.zarr", pixels(1, 64, 64).astype(np.int16))
    result = run_cli("enhance", src, "--out", tmp_path / "o.ome.zarr")  # the default model: refused before it loads
    assert result.exit_code == 1 and "pixel type int16 is not supported" in result.output


@pytest.mark.hostile
def test_unreadable_chunk_fails_its_block_and_the_rest_is_done(run_cli, tmp_path, cond_model):
    src = ome_store(tmp_path / "in.ome.zarr", pixels(1, 300, 520), chunk=64)
    args = ["--model", cond_model, "--scale", "2", "--block", "256", "--no-normalize", *TILE]
    bad = src / "s0" / "c" / "0" / "4" / "7"  # the chunk at rows 256-299, columns 448-511 (blocks of 256: 2 × 3)
    good = bad.read_bytes()
    bad.write_bytes(b"not zstd at all")
    out = tmp_path / "out.ome.zarr"
    result = run_cli("enhance", src, "--out", out, *args)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    # the four blocks whose halo reaches that chunk fail, naming its file; the other two are written
    assert f"{src}/s0/c/0/4/7 cannot be read" in text and "4 of 6 blocks" in text and "--skip-existing" in text
    assert len(ngff.done_ids(out)) == 2
    bad.write_bytes(good)
    again = run_cli("enhance", src, "--out", out, *args, "--skip-existing")
    assert again.exit_code == 0 and "4 of 6 blocks written, 2 were already" in again.output
    whole = run_cli("enhance", src, "--out", tmp_path / "whole.ome.zarr", *args)
    assert whole.exit_code == 0 and np.array_equal(level0(out), level0(tmp_path / "whole.ome.zarr"))


@pytest.mark.hostile
def test_output_store_rules(run_cli, tmp_path, cond_model):
    src = ome_store(tmp_path / "in.ome.zarr", pixels(1, 64, 64))
    args = ["--model", cond_model, "--scale", "2"]
    same = run_cli("enhance", src, "--out", src, *args, "--overwrite")
    assert same.exit_code == 1 and "is the input store" in same.output
    inside = run_cli("enhance", src, "--out", src / "x.ome.zarr", *args)
    assert inside.exit_code == 1 and "inside" in inside.output
    folder = tmp_path / "notes.zarr"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    refused = run_cli("enhance", src, "--out", folder, *args, "--overwrite")
    assert refused.exit_code == 1 and "not a zarr store" in refused.output and (folder / "keep.txt").exists()
    assert run_cli("enhance", src, "--out", tmp_path / "o.ome.zarr", *args).exit_code == 0
    again = run_cli("enhance", src, "--out", tmp_path / "o.ome.zarr", *args)
    assert again.exit_code == 1 and "exists already" in again.output
    assert run_cli("enhance", src, "--out", tmp_path / "o.ome.zarr", *args, "--overwrite").exit_code == 0


@pytest.mark.hostile
def test_store_options_for_image_files_and_mixed_inputs(run_cli, tmp_path, phantom_folder):
    src = ome_store(tmp_path / "in.ome.zarr", pixels(1, 64, 64))
    files = run_cli("enhance", phantom_folder, "--out", tmp_path / "o", "--pyramid", "2")
    assert files.exit_code == 2 and "only for OME-Zarr" in files.output
    mixed = run_cli("enhance", src, phantom_folder / "a8.png", "--out", tmp_path / "o")
    assert mixed.exit_code == 2 and "separate runs" in " ".join(mixed.output.split())


@pytest.mark.hostile
def test_without_zarr_installed_the_error_says_how(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_zarr(name, *args, **kwargs):
        if name == "zarr" or name.startswith("zarr."):
            raise ImportError("No module named 'zarr'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zarr)
    from ficli.errors import ConfigError

    with pytest.raises(ConfigError, match=r"pip install 'ficli\[zarr\]'"):
        ngff.open_image(tmp_path)
