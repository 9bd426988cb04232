"""A single Cassandra 5.0 node run from `cassandra-all` jars through its main class, without the shell scripts."""

from __future__ import annotations

import logging
from pathlib import Path

from infra.exceptions import InfraError, NotAnsweringError
from infra.render import render_to
from infra.server import Server, heap_flags

__all__ = ["JAVA17_FLAGS", "CassandraServer", "probe_cassandra"]

logger = logging.getLogger(__name__)

_MAIN = "org.apache.cassandra.service.CassandraDaemon"

#: From Cassandra's conf/jvm17-server.options: what Cassandra 5.0 needs opened on Java 17.
JAVA17_FLAGS: tuple[str, ...] = (
    "-Djdk.attach.allowAttachSelf=true",
    *(
        f"--add-exports={module}=ALL-UNNAMED"
        for module in (
            "java.base/jdk.internal.misc",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.management/com.sun.jmx.remote.security",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "java.base/java.lang.ref",
            "jdk.unsupported/sun.misc",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.attach/sun.tools.attach",
        )
    ),
    *(
        f"--add-opens={module}=ALL-UNNAMED"
        for module in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "jdk.compiler/com.sun.tools.javac",
            "java.base/java.lang",
            "java.base/java.util",
            "java.base/java.nio",
        )
    ),
    "-Dio.netty.tryReflectionSetAccessible=true",
)

#: Start in seconds instead of a minute: one node has no gossip to settle and no ring to wait for.
_FAST_START = (
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=1000",
    "-Dcassandra.load_ring_state=false",
    "-Dcassandra.superuser_setup_delay_ms=0",
)


class CassandraServer(Server):
    """One Cassandra node listening for CQL on `cassandra_port` and for peers on `cassandra_storage_port`."""

    name = "cassandra"
    # 5.0 supports Java 11 and 17; from JDK 24 on, start-up dies installing a SecurityManager.
    java_range = (11, 17)

    @property
    def version(self) -> str:
        return self.settings.cassandra_version

    @property
    def ports(self) -> dict[str, int]:
        return {
            "cassandra_port": self.settings.cassandra_port,
            "cassandra_storage_port": self.settings.cassandra_storage_port,
        }

    @property
    def start_timeout_s(self) -> float:
        return self.settings.cassandra_start_timeout_s

    @property
    def config_file(self) -> Path:
        return self.paths.conf / "cassandra.yaml"

    @property
    def logback_config(self) -> Path:
        return self.paths.conf / "logback.xml"

    def maven_properties(self) -> dict[str, str]:
        return {"cassandra.version": self.version}

    def render_config(self) -> None:
        """Write cassandra.yaml and the logback config from the templates."""
        render_to(
            "cassandra.yaml",
            {
                "host": self.settings.host,
                "port": self.settings.cassandra_port,
                "storage_port": self.settings.cassandra_storage_port,
                "data_dir": self.paths.data,
            },
            self.config_file,
        )
        render_to("cassandra-logback.xml", {"log_file": self.paths.log_file}, self.logback_config)

    def prepare(self) -> None:
        self.paths.make_dirs()
        self.render_config()

    def jamm_agent(self) -> Path:
        """The jamm jar that Cassandra needs as `-javaagent` to measure memtable sizes."""
        jars = sorted(self.paths.libs.glob("jamm-*.jar"))
        if not jars:
            msg = (
                f"cassandra: expected a jamm-*.jar among the fetched jars in {self.paths.libs}, found none; "
                "remove that folder and run `affresco infra fetch` again"
            )
            raise InfraError(msg)
        return jars[-1]

    def command(self) -> list[str]:
        settings = self.settings
        return [
            str(settings.java),
            *heap_flags(self.settings.cassandra_heap),
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.net.preferIPv4Stack=true",
            "-Djava.awt.headless=true",
            f"-javaagent:{self.jamm_agent()}",
            *JAVA17_FLAGS,
            f"-Dcassandra.config={self.config_file.as_uri()}",
            f"-Dcassandra.storagedir={self.paths.data}",
            f"-Dcassandra.logdir={self.paths.log_dir}",
            "-Dcassandra-foreground=yes",
            f"-Dlogback.configurationFile={self.logback_config}",
            *_FAST_START,
            *(["-Dcassandra.unsafesystem=true"] if settings.cassandra_unsafe_system else []),
            *self.markers,
            "-cp",
            str(self.paths.libs / "*"),
            _MAIN,
        ]

    def probe(self, timeout_s: float) -> str:
        return f"Cassandra {probe_cassandra(self.host, self.port, timeout_s)}"

    def _java_hint(self, major: int) -> str:
        if major >= 24:
            return " (Cassandra installs a SecurityManager at start-up, which JDK 24+ refuses)"
        return ""


def probe_cassandra(host: str, port: int, timeout_s: float) -> str:
    """Run `SELECT release_version FROM system.local` through cassandra-driver; return the version."""
    from state.cassandra.exceptions import CassandraUnavailableError
    from state.cassandra.options import CassandraSettings
    from state.cassandra.session import ping

    settings = CassandraSettings(
        contact_points=[host], port=port, connect_timeout_s=timeout_s, request_timeout_s=timeout_s
    )
    try:
        return ping(settings)
    except CassandraUnavailableError as exc:
        raise NotAnsweringError(str(exc)) from exc
