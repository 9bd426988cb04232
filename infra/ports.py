"""TCP port checks: is a port free to bind, does something answer on it, and which process holds it."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

__all__ = ["accepts_connections", "can_bind", "listener_pid"]

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def can_bind(host: str, port: int) -> bool:
    """Whether a server could listen on `host:port` now (Java servers set SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def accepts_connections(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def listener_pid(port: int) -> int | None:
    """The pid of a process listening on TCP `port` (any address), or None if none or unknown.

    Linux only (reads /proc); elsewhere, or without permission to see the owner, returns None.
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _holds_any(entry / "fd", targets):
            return int(entry.name)
    return None


def _holds_any(fd_dir: Path, targets: set[str]) -> bool:
    try:
        fds = list(fd_dir.iterdir())
    except OSError:  # the process is gone, or not ours to look at
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) in targets:
                return True
    return False
