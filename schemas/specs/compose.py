"""Composite schedules: torch's SequentialLR and ChainedScheduler (nested specs)."""

from __future__ import annotations

from lrserve.schemas.specs.base import ScheduleSpecBase

SPECS: tuple[type[ScheduleSpecBase], ...] = ()
