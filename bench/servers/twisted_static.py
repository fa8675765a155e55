"""Baseline: twisted.web.static.File serving a folder (argv: port, folder)."""

import sys

from twisted.internet import reactor
from twisted.web import server, static

site = server.Site(static.File(sys.argv[2]))
site.log = lambda request: None
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
reactor.run()
