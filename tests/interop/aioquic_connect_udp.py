#!/usr/bin/env python3
"""aioquic as an independent CONNECT-UDP client through masque-node to a UDP
echo target. Prints PASS <check>; exits non-zero on the first failure.

With --capsules-only the client enables neither QUIC nor HTTP/3 datagrams
(no max_datagram_frame_size, no SETTINGS_H3_DATAGRAM): the tunnel must work
with DATAGRAM capsules on the stream in both directions (RFC 9297 §3.5).

With --bearer TOKEN the node requires proxy credentials (R9298-52): a request
without them and one with a wrong token get 407 with a Bearer challenge; one
with `proxy-authorization: Bearer TOKEN` gets its tunnel."""
import argparse
import asyncio
import sys

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration

from aioquic.h3.connection import H3Connection

from aioquic_client import Client, Fail, check, ext_connect, TIMEOUT


class CapsuleOnlyClient(Client):
    """A client whose SETTINGS omit H3_DATAGRAM (aioquic's default H3Connection)."""

    h3_class = H3Connection


def datagram_capsule(payload):
    # Type 0x00 (DATAGRAM), one-byte length: the payloads here are short.
    check(len(payload) < 64, "short payload")
    return bytes([0x00, len(payload)]) + payload


def client_config(ca, datagrams):
    """QUIC datagrams on (transport parameter) or off."""
    kw = {"max_datagram_frame_size": 65536} if datagrams else {}
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], **kw)
    config.load_verify_locations(ca)
    config.server_name = "localhost"
    return config


async def open_udp(c, port, target):
    """Sends the CONNECT-UDP request; returns the stream id and response headers."""
    host, tport = target.rsplit(":", 1)
    path = f"/.well-known/masque/udp/{host}/{tport}/"
    sid = c.request(ext_connect(f"localhost:{port}", "connect-udp", path))
    h = await c.response(sid)
    check(h[b":status"] == b"200", f"status {h}")
    return sid, h


async def run_capsules_only(port, ca, target):
    config = client_config(ca, datagrams=False)
    async with connect("127.0.0.1", port, configuration=config, create_protocol=CapsuleOnlyClient) as c:
        try:
            sid, _h = await open_udp(c, port, target)
            print("PASS capsules_only_2xx", flush=True)
            for i in range(20):
                payload = b"\x00" + b"capsule-%d" % i
                c.send_data(sid, datagram_capsule(payload))
                want = datagram_capsule(payload)
                got = await c.body(sid, len(want))
                check(got == want, f"echo {i}: {got!r}")
            print("PASS capsules_only_echo", flush=True)
            c.send_data(sid, b"", end=True)
            await c.wait_end(sid)
            print("PASS capsules_only_fin", flush=True)
        except (Fail, asyncio.TimeoutError) as e:
            print(f"FAIL {e!r}", flush=True)
            return 1
    return 0


async def run(port, ca, target):
    config = client_config(ca, datagrams=True)
    async with connect("127.0.0.1", port, configuration=config, create_protocol=Client) as c:
        try:
            # R9298-31: 2xx with capsule-protocol, no content-length (R9297-20).
            sid, h = await open_udp(c, port, target)
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


async def run_auth(port, ca, target, token):
    config = client_config(ca, datagrams=True)
    host, tport = target.rsplit(":", 1)
    path = f"/.well-known/masque/udp/{host}/{tport}/"
    async with connect("127.0.0.1", port, configuration=config, create_protocol=Client) as c:
        try:
            for name, creds in [("missing", None), ("invalid", b"Bearer not-the-token-at-all-x")]:
                head = ext_connect(f"localhost:{port}", "connect-udp", path)
                if creds:
                    head.append((b"proxy-authorization", creds))
                h = await c.response(c.request(head))
                check(h[b":status"] == b"407", f"{name}: status {h}")
                check(h.get(b"proxy-authenticate", b"").startswith(b"Bearer realm="), f"{name}: challenge {h}")
                check(b"error=http_request_denied" in h.get(b"proxy-status", b""), f"{name}: {h}")
                print(f"PASS auth_{name}_407", flush=True)
            head = ext_connect(f"localhost:{port}", "connect-udp", path)
            head.append((b"proxy-authorization", b"Bearer " + token.encode()))
            sid = c.request(head)
            h = await c.response(sid)
            check(h[b":status"] == b"200", f"with the token: status {h}")
            c.h3.send_datagram(sid, b"\x00authorized")
            c.transmit()
            check(await c.datagram(sid) == b"\x00authorized", "echo with the token")
            print("PASS auth_bearer_tunnel", flush=True)
            c.send_data(sid, b"", end=True)
            await c.wait_end(sid)
        except (Fail, asyncio.TimeoutError) as e:
            print(f"FAIL {e!r}", flush=True)
            return 1
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--capsules-only", action="store_true")
    p.add_argument("--bearer", metavar="TOKEN")
    a = p.parse_args()
    if a.bearer:
        sys.exit(asyncio.run(run_auth(a.port, a.ca, a.target, a.bearer)))
    main_fn = run_capsules_only if a.capsules_only else run
    sys.exit(asyncio.run(main_fn(a.port, a.ca, a.target)))


if __name__ == "__main__":
    main()
