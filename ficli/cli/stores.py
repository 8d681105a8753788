"""The OME-Zarr side of `ficli enhance` and `ficli degrade`: which inputs are zarr stores, where
their outputs go, and one call per store into the library, with a progress bar by block.

`enhance IN.ome.zarr --out OUT.ome.zarr` writes the store OUT.ome.zarr; `--out FOLDER` (a name not
ending in .zarr, or several stores) writes FOLDER/IN.ome.zarr for each. Options that only a store
takes (--pyramid, --block, --scheduler) are refused for image files, and stores and image files
are not mixed in one run (their outputs follow different rules).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rich.markup import escape

from ficli.console import console, note, progress_bar, shard_name, usage_errors
from ficli.errors import ConfigError, FicliError

STORE_INTERRUPTED = ("interrupted: the blocks (or planes) written are complete and marked in the output store; rerun with "
                     "--skip-existing to go on from the first one not written")


def store_inputs(inputs: list[str]) -> list[Path]:
    """The inputs as zarr stores when every one is a store, [] when none is; ConfigError for a mix.
    Lists (`-`, @FILE) are expanded first."""
    from ficli.image import ngff
    from ficli.image.paths import expand_lists

    paths = [Path(p) for p in expand_lists(inputs)] if not any(p == "-" for p in inputs) else []
    stores = [p for p in paths if ngff.is_store(p)]
    if stores and len(stores) != len(paths):
        other = next(p for p in paths if not ngff.is_store(p))
        with usage_errors():
            raise ConfigError(f"{other} is not an OME-Zarr store but {stores[0]} is: give stores and image files in "
                              "separate runs (their outputs follow different rules)")
    return stores


def refuse_store_options(**given) -> None:
    """Usage error (exit 2) naming options that only OME-Zarr inputs take, when given for files."""
    named = [name for name, value in given.items() if value]
    if named:
        with usage_errors():
            raise ConfigError(f"{', '.join(named)}: only for OME-Zarr inputs (IN.ome.zarr); image files are enhanced "
                              "whole (--tile bounds their memory)")


def store_outputs(stores: list[Path], out: Path, shard: tuple[int, int] | None, suffix: str = "") -> dict[Path, Path]:
    """Each store's output store: --out itself when it names a store (.zarr) and one input is given,
    else OUT/NAME (with --suffix before .ome.zarr or .zarr); only the --shard part of the stores.
    Locks each output (beside it) for this run."""
    from ficli.image import io
    from ficli.image.paths import shard_part

    if str(out).rstrip("/").lower().endswith(".zarr") and len(stores) > 1:
        raise FicliError(f"--out {out}: names one store, but {len(stores)} stores are given; give a folder")
    names = [with_suffix(s.name, suffix) for s in stores]
    if len(set(n.casefold() for n in names)) != len(names):
        raise FicliError("two input stores have the same name; their outputs would clash: enhance them in separate runs")
    outs = {s: (out if str(out).rstrip("/").lower().endswith(".zarr") else out / name) for s, name in zip(stores, names)}
    mine = shard_part(list(outs), shard, key=lambda s: (s.name, str(s)))
    for src in mine:
        io.lock_output(outs[src], part=shard_name(shard))
    return {src: outs[src] for src in mine}


def with_suffix(name: str, suffix: str) -> str:
    """cells.ome.zarr with --suffix _sr: cells_sr.ome.zarr."""
    for ext in (".ome.zarr", ".zarr"):
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)] + suffix + name[-len(ext):]
    return name + suffix


def enhance_stores(stores: list[Path], out: Path, options, model, *, quiet: bool, shard=None, compile_model: bool = False,
                   suffix: str = "") -> None:
    """Enhance each store (`chunked.enhance_store` with `options`, a `StoreOptions`), the model loaded
    once here (and once per worker on a cluster); a progress bar moves by block."""
    from ficli.image import ngff, provenance
    from ficli.inference.chunked import enhance_store
    from ficli.inference.device import resolve_device
    from ficli.inference.runtime import check_coarse, ready_generator

    ngff.require_zarr()
    outs = store_outputs(stores, out, shard, suffix)
    from ficli.image.io import check_dtype

    for src, dest in outs.items():  # every store and output checked before the model loads
        check_dtype(ngff.open_image(src).dtype, src)
        ngff.check_store_output(src, dest, overwrite=options.overwrite, skip_existing=options.skip_existing)
    loaded = ready_generator(model, resolve_device(options.tile.device), compile_model=compile_model, on_notice=note)
    with usage_errors():
        options = dataclasses.replace(options, keep_coarse=check_coarse(loaded[1], options.keep_coarse))
    base = provenance.base("enhance", **provenance.model_fields(loaded[1]["path"]))
    start = time.perf_counter()
    for src, dest in outs.items():
        with progress_bar(quiet) as progress:
            task = progress.add_task(f"enhance {src.name}", total=None, rate="")

            def on_block(block, message, total, task=task):
                progress.update(task, advance=1, total=total)
                if message is not None:
                    progress.console.print(f"[red]failed:[/] {escape(message)}", highlight=False, soft_wrap=True)

            report = enhance_store(src, dest, options, loaded=loaded, record={**base, "output": dest.name},
                                   on_notice=note, on_block=on_block)
        if not quiet:
            words = "already complete (--skip-existing)" if report.total == 0 else \
                f"{len(report.done)} of {report.total} blocks written" + (f", {report.skipped} were already" if report.skipped else "")
            console.print(f"enhance: {dest}: {words} in {time.perf_counter() - start:.1f} s", highlight=False, soft_wrap=True)


def degrade_stores(stores: list[Path], out: Path, settings, seed: int, *, overwrite: bool, skip_existing: bool,
                   pyramid: int, quiet: bool, shard=None, suffix: str = "") -> None:
    """Degrade each store plane by plane (`degrade.degrade_store`)."""
    from ficli.image import ngff, provenance
    from ficli.image.degrade import degrade_store

    ngff.require_zarr()
    outs = store_outputs(stores, out, shard, suffix)
    base = provenance.base("degrade", degradation={**settings.__dict__, "seed": seed})
    for src, dest in outs.items():
        start = time.perf_counter()
        written = degrade_store(src, dest, settings, seed, overwrite=overwrite, skip_existing=skip_existing, pyramid=pyramid,
                                record={**base, "output": dest.name}, on_notice=note)
        if not quiet:
            console.print(f"degrade: {dest}: {written} plane(s) written in {time.perf_counter() - start:.1f} s",
                          highlight=False, soft_wrap=True)
