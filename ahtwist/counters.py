"""Names of the request counters kept in :class:`~ahtwist.backends.interfaces.IStats`.

A leaf module: the transports count under these names and the ``status``
action reads them, without either importing the other or the node.
"""

#: HTTP action requests
WEB_REQUESTS = "web:requests"
#: socket action requests
SOCKET_REQUESTS = "socket:requests"
#: websocket action requests
WEBSOCKET_REQUESTS = "websocket:requests"
