"""The import direction of ARCHITECTURE.md, enforced: each part of the package imports only the parts below it."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "roadmap_cli"

# part -> the parts it may import (besides itself); ARCHITECTURE.md draws the same graph
ALLOWED = {
    "errors": set(),
    "settings": set(),
    "progress": set(),
    "nn": {"settings"},  # ROADMAP_DEFORM / ROADMAP_CC / ROADMAP_HOME for the fused kernel
    "models": set(),
    "tiling": {"errors"},
    "io": {"errors", "settings"},
    "graph": {"errors", "tiling"},
    "metrics": {"errors", "graph"},
    "checks": {"errors", "io"},
    "registry": {"settings"},
    "export": {"checks", "errors", "io"},
    "report": {"errors"},
    "weights": {"errors", "io", "nn", "registry", "settings"},
    "infer": {"errors", "io", "nn", "progress", "tiling"},
    "data": {"errors", "io", "settings", "tiling"},
    "engines": {"errors", "graph", "infer", "io", "progress", "settings", "tiling", "weights"},
    "extract": {"checks", "engines", "errors", "export", "graph", "infer", "io", "nn", "progress", "report", "tiling",
                "weights"},
    "score": {"checks", "errors", "io", "metrics"},
    "train": {"data", "errors", "infer", "io", "metrics", "nn", "progress", "settings", "weights"},
    "adapt": {"checks", "data", "errors", "extract", "io", "metrics", "nn", "progress", "score", "tiling", "train", "weights"},
    "compare": {"checks", "errors", "io", "report", "score"},
    "cli": {"__init__", "adapt", "checks", "compare", "data", "errors", "extract", "io", "progress", "registry", "score",
            "settings", "train", "weights"},
    "__main__": {"cli"},
    "__init__": set(),
}


def _part(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path, text: str | None = None):
    """(line, part imported) for every import of the package itself in ``path`` (or ``text`` placed there)."""
    rel = path.relative_to(PKG)
    pkg_parts = list(rel.parts[:-1])  # the module's package, relative to roadmap_cli
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "roadmap_cli":
                    yield node.lineno, (a.name.split(".") + ["__init__"])[1]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[:len(pkg_parts) - (node.level - 1)] if node.level > 1 else pkg_parts
                if node.level - 1 > len(pkg_parts):
                    raise AssertionError(f"{path}:{node.lineno} imports above the package")
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "roadmap_cli":
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                yield node.lineno, target[0]
            else:  # ``from .. import x``: the names are the parts
                for a in node.names:
                    yield node.lineno, a.name if (PKG / a.name).is_dir() or (PKG / f"{a.name}.py").is_file() \
                        else "__init__"


MODULES = sorted(PKG.rglob("*.py"))


def test_every_part_is_listed():
    assert {_part(p) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_go_down_only(path):
    part = _part(path)
    # the package root holds only ``__version__`` and imports nothing, so any part may read it
    bad = [(line, t) for line, t in _imports(path) if t not in (part, "__init__") and t not in ALLOWED[part]]
    assert not bad, f"{path.relative_to(PKG)} ({part}) may not import {bad}"


def test_nn_is_a_leaf_but_for_settings_and_nothing_imports_the_cli():
    for path in MODULES:
        targets = {t for _, t in _imports(path)}
        if _part(path) == "nn":
            assert targets <= {"nn", "settings"}, path
        if _part(path) not in ("cli", "__main__"):
            assert "cli" not in targets, path


def test_checker_resolves_every_import_form():
    """The checker itself, on made-up modules: relative, absolute and ``from .. import`` forms all resolve."""
    fake = PKG / "io" / "fake.py"
    text = ("from ..infer.predict import Predictor\nfrom .raster import gdal_env\nimport roadmap_cli.graph.build\n"
            "from roadmap_cli.weights import load_model\nfrom .. import settings, __version__\n")
    assert [t for _, t in _imports(fake, text)] == ["infer", "io", "graph", "weights", "settings", "__init__"]
    assert [t for _, t in _imports(PKG / "nn" / "fake.py", "from ..errors import InputError\n")] == ["errors"]
