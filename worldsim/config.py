"""Config dataclasses from plain dicts (Hydra nodes, checkpoint records), strictly."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a (nested) config dataclass from a dict, rejecting unknown keys with a clear error."""
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} option(s) {sorted(unknown)}; known: {sorted(known)}. "
                         "A config or checkpoint written by another worldsim version may name options this one "
                         "no longer has: remove them from the config, or retrain with this version.")
    kwargs = {}
    for name, value in data.items():
        f = known[name]
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        kwargs[name] = dataclass_from_dict(type(default), value) if is_dataclass(default) and isinstance(value, dict) else value
    return cls(**kwargs)
