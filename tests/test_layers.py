"""The package's rooms import only downwards: every import of sge_viz, read with ast.

Order, lowest first: the base modules (errors, then device, sniff, resize, resources), domain (the
out-of-domain verdict: detectors, the features they read, ``Judge``), models, capture, sources (a model from
any source: the user's network is probed with capture's recorder), metrics, viz, io, explain, dissect (an image set builds on the per-image explanation), flags (the model flags
the app and the CLI share), app, cli (the CLI's ``serve`` starts the app), and the package's own
``__init__``/``__main__``. A room may import itself and any room below it; an import of a room at its own
level or above fails the test.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sge_viz"
RANK = {"errors": 0, "device": 1, "sniff": 1, "resize": 1, "resources": 1, "domain": 1.5, "models": 2, "capture": 3,
        "sources": 3.5, "metrics": 4, "viz": 5, "io": 6, "explain": 7, "dissect": 7.5, "flags": 8, "app": 9, "cli": 10,
        "__init__": 11, "__main__": 11}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every sge_viz import in one file, relative ones resolved."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts  # ("sge_viz", room, ...)
    here = list(parts[:-1])  # the file's package
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)]
                if node.module:
                    found.append((node.lineno, ".".join([*base, node.module])))
                else:
                    found += [(node.lineno, ".".join([*base, a.name])) for a in node.names]
            elif node.module and node.module.split(".")[0] == "sge_viz":
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "sge_viz"]
    return found


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        own = rel.parts[0].removesuffix(".py")
        assert own in RANK, f"{rel}: a new room; give it a place in RANK"
        for _, module in imports_of(path):
            target = room(module)
            if target is not None and not (PACKAGE / target).exists() and not (PACKAGE / f"{target}.py").exists():
                continue  # a plain name the package's __init__ defines (__version__), not a room
            if target is None or target == own:
                continue
            assert target in RANK, f"{rel} imports {module}: no such room"
            if RANK[target] >= RANK[own]:
                found.add((rel.as_posix(), module))
    return found


def test_every_import_points_downwards():
    found = sorted(upward_imports())
    assert not found, "imports of a room at the same level or above: " + ", ".join(f"{f} -> {m}" for f, m in found)


def test_the_reader_sees_relative_and_absolute_imports(tmp_path):
    """The reader resolves the forms the package uses, so the test above cannot pass by missing them."""
    source = PACKAGE / "flags.py"
    modules = {m for _, m in imports_of(source)}
    assert {"sge_viz.errors", "sge_viz.sources", "sge_viz.sources.usercode"} <= modules
    server = {m for _, m in imports_of(PACKAGE / "app" / "server.py")}
    assert "sge_viz.flags" in server and "sge_viz.app.catalogue" in server  # a function-level import
    assert not any(room(m) == "cli" for m in server)  # the app never reaches into the CLI
