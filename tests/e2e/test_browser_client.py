"""``actionheroClient.js`` in headless Chromium against a real ``twistd ahtwist``.

Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright's Python
package (never ``playwright install``).  A missing browser fails these tests
unless ``AHTWIST_ALLOW_SKIP=1``.

Every page is served by the real server: :func:`load_client` opens
``/chat.html`` (which loads ``/public/javascript/actionheroClient.js``) and the
tests drive their own ``ActionheroClient`` in it; ``/ws`` and ``/api`` are the
same server.
"""

from pathlib import Path

from tests.e2e.twistd import AhtwistProcess
from tests.e2e.ws_blocking import BlockingWebSocket

REPO = Path(__file__).resolve().parents[2]
CLIENT_JS = REPO / "public" / "javascript" / "actionheroClient.js"
CHAT_HTML = REPO / "public" / "chat.html"


def load_client(page, server: AhtwistProcess) -> None:
    """Open the demo page, served by the server itself; it loads the library."""
    page.goto(f"{server.http_url}/chat.html")


def new_page(browser, server: AhtwistProcess, **options):
    """A page with ``window.client`` (not yet connected) and event recorders:
    ``window.events`` lists event names, ``window.said`` the chat messages."""
    page = browser.new_page()
    page.on("pageerror", lambda error: print("page error:", error))
    load_client(page, server)
    settings = {
        "url": server.ws_url,
        "apiUrl": server.http_url + "/api",
        "timeout": 5000,
        "reconnectDelay": 100,
        "reconnectDelayMax": 400,
        **options,
    }
    page.evaluate(
        """(settings) => {
            window.events = []
            window.said = []
            window.client = new ActionheroClient(settings)
            for (const name of ['connected', 'disconnected', 'reconnecting', 'reconnect',
                                'timeout', 'welcome', 'say']) {
              window.client.on(name, () => window.events.push(name))
            }
            window.client.on('say', (message) => window.said.push(message))
        }""",
        settings,
    )
    return page


def connect(page) -> dict:
    return page.evaluate("() => client.connect()")


def wait_for(page, expression: str, arg=None, timeout: float = 10000) -> None:
    page.wait_for_function(expression, arg=arg, timeout=timeout)


def test_connect_run_an_action_and_read_details(browser, server):
    page = new_page(browser, server)
    try:
        details = connect(page)
        assert details["params"] == {} and details["rooms"] == []
        assert page.evaluate("() => [client.state, client.id, client.welcomeMessage]") == [
            "connected", details["id"], "Hello! Welcome to the actionhero api"
        ]
        reply = page.evaluate("() => client.action('randomNumber')")
        assert list(reply) == ["randomNumber", "stringRandomNumber", "context", "messageCount", "messageId"]
        assert reply["stringRandomNumber"] == f"Your random number is {reply['randomNumber']}"
        error = page.evaluate("() => client.action('cacheTest', {key: 'abc'})")
        assert error["error"] == "value is a required parameter for this action"
        assert page.evaluate("() => client.file('simple.html')")["length"] == 101
        documentation = page.evaluate("() => client.documentation()")
        assert "randomNumber" in documentation["data"]
        assert page.evaluate("() => window.events") == ["connected", "welcome"]
    finally:
        page.close()


def test_callbacks_and_concurrent_replies_matched_by_message_id(browser, server):
    page = new_page(browser, server)
    try:
        details = page.evaluate(
            "() => new Promise((resolve) => client.connect((error, details) => resolve([error, details])))"
        )
        assert details[0] is None and details[1]["id"]
        durations = page.evaluate(
            """() => Promise.all([500, 400, 300, 200, 100].map((ms) =>
                 new Promise((resolve) => client.action('sleepTest', {sleepDuration: ms},
                                                        (reply) => resolve(reply.sleepDuration)))))"""
        )
        assert durations == [500, 400, 300, 200, 100]
        too_many = page.evaluate(
            """() => Promise.all([1, 2, 3, 4, 5, 6].map(() =>
                 client.action('sleepTest', {sleepDuration: 200}))).then((r) => r.map((x) => x.error || 'ok'))"""
        )
        assert sorted(too_many) == ["ok"] * 5 + ["you have too many pending requests"]
    finally:
        page.close()


def test_per_request_timeout(browser, server):
    page = new_page(browser, server, timeout=300)
    try:
        connect(page)
        outcome = page.evaluate(
            "() => client.action('sleepTest', {sleepDuration: 1500}).then(() => 'resolved', (e) => e.message)"
        )
        assert outcome == "timeout"
        assert "timeout" in page.evaluate("() => window.events")
        # the late reply is ignored; the next request is matched correctly
        page.wait_for_timeout(1400)
        assert page.evaluate("() => client.action('randomNumber')")["randomNumber"] >= 0
    finally:
        page.close()


def test_two_browsers_and_a_python_client_chat_in_one_room(browser, server):
    alice, bob = new_page(browser, server), new_page(browser, server)
    python = BlockingWebSocket(server.ws_url)
    try:
        python.recv()  # welcome
        assert python.request({"event": "roomAdd", "room": "defaultRoom"})["status"] == "OK"
        alice_id = connect(alice)["id"]
        bob_id = connect(bob)["id"]
        for page in (alice, bob):
            reply = page.evaluate("() => client.roomAdd('defaultRoom')")
            assert (reply["status"], reply["data"]) == ("OK", True)
            assert page.evaluate("() => client.rooms") == ["defaultRoom"]
        assert alice.evaluate("() => client.say('defaultRoom', 'hello bob')")["status"] == "OK"
        wait_for(bob, "() => window.said.length === 1")
        heard = bob.evaluate("() => window.said[0]")
        assert {k: heard[k] for k in ("message", "room", "from", "context")} == {
            "message": "hello bob", "room": "defaultRoom", "from": alice_id, "context": "user"
        }
        assert python.recv()["message"] == "hello bob"
        python.request({"event": "say", "room": "defaultRoom", "message": "hi from python"})
        for page in (alice, bob):
            wait_for(page, "() => window.said.some((m) => m.message === 'hi from python')")
        view = bob.evaluate("() => client.roomView('defaultRoom')")
        assert {alice_id, bob_id} <= set(view["data"]["members"])
        assert bob.evaluate("() => client.roomLeave('defaultRoom')")["data"] is True
        assert bob.evaluate("() => client.rooms") == []
        not_member = bob.evaluate("() => client.say('defaultRoom', 'nope')")
        assert not_member["error"] == "connection not in this room (defaultRoom)"
    finally:
        python.close()
        alice.close()
        bob.close()


def test_http_fallback_while_not_connected(browser, server):
    page = new_page(browser, server)
    try:
        before = page.evaluate("() => client.action('randomNumber')")
        assert "serverInformation" in before and "requesterInformation" in before  # HTTP reply
        connect(page)
        assert "serverInformation" not in page.evaluate("() => client.action('randomNumber')")
        page.evaluate("() => client.disconnect()")
        assert page.evaluate("() => client.state") == "disconnected"
        after = page.evaluate("() => client.action('cacheTest', {key: 'abc', value: 'def'})")
        assert after["cacheTestResults"]["saveResp"] is True
        assert after["requesterInformation"]["receivedParams"]["action"] == "cacheTest"
        rejected = page.evaluate("() => client.roomView('defaultRoom').then(() => 'resolved', (e) => e.message)")
        assert rejected == "not connected"
        assert page.evaluate("() => window.events").count("reconnecting") == 0
    finally:
        page.close()


def test_reconnects_after_a_server_restart_and_rejoins_its_rooms(browser, own_server):
    page = new_page(browser, own_server)
    try:
        first_id = connect(page)["id"]
        page.evaluate("() => client.roomAdd('otherRoom')")
        own_server.stop()  # graceful: close 1001, clients may reconnect
        wait_for(page, "() => client.state === 'reconnecting'")
        assert page.evaluate("() => window.events.includes('disconnected')")
        # while the server is down, an action falls back to HTTP, which fails too
        down = page.evaluate("() => client.action('randomNumber').then(() => 'resolved', (e) => e.message)")
        assert down.startswith("http request failed")
        while_down = page.evaluate(
            "() => { window.queued = client.detailsView(); return client.state }"
        )
        assert while_down == "reconnecting"
        own_server.start()  # same port
        wait_for(page, "() => window.events.includes('reconnect')", timeout=15000)
        # queued while down, sent once the connection was back, after the rejoin
        details = page.evaluate("() => window.queued")
        assert details["data"]["id"] != first_id
        assert details["data"]["rooms"] == ["otherRoom"]
        assert page.evaluate("() => client.rooms") == ["otherRoom"]
        assert page.evaluate("() => client.state") == "connected"
        python = BlockingWebSocket(own_server.ws_url)
        try:
            python.recv()
            python.request({"event": "roomAdd", "room": "otherRoom"})
            python.request({"event": "say", "room": "otherRoom", "message": "welcome back"})
            wait_for(page, "() => window.said.some((m) => m.message === 'welcome back')")
        finally:
            python.close()
    finally:
        page.close()


def test_no_reconnect_when_the_server_destroys_clients_on_shutdown(browser, tmp_path):
    config = tmp_path / "ahtwist.toml"
    config.write_text("[servers.websocket]\ndestroyClientsOnShutdown = true\n")
    process = AhtwistProcess(config=str(config)).start()
    page = new_page(browser, process)
    try:
        connect(page)
        process.stop()
        wait_for(page, "() => client.state === 'disconnected'")
        page.wait_for_timeout(500)
        events = page.evaluate("() => window.events")
        assert "disconnected" in events and "reconnecting" not in events
    finally:
        page.close()
        process.cleanup()


def test_the_demo_page_joins_chats_and_runs_an_action(browser, server):
    """chat.html as the server serves it, chatting with a Python websocket client."""
    page = browser.new_page()
    python = BlockingWebSocket(server.ws_url)
    try:
        python.recv()
        python.request({"event": "roomAdd", "room": "defaultRoom"})
        page.goto(f"{server.http_url}/chat.html")
        # the demo adds only window.chatClient, so tests (and users) may name theirs `client`
        assert page.evaluate("() => [typeof client, typeof $, typeof note]") == ["undefined"] * 3
        wait_for(page, "() => document.getElementById('state').textContent === 'connected'")
        page.click("#join")
        wait_for(page, "() => document.getElementById('rooms').textContent === 'in: defaultRoom'")
        page.fill("#message", "hello from the demo")
        page.click("#send")
        wait_for(page, "() => document.getElementById('messages').textContent.includes('hello from the demo')")
        assert python.recv()["message"] == "hello from the demo"
        python.request({"event": "say", "room": "defaultRoom", "message": "hi demo"})
        wait_for(page, "() => document.getElementById('messages').textContent.includes('hi demo')")
        page.fill("#actionName", "cacheTest")
        page.fill("#actionParams", '{"key": "abc", "value": "def"}')
        page.click("#runAction")
        wait_for(page, "() => document.getElementById('actionResult').textContent.includes('cacheTestResults')")
        assert page.evaluate("() => document.getElementById('me').textContent") == page.evaluate(
            "() => window.chatClient.id"
        )
    finally:
        python.close()
        page.close()


def test_the_minified_copy_works(browser, server):
    page = new_page(browser, server)
    try:
        page.evaluate("() => { delete window.ActionheroClient }")
        page.add_script_tag(url=f"{server.http_url}/public/javascript/actionheroClient.min.js")
        page.evaluate("(url) => { window.client = new ActionheroClient({url}) }", server.ws_url)
        connect(page)
        assert page.evaluate("() => client.action('randomNumber')")["context"] == "response"
    finally:
        page.close()


def test_reconnect_back_off_doubles_up_to_the_maximum(browser, server):
    """A stand-in WebSocket that opens once, then drops and refuses: the
    client retries after 20, 40, 80, 80 ms and says so in 'reconnecting'."""
    page = new_page(browser, server)
    try:
        delays = page.evaluate(
            """() => new Promise((resolve) => {
                let made = 0
                class FakeSocket extends EventTarget {
                  constructor () {
                    super()
                    this.readyState = 0
                    const first = made++ === 0
                    setTimeout(() => {
                      if (first) {
                        this.readyState = 1
                        this.dispatchEvent(new Event('open'))
                        setTimeout(() => this._close(1006), 5)
                      } else {
                        this._close(1006)
                      }
                    }, 1)
                  }
                  _close (code) {
                    this.readyState = 3
                    const event = new Event('close')
                    event.code = code
                    this.dispatchEvent(event)
                  }
                  send () {}
                  close () { this._close(1000) }
                }
                const fake = new ActionheroClient({url: 'ws://fake/ws', WebSocket: FakeSocket,
                  reconnectDelay: 20, reconnectDelayMax: 80, reconnectAttempts: 4})
                const seen = []
                fake.on('reconnecting', (info) => seen.push([info.attempt, info.delay]))
                fake.on('disconnected', () => { if (seen.length === 4) resolve({seen, state: fake.state}) })
                fake.connect().catch(() => {})  // its detailsView dies with the socket
            })"""
        )
        assert delays == {"seen": [[1, 20], [2, 40], [3, 80], [4, 80]], "state": "disconnected"}
    finally:
        page.close()


def test_a_browser_and_a_telnet_client_chat_in_one_room(browser):
    """The browser's websocket and a plain TCP line client share the room."""
    import json
    import socket

    from tests.helpers import free_port

    socket_port = free_port()
    process = AhtwistProcess(extra=("--socket", f"tcp:{socket_port}:interface=127.0.0.1")).start()
    page = new_page(browser, process)
    telnet = socket.create_connection(("127.0.0.1", socket_port), timeout=10)
    lines = telnet.makefile("rb")
    try:
        assert json.loads(lines.readline()) == {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}
        telnet.sendall(b"roomAdd defaultRoom\r\n")
        assert json.loads(lines.readline())["status"] == "OK"
        telnet.sendall(b"detailsView\r\n")
        telnet_id = json.loads(lines.readline())["data"]["id"]
        browser_id = connect(page)["id"]
        assert page.evaluate("() => client.roomAdd('defaultRoom')")["data"] is True

        page.evaluate("() => client.say('defaultRoom', 'hello from the browser')")
        chat = json.loads(lines.readline())
        assert (chat["message"], chat["room"], chat["from"], chat["context"]) == (
            "hello from the browser", "defaultRoom", browser_id, "user"
        )
        assert list(chat) == ["message", "room", "from", "context", "sentAt"]

        telnet.sendall(b"say defaultRoom hello  from telnet\r\n")
        assert json.loads(lines.readline())["status"] == "OK"
        wait_for(page, "() => window.said.some((m) => m.message === 'hello  from telnet')")
        said = page.evaluate("() => window.said.find((m) => m.message === 'hello  from telnet')")
        assert (said["from"], said["room"], said["context"]) == (telnet_id, "defaultRoom", "user")
        # the browser's own message came back to it too (sender included)
        assert page.evaluate("() => window.said.some((m) => m.message === 'hello from the browser')")
    finally:
        telnet.close()
        page.close()
        process.cleanup()


class GatedProxy:
    """A TCP relay to the server the test can close: while closed, every
    connection (open or new) is cut, so a browser reconnects only when the
    test opens it again (no waiting on timers)."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.pairs: list = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.close()
            except OSError:
                pass

    def cut(self) -> None:
        """Refuse new connections and drop the open ones (a network outage)."""
        import socket

        self.open = False
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.cut()
        self.listener.close()


def demo_lines(page) -> list[str]:
    """The chat lines of the demo page (not its notes), without the sender."""
    return page.evaluate(
        "() => [...document.querySelectorAll('#messages li')]"
        ".filter((li) => li.querySelector('.from')).map((li) => li.lastChild.textContent)"
    )


def wait_for_line(page, text: str) -> None:
    """Until the demo page shows the chat line ``text`` (its whole text: the
    page's text as one string also holds "defaultRoom6c1d…" where a note
    meets a sender id, so ``includes('m6')`` can match before m6 arrived)."""
    wait_for(page, "(text) => [...document.querySelectorAll('#messages li')]"
             ".some((li) => li.querySelector('.from') && li.lastChild.textContent === text)", text)


def test_the_demo_chat_resumes_after_a_network_drop_and_a_server_restart(browser, own_server):
    """The bundled client (resume on in the demo) rejoins from its last
    offset: messages said while it was away show up once each, in order --
    across a dropped connection (recovered) and across a server restart
    (in-memory history: a new epoch, recovered false, and everything said
    since the restart delivered)."""
    proxy = GatedProxy(own_server.port)
    page = browser.new_page()
    python = BlockingWebSocket(own_server.ws_url)
    try:
        python.recv()
        python.request({"event": "roomAdd", "room": "defaultRoom"})
        page.goto(f"http://127.0.0.1:{proxy.port}/chat.html")
        wait_for(page, "() => document.getElementById('state').textContent === 'connected'")
        page.evaluate(
            "() => { window.resumes = []; window.chatClient.on('resumed', (info) => window.resumes.push(info)) }"
        )
        page.click("#join")
        wait_for(page, "() => document.getElementById('rooms').textContent === 'in: defaultRoom'")
        python.request({"event": "say", "room": "defaultRoom", "message": "m1"})
        wait_for_line(page, "m1")

        proxy.cut()  # the network goes away; the server keeps running
        wait_for(page, "() => window.chatClient.state === 'reconnecting'")
        for text in ("m2", "m3"):
            python.request({"event": "say", "room": "defaultRoom", "message": text})
        proxy.open = True
        wait_for(page, "() => window.resumes.length === 1", timeout=30000)
        resumed = page.evaluate("() => window.resumes[0]")
        assert (resumed["room"], resumed["recovered"], resumed["offset"]) == ("defaultRoom", True, 3)
        wait_for_line(page, "m3")
        assert demo_lines(page) == ["m1", "m2", "m3"]

        proxy.cut()
        python.close()
        own_server.stop()
        own_server.start()  # same port; in-memory history starts again
        wait_for(page, "() => window.chatClient.state === 'reconnecting'")
        python = BlockingWebSocket(own_server.ws_url)
        python.recv()
        python.request({"event": "roomAdd", "room": "defaultRoom"})
        for text in ("m4", "m5"):
            python.request({"event": "say", "room": "defaultRoom", "message": text})
        proxy.open = True
        wait_for(page, "() => window.resumes.length === 2", timeout=30000)
        resumed = page.evaluate("() => window.resumes[1]")
        assert (resumed["recovered"], resumed["offset"]) == (False, 2)
        assert resumed["epoch"] != page.evaluate("() => window.resumes[0].epoch")
        python.request({"event": "say", "room": "defaultRoom", "message": "m6"})
        wait_for_line(page, "m6")
        assert demo_lines(page) == ["m1", "m2", "m3", "m4", "m5", "m6"]
        notes = page.evaluate("() => document.getElementById('messages').textContent")
        assert "some messages of defaultRoom may be missing (history lost)" in notes
    finally:
        python.close()
        page.close()
        proxy.close()
