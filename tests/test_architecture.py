"""The module map of docs/DESIGN.md ("Module map"), checked against the code.

Every import statement of ficli/ (also those inside functions, which load late but still couple
two modules) is read with `ast`; the test fails on an import circle, on an arrow the map does not
allow, and on a module or function over the size limits. `MAY_IMPORT` is the map's data: keep it
and the paragraphs of docs/DESIGN.md in step.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ficli"
DESIGN = ROOT / "docs" / "DESIGN.md"

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80  # body lines, the docstring not counted (option declarations are parameters)

# Which ficli modules each module may import (docs/DESIGN.md, "Module map"). A module missing here
# fails the test: a new module gets its paragraph in DESIGN.md and its line here.
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "defaults": set(),
    "nets": set(),
    "phantom": set(),
    "metrics": {"errors", "blurscale"},
    "device": {"errors"},
    "intensity": {"errors", "defaults"},
    "files": {"errors"},
    "paths": {"errors", "files"},
    "tiff": {"errors"},
    "io": {"errors", "files", "paths", "tiff"},
    "degrade": {"errors", "io"},
    "blurscale": set(),
    "engine": {"errors", "device"},
    "perceptual": {"errors"},
    "losses": {"errors", "perceptual"},
    "modelfile": {"errors", "io", "nets"},
    "runtime": {"errors", "io", "device", "degrade", "modelfile", "blurscale"},
    "batch": {"errors", "io"},
    "evaluate": {"errors", "io", "metrics"},
    "profile": {"errors", "io"},
    "timing": {"errors", "device", "nets"},
    "enhance": {"errors", "io", "intensity", "engine", "degrade"},
    "ffmpeg": {"errors", "io"},
    "frames": {"errors", "io", "intensity", "engine", "degrade", "ffmpeg"},
    "video": {"errors", "io", "defaults", "intensity", "engine", "ffmpeg", "frames"},
    "runs": {"errors", "io", "intensity", "device", "nets", "losses", "modelfile"},
    "pairs": {"errors", "io", "intensity", "degrade", "runs"},
    "train": {"errors", "io", "device", "engine", "nets", "losses", "metrics", "modelfile", "pairs", "runs"},
    "bench": {"errors", "io", "defaults", "device", "engine", "nets", "losses", "modelfile", "runtime", "phantom", "timing",
              "ffmpeg", "frames", "video", "pairs", "train"},
    "api": {"errors", "io", "device", "engine", "nets", "degrade", "modelfile", "runtime", "enhance"},
    "export": {"errors", "io", "defaults", "intensity", "nets", "degrade", "modelfile", "runtime", "phantom", "api"},
    "console": {"errors", "io", "batch", "evaluate", "train"},
    "cli": {"errors", "io", "defaults", "console", "device", "engine", "runtime", "degrade", "evaluate", "enhance", "video",
            "runs", "train", "profile", "timing", "bench", "api", "export"},
    "__main__": {"cli"},
    "__init__": set(),
}
# Third-party packages only one module may import.
ONLY_IN = {"typer": {"cli", "console"}, "rich": {"cli", "console"}}  # the command line's two halves


def modules() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PACKAGE.glob("*.py"))}


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(ficli modules, top-level third-party packages) that `path` imports anywhere in its code."""
    ficli, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                (ficli.add(parts[1]) if parts[0] == "ficli" and len(parts) > 1 else other.add(parts[0]))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "ficli":
                other.add(parts[0])
            elif len(parts) > 1:
                ficli.add(parts[1])
            else:  # from ficli import io, modelfile
                ficli.update(alias.name for alias in node.names if alias.name in modules())
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path.name}: relative import; write `from ficli.x import ...`")
    return ficli, other


def graph() -> dict[str, set[str]]:
    return {name: imports_of(path)[0] - {name} for name, path in modules().items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def function_lengths(path: Path):
    """(name, first line, body lines without the docstring) of every function and method."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body = body[1:]
            lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
            yield node.name, node.lineno, lines


def test_every_module_is_on_the_map():
    assert sorted(set(modules()) - set(MAY_IMPORT)) == []
    assert sorted(set(MAY_IMPORT) - set(modules())) == []


def test_no_import_circle():
    assert cycle(graph()) is None


def test_imports_follow_the_map():
    wrong = [f"{name} imports {other}" for name, found in graph().items() for other in sorted(found - MAY_IMPORT[name])]
    assert wrong == []


def test_the_rules_design_states():
    """The arrows docs/DESIGN.md names as forbidden stay forbidden in the map itself."""
    assert all("cli" not in allowed for name, allowed in MAY_IMPORT.items() if name != "__main__")
    assert not {"io", "nets", "modelfile", "runtime"} & MAY_IMPORT["engine"]
    assert MAY_IMPORT["nets"] == set()


def test_only_cli_imports_typer_and_rich():
    wrong = [f"{name} imports {pkg}" for name, path in modules().items()
             for pkg in sorted(imports_of(path)[1] & set(ONLY_IN)) if name not in ONLY_IN[pkg]]
    assert wrong == []


def test_module_and_function_sizes():
    too_long = []
    for name, path in modules().items():
        count = len(path.read_text().splitlines())
        if count > MAX_MODULE_LINES:
            too_long.append(f"{name}.py: {count} lines")
        too_long += [f"{name}.{fn} (line {line}): {n} body lines" for fn, line, n in function_lengths(path)
                     if n > MAX_FUNCTION_LINES]
    assert too_long == []


def test_design_map_matches():
    """docs/DESIGN.md has one paragraph per module, each naming what it may import as in MAY_IMPORT."""
    text = DESIGN.read_text()
    section = text.split("## 9. Module map", 1)[1]
    described = dict(re.findall(r"^\*\*`(\w+)`\*\*.*?May\s+import:\s+([^.]*)\.", section, flags=re.M | re.S))
    assert sorted(described) == sorted(MAY_IMPORT)
    for name, allowed in described.items():
        names = set(re.findall(r"`(\w+)`", allowed))
        assert names == MAY_IMPORT[name], name


def test_design_citations_exist():
    """Every mention of the design document names docs/DESIGN.md, and every section it cites is there."""
    sections = set(re.findall(r"^## (\d+)\.", DESIGN.read_text(), flags=re.M))
    cited, vague = [], []
    for path in [*PACKAGE.glob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]:
        text = path.read_text()
        vague += [f"{path.name}: {m[0]!r}" for m in re.finditer(r".{0,5}DESIGN\S*", text) if "docs/DESIGN.md" not in m[0]
                  and path != Path(__file__) and "DESIGN =" not in m[0]]
        for match in re.finditer(r"docs/DESIGN\.md(?:'s table,?)? \(?sections? (\d+)(?:-(\d+))?", text):
            cited += [(path.name, n) for n in {match[1], match[2]} - {None}]
    assert vague == []
    assert cited and [c for c in cited if c[1] not in sections] == []


def test_shared_numbers_are_written_once():
    """The intensity map's percentiles and video's tile size are ficli.defaults' alone: the
    library's defaults and the command line's take them from there (issue 15)."""
    import inspect

    from ficli import cli, defaults, enhance, intensity, video

    assert inspect.signature(cli.video).parameters["tile"].default is defaults.VIDEO_TILE
    assert video.VideoOptions().tile.tile is defaults.VIDEO_TILE
    assert (enhance.EnhanceOptions().lo_pct, video.VideoOptions().hi_pct) == (defaults.LO_PCT, defaults.HI_PCT)
    assert inspect.signature(intensity.percentile_range).parameters["lo_pct"].default is defaults.LO_PCT
    written = [f"{path.name}: {m[0]}" for path in PACKAGE.glob("*.py") if path.stem != "defaults"
               for m in re.finditer(r"(?:lo_pct|hi_pct|tile)\b[^=\n(]*=\s*(?:0\.1|99\.9|1280)\b", path.read_text())]
    written += [f"{path.name}:{node.lineno}: 99.9" for path in PACKAGE.glob("*.py") if path.stem != "defaults"
                for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant) and node.value == 99.9]
    assert written == []


@pytest.mark.parametrize("source, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
])
def test_cycle_finder(source, expected):
    assert cycle(source) == expected


def test_function_length_counts_body_only(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('def f(\n    a: int = 1,\n    b: int = 2,\n):\n    """Doc.\n\n    More.\n    """\n    x = a\n    return x + b\n')
    assert list(function_lengths(path)) == [("f", 1, 2)]
