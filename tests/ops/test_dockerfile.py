"""The Dockerfile, checked without Docker: it copies what the package is built from, installs the server extra,
runs as a non-root user, stops on SIGTERM and has ``lrserve`` as entry point; ``.dockerignore`` keeps none of it
out."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)  # join continued lines
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.+)$", text, re.MULTILINE)]


def final_stage() -> str:
    return DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]


def test_copies_what_the_package_is_built_from() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied = {part.rstrip("/") for line in instructions("COPY") if "--from" not in line for part in line.split()[:-1]}
    assert folders | {"pyproject.toml", pyproject["project"]["readme"]} == copied
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert not [c for c in copied for pattern in ignored if fnmatch.fnmatch(c, pattern)]


def test_final_image() -> None:
    assert [line.split()[0] for line in instructions("FROM")] == ["python:3.11-slim", "python:3.11-slim"]
    assert '".[server]"' in " ".join(instructions("RUN"))
    stage = final_stage()
    user = re.search(r"^USER\s+(\S+)", stage, re.MULTILINE)
    assert user is not None and user.group(1) not in ("root", "0")
    assert re.search(rf"useradd .*--uid \d+ .*\b{user.group(1)}\b", re.sub(r"\\\n\s*", " ", stage))
    assert instructions("STOPSIGNAL") == ["SIGTERM"]
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["lrserve"]
    assert json.loads(instructions("CMD")[-1])[:3] == ["serve", "--host", "0.0.0.0"]
