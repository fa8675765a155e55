"""The HTTP action API (docs/protocol-http.md) through the real WebSite, in memory."""

import gzip
import json
import re
import zlib

from twisted.trial.unittest import SynchronousTestCase

from ahtwist import Action, ActionError, Input
from ahtwist.proxies import parse_forwarded_for
from tests.helpers import HTTPClient, make_node, parse_response

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
FP = r"[0-9a-f]{40}"

DEFAULT_HEADERS = {
    "X-Powered-By": "ahtwist",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "HEAD, GET, POST, PUT, PATCH, DELETE, OPTIONS, TRACE",
    "Access-Control-Allow-Headers": "Content-Type",
}


class Echo(Action):
    """Echoes its params (scrubbed to its inputs)."""

    name = "echo"
    description = "echo"
    inputs = {"a": Input(), "b": Input(), "userID": Input(), "payload": Input(), "fileField": Input()}

    def run(self, data):
        data.response["params"] = dict(data.params)


class Boom(Action):
    name = "boom"
    description = "raises a bug"

    def run(self, data):
        raise RuntimeError("secret detail")


class Refuse(Action):
    name = "refuse"
    description = "an intended error"

    def run(self, data):
        raise ActionError({"error": "broken", "reason": "stuff"})


class Payment(Action):
    name = "payment"
    description = "sets its own status and headers"

    def run(self, data):
        raw = data.connection.raw
        raw.response_code = 402
        raw.response_headers.append(("Set-Cookie", "value_1=1"))
        raw.response_headers.append(("Set-Cookie", "value_2=2"))
        raw.response_headers.append(("x-powered-by", "not ahtwist"))
        raw.response_headers.append(("X-Evil", "a\r\nInjected: yes"))
        data.response["paid"] = False


class MimeTest(Action):
    name = "mimeTestAction"
    description = "answers with the extension's type"
    match_extension_mime_type = True

    def run(self, data):
        data.response = "not json"


class MimeObject(Action):
    name = "mimeObject"
    description = "an object under a non-JSON type"
    match_extension_mime_type = True

    def run(self, data):
        data.response["a"] = 1


class Silent(Action):
    name = "silent"
    description = "toRender false and sends nothing"

    def run(self, data):
        data.to_render = False


PLUGINS = [Echo, Boom, Refuse, Payment, MimeTest, MimeObject, Silent]


def client(text="", plugins=PLUGINS):
    return HTTPClient(make_node(text, plugins=plugins))


class RandomNumberTests(SynchronousTestCase):
    def test_response_shape_headers_and_cookie(self):
        r = client().get("/api/randomNumber")
        self.assertEqual((r.status, r.reason), (200, "OK"))
        for name, value in DEFAULT_HEADERS.items():
            self.assertEqual(r.header(name), value)
        self.assertEqual(r.header("Content-Type"), "application/json; charset=utf-8")
        self.assertEqual(int(r.header("Content-Length")), len(r.body))
        self.assertNotIn("server", r.header_names)
        self.assertNotIn("transfer-encoding", r.header_names)
        # ManualClock starts at 1795627006 s; cookie expires one hour later;
        # HttpOnly and SameSite=Lax by default (issue 12, item 1)
        self.assertRegex(
            r.header("Set-Cookie"),
            rf"^sessionID=({FP});path=/;expires=Wed, 25 Nov 2026 18:16:46 GMT;HttpOnly;SameSite=Lax;$",
        )
        fingerprint = re.match(r"sessionID=(\w+);", r.header("Set-Cookie")).group(1)
        body = r.json()
        self.assertEqual(
            list(body), ["randomNumber", "stringRandomNumber", "serverInformation", "requesterInformation"]
        )
        self.assertIsInstance(body["randomNumber"], float)
        self.assertTrue(0 <= body["randomNumber"] < 1)
        number_text = re.search(rb'"randomNumber": ([^,]+),', r.body).group(1).decode()
        self.assertEqual(body["stringRandomNumber"], f"Your random number is {number_text}")
        self.assertEqual(
            body["serverInformation"],
            {"serverName": "ahtwist", "apiVersion": "0.1.0", "requestDuration": 0, "currentTime": 1795627006000},
        )
        info = body["requesterInformation"]
        self.assertEqual(list(info), ["id", "fingerprint", "messageId", "remoteIP", "receivedParams"])
        self.assertEqual(info["fingerprint"], fingerprint)
        self.assertRegex(info["messageId"], f"^{UUID}$")
        self.assertEqual(info["id"], f"{fingerprint}-{info['messageId']}")
        self.assertEqual(info["remoteIP"], "127.0.0.1")
        self.assertEqual(info["receivedParams"], {"action": "randomNumber", "apiVersion": 1})

    def test_padding_is_two_spaces_and_non_ascii_unescaped(self):
        r = client().get("/api/echo?a=%C3%A9t%C3%A9")
        self.assertIn(b'\n  "params": {\n    "a": "\xc3\xa9t\xc3\xa9",', r.body)

    def test_cookie_keeps_fingerprint_and_sends_no_set_cookie(self):
        r = client().get("/api/randomNumber", headers={"Cookie": "other=1; sessionID=abc123"})
        self.assertIsNone(r.header("Set-Cookie"))
        info = r.json()["requesterInformation"]
        self.assertEqual(info["fingerprint"], "abc123")
        self.assertRegex(info["id"], f"^abc123-{UUID}$")

    def test_fingerprint_header(self):
        r = client().get("/api/randomNumber", headers={"X-Sessionid": "fromheader"})
        self.assertIsNone(r.header("Set-Cookie"))
        self.assertEqual(r.json()["requesterInformation"]["fingerprint"], "fromheader")

    def test_static_fingerprint_is_stable(self):
        c = client('[servers.web.fingerprintOptions]\nonlyStaticElements = true\ntoSetCookie = false\n')
        one = c.get("/api/randomNumber", headers={"User-Agent": "x"})
        two = c.get("/api/randomNumber", headers={"User-Agent": "x"})
        other = c.get("/api/randomNumber", headers={"User-Agent": "y"})
        self.assertIsNone(one.header("Set-Cookie"))
        fp = one.json()["requesterInformation"]["fingerprint"]
        self.assertRegex(fp, f"^{FP}$")
        self.assertEqual(two.json()["requesterInformation"]["fingerprint"], fp)
        self.assertNotEqual(other.json()["requesterInformation"]["fingerprint"], fp)

    def test_metadata_off_and_compact(self):
        c = client(
            "[servers.web]\npadding = 0\n[servers.web.metadataOptions]\n"
            "serverInformation = false\nrequesterInformation = false\n"
        )
        self.assertEqual(c.get("/api/nope").body, b'{"error":"unknown action or invalid apiVersion"}')
        self.assertEqual(c.get("/api/echo?a=1").body, b'{"params":{"a":"1","action":"echo","apiVersion":1}}')

    def test_padding_four(self):
        c = client("[servers.web]\npadding = 4\n[servers.web.metadataOptions]\nserverInformation = false\nrequesterInformation = false\n")
        self.assertEqual(c.get("/api/refuse").body, b'{\n    "error": {\n        "error": "broken",\n        "reason": "stuff"\n    }\n}')

    def test_server_name_and_headers_from_config(self):
        c = client(
            '[general]\nserverName = "myapi"\napiVersion = "2.0"\n'
            '[servers.web.httpHeaders]\n"Access-Control-Allow-Origin" = ""\n"X-Frame-Options" = "DENY"\n'
        )
        r = c.get("/api/randomNumber")
        self.assertEqual(r.header("X-Powered-By"), "myapi")
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))
        self.assertEqual(r.header("X-Frame-Options"), "DENY")
        self.assertEqual(r.json()["serverInformation"]["serverName"], "myapi")
        self.assertEqual(r.json()["serverInformation"]["apiVersion"], "2.0")


class ModeAndResolutionTests(SynchronousTestCase):
    def test_action_resolution_paths(self):
        c = client()
        for path in ("/api/randomNumber", "/api?action=randomNumber", "/api/?action=randomNumber",
                     "/api/RANDOMNUMBER", "/api/randomNumber/"):
            r = c.get(path)
            self.assertEqual(r.status, 200, path)
            self.assertIn("randomNumber", r.json(), path)

    def test_unknown_action_forms_are_404(self):
        c = client()
        for path in ("/api", "/api/", "/api/?action=", "/api/randomNumber.json", "/api/nope",
                     "/api?action=RANDOMNUMBER", "/api/random/Number"):
            r = c.get(path)
            self.assertEqual((r.status, r.json()["error"]), (404, "unknown action or invalid apiVersion"), path)

    def test_unknown_action_received_params(self):
        r = client().get("/api/nope?a=1&zzz=2")
        self.assertEqual(r.json()["requesterInformation"]["receivedParams"], {"a": "1"})
        r = client().get("/api?action=fake")
        self.assertEqual(r.json()["requesterInformation"]["receivedParams"], {"action": "fake"})

    def test_query_action_beats_simple_route(self):
        r = client().get("/api/status?action=randomNumber")
        self.assertIn("randomNumber", r.json())

    def test_fake_query_action_replaced_by_route(self):
        r = client().get("/api/randomNumber?action=fake")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["requesterInformation"]["receivedParams"]["action"], "randomNumber")

    def test_query_routing_off_ignores_action_param(self):
        c = client("[servers.web]\nqueryRouting = false\n")
        self.assertEqual(c.get("/api?action=randomNumber").status, 404)
        self.assertEqual(c.get("/api/randomNumber?action=status").status, 200)
        self.assertIn("randomNumber", c.get("/api/randomNumber?action=status").json())

    def test_simple_routing_off(self):
        c = client("[servers.web]\nsimpleRouting = false\n")
        self.assertEqual(c.get("/api/randomNumber").status, 404)
        self.assertEqual(c.get("/api?action=randomNumber").status, 200)

    def test_root_endpoint_api(self):
        c = client('[servers.web]\nrootEndpointType = "api"\n')
        self.assertIn("randomNumber", c.get("/randomNumber").json())
        self.assertIn("randomNumber", c.get("/?action=randomNumber").json())
        self.assertEqual(c.get("/public/nothing-here.txt").status, 404)

    def test_multi_segment_api_prefix(self):
        c = client('[servers.web]\nurlPathForActions = "craz/y/action/path"\n')
        self.assertIn("randomNumber", c.get("/craz/y/action/path/randomNumber").json())
        self.assertEqual(c.get("/api/randomNumber").body, b"That file is not found")

    def test_root_defaults_to_file_mode(self):
        r = client().get("/randomNumber")
        self.assertEqual((r.status, r.header("Content-Type"), r.body), (404, "text/html", b"That file is not found"))

    def test_other_methods_run_actions(self):
        c = client()
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r = c.request(method, "/api/randomNumber")
            self.assertEqual(r.status, 200, method)
            self.assertIn("randomNumber", r.json())

    def test_unknown_method_resolves_only_by_query(self):
        c = client()
        self.assertEqual(c.request("PROPFIND", "/api/randomNumber").status, 404)
        self.assertEqual(c.request("PROPFIND", "/api?action=randomNumber").status, 200)


class ParamsTests(SynchronousTestCase):
    def test_query_semantics(self):
        r = client("[general]\ndisableParamScrubbing = true\n").get(
            "/api/echo?a=1&a=2&b[c]=d&e[]=1&e[]=2&f=x+y%20z"
        )
        self.assertEqual(
            r.json()["params"],
            {"a": ["1", "2"], "b": {"c": "d"}, "e": ["1", "2"], "f": "x y z", "action": "echo", "apiVersion": 1},
        )

    def test_json_body_object_and_precedence(self):
        r = client().post_json("/api/echo?a=query&b=query", {"b": "body"})
        self.assertEqual(r.json()["params"], {"a": "query", "b": "body", "action": "echo", "apiVersion": 1})

    def test_json_array_becomes_payload(self):
        r = client().post_json("/api/echo", [1, 2, 3])
        self.assertEqual(r.json()["params"]["payload"], [1, 2, 3])

    def test_urlencoded_body_is_flat(self):
        r = client("[general]\ndisableParamScrubbing = true\n").request(
            "POST", "/api/echo", headers={"Content-Type": "application/x-www-form-urlencoded"},
            body="a=1&a=2&b%5Bc%5D=d&e=%C3%A9",
        )
        self.assertEqual(r.json()["params"], {"a": ["1", "2"], "b[c]": "d", "e": "é", "action": "echo", "apiVersion": 1})

    def test_body_without_content_type_is_ignored(self):
        r = client().request("POST", "/api/cacheTest", body='{"key":"abc","value":"def"}')
        self.assertEqual(r.status, 422)
        self.assertEqual(r.json()["error"], "key is a required parameter for this action")

    def test_get_body_is_ignored(self):
        r = client().request("GET", "/api/echo", headers={"Content-Type": "application/json"}, body='{"a":"x"}')
        self.assertEqual(r.json()["params"], {"action": "echo", "apiVersion": 1})

    def test_other_content_type_ignored(self):
        r = client().request("POST", "/api/echo?a=1", headers={"Content-Type": "text/plain"}, body="a=2")
        self.assertEqual(r.json()["params"]["a"], "1")

    def test_multipart_fields_and_files(self):
        boundary = "XyZ"
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfield value\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"fileField\"; filename=\"hello.txt\"\r\n"
            f"Content-Type: text/plain\r\n\r\nhello world\r\n--{boundary}--\r\n"
        )
        seen = {}

        class Keep(Action):
            name = "keep"
            description = "reads its upload"
            inputs = {"fileField": Input(required=True), "a": Input()}

            def run(self, data):
                upload = data.params["fileField"]
                with open(upload["path"], "rb") as f:
                    seen["content"] = f.read()
                seen["path"] = upload["path"]
                data.response["file"] = {k: v for k, v in upload.items() if k != "path"}
                data.response["a"] = data.params["a"]

        c = client(plugins=[Keep])
        r = c.request("POST", "/api/keep", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, body=body)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["file"], {"name": "hello.txt", "type": "text/plain", "size": 11})
        self.assertEqual(r.json()["a"], "field value")
        self.assertEqual(seen["content"], b"hello world")
        import os

        self.assertFalse(os.path.exists(seen["path"]), "upload removed after the response")

    def test_route_params_override_query(self):
        c = client('[[routes.get]]\npath = "/user/:userID"\naction = "echo"\n')
        r = c.get("/api/user/1?userID=2")
        self.assertEqual(r.json()["params"]["userID"], "1")

    def test_nested_query_limits(self):
        r = client("[general]\ndisableParamScrubbing = true\n[servers.web.queryParseOptions]\ndepth = 1\n").get(
            "/api/echo?a[b][c]=1"
        )
        self.assertEqual(r.json()["params"]["a"], {"b": {"[c]": "1"}})


class StatusCodeTests(SynchronousTestCase):
    def test_codes(self):
        c = client()
        self.assertEqual(c.get("/api/nope").status, 404)
        missing = c.get("/api/cacheTest?key=abc")
        self.assertEqual((missing.status, missing.reason), (422, "Unprocessable Entity"))
        self.assertEqual(missing.json()["error"], "value is a required parameter for this action")
        self.assertEqual(
            missing.json()["requesterInformation"]["receivedParams"],
            {"key": "abc", "action": "cacheTest", "apiVersion": 1},
        )
        short = c.get("/api/cacheTest?key=ab&value=cd")
        self.assertEqual((short.status, short.json()["error"]), (400, "inputs should be at least 3 letters long"))
        refused = c.get("/api/refuse")
        self.assertEqual((refused.status, refused.json()["error"]), (400, {"error": "broken", "reason": "stuff"}))

    def test_unhandled_exception_is_500_and_server_keeps_serving(self):
        c = client()
        r = c.get("/api/boom")
        self.assertEqual((r.status, r.json()["error"]), (500, "internal server error"))
        self.assertNotIn(b"secret detail", r.body)
        self.assertEqual(c.get("/api/randomNumber").status, 200)
        self.flushLoggedErrors(RuntimeError)

    def test_expose_errors(self):
        r = client("[general]\nexposeErrors = true\n").get("/api/boom")
        self.assertEqual((r.status, r.json()["error"]), (500, "secret detail"))
        self.flushLoggedErrors(RuntimeError)

    def test_return_error_codes_false(self):
        c = client("[servers.web]\nreturnErrorCodes = false\n")
        for path in ("/api/nope", "/api/cacheTest", "/api/refuse", "/api/boom"):
            self.assertEqual(c.get(path).status, 200, path)
        self.assertEqual(c.get("/api/payment").status, 402)
        self.flushLoggedErrors(RuntimeError)

    def test_unknown_api_version(self):
        r = client().get("/api/randomNumber?apiVersion=7")
        self.assertEqual((r.status, r.json()["error"]), (404, "unknown action or invalid apiVersion"))
        self.assertEqual(client().get("/api/randomNumber?apiVersion=1.0").status, 200)

    def test_action_status_and_headers(self):
        r = client().get("/api/payment")
        self.assertEqual((r.status, r.reason), (402, "Payment Required"))
        self.assertEqual(r.header_list("X-Powered-By"), ["not ahtwist"])
        self.assertEqual(r.header("X-Evil"), "a  Injected: yes")
        self.assertIsNone(r.header("Injected"))
        cookies = r.header_list("Set-Cookie")
        self.assertEqual(cookies[:2], ["value_2=2", "value_1=1"])
        self.assertRegex(cookies[2], "^sessionID=")
        self.assertEqual(len(cookies), 3)


class SpecialMethodsTests(SynchronousTestCase):
    def test_options(self):
        r = client().request("OPTIONS", "/api/status")
        self.assertEqual((r.status, r.body, r.header("Content-Length")), (200, b"", "0"))
        self.assertEqual(r.header("Content-Type"), "application/json; charset=utf-8")
        for name, value in DEFAULT_HEADERS.items():
            self.assertEqual(r.header(name), value)
        self.assertRegex(r.header("Set-Cookie"), "^sessionID=")

    def test_options_defaults_when_cors_not_configured(self):
        c = client('[servers.web.httpHeaders]\n"Access-Control-Allow-Methods" = ""\n"Access-Control-Allow-Origin" = ""\n')
        r = c.request("OPTIONS", "/anything")
        self.assertEqual(r.header("Access-Control-Allow-Methods"), "HEAD, GET, POST, PUT, DELETE, OPTIONS, TRACE")
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "*")

    def test_trace(self):
        r = client().request("TRACE", "/api/status?key=abc&zzz=1")
        self.assertEqual(r.status, 200)
        body = r.json()
        self.assertEqual(list(body), ["id", "fingerprint", "messageId", "remoteIP", "receivedParams"])
        self.assertEqual(body["receivedParams"], {"key": "abc", "action": "status"})

    def test_head_runs_action_without_body(self):
        r = client().request("HEAD", "/api/randomNumber")
        self.assertEqual((r.status, r.body, r.header("Content-Length")), (200, b"", "0"))
        self.assertEqual(r.header("Content-Type"), "application/json; charset=utf-8")

    def test_head_falls_back_to_get_routes(self):
        c = client('[[routes.get]]\npath = "/thing"\naction = "randomNumber"\n')
        self.assertEqual(c.request("HEAD", "/api/thing").status, 200)


class JSONPTests(SynchronousTestCase):
    def test_callback(self):
        r = client().get("/api/randomNumber?callback=myCallback")
        self.assertEqual(r.header("Content-Type"), "application/javascript")
        self.assertTrue(r.body.startswith(b"myCallback({\n"))
        self.assertTrue(r.body.endswith(b"});"))
        json.loads(r.body[len("myCallback(") : -2])

    def test_callback_escaping(self):
        r = client().get("/api/randomNumber?callback=alert(%27hi%27);foo")
        self.assertTrue(r.body.startswith(b"alert&#39;hi&#39;;foo({"))
        r = client().get('/api/randomNumber?callback=%3C%22x%22%3E%26')
        self.assertTrue(r.body.startswith(b"&lt;&quot;x&quot;&gt;&amp;({"))

    def test_status_unchanged_on_error(self):
        r = client().get("/api/nope?callback=cb")
        self.assertEqual(r.status, 404)
        self.assertTrue(r.body.startswith(b"cb({"))


MIME_ROUTE = '[[routes.get]]\npath = "/mimeTestAction/:key"\naction = "mimeTestAction"\n'


class MimeTests(SynchronousTestCase):
    def test_match_extension_mime_type(self):
        r = client(MIME_ROUTE).get("/api/mimeTestAction/val.png")
        self.assertEqual((r.status, r.header("Content-Type"), r.body), (200, "image/png", b"not json"))

    def test_object_under_non_json_type_is_json(self):
        c = client('[[routes.get]]\npath = "/obj/:x"\naction = "mimeObject"\n')
        r = c.get("/api/obj/val.png")
        self.assertEqual(r.header("Content-Type"), "image/png")
        self.assertEqual(json.loads(r.body), {"a": 1})

    def test_error_stays_json(self):
        r = client(MIME_ROUTE).get("/api/mimeTestAction/val.png?apiVersion=9")
        self.assertEqual(r.header("Content-Type"), "application/json; charset=utf-8")


class AllowedHostsTests(SynchronousTestCase):
    def test_redirect(self):
        c = client('[servers.web]\nallowedRequestHosts = ["https://www.site.com"]\n')
        r = c.get("/api/randomNumber?x=1", headers={"Host": "lalala.site.com"})
        self.assertEqual(r.status, 302)
        self.assertEqual(r.header("Location"), "https://www.site.com/api/randomNumber?x=1")
        self.assertEqual(r.body, b"You are being redirected to https://www.site.com/api/randomNumber?x=1\r\n")
        for name in ("x-powered-by", "set-cookie", "access-control-allow-origin"):
            self.assertNotIn(name, r.header_names)

    def test_allowed(self):
        c = client('[servers.web]\nallowedRequestHosts = ["https://www.site.com"]\n')
        r = c.get("/api/randomNumber", headers={"Host": "www.site.com", "X-Forwarded-Proto": "https"})
        self.assertEqual(r.status, 200)
        self.assertEqual(c.get("/api/randomNumber", headers={"Host": "www.site.com"}).status, 302)


class CompressionTests(SynchronousTestCase):
    def test_gzip_and_deflate_choice(self):
        c = client("[servers.web]\ncompress = true\n")
        r = c.get("/api/randomNumber", headers={"Accept-Encoding": "gzip, deflate, sdch, br"})
        self.assertEqual(r.header("Content-Encoding"), "gzip")
        self.assertEqual(int(r.header("Content-Length")), len(r.body))
        self.assertIn("randomNumber", json.loads(gzip.decompress(r.body)))
        r = c.get("/api/randomNumber", headers={"Accept-Encoding": "br, deflate, gzip"})
        self.assertEqual(r.header("Content-Encoding"), "deflate")
        self.assertIn("randomNumber", json.loads(zlib.decompress(r.body)))
        for header in ({"Accept-Encoding": "sdch, br"}, {}, {"Accept-Encoding": "xgzip"}):
            r = c.get("/api/randomNumber", headers=header)
            self.assertIsNone(r.header("Content-Encoding"))
            json.loads(r.body)

    def test_off_by_default(self):
        r = client().get("/api/randomNumber", headers={"Accept-Encoding": "gzip"})
        self.assertIsNone(r.header("Content-Encoding"))


class ForwardedForTests(SynchronousTestCase):
    def test_parse(self):
        self.assertEqual(parse_forwarded_for("1.2.3.4"), ("1.2.3.4", None))
        self.assertEqual(parse_forwarded_for("1.2.3.4:99, 5.6.7.8"), ("1.2.3.4", 99))
        self.assertEqual(parse_forwarded_for("::ffff:1.2.3.4"), ("1.2.3.4", None))
        self.assertEqual(parse_forwarded_for("[2001:db8::1]:443"), ("2001:db8::1", 443))
        self.assertEqual(parse_forwarded_for("2001:db8::1"), ("2001:db8::1", None))
        for bad in ("", "not an ip", "[2001:db8::1", "1.2.3.4:x", "2001:db8:::zz", "999.1.1.1"):
            self.assertIsNone(parse_forwarded_for(bad), bad)

    def test_used_for_remote_ip(self):
        c = client()
        r = c.get("/api/randomNumber", headers={"X-Forwarded-For": "10.1.2.3, 127.0.0.1", "X-Forwarded-Port": "8443"})
        self.assertEqual(r.json()["requesterInformation"]["remoteIP"], "10.1.2.3")
        r = c.get("/api/randomNumber", headers={"X-Forwarded-For": "garbage::::x"})
        self.assertEqual(r.json()["requesterInformation"]["remoteIP"], "127.0.0.1")


class BadInputTests(SynchronousTestCase):
    FORM_ERROR = "There was an error processing this form."

    def test_malformed_json(self):
        r = client().request("POST", "/api/randomNumber", headers={"Content-Type": "application/json"}, body="{bad json")
        self.assertEqual((r.status, r.json()["error"]), (400, self.FORM_ERROR))
        self.assertNotIn("randomNumber", r.json())
        self.assertIn("serverInformation", r.json())

    def test_invalid_utf8_json(self):
        r = client().request("POST", "/api/echo", headers={"Content-Type": "application/json"}, body=b'{"a":"\xff"}')
        self.assertEqual((r.status, r.json()["error"]), (400, self.FORM_ERROR))

    def test_malformed_urlencoded(self):
        for body in (b"a=%zz", b"a=%ff"):
            r = client().request(
                "POST", "/api/echo", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=body
            )
            self.assertEqual((r.status, r.json()["error"]), (400, self.FORM_ERROR), body)

    def test_malformed_multipart(self):
        c = client()
        for ctype, body in (
            ("multipart/form-data; boundary=XX", b"this is not multipart"),
            ("multipart/form-data", b"--XX\r\n"),
            ("multipart/form-data; boundary=XX", b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated"),
        ):
            r = c.request("POST", "/api/echo", headers={"Content-Type": ctype}, body=body)
            self.assertEqual((r.status, r.json()["error"]), (400, self.FORM_ERROR), body)

    def test_bad_percent_escape_in_query(self):
        r = client().get("/api/echo?a=%zz")
        self.assertEqual((r.status, r.json()["error"]), (400, self.FORM_ERROR))

    def test_long_url_414(self):
        c = client()
        for length in (8200, 20000):
            data = c.send_raw(b"GET /api/" + b"a" * length + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(data.startswith(b"HTTP/1.1 414 URI Too Long\r\n"), data[:60])

    def test_malformed_request_line_is_bare_400(self):
        self.assertEqual(client().send_raw(b"GARBAGE\r\n\r\n"), b"HTTP/1.1 400 Bad Request\r\n\r\n")

    def test_declared_oversize_body_413_without_reading_it(self):
        c = client("[servers.web.formOptions]\nmaxFieldsSize = 1000\n")
        protocol, transport = c.connect()
        protocol.dataReceived(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        )
        response, _ = parse_response(transport.value())
        self.assertEqual((response.status, response.json()["error"]), (413, "request body is too large"))
        self.assertEqual(response.header("Connection"), "close")
        self.assertNotIn(b"100 Continue", transport.value())
        self.assertTrue(transport.disconnecting)
        # whatever the client still sends is dropped, not buffered or parsed
        protocol.dataReceived(b"x" * 5000)
        self.assertEqual(len(c.node.connections), 0)

    def test_chunked_oversize_body_413_midway(self):
        c = client("[servers.web.formOptions]\nmaxFieldsSize = 1000\n")
        protocol, transport = c.connect()
        protocol.dataReceived(
            b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"a" * 600
        protocol.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        response, _ = parse_response(transport.value())
        self.assertEqual(response.status, 413)
        self.assertTrue(transport.disconnecting)
        protocol.dataReceived(b"0\r\n\r\n")

    def test_chunked_body_on_a_get_is_counted_against_the_limit(self):
        # a GET declares no length: it starts with the shared no-body reader,
        # which a chunk replaces with a real one (413 past maxFieldsSize)
        c = client("[servers.web.formOptions]\nmaxFieldsSize = 1000\n")
        protocol, transport = c.connect()
        protocol.dataReceived(b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"a" * 600
        protocol.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        response, _ = parse_response(transport.value())
        self.assertEqual((response.status, response.json()["error"]), (413, "request body is too large"))

    def test_small_chunked_body_on_a_get_is_dropped_and_the_action_runs(self):
        c = client()
        protocol, transport = c.connect()
        protocol.dataReceived(
            b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        response, _ = parse_response(transport.value())
        self.assertEqual(response.status, 200)
        self.assertEqual(sorted(response.json()["requesterInformation"]["receivedParams"]), ["action", "apiVersion"])

    def test_oversize_upload_413_and_no_partial_file(self):
        import os
        import tempfile

        upload_dir = tempfile.mkdtemp()
        c = client(f'[servers.web.formOptions]\nmaxFileSize = 100\nuploadDir = "{upload_dir}"\n')
        body = (
            b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"big.bin\"\r\n\r\n"
            + b"z" * 500 + b"\r\n--B--\r\n"
        )
        r = c.request("POST", "/api/echo", headers={"Content-Type": "multipart/form-data; boundary=B"}, body=body)
        self.assertEqual((r.status, r.json()["error"]), (413, "request body is too large"))
        self.assertEqual(os.listdir(upload_dir), [])

    def test_nothing_left_behind_after_errors(self):
        c = client()
        c.request("POST", "/api/echo", headers={"Content-Type": "application/json"}, body="{bad")
        c.get("/api/boom")
        c.get("/api/nope")
        self.assertEqual(len(c.node.connections), 0)
        self.flushLoggedErrors(RuntimeError)


class ProtocolTests(SynchronousTestCase):
    def test_pipelining(self):
        c = client()
        data = c.send_raw(
            b"GET /api/randomNumber HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        first, rest = parse_response(data)
        second, rest = parse_response(rest)
        self.assertIn("randomNumber", first.json())
        self.assertIn("nodeStatus", second.json())
        self.assertEqual(rest, b"")

    def test_http10_without_host(self):
        c = client()
        data = c.send_raw(b"GET /api/randomNumber HTTP/1.0\r\n\r\n")
        response, _ = parse_response(data)
        self.assertEqual(response.status, 200)
        self.assertIn("randomNumber", response.json())

    def test_to_render_false_still_finishes(self):
        r = client().get("/api/silent")
        self.assertEqual((r.status, r.body, r.header("Content-Length")), (200, b"", "0"))

    def test_client_gone_before_async_action_completes(self):
        c = client()
        protocol, transport = c.connect()
        protocol.dataReceived(b"GET /api/sleepTest?sleepDuration=50 HTTP/1.1\r\nHost: x\r\n\r\n")
        protocol.connectionLost(None)
        c.node.reactor.advance(1)
        self.assertEqual(transport.value(), b"")

    def test_connections_released(self):
        """No Connection (or request state) survives its request."""
        import gc
        import weakref

        from ahtwist.connection import Connection

        c = client()
        refs = []
        original = Connection.__init__

        def tracking(self, *a, **kw):
            original(self, *a, **kw)
            refs.append(weakref.ref(self))

        Connection.__init__ = tracking
        try:
            for path in ("/api/randomNumber", "/api/nope", "/api/cacheTest?key=abc", "/api/silent"):
                for _ in range(50):
                    c.get(path)
        finally:
            Connection.__init__ = original
        c.transports.clear()
        gc.collect()
        self.assertEqual(len(refs), 200)
        self.assertEqual([r for r in refs if r() is not None], [])


class PrefixTests(SynchronousTestCase):
    def test_multi_segment_files_prefix(self):
        c = client('[servers.web]\nurlPathForFiles = "static/files"\n')
        self.assertEqual(c.get("/static/files/simple.html").status, 200)
        self.assertEqual(c.get("/public/simple.html").status, 404)  # "public" is now just a root path
        self.assertEqual(c.get("/simple.html").status, 200)

    def test_disabled_api_prefix(self):
        c = client('[servers.web]\nurlPathForActions = ""\nrootEndpointType = "api"\n')
        self.assertIn("randomNumber", c.get("/randomNumber").json())
        self.assertEqual(c.get("/api/randomNumber").status, 404)

    def test_extension_on_connection(self):
        seen = []

        class Ext(Action):
            name = "ext"
            description = "records the extension"

            def run(self, data):
                seen.append(data.connection.extension)

        c = client('[[routes.get]]\npath = "/ext/:x"\naction = "ext"\n', plugins=[Ext])
        c.get("/api/ext/file.tar.gz")
        c.get("/api/ext/noext")
        self.assertEqual(seen, ["gz", None])
