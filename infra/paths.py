"""The layout of the data directory: one place that says where every file of the local servers lives.

<data_dir>/
  libs/kafka-<ver>/, libs/cassandra-<ver>/    jars from Maven Central (+ a `.complete` marker)
  kafka/conf/, kafka/data/, kafka/cluster-id  rendered config, KRaft log dirs, the cluster id
  cassandra/conf/, cassandra/data/            rendered config, data/commitlog/hints/... directories
  logs/kafka.log, logs/cassandra.log          each server's stdout and stderr
  run/kafka.pid, run/cassandra.pid            pids of the servers `up` started
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServicePaths", "service_paths"]


@dataclass(frozen=True)
class ServicePaths:
    """Every path one server uses."""

    name: str
    data_dir: Path
    libs: Path
    home: Path
    conf: Path
    data: Path
    log_file: Path
    log_dir: Path
    pid_file: Path

    def make_dirs(self) -> None:
        """Create the directories the server writes to (jars are created by the fetch)."""
        for directory in (self.conf, self.data, self.log_dir, self.log_file.parent, self.pid_file.parent):
            directory.mkdir(parents=True, exist_ok=True)


def service_paths(data_dir: Path, name: str, version: str) -> ServicePaths:
    """The paths of server `name` at `version` under `data_dir`."""
    home = data_dir / name
    return ServicePaths(
        name=name,
        data_dir=data_dir,
        libs=data_dir / "libs" / f"{name}-{version}",
        home=home,
        conf=home / "conf",
        data=home / "data",
        log_file=data_dir / "logs" / f"{name}.log",
        log_dir=data_dir / "logs" / name,
        pid_file=data_dir / "run" / f"{name}.pid",
    )
