"""Starting the Flink job from the main venv (which never imports pyflink): config, subprocess, errors, summary.

`--target local` runs the job on an in-process mini-cluster inside the flink venv's python;
`--target cluster` submits it to a running Flink cluster with `flink run` (attached: the CLI waits
for a bounded job's end; following, it submits detached and returns the job id). Either way the
client's output is `<run dir>/job.log`. Any failure — no flink venv, no connector jar, no cluster
answering, too few free slots, a job that fails — is a `FlinkJobError` naming it, with the tail
of the relevant log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.definitions import FeatureGroup
from processors.exceptions import ProcessorsError
from processors.flink.steps import JobConfig
from processors.runtime.outputs import merge_summaries
from streams.settings import KafkaSettings

__all__ = ["FlinkJobError", "FlinkOptions", "run_flink_job"]

_TAIL_LINES = 40


class FlinkJobError(ProcessorsError):
    """The Flink job could not start or failed; the message says which, with the tail of its log."""


@dataclass(frozen=True)
class FlinkOptions:
    run_dir: Path
    flink_venv: Path
    connector_jar: Path
    java_home: Path | None = None
    parallelism: int = 2
    until_idle: bool = True
    checkpoint_interval_ms: int = 5000
    emit_feature_updates: bool = True
    store_options: dict[str, Any] | None = None  # open_store("cassandra", **options) in the job
    timeout_s: float | None = None
    target: str = "local"  # local (mini-cluster) or cluster (`flink run` to `rest_url`)
    rest_url: str = "http://127.0.0.1:8081"  # the cluster's REST API (cluster target)
    cluster_log: Path | None = None  # the cluster's JobManager log, quoted when the cluster is not there
    restart_attempts: int = 30  # cluster target: restarts (3 s apart) before a failing job fails the run


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def check_prerequisites(options: FlinkOptions) -> None:
    """A missing flink venv or connector jar is said before anything starts."""
    python = _python(options.flink_venv)
    if not python.exists():
        msg = f"the flink venv is missing: no {python} (create it with `make flink-venv`)"
        raise FlinkJobError(msg)
    found = list(options.flink_venv.glob("lib/python3*/site-packages/pyflink/bin"))
    if not found:
        msg = f"the flink venv {options.flink_venv} has no apache-flink installed (run `make flink-venv`)"
        raise FlinkJobError(msg)
    if not options.connector_jar.is_file():
        msg = (
            f"the Flink Kafka connector jar is missing: {options.connector_jar} "
            "(fetch it with `affresco infra fetch` or `make jars`)"
        )
        raise FlinkJobError(msg)


def tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def _failure_lines(path: Path) -> str:
    """The exception lines of the log (Python and Java, unindented), then its tail."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    causes: list[str] = []
    for line in text:
        if line[:1].strip() and ("Exception" in line or "Error" in line) and line not in causes:
            causes.append(line[:500])
    head = "\n".join(causes[:8])
    return (head + "\n...\n" if head else "") + "\n".join(text[-_TAIL_LINES // 2 :])


def run_flink_job(
    groups: Sequence[FeatureGroup], kafka: KafkaSettings, partitions: dict[str, int], options: FlinkOptions
) -> dict[str, Any]:
    """Run the groups as a Flink job until it ends (bounded: `until_idle`); the merged summary of its subtasks."""
    check_prerequisites(options)
    run_dir = options.run_dir.absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in [*run_dir.glob("summary-*.json"), *run_dir.glob("active-*"), *run_dir.glob("error-*.txt")]:
        old.unlink()
    config = JobConfig(
        groups=[g.spec.model_dump(mode="json") for g in groups],
        kafka=kafka.model_dump(mode="json"),
        store=dict(options.store_options or {}),
        partitions=partitions,
        run_dir=str(run_dir),
        jar=str(options.connector_jar.absolute()),
        python=str(_python(options.flink_venv).absolute()),
        parallelism=options.parallelism,
        target=options.target,
        restart_attempts=options.restart_attempts,
        until_idle=options.until_idle,
        checkpoint_interval_ms=options.checkpoint_interval_ms,
        emit_feature_updates=options.emit_feature_updates,
        job_name="affresco_" + "_".join(sorted(g.name for g in groups)),
    )
    config_path = run_dir / "job.json"
    config.dump(config_path)
    log_path = run_dir / "job.log"
    env = dict(os.environ)
    if options.java_home is not None:
        env["JAVA_HOME"] = str(options.java_home)
        env["PATH"] = f"{options.java_home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    python = str(_python(options.flink_venv).absolute())
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env['PATH']}"
    if options.target == "cluster":
        check_cluster(options)
        command = [
            str(flink_cli(options.flink_venv)), "run", "-m", options.rest_url.removeprefix("http://"),
            "-j", str(options.connector_jar.absolute()), "-pyclientexec", python, "-pyexec", python,
            *([] if options.until_idle else ["-d"]),
            "-py", str(Path(__file__).with_name("job.py")), str(config_path),
        ]  # fmt: skip
        for name in ("FLINK_CONF_DIR", "FLINK_LOG_DIR", "JVM_ARGS"):  # the cluster's own, not this CLI's
            env.pop(name, None)
    else:
        command = [python, "-m", "processors.flink.job", str(config_path)]
    rc = _run(command, env, log_path, options)
    if options.target == "cluster" and not options.until_idle:
        if rc != 0:
            msg = f"the Flink job was not submitted (exit {rc}); from {log_path}:\n{_failure_lines(log_path)}"
            raise FlinkJobError(msg)
        return {"job_id": job_id(log_path), "rest_url": options.rest_url, "following": True}
    if rc != 0:
        msg = f"the Flink job failed (exit {rc}); from its log {log_path}:\n{_failure_lines(log_path)}"
        raise FlinkJobError(msg)
    errors = sorted(run_dir.glob("error-*.txt"))
    if errors:
        msg = f"the Flink job's outputs failed at its end ({errors[0].name}):\n{tail(errors[0])}"
        raise FlinkJobError(msg)
    paths = sorted(run_dir.glob("summary-*.json"))
    # Every subtask that got a record marks itself active (a subtask may get no key at all: the
    # decode step is keyed by source partition); each of them must have reported its end.
    active = {p.name.removeprefix("active-") for p in run_dir.glob("active-*")}
    reported = {p.name.removeprefix("summary-").removesuffix(".json") for p in paths}
    if active - reported or not reported:
        # A subtask that never closed may not have written its last outputs: never a silent success.
        msg = (
            f"the Flink job ended but not every subtask reported its end (active {sorted(active)}, reported "
            f"{sorted(reported)}): its outputs may be incomplete; its log {log_path} ends:\n{tail(log_path)}"
        )
        raise FlinkJobError(msg)
    summaries = [_read_json(p) for p in paths]
    summary = merge_summaries(summaries)
    if options.target == "cluster":
        summary["job_id"] = job_id(log_path)
    return summary


def flink_cli(venv: Path) -> Path:
    """The `flink` command of the venv's Flink distribution (`site-packages/pyflink/bin/flink`)."""
    found = sorted(venv.glob("lib/python3*/site-packages/pyflink/bin/flink"))
    return found[0] if found else venv / "bin" / "flink"


def check_cluster(options: FlinkOptions) -> dict[str, Any]:
    """The cluster answers and has a free slot per parallel subtask (a session cluster does not queue a
    job beyond its slots: it would wait, then time out) — else say which, with the cluster's log tail."""
    try:
        overview = _get_json(f"{options.rest_url}/overview", timeout_s=5)
    except (OSError, ValueError) as exc:
        msg = (
            f"no Flink cluster answers at {options.rest_url} ({exc}): start one with `affresco infra up --with flink` "
            "or point AFFRESCO_INFRA_FLINK_REST_PORT at yours"
        )
        if options.cluster_log is not None and options.cluster_log.is_file():
            msg += f"; its log {options.cluster_log} ends:\n{tail(options.cluster_log, 15)}"
        raise FlinkJobError(msg) from None
    free = int(overview.get("slots-available", 0))
    if free < options.parallelism:
        msg = (
            f"the Flink cluster at {options.rest_url} has {free} free task slot(s) of "
            f"{overview.get('slots-total', 0)} ({overview.get('taskmanagers', 0)} TaskManager(s), "
            f"{overview.get('jobs-running', 0)} job(s) running); the job needs {options.parallelism}: "
            "lower --parallelism, stop a job, or add TaskManagers "
            "(AFFRESCO_INFRA_FLINK_TASKMANAGERS, AFFRESCO_INFRA_FLINK_TASK_SLOTS)"
        )
        raise FlinkJobError(msg)
    return overview


def job_id(log_path: Path) -> str | None:
    """The JobID `flink run` printed ("Job has been submitted with JobID <hex>")."""
    found = re.search(r"JobID ([0-9a-f]{32})", log_path.read_text(errors="replace")) if log_path.is_file() else None
    return found.group(1) if found else None


def _run(command: list[str], env: dict[str, str], log_path: Path, options: FlinkOptions) -> int:
    """Run the job's client to its end; on a timeout, Ctrl-C or SIGTERM stop it (and a cluster job it submitted)."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            return proc.wait(timeout=options.timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc, log_path, options)
            msg = f"the Flink job did not end within {options.timeout_s:.0f} s; its log {log_path} ends:"
            msg += "\n" + tail(log_path)
            raise FlinkJobError(msg) from None
        except BaseException:  # Ctrl-C or SIGTERM: stop the job's process group (its JVM, its Python workers) too
            _stop(proc, log_path, options)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)


def _stop(proc: subprocess.Popen[bytes], log_path: Path, options: FlinkOptions) -> None:
    _kill_group(proc)
    submitted = job_id(log_path) if options.target == "cluster" else None
    if submitted is not None:  # the cluster would run it on without its client
        with contextlib.suppress(OSError, ValueError):
            _request(f"{options.rest_url}/jobs/{submitted}?mode=cancel", method="PATCH", timeout_s=5)


def _get_json(url: str, timeout_s: float) -> dict[str, Any]:
    answer = json.loads(_request(url, timeout_s=timeout_s))
    if not isinstance(answer, dict):
        msg = f"{url} did not answer with a JSON object"
        raise ValueError(msg)
    return answer


def _request(url: str, *, method: str = "GET", timeout_s: float) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, method=method), timeout=timeout_s) as response:
        body: bytes = response.read()
        return body


def wait_for_job(rest_url: str, job: str, states: set[str], timeout_s: float) -> str:
    """Poll the job's state until it is one of `states`; the state."""
    deadline = time.monotonic() + timeout_s
    state = "?"
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            state = str(_get_json(f"{rest_url}/jobs/{job}", timeout_s=5).get("state"))
            if state in states:
                return state
        time.sleep(0.5)
    msg = f"job {job} at {rest_url} is {state}, not {sorted(states)}, after {timeout_s:.0f} s"
    raise FlinkJobError(msg)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """The job runs in a session of its own: kill it, its JVM and the Python workers it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
