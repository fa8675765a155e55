"""Room history in cluster mode, end to end: real ``twistd ahtwist --redis``
nodes and a real ``redis-server`` (docs/deployment.md, 'Cluster delivery
guarantees').

A socket client on node A says; a websocket client on node B listens with
offsets.  It goes away, comes back on node A with the last offset it saw, and
must get exactly what it missed, in order, then live messages, never one
twice -- also across a ``redis-server`` SIGKILL and restart: with
``appendonly yes`` nothing is lost or repeated for anyone, and without
persistence the resuming client is told ``recovered: false``.
"""

import json
import signal

import pytest

from tests.e2e.cluster import CONFIG, ClusterNode
from tests.helpers import wait_for
from tests.redis_server import RedisServer

HISTORY_CONFIG = CONFIG + """
[history]
maxMessages = 1000
maxAge = 0
"""
ROOM = "defaultRoom"


def start_cluster(url: str) -> tuple[ClusterNode, ClusterNode]:
    nodes = [ClusterNode(url, HISTORY_CONFIG) for _ in range(2)]
    for node in nodes:
        node.wait_started()
    wait_for(lambda: all(len(n.status()["stats"]["peers"]) >= 2 for n in nodes), 15, "nodes did not see each other")
    return nodes[0], nodes[1]


@pytest.fixture
def redis_aof():
    server = RedisServer(extra_args=("--appendonly", "yes")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_volatile():
    server = RedisServer().start()  # no persistence: a restart starts empty
    yield server
    server.stop()


class Sayer:
    """A socket client on node A in ROOM, saying ``m0``, ``m1``, ... and
    checking its own echo (each exactly once)."""

    def __init__(self, node: ClusterNode) -> None:
        self.client = node.socket_client()
        self.client.send(f"roomAdd {ROOM}\n")
        assert self.client.json()["data"] is True
        self.count = 0

    def say(self, n: int = 1) -> list[str]:
        said = []
        for _ in range(n):
            text = f"m{self.count}"
            self.count += 1
            self.client.send(f"say {ROOM} {text}\n")
            assert self.client.json()["status"] == "OK"
            echo = json.loads(self.client.line())
            assert (echo["message"], echo["room"], echo["context"]) == (text, ROOM, "user"), echo
            said.append(text)
        return said

    def nothing_more(self) -> bool:
        return not self.client.has_data()

    def close(self) -> None:
        self.client.sock.close()


def join(ws, since: dict) -> dict:
    reply = ws.request({"event": "roomAdd", "room": ROOM, "since": since})
    assert reply["status"] == "OK", reply
    return reply["data"]


def receive(ws, count: int) -> list[dict]:
    """The next ``count`` chat messages (with offset and epoch)."""
    messages = []
    while len(messages) < count:
        message = ws.recv(timeout=15)
        assert message.get("context") == "user" and message.get("room") == ROOM, message
        messages.append(message)
    return messages


def nothing_more(ws) -> bool:
    try:
        ws.recv_frame(timeout=0.5)
    except TimeoutError:
        return True
    return False


def texts(messages: list[dict]) -> list[str]:
    return [m["message"] for m in messages]


def offsets(messages: list[dict]) -> list[int]:
    return [m["offset"] for m in messages]


def test_resume_on_another_node_gets_exactly_what_was_missed(redis_volatile):
    a, b = start_cluster(redis_volatile.url)
    sayer = Sayer(a)
    try:
        listener = b.websocket()
        position = join(listener, {})
        assert position["recovered"] is True and position["offset"] == 0
        epoch = position["epoch"]
        first = sayer.say(5)
        seen = receive(listener, 5)
        assert texts(seen) == first
        assert offsets(seen) == [1, 2, 3, 4, 5] and {m["epoch"] for m in seen} == {epoch}
        listener.close()

        missed = sayer.say(200)
        back = a.websocket()  # the same user, back on the other node
        assert join(back, {"offset": 5, "epoch": epoch}) == {"recovered": True, "offset": 205, "epoch": epoch}
        caught_up = receive(back, 200)
        assert texts(caught_up) == missed
        assert offsets(caught_up) == list(range(6, 206))
        live = sayer.say(3)
        after = receive(back, 3)
        assert texts(after) == live and offsets(after) == [206, 207, 208]
        assert nothing_more(back)
        assert sayer.nothing_more()
        back.close()
    finally:
        sayer.close()
        a.stop()
        b.stop()


def test_a_redis_restart_with_appendonly_loses_and_repeats_nothing(redis_aof):
    a, b = start_cluster(redis_aof.url)
    sayer = Sayer(a)
    try:
        stayer = b.websocket()  # stays connected on B throughout
        epoch = join(stayer, {})["epoch"]
        leaver = b.websocket()  # leaves, then resumes on A
        join(leaver, {})
        before = sayer.say(10)
        assert texts(receive(stayer, 10)) == before
        assert offsets(receive(leaver, 10)) == list(range(1, 11))
        leaver.close()

        redis_aof.stop(signal.SIGKILL)
        wait_for(lambda: a.status()["problems"] == ["Redis unavailable"], 10, "A did not notice")
        during = sayer.say(10)  # A's own members get them at once; held for the others
        redis_aof.start()  # same directory: the AOF is replayed
        wait_for(lambda: a.status()["problems"] == [] and b.status()["problems"] == [], 20,
                 "nodes did not reconnect")
        after = sayer.say(10)

        got = receive(stayer, 20)
        assert texts(got) == during + after
        assert offsets(got) == list(range(11, 31)) and {m["epoch"] for m in got} == {epoch}
        assert nothing_more(stayer)

        back = a.websocket()
        assert join(back, {"offset": 10, "epoch": epoch}) == {"recovered": True, "offset": 30, "epoch": epoch}
        resumed = receive(back, 20)
        assert texts(resumed) == during + after and offsets(resumed) == list(range(11, 31))
        live = sayer.say(2)
        assert texts(receive(back, 2)) == live and texts(receive(stayer, 2)) == live
        assert nothing_more(back) and nothing_more(stayer)
        assert sayer.nothing_more()
        for node in (a, b):
            wait_for(lambda node=node: "reconnected after" in node.log(), 5, "reconnection not logged")
    finally:
        sayer.close()
        a.stop()
        b.stop()


def test_a_redis_restart_without_persistence_is_reported_to_resuming_clients(redis_volatile):
    a, b = start_cluster(redis_volatile.url)
    sayer = Sayer(a)
    try:
        leaver = b.websocket()
        epoch = join(leaver, {})["epoch"]
        sayer.say(5)
        assert offsets(receive(leaver, 5)) == [1, 2, 3, 4, 5]
        leaver.close()

        redis_volatile.stop(signal.SIGKILL)
        wait_for(lambda: a.status()["problems"] == ["Redis unavailable"], 10, "A did not notice")
        redis_volatile.start()  # empty
        wait_for(lambda: a.status()["problems"] == [] and b.status()["problems"] == [], 20,
                 "nodes did not reconnect")
        after = sayer.say(3)
        back = a.websocket()
        answer = join(back, {"offset": 5, "epoch": epoch})
        assert answer["recovered"] is False and answer["epoch"] != epoch and answer["offset"] == 3
        # what the new epoch holds comes first: nothing is silently skipped
        resumed = receive(back, 3)
        assert texts(resumed) == after and offsets(resumed) == [1, 2, 3]
        assert {m["epoch"] for m in resumed} == {answer["epoch"]}
        assert nothing_more(back)
    finally:
        sayer.close()
        a.stop()
        b.stop()


def test_a_burst_of_says_on_a_fresh_redis_keeps_its_order(redis_volatile):
    """10,000 says written at once on node A, the first ones on a Redis that has
    no script cached yet: B's listener gets every one, in the order said, with
    offsets 1, 2, 3, ... (a say refused with NOSCRIPT and sent again must not
    be overtaken by the next ones)."""
    a, b = start_cluster(redis_volatile.url)
    sayer = Sayer(a)
    try:
        listener = b.websocket()
        join(listener, {})
        count = 10000
        sayer.client.send("".join(f"say {ROOM} b{n}\n" for n in range(count)))
        got = receive(listener, count)
        assert texts(got) == [f"b{n}" for n in range(count)]
        assert offsets(got) == list(range(1, count + 1))
        assert nothing_more(listener)
    finally:
        sayer.close()
        a.stop()
        b.stop()
