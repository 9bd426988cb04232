"""Render the config templates in `infra/templates/`: `{{ name }}` placeholders, nothing else.

The templates are Java config files that use `${...}` themselves (log4j2, logback), so the
placeholders use a syntax none of them has. Rendering is strict: a placeholder without a value,
or a value without a placeholder, is an error, so a renamed key cannot silently ship a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from infra.exceptions import InfraError

__all__ = ["read_template", "render", "render_to"]

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


def read_template(name: str) -> str:
    """The text of `infra/templates/<name>`."""
    try:
        return resources.files("infra").joinpath("templates", name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        msg = f"infra template {name!r} is missing from the installed package (expected infra/templates/{name})"
        raise InfraError(msg) from exc


def render(template: str, values: Mapping[str, object], *, name: str = "<template>") -> str:
    """Replace every `{{ key }}` in `template` with `str(values[key])`.

    >>> render("port={{ port }}", {"port": 9092})
    'port=9092'
    """
    used = set(_PLACEHOLDER.findall(template))
    missing = sorted(used - values.keys())
    unused = sorted(values.keys() - used)
    if missing or unused:
        msg = (
            f"rendering {name}: expected exactly the placeholders {sorted(used)}, "
            f"but no value was given for {missing} and {unused} have no placeholder"
        )
        raise InfraError(msg)
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)


def render_to(template_name: str, values: Mapping[str, object], target: Path) -> Path:
    """Render `infra/templates/<template_name>` with `values` into `target` (overwritten) and return it."""
    text = render(read_template(template_name), values, name=template_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
