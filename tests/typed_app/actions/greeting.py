"""An action with inputs, an action middleware, a connection and a chat middleware."""

from typing import Any

from ahtwist import (
    Action,
    ActionData,
    ActionError,
    ActionMiddleware,
    ChatMiddleware,
    Connection,
    ConnectionMiddleware,
    Input,
)


def shout(value: str) -> str:
    return value.upper()


def not_empty(value: str) -> bool | str:
    return True if value else "name must not be empty"


class Greet(Action):
    name = "typedGreet"
    description = "Greets someone, loudly when asked"
    inputs = {
        "name": Input(required=True, validator=not_empty),
        "loud": Input(default=False, formatter=lambda value: value in (True, "true", "1")),
        "suffix": Input(default="!", formatter=shout),
    }
    middleware = ("typed.stamp",)
    output_example = {"greeting": "Hello, Ann!"}

    def run(self, data: ActionData) -> None:
        name: str = data.params["name"]
        if name == "voldemort":
            raise ActionError("we do not say that name here")
        greeting = f"Hello, {name}{data.params['suffix']}"
        data.response["greeting"] = greeting.upper() if data.params["loud"] else greeting


class Stamp(ActionMiddleware):
    name = "typed.stamp"
    priority = 100

    def pre_processor(self, data: ActionData) -> None:
        data.response["stamped"] = True

    def post_processor(self, data: ActionData) -> None:
        data.response["connectionType"] = data.connection.type


class Tagger(ConnectionMiddleware):
    name = "typed.tagger"

    def create(self, connection: Connection) -> None:
        connection.session["tag"] = "typed"

    def destroy(self, connection: Connection) -> None:
        connection.session.clear()


class NoShouting(ChatMiddleware):
    name = "typed.noShouting"

    def on_say_receive(self, connection: Connection, room: str, payload: dict[str, Any]) -> dict[str, Any]:
        message = payload.get("message")
        if isinstance(message, str) and message.isupper():
            raise ActionError("no shouting")
        return payload
