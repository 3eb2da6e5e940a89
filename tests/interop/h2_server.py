#!/usr/bin/env python3
"""Independent HTTP/2 CONNECT-UDP echo proxy (Python `h2` + `ssl` + asyncio)
for testing the masque client's racer and pool over HTTP/2.

RFC 8441 extended CONNECT: the server's SETTINGS carry
SETTINGS_ENABLE_CONNECT_PROTOCOL = 1; a CONNECT with `:protocol connect-udp`
gets 200 + `capsule-protocol: ?1` and every DATAGRAM capsule (type 0x00,
RFC 9297 §3.5) it sends on the stream is echoed back on the same stream;
other capsule types are skipped. Another `:protocol` gets 501, a plain
request 404. END_STREAM from the client is answered with END_STREAM.

TLS with the certificate and key given as --cert / --key (PEM), ALPN h2.
Prints "LISTENING <port>" once ready and "CONNECTIONS <n>" each time a TCP
connection is accepted (n counts them all, from 1), flushed at once.
"""
import argparse
import asyncio
import ssl

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

DATAGRAM = 0x00
# Upper bound for a TLS handshake, so a silent client cannot hold a task.
HANDSHAKE_TIMEOUT = 10

CONNECTIONS = 0


def varint(v):
    if v < 1 << 6:
        return v.to_bytes(1, "big")
    if v < 1 << 14:
        return (v | 0x4000).to_bytes(2, "big")
    if v < 1 << 30:
        return (v | 0x80000000).to_bytes(4, "big")
    return (v | 0xC000000000000000).to_bytes(8, "big")


def read_varint(buf, pos):
    """(value, next position), or None when `buf` ends first."""
    if pos >= len(buf):
        return None
    n = 1 << (buf[pos] >> 6)
    if pos + n > len(buf):
        return None
    v = buf[pos] & 0x3F
    for b in buf[pos + 1 : pos + n]:
        v = (v << 8) | b
    return v, pos + n


def parse_capsules(buf):
    """Complete capsules at the front of `buf`: ([(type, payload)], rest)."""
    out, pos = [], 0
    while True:
        t = read_varint(buf, pos)
        if t is None:
            break
        length = read_varint(buf, t[1])
        if length is None:
            break
        end = length[1] + length[0]
        if end > len(buf):
            break
        out.append((t[0], bytes(buf[length[1] : end])))
        pos = end
    return out, buf[pos:]


class Connection:
    """One HTTP/2 connection: h2's state machine over an asyncio stream."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self.buffers = {}  # stream id -> capsule bytes not parsed yet
        self.pending = {}  # stream id -> [bytes to send, end_stream after]

    async def run(self):
        # In the first SETTINGS frame (RFC 8441 §3), not in a later update.
        self.h2.local_settings = h2.settings.Settings(
            client=False, initial_values={
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            }
        )
        self.h2.initiate_connection()
        await self.flush()
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                await self.flush()
                return
            for ev in events:
                self.handle(ev)
            await self.flush()

    def handle(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            h = dict(ev.headers)
            sid = ev.stream_id
            if h.get(b":method") != b"CONNECT":
                self.h2.send_headers(sid, [(b":status", b"404")], end_stream=True)
            elif h.get(b":protocol") != b"connect-udp":
                self.h2.send_headers(sid, [(b":status", b"501")], end_stream=True)
            else:
                self.buffers[sid] = bytearray()
                self.pending[sid] = [bytearray(), False]
                self.h2.send_headers(sid, [(b":status", b"200"), (b"capsule-protocol", b"?1")])
        elif isinstance(ev, h2.events.DataReceived):
            sid = ev.stream_id
            self.h2.acknowledge_received_data(ev.flow_controlled_length, sid)
            if sid not in self.buffers:
                return
            self.buffers[sid] += ev.data
            capsules, rest = parse_capsules(self.buffers[sid])
            self.buffers[sid] = bytearray(rest)
            for ctype, payload in capsules:
                if ctype == DATAGRAM:
                    self.pending[sid][0] += varint(DATAGRAM) + varint(len(payload)) + payload
            self.send_pending(sid)
        elif isinstance(ev, h2.events.StreamEnded):
            if ev.stream_id in self.pending:
                self.pending[ev.stream_id][1] = True
                self.send_pending(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            self.buffers.pop(ev.stream_id, None)
            self.pending.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.WindowUpdated):
            for sid in list(self.pending):
                self.send_pending(sid)

    def send_pending(self, sid):
        """Sends what the flow-control windows allow of `sid`'s echo."""
        entry = self.pending.get(sid)
        if entry is None:
            return
        data, end = entry
        try:
            while data:
                n = min(len(data), self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                if n <= 0:
                    return
                self.h2.send_data(sid, bytes(data[:n]))
                del data[:n]
            if end:
                self.h2.end_stream(sid)
                del self.pending[sid]
                self.buffers.pop(sid, None)
        except h2.exceptions.StreamClosedError:
            self.pending.pop(sid, None)
            self.buffers.pop(sid, None)

    async def flush(self):
        out = self.h2.data_to_send()
        if out:
            self.writer.write(out)
            await self.writer.drain()


def accepted(handler):
    """A protocol for one accepted TCP connection (asyncio makes it at
    accept, before the TLS handshake): counts and reports the connection."""
    global CONNECTIONS
    CONNECTIONS += 1
    print(f"CONNECTIONS {CONNECTIONS}", flush=True)
    return asyncio.StreamReaderProtocol(asyncio.StreamReader(), handler)


async def serve_one(reader, writer):
    try:
        await Connection(reader, writer).run()
    except (OSError, ssl.SSLError, ConnectionError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError, ConnectionError):
            pass


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--port", type=int, default=0, help="TCP port (0: any free one)")
    a = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.set_alpn_protocols(["h2"])
    server = await asyncio.get_running_loop().create_server(
        lambda: accepted(serve_one), "127.0.0.1", a.port, ssl=ctx, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
    )
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
