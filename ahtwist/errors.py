"""Exception types and every client-facing text, in one table.

The texts are part of the wire contract (docs/python-api.md, 'Error texts'): clients match
on them, so they live here and nowhere else.
"""

from typing import Any

# --- texts sent to clients -------------------------------------------------
WELCOME = "Hello! Welcome to the actionhero api"
BYE = "Bye!"
MISSING_PARAM = "{param} is a required parameter for this action"
UNKNOWN_ACTION = "unknown action or invalid apiVersion"
BLOCKED_CONNECTION_TYPE = "this action does not support the {type} connection type"
SHUTTING_DOWN = "the server is shutting down"
TOO_MANY_PENDING = "you have too many pending requests"
DATA_TOO_BIG = "data length is too big ({received} received/{max} max)"
FILE_NOT_FOUND = "That file is not found"
VERB_NOT_FOUND = "verb not found or not allowed ({verb})"
ROOM_AND_MESSAGE_REQUIRED = "both room and message are required"
NOT_IN_ROOM = "connection not in this room ({room})"
ALREADY_IN_ROOM = "connection already in this room ({room})"
ROOM_DELETED = "this room has been deleted"
ROOM_DOES_NOT_EXIST = "room does not exist"
ROOM_EXISTS = "room exists"
ROOM_REQUIRED = "a room is required"
BAD_SINCE = "invalid since: give no position, or an offset (an integer >= 0) and an epoch"
ROOM_NAME_TOO_LONG = "room name is too long ({max} characters max)"
TOO_MANY_ROOMS = "too many rooms ({max} max)"
TOO_MANY_ROOMS_JOINED = "connection is in too many rooms ({max} max)"
TOO_BUSY = "the server is too busy"
CONNECTION_GONE = "the connection went away"
TOO_DEEP = "request is nested too deeply (1024 levels max)"
PARAM_NOT_ALLOWED = "param not allowed ({param})"
TOO_FAST = "you are sending messages too fast"
REDIRECTING = "You are being redirected to {url}\r\n"
RPC_TIMEOUT = "RPC Timeout"
MIDDLEWARE_NAME_REQUIRED = "middleware.name is required"
FORM_ERROR = "There was an error processing this form."
BODY_TOO_LARGE = "request body is too large"
INTERNAL_ERROR = "internal server error"
VALIDATION_FAILED = 'Input for parameter "{param}" failed validation!'

# --- texts only logged -----------------------------------------------------
SEND_FILE_NEEDS_NAME = "file is a required param to send a file"
FILE_READ_ERROR = "error reading file: {error}"
URI_DECODE_ERROR = "There was an error decoding URI: {error}"


class ActionError(Exception):
    """An error an action (or its middleware) reports on purpose.

    ``error`` is a string (sent as the text) or a JSON-able object (sent
    verbatim as the reply's ``error``).  Over HTTP it answers 400.
    """

    def __init__(self, error: Any = "") -> None:
        if isinstance(error, BaseException):
            error = str(error)
        super().__init__(error)
        self.error = error

    def __str__(self) -> str:
        return self.error if isinstance(self.error, str) else repr(self.error)


class ConnectionRefused(Exception):
    """Connection middleware refused a connection (its ``create`` raised
    :class:`ActionError`); ``error`` is what the client is told."""

    def __init__(self, middleware: str, error: Any) -> None:
        super().__init__(error)
        self.middleware = middleware
        self.error = error


class ConfigError(Exception):
    """Bad configuration or a bad action/middleware definition; stops start-up.

    Its text is printed as one line and twistd exits non-zero.
    """


class RoomError(Exception):
    """A chat-room operation refused; the text is one of the room strings above."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
