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
               or close; `Upgrade: connect-ip` / `connect-tcp` and classic
               `CONNECT host:port` → 501 + Proxy-Status
  truncated    a capsule cut short, then the write side closed (TLS
               close_notify + TCP FIN, and TCP FIN alone; --variant picks
               one): the node closes

Prints one JSON object on stdout (flat keys first, `"ok": true|false`); exits
1 with the reason in `"error"` on the first failed check. Every wait is
bounded (socket timeouts, TIMEOUT per step).
"""
import argparse
import hashlib
import json
import os
import random
import re
import socket
import ssl
import sys
import time

TIMEOUT = 10.0
DATAGRAM = 0x00


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


def capsule(ctype, value):
    return varint(ctype) + varint(len(value)) + value


def datagram_capsule(payload):
    return capsule(DATAGRAM, b"\x00" + payload)


def grease_capsule(rng):
    """Reserved type 0x29 * N + 0x17 (RFC 9297 §5.4), random content."""
    return capsule(0x29 * rng.randrange(0, 1 << 20) + 0x17, os.urandom(rng.randrange(0, 48)))


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


# ---------------------------------------------------------------- TLS over memory BIOs


class Tls:
    def __init__(self, port, ca, pin):
        check(ca or pin, "neither --ca nor --pin: the server would be unauthenticated")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts only --ca
        if ca:
            ctx.load_verify_locations(ca)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.inc, self.outg = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.outg, server_hostname="localhost")
        self.tcp_eof = False
        self.how_closed = None  # "close_notify", "fin", "reset"
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                check(self._read_raw(deadline), "TLS handshake: connection closed")
        self._flush()
        alpn = self.obj.selected_alpn_protocol()
        check(alpn == "http/1.1", f"ALPN: server selected {alpn!r}, not http/1.1")
        self.fingerprint = hashlib.sha256(self.obj.getpeercert(binary_form=True)).hexdigest()
        if pin:
            want = pin.replace(":", "").lower()
            check(self.fingerprint == want, f"certificate fingerprint {self.fingerprint} != pinned {want}")

    def _flush(self):
        data = self.outg.read()
        if data:
            self.sock.sendall(data)

    def _read_raw(self, deadline):
        """Moves TCP bytes into the TLS object; False at TCP EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
            self.how_closed = self.how_closed or "reset"
        if not data:
            self.tcp_eof = True
            self.inc.write_eof()
            return False
        self.inc.write(data)
        return True

    def send(self, data):
        """One application write: one call into TLS, one sendall."""
        view = memoryview(bytes(data))
        while view:
            n = self.obj.write(view)
            view = view[n:]
        self._flush()

    def recv(self, deadline):
        """Decrypted bytes; b"" once the server closed (close_notify, FIN or
        RST, see `how_closed`). Raises socket.timeout at the deadline."""
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

    def close_write(self, tls=True):
        """Ends our direction: close_notify (if `tls`) then TCP FIN; reading goes on."""
        if tls:
            try:
                self.obj.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass
            self._flush()
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


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
        self.tls = Tls(a.port, a.ca, a.pin)
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
        deadline = time.monotonic() + TIMEOUT
        try:
            while not self.eof:
                self.fill(deadline)
        except (socket.timeout, TimeoutError):
            raise Fail(f"{what}: the node kept the connection open for {TIMEOUT}s") from None
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


def upgrade_request(a, path=None, token="connect-udp", host=True, extra=()):
    path = path or f"/.well-known/masque/udp/127.0.0.1/{a.target_port}/"
    lines = [f"GET {path} HTTP/1.1"]
    if host:
        lines.append(f"Host: localhost:{a.port}")
    lines += ["Connection: Upgrade", f"Upgrade: {token}", "Capsule-Protocol: ?1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


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
        sizes = [1 + (i * 1199) // 99 for i in range(100)]
        payloads = [os.urandom(n) for n in sizes]
        grease, writes = 0, 0
        for b in range(0, len(payloads), 10):
            batch = payloads[b : b + 10]
            blob = grease_capsule(rng)
            grease += 1
            for p in batch:
                blob += datagram_capsule(p)
                for _ in range(rng.randrange(1, 3)):
                    blob += grease_capsule(rng)
                    grease += 1
            before = len(c.caps.datagrams)
            # Writes of random sizes: capsules split across TLS records.
            while blob:
                n = rng.randrange(1, 1500)
                c.tls.send(blob[:n])
                blob = blob[n:]
                writes += 1
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
        [501], want_proxy_status=True,
    )
    detail["classic_connect"] = refusal(
        a, "classic CONNECT", b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
        [501], want_proxy_status=True,
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
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS) + ["all"])
    p.add_argument("--port", type=int, required=True, help="the node's TLS/TCP port")
    p.add_argument("--target-port", type=int, default=9, help="UDP echo target on 127.0.0.1")
    p.add_argument("--ca", help="PEM file of the node's certificate (trusted as a CA)")
    p.add_argument("--pin", help="SHA-256 of the node's certificate (hex, colons allowed)")
    p.add_argument("--seed", type=int, default=9298)
    p.add_argument(
        "--variant",
        choices=["both", "close_notify_and_fin", "fin_only"],
        default="both",
        help="truncated: how the write side ends (TLS close_notify then TCP FIN, or a bare FIN)",
    )
    a = p.parse_args()
    names = sorted(SCENARIOS) if a.scenario == "all" else [a.scenario]
    ok = True
    for name in names:
        out = {"peer": "python-ssl-http1", "openssl": ssl.OPENSSL_VERSION, "scenario": name, "ok": False}
        started = time.monotonic()
        try:
            SCENARIOS[name](a, out)
            out["ok"] = True
        except Fail as e:
            out["error"] = str(e)
        except (OSError, ssl.SSLError) as e:
            out["error"] = f"{type(e).__name__}: {e}"
        out["seconds"] = round(time.monotonic() - started, 3)
        if "detail" in out:
            out["detail"] = out.pop("detail")
        print(json.dumps(out), flush=True)
        if not out["ok"]:
            print(f"FAIL {name}: {out['error']}", file=sys.stderr, flush=True)
            ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
