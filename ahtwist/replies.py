"""Reply envelopes every server sends (welcome, verb replies, responses, errors, files).

The shapes are part of the wire contract (``docs/``): the socket, the
websocket and any custom server build their replies here, so a key, its
order or a text is written once.  Functions return dicts (or bytes already
encoded where a transport sends the same bytes to everyone); the transport
only serialises and frames them.
"""

import os
from datetime import UTC, datetime
from typing import Any

from twisted.logger import Logger

import ahtwist.errors as errors
from ahtwist.encoding import dumps
from ahtwist.files import FileInfo
from ahtwist.web.mime import mime_for_extension

log = Logger(namespace="ahtwist.replies")

#: the greeting of a connection whose server ``sends_welcome``
WELCOME: dict[str, Any] = {"welcome": errors.WELCOME, "context": "api"}
WELCOME_JSON = dumps(WELCOME)
#: the last message of a connection closed by ``quit`` or the server
GOODBYE: dict[str, Any] = {"status": errors.BYE, "context": "api"}
GOODBYE_JSON = dumps(GOODBYE)
_COUNTERS = ("context", "messageCount", "messageId")


def welcome() -> dict[str, Any]:
    """A fresh welcome message."""
    return dict(WELCOME)


def goodbye() -> dict[str, Any]:
    """A fresh goodbye message."""
    return dict(GOODBYE)


def verb_reply(error: Any, data: Any, count: int, message_id: Any) -> dict[str, Any]:
    """A verb's reply: OK (``error`` None) or the error in ``status`` and
    ``error``; ``data`` when not None; then the counters."""
    if error is None:
        reply: dict[str, Any] = {"status": "OK", "context": "response"}
    else:
        reply = {"status": error, "error": error, "context": "response"}
    if data is not None:
        reply["data"] = data
    reply["messageCount"] = count
    reply["messageId"] = message_id
    return reply


def stamp(response: Any, count: int, message_id: Any) -> Any:
    """An action response with its counters set in place (a key the action
    already set keeps its position; the socket's shape)."""
    if isinstance(response, dict):
        response["context"] = "response"
        response["messageCount"] = count
        response["messageId"] = message_id
    return response


def stamp_last(reply: dict[str, Any], count: int, message_id: Any) -> dict[str, Any]:
    """``{...reply, context, messageCount, messageId}`` with the counters
    always last (the websocket's shape)."""
    if "context" in reply or "messageCount" in reply or "messageId" in reply:
        for key in _COUNTERS:
            reply.pop(key, None)
    reply["context"] = "response"
    reply["messageCount"] = count
    reply["messageId"] = message_id
    return reply


def error_reply(error: Any, count: int, message_id: Any) -> dict[str, Any]:
    """A response that could not be rendered (``internal server error``) or
    any other error answered in place of an action's response."""
    return {"error": error, "context": "response", "messageCount": count, "messageId": message_id}


def refusal(error: Any) -> dict[str, Any]:
    """What a connection refused by connection middleware receives before
    it is closed (socket: one line; websocket: the 403 body)."""
    return {"error": error, "context": "api"}


def iso_milliseconds(mtime: float) -> str:
    """``2026-11-25T17:16:46.000Z`` (JavaScript's ``Date.toISOString``)."""
    moment = datetime.fromtimestamp(mtime, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def file_reply(info: FileInfo | None, max_size: int) -> dict[str, Any]:
    """A file as one message (the websocket ``file`` event), without counters.

    The file is read from disk each time (no cache), decoded as UTF-8 with
    replacement characters; a missing, refused or oversize file gives the
    not-found form, which never names the file.
    """
    if info is not None and info.size <= max_size:
        try:
            with open(info.path, "rb") as f:
                content = f.read(max_size + 1)
        except OSError as e:
            log.info("{message}", message=errors.FILE_READ_ERROR.format(error=e))
        else:
            if len(content) <= max_size:
                extension = os.path.splitext(info.path)[1][1:]
                return {
                    "error": None,
                    "content": content.decode("utf-8", "replace"),
                    "mime": mime_for_extension(extension) or "application/octet-stream",
                    "length": len(content),
                    "lastModified": iso_milliseconds(info.mtime),
                }
    return not_found_reply()


def not_found_reply() -> dict[str, Any]:
    """The not-found form of :func:`file_reply`."""
    return {
        "error": errors.FILE_NOT_FOUND,
        "content": None,
        "mime": "text/html",
        "length": len(errors.FILE_NOT_FOUND.encode()),
    }
