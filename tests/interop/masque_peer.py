"""What the hand-written CONNECT-UDP peers of this folder share
(h1_connect_udp.py, h2_connect_udp.py, tcp_abort.py): failures, QUIC varints
and capsules (RFC 9000 §16, RFC 9297 §3), the CONNECT-UDP request forms, TLS
client setup and a TLS connection over memory BIOs, an HTTP/2 client core on
Python `h2`, and the JSON summary each run prints.

Not a script. The peers are run as scripts (`python tests/interop/NAME.py`);
each puts this folder first on sys.path before importing this module.
Only the HTTP/2 client core needs `h2`: the HTTP/1.1 peer runs on the
standard library alone.
"""
import argparse
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import time

try:
    import h2.config
    import h2.connection
    import h2.events
except ImportError:  # h1_connect_udp.py does without
    h2 = None

# Upper bound for every step of a peer.
TIMEOUT = 10.0
DATAGRAM = 0x00


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ---------------------------------------------------------------- capsules


def varint(v):
    """QUIC variable-length integer (RFC 9000 §16)."""
    if v < 0x40:
        return bytes([v])
    if v < 0x4000:
        return (0x4000 | v).to_bytes(2, "big")
    if v < 0x40000000:
        return (0x80000000 | v).to_bytes(4, "big")
    return (0xC000000000000000 | v).to_bytes(8, "big")


def read_varint(buf, off):
    """(value, next offset), or None when `buf` ends inside the varint."""
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


def datagram_capsule(payload, context_id=0):
    return capsule(DATAGRAM, varint(context_id) + payload)


def grease_capsule(rng):
    """A capsule of a reserved type 0x29 * N + 0x17 (RFC 9297 §5.4) with random content."""
    n = rng.randrange(0, 1 << 20)
    return capsule(0x29 * n + 0x17, os.urandom(rng.randrange(0, 48)))


# Payload sizes of the echo scenarios: 100 from 1 to 1200 bytes.
ECHO_SIZES = [1 + (i * 1199) // 99 for i in range(100)]


def grease_batch(rng, payloads):
    """A DATAGRAM capsule for each of `payloads`, a GREASE capsule before the
    first and one or two after each: (the bytes, the GREASE capsules in them)."""
    blob = grease_capsule(rng)
    grease = 1
    for p in payloads:
        blob += datagram_capsule(p)
        for _ in range(rng.randrange(1, 3)):
            blob += grease_capsule(rng)
            grease += 1
    return blob, grease


def send_split(rng, blob, send):
    """`send`s `blob` in pieces of random sizes (1..1499 bytes), splitting
    capsules across writes; how many pieces."""
    writes = 0
    while blob:
        n = rng.randrange(1, 1500)
        send(blob[:n])
        blob = blob[n:]
        writes += 1
    return writes


class CapsuleParser:
    """Reassembles capsules from a byte stream (it may split them anywhere)."""

    def __init__(self):
        self.buf = b""
        self.datagrams = []  # payloads of context id 0
        self.other = []  # (type, value) of every other capsule
        self.bad = []  # DATAGRAM capsules with another context id / none

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


# ---------------------------------------------------------------- requests


def udp_path(host, port):
    """The node's connect-udp URI template, expanded (RFC 9298 §2)."""
    return f"/.well-known/masque/udp/{host}/{port}/"


def upgrade_request(port, path, token="connect-udp", host=True, extra=()):
    """An HTTP/1.1 upgrade request head (RFC 9298 §3.4) to the node on
    `port`: `Host` unless `host` is false, then `extra` field lines."""
    lines = [f"GET {path} HTTP/1.1"]
    if host:
        lines.append(f"Host: localhost:{port}")
    lines += ["Connection: Upgrade", f"Upgrade: {token}", "Capsule-Protocol: ?1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect_udp_headers(authority, host, port):
    """An HTTP/2 extended CONNECT request (RFC 8441, RFC 9298 §3.5)."""
    return [
        (":method", "CONNECT"),
        (":protocol", "connect-udp"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", udp_path(host, port)),
        ("capsule-protocol", "?1"),
    ]


# ---------------------------------------------------------------- TLS


def client_context(ca, pin, alpn):
    """A TLS client context offering `alpn` that trusts only `ca` (a PEM
    file), or with no CA nothing: then the `pin` checked after the handshake
    (`pinned_fingerprint`) is the only check."""
    check(ca or pin, "neither --ca nor --pin: the server would be unauthenticated")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts only --ca
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn)
    return ctx


def pinned_fingerprint(cert_der, pin):
    """The SHA-256 of the server's certificate (hex); fails unless it is
    `pin` (hex, colons allowed) when there is one."""
    fingerprint = hashlib.sha256(cert_der).hexdigest()
    if pin:
        want = pin.replace(":", "").lower()
        check(fingerprint == want, f"certificate fingerprint {fingerprint} != pinned {want}")
    return fingerprint


class Tls:
    """A TLS client connection to the node on 127.0.0.1:`port` over memory
    BIOs, so the peer decides exactly what goes into each write and how it
    leaves (close_notify and/or TCP FIN, or a reset) while still reading.
    Connected on return; the handshake is `handshake`."""

    def __init__(self, port, ctx, nodelay=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc, self.outg = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.outg, server_hostname="localhost")
        self.tcp_eof = False
        self.how_closed = None  # how the node closed: "close_notify", "fin", "reset"
        self.close_write_error = None
        self.fingerprint = None

    def client_hello(self):
        """The ClientHello bytes, not sent yet."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outg.read()

    def handshake(self, alpn, pin=None):
        """The whole handshake; fails unless the server selected `alpn` and
        its certificate matches `pin` (if any)."""
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
        self.fingerprint = pinned_fingerprint(self.obj.getpeercert(binary_form=True), pin)

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
        """Moves TCP bytes into the TLS object; False at TCP EOF."""
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
        """One application write: one call into TLS, one sendall."""
        view = memoryview(bytes(data))
        while view:
            n = self.obj.write(view)
            view = view[n:]
        self._flush()

    def recv(self, deadline):
        """Decrypted bytes; b"" once the node closed (close_notify, FIN or
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

    def close_write(self, tls=True, late_ok=False):
        """Ends our direction: close_notify (if `tls`) then TCP FIN; reading
        goes on. With `late_ok`, failing to send them is no failure but kept
        in `close_write_error`: the node may have closed already (e.g. right
        after our GOAWAY), and its kernel answers a late close_notify with a
        reset."""
        if tls:
            try:
                self.obj.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass
        try:
            if tls:
                self._flush()
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            if not late_ok:
                raise
            self.close_write_error = f"{type(e).__name__}: {e}"

    def read_to_eof(self, what):
        """Everything until the node closes; fails if it keeps the connection
        open past TIMEOUT."""
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

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- HTTP/2


class Stream:
    """One request's stream as the client saw it."""

    def __init__(self, sid):
        self.sid = sid
        self.headers = None  # final response headers, {name: value} (bytes), first of each name
        self.status = None
        self.ended = False
        self.reset = None  # RST_STREAM error code from the server
        self.caps = CapsuleParser()
        self.data_bytes = 0


class H2Client:
    """Python `h2` as a client. A subclass connects, provides `_write(data)`
    and `_read(deadline)` (decrypted bytes, b"" once the node closed;
    socket.timeout at the deadline), then calls this `__init__`, which sends
    the client preface and waits for the server's SETTINGS (unless
    `preface` is false). With `validate` false, malformed requests go out
    as they are."""

    def __init__(self, validate=True, preface=True):
        cfg = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
        self.conn = h2.connection.H2Connection(config=cfg)
        self.streams = {}
        self.settings = None  # the server's first SETTINGS, {id: value}
        self.terminated = None  # (error code, last stream id, data) of a GOAWAY
        self.closed = False
        if preface:
            self.conn.initiate_connection()
            self.flush()
            self.pump_until(lambda: self.settings is not None, "the server's SETTINGS")

    def how_closed(self):
        """How the node closed the connection, if known."""
        return None

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self._write(data)

    def _on_event(self, ev):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            if self.settings is None:
                self.settings = {int(k): v.new_value for k, v in ev.changed_settings.items()}
        elif isinstance(ev, h2.events.ResponseReceived):
            s = self.streams[ev.stream_id]
            s.headers = {}
            for k, v in ev.headers:
                s.headers.setdefault(bytes(k).lower(), bytes(v))
            s.status = int(s.headers.get(b":status", b"0"))
        elif isinstance(ev, h2.events.DataReceived):
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.data_bytes += len(ev.data)
                s.caps.feed(ev.data)
            # Hand the window back so the server's sends never stall.
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.streams[ev.stream_id].ended = True
        elif isinstance(ev, h2.events.StreamReset):
            s = self.streams.get(ev.stream_id)
            if s is not None and ev.remote_reset:
                s.reset = int(ev.error_code)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = (int(ev.error_code), ev.last_stream_id, ev.additional_data)

    def pump_until(self, pred, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while not pred():
            check(self.terminated is None, f"{what}: the node closed the connection (GOAWAY {self.terminated})")
            check(not self.closed, f"{what}: the node closed the connection ({self.how_closed()})")
            try:
                data = self._read(deadline)
            except (socket.timeout, TimeoutError):
                raise Fail(f"{what}: not within {timeout}s") from None
            except ssl.SSLError as e:
                raise Fail(f"{what}: TLS error {e}") from None
            if not data:
                self.closed = True
                continue
            for ev in self.conn.receive_data(data):
                self._on_event(ev)
            self.flush()

    def request(self, headers, end_stream=False):
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = Stream(sid)
        self.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in headers], end_stream=end_stream)
        self.flush()
        return sid

    def response(self, sid, what):
        s = self.streams[sid]
        self.pump_until(lambda: s.headers is not None or s.reset is not None, what)
        return s

    def finish(self, sid, label):
        """END_STREAM from us must be answered with END_STREAM."""
        self.conn.end_stream(sid)
        self.flush()
        s = self.streams[sid]
        self.pump_until(lambda: s.ended or s.reset is not None, f"{label}: END_STREAM answered")
        check(s.reset is None, f"{label}: END_STREAM answered with RST_STREAM {s.reset}")


# ---------------------------------------------------------------- runs


def arg_parser(doc, scenarios, with_all=True, pin=True):
    """The arguments of every peer: the scenario (or "all"), the node's
    TLS/TCP port, the UDP echo target's port, and how to trust the node:
    --ca and/or --pin, or with `pin` false --ca alone, required."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("scenario", choices=sorted(scenarios) + (["all"] if with_all else []))
    p.add_argument("--port", type=int, required=True, help="the node's TLS/TCP port")
    p.add_argument("--target-port", type=int, default=9, help="UDP echo target on 127.0.0.1")
    p.add_argument("--ca", required=not pin, help="PEM file of the node's certificate (trusted as a CA)")
    if pin:
        p.add_argument("--pin", help="SHA-256 of the node's certificate (hex, colons allowed)")
    return p


def emit(obj):
    """One JSON line on stdout, flushed at once (the test reads as we go)."""
    print(json.dumps(obj), flush=True)


def run(name, body, out, errors=()):
    """Runs `body(out)` for scenario `name` and prints `out` (which starts
    with `"ok": False`) as one JSON line: `"ok"`, `"error"` on a failure (a
    Fail, an OSError or one of `errors`), `"seconds"`, any nested
    `"detail"` last; a failure on stderr too. Whether it passed."""
    started = time.monotonic()
    try:
        body(out)
        out["ok"] = True
    except Fail as e:
        out["error"] = str(e)
    except (OSError, *errors) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out["seconds"] = round(time.monotonic() - started, 3)
    # Nested detail last, so the flat keys are easy to find.
    if "detail" in out:
        out["detail"] = out.pop("detail")
    emit(out)
    if not out["ok"]:
        print(f"FAIL {name}: {out['error']}", file=sys.stderr, flush=True)
    return out["ok"]


def run_scenarios(a, scenarios, header, errors=()):
    """[`run`]s `a.scenario`, or every scenario for "all", each summary
    starting with `header`; exits 1 if any failed."""
    names = sorted(scenarios) if a.scenario == "all" else [a.scenario]
    ok = True
    for name in names:
        out = {**header, "scenario": name, "ok": False}
        ok = run(name, lambda out: scenarios[name](a, out), out, errors) and ok
    sys.exit(0 if ok else 1)
