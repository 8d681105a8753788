"""Keep the "which command for my data" table the same in README.md and models/MODEL_CARD.md.

    python tests/which_model.py            exit 1 when the two differ
    python tests/which_model.py --write    copy README.md's table into the model card

The table's numbers are written once, in README.md between the which-model markers; the model card
carries a copy, which tests/test_compare.py checks.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README, CARD = ROOT / "README.md", ROOT / "models" / "MODEL_CARD.md"
MARKED = re.compile(r"<!-- which-model -->.*?<!-- /which-model -->", re.S)


def table(path: Path) -> str | None:
    match = MARKED.search(path.read_text(encoding="utf-8"))
    return match.group(0) if match else None


def main(argv: list[str]) -> int:
    source = table(README)
    if source is None:
        raise SystemExit(f"{README}: no <!-- which-model --> ... <!-- /which-model --> table")
    if "--write" in argv:
        text = CARD.read_text(encoding="utf-8")
        CARD.write_text(MARKED.sub(lambda m: source, text, count=1), encoding="utf-8")
        return 0
    if table(CARD) != source:
        print(f"{CARD} differs from README.md's which-model table: run python tests/which_model.py --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
