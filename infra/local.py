"""`LocalInfra`: start, check and stop the local Kafka, Cassandra and Flink servers.

>>> infra = LocalInfra(InfraSettings())                  # doctest: +SKIP
>>> infra.up({"kafka", "cassandra"})                     # doctest: +SKIP
{'kafka', 'cassandra'}
>>> [(s.name, s.state, s.answering) for s in infra.status()]  # doctest: +SKIP
[('kafka', 'running', True), ('cassandra', 'running', True)]
>>> infra.down()                                         # doctest: +SKIP
{'kafka', 'cassandra'}

`up` is idempotent: a server it started earlier (found by pid file, or by the marker arguments
on its java command line) is reused, and so is any server already answering on the port.
A server of several processes (Flink: JobManager + TaskManagers, see `Server.companions`) is
started, awaited and stopped as one; reusing it restarts any of its companions that died.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from infra.cassandra import CassandraServer
from infra.exceptions import (
    InfraError,
    NotAnsweringError,
    PortConflictError,
    ServiceStartError,
    ServiceStopError,
    UnknownServiceError,
)
from infra.flink import FlinkServer
from infra.kafka import KafkaServer
from infra.ports import accepts_connections, can_bind, listener_pid
from infra.process import (
    exit_code,
    find_processes,
    is_alive,
    is_server,
    open_log,
    read_cmdline,
    read_pid,
    remove_pid,
    send_signal,
    spawn,
    tail,
    wait_gone,
    write_pid,
)
from infra.server import Companion, Server
from infra.settings import InfraSettings

__all__ = ["DEFAULT_SERVICES", "SERVICES", "LocalInfra", "ServiceStatus", "UpResult"]

logger = logging.getLogger(__name__)

#: Every service `LocalInfra` manages, in the order they are reported.
SERVICES: tuple[str, ...] = ("kafka", "cassandra", "flink")
#: What `up` starts when not told otherwise (Cassandra and Flink are opt-in: they take GBs of memory).
DEFAULT_SERVICES: frozenset[str] = frozenset({"kafka"})

_SERVER_TYPES: dict[str, type[Server]] = {"kafka": KafkaServer, "cassandra": CassandraServer, "flink": FlinkServer}
_SPAWN_ORDER = ("flink", "cassandra", "kafka")  # slowest first: Kafka formats and boots while the others do
_PROBE_TIMEOUT_S = 3.0
_KILL_WAIT_S = 10.0
_LOG_LINES = 40


class ServiceStatus(BaseModel):
    """What `status` found for one service.

    `state` is "running" when a server `up` started is alive, "external" when something we did
    not start holds its port, and "stopped" otherwise. `answering` says whether it answered a
    real protocol query (Kafka metadata, Cassandra `system.local`), and `detail` what it said.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    state: Literal["running", "stopped", "external"]
    pid: int | None
    host: str
    port: int
    answering: bool
    detail: str
    log_file: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class UpResult(BaseModel):
    """What `ensure` did for one service: started it, reused ours, or found another server answering."""

    model_config = ConfigDict(frozen=True)

    name: str
    action: Literal["started", "reused", "external"]
    pid: int | None
    address: str
    seconds: float
    detail: str


class LocalInfra:
    """The local Kafka (KRaft), Cassandra and Flink servers under one data directory."""

    def __init__(self, settings: InfraSettings | None = None) -> None:
        self.settings = settings if settings is not None else InfraSettings()
        self._servers: dict[str, Server] = {name: kind(self.settings) for name, kind in _SERVER_TYPES.items()}
        # Every server this object spawned, even if it then failed to answer: callers stop exactly these.
        self.started_by_this_process: set[str] = set()

    def server(self, name: str) -> Server:
        """The server definition called `name` ("kafka", "cassandra" or "flink")."""
        return self._servers[_select([name])[0]]

    def fetch(self, services: Iterable[str] | None = None, *, force: bool = False) -> set[str]:
        """Download the jars of `services` (default: all) unless present; return those Maven fetched."""
        return {name for name in _select(services or SERVICES) if self._servers[name].fetch(force=force)}

    def up(self, services: Iterable[str] = DEFAULT_SERVICES) -> set[str]:
        """Make `services` run and answer; return the names of those this call started.

        Raises `PortConflictError` if a port is held by something that is not the server,
        `ServiceStartError` (with the end of the server's log) if a server exits or times out.
        """
        return {result.name for result in self.ensure(services) if result.action == "started"}

    def ensure(self, services: Iterable[str] = DEFAULT_SERVICES) -> list[UpResult]:
        """Like `up`, but say for each service what was done, its pid and how long it took."""
        names = _select(services)
        results: dict[str, UpResult] = {}
        to_start: list[Server] = []
        for name in _SPAWN_ORDER:
            if name not in names:
                continue
            server = self._servers[name]
            reused = self._reuse(server)
            if reused is not None:
                results[name] = reused
            else:
                to_start.append(server)

        for server in to_start:
            server.preflight()
            if server.name == "cassandra":
                _require_cassandra_driver()
        for server in to_start:
            server.fetch()

        errors: list[str] = []
        pending: list[tuple[Server, int, float, int, list[_Spawned]]] = []
        for server in to_start:
            started = time.monotonic()
            try:
                server.prepare()
                offset = open_log(server.paths.log_file, f"starting {server.name} {server.version}")
                pid = spawn(
                    server.command(), log_file=server.paths.log_file, cwd=server.paths.home, env=server.environment()
                )
            except InfraError as exc:
                errors.append(str(exc))
                continue
            except OSError as exc:
                errors.append(f"{server.name} could not be started with {self.settings.java}: {exc}")
                continue
            write_pid(server.paths.pid_file, pid)
            self.started_by_this_process.add(server.name)
            logger.info(
                "started %s %s (pid %d), waiting for it on %s", server.name, server.version, pid, server.address
            )
            try:
                companions = [self._spawn_companion(server, companion) for companion in server.companions()]
            except OSError as exc:
                errors.append(f"{server.name} could not start all its processes: {exc}")
                continue
            pending.append((server, pid, started, offset, companions))

        # Wait for all at once, so each start time is its own and not the sum of the waits.
        with ThreadPoolExecutor(max_workers=max(1, len(pending)), thread_name_prefix="infra-wait") as pool:
            waits = [(pool.submit(self._await_start, *args), args[0]) for args in pending]
            for future, server in waits:
                try:
                    results[server.name] = future.result()
                except ServiceStartError as exc:
                    errors.append(str(exc))

        if errors:
            up = sorted(results)
            note = f"\n\n(running: {', '.join(up)}; `affresco infra down` stops them)" if up else ""
            raise ServiceStartError("\n\n".join(errors) + note)
        return [results[name] for name in SERVICES if name in results]

    def down(self, services: Iterable[str] | None = None) -> set[str]:
        """Stop the servers `up` started (default: all): SIGTERM, then SIGKILL after `stop_timeout_s`.

        Only java processes carrying our markers (service name and this data directory) are
        signalled; a pid file naming anything else is removed without touching that process.
        Returns the names of the services stopped.
        """
        targets: dict[int, Server] = {}
        stopping: list[Server] = []
        for name in _select(services or SERVICES):
            server = self._servers[name]
            stopping.append(server)
            pids = set(find_processes(server.member_markers)) | server.helper_pids()
            recorded = read_pid(server.paths.pid_file)
            if recorded is not None and recorded not in pids and is_alive(recorded):
                logger.warning(
                    "%s: pid file %s names pid %d, which is not our %s server (%s); leaving that process alone",
                    name, server.paths.pid_file, recorded, name, _describe(recorded),
                )  # fmt: skip
            if not pids:
                self._remove_pids(server)
            for pid in sorted(pids):
                logger.info("stopping %s (pid %d)", name, pid)
                send_signal(pid, signal.SIGTERM)
                targets[pid] = server

        started = time.monotonic()
        remaining = dict(targets)
        while remaining and time.monotonic() - started < self.settings.stop_timeout_s:
            for pid in [pid for pid in remaining if not is_alive(pid)]:
                logger.info(
                    "%s stopped (pid %d) %.1f s after SIGTERM", remaining.pop(pid).name, pid, self._since(started)
                )
            time.sleep(0.1)
        if remaining:
            logger.warning(
                "%s still running %.0f s after SIGTERM; sending SIGKILL",
                ", ".join(f"{server.name} (pid {pid})" for pid, server in remaining.items()),
                self.settings.stop_timeout_s,
            )
            for pid in remaining:
                send_signal(pid, signal.SIGKILL)
            survivors = wait_gone(remaining, _KILL_WAIT_S)
            if survivors:
                msg = f"could not stop pids {sorted(survivors)} even with SIGKILL; they are left running"
                raise ServiceStopError(msg)
        wait_gone(targets, 0)  # reap our children
        self._stop_helpers(stopping)
        for server in set(targets.values()):
            self._remove_pids(server)
        return {server.name for server in targets.values()}

    def status(self, services: Iterable[str] | None = None) -> list[ServiceStatus]:
        """For each service (default: all): running or not, pid, port, and whether it answers."""
        statuses = []
        for name in _select(services or SERVICES):
            server = self._servers[name]
            pid = self._find_ours(server, adopt=False)
            answering, detail = False, ""
            if accepts_connections(server.host, server.port):
                try:
                    detail, answering = server.probe(_PROBE_TIMEOUT_S), True
                except NotAnsweringError as exc:
                    detail = str(exc)
            if pid is not None:
                state: Literal["running", "stopped", "external"] = "running"
                if not answering:
                    detail = f"not answering yet (starting, or stuck: see {server.paths.log_file}). {detail}".strip()
            elif answering or not all(can_bind(server.host, port) for port in server.ports.values()):
                state = "external"
                pid = next(filter(None, map(listener_pid, server.ports.values())), None)
                detail = f"not started by affresco: {_describe(pid)}. {detail}".strip()
            else:
                state = "stopped"
            statuses.append(
                ServiceStatus(
                    name=name,
                    state=state,
                    pid=pid,
                    host=server.host,
                    port=server.port,
                    answering=answering,
                    detail=detail,
                    log_file=server.paths.log_file,
                )
            )
        return statuses

    def _await_start(
        self, server: Server, pid: int, started: float, log_offset: int, companions: list[_Spawned]
    ) -> UpResult:
        answer = self._wait_ready(
            server, pid, started=started, log_offset=log_offset, spawned=True, companions=companions
        )
        seconds = self._since(started)
        logger.info("%s answers on %s after %.1f s: %s", server.name, server.address, seconds, answer)
        return UpResult(
            name=server.name, action="started", pid=pid, address=server.address, seconds=seconds, detail=answer
        )

    def _reuse(self, server: Server) -> UpResult | None:
        """A result for a server that already runs (ours or not), None if it must be started."""
        started = time.monotonic()
        pid = self._find_ours(server, adopt=True)
        if pid is not None:
            companions = self._restart_dead_companions(server)
            answer = self._wait_ready(
                server, pid, started=started, log_offset=None, spawned=False, companions=companions
            )
            logger.info("%s is already running (pid %d) on %s; reusing it", server.name, pid, server.address)
            return UpResult(
                name=server.name,
                action="reused",
                pid=pid,
                address=server.address,
                seconds=self._since(started),
                detail=answer,
            )
        for setting, port in server.ports.items():
            if can_bind(server.host, port):
                continue
            owner = listener_pid(port)
            if port == server.port:
                try:
                    answer = server.probe(_PROBE_TIMEOUT_S)
                except NotAnsweringError:
                    pass
                else:
                    logger.info(
                        "%s: a server not started by affresco answers on %s (%s; %s); using it",
                        server.name, server.address, answer, _describe(owner),
                    )  # fmt: skip
                    return UpResult(
                        name=server.name,
                        action="external",
                        pid=owner,
                        address=server.address,
                        seconds=self._since(started),
                        detail=answer,
                    )
            env = f"AFFRESCO_INFRA_{setting.upper()}"
            msg = (
                f"{server.name} cannot start: port {port} on {server.host} ({env}) is already in use by "
                f"{_describe(owner)}, which does not answer as {server.name}. "
                f"Stop that process, or choose another port with {env}=<port>."
            )
            raise PortConflictError(msg)
        return None

    def _find_ours(self, server: Server, *, adopt: bool) -> int | None:
        """The pid of our running server: from its pid file, else by its markers (then, if `adopt`, recorded)."""
        pid_file = server.paths.pid_file
        recorded = read_pid(pid_file)
        if recorded is not None and is_server(recorded, server.markers):
            return recorded
        found = find_processes(server.markers)
        if adopt:
            if recorded is not None:
                logger.info("removing stale pid file %s (pid %d is not our %s)", pid_file, recorded, server.name)
                remove_pid(pid_file)
            if found:
                logger.info("found our %s running as pid %d without a pid file; recording it", server.name, found[0])
                write_pid(pid_file, found[0])
        return found[0] if found else None

    def _wait_ready(
        self,
        server: Server,
        pid: int,
        *,
        started: float,
        log_offset: int | None,
        spawned: bool,
        companions: list[_Spawned] | None = None,
    ) -> str:
        """Poll until `server` answers its protocol query; return the answer.

        Raises `ServiceStartError` with the end of the log if the process (or one of the
        `companions` this call started) exits or the start timeout passes; what this call
        spawned is stopped on failure.
        """
        companions = companions or []
        timeout = server.start_timeout_s
        deadline = started + timeout
        last = "its port is not open yet"
        while True:
            if not is_alive(pid):
                code = exit_code(pid)
                remove_pid(server.paths.pid_file)
                exited = "exited" if code is None else f"exited with code {code}"
                reason = f"the java process (pid {pid}) {exited} {self._since(started):.1f} s after starting"
                self._stop_spawned([c.pid for c in companions])
                if spawned:
                    self._remove_pids(server)
                raise ServiceStartError(self._failure(server, reason, log_offset))
            dead = next((c for c in companions if not is_alive(c.pid)), None)
            if dead is not None:
                code = exit_code(dead.pid)
                exited = "exited" if code is None else f"exited with code {code}"
                reason = (
                    f"its {dead.companion.label} (pid {dead.pid}) {exited} {self._since(started):.1f} s after starting"
                )
                self._stop_spawned([pid] if spawned else [], [c.pid for c in companions])
                remove_pid(dead.companion.pid_file)
                if spawned:
                    self._remove_pids(server)
                raise ServiceStartError(
                    self._failure(server, reason, dead.log_offset, log_file=dead.companion.log_file)
                )
            if accepts_connections(server.host, server.port):
                try:
                    return server.probe(min(5.0, max(1.0, deadline - time.monotonic())))
                except NotAnsweringError as exc:
                    last = str(exc)
            if time.monotonic() >= deadline:
                env = f"AFFRESCO_INFRA_{server.name.upper()}_START_TIMEOUT_S"
                self._stop_spawned([c.pid for c in companions])
                if spawned:
                    self._stop_spawned([pid])
                    self._remove_pids(server)
                    reason = (
                        f"it did not answer on {server.address} within {timeout:g} s ({env}), "
                        f"so it was stopped; last error: {last}"
                    )
                else:
                    reason = (
                        f"it runs (pid {pid}, started earlier) but did not answer on {server.address} "
                        f"within {timeout:g} s; last error: {last}. `affresco infra down` stops it"
                    )
                raise ServiceStartError(self._failure(server, reason, log_offset))
            time.sleep(0.25)

    def _spawn_companion(self, server: Server, companion: Companion) -> _Spawned:
        offset = open_log(companion.log_file, f"starting {companion.label} {server.version}")
        pid = spawn(companion.command, log_file=companion.log_file, cwd=server.paths.home, env=companion.environment)
        write_pid(companion.pid_file, pid)
        logger.info("started %s (pid %d)", companion.label, pid)
        return _Spawned(companion, pid, offset)

    def _restart_dead_companions(self, server: Server) -> list[_Spawned]:
        """Start again the companions of a running server whose process is gone (e.g. a killed TaskManager)."""
        restarted = []
        for companion in server.companions():
            recorded = read_pid(companion.pid_file)
            if recorded is not None and is_server(recorded, companion.markers):
                continue
            found = find_processes(companion.markers)
            if found:
                write_pid(companion.pid_file, found[0])
                continue
            logger.info("%s: %s is not running; starting it again", server.name, companion.label)
            restarted.append(self._spawn_companion(server, companion))
        return restarted

    def _stop_spawned(self, *groups: list[int]) -> None:
        """SIGTERM, then SIGKILL after `stop_timeout_s`, the pids this call spawned."""
        pids = [pid for group in groups for pid in group]
        for pid in pids:
            send_signal(pid, signal.SIGTERM)
        survivors = wait_gone(pids, self.settings.stop_timeout_s)
        for pid in survivors:
            send_signal(pid, signal.SIGKILL)
        wait_gone(survivors, _KILL_WAIT_S)

    def _stop_helpers(self, servers: list[Server]) -> None:
        """Kill what the servers' processes left behind (Flink's Python workers) once those are gone."""
        helpers = {pid for server in servers for pid in server.helper_pids()}
        if not helpers:
            return
        logger.info("stopping %d leftover helper process(es): %s", len(helpers), sorted(helpers))
        for pid in helpers:
            send_signal(pid, signal.SIGTERM)
        survivors = wait_gone(helpers, _KILL_WAIT_S)
        for pid in survivors:
            send_signal(pid, signal.SIGKILL)
        if wait_gone(survivors, _KILL_WAIT_S):
            msg = f"could not stop helper pids {sorted(survivors)} even with SIGKILL; they are left running"
            raise ServiceStopError(msg)

    @staticmethod
    def _remove_pids(server: Server) -> None:
        remove_pid(server.paths.pid_file)
        for companion in server.companions():
            remove_pid(companion.pid_file)

    @staticmethod
    def _failure(server: Server, reason: str, log_offset: int | None, *, log_file: Path | None = None) -> str:
        log_file = log_file or server.paths.log_file
        lines = tail(log_file, _LOG_LINES, log_offset or 0)
        log = f"last lines of {log_file}:\n{lines}" if lines else f"{log_file} is empty"
        return f"{server.name} {server.version} failed to start: {reason}.\n{log}"

    @staticmethod
    def _since(started: float) -> float:
        return time.monotonic() - started


@dataclass(frozen=True)
class _Spawned:
    """A companion process this object started, and where its log was when it did."""

    companion: Companion
    pid: int
    log_offset: int


def _select(services: Iterable[str]) -> list[str]:
    """Validate service names; return them in `SERVICES` order."""
    wanted = {services} if isinstance(services, str) else set(services)
    unknown = sorted(wanted - set(SERVICES))
    if unknown:
        msg = f"unknown service(s) {', '.join(map(repr, unknown))}: expected some of {', '.join(SERVICES)}"
        raise UnknownServiceError(msg)
    return [name for name in SERVICES if name in wanted]


def _describe(pid: int | None) -> str:
    """'pid 42 (`python -m http.server 9092`)', for messages about a process we did not start."""
    if pid is None:
        return "another process (its owner is not visible from here)"
    argv = read_cmdline(pid)
    tags = dict(
        arg.removeprefix("-Daffresco.infra.").split("=", 1) for arg in argv if arg.startswith("-Daffresco.infra.")
    )
    if {"service", "data_dir"} <= tags.keys():
        return f"pid {pid} (affresco's {tags['service']} of data dir {tags['data_dir']})"
    command = " ".join(argv) or "?"
    if len(command) > 120:
        command = command[:117] + "..."
    return f"pid {pid} (`{command}`)"


def _require_cassandra_driver() -> None:
    from state.cassandra.exceptions import CassandraDriverMissingError
    from state.cassandra.session import require_driver

    try:
        require_driver()
    except CassandraDriverMissingError as exc:
        msg = f"cassandra: the readiness check needs cassandra-driver: {exc}"
        raise InfraError(msg) from exc
