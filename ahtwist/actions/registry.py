"""The set of known actions (all versions) and action middleware."""

from collections.abc import Iterable
from typing import Any

from ahtwist.actions.action import Action, render_version, validate_action
from ahtwist.actions.middleware import ActionMiddleware, by_priority, check_middleware
from ahtwist.errors import ConfigError

#: Params every action may see (docs/python-api.md, 'Input').
SAFE_PARAMS = ("file", "apiVersion", "callback", "action", "messageId")


def parse_version(value: Any) -> float | None:
    """``1``, ``"1"``, ``"1.0"`` -> 1.0; None when not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


class ActionPlan:
    """What the processor needs of one action on every request, worked out
    once (:meth:`ActionRegistry.plan`): the action, its middleware chain, the
    params scrubbing keeps and its version as ``apiVersion`` shows it."""

    __slots__ = ("action", "chain", "kept", "version")

    def __init__(self, action: Action, chain: list[ActionMiddleware]) -> None:
        self.action = action
        #: global middleware by priority, then the action's own (empty: none)
        self.chain = chain
        #: the param names that survive scrubbing: its inputs and the safe params
        self.kept = frozenset(action.inputs) | frozenset(SAFE_PARAMS)
        self.version = render_version(action.version)


class ActionRegistry:
    """Actions by name and version, plus the action middleware.

    ``post_variables`` (safe params plus every input name of every action) and
    the lower-cased simple-route table are kept up to date on every change, so
    the request path only does dictionary lookups.
    """

    def __init__(self, default_priority: int = 100) -> None:
        self.default_priority = default_priority
        self.versions: dict[str, dict[float, Action]] = {}
        self.latest: dict[str, Action] = {}
        self.middleware: dict[str, ActionMiddleware] = {}
        self.global_middleware: list[ActionMiddleware] = []
        self.post_variables: frozenset[str] = frozenset(SAFE_PARAMS)
        self.simple_routes: dict[str, str] = {}
        #: names added by :meth:`add_post_variables` (initializers)
        self.extra_post_variables: set[str] = set()
        self._chains: dict[int, list[ActionMiddleware]] = {}
        self._plans: dict[int, ActionPlan] = {}
        #: name -> the plan of its highest version, filled by :meth:`resolve`
        #: (read by the processor without the call); emptied with the plans
        self.latest_plans: dict[str, ActionPlan] = {}

    # --- actions -----------------------------------------------------------

    def add(self, action: Action | type[Action]) -> Action:
        """Register an action (class or instance); refuses duplicates."""
        if isinstance(action, type):
            action = action()
        validate_action(action)
        assert action.name is not None  # validate_action refuses a nameless action
        versions = self.versions.setdefault(action.name, {})
        key = float(action.version)
        if key in versions:
            raise ConfigError(
                f"Action {action.name} version {render_version(action.version)} is defined twice"
            )
        versions[key] = action
        self._reindex()
        return action

    def add_post_variables(self, names: Iterable[str]) -> None:
        """Whitelist params no action declares (ActionHero's
        ``api.params.postVariables``): the socket's ``paramAdd`` accepts
        them and replies echo them in ``receivedParams``."""
        self.extra_post_variables.update(names)
        self._reindex()

    def remove(self, name: str) -> None:
        self.versions.pop(name, None)
        self._reindex()

    def get(self, name: Any, version: Any = None) -> Action | None:
        """The action ``name`` at ``version`` (None: the highest version)."""
        if not isinstance(name, str):
            return None
        if version is None:
            return self.latest.get(name)
        versions = self.versions.get(name)
        if versions is None:
            return None
        number = parse_version(version)
        return versions.get(number) if number is not None else None

    def __contains__(self, name: object) -> bool:
        return name in self.latest

    def _reindex(self) -> None:
        self._chains = {}
        self._plans = {}
        self.latest_plans = {}
        self.latest = {
            name: versions[max(versions)] for name, versions in self.versions.items() if versions
        }
        names = set(SAFE_PARAMS) | self.extra_post_variables
        for versions in self.versions.values():
            for action in versions.values():
                names.update(action.inputs)
        self.post_variables = frozenset(names)
        simple: dict[str, str] = {}
        for name in self.versions:
            simple.setdefault(name.lower(), name)
        self.simple_routes = simple

    def check_middleware_references(self) -> None:
        """Every middleware name an action lists must be registered."""
        for versions in self.versions.values():
            for action in versions.values():
                for name in action.middleware:
                    if name not in self.middleware:
                        raise ConfigError(
                            f"Action {action.name} uses middleware {name!r}, which is not registered"
                        )

    # --- middleware --------------------------------------------------------

    def add_middleware(self, middleware: ActionMiddleware | type[ActionMiddleware]) -> None:
        if isinstance(middleware, type):
            middleware = middleware()
        name = check_middleware(middleware)
        if name in self.middleware:
            raise ConfigError(f"action middleware {name!r} is registered twice")
        self.middleware[name] = middleware
        self.global_middleware = by_priority(
            (m for m in self.middleware.values() if m.is_global), self.default_priority
        )
        self._chains = {}
        self._plans = {}
        self.latest_plans = {}

    def middleware_for(self, action: Action) -> list[ActionMiddleware]:
        """Global middleware by priority, then the action's own in list order
        (computed once per action; the list must not be modified)."""
        chain = self._chains.get(id(action))
        if chain is None:
            chain = list(self.global_middleware)
            for name in action.middleware:
                m = self.middleware[name]
                if m not in chain:
                    chain.append(m)
            self._chains[id(action)] = chain
        return chain

    def resolve(self, name: Any, version: Any = None) -> ActionPlan | None:
        """The plan of :meth:`get`'s action (None: no such action)."""
        latest = version is None and type(name) is str
        action = self.latest.get(name) if latest else self.get(name, version)
        if action is None:
            return None
        plan = self._plans.get(id(action))
        if plan is None:
            plan = self.plan(action)
        if latest:
            self.latest_plans[name] = plan
        return plan

    def plan(self, action: Action) -> ActionPlan:
        """The action's :class:`ActionPlan` (made once per action, again after
        any change to the actions or the middleware)."""
        plan = self._plans.get(id(action))
        if plan is None:
            plan = self._plans[id(action)] = ActionPlan(action, self.middleware_for(action))
        return plan

    # --- documentation -----------------------------------------------------

    def documented(self) -> list[tuple[str, list[Action]]]:
        """The actions to document (``to_document``), as ``(name, versions
        ascending)`` with names sorted; names with none left out.  The one
        selection showDocumentation and the OpenAPI document share."""
        out: list[tuple[str, list[Action]]] = []
        for name in sorted(self.versions):
            actions = [a for _, a in sorted(self.versions[name].items()) if a.to_document]
            if actions:
                out.append((name, actions))
        return out

    def documentation(self) -> dict[str, dict[str, Any]]:
        """showDocumentation's object: names sorted, versions ascending."""
        return {
            name: {str(render_version(a.version)): a.documentation() for a in actions}
            for name, actions in self.documented()
        }

    def names(self) -> Iterable[str]:
        return self.latest.keys()
