"""The prediction rule: which events the features of a prediction at time `t` may see.

A prediction made at request time `t` uses every feature **as of `t - 1` ms**: built from the
events strictly before the request, never from the request's own event (or anything at or after
its instant). Online, the request's own event may or may not have reached the store when the
application asks (it is often produced at the same moment); offline, a training set built from
the whole log would always see it. With the rule both see the same events, so the served value
and the training-set value are the same number. Defined here once; training sets
(`backfill.training`), batch prediction, serving and `explain` call it.

    >>> features_instant(1_767_225_600_000)
    1767225599999
"""

from __future__ import annotations

from typing import overload

import numpy as np

__all__ = ["features_instant"]


@overload
def features_instant(request_time_ms: int) -> int: ...
@overload
def features_instant(request_time_ms: np.ndarray) -> np.ndarray: ...
def features_instant(request_time_ms: int | np.ndarray) -> int | np.ndarray:
    """The instant a prediction's features are taken as of: 1 ms before the request."""
    return request_time_ms - 1
