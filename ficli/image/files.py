"""Writing files so that nothing is lost: atomic writes, standard output and pipes, stale temporaries.

`atomic_write` is the one way ficli writes a file: a hidden temporary beside the target, renamed
over it when complete, so that an interrupted or failed write leaves no half-written file and an
existing file is replaced only by a complete one. "-" means standard output; FIFOs and devices are
written into, not replaced (`writes_through`); a symlink stays a link (`write_target`). Temporaries
of a killed run are removed by the rerun (`remove_stale_parts`). Plain Python: no numpy, no torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ficli.errors import OutputError

# mkstemp creates files readable by the owner only; results get the permissions a plain open() gives.
UMASK = os.umask(0)
os.umask(UMASK)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


# An output path of "-" means standard output (a file named "-" can still be given by its full path).
STDOUT = "-"


def is_stdout(path: Path | str) -> bool:
    """True when the output `path` is "-", standard output."""
    return str(path) == STDOUT


def writes_through(path: Path | str) -> bool:
    """True for an output that is written into as it is, not replaced: "-" (standard output) or an
    existing path that is neither a regular file nor a folder (a FIFO, a character device such as
    /dev/null or /dev/stdout), also through a symlink."""
    if is_stdout(path):
        return True
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_target(path: Path | str) -> Path:
    """The file that writing `path` replaces: `path` itself, or the file a symlink points to (also
    a link to a link, or to a file not there yet), so that the link stays a link."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def printable(text: str | Path) -> str:
    """`text` as valid Unicode: bytes of a file name that are not UTF-8 (Python holds them as
    surrogate escapes, e.g. the Latin-1 name b'caf\\xe9.png') become the text \\xNN (caf\\xe9.png),
    which JSON, plot labels and strict terminals can hold."""
    return os.fsencode(str(text)).decode("utf-8", "backslashreplace")


@contextlib.contextmanager
def atomic_write(path: Path | str) -> Iterator[Path]:
    """Yield a hidden temporary path beside `path`; when the block ends, put it in place by a rename.

    The one way ficli writes files: an interrupted or failed write (a full disk, Ctrl-C) leaves no
    half-written file and no temporary behind, and an existing file is replaced only by a complete
    one. OSErrors become OutputError naming the file.

    A symlink stays a link: the file it points to is replaced (`write_target`). "-" (standard
    output), a FIFO or a device is not replaced but written into, once the temporary (in the
    system's temporary folder) is complete (`writes_through`).
    """
    if writes_through(path):
        with _written_through(path) as tmp:
            yield tmp
        return
    path = write_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=part_suffix(), dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot write here ({first_line(exc)}); check the folder and its permissions") from None
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            reason = "the disk is full" if exc.errno == errno.ENOSPC else first_line(exc)
            raise OutputError(f"{path}: write failed ({reason}); nothing was written") from None
        raise


@contextlib.contextmanager
def _written_through(path: Path | str) -> Iterator[Path]:
    """`atomic_write` for standard output, FIFOs and devices: the bytes go in only when complete."""
    fd, name = tempfile.mkstemp(prefix=".ficli-out.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as src:
            if is_stdout(path):
                sys.stdout.flush()
                shutil.copyfileobj(src, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                with open(path, "wb") as dst:  # a FIFO: waits here for its reader
                    shutil.copyfileobj(src, dst)
    except OSError as exc:
        where = "standard output" if is_stdout(path) else str(path)
        reason = "its reader closed it" if isinstance(exc, BrokenPipeError) else first_line(exc)
        raise OutputError(f"{where}: write failed ({reason})") from None
    finally:
        tmp.unlink(missing_ok=True)


# Temporary names (mkstemp adds 8 random characters, then the writer's PID): `.NAME.xxxxxxxx.PID.part`
# (atomic_write) or `.STEM.xxxxxxxx.PID.part.EXT` (video, whose ffmpeg muxer needs EXT). Names
# without the PID (ficli before 0.x) are taken as left by a dead writer.
_PART_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}(?:\.(?P<pid>[0-9]{1,10}))?\.part(?P<ext>\.[A-Za-z0-9]+)?")


def part_suffix(extension: str = "") -> str:
    """The end of a temporary's name: `.PID.part` and `extension`; `remove_stale_parts` leaves the
    temporaries of a writer that is still running."""
    return f".{os.getpid()}.part{extension}"


def _writer_alive(pid: str | None) -> bool:
    """Whether the process that named a temporary (its PID) still runs; not this process itself."""
    if not pid or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    try:  # a killed writer its parent has not reaped yet (a zombie) is gone too
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def remove_stale_parts(targets) -> int:
    """Delete temporaries that a killed write of one of `targets` left behind; returns how many.

    `atomic_write` removes its temporary on every error and on Ctrl-C, but not when the process is
    killed outright (SIGKILL, power loss). A rerun calls this for the files it is about to write:
    only hidden `.NAME.xxxxxxxx.PID.part` files of those names whose writer (PID) no longer runs are
    touched, so a live run's temporaries, other files' temporaries and other hidden files stay.
    """
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        if writes_through(target):  # its temporaries live in the system's temporary folder
            continue
        target = write_target(target)
        by_folder.setdefault(target.parent, set()).add(target.name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # no folder yet: nothing left behind
            continue
        for entry in entries:
            match = _PART_NAME.fullmatch(entry.name)
            if (match and match["target"] + (match["ext"] or "") in names and entry.is_file(follow_symlinks=False)
                    and not _writer_alive(match["pid"])):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def check_writable(folder: Path | str) -> None:
    """Raise OutputError unless files can be created in `folder` (or, if it does not exist yet, in
    the nearest folder above it, where it would be made). Creates nothing that stays."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder; choose a folder")
    probe = folder.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        fd, name = tempfile.mkstemp(prefix=".ficli-probe.", suffix=".part", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write here ({first_line(exc)}); check the folder and its permissions") from None


def write_text(path: Path | str, text: str) -> None:
    """Write a text file (UTF-8) atomically ("-": standard output).

    File names in `text` that are not UTF-8 (surrogate escapes) are written as their own bytes,
    as `ls` prints them, so that a CSV names the very file; `printable` gives valid UTF-8 instead.
    """
    with atomic_write(path) as tmp:
        tmp.write_bytes(text.encode("utf-8", "surrogateescape"))
