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
import os
import select
import socket
import sys
import time

import h2.errors
import h2.exceptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # masque_peer, even under `python -P`
from masque_peer import (  # noqa: E402
    TIMEOUT,
    CapsuleParser,
    Fail,
    H2Client,
    Tls,
    arg_parser,
    check,
    client_context,
    connect_udp_headers,
    datagram_capsule,
    emit,
    run,
    udp_path,
    upgrade_request,
)

GO_TIMEOUT = 120.0
STALL_HOST = "stall.test"


def payload(tag, i):
    """A recognisable payload of varying size (1..1200 bytes)."""
    head = f"{tag}-{i}-".encode()
    size = max(len(head), 1 + (i * 397 + len(tag) * 31) % 1200)
    return head + os.urandom(size - len(head))


# ---------------------------------------------------------------- sync with the test


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
    return client_context(a.ca, None, alpn)


def connect(a, ctx):
    """A TCP connection to the node (no Nagle delay), TLS not started."""
    return Tls(a.port, ctx, nodelay=True)


# ---------------------------------------------------------------- HTTP/1.1


class H1:
    def __init__(self, a, ctx):
        self.tls = connect(a, ctx)
        self.tls.handshake("http/1.1")
        self.buf = b""
        self.caps = CapsuleParser()

    def open(self, a, label):
        self.tls.send(upgrade_request(a.port, udp_path("127.0.0.1", a.target_port)))
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


class H2(H2Client):
    """Python `h2` on a `Tls`."""

    def __init__(self, a, ctx, preface=True):
        self.tls = connect(a, ctx)
        self.tls.handshake("h2")
        super().__init__(preface=preface)

    def _write(self, data):
        self.tls.send(data)

    def _read(self, deadline):
        return self.tls.recv(deadline)

    def how_closed(self):
        return self.tls.how_closed

    def request_udp(self, a, host, port):
        return self.request(connect_udp_headers(f"localhost:{a.port}", host, port))

    def open(self, a, n, label):
        """`n` tunnels: all requests first, then all responses."""
        sids = [self.request_udp(a, "127.0.0.1", a.target_port) for _ in range(n)]
        for i, sid in enumerate(sids):
            s = self.response(sid, f"{label} {i}: response")
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
                c.tls.close_write(late_ok=True)
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
            c.tls.close_write(late_ok=True)
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
            c.tls.close_write(late_ok=True)
            c.tls.read_to_eof("after GOAWAY, close_notify + FIN")
            out["node_closed"] = c.tls.how_closed
            out["close_write_error"] = c.tls.close_write_error
        else:
            raise Fail(f"unknown --end {a.end}")
    finally:
        c.tls.sock.close()


def phase_tls(a, i, ctx):
    t = connect(a, ctx)
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
                t = connect(a, ctx)
                conns.append(t)
                t.handshake("http/1.1")
            elif a.phase == "idle":
                if i % 2 == 0:
                    c = H2(a, ctx, preface=True)
                    conns.append(c.tls)
                else:
                    t = connect(a, ctx)
                    conns.append(t)
                    t.handshake("h2")
            elif a.phase == "head" and a.transport == "h1":
                c = H1(a, ctx)
                conns.append(c.tls)
                first = datagram_capsule(payload("early", i)) if a.early_capsule else b""
                c.tls.send(upgrade_request(a.port, udp_path(STALL_HOST, 443)) + first)
            elif a.phase == "head":
                c = H2(a, ctx)
                conns.append(c.tls)
                sid = c.request_udp(a, STALL_HOST, 443)
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
        sids = [c.request_udp(a, STALL_HOST, 443) for _ in range(a.count)]
        ready("requested", streams=len(sids))
        for sid in sids:
            c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        c.flush()
        out["cancelled"] = len(sids)
        ready("cancelled", streams=len(sids))
        c.conn.close_connection()
        c.flush()
        c.tls.close_write(late_ok=True)
        c.tls.read_to_eof("after GOAWAY, close_notify + FIN")
        out["node_closed"] = c.tls.how_closed
    finally:
        c.tls.sock.close()


SCENARIOS = {"tunnel": scenario_tunnel, "phase": scenario_phase, "cancel": scenario_cancel}


def main():
    p = arg_parser(__doc__, SCENARIOS, with_all=False, pin=False)
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

    def body(out):
        # Nothing connected yet: the test measures what it holds for us.
        ready("start")
        SCENARIOS[a.scenario](a, out)

    out = {"peer": "python", "h2_version": h2.__version__, "scenario": a.scenario, "ok": False}
    sys.exit(0 if run(a.scenario, body, out, (h2.exceptions.H2Error,)) else 1)


if __name__ == "__main__":
    main()
