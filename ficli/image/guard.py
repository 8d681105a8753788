"""The three rules that keep every command's outputs safe, one mechanism each.

1. `check_output_file` is the one function that decides whether a path may be written: never a
   file a run reads (an input, the model in use), never an existing file without --overwrite,
   through symlinks and hard links (`same_file` compares the file behind each path: device and
   inode of what a write would replace, the resolved path of what does not exist yet).
2. `lock_output` takes an advisory lock (fcntl.flock) on a run's --out: a second run into the same
   output is refused, naming the holder's PID; a lock left by a dead process is free (the kernel
   drops it with the process) and is taken over. Temporaries carry their writer's PID
   (`files.atomic_write`), and a rerun removes only those whose writer is gone.
3. `catch_signals` makes SIGTERM and SIGHUP do what Ctrl-C (SIGINT) does: every command's own
   KeyboardInterrupt path runs (temporaries removed, finished files kept, video keeps the frames
   done), and `exit_code` gives 128 + the signal's number.

Plain Python: no numpy, no torch.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path

from ficli.errors import OutputError
from ficli.image.files import check_writable, first_line, write_target, writes_through

# --- rule 1: whether a path may be written ---------------------------------------------------------


def file_key(path: Path | str) -> tuple:
    """What a write of `path` would replace, as a comparable key: (device, inode) of the existing
    file behind it (through symlinks, so a link, a hard link and the file itself share the key),
    else its resolved path (a file not there yet)."""
    target = write_target(path)
    try:
        st = os.stat(target)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(target))


def same_file(a: Path | str, b: Path | str) -> bool:
    """True when writing `a` would replace the file `b` names (or the other way round)."""
    return Protected(keep={"": [b]}).find(a) is not None


class Protected:
    """The files a run must never write (its inputs, the model in use), indexed once by identity
    (`file_key` and the resolved path), so that a batch of thousands checks each output in O(1).
    `keep`: a description ("the model being exported") → the paths it covers."""

    def __init__(self, inputs: Iterable = (), keep: Mapping[str, Iterable] | None = None):
        self.index: dict[tuple, tuple[str, Path]] = {}
        for what, paths in {"one of the input images": inputs, **(keep or {})}.items():
            for path in paths:
                if path is not None:
                    for key in (file_key(path), ("path", os.path.realpath(path))):
                        self.index.setdefault(key, (what, Path(path)))

    def find(self, path: Path | str) -> tuple[str, Path] | None:
        """(description, protected path) when writing `path` would replace a protected file."""
        for key in (file_key(path), ("path", os.path.realpath(path))):
            if key in self.index:
                return self.index[key]
        return None


def check_output_file(path: Path | str, option: str, *, overwrite: bool | None = None, inputs: Iterable = (),
                      keep: Mapping[str, Iterable] | None = None, protected: Protected | None = None) -> None:
    """The one rule for every file a command writes, checked before any work: OutputError when
    `path` is a folder, one of `inputs` (the run's input images), one of the files in `keep` (a
    description such as "the model being exported" → its paths) or in `protected` (the same,
    indexed once for a batch), an existing file when `overwrite` is False (None: the command
    checks that itself), or in a folder that cannot be written. Symlinks and hard links count as
    the file they reach. "-", FIFOs and devices are written into, not replaced, and pass."""
    if writes_through(path):
        return
    path = Path(path)
    target = write_target(path)
    if target.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name")
    named = f"{option} {path}" if option else str(path)
    hit = (protected or Protected(inputs, keep)).find(path)
    if hit is not None:
        raise OutputError(f"{named}: is {hit[0]}; ficli never writes over it — choose another file name")
    if overwrite is False and os.path.lexists(target):
        raise OutputError(f"{named}: exists; add --overwrite to replace it, or choose another file name")
    check_writable(target.parent)


def check_distinct_outputs(**outputs) -> None:
    """OutputError when two options (name → path) would write one file (`--out p.png --csv p.png`);
    "-", FIFOs and devices excepted."""
    seen: dict[tuple, str] = {}
    for option, path in outputs.items():
        if path is None or writes_through(path):
            continue
        first = seen.setdefault(file_key(path), option)
        if first != option:
            raise OutputError(f"{option} {path}: is also given as {first}; each output needs its own file")


# --- rule 2: one run per output ----------------------------------------------------------------------

LOCK_NAME = ".ficli.lock"
_held: list[tuple[int, Path, list[Path]]] = []


def lock_path(out: Path | str, *, folder: bool, part: str = "") -> Path:
    """The lock file of an output: `OUT/.ficli.lock` in an output folder, `.NAME.ficli.lock` beside
    an output file (beside the file a symlink reaches). Under torchrun each rank has its own, and
    each `part` (a --shard, "shard3of10"): they write disjoint files into one folder."""
    rank = os.environ.get("RANK", "0") if os.environ.get("WORLD_SIZE", "1") != "1" else "0"
    suffix = ("" if rank == "0" else f".rank{rank}") + (f".{part}" if part else "")
    if folder:
        return Path(out) / (LOCK_NAME + suffix)
    target = write_target(out)
    return target.parent / f".{target.name}{LOCK_NAME}{suffix}"


def lock_output(out: Path | str, *, folder: bool = False, part: str = "") -> None:
    """Take the advisory lock of the output `out` (a folder, or a file) for the rest of this run;
    OutputError naming the holder's PID when another live run holds it. A lock file of a dead
    process is taken over (the kernel released it). Released by `release_locks` (the CLI calls it
    when a command ends); folders made to hold the lock are removed then if still empty."""
    if (not folder and writes_through(out)) or (folder and os.path.exists(out) and not os.path.isdir(out)):
        return  # written into, not replaced; or not a folder, which the command refuses itself
    lock = lock_path(out, folder=folder, part=part)
    made = _make_folders(lock.parent)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            _remove_empty(made)
            raise OutputError(f"{lock.parent}: cannot write here ({first_line(exc)}); check the folder and its permissions") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            _remove_empty(made)
            raise OutputError(f"{out}: another ficli run (PID {holder}) is writing there; wait for it to end, "
                              "or choose another output") from None
        except OSError as exc:  # a file system without locks (some network disks): run unlocked
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            os.close(fd)
            _remove_empty(made)
            return
        try:  # the holder may have removed the file between our open and our lock: lock the new one
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held.append((fd, lock, made))


def release_locks() -> None:
    """Release every lock `lock_output` took: the lock file is removed while still held, then the
    folders made for it if they stayed empty."""
    while _held:
        fd, lock, made = _held.pop()
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)
        _remove_empty(made)


def _make_folders(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; the ones made, deepest first."""
    made = []
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        made.append(probe)
        probe = probe.parent
    if not probe.is_dir():  # /dev/full/x.mp4: mkdir would say "File exists"
        raise OutputError(f"{folder}: {probe} is not a folder (a file or a device), so nothing can be written under it; "
                          "choose another output")
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write here ({first_line(exc)}); check the folder and its permissions") from None
    return made


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


# --- rule 3: SIGTERM and SIGHUP as Ctrl-C ------------------------------------------------------------

_received: list[int] = []


def _as_interrupt(signum, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def catch_signals() -> None:
    """From now on SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, as Ctrl-C does, so
    that every command's interrupt path runs for them too. A signal ignored at start (nohup's
    SIGHUP) stays ignored."""
    _received.clear()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            with contextlib.suppress(ValueError):  # not the main thread (an embedding program): leave them
                signal.signal(sig, _as_interrupt)


def exit_code() -> int:
    """The exit code of an interrupted run: 128 + the signal's number (130 for Ctrl-C, 143 for
    SIGTERM, 129 for SIGHUP)."""
    return 128 + (_received[-1] if _received else signal.SIGINT)


def signal_name() -> str:
    """'Ctrl-C' or the name of the signal that stopped the run (SIGTERM, SIGHUP)."""
    return signal.Signals(_received[-1]).name if _received else "Ctrl-C"
