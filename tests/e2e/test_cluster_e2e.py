"""Cluster mode end to end: real ``twistd ahtwist --redis`` processes and a real
``redis-server`` (README.md, 'Running a cluster').

Node A's clients use the TCP socket, node B's the websocket; what one sees of
the other is asserted exactly.  The crash and Redis-restart cases come last
(they disturb the shared cluster).
"""

import json
import re
import signal
import time
from pathlib import Path

import pytest

from ahtwist.backends.redis import HEARTBEAT_INTERVAL
from tests.e2e.cluster import CONFIG, ClusterNode, start_nodes
from tests.helpers import free_port, wait_for
from tests.socket_helpers import GOODBYE, UUID_RE

CHAT = re.compile(
    r'\{"message":(?P<message>"[^"]*"),"room":"(?P<room>[^"]+)","from":(?P<sender>"[0-9a-f-]{36}"|0),'
    r'"context":"user","sentAt":\d{13}\}'
)


@pytest.fixture(scope="module")
def cluster(redis_server):
    nodes = start_nodes(redis_server.url, 2)
    yield nodes
    for node in nodes:
        node.stop()


def socket_id(client) -> str:
    client.send("detailsView\n")
    return client.json()["data"]["id"]


def ws_id(ws) -> str:
    return ws.request({"event": "detailsView"})["data"]["id"]


def chat_line(message: str, room: str, sender: str) -> re.Pattern:
    return re.compile(
        re.escape(
            json.dumps({"message": message, "room": room, "from": sender, "context": "user"},
                       separators=(",", ":"))[:-1]
        )
        + r',"sentAt":\d{13}\}'
    )


def test_a_node_starts_and_serves_while_redis_is_unreachable():
    """Not a start-up failure (README.md, 'Running a cluster', when Redis goes away): served locally, reported in
    status, each attempt logged with the password masked; stops cleanly."""
    port = free_port()  # nothing listens there
    node = ClusterNode(f"redis://:hunter2@127.0.0.1:{port}/0").wait_started()
    try:
        status = node.status()
        assert (status["nodeStatus"], status["problems"]) == ("Node Unhealthy", ["Redis unavailable"])
        assert status["stats"]["peers"] == [status["id"]]
        result = node.get("/api/cacheTest?key=abc&value=def")["cacheTestResults"]
        assert (result["sizeResp"], result["loadResp"]["value"]) == (1, "def")
        telnet = node.socket_client()
        telnet.send("roomAdd defaultRoom\nsay defaultRoom alone\n")
        assert telnet.json()["data"] is True and telnet.json()["status"] == "OK"
        assert json.loads(telnet.line())["message"] == "alone"
        telnet.sock.close()
        wait_for(lambda: node.log().count("cannot connect") >= 2, 5, "attempts not logged")
        log = node.log()
        assert (
            f"Redis redis://:****@127.0.0.1:{port}/0: cannot connect: Connection was refused by other "
            "side: 111: Connection refused.; retrying in 0.5 s"
        ) in log
        assert "hunter2" not in log
    finally:
        # twistd re-raises SIGTERM after a clean shutdown
        assert node.stop() == -signal.SIGTERM
        assert node.log().endswith("Server Shut Down.\n")


def test_status_lists_both_peers_and_cluster_wide_counters(cluster):
    a, b = cluster
    status_b = b.status()
    status_a = a.status()
    assert status_a["stats"]["peers"] == sorted([status_a["id"], status_b["id"]])
    assert status_b["stats"]["peers"] == status_a["stats"]["peers"]
    assert status_a["nodeStatus"] == "Node Healthy" and status_a["problems"] == []
    # B answers nothing else now; once its counters are flushed (1 s), A's
    # global counters are A's own plus B's.
    time.sleep(1.3)
    local_b = b.status()["stats"]
    time.sleep(1.3)
    stats_a = a.status()["stats"]
    web_a = stats_a["webServer"]
    assert web_a["numberOfGlobalWebRequests"] == (
        web_a["numberOfLocalWebRequests"] + local_b["webServer"]["numberOfLocalWebRequests"]
    )
    assert web_a["numberOfLocalWebRequests"] >= 2


def test_socket_user_on_a_and_websocket_user_on_b_chat(cluster):
    a, b = cluster
    telnet = a.socket_client()
    browser = b.websocket()
    try:
        tid, wid = socket_id(telnet), ws_id(browser)
        telnet.send("roomAdd defaultRoom\n")
        assert re.fullmatch(
            r'\{"status":"OK","context":"response","data":true,"messageCount":2,"messageId":"%s"\}' % UUID_RE,
            telnet.line().decode(),
        )
        reply = browser.request({"event": "roomAdd", "room": "defaultRoom"})
        assert (reply["status"], reply["data"]) == ("OK", True)
        # roomView on either node lists both members
        view = browser.request({"event": "roomView", "room": "defaultRoom"})["data"]
        assert view["membersCount"] == 2
        assert list(view["members"]) == [tid, wid]
        assert view["members"][tid] == {"id": tid, "joinedAt": view["members"][tid]["joinedAt"]}
        telnet.send("say defaultRoom hello  from telnet\n")
        assert re.fullmatch(
            r'\{"status":"OK","context":"response","messageCount":3,"messageId":"%s"\}' % UUID_RE,
            telnet.line().decode(),
        )
        expected = chat_line("hello  from telnet", "defaultRoom", tid)
        assert expected.fullmatch(telnet.line().decode())
        _, frame = browser.recv_frame()
        assert expected.fullmatch(frame.decode()), frame
        reply = browser.request({"event": "say", "room": "defaultRoom", "message": "hi from the browser"})
        assert reply["status"] == "OK"
        expected = chat_line("hi from the browser", "defaultRoom", wid)
        _, frame = browser.recv_frame()
        assert expected.fullmatch(frame.decode()), frame
        assert expected.fullmatch(telnet.line().decode())
        # leaving on B: A's view is updated, nothing is sent to A's member
        reply = browser.request({"event": "roomLeave", "room": "defaultRoom"})
        assert (reply["status"], reply["data"]) == ("OK", True)
        telnet.send("roomView defaultRoom\n")
        data = telnet.json()["data"]
        assert (list(data["members"]), data["membersCount"]) == ([tid], 1)
        assert not telnet.has_data()
    finally:
        telnet.sock.close()
        browser.close()


def test_rooms_are_shared_and_destroyed_cluster_wide(cluster):
    a, b = cluster
    assert "error" not in a.get("/api/createChatRoom?name=sharedRoom")
    assert b.get("/api/createChatRoom?name=sharedRoom")["error"] == "room exists"
    browser = b.websocket()
    try:
        reply = browser.request({"event": "roomAdd", "room": "sharedRoom"})
        assert (reply["status"], reply["data"]) == ("OK", True)
        # destroyed on A: B's member is told and removed, the room is gone everywhere
        assert "error" not in a.get("/api/roomDestroy?room=sharedRoom")
        _, frame = browser.recv_frame()
        assert chat_line("this room has been deleted", "sharedRoom", 0).fullmatch(frame.decode()), frame
        wait_for(lambda: browser.request({"event": "detailsView"})["data"]["rooms"] == [], 5,
                 "B's member was not removed")
        assert b.get("/api/roomDestroy?room=sharedRoom")["error"] == "room does not exist"
        assert "error" not in b.get("/api/createChatRoom?name=sharedRoom")
    finally:
        browser.close()


def test_cache_entries_are_shared(cluster):
    a, b = cluster
    assert a.get("/api/cacheSave?key=sharedKey&value=fromA")["saved"] is True
    entry = b.get("/api/cacheLoad?key=sharedKey")["entry"]
    assert (entry["key"], entry["value"], entry["readAt"]) == ("sharedKey", "fromA", None)
    assert entry["expireTimestamp"] == entry["createdAt"] + 60000
    # cacheTest's sizeResp counts the cluster's entries
    result = b.get("/api/cacheTest?key=abc&value=def")["cacheTestResults"]
    assert (result["saveResp"], result["sizeResp"], result["deleteResp"]) == (True, 2, True)
    assert a.get("/api/cacheLoad?key=sharedKey")["entry"]["readAt"] >= entry["createdAt"]


def test_operations_on_a_connection_held_by_another_node(cluster):
    a, b = cluster
    telnet = a.socket_client()
    try:
        tid = socket_id(telnet)
        path = f"/api/connectionApply?connectionId={tid}"
        assert b.get(f"{path}&method=add_member&room=defaultRoom")["result"] is True
        telnet.send("detailsView\n")
        assert telnet.json()["data"]["rooms"] == ["defaultRoom"]
        assert b.get(f"{path}&method=add_member&room=defaultRoom")["error"] == (
            "connection already in this room (defaultRoom)"
        )
        assert b.get(f"{path}&method=add_member&room=noSuchRoom")["error"] == "room does not exist"
        assert b.get(f"{path}&method=send_message&message=psst")["result"] is True
        assert telnet.line() == b'{"message":"psst","context":"test"}'
        assert b.get(f"{path}&method=remove_member&room=defaultRoom")["result"] is True
        assert b.get(f"{path}&method=remove_member&room=defaultRoom")["error"] == (
            "connection not in this room (defaultRoom)"
        )
        started = time.monotonic()
        reply = b.get("/api/connectionApply?connectionId=nobody&method=add_member&room=defaultRoom")
        assert reply["error"] == "RPC Timeout"
        assert time.monotonic() - started >= 1.0  # it waited general.rpcTimeout (1000 ms) for an owner
        assert b.get(f"{path}&method=destroy")["result"] is True
        assert telnet.line() == GOODBYE
        with pytest.raises(EOFError):
            telnet.line()
    finally:
        telnet.sock.close()


def test_a_crashed_node_members_are_removed_by_the_survivors(cluster, redis_server):
    a, b = cluster
    c = ClusterNode(redis_server.url).wait_started()
    try:
        wait_for(lambda: len(a.status()["stats"]["peers"]) == 3, 15, "C did not join")
        c_id = c.id
        victim = c.socket_client()
        victim_id = socket_id(victim)
        victim.send("roomAdd otherRoom\n")
        assert victim.json()["data"] is True
        watcher = a.socket_client()
        watcher.send("roomAdd otherRoom\n")
        assert watcher.json()["data"] is True
        watcher.send("roomView otherRoom\n")
        assert list(watcher.json()["data"]["members"]) == [victim_id, socket_id(watcher)]
        killed = time.monotonic()
        c.stop(signal.SIGKILL)

        def members():
            watcher.send("roomView otherRoom\n")
            return list(watcher.json()["data"]["members"])

        waited = wait_for(lambda: len(members()) == 1, 60, "the dead node's member stayed", step=0.5)
        gone_after = time.monotonic() - killed
        # not before the peer window (15 s without a heartbeat; its last one
        # may have come up to a heartbeat interval before the kill)
        assert gone_after >= 13, gone_after
        assert waited > 0
        assert c_id not in a.status()["stats"]["peers"]
        # whichever survivor swept first did it, exactly once; log lines are
        # written in batches (logs.flush_interval), so wait for the line, then
        # let another heartbeat + sweep pass before counting
        cleaned = f"node {c_id} left the cluster without stopping; removed its 1 room member(s)"

        def cleanups() -> int:
            return a.log().count(cleaned) + b.log().count(cleaned)

        wait_for(lambda: cleanups() >= 1, 5, "no survivor logged the cleanup")
        time.sleep(HEARTBEAT_INTERVAL + 0.5)
        assert cleanups() == 1
    finally:
        c.stop()


def test_redis_restart_in_the_middle_of_a_chat(cluster, redis_server):
    """Redis is killed while A's socket user chats with B's websocket user.

    Meanwhile both nodes keep serving locally (actions, local chat), report
    ``Redis unavailable`` and fail remote RPCs at once; after Redis restarts
    (empty) they reconnect (logged once), re-assert rooms and memberships, and
    the chat crosses nodes again.  Messages said during the outage reached
    A's own members at once; A held them and publishes them once Redis is
    back, so B's member gets them too, in order, before the later ones.
    """
    a, b = cluster
    telnet, browser = a.socket_client(), b.websocket()
    try:
        tid = socket_id(telnet)
        telnet.send("roomAdd defaultRoom\n")
        assert telnet.json()["data"] is True
        assert browser.request({"event": "roomAdd", "room": "defaultRoom"})["data"] is True
        counter = iter(range(1000))

        def say() -> int:
            n = next(counter)
            telnet.send(f"say defaultRoom m{n}\n")
            assert telnet.json()["status"] == "OK"
            assert chat_line(f"m{n}", "defaultRoom", tid).fullmatch(telnet.line().decode())
            return n

        before = [say() for _ in range(5)]
        redis_server.stop(signal.SIGKILL)
        wait_for(lambda: a.status()["problems"] == ["Redis unavailable"], 5, "A did not notice")
        wait_for(lambda: b.status()["problems"] == ["Redis unavailable"], 5, "B did not notice")
        status = b.status()
        assert (status["nodeStatus"], status["problems"]) == ("Node Unhealthy", ["Redis unavailable"])
        assert status["stats"]["peers"] == [status["id"]]
        # local service goes on: actions, and chat to local members (say() checks the echo)
        assert 0 <= a.get("/api/randomNumber")["randomNumber"] < 1
        during = [say() for _ in range(5)]
        # refused while Redis is down (that it fails at once rather than after rpcTimeout is
        # tests/test_redis_backends.py's test_redis_restart_is_survived)
        assert b.get(f"/api/connectionApply?connectionId={tid}&method=add_member&room=otherRoom")[
            "error"
        ] == "RPC Timeout"
        redis_server.start()
        wait_for(lambda: a.status()["problems"] == [] and b.status()["problems"] == [], 15,
                 "nodes did not reconnect")
        after = [say() for _ in range(5)]
        received = []
        while len(received) < len(before) + len(during) + len(after):
            message = browser.recv(timeout=5)
            match = CHAT.fullmatch(json.dumps(message, separators=(",", ":")))
            assert match, message
            received.append(int(message["message"][1:]))
        assert received == before + during + after
        assert not browser_has_more(browser)
        # membership was re-asserted into the empty Redis
        view = browser.request({"event": "roomView", "room": "defaultRoom"})["data"]
        assert set(view["members"]) == {tid, ws_id(browser)}
        for node in (a, b):
            # info lines are written in batches: wait for the line, then count
            wait_for(lambda node=node: "reconnected after" in node.log(), 5, "reconnection not logged")
            log = node.log()
            assert log.count("connection lost") == 1, log
            assert log.count("reconnected after") == 1, log
        assert len(during) == 5
    finally:
        telnet.sock.close()
        browser.close()


def browser_has_more(browser) -> bool:
    try:
        browser.recv_frame(timeout=0.3)
    except TimeoutError:
        return False
    return True


def test_chat_middleware_runs_on_the_senders_node_then_on_each_recipients(redis_server):
    """on_say_receive once where the message was said; say per recipient on
    the recipient's node, able to change or veto that one delivery."""
    middleware = json.dumps(str(Path(__file__).parent / "cluster_chat_middleware"))
    config = CONFIG.replace("actions = [{actions}]", f"actions = [{{actions}}, {middleware}]")
    assert config != CONFIG
    a, b = (ClusterNode(redis_server.url, config=config) for _ in range(2))
    telnet = browser = None
    try:
        a.wait_started()
        b.wait_started()
        wait_for(lambda: len(a.status()["stats"]["peers"]) >= 2, 15, "B did not join")
        telnet, browser = a.socket_client(), b.websocket()
        tid = socket_id(telnet)
        telnet.send("roomAdd otherRoom\n")
        assert telnet.json()["data"] is True
        assert browser.request({"event": "roomAdd", "room": "otherRoom"})["status"] == "OK"
        telnet.send("say otherRoom mw:hello\n")
        assert telnet.json()["status"] == "OK"
        to_telnet = telnet.json()
        assert to_telnet == {"message": "mw:hello [from socket] [to socket]", "room": "otherRoom",
                             "from": tid, "context": "user", "sentAt": to_telnet["sentAt"]}
        to_browser = browser.recv(timeout=5)
        assert to_browser == {**to_telnet, "message": "mw:hello [from socket] [to websocket]"}
        # vetoed for the websocket member only; untouched messages pass as said
        telnet.send("say otherRoom mw:no-websocket\n")
        assert telnet.json()["status"] == "OK"
        assert telnet.json()["message"] == "mw:no-websocket [from socket] [to socket]"
        telnet.send("say otherRoom plain\n")
        assert telnet.json()["status"] == "OK"
        assert telnet.json()["message"] == "plain"
        assert browser.recv(timeout=5)["message"] == "plain"
        reply = browser.request({"event": "say", "room": "otherRoom", "message": "mw:back"})
        assert reply["status"] == "OK"
        assert browser.recv(timeout=5)["message"] == "mw:back [from websocket] [to websocket]"
        assert telnet.json()["message"] == "mw:back [from websocket] [to socket]"
    finally:
        if telnet is not None:
            telnet.sock.close()
        if browser is not None:
            browser.close()
        a.stop()
        b.stop()
