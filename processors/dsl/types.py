"""Value types of the DSL and the schema of an event's fields.

A `FieldType` is a kind (int, float, str, bool, or "any" when unknown) plus nullability. A schema
maps field names to field types; `schema_from_model` reads one from a pydantic v2 model:

    >>> from pydantic import BaseModel
    >>> class Trip(BaseModel):
    ...     city: str
    ...     distance_km: float
    ...     tip: float | None = None
    >>> {name: str(t) for name, t in schema_from_model(Trip).items()}
    {'city': 'str', 'distance_km': 'float', 'tip': 'float | None'}
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel

__all__ = [
    "ANY",
    "BOOL",
    "FLOAT",
    "INT",
    "NULL",
    "NUMERIC",
    "STR",
    "FieldType",
    "Kind",
    "Schema",
    "schema_from_model",
    "unify",
]


class Kind(enum.Enum):
    """The kind of a value. `ANY` is a field whose type is unknown; `NULL` is the literal `None`."""

    INT = "int"
    FLOAT = "float"
    STR = "str"
    BOOL = "bool"
    ANY = "any"
    NULL = "null"

    @property
    def is_numeric(self) -> bool:
        return self in (Kind.INT, Kind.FLOAT)


@dataclass(frozen=True, slots=True)
class FieldType:
    """A kind and whether the value may be None: `FieldType(Kind.FLOAT, nullable=True)` is `float | None`."""

    kind: Kind
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.kind in (Kind.ANY, Kind.NULL) and not self.nullable:
            object.__setattr__(self, "nullable", True)  # an unknown or null value may always be None

    def __str__(self) -> str:
        if self.kind in (Kind.ANY, Kind.NULL) or not self.nullable:
            return self.kind.value
        return f"{self.kind.value} | None"

    def with_nullable(self, nullable: bool = True) -> FieldType:
        """This kind with the given nullability."""
        return self if self.nullable == nullable else FieldType(self.kind, nullable)


Schema = Mapping[str, FieldType]

INT = FieldType(Kind.INT)
FLOAT = FieldType(Kind.FLOAT)
STR = FieldType(Kind.STR)
BOOL = FieldType(Kind.BOOL)
ANY = FieldType(Kind.ANY, nullable=True)
NULL = FieldType(Kind.NULL, nullable=True)
NUMERIC: tuple[FieldType, ...] = (INT, FLOAT)
"""`expect=NUMERIC` asks for an int or float result (e.g. the value of a `sum`)."""

_PLAIN: dict[Any, Kind] = {int: Kind.INT, float: Kind.FLOAT, str: Kind.STR, bool: Kind.BOOL}


def schema_from_model(model_cls: type[BaseModel]) -> dict[str, FieldType]:
    """The DSL schema of a pydantic v2 model's fields.

    `int`, `float`, `str`, `bool` map to themselves, `Literal[...]` of strings to str (of ints to
    int, of bools to bool), str/int enums to str/int, `int | float` to float, `X | None` to
    nullable X; anything else is `any` (accepted everywhere, checked only at run time).
    """
    return {name: _field_type(info.annotation) for name, info in model_cls.model_fields.items()}


def _field_type(annotation: Any) -> FieldType:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _field_type(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        kinds = {_field_type(arg).kind for arg in members}
        if kinds == {Kind.INT, Kind.FLOAT}:
            kinds = {Kind.FLOAT}
        kind = kinds.pop() if len(kinds) == 1 else Kind.ANY
        return FieldType(kind, nullable or kind is Kind.ANY)
    if origin is Literal:
        return FieldType(_common_kind(type(value) for value in typing.get_args(annotation)))
    if annotation in _PLAIN:
        return FieldType(_PLAIN[annotation])
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return FieldType(_common_kind(type(member.value) for member in annotation))
    return ANY


def _common_kind(value_types: Iterable[type]) -> Kind:
    kinds = {_PLAIN.get(t, Kind.ANY) for t in value_types}
    return kinds.pop() if len(kinds) == 1 else Kind.ANY


def unify(types_: Iterable[FieldType]) -> FieldType | None:
    """The common type of values that may take each other's place (branches, `coalesce` arguments).

    int and float give float; the literal None adds nullability; `any` absorbs everything; None when
    the kinds cannot mix (str and int).

    >>> str(unify([INT, FLOAT.with_nullable()])), unify([STR, INT])
    ('float | None', None)
    """
    members = list(types_)
    nullable = any(t.nullable for t in members)
    kinds = {t.kind for t in members} - {Kind.NULL}
    if not kinds:
        return NULL
    if Kind.ANY in kinds:
        return ANY
    if kinds == {Kind.INT, Kind.FLOAT}:
        kinds = {Kind.FLOAT}
    if len(kinds) > 1:
        return None
    return FieldType(kinds.pop(), nullable)
