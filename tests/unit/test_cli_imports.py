"""The CLI starts fast: `affresco --help` imports no engine, driver or data library.

Each command imports what it runs inside its function; at module level only what its signature and
help need (typer, rich, the stdlib, exception modules). A heavy import at the top of a command
module costs every `affresco` call, so these tests name the module that brought it in.
Each check runs in a fresh interpreter: this test session has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Engines, drivers and data libraries: none of them is needed to build the CLI or print its help.
HEAVY = ("pyarrow", "numpy", "duckdb", "bytewax", "rocksdict", "cassandra", "confluent_kafka", "backfill")


def _imported_after(code: str) -> list[str]:
    """The heavy top-level packages in `sys.modules` after running `code` in a new interpreter."""
    probe = f"""
import json, sys
{code}
print(json.dumps(sorted({{m.partition(".")[0] for m in sys.modules}} & set({list(HEAVY)!r}))))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    found: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


HINT = "import it inside the command that runs it; `python -X importtime -c 'import affresco.cli'` shows who imports it"


def test_importing_the_cli_imports_nothing_heavy() -> None:
    heavy = _imported_after("import affresco.cli")
    assert heavy == [], f"`import affresco.cli` imports {', '.join(heavy)}: {HINT}"


@pytest.mark.parametrize("args", [["--help"], ["features", "get", "--help"], ["backfill", "--help"]])
def test_help_builds_every_command_without_anything_heavy(args: list[str]) -> None:
    # Building the click commands reads every signature (annotations, defaults): they must stay light too.
    code = f"""
import contextlib, io
from affresco.cli import app
with contextlib.redirect_stdout(io.StringIO()):
    try:
        app({args!r})
    except SystemExit as exc:
        assert exc.code == 0, exc.code
"""
    heavy = _imported_after(code)
    assert heavy == [], f"`affresco {' '.join(args)}` imports {', '.join(heavy)}: {HINT}"


def test_features_get_needs_no_arrow_and_no_other_backend() -> None:
    # What `features get` runs: the registry (Kafka), the engine's kernels (numpy) and the RocksDB store.
    code = "import affresco.commands.features, processors.registry, processors.engine, state.rocksdb"
    heavy = _imported_after(code)
    assert heavy == ["confluent_kafka", "numpy", "rocksdict"], f"`features get` imports {', '.join(heavy)}"


def test_the_schemas_export_default_is_the_checked_in_directory() -> None:
    from affresco.commands import events
    from streams.schemas import SCHEMA_DIR

    assert events.SCHEMA_DIR == SCHEMA_DIR
