"""The layers of docs/DESIGN.md ("Module map"), checked against the code.

Every import statement of ficli/ (also those inside functions, which load late but still couple
two modules) is read with `ast`; the test fails on an import circle, on an arrow between
subpackages that `LAYERS` does not allow, on an arrow between modules that `MAY_IMPORT` does not
allow, and on a module or function over the size limits. `LAYERS` is the map's data: keep it and
the lines of docs/DESIGN.md in step; `MAY_IMPORT` is the finer map inside and across the layers.
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

# The top of ficli/: the package-wide modules everyone may import, and the interfaces.
PACKAGE_WIDE = {"errors", "defaults"}
INTERFACES = {"api", "console", "cli", "__main__", "__init__"}  # cli is a package: cli.app, cli.images, ...
# Which subpackages (and "interfaces") each layer may import, bottom up (docs/DESIGN.md, "Module
# map"). Every layer may import PACKAGE_WIDE; nothing but an interface imports an interface.
LAYERS: dict[str, set[str]] = {
    "image": set(),
    "model": {"image"},
    "inference": {"image", "model"},
    "video": {"image", "inference"},
    "training": {"image", "model", "inference"},
    "tools": {"image", "model", "inference", "video", "training"},
    "interfaces": {"image", "model", "inference", "video", "training", "tools", "interfaces"},
}

# Which ficli modules each module may import, by their names under ficli/. A module missing here
# fails the test: a new module gets its line here (and its mention in its subpackage's docstring).
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "defaults": set(),
    "model.nets": set(),
    "image.phantom": set(),
    "image.metrics": {"errors", "image.blurscale"},
    "inference.device": {"errors"},
    "image.intensity": {"errors", "defaults"},
    "image.files": {"errors"},
    "image.guard": {"errors", "image.files"},
    "image.paths": {"errors", "image.files", "image.guard"},
    "image.tiff": {"errors"},
    "image.png": set(),
    "image.provenance": {"image.files", "image.png", "image.tiff"},
    "image.ngff": {"errors"},
    "image.io": {"errors", "image.files", "image.guard", "image.paths", "image.tiff", "image.png", "image.provenance"},
    "image.h264": {"errors"},
    "image.degrade": {"errors", "image.io", "image.ngff", "image.h264"},
    "image.blurscale": set(),
    "inference.tiles": {"errors"},
    "inference.engine": {"errors", "inference.device", "inference.tiles"},
    "model.perceptual": {"errors"},
    "model.losses": {"errors", "model.perceptual"},
    "model.modelfile": {"errors", "image.io", "model.nets"},
    "inference.runtime": {"errors", "image.io", "inference.device", "image.degrade", "model.modelfile", "image.blurscale"},
    "inference.batch": {"errors", "image.io"},
    "inference.chunked": {"errors", "defaults", "image.io", "image.ngff", "image.intensity", "image.degrade", "inference.engine",
                          "inference.device", "inference.runtime", "image.provenance"},
    "tools.evaluate": {"errors", "image.io", "image.metrics", "image.ngff"},
    "tools.profile": {"errors", "image.io", "defaults"},
    "tools.timing": {"errors", "inference.device", "model.nets"},
    "inference.enhance": {"errors", "image.io", "image.intensity", "inference.engine", "image.degrade"},
    "video.ffmpeg": {"errors", "image.io", "image.h264"},
    "video.frames": {"errors", "image.io", "image.intensity", "inference.engine", "image.degrade", "video.ffmpeg"},
    "video.pipeline": {"errors", "image.io", "defaults", "image.intensity", "inference.engine", "video.ffmpeg",
                       "video.frames", "image.provenance", "image.degrade"},
    "training.runs": {"errors", "image.io", "image.intensity", "image.degrade", "inference.device", "model.nets", "model.losses",
                      "model.modelfile"},
    "training.pairs": {"errors", "image.io", "image.intensity", "image.degrade", "training.runs"},
    "training.train": {"errors", "image.io", "image.degrade", "inference.device", "inference.engine", "model.nets", "model.losses",
                       "image.metrics", "model.modelfile", "training.pairs", "training.runs"},
    "tools.bench": {"errors", "image.io", "defaults", "inference.device", "inference.engine", "model.nets",
                    "model.losses", "model.modelfile", "inference.runtime", "image.phantom", "tools.timing",
                    "video.ffmpeg", "video.frames", "video.pipeline", "training.pairs", "training.train"},
    "api": {"errors", "image.io", "inference.device", "inference.engine", "model.nets", "image.degrade",
            "model.modelfile", "inference.runtime", "inference.enhance", "image.provenance"},
    "tools.export": {"errors", "image.io", "defaults", "image.intensity", "model.nets", "image.degrade",
                     "model.modelfile", "inference.runtime", "image.phantom", "tools.modelzoo"},
    "tools.modelzoo": {"defaults", "image.io", "image.degrade", "image.phantom", "image.intensity", "inference.runtime"},
    "console": {"errors", "image.guard", "image.io", "image.paths", "inference.batch", "tools.evaluate", "training.train"},
    "cli": {"cli.app", "cli.images", "cli.training", "cli.video", "cli.tools"},
    "cli.stores": {"console", "errors", "image.io", "image.ngff", "image.paths", "image.provenance", "image.degrade",
                   "inference.chunked", "inference.device", "inference.runtime", "image.provenance"},
    "cli.app": {"console", "defaults", "errors", "image.guard"},
    "cli.images": {"cli.app", "cli.stores", "console", "defaults", "image.paths", "inference.chunked", "errors", "image.io", "image.degrade", "inference.device",
                   "inference.engine", "inference.tiles", "inference.runtime", "inference.enhance", "tools.evaluate", "tools.profile", "api",
                   "image.provenance"},
    "cli.training": {"cli.app", "console", "errors", "image.guard", "image.io", "training.runs", "training.train"},
    "cli.video": {"cli.app", "console", "defaults", "errors", "image.io", "inference.device", "inference.engine", "inference.tiles",
                  "inference.runtime", "video.pipeline", "image.provenance"},
    "cli.tools": {"cli.app", "console", "defaults", "errors", "image.io", "image.ngff", "inference.device", "tools.timing",
                  "tools.bench", "api", "tools.export", "image.provenance", "video.ffmpeg"},
    "__main__": {"cli"},
    "__init__": set(),
}
# Third-party packages only some modules may import.
ONLY_IN = {"typer": {"cli", "console"}, "rich": {"cli", "console"}}  # the command line's two halves (cli: the package)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module under `package` by its dotted name below it ("image.io"); a subpackage's
    __init__.py is its own entry ("image")."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        if len(parts) > 1 and parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(ficli modules of `known`, top-level third-party packages) that `path` imports anywhere in
    its code. `from ficli.image import io` imports "image.io"; `from ficli.image.io import x` too."""
    ficli, other = set(), set()

    def add(dotted: str, names=()):
        candidates = [f"{dotted}.{n}" if dotted else n for n in names]
        named = [c for c in candidates if c in known]
        ficli.update(named or ([dotted] if dotted else []))

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                (add(".".join(parts[1:])) if parts[0] == "ficli" and len(parts) > 1 else other.add(parts[0]))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "ficli":
                other.add(parts[0])
            else:  # from ficli import errors / from ficli.image import io, degrade / from ficli.image.io import x
                add(".".join(parts[1:]), [alias.name for alias in node.names])
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path.name}: relative import; write `from ficli.x import ...`")
    return ficli, other


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    found = modules(package)
    return {name: imports_of(path, set(found))[0] - {name} for name, path in found.items()}


def layer(module: str) -> str:
    """The layer of a dotted module name: its subpackage, "interfaces", or "package-wide"."""
    top = module.split(".")[0]
    if top in PACKAGE_WIDE:
        return "package-wide"
    return top if top in LAYERS else "interfaces"


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Every arrow between layers that `LAYERS` does not allow, as "a imports b (x -> y)"."""
    wrong = []
    for name, found in edges.items():
        for other in sorted(found):
            src, dst = layer(name), layer(other)
            if dst != "package-wide" and src != dst and dst not in LAYERS.get(src, set()):
                wrong.append(f"{name} imports {other} ({src} -> {dst})")
    return wrong


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
    plain = {name for name in modules() if name not in LAYERS}  # a layer's __init__ imports nothing
    assert sorted(plain - set(MAY_IMPORT)) == []
    assert sorted(set(MAY_IMPORT) - plain) == []
    assert all(graph()[sub] == set() for sub in LAYERS if sub != "interfaces")


def test_top_level_holds_only_interfaces_and_package_wide_modules():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == INTERFACES - {"cli"} | PACKAGE_WIDE
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS) - {"interfaces"} | {"cli"}


def test_layers_follow_the_map():
    assert upward_imports(graph()) == []


def test_a_planted_upward_import_fails(tmp_path):
    """The layer check is real: a copy of ficli/ with image.io importing the engine is caught."""
    import shutil

    copy = tmp_path / "ficli"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "_models"))
    io_py = copy / "image" / "io.py"
    io_py.write_text(io_py.read_text() + "\n\ndef _planted():\n    from ficli.inference.engine import TileConfig\n")
    assert upward_imports(graph(copy)) == ["image.io imports inference.engine (image -> inference)"]
    assert upward_imports(graph()) == []


def test_no_import_circle():
    assert cycle(graph()) is None


def test_imports_follow_the_map():
    wrong = [f"{name} imports {other}" for name, found in graph().items() for other in sorted(found - MAY_IMPORT.get(name, set()))]
    assert wrong == []


def test_the_rules_design_states():
    """The arrows docs/DESIGN.md names as forbidden stay forbidden in the map itself."""
    assert all("cli" not in allowed for name, allowed in MAY_IMPORT.items() if name != "__main__")
    assert not {"image.io", "model.nets", "model.modelfile", "inference.runtime"} & MAY_IMPORT["inference.engine"]
    assert MAY_IMPORT["model.nets"] == set()
    assert all(layer(other) in LAYERS[layer(name)] | {layer(name), "package-wide"}
               for name, allowed in MAY_IMPORT.items() if layer(name) in LAYERS for other in allowed)


def test_only_cli_imports_typer_and_rich():
    wrong = [f"{name} imports {pkg}" for name, path in modules().items()
             for pkg in sorted(imports_of(path, set(modules()))[1] & set(ONLY_IN)) if name.split(".")[0] not in ONLY_IN[pkg]]
    assert wrong == []


def test_module_and_function_sizes():
    too_long = []
    for name, path in modules().items():
        count = len(path.read_text().splitlines())
        if count > MAX_MODULE_LINES:
            too_long.append(f"{name}: {count} lines")
        too_long += [f"{name}.{fn} (line {line}): {n} body lines" for fn, line, n in function_lengths(path)
                     if n > MAX_FUNCTION_LINES]
    assert too_long == []


def test_design_map_matches():
    """docs/DESIGN.md has one line per layer, naming the layers it may import as in LAYERS."""
    section = DESIGN.read_text().split("## 9. Module map", 1)[1]
    described = dict(re.findall(r"^- \*\*`(\w+)`\*\*.*?May\s+import:\s+([^.]*)\.", section, flags=re.M | re.S))
    assert sorted(described) == sorted(LAYERS)
    for name, allowed in described.items():
        assert set(re.findall(r"`(\w+)`", allowed)) == LAYERS[name], name


def test_design_citations_exist():
    """Every mention of the design document names docs/DESIGN.md, and every section it cites is there."""
    sections = set(re.findall(r"^## (\d+)\.", DESIGN.read_text(), flags=re.M))
    cited, vague = [], []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]:
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

    from ficli import cli, defaults
    from ficli.inference import enhance
    from ficli.image import intensity
    from ficli.video import pipeline as video

    assert inspect.signature(cli.video).parameters["tile"].default is defaults.VIDEO_TILE
    assert video.VideoOptions().tile.tile is defaults.VIDEO_TILE
    assert (enhance.EnhanceOptions().lo_pct, video.VideoOptions().hi_pct) == (defaults.LO_PCT, defaults.HI_PCT)
    assert inspect.signature(intensity.percentile_range).parameters["lo_pct"].default is defaults.LO_PCT
    written = [f"{path.name}: {m[0]}" for path in PACKAGE.rglob("*.py") if path.stem != "defaults"
               for m in re.finditer(r"(?:lo_pct|hi_pct|tile)\b[^=\n(]*=\s*(?:0\.1|99\.9|1280)\b", path.read_text())]
    written += [f"{path.name}:{node.lineno}: 99.9" for path in PACKAGE.rglob("*.py") if path.stem != "defaults"
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
