"""sleepTest: wait without blocking, then report the timings."""

import re

from twisted.internet.task import deferLater

from ahtwist.actions.action import Action, Input, json_schema

_INT = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|\d+)")


@json_schema(type="integer", minimum=0)
def parse_int(value):
    """JavaScript ``parseInt`` semantics; no digits -> None (treated as missing);
    negative -> 0."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        number = int(value)
    else:
        match = _INT.match(str(value))
        if not match:
            return None
        sign, digits = match.groups()
        number = int(digits, 16) if digits[:2].lower() == "0x" else int(digits)
        if sign == "-":
            number = -number
    return max(number, 0)


def within_cap(value, data):
    """At most ``limits.maxSleepDuration`` ms (0: no cap): a sleep must not
    outlive any sensible client."""
    cap = data.node.config.limits.maxSleepDuration
    if cap and value > cap:
        return f"sleepDuration must be at most {cap} ms"
    return True


class SleepTest(Action):
    name = "sleepTest"
    description = "I will sleep and then return"
    inputs = {"sleepDuration": Input(required=True, default=1000, formatter=parse_int, validator=within_cap)}
    output_example = {
        "sleepStarted": 1420953571322,
        "sleepEnded": 1420953572327,
        "sleepDelta": 1005,
        "sleepDuration": 1000,
    }

    async def run(self, data):
        node = data.node
        duration = data.params["sleepDuration"]
        started = node.now_ms()
        await deferLater(node.reactor, duration / 1000)
        ended = node.now_ms()
        data.response.update(
            {
                "sleepStarted": started,
                "sleepEnded": ended,
                "sleepDelta": ended - started,
                "sleepDuration": duration,
            }
        )
