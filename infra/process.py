"""Detached server processes: spawn, recognize, signal, wait, and the pid and log files around them.

A server started here runs in its own session (it outlives the Python process that started it,
and a Ctrl-C in the terminal does not reach it), with stdout and stderr appended to a log file.
Servers are recognized by marker arguments on their java command line, so a pid reused by an
unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "exit_code",
    "find_processes",
    "is_alive",
    "is_server",
    "marker_args",
    "open_log",
    "read_cmdline",
    "read_pid",
    "remove_pid",
    "send_signal",
    "spawn",
    "tail",
    "wait_gone",
    "write_pid",
]

_MAX_LOG_BYTES = 50_000_000
_TAIL_BYTES = 256_000
_MAX_LINE = 300

# Popen objects of the servers this Python process started: polling them reaps the exited ones
# (an unreaped child is a zombie that `kill(pid, 0)` still finds), and holding them keeps Popen's
# "subprocess is still running" ResourceWarning from firing when a detached server outlives them.
_children: dict[int, subprocess.Popen[bytes]] = {}


def marker_args(service: str, data_dir: Path) -> list[str]:
    """Java system properties that tag a server's command line as ours (service and data dir)."""
    return [f"-Daffresco.infra.service={service}", f"-Daffresco.infra.data_dir={data_dir}"]


def spawn(command: Sequence[str], *, log_file: Path, cwd: Path, env: Mapping[str, str]) -> int:
    """Start `command` detached in a new session, output appended to `log_file`; return its pid."""
    with log_file.open("ab") as log:
        child = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    _children[child.pid] = child
    return child.pid


def exit_code(pid: int) -> int | None:
    """The exit code of a server this process started and that has exited, else None."""
    child = _children.get(pid)
    return None if child is None else child.poll()


def is_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def read_cmdline(pid: int) -> list[str]:
    """The argv of process `pid`, or [] if it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_server(pid: int, markers: Sequence[str]) -> bool:
    """Whether `pid` is a live java process whose command line carries all of `markers`."""
    argv = read_cmdline(pid)
    return bool(argv) and Path(argv[0]).name == "java" and all(m in argv for m in markers) and is_alive(pid)


def find_processes(markers: Sequence[str]) -> list[int]:
    """Pids of live java processes carrying all of `markers` (finds servers whose pid file was lost)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and is_server(int(entry.name), markers):
            found.append(int(entry.name))
    return sorted(found)


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to `pid`; a process that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout_s: float) -> set[int]:
    """Wait until every pid has exited or `timeout_s` passed; return the pids still alive."""
    deadline = time.monotonic() + timeout_s
    alive = {pid for pid in pids if is_alive(pid)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {pid for pid in alive if is_alive(pid)}
    for pid in set(_children) - alive:
        if _children[pid].poll() is not None:
            del _children[pid]
    return alive


def read_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file`, or None if there is no such file or it holds no pid."""
    try:
        return int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n", encoding="utf-8")


def remove_pid(pid_file: Path) -> None:
    pid_file.unlink(missing_ok=True)


def open_log(log_file: Path, banner: str) -> int:
    """Prepare `log_file` for a new start: rotate it when large, append `banner`; return its offset."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if log_file.exists() and log_file.stat().st_size > _MAX_LOG_BYTES:
        log_file.replace(log_file.with_suffix(log_file.suffix + ".1"))
    offset = log_file.stat().st_size if log_file.exists() else 0
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with log_file.open("a", encoding="utf-8") as log:
        log.write(f"\n===== {stamp} affresco infra: {banner} =====\n")
    return offset


def tail(log_file: Path, lines: int = 40, offset: int = 0) -> str:
    """The last `lines` lines of `log_file` written after byte `offset` ('' if none)."""
    try:
        with log_file.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(offset, size - _TAIL_BYTES))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(_clip(line) for line in text.rstrip().splitlines()[-lines:])


def _clip(line: str) -> str:
    # Cassandra logs its whole configuration and classpath on one line each: keep messages readable.
    if len(line) <= _MAX_LINE:
        return line
    return f"{line[:_MAX_LINE]} [... {len(line) - _MAX_LINE} more characters]"
