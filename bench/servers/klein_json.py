"""Baseline: a bare Klein route answering json.dumps of a random number."""

import json
import random
import sys

from klein import Klein
from twisted.internet import reactor
from twisted.web import server

app = Klein()


@app.route("/api/randomNumber")
def random_number(request):
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    n = random.random()
    return json.dumps({"randomNumber": n, "stringRandomNumber": f"Your random number is {n!r}"})


site = server.Site(app.resource())
site.log = lambda request: None
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
reactor.run()
