"""The JSON action API over HTTP: params from the request, the action, the reply.

For a request in api mode the dispatcher (:class:`~ahtwist.web.api.WebServer`)
hands over the connection; this gathers params (query < files < body fields <
route variables), resolves the route, hands the action to the processor and
renders ActionHero's JSON reply (status codes, metadata, JSONP, an action's
own MIME type) through the :class:`~ahtwist.web.response.ResponseWriter`.
"""

from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

import ahtwist.errors as errors
from ahtwist.actions import processor as status_names
from ahtwist.actions.data import ActionData
from ahtwist.connection import Connection
from ahtwist.encoding import dumps_padded
from ahtwist.files import percent_decode
from ahtwist.web.body import FormError
from ahtwist.web.mime import mime_for_extension
from ahtwist.web.query import parse_query
from ahtwist.web.response import JSON_TYPE, JSONP_TYPE, ResponseWriter, raw_message_id
from ahtwist.web.routes import VERBS
from ahtwist.web.site import WebRequest

log = Logger(namespace="ahtwist.web")

_JSONP_ESCAPES = str.maketrans(
    {"&": "&amp;", '"': "&quot;", "'": "&#39;", "<": "&lt;", ">": "&gt;", "(": None, ")": None}
)
_STATUS_CODES: dict[str | None, int] = {
    status_names.UNKNOWN_ACTION: 404,
    status_names.MISSING_PARAMS: 422,
    status_names.SERVER_ERROR: 500,
}


class ActionAPI:
    """Runs actions for api-mode requests (one per node)."""

    def __init__(self, node: Any, writer: ResponseWriter) -> None:
        self.node = node
        self.writer = writer
        config = node.config
        self.web = config.servers.web
        self.registry = node.registry
        self.routes = config.routes
        self.padding = self.web.padding
        self.query_options = self.web.queryParseOptions
        self.server_information = writer.server_information
        self.requester_information = writer.requester_information

    def serve(self, request: WebRequest, connection: Connection, parts: list[str]) -> None:
        raw = connection.raw  # a WebRaw
        query_options = self.query_options
        try:
            query = (
                parse_query(
                    request.query,
                    query_options.depth,
                    query_options.parameterLimit,
                    query_options.arrayLimit,
                )
                if request.query
                else {}
            )
        except ValueError as e:
            log.info("{message}", message=errors.URI_DECODE_ERROR.format(error=e))
            self.writer.respond_error(request, connection, 400, errors.FORM_ERROR, {})
            return
        try:
            fields, files = request.body.finish()
        except FormError as e:
            log.info("bad request body from {ip}: {e}", ip=connection.remote_ip, e=e)
            self.writer.respond_error(request, connection, 400, errors.FORM_ERROR, query)
            return
        raw.query, raw.body, raw.files = query, fields, files
        if request.body.exposes_raw:
            raw.raw_body = request.body.raw_body
        params = dict(query)
        if files:
            params.update(files)
        if fields:
            params.update(fields)
        if not self.web.queryRouting:
            params.pop("action", None)
        name = params.get("action")
        if name is None or name not in self.registry:
            self._route(request.method, parts, params, connection)
        if request.method == b"TRACE":
            self._trace(request, connection, params)
            return
        result = self.node.processor.start(connection, params, raw_message_id(connection))
        if isinstance(result, ActionData):  # finished without waiting: no Deferred
            try:
                self._render_action(result, request, connection)
            except Exception:
                self._render_failure(Failure(), request, connection)
            return
        result.addCallbacks(
            self._render_action,
            self._render_failure,
            callbackArgs=(request, connection),
            errbackArgs=(request, connection),
        )

    def _route(
        self, method: bytes, parts: list[str], params: dict[str, Any], connection: Connection
    ) -> None:
        verb = method.decode("latin-1").lower()
        if verb == "head":
            verbs: tuple[str, ...] = ("head", "get")
        elif verb == "trace":
            verbs = ("get",)
        elif verb in VERBS:
            verbs = (verb,)
        else:
            return
        routes = self.routes
        for v in verbs:
            found = routes.match(v, parts)
            if found is not None:
                route, variables = found
                params.update(variables)
                params["action"] = route.action
                if route.apiVersion is not None and "apiVersion" not in params:
                    params["apiVersion"] = route.apiVersion
                connection.matched_route = route
                return
        if not parts:
            return
        if self.web.simpleRouting and len(parts) == 1:
            name = self.registry.simple_routes.get(parts[0].lower())
            if name is not None:
                params["action"] = name
                return
        if parts[0].lower() == "file" and len(parts) > 1:
            params["action"] = "file"
            params["fileName"] = _file_route_name(parts[1:])

    def _trace(self, request: WebRequest, connection: Connection, params: dict[str, Any]) -> None:
        received = {k: v for k, v in params.items() if k in self.registry.post_variables}
        body = dumps_padded(self.writer.requester(connection, received), self.padding)
        self.writer.send(request, connection, 200, JSON_TYPE, body)

    def _render_action(self, data: ActionData, request: WebRequest, connection: Connection) -> None:
        raw = connection.raw  # a WebRaw
        if request._disconnected:
            self.writer.release(request, connection)
            return
        if raw.responding:
            return  # the action answered itself (send_file / a stream)
        if not data.to_render:
            # ActionHero leaks the request here; we end it.
            self.writer.send(request, connection, raw.response_code, None, b"")
            return
        response = data.response
        error = data.error
        if error is None and isinstance(response, dict):
            error = response.get("error")
        status = raw.response_code
        if status == 200 and error is not None and self.web.returnErrorCodes:
            status = _STATUS_CODES.get(data.action_status, 400)
        template = data.action_template
        content_type = JSON_TYPE
        if template is not None and template.match_extension_mime_type and error is None:
            mime = mime_for_extension(connection.extension or "")
            if mime is not None:
                content_type = mime.encode()
        if content_type == JSON_TYPE:
            if isinstance(response, dict):
                if self.server_information:
                    response["serverInformation"] = self.writer.server_info(raw.arrived_ms)
                if self.requester_information:
                    response["requesterInformation"] = self.writer.requester(
                        connection,
                        data.received_params(
                            self.registry.post_variables, self.node.processor.scrub
                        ),
                    )
            body = dumps_padded(response, self.padding)
            callback = data.params.get("callback") or data.raw_params.get("callback")
            if callback and isinstance(callback, str):
                content_type = JSONP_TYPE
                body = callback.translate(_JSONP_ESCAPES).encode() + b"(" + body + b");"
        elif isinstance(response, str):
            body = response.encode("utf-8")
        elif isinstance(response, (bytes, bytearray)):
            body = bytes(response)
        else:
            body = dumps_padded(response, self.padding)
        self.writer.send(request, connection, status, content_type, body)

    def _render_failure(self, failure: Any, request: WebRequest, connection: Connection) -> None:
        log.failure("rendering a web response failed", failure)
        if request._disconnected or request.finished:
            self.writer.release(request, connection)
            return
        if request.startedWriting:
            request.loseConnection()
            self.writer.release(request, connection)
            return
        self.writer.respond_error(request, connection, 500, errors.INTERNAL_ERROR, {})


def _file_route_name(parts: list[str]) -> str:
    """``fileName`` for ``/api/file/<path>``: each part %-decoded once (``+``
    stays), unless decoding would create ``.``/``..`` or a separator -- then
    the raw parts are passed on, and find nothing."""
    decoded = []
    for part in parts:
        text = percent_decode(part)
        if text is None or (text in (".", "..") and part != text) or any(c in text for c in "/\\\0"):
            return "/".join(parts)
        decoded.append(text)
    return "/".join(decoded)
