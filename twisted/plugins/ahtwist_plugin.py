"""twistd plugin for ahtwist: ``twistd ahtwist``.

Kept deliberately tiny: Twisted imports every plugin module when it scans for
plugins, so nothing heavy (Klein, Autobahn, txredisapi) may be imported here.
"""

from twisted.application.service import ServiceMaker

ahtwist = ServiceMaker(
    "ahtwist",
    "ahtwist.tap",
    "ActionHero-compatible API server: HTTP, WebSocket and TCP actions and chat rooms.",
    "ahtwist",
)
