"""cacheTest: save, count, load and delete one cache entry."""

import orjson

from ahtwist.actions.action import Action, Input, json_schema

TOO_SHORT = "inputs should be at least 3 letters long"


@json_schema(type="string")
def to_text(value):
    """Strings stay; anything else becomes compact JSON text."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


@json_schema(minLength=3)
def at_least_three(value):
    return True if len(value) >= 3 else TOO_SHORT


class CacheTest(Action):
    name = "cacheTest"
    description = "I will test the internal cache functions of the API"
    inputs = {
        "key": Input(required=True, formatter=to_text, validator=at_least_three),
        "value": Input(required=True, formatter=to_text, validator=at_least_three),
    }
    output_example = {
        "cacheTestResults": {
            "saveResp": True,
            "sizeResp": 1,
            "loadResp": {
                "key": "cacheTest_abc",
                "value": "abc123",
                "expireTimestamp": 1420953274716,
                "createdAt": 1420953269716,
                "readAt": None,
            },
            "deleteResp": True,
        }
    }

    async def run(self, data):
        cache = data.node.cache
        key = f"cacheTest_{data.params['key']}"
        save = await cache.save(key, data.params["value"], 5000)
        size = await cache.size()
        loaded = await cache.load(key)
        deleted = await cache.destroy(key)
        data.response["cacheTestResults"] = {
            "saveResp": save,
            "sizeResp": size,
            "loadResp": loaded,
            "deleteResp": deleted,
        }
