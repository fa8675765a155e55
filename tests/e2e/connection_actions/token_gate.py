"""Connection middleware and actions for the connection API end-to-end tests.

``tokenGate`` admits a websocket only with ``Authorization: Bearer good`` or
``?token=good`` on the upgrade request (it keeps the token's user in the
session), refuses every socket client that connects (the socket has no
handshake to carry a token), and lets web requests through.
"""

from ahtwist import Action, ActionError, ConnectionMiddleware, Input

USERS = {"good": "alice"}


class TokenGate(ConnectionMiddleware):
    name = "tokenGate"

    def create(self, connection):
        if connection.type == "socket":
            raise ActionError("socket clients need a token")
        if connection.type != "websocket":
            return
        raw = connection.raw
        header = raw.headers.get("authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else raw.query.get("token")
        if token not in USERS:
            raise ActionError("bad token")
        connection.session["user"] = USERS[token]


class Remember(Action):
    name = "remember"
    description = "keeps a value in the connection's session"
    inputs = {"value": Input(required=True)}

    def run(self, data):
        data.connection.session["value"] = data.params["value"]


class Recall(Action):
    name = "recall"
    description = "what the session holds"

    def run(self, data):
        data.response["session"] = dict(data.connection.session)
        data.response["secure"] = data.connection.raw.secure
        data.response["cookies"] = data.connection.raw.cookies
