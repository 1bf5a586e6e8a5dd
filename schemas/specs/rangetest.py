"""rangetest dialect (placeholder: filled in by its owner)."""

from __future__ import annotations

from typing import Any

SPECS: tuple[Any, ...] = ()
