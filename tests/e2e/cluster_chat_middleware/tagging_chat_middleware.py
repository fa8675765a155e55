"""Chat middleware for the cluster test of where chat hooks run.

Only messages starting with ``mw:`` are touched.  ``on_say_receive`` runs once,
on the sender's node, and tags the message with the sender's connection type;
``say`` runs for each recipient on the recipient's own node (the only place
that connection exists), tags the message with the recipient's type, and
vetoes delivery of ``mw:no-websocket`` messages to websocket clients.
"""

from ahtwist import ActionError, ChatMiddleware


class TaggingChatMiddleware(ChatMiddleware):
    name = "taggingChatMiddleware"

    def on_say_receive(self, connection, room, payload):
        if str(payload["message"]).startswith("mw:"):
            return {**payload, "message": f"{payload['message']} [from {connection.type}]"}
        return None

    def say(self, connection, room, payload):
        message = str(payload["message"])
        if not message.startswith("mw:"):
            return None
        if message.startswith("mw:no-websocket") and connection.type == "websocket":
            raise ActionError("not for websockets")
        return {**payload, "message": f"{message} [to {connection.type}]"}
