"""Configuration loading: defaults, merging, validation messages, overrides."""

import os
import socket
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from ahtwist.config import Overrides, default_config_path, load_config
from ahtwist.errors import ConfigError
from tests.helpers import REPO, config_from


class DefaultsTests(SynchronousTestCase):
    def test_builtin_defaults(self):
        config = config_from("")
        general, web, socket_cfg = config.general, config.servers.web, config.servers.socket
        self.assertEqual(general.id, f"{socket.gethostname()}-{os.getpid()}")
        self.assertEqual((general.serverName, general.apiVersion), ("ahtwist", "0.1.0"))
        self.assertEqual(general.simultaneousActions, 5)
        self.assertEqual(general.startingChatRooms, ("defaultRoom", "otherRoom"))
        self.assertEqual(general.paths.public, (str(REPO / "public"),))
        self.assertEqual(config.web_endpoints, ("tcp:8080:interface=0.0.0.0",))
        self.assertEqual(config.socket_endpoints, ("tcp:5000:interface=0.0.0.0",))
        self.assertEqual(
            dict(web.httpHeaders),
            {
                "X-Powered-By": "ahtwist",
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Methods": "HEAD, GET, POST, PUT, PATCH, DELETE, OPTIONS, TRACE",
                "Access-Control-Allow-Headers": "Content-Type",
            },
        )
        self.assertEqual(web.directoryFileType, "index.html")
        self.assertEqual(web.formOptions.uploadDir, tempfile.gettempdir())
        self.assertEqual(socket_cfg.delimiter, "\n")
        self.assertEqual(config.redis.url, "")
        self.assertEqual(config.warnings, ())

    def test_bundled_file_matches_builtin_defaults(self):
        """etc/ahtwist.toml documents the defaults; it must not change them
        (apart from the sample actions folder it points at)."""
        bundled = load_config(None, environ={})
        builtin = config_from("")
        self.assertEqual(default_config_path(), REPO / "etc" / "ahtwist.toml")
        self.assertEqual(bundled.warnings, ())
        self.assertEqual(bundled.general.paths.actions, (str(REPO / "actions"),))
        for section in ("servers", "redis"):
            self.assertEqual(getattr(bundled, section), getattr(builtin, section), section)
        self.assertEqual(
            bundled.general.paths.public, builtin.general.paths.public
        )

    def test_merge_key_by_key(self):
        config = config_from('[servers.web]\nport = 9000\n[servers.web.formOptions]\nkeepExtensions = true\n')
        self.assertEqual(config.servers.web.port, 9000)
        self.assertEqual(config.servers.web.urlPathForActions, "api")
        self.assertTrue(config.servers.web.formOptions.keepExtensions)
        self.assertEqual(config.servers.web.formOptions.maxFieldsSize, 104857600)

    def test_relative_paths_resolve_against_the_file(self):
        directory = tempfile.mkdtemp()
        config = config_from(
            '[general.paths]\npublic = ["static", "/abs/other"]\nactions = ["acts"]\n'
            '[servers.web.formOptions]\nuploadDir = "up"\n',
            directory=directory,
        )
        real = str(Path(directory).resolve())
        self.assertEqual(config.general.paths.public, (f"{real}/static", "/abs/other"))
        self.assertEqual(config.general.paths.actions, (f"{real}/acts",))
        self.assertEqual(config.servers.web.formOptions.uploadDir, f"{real}/up")

    def test_starting_rooms_as_list(self):
        self.assertEqual(config_from('[general]\nstartingChatRooms = ["a", "b"]\n').general.startingChatRooms, ("a", "b"))

    def test_secure_listener(self):
        directory = tempfile.mkdtemp()
        config = config_from(
            '[servers.socket]\nsecure = true\nport = 5001\nbindIP = "127.0.0.1"\n'
            'serverOptions = { key = "k.pem", cert = "c.pem" }\n',
            directory=directory,
        )
        real = Path(directory).resolve()
        self.assertEqual(
            config.socket_endpoints,
            (f"ssl:5001:interface=127.0.0.1:privateKey={real}/k.pem:certKey={real}/c.pem",),
        )

    def test_ipv6_bind(self):
        config = config_from('[servers.web]\nbindIP = "::1"\n')
        self.assertEqual(config.web_endpoints, ("tcp6:8080:interface=\\:\\:1",))

    def test_unknown_keys_warn(self):
        config = config_from('[general]\nbogus = 1\n[nonsense]\nx = 1\n')
        self.assertEqual(
            config.warnings,
            ("unknown config key 'general.bogus' ignored", "unknown config key 'nonsense' ignored"),
        )


class ErrorTests(SynchronousTestCase):
    def error(self, text):
        directory = tempfile.mkdtemp()
        with self.assertRaises(ConfigError) as e:
            config_from(text, directory=directory)
        return str(e.exception).replace(str(Path(directory).resolve()) + "/", "")

    def test_messages_name_file_key_and_reason(self):
        self.assertEqual(self.error('[servers.web]\nport = "abc"\n'), "ahtwist.toml: servers.web.port: expected an integer, got 'abc'")
        self.assertEqual(self.error("[servers.web]\nport = 70000\n"), "ahtwist.toml: servers.web.port: must be a port number (0-65535), got 70000")
        self.assertEqual(self.error("[general]\nsimultaneousActions = 0\n"), "ahtwist.toml: general.simultaneousActions: must be greater than 0, got 0")
        self.assertEqual(self.error("[servers.web]\ncompress = 1\n"), "ahtwist.toml: servers.web.compress: expected true or false, got 1")
        self.assertEqual(self.error('[servers.web]\nrootEndpointType = "both"\n'), "ahtwist.toml: servers.web.rootEndpointType: must be \"api\" or \"file\", got 'both'")
        self.assertEqual(self.error("servers = 3\n"), "ahtwist.toml: servers: expected a table, got 3")
        self.assertEqual(self.error("[general.paths]\npublic = [1]\n"), "ahtwist.toml: general.paths.public: expected a list of strings, got a list")
        self.assertEqual(self.error('[servers.socket]\ndelimiter = ""\n'), "ahtwist.toml: servers.socket.delimiter: must not be empty")
        self.assertEqual(self.error('[general]\nlogLevel = "loud"\n'), "ahtwist.toml: general.logLevel: must be debug, info, warn, error or critical, got 'loud'")

    def test_invalid_toml(self):
        message = self.error("[general\n")
        self.assertTrue(message.startswith("ahtwist.toml: invalid TOML: "), message)

    def test_missing_file(self):
        with self.assertRaises(ConfigError) as e:
            load_config("/nonexistent/ahtwist.toml", environ={})
        self.assertEqual(str(e.exception), "/nonexistent/ahtwist.toml: cannot read config file: No such file or directory")

    def test_route_errors_name_the_route(self):
        self.assertEqual(
            self.error('[[routes.get]]\npath = "/a/:b(x/y)"\naction = "x"\n'),
            "ahtwist.toml: routes.get[0] (/a/:b(x/y)): a route regex cannot contain '/' (path segments are split on it)",
        )
        message = self.error('[[routes.post]]\npath = "/a/:b([)"\naction = "x"\n')
        self.assertTrue(message.startswith("ahtwist.toml: routes.post[0] (/a/:b([)): invalid regex '[': "), message)
        self.assertEqual(self.error('[[routes.get]]\npath = "/a"\n'), "ahtwist.toml: routes.get[0] (/a): 'action' is required (unless the route has a 'dir')")
        self.assertEqual(self.error('[[routes.fetch]]\npath = "/a"\naction = "x"\n'), "ahtwist.toml: routes.fetch: unknown verb; use one of head, get, post, put, patch, delete, all")


class OverrideTests(SynchronousTestCase):
    def test_environment(self):
        path = Path(tempfile.mkdtemp(), "c.toml")
        path.write_text("[servers.web]\nport = 9000\n")
        config = load_config(str(path), environ={"PORT": "9100", "ALLOWED_HOSTS": "https://a.com, http://b.com", "REDIS_URL": "redis://x"})
        self.assertEqual(config.servers.web.port, 9100)
        self.assertEqual(config.servers.web.allowedRequestHosts, ("https://a.com", "http://b.com"))
        self.assertEqual(config.redis.url, "redis://x")
        with self.assertRaises(ConfigError) as e:
            load_config(str(path), environ={"PORT": "http"})
        self.assertEqual(str(e.exception), "environment: PORT: must be a port number, got 'http'")

    def test_command_line_beats_environment_and_file(self):
        path = Path(tempfile.mkdtemp(), "c.toml")
        path.write_text('[servers.web]\nport = 9000\nendpoints = ["tcp:1"]\n[redis]\nurl = "redis://file"\n')
        config = load_config(
            str(path),
            environ={"PORT": "9100", "REDIS_URL": "redis://env"},
            overrides=Overrides(web=("tcp:7000", "tcp:7001"), socket=("none",), public=("pub",), redis="redis://cli"),
            cwd="/srv",
        )
        self.assertEqual(config.web_endpoints, ("tcp:7000", "tcp:7001"))
        self.assertEqual(config.socket_endpoints, ())
        self.assertEqual(config.general.paths.public, ("/srv/pub",))
        self.assertEqual(config.redis.url, "redis://cli")

    def test_web_none(self):
        config = load_config(None, environ={}, overrides=Overrides(web=("none",)))
        self.assertEqual(config.web_endpoints, ())
        self.assertFalse(config.servers.web.enabled)
