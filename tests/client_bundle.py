"""Copy ``actionheroClient.js`` into ``ActionheroWebsocketClient.js`` (``make bundle-client``).

The ActionHero 18-19 file must work when a page loads only it, so it carries
ahtwist's client between two marker lines, followed by its thin wrapper.  The
copy is made here, never by hand; ``tests/test_client_library.py`` fails when
it differs from the source.
"""

import re
import sys
from pathlib import Path

JS = Path(__file__).resolve().parents[1] / "public" / "javascript"
SOURCE = JS / "actionheroClient.js"
BUNDLE = JS / "ActionheroWebsocketClient.js"
BEGIN = "/* ---- begin actionheroClient.js (copied by `make bundle-client`; edit that file, not this copy) ---- */\n"
END = "/* ---- end actionheroClient.js ---- */\n"
REGION = re.compile(re.escape(BEGIN) + r"(.*?)" + re.escape(END), re.S)


def embedded(bundle: str) -> str:
    """The copy of the client inside the bundle's text."""
    match = REGION.search(bundle)
    if match is None:
        raise ValueError("ActionheroWebsocketClient.js has no actionheroClient.js region")
    return match.group(1)


def rebuilt(bundle: str, source: str) -> str:
    """The bundle's text with its copy replaced by ``source``."""
    embedded(bundle)
    return REGION.sub(lambda _: BEGIN + source + END, bundle, count=1)


def main() -> int:
    BUNDLE.write_text(rebuilt(BUNDLE.read_text("utf-8"), SOURCE.read_text("utf-8")), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
