#!/usr/bin/env python3
"""An independent CONNECT-IP client (RFC 9484) against masque-node, written
from the RFC (and RFC 9297 for datagrams and capsules, RFC 791/792/768 for
the packets), not from the node's code. One script, three transports:

  h3   aioquic: extended CONNECT (`:protocol connect-ip`), IP packets in QUIC
       DATAGRAM frames (quarter stream id + context id 0, encoded here)
  h2   Python `h2` over the standard `ssl` module (RFC 8441 extended
       CONNECT), IP packets in DATAGRAM capsules (type 0x00) in DATA frames
  h1   a hand-written HTTP/1.1 client on `ssl` memory BIOs: `GET` +
       `Upgrade: connect-ip` answered 101, DATAGRAM capsules on the
       upgraded connection

Every run: the request to --path (default `/.well-known/masque/ip/*/*/`,
full tunnel; h3: --open-delay seconds after the handshake) with
`capsule-protocol: ?1`; a 2xx (h1: 101 with `Upgrade: connect-ip`) with
`capsule-protocol: ?1`; an ADDRESS_REQUEST capsule (request
id 1, IPv4, 0.0.0.0/32 = any address) answered by an ADDRESS_ASSIGN carrying
request id 1 with a real address, and a ROUTE_ADVERTISEMENT (its ranges
checked against the ordering rules of RFC 9484 §4.7.3). Then the scenario:

  echo      an ICMP Echo Request from the assigned address to --dest; the
            Echo Reply (same identifier, sequence and data, from --dest to
            the assigned address, checksums valid) must come back
  ttl1      a UDP packet with TTL 1 from the assigned address to --dest: an
            ICMP Time Exceeded (type 11 code 0) to the assigned address,
            quoting our IP header and the first 8 bytes of the UDP header,
            must come back (with --hold S, only after holding the open
            tunnel S seconds, which must stay up). With --egress-probe (the peer in the node's
            network namespace), the other way too: UDP from a socket of the
            node's host to the assigned address with TTL 2 arrives with TTL
            1, with TTL 1 it does not arrive (the node decrements the TTL
            when a packet enters the tunnel, RFC 9484 §7.2)
  spoof     UDP packets whose source is not the assigned address (each
            --spoof-src; by default 198.18.0.66, outside any pool, and the
            assigned address + 1, inside the node's pool) to --dest: with
            --sink-port the peer (run in the node's network namespace) binds
            --dest:PORT first and checks that none of them is delivered,
            while a control packet from the assigned address is; any ICMP
            that comes back is recorded (Destination Unreachable code 13,
            administratively prohibited, is what the node is expected to
            answer; RFC 9484 §7.2.1 / icmp-for-tunnels.md §4)
  mtu-abort (h3; the node with an IPv6 pool, --max-datagram-frame-size
            below 1281 + the quarter stream id) the tunnel opens as usual,
            then the node must abort the request stream (RFC 9484 §7.2:
            the QUIC path cannot carry a 1280-byte IPv6 packet) within
            --abort-within seconds of the response: RESET_STREAM with
            H3_CONNECT_ERROR (0x10f); `abort_seconds` says when
  malformed a malformed capsule (--malformed KIND) after the address is
            assigned: `request-id-0` (ADDRESS_REQUEST with request id 0,
            R9484-29), `assign-version-5` (ADDRESS_ASSIGN with IP version
            5, R9484-24: `01 07 00 05 c0 00 02 01 20`), `route-order` (a
            ROUTE_ADVERTISEMENT whose ranges touch, R9484-37: `03 14 04 0a
            00 00 00 0a 00 00 ff 00 04 0a 00 00 ff 0a 00 01 00 00`). The
            node must reset the stream as malformed (RFC 9297 §3.3): h3
            H3_MESSAGE_ERROR (0x10e), h2 RST_STREAM PROTOCOL_ERROR (0x1),
            h1 the connection closed, with nothing more sent after it
  scope     the request to --path (a hostname scope, e.g.
            `/.well-known/masque/ip/localhost/*/`) without an address
            request: with --expect-status N the response must have that
            status (its Proxy-Status is reported); else it must succeed and
            its ROUTE_ADVERTISEMENT is reported (`routes`) and checked
            against the ordering rules
  selfcheck the codecs of this script against the test vectors of the spec
            digest (RFC 9484 §10 there) and RFC 1071; no network

Prints one JSON object on stdout (flat keys first, `"ok": true|false`) and
exits 1 with the reason in `"error"` on the first failed check. Every wait
is bounded (--timeout per step, 5 s by default).
"""
import argparse
import asyncio
import ipaddress
import json
import os
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # helpers, even under `python -P`

TIMEOUT = 5.0

DATAGRAM = 0x00
ADDRESS_ASSIGN = 0x01
ADDRESS_REQUEST = 0x02
ROUTE_ADVERTISEMENT = 0x03

PROTO_ICMP = 1
PROTO_UDP = 17


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ---------------------------------------------------------------- varints and capsules (RFC 9000 §16, RFC 9297 §3.2)


def varint(v):
    if v < 0x40:
        return bytes([v])
    if v < 0x4000:
        return (0x4000 | v).to_bytes(2, "big")
    if v < 0x40000000:
        return (0x80000000 | v).to_bytes(4, "big")
    check(v < 1 << 62, f"varint {v} too large")
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


class CapsuleStream:
    """Capsules out of a byte stream that may split them anywhere."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        """The complete capsules now available, as (type, value)."""
        self.buf += data
        out = []
        while True:
            t = read_varint(self.buf, 0)
            if t is None:
                return out
            ln = read_varint(self.buf, t[1])
            if ln is None:
                return out
            end = ln[1] + ln[0]
            if end > len(self.buf):
                return out
            out.append((t[0], self.buf[ln[1] : end]))
            self.buf = self.buf[end:]


def split_datagram(payload):
    """(context id, rest) of an HTTP Datagram payload (RFC 9484 §6)."""
    c = read_varint(payload, 0)
    check(c is not None, "an HTTP Datagram without a context id")
    return c[0], payload[c[1] :]


# ---------------------------------------------------------------- CONNECT-IP capsules (RFC 9484 §4.7)


def ip_bytes(version):
    check(version in (4, 6), f"IP version {version} (not 4 or 6)")
    return 4 if version == 4 else 16


def encode_addresses(ctype, entries):
    """ADDRESS_ASSIGN / ADDRESS_REQUEST: entries (request id, ip_network)."""
    value = b""
    for rid, net in entries:
        value += varint(rid) + bytes([net.version]) + net.network_address.packed + bytes([net.prefixlen])
    return capsule(ctype, value)


def decode_addresses(value):
    """[(request id, ip_network)] of an ADDRESS_ASSIGN / ADDRESS_REQUEST
    value; Fail on any field error (R9484-24/25/30)."""
    out = []
    off = 0
    while off < len(value):
        rid = read_varint(value, off)
        check(rid is not None, "address entry: truncated request id")
        off = rid[1]
        check(off < len(value), "address entry: no IP version")
        version = value[off]
        n = ip_bytes(version)
        check(off + 1 + n + 1 <= len(value), "address entry: truncated")
        addr = value[off + 1 : off + 1 + n]
        plen = value[off + 1 + n]
        check(plen <= 8 * n, f"address entry: prefix length {plen} > {8 * n}")
        ip = ipaddress.ip_address(addr)
        try:
            net = ipaddress.ip_network(f"{ip}/{plen}", strict=True)
        except ValueError:
            raise Fail(f"address entry: {ip}/{plen} has bits set beyond the prefix") from None
        out.append((rid[0], net))
        off += 1 + n + 1
    return out


def decode_routes(value):
    """[(start, end, protocol)] of a ROUTE_ADVERTISEMENT value; Fail on a
    field error or an order/overlap violation (R9484-35/37/38)."""
    out = []
    off = 0
    while off < len(value):
        version = value[off]
        n = ip_bytes(version)
        check(off + 1 + 2 * n + 1 <= len(value), "route range: truncated")
        start = ipaddress.ip_address(value[off + 1 : off + 1 + n])
        end = ipaddress.ip_address(value[off + 1 + n : off + 1 + 2 * n])
        proto = value[off + 1 + 2 * n]
        check(start <= end, f"route range: start {start} > end {end}")
        out.append((start, end, proto))
        off += 1 + 2 * n + 1
    for a, b in zip(out, out[1:]):
        va, vb = a[0].version, b[0].version
        check(va <= vb, f"route ranges out of order: IPv{va} after IPv{vb}")
        if va == vb:
            check(a[2] <= b[2], f"route ranges out of order: protocol {a[2]} before {b[2]}")
            if a[2] == b[2]:
                check(a[1] < b[0], f"route ranges overlap or touch: {a[0]}-{a[1]} then {b[0]}-{b[1]}")
    for a in out:
        for b in out:
            if a[0].version == b[0].version and a[2] == 0 and b[2] != 0:
                check(a[1] < b[0] or b[1] < a[0], "a protocol-0 range overlaps a protocol-specific one")
    return out


# ---------------------------------------------------------------- IPv4, ICMP, UDP (RFC 791, 792, 768, 1071)


def inet_checksum(data):
    """RFC 1071: one's complement of the one's complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\x00"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_packet(src, dst, proto, payload, ttl=64, ident=0x1234):
    """An IPv4 packet (no options, DF set) with its header checksum."""
    total = 20 + len(payload)
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, ttl, proto, 0, src.packed, dst.packed)
    head = head[:10] + struct.pack("!H", inet_checksum(head)) + head[12:]
    return head + payload


def icmp_message(icmp_type, code, rest_of_header, body):
    m = struct.pack("!BBH", icmp_type, code, 0) + rest_of_header + body
    return m[:2] + struct.pack("!H", inet_checksum(m)) + m[4:]


def udp_datagram(src, dst, sport, dport, data):
    """A UDP header + data with the checksum over the IPv4 pseudo-header."""
    length = 8 + len(data)
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, PROTO_UDP, length)
    u = struct.pack("!HHHH", sport, dport, length, 0) + data
    c = inet_checksum(pseudo + u) or 0xFFFF
    return u[:6] + struct.pack("!H", c) + u[8:]


class Ipv4:
    """A parsed IPv4 packet; `errors` lists what is wrong with it."""

    def __init__(self, pkt):
        self.raw = pkt
        self.errors = []
        check(len(pkt) >= 20 and pkt[0] >> 4 == 4, f"not an IPv4 packet: {pkt[:20].hex()}")
        ihl = (pkt[0] & 0xF) * 4
        check(ihl >= 20 and len(pkt) >= ihl, "bad IPv4 header length")
        self.total = struct.unpack("!H", pkt[2:4])[0]
        self.ident = struct.unpack("!H", pkt[4:6])[0]
        self.ttl = pkt[8]
        self.proto = pkt[9]
        self.src = ipaddress.IPv4Address(pkt[12:16])
        self.dst = ipaddress.IPv4Address(pkt[16:20])
        if inet_checksum(pkt[:ihl]) != 0:
            self.errors.append("IPv4 header checksum")
        if self.total != len(pkt):
            self.errors.append(f"total length {self.total} != {len(pkt)} bytes received")
        self.payload = pkt[ihl : self.total]
        self.icmp = None
        if self.proto == PROTO_ICMP and len(self.payload) >= 8:
            if inet_checksum(self.payload) != 0:
                self.errors.append("ICMP checksum")
            self.icmp = (self.payload[0], self.payload[1], self.payload[4:8], self.payload[8:])

    def summary(self):
        d = {"src": str(self.src), "dst": str(self.dst), "proto": self.proto, "ttl": self.ttl, "len": len(self.raw)}
        if self.icmp:
            d["icmp_type"], d["icmp_code"] = self.icmp[0], self.icmp[1]
        if self.errors:
            d["errors"] = self.errors
        return d


# ---------------------------------------------------------------- transports


def connect_ip_headers(authority, path):
    """RFC 9484 §4.4: extended CONNECT with :protocol connect-ip."""
    return [
        (":method", "CONNECT"),
        (":protocol", "connect-ip"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
        ("capsule-protocol", "?1"),
    ]


class H3:
    """aioquic behind a blocking facade. Events: ("capsule", type, value),
    ("datagram", payload) (context id included), ("closed", why)."""

    name = "h3"

    def __init__(self, a):
        from aioquic.asyncio import connect
        from aioquic.asyncio.protocol import QuicConnectionProtocol
        from aioquic.h3.events import DataReceived, DatagramReceived, HeadersReceived
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.events import ConnectionTerminated, StreamReset

        from aioquic_client import MasqueH3  # advertises SETTINGS_H3_DATAGRAM

        class Proto(QuicConnectionProtocol):
            def __init__(self, *args, **kw):
                super().__init__(*args, **kw)
                self.h3 = MasqueH3(self._quic)
                self.queue = asyncio.Queue()

            def quic_event_received(self, event):
                if isinstance(event, StreamReset):
                    self.queue.put_nowait(("reset", event.stream_id, event.error_code))
                elif isinstance(event, ConnectionTerminated):
                    self.queue.put_nowait(("closed", None, f"CONNECTION_CLOSE {event.error_code:#x} {event.reason_phrase}"))
                for ev in self.h3.handle_event(event):
                    if isinstance(ev, HeadersReceived):
                        self.queue.put_nowait(("headers", ev.stream_id, ev.headers, ev.stream_ended))
                    elif isinstance(ev, DataReceived):
                        self.queue.put_nowait(("data", ev.stream_id, ev.data, ev.stream_ended))
                    elif isinstance(ev, DatagramReceived):
                        self.queue.put_nowait(("datagram", ev.stream_id, ev.data))

        self.timeout = a.timeout
        self.open_delay = a.open_delay
        self.loop = asyncio.new_event_loop()
        config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], max_datagram_frame_size=a.max_datagram_frame_size)
        if a.max_datagram_size:
            config.max_datagram_size = a.max_datagram_size
        config.load_verify_locations(a.ca)
        config.server_name = "localhost"
        self.cm = connect(a.host, a.port, configuration=config, create_protocol=Proto)
        self.c = self._run(self.cm.__aenter__(), "QUIC handshake")
        self.sid = None
        self.reset_code = None  # RESET_STREAM of the request stream
        self.caps = CapsuleStream()
        self.early = []
        self.authority = f"localhost:{a.port}"

    def _run(self, coro, what):
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coro, self.timeout))
        except (asyncio.TimeoutError, TimeoutError):
            raise Fail(f"h3: {what}: not within {self.timeout}s") from None

    def _raw(self, deadline):
        async def get():
            return await asyncio.wait_for(self.c.queue.get(), max(deadline - time.monotonic(), 0.001))

        try:
            return self.loop.run_until_complete(get())
        except (asyncio.TimeoutError, TimeoutError):
            return None

    def open(self, path):
        if self.open_delay:
            self.loop.run_until_complete(asyncio.sleep(self.open_delay))
        self.sid = self.c._quic.get_next_available_stream_id()
        self.c.h3.send_headers(self.sid, [(k.encode(), v.encode()) for k, v in connect_ip_headers(self.authority, path)])
        self.c.transmit()
        deadline = time.monotonic() + self.timeout
        while True:
            ev = self._raw(deadline)
            check(ev is not None, f"h3: no response within {self.timeout}s")
            if ev[0] == "closed":
                raise Fail(f"h3: connection closed before the response: {ev[2]}")
            if ev[1] != self.sid:
                continue
            if ev[0] == "reset":
                raise Fail(f"h3: request reset ({ev[2]:#x}) instead of answered")
            if ev[0] == "headers":
                h = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in ev[2]}
                if ev[3]:
                    self.early.append(("closed", "FIN with the response"))
                return int(h.get(":status", "0")), h
            # A datagram before the response is kept for later.
            self.early.append(ev)

    def send_capsule(self, data):
        from aioquic.h3.exceptions import H3Error

        try:
            self.c.h3.send_data(self.sid, data, False)
        except H3Error as e:
            # aioquic forgets a stream the node reset: say so.
            resets = [ev for ev in self.early if ev[0] == "reset"]
            while (ev := self._raw(time.monotonic() + 0.2)) is not None:
                if ev[0] in ("reset", "closed"):
                    resets.append(ev)
            raise Fail(f"h3: cannot send on the request stream ({type(e).__name__}: {e}); the node ended it: {resets}") from None
        self.c.transmit()

    def send_datagram(self, payload):
        # RFC 9297 §2.1: Quarter Stream ID, then the HTTP Datagram payload.
        self.c._quic.send_datagram_frame(varint(self.sid // 4) + payload)
        self.c.transmit()

    def poll(self, deadline):
        out = []
        pending, self.early = self.early, []
        for ev in pending:
            out += self._convert(ev)
        if out:
            return out
        while not out:
            ev = self._raw(deadline)
            if ev is None:
                return []
            out += self._convert(ev)
        return out

    def _convert(self, ev):
        kind = ev[0]
        if kind == "closed" and ev[1] is None:
            return [("closed", ev[2])]
        if kind == "closed":
            return [ev]
        if ev[1] != self.sid:
            return []
        if kind == "datagram":
            return [("datagram", ev[2])]
        if kind == "data":
            out = [("capsule", t, v) for t, v in self.caps.feed(ev[2])]
            if ev[3]:
                out.append(("closed", "the node ended the stream (FIN)"))
            return out
        if kind == "reset":
            self.reset_code = ev[2]
            return [("closed", f"stream reset {ev[2]:#x}")]
        return [("closed", f"unexpected {kind} on the stream")]

    def close(self):
        try:
            self.c.h3.send_data(self.sid, b"", True)
            self.c.transmit()
        except Exception:  # noqa: BLE001 - best effort
            pass
        try:
            self.loop.run_until_complete(asyncio.wait_for(self.cm.__aexit__(None, None, None), 2))
        except Exception:  # noqa: BLE001 - best effort
            pass
        self.loop.close()


class H2:
    """Python `h2` on a blocking `ssl` socket."""

    name = "h2"

    def __init__(self, a):
        import h2.events
        from masque_peer import H2Client, client_context

        self.h2events = h2.events
        ctx = client_context(a.ca, None, ["h2"])
        raw = socket.create_connection((a.host, a.port), timeout=a.timeout)
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
        check(sock.selected_alpn_protocol() == "h2", f"h2: ALPN {sock.selected_alpn_protocol()!r}")
        outer = self

        class Client(H2Client):
            def _write(self, data):
                sock.sendall(data)

            def _read(self, deadline):
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    return sock.recv(65536)
                except (ConnectionResetError, ssl.SSLEOFError):
                    return b""

            def _on_event(self, ev):
                if isinstance(ev, outer.h2events.DataReceived) and ev.stream_id == outer.sid:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    outer.events += [("capsule", t, v) for t, v in outer.caps.feed(ev.data)]
                    return
                super()._on_event(ev)
                if isinstance(ev, outer.h2events.StreamEnded) and ev.stream_id == outer.sid:
                    outer.events.append(("closed", "the node ended the stream (END_STREAM)"))
                elif isinstance(ev, outer.h2events.StreamReset) and ev.stream_id == outer.sid:
                    outer.reset_code = int(ev.error_code)
                    outer.events.append(("closed", f"RST_STREAM {int(ev.error_code):#x}"))
                elif isinstance(ev, outer.h2events.ConnectionTerminated):
                    outer.events.append(("closed", f"GOAWAY {int(ev.error_code):#x}"))

        self.sock = sock
        self.timeout = a.timeout
        self.sid = None
        self.reset_code = None  # RST_STREAM of the request stream
        self.events = []
        self.caps = CapsuleStream()
        self.authority = f"localhost:{a.port}"
        import masque_peer

        masque_peer.TIMEOUT = a.timeout  # H2Client's own waits
        self.c = Client()
        check(self.c.settings.get(0x8) == 1, f"h2: SETTINGS_ENABLE_CONNECT_PROTOCOL not 1: {self.c.settings}")

    def open(self, path):
        self.sid = self.c.request(connect_ip_headers(self.authority, path))
        s = self.c.response(self.sid, "h2: response")
        check(s.headers is not None, f"h2: request reset ({s.reset}) instead of answered")
        h = {k.decode("latin-1"): v.decode("latin-1") for k, v in s.headers.items()}
        return s.status, h

    def send_capsule(self, data):
        check(self.c.conn.local_flow_control_window(self.sid) >= len(data), "h2: no flow-control window")
        self.c.conn.send_data(self.sid, data)
        self.c.flush()

    def send_datagram(self, payload):
        self.send_capsule(capsule(DATAGRAM, payload))

    def poll(self, deadline):
        while not self.events:
            if time.monotonic() >= deadline:
                return []
            try:
                data = self.c._read(deadline)
            except (socket.timeout, TimeoutError):
                return []
            if not data:
                self.events.append(("closed", "TCP connection closed"))
                break
            for ev in self.c.conn.receive_data(data):
                self.c._on_event(ev)
            self.c.flush()
        out, self.events = self.events, []
        return [("datagram", e[2]) if e[0] == "capsule" and e[1] == DATAGRAM else e for e in out]

    def close(self):
        try:
            self.c.conn.end_stream(self.sid)
            self.c.conn.close_connection()
            self.c.flush()
        except Exception:  # noqa: BLE001 - best effort
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class H1:
    """HTTP/1.1 (RFC 9484 §4.2/§4.3) on TLS over memory BIOs."""

    name = "h1"

    def __init__(self, a):
        from masque_peer import Tls, client_context

        import masque_peer

        masque_peer.TIMEOUT = a.timeout
        self.timeout = a.timeout
        self.port = a.port
        self.tls = Tls(a.port, client_context(a.ca, None, ["http/1.1"]))
        self.tls.handshake("http/1.1")
        self.caps = CapsuleStream()
        self.rest = b""
        self.reset_code = None  # no streams: a reset is the connection's end

    def open(self, path):
        req = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: localhost:{self.port}\r\n"
            "Connection: Upgrade\r\n"
            "Upgrade: connect-ip\r\n"
            "Capsule-Protocol: ?1\r\n\r\n"
        ).encode()
        self.tls.send(req)
        buf = b""
        deadline = time.monotonic() + self.timeout
        try:
            while b"\r\n\r\n" not in buf:
                data = self.tls.recv(deadline)
                check(data, f"h1: connection closed ({self.tls.how_closed}) before a response head: {buf!r}")
                buf += data
        except (socket.timeout, TimeoutError):
            raise Fail(f"h1: no response head within {self.timeout}s") from None
        head, _, self.rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        check(len(parts) >= 2 and parts[0] == "HTTP/1.1" and parts[1].isdigit(), f"h1: status line {lines[0]!r}")
        h = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            check(sep == ":", f"h1: field line {line!r}")
            k = k.strip().lower()
            h[k] = f"{h[k]}, {v.strip()}" if k in h else v.strip()
        return int(parts[1]), h

    def send_capsule(self, data):
        self.tls.send(data)

    def send_datagram(self, payload):
        self.tls.send(capsule(DATAGRAM, payload))

    def poll(self, deadline):
        data, self.rest = self.rest, b""
        if not data:
            try:
                data = self.tls.recv(deadline)
            except (socket.timeout, TimeoutError):
                return []
            if not data:
                return [("closed", f"connection closed ({self.tls.how_closed})")]
        return [("datagram", v) if t == DATAGRAM else ("capsule", t, v) for t, v in self.caps.feed(data)]

    def close(self):
        try:
            self.tls.close_write(tls=True, late_ok=True)
        except Exception:  # noqa: BLE001 - best effort
            pass
        self.tls.close()


TRANSPORTS = {"h3": H3, "h2": H2, "h1": H1}


# ---------------------------------------------------------------- the tunnel


class Tunnel:
    """One CONNECT-IP request: what the node assigned and advertised, and the
    IP packets it sent us."""

    def __init__(self, t, timeout):
        self.t = t
        self.timeout = timeout
        self.assigned = None  # [(request id, ip_network)] of the last ADDRESS_ASSIGN
        self.assigns = 0
        self.routes = None  # [(start, end, proto)] of the last ROUTE_ADVERTISEMENT
        self.route_adverts = 0
        self.packets = []  # Ipv4 received (context 0), not yet consumed
        self.other = []  # other capsule types
        self.other_contexts = 0
        self.non_ipv4 = 0
        self.closed = None
        self.events = 0  # capsules and datagrams received
        self.opened_at = None  # time.monotonic() of the response

    def pump(self, pred, what, timeout=None):
        """Handles events until `pred()` holds; Fail after `timeout` (or on
        the tunnel's end)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not pred():
            check(self.closed is None, f"{what}: the tunnel ended: {self.closed}")
            if time.monotonic() >= deadline:
                raise Fail(f"{what}: not within {timeout or self.timeout}s")
            for ev in self.t.poll(deadline):
                self._on(ev)

    def settle(self, seconds):
        """Handles events for `seconds` (a bounded listen for what else arrives)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.closed is None:
            for ev in self.t.poll(deadline):
                self._on(ev)

    def _on(self, ev):
        if ev[0] != "closed":
            self.events += 1
        if ev[0] == "capsule" and ev[1] == DATAGRAM:
            ev = ("datagram", ev[2])  # a DATAGRAM capsule is an HTTP Datagram (RFC 9297 §3.5)
        if ev[0] == "closed":
            self.closed = self.closed or ev[1]
        elif ev[0] == "datagram":
            ctx, pkt = split_datagram(ev[1])
            if ctx != 0:
                self.other_contexts += 1  # R9484-42: unknown context, dropped
            elif pkt and pkt[0] >> 4 == 4:
                self.packets.append(Ipv4(pkt))
            else:
                self.non_ipv4 += 1
        elif ev[1] == ADDRESS_ASSIGN:
            self.assigned = decode_addresses(ev[2])
            self.assigns += 1
        elif ev[1] == ROUTE_ADVERTISEMENT:
            self.routes = decode_routes(ev[2])
            self.route_adverts += 1
        else:
            self.other.append(ev[1])

    def send_ip(self, pkt):
        self.t.send_datagram(varint(0) + pkt)

    def take(self, match):
        """Removes and returns the first received packet for which `match`
        holds, else None."""
        for i, p in enumerate(self.packets):
            if match(p):
                return self.packets.pop(i)
        return None


def check_success(a, status, h):
    """The successful response's form (R9484-19 / R9484-21)."""
    if a.transport == "h1":
        check(status == 101, f"status {status}, wanted 101: {h}")
        check(h.get("upgrade", "").lower() == "connect-ip", f"Upgrade {h.get('upgrade')!r}, wanted connect-ip")
        check("upgrade" in [x.strip().lower() for x in h.get("connection", "").split(",")], f"Connection {h.get('connection')!r}")
    else:
        check(200 <= status < 300, f"status {status}, wanted 2xx: {h}")
    check(h.get("capsule-protocol") == "?1", f"no `capsule-protocol: ?1` in the response: {h}")
    check("content-length" not in h, "content-length on the successful response")


def open_tunnel(a, out):
    t = TRANSPORTS[a.transport](a)
    tun = Tunnel(t, a.timeout)
    try:
        status, h = t.open(a.path)
        tun.opened_at = time.monotonic()
        out["status"] = status
        check_success(a, status, h)
        # R9484-27: ask for one IPv4 address, any, /32; request id 1.
        t.send_capsule(encode_addresses(ADDRESS_REQUEST, [(1, ipaddress.ip_network("0.0.0.0/32"))]))

        def answered():
            return tun.assigned is not None and any(rid == 1 for rid, _ in tun.assigned) and tun.routes is not None

        tun.pump(answered, "ADDRESS_ASSIGN for request 1 and a ROUTE_ADVERTISEMENT")
        mine = [n for rid, n in tun.assigned if rid == 1]
        check(len(mine) == 1, f"request id 1 answered {len(mine)} times: {tun.assigned}")
        addr = mine[0]
        check(addr.version == 4, f"assigned {addr}, not IPv4")
        check(not (addr.network_address == ipaddress.IPv4Address(0) and addr.prefixlen == 32), "the address request was refused (0.0.0.0/32)")
        out["assigned"] = str(addr)
        out["assigned_prefix"] = addr.prefixlen
        out["routes"] = ", ".join(f"{s}-{e}/{p}" for s, e, p in tun.routes)
        out["route_ranges"] = len(tun.routes)
        return t, tun, addr.network_address
    except BaseException:
        t.close()
        raise


def covered(tun, ip, proto):
    return any(s.version == ip.version and s <= ip <= e and p in (0, proto) for s, e, p in tun.routes)


# ---------------------------------------------------------------- scenarios


def scenario_echo(a, out):
    t, tun, me = open_tunnel(a, out)
    try:
        if a.hold:
            # The tunnel must outlive the hold (e.g. the node's R9484-50
            # grace period): nothing may end it meanwhile.
            tun.settle(max(tun.opened_at + a.hold - time.monotonic(), 0))
            out["held_seconds"] = round(time.monotonic() - tun.opened_at, 3)
            check(tun.closed is None, f"the tunnel ended {out['held_seconds']}s after the response: {tun.closed}")
        dest = ipaddress.IPv4Address(a.dest)
        out["dest"] = str(dest)
        out["dest_advertised"] = covered(tun, dest, PROTO_ICMP)
        ident = os.getpid() & 0xFFFF
        data = b"masque connect-ip echo " + os.urandom(32)
        deadline = time.monotonic() + a.timeout
        sent = 0
        got = None
        # Datagrams are unreliable: one request a second until the bound.
        while got is None and time.monotonic() < deadline:
            sent += 1
            icmp = icmp_message(8, 0, struct.pack("!HH", ident, sent), data)
            started = time.monotonic()
            tun.send_ip(ipv4_packet(me, dest, PROTO_ICMP, icmp, ident=sent))

            def reply(p):
                return p.proto == PROTO_ICMP and p.icmp and p.icmp[0] == 0 and p.icmp[2][:2] == struct.pack("!H", ident)

            try:
                tun.pump(lambda: any(reply(p) for p in tun.packets), "echo reply", timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
                got = tun.take(reply)
            except Fail:
                if tun.closed:
                    raise
        out["requests_sent"] = sent
        check(got is not None, f"no echo reply within {a.timeout}s ({sent} requests; other packets: {[p.summary() for p in tun.packets]})")
        out["rtt_ms"] = round((time.monotonic() - started) * 1000, 2)
        out["reply"] = json.dumps(got.summary())
        out["reply_ttl"] = got.ttl
        check(not got.errors, f"echo reply: {got.errors}")
        check(got.src == dest and got.dst == me, f"echo reply from {got.src} to {got.dst}, wanted {dest} -> {me}")
        check(got.icmp[1] == 0, f"echo reply code {got.icmp[1]}")
        _, seq = struct.unpack("!HH", got.icmp[2])
        check(1 <= seq <= sent, f"echo reply sequence {seq}")
        check(got.icmp[3] == data, "echo reply data differs from the request's")
        out["echo_ok"] = True
    finally:
        t.close()


def scenario_ttl1(a, out):
    t, tun, me = open_tunnel(a, out)
    try:
        dest = ipaddress.IPv4Address(a.dest)
        out["dest"] = str(dest)
        out["dest_advertised"] = covered(tun, dest, PROTO_UDP)
        sport, dport = 40000 + (os.getpid() % 20000), 33434
        deadline = time.monotonic() + a.timeout
        sent = 0
        got = None
        while got is None and time.monotonic() < deadline:
            sent += 1
            ident = 0x7100 + sent
            udp = udp_datagram(me, dest, sport, dport, b"ttl one " + bytes([sent]))
            pkt = ipv4_packet(me, dest, PROTO_UDP, udp, ttl=1, ident=ident)

            def exceeded(p):
                return p.proto == PROTO_ICMP and p.icmp and p.icmp[0] == 11

            try:
                tun.send_ip(pkt)
                tun.pump(lambda: any(exceeded(p) for p in tun.packets), "ICMP Time Exceeded", timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
                got = tun.take(exceeded)
            except Fail:
                if tun.closed:
                    raise
        out["packets_sent"] = sent
        check(got is not None, f"no ICMP Time Exceeded within {a.timeout}s ({sent} packets; other packets: {[p.summary() for p in tun.packets]})")
        out["icmp"] = json.dumps(got.summary())
        out["icmp_src"] = str(got.src)
        check(not got.errors, f"Time Exceeded: {got.errors}")
        check(got.dst == me, f"Time Exceeded sent to {got.dst}, not to {me}")
        check(got.icmp[1] == 0, f"Time Exceeded code {got.icmp[1]}, wanted 0 (TTL exceeded in transit)")
        check(got.icmp[2] == bytes(4), f"Time Exceeded unused word {got.icmp[2].hex()}")
        quoted = got.icmp[3]
        check(len(quoted) >= 28, f"Time Exceeded quotes {len(quoted)} bytes, wanted the IP header + 8 (RFC 792)")
        q = quoted[:20]
        check(q[9] == PROTO_UDP and q[12:16] == me.packed and q[16:20] == dest.packed, f"quoted header {q.hex()} is not our packet's")
        qid = struct.unpack("!H", q[4:6])[0]
        check(0x7101 <= qid <= 0x7100 + sent, f"quoted identification {qid:#x} is none of ours")
        check(quoted[20:24] == struct.pack("!HH", sport, dport), f"quoted UDP ports {quoted[20:24].hex()}")
        out["quoted_bytes"] = len(quoted)
        out["quoted_ttl"] = q[8]
        out["time_exceeded_ok"] = True
        if a.egress_probe:
            egress_probe(a, out, tun, me)
    finally:
        t.close()


def egress_probe(a, out, tun, me):
    """The other direction (R9484-47: the TTL is decremented when a packet
    enters the tunnel): from a socket of the node's host (the peer runs in
    its network namespace) UDP to the assigned address, once with TTL 2,
    which must arrive with TTL 1, and once with TTL 1, which must not
    arrive. Whether an ICMP error reached the socket is only recorded."""
    port = 33500 + os.getpid() % 1000
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11), 1)
        sock.setblocking(False)

        def send(ttl, data):
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            sock.sendto(data, (str(me), port))

        def ours(p, tag):
            return p.proto == PROTO_UDP and p.dst == me and p.payload[8:].startswith(tag)

        send(1, b"egress ttl 1")
        deadline = time.monotonic() + a.timeout
        control = None
        n = 0
        while control is None and time.monotonic() < deadline:
            n += 1
            send(2, b"egress ttl 2 #%d" % n)
            try:
                tun.pump(lambda: any(ours(p, b"egress ttl 2") for p in tun.packets), "egress TTL 2", timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
                control = tun.take(lambda p: ours(p, b"egress ttl 2"))
            except Fail:
                if tun.closed:
                    raise
        check(control is not None, f"a TTL-2 UDP packet from the node's host to {me} never came through the tunnel within {a.timeout}s")
        out["egress_ttl2_arrived_ttl"] = control.ttl
        check(control.ttl == 1, f"a TTL-2 packet came through the tunnel with TTL {control.ttl}, wanted 1 (decremented once)")
        tun.settle(0.3)
        expired = [p.summary() for p in tun.packets if ours(p, b"egress ttl 1")]
        out["egress_ttl1_delivered"] = len(expired)
        check(not expired, f"a TTL-1 packet came through the tunnel: {expired}")
        errors = []
        try:
            while True:
                _data, _anc, _flags, _addr = sock.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
                errors.append("icmp error")
        except (BlockingIOError, OSError):
            pass
        out["egress_ttl1_socket_errors"] = len(errors)
        out["egress_probe_ok"] = True
    finally:
        sock.close()


def scenario_spoof(a, out):
    t, tun, me = open_tunnel(a, out)
    sink = None
    try:
        dest = ipaddress.IPv4Address(a.dest)
        out["dest"] = str(dest)
        spoofs = [ipaddress.IPv4Address(s) for s in a.spoof_src] or [
            ipaddress.IPv4Address("198.18.0.66"),
            me + 1,
        ]
        check(me not in spoofs, f"a spoofed source is the assigned address {me}")
        out["spoofed_sources"] = ", ".join(map(str, spoofs))
        if a.sink_port:
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind((str(dest), a.sink_port))
            sink.setblocking(False)
        sport = 41000 + (os.getpid() % 20000)
        port = a.sink_port or 9
        for i, src in enumerate(spoofs):
            udp = udp_datagram(src, dest, sport, port, b"spoofed %d" % i)
            tun.send_ip(ipv4_packet(src, dest, PROTO_UDP, udp, ident=0x5100 + i))
        # ICMP echo with a spoofed source, too (it is not UDP-specific).
        icmp = icmp_message(8, 0, struct.pack("!HH", 0x5EED, 1), b"spoofed echo")
        tun.send_ip(ipv4_packet(spoofs[0], dest, PROTO_ICMP, icmp, ident=0x5200))
        out["spoofed_sent"] = len(spoofs) + 1
        delivered = []
        control = None
        deadline = time.monotonic() + a.timeout
        if sink:
            # The control: the same from the assigned address must arrive
            # (datagrams are unreliable: resent until it does, bounded).
            n = 0
            while control is None and time.monotonic() < deadline:
                n += 1
                udp = udp_datagram(me, dest, sport, port, b"control %d" % n)
                tun.send_ip(ipv4_packet(me, dest, PROTO_UDP, udp, ident=0x5300 + n))
                end = min(time.monotonic() + 1.0, deadline)
                while control is None and time.monotonic() < end:
                    tun.settle(0.05)
                    try:
                        while True:
                            data, frm = sink.recvfrom(2048)
                            if frm[0] == str(me) and data.startswith(b"control"):
                                control = data
                            else:
                                delivered.append(f"{frm[0]}:{frm[1]} {data!r}")
                    except BlockingIOError:
                        pass
            out["control_sent"] = n
            check(control is not None, f"the control packet from {me} never reached {dest}:{port} within {a.timeout}s")
            out["control_delivered"] = True
            # Anything still in flight for the spoofed packets arrives by now.
            tun.settle(0.5)
            try:
                while True:
                    data, frm = sink.recvfrom(2048)
                    if not data.startswith(b"control"):
                        delivered.append(f"{frm[0]}:{frm[1]} {data!r}")
            except BlockingIOError:
                pass
        else:
            tun.settle(1.0)
        icmp_back = [p.summary() for p in tun.packets if p.icmp]
        out["icmp_received"] = len(icmp_back)
        unreach = [p for p in tun.packets if p.icmp and p.icmp[0] == 3 and p.dst in spoofs]
        out["dest_unreachable_codes"] = ",".join(str(p.icmp[1]) for p in unreach)
        out["tunnel_open"] = tun.closed is None
        out["spoofed_delivered"] = len(delivered)
        out["detail"] = {"delivered": delivered, "icmp": icmp_back}
        check(tun.closed is None, f"the tunnel ended after spoofed packets (R9484-46: a forwarding error, not a protocol error): {tun.closed}")
        check(not delivered, f"spoofed packets were delivered: {delivered}")
        echo_replies = [p for p in tun.packets if p.icmp and p.icmp[0] == 0]
        check(not echo_replies, f"an echo reply to a spoofed echo request came back: {[p.summary() for p in echo_replies]}")
        out["spoof_ok"] = True
    finally:
        if sink:
            sink.close()
        t.close()


def scenario_mtu_abort(a, out):
    """R9484-50: the node aborts an HTTP/3 tunnel that may carry IPv6 when
    one QUIC DATAGRAM cannot carry a 1280-byte packet (our
    max_datagram_frame_size is too small for it)."""
    check(a.transport == "h3", "mtu-abort is an HTTP/3 scenario")
    out["max_datagram_frame_size"] = a.max_datagram_frame_size
    t, tun, _me = open_tunnel(a, out)
    try:
        deadline = tun.opened_at + a.abort_within
        while tun.closed is None and time.monotonic() < deadline:
            tun.settle(max(deadline - time.monotonic(), 0.01))
        out["abort_seconds"] = round(time.monotonic() - tun.opened_at, 3)
        check(tun.closed is not None, f"the tunnel is still up {a.abort_within}s after the response (R9484-50: it must be aborted)")
        out["closed"] = tun.closed
        code = t.reset_code
        out["reset_code"] = code
        check(code is not None, f"the tunnel ended without a stream reset: {tun.closed}")
        check(code == 0x10F, f"the stream was reset with {code:#x}, wanted H3_CONNECT_ERROR (0x10f)")
        out["mtu_abort_ok"] = True
    finally:
        t.close()


MALFORMED = {
    # ADDRESS_REQUEST, request id 0 (R9484-29), IPv4 any /32.
    "request-id-0": "02 07 00 04 00 00 00 00 20",
    # ADDRESS_ASSIGN, IP version 5 (R9484-24): the spec digest's vector.
    "assign-version-5": "01 07 00 05 c0 00 02 01 20",
    # ROUTE_ADVERTISEMENT whose ranges touch (R9484-37): the digest's vector.
    "route-order": "03 14 04 0a 00 00 00 0a 00 00 ff 00 04 0a 00 00 ff 0a 00 01 00 00",
}


def scenario_malformed(a, out):
    """R9297-22 / the RFC 9484 error table: a malformed capsule resets the
    request stream as malformed."""
    check(a.malformed in MALFORMED, f"--malformed {a.malformed!r}: one of {sorted(MALFORMED)}")
    bad = bytes.fromhex(MALFORMED[a.malformed].replace(" ", ""))
    out["malformed"] = a.malformed
    out["capsule"] = bad.hex()
    t, tun, _me = open_tunnel(a, out)
    try:
        tun.settle(0.2)  # whatever the node still had to say
        before = tun.events
        sent_at = time.monotonic()
        t.send_capsule(bad)
        deadline = sent_at + a.timeout
        while tun.closed is None and time.monotonic() < deadline:
            tun.settle(max(deadline - time.monotonic(), 0.01))
        out["events_after"] = tun.events - before
        check(tun.closed is not None, f"the tunnel is still up {a.timeout}s after the malformed capsule")
        out["closed"] = tun.closed
        out["close_seconds"] = round(time.monotonic() - sent_at, 3)
        code = t.reset_code
        out["reset_code"] = code
        if a.transport == "h3":
            check(code == 0x10E, f"closed by {tun.closed!r}, wanted RESET_STREAM H3_MESSAGE_ERROR (0x10e)")
        elif a.transport == "h2":
            check(code == 0x1, f"closed by {tun.closed!r}, wanted RST_STREAM PROTOCOL_ERROR (0x1)")
        else:
            check(tun.closed.startswith("connection closed"), f"closed by {tun.closed!r}, wanted the connection closed")
            check(out["events_after"] == 0, f"{out['events_after']} capsules after the malformed one before the close")
        out["malformed_ok"] = True
    finally:
        t.close()


def scenario_scope(a, out):
    """R9484-09 / R9484-15: a hostname scope is resolved before the response;
    its ROUTE_ADVERTISEMENT covers what it resolved to, else a refusal."""
    out["path"] = a.path
    t = TRANSPORTS[a.transport](a)
    try:
        status, h = t.open(a.path)
        out["status"] = status
        out["proxy_status"] = h.get("proxy-status", "")
        if a.expect_status:
            check(status == a.expect_status, f"status {status}, wanted {a.expect_status}: {h}")
            out["scope_ok"] = True
            return
        check_success(a, status, h)
        tun = Tunnel(t, a.timeout)
        tun.pump(lambda: tun.routes is not None, "ROUTE_ADVERTISEMENT")
        out["routes"] = ", ".join(f"{s}-{e}/{p}" for s, e, p in tun.routes)
        out["route_ranges"] = len(tun.routes)
        out["scope_ok"] = True
    finally:
        t.close()


def scenario_selfcheck(a, out):
    """The codecs against the spec digest's test vectors (RFC 9484 §10 there)."""
    h = bytes.fromhex
    n = 0
    # ADDRESS_REQUEST ID 1, IPv4 any, /32.
    check(encode_addresses(ADDRESS_REQUEST, [(1, ipaddress.ip_network("0.0.0.0/32"))]) == h("02 07 01 04 00 00 00 00 20".replace(" ", "")), "ADDRESS_REQUEST vector")
    n += 1
    vectors = [
        ("01 07 00 04 c0 00 02 01 20", [(0, "192.0.2.1/32")]),
        ("01 13 00 06 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 80", [(0, "2001:db8::1/128")]),
        ("01 07 01 04 00 00 00 00 20", [(1, "0.0.0.0/32")]),
    ]
    for hexs, want in vectors:
        caps = CapsuleStream().feed(h(hexs.replace(" ", "")))
        check(len(caps) == 1 and caps[0][0] == ADDRESS_ASSIGN, f"vector {hexs}: capsule framing")
        got = [(rid, str(net)) for rid, net in decode_addresses(caps[0][1])]
        check(got == want, f"vector {hexs}: {got} != {want}")
        enc = encode_addresses(ADDRESS_ASSIGN, [(rid, ipaddress.ip_network(s)) for rid, s in want])
        check(enc == h(hexs.replace(" ", "")), f"vector {hexs}: re-encoded as {enc.hex()}")
        n += 1
    routes = [
        ("03 0a 04 00 00 00 00 ff ff ff ff 00", ["0.0.0.0-255.255.255.255/0"]),
        ("03 14 04 c0 00 02 00 c0 00 02 29 00 04 c0 00 02 2b c0 00 02 ff 00", ["192.0.2.0-192.0.2.41/0", "192.0.2.43-192.0.2.255/0"]),
    ]
    for hexs, want in routes:
        caps = CapsuleStream().feed(h(hexs.replace(" ", "")))
        check(caps[0][0] == ROUTE_ADVERTISEMENT, f"vector {hexs}: type")
        got = [f"{s}-{e}/{p}" for s, e, p in decode_routes(caps[0][1])]
        check(got == want, f"vector {hexs}: {got}")
        n += 1
    bad = [
        ("03 14 04 0a 00 00 00 0a 00 00 ff 00 04 0a 00 00 ff 0a 00 01 00 00", decode_routes),  # touching ranges
        ("01 08 00 04 c0 00 02 01 20 00", decode_addresses),  # trailing byte
        ("01 07 00 05 c0 00 02 01 20", decode_addresses),  # version 5
        ("01 07 00 04 c0 00 02 01 21", decode_addresses),  # prefix 33
        ("01 07 00 04 c0 00 02 01 18", decode_addresses),  # host bits under /24
    ]
    for hexs, fn in bad:
        caps = CapsuleStream().feed(h(hexs.replace(" ", "")))
        check(len(caps) == 1, f"vector {hexs}: framing")
        try:
            fn(caps[0][1])
        except Fail:
            n += 1
            continue
        raise Fail(f"vector {hexs} decoded, but it is invalid")
    # A capsule split anywhere reassembles.
    blob = h("03 0a 04 00 00 00 00 ff ff ff ff 00".replace(" ", "")) + capsule(DATAGRAM, b"\x00\x45")
    for cut in range(len(blob) + 1):
        s = CapsuleStream()
        caps = s.feed(blob[:cut]) + s.feed(blob[cut:])
        check([t for t, _ in caps] == [ROUTE_ADVERTISEMENT, DATAGRAM], f"split at {cut}: {caps}")
    n += 1
    # Varints (RFC 9000 §16 / Appendix A.1 examples).
    for v, hexs in [(37, "25"), (15293, "7bbd"), (494878333, "9d7f3e7d"), (151288809941952652, "c2197c5eff14e88c")]:
        check(varint(v) == h(hexs) and read_varint(h(hexs), 0) == (v, len(hexs) // 2), f"varint {v}")
        n += 1
    # RFC 1071 / the classic IPv4 header example: checksum 0xb861.
    hdr = h("450000730000400040110000c0a80001c0a800c7")
    check(inet_checksum(hdr) == 0xB861, f"IPv4 header checksum {inet_checksum(hdr):#x}")
    pkt = ipv4_packet(ipaddress.IPv4Address("10.200.0.2"), ipaddress.IPv4Address("10.200.0.1"), PROTO_ICMP, icmp_message(8, 0, b"\x00\x01\x00\x01", b"abc"))
    p = Ipv4(pkt)
    check(not p.errors and p.icmp[0] == 8, f"own echo request: {p.errors}")
    u = udp_datagram(ipaddress.IPv4Address("10.200.0.2"), ipaddress.IPv4Address("10.200.0.1"), 1, 2, b"x")
    pseudo = ipaddress.IPv4Address("10.200.0.2").packed + ipaddress.IPv4Address("10.200.0.1").packed + struct.pack("!BBH", 0, PROTO_UDP, len(u))
    check(inet_checksum(pseudo + u) == 0, "UDP checksum does not verify")
    n += 3
    out["vectors_checked"] = n


SCENARIOS = {
    "echo": scenario_echo,
    "ttl1": scenario_ttl1,
    "spoof": scenario_spoof,
    "mtu-abort": scenario_mtu_abort,
    "malformed": scenario_malformed,
    "scope": scenario_scope,
    "selfcheck": scenario_selfcheck,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--transport", choices=sorted(TRANSPORTS), default="h3")
    p.add_argument("--host", default="127.0.0.1", help="the node's address")
    p.add_argument("--port", type=int, help="the node's port (UDP for h3, TCP for h2/h1)")
    p.add_argument("--ca", help="PEM file of the node's certificate (trusted as a CA)")
    p.add_argument("--path", default="/.well-known/masque/ip/*/*/", help="the expanded URI template")
    p.add_argument("--dest", default="10.200.0.1", help="destination of the scenario's packets")
    p.add_argument("--spoof-src", action="append", default=[], help="spoof: a source address not ours (repeatable)")
    p.add_argument("--sink-port", type=int, help="spoof: bind --dest:PORT and check what is delivered there")
    p.add_argument("--egress-probe", action="store_true", help="ttl1: also probe the node's TTL rule from its host (needs its namespace)")
    p.add_argument("--open-delay", type=float, default=0.0, help="h3: seconds between the handshake and the request")
    p.add_argument("--max-datagram-frame-size", type=int, default=65536, help="h3: our max_datagram_frame_size transport parameter")
    p.add_argument("--max-datagram-size", type=int, help="h3: aioquic's max_datagram_size (largest UDP payload it sends; default its 1200)")
    p.add_argument("--abort-within", type=float, default=8.0, help="mtu-abort: seconds after the response by which the node must abort")
    p.add_argument("--hold", type=float, default=0.0, help="echo: seconds the open tunnel must stay up before the echo")
    p.add_argument("--malformed", help=f"malformed: the capsule to send, one of {', '.join(sorted(MALFORMED))}")
    p.add_argument("--expect-status", type=int, help="scope: the refusal status wanted (default: success)")
    p.add_argument("--timeout", type=float, default=TIMEOUT, help="bound of every wait, seconds")
    a = p.parse_args()
    out = {"peer": "ip_peer", "transport": a.transport, "scenario": a.scenario, "ok": False}
    if a.scenario != "selfcheck":
        if a.port is None or a.ca is None:
            p.error("--port and --ca are needed")
    started = time.monotonic()
    errors = (Fail, OSError, ssl.SSLError)
    try:
        import h2.exceptions

        errors += (h2.exceptions.H2Error,)
    except ImportError:
        pass
    try:
        SCENARIOS[a.scenario](a, out)
        out["ok"] = True
    except errors as e:
        out["error"] = str(e) if isinstance(e, Fail) else f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - whatever it is, the summary says so
        out["error"] = f"unexpected {type(e).__name__}: {e}"
    out["seconds"] = round(time.monotonic() - started, 3)
    if "detail" in out:
        out["detail"] = out.pop("detail")
    print(json.dumps(out), flush=True)
    if not out["ok"]:
        print(f"FAIL {a.transport} {a.scenario}: {out['error']}", file=sys.stderr, flush=True)
    sys.exit(0 if out["ok"] else 1)


if __name__ == "__main__":
    main()
