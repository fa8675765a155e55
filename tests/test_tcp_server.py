"""LazyTCPServer: a socket client's TCP transport makes its log prefix and
``repr`` when first asked, and they read exactly as Twisted's ``tcp.Server``
would have made them (TCP, TLS, IPv6 peers; after its port stopped
listening; after the connection was lost)."""

import socket
import tempfile
from pathlib import Path

from twisted.internet import reactor, ssl, tcp
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase

from ahtwist.servers.tcp_server import LazyTCPServer, use_lazy_transport
from ahtwist.service import AhtwistService, SocketService, WebService
from ahtwist.socket import SocketFactory, SocketProtocol
from tests.e2e.servers import make_certificate
from tests.helpers import make_node, wait_for_in_reactor

WELCOME = b'{"welcome":"Hello! Welcome to the actionhero api","context":"api"}\r\n'


def listening_port(factory):
    """A tcp.Port listening on a real loopback socket, its reactor only recording."""
    port = tcp.Port(0, factory, interface="127.0.0.1", reactor=MemoryReactor())
    port.startListening()
    return port


def both_transports(port, protocol_for, client=("127.0.0.1", 40000), sessionno=7):
    """Twisted's tcp.Server and a LazyTCPServer made with the same arguments
    (each over its own socket pair; the sockets are closed by the caller)."""
    made = []
    for cls in (tcp.Server, LazyTCPServer):
        ours, theirs = socket.socketpair()
        transport = cls(ours, protocol_for(), client, port, sessionno, MemoryReactor())
        made.append((transport, ours, theirs))
    return made


class SameNamesAsTwisted(TestCase):
    """The strings are Twisted's, made from the same things."""

    def setUp(self):
        self.node = make_node()
        self.factory = SocketFactory(self.node)
        self.port = listening_port(self.factory)
        self.addCleanup(self.port.connectionLost, None)
        self.sockets = []

    def tearDown(self):
        for _, ours, theirs in self.sockets:
            ours.close()
            theirs.close()

    def compare(self, protocol_for, client=("127.0.0.1", 40000)):
        pair = both_transports(self.port, protocol_for, client)
        self.sockets.extend(pair)
        (twisted_one, _, _), (lazy, _, _) = pair
        self.assertEqual(lazy.logPrefix(), twisted_one.logPrefix())
        self.assertEqual(lazy.logstr, twisted_one.logstr)
        self.assertEqual(repr(lazy), repr(twisted_one))
        self.assertEqual(lazy.repstr, twisted_one.repstr)
        return lazy

    def test_a_socket_client(self):
        lazy = self.compare(lambda: SocketProtocol(self.factory))
        number = self.port.getHost().port
        self.assertEqual(
            (lazy.logPrefix(), repr(lazy)),
            ("SocketProtocol,7,127.0.0.1", f"<SocketProtocol #7 on {number}>"),
        )

    def test_a_tls_client_and_an_ipv6_peer(self):
        tls = TLSMemoryBIOFactory(ssl.CertificateOptions(), False, self.factory)
        lazy = self.compare(lambda: tls.buildProtocol(None), client=("::1", 40000, 0, 0))
        self.assertEqual(
            (lazy.logPrefix(), repr(lazy)),
            (
                "SocketProtocol (BufferingTLSTransport),7,::1",
                f"<BufferingTLSTransport #7 on {self.port.getHost().port}>",
            ),
        )

    def test_a_connection_made_from_a_connected_socket_keeps_the_repr_it_is_given(self):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        lazy = LazyTCPServer(ours, Protocol(), ("127.0.0.1", 1), None, 3, MemoryReactor())
        lazy.repstr = "<Protocol #3 on 4321>"  # what Twisted's _fromConnectedSocket does
        self.assertEqual(
            (repr(lazy), lazy.logPrefix()), ("<Protocol #3 on 4321>", "Protocol,3,127.0.0.1")
        )

    def test_twisted_init_assignments_keep_nothing(self):
        pair = both_transports(self.port, lambda: SocketProtocol(self.factory))
        self.sockets.extend(pair)
        (twisted_one, _, _), (lazy, _, _) = pair
        self.assertIn("logstr", vars(twisted_one))
        self.assertIn("repstr", vars(twisted_one))
        self.assertEqual(set(vars(lazy)), set(vars(twisted_one)) - {"logstr", "repstr"})


class TransportOfListeners(TestCase):
    """Which listening ports make LazyTCPServer connections."""

    def test_tcp_tls_and_adopted_ports_take_it_once_unix_ports_do_not(self):
        factory = Factory.forProtocol(Protocol)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.assertEqual((use_lazy_transport(port), port.transport), (True, LazyTCPServer))
        self.assertFalse(use_lazy_transport(port))  # already changed: left alone
        directory = tempfile.TemporaryDirectory(prefix="ahtwist-test-")
        self.addCleanup(directory.cleanup)
        key, cert = make_certificate(directory.name)
        identity = ssl.PrivateCertificate.loadPEM(key.read_bytes() + cert.read_bytes())
        tls = reactor.listenSSL(0, factory, identity.options(), interface="127.0.0.1")
        self.addCleanup(tls.stopListening)
        self.assertTrue(use_lazy_transport(tls))
        inherited = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(inherited.close)
        inherited.bind(("127.0.0.1", 0))
        inherited.listen(5)
        inherited.setblocking(False)
        adopted = reactor.adoptStreamPort(inherited.fileno(), socket.AF_INET, factory)
        self.addCleanup(adopted.stopListening)
        self.assertEqual((use_lazy_transport(adopted), adopted.transport), (True, LazyTCPServer))
        unix = reactor.listenUNIX(str(Path(directory.name, "unix.sock")), factory)
        self.addCleanup(unix.stopListening)
        self.assertFalse(use_lazy_transport(unix))
        self.assertIsNot(unix.transport, LazyTCPServer)

    def test_socket_listeners_use_it_web_listeners_do_not(self):
        """A web connection's protocol hands its transport to a websocket,
        which Twisted's strings do not follow: web listeners keep Twisted's."""
        node = make_node(clock=reactor)
        top = AhtwistService(node, reactor)
        SocketService(node, reactor, ("tcp:0:interface=127.0.0.1",)).setServiceParent(top)
        WebService(node, reactor, ("tcp:0:interface=127.0.0.1",)).setServiceParent(top)
        top.privilegedStartService()
        ports = {}
        for server in top:
            for listener in server:
                listener._waitingForPort.addCallback(
                    lambda port, kind=listener.kind: ports.setdefault(kind, port)
                )
        top.startService()
        self.addCleanup(top.stopService)
        self.assertEqual(ports["socket"].transport, LazyTCPServer)
        self.assertIs(ports["web"].transport, tcp.Server)


class IdleSocketClient(TestCase):
    """Over real sockets in the reactor: an idle client holds neither string;
    its first read makes the log prefix (kept), not the repr."""

    async def test_names_are_made_when_asked_and_survive_the_port_and_the_connection(self):
        node = make_node(clock=reactor)
        top = AhtwistService(node, reactor)
        sockets = SocketService(node, reactor, ("tcp:0:interface=127.0.0.1",))
        sockets.setServiceParent(top)
        top.privilegedStartService()
        top.startService()
        stopped = False

        async def stop():
            if not stopped:
                await top.stopService()

        self.addCleanup(stop)
        port = await next(iter(sockets))._waitingForPort
        number = port.getHost().port
        client = socket.create_connection(("127.0.0.1", number))
        self.addCleanup(client.close)
        client.setblocking(False)
        received = bytearray()

        def read():
            try:
                received.extend(client.recv(65536))
            except BlockingIOError:
                pass
            return received

        await wait_for_in_reactor(lambda: read() == WELCOME, what="the welcome")
        (connection,) = sockets.connections
        transport = connection.transport.transport
        self.assertIs(type(transport), LazyTCPServer)
        self.assertTrue(transport.getTcpNoDelay())  # no_delay() knows it for a plain TCP transport
        held = {"logstr", "repstr", "_log_prefix", "_repr"} & set(vars(transport))
        self.assertEqual(held, set())
        n = transport.sessionno

        client.send(b"paramView nothing\r\n")
        await wait_for_in_reactor(lambda: read().count(b"\r\n") == 2, what="the reply")
        self.assertEqual(vars(transport).get("_log_prefix"), f"SocketProtocol,{n},127.0.0.1")
        self.assertNotIn("_repr", vars(transport))

        await port.stopListening()
        self.assertIsNone(port._realPortNumber)
        self.assertEqual(repr(transport), f"<SocketProtocol #{n} on {number}>")

        lost = Deferred()
        original = transport.connectionLost
        transport.connectionLost = lambda reason: (original(reason), lost.callback(None))
        client.close()
        await lost
        self.assertFalse(hasattr(transport, "protocol"))  # Twisted dropped it
        self.assertEqual(
            (transport.logPrefix(), repr(transport)),
            (f"SocketProtocol,{n},127.0.0.1", f"<SocketProtocol #{n} on {number}>"),
        )
        stopped = True
        await top.stopService()

    async def test_a_client_lost_before_any_event_still_has_twisted_names(self):
        """An abort (drain past its limit, output limit) reports the loss from
        a timer, not a read event: the names are made before Twisted drops
        the protocol."""
        factory = SocketFactory(make_node(clock=reactor), reactor)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        use_lazy_transport(port)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)
        await wait_for_in_reactor(lambda: factory.server.connections, what="the connection")
        (connection,) = factory.server.connections
        transport = connection.transport.transport
        self.assertNotIn("_log_prefix", vars(transport))
        connection.transport.abort()
        await wait_for_in_reactor(lambda: not factory.server.connections, what="the abort")
        n = transport.sessionno
        self.assertEqual(
            (vars(transport)["_log_prefix"], vars(transport)["_repr"]),
            (f"SocketProtocol,{n},127.0.0.1", f"<SocketProtocol #{n} on {port.getHost().port}>"),
        )
