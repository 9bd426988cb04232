"""`affresco infra up --with flink` / `down` with real processes: a JobManager and two TaskManagers on loopback.

The cluster gets its own data directory and free ports, so it never meets a cluster someone else
runs. A tiny bounded PyFlink job (Python functions on the TaskManagers' Python workers) runs on it
through `flink run`, in the flink venv (`make flink-venv`): PyFlink is never imported here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.flink import CLUSTER_ENV, find_flink_home
from infra.jars import MARKER
from infra.process import is_alive, read_cmdline, read_pid

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FLINK_VENV = REPO / ".venv-flink"
AFFRESCO = Path(sys.executable).parent / "affresco"
TASKMANAGERS = 2
SLOTS = 2
N = 1000

# Runs in the flink venv (python.client.executable), never in this one.
JOB = """
import sys

from pyflink.common import Encoder, Types
from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import FileSink

out_dir, n = sys.argv[1], int(sys.argv[2])
env = StreamExecutionEnvironment.get_execution_environment()
env.set_runtime_mode(RuntimeExecutionMode.BATCH)  # bounded: the file sink commits its files at the end
env.set_parallelism(2)
numbers = env.from_collection(list(range(1, n + 1)), type_info=Types.LONG())
lines = numbers.map(lambda x: f"{x},{x * x}", output_type=Types.STRING())  # a Python function, on the TaskManagers
lines.sink_to(FileSink.for_row_format(out_dir, Encoder.simple_string_encoder()).build())
env.execute("affresco-infra-flink-smoke")
"""


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _overview(rest: int, path: str = "overview") -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{rest}/{path}", timeout=10) as response:
        return json.loads(response.read())


def _ours(data_dir: Path) -> list[str]:
    """Live processes whose command line names our data directory, or whose environment is our cluster's."""
    marker = f"-Daffresco.infra.data_dir={data_dir}"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        argv = read_cmdline(pid)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            environ = []
        in_env = f"{CLUSTER_ENV}={data_dir}".encode() in environ
        if (marker in argv or in_env) and is_alive(pid):
            found.append(f"{pid}: {' '.join(argv)[:200]}")
    return found


@pytest.fixture(scope="module")
def flink_home() -> Path:
    home = find_flink_home(FLINK_VENV)
    if not (FLINK_VENV / "bin" / "python").is_file() or home is None:
        pytest.fail(f"the Flink venv {FLINK_VENV} is missing: run `make flink-venv` (`make test` builds it)")
    return home


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, flink_home: Path) -> Iterator[dict[str, Any]]:
    """Environment for `affresco infra` with a fresh data dir and free Flink ports; stops what it started."""
    data_dir = tmp_path_factory.mktemp("flink-infra").resolve()
    # The connector jar `make jars` fetched into the project's data dir: copied, to spare a Maven run.
    fetched = REPO / ".affresco" / "libs" / "flink-2.2.1"
    if (fetched / MARKER).is_file():
        shutil.copytree(fetched, data_dir / "libs" / fetched.name)
    rest, rpc, blob = _free_ports(3)
    env = {
        **os.environ,
        "AFFRESCO_DATA_DIR": str(data_dir),
        "AFFRESCO_INFRA_FLINK_VENV": str(FLINK_VENV),
        "AFFRESCO_INFRA_FLINK_REST_PORT": str(rest),
        "AFFRESCO_INFRA_FLINK_RPC_PORT": str(rpc),
        "AFFRESCO_INFRA_FLINK_BLOB_PORT": str(blob),
        "AFFRESCO_INFRA_FLINK_TASKMANAGERS": str(TASKMANAGERS),
        "AFFRESCO_INFRA_FLINK_TASK_SLOTS": str(SLOTS),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    started_file = data_dir / "started"
    state: dict[str, Any] = {"env": env, "data_dir": data_dir, "rest": rest, "started_file": started_file}
    yield state
    # Whatever the test got to: stop exactly what `up` started (Kafka too, if it was not already running).
    started = started_file.read_text().split() if started_file.exists() else []
    if started:
        only = [arg for name in started for arg in ("--only", name)]
        subprocess.run([str(AFFRESCO), "infra", "down", *only], env=env, capture_output=True, timeout=120, check=False)


def test_up_runs_a_job_on_two_taskmanagers_and_down_leaves_nothing(
    cluster: dict[str, Any], flink_home: Path, tmp_path: Path
) -> None:
    env, data_dir, rest = cluster["env"], cluster["data_dir"], cluster["rest"]

    started = time.monotonic()
    up = subprocess.run(
        [str(AFFRESCO), "infra", "up", "--with", "flink", "--started-file", str(cluster["started_file"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    up_s = time.monotonic() - started
    assert up.returncode == 0, up.stdout + up.stderr
    assert "flink" in cluster["started_file"].read_text().split()

    overview = _overview(rest)
    assert overview["taskmanagers"] == TASKMANAGERS, overview
    assert overview["slots-total"] == TASKMANAGERS * SLOTS, overview
    assert overview["flink-version"] == "2.2.1"
    ids = sorted(tm["id"] for tm in _overview(rest, "taskmanagers")["taskmanagers"])
    assert ids == [f"affresco-taskmanager-{i}" for i in range(1, TASKMANAGERS + 1)]

    status = subprocess.run(
        [str(AFFRESCO), "infra", "status", "--json"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    flink = next(s for s in json.loads(status.stdout) if s["name"] == "flink")
    assert flink["state"] == "running" and flink["answering"], flink
    assert f"{TASKMANAGERS} TaskManager(s)" in flink["detail"]

    # One JobManager and N TaskManagers, each its own java process, tagged with its role.
    run = data_dir / "run"
    roles = {"jobmanager": run / "flink.pid"} | {
        f"taskmanager-{i}": run / f"flink-taskmanager-{i}.pid" for i in range(1, TASKMANAGERS + 1)
    }
    pids = {}
    for role, pid_file in roles.items():
        pid = read_pid(pid_file)
        assert pid is not None and is_alive(pid), (role, pid_file)
        argv = read_cmdline(pid)
        assert Path(argv[0]) == Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java"), argv[0]
        assert f"-Daffresco.infra.role={role}" in argv and f"-Daffresco.infra.data_dir={data_dir}" in argv
        pids[role] = pid
    assert len(set(pids.values())) == 1 + TASKMANAGERS
    config = (data_dir / "flink" / "conf" / "config.yaml").read_text()
    assert f"python.executable: {FLINK_VENV}/bin/python" in config
    assert "state.backend.type: rocksdb" in config
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in config  # the shipped env.java.opts.all

    # A bounded job with a Python function, submitted to the cluster with the flink CLI.
    job = tmp_path / "job.py"
    job.write_text(JOB)
    out = tmp_path / "out"
    job_started = time.monotonic()
    submitted = subprocess.run(
        [str(flink_home / "bin" / "flink"), "run", "-m", f"127.0.0.1:{rest}", "-py", str(job), str(out), str(N)],
        env={
            **env,
            "JAVA_HOME": "/usr/lib/jvm/java-17-openjdk-amd64",
            "FLINK_CONF_DIR": str(data_dir / "flink" / "conf"),
            "FLINK_LOG_DIR": str(tmp_path / "client-log"),
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    job_s = time.monotonic() - job_started
    assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-4000:]
    rows = [line for part in sorted(out.rglob("part-*")) for line in part.read_text().splitlines()]
    assert sorted(rows) == sorted(f"{x},{x * x}" for x in range(1, N + 1))
    jobs = _overview(rest, "jobs/overview")["jobs"]
    assert [(j["name"], j["state"]) for j in jobs] == [("affresco-infra-flink-smoke", "FINISHED")]

    # A Python worker orphaned by a killed TaskManager carries the cluster's environment: `down` stops it too.
    orphan = subprocess.Popen(["sleep", "600"], env={**env, CLUSTER_ENV: str(data_dir)}, start_new_session=True)

    down_started = time.monotonic()
    down = subprocess.run(
        [str(AFFRESCO), "infra", "down", "--only", "flink"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    down_s = time.monotonic() - down_started
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped flink" in down.stdout
    assert orphan.wait(timeout=10) != 0
    for role, pid in pids.items():
        assert not is_alive(pid), (role, pid)
    assert _ours(data_dir) == []
    assert not any(pid_file.exists() for pid_file in roles.values())
    print(f"flink up {up_s:.1f} s, job {job_s:.1f} s, down {down_s:.1f} s")
