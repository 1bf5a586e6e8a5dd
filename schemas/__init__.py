"""lrserve.schemas: schedule specs in torch's, Keras' and Caffe's dialects, and the pure numeric core.

Depends on pydantic and numpy only: no web, no database (``tests/schemas/test_purity.py`` checks it).
"""

from lrserve.schemas.core.schedule import Schedule
from lrserve.schemas.evaluate import Metric, Reduction, build, evaluate, parse_spec, replay_plateau
from lrserve.schemas.specs.plateau import PlateauSpec
from lrserve.schemas.specs.run import ParamGroup, RunSpec
from lrserve.schemas.specs.union import SCHEDULE_ADAPTER, ScheduleSpec, schedule_type_names
from lrserve.schemas.validation import load_spec_text, validate_model

__all__ = [
    "SCHEDULE_ADAPTER",
    "Metric",
    "ParamGroup",
    "PlateauSpec",
    "Reduction",
    "RunSpec",
    "Schedule",
    "ScheduleSpec",
    "build",
    "evaluate",
    "load_spec_text",
    "parse_spec",
    "replay_plateau",
    "schedule_type_names",
    "validate_model",
]
