"""The leaderboard of the model registry, and the metric keys training writes into `ModelVersion.metrics`.

Keys, for the whole model on held-out rows:

- regression: `rmse`, `mae`, `r2`, `mape`, `bias`; ranked by `rmse`, lower first;
- binary: `auc`, `log_loss`, `accuracy`, `brier`; ranked by `auc`, higher first;
- the same names prefixed `baseline_global_mean.` and `baseline_node_mean.` for the two baselines
  (the mean label of all training rows; the mean label of the row's partition node);
- the sizes of the run: `rows_train`, `rows_validation`, `nodes`, `nodes_fallback`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from streams.events.platform import ModelTask

if TYPE_CHECKING:
    from models.registry import RegistryState, VersionRecord

__all__ = [
    "BASELINES",
    "COUNT_METRICS",
    "PRIMARY_METRIC",
    "TASK_METRICS",
    "LeaderboardRow",
    "infer_task",
    "leaderboard",
]

# -- the metric keys ---------------------------------------------------------------------------------
# The whole model on held-out rows under the plain names; each baseline under `<baseline>.<name>`;
# the sizes of the run as counts.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("rmse", "mae", "r2", "mape", "bias"),
    "binary": ("auc", "log_loss", "accuracy", "brier"),
}
# The metric that ranks versions of a task, and whether lower is better.
PRIMARY_METRIC: dict[str, tuple[str, Literal["min", "max"]]] = {"regression": ("rmse", "min"), "binary": ("auc", "max")}
BASELINES = ("baseline_global_mean", "baseline_node_mean")
COUNT_METRICS = ("rows_train", "rows_validation", "nodes", "nodes_fallback")


# -- the leaderboard ------------------------------------------------------------------------------------
def infer_task(record: VersionRecord) -> ModelTask | None:
    """The record's task, or the one its metrics imply (`rmse` -> regression, `auc` -> binary)."""
    if record.task is not None:
        return record.task
    if "rmse" in record.metrics:
        return "regression"
    if "auc" in record.metrics:
        return "binary"
    return None


@dataclass(frozen=True)
class LeaderboardRow:
    """One version on the leaderboard: its own metrics, its baselines' and the run's sizes."""

    model: str
    version: int
    status: Literal["registered", "retired"]
    aliases: tuple[str, ...]
    task: ModelTask | None
    rank: int | None  # 1 = best of its model; None without the primary metric
    primary: str | None  # the metric that ranks (rmse, auc)
    score: float | None
    metrics: dict[str, float]  # the model's own: rmse, mae, … (and any other unprefixed metric)
    baselines: dict[str, dict[str, float]]  # "baseline_node_mean" -> {"rmse": …}
    counts: dict[str, float]  # rows_train, rows_validation, nodes, nodes_fallback
    registered_at: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "aliases": list(self.aliases),
            "task": self.task,
            "rank": self.rank,
            "primary": self.primary,
            "score": self.score,
            "metrics": self.metrics,
            "baselines": self.baselines,
            "counts": {k: int(v) if float(v).is_integer() else v for k, v in self.counts.items()},
            "registered_at": self.registered_at,
        }


def _row(state: RegistryState, record: VersionRecord) -> LeaderboardRow:
    task = infer_task(record)
    own: dict[str, float] = {}
    baselines: dict[str, dict[str, float]] = {}
    counts: dict[str, float] = {}
    for key, value in record.metrics.items():
        prefix, dot, name = key.partition(".")
        if dot and prefix.startswith("baseline_"):
            baselines.setdefault(prefix, {})[name] = value
        elif key in COUNT_METRICS:
            counts[key] = value
        else:
            own[key] = value
    primary = PRIMARY_METRIC[task][0] if task else None
    return LeaderboardRow(
        model=record.model,
        version=record.version,
        status=record.status,
        aliases=tuple(state.aliases_pointing_at(record.model, record.version)),
        task=task,
        rank=None,
        primary=primary,
        score=own.get(primary) if primary else None,
        metrics=own,
        baselines=baselines,
        counts=counts,
        registered_at=record.registered_at,
    )


def leaderboard(state: RegistryState, model: str | None = None) -> list[LeaderboardRow]:
    """Every version (of `model`, or of all models by name), best first by its task's primary metric.

    Regression ranks by `rmse` (lower first), binary by `auc` (higher first); versions without the
    metric come last, newest first. Retired versions are listed with their status.
    """
    if model is not None:
        state.check_model(model)
    out: list[LeaderboardRow] = []
    for name in [model] if model is not None else state.models():
        rows = [_row(state, r) for r in state.versions_of(name)]

        ranks: dict[str, int] = {}
        for row in sorted(rows, key=_order):
            if row.score is not None and row.task is not None:
                # Versions of different tasks are not comparable: each task is ranked on its own.
                ranks[row.task] = ranks.get(row.task, 0) + 1
                row = replace(row, rank=ranks[row.task])
            out.append(row)
    return out


def _order(row: LeaderboardRow) -> tuple[int, str, float, int]:
    if row.score is None or row.task is None:
        return (1, "", 0.0, -row.version)
    lower_better = PRIMARY_METRIC[row.task][1] == "min"
    return (0, row.task, row.score if lower_better else -row.score, -row.version)
