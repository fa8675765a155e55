"""Multipart uploads: fields and files, limits, temporary files' lifetime."""

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from ahtwist import Action
from tests.helpers import HTTPClient, make_node

BOUNDARY = "----ahtwistBoundary7MA4YWxkTrZu0gW"


def multipart(parts):
    """parts: (name, value) for fields, (name, filename, content_type, bytes) for files."""
    out = b""
    for part in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        if len(part) == 2:
            name, value = part
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
        else:
            name, filename, ctype, content = part
            out += (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n"
            ).encode() + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


class Inspect(Action):
    name = "inspect"
    description = "describes its uploads, optionally moving one away"
    seen: dict = {}

    def run(self, data):
        raw = data.connection.raw
        described = {}
        for key, value in raw.files.items():
            items = value if isinstance(value, list) else [value]
            described[key] = []
            for item in items:
                with open(item["path"], "rb") as f:
                    content = f.read()
                Inspect.seen.setdefault("paths", []).append(item["path"])
                described[key].append({**{k: v for k, v in item.items() if k != "path"}, "content": content.decode("latin-1")})
        move_to = raw.body.get("moveTo")
        if move_to:
            first = raw.files["doc"]
            shutil.move(first["path"], move_to)
        data.response["files"] = described
        data.response["fields"] = raw.body


class UploadTests(SynchronousTestCase):
    def setUp(self):
        Inspect.seen = {}
        self.upload_dir = tempfile.mkdtemp(prefix="ahtwist-uploads-")

    def client(self, extra=""):
        text = f'[general]\ndisableParamScrubbing = true\n[servers.web.formOptions]\nuploadDir = "{self.upload_dir}"\n' + extra
        return HTTPClient(make_node(text, plugins=[Inspect]))

    def post(self, client, parts, path="/api/inspect"):
        return client.request(
            "POST", path, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, body=multipart(parts)
        )

    def test_several_files_and_fields(self):
        r = self.post(
            self.client(),
            [
                ("title", "hello"),
                ("tag", "a"),
                ("tag", "b"),
                ("doc", "report.pdf", "application/pdf", b"%PDF-1.4"),
                ("pics", "one.png", "image/png", b"\x89PNG one"),
                ("pics", "two.png", "image/png", b"\x89PNG two!"),
            ],
        )
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        self.assertEqual(body["fields"], {"title": "hello", "tag": ["a", "b"]})
        self.assertEqual(body["files"]["doc"], [{"name": "report.pdf", "type": "application/pdf", "size": 8, "content": "%PDF-1.4"}])
        self.assertEqual([f["name"] for f in body["files"]["pics"]], ["one.png", "two.png"])
        self.assertEqual([f["size"] for f in body["files"]["pics"]], [8, 9])
        for path in Inspect.seen["paths"]:
            self.assertEqual(os.path.dirname(path), self.upload_dir)
            self.assertFalse(path.endswith(".png"))
            self.assertFalse(os.path.exists(path), "removed after the response")
        self.assertEqual(os.listdir(self.upload_dir), [])

    def test_file_param_shape_in_params(self):
        class Shape(Action):
            name = "shape"
            description = "returns the file param"
            inputs = {}

            def run(self, data):
                doc = dict(data.connection.raw.files["doc"])
                doc["path"] = os.path.dirname(doc["path"])
                data.response["doc"] = doc

        client = HTTPClient(make_node(f'[servers.web.formOptions]\nuploadDir = "{self.upload_dir}"\n', plugins=[Shape]))
        r = self.post(client, [("doc", "a.txt", "text/plain", b"abc")], "/api/shape")
        self.assertEqual(r.json()["doc"], {"path": self.upload_dir, "name": "a.txt", "type": "text/plain", "size": 3})

    def test_keep_extensions(self):
        r = self.post(self.client("keepExtensions = true\n"), [("doc", "report.tar.gz", "application/gzip", b"x")])
        self.assertEqual(r.status, 200)
        self.assertTrue(Inspect.seen["paths"][0].endswith(".gz"))

    def test_moved_file_is_kept(self):
        target = os.path.join(tempfile.mkdtemp(), "kept.pdf")
        r = self.post(self.client(), [("moveTo", target), ("doc", "report.pdf", "application/pdf", b"%PDF")])
        self.assertEqual(r.status, 200)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"%PDF")
        self.assertEqual(os.listdir(self.upload_dir), [])

    def test_file_over_limit(self):
        client = self.client("maxFileSize = 1000\n")
        r = self.post(client, [("doc", "big.bin", "application/octet-stream", b"x" * 1001)])
        self.assertEqual((r.status, r.json()["error"]), (413, "request body is too large"))
        self.assertEqual(os.listdir(self.upload_dir), [])
        ok = self.post(self.client("maxFileSize = 1000\n"), [("doc", "ok.bin", "application/octet-stream", b"x" * 1000)])
        self.assertEqual(ok.status, 200)

    def test_total_files_over_limit(self):
        client = self.client("maxFileSize = 1000\nmaxTotalFileSize = 1500\n")
        r = self.post(
            client,
            [("a", "a.bin", "application/octet-stream", b"x" * 800), ("b", "b.bin", "application/octet-stream", b"y" * 800)],
        )
        self.assertEqual((r.status, r.json()["error"]), (413, "request body is too large"))
        self.assertEqual(os.listdir(self.upload_dir), [])

    def test_fields_over_limit(self):
        r = self.post(self.client("maxFieldsSize = 100\n"), [("title", "t" * 101)])
        self.assertEqual((r.status, r.json()["error"]), (413, "request body is too large"))

    def test_files_do_not_count_against_fields_limit(self):
        r = self.post(self.client("maxFieldsSize = 100\n"), [("doc", "a.bin", "application/octet-stream", b"z" * 5000)])
        self.assertEqual(r.status, 200)

    def test_client_gone_mid_upload_leaves_no_file(self):
        client = self.client()
        protocol, transport = client.connect()
        body = multipart([("doc", "a.bin", "application/octet-stream", b"q" * 5000)])
        protocol.dataReceived(
            f"POST /api/inspect HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:3000]
        )
        self.assertEqual(len(os.listdir(self.upload_dir)), 1)
        protocol.connectionLost(None)
        self.assertEqual(os.listdir(self.upload_dir), [])
