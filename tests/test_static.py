"""Static files over HTTP (docs/protocol-http.md, 'Static files'): headers, 304 rules, containment."""

import gzip
import os
import tempfile
import zlib
from email.utils import formatdate
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from ahtwist import Action, Input
from tests.helpers import REPO, HTTPClient, make_node

NOT_FOUND = b"That file is not found"


def make_public():
    """A public folder with assorted files, and a secret next to it."""
    root = Path(tempfile.mkdtemp(prefix="ahtwist-static-"))
    public = root / "public"
    (public / "css").mkdir(parents=True)
    (public / "empty-dir").mkdir()
    (public / "docs").mkdir()
    (public / "index.html").write_bytes(b"<h1>index</h1>")
    (public / "docs" / "index.html").write_bytes(b"<h1>docs</h1>")
    files = {
        "style.css": b"body{}",
        "app.js": b"var x;",
        "data.json": b"{}",
        "pic.png": b"\x89PNG",
        "anim.gif": b"GIF89a",
        "favicon.ico": b"\x00\x00",
        "notes.txt": b"notes",
        "blob.unknownext": b"?",
        "noext": b"plain",
        "with space.txt": b"spaced",
        "a+b.txt": b"plus",
        "caf\u00e9.txt": "caf\u00e9".encode(),
    }
    for name, content in files.items():
        (public / name).write_bytes(content)
    (public / "css" / "site.css").write_bytes(b"h1{}")
    (root / "secret.txt").write_bytes(b"top secret")
    os.symlink(root / "secret.txt", public / "leak.txt")
    os.symlink(root, public / "outside")
    os.symlink(public / "notes.txt", public / "alias.txt")
    return root, public


class StaticTestCase(SynchronousTestCase):
    extra = ""

    def setUp(self):
        self.root, self.public = make_public()
        self.client = HTTPClient(
            make_node(f'[general.paths]\npublic = ["{self.public}"]\n' + self.extra, plugins=self.plugins())
        )

    def plugins(self):
        return []

    def get(self, path, **kw):
        return self.client.get(path, **kw)

    def etag(self, name):
        st = os.stat(self.public / name)
        return f'W/"{st.st_size:x}-{int(st.st_mtime * 1000):x}"'


class HeadersTests(StaticTestCase):
    def test_success_headers(self):
        r = self.get("/public/style.css")
        self.assertEqual((r.status, r.body), (200, b"body{}"))
        self.assertEqual(r.header("Content-Type"), "text/css")
        self.assertEqual(r.header("Cache-Control"), "max-age=60, must-revalidate, public")
        self.assertEqual(r.header("ETag"), self.etag("style.css"))
        self.assertEqual(r.header("Content-Length"), "6")
        self.assertIsNone(r.header("Last-Modified"))
        self.assertEqual(r.header("X-Powered-By"), "ahtwist")
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "*")
        self.assertRegex(r.header("Set-Cookie"), "^sessionID=[0-9a-f]{40};path=/;")

    def test_mime_types(self):
        expected = {
            "app.js": "application/javascript",
            "data.json": "application/json",
            "pic.png": "image/png",
            "anim.gif": "image/gif",
            "favicon.ico": "image/x-icon",
            "notes.txt": "text/plain",
            "index.html": "text/html",
            "blob.unknownext": "application/octet-stream",
            "noext": "application/octet-stream",
        }
        for name, mime in expected.items():
            self.assertEqual(self.get(f"/public/{name}").header("Content-Type"), mime, name)

    def test_directory_file_type(self):
        for path in ("/", "/public", "/public/", "/index.html", "/file/index.html"):
            r = self.get(path)
            self.assertEqual((r.status, r.body, r.header("Content-Type")), (200, b"<h1>index</h1>", "text/html"), path)
        self.assertEqual(self.get("/public/docs").body, b"<h1>docs</h1>")
        self.assertEqual(self.get("/public/docs/").body, b"<h1>docs</h1>")
        self.assertEqual(self.get("/public/empty-dir").status, 404)

    def test_percent_decoding(self):
        self.assertEqual(self.get("/public/with%20space.txt").body, b"spaced")
        self.assertEqual(self.get("/public/a+b.txt").body, b"plus")
        self.assertEqual(self.get("/public/caf%C3%A9.txt").body, "caf\u00e9".encode())
        self.assertEqual(self.get("/public/actionhero%20%%%%with+space.png").status, 404)

    def test_head_has_real_length(self):
        r = self.client.request("HEAD", "/public/style.css")
        self.assertEqual((r.status, r.body, r.header("Content-Length")), (200, b"", "6"))
        self.assertEqual(r.header("ETag"), self.etag("style.css"))

    def test_every_method_but_options_serves(self):
        for method in ("POST", "PUT", "DELETE", "PATCH", "TRACE"):
            r = self.client.request(method, "/public/notes.txt")
            self.assertEqual((r.status, r.body), (200, b"notes"), method)

    def test_not_found(self):
        for method, path, headers in (
            ("GET", "/public/nope.html", {}),
            ("POST", "/public/nope.html", {}),
            ("GET", "/public/nope.html", {"If-Modified-Since": formatdate(usegmt=True)}),
            ("GET", "/nope/deeper/still", {}),
        ):
            r = self.client.request(method, path, headers=headers)
            self.assertEqual((r.status, r.body, r.header("Content-Type")), (404, NOT_FOUND, "text/html"), path)
            self.assertEqual(r.header("Content-Length"), "22")
            self.assertIsNone(r.header("Cache-Control"))
            self.assertIsNone(r.header("ETag"))
            self.assertEqual(r.header("X-Powered-By"), "ahtwist")

    def test_symlink_inside_is_served(self):
        self.assertEqual(self.get("/public/alias.txt").body, b"notes")


class ConfigTests(StaticTestCase):
    extra = "[servers.web]\nflatFileCacheDuration = 3600\nenableEtag = false\n"

    def test_cache_duration_and_last_modified(self):
        r = self.get("/public/notes.txt")
        self.assertEqual(r.header("Cache-Control"), "max-age=3600, must-revalidate, public")
        self.assertIsNone(r.header("ETag"))
        self.assertEqual(r.header("Last-Modified"), formatdate(os.stat(self.public / "notes.txt").st_mtime, usegmt=True))
        self.assertEqual(self.get("/public/notes.txt", headers={"If-None-Match": "*"}).status, 200)

    def test_second_public_folder(self):
        other = Path(tempfile.mkdtemp())
        (other / "only-here.txt").write_bytes(b"second")
        (other / "notes.txt").write_bytes(b"shadowed")
        client = HTTPClient(make_node(f'[general.paths]\npublic = ["{self.public}", "{other}"]\n'))
        self.assertEqual(client.get("/public/only-here.txt").body, b"second")
        self.assertEqual(client.get("/public/notes.txt").body, b"notes")


class ConditionalTests(StaticTestCase):
    def assert_304(self, r, etag):
        self.assertEqual((r.status, r.body), (304, b""))
        self.assertIsNone(r.header("Content-Length"))
        self.assertEqual(r.header("Cache-Control"), "max-age=60, must-revalidate, public")
        self.assertEqual(r.header("Content-Type"), "text/plain")
        self.assertEqual(r.header("X-Powered-By"), "ahtwist")
        self.assertEqual(r.header("ETag"), etag)

    def test_if_none_match(self):
        etag = self.etag("notes.txt")
        for value in (etag, "*", f'"other", {etag}', etag[2:], "W/" + etag):
            self.assert_304(self.get("/public/notes.txt", headers={"If-None-Match": value}), etag)
        wrong = self.get("/public/notes.txt", headers={"If-None-Match": 'W/"5-0"'})
        self.assertEqual((wrong.status, wrong.body, wrong.header("ETag")), (200, b"notes", etag))

    def test_no_cache_disables_304(self):
        etag = self.etag("notes.txt")
        r = self.get("/public/notes.txt", headers={"If-None-Match": etag, "Cache-Control": "no-cache"})
        self.assertEqual((r.status, r.body), (200, b"notes"))
        r = self.get("/public/notes.txt", headers={"If-Modified-Since": "Wed, 01 Jan 2098 00:00:00 GMT", "Cache-Control": "max-age=0, no-cache"})
        self.assertEqual(r.status, 200)

    def test_if_modified_since(self):
        mtime = os.stat(self.public / "notes.txt").st_mtime
        for when in (mtime, mtime + 3600):
            r = self.get("/public/notes.txt", headers={"If-Modified-Since": formatdate(when, usegmt=True)})
            self.assertEqual((r.status, r.body), (304, b""))
            self.assertIsNone(r.header("ETag"))
            self.assertEqual(r.header("Cache-Control"), "max-age=60, must-revalidate, public")
        old = self.get("/public/notes.txt", headers={"If-Modified-Since": formatdate(mtime - 3600, usegmt=True)})
        self.assertEqual((old.status, old.body), (200, b"notes"))
        self.assertIsNone(old.header("ETag"))
        garbage = self.get("/public/notes.txt", headers={"If-Modified-Since": "not a date"})
        self.assertEqual(garbage.status, 200)
        self.assertIsNone(garbage.header("ETag"))

    def test_if_modified_since_checked_before_etag(self):
        mtime = os.stat(self.public / "notes.txt").st_mtime
        r = self.get(
            "/public/notes.txt",
            headers={"If-Modified-Since": formatdate(mtime - 3600, usegmt=True), "If-None-Match": self.etag("notes.txt")},
        )
        self.assertEqual(r.status, 200)

    def test_revalidating_twice_gives_the_same_304(self):
        etag = self.get("/public/notes.txt").header("ETag")
        self.assertEqual(self.get("/public/notes.txt", headers={"If-None-Match": etag}).status, 304)


class ContainmentTests(StaticTestCase):
    """No request reaches a file outside the public folder."""

    ATTACKS = (
        "/public/../secret.txt",
        "/public/../../../../etc/passwd",
        "/../secret.txt",
        "/public/%2e%2e/secret.txt",
        "/public/.%2e/secret.txt",
        "/public/%2E%2E/%2E%2E/etc/passwd",
        "/public/css/%2e%2e/index.html",
        "/public/..%2fsecret.txt",
        "/public/css%2f..%2f..%2fsecret.txt",
        "/public/%2fetc%2fpasswd",
        "/public/..%5csecret.txt",
        "/public/..\\secret.txt",
        "/public/css\\..\\..\\secret.txt",
        "/public//etc/passwd",
        "/public/css//site.css",
        "//etc/passwd",
        "/public/notes.txt%00.html",
        "/public/%00",
        "/public/" + "a" * 5000,
        "/public/leak.txt",
        "/public/outside/secret.txt",
        "/public/C:/Windows/win.ini",
        "/file/../secret.txt",
        "/file/%2e%2e/secret.txt",
        "/public/css/../../secret.txt",
    )

    def test_web_paths(self):
        for path in self.ATTACKS:
            r = self.get(path)
            self.assertEqual((r.status, r.body), (404, NOT_FOUND), path)
            self.assertNotIn(b"secret", r.raw.split(b"\r\n\r\n", 1)[0])

    def test_literal_dot_segments_inside_are_allowed(self):
        self.assertEqual(self.get("/public/css/../notes.txt").body, b"notes")
        self.assertEqual(self.get("/public/./notes.txt").body, b"notes")

    def test_file_action_and_api_route(self):
        for name in ("../secret.txt", "/etc/passwd", "css/../../secret.txt", "leak.txt", "outside/secret.txt",
                     "a//b", "..\\secret.txt", "notes.txt\x00", "C:\\x"):
            from urllib.parse import quote

            r = self.get(f"/api?action=file&fileName={quote(name)}")
            self.assertEqual((r.status, r.body), (404, NOT_FOUND), name)
        for path in ("/api/file/../secret.txt", "/api/file/%2e%2e/secret.txt", "/api/file/..%2fsecret.txt",
                     "/api/file/leak.txt"):
            r = self.get(path)
            self.assertEqual((r.status, r.body), (404, NOT_FOUND), path)
        self.assertEqual(self.get("/api/file/css/site.css").body, b"h1{}")
        self.assertEqual(self.get("/api/file/with%20space.txt").body, b"spaced")

    def test_resolver_used_by_other_transports(self):
        files = self.client.node.files
        self.assertIsNone(files.resolve("../secret.txt"))
        self.assertIsNone(files.resolve("leak.txt"))
        self.assertIsNone(files.resolve("%2e%2e/secret.txt"))  # not decoded: a literal, missing name
        self.assertEqual(files.resolve("css/site.css").size, 4)
        self.assertIsNone(files.resolve_absolute(str(self.root / "secret.txt")))
        self.assertEqual(files.resolve_absolute(str(self.public / "notes.txt")).size, 5)


class FileActionTests(StaticTestCase):
    def plugins(self):
        public = None

        class SendsFile(Action):
            name = "sendsFile"
            description = "sends a file itself"
            inputs = {"which": Input(required=True)}

            def run(self, data):
                data.to_render = False
                data.connection.raw.response_headers.append(("Cache-Control", "no-store"))
                data.connection.send_file(data.params["which"])

        class SendsBytes(Action):
            name = "sendsBytes"
            description = "sends bytes"

            def run(self, data):
                data.to_render = False
                data.connection.raw.send_bytes(b"a,b\n1,2\n", "text/csv")

        class SendsStream(Action):
            name = "sendsStream"
            description = "sends a stream of unknown length"

            def run(self, data):
                import io

                data.to_render = False
                data.connection.raw.send_stream(io.BytesIO(b"streamed"), "text/plain")

        del public
        return [SendsFile, SendsBytes, SendsStream]

    def test_same_file_three_ways(self):
        direct = self.get("/public/notes.txt")
        for path in ("/file/notes.txt", "/api/file/notes.txt", "/api?action=file&fileName=notes.txt"):
            r = self.get(path)
            self.assertEqual((r.status, r.body), (200, b"notes"), path)
            for name in ("Content-Type", "Cache-Control", "ETag", "Content-Length"):
                self.assertEqual(r.header(name), direct.header(name), (path, name))

    def test_missing_file_name(self):
        r = self.get("/api?action=file")
        self.assertEqual((r.status, r.json()["error"]), (422, "fileName is a required parameter for this action"))

    def test_file_action_conditional(self):
        etag = self.etag("notes.txt")
        self.assertEqual(self.get("/api/file/notes.txt", headers={"If-None-Match": etag}).status, 304)

    def test_root_api_mode_query(self):
        client = HTTPClient(make_node(f'[general.paths]\npublic = ["{self.public}"]\n[servers.web]\nrootEndpointType = "api"\n'))
        self.assertEqual(client.get("/?action=file&fileName=notes.txt").body, b"notes")

    def test_action_send_file_keeps_its_cache_control(self):
        r = self.get("/api/sendsFile?which=notes.txt")
        self.assertEqual((r.status, r.body, r.header("Cache-Control")), (200, b"notes", "no-store"))
        self.assertEqual(self.get("/api/sendsFile?which=" + str(self.public / "notes.txt")).body, b"notes")
        self.assertEqual(self.get("/api/sendsFile?which=" + str(self.root / "secret.txt")).status, 404)

    def test_send_bytes_and_stream(self):
        r = self.get("/api/sendsBytes")
        self.assertEqual((r.status, r.body, r.header("Content-Type"), r.header("Content-Length")), (200, b"a,b\n1,2\n", "text/csv", "8"))


class CompressedFileTests(StaticTestCase):
    extra = "[servers.web]\ncompress = true\n"

    def test_gzip_file_streamed_without_length(self):
        r = self.get("/public/notes.txt", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(r.header("Content-Encoding"), "gzip")
        self.assertIsNone(r.header("Content-Length"))
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        self.assertEqual(gzip.decompress(r.body), b"notes")
        r = self.get("/public/notes.txt", headers={"Accept-Encoding": "deflate"})
        self.assertEqual(zlib.decompress(r.body), b"notes")


class BundledPublicTests(SynchronousTestCase):
    def test_bundled_files(self):
        client = HTTPClient(make_node())
        simple = client.get("/public/simple.html")
        self.assertEqual(simple.body, (REPO / "public" / "simple.html").read_bytes())
        self.assertEqual(len(simple.body), 101)
        self.assertEqual(client.get("/").body, (REPO / "public" / "index.html").read_bytes())


class StreamingTests(StaticTestCase):
    def setUp(self):
        super().setUp()
        self.big = os.urandom(300 * 1024)
        (self.public / "big.bin").write_bytes(self.big)

    def test_large_file_streamed_whole(self):
        r = self.get("/public/big.bin")
        self.assertEqual((r.status, r.header("Content-Length")), (200, str(len(self.big))))
        self.assertEqual(r.body, self.big)

    def test_backpressure_pauses_the_file(self):
        from tests.helpers import parse_response

        protocol, transport = self.client.connect()
        protocol.dataReceived(b"GET /public/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        protocol.pauseProducing()  # what the TCP transport does when its buffer is full
        clock = self.client.node.reactor
        for _ in range(10):
            clock.advance(0)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(clock.getDelayedCalls(), [])
        protocol.resumeProducing()
        self.client.pump()
        response, _ = parse_response(transport.value())
        self.assertEqual(response.body, self.big)

    def test_client_gone_mid_stream_releases_everything(self):
        import gc

        protocol, transport = self.client.connect()
        protocol.dataReceived(b"GET /public/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        import io

        opened = [
            o for o in gc.get_objects() if isinstance(o, io.BufferedReader) and o.name == str(self.public / "big.bin")
        ]
        protocol.connectionLost(None)
        self.client.pump()
        self.assertEqual(self.client.node.reactor.getDelayedCalls(), [])
        self.assertTrue(opened and all(f.closed for f in opened))
        self.assertEqual(transport.value(), b"")

    def test_stream_of_unknown_length_is_chunked(self):
        class SendsStream(Action):
            name = "sendsStream"
            description = "sends a stream of unknown length"

            def run(self, data):
                import io

                data.to_render = False
                data.connection.raw.send_stream(io.BytesIO(b"streamed"), "text/plain")

        client = HTTPClient(make_node(plugins=[SendsStream]))
        r = client.get("/api/sendsStream")
        self.assertEqual((r.status, r.body, r.header("Transfer-Encoding")), (200, b"streamed", "chunked"))
        self.assertEqual(r.header("Content-Type"), "text/plain")
