"""Which package may import which, checked over the source (every import, at any depth in a module,
and what those modules import in turn).

The SDK is what users install into their agents: it must run without the server's dependencies.
The collector and the web share only the storage layer, the pricing and the settings: the
ClickHouse schema is their contract. `tokentrail.cli` and `tokentrail.server.run` start the
processes and are the only modules that may reach everything.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("instrumentation", "collector", "web")

SERVER_PACKAGES = (
    "tokentrail.analysis",
    "tokentrail.cli",
    "tokentrail.collector",
    "tokentrail.pricing",
    "tokentrail.server",
    "tokentrail.store",
    "tokentrail.web",
)
SERVER_DEPENDENCIES = (
    "chdb",
    "clickhouse_connect",
    "fastapi",
    "genai_prices",
    "jinja2",
    "prometheus_client",
    "pyarrow",
    "rich",
    "starlette",
    "uvicorn",
)

#: (importer, what it may not reach, directly or through other modules)
CONTRACTS = (
    ("tokentrail.instrumentation", SERVER_PACKAGES + SERVER_DEPENDENCIES),
    ("tokentrail.semconv", SERVER_PACKAGES + SERVER_DEPENDENCIES),
    ("tokentrail.demo", SERVER_PACKAGES + SERVER_DEPENDENCIES),
    ("tokentrail.collector", ("tokentrail.web", "tokentrail.cli", "tokentrail.server.run")),
    ("tokentrail.web", ("tokentrail.collector", "tokentrail.cli", "tokentrail.server.run")),
    (
        "tokentrail.analysis",
        ("tokentrail.collector", "tokentrail.web", "tokentrail.cli", "tokentrail.server.run"),
    ),
    ("tokentrail.store", ("tokentrail.collector", "tokentrail.analysis", "tokentrail.web", "tokentrail.cli")),
    (
        "tokentrail.pricing",
        ("tokentrail.collector", "tokentrail.analysis", "tokentrail.web", "tokentrail.store"),
    ),
    (
        "tokentrail.providers",
        SERVER_PACKAGES + SERVER_DEPENDENCIES,
    ),
    ("tokentrail.server.settings", ("tokentrail.collector", "tokentrail.analysis", "tokentrail.web")),
)


def _modules() -> dict[str, Path]:
    found = {}
    for source in SOURCES:
        for path in (ROOT / source / "tokentrail").rglob("*.py"):
            parts = path.relative_to(ROOT / source).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imported(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            # `from package import module` imports the module
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return out


@cache
def _reach(name: str) -> frozenset[str]:
    """Every module `name` imports, directly or through our own modules."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        for imported in _imported(current, MODULES[current]):
            if imported in seen:
                continue
            seen.add(imported)
            if imported in MODULES:
                todo.append(imported)
    return frozenset(seen)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_sources_are_found():
    for package in (
        "tokentrail.instrumentation",
        "tokentrail.collector",
        "tokentrail.web",
        "tokentrail.store",
    ):
        assert package in MODULES


@pytest.mark.parametrize(("importer", "forbidden"), CONTRACTS, ids=[c[0] for c in CONTRACTS])
def test_layers(importer: str, forbidden: tuple[str, ...]):
    broken = []
    for name in sorted(m for m in MODULES if _within(m, importer)):
        for reached in sorted(_reach(name)):
            if any(_within(reached, f) for f in forbidden):
                broken.append(f"{name} reaches {reached}")
    assert not broken, "\n".join(broken)


def test_a_broken_layer_is_seen(tmp_path, monkeypatch):
    """The check itself: a module that imports across the line is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def later():\n    from tokentrail.collector import writer\n")
    monkeypatch.setitem(MODULES, "tokentrail.web.bad", bad)
    _reach.cache_clear()
    try:
        assert "tokentrail.collector.writer" in _reach("tokentrail.web.bad")
        with pytest.raises(
            AssertionError, match=re.escape("tokentrail.web.bad reaches tokentrail.collector")
        ):
            test_layers("tokentrail.web", ("tokentrail.collector",))
    finally:
        _reach.cache_clear()
