"""The OpenAPI 3.1 document of a node's actions and routes.

Built once at start-up from what the server really does: the documented
actions (the selection ``showDocumentation`` uses), their inputs, the
configured routes and the reply envelope the web server sends
(``servers.web.metadataOptions``, ``returnErrorCodes``).  Pure data in, a
JSON-ready ``dict`` out: serving it is the web server's business.

Mapping (docs/openapi.md says it for users):

* each documented action version is one ``GET`` operation at
  ``/<urlPathForActions>/<name>`` (simple routing; ``/<prefix>?action=<name>``
  with query routing only).  OpenAPI needs one path per operation, so a
  version that is not the latest is keyed with its ``apiVersion`` in the
  path: ``/api/greet?apiVersion=1`` -- the URL the server answers for it;
* each configured action route is one operation per verb, ``:name`` as a
  path parameter (its regex as ``pattern``); ``GET``/``HEAD``/``DELETE`` take
  the other inputs from the query, ``POST``/``PUT``/``PATCH`` from a JSON or
  form body;
* inputs are parameters: ``required`` (false when a default fills it in),
  literal defaults, nested ``schema`` inputs as objects (``a[b]=c`` in a
  query: ``deepObject``), JSON types from ``Input.json_schema`` or the
  formatters/validators (see :class:`ahtwist.actions.action.Input`);
* ``output_example`` is the example of the 200 reply; errors share one
  envelope (``error`` plus the metadata blocks that are switched on);
* the websocket and socket transports are described in ``info.description``
  and ``x-ahtwist-transports``.
"""

import re
from collections.abc import Mapping
from typing import Any

from ahtwist.actions.action import Action, Input, render_version
from ahtwist.actions.registry import ActionRegistry
from ahtwist.config import Config
from ahtwist.web.routes import Route, split_path

OPENAPI_VERSION = "3.1.0"

#: types the builtin formatters declare
_BUILTIN_TYPES: dict[Any, dict[str, Any]] = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
}

#: error statuses with ``returnErrorCodes`` (the web server's table)
_ERRORS = {
    "400": "The action, a validator or a middleware refused the request (`error` says why).",
    "404": "Unknown action or invalid apiVersion.",
    "422": "A required input is missing.",
    "500": "An unexpected error in the action.",
}

_BODY_VERBS = ("post", "put", "patch")


def value_schema(spec: Input) -> dict[str, Any]:
    """The JSON Schema of one input's value (see :class:`Input`)."""
    if spec.json_schema is not None:
        schema = dict(spec.json_schema)
    else:
        schema = {}
        for fn in (*spec.formatter, *spec.validator):
            declared = getattr(fn, "json_schema", None)
            if declared is None:
                declared = _BUILTIN_TYPES.get(fn)
            if isinstance(declared, Mapping):
                schema.update(declared)
    if spec.schema is not None:
        schema.setdefault("type", "object")
        schema.update(object_schema(spec.schema))
    if spec.has_default and not callable(spec.default):
        schema["default"] = spec.default
    return schema


def is_required(spec: Input) -> bool:
    """Required from the client's side: a default fills a missing value in."""
    return spec.required and not spec.has_default


def object_schema(inputs: Mapping[str, Input]) -> dict[str, Any]:
    """``{"type": "object", "properties": ..., "required": [...]}`` for inputs."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {key: value_schema(spec) for key, spec in inputs.items()},
    }
    required = [key for key, spec in inputs.items() if is_required(spec)]
    if required:
        schema["required"] = required
    return schema


def query_parameter(key: str, spec: Input) -> dict[str, Any]:
    """One input as a query parameter object."""
    parameter: dict[str, Any] = {"name": key, "in": "query", "required": is_required(spec)}
    if spec.schema is not None:
        parameter["style"] = "deepObject"  # a[b]=c, as the query parser nests
        parameter["explode"] = True
    parameter["schema"] = value_schema(spec)
    return parameter


def example_schema(value: Any) -> dict[str, Any]:
    """A schema describing the shape of an example value."""
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, Mapping):
        return {
            "type": "object",
            "properties": {str(k): example_schema(v) for k, v in value.items()},
        }
    if isinstance(value, (list, tuple)):
        return {"type": "array", "items": example_schema(value[0]) if value else {}}
    return {}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


class OpenAPIBuilder:
    """Builds the document for one registry and configuration."""

    def __init__(self, registry: ActionRegistry, config: Config) -> None:
        self.registry = registry
        self.config = config
        web = config.servers.web
        self.prefix = "/" + "/".join(split_path(web.urlPathForActions))
        self.envelope = Envelope(config)
        self.operation_ids: set[str] = set()

    def build(self) -> dict[str, Any]:
        general = self.config.general
        paths: dict[str, dict[str, Any]] = {}
        self._action_paths(paths)
        self._route_paths(paths)
        document: dict[str, Any] = {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": general.serverName,
                "version": str(general.apiVersion),
                "description": description(self.config),
            },
            "tags": [
                {"name": "actions", "description": "Every documented action and version."},
                {"name": "routes", "description": "The configured REST routes."},
            ],
            "paths": paths,
            "components": self.envelope.components(),
            "x-ahtwist-transports": transports(self.config),
        }
        return document

    # --- operations ------------------------------------------------------------

    def _action_paths(self, paths: dict[str, dict[str, Any]]) -> None:
        web = self.config.servers.web
        if web.simpleRouting:
            base = self.prefix.rstrip("/") + "/{name}"
            query: list[str] = []
        elif web.queryRouting:
            base = self.prefix
            query = ["action={name}"]
        else:
            return  # actions are reachable through routes only
        for name, actions in self.registry.documented():
            latest = actions[-1]
            for action in actions:
                version = render_version(action.version)
                terms = [q.format(name=name) for q in query]
                if action is not latest:
                    terms.append(f"apiVersion={version}")
                path = base.format(name=name) + ("?" + "&".join(terms) if terms else "")
                operation_id = name if action is latest else f"{name}_v{_slug(str(version))}"
                operation = self._operation(
                    action,
                    operation_id,
                    f"{name} (version {version})",
                    "actions",
                    [query_parameter(k, s) for k, s in action.inputs.items()],
                )
                paths[path] = {"get": operation}

    def _route_paths(self, paths: dict[str, dict[str, Any]]) -> None:
        routes = self.config.routes
        if routes is None:
            return
        for verb, table in routes.by_verb.items():
            for route in table:
                if route.action is None:
                    continue  # a dir route serves files, not an action
                action = self.registry.get(route.action, route.apiVersion)
                if action is None or not action.to_document:
                    continue
                path, path_params, slug = self._route_path(route)
                item = paths.setdefault(path, {})
                if verb in item:
                    continue  # an earlier route of the same path wins
                inputs = {k: s for k, s in action.inputs.items() if k not in path_params}
                parameters = [
                    {"name": p, "in": "path", "required": True, "schema": schema}
                    for p, schema in path_params.items()
                ]
                body = None
                if verb in _BODY_VERBS:
                    body = self._request_body(inputs)
                else:
                    parameters += [query_parameter(k, s) for k, s in inputs.items()]
                operation = self._operation(
                    action,
                    f"{verb}_{slug}",
                    f"{verb.upper()} {route.path} -> {route.action}",
                    "routes",
                    parameters,
                )
                if body is not None:
                    operation["requestBody"] = body
                extension: dict[str, Any] = {"path": route.path, "action": route.action}
                if route.apiVersion is not None:
                    extension["apiVersion"] = route.apiVersion
                if route.matchTrailingPathParts:
                    extension["matchTrailingPathParts"] = True
                operation["x-ahtwist-route"] = extension
                item[verb] = operation

    def _route_path(self, route: Route) -> tuple[str, dict[str, dict[str, Any]], str]:
        """The OpenAPI path of a route, its path parameters' schemas and a
        name for its operation id."""
        parts = [self.prefix.rstrip("/")]
        params: dict[str, dict[str, Any]] = {}
        words = []
        for text, segment in zip(split_path(route.path), route.segments, strict=True):
            if segment.literal is not None:
                parts.append(text)
                words.append(text)
                continue
            parts.append("{" + segment.name + "}")
            words.append(segment.name)
            schema: dict[str, Any] = {"type": "string"}
            if segment.regex is not None:
                schema["pattern"] = segment.regex.pattern
            params[segment.name] = schema
        return "/".join(parts) or "/", params, _slug("_".join(words)) or "root"

    def _request_body(self, inputs: Mapping[str, Input]) -> dict[str, Any] | None:
        if not inputs:
            return None
        schema = object_schema(inputs)
        form: dict[str, Any] = {"schema": schema}
        nested = {
            k: {"style": "deepObject", "explode": True} for k, s in inputs.items() if s.schema
        }
        if nested:
            form["encoding"] = nested
        return {
            "required": "required" in schema,
            "content": {
                "application/json": {"schema": schema},
                "application/x-www-form-urlencoded": form,
            },
        }

    def _operation(
        self,
        action: Action,
        operation_id: str,
        summary: str,
        tag: str,
        parameters: list[dict[str, Any]],
    ) -> dict[str, Any]:
        base, n = operation_id, 1
        while operation_id in self.operation_ids:
            n += 1
            operation_id = f"{base}_{n}"
        self.operation_ids.add(operation_id)
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "summary": summary,
            "description": action.description or "",
            "tags": [tag],
        }
        if parameters:
            operation["parameters"] = parameters
        operation["responses"] = self.envelope.responses(action)
        operation["x-ahtwist-action"] = {
            "name": action.name,
            "version": render_version(action.version),
        }
        return operation


class Envelope:
    """The reply envelope as the web server sends it: the metadata blocks
    ``servers.web.metadataOptions`` switches on, error statuses with
    ``returnErrorCodes``."""

    def __init__(self, config: Config) -> None:
        web = config.servers.web
        self.metadata = web.metadataOptions
        self.error_codes = web.returnErrorCodes

    def metadata_properties(self) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        if self.metadata.serverInformation:
            properties["serverInformation"] = {"$ref": "#/components/schemas/ServerInformation"}
        if self.metadata.requesterInformation:
            properties["requesterInformation"] = {
                "$ref": "#/components/schemas/RequesterInformation"
            }
        return properties

    def responses(self, action: Action) -> dict[str, Any]:
        example = dict(action.output_example)
        schema = example_schema(example)
        metadata = self.metadata_properties()
        schema["properties"].update(metadata)
        if not self.error_codes:
            schema["properties"]["error"] = {"$ref": "#/components/schemas/ErrorText"}
        if metadata:
            schema["required"] = list(metadata)
        ok = {
            "description": "The action's reply"
            + ("" if self.error_codes else " (errors too: `error` is set, the status stays 200)"),
            "content": {"application/json": {"schema": schema, "example": example}},
        }
        responses: dict[str, Any] = {"200": ok}
        if self.error_codes:
            for status in _ERRORS:
                responses[status] = {"$ref": f"#/components/responses/Error{status}"}
        return responses

    def components(self) -> dict[str, Any]:
        schemas: dict[str, Any] = {
            "ErrorText": {
                "description": "The error: a text, or the object an action raised.",
                "type": ["string", "object"],
            },
            "ErrorReply": {
                "type": "object",
                "properties": {
                    "error": {"$ref": "#/components/schemas/ErrorText"},
                    **self.metadata_properties(),
                },
                "required": ["error", *self.metadata_properties()],
            },
        }
        if self.metadata.serverInformation:
            schemas["ServerInformation"] = {
                "type": "object",
                "properties": {
                    "serverName": {"type": "string"},
                    "apiVersion": {"type": "string"},
                    "requestDuration": {"type": "integer", "description": "milliseconds"},
                    "currentTime": {"type": "integer", "description": "milliseconds since 1970"},
                },
                "required": ["serverName", "apiVersion", "requestDuration", "currentTime"],
            }
        if self.metadata.requesterInformation:
            schemas["RequesterInformation"] = {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "fingerprint": {"type": "string"},
                    "messageId": {"type": "string"},
                    "remoteIP": {"type": "string"},
                    "receivedParams": {"type": "object"},
                },
                "required": ["id", "fingerprint", "messageId", "remoteIP", "receivedParams"],
            }
        components: dict[str, Any] = {"schemas": schemas}
        if self.error_codes:
            error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorReply"}}}
            components["responses"] = {
                f"Error{status}": {"description": text, "content": error}
                for status, text in _ERRORS.items()
            }
        return components


def transports(config: Config) -> dict[str, Any]:
    """What clients of the websocket and socket servers need to know."""
    servers = config.servers
    out: dict[str, Any] = {}
    if servers.web.enabled and servers.websocket.enabled:
        out["websocket"] = {
            "path": servers.websocket.path,
            "frames": "one JSON object per text frame",
            "action": {"event": "action", "params": {"action": "<name>"}, "messageId": 1},
            "events": [
                "action",
                "roomAdd",
                "roomLeave",
                "roomView",
                "say",
                "detailsView",
                "documentation",
                "file",
            ],
        }
    listeners = [_listener(e) for e in config.socket_endpoints]
    if listeners:
        out["socket"] = {
            "listeners": listeners,
            "lines": "one request per line: a verb (paramAdd, roomAdd, say, ...), "
            'an action name, or a JSON object {"action", "params", "messageId"}',
            "delimiter": servers.socket.delimiter,
        }
    return out


def description(config: Config) -> str:
    """``info.description``: the API and the other transports in a few lines."""
    text = [config.general.description, ""]
    text.append(
        "Every action also accepts `POST`, `PUT`, `PATCH` and `DELETE` at the same path, "
        "with its inputs in the query, a form or a JSON body."
    )
    found = transports(config)
    if "websocket" in found:
        text += [
            "",
            f"**WebSocket** at `{found['websocket']['path']}`: the same actions and the "
            "chat rooms; one JSON object per text frame, e.g. "
            '`{"event":"action","params":{"action":"status"},"messageId":1}`.',
        ]
    if "socket" in found:
        ports = ", ".join(
            f"{item['port']}{' (TLS)' if item['tls'] else ''}"
            for item in found["socket"]["listeners"]
            if "port" in item
        )
        text += [
            "",
            f"**TCP socket**{' on port ' + ports if ports else ''}: one request per line "
            "(a verb such as `roomAdd defaultRoom`, an action name, or a JSON object).",
        ]
    return "\n".join(text)


def _listener(endpoint: str) -> dict[str, Any]:
    """What a client needs to know of a listener (no file names, no interface)."""
    kind, _, rest = endpoint.partition(":")
    port = rest.partition(":")[0]
    item: dict[str, Any] = {"kind": kind, "tls": kind == "ssl"}
    if port.isdigit():
        item["port"] = int(port)
    return item


def build_openapi(registry: ActionRegistry, config: Config) -> dict[str, Any]:
    """The OpenAPI document for ``registry`` served under ``config``."""
    return OpenAPIBuilder(registry, config).build()
