"""Reading YAML with line numbers, so every problem can point at its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from processors.exceptions import Problem

__all__ = ["ITEM_LINES", "KEY_LINES", "LINE_KEY", "item_line", "line_of", "load_yaml_documents"]

LINE_KEY = "__line__"
KEY_LINES = "__key_lines__"
ITEM_LINES = "__item_lines__"


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records (1-based) lines: of every mapping under `__line__`, of each of its
    keys under `__key_lines__`, of the items of its lists under `__item_lines__`."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping[LINE_KEY] = node.start_mark.line + 1
        mapping[KEY_LINES] = {
            key.value: key.start_mark.line + 1 for key, _ in node.value if isinstance(key, yaml.ScalarNode)
        }
        mapping[ITEM_LINES] = {
            key.value: [item.start_mark.line + 1 for item in value.value]
            for key, value in node.value
            if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.SequenceNode)
        }
        return mapping


def line_of(mapping: dict[str, Any], key: str | None = None) -> int | None:
    """The line of `key` in a loaded mapping, else of the mapping itself."""
    if key is not None:
        line = mapping.get(KEY_LINES, {}).get(key)
        if line is not None:
            return int(line)
    line = mapping.get(LINE_KEY)
    return int(line) if line is not None else None


def item_line(mapping: dict[str, Any], key: str, index: int) -> int | None:
    """The line of item `index` of the list under `key`, else of the key."""
    lines = mapping.get(ITEM_LINES, {}).get(key) or []
    return int(lines[index]) if index < len(lines) else line_of(mapping, key)


def load_yaml_documents(path: Path) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Every mapping document of a YAML file (a file may hold several, separated by `---`)."""
    try:
        text = path.read_text()
    except OSError as exc:
        return [], [Problem(str(path), f"cannot read the file: {exc.strerror}")]
    try:
        docs = [d for d in yaml.load_all(text, Loader=_LineLoader) if d is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        return [], [Problem(str(path), f"invalid YAML: {exc.problem or exc}", line=line)]
    except yaml.YAMLError as exc:
        return [], [Problem(str(path), f"invalid YAML: {exc}")]
    problems = [
        Problem(str(path), f"expected a mapping (a feature group or a model spec), got {type(d).__name__}")
        for d in docs
        if not isinstance(d, dict)
    ]
    return [d for d in docs if isinstance(d, dict)], problems


def strip_lines(value: Any) -> Any:
    """The same data without the `__line__` markers."""
    if isinstance(value, dict):
        return {k: strip_lines(v) for k, v in value.items() if k not in (LINE_KEY, KEY_LINES, ITEM_LINES)}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value
