#!/usr/bin/env python3
"""Clients that leave mid-connection, for tests/tcp_abort.rs: CONNECT-UDP
over HTTP/1.1 (hand-written `GET` + `Upgrade: connect-udp` on Python's `ssl`)
and over HTTP/2 (Python `h2`, RFC 8441 extended CONNECT), against
masque-node's TLS/TCP listener. TLS runs over memory BIOs, so the client
decides exactly how it leaves: a TCP reset (SO_LINGER 0, then close), a TLS
close_notify then TCP FIN, or END_STREAM.

The Rust test drives each run through sync points: at each one this script
prints `{"event": "ready", "stage": ...}` and waits for a line `go` on stdin
(so the test can look at the node while the connections are in that state),
then goes on. The first is "start", before any connection; the last line
is the summary, `"ok": true|false`.

Scenarios (one per run):

  tunnel   one connection: --tunnels tunnels (HTTP/1.1: one) to the UDP echo
           target, --datagrams DATAGRAM capsules echoed on each, then
           [ready "tunnels-open"] and --end:
             rst         a TCP reset
             close       TLS close_notify + TCP FIN with the tunnels open (no
                         END_STREAM, no GOAWAY); the node must close too
             end_stream  (HTTP/2) END_STREAM on every tunnel, each answered
                         with END_STREAM; [ready "streams-ended"]; then
                         GOAWAY, close_notify + FIN; the node must close too
  phase    --count connections that all stop at one --phase, then
           [ready PHASE], then every one is reset:
             tls     during the TLS handshake: the full ClientHello and the
                     server's first flight read (even connections), or half
                     a ClientHello (odd ones)
             idle    handshake done, no request. HTTP/2: the client preface
                     and SETTINGS sent and the server's SETTINGS read (even
                     connections), or nothing at all after TLS (odd ones)
             head    the request head sent (target host `stall.test`, which
                     the test's resolver never answers), no response yet;
                     with --early-capsule a DATAGRAM capsule right behind it
                     (HTTP/1.1: in the same write)
             tunnel  a tunnel open and one DATAGRAM capsule echoed
  cancel   (HTTP/2) --count requests to `stall.test` on one connection
           [ready "requested"], each cancelled with RST_STREAM CANCEL while
           the connection stays [ready "cancelled"], then a clean close

Every wait is bounded (TIMEOUT per step, GO_TIMEOUT for the test's `go`).
"""
import argparse
import json
import os
import select
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

TIMEOUT = 10.0
GO_TIMEOUT = 120.0
DATAGRAM = 0x00
STALL_HOST = "stall.test"


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ---------------------------------------------------------------- capsules


def varint(v):
    if v < 0x40:
        return bytes([v])
    if v < 0x4000:
        return (0x4000 | v).to_bytes(2, "big")
    if v < 0x40000000:
        return (0x80000000 | v).to_bytes(4, "big")
    return (0xC000000000000000 | v).to_bytes(8, "big")


def read_varint(buf, off):
    if off >= len(buf):
        return None
    n = 1 << (buf[off] >> 6)
    if off + n > len(buf):
        return None
    v = buf[off] & 0x3F
    for b in buf[off + 1 : off + n]:
        v = (v << 8) | b
    return v, off + n


def datagram_capsule(payload):
    value = b"\x00" + payload
    return varint(DATAGRAM) + varint(len(value)) + value


class CapsuleParser:
    def __init__(self):
        self.buf = b""
        self.datagrams = []
        self.other = []
        self.bad = []

    def feed(self, data):
        self.buf += data
        while True:
            t = read_varint(self.buf, 0)
            if t is None:
                return
            ln = read_varint(self.buf, t[1])
            if ln is None:
                return
            end = ln[1] + ln[0]
            if end > len(self.buf):
                return
            ctype, value = t[0], self.buf[ln[1] : end]
            self.buf = self.buf[end:]
            if ctype == DATAGRAM:
                ctx = read_varint(value, 0)
                if ctx is None or ctx[0] != 0:
                    self.bad.append(value)
                else:
                    self.datagrams.append(value[ctx[1] :])
            else:
                self.other.append((ctype, value))


def payload(tag, i):
    """A recognisable payload of varying size (1..1200 bytes)."""
    head = f"{tag}-{i}-".encode()
    size = max(len(head), 1 + (i * 397 + len(tag) * 31) % 1200)
    return head + os.urandom(size - len(head))


# ---------------------------------------------------------------- sync with the test


def emit(obj):
    print(json.dumps(obj), flush=True)


def ready(stage, **fields):
    """Tells the test that every connection is in `stage`; waits for `go`."""
    emit({"event": "ready", "stage": stage, **fields})
    deadline = time.monotonic() + GO_TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        check(remaining > 0, f"{stage}: no `go` from the test within {GO_TIMEOUT}s")
        r, _, _ = select.select([0], [], [], remaining)
        if not r:
            continue
        b = os.read(0, 1)
        check(b, f"{stage}: the test closed our stdin")
        line += b
    check(line.strip() == b"go", f"{stage}: expected `go`, got {line!r}")


# ---------------------------------------------------------------- TLS over memory BIOs


def context(a, alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts only --ca
    ctx.load_verify_locations(a.ca)
    ctx.set_alpn_protocols(alpn)
    return ctx


class Tls:
    def __init__(self, a, ctx):
        self.sock = socket.create_connection(("127.0.0.1", a.port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc, self.outg = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.outg, server_hostname="localhost")
        self.tcp_eof = False
        self.how_closed = None  # how the node closed: "close_notify", "fin", "reset"
        self.close_write_error = None

    def client_hello(self):
        """The ClientHello bytes, not sent yet."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outg.read()

    def handshake(self, alpn):
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                check(self._read_raw(deadline), "TLS handshake: connection closed")
        self._flush()
        got = self.obj.selected_alpn_protocol()
        check(got == alpn, f"ALPN: server selected {got!r}, not {alpn}")

    def _flush(self):
        data = self.outg.read()
        if data:
            self.sock.sendall(data)

    def raw_recv(self, deadline):
        """Raw TCP bytes (not decrypted); b"" at EOF or reset."""
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            self.how_closed = self.how_closed or "reset"
            return b""

    def _read_raw(self, deadline):
        if deadline - time.monotonic() <= 0:
            raise socket.timeout()
        data = self.raw_recv(deadline)
        if not data:
            if not self.tcp_eof:
                self.tcp_eof = True
                self.inc.write_eof()
            return False
        self.inc.write(data)
        return True

    def send(self, data):
        view = memoryview(bytes(data))
        while view:
            n = self.obj.write(view)
            view = view[n:]
        self._flush()

    def recv(self, deadline):
        """Decrypted bytes; b"" once the node closed (see `how_closed`)."""
        while True:
            try:
                data = self.obj.read(65536)
                if data:
                    return data
                self.how_closed = self.how_closed or "close_notify"
                return b""
            except ssl.SSLWantReadError:
                if self.tcp_eof:
                    self.how_closed = self.how_closed or "fin"
                    return b""
                self._flush()
                self._read_raw(deadline)
            except ssl.SSLZeroReturnError:
                self.how_closed = self.how_closed or "close_notify"
                return b""
            except ssl.SSLEOFError:
                self.how_closed = self.how_closed or "fin"
                return b""

    def close_write(self):
        """TLS close_notify then TCP FIN; reading goes on. The node may have
        closed already (e.g. right after our GOAWAY): then its kernel answers
        the late close_notify with a reset, which is no failure here."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        try:
            self._flush()
            self.sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError, OSError) as e:
            self.close_write_error = f"{type(e).__name__}: {e}"

    def read_to_eof(self, what):
        """Everything until the node closes (TIMEOUT at most)."""
        deadline = time.monotonic() + TIMEOUT
        got = b""
        try:
            while True:
                data = self.recv(deadline)
                if not data:
                    return got
                got += data
        except (socket.timeout, TimeoutError):
            raise Fail(f"{what}: the node kept the connection open for {TIMEOUT}s") from None

    def still_open(self):
        """Whether the node has neither closed nor reset the connection (a
        peek that does not consume anything)."""
        self.sock.setblocking(False)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except ConnectionResetError:
            return False
        finally:
            self.sock.settimeout(TIMEOUT)

    def reset(self):
        """A TCP reset: SO_LINGER 0, then close."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


# ---------------------------------------------------------------- HTTP/1.1


def upgrade_request(a, host, port):
    return (
        f"GET /.well-known/masque/udp/{host}/{port}/ HTTP/1.1\r\n"
        f"Host: localhost:{a.port}\r\n"
        "Connection: Upgrade\r\n"
        "Upgrade: connect-udp\r\n"
        "Capsule-Protocol: ?1\r\n\r\n"
    ).encode()


class H1:
    def __init__(self, a, ctx):
        self.tls = Tls(a, ctx)
        self.tls.handshake("http/1.1")
        self.buf = b""
        self.caps = CapsuleParser()

    def open(self, a, label):
        self.tls.send(upgrade_request(a, "127.0.0.1", a.target_port))
        deadline = time.monotonic() + TIMEOUT
        try:
            while b"\r\n\r\n" not in self.buf:
                data = self.tls.recv(deadline)
                check(data, f"{label}: closed ({self.tls.how_closed}) without a response")
                self.buf += data
        except (socket.timeout, TimeoutError):
            raise Fail(f"{label}: no response within {TIMEOUT}s") from None
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        check(status.startswith(b"HTTP/1.1 101"), f"{label}: {status!r}, wanted 101")
        self.buf = b""
        self.caps.feed(rest)

    def echo(self, payloads, label):
        before = len(self.caps.datagrams)
        self.tls.send(b"".join(datagram_capsule(p) for p in payloads))
        deadline = time.monotonic() + TIMEOUT
        try:
            while len(self.caps.datagrams) - before < len(payloads):
                data = self.tls.recv(deadline)
                check(data, f"{label}: the node closed ({self.tls.how_closed})")
                self.caps.feed(data)
        except (socket.timeout, TimeoutError):
            raise Fail(f"{label}: echoes not within {TIMEOUT}s") from None
        got = self.caps.datagrams[before:]
        check(sorted(got) == sorted(payloads), f"{label}: other payloads echoed than sent")
        check(not self.caps.bad, f"{label}: a DATAGRAM capsule with a context id other than 0")


# ---------------------------------------------------------------- HTTP/2


class Stream:
    def __init__(self):
        self.status = None
        self.headers = None
        self.ended = False
        self.reset = None
        self.caps = CapsuleParser()


class H2:
    def __init__(self, a, ctx, preface=True):
        self.tls = Tls(a, ctx)
        self.tls.handshake("h2")
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.streams = {}
        self.settings = None
        self.terminated = None
        self.closed = False
        if preface:
            self.conn.initiate_connection()
            self.flush()
            self.pump_until(lambda: self.settings is not None, "the server's SETTINGS")

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.tls.send(data)

    def _on_event(self, ev):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            if self.settings is None:
                self.settings = {int(k): v.new_value for k, v in ev.changed_settings.items()}
        elif isinstance(ev, h2.events.ResponseReceived):
            s = self.streams[ev.stream_id]
            s.headers = {bytes(k).lower(): bytes(v) for k, v in ev.headers}
            s.status = int(s.headers.get(b":status", b"0"))
        elif isinstance(ev, h2.events.DataReceived):
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.caps.feed(ev.data)
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.streams[ev.stream_id].ended = True
        elif isinstance(ev, h2.events.StreamReset):
            s = self.streams.get(ev.stream_id)
            if s is not None and ev.remote_reset:
                s.reset = int(ev.error_code)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = (int(ev.error_code), ev.last_stream_id)

    def pump_until(self, pred, what):
        deadline = time.monotonic() + TIMEOUT
        while not pred():
            check(self.terminated is None, f"{what}: GOAWAY {self.terminated}")
            check(not self.closed, f"{what}: the node closed the connection ({self.tls.how_closed})")
            try:
                data = self.tls.recv(deadline)
            except (socket.timeout, TimeoutError):
                raise Fail(f"{what}: not within {TIMEOUT}s") from None
            if not data:
                self.closed = True
                continue
            for ev in self.conn.receive_data(data):
                self._on_event(ev)
            self.flush()

    def request(self, a, host, port):
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = Stream()
        headers = [
            (":method", "CONNECT"),
            (":protocol", "connect-udp"),
            (":scheme", "https"),
            (":authority", f"localhost:{a.port}"),
            (":path", f"/.well-known/masque/udp/{host}/{port}/"),
            ("capsule-protocol", "?1"),
        ]
        self.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in headers])
        self.flush()
        return sid

    def open(self, a, n, label):
        """`n` tunnels: all requests first, then all responses."""
        sids = [self.request(a, "127.0.0.1", a.target_port) for _ in range(n)]
        for i, sid in enumerate(sids):
            s = self.streams[sid]
            self.pump_until(lambda: s.headers is not None or s.reset is not None, f"{label} {i}: response")
            check(s.reset is None, f"{label} {i}: reset {s.reset} instead of a response")
            check(s.status == 200, f"{label} {i}: status {s.status}")
            check(s.headers.get(b"capsule-protocol") == b"?1", f"{label} {i}: no capsule-protocol")
        return sids

    def echo(self, pairs, label):
        """One DATAGRAM capsule per (sid, payload); each stream must get back
        exactly its own."""
        before = {sid: len(self.streams[sid].caps.datagrams) for sid, _ in pairs}
        want = {}
        for sid, p in pairs:
            want.setdefault(sid, []).append(p)
            self.conn.send_data(sid, datagram_capsule(p))
        self.flush()
        self.pump_until(
            lambda: all(len(self.streams[s].caps.datagrams) - before[s] >= len(ps) for s, ps in want.items()),
            f"{label}: echoes",
        )
        for sid, ps in want.items():
            s = self.streams[sid]
            check(sorted(s.caps.datagrams[before[sid] :]) == sorted(ps), f"{label}: stream {sid}: cross-talk")
            check(not s.caps.bad, f"{label}: stream {sid}: a context id other than 0")

    def finish(self, sid, label):
        self.conn.end_stream(sid)
        self.flush()
        s = self.streams[sid]
        self.pump_until(lambda: s.ended or s.reset is not None, f"{label}: END_STREAM answered")
        check(s.reset is None, f"{label}: END_STREAM answered with RST_STREAM {s.reset}")


# ---------------------------------------------------------------- scenarios


def scenario_tunnel(a, out):
    if a.transport == "h1":
        check(a.tunnels == 1, "HTTP/1.1 carries one tunnel per connection")
        c = H1(a, context(a, ["http/1.1"]))
        try:
            c.open(a, "h1 tunnel")
            for i in range(a.datagrams):
                c.echo([payload("h1", i)], f"echo {i}")
            out["echoed"] = len(c.caps.datagrams)
            ready("tunnels-open", tunnels=1, echoed=len(c.caps.datagrams))
            if a.end == "rst":
                c.tls.reset()
            elif a.end == "close":
                c.tls.close_write()
                rest = c.tls.read_to_eof("after close_notify + FIN")
                c.caps.feed(rest)
                check(not c.caps.buf, "the node's stream ended inside a capsule")
                out["node_closed"] = c.tls.how_closed
                out["close_write_error"] = c.tls.close_write_error
            else:
                raise Fail(f"--end {a.end} is not for HTTP/1.1")
        finally:
            c.tls.sock.close()
        return
    c = H2(a, context(a, ["h2"]))
    try:
        sids = c.open(a, a.tunnels, "h2 tunnel")
        for r in range(a.datagrams):
            c.echo([(sid, payload(f"h2-{sid}", r)) for sid in sids], f"round {r}")
        echoed = sum(len(c.streams[s].caps.datagrams) for s in sids)
        out["echoed"] = echoed
        ready("tunnels-open", tunnels=len(sids), echoed=echoed)
        if a.end == "rst":
            c.tls.reset()
        elif a.end == "close":
            # The whole connection, cleanly at the TLS and TCP level, with
            # every tunnel still open (no END_STREAM, no GOAWAY).
            c.tls.close_write()
            c.tls.read_to_eof("after close_notify + FIN")
            out["node_closed"] = c.tls.how_closed
            out["close_write_error"] = c.tls.close_write_error
        elif a.end == "end_stream":
            for i, sid in enumerate(sids):
                c.finish(sid, f"tunnel {i}")
            out["end_stream_answered"] = len(sids)
            ready("streams-ended", tunnels=len(sids))
            c.conn.close_connection()
            c.flush()
            c.tls.close_write()
            c.tls.read_to_eof("after GOAWAY, close_notify + FIN")
            out["node_closed"] = c.tls.how_closed
            out["close_write_error"] = c.tls.close_write_error
        else:
            raise Fail(f"unknown --end {a.end}")
    finally:
        c.tls.sock.close()


def phase_tls(a, i, ctx):
    t = Tls(a, ctx)
    hello = t.client_hello()
    if i % 2 == 0:
        t.sock.sendall(hello)
        # The server's first flight: it is inside its handshake, waiting for
        # our Finished.
        first = t.raw_recv(time.monotonic() + TIMEOUT)
        check(first, f"connection {i}: no ServerHello ({t.how_closed})")
        check(first[0] == 22, f"connection {i}: first record type {first[0]}, not a handshake")
    else:
        t.sock.sendall(hello[: len(hello) // 2])
    return t


def scenario_phase(a, out):
    alpn = {"h1": ["http/1.1"], "h2": ["h2"]}[a.transport]
    ctx = context(a, ["h2", "http/1.1"] if a.phase == "tls" else alpn)
    conns = []  # Tls objects to reset
    try:
        for i in range(a.count):
            if a.phase == "tls":
                conns.append(phase_tls(a, i, ctx))
            elif a.phase == "idle" and a.transport == "h1":
                t = Tls(a, ctx)
                conns.append(t)
                t.handshake("http/1.1")
            elif a.phase == "idle":
                if i % 2 == 0:
                    c = H2(a, ctx, preface=True)
                    conns.append(c.tls)
                else:
                    t = Tls(a, ctx)
                    conns.append(t)
                    t.handshake("h2")
            elif a.phase == "head" and a.transport == "h1":
                c = H1(a, ctx)
                conns.append(c.tls)
                first = datagram_capsule(payload("early", i)) if a.early_capsule else b""
                c.tls.send(upgrade_request(a, STALL_HOST, 443) + first)
            elif a.phase == "head":
                c = H2(a, ctx)
                conns.append(c.tls)
                sid = c.request(a, STALL_HOST, 443)
                if a.early_capsule:
                    c.conn.send_data(sid, datagram_capsule(payload("early", i)))
                    c.flush()
            elif a.phase == "tunnel" and a.transport == "h1":
                c = H1(a, ctx)
                conns.append(c.tls)
                c.open(a, f"connection {i}")
                c.echo([payload("phase-h1", i)], f"connection {i}")
            elif a.phase == "tunnel":
                c = H2(a, ctx)
                conns.append(c.tls)
                (sid,) = c.open(a, 1, f"connection {i}")
                c.echo([(sid, payload("phase-h2", i))], f"connection {i}")
            else:
                raise Fail(f"unknown --phase {a.phase}")
        out["connections"] = len(conns)
        ready(a.phase, connections=len(conns))
        # The node had closed none of them: the resets are what end them.
        closed = [i for i, t in enumerate(conns) if not t.still_open()]
        check(not closed, f"the node closed connections {closed} before the resets")
        for t in conns:
            t.reset()
        out["reset"] = len(conns)
    finally:
        for t in conns:
            try:
                t.sock.close()
            except OSError:
                pass


def scenario_cancel(a, out):
    """HTTP/2: --count requests to `stall.test` on one connection
    [ready "requested"], each then cancelled with RST_STREAM CANCEL while the
    connection stays [ready "cancelled"], then the connection closed cleanly."""
    c = H2(a, context(a, ["h2"]))
    try:
        sids = [c.request(a, STALL_HOST, 443) for _ in range(a.count)]
        ready("requested", streams=len(sids))
        for sid in sids:
            c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        c.flush()
        out["cancelled"] = len(sids)
        ready("cancelled", streams=len(sids))
        c.conn.close_connection()
        c.flush()
        c.tls.close_write()
        c.tls.read_to_eof("after GOAWAY, close_notify + FIN")
        out["node_closed"] = c.tls.how_closed
    finally:
        c.tls.sock.close()


SCENARIOS = {"tunnel": scenario_tunnel, "phase": scenario_phase, "cancel": scenario_cancel}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--port", type=int, required=True, help="the node's TLS/TCP port")
    p.add_argument("--target-port", type=int, default=9, help="UDP echo target on 127.0.0.1")
    p.add_argument("--ca", required=True, help="PEM file of the node's certificate")
    p.add_argument("--transport", choices=["h1", "h2"], default="h1")
    p.add_argument("--tunnels", type=int, default=1)
    p.add_argument("--datagrams", type=int, default=3)
    p.add_argument("--end", choices=["rst", "close", "end_stream"], default="rst")
    p.add_argument("--phase", choices=["tls", "idle", "head", "tunnel"], default="tunnel")
    p.add_argument("--count", type=int, default=20)
    p.add_argument(
        "--early-capsule",
        action="store_true",
        help="head: a DATAGRAM capsule right behind the request head (HTTP/1.1: in the same write)",
    )
    a = p.parse_args()
    out = {"peer": "python", "h2_version": h2.__version__, "scenario": a.scenario, "ok": False}
    started = time.monotonic()
    try:
        # Nothing connected yet: the test measures what it holds for us.
        ready("start")
        SCENARIOS[a.scenario](a, out)
        out["ok"] = True
    except Fail as e:
        out["error"] = str(e)
    except (OSError, ssl.SSLError, h2.exceptions.H2Error) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out["seconds"] = round(time.monotonic() - started, 3)
    emit(out)
    if not out["ok"]:
        print(f"FAIL {a.scenario}: {out['error']}", file=sys.stderr, flush=True)
    sys.exit(0 if out["ok"] else 1)


if __name__ == "__main__":
    main()
