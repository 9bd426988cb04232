"""Starting the Flink job from the main venv (which never imports pyflink): config, subprocess, errors, summary.

`--target local` runs the job on an in-process mini-cluster inside the flink venv's python; the
job's log is `<run dir>/job.log`. Any failure — no flink venv, no connector jar, a job that fails —
is a `FlinkJobError` naming it, with the tail of the log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
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
    for old in [*run_dir.glob("summary-*.json"), *run_dir.glob("error-*.txt")]:
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
    env["PATH"] = f"{_python(options.flink_venv).absolute().parent}{os.pathsep}{env['PATH']}"
    command = [str(_python(options.flink_venv).absolute()), "-m", "processors.flink.job", str(config_path)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            rc = proc.wait(timeout=options.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            msg = f"the Flink job did not end within {options.timeout_s:.0f} s; its log {log_path} ends:"
            msg += "\n" + tail(log_path)
            raise FlinkJobError(msg) from None
        except BaseException:  # Ctrl-C or SIGTERM: stop the job's process group (its JVM, its Python workers) too
            _kill_group(proc)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
    if rc != 0:
        msg = f"the Flink job failed (exit {rc}); from its log {log_path}:\n{_failure_lines(log_path)}"
        raise FlinkJobError(msg)
    errors = sorted(run_dir.glob("error-*.txt"))
    if errors:
        msg = f"the Flink job's outputs failed at its end ({errors[0].name}):\n{tail(errors[0])}"
        raise FlinkJobError(msg)
    paths = sorted(run_dir.glob("summary-*.json"))
    reported = {step: sum(1 for p in paths if p.name.startswith(f"summary-{step}-")) for step in ("decode", "entity")}
    if any(n != options.parallelism for n in reported.values()):
        # A subtask that never closed may not have written its last outputs: never a silent success.
        msg = (
            f"the Flink job ended but not every subtask reported its end ({reported}, expected "
            f"{options.parallelism} each): its outputs may be incomplete; its log {log_path} ends:\n{tail(log_path)}"
        )
        raise FlinkJobError(msg)
    summaries = [_read_json(p) for p in paths]
    return merge_summaries(summaries)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """The job runs in a session of its own: kill it, its JVM and the Python workers it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read_json(path: Path) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(path.read_text())
    return data
