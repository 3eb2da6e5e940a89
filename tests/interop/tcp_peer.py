#!/usr/bin/env python3
"""An independent TCP-tunnel client against masque-node: CONNECT-TCP
(draft-ietf-httpbis-connect-tcp-11, tokens `connect-tcp`, `connect-tcp-07`,
`connect-tcp-12`) and classic CONNECT, each over

  h3   aioquic (HTTP/3 extended CONNECT; classic: `:method CONNECT` +
       `:authority host:port` only)
  h2   Python `h2` over the standard `ssl` module (RFC 8441 extended CONNECT;
       classic CONNECT as RFC 9113 §8.5)
  h1   a hand-written HTTP/1.1 client on `ssl` memory BIOs (`GET` +
       `Upgrade: <token>` answered 101; `CONNECT host:port` answered 2xx)

to a TCP target given with --target HOST:PORT. None of it uses the node's
code; the capsule codec is tcp_capsules.py.

Scenarios (one per run):

  echo              2xx/101 (+ `capsule-protocol: ?1` for connect-tcp; no
                    Content-Length / Transfer-Encoding), --bytes seeded
                    pseudo-random bytes sent while reading, then the
                    half-close: FINAL_DATA (connect-tcp), END_STREAM / QUIC
                    FIN (classic h2/h3), TLS close_notify + TCP FIN (classic
                    h1). The echo (the target echoes until our FIN, then
                    FINs) must come back byte-exact and end cleanly:
                    FINAL_DATA with nothing after it, then the stream's FIN /
                    END_STREAM (h1: the connection closed with close_notify).
                    For connect-tcp the client ends its own stream (h1: its
                    close_notify + FIN) once the node's FINAL_DATA arrived.
  grease            echo with the data in DATA capsules of random sizes and
                    unknown capsules around them (types 0x29*N+0x17, small,
                    and two over the 64 KiB capsule bound), empty DATA
                    capsules among them, and the last 1000 bytes in
                    FINAL_DATA's payload; connect-tcp only
  big-capsules      echo with three quarters of the data in one DATA capsule
                    (768 KiB of 1 MiB) and the rest in FINAL_DATA's payload;
                    connect-tcp only
  concurrent        --tunnels tunnels on one connection (h2, h3), alternately
                    --protocol and classic CONNECT, each echoing its own
                    --bytes at the same time: every echo byte-exact, every
                    end clean
  stalled-neighbour two tunnels on one h2 connection: A sends 32 MiB but its
                    stream window is never reopened; B's --bytes echo must
                    complete meanwhile; then A's window reopens and its echo
                    completes byte-exact (h2 only)
  optimistic        --bytes, FINAL_DATA and the stream's end sent right
                    behind the request, before the response (CTCP-23):
                    byte-exact echo, clean end (h2, h3)
  client-abort      --bytes sent, then the client aborts (h3 RESET_STREAM +
                    STOP_SENDING, h2 RST_STREAM CANCEL, h1 TCP reset); the
                    test checks that the target is reset
  refused           expect 502 with `error=connection_refused` in Proxy-Status
  private           expect 403 with `error=destination_ip_prohibited`
  dns-error         expect 502 with `error=dns_error` (a name the node's
                    resolver does not find)
  timeout           expect 504 with `error=connection_timeout` (a target
                    that never completes the TCP handshake)
  data-after-final  DATA, FINAL_DATA, DATA in one write (malformed): the node
                    resets the stream (h3 H3_MESSAGE_ERROR 0x10e, h2
                    RST_STREAM PROTOCOL_ERROR 0x1) or, on h1, closes the
                    connection; connect-tcp only
  target-reset      the target resets after reading some bytes: the node
                    resets the stream (h3 H3_CONNECT_ERROR 0x10f, h2
                    RST_STREAM CONNECT_ERROR 0xa) or, on h1, closes the
                    connection without close_notify; never a FINAL_DATA
  target-fin-first  the target sends --greeting bytes (byte i = i % 251) and
                    FINs at once: they must arrive, then the node's half-close
                    (FINAL_DATA / END_STREAM / FIN / close_notify); the peer
                    then sends --bytes and its own half-close, and keeps the
                    tunnel open (failing on a reset) until the test, which
                    checks what the target received, writes a line to stdin
  target-fin-at-once
                    target-fin-first with a target that FINs as soon as it
                    accepts (run with --greeting 0): the FIN may reach the
                    node before its 2xx goes out
  end-without-final DATA capsules, then the stream's end (QUIC FIN,
                    END_STREAM, close_notify + TCP FIN) without FINAL_DATA:
                    what the node does with the stream is only recorded, the
                    test checks that the target was reset; connect-tcp only

Prints one JSON object on stdout (flat keys first, `"ok": true|false`); exits
1 with the reason in `"error"` on a failed check. Every wait is bounded
(TIMEOUT without progress per step; the test bounds the whole run).
"""
import argparse
import asyncio
import os
import random
import select
import socket
import ssl
import sys
import time
import traceback

import h2.events

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # masque_peer, even under `python -P`
from masque_peer import TIMEOUT, Fail, H2Client, Tls, check, client_context, emit  # noqa: E402
from tcp_capsules import Codec, grease_stream, payload, sha256  # noqa: E402

H3_MESSAGE_ERROR = 0x10E
H3_CONNECT_ERROR = 0x10F
H2_PROTOCOL_ERROR = 0x1
H2_CONNECT_ERROR = 0xA
H3_REQUEST_CANCELLED = 0x10C
H2_CANCEL = 0x8

PROTOCOLS = ["connect-tcp", "connect-tcp-07", "connect-tcp-12", "classic"]
SCENARIOS = ["echo", "grease", "big-capsules", "refused", "private", "dns-error", "timeout", "data-after-final", "target-reset", "target-fin-first", "target-fin-at-once", "end-without-final", "concurrent", "stalled-neighbour", "optimistic", "client-abort"]
# DATA capsule size of the plain echo.
CHUNK = 16384
# Tunnel A's upload in stalled-neighbour: more than the loopback socket
# buffers between the node and the target can absorb.
STALL_BYTES = 32 << 20


class Response:
    def __init__(self, status, fields):
        self.status = status
        self.fields = fields  # [(name lowercased, value)] as received

    def get(self, name):
        vals = [v for k, v in self.fields if k == name]
        return ", ".join(vals) if vals else None

    def tokens(self, name):
        v = self.get(name) or ""
        return [t.strip().lower() for t in v.split(",") if t.strip()]


def text(b):
    return b.decode("latin-1") if isinstance(b, (bytes, bytearray)) else str(b)


# Events of a tunnel, returned by `poll`:
#   ("data", bytes)
#   ("end", how)      the node ended its side cleanly: "fin" (h3),
#                     "end_stream" (h2), "close_notify" (h1 TLS close)
#   ("reset", code)   stream reset (h3 RESET_STREAM / h2 RST_STREAM code)
#   ("closed", how)   the connection went away: h1 "fin" (the TCP FIN, with
#                     or without a close_notify before it), "reset" (TCP
#                     RST); h2/h3 a GOAWAY, CONNECTION_CLOSE or EOF


# ---------------------------------------------------------------- HTTP/3


class H3:
    """aioquic behind a blocking facade: each call runs the event loop until
    it has an answer or the deadline passes. Calls act on the stream `sid`
    (the last one opened; set it to switch between tunnels)."""

    name = "h3"

    def __init__(self, a):
        from aioquic.asyncio import connect
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic_client import Client

        self.loop = asyncio.new_event_loop()
        config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], max_datagram_frame_size=65536)
        config.load_verify_locations(a.ca)
        config.server_name = "localhost"
        self.cm = connect("127.0.0.1", a.port, configuration=config, create_protocol=Client)
        self.c = self._run(self.cm.__aenter__(), "QUIC handshake")
        self.sid = None
        self.pending = {}  # sid -> events already taken from the queue

    def _run(self, coro, what, timeout=TIMEOUT):
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))
        except (asyncio.TimeoutError, TimeoutError):
            raise Fail(f"h3: {what}: not within {timeout}s") from None

    def open(self, headers, first=b"", fin=False):
        self.sid = self.c.request([(k.encode(), v.encode()) for k, v in headers])
        if first or fin:
            self.c.send_data(self.sid, first, end=fin)
        deadline = time.monotonic() + TIMEOUT
        while True:
            ev = self._run(self._next(deadline), "response")
            if ev[0] == "headers":
                fields = [(text(k).lower(), text(v)) for k, v in ev[1].items()]
                status = int(ev[1].get(b":status", b"0"))
                self.pending[self.sid] = [("end", "fin")] if ev[2] else []
                return Response(status, fields)
            raise Fail(f"h3: expected the response, got {ev[0]} {ev[1:]}")

    async def _next(self, deadline):
        """The next raw event of our stream, or ("closed", code) once the
        connection is gone."""
        q = self.c._queue(self.c.events, self.sid)
        if not q.empty():
            return q.get_nowait()
        if self.c.terminated.done():
            return ("closed", f"CONNECTION_CLOSE {self.c.terminated.result():#x}")
        get = asyncio.ensure_future(q.get())
        await asyncio.wait({get, self.c.terminated}, timeout=max(deadline - time.monotonic(), 0.001), return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        if self.c.terminated.done():
            return ("closed", f"CONNECTION_CLOSE {self.c.terminated.result():#x}")
        raise socket.timeout()

    def send(self, data):
        self.c.send_data(self.sid, bytes(data))

    def end(self):
        self.c.send_data(self.sid, b"", end=True)

    def abort(self):
        """RESET_STREAM and STOP_SENDING, H3_REQUEST_CANCELLED."""
        self.c._quic.reset_stream(self.sid, H3_REQUEST_CANCELLED)
        self.c._quic.stop_stream(self.sid, H3_REQUEST_CANCELLED)
        self.c.transmit()

    def poll(self, deadline):
        if self.pending.get(self.sid):
            out, self.pending[self.sid] = self.pending[self.sid], []
            return out
        try:
            ev = self.loop.run_until_complete(self._next(deadline))
        except asyncio.TimeoutError:
            raise socket.timeout() from None
        if ev[0] == "data":
            out = [("data", ev[1])] if ev[1] else []
            if ev[2]:
                out.append(("end", "fin"))
            return out
        if ev[0] == "reset":
            return [("reset", ev[1])]
        if ev[0] == "headers":
            raise Fail(f"h3: HEADERS after the response: {ev[1]}")
        return [ev]

    def close(self):
        try:
            self._run(self.cm.__aexit__(None, None, None), "close", timeout=2)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        self.loop.close()


# ---------------------------------------------------------------- HTTP/2


class H2(H2Client):
    """Python `h2` on a blocking `ssl` socket. Sends what `send` queued as
    the flow-control windows allow, reading whenever they are shut (the
    node's own sends are bounded by our windows, so a blocking write never
    waits on a node that waits on us)."""

    name = "h2"

    class Tunnel:
        def __init__(self):
            self.outq = bytearray()
            self.want_end = False
            self.end_sent = False
            self.events = []
            # A held tunnel is read but its stream window is not reopened
            # (the connection's is): the node must stop sending on it.
            self.held = False
            self.unacked = 0

    def __init__(self, a):
        ctx = client_context(a.ca, None, ["h2"])
        raw = socket.create_connection(("127.0.0.1", a.port), timeout=TIMEOUT)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.sock.settimeout(TIMEOUT)
        alpn = self.sock.selected_alpn_protocol()
        check(alpn == "h2", f"h2: ALPN: server selected {alpn!r}")
        self.sid = None  # the stream calls act on (the last one opened)
        self.tunnels = {}  # sid -> Tunnel
        self.conn_events = []  # GOAWAY, for every stream
        self.eof_how = None
        super().__init__()

    def _write(self, data):
        self.sock.sendall(data)

    def _read(self, deadline):
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            self.eof_how = "reset"
            return b""
        except ssl.SSLEOFError:
            self.eof_how = "eof"
            return b""
        if not data:
            self.eof_how = "eof"
        return data

    def how_closed(self):
        return self.eof_how

    def _on_event(self, ev):
        sid = getattr(ev, "stream_id", None)
        tun = self.tunnels.get(sid)
        if isinstance(ev, h2.events.DataReceived):
            n = ev.flow_controlled_length
            if n and tun is not None and tun.held:
                self.conn.increment_flow_control_window(n)
                tun.unacked += n
            elif n:
                self.conn.acknowledge_received_data(n, ev.stream_id)
            if tun is not None and ev.data:
                tun.events.append(("data", bytes(ev.data)))
            return
        super()._on_event(ev)
        if isinstance(ev, h2.events.ConnectionTerminated):
            self.conn_events.append(("closed", f"GOAWAY {int(ev.error_code):#x}"))
        elif tun is None:
            return
        elif isinstance(ev, h2.events.StreamEnded):
            tun.events.append(("end", "end_stream"))
        elif isinstance(ev, h2.events.StreamReset) and ev.remote_reset:
            tun.events.append(("reset", int(ev.error_code)))

    def open(self, headers, first=b"", fin=False):
        self.sid = self.request(headers)
        self.tunnels[self.sid] = self.Tunnel()
        if first or fin:
            self.tunnels[self.sid].outq += first
            self.tunnels[self.sid].want_end = fin
            self._push()
        s = self.response(self.sid, "h2: response")
        if s.headers is None:
            raise Fail(f"h2: the request was reset ({s.reset:#x}) instead of answered")
        fields = [(text(k), text(v)) for k, v in s.headers.items()]
        return Response(s.status, fields)

    def send(self, data):
        self.tunnels[self.sid].outq += data

    def hold(self, held):
        """Stops (True) or resumes (False) reopening this stream's receive
        window; resuming reopens it by everything held back."""
        tun = self.tunnels[self.sid]
        tun.held = held
        if not held and tun.unacked:
            self.conn.increment_flow_control_window(tun.unacked, self.sid)
            tun.unacked = 0
            self.flush()

    def end(self):
        self.tunnels[self.sid].want_end = True

    def abort(self):
        """RST_STREAM CANCEL."""
        self.tunnels[self.sid].outq.clear()
        self.conn.reset_stream(self.sid, H2_CANCEL)
        self.flush()

    def _push(self):
        """Every tunnel's queued bytes, as far as the windows allow."""
        for sid, tun in self.tunnels.items():
            stream = self.conn.streams.get(sid)
            if stream is None or stream.closed:
                tun.outq.clear()
                continue
            while tun.outq:
                window = self.conn.local_flow_control_window(sid)
                n = min(window, self.conn.max_outbound_frame_size, len(tun.outq))
                if n <= 0:
                    break
                self.conn.send_data(sid, bytes(tun.outq[:n]))
                del tun.outq[:n]
            if not tun.outq and tun.want_end and not tun.end_sent:
                self.conn.end_stream(sid)
                tun.end_sent = True
        self.flush()

    def poll(self, deadline):
        tun = self.tunnels[self.sid]
        if not tun.events:
            self._push()
        while not tun.events:
            if self.conn_events:
                return list(self.conn_events)
            if self.closed:
                return [("closed", self.eof_how or "eof")]
            data = self._read(deadline)
            if not data:
                self.closed = True
                continue
            for ev in self.conn.receive_data(data):
                self._on_event(ev)
            self._push()
        out, tun.events = tun.events, []
        return out

    def close(self):
        try:
            self.conn.close_connection()
            self.flush()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- HTTP/1.1


class H1:
    """HTTP/1.1 on TLS over memory BIOs and a non-blocking socket: one select
    loop sends and reads at once, so a large echo never deadlocks."""

    name = "h1"

    def __init__(self, a):
        self.tls = Tls(a.port, client_context(a.ca, None, ["http/1.1"]))
        self.tls.handshake("http/1.1")
        self.sock = self.tls.sock
        self.obj = self.tls.obj
        self.raw_out = bytearray()  # TLS records not yet on the wire
        self.shut_after_flush = False
        self.shut = False
        self.tcp_eof = False
        self.tls_closed = False  # the node's close_notify arrived
        self.done = None  # how the connection ended: "fin", "reset", ...
        self.events = []
        self.buf = bytearray()

    def _queue_app(self, data):
        view = memoryview(bytes(data))
        while view:
            n = self.obj.write(view)
            view = view[n:]
        self.raw_out += self.tls.outg.read()

    def open(self, request):
        self._queue_app(request)
        deadline = time.monotonic() + TIMEOUT
        self.sock.setblocking(False)
        while b"\r\n\r\n" not in self.buf:
            try:
                events = self._io(deadline)
            except (socket.timeout, TimeoutError):
                raise Fail(f"h1: no response head within {TIMEOUT}s: {bytes(self.buf)!r}") from None
            for ev in events:
                if ev[0] == "data":
                    self.buf += ev[1]
                elif b"\r\n\r\n" in self.buf:
                    self.events.append(ev)  # after the rest of this read
                else:
                    raise Fail(f"h1: the node closed the connection ({ev[1]}) before a response head: {bytes(self.buf)!r}")
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray()
        if rest:
            self.events.insert(0, ("data", rest))
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        check(len(parts) >= 2 and parts[0] == "HTTP/1.1" and parts[1].isdigit(), f"h1: status line {lines[0]!r}")
        fields = []
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            check(sep == ":", f"h1: field line {line!r}")
            fields.append((k.strip().lower(), v.strip()))
        return Response(int(parts[1]), fields)

    def send(self, data):
        self._queue_app(data)

    def end(self):
        """close_notify, then TCP FIN once every record is on the wire;
        reading goes on (TLS 1.3 half-close)."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        self.raw_out += self.tls.outg.read()
        self.shut_after_flush = True

    def abort(self):
        """A TCP reset (SO_LINGER 0, close): no close_notify, no FIN."""
        self.tls.reset()
        self._closed([], "reset by us")

    def _io(self, deadline):
        """One round of the select loop: writes what the socket takes, reads
        what arrived; the decrypted events. After the node's close_notify it
        goes on writing (TLS 1.3 half-close) and reports the TCP close."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        out = []
        want_w = [self.sock] if self.raw_out and not self.shut else []
        want_r = [self.sock] if not self.tcp_eof else []
        if not want_r and not want_w:
            time.sleep(min(remaining, 0.05))
            return out
        r, w, _ = select.select(want_r, want_w, [], remaining)
        if w:
            try:
                n = self.sock.send(self.raw_out)
                del self.raw_out[:n]
            except (BrokenPipeError, ConnectionResetError):
                self.raw_out.clear()
                self.shut = True
        if self.shut_after_flush and not self.raw_out and not self.shut:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.shut = True
        if r:
            try:
                data = self.sock.recv(262144)
            except BlockingIOError:
                data = None
            except ConnectionResetError:
                self._closed(out, "reset")
                return out
            if data == b"":
                self.tcp_eof = True
                self.tls.inc.write_eof()
            elif data:
                self.tls.inc.write(data)
        while not self.tls_closed:
            try:
                d = self.obj.read(262144)
                if not d:
                    self.tls_closed = True
                    out.append(("end", "close_notify"))
                    break
                out.append(("data", d))
            except ssl.SSLWantReadError:
                if self.tcp_eof:
                    self._closed(out, "fin")
                break
            except ssl.SSLZeroReturnError:
                self.tls_closed = True
                out.append(("end", "close_notify"))
                break
            except ssl.SSLEOFError:
                self._closed(out, "fin")
                break
            except ssl.SSLError as e:
                self._closed(out, f"tls error {e.reason}")
                break
        if self.tls_closed and self.tcp_eof and not self.done:
            # The TCP FIN after a close_notify.
            self._closed(out, "fin")
        if not self.shut:
            self.raw_out += self.tls.outg.read()
        return out

    def _closed(self, out, how):
        """The connection is gone (`how`): reported once, nothing more read."""
        if not self.done:
            self.done = how
            out.append(("closed", how))
        self.tcp_eof = True
        self.tls_closed = True

    def poll(self, deadline):
        if self.events:
            out, self.events = self.events, []
            return out
        while True:
            out = self._io(deadline)
            if out:
                return out

    def close(self):
        self.tls.close()


# ---------------------------------------------------------------- requests


def target_parts(a):
    host, _, port = a.target.rpartition(":")
    check(host and port.isdigit(), f"--target {a.target!r}: HOST:PORT")
    return host.strip("[]"), int(port)


def tcp_path(a):
    host, port = target_parts(a)
    return f"/.well-known/masque/tcp/{host}/{port}/"


def open_transport(a):
    return {"h3": H3, "h2": H2, "h1": H1}[a.transport](a)


def open_tunnel(a, out):
    """Connects and sends the request; (transport, response)."""
    t = open_transport(a)
    r = request(a, t)
    out["status"] = r.status
    out["proxy_status"] = r.get("proxy-status")
    return t, r


def request(a, t, first=b"", fin=False):
    """Sends `a`'s tunnel request on `t`, then at once `first` and with
    `fin` the stream's end (h2/h3: optimistic data, before any response);
    the response."""
    classic = a.protocol == "classic"
    if a.transport == "h1":
        if classic:
            req = f"CONNECT {a.target} HTTP/1.1\r\nHost: {a.target}\r\n\r\n"
        else:
            req = (
                f"GET {tcp_path(a)} HTTP/1.1\r\nHost: localhost:{a.port}\r\n"
                f"Connection: Upgrade\r\nUpgrade: {a.protocol}\r\nCapsule-Protocol: ?1\r\n\r\n"
            )
        r = t.open(req.encode())
    else:
        if classic:
            headers = [(":method", "CONNECT"), (":authority", a.target)]
        else:
            headers = [
                (":method", "CONNECT"),
                (":protocol", a.protocol),
                (":scheme", "https"),
                (":authority", f"localhost:{a.port}"),
                (":path", tcp_path(a)),
                ("capsule-protocol", "?1"),
            ]
        r = t.open(headers, first, fin)
    return r


def check_success(a, r):
    label = f"{a.transport} {a.protocol}"
    if a.transport == "h1" and a.protocol != "classic":
        check(r.status == 101, f"{label}: status {r.status}, wanted 101: {r.fields}")
        up = r.tokens("upgrade")
        check(up == [a.protocol], f"{label}: Upgrade {up}, wanted exactly {a.protocol}")
        check("upgrade" in r.tokens("connection"), f"{label}: Connection {r.get('connection')} lacks `upgrade`")
    else:
        check(200 <= r.status < 300, f"{label}: status {r.status}, wanted 2xx: {r.fields}")
    check(r.get("content-length") is None, f"{label}: Content-Length on a {r.status} to CONNECT: {r.fields}")
    check(r.get("transfer-encoding") is None, f"{label}: Transfer-Encoding on a {r.status}: {r.fields}")
    if a.protocol != "classic":
        check(r.get("capsule-protocol") == "?1", f"{label}: capsule-protocol {r.get('capsule-protocol')!r}, wanted ?1")


def check_refusal(a, r, status, error):
    label = f"{a.transport} {a.protocol}"
    check(r.status == status, f"{label}: status {r.status}, wanted {status}: {r.fields}")
    ps = r.get("proxy-status")
    check(ps is not None, f"{label}: {status} without Proxy-Status: {r.fields}")
    check(f"error={error}" in ps, f"{label}: Proxy-Status {ps!r}, wanted error={error}")


class Collector:
    """What came back: the TCP bytes (capsules decoded for connect-tcp) and
    how the node's side ended."""

    def __init__(self, a):
        self.codec = None if a.protocol == "classic" else Codec(a.protocol)
        self.reader = self.codec.reader() if self.codec else None
        self.raw = bytearray()
        self.end = None  # ("end"|"reset"|"closed", detail)
        self.later = []  # non-data events after `end`

    def take(self, ev):
        if ev[0] == "data":
            if self.end is not None:
                raise Fail(f"data after the end ({self.end}): {len(ev[1])} bytes")
            if self.reader:
                self.reader.feed(ev[1])
            else:
                self.raw += ev[1]
        elif self.end is None:
            self.end = ev
        else:
            self.later.append(ev)

    @property
    def stream(self):
        return self.reader.stream if self.reader else self.raw

    @property
    def final(self):
        return bool(self.reader and self.reader.final)

    def summary(self, out):
        out["received_bytes"] = len(self.stream)
        out["final_data"] = self.final
        out["end"] = self.end[0] if self.end else None
        out["end_detail"] = self.end[1] if self.end else None
        if self.end and self.end[0] == "reset":
            out["reset_code"] = self.end[1]
        if self.reader:
            out["unknown_capsules_received"] = self.reader.unknown
            out["after_final"] = self.reader.after_final_bytes


def pump(t, col, until, what, on_event=None):
    """Polls `t` into `col` until `until()`; TIMEOUT without any event
    fails."""
    deadline = time.monotonic() + TIMEOUT
    while not until():
        try:
            events = t.poll(deadline)
        except (socket.timeout, TimeoutError):
            raise Fail(f"{what}: nothing from the node for {TIMEOUT}s ({len(col.stream)} bytes so far, end {col.end})") from None
        if events:
            deadline = time.monotonic() + TIMEOUT
        for ev in events:
            col.take(ev)
            if on_event:
                on_event(ev)


# ---------------------------------------------------------------- scenarios


def scenario_echo(a, out, grease=False, big=False):
    label = f"{a.transport} {a.protocol}"
    t, r = open_tunnel(a, out)
    try:
        check_success(a, r)
        data = payload(a.seed, a.bytes)
        out["sent_bytes"] = len(data)
        out["sent_sha256"] = sha256(data)[:16]
        col = Collector(a)
        if col.codec:
            tail = b""
            if grease:
                # The last bytes ride in FINAL_DATA itself.
                body, tail = data[:-1000], data[-1000:]
                blob, n_grease, n_data = grease_stream(col.codec, body, random.Random(a.seed))
                out["grease_capsules_sent"] = n_grease
                out["data_capsules_sent"] = n_data
            elif big:
                # One DATA capsule far over 64 KiB, the rest in FINAL_DATA.
                body, tail = data[: len(data) - len(data) // 4], data[len(data) - len(data) // 4 :]
                blob = col.codec.data(body)
                out["data_capsules_sent"] = 1
            else:
                blob = b"".join(col.codec.data(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK))
            out["final_data_payload"] = len(tail)
            t.send(blob + col.codec.final(tail))
        else:
            t.send(data)
            t.end()
        ended_ours = [col.codec is None]

        def after_final(_ev):
            # connect-tcp: both FINAL_DATAs are through, so our stream ends.
            if col.final and not ended_ours[0]:
                t.end()
                ended_ours[0] = True

        pump(t, col, lambda: col.end is not None, f"{label}: echo", after_final)
        col.summary(out)
        out["received_sha256"] = sha256(bytes(col.stream))[:16]
        check_echo(a, col, data, label)
    finally:
        t.close()


def check_echo(a, col, data, label):
    """The echo is byte-exact and ended cleanly."""
    got = bytes(col.stream)
    check(col.end[0] != "reset", f"{label}: the stream was reset ({col.end}) after {len(got)} of {len(data)} bytes")
    check(col.end[0] != "closed", f"{label}: the connection ended ({col.end[1]}) after {len(got)} of {len(data)} bytes")
    check(len(got) == len(data), f"{label}: {len(got)} bytes echoed, sent {len(data)}")
    if got != data:
        first = next(i for i, (x, y) in enumerate(zip(got, data)) if x != y)
        raise Fail(f"{label}: the echo differs from what was sent, first at byte {first}")
    if col.reader:
        check(col.reader.final, f"{label}: the node ended ({col.end}) without FINAL_DATA")
        check(col.reader.after_final_bytes == 0, f"{label}: {col.reader.after_final_bytes} bytes after FINAL_DATA")
        check(col.reader.truncated == 0, f"{label}: a truncated capsule ({col.reader.truncated} bytes) at the end")
    want_end = {"h3": "fin", "h2": "end_stream", "h1": "close_notify"}[a.transport]
    check(col.end == ("end", want_end), f"{label}: ended with {col.end}, wanted {want_end}")


def scenario_stalled_neighbour(a, out):
    """Two tunnels on one h2 connection. Tunnel A sends 32 MiB plus its
    half-close, but its stream window is never reopened (the connection's
    is): the node must stop sending on A and, its buffers full, stop taking
    A's upload (backpressure up to us). Only then tunnel B opens, and its
    --bytes echo must complete beside the stuck A. Then A's window reopens
    and A's echo completes byte-exact."""
    check(a.transport == "h2", "stalled-neighbour: h2 only (aioquic reopens its stream windows by itself)")
    t = open_transport(a)

    def start(n, seed):
        r = request(a, t)
        check_success(a, r)
        col = Collector(a)
        data = payload(seed, n)
        if col.codec:
            t.send(b"".join(col.codec.data(data[j : j + CHUNK]) for j in range(0, len(data), CHUNK)) + col.codec.final())
        else:
            t.send(data)
            t.end()
        return {"sid": t.sid, "col": col, "data": data, "ended": col.codec is None}

    def step(x):
        t.sid = x["sid"]
        try:
            events = t.poll(time.monotonic() + 0.02)
        except (socket.timeout, TimeoutError):
            events = []
        for ev in events:
            x["col"].take(ev)
        if x["col"].final and not x["ended"]:
            t.end()
            x["ended"] = True
        return bool(events)

    try:
        A = start(STALL_BYTES, a.seed)
        t.hold(True)
        # Pump A, held, until the node stops taking its upload for a second.
        outq = t.tunnels[A["sid"]].outq
        last, since = len(outq), time.monotonic()
        deadline = time.monotonic() + 3 * TIMEOUT
        while outq and time.monotonic() - since < 1.0:
            check(time.monotonic() < deadline, "h2: tunnel A's upload neither ends nor stalls")
            step(A)
            if len(outq) != last:
                last, since = len(outq), time.monotonic()
        out["a_sent_while_held"] = len(A["data"]) - len(outq)
        out["a_bytes_while_held"] = len(A["col"].stream)
        check(outq, "h2: the node took all of tunnel A's upload while A's echo was held back (no backpressure)")

        B = start(a.bytes, a.seed + 1)
        deadline = time.monotonic() + TIMEOUT
        while B["col"].end is None:
            progress = step(B)
            progress = step(A) or progress
            if progress:
                deadline = time.monotonic() + TIMEOUT
            check(time.monotonic() < deadline, f"h2: tunnel B stalled beside the held tunnel A: {len(B['col'].stream)} of {len(B['data'])} bytes back")
        check_echo(a, B["col"], B["data"], f"h2 {a.protocol} tunnel B (beside a held tunnel)")
        out["b_bytes"] = len(B["col"].stream)
        check(A["col"].end is None, f"h2: tunnel A ended while held: {A['col'].end}")

        t.sid = A["sid"]
        t.hold(False)
        deadline = time.monotonic() + TIMEOUT
        while A["col"].end is None:
            if step(A):
                deadline = time.monotonic() + TIMEOUT
            check(time.monotonic() < deadline, f"h2: tunnel A stalled after its window reopened: {len(A['col'].stream)} of {len(A['data'])} bytes back")
        check_echo(a, A["col"], A["data"], f"h2 {a.protocol} tunnel A (after being held)")
        out["a_bytes"] = len(A["col"].stream)
    finally:
        t.close()


def scenario_optimistic(a, out):
    """The tunnel's bytes, FINAL_DATA and the stream's end (END_STREAM /
    QUIC FIN) sent right behind the request, before the response: the node
    holds them until the target is connected (CTCP-23), then relays them
    and the half-close; the echo is byte-exact and ends cleanly. h2/h3 only
    (none on HTTP/1.1)."""
    label = f"{a.transport} {a.protocol}"
    check(a.transport != "h1", "optimistic: h2 and h3 only (HTTP/1.1 sends nothing before the 101 / 2xx)")
    t = open_transport(a)
    try:
        col = Collector(a)
        data = payload(a.seed, a.bytes)
        blob = b"".join(col.codec.data(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)) + col.codec.final() if col.codec else data
        r = request(a, t, blob, fin=True)
        out["status"] = r.status
        check_success(a, r)
        out["sent_bytes"] = len(data)
        pump(t, col, lambda: col.end is not None, f"{label}: echo of optimistic data")
        col.summary(out)
        check_echo(a, col, data, label)
    finally:
        t.close()


def scenario_client_abort(a, out):
    """--bytes sent, then the client aborts: h3 RESET_STREAM + STOP_SENDING
    (H3_REQUEST_CANCELLED), h2 RST_STREAM CANCEL, h1 a TCP reset. The test
    checks that the node resets the target (CTCP-22, RFC 9113 §8.5, RFC 9114
    §4.4)."""
    label = f"{a.transport} {a.protocol}"
    t, r = open_tunnel(a, out)
    try:
        check_success(a, r)
        col = Collector(a)
        data = payload(a.seed, a.bytes)
        out["sent_bytes"] = len(data)
        t.send(col.codec.data(data) if col.codec else data)
        # Let the bytes go out before the abort.
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            try:
                for ev in t.poll(deadline):
                    col.take(ev)
            except (socket.timeout, TimeoutError):
                pass
        t.abort()
        if a.transport != "h1":
            wait_release(t, col, label, resets_ok=True)
        col.summary(out)
    finally:
        t.close()


def scenario_concurrent(a, out):
    """--tunnels tunnels on one connection, alternately --protocol and
    classic CONNECT, each echoing its own --bytes, all in flight at once:
    each echo byte-exact (no cross-talk) with a clean end."""
    check(a.transport != "h1", "concurrent: h2 and h3 only (HTTP/1.1 carries one tunnel per connection)")
    t = open_transport(a)
    try:
        tunnels = []
        for i in range(a.tunnels):
            sub = argparse.Namespace(**{**vars(a), "protocol": a.protocol if i % 2 == 0 else "classic"})
            r = request(sub, t)
            check_success(sub, r)
            col = Collector(sub)
            data = payload(a.seed + i, a.bytes)
            if col.codec:
                t.send(b"".join(col.codec.data(data[j : j + CHUNK]) for j in range(0, len(data), CHUNK)) + col.codec.final())
            else:
                t.send(data)
                t.end()
            tunnels.append({"sid": t.sid, "a": sub, "col": col, "data": data, "ended": col.codec is None})
        out["tunnels"] = len(tunnels)
        out["sent_bytes"] = a.bytes * len(tunnels)
        deadline = time.monotonic() + TIMEOUT
        while any(x["col"].end is None for x in tunnels):
            for x in tunnels:
                col = x["col"]
                if col.end is not None:
                    continue
                t.sid = x["sid"]
                try:
                    events = t.poll(time.monotonic() + 0.02)
                except (socket.timeout, TimeoutError):
                    events = []
                if events:
                    deadline = time.monotonic() + TIMEOUT
                for ev in events:
                    col.take(ev)
                if col.final and not x["ended"]:
                    t.end()
                    x["ended"] = True
            if time.monotonic() > deadline:
                stuck = [(x["sid"], x["a"].protocol, len(x["col"].stream)) for x in tunnels if x["col"].end is None]
                raise Fail(f"{a.transport}: nothing for {TIMEOUT}s; unfinished (stream, protocol, bytes back): {stuck}")
        for i, x in enumerate(tunnels):
            check_echo(x["a"], x["col"], x["data"], f"{a.transport} tunnel {i} ({x['a'].protocol}, stream {x['sid']})")
        out["received_bytes"] = sum(len(x["col"].stream) for x in tunnels)
    finally:
        t.close()


def scenario_grease(a, out):
    check(a.protocol != "classic", "grease: connect-tcp only (classic CONNECT has no capsules)")
    scenario_echo(a, out, grease=True)


def scenario_big_capsules(a, out):
    check(a.protocol != "classic", "big-capsules: connect-tcp only")
    scenario_echo(a, out, big=True)


def scenario_refused(a, out):
    t, r = open_tunnel(a, out)
    try:
        check_refusal(a, r, 502, "connection_refused")
    finally:
        t.close()


def scenario_private(a, out):
    t, r = open_tunnel(a, out)
    try:
        check_refusal(a, r, 403, "destination_ip_prohibited")
    finally:
        t.close()


def scenario_dns_error(a, out):
    t, r = open_tunnel(a, out)
    try:
        check_refusal(a, r, 502, "dns_error")
    finally:
        t.close()


def scenario_timeout(a, out):
    t, r = open_tunnel(a, out)
    try:
        check_refusal(a, r, 504, "connection_timeout")
    finally:
        t.close()


def scenario_data_after_final(a, out):
    label = f"{a.transport} {a.protocol}"
    check(a.protocol != "classic", "data-after-final: connect-tcp only")
    t, r = open_tunnel(a, out)
    try:
        check_success(a, r)
        col = Collector(a)
        # One write: the node sees the malformed sequence at once.
        t.send(col.codec.data(b"before") + col.codec.final(b"final") + col.codec.data(b"after"))
        pump(t, col, lambda: col.end is not None, f"{label}: the reset")
        col.summary(out)
        if a.transport == "h1":
            check(col.end[0] in ("end", "closed"), f"{label}: {col.end}")
        else:
            want = H3_MESSAGE_ERROR if a.transport == "h3" else H2_PROTOCOL_ERROR
            check(col.end[0] == "reset", f"{label}: ended with {col.end}, wanted a stream reset {want:#x}")
            check(col.end[1] == want, f"{label}: reset {col.end[1]:#x}, wanted {want:#x}")
    finally:
        t.close()


def scenario_target_reset(a, out):
    label = f"{a.transport} {a.protocol}"
    t, r = open_tunnel(a, out)
    try:
        check_success(a, r)
        col = Collector(a)
        data = payload(a.seed, a.bytes)
        out["sent_bytes"] = len(data)
        t.send(col.codec.data(data) if col.codec else data)
        pump(t, col, lambda: col.end is not None, f"{label}: the reset")
        col.summary(out)
        check(not col.final, f"{label}: FINAL_DATA after the target's reset")
        if a.transport == "h1":
            check(col.end[0] == "closed", f"{label}: ended with {col.end}, wanted a close without close_notify")
        else:
            want = H3_CONNECT_ERROR if a.transport == "h3" else H2_CONNECT_ERROR
            check(col.end[0] == "reset", f"{label}: ended with {col.end}, wanted a stream reset {want:#x}")
            check(col.end[1] == want, f"{label}: reset {col.end[1]:#x}, wanted {want:#x}")
    finally:
        t.close()

def greeting(n):
    """What the FIN-first target sends before its FIN: byte i is i % 251."""
    return bytes(i % 251 for i in range(n))


def fnv1a(data):
    """FNV-1a 64 (the Rust test computes it over what the target received)."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def wait_release(t, col, what, resets_ok=False):
    """Keeps the connection open and read until the test writes a line to
    our stdin (its target has seen everything) or closes it; fails on a
    reset meanwhile (unless `resets_ok`), or after TIMEOUT without the
    release."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        r, _, _ = select.select([sys.stdin], [], [], 0)
        if r:
            sys.stdin.readline()
            return
        try:
            for ev in t.poll(min(deadline, time.monotonic() + 0.1)):
                col.take(ev)
        except (socket.timeout, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise Fail(f"{what}: no release from the test within {TIMEOUT}s")
        resets = [e for e in [col.end, *col.later] if e and (e[0] == "reset" or e == ("closed", "reset"))]
        if resets and not resets_ok:
            raise Fail(f"{what}: {resets[0]} while the target was still reading")


def scenario_target_fin_first(a, out):
    """The target sends --greeting bytes and FINs at once, then reads until
    our FIN: the node must pass its FIN on (FINAL_DATA / END_STREAM / FIN /
    close_notify) and keep relaying our direction, then our FIN."""
    label = f"{a.transport} {a.protocol}"
    t, r = open_tunnel(a, out)
    try:
        check_success(a, r)
        col = Collector(a)
        pump(t, col, lambda: col.final or (col.codec is None and col.end is not None), f"{label}: the target's FIN")
        got = bytes(col.stream)
        out["greeting_bytes"] = len(got)
        out["target_fin_as"] = "FINAL_DATA" if col.final else (col.end[1] if col.end else None)
        check(got == greeting(a.greeting), f"{label}: {len(got)} bytes before the target's FIN, wanted the {a.greeting}-byte greeting")
        check(col.end is None or col.end[0] == "end", f"{label}: the target's FIN came as {col.end}")
        data = payload(a.seed, a.bytes)
        out["sent_bytes"] = len(data)
        out["sent_fnv"] = fnv1a(data)
        if col.codec:
            t.send(b"".join(col.codec.data(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)) + col.codec.final())
        else:
            t.send(data)
        t.end()
        wait_release(t, col, f"{label}: relaying our bytes after the target's FIN")
        col.summary(out)
        out["later_events"] = len(col.later)
    finally:
        t.close()


def scenario_end_without_final(a, out):
    """DATA capsules, then the stream's end (QUIC FIN / END_STREAM /
    close_notify + FIN) without FINAL_DATA: an abortive end, so the node
    resets the target (the test checks that). connect-tcp only."""
    label = f"{a.transport} {a.protocol}"
    check(a.protocol != "classic", "end-without-final: connect-tcp only")
    t, r = open_tunnel(a, out)
    try:
        check_success(a, r)
        col = Collector(a)
        data = payload(a.seed, a.bytes)
        out["sent_bytes"] = len(data)
        t.send(col.codec.data(data))
        t.end()
        # What the node does with the stream is recorded, not checked:
        # the test checks that the target was reset.
        wait_release(t, col, label, resets_ok=True)
        col.summary(out)
    finally:
        t.close()


RUN = {
    "echo": scenario_echo,
    "grease": scenario_grease,
    "big-capsules": scenario_big_capsules,
    "refused": scenario_refused,
    "private": scenario_private,
    "dns-error": scenario_dns_error,
    "timeout": scenario_timeout,
    "data-after-final": scenario_data_after_final,
    "target-reset": scenario_target_reset,
    "target-fin-first": scenario_target_fin_first,
    "target-fin-at-once": scenario_target_fin_first,
    "concurrent": scenario_concurrent,
    "optimistic": scenario_optimistic,
    "client-abort": scenario_client_abort,
    "stalled-neighbour": scenario_stalled_neighbour,
    "end-without-final": scenario_end_without_final,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--transport", choices=["h3", "h2", "h1"], required=True)
    p.add_argument("--protocol", choices=PROTOCOLS, required=True)
    p.add_argument("--port", type=int, required=True, help="the node's UDP port (h3) or TLS/TCP port (h2, h1)")
    p.add_argument("--ca", required=True, help="PEM file of the node's certificate")
    p.add_argument("--target", required=True, help="the TCP target, HOST:PORT")
    p.add_argument("--bytes", type=int, default=1 << 20, help="bytes to send (echo, grease, target-reset)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tunnels", type=int, default=8, help="tunnels on one connection (concurrent)")
    p.add_argument("--greeting", type=int, default=100000, help="bytes the FIN-first target sends (target-fin-first)")
    a = p.parse_args()
    out = {"transport": a.transport, "protocol": a.protocol, "scenario": a.scenario, "ok": False}
    started = time.monotonic()
    try:
        RUN[a.scenario](a, out)
        out["ok"] = True
    except Fail as e:
        out["error"] = str(e)
    except (OSError, ssl.SSLError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - a bug of the peer: still one JSON line
        out["error"] = f"peer bug: {type(e).__name__}: {e}"
        traceback.print_exc()
    out["seconds"] = round(time.monotonic() - started, 3)
    emit(out)
    if not out["ok"]:
        print(f"FAIL {a.transport} {a.protocol} {a.scenario}: {out['error']}", file=sys.stderr, flush=True)
    sys.exit(0 if out["ok"] else 1)


if __name__ == "__main__":
    main()
