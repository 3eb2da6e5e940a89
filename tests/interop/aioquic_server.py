#!/usr/bin/env python3
"""Independent HTTP/3 server (aioquic) for testing the masque-h3 client.

Extended CONNECT (any :protocol) gets 200 with capsule-protocol: ?1; body bytes
and HTTP datagrams are echoed. --no-datagram / --no-connect-protocol leave the
corresponding SETTINGS out, so the client's refusal paths (R9297-12, XC-04) can
be tested. Prints "LISTENING <port>" once ready; with --count-connections,
also "CONNECTIONS <n>" each time a QUIC connection is accepted (n counts them
all, from 1).
"""
import argparse
import asyncio

from aioquic.asyncio import serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3Connection, Setting
from aioquic.h3.events import DataReceived, DatagramReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration

OPTS = argparse.Namespace(datagram=True, connect_protocol=True, count_connections=False)
CONNECTIONS = 0


class ServerH3(H3Connection):
    def _get_local_settings(self):
        settings = super()._get_local_settings()
        if OPTS.datagram:
            settings[Setting.H3_DATAGRAM] = 1
        if not OPTS.connect_protocol:
            settings.pop(Setting.ENABLE_CONNECT_PROTOCOL, None)
        return settings


class Server(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = None
        if OPTS.count_connections:
            global CONNECTIONS
            CONNECTIONS += 1
            print(f"CONNECTIONS {CONNECTIONS}", flush=True)

    def quic_event_received(self, event):
        if self.h3 is None:
            self.h3 = ServerH3(self._quic)
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                h = dict(ev.headers)
                if h.get(b":method") == b"CONNECT":
                    self.h3.send_headers(ev.stream_id, [(b":status", b"200"), (b"capsule-protocol", b"?1")])
                else:
                    self.h3.send_headers(ev.stream_id, [(b":status", b"404")], end_stream=True)
            elif isinstance(ev, DataReceived):
                self.h3.send_data(ev.stream_id, ev.data, ev.stream_ended)
            elif isinstance(ev, DatagramReceived):
                self.h3.send_datagram(ev.stream_id, ev.data)
        self.transmit()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--no-datagram", action="store_true")
    p.add_argument("--no-connect-protocol", action="store_true")
    p.add_argument("--count-connections", action="store_true")
    a = p.parse_args()
    OPTS.datagram = not a.no_datagram
    OPTS.connect_protocol = not a.no_connect_protocol
    OPTS.count_connections = a.count_connections
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3"], max_datagram_frame_size=65536)
    config.load_cert_chain(a.cert, a.key)
    server = await serve("127.0.0.1", 0, configuration=config, create_protocol=Server)
    port = server._transport.get_extra_info("sockname")[1]
    print(f"LISTENING {port}", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
