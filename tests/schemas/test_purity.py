"""lrserve.schemas is pure: pydantic, numpy and PyYAML, nothing of the server, the client or torch.

A training worker installs the base package and imports the schemas to evaluate plans offline; a web framework,
a database driver or torch coming along would make that install heavy and slow to import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lrserve.schemas

SCHEMAS_DIR = Path(lrserve.schemas.__file__).parent
FORBIDDEN_MODULES = (
    "fastapi", "starlette", "sqlalchemy", "alembic", "psycopg", "uvicorn", "httpx", "pydantic_settings",
    "torch", "keras", "tensorflow", "jax", "matplotlib", "typer", "rich",
)  # fmt: skip
FORBIDDEN_IMPORTS = ("lrserve.service", "lrserve.client", "lrserve.cli")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _offenders(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in FORBIDDEN_MODULES or m.startswith(FORBIDDEN_IMPORTS))


def test_importing_schemas_imports_nothing_heavy() -> None:
    assert _offenders(_modules_after("import lrserve.schemas")) == []


def test_every_schemas_module_imports_nothing_heavy() -> None:
    code = (
        "import importlib, pkgutil, lrserve.schemas as s\n"
        "for m in pkgutil.walk_packages(s.__path__, 'lrserve.schemas.'):\n"
        "    importlib.import_module(m.name)"
    )
    modules = _modules_after(code)
    assert "lrserve.schemas.core.expression" in modules  # the walk did reach the submodules
    assert _offenders(modules) == []


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


SOURCES = sorted(SCHEMAS_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(SCHEMAS_DIR)) for p in SOURCES])
def test_schemas_source_imports_nothing_of_service_client_or_cli(path: Path) -> None:
    bad = [name for name in _imports(path) if name.startswith(FORBIDDEN_IMPORTS)]
    # Even lazily (inside a function) or for typing only: the dependency runs one way.
    assert bad == []
