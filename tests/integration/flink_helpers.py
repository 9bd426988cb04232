"""A real Flink session cluster for the tests: one JobManager and two TaskManagers started through
`infra/` (`LocalInfra`) in a data directory of its own, on free ports, so it never meets a cluster
someone else runs. The CLI under test reaches it through `FlinkCluster.env`."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.flink import CLUSTER_ENV, find_flink_home
from infra.jars import MARKER
from infra.local import LocalInfra
from infra.settings import InfraSettings

REPO = Path(__file__).resolve().parents[2]
FLINK_VENV = REPO / ".venv-flink"
TASKMANAGERS = 2
SLOTS = 2


@dataclass
class FlinkCluster:
    infra: LocalInfra
    settings: InfraSettings
    env: dict[str, str]  # what the CLI needs to find this cluster (and its connector jar)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.flink_rest_port}"

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def get(self, path: str) -> Any:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{self.rest_url}/{path}", timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.infra.down(["flink"])


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_flink_cluster(data_dir: Path) -> FlinkCluster:
    if not (FLINK_VENV / "bin" / "python").is_file() or find_flink_home(FLINK_VENV) is None:
        msg = f"the Flink venv {FLINK_VENV} is missing: run `make flink-venv` (`make test` builds it)"
        raise AssertionError(msg)
    fetched = REPO / ".affresco" / "libs" / "flink-2.2.1"  # the connector jar `make jars` fetched: spares a Maven run
    if (fetched / MARKER).is_file():
        shutil.copytree(fetched, data_dir / "libs" / fetched.name, dirs_exist_ok=True)
    rest, rpc, blob = free_ports(3)
    values = {
        "AFFRESCO_INFRA_DATA_DIR": str(data_dir),
        "AFFRESCO_INFRA_FLINK_VENV": str(FLINK_VENV),
        "AFFRESCO_INFRA_FLINK_REST_PORT": str(rest),
        "AFFRESCO_INFRA_FLINK_RPC_PORT": str(rpc),
        "AFFRESCO_INFRA_FLINK_BLOB_PORT": str(blob),
        "AFFRESCO_INFRA_FLINK_TASKMANAGERS": str(TASKMANAGERS),
        "AFFRESCO_INFRA_FLINK_TASK_SLOTS": str(SLOTS),
    }
    settings = InfraSettings(
        data_dir=data_dir, flink_venv=FLINK_VENV, flink_rest_port=rest, flink_rpc_port=rpc, flink_blob_port=blob,
        flink_taskmanagers=TASKMANAGERS, flink_task_slots=SLOTS,
    )  # fmt: skip
    infra = LocalInfra(settings)
    infra.up(["flink"])
    return FlinkCluster(infra, settings, values)


__all__ = ["CLUSTER_ENV", "FlinkCluster", "free_ports", "start_flink_cluster"]
