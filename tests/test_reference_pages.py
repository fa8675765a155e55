"""The reference pages: docs/configuration.md generated from etc/ahtwist.toml and current,
docs/python-api.md's export table equal to ``ahtwist.__all__``."""

import importlib.util
import re

import attrs
from twisted.trial.unittest import SynchronousTestCase

from ahtwist.config import load_config
from tests.helpers import REPO, config_from

DOCS = REPO / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("make_configuration", DOCS / "make_configuration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ConfigurationPageTests(SynchronousTestCase):
    """docs/configuration.md lists every key of the schema with the default and the
    comment etc/ahtwist.toml gives it."""

    def setUp(self):
        self.generator = _generator()
        self.page = (DOCS / "configuration.md").read_text("utf-8")
        self.toml = (REPO / "etc" / "ahtwist.toml").read_text("utf-8")

    def test_page_is_current(self):
        self.assertEqual(
            self.generator.render(self.page, self.toml),
            self.page,
            "docs/configuration.md is stale: run `make docs` (it rewrites the key tables "
            "from etc/ahtwist.toml)",
        )

    def test_every_schema_key_has_a_row(self):
        generated = self.page.split(self.generator.MARKER, 1)[1]
        rows = re.findall(r"^\| `([A-Za-z0-9_.]+)` \| `", generated, re.M)
        keys = [name for name, _ in self.generator.schema_keys()]
        self.assertEqual(sorted(rows), sorted(keys))
        self.assertEqual(len(rows), len(set(rows)))
        self.assertIn("servers.web.openapi.path", keys)
        self.assertIn("general.logLevel", keys)

    def test_a_key_without_comment_is_refused(self):
        toml = self.toml.replace(
            "# The line-oriented TCP server (telnet-friendly).\nenabled = true\n", "enabled = true\n"
        )
        with self.assertRaises(ValueError) as e:
            self.generator.entries(toml)
        self.assertEqual(
            str(e.exception), "servers.socket.enabled: no comment above it in etc/ahtwist.toml"
        )

    def test_a_key_right_below_another_shares_its_comment(self):
        toml = self.toml.replace("# Its path (ws://host:8080/ws).\n", "")
        (entry,) = [e for e in self.generator.entries(toml) if e.key == "servers.websocket.path"]
        self.assertEqual(entry.meaning, "WebSocket endpoint on every web listener.")

    def test_a_missing_key_is_refused(self):
        toml = self.toml.replace('logFormat = "text"\n', "")
        with self.assertRaises(ValueError) as e:
            self.generator.entries(toml)
        self.assertEqual(str(e.exception), "general.logFormat: not in etc/ahtwist.toml")

    def test_rows_exactly(self):
        self.assertIn(
            '| `servers.web.openapi.path` | `"/api/openapi.json"` | Where the document is served (GET). |',
            self.page,
        )
        self.assertIn(
            "| `general.startingChatRooms` | `{ defaultRoom = {}, otherRoom = {} }` | Rooms created at "
            "start (an existing room is fine). An array of names works too. |",
            self.page,
        )

    def test_bundled_general_matches_builtin_defaults(self):
        """The values written in etc/ahtwist.toml are the built-in defaults (servers and
        redis are compared in test_config; general here, but for the sample actions folder)."""
        bundled = load_config(None, environ={}).general
        builtin = config_from("").general
        self.assertEqual(
            attrs.evolve(bundled, paths=builtin.paths), builtin
        )


class PythonAPIPageTests(SynchronousTestCase):
    def test_exports_table_is_all(self):
        """docs/python-api.md's "What `ahtwist` exports" lists ``ahtwist.__all__``, no more, no less."""
        import ahtwist

        page = (DOCS / "python-api.md").read_text("utf-8")
        section = page.split("## What `ahtwist` exports", 1)[1].split("\n## ", 1)[0]
        names = re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \|", section, re.M)
        self.assertEqual(sorted(names), sorted(ahtwist.__all__))
        for name in names:
            self.assertTrue(hasattr(ahtwist, name), name)
