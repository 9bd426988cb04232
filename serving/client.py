"""A client of the prediction service: rows in, predictions out, with brief retries and counts.

    >>> client = PredictionClient("http://127.0.0.1:8080", model="eta")  # doctest: +SKIP
    >>> client.wait_ready(timeout_s=30)  # doctest: +SKIP
    >>> client.predict_rows([{"pickup_zone": "sao-03", "city": "sao", "distance_km": 4.2}])  # doctest: +SKIP
    0

`predict_rows` returns how many rows failed (after retries) instead of raising, so that a caller
producing a stream goes on and reports the count; a service that never answers, refuses the model,
or fails `max_consecutive_failures` requests in a row raises `PredictionServiceError` naming the URL.
The only module that imports httpx outside the service's tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["PredictionClient", "PredictionClientStats", "PredictionServiceError"]

logger = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class PredictionServiceError(RuntimeError):
    """The prediction service cannot be used: not answering, not serving the model, or failing every request."""


@dataclass
class PredictionClientStats:
    """What a client sent and how it went; latencies of successful requests in ms."""

    rows: int = 0
    predicted: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # reason -> requests that ended with it
    latencies_ms: list[float] = field(default_factory=list)

    def latency_ms(self, quantile: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


class PredictionClient:
    """POSTs rows to `<base_url>/v1/models/<model>/predict` (with the alias header when given).

    A request that fails with a transport error or a retryable status (429, 5xx) is tried again
    `retries` times, `backoff_s` doubling between tries; one that is refused (4xx: the rows are
    wrong) is not. Thread-unsafe: one client per producer.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "eta",
        alias: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        max_consecutive_failures: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            msg = f"expected an http:// or https:// URL of the prediction service, got {base_url!r}"
            raise ValueError(msg)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.alias = alias
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_consecutive_failures = max_consecutive_failures
        self.stats = PredictionClientStats()
        self._consecutive_failures = 0
        headers = {"x-model-alias": alias} if alias else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers, transport=transport)

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1/models/{self.model}/predict"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PredictionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until `/readyz` says the models are loaded and this client's model is among them."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while True:
            try:
                answer = self._http.get("/readyz")
                body = answer.json()
                served = body.get("models") if isinstance(body, dict) else None
                served = served if isinstance(served, dict) else {}
                if answer.status_code == 200 and self.model in served:
                    return
                last = f"HTTP {answer.status_code}, serving {', '.join(sorted(served)) or 'no model'}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            except ValueError as exc:  # not JSON: not our service
                last = f"not a prediction service ({exc})"
            if time.monotonic() >= deadline:
                msg = f"the prediction service at {self.base_url} is not ready after {timeout_s:g} s ({last})"
                raise PredictionServiceError(msg)
            time.sleep(0.2)

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Predict `rows` in one request; returns how many failed (0 or len(rows)) after retries."""
        if not rows:
            return 0
        answered, reason = self._post(rows)
        return 0 if answered is not None else self._failed(len(rows), reason)

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The service's answer for each row (prediction, partition, features…); raises
        `PredictionServiceError` with the reason when the request failed after retries."""
        answered, reason = self._post(rows)
        if answered is None:
            self._failed(len(rows), reason)
            msg = f"prediction request to {self.url} failed: {reason}"
            raise PredictionServiceError(msg)
        return answered

    def _post(self, rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]] | None, str]:
        """The answered rows, or None and why not (after retries)."""
        self.stats.rows += len(rows)
        body = {"rows": list(rows)}
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            self.stats.requests += 1
            started = time.perf_counter()
            try:
                answer = self._http.post(f"/v1/models/{self.model}/predict", json=body)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if answer.status_code == 200:
                self.stats.latencies_ms.append((time.perf_counter() - started) * 1000)
                self.stats.predicted += len(rows)
                self._consecutive_failures = 0
                answered: list[dict[str, Any]] = answer.json()["rows"]
                return answered, ""
            reason = f"HTTP {answer.status_code}: {answer.text[:300]}"
            if answer.status_code == 404:  # the service does not serve this model: no row will succeed
                msg = f"{self.url} answered 404: {answer.text[:300]}"
                raise PredictionServiceError(msg)
            if answer.status_code not in _RETRYABLE_STATUS:
                break
        return None, reason

    def _failed(self, n: int, reason: str) -> int:
        self.stats.failed += n
        key = reason.split(":", 1)[0]
        self.stats.errors[key] = self.stats.errors.get(key, 0) + 1
        self._consecutive_failures += 1
        logger.warning("prediction request to %s failed (%d rows): %s", self.url, n, reason)
        if self._consecutive_failures >= self.max_consecutive_failures:
            msg = (
                f"{self._consecutive_failures} prediction requests in a row to {self.url} failed "
                f"(after {self.retries} retries each); the last: {reason}"
            )
            raise PredictionServiceError(msg)
        return n
