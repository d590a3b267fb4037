"""A value read from YAML (or the command line) checked against a dataclass field's type hint, and coerced."""

from __future__ import annotations

import types
import typing
from typing import Any


def type_ok(value: Any, hint: Any) -> tuple[bool, Any]:
    """Check `value` against a field's type hint; return (ok, coerced value)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, v = type_ok(value, arg)
            if ok:
                return True, v
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if hint is str:
        return isinstance(value, str), value
    if origin is list:
        (arg,) = typing.get_args(hint)
        if not isinstance(value, list):
            return False, value
        out = []
        for item in value:
            ok, v = type_ok(item, arg)
            if not ok:
                return False, value
            out.append(v)
        return True, out
    if origin is dict:
        kt, vt = typing.get_args(hint)
        if not isinstance(value, dict):
            return False, value
        out_d = {}
        for k, v in value.items():
            ok_k, k2 = type_ok(k, kt)
            ok_v, v2 = type_ok(v, vt)
            if not (ok_k and ok_v):
                return False, value
            out_d[k2] = v2
        return True, out_d
    return True, value


def type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
