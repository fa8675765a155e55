"""``connection.raw.secure`` and ``.peer_certificate`` over real TLS (OpenSSL,
in memory through ``twisted.test.iosim``): a socket client that presents a
certificate is seen with it, one that does not is not, plain TCP is not secure."""

import json

from cryptography import x509
from twisted.internet import ssl
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient

from ahtwist import Action
from ahtwist.socket import SocketFactory
from tests.e2e.servers import make_certificate
from tests.helpers import make_node


class Peer(Action):
    name = "peer"
    description = "secure, and the client certificate's serial number"

    def run(self, data):
        raw = data.connection.raw
        cert = raw.peer_certificate
        data.response["secure"] = raw.secure
        data.response["serial"] = None if cert is None else cert.serial_number


class Collect(Protocol):
    def connectionMade(self):
        self.received = b""

    def dataReceived(self, data):
        self.received += data


def pem(path):
    return path.read_bytes()


def converse(tmp_path, with_client_cert: bool):
    (tmp_path / "s").mkdir()
    (tmp_path / "c").mkdir()
    key, cert = make_certificate(tmp_path / "s")
    client_key, client_cert = make_certificate(tmp_path / "c")
    server_identity = ssl.PrivateCertificate.loadPEM(pem(key) + pem(cert))
    client_identity = ssl.PrivateCertificate.loadPEM(pem(client_key) + pem(client_cert))
    if with_client_cert:  # ask for (and require) a certificate from this authority
        server_options = server_identity.options(ssl.Certificate.loadPEM(pem(client_cert)))
    else:
        server_options = server_identity.options()
    client_options = ssl.optionsForClientTLS(
        "localhost",
        trustRoot=ssl.Certificate.loadPEM(pem(cert)),
        clientCertificate=client_identity if with_client_cert else None,
    )
    sockets = SocketFactory(make_node(plugins=[Peer]))
    clock = sockets.clock  # TLS aggregates small writes until the next turn of this clock
    client, _, pump = connectedServerAndClient(
        lambda: TLSMemoryBIOFactory(server_options, False, sockets, clock=clock).buildProtocol(None),
        lambda: TLSMemoryBIOFactory(
            client_options, True, ClientFactory.forProtocol(Collect), clock=clock
        ).buildProtocol(None),
        greet=False,
    )

    def settle():
        for _ in range(10):
            pump.flush()
            clock.advance(0)

    settle()
    client.write(b'{"action":"peer","messageId":1}\n')
    settle()
    lines = client.wrappedProtocol.received.split(b"\r\n")
    serial = x509.load_pem_x509_certificate(pem(client_cert)).serial_number
    return json.loads(lines[0]), json.loads(lines[1]), serial


def test_a_presented_client_certificate_is_on_connection_raw(tmp_path):
    welcome, reply, serial = converse(tmp_path, with_client_cert=True)
    assert welcome == {"welcome": "Hello! Welcome to the actionhero api", "context": "api"}
    assert reply == {"secure": True, "serial": serial, "context": "response", "messageCount": 1, "messageId": 1}


def test_tls_without_a_client_certificate(tmp_path):
    _, reply, _ = converse(tmp_path, with_client_cert=False)
    assert (reply["secure"], reply["serial"]) == (True, None)
