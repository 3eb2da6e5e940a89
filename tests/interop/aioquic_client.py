#!/usr/bin/env python3
"""Independent HTTP/3 client (aioquic) against the masque-h3 echo server.

Each check prints PASS <name>; the first failure exits non-zero with the reason.
Requirement ids (R9297-nn, XC-nn, CC-nn, ERR-nn) are those of the spec digests.
"""
import argparse
import asyncio
import sys

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, H3Connection, Setting, encode_frame
from aioquic.h3.events import DataReceived, DatagramReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamReset

H3_FRAME_UNEXPECTED = 0x105
H3_ID_ERROR = 0x108
H3_REQUEST_REJECTED = 0x10B
H3_MESSAGE_ERROR = 0x10E
H3_DATAGRAM_ERROR = 0x33
TIMEOUT = 5.0


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class MasqueH3(H3Connection):
    def _get_local_settings(self):
        settings = super()._get_local_settings()
        # aioquic only advertises H3_DATAGRAM with WebTransport on (R9297-10).
        settings[Setting.H3_DATAGRAM] = 1
        return settings


class Client(QuicConnectionProtocol):
    # The HTTP/3 layer; a subclass may pick one with other SETTINGS.
    h3_class = MasqueH3

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = self.h3_class(self._quic)
        self.events = {}
        self.datagrams = {}
        self.ended = set()
        self.terminated = asyncio.get_running_loop().create_future()

    def _queue(self, table, stream_id):
        return table.setdefault(stream_id, asyncio.Queue())

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            self._queue(self.events, event.stream_id).put_nowait(("reset", event.error_code))
        if isinstance(event, ConnectionTerminated) and not self.terminated.done():
            self.terminated.set_result(event.error_code)
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self._queue(self.events, ev.stream_id).put_nowait(("headers", dict(ev.headers), ev.stream_ended))
            elif isinstance(ev, DataReceived):
                self._queue(self.events, ev.stream_id).put_nowait(("data", ev.data, ev.stream_ended))
            elif isinstance(ev, DatagramReceived):
                self._queue(self.datagrams, ev.stream_id).put_nowait(ev.data)

    def request(self, headers, end_stream=False):
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, headers, end_stream)
        self.transmit()
        return sid

    async def event(self, sid):
        return await asyncio.wait_for(self._queue(self.events, sid).get(), TIMEOUT)

    async def response(self, sid):
        kind, *rest = await self.event(sid)
        check(kind == "headers", f"stream {sid}: expected a response, got {kind} {rest}")
        return rest[0]

    async def datagram(self, sid):
        return await asyncio.wait_for(self._queue(self.datagrams, sid).get(), TIMEOUT)

    async def body(self, sid, n):
        """Reads n body bytes; remembers whether the stream ended with them."""
        got = b""
        while len(got) < n:
            kind, data, ended = await self.event(sid)
            check(kind == "data", f"stream {sid}: expected data, got {kind}")
            got += data
            if ended:
                self.ended.add(sid)
        return got

    async def wait_end(self, sid):
        while sid not in self.ended:
            kind, _data, ended = await self.event(sid)
            check(kind == "data", f"stream {sid}: expected FIN, got {kind}")
            if ended:
                self.ended.add(sid)

    def send_data(self, sid, data, end=False):
        self.h3.send_data(sid, data, end)
        self.transmit()

    def send_control(self, frame_bytes):
        self._quic.send_stream_data(self.h3._local_control_stream_id, frame_bytes)
        self.transmit()


def ext_connect(authority, protocol, path, capsules=True):
    h = [
        (b":method", b"CONNECT"),
        (b":protocol", protocol.encode()),
        (b":scheme", b"https"),
        (b":authority", authority.encode()),
        (b":path", path.encode()),
    ]
    if capsules:
        h.append((b"capsule-protocol", b"?1"))
    return h


async def wait_settings(c):
    for _ in range(100):
        if c.h3.received_settings is not None:
            return c.h3.received_settings
        await asyncio.sleep(0.02)
    raise Fail("server SETTINGS never arrived")


async def check_settings(c, auth):
    s = await wait_settings(c)
    # R9297-10/14, XC-05, QPACK with zero dynamic table (our choice).
    check(s.get(Setting.H3_DATAGRAM) == 1, f"H3_DATAGRAM not 1: {s}")
    check(s.get(Setting.ENABLE_CONNECT_PROTOCOL) == 1, f"ENABLE_CONNECT_PROTOCOL not 1: {s}")
    check(s.get(Setting.QPACK_MAX_TABLE_CAPACITY, 0) == 0, f"QPACK table capacity not 0: {s}")


async def check_connect_udp(c, auth):
    sid = c.request(ext_connect(auth, "connect-udp", "/.well-known/masque/udp/192.0.2.1/443/"))
    h = await c.response(sid)
    check(h[b":status"] == b"200", f"status {h}")
    check(h.get(b"capsule-protocol") == b"?1", f"capsule-protocol missing: {h}")
    check(b"content-length" not in h, "2xx to CONNECT carries content-length (CC-07)")
    # HTTP datagrams both ways (RFC 9297 §2.1): context id 0 + payload.
    for i in range(20):
        payload = b"\x00" + b"udp-%d" % i + bytes(1000)
        c.h3.send_datagram(sid, payload)
        c.transmit()
        back = await c.datagram(sid)
        check(back == payload, f"datagram {i} echoed wrong")
    # A DATAGRAM capsule and a GREASE capsule on the stream (R9297-17 at the peer).
    capsules = bytes([0x00, 0x04, 0x00, 1, 2, 3, 0x17, 0x02, 0xAB, 0xCD])
    c.send_data(sid, capsules)
    check(await c.body(sid, len(capsules)) == capsules, "capsules echoed wrong")
    c.send_data(sid, b"", end=True)
    await c.wait_end(sid)
    return sid


async def check_connect_ip(c, auth):
    sid = c.request(ext_connect(auth, "connect-ip", "/.well-known/masque/ip/%2A/%2A/"))
    h = await c.response(sid)
    check(h[b":status"] == b"200", f"status {h}")
    packet = b"\x00" + bytes([0x45]) + bytes(39)
    c.h3.send_datagram(sid, packet)
    c.transmit()
    check(await c.datagram(sid) == packet, "connect-ip datagram echoed wrong")
    # ADDRESS_REQUEST capsule (spec vector 11) rides the stream unchanged.
    cap = bytes([0x02, 0x07, 0x01, 0x04, 0, 0, 0, 0, 0x20])
    c.send_data(sid, cap)
    check(await c.body(sid, len(cap)) == cap, "connect-ip capsule echoed wrong")


async def check_connect_tcp(c, auth):
    sid = c.request(ext_connect(auth, "connect-tcp", "/.well-known/masque/tcp/example.com/80/", capsules=False))
    h = await c.response(sid)
    check(h[b":status"] == b"200", f"status {h}")
    data = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n" * 100
    c.send_data(sid, data)
    check(await c.body(sid, len(data)) == data, "connect-tcp bytes echoed wrong")


async def check_classic_connect(c, auth):
    # CC-13: :method CONNECT + :authority only.
    sid = c.request([(b":method", b"CONNECT"), (b":authority", b"example.com:443")])
    h = await c.response(sid)
    check(h[b":status"] == b"200", f"status {h}")
    c.send_data(sid, b"hello tunnel", end=True)
    check(await c.body(sid, 12) == b"hello tunnel", "classic CONNECT echo wrong")
    # CC-21: our FIN is answered with FIN.
    await c.wait_end(sid)


async def expect_reset(c, sid, code, what):
    kind, *rest = await c.event(sid)
    check(kind == "reset" and rest[0] == code, f"{what}: expected reset 0x{code:x}, got {kind} {rest}")


async def check_malformed(c, auth):
    base = ext_connect(auth, "connect-udp", "/.well-known/masque/udp/192.0.2.1/443/")
    # XC-07: extended CONNECT without :path.
    sid = c.request([h for h in base if h[0] != b":path"])
    await expect_reset(c, sid, H3_MESSAGE_ERROR, "XC-07 missing :path")
    # XC-11: :protocol on a GET.
    sid = c.request([(b":method", b"GET"), (b":protocol", b"connect-udp"), (b":scheme", b"https"),
                     (b":authority", auth.encode()), (b":path", b"/")])
    await expect_reset(c, sid, H3_MESSAGE_ERROR, "XC-11 :protocol without CONNECT")
    # CC-13: classic CONNECT with :path.
    sid = c.request([(b":method", b"CONNECT"), (b":authority", b"example.com:443"), (b":path", b"/")])
    await expect_reset(c, sid, H3_MESSAGE_ERROR, "CC-13 classic CONNECT with :path")
    # XC-13: uppercase field name.
    sid = c.request(base + [(b"X-Upper", b"1")])
    await expect_reset(c, sid, H3_MESSAGE_ERROR, "XC-13 uppercase name")
    # XC-12: connection-specific field.
    sid = c.request(base + [(b"connection", b"close")])
    await expect_reset(c, sid, H3_MESSAGE_ERROR, "XC-12 connection header")
    # The connection survives stream errors.
    sid = c.request([(b":method", b"GET"), (b":scheme", b"https"), (b":authority", auth.encode()), (b":path", b"/")], end_stream=True)
    h = await c.response(sid)
    check(h[b":status"] == b"200", "connection unusable after stream errors")


async def check_unknown_protocol(c, auth):
    sid = c.request(ext_connect(auth, "foo", "/x"))
    h = await c.response(sid)
    check(h[b":status"] == b"501", f"unknown :protocol should be 501 (XC-10), got {h}")


async def check_datagram_unknown_stream(c, auth):
    # R9297-06/07: datagrams for streams that are not open are dropped, not fatal.
    c._quic.send_datagram_frame(encode_uint_var(1000) + b"\x00lost")
    c.transmit()
    await check_connect_tcp(c, auth)


async def check_goaway_from_server(c, auth):
    sid = c.request([(b":method", b"GET"), (b":scheme", b"https"), (b":authority", auth.encode()), (b":path", b"/goaway")], end_stream=True)
    h = await c.response(sid)
    check(h[b":status"] == b"200", "GET /goaway failed")
    await asyncio.sleep(0.2)
    # RFC 9114 §5.2: requests at or beyond the GOAWAY id are rejected unprocessed.
    sid = c.request(ext_connect(auth, "connect-udp", "/.well-known/masque/udp/192.0.2.1/443/"))
    await expect_reset(c, sid, H3_REQUEST_REJECTED, "request after server GOAWAY")


async def check_goaway_from_client(c, auth):
    sid = c.request(ext_connect(auth, "connect-udp", "/.well-known/masque/udp/192.0.2.1/443/"))
    check((await c.response(sid))[b":status"] == b"200", "tunnel before GOAWAY")
    c.send_control(encode_frame(FrameType.GOAWAY, encode_uint_var(8)))
    await asyncio.sleep(0.1)
    c.h3.send_datagram(sid, b"\x00after-goaway")
    c.transmit()
    check(await c.datagram(sid) == b"\x00after-goaway", "tunnel broken by client GOAWAY")
    # RFC 9114 §5.2: a GOAWAY id must not increase -> H3_ID_ERROR.
    c.send_control(encode_frame(FrameType.GOAWAY, encode_uint_var(12)))
    code = await asyncio.wait_for(c.terminated, TIMEOUT)
    check(code == H3_ID_ERROR, f"increasing GOAWAY closed with 0x{code:x}, want H3_ID_ERROR")


async def check_bad_quarter_stream_id(c, auth):
    await wait_settings(c)
    # R9297-03: quarter stream id 2^60 -> connection error H3_DATAGRAM_ERROR.
    c._quic.send_datagram_frame(bytes([0xD0, 0, 0, 0, 0, 0, 0, 0]))
    c.transmit()
    code = await asyncio.wait_for(c.terminated, TIMEOUT)
    check(code == H3_DATAGRAM_ERROR, f"closed with 0x{code:x}, want H3_DATAGRAM_ERROR")


async def check_headers_after_connect(c, auth):
    sid = c.request(ext_connect(auth, "connect-udp", "/.well-known/masque/udp/192.0.2.1/443/"))
    check((await c.response(sid))[b":status"] == b"200", "tunnel")
    # CC-20 / XC-16: only DATA after a CONNECT head -> H3_FRAME_UNEXPECTED.
    c.h3.send_headers(sid, [(b"x-trailer", b"1")])
    c.transmit()
    code = await asyncio.wait_for(c.terminated, TIMEOUT)
    check(code == H3_FRAME_UNEXPECTED, f"closed with 0x{code:x}, want H3_FRAME_UNEXPECTED")


CHECKS = [
    # (name, check, needs its own connection because it ends it)
    ("settings", check_settings, False),
    ("connect_udp_datagrams_and_capsules", check_connect_udp, False),
    ("connect_ip", check_connect_ip, False),
    ("connect_tcp", check_connect_tcp, False),
    ("classic_connect", check_classic_connect, False),
    ("malformed_requests_reset", check_malformed, False),
    ("unknown_protocol_501", check_unknown_protocol, False),
    ("datagram_unknown_stream_dropped", check_datagram_unknown_stream, False),
    ("goaway_from_client", check_goaway_from_client, True),
    ("goaway_from_server", check_goaway_from_server, True),
    ("bad_quarter_stream_id", check_bad_quarter_stream_id, True),
    ("headers_after_connect", check_headers_after_connect, True),
]


async def run(host, port, ca, only):
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], max_datagram_frame_size=65536)
    config.load_verify_locations(ca)
    config.server_name = "localhost"
    auth = f"localhost:{port}"
    shared = None
    for name, fn, own in CHECKS:
        if only and name not in only:
            continue
        if own or shared is None:
            ctx = connect(host, port, configuration=config, create_protocol=Client)
            client = await ctx.__aenter__()
            if not own:
                shared = (ctx, client)
        else:
            ctx, client = shared
        try:
            await fn(client, auth)
        except (Fail, asyncio.TimeoutError) as e:
            print(f"FAIL {name}: {e!r}")
            return 1
        print(f"PASS {name}")
        if own:
            client.close()
    if shared:
        shared[1].close()
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--only", nargs="*")
    a = p.parse_args()
    sys.exit(asyncio.run(run(a.host, a.port, a.ca, a.only)))


if __name__ == "__main__":
    main()
