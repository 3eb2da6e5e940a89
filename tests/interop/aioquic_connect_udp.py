#!/usr/bin/env python3
"""aioquic as an independent CONNECT-UDP client through masque-node to a UDP
echo target. Prints PASS <check>; exits non-zero on the first failure."""
import argparse
import asyncio
import sys

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration

from aioquic_client import Client, Fail, check, ext_connect, TIMEOUT


async def run(port, ca, target):
    host, tport = target.rsplit(":", 1)
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], max_datagram_frame_size=65536)
    config.load_verify_locations(ca)
    config.server_name = "localhost"
    auth = f"localhost:{port}"
    async with connect("127.0.0.1", port, configuration=config, create_protocol=Client) as c:
        try:
            sid = c.request(ext_connect(auth, "connect-udp", f"/.well-known/masque/udp/{host}/{tport}/"))
            h = await c.response(sid)
            # R9298-31: 2xx with capsule-protocol, no content-length (R9297-20).
            check(h[b":status"] == b"200", f"status {h}")
            check(h.get(b"capsule-protocol") == b"?1", f"capsule-protocol: {h}")
            check(b"content-length" not in h, "content-length on 2xx")
            print("PASS connect_udp_2xx", flush=True)
            for i in range(20):
                payload = b"\x00" + b"dgram-%d" % i
                c.h3.send_datagram(sid, payload)
                c.transmit()
                check(await c.datagram(sid) == payload, f"echo {i}")
            print("PASS datagrams_echo", flush=True)
            # R9298-38: unknown context id 5 is dropped; context 0 still works.
            c.h3.send_datagram(sid, b"\x05ignored")
            # R9297-31: a DATAGRAM capsule is a datagram; the echo comes back as
            # a QUIC DATAGRAM.
            c.send_data(sid, bytes([0x00, 0x05, 0x00]) + b"caps")
            check(await c.datagram(sid) == b"\x00caps", "capsule datagram echo")
            print("PASS capsule_as_datagram_and_unknown_context", flush=True)
            c.send_data(sid, b"", end=True)
            await c.wait_end(sid)
            print("PASS fin_answered_with_fin", flush=True)
        except (Fail, asyncio.TimeoutError) as e:
            print(f"FAIL {e!r}", flush=True)
            return 1
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--target", required=True)
    a = p.parse_args()
    sys.exit(asyncio.run(run(a.port, a.ca, a.target)))


if __name__ == "__main__":
    main()
