"""Typed configuration: frozen dataclasses filled from YAML, where an unknown key is an error.

Each stage declares its settings as a frozen dataclass with documented fields and defaults;
:func:`from_mapping` builds it (recursively, for nested dataclasses), refusing keys that do not
exist and values of the wrong type, so a typo in a config file is never silently ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from qlstm.errors import QlstmError
from qlstm.io import read_text

T = TypeVar("T")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently, so a repeated key would drop a setting without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise QlstmError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in YAML file ``path``; a missing, non-text or invalid file, a key given twice or
    a top level that is not a mapping raises one QlstmError line naming the file. A byte-order mark
    (UTF-8, UTF-16, UTF-32: :func:`qlstm.io.read_text`) is dropped."""
    path = Path(path)
    if not path.is_file():
        raise QlstmError(f"{path}: config file not found")
    text = read_text(path)  # its error line names the file, the byte offset and the encoding
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except QlstmError as exc:  # a duplicate key
        raise QlstmError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise QlstmError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise QlstmError(f"{path}: a config file must hold a mapping of keys to values")
    return data


def from_mapping(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise QlstmError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise QlstmError(f"{where}: {exc}") from None
    except QlstmError as exc:  # a value check of the dataclass: name the file and section
        if str(exc).startswith(where.split(".")[0]):
            raise
        raise QlstmError(f"{where}: {exc}", exc.exit_code) from None


def to_mapping(obj: Any) -> Any:
    """A dataclass as plain YAML-able data (tuples become lists), sharing no mutable part with it."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def merge(base: Any, overrides: dict[str, Any], where: str = "config") -> Any:
    """A copy of dataclass ``base`` with ``overrides`` (nested mappings merge into nested dataclasses)."""
    data = to_mapping(base)
    _deep_update(data, overrides)
    return from_mapping(type(base), data, where)


def _deep_update(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except QlstmError as exc:
                errors.append(str(exc))
        raise QlstmError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise QlstmError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise QlstmError(f"{where}: expected a mapping, got {value!r}")
        return from_mapping(hint, value, where)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise QlstmError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        seq = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, dict):
            raise QlstmError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise QlstmError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise QlstmError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise QlstmError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise QlstmError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Path:
        return Path(value)
    return value
