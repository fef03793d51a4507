"""Option defaults read from the stage configs, so each number lives only in its dataclass.

Typer needs a default when a verb is declared, long before any config is built; reading it from the
dataclass field (its class, since some configs have required fields) keeps `--help` and the code
that runs from drifting apart. typer shows the value, so help strings never restate it.
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Any

import typer


def default(config: Any, path: str) -> Any:
    """The default of the field at dotted `path` ("model.train.max_steps") of a config dataclass or instance.

    A field built by `default_factory` is built, so a nested config's own defaults are followed.
    """
    value = config
    for name in path.split("."):
        cls = value if isinstance(value, type) else type(value)
        if not is_dataclass(cls):
            raise TypeError(f"{path!r}: {cls.__name__} is not a config dataclass")
        found = {f.name: f for f in fields(cls)}.get(name)
        if found is None:
            raise TypeError(f"{path!r}: {cls.__name__} has no field {name!r}")
        if not isinstance(value, type):
            value = getattr(value, name)
        elif found.default is not MISSING:
            value = found.default
        elif found.default_factory is not MISSING:
            value = found.default_factory()
        else:
            raise TypeError(f"{path!r}: {cls.__name__}.{name} has no default")
    return value


def option(config: Any, path: str, *param_decls: str, **kwargs: Any) -> Any:
    """`typer.Option` whose default is `default(config, path)`."""
    return typer.Option(default(config, path), *param_decls, **kwargs)
