"""The partition hierarchy of one logical model: global → e.g. country → city.

Partitions are metadata over one training set: a node is a path of partition values and the
indices of its rows, never a copy of them. A row belongs to the root and to every node along its
path; a null partition value stops its path at the parent. Node ids are paths of URL-quoted
values (`global/US/nyc`), so no value can be mistaken for a separator.

    >>> rows = {"country": ["US", "US", "GB"], "city": ["nyc", "sfo", None]}
    >>> tree = PartitionTree.build(rows, 3, ["country", "city"])
    >>> [(n.id, n.rows.tolist()) for n in tree.nodes.values()]
    [('global', [0, 1, 2]), ('global/GB', [2]), ('global/US', [0, 1]), ('global/US/nyc', [0]), ('global/US/sfo', [1])]
    >>> tree.route({"country": "US", "city": "aus"})
    'global/US'
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np

__all__ = ["ROOT", "PartitionNode", "PartitionTree", "node_id", "route", "route_many"]

ROOT = "global"


def node_id(values: Sequence[Any]) -> str:
    return "/".join([ROOT, *(quote(str(v), safe="") for v in values)])


@dataclass(frozen=True)
class PartitionNode:
    id: str
    parent: str | None
    depth: int
    values: tuple[str, ...]
    rows: np.ndarray  # indices into the training set, ascending


@dataclass(frozen=True)
class PartitionTree:
    levels: tuple[str, ...]
    nodes: dict[str, PartitionNode]  # parents before children

    @classmethod
    def build(cls, columns: Mapping[str, Sequence[Any]], n: int, levels: Sequence[str]) -> PartitionTree:
        nodes = {ROOT: PartitionNode(ROOT, None, 0, (), np.arange(n, dtype=np.int64))}
        paths: list[tuple[str, ...] | None] = [()] * n
        for depth, level in enumerate(levels, start=1):
            members: dict[tuple[str, ...], list[int]] = defaultdict(list)
            values = columns[level]
            for i in range(n):
                path = paths[i]
                if path is None or values[i] is None:
                    paths[i] = None
                    continue
                extended = (*path, str(values[i]))
                paths[i] = extended
                members[extended].append(i)
            for path in sorted(members):
                nodes[node_id(path)] = PartitionNode(
                    node_id(path), node_id(path[:-1]), depth, path, np.asarray(members[path], dtype=np.int64)
                )
        return cls(tuple(levels), nodes)

    def by_depth(self) -> list[list[PartitionNode]]:
        out: list[list[PartitionNode]] = [[] for _ in range(len(self.levels) + 1)]
        for node in self.nodes.values():
            out[node.depth].append(node)
        return out

    def route(self, values: Mapping[str, Any]) -> str:
        """The deepest node on a row's path (a value never seen in training stops at its parent)."""
        return route(self.levels, set(self.nodes), values)

    def deepest(self, n: int) -> np.ndarray:
        """Per row, the index (in `nodes` order) of the deepest node holding it."""
        order = {node_id: k for k, node_id in enumerate(self.nodes)}
        out = np.zeros(n, dtype=np.int64)
        for node in self.nodes.values():  # parents first, so children overwrite
            out[node.rows] = order[node.id]
        return out


def route(levels: Sequence[str], known: set[str] | Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """The deepest known node on the path of `values` (used by serving with the manifest's nodes)."""
    current: list[Any] = []
    found = ROOT
    for level in levels:
        value = values.get(level)
        if value is None:
            break
        current.append(value)
        candidate = node_id(current)
        if candidate not in known:
            break
        found = candidate
    return found


def route_many(
    levels: Sequence[str], known: set[str] | Mapping[str, Any], columns: Mapping[str, Sequence[Any]], n: int
) -> list[str]:
    """`route` of each of `n` rows given as columns; each distinct path is routed once."""
    if not levels:
        return [ROOT] * n
    nulls = [None] * n
    # As text first: node ids are made of str(value), and 1, 1.0 and True are one dict key.
    text = [[None if v is None else str(v) for v in columns.get(level, nulls)] for level in levels]
    paths = zip(*text, strict=True)
    routed: dict[tuple[Any, ...], str] = {}
    out = []
    for path in paths:
        node = routed.get(path)
        if node is None:
            node = routed[path] = route(levels, known, dict(zip(levels, path, strict=True)))
        out.append(node)
    return out
