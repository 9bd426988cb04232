"""Local infrastructure: Kafka (KRaft, single node) and Cassandra started from Maven Central jars with Java 17.

>>> from infra import InfraSettings, LocalInfra
>>> infra = LocalInfra(InfraSettings())   # reads AFFRESCO_INFRA_* / AFFRESCO_DATA_DIR
>>> infra.up({"kafka", "cassandra"})      # doctest: +SKIP
"""

from infra.exceptions import InfraError
from infra.local import DEFAULT_SERVICES, SERVICES, LocalInfra, ServiceStatus, UpResult
from infra.settings import InfraSettings

__all__ = [
    "DEFAULT_SERVICES",
    "SERVICES",
    "InfraError",
    "InfraSettings",
    "LocalInfra",
    "ServiceStatus",
    "UpResult",
]
