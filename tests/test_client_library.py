"""The browser client files themselves (behaviour is tested in Chromium, tests/e2e)."""

import hashlib
import re

from tests.client_bundle import END, embedded, rebuilt
from tests.helpers import REPO

JS = REPO / "public" / "javascript"


def test_the_minified_client_was_built_from_the_current_source():
    """``make minify-client`` records the source's sha256 in the banner; editing
    actionheroClient.js without rebuilding the .min.js fails here."""
    source = (JS / "actionheroClient.js").read_bytes()
    banner = (JS / "actionheroClient.min.js").read_text("utf-8").splitlines()[0]
    match = re.fullmatch(
        r"/\*! actionheroClient\.min\.js: terser@[\d.]+ build of actionheroClient\.js "
        r"sha256=([0-9a-f]{64}) \(MIT\) \*/",
        banner,
    )
    assert match, banner
    assert match.group(1) == hashlib.sha256(source).hexdigest()


def test_the_client_is_plain_es2017_without_later_syntax():
    """No build step: none of the later operators (``?.``, ``??``) older browsers reject."""
    for name in ("actionheroClient.js", "ActionheroWebsocketClient.js"):
        source = (JS / name).read_text("utf-8")
        code = re.sub(r"/\*.*?\*/|//[^\n]*|'(?:\\.|[^'\\])*'", "", source, flags=re.S)
        assert "?." not in code and "??" not in code, name


def test_the_actionhero19_file_carries_the_current_client():
    """``ActionheroWebsocketClient.js`` embeds ``actionheroClient.js`` byte for
    byte (``make bundle-client``), then its wrapper: one copy of the logic."""
    bundle = (JS / "ActionheroWebsocketClient.js").read_text("utf-8")
    source = (JS / "actionheroClient.js").read_text("utf-8")
    assert embedded(bundle) == source
    assert rebuilt(bundle, source) == bundle
    wrapper = bundle.split(END, 1)[1]
    assert "class ActionheroWebsocketClient" in wrapper and "new ActionheroClient(" in wrapper
    assert bundle.count("class ActionheroClient ") == 1
