"""The plateau block: ReduceLROnPlateau in torch's dialect (default) or Keras' callback dialect.

torch (``style: torch``), torch's names and defaults (``metric`` is ours: torch is handed the value)::

    {metric: loss, mode: min, factor: 0.1, patience: 10, threshold: 1e-4, threshold_mode: rel,
     cooldown: 0, min_lr: 0, eps: 1e-8}

Keras (``style: keras``), the callback's names and defaults::

    {style: keras, monitor: val_loss, mode: auto, factor: 0.1, patience: 10, min_delta: 1e-4,
     cooldown: 0, min_lr: 0}

``monitor`` is Keras' name for ``metric`` (either may be given in either style). Keras reduces after
``patience`` bad values, torch after ``patience + 1``; ``core/plateau.py`` spells out both rules. Keras'
``mode: auto`` follows Keras 3: ``loss`` (or ``val_loss``) is minimized, a Keras built-in metric goes the way
Keras' metric object says (``val_accuracy``, ``auc``: max; ``val_mae``: min), and any other name is refused,
as Keras refuses it, with a request for an explicit ``mode``. A torch-only field (``threshold``,
``threshold_mode``, ``eps``) in a Keras block, or ``min_delta`` in a torch block, is refused rather than
ignored.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from lrserve.schemas.core.schedule import Schedule, constant
from lrserve.schemas.specs.base import FiniteFloat, PerGroupLr, ScheduleSpecBase, StepCount, StrictModel

# Directions of Keras 3's built-in metrics (their ``_direction``), by the name they log under (without
# ``val_``), including compile()'s string aliases; what Keras' ``mode="auto"`` can resolve without a model.
KERAS_MAXIMIZED = frozenset(
    {
        "acc", "accuracy", "auc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
        "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "binary_io_u", "io_u", "mean_io_u",
        "one_hot_io_u", "one_hot_mean_io_u", "concordance_correlation", "pearson_correlation",
        "cosine_similarity", "f1_score", "fbeta_score", "precision", "recall", "r2_score",
        "precision_at_recall", "recall_at_precision", "sensitivity_at_specificity", "specificity_at_sensitivity",
    }
)  # fmt: skip
KERAS_MINIMIZED = frozenset(
    {
        "loss", "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
        "categorical_hinge", "hinge", "squared_hinge", "kl_divergence", "logcosh", "poisson",
        "mean_absolute_error", "mae", "mean_absolute_percentage_error", "mape", "mean_squared_error", "mse",
        "mean_squared_logarithmic_error", "msle", "root_mean_squared_error",
    }
)  # fmt: skip
_TORCH_ONLY = ("threshold", "threshold_mode", "eps")


def keras_auto_mode(metric: str) -> Literal["min", "max"] | None:
    """Keras 3's ``mode="auto"`` for a metric name; None where Keras could not tell (it raises)."""
    name = metric.removeprefix("val_")
    if name in KERAS_MINIMIZED:
        return "min"
    if name in KERAS_MAXIMIZED:
        return "max"
    return None


class PlateauSpec(StrictModel):
    """ReduceLROnPlateau layered on any schedule: each reduction multiplies the run's scale by ``factor``."""

    per_group_fields: ClassVar[tuple[str, ...]] = ("min_lr",)

    style: Literal["torch", "keras"] = Field("torch", description="whose counting rules apply")
    metric: str = Field(
        "loss",
        min_length=1,
        max_length=200,
        description="name of the metric watched (default 'loss'; Keras style: 'val_loss'); other metrics are "
        "recorded, not used",
    )
    monitor: str | None = Field(
        None, min_length=1, max_length=200, exclude=True, description="Keras' name for metric (give one of them)"
    )
    mode: Literal["min", "max", "auto"] = Field(
        "min",
        description="min: lower is better; max: higher is better; auto (Keras; its default there): from the "
        "metric's name as Keras 3 decides it",
    )
    factor: FiniteFloat = Field(0.1, description="multiplier of a reduction, in (0, 1)")
    patience: StepCount = Field(10, description="bad values tolerated before a reduction")
    threshold: FiniteFloat = Field(1e-4, ge=0, description="torch: improvement needed to count as better")
    threshold_mode: Literal["rel", "abs"] = Field("rel", description="torch: relative or absolute threshold")
    min_delta: FiniteFloat | None = Field(None, ge=0, description="Keras: absolute improvement needed (default 1e-4)")
    cooldown: StepCount = Field(0, description="values to wait after a reduction before counting again")
    min_lr: PerGroupLr = Field(0.0, description="lower bound of the LR, scalar or one per group")
    eps: FiniteFloat = Field(1e-8, ge=0, description="torch: a reduction smaller than eps is skipped")

    @model_validator(mode="before")
    @classmethod
    def _dialect_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        monitor = data.pop("monitor", None)
        if monitor is not None:
            if "metric" in data and data["metric"] != monitor:
                raise ValueError("give the metric's name once: 'metric' (torch) or 'monitor' (Keras), not both")
            data["metric"] = monitor
        if data.get("style") == "keras":
            data.setdefault("metric", "val_loss")
            data.setdefault("mode", "auto")
        return data

    # Field validators, not one model validator, so that each error's path names the field at fault. They run
    # only for fields the input gives (and those ``_dialect_defaults`` fills in), after the fields before them.

    @field_validator("factor")
    @classmethod
    def _factor_reduces(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError("must be in (0, 1): a reduction must reduce")
        return v

    @field_validator("mode")
    @classmethod
    def _mode_fits_style(cls, v: str, info: ValidationInfo) -> str:
        if v == "auto":
            if info.data.get("style") == "torch":
                raise ValueError("'auto' is Keras' (style: keras); torch takes 'min' or 'max'")
            metric = info.data.get("metric")
            if metric is not None and keras_auto_mode(metric) is None:
                raise ValueError(
                    f"'auto' cannot tell whether {metric!r} should fall or rise (Keras 3 knows only 'loss' and "
                    "its built-in metrics); give mode 'min' or 'max'"
                )
        return v

    @field_validator(*_TORCH_ONLY)
    @classmethod
    def _torch_only(cls, v: Any, info: ValidationInfo) -> Any:
        # The default is accepted: a dump of a Keras-style block (defaults included) must load again.
        if info.data.get("style") == "keras" and info.field_name and v != cls.model_fields[info.field_name].default:
            raise ValueError(f"{info.field_name} is torch's (style: torch); Keras uses min_delta")
        return v

    @field_validator("min_delta")
    @classmethod
    def _keras_only(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and info.data.get("style") == "torch":
            raise ValueError("min_delta is Keras' name (style: keras); torch uses threshold/threshold_mode")
        return v

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        if self.mode == "auto":
            return keras_auto_mode(self.metric) or "min"
        return self.mode

    @property
    def resolved_min_delta(self) -> float:
        return 1e-4 if self.min_delta is None else self.min_delta


class ReduceLROnPlateau(PlateauSpec, ScheduleSpecBase):
    """torch's ``ReduceLROnPlateau`` as a schedule type: the group's base LR, held, plus the plateau rules.

    ``{type: ReduceLROnPlateau, metric: val_loss, mode: min, factor: 0.5, patience: 5}``
    """

    type: Literal["ReduceLROnPlateau"] = "ReduceLROnPlateau"

    per_group_fields: ClassVar[tuple[str, ...]] = ("min_lr",)

    def to_schedule(self, base_lrs: np.ndarray[Any, np.dtype[np.float64]]) -> Schedule:
        return constant(base_lrs)

    def as_plateau(self) -> PlateauSpec:
        return PlateauSpec.model_validate(self.model_dump(exclude={"type"}, exclude_unset=True))
