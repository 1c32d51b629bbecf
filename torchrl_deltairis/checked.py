"""Checked config fields: a dataclass field states its meaning and its range where it is declared
(:func:`setting`), and :func:`parse` builds the dataclass from a config mapping, checking every key,
type, range and choice, with a one-line error naming the key, the value and what was expected.

    @dataclass(frozen=True)
    class Schedule:
        epochs: int = setting(doc="epochs of the run", low=1)
        epsilon: float = setting(0.01, doc="exploration rate", low=0, high=1)

    parse(Schedule, {"epochs": 0}, "params.common")  # ValueError: params.common.epochs=0; expected an integer >= 1

Types come from the annotations: ``bool``, ``int``, ``float`` (an int is taken, as a float), ``str``,
``None``, unions of them, ``list`` / ``list[...]``, ``dict``, ``Any`` and nested dataclasses (parsed in
turn, their keys named below the parent's).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["setting", "parse", "convert", "check_keys", "field_doc", "describe"]


def setting(default: Any = dataclasses.MISSING, *, doc: str, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, choices: tuple | None = None,
            factory: Any = None) -> Any:
    """A dataclass field with its meaning (``doc``) and its range: numbers in ``[low, high]`` (``low_open``,
    ``high_open``: the bound excluded), or one of ``choices``. ``factory``: a default factory (lists)."""
    metadata = {"doc": doc, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
                "choices": choices}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_doc(f: dataclasses.Field) -> str | None:
    """What :func:`setting` says of a field (None for a plain field)."""
    return f.metadata.get("doc")


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "a mapping", type(None): "null"}


def _members(tp: Any) -> tuple:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return (tp,)


def _as(kind: Any, value: Any, where: str) -> tuple[bool, Any]:
    """(whether ``value`` is of ``kind``, the value as that kind)."""
    origin = typing.get_origin(kind) or kind
    if kind is Any:
        return True, value
    if origin is typing.Literal:
        return value in typing.get_args(kind), value
    if dataclasses.is_dataclass(kind):
        return (True, parse(kind, value, where)) if isinstance(value, Mapping) else (False, None)
    if origin is bool:
        return isinstance(value, bool), value
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if origin is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if origin is str:
        return isinstance(value, str), value
    if kind is type(None) or kind is None:
        return value is None, None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)), list(value) if isinstance(value, (list, tuple)) else None
    if origin in (dict, Mapping):
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else None
    return True, value


def _expected_kinds(kinds: tuple) -> str:
    names = []
    for kind in kinds:
        if typing.get_origin(kind) is typing.Literal:
            names.append(f"one of {list(typing.get_args(kind))}")
        elif dataclasses.is_dataclass(kind):
            names.append("a mapping")
        else:
            name = _KIND_NAMES.get(typing.get_origin(kind) or kind)
            if name:
                names.append(name)
    return " or ".join(dict.fromkeys(names)) or "another value"


def _range_text(meta: Mapping, integer: bool) -> str:
    low, high = meta.get("low"), meta.get("high")
    what = "an integer" if integer else "a number"
    if high is None:
        return f"{what} {'>' if meta.get('low_open') else '>='} {low}"
    left, right = "(" if meta.get("low_open") else "[", ")" if meta.get("high_open") else "]"
    return f"{what} in {left}{low}, {high}{right}"


def convert(f: dataclasses.Field, tp: Any, value: Any, where: str) -> Any:
    """``value`` for field ``f`` of type ``tp``: typed, and checked against the field's range and choices."""
    kinds, meta = _members(tp), f.metadata
    for kind in kinds:
        ok, typed = _as(kind, value, where)
        if ok:
            break
    else:
        if meta.get("low") is not None or meta.get("high") is not None:  # a number of the wrong kind
            expected = _range_text(meta, any((typing.get_origin(k) or k) is int for k in kinds))
        else:
            expected = _expected_kinds(kinds)
        raise ValueError(f"{where}={value!r}; expected {expected}")
    if isinstance(typed, float) and not math.isfinite(typed):
        raise ValueError(f"{where}={value!r}; expected a finite number")
    choices = meta.get("choices")
    if choices is not None and not any(typed == c and type(typed) is type(c) for c in choices):
        raise ValueError(f"{where}={value!r}; expected one of {list(choices)}")
    low, high = meta.get("low"), meta.get("high")
    if (low is not None or high is not None) and isinstance(typed, (int, float)) and not isinstance(typed, bool):
        below = low is not None and (typed <= low if meta.get("low_open") else typed < low)
        above = high is not None and (typed >= high if meta.get("high_open") else typed > high)
        if below or above:
            raise ValueError(f"{where}={value!r}; expected {_range_text(meta, isinstance(typed, int))}")
    return typed


def check_keys(node: Mapping, where: str, allowed: Any, *, ignore: Any = ()) -> None:
    """A one-line error naming the first key of ``node`` that is neither ``allowed`` nor ignored."""
    allowed = set(allowed)
    unknown = sorted(set(node) - allowed - set(ignore))
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a key; expected one of {sorted(allowed)}")


def parse(cls: type, node: Any, where: str, *, ignore: tuple[str, ...] = ()) -> Any:
    """Dataclass ``cls`` from the mapping ``node`` (the config at ``where``): every key must be a field
    (or in ``ignore``), every field without a default must be set, every value is typed and checked."""
    if not isinstance(node, Mapping):
        raise ValueError(f"{where}={node!r}; expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    check_keys(node, where, names, ignore=ignore)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in node:
            kwargs[f.name] = convert(f, hints[f.name], node[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}.{f.name} is missing; expected {field_doc(f) or 'a value'}")
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    names = []
    for kind in _members(tp):
        kind = typing.get_origin(kind) or kind
        names.append("null" if kind is type(None) else getattr(kind, "__name__", str(kind)))
    return " | ".join(names)


def describe(cls: type, where: str) -> list[tuple[str, str, str, str, str]]:
    """``(key, type, default, range, meaning)`` of every field of ``cls`` declared with :func:`setting`,
    nested dataclasses walked (their keys below ``where``): the config's reference table."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        doc, tp = field_doc(f), hints[f.name]
        if doc is None:
            continue
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, f"{where}.{f.name}")
            continue
        meta = f.metadata
        if meta.get("choices") is not None:
            allowed = "one of " + ", ".join(repr(c) for c in meta["choices"])
        elif meta.get("low") is not None or meta.get("high") is not None:
            allowed = _range_text(meta, (typing.get_origin(tp) or tp) is int).removeprefix("an integer ") \
                .removeprefix("a number ")
        else:
            allowed = ""
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = "(see its fields)"
        else:
            default = "required"
        rows.append((f"{where}.{f.name}", _type_name(tp), default, allowed, doc))
    return rows
