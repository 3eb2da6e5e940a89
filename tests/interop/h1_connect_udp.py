#!/usr/bin/env python3
"""A hand-written HTTP/1.1 CONNECT-UDP client (RFC 9298 §3.4: `GET` +
`Upgrade: connect-udp`, answered 101) over the standard `ssl` module, ALPN
`http/1.1`, against masque-node's TLS/TCP listener. TLS runs over memory BIOs,
so the client decides exactly what goes into each write and can half-close
(close_notify and/or TCP FIN) while still reading.

Scenarios (one per run):

  echo         101 with `Upgrade: connect-udp`, `Connection: upgrade`, no
               Content-Length / Transfer-Encoding; 100 DATAGRAM capsules of
               1..1200 bytes echoed, GREASE capsules skipped, capsules split
               across writes; a clean half-close ends the tunnel
  same-write   the first DATAGRAM capsule in the same write as the request
               head: the node keeps the bytes after the head
  refusals     wrong path → 404 + `Connection: close`, connection closed, and
               a pipelined second request never answered (RFC 9931); missing
               Host → 400; two Host fields → 400; garbage request line → 400
               or close; `Upgrade: connect-ip` → 501 + Proxy-Status;
               `Upgrade: connect-tcp` and classic `CONNECT host:port` to a
               port where nothing listens → 502 + Proxy-Status
  truncated    a capsule cut short, then the write side closed (TLS
               close_notify + TCP FIN, and TCP FIN alone; --variant picks
               one): the node closes

Prints one JSON object on stdout (flat keys first, `"ok": true|false`); exits
1 with the reason in `"error"` on the first failed check. Every wait is
bounded (socket timeouts, TIMEOUT per step).
"""
import os
import random
import re
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # masque_peer, even under `python -P`
from masque_peer import (  # noqa: E402
    DATAGRAM,
    ECHO_SIZES,
    TIMEOUT,
    CapsuleParser,
    Fail,
    Tls,
    arg_parser,
    check,
    client_context,
    datagram_capsule,
    grease_batch,
    grease_capsule,
    run_scenarios,
    send_split,
    udp_path,
    varint,
)
from masque_peer import upgrade_request as http1_upgrade  # noqa: E402


# ---------------------------------------------------------------- HTTP/1.1


class Response:
    def __init__(self, head):
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        check(m is not None, f"bad status line {lines[0]!r}")
        self.status = int(m.group(1))
        self.fields = []  # (lower-case name, value)
        for ln in lines[1:]:
            if not ln:
                continue
            name, _, value = ln.partition(":")
            self.fields.append((name.strip().lower(), value.strip()))

    def all(self, name):
        return [v for n, v in self.fields if n == name]

    def get(self, name):
        vals = self.all(name)
        return vals[0] if vals else None

    def tokens(self, name):
        return [t.strip().lower() for v in self.all(name) for t in v.split(",") if t.strip()]

    def as_dict(self):
        return {"status": self.status, "fields": self.fields}


class Conn:
    """One HTTP/1.1 connection: request bytes out, a response head in, then
    the rest of the stream (capsules after a 101)."""

    def __init__(self, a):
        self.tls = Tls(a.port, client_context(a.ca, a.pin, ["http/1.1"]))
        self.tls.handshake("http/1.1", a.pin)
        self.buf = b""
        self.eof = False
        self.caps = CapsuleParser()

    def fill(self, deadline):
        data = self.tls.recv(deadline)
        if not data:
            self.eof = True
        self.buf += data
        return bool(data)

    def read_head(self, what):
        deadline = time.monotonic() + TIMEOUT
        try:
            while b"\r\n\r\n" not in self.buf:
                if self.eof or not self.fill(deadline):
                    return None
        except (socket.timeout, TimeoutError):
            raise Fail(f"{what}: no response within {TIMEOUT}s") from None
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest
        return Response(head)

    def read_to_eof(self, what):
        """Everything until the server closes; fails if it keeps the
        connection open past TIMEOUT."""
        if not self.eof:
            self.buf += self.tls.read_to_eof(what)
            self.eof = True
        return self.buf

    def pump_capsules(self, pred, what):
        """Feeds tunnel bytes to the capsule parser until `pred()`."""
        deadline = time.monotonic() + TIMEOUT
        self.caps.feed(self.buf)
        self.buf = b""
        try:
            while not pred():
                check(not self.eof, f"{what}: the node closed the connection ({self.tls.how_closed})")
                if self.fill(deadline):
                    self.caps.feed(self.buf)
                    self.buf = b""
        except (socket.timeout, TimeoutError):
            raise Fail(f"{what}: not within {TIMEOUT}s") from None

    def close(self):
        self.tls.close()


def upgrade_request(a, path=None, **kw):
    return http1_upgrade(a.port, path or udp_path("127.0.0.1", a.target_port), **kw)


def check_101(r, label, out=None):
    check(r is not None, f"{label}: connection closed without a response")
    check(r.status == 101, f"{label}: {r.status_line}, wanted 101: {r.fields}")
    up = r.all("upgrade")
    check(len(up) == 1 and up[0].lower() == "connect-udp", f"{label}: Upgrade {up}, wanted exactly `connect-udp`")
    check("upgrade" in r.tokens("connection"), f"{label}: Connection {r.all('connection')} lacks `upgrade`")
    check(r.get("content-length") is None, f"{label}: Content-Length on a 101")
    check(r.get("transfer-encoding") is None, f"{label}: Transfer-Encoding on a 101")
    if out is not None:
        out["status"] = 101
        out["capsule_protocol"] = r.get("capsule-protocol")


def open_tunnel(a, label, first=b""):
    c = Conn(a)
    c.tls.send(upgrade_request(a) + first)
    check_101(c.read_head(f"{label}: response"), label)
    return c


# ---------------------------------------------------------------- scenarios


def scenario_echo(a, out):
    rng = random.Random(a.seed)
    c = Conn(a)
    try:
        c.tls.send(upgrade_request(a))
        r = c.read_head("upgrade response")
        check_101(r, "upgrade", out)
        out["fingerprint"] = c.tls.fingerprint
        sizes = ECHO_SIZES
        payloads = [os.urandom(n) for n in sizes]
        grease, writes = 0, 0
        for b in range(0, len(payloads), 10):
            batch = payloads[b : b + 10]
            blob, g = grease_batch(rng, batch)
            grease += g
            before = len(c.caps.datagrams)
            # Writes of random sizes: capsules split across TLS records.
            writes += send_split(rng, blob, c.tls.send)
            c.pump_capsules(lambda: len(c.caps.datagrams) - before >= len(batch), f"echo batch {b // 10}")
            got = c.caps.datagrams[before:]
            check(sorted(got) == sorted(batch), f"echo batch {b // 10}: payloads differ from those sent")
        check(len(c.caps.datagrams) == len(payloads), f"{len(c.caps.datagrams)} echoes for {len(payloads)}")
        check(not c.caps.bad, "a DATAGRAM capsule with a context id other than 0")
        out["datagrams_sent"] = len(payloads)
        out["datagrams_echoed"] = len(c.caps.datagrams)
        out["grease_sent"] = grease
        out["writes"] = writes
        out["min_size"], out["max_size"] = min(sizes), max(sizes)
        # A clean end of our stream (no partial capsule): the node ends the tunnel.
        c.tls.close_write(tls=True)
        c.read_to_eof("after a clean half-close")
        c.caps.feed(c.buf)
        check(not c.caps.buf, "the node's stream ended inside a capsule")
        out["closed_after_half_close"] = c.tls.how_closed
    finally:
        c.close()


def scenario_same_write(a, out):
    rng = random.Random(a.seed)
    first = datagram_capsule(b"in-the-same-write-as-the-head")
    c = Conn(a)
    try:
        # Head, a GREASE capsule and a DATAGRAM capsule: one write, one TLS record.
        c.tls.send(upgrade_request(a) + grease_capsule(rng) + first)
        check_101(c.read_head("upgrade response"), "upgrade", out)
        c.pump_capsules(lambda: len(c.caps.datagrams) >= 1, "echo of the capsule sent with the head")
        check(c.caps.datagrams[0] == b"in-the-same-write-as-the-head", f"echo {c.caps.datagrams[0]!r}")
        # And the tunnel goes on.
        c.tls.send(datagram_capsule(b"second"))
        c.pump_capsules(lambda: len(c.caps.datagrams) >= 2, "echo of the second capsule")
        check(c.caps.datagrams[1] == b"second", f"echo {c.caps.datagrams[1]!r}")
        out["datagrams_echoed"] = len(c.caps.datagrams)
        out["first_capsule_kept"] = True
    finally:
        c.close()


STATUS_LINE = re.compile(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ")


def refusal(a, name, request, statuses, want_proxy_status=False, want_close_header=True):
    """Sends `request` (one write), expects one response with a status in
    `statuses` (or, if None is among them, a close without any), then the
    connection closed with no second response."""
    c = Conn(a)
    try:
        c.tls.send(request)
        r = c.read_head(name)
        if r is None:
            check(None in statuses, f"{name}: connection closed without a response")
            return {"status": None, "closed": c.tls.how_closed}
        check(r.status in statuses, f"{name}: {r.status_line}, wanted {[s for s in statuses if s]}: {r.fields}")
        if want_close_header:
            check("close" in r.tokens("connection"), f"{name}: no `Connection: close` on the refusal: {r.fields}")
        if want_proxy_status:
            check(r.get("proxy-status"), f"{name}: {r.status} without Proxy-Status: {r.fields}")
        check(r.get("upgrade") is None, f"{name}: a refusal with an Upgrade field")
        rest = c.read_to_eof(f"{name}: connection close after the refusal")
        extra = STATUS_LINE.findall(b"\r\n" + rest)
        check(not extra, f"{name}: a second response after the refusal: {rest[:200]!r}")
        return {"status": r.status, "proxy_status": r.get("proxy-status"), "closed": c.tls.how_closed}
    finally:
        c.close()


def scenario_refusals(a, out):
    host = f"Host: localhost:{a.port}\r\n"
    detail = {}
    # RFC 9931: after refusing the upgrade, no later request on the connection
    # is parsed. The pipelined second request is a valid upgrade: had the node
    # parsed it, a 101 would follow.
    detail["wrong_path_pipelined"] = refusal(
        a,
        "wrong path",
        upgrade_request(a, path=f"/not-masque/udp/127.0.0.1/{a.target_port}/") + upgrade_request(a),
        [404],
    )
    detail["missing_host"] = refusal(a, "missing Host", upgrade_request(a, host=False), [400])
    detail["two_hosts"] = refusal(
        a, "two Host fields", upgrade_request(a, extra=["Host: other.example:443"]), [400]
    )
    detail["garbage_request_line"] = refusal(
        a, "garbage request line", b"\x01\x02 this is not http\r\n" + host.encode() + b"\r\n", [400, None],
        want_close_header=False,
    )
    detail["upgrade_connect_ip"] = refusal(
        a, "Upgrade: connect-ip", upgrade_request(a, path="/.well-known/masque/ip/*/*/", token="connect-ip"),
        [501], want_proxy_status=True,
    )
    detail["upgrade_connect_tcp"] = refusal(
        a, "Upgrade: connect-tcp",
        upgrade_request(a, path="/.well-known/masque/tcp/127.0.0.1/9/", token="connect-tcp"),
        [502], want_proxy_status=True,
    )
    detail["classic_connect"] = refusal(
        a, "classic CONNECT", b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
        [502], want_proxy_status=True,
    )
    out["refusals"] = len(detail)
    out["pipelined_second_response"] = False
    out["detail"] = detail


def scenario_truncated(a, out):
    variants = {}
    for name, tls in [("close_notify_and_fin", True), ("fin_only", False)]:
        if a.variant not in ("both", name):
            continue
        c = open_tunnel(a, name)
        try:
            c.tls.send(datagram_capsule(b"before-truncation"))
            c.pump_capsules(lambda: len(c.caps.datagrams) >= 1, f"{name}: echo before truncation")
            # DATAGRAM capsule announcing 100 bytes, 11 sent, then our side ends.
            c.tls.send(varint(DATAGRAM) + varint(100) + b"\x00" + b"only ten b")
            c.tls.close_write(tls=tls)
            c.read_to_eof(f"{name}: the node closes after a truncated capsule")
            variants[name] = c.tls.how_closed
        finally:
            c.close()
    out["truncated_closed"] = len(variants)
    out["detail"] = variants


SCENARIOS = {
    "echo": scenario_echo,
    "same-write": scenario_same_write,
    "refusals": scenario_refusals,
    "truncated": scenario_truncated,
}


def main():
    p = arg_parser(__doc__, SCENARIOS)
    p.add_argument("--seed", type=int, default=9298)
    p.add_argument(
        "--variant",
        choices=["both", "close_notify_and_fin", "fin_only"],
        default="both",
        help="truncated: how the write side ends (TLS close_notify then TCP FIN, or a bare FIN)",
    )
    a = p.parse_args()
    run_scenarios(a, SCENARIOS, {"peer": "python-ssl-http1", "openssl": ssl.OPENSSL_VERSION})


if __name__ == "__main__":
    main()
