"""Each source record's `prior_max`: the greatest event time among the earlier valid events of its
type in its partition. The engine calls an event late when it is older than its `prior_max` minus
the group's allowed lateness, so lateness is a pure function of each partition's log: a stream, a
restarted stream and a replay of the same log reject exactly the same events.

Readers stamp records in offset order: the stream processor per source partition (its snapshot
carries the maxima), a Kafka backfill per partition as it reads, the archive replay with
`prior_maxima` over the whole range at once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PriorMax", "prior_maxima"]


class PriorMax:
    """Running maxima of event time per (partition, event type), for readers that go in offset order."""

    def __init__(self, maxima: dict[tuple[int, str], int] | None = None) -> None:
        self.maxima: dict[tuple[int, str], int] = dict(maxima or {})

    def stamp(self, partition: int, event_type: str, event_time: int) -> int:
        """The prior max of a valid event (-1 if it is the first), which then counts for later ones."""
        key = (partition, event_type)
        prior = self.maxima.get(key, -1)
        if event_time > prior:
            self.maxima[key] = event_time
        return prior

    def of(self, event_type: str) -> dict[int, int]:
        """The greatest event time seen per partition for one type (a group's source progress)."""
        return {p: t for (p, kind), t in self.maxima.items() if kind == event_type}


def prior_maxima(partitions: np.ndarray, offsets: np.ndarray, times: np.ndarray) -> np.ndarray:
    """`prior_max` of every event of one type, given in any order (-1 for each partition's first).

    >>> prior_maxima(np.array([0, 0, 1, 0]), np.array([3, 1, 5, 2]), np.array([10, 30, 7, 20])).tolist()
    [30, -1, -1, 30]
    """
    n = len(times)
    out = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return out
    order = np.lexsort((offsets, partitions))
    p, t = partitions[order], np.asarray(times, dtype=np.int64)[order]
    result = np.empty(n, dtype=np.int64)
    starts = np.flatnonzero(_starts(p))
    ends = np.append(starts[1:], n)
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        segment = np.maximum.accumulate(t[s:e])
        result[s] = -1
        result[s + 1 : e] = segment[:-1]
    out[order] = result
    return out


def _starts(partitions: np.ndarray) -> np.ndarray:
    starts = np.empty(partitions.size, dtype=bool)
    if partitions.size:
        starts[0] = True
        np.not_equal(partitions[1:], partitions[:-1], out=starts[1:])
    return starts
