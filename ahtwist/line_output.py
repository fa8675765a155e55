"""The socket's output side: bounded buffering, files streamed in order, flow control.

:class:`LineOutput` is mixed into :class:`~ahtwist.socket.SocketProtocol`
(the input side: framing, limits, lifecycle).  It writes every message as
compact JSON + ``\\r\\n``, streams files (raw bytes, one chunk per turn
while the client keeps up, later messages queued behind them), and is the
transport's streaming producer: Twisted pauses it when the client stops
reading; the backlog then decides whether the client's input is paused, or
the client dropped (docs/protocol-socket.md).
"""

from collections.abc import Callable
from typing import Any

import orjson
from twisted.logger import Logger

import ahtwist.errors as errors
from ahtwist.encoding import COMPACT_OPTION, JSON_DEFAULT, dumps
from ahtwist.files import FileInfo
from ahtwist.servers.write import sends_now, write_now

log = Logger(namespace="ahtwist.socket")

CRLF = b"\r\n"
NOT_FOUND_LINE = dumps(errors.FILE_NOT_FOUND) + CRLF
#: bytes read from a file per write while streaming it
FILE_CHUNK = 65536
#: a client this far behind (bytes) has its requests no longer read
INPUT_PAUSE_BACKLOG = 65536
#: what a file waiting behind another counts for in the backlog
PENDING_FILE_COST = 256
#: replies gathered while one read is handled are written together up to this many bytes
CORK_LIMIT = 65536


class LineOutput:
    """Output, files and flow control of one socket client (a mixin; see the
    module docstring).  The protocol provides ``transport``, ``factory``
    (``output_policy``, ``clock``), ``connection`` and the closing state."""

    transport: Any
    factory: Any
    server: Any
    connection: Any
    _closing: bool
    _gone: bool
    _input_paused: bool
    _held: bytes | None
    _release_call: Any
    # the protocol's: handle input held back, close now, finish a close
    _release_input: Callable[[], None]
    abort: Callable[[], None]
    _finish_close: Callable[[], None]
    #: the transport asked us to pause (its buffer is full)
    _paused = False
    #: bytes written while paused (since the pause began)
    _unread = 0
    #: the file being streamed (an open file) and, while it streams, what
    #: waits behind it in order: message bytes and _PendingFile entries
    _file: Any = None
    _queued: list[Any] | None = None  # a list while _file is set
    _queued_bytes = 0
    _close_after_file = False
    #: while one read is handled (:meth:`corked`): the lines written meanwhile,
    #: sent together after it (one send for a pipelined batch, not one each)
    _cork: list[bytes] | None = None
    _cork_bytes = 0

    def send_message(self, message: Any) -> None:
        """One message as a compact JSON line (dropped once closing).

        A chat delivery hands the *same* payload dict to every member of the
        room one after the other: it is encoded once (the factory keeps the
        latest line) and reused while the next recipient gets that same,
        unchanged dict.
        """
        if self._closing:
            return
        if type(message) is dict and message.get("context") == "user":
            factory = self.factory
            values = tuple(message.values())
            shared = factory.shared_line
            if shared is None or shared[0] is not message or shared[1] != values:
                shared = factory.shared_line = (message, values, dumps(message) + CRLF)
            self._write(shared[2])
        else:
            try:
                body = orjson.dumps(message, default=JSON_DEFAULT, option=COMPACT_OPTION)
            except TypeError:
                body = dumps(message)
            cork = self._cork
            if cork and self._cork_bytes + len(body) < CORK_LIMIT - 2:
                # behind earlier lines of this read, gathered (so no file is
                # streaming): the line's two parts, joined with the rest
                cork.append(body)
                cork.append(CRLF)
                self._cork_bytes += len(body) + 2
            else:
                self._write(body + CRLF)

    def corked(self, handle: Callable[[bytes], None], data: bytes) -> None:
        """``handle(data)`` (one read's lines) with the lines written
        meanwhile sent together once it returns."""
        self._cork = []
        try:
            handle(data)
        finally:
            self.uncork()

    def uncork(self) -> None:
        """Send what was gathered (before a file, a goodbye or the end of a read)."""
        cork = self._cork
        self._cork = None
        if cork:
            self._cork_bytes = 0
            self._write(cork[0] if len(cork) == 1 else b"".join(cork))

    def _write(self, data: bytes) -> None:
        if self._file is not None:
            assert self._queued is not None
            self._queued.append(data)
            self._queued_bytes += len(data)
        else:
            cork = self._cork
            # gathered only while they would go straight to the socket: behind
            # Twisted's buffer they are joined there, and counted line by line
            if cork is not None and (cork or sends_now(self.transport)):
                cork.append(data)
                self._cork_bytes += len(data)
                if self._cork_bytes < CORK_LIMIT:
                    return
                data = b"".join(cork)
                cork.clear()
                self._cork_bytes = 0
            write_now(self.transport, data)
            if not self._paused:
                return
            self._unread += len(data)
        self._check_backlog()

    def _check_backlog(self) -> None:
        """Pause reading a client that is behind, resume it once it caught
        up, drop it past the output limit."""
        backlog = self._unread + self._queued_bytes
        policy = self.factory.output_policy
        if backlog > policy.limit:
            policy.drop(self.connection.id, backlog, self.abort)
        elif backlog > INPUT_PAUSE_BACKLOG:
            if not self._input_paused and not self._closing:
                self._input_paused = True
                self.transport.pauseProducing()
        elif self._input_paused:
            self._input_paused = False
            if self._closing:
                pass
            elif self._held:
                # not from inside whatever wrote: on the next turn
                if self._release_call is None:
                    self._release_call = self.factory.clock.callLater(0, self._release_input)
            else:
                self._held = None
                self.transport.resumeProducing()

    def send_file(self, path: str) -> None:
        """``connection.send_file`` from server code: a public name, or an
        absolute path lying inside a public folder."""
        self.send_resolved_file(self.server.lookup_file(path))

    def send_resolved_file(self, info: FileInfo | None) -> None:
        """Stream the file's raw bytes (no framing), or the not-found line.
        A file asked for while another streams waits behind it, unopened."""
        if self._closing:
            return
        self.uncork()  # lines written before the file go before it
        if info is None:
            self._write(NOT_FOUND_LINE)
        elif self._file is not None:
            assert self._queued is not None
            self._queued.append(_PendingFile(info))
            self._queued_bytes += PENDING_FILE_COST
            self._check_backlog()
        else:
            handle = _open(info)
            if handle is None:
                self._write(NOT_FOUND_LINE)
                return
            self._file = handle
            self._queued = []
            self._pump()

    def _pump(self) -> None:
        """Write file chunks until the transport pushes back or the file ends;
        then what waited behind it, in order."""
        while self._file is not None and not self._paused and not self._gone:
            try:
                chunk = self._file.read(FILE_CHUNK)
            except OSError as e:
                log.info("{message}", message=errors.FILE_READ_ERROR.format(error=e))
                chunk = b""
            if chunk:
                self.transport.write(chunk)
                continue
            self._file.close()
            self._file = None
            self._flush_queue()
        if self._gone:
            return
        if self._file is None and self._close_after_file:
            self._close_after_file = False
            self._finish_close()
        else:
            self._check_backlog()

    def _flush_queue(self) -> None:
        queued, self._queued = self._queued or [], None
        self._queued_bytes = 0
        for index, item in enumerate(queued):
            if type(item) is bytes:
                self.transport.write(item)
                continue
            handle = _open(item.info)
            if handle is None:
                self.transport.write(NOT_FOUND_LINE)
                continue
            self._file = handle
            self._queued = rest = queued[index + 1 :]
            self._queued_bytes = sum(
                len(x) if type(x) is bytes else PENDING_FILE_COST for x in rest
            )
            return

    def _stop_file(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()
        self._queued = None
        self._queued_bytes = 0

    # --- IPushProducer (driven by our transport's write buffer) --------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self._unread = 0
            self._pump()  # continues a file; re-checks the backlog

    def stopProducing(self) -> None:
        self._closing = self._gone = True
        self._stop_file()


class _PendingFile:
    """A file waiting behind the one streaming now (opened when its turn comes)."""

    __slots__ = ("info",)

    def __init__(self, info: FileInfo) -> None:
        self.info = info


def _open(info: FileInfo) -> Any:
    try:
        return open(info.path, "rb")  # noqa: SIM115 -- closed by _pump/_stop_file
    except OSError as e:
        log.info("{message}", message=errors.FILE_READ_ERROR.format(error=e))
        return None
