"""Fetch a server's jars from Maven Central once, with a small pom and `maven-dependency-plugin`.

The Apache download tarballs are not reachable from our build machines, Maven Central is: each
server is assembled from its artifact and runtime dependencies (`infra/<name>-pom.xml`).
Jars land in `<data_dir>/libs/<name>-<version>/`; a `.complete` marker written last makes the
fetch happen once, and an interrupted fetch is redone.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from infra.exceptions import FetchError

__all__ = ["MARKER", "fetch_jars", "jars_ready"]

logger = logging.getLogger(__name__)

MARKER = ".complete"
_OUTPUT_LINES = 40
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # mvn -B still colours some lines


def jars_ready(libs: Path, properties: Mapping[str, str]) -> bool:
    """Whether `libs` holds a complete fetch made with exactly these Maven properties."""
    marker = libs / MARKER
    try:
        return bool(json.loads(marker.read_text(encoding="utf-8")) == dict(properties))
    except (OSError, ValueError):
        return False


def fetch_jars(
    name: str, libs: Path, properties: Mapping[str, str], *, maven: str = "mvn", force: bool = False
) -> bool:
    """Copy the jars of server `name` into `libs` with `infra/<name>-pom.xml`; True if Maven ran.

    `properties` are passed to Maven as `-Dkey=value` (the versions) and recorded in the marker.
    """
    if not force and jars_ready(libs, properties):
        logger.debug("%s jars already in %s", name, libs)
        return False
    mvn = shutil.which(maven)
    if mvn is None:
        msg = (
            f"fetching the {name} jars needs Maven, but {maven!r} is not on PATH: "
            "install it (e.g. `apt-get install maven`) or point AFFRESCO_INFRA_MAVEN at it"
        )
        raise FetchError(msg)

    partial = libs.with_name(libs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    defines = [f"-D{key}={value}" for key, value in {**properties, "libs.dir": str(partial)}.items()]
    pom_resource = resources.files("infra").joinpath(f"{name}-pom.xml")
    started = time.monotonic()
    logger.info("fetching %s jars from Maven Central into %s", name, libs)
    with resources.as_file(pom_resource) as pom:
        command = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom), "package", *defines]
        try:
            result = subprocess.run(command, cwd=partial, capture_output=True, text=True, check=False)
        except OSError as exc:
            msg = f"fetching the {name} jars: could not run {' '.join(command)}: {exc}"
            raise FetchError(msg) from exc
    if result.returncode != 0:
        output = _ANSI.sub("", result.stdout + result.stderr).strip().splitlines()[-_OUTPUT_LINES:]
        shutil.rmtree(partial, ignore_errors=True)
        msg = (
            f"fetching the {name} jars failed: `{' '.join(command)}` exited with code {result.returncode}; "
            "its last output:\n" + "\n".join(output)
        )
        raise FetchError(msg)
    jars = sorted(partial.glob("*.jar"))
    if not jars:
        msg = f"fetching the {name} jars: Maven succeeded but copied no jar into {partial}"
        raise FetchError(msg)

    size_mb = sum(jar.stat().st_size for jar in jars) / 1e6
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    (libs / MARKER).write_text(json.dumps(dict(properties), sort_keys=True), encoding="utf-8")
    logger.info("fetched %d %s jars (%.0f MB) in %.1f s", len(jars), name, size_mb, time.monotonic() - started)
    return True
