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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

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


def user_modules(folders: Iterable[str], missing: list[str]) -> Iterator[tuple[Path, Any]]:
    """``(file, module)`` for every ``*.py`` of ``folders`` (sorted, ``_``/``.``
    names skipped), imported the same way; folders that do not exist
    are appended to ``missing``.  Actions, initializers and servers are all
    found this way."""
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            missing.append(folder)
            continue
        for file in sorted(path.glob("*.py")):
            if not file.name.startswith(("_", ".")):
                yield file, _import(file)


def defined_in(module: Any, base: type | tuple[type, ...]) -> Iterator[Any]:
    """Subclasses of ``base`` that ``module`` defines (not imports), ``base`` itself excluded."""
    bases = base if isinstance(base, tuple) else (base,)
    for obj in list(vars(module).values()):
        if isinstance(obj, type) and obj not in bases and issubclass(obj, bases) and obj.__module__ == module.__name__:
            yield obj


def load_plugins(folders: Iterable[str]) -> Plugins:
    found = Plugins()
    for _file, module in user_modules(folders, found.missing_folders):
        for obj in defined_in(module, _KINDS):
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

