"""Running one operation over many files: skip what is done, keep going past a bad file, report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ficli.errors import FicliError, OutputError, is_out_of_memory
from ficli.image.io import InputFile, Protected, file_key, refuse_existing, remove_stale_parts


@dataclass
class BatchReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    stale_parts: int = 0  # temporaries of a killed earlier run, removed before starting
    redone: list[Path] = field(default_factory=list)  # existing outputs --skip-existing found damaged

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = f"{len(self.done)} done, {len(self.skipped)} skipped (already there), {len(self.failed)} failed"
        if self.stale_parts:
            text += f"; removed {self.stale_parts} unfinished temporary file(s) of a killed earlier run"
        return text


def plan_outputs(
    items: list[InputFile],
    out_for: Callable[[InputFile], Path],
    *,
    overwrite: bool = False,
    skip_existing: bool = False,
    share: list[InputFile] | None = None,
) -> dict[InputFile, Path]:
    """The output path of each item, checked before any work (and before torch or a model loads).

    OutputError when an output would be one of the inputs (its own or another's), when two inputs
    would be written to one output (names compared ignoring case, as some disks do), or when outputs
    exist already and neither `overwrite` nor `skip_existing` was given (`io.refuse_existing`).
    `share`: the items this process will do (under torchrun); only their outputs are looked for.
    """
    outs = {item: Path(out_for(item)) for item in items}
    inputs = {item.path: item for item in items}
    protected = Protected(keep={"an input": inputs})  # the rule of `io.check_output_file`, indexed once
    claimed: dict[str, InputFile] = {}
    for item, out in outs.items():
        hit = protected.find(out)  # also through a symlink or a hard link
        other = inputs[hit[1]] if hit else None
        if other is item:
            raise OutputError(f"{out}: is the input file itself; choose another --out")
        if other is not None:
            raise OutputError(f"{out}: is one of the inputs (the output of {item.path} would replace it); choose another --out")
        first = claimed.setdefault(str(out.resolve()).casefold(), item)
        if first is not item:
            raise OutputError(f"{first.path} and {item.path} would both be written to {out}; rename one of them")
    refuse_existing([outs[item] for item in (items if share is None else share)],
                    overwrite=overwrite, skip_existing=skip_existing)
    return outs


def shard(items: list, rank: int | None = None, world: int | None = None) -> list:
    """This process's share of a batch under `torchrun`: every WORLD_SIZE-th item from RANK."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world = int(os.environ.get("WORLD_SIZE", 1)) if world is None else world
    return items[rank::world]


def run_batch(
    items: list[InputFile],
    out_for: Callable[[InputFile], Path],
    process: Callable[[InputFile, Path], None],
    *,
    skip_existing: bool = False,
    on_item: Callable[[InputFile, str, str], None] | None = None,
) -> BatchReport:
    """Call `process(item, out_path)` for each item; a FicliError fails that item only.

    A full disk or an unwritable output folder stops the batch (every later file would fail the same
    way); other errors, and running out of memory on one file, are recorded with their message
    (which names the file) and the batch goes on. `on_item(item, status, message)` reports "done",
    "skipped" or "failed" (with the error message) after each file, "done" with a message when an
    existing output that --skip-existing would keep was empty or damaged and was made again. Hidden
    temporaries that a killed earlier run left beside these outputs are removed first.
    """
    outs = [out_for(item) for item in items]
    for item, out in zip(items, outs):  # all of them before any work: nothing half done
        if file_key(out) == file_key(item.path):
            raise OutputError(f"{out}: is the input file itself; choose another --out")
    report = BatchReport(stale_parts=remove_stale_parts(outs))
    for item, out in zip(items, outs):
        status, message = "done", ""
        damaged = unusable_output(out) if skip_existing and out.exists() else None
        if skip_existing and out.exists() and damaged is None:
            report.skipped.append(item.path)
            status = "skipped"
        else:
            if damaged is not None:
                message = f"{out}: the existing output {damaged}; made again (--skip-existing keeps only outputs that read whole)"
                report.redone.append(out)
            try:
                process(item, out)
                report.done.append(item.path)
            except OutputError as exc:
                if not report.done:
                    raise
                raise OutputError(
                    f"{exc}; stopped after {len(report.done)} file(s), which are complete: "
                    "fix this and rerun with --skip-existing"
                ) from None
            except FicliError as exc:
                status, message = "failed", _naming(item, str(exc))
                report.failed.append((item.path, message))
            except (MemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc):
                    raise
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                status, message = "failed", f"{item.path}: out of memory ({first}); close other programs or crop the image into pieces"
                report.failed.append((item.path, message))
        if on_item:
            on_item(item, status, message)
    return report


def unusable_output(path: Path) -> str | None:
    """Why an existing output cannot be kept by --skip-existing (empty, truncated, not an image
    ficli can read), or None when it reads whole. Decodes the file: a cut PNG or TIFF has a header."""
    from ficli.image.io import read_image

    try:
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
        read_image(path)
    except FicliError as exc:
        return f"cannot be read ({str(exc).removeprefix(str(path) + ': ')})"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _naming(item: InputFile, message: str) -> str:
    """The message of a file's failure, starting with the file's name unless it names it already."""
    return message if str(item.path) in message else f"{item.path}: {message}"
