"""The package's layers: which third-party libraries each part may load.

Each rule imports its modules in a fresh interpreter and reads ``sys.modules``; a static pass
over the core's import statements (function bodies included) catches a lazy import that would
reach a forbidden library only when that function runs.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tracer

ROOT = Path(tracer.__file__).parent
#: What the tracing core never loads, not even from inside a function.
CORE_FORBIDDEN = ("sqlalchemy", "textual", "pluggy", "rich")


def _modules(package: str) -> list[str]:
    """Every module of ``package`` found on disk (``tracer.store`` -> its submodules too)."""
    base = ROOT.parent / package.replace(".", "/")
    found = [package]
    for path in sorted(base.rglob("*.py")):
        if "migrations" in path.parts:
            continue  # Alembic revision scripts, run by Alembic, never imported by name
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != package:
            found.append(name)
    return found


@dataclass(frozen=True)
class Rule:
    """Running ``code`` in a fresh interpreter leaves none of ``forbidden`` in sys.modules."""

    name: str
    code: str
    forbidden: tuple[str, ...]


def _imports(*modules: str) -> str:
    return "".join(f"import {m}\n" for m in modules)


CLI_HELP = (
    "import contextlib, io\nfrom tracer.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
    "    try:\n        main(['--help'])\n"
    "    except SystemExit as done:\n        assert done.code in (0, None), done.code\n"
    "assert 'Usage' in out.getvalue()\n"
)

RULES = [
    Rule("core", _imports(*_modules("tracer.core")), CORE_FORBIDDEN),
    Rule("store", _imports(*_modules("tracer.store")), ("torch", "textual", "pluggy")),
    Rule("tui", _imports(*_modules("tracer.tui")), ("torch",)),
    Rule("checks", _imports(*_modules("tracer.checks")), ("torch", "textual", "pluggy")),
    Rule("web", _imports(*_modules("tracer.web")), ("torch", "textual")),
    Rule("records", _imports("tracer.records"), ("torch",)),
    Rule("sink", _imports("tracer.sink"), ("torch",)),
    Rule("formatting", _imports("tracer.formatting"), ("torch", "sqlalchemy", "textual", "rich")),
    Rule("package", _imports("tracer"), ("torch", "sqlalchemy", "textual", "pluggy")),
    Rule(
        "plugin manager",
        _imports("tracer.plugins.manager", "tracer.plugins.hookspecs")
        + "tracer.plugins.manager.PluginManager.load().pipelines\n",
        ("torch", "textual", "sqlalchemy"),
    ),
    Rule("tracer --help", CLI_HELP, ("torch", "sqlalchemy", "textual")),
]


def _loaded(rule: Rule) -> list[str]:
    """The forbidden libraries that ``rule.code`` loaded, in a fresh interpreter."""
    code = rule.code + (
        f"import json, sys\nprint(json.dumps([m for m in {rule.forbidden!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_layering_rule_holds_in_a_fresh_interpreter(rule: Rule) -> None:
    assert _loaded(rule) == [], f"{rule.name} loaded {_loaded(rule)}"


def test_layering_rules_cover_every_core_module() -> None:
    names = _modules("tracer.core")
    assert {"tracer.core.trace", "tracer.core.stats", "tracer.core.collector"} <= set(names)
    assert all(f"import {n}\n" in RULES[0].code for n in names)


# --- static: every import statement of the core, function bodies included ------------------


def _file_of(module: str) -> Path | None:
    """The source file of a ``tracer`` module, None for anything else or a compiled part."""
    if module.split(".")[0] != "tracer":
        return None
    base = ROOT.parent / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST, lazy: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run: at module level, and inside functions when ``lazy``
    (``if TYPE_CHECKING:`` blocks never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _import_nodes_of(child, lazy))
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not lazy:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _import_nodes(node, lazy)


def _import_nodes_of(node: ast.AST, lazy: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _import_nodes(node, lazy)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules an import statement loads (``from a import b`` may load ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        anchor = parts if is_package else parts[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    subs = [f"{base}.{alias.name}" for alias in node.names]
    return [base, *(s for s in subs if _file_of(s) is not None)]


def _parents(module: str) -> list[str]:
    """``tracer.store.diff`` -> ``tracer``, ``tracer.store``, ``tracer.store.diff``."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def static_violations(
    source: str, module: str, forbidden: tuple[str, ...], is_package: bool = False
) -> list[str]:
    """Import chains from ``source`` (all its imports, lazy ones too) to a forbidden library:
    core modules reached are read whole, other ``tracer`` modules at module level only."""
    found: list[str] = []
    seen: set[str] = set()
    queue: list[tuple[str, ast.AST, bool, tuple[str, ...]]] = [
        (module, ast.parse(source), is_package, (module,))
    ]
    while queue:
        name, tree, package, chain = queue.pop()
        lazy = name == module or name.startswith("tracer.core")
        for node in _import_nodes(tree, lazy):
            for target in _targets(node, name, package):
                if target.split(".")[0] in forbidden:
                    found.append(" -> ".join([*chain, target]))
                for step in _parents(target):
                    path = _file_of(step)
                    if path is None or step in seen:
                        continue
                    seen.add(step)
                    tree_of = ast.parse(path.read_text())
                    queue.append((step, tree_of, path.name == "__init__.py", (*chain, step)))
    return found


@pytest.mark.parametrize("module", _modules("tracer.core"))
def test_layering_core_imports_nothing_forbidden_even_lazily(module: str) -> None:
    path = _file_of(module)
    assert path is not None
    found = static_violations(path.read_text(), module, CORE_FORBIDDEN, path.name == "__init__.py")
    assert found == [], "\n".join(found)


def test_layering_static_check_catches_a_lazy_import_through_the_store() -> None:
    source = "def export():\n    from tracer.store import open_store\n    return open_store\n"
    found = static_violations(source, "tracer.core.example", CORE_FORBIDDEN)
    assert found, "a lazy import of the store from the core went unnoticed"
    assert all(f.startswith("tracer.core.example -> tracer.store") for f in found), found
    assert any(f.endswith("-> sqlalchemy") for f in found), found


def test_layering_static_check_catches_a_direct_lazy_import_and_skips_type_checking() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import rich\n"
        "def show():\n    import textual.app\n"
    )
    found = static_violations(source, "tracer.core.example", CORE_FORBIDDEN)
    assert found == ["tracer.core.example -> textual.app"]
