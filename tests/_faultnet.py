"""Network faults on loopback: a TCP proxy that stalls, resets or refuses, and a raw-bytes HTTP/2 server.

Both are plain sockets and threads, so the bytes on the wire are exactly what a test asks for:
no grpc server in between to tidy up a misbehaving answer.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# --- TCP proxy ---------------------------------------------------------------------------------


def _rst(sock: socket.socket) -> None:
    """Close with a TCP reset rather than a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _wake(listener: socket.socket) -> None:
    """Unblock a thread in accept() (closing the socket alone does not), then close it."""
    with contextlib.suppress(OSError):
        socket.create_connection(listener.getsockname(), timeout=1).close()
    with contextlib.suppress(OSError):
        listener.close()


class _Pipe:
    """One proxied connection: two pump threads; `stalled` makes both swallow bytes, sockets kept open."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.stalled = False
        self.closed = False
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.stalled:
                    continue  # the path is dead: bytes go nowhere, nobody is told
                dst.sendall(data)
        except OSError:
            pass
        if not self.stalled:
            self.close()

    def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            if reset:
                _rst(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:<port> to `target`; faults are switched on and off by the test.

    - `stall()`: every open connection silently stops passing bytes (sockets stay open, as when a
      NAT or a load balancer drops a flow); new connections pass as usual.
    - `blackhole = True`: new connections are accepted but get no answer (a server that accepts TCP
      and never finishes the HTTP/2 handshake).
    - `refuse = True`: new connections are reset at once (a restarting server); `reset_all()` resets
      the open ones.
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host.strip("[]"), int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.pipes: list[_Pipe] = []
        self.held: list[socket.socket] = []
        self.blackhole = False
        self.refuse = False
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._stop:
                _rst(conn)
                return
            self.accepted += 1
            if self.refuse:
                _rst(conn)
                continue
            if self.blackhole:
                self.held.append(conn)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _rst(conn)
                continue
            upstream.settimeout(None)
            self.pipes.append(_Pipe(conn, upstream))

    def stall(self) -> None:
        for pipe in self.pipes:
            pipe.stalled = True

    def reset_all(self) -> None:
        for pipe in self.pipes:
            pipe.close(reset=True)
        for conn in self.held:
            _rst(conn)
        self.held.clear()

    def open_connections(self) -> int:
        return sum(not p.closed and not p.stalled for p in self.pipes)

    def close(self) -> None:
        self._stop = True
        _wake(self._listener)
        self.reset_all()
        self._thread.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- raw HTTP/2 --------------------------------------------------------------------------------

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack(headers: Sequence[tuple[str, str | bytes]]) -> bytes:
    """Each header as a literal without indexing and without Huffman coding: the simplest valid HPACK."""
    out = bytearray()
    for name, value in headers:
        raw_name = name.encode("ascii")
        raw_value = value if isinstance(value, bytes) else value.encode("latin-1")
        out += b"\x00" + _hpack_int(len(raw_name), 7) + raw_name + _hpack_int(len(raw_value), 7) + raw_value
    return bytes(out)


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def grpc_message(payload: bytes) -> bytes:
    """One length-prefixed gRPC message (uncompressed)."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


RESPONSE_HEADERS = ((":status", "200"), ("content-type", "application/grpc"))


@dataclass
class Step:
    """One thing the raw server does on a request's stream (or connection)."""

    kind: str  # "headers", "data", "trailers", "goaway", "rst", "close", "sleep", "hold"
    headers: Sequence[tuple[str, str | bytes]] = ()
    payload: bytes = b""
    seconds: float = 0.0
    code: int = 0


def headers(*extra: tuple[str, str | bytes]) -> Step:
    return Step("headers", headers=(*RESPONSE_HEADERS, *extra))


def message(payload: bytes) -> Step:
    return Step("data", payload=grpc_message(payload))


def trailers(status: int = 0, msg: str | bytes | None = None, *extra: tuple[str, str | bytes]) -> Step:
    hs: list[tuple[str, str | bytes]] = [("grpc-status", str(status))]
    if msg is not None:
        hs.append(("grpc-message", msg))
    return Step("trailers", headers=[*hs, *extra])


def goaway(code: int = 0) -> Step:
    return Step("goaway", code=code)


def hold() -> Step:
    """Keep the connection open and silent until the server stops (a missing status)."""
    return Step("hold")


@dataclass
class RawH2Server:
    """An HTTP/2 server that answers each request with a scripted list of Steps, byte for byte.

    `script(n)` gives the steps for the n-th request (from 0). The server speaks just enough
    HTTP/2 for grpc's client: the preface, SETTINGS (and their ACK), PING ACKs; it reads the
    request and ignores its content. Request n is served once its END_STREAM arrives.
    """

    script: Callable[[int], Sequence[Step]]
    requests: int = 0
    cancelled: list[int] = field(default_factory=list)  # stream ids the client reset
    _stop: threading.Event = field(default_factory=threading.Event)
    _conns: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._stop.is_set():
                conn.close()
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def _frames(self, conn: socket.socket) -> Iterator[tuple[int, int, int, bytes]]:
        if self._read(conn, len(_PREFACE)) != _PREFACE:
            raise ConnectionError("not HTTP/2")
        while True:
            head = self._read(conn, 9)
            length = int.from_bytes(head[:3], "big")
            kind, flags = head[3], head[4]
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            yield kind, flags, stream, self._read(conn, length) if length else b""

    def _serve(self, conn: socket.socket) -> None:
        lock = threading.Lock()

        def send(data: bytes) -> None:
            with lock:
                conn.sendall(data)

        try:
            send(frame(SETTINGS, 0, 0))
            for kind, flags, stream, payload in self._frames(conn):
                if kind == SETTINGS and not flags & ACK:
                    send(frame(SETTINGS, ACK, 0))
                elif kind == PING and not flags & ACK:
                    send(frame(PING, ACK, 0, payload))
                elif kind == RST_STREAM:
                    self.cancelled.append(stream)
                elif kind in (HEADERS, DATA) and flags & END_STREAM:
                    n = self.requests
                    self.requests += 1
                    steps = list(self.script(n))
                    threading.Thread(target=self._answer, args=(conn, send, stream, steps), daemon=True).start()
        except (OSError, ConnectionError):
            pass

    def _answer(self, conn: socket.socket, send: Callable[[bytes], None], stream: int, steps: list[Step]) -> None:
        try:
            for step in steps:
                if step.kind == "headers":
                    send(frame(HEADERS, END_HEADERS, stream, hpack(step.headers)))
                elif step.kind == "data":
                    send(frame(DATA, 0, stream, step.payload))
                elif step.kind == "trailers":
                    send(frame(HEADERS, END_HEADERS | END_STREAM, stream, hpack(step.headers)))
                elif step.kind == "goaway":
                    send(frame(GOAWAY, 0, 0, struct.pack(">II", stream, step.code)))
                elif step.kind == "rst":
                    send(frame(RST_STREAM, 0, stream, struct.pack(">I", step.code)))
                elif step.kind == "close":
                    _rst(conn)
                    return
                elif step.kind == "sleep":
                    time.sleep(step.seconds)
                elif step.kind == "hold":
                    self._stop.wait()
                    return
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        _wake(self._listener)
        for conn in self._conns:
            _rst(conn)
        self._thread.join(timeout=2)

    def __enter__(self) -> RawH2Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
