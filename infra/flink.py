"""A standalone Flink session cluster on loopback: one JobManager and N TaskManagers, each its own process.

The cluster runs from the apache-flink wheel in the separate venv that `make flink-venv` builds
(`site-packages/pyflink` is a full Flink distribution: `bin/jobmanager.sh`, `bin/taskmanager.sh`,
`lib/flink-dist-*.jar`). Each process is started with `<script> start-foreground`, which execs
java, so the pid we spawn is the JVM's and its stdout is our log file. The JobManager is the
server's main process; the TaskManagers are its companions. Readiness is the REST API's
`/overview` reporting every TaskManager registered.

Every process carries `-Daffresco.infra.service=flink -Daffresco.infra.data_dir=<dir>` and a
`-Daffresco.infra.role=` (jobmanager, taskmanager-<i>) on its java command line (through
`JVM_ARGS`), and `AFFRESCO_FLINK_CLUSTER=<data dir>` in its environment, which the TaskManagers'
Python workers inherit: that is how `down` finds workers orphaned by a killed TaskManager.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from infra.exceptions import InfraError, NotAnsweringError
from infra.process import marker_args, read_cmdline
from infra.server import Companion, Server

__all__ = ["CLUSTER_ENV", "FlinkServer", "find_flink_home", "flink_overview", "probe_flink"]

logger = logging.getLogger(__name__)

#: Environment variable set on every cluster process (value: the data dir); their Python workers inherit it.
CLUSTER_ENV = "AFFRESCO_FLINK_CLUSTER"

#: Files of the shipped conf/ that the start scripts read from FLINK_CONF_DIR besides config.yaml.
_SHIPPED_CONF = (
    "log4j-console.properties",
    "log4j.properties",
    "log4j-cli.properties",
    "log4j-session.properties",
    "logback-console.xml",
    "logback.xml",
    "logback-session.xml",
)
#: Inherited variables that would override what we configure (the scripts prefer them to config.yaml).
_OVERRIDES = (
    "FLINK_HOME",
    "FLINK_CONF_DIR",
    "FLINK_LOG_DIR",
    "FLINK_PID_DIR",
    "FLINK_BIN_DIR",
    "FLINK_LIB_DIR",
    "FLINK_OPT_DIR",
    "FLINK_PLUGINS_DIR",
    "FLINK_ENV_JAVA_OPTS",
    "FLINK_ENV_JAVA_OPTS_JM",
    "FLINK_ENV_JAVA_OPTS_TM",
    "FLINK_IDENT_STRING",
    "JVM_ARGS",
    "MAX_LOG_FILE_NUMBER",
    "STD_REDIRECT_TO_FILE",
    CLUSTER_ENV,
)
_RESTART_ATTEMPTS = 1000  # a few attempts give up before a replacement TaskManager registers (INFRA-NOTES)
_RESTART_DELAY = "3 s"


class FlinkServer(Server):
    """A Flink session cluster: the JobManager (REST on `flink_rest_port`) and `flink_taskmanagers` TaskManagers."""

    name = "flink"
    java_range = (11, 21)

    @property
    def version(self) -> str:
        return self.settings.flink_version

    @property
    def ports(self) -> dict[str, int]:
        return {
            "flink_rest_port": self.settings.flink_rest_port,
            "flink_rpc_port": self.settings.flink_rpc_port,
            "flink_blob_port": self.settings.flink_blob_port,
        }

    @property
    def start_timeout_s(self) -> float:
        return self.settings.flink_start_timeout_s

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.settings.flink_rest_port}"

    @property
    def python(self) -> Path:
        """The flink venv's python: runs the TaskManagers' Python workers and the job clients."""
        return self.settings.flink_venv / "bin" / "python"

    @property
    def flink_home(self) -> Path:
        """`site-packages/pyflink` of the flink venv (may not exist: `preflight` says so)."""
        return find_flink_home(self.settings.flink_venv) or (
            self.settings.flink_venv / "lib" / "python3.11" / "site-packages" / "pyflink"
        )

    @property
    def flink_command(self) -> Path:
        """The `flink` CLI (`flink run -m <host:port> -py job.py`)."""
        return self.flink_home / "bin" / "flink"

    @property
    def config_file(self) -> Path:
        return self.paths.conf / "config.yaml"

    @property
    def tmp_dir(self) -> Path:
        return self.paths.home / "tmp"

    @property
    def checkpoint_dir(self) -> Path:
        return self.paths.home / "checkpoints"

    @property
    def savepoint_dir(self) -> Path:
        return self.paths.home / "savepoints"

    @property
    def flink_pid_dir(self) -> Path:
        """FLINK_PID_DIR: Flink's own pid files (ours are in `<data dir>/run/`)."""
        return self.paths.home / "run"

    @property
    def kafka_connector_jar(self) -> Path:
        """The fetched `flink-sql-connector-kafka` jar, for `flink run -j` / `pipeline.jars`."""
        return self.paths.libs / f"flink-sql-connector-kafka-{self.settings.flink_kafka_connector_version}.jar"

    @property
    def markers(self) -> list[str]:
        return [*self.member_markers, "-Daffresco.infra.role=jobmanager"]

    @property
    def member_markers(self) -> list[str]:
        return marker_args(self.name, self.settings.data_dir)

    def maven_properties(self) -> dict[str, str]:
        return {"flink.kafka.connector.version": self.settings.flink_kafka_connector_version}

    def preflight(self) -> None:
        self.check_java()
        self.check_installation()
        if any(char.isspace() for char in str(self.settings.data_dir)):
            # The Flink scripts split JVM_ARGS and paths on whitespace.
            msg = f"flink cannot run from a data directory with whitespace in its path: {self.settings.data_dir}"
            raise InfraError(msg)

    def check_installation(self) -> None:
        """Refuse a missing flink venv, or one with another apache-flink than `flink_version`."""
        venv = self.settings.flink_venv
        home = find_flink_home(venv)
        if not self.python.is_file() or home is None or not (home / "bin" / "jobmanager.sh").is_file():
            msg = (
                f"flink: the Flink venv {venv} is missing or has no apache-flink: run `make flink-venv` "
                "(or point AFFRESCO_INFRA_FLINK_VENV at a venv with apache-flink installed)"
            )
            raise InfraError(msg)
        installed = _installed_version(home)
        if installed != self.version:
            msg = (
                f"flink: {venv} has apache-flink {installed or '(unknown version)'}, but AFFRESCO_INFRA_FLINK_VERSION "
                f"is {self.version}: run `make flink-venv`, or set the version that is installed"
            )
            raise InfraError(msg)

    def prepare(self) -> None:
        self.paths.make_dirs()
        for directory in (self.tmp_dir, self.checkpoint_dir, self.savepoint_dir, self.flink_pid_dir):
            directory.mkdir(parents=True, exist_ok=True)
        shipped = self.flink_home / "conf"
        for name in _SHIPPED_CONF:
            if (shipped / name).is_file():
                shutil.copyfile(shipped / name, self.paths.conf / name)
        self.config_file.write_text(
            "# Written by affresco infra at each start (infra/flink.py); edits are overwritten.\n"
            + yaml.safe_dump(self.config(), sort_keys=False, width=10_000),
            encoding="utf-8",
        )

    def config(self) -> dict[str, Any]:
        """The cluster's config.yaml, as flat keys."""
        settings = self.settings
        host = settings.host
        return {
            "env.java.opts.all": self._shipped_java_opts(),
            "jobmanager.rpc.address": host,
            "jobmanager.bind-host": host,
            "jobmanager.rpc.port": settings.flink_rpc_port,
            "jobmanager.memory.process.size": settings.flink_jobmanager_memory,
            "jobmanager.execution.failover-strategy": "region",
            "rest.address": host,
            "rest.bind-address": host,
            "rest.port": settings.flink_rest_port,
            "blob.server.port": settings.flink_blob_port,
            "taskmanager.host": host,
            "taskmanager.bind-host": host,
            "taskmanager.numberOfTaskSlots": settings.flink_task_slots,
            "taskmanager.memory.process.size": settings.flink_taskmanager_memory,
            "cluster.evenly-spread-out-slots": True,
            # Flink 2.x's name for it: without it a parallelism-2 job took both slots of one TaskManager.
            "taskmanager.load-balance.mode": "SLOTS",
            "parallelism.default": settings.flink_parallelism,
            "io.tmp.dirs": str(self.tmp_dir),
            "web.tmpdir": str(self.tmp_dir / "web"),
            "python.executable": str(self.python),
            "python.client.executable": str(self.python),
            "state.backend.type": "rocksdb",
            "execution.checkpointing.dir": self.checkpoint_dir.as_uri(),
            "execution.checkpointing.savepoint-dir": self.savepoint_dir.as_uri(),
            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": _RESTART_ATTEMPTS,
            "restart-strategy.fixed-delay.delay": _RESTART_DELAY,
            "table.local-time-zone": "UTC",
        }

    def command(self) -> list[str]:
        return ["bash", str(self.flink_home / "bin" / "jobmanager.sh"), "start-foreground"]

    def environment(self) -> dict[str, str]:
        return self._environment("jobmanager")

    def companions(self) -> list[Companion]:
        script = str(self.flink_home / "bin" / "taskmanager.sh")
        companions = []
        for index in range(1, self.settings.flink_taskmanagers + 1):
            role = f"taskmanager-{index}"
            companions.append(
                Companion(
                    label=f"flink {role}",
                    command=["bash", script, "start-foreground", "-D", f"taskmanager.resource-id=affresco-{role}"],
                    environment=self._environment(role),
                    log_file=self.paths.log_file.with_name(f"flink-{role}.log"),
                    pid_file=self.paths.pid_file.with_name(f"flink-{role}.pid"),
                    markers=[*self.member_markers, f"-Daffresco.infra.role={role}"],
                )
            )
        return companions

    def helper_pids(self) -> set[int]:
        """Non-java processes with our `AFFRESCO_FLINK_CLUSTER` in their environment: the Python workers."""
        mine = str(self.settings.data_dir)
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            pid = int(entry.name)
            if _environ(pid).get(CLUSTER_ENV) != mine:
                continue
            argv = read_cmdline(pid)
            if argv and Path(argv[0]).name != "java":
                found.add(pid)
        return found

    def probe(self, timeout_s: float) -> str:
        return probe_flink(self.rest_url, timeout_s, taskmanagers=self.settings.flink_taskmanagers)

    def _environment(self, role: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in _OVERRIDES}
        markers = [*self.member_markers, f"-Daffresco.infra.role={role}"]
        return {
            **env,
            "JAVA_HOME": str(self.settings.java_home),
            "FLINK_HOME": str(self.flink_home),
            "FLINK_CONF_DIR": str(self.paths.conf),
            "FLINK_LOG_DIR": str(self.paths.log_dir),
            "FLINK_PID_DIR": str(self.flink_pid_dir),
            "JVM_ARGS": " ".join(markers),
            CLUSTER_ENV: str(self.settings.data_dir),
            "PATH": f"{self.settings.flink_venv / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}",
        }

    def _shipped_java_opts(self) -> str:
        """`env.java.opts.all` of the wheel's conf/config.yaml: the `--add-opens` Flink needs on Java 17."""
        shipped = self.flink_home / "conf" / "config.yaml"
        try:
            config = yaml.safe_load(shipped.read_text(encoding="utf-8")) or {}
            opts = config["env"]["java"]["opts"]["all"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            msg = f"flink: cannot read env.java.opts.all from the shipped {shipped}: {exc!r}"
            raise InfraError(msg) from exc
        return str(opts)


def find_flink_home(venv: Path) -> Path | None:
    """`<venv>/lib/python3.*/site-packages/pyflink`, if apache-flink is installed there."""
    for candidate in sorted(venv.glob("lib/python3*/site-packages/pyflink")):
        if (candidate / "bin").is_dir():
            return candidate
    return None


def flink_overview(rest_url: str, timeout_s: float) -> dict[str, Any]:
    """GET `<rest_url>/overview` (no proxy); raises `NotAnsweringError` if it does not answer with JSON."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{rest_url}/overview", timeout=timeout_s) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        msg = f"Flink REST at {rest_url} did not answer /overview within {timeout_s:.0f} s: {exc}"
        raise NotAnsweringError(msg) from exc
    if not isinstance(answer, dict) or "taskmanagers" not in answer:
        msg = f"{rest_url}/overview answered, but not as Flink: {str(answer)[:200]}"
        raise NotAnsweringError(msg)
    return answer


def probe_flink(rest_url: str, timeout_s: float, *, taskmanagers: int = 1) -> str:
    """Ask Flink's REST API for its overview; ready when at least `taskmanagers` TaskManagers are registered.

    Returns 'Flink 2.2.1, 2 TaskManager(s), 4 slot(s) (4 free), 0 job(s) running'.
    """
    overview = flink_overview(rest_url, timeout_s)
    registered = int(overview.get("taskmanagers", 0))
    summary = (
        f"Flink {overview.get('flink-version', '?')}, {registered} TaskManager(s), "
        f"{overview.get('slots-total', '?')} slot(s) ({overview.get('slots-available', '?')} free), "
        f"{overview.get('jobs-running', '?')} job(s) running"
    )
    if registered < taskmanagers:
        msg = f"{summary}: waiting for {taskmanagers} TaskManager(s) to register"
        raise NotAnsweringError(msg)
    return summary


def _installed_version(flink_home: Path) -> str | None:
    try:
        text = (flink_home / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return None


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}
