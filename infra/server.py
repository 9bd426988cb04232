"""What `LocalInfra` needs to know about one server: its jars, config, command line and readiness query."""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from infra.exceptions import JavaError
from infra.jars import fetch_jars
from infra.paths import ServicePaths, service_paths
from infra.process import marker_args
from infra.settings import InfraSettings

__all__ = ["Companion", "Server", "heap_flags", "java_major_version"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Companion:
    """A further process of a server, started beside its main one and stopped with it (a Flink TaskManager).

    `markers` are on its java command line and tell it from the server's other processes.
    """

    label: str
    command: list[str]
    environment: Mapping[str, str] = field(repr=False)
    log_file: Path
    pid_file: Path
    markers: list[str]


class Server(ABC):
    """One local server (Kafka, Cassandra or Flink), as configured by `InfraSettings`.

    Most servers are one java process. A server made of several (Flink: a JobManager and its
    TaskManagers) names its main process with `markers`, its other processes with `companions()`,
    the markers all of them carry with `member_markers`, and any non-java processes they leave
    behind with `helper_pids()`.
    """

    name: ClassVar[str]
    #: Java major versions the server runs on, inclusive.
    java_range: ClassVar[tuple[int, int]]

    def __init__(self, settings: InfraSettings) -> None:
        self.settings = settings
        self.paths: ServicePaths = service_paths(settings.data_dir, self.name, self.version)

    @property
    @abstractmethod
    def version(self) -> str:
        """The server version that is fetched and run."""

    @property
    @abstractmethod
    def ports(self) -> dict[str, int]:
        """Every port the server listens on, by setting name; the client port comes first."""

    @property
    @abstractmethod
    def start_timeout_s(self) -> float: ...

    @abstractmethod
    def maven_properties(self) -> dict[str, str]:
        """`-D` properties for `infra/<name>-pom.xml` (the versions)."""

    @abstractmethod
    def prepare(self) -> None:
        """Render the config files and initialize storage, before each start."""

    @abstractmethod
    def command(self) -> list[str]:
        """The java command line that runs the server in the foreground."""

    @abstractmethod
    def probe(self, timeout_s: float) -> str:
        """Ask the server a real protocol question; return a short description of the answer.

        Raises `NotAnsweringError` if it does not answer within `timeout_s`.
        """

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        """The client port (Kafka bootstrap, Cassandra CQL)."""
        return next(iter(self.ports.values()))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def markers(self) -> list[str]:
        """Arguments on our java command line that identify this server and data directory."""
        return marker_args(self.name, self.settings.data_dir)

    @property
    def member_markers(self) -> list[str]:
        """Markers every process of this server carries: `down` stops all processes that have them."""
        return self.markers

    def companions(self) -> list[Companion]:
        """The server's further processes, started after the main one (default: none)."""
        return []

    def helper_pids(self) -> set[int]:
        """Non-java processes of this server (e.g. Python workers) that `down` must stop too (default: none)."""
        return set()

    def preflight(self) -> None:
        """Refuse to start when something the server needs is missing (default: the Java check)."""
        self.check_java()

    def fetch(self, *, force: bool = False) -> bool:
        """Download the jars unless already there; True if Maven ran."""
        return fetch_jars(self.name, self.paths.libs, self.maven_properties(), maven=self.settings.maven, force=force)

    def environment(self) -> dict[str, str]:
        """The environment of the server process: ours, with JAVA_HOME pinned."""
        return {**os.environ, "JAVA_HOME": str(self.settings.java_home)}

    def check_java(self) -> None:
        """Refuse a missing java binary, or a Java version this server does not run on."""
        java = self.settings.java
        if not (java.is_file() and os.access(java, os.X_OK)):
            msg = (
                f"{self.name} needs Java {self.java_range[0]}+, but {java} is not an executable file: "
                "install Java 17 (apt-get install openjdk-17-jre-headless) or set AFFRESCO_INFRA_JAVA_HOME"
            )
            raise JavaError(msg)
        major = java_major_version(self.settings.java_home)
        low, high = self.java_range
        if major is None:
            logger.warning("cannot tell the Java version of %s; assuming it suits %s", java, self.name)
        elif not low <= major <= high:
            msg = (
                f"{self.name} {self.version} runs on Java {low} to {high}, but AFFRESCO_INFRA_JAVA_HOME="
                f"{self.settings.java_home} is Java {major}{self._java_hint(major)}; point it at a Java 17"
            )
            raise JavaError(msg)

    def _java_hint(self, major: int) -> str:
        return ""


def java_major_version(java_home: Path) -> int | None:
    """The major version in `<java_home>/release` (`JAVA_VERSION="17.0.15"` is 17), or None."""
    try:
        release = (java_home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(?:1\.)?(\d+)', release, re.MULTILINE)
    return int(match.group(1)) if match else None


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_INITIAL_HEAP = "256m"


def heap_flags(heap: str) -> list[str]:
    """`-Xms`/`-Xmx` for a JVM heap of at most `heap` (e.g. "1g"), starting at 256m or less.

    A small initial heap matters for Cassandra: run as root it mlockall()s its memory at start,
    which faults in the whole initial heap (3-5 s for 1 GB on our 2-core machines).
    """
    initial = min(heap, _INITIAL_HEAP, key=_heap_bytes)
    return [f"-Xms{initial}", f"-Xmx{heap}"]


def _heap_bytes(size: str) -> int:
    digits, unit = (size[:-1], size[-1].lower()) if size[-1:].isalpha() else (size, "")
    return int(digits) * _UNITS[unit]
