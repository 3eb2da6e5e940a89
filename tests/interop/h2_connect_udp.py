#!/usr/bin/env python3
"""Python `h2` (hyper-h2 4.x, an independent HTTP/2 implementation) over the
standard `ssl` module as a CONNECT-UDP client (RFC 9298 over RFC 8441
extended CONNECT, datagrams as DATAGRAM capsules, RFC 9297 §3.5) against
masque-node's TLS/TCP listener.

Scenarios (one per run, so the Rust test can run and count them separately):

  settings     the server's first SETTINGS: ENABLE_CONNECT_PROTOCOL (0x8) = 1,
               SETTINGS_MAX_CONCURRENT_STREAMS reported
  echo         one tunnel: 200 + capsule-protocol, 100 DATAGRAM capsules of
               1..1200 bytes echoed, GREASE capsules in between skipped,
               capsules split across DATA frames, END_STREAM answered
  flow         240 KB echoed on one stream, ~4x the client's receive
               windows: acknowledged data reopens them (WINDOW_UPDATE)
  concurrent   50 tunnels on one connection, each echoing only its own
               payloads
  malformed    an oversized DATAGRAM capsule (length > 65536) and a truncated
               capsule followed by END_STREAM: each gets RST_STREAM
               PROTOCOL_ERROR while the connection's other tunnels keep working
  requests     malformed requests get 400 or a stream reset (never 2xx);
               connect-ip and an unknown token get 501 + proxy-status;
               connect-tcp and classic CONNECT to a port where nothing
               listens get 502 + proxy-status (connection_refused); the
               connection survives all of them

Prints one JSON object on stdout (flat keys first, `"ok": true|false`); exits
1 with the reason in `"error"` on the first failed check. Every wait is
bounded (socket timeouts, TIMEOUT per step).
"""
import os
import random
import socket
import sys
import time

import h2.exceptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # masque_peer, even under `python -P`
from masque_peer import (  # noqa: E402
    DATAGRAM,
    ECHO_SIZES,
    TIMEOUT,
    Fail,
    H2Client,
    arg_parser,
    check,
    client_context,
    connect_udp_headers,
    datagram_capsule,
    grease_batch,
    grease_capsule,
    pinned_fingerprint,
    run_scenarios,
    send_split,
    varint,
)

PROTOCOL_ERROR = 0x1
ENABLE_CONNECT_PROTOCOL = 0x8
MAX_CONCURRENT_STREAMS = 0x3


# ---------------------------------------------------------------- HTTP/2 client


class Client(H2Client):
    """Python `h2` on an `ssl` socket."""

    def __init__(self, port, ca, pin, validate=True):
        ctx = client_context(ca, pin, ["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.sock.settimeout(TIMEOUT)
        alpn = self.sock.selected_alpn_protocol()
        check(alpn == "h2", f"ALPN: server selected {alpn!r}, not h2")
        self.fingerprint = pinned_fingerprint(self.sock.getpeercert(binary_form=True), pin)
        super().__init__(validate=validate)

    def _write(self, data):
        self.sock.sendall(data)

    def _read(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        return self.sock.recv(65536)

    def how_closed(self):
        return "TCP"

    def close(self):
        try:
            self.conn.close_connection()
            self.flush()
        except Exception:
            pass
        try:
            self.sock.close()
        except Exception:
            pass

    def send(self, sid, data, end=False, chunk=None):
        """Sends `data` as DATA frames of at most `chunk` bytes (and the flow
        control windows), waiting for WINDOW_UPDATE when they are exhausted."""
        data = bytes(data)
        while data:
            def window():
                return min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)

            if window() <= 0:
                self.pump_until(lambda: window() > 0, f"stream {sid}: flow-control credit")
            n = min(window(), len(data), chunk or len(data))
            self.conn.send_data(sid, data[:n])
            data = data[n:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def open_udp(self, host, port, authority, label):
        sid = self.request(connect_udp_headers(authority, host, port))
        s = self.response(sid, f"{label}: response")
        check(s.reset is None, f"{label}: stream reset (code {s.reset}) instead of a response")
        check(s.status == 200, f"{label}: status {s.status}, headers {s.headers}")
        check(s.headers.get(b"capsule-protocol") == b"?1", f"{label}: no capsule-protocol: ?1 in {s.headers}")
        check(b"content-length" not in s.headers, f"{label}: content-length on a 2xx to CONNECT")
        return sid

    def echo_round(self, sids_payloads, label, rng=None, grease=0):
        """Sends one DATAGRAM capsule per (sid, payload), waits for all echoes;
        each stream must get back exactly what it sent."""
        before = {sid: len(self.streams[sid].caps.datagrams) for sid, _ in sids_payloads}
        want = {}
        for sid, p in sids_payloads:
            want.setdefault(sid, []).append(p)
        for sid, p in sids_payloads:
            blob = datagram_capsule(p)
            for _ in range(grease):
                blob = grease_capsule(rng) + blob
            self.send(sid, blob)

        def done():
            return all(len(self.streams[sid].caps.datagrams) - before[sid] >= len(ps) for sid, ps in want.items())

        try:
            self.pump_until(done, f"{label}: echoes")
        except Fail as e:
            got = {sid: len(self.streams[sid].caps.datagrams) - before[sid] for sid in want}
            raise Fail(f"{e} (echoes per stream {got}, wanted {({k: len(v) for k, v in want.items()})})") from None
        for sid, ps in want.items():
            s = self.streams[sid]
            got = s.caps.datagrams[before[sid] :]
            check(sorted(got) == sorted(ps), f"{label}: stream {sid} echoed other payloads than it sent (cross-talk or corruption)")
            check(not s.caps.bad, f"{label}: stream {sid}: DATAGRAM capsule with a context id other than 0")


# ---------------------------------------------------------------- scenarios


def scenario_settings(a, out):
    c = Client(a.port, a.ca, a.pin)
    try:
        st = c.settings
        check(st.get(ENABLE_CONNECT_PROTOCOL) == 1, f"SETTINGS_ENABLE_CONNECT_PROTOCOL is {st.get(ENABLE_CONNECT_PROTOCOL)}, not 1: {st}")
        out["enable_connect_protocol"] = st[ENABLE_CONNECT_PROTOCOL]
        check(MAX_CONCURRENT_STREAMS in st, f"no SETTINGS_MAX_CONCURRENT_STREAMS in {st}")
        out["max_concurrent_streams"] = st[MAX_CONCURRENT_STREAMS]
        out["server_settings"] = {hex(k): v for k, v in sorted(st.items())}
        out["fingerprint"] = c.fingerprint
    finally:
        c.close()


def scenario_echo(a, out):
    rng = random.Random(a.seed)
    c = Client(a.port, a.ca, a.pin)
    try:
        check(c.settings.get(ENABLE_CONNECT_PROTOCOL) == 1, "extended CONNECT not enabled")
        sid = c.open_udp("127.0.0.1", a.target_port, f"localhost:{a.port}", "echo")
        out["status"] = 200
        sizes = ECHO_SIZES
        payloads = [os.urandom(n) for n in sizes]
        grease_sent = 0
        sent = 0
        frames = 0
        s = c.streams[sid]
        for b in range(0, len(payloads), 10):
            batch = payloads[b : b + 10]
            # GREASE before and between the DATAGRAM capsules; the whole batch
            # goes out in DATA frames of random sizes, splitting capsules.
            blob, g = grease_batch(rng, batch)
            grease_sent += g
            before = len(s.caps.datagrams)
            frames += send_split(rng, blob, lambda d: c.send(sid, d))
            sent += len(batch)
            c.pump_until(lambda: len(s.caps.datagrams) - before >= len(batch), f"echo batch {b // 10}")
            got = s.caps.datagrams[before:]
            check(sorted(got) == sorted(batch), f"echo batch {b // 10}: payloads differ from those sent")
        check(len(s.caps.datagrams) == len(payloads), f"{len(s.caps.datagrams)} echoes for {len(payloads)} datagrams")
        check(not s.caps.bad, "a DATAGRAM capsule with a context id other than 0")
        out["datagrams_sent"] = sent
        out["datagrams_echoed"] = len(s.caps.datagrams)
        out["grease_sent"] = grease_sent
        out["data_frames_sent"] = frames
        out["min_size"] = min(sizes)
        out["max_size"] = max(sizes)
        out["server_other_capsules"] = len(s.caps.other)
        c.finish(sid, "echo")
        out["fin_answered"] = True
        check(c.terminated is None, f"connection terminated: {c.terminated}")
    finally:
        c.close()


def scenario_flow(a, out):
    """240 KB of echoes on one stream: ~4x our 65535-byte receive windows
    (stream and connection), so the tunnel only completes if the
    WINDOW_UPDATEs we send after acknowledge_received_data reach the node
    and it resumes sending."""
    c = Client(a.port, a.ca, a.pin)
    try:
        sid = c.open_udp("127.0.0.1", a.target_port, f"localhost:{a.port}", "flow")
        s = c.streams[sid]
        window = c.conn.local_settings.initial_window_size
        for b in range(20):
            batch = [os.urandom(1200) for _ in range(10)]
            c.echo_round([(sid, p) for p in batch], f"flow batch {b}")
        check(len(s.caps.datagrams) == 200, f"{len(s.caps.datagrams)} echoes for 200")
        out["datagrams_echoed"] = len(s.caps.datagrams)
        out["bytes_received"] = s.data_bytes
        out["receive_window"] = window
        check(s.data_bytes > 3 * window, f"only {s.data_bytes} bytes received: windows not exercised")
        c.finish(sid, "flow")
        check(c.terminated is None, f"connection terminated: {c.terminated}")
    finally:
        c.close()


def scenario_concurrent(a, out):
    n, rounds = a.tunnels, 4
    c = Client(a.port, a.ca, a.pin)
    try:
        mcs = c.settings.get(MAX_CONCURRENT_STREAMS)
        out["max_concurrent_streams"] = mcs
        check(mcs is None or mcs >= n, f"SETTINGS_MAX_CONCURRENT_STREAMS {mcs} < {n} tunnels")
        # All requests first, then all responses: the tunnels are concurrent.
        sids = [c.request(connect_udp_headers(f"localhost:{a.port}", "127.0.0.1", a.target_port)) for _ in range(n)]
        for i, sid in enumerate(sids):
            s = c.response(sid, f"tunnel {i}: response")
            check(s.reset is None, f"tunnel {i}: reset {s.reset}")
            check(s.status == 200, f"tunnel {i}: status {s.status}")
            check(s.headers.get(b"capsule-protocol") == b"?1", f"tunnel {i}: capsule-protocol missing")
        out["tunnels_open"] = len(sids)
        total = 0
        for r in range(rounds):
            pairs = [(sid, b"tunnel-%02d-round-%d-" % (i, r) + os.urandom(16 + 37 * i % 700)) for i, sid in enumerate(sids)]
            c.echo_round(pairs, f"round {r}")
            total += len(pairs)
        for i, sid in enumerate(sids):
            s = c.streams[sid]
            check(len(s.caps.datagrams) == rounds, f"tunnel {i}: {len(s.caps.datagrams)} echoes, wanted {rounds}")
            tag = b"tunnel-%02d-" % i
            check(all(d.startswith(tag) for d in s.caps.datagrams), f"tunnel {i}: cross-talk")
        out["datagrams_sent"] = total
        out["datagrams_echoed"] = sum(len(c.streams[s].caps.datagrams) for s in sids)
        out["cross_talk"] = 0
        for i, sid in enumerate(sids):
            c.finish(sid, f"tunnel {i}")
        out["tunnels_finished"] = len(sids)
        check(c.terminated is None, f"connection terminated: {c.terminated}")
    finally:
        c.close()


def scenario_malformed(a, out):
    auth = f"localhost:{a.port}"
    c = Client(a.port, a.ca, a.pin)
    try:
        good = c.open_udp("127.0.0.1", a.target_port, auth, "control tunnel")
        c.echo_round([(good, b"control-0")], "control before")
        # 1. A DATAGRAM capsule announcing 70000 bytes (> the 65536 limit).
        big = c.open_udp("127.0.0.1", a.target_port, auth, "oversize tunnel")
        c.send(big, varint(DATAGRAM) + varint(70000) + b"\x00" + os.urandom(1000))
        sb = c.streams[big]
        c.pump_until(lambda: sb.reset is not None, "oversized capsule: RST_STREAM")
        check(sb.reset == PROTOCOL_ERROR, f"oversized capsule: RST_STREAM code {sb.reset:#x}, wanted PROTOCOL_ERROR (0x1)")
        out["oversize_reset_code"] = sb.reset
        c.echo_round([(good, b"control-1")], "control after the oversized capsule")
        # 2. A capsule cut short, then END_STREAM.
        trunc = c.open_udp("127.0.0.1", a.target_port, auth, "truncated tunnel")
        c.echo_round([(trunc, b"before-truncation")], "truncated tunnel before")
        c.send(trunc, varint(DATAGRAM) + varint(100) + b"\x00" + b"only ten b", end=True)
        st = c.streams[trunc]
        c.pump_until(lambda: st.reset is not None, "truncated capsule + END_STREAM: RST_STREAM")
        check(st.reset == PROTOCOL_ERROR, f"truncated capsule: RST_STREAM code {st.reset:#x}, wanted PROTOCOL_ERROR (0x1)")
        out["truncated_reset_code"] = st.reset
        c.echo_round([(good, b"control-2")], "control after the truncated capsule")
        # 3. The connection still opens new tunnels.
        fresh = c.open_udp("127.0.0.1", a.target_port, auth, "tunnel after the resets")
        c.echo_round([(fresh, b"fresh"), (good, b"control-3")], "fresh and control tunnels")
        out["other_tunnels_kept"] = True
        c.finish(good, "control tunnel")
        c.finish(fresh, "fresh tunnel")
        check(c.terminated is None, f"connection terminated: {c.terminated}")
        out["connection_kept"] = True
    finally:
        c.close()


MALFORMED = {
    # name: the rule that makes it malformed (headers: `malformed_headers`)
    "ext_connect_without_path": "XC-07",
    "ext_connect_without_scheme": "XC-07",
    "ext_connect_without_authority": "RFC 9298 §3.5 / RFC 9113 §8.3.1",
    "protocol_with_get": "XC-11",
    "classic_connect_with_path": "CC-13",
}


def malformed_headers(name, auth, target_port):
    udp_path = f"/.well-known/masque/udp/127.0.0.1/{target_port}/"
    base = {
        ":method": "CONNECT",
        ":protocol": "connect-udp",
        ":scheme": "https",
        ":authority": auth,
        ":path": udp_path,
    }
    if name == "ext_connect_without_path":
        del base[":path"]
    elif name == "ext_connect_without_scheme":
        del base[":scheme"]
    elif name == "ext_connect_without_authority":
        del base[":authority"]
    elif name == "protocol_with_get":
        base[":method"] = "GET"
    elif name == "classic_connect_with_path":
        base = {":method": "CONNECT", ":authority": f"127.0.0.1:{target_port}", ":path": "/"}
    return list(base.items()) + [("capsule-protocol", "?1")]


def not_implemented_headers(name, auth):
    ext = lambda proto, path: [  # noqa: E731
        (":method", "CONNECT"),
        (":protocol", proto),
        (":scheme", "https"),
        (":authority", auth),
        (":path", path),
        ("capsule-protocol", "?1"),
    ]
    return {
        "connect_ip": ext("connect-ip", "/.well-known/masque/ip/*/*/"),
        "connect_tcp": ext("connect-tcp", "/.well-known/masque/tcp/127.0.0.1/9/"),
        "unknown_protocol": ext("x-masque-unknown", "/.well-known/masque/udp/127.0.0.1/9/"),
        "classic_connect": [(":method", "CONNECT"), (":authority", "127.0.0.1:9")],
    }[name]


def scenario_requests(a, out):
    auth = f"localhost:{a.port}"
    # Outbound validation off: the malformed requests must reach the wire.
    c = Client(a.port, a.ca, a.pin, validate=False)
    detail = {}
    try:
        refused = 0
        for name in MALFORMED:
            sid = c.request(malformed_headers(name, auth, a.target_port))
            s = c.response(sid, f"{name}: 400 or RST_STREAM")
            outcome = {"status": s.status, "reset": s.reset}
            detail[name] = outcome
            if s.status is not None:
                check(s.status == 400, f"{name} ({MALFORMED[name]}): status {s.status}, wanted 400 or a stream reset")
                # Done with it either way.
                if not s.ended and s.reset is None:
                    c.conn.reset_stream(sid, 0x8)
                    c.flush()
            refused += 1
        out["malformed_refused"] = refused
        n501 = n502 = 0
        expected = [("connect_ip", 501), ("connect_tcp", 502), ("unknown_protocol", 501), ("classic_connect", 502)]
        for name, want in expected:
            sid = c.request(not_implemented_headers(name, auth))
            s = c.response(sid, f"{name}: {want}")
            detail[name] = {"status": s.status, "reset": s.reset, "proxy_status": (s.headers or {}).get(b"proxy-status", b"").decode()}
            # A reset after the response (RST_STREAM NO_ERROR closing our
            # request half, RFC 9113 §8.1) is fine; one instead of it is not.
            check(s.headers is not None, f"{name}: stream reset {s.reset} instead of {want}")
            check(s.status == want, f"{name}: status {s.status}, wanted {want}")
            check(b"proxy-status" in s.headers, f"{name}: {want} without proxy-status: {s.headers}")
            if want == 502:
                ps = s.headers[b"proxy-status"]
                check(b"connection_refused" in ps, f"{name}: proxy-status {ps}")
            if not s.ended and s.reset is None:
                c.conn.reset_stream(sid, 0x8)
                c.flush()
            if want == 501:
                n501 += 1
            else:
                n502 += 1
        out["not_implemented_501"] = n501
        out["target_refused_502"] = n502
        # The connection survived every refusal: a tunnel still works on it.
        sid = c.open_udp("127.0.0.1", a.target_port, auth, "tunnel after the refusals")
        c.echo_round([(sid, b"still-alive")], "tunnel after the refusals")
        c.finish(sid, "tunnel after the refusals")
        check(c.terminated is None, f"connection terminated: {c.terminated}")
        out["connection_kept"] = True
    finally:
        out["detail"] = detail
        c.close()


SCENARIOS = {
    "settings": scenario_settings,
    "echo": scenario_echo,
    "flow": scenario_flow,
    "concurrent": scenario_concurrent,
    "malformed": scenario_malformed,
    "requests": scenario_requests,
}


def main():
    p = arg_parser(__doc__, SCENARIOS)
    p.add_argument("--tunnels", type=int, default=50)
    p.add_argument("--seed", type=int, default=9298)
    a = p.parse_args()
    run_scenarios(a, SCENARIOS, {"peer": "python-h2", "h2_version": h2.__version__}, (h2.exceptions.H2Error,))


if __name__ == "__main__":
    main()
