"""Baseline: the plainest twisted.web resource returning a small fixed JSON.

The ceiling for any twisted.web server on this machine.  Usage: PORT as argv[1].
"""

import sys

from twisted.internet import reactor
from twisted.web import resource, server

BODY = b'{"randomNumber":0.5,"stringRandomNumber":"Your random number is 0.5"}'


class Fixed(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return BODY


site = server.Site(Fixed())
site.log = lambda request: None
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
reactor.run()
