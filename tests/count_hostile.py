"""Count the hostile-case tests (marker `hostile`) and keep README.md's line about them true.

    python tests/count_hostile.py            print the number pytest collects
    python tests/count_hostile.py --write    rewrite README.md's line between the hostile-count markers
    python tests/count_hostile.py --check    exit 1 when README.md states another number

The number is what `pytest --collect-only -m hostile` collects (each parametrised case counts; a
property test counts once), so it cannot be typed by hand: tests/test_hostile_count.py fails when
the README and the suite disagree.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKED = re.compile(r"<!-- hostile-count -->(.*?)<!-- /hostile-count -->")


def collect() -> int:
    """How many tests carry the `hostile` marker, as pytest collects them."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "hostile", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pytest could not collect the suite (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return sum(1 for line in done.stdout.splitlines() if "::" in line)


def sentence(count: int) -> str:
    return (f"{count} hostile cases tested (bad input, faults and interruptions, command by command: "
            "[docs/RELIABILITY.md](docs/RELIABILITY.md)), none loses data.")


def stated(text: str) -> int | None:
    """The number README.md's marked line states, or None without the markers."""
    match = MARKED.search(text)
    number = re.match(r"\s*(\d+)", match.group(1)) if match else None
    return int(number.group(1)) if number else None


def write(count: int) -> bool:
    """Put `count` into README.md's marked line; True if the file changed."""
    text = README.read_text(encoding="utf-8")
    if not MARKED.search(text):
        raise SystemExit(f"{README}: no <!-- hostile-count --> ... <!-- /hostile-count --> line to rewrite")
    new = MARKED.sub(lambda m: f"<!-- hostile-count -->{sentence(count)}<!-- /hostile-count -->", text, count=1)
    if new != text:
        README.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str]) -> int:
    count = collect()
    if "--write" in argv:
        print(f"{count} hostile cases; README.md {'updated' if write(count) else 'already says so'}")
    elif "--check" in argv:
        found = stated(README.read_text(encoding="utf-8"))
        if found != count:
            print(f"README.md says {found} hostile cases, the suite has {count}: run python tests/count_hostile.py --write")
            return 1
        print(f"{count} hostile cases, as README.md says")
    else:
        print(count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
