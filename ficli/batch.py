"""Running one operation over many files: skip what is done, keep going past a bad file, report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ficli.errors import FicliError, OutputError
from ficli.io import InputFile, remove_stale_parts


@dataclass
class BatchReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    stale_parts: int = 0  # temporaries of a killed earlier run, removed before starting

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = f"{len(self.done)} done, {len(self.skipped)} skipped (already there), {len(self.failed)} failed"
        if self.stale_parts:
            text += f"; removed {self.stale_parts} unfinished temporary file(s) of a killed earlier run"
        return text


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
    way); other errors are recorded with their message and the batch goes on. `on_item(item, status)`
    reports "done", "skipped" or "failed" (with the error message) after each file. Hidden
    temporaries that a killed earlier run left beside these outputs are removed first.
    """
    outs = [out_for(item) for item in items]
    for item, out in zip(items, outs):  # all of them before any work: nothing half done
        if out.resolve() == item.path.resolve():
            raise OutputError(f"{out}: is the input file itself; choose another --out")
    report = BatchReport(stale_parts=remove_stale_parts(outs))
    for item, out in zip(items, outs):
        status, message = "done", ""
        if skip_existing and out.exists():
            report.skipped.append(item.path)
            status = "skipped"
        else:
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
                status, message = "failed", str(exc)
                report.failed.append((item.path, message))
        if on_item:
            on_item(item, status, message)
    return report
