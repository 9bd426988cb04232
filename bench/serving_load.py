"""The load generator of `bench.serving`: one process, httpx AsyncClient on uvloop, keep-alive connections.

Run by `bench.serving` as a separate process (never in the server's), one phase per run; prints
one JSON line. Modes:

Each connection has its own client (httpx's pool never queues requests: with thousands waiting its
bookkeeping grows with the queue), and the requests are built once: a send is only HTTP work.

- `open`: requests at a fixed rate (`--rate`, for `--seconds`), whatever the answers do: the
  i-th request is due at `start + i / rate` and its latency is measured from that intended time,
  so queueing in the server (or in the generator) is counted, not hidden (no coordinated
  omission). `generator_pacing_lag` is how late the generator itself queued each request,
  `wait_for_connection` how long it then waited for a free connection (`--connections`);
- `closed`: `--connections` loops, each sending its next request when the previous one answered
  (the maximum throughput), for `--seconds`;
- `sequential`: `--requests` requests one after the other on one connection (batch requests);
- `null-server`: not a generator — a minimal HTTP/1.1 server (a canned 200 on every request,
  keep-alive) to measure what the generator itself can do against a server that costs ~nothing.

Around its measured window a run reads, itself: the server's `/metrics` (the `affresco_predict_seconds`
and `affresco_online_store_seconds` histograms), the CPU time of the server process
(`--server-pid`, from /proc), of the broker (`--broker-pid`), of the whole machine (/proc/stat),
and its own (`time.process_time`).

    python -m bench.serving_load --url URL --bodies FILE --mode open --rate 500 --seconds 10 --server-pid PID
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np

HISTOGRAMS = ("affresco_predict_seconds", "affresco_online_store_seconds")
ERRORS = "affresco_predict_errors_total"
TICKS = os.sysconf("SC_CLK_TCK")


def _percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None, "mean_ms": None}
    a = np.asarray(seconds) * 1000
    q = np.percentile(a, [50, 90, 99, 99.9])
    return {"p50_ms": round(float(q[0]), 3), "p90_ms": round(float(q[1]), 3), "p99_ms": round(float(q[2]), 3),
            "p999_ms": round(float(q[3]), 3), "max_ms": round(float(a.max()), 3),
            "mean_ms": round(float(a.mean()), 3)}  # fmt: skip


def _proc_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process and its descendants (all threads; e.g. the worker
    processes of `affresco serve --workers`), from /proc; None if unreadable."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    own = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)
    return own + sum(_proc_cpu_s(child) or 0.0 for child in _children(pid))


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def _machine_cpu_s() -> tuple[float, float, float]:
    """(busy, stolen, total) CPU seconds of the whole machine, all cores, from /proc/stat; stolen: the
    hypervisor ran someone else on our cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = values[0] + values[1] + values[2] + values[5] + values[6]  # user, nice, system, irq, softirq
    total = sum(values[:8])  # with idle, iowait and steal; without guest time (already counted in user)
    return busy / TICKS, values[7] / TICKS, total / TICKS


def _scrape(client: httpx.Client | None, url: str | None) -> dict[str, dict[str, float]]:
    """The cumulative buckets (`le` -> count), `_sum` and `_count` of the server's histograms, and its
    refused or failed requests by kind (under ERRORS)."""
    out: dict[str, dict[str, float]] = {h: {} for h in (*HISTOGRAMS, ERRORS)}
    if client is None or url is None:
        return out
    for line in client.get(url).text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(f"{ERRORS}{{"):
            name, value = line.rsplit(" ", 1)
            kind = name.split('kind="', 1)[1].split('"', 1)[0]
            out[ERRORS][kind] = float(value)
        for h in HISTOGRAMS:
            if not line.startswith(h):
                continue
            name, value = line.rsplit(" ", 1)
            if name.startswith(f"{h}_bucket"):
                le = name.split('le="', 1)[1].split('"', 1)[0]
                out[h][le] = out[h].get(le, 0.0) + float(value)  # summed over the model label
            elif name.startswith((f"{h}_sum", f"{h}_count")):
                key = "_sum" if name.startswith(f"{h}_sum") else "_count"
                out[h][key] = out[h].get(key, 0.0) + float(value)
    return out


def _histogram_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """The histogram of the window (after - before): count, mean and bucket-interpolated quantiles."""
    count = after.get("_count", 0.0) - before.get("_count", 0.0)
    if count <= 0:
        return {"count": 0}
    bounds = sorted((float(le), after[le] - before.get(le, 0.0)) for le in after if not le.startswith("_"))
    finite = [(b, c) for b, c in bounds if math.isfinite(b)]

    def quantile(q: float) -> float | None:
        rank, lower_bound, lower_count = q * count, 0.0, 0.0
        for bound, cumulative in finite:
            if cumulative >= rank:
                inside = cumulative - lower_count
                share = (rank - lower_count) / inside if inside else 1.0
                return round((lower_bound + share * (bound - lower_bound)) * 1000, 3)
            lower_bound, lower_count = bound, cumulative
        return None  # above the largest finite bucket

    def at_most(seconds: float) -> float | None:
        found = [c for b, c in finite if b == seconds]
        return round(found[0] / count, 4) if found else None

    return {
        "count": int(count),
        "mean_ms": round((after.get("_sum", 0.0) - before.get("_sum", 0.0)) / count * 1000, 3),
        "p50_ms": quantile(0.5),  # linear within a bucket: bounds 0.2, 0.5, 1, 2, 5, 10, 20 ms, …
        "p99_ms": quantile(0.99),
        "share_le_1ms": at_most(0.001),
        "share_le_2ms": at_most(0.002),
    }


class _Window:
    """CPU and server histograms around a measured window."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.client = httpx.Client(timeout=10) if args.metrics_url else None

    def __enter__(self) -> _Window:
        gc.collect()
        gc.freeze()  # the prebuilt requests and the samples are never scanned again
        gc.disable()  # no collection pause inside the window (reference counting still frees)
        self.metrics = _scrape(self.client, self.args.metrics_url)
        self.server, self.broker = _proc_cpu_s(self.args.server_pid), _proc_cpu_s(self.args.broker_pid)
        self.machine = _machine_cpu_s()
        self.own = time.process_time()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        own = time.process_time() - self.own
        gc.enable()
        busy, stolen, total = (a - b for a, b in zip(_machine_cpu_s(), self.machine, strict=True))
        server, broker = _proc_cpu_s(self.args.server_pid), _proc_cpu_s(self.args.broker_pid)
        metrics = _scrape(self.client, self.args.metrics_url)
        if self.client is not None:
            self.client.close()

        def cores(now: float | None, then: float | None) -> float | None:
            return None if now is None or then is None else round((now - then) / self.wall, 2)

        self.figures = {
            "generator_cpu_cores": round(own / self.wall, 2),  # 1.0 = one core busy all the window
            "server_cpu_cores": cores(server, self.server),
            "broker_cpu_cores": cores(broker, self.broker),
            "machine_cpu_cores_busy": round(busy / self.wall, 2),
            "machine_cpu_busy_share": round(busy / total, 3) if total else None,
            "machine_cpu_stolen_cores": round(stolen / self.wall, 2),
            "server_errors_by_kind": {
                k: int(v - self.metrics[ERRORS].get(k, 0.0))
                for k, v in metrics[ERRORS].items()
                if v > self.metrics[ERRORS].get(k, 0.0)
            },
            "server_histograms": {
                h.removeprefix("affresco_"): _histogram_delta(self.metrics[h], metrics[h]) for h in HISTOGRAMS
            },
        }


def _clients(connections: int) -> list[httpx.AsyncClient]:
    """One client (one keep-alive connection) per worker: httpx's pool never holds waiting requests."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=120)
    return [httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0)) for _ in range(connections)]


def _requests(url: str, bodies: list[bytes], method: str) -> list[httpx.Request]:
    """Built once (URL, headers, content): each send is then the generator's HTTP work only."""
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:  # only builds them (the timeouts go with each)
        if method == "GET":
            return [client.build_request("GET", url)]
        return [client.build_request("POST", url, content=body, headers=headers) for body in bodies]


DEGRADED = b'"degraded":"'  # a 200 whose features are all missing: the store failed or overran its budget


async def _send(client: httpx.AsyncClient, request: httpx.Request, errors: Counter[str]) -> bool:
    """True for a 200 (a degraded one too, counted under `degraded`); errors counted by kind."""
    try:
        response = await client.send(request)
    except httpx.HTTPError as exc:
        errors[type(exc).__name__] += 1
        return False
    if response.status_code != 200:
        errors[f"http_{response.status_code}"] += 1
        return False
    if DEGRADED in response.content:
        errors["degraded"] += 1
    return True


def _outcomes(errors: Counter[str]) -> dict[str, Any]:
    failed = {k: v for k, v in errors.items() if k != "degraded"}
    return {"errors": sum(failed.values()), "errors_by_kind": failed, "degraded": errors["degraded"]}


async def _warm(clients: list[httpx.AsyncClient], requests: list[httpx.Request], n: int) -> None:
    """Opens the connections and warms both sides up (not measured)."""
    errors: Counter[str] = Counter()

    async def warm(k: int, client: httpx.AsyncClient) -> None:
        for i in range(k, n, len(clients)):
            await _send(client, requests[i % len(requests)], errors)

    await asyncio.gather(*(warm(k, c) for k, c in enumerate(clients)))
    if _outcomes(errors)["errors"]:
        msg = f"the warm-up requests failed: {dict(errors)}"
        raise RuntimeError(msg)


async def _close(clients: list[httpx.AsyncClient]) -> None:
    await asyncio.gather(*(c.aclose() for c in clients))


async def open_loop(args: argparse.Namespace, requests: list[httpx.Request]) -> dict[str, Any]:
    """A pacer queues request i at its due time `start + i / rate`; `--connections` workers send them."""
    n = int(args.rate * args.seconds)
    latency, pacing, waiting = [math.nan] * n, [math.nan] * n, [math.nan] * n
    ok = [False] * n
    errors: Counter[str] = Counter()
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    clients = _clients(args.connections)
    await _warm(clients, requests, args.warmup)

    async def worker(client: httpx.AsyncClient) -> None:
        while (item := await queue.get()) is not None:
            i, due = item
            waiting[i] = time.perf_counter() - due - pacing[i]  # every connection busy: queued here
            ok[i] = await _send(client, requests[i % len(requests)], errors)
            latency[i] = time.perf_counter() - due  # from the intended send time

    with _Window(args) as window:
        workers = [asyncio.create_task(worker(c)) for c in clients]
        start = time.perf_counter() + 0.01
        for i in range(n):
            due = start + i / args.rate
            while (delay := due - time.perf_counter()) > 0:  # uvloop's timers are whole ms: may wake early
                await asyncio.sleep(delay)
            pacing[i] = time.perf_counter() - due  # how late the generator itself queued it
            queue.put_nowait((i, due))  # late: queued at once, the lateness counted in its latency
        sent_s = time.perf_counter() - start
        for _ in workers:
            queue.put_nowait(None)
        _, pending = await asyncio.wait(workers, timeout=args.seconds + args.drain_s)
        for task in pending:
            task.cancel()
        done_s = time.perf_counter() - start
    await _close(clients)
    good = [latency[i] for i in range(n) if ok[i]]
    unanswered = sum(math.isnan(x) for x in latency)
    if unanswered:
        errors["unanswered_at_phase_end"] += unanswered
    return {
        "mode": "open",
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "connections": args.connections,
        "requests": n,
        "ok": len(good),
        **_outcomes(errors),
        "achieved_send_rate_per_s": round(n / sent_s, 1),
        "achieved_rate_per_s": round(len(good) / done_s, 1),  # answered until the last answer
        "drain_s": round(done_s - sent_s, 3),  # after the last request was due, until the last answer
        **_percentiles(good),
        "generator_pacing_lag": _short(pacing),  # due → queued by the pacer (the generator's own lateness)
        "wait_for_connection": _short(waiting),  # queued → sent (all connections busy: server backlog)
        **window.figures,
    }


def _short(seconds: list[float]) -> dict[str, float | None]:
    found = [x for x in seconds if not math.isnan(x)]
    return {k: v for k, v in _percentiles(found).items() if k in ("p50_ms", "p99_ms", "max_ms")}


async def closed_loop(args: argparse.Namespace, requests: list[httpx.Request]) -> dict[str, Any]:
    """`--connections` loops, each sending its next request as soon as the previous one answered."""
    errors: Counter[str] = Counter()
    clients = _clients(args.connections)
    latencies: list[list[float]] = [[] for _ in clients]
    await _warm(clients, requests, args.warmup)

    async def loop(k: int, deadline: float) -> None:
        i, own, client = k, latencies[k], clients[k]
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            if await _send(client, requests[i % len(requests)], errors):
                own.append(time.perf_counter() - t)
            i += len(clients)

    with _Window(args) as window:
        start = time.perf_counter()
        await asyncio.gather(*(loop(k, start + args.seconds) for k in range(len(clients))))
        wall = time.perf_counter() - start
    await _close(clients)
    good = [x for own in latencies for x in own]
    return {
        "mode": args.mode,
        "seconds": round(wall, 2),
        "connections": args.connections,
        "ok": len(good),
        **_outcomes(errors),
        "requests_per_s": round(len(good) / wall, 1),
        **_percentiles(good),
        **window.figures,
    }


async def sequential(args: argparse.Namespace, requests: list[httpx.Request]) -> dict[str, Any]:
    """`--requests` requests one after the other on one connection."""
    errors: Counter[str] = Counter()
    good: list[float] = []
    clients = _clients(1)
    await _warm(clients, requests, args.warmup)
    with _Window(args) as window:
        start = time.perf_counter()
        for i in range(args.requests):
            t = time.perf_counter()
            if await _send(clients[0], requests[i % len(requests)], errors):
                good.append(time.perf_counter() - t)
        wall = time.perf_counter() - start
    await _close(clients)
    return {
        "mode": "sequential",
        "requests": args.requests,
        "ok": len(good),
        **_outcomes(errors),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(good) / wall, 1),
        **_percentiles(good),
        **window.figures,
    }


class _CannedHttp(asyncio.Protocol):
    """Answers every HTTP/1.1 request on the connection with the same small 200 (keep-alive)."""

    RESPONSE = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"rows":[]}'

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.buffer = cast(asyncio.Transport, transport), b""  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(self.RESPONSE)


async def null_server(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_CannedHttp, "127.0.0.1", port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("open", "closed", "sequential", "null-server"), required=True)
    parser.add_argument("--url", help="the predict URL")
    parser.add_argument("--method", choices=("POST", "GET"), default="POST", help="GET: no body (e.g. /healthz)")
    parser.add_argument("--bodies", type=Path, help="a JSON list of request bodies (objects), sent in turn")
    parser.add_argument("--rate", type=float, default=200.0, help="open: requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="open, closed: how long")
    parser.add_argument("--requests", type=int, default=300, help="sequential: how many")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections at most")
    parser.add_argument("--warmup", type=int, default=200, help="requests before the measured window")
    parser.add_argument("--metrics-url", help="the server's /metrics (histograms around the window)")
    parser.add_argument("--server-pid", type=int, help="the server's pid (its CPU time around the window)")
    parser.add_argument("--broker-pid", type=int, help="the broker's pid (its CPU time around the window)")
    parser.add_argument("--port", type=int, default=0, help="null-server: the port to listen on")
    parser.add_argument("--drain-s", type=float, default=30.0, help="open: answers awaited this long after the end")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the generator's event loop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.mode == "null-server":
        asyncio.run(null_server(args.port))
        return
    if args.url is None or args.bodies is None:
        parser.error("--url and --bodies are required")
    bodies = [json.dumps(b, separators=(",", ":")).encode() for b in json.loads(args.bodies.read_text())]
    run = {"open": open_loop, "closed": closed_loop, "sequential": sequential}[args.mode]
    result = asyncio.run(run(args, _requests(args.url, bodies, args.method)))
    result["generator"] = {"process": "separate", "client": f"httpx {httpx.__version__} AsyncClient",
                           "loop": args.loop, "pid": os.getpid()}  # fmt: skip
    print(json.dumps(result), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
