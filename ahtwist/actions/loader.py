"""Load user actions and middleware from the folders in ``general.paths.actions``.

Every ``*.py`` file (sorted by name, not recursing into ``_``/``.`` names) is
imported; each :class:`Action`, :class:`ActionMiddleware`,
:class:`ConnectionMiddleware` and :class:`ChatMiddleware` subclass *defined in
that file* is collected.  A file that fails to import stops start-up with a
message naming it.
"""

import importlib.util
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

import attrs

from ahtwist.actions.action import Action
from ahtwist.actions.middleware import ActionMiddleware, ChatMiddleware, ConnectionMiddleware
from ahtwist.errors import ConfigError

_KINDS = (Action, ActionMiddleware, ConnectionMiddleware, ChatMiddleware)


@attrs.define
class Plugins:
    """What the folders defined, in file order."""

    actions: list[type[Action] | Action] = attrs.Factory(list)
    action_middleware: list[type[ActionMiddleware] | ActionMiddleware] = attrs.Factory(list)
    connection_middleware: list[type[ConnectionMiddleware] | ConnectionMiddleware] = attrs.Factory(list)
    chat_middleware: list[type[ChatMiddleware] | ChatMiddleware] = attrs.Factory(list)
    missing_folders: list[str] = attrs.Factory(list)

    def add(self, obj: type | object) -> None:
        """File an Action or middleware (class or instance) under its kind."""
        if isinstance(obj, Action) or (isinstance(obj, type) and issubclass(obj, Action)):
            self.actions.append(obj)
        elif isinstance(obj, ActionMiddleware) or (
            isinstance(obj, type) and issubclass(obj, ActionMiddleware)
        ):
            self.action_middleware.append(obj)
        elif isinstance(obj, ConnectionMiddleware) or (
            isinstance(obj, type) and issubclass(obj, ConnectionMiddleware)
        ):
            self.connection_middleware.append(obj)
        elif isinstance(obj, ChatMiddleware) or (
            isinstance(obj, type) and issubclass(obj, ChatMiddleware)
        ):
            self.chat_middleware.append(obj)
        else:
            raise TypeError(f"{obj!r} is not an action or middleware")


def load_plugins(folders: Iterable[str]) -> Plugins:
    found = Plugins()
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            found.missing_folders.append(folder)
            continue
        for file in sorted(path.glob("*.py")):
            if file.name.startswith(("_", ".")):
                continue
            for obj in _import(file).__dict__.values():
                if not isinstance(obj, type) or obj in _KINDS or not issubclass(obj, _KINDS):
                    continue
                if obj.__module__ != _module_name(file):
                    continue  # imported from elsewhere, not defined here
                found.add(obj)
    return found


def _module_name(file: Path) -> str:
    digest = abs(hash(str(file.resolve().parent)))
    return f"ahtwist_user.m{digest:x}.{file.stem}"


def _import(file: Path):
    name = _module_name(file)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{file}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        lineno = e.lineno if isinstance(e, SyntaxError) else None
        if lineno is None:
            tb = traceback.extract_tb(e.__traceback__)
            where = next((f for f in reversed(tb) if f.filename == str(file)), None)
            lineno = where.lineno if where else None
        line = f" (line {lineno})" if lineno else ""
        raise ConfigError(
            f"{file}{line}: failed to load action file: {type(e).__name__}: {e}"
        ) from None
    return module


#: import one user file by path (initializers and mounts load files the same way)
import_file = _import
