"""The aggregation kernels: one implementation, used by streaming, backfill and serving."""

from processors.kernels.aggregations import Agg, finish, merge_partial
from processors.kernels.tiles import TileMap, WindowSpec, fold_batch, hop_for, value_as_of, window_start

__all__ = [
    "Agg",
    "TileMap",
    "WindowSpec",
    "finish",
    "fold_batch",
    "hop_for",
    "merge_partial",
    "value_as_of",
    "window_start",
]
