"""Actions the cluster tests call: operations on a connection wherever it is
held, and cache entries saved on one node and read on another."""

from ahtwist import Action, ActionError, Input
from ahtwist.backends.memory import CacheMiss
from ahtwist.errors import RoomError


class ConnectionApply(Action):
    """``node.apply(connectionId, method, ...)``: here or over the cluster."""

    name = "connectionApply"
    description = "Runs an operation on a connection held by any node"
    inputs = {
        "connectionId": Input(required=True),
        "method": Input(required=True),
        "room": Input(required=False),
        "message": Input(required=False),
    }

    async def run(self, data):
        params = data.params
        args = []
        if params.get("room") is not None:
            args.append(params["room"])
        if params.get("message") is not None:
            args.append({"message": params["message"], "context": "test"})
        try:
            result = await data.node.apply(params["connectionId"], params["method"], *args)
        except RoomError as e:
            raise ActionError(e.message) from None
        data.response["result"] = result


class CacheSave(Action):
    name = "cacheSave"
    description = "Saves a cache entry"
    inputs = {"key": Input(required=True), "value": Input(required=True)}

    async def run(self, data):
        data.response["saved"] = await data.node.cache.save(data.params["key"], data.params["value"], 60000)


class CacheLoad(Action):
    name = "cacheLoad"
    description = "Loads a cache entry"
    inputs = {"key": Input(required=True)}

    async def run(self, data):
        try:
            data.response["entry"] = await data.node.cache.load(data.params["key"])
        except CacheMiss as e:
            raise ActionError(str(e)) from None


class RoomDestroy(Action):
    name = "roomDestroy"
    description = "Destroys a chat room (cluster-wide)"
    inputs = {"room": Input(required=True)}

    async def run(self, data):
        try:
            await data.node.rooms.destroy(data.params["room"])
        except RoomError as e:
            raise ActionError(e.message) from None
