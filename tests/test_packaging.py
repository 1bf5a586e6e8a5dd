"""The distribution ships every package and its data files, under the import names users see."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
LAYERS = {"schemas": "lrserve.schemas", "service": "lrserve.service", "client": "lrserve.client", "cli": "lrserve.cli"}


def test_every_folder_with_an_init_is_listed_as_a_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in LAYERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - found == set(), "these are listed but have no __init__.py"


@pytest.mark.slow
def test_wheel_contains_the_layers_and_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [*PIP_WHEEL, "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("lrserve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "lrserve/schemas/core/schedule.py" in names
    assert "lrserve/service/runs.py" in names
    assert "lrserve/schemas/py.typed" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
