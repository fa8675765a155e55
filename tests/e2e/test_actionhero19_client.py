"""ActionHero 19.2.2's own browser client, unchanged, against a real ``twistd ahtwist``.

The page runs the ``ActionheroWebsocketClient.js`` ActionHero 19.2.2 would
write at start-up (Primus 7 client library + its client; built from the npm
packages by :mod:`tests.e2e.actionhero19`, cached outside the repository and
never committed).  The page is the server's own ``/simple.html`` with that
file added as a script; the ``/primus`` websocket and ``/api`` are the real
server.  A plain websocket
client on ``/ws`` shares the room, so both endpoints are one chat.

The first scenario runs twice, with the same page code and assertions: once
with ActionHero's generated file, once with ahtwist's
``/public/javascript/ActionheroWebsocketClient.js`` (ActionHero 19's API over
ahtwist's own client, speaking ``/ws``) as the only script the page loads.
"""

import socket

import pytest

from tests.e2e.actionhero19 import actionhero19_client
from tests.e2e.ws_blocking import BlockingWebSocket


@pytest.fixture(scope="module")
def client_source():
    return actionhero19_client()


def ah19_page(browser, server, client_source, url=None):
    """A page of the server (``/simple.html``, which loads no script) running
    the generated client, or the server's file at ``url`` when given."""
    page = browser.new_page()
    errors = []
    sockets = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.goto(f"{server.http_url}/simple.html")
    if url is None:
        page.add_script_tag(content=client_source)
    else:
        page.add_script_tag(url=url)
    page.errors = errors
    page.sockets = sockets
    return page


@pytest.mark.parametrize("client_file", ["actionhero-19.2.2", "ahtwist"])
def test_actionhero19_client_action_room_and_say(browser, server, client_file, request):
    if client_file == "ahtwist":
        page = ah19_page(browser, server, None, url="/public/javascript/ActionheroWebsocketClient.js")
        # the one file brings ahtwist's client with it; the generated one brings Primus
        assert page.evaluate("() => [typeof ActionheroClient, typeof Primus]") == ["function", "undefined"]
        websocket_url = f"ws://127.0.0.1:{server.port}/ws"
    else:
        # only this variant needs npm and node (to build ActionHero's file)
        page = ah19_page(browser, server, request.getfixturevalue("client_source"))
        websocket_url = f"ws://127.0.0.1:{server.port}/primus?_primuscb="
    other = BlockingWebSocket(server.ws_url)
    try:
        assert other.recv()["context"] == "api"
        connected = page.evaluate("""() => new Promise((resolve) => {
            window.events = []
            window.said = []
            window.client = new ActionheroWebsocketClient()
            for (const name of ['welcome', 'connected', 'disconnected', 'say', 'error']) {
              client.on(name, (message) => window.events.push(name))
            }
            client.on('say', (message) => window.said.push(message))
            client.connect((error, details) => resolve([error, details]))
        })""")
        error, details = connected
        assert error is None
        assert details["status"] == "OK" and details["context"] == "response"
        assert details["data"]["rooms"] == []
        assert page.evaluate("() => [client.state, client.id, client.welcomeMessage]") == [
            "connected", details["data"]["id"], "Hello! Welcome to the actionhero api"
        ]
        # one websocket: Primus' to /primus (with its cache buster), ahtwist's to /ws
        assert len(page.sockets) == 1
        assert page.sockets[0].startswith(websocket_url)
        if client_file == "ahtwist":
            assert page.sockets[0] == websocket_url

        reply = page.evaluate(
            "() => new Promise((resolve) => client.action('greet', {name: 'Ann'}, resolve))"
        )
        assert reply == {"greeting": "Hello, Ann!", "context": "response", "messageCount": 2, "messageId": 2}
        failed = page.evaluate(
            "() => new Promise((resolve) => client.action('greet', {name: 'voldemort'}, resolve))"
        )
        assert failed["error"] == "we do not say that name here" and failed["messageId"] == 3

        joined = page.evaluate("() => new Promise((resolve) => client.roomAdd('defaultRoom', resolve))")
        assert joined["status"] == "OK" and joined["data"] is True
        assert page.evaluate("() => client.rooms") == ["defaultRoom"]

        # a say from a /ws client reaches the ActionHero 19 page ...
        assert other.request({"event": "roomAdd", "room": "defaultRoom", "messageId": 1})["status"] == "OK"
        other_id = other.request({"event": "detailsView", "messageId": 2})["data"]["id"]
        assert other.request({"event": "say", "room": "defaultRoom", "message": "hi from /ws",
                              "messageId": 3})["status"] == "OK"
        page.wait_for_function("() => window.said.length === 1")
        said = page.evaluate("() => window.said[0]")
        assert {k: said[k] for k in ("message", "room", "from", "context")} == {
            "message": "hi from /ws", "room": "defaultRoom", "from": other_id, "context": "user"
        }
        # ... and the page's say reaches /ws
        answer = page.evaluate(
            "() => new Promise((resolve) => client.say('defaultRoom', 'hi from AH19', resolve))"
        )
        assert answer["status"] == "OK"
        echo, heard = other.recv(), other.recv()  # its own say comes back to it first
        assert (echo["message"], echo["from"]) == ("hi from /ws", other_id)
        assert {k: heard[k] for k in ("message", "room", "from", "context")} == {
            "message": "hi from AH19", "room": "defaultRoom", "from": details["data"]["id"], "context": "user"
        }

        # the page's own say comes back to it too (a frame of its own after the reply: wait for it)
        page.wait_for_function("() => window.said.length === 2")
        # the page ends the connection: no reconnect, 'disconnected' once
        page.evaluate("() => client.disconnect()")
        assert page.evaluate("() => window.said.map((m) => m.message)") == ["hi from /ws", "hi from AH19"]
        assert page.evaluate("() => window.events") == ["welcome", "connected", "say", "say", "disconnected"]
        assert page.errors == []
    finally:
        other.close()
        page.close()


def test_server_side_close_is_final_and_reported(browser, server, client_source):
    """``quit``: the server says ``primus::server::close``; the page sees
    'disconnected' and Primus does not reconnect."""
    page = ah19_page(browser, server, client_source)
    try:
        page.evaluate("""() => new Promise((resolve) => {
            window.events = []
            window.client = new ActionheroWebsocketClient()
            for (const name of ['connected', 'disconnected', 'reconnecting']) {
              client.on(name, () => window.events.push(name))
            }
            client.connect(() => resolve())
        })""")
        page.evaluate("() => client.send({event: 'quit'})")
        page.wait_for_function("() => window.events.includes('disconnected')")
        # Primus ended for good: its readyState is CLOSED and no reconnect is scheduled
        assert page.evaluate(
            "() => [client.client.readyState === Primus.CLOSED, client.client.recovery.reconnecting()]"
        ) == [True, False]
        assert page.evaluate("() => window.events") == ["connected", "disconnected"]
    finally:
        page.close()


def test_primus_client_library_url_fails_clearly(browser, server, client_source):
    """``/primus/primus.js`` is not served (the generated client bundles the
    library): a page loading it gets the script's error event, not a hang."""
    page = ah19_page(browser, server, client_source)
    try:
        outcome = page.evaluate("""() => new Promise((resolve) => {
            const script = document.createElement('script')
            script.src = '/primus/primus.js'
            script.onload = () => resolve('loaded')
            script.onerror = () => resolve('error')
            document.head.appendChild(script)
        })""")
        assert outcome == "error"
    finally:
        page.close()


def test_ahtwist_file_before_connect_and_when_the_server_is_gone(browser, server):
    """ahtwist's ActionHero 19 file: ``action`` before ``connect`` goes over
    HTTP (``POST /api``), as ActionHero's does; a ``connect`` that cannot reach
    the server calls back with an error instead of hanging."""
    page = ah19_page(browser, server, None, url="/public/javascript/ActionheroWebsocketClient.js")
    # a bound port nobody listens on: the connection is refused
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    try:
        reply = page.evaluate("""() => new Promise((resolve) => {
            window.client = new ActionheroWebsocketClient()
            client.action('greet', {name: 'Ann'}, resolve)
        })""")
        assert reply["greeting"] == "Hello, Ann!" and "messageId" not in reply
        assert page.sockets == [] and page.evaluate("() => client.state") == "disconnected"

        closed = blocker.getsockname()[1]
        outcome = page.evaluate("""(url) => new Promise((resolve) => {
            window.events = []
            const lost = new ActionheroWebsocketClient({url: url, reconnect: false})
            for (const name of ['connected', 'disconnected', 'error']) lost.on(name, () => events.push(name))
            lost.connect((error, details) => resolve([String(error && error.message), details, lost.state]))
        })""", f"http://127.0.0.1:{closed}")
        assert outcome == [f"could not connect to ws://127.0.0.1:{closed}/ws", None, "disconnected"]
        assert page.evaluate("() => events") == ["error"]
        assert page.errors == []
    finally:
        blocker.close()
        page.close()


def test_ahtwist_file_reconnects_after_a_server_restart(browser, own_server):
    """ahtwist's ActionHero 19 file after a dropped connection: 'disconnected',
    'reconnecting', then 'reconnect' with ``state`` 'connected' again and its
    rooms joined again."""
    page = ah19_page(browser, own_server, None, url="/public/javascript/ActionheroWebsocketClient.js")
    try:
        page.evaluate("""() => new Promise((resolve) => {
            window.events = []
            window.client = new ActionheroWebsocketClient({reconnectDelay: 100, reconnectDelayMax: 400})
            for (const name of ['connected', 'disconnected', 'reconnecting', 'reconnect']) {
              client.on(name, () => window.events.push(name))
            }
            client.connect(() => client.roomAdd('otherRoom', resolve))
        })""")
        own_server.stop()  # graceful: close 1001, clients may reconnect
        page.wait_for_function("() => client.state === 'reconnecting'")
        assert page.evaluate("() => events.slice(0, 3)") == ["connected", "disconnected", "reconnecting"]
        own_server.start()  # same port
        page.wait_for_function("() => events.includes('reconnect')", timeout=15000)
        assert page.evaluate("() => [client.state, client.rooms]") == ["connected", ["otherRoom"]]
        details = page.evaluate("() => new Promise((resolve) => client.detailsView(resolve))")
        assert details["data"]["rooms"] == ["otherRoom"]
        events = page.evaluate("() => events")
        assert events[:3] == ["connected", "disconnected", "reconnecting"]
        assert set(events[3:-1]) == {"reconnecting"} and events[-1] == "reconnect"
        assert page.errors == []
    finally:
        page.close()
