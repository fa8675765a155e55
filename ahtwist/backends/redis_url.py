"""Redis URLs: parsed and checked at start-up, shown with the password masked.

Kept apart from :mod:`ahtwist.backends.redis` (which imports txredisapi, and
so a reactor) so the configuration can validate ``redis.url`` before twistd
has chosen the reactor.

Accepted forms::

    redis://host[:port][/db]
    redis://:password@host[:port][/db]
    redis://user:password@host[:port][/db]
    rediss://...                          (TLS; same forms)
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]

``redis+sentinel://`` lists Redis Sentinel addresses (port default 26379)
and names the monitored master; the node asks the Sentinels, in order, for
the master's address (``SENTINEL get-master-addr-by-name``) each time it
connects, checks that the server it reached is a master (``ROLE``), and
after a failover (the master lost, or a write refused with ``READONLY``)
reconnects to the promoted replica.  The user and password are the master's;
``?sentinel_password=...`` authenticates to Sentinels that require one
(``requirepass`` in sentinel.conf).  TLS with Sentinel is not supported.

Query parameters (all optional, for ``rediss://``):

* ``ssl_ca_certs=/path/ca.pem`` -- trust these CA certificates instead of the
  system's;
* ``ssl_cert_reqs=none`` -- do not verify the server's certificate
  (``required``, the default, verifies it and its host name);
* ``ssl_certfile=/path/cert.pem`` and ``ssl_keyfile=/path/key.pem`` -- a
  client certificate, for servers with ``tls-auth-clients yes``.
"""

from urllib.parse import parse_qs, quote, unquote, urlsplit

import attrs

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_SCHEME = "redis+sentinel"
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")


class RedisURLError(ValueError):
    """The URL cannot be used; the message says why (never the password)."""


@attrs.frozen
class RedisTarget:
    """Where and how to connect."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_certs: str | None = None
    verify: bool = True
    certfile: str | None = None
    keyfile: str | None = None
    #: Sentinel addresses ((host, port), ...) and the master's name; () = no Sentinel
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    sentinel_password: str | None = None

    @property
    def masked(self) -> str:
        """The URL for logs: the password replaced by ``****``."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:****@"
        elif self.username:
            auth = f"{quote(self.username, safe='')}@"
        if self.sentinels:
            hosts = ",".join(f"{_bracket(host)}:{port}" for host, port in self.sentinels)
            return f"{SENTINEL_SCHEME}://{auth}{hosts}/{self.master_name}/{self.db}"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{_bracket(self.host)}:{self.port}/{self.db}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_redis_url(url: str) -> RedisTarget:
    """A :class:`RedisTarget` for ``url``, or :class:`RedisURLError`."""
    if url.startswith(SENTINEL_SCHEME + "://"):
        return _parse_sentinel_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise RedisURLError(f"invalid Redis URL: {e}") from None
    if parts.scheme not in ("redis", "rediss"):
        raise RedisURLError("a Redis URL starts with redis://, rediss:// or redis+sentinel://")
    if not parts.hostname:
        raise RedisURLError("the Redis URL names no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise RedisURLError(f"the Redis database must be a number, got {path!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    for name in query:
        if name not in _TLS_OPTIONS:
            raise RedisURLError(f"unknown Redis URL option {name!r}")

    def option(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    cert_reqs = (option("ssl_cert_reqs") or "required").lower()
    if cert_reqs not in ("none", "required"):
        raise RedisURLError(f"ssl_cert_reqs must be none or required, got {cert_reqs!r}")
    if (option("ssl_certfile") is None) != (option("ssl_keyfile") is None):
        raise RedisURLError("ssl_certfile and ssl_keyfile go together")
    tls = parts.scheme == "rediss"
    if not tls and any(option(name) is not None for name in _TLS_OPTIONS):
        raise RedisURLError("ssl_* options need a rediss:// URL")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return RedisTarget(
        host=parts.hostname,
        port=port or DEFAULT_PORT,
        db=int(path) if path else 0,
        username=username,
        password=password,
        tls=tls,
        ca_certs=option("ssl_ca_certs"),
        verify=cert_reqs == "required",
        certfile=option("ssl_certfile"),
        keyfile=option("ssl_keyfile"),
    )


def _parse_sentinel_url(url: str) -> RedisTarget:
    parts = urlsplit(url)
    netloc = parts.netloc
    auth, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = []
    for address in hosts.split(","):
        try:
            address_parts = urlsplit(f"//{address}")
            port = address_parts.port
        except ValueError as e:
            raise RedisURLError(f"invalid Redis URL: {e}") from None
        if not address_parts.hostname:
            raise RedisURLError("the Redis URL names no Sentinel host")
        sentinels.append((address_parts.hostname, port or DEFAULT_SENTINEL_PORT))
    path = [unquote(p) for p in parts.path.strip("/").split("/") if p]
    if not path:
        raise RedisURLError("a redis+sentinel:// URL names the master: redis+sentinel://host:26379/mymaster")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise RedisURLError(f"the Redis database must be a number, got {'/'.join(path[1:])!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    for name in query:
        if name != "sentinel_password":
            raise RedisURLError(f"unknown Redis URL option {name!r}")
    sentinel_password = query["sentinel_password"][-1] if "sentinel_password" in query else None
    return RedisTarget(
        host=sentinels[0][0],
        port=sentinels[0][1],
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
        sentinels=tuple(sentinels),
        master_name=path[0],
        sentinel_password=sentinel_password,
    )


def mask_url(url: str) -> str:
    """``url`` fit for a log line (the password masked), even when invalid."""
    try:
        return parse_redis_url(url).masked
    except RedisURLError:
        return "<invalid Redis URL>"
