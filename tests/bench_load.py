"""``bench/load.py`` as a module, for the tests that drive it (tests/ops, tests/faults); bench/ is no package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PATH = Path(__file__).resolve().parents[1] / "bench" / "load.py"
NAME = "lrserve_bench_load"


def bench_load() -> ModuleType:
    if NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(NAME, PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[NAME]
