"""createChatRoom: create a chat room by name."""

from ahtwist.actions.action import Action, Input
from ahtwist.errors import ActionError, RoomError


class CreateChatRoom(Action):
    name = "createChatRoom"
    description = "I will create a chatroom with the given name"
    inputs = {"name": Input(required=True)}
    output_example = {}

    async def run(self, data):
        try:
            await data.node.rooms.add(str(data.params["name"]))
        except RoomError as e:
            raise ActionError(e.message) from None
