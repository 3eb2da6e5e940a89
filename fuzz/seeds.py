#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ (small, valid inputs
plus a few near-misses). Re-run after changing it: `python3 fuzz/seeds.py`.
Files it does not name (e.g. crash inputs kept from `cargo xtask fuzz`) are
left alone."""
import os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def vi(n, size=None):
    """QUIC variable-length integer (RFC 9000 §16); `size` forces a longer form."""
    if size is None:
        size = 1 if n < 64 else 2 if n < 16384 else 4 if n < 2**30 else 8
    prefix = {1: 0, 2: 0x40, 4: 0x80, 8: 0xC0}[size]
    b = n.to_bytes(size, "big")
    return bytes([b[0] | prefix]) + b[1:]


def capsule(ty, value):
    return vi(ty) + vi(len(value)) + value


def frame(ty, payload):
    return vi(ty) + vi(len(payload)) + payload


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


V4S, V4D = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7])
V6S = bytes.fromhex("20010db8000000000000000000000001")
V6D = bytes.fromhex("20010db8000000000000000000000042")


def ipv4(proto, payload, ttl=64, src=V4S, dst=V4D):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, 0x4000, ttl, proto, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ipv6(nh, payload, hl=64, src=V6S, dst=V6D):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, hl, src, dst) + payload


def udp4(payload, sport=5353, dport=53):
    u = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = V4S + V4D + struct.pack("!BBH", 0, 17, len(u))
    c = csum(pseudo + u) or 0xFFFF
    return u[:6] + struct.pack("!H", c) + u[8:]


def udp6(payload, sport=5353, dport=53):
    u = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = V6S + V6D + struct.pack("!I3xB", len(u), 17)
    c = csum(pseudo + u) or 0xFFFF
    return u[:6] + struct.pack("!H", c) + u[8:]


def icmp4_echo(data=b"ping"):
    m = struct.pack("!BBHHH", 8, 0, 0, 0x42, 1) + data
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def icmp6_echo(data=b"ping"):
    m = struct.pack("!BBHHH", 128, 0, 0, 0x42, 1) + data
    pseudo = V6S + V6D + struct.pack("!I3xB", len(m), 58)
    return m[:2] + struct.pack("!H", csum(pseudo + m)) + m[4:]


DNS_QUERY = bytes.fromhex("abcd01000001000000000000076578616d706c65036f72670000010001")

# QPACK (RFC 9204 §4.5): required insert count 0, base 0, then field lines.
def q_static(i):  # indexed field line, static table (§4.5.2), i < 64
    return bytes([0xC0 | i])


def q_str(s, prefix_bits, flags, huffman=False):
    """String literal with an N-bit length prefix; `flags` are the bits above it."""
    b = s if isinstance(s, bytes) else s.encode()
    h = (1 << prefix_bits) if huffman else 0
    return q_int(len(b), prefix_bits, flags | h) + b


def q_int(n, bits, flags):
    mx = (1 << bits) - 1
    if n < mx:
        return bytes([flags | n])
    out = [flags | mx]
    n -= mx
    while n >= 128:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def q_name_ref(i, value, huffman=False):  # literal with static name reference (§4.5.4)
    return q_int(i, 4, 0x50) + q_str(value, 7, 0, huffman)


def q_literal(name, value):  # literal with literal name (§4.5.6)
    return q_str(name, 3, 0x20) + q_str(value, 7, 0)


def section(*lines):
    return b"\x00\x00" + b"".join(lines)


UDP_PATH = "/.well-known/masque/udp/192.0.2.6/443/"
CONNECT_UDP = section(
    q_static(15),  # :method CONNECT
    q_static(23),  # :scheme https
    q_name_ref(0, "proxy.example"),  # :authority
    q_name_ref(1, UDP_PATH),  # :path
    q_literal(":protocol", "connect-udp"),
    q_literal("capsule-protocol", "?1"),
)
CONNECT_IP = section(
    q_static(15), q_static(23), q_name_ref(0, "proxy.example"),
    q_name_ref(1, "/.well-known/masque/ip/*/*/"),
    q_literal(":protocol", "connect-ip"), q_literal("capsule-protocol", "?1"),
)
CLASSIC = section(q_static(15), q_name_ref(0, "example.org:443"))
GET = section(q_static(17), q_static(23), q_name_ref(0, "www.example.com"), q_static(1))
# RFC 7541 C.4.1: "www.example.com" Huffman-coded.
HUFF_WWW = bytes.fromhex("f1e3c2e5f23a6ba0ab90f4ff")
GET_HUFF = section(q_static(17), q_static(23), q_int(0, 4, 0x50) + q_int(len(HUFF_WWW), 7, 0x80) + HUFF_WWW, q_static(1))
RESP_200 = section(q_static(25), q_literal("capsule-protocol", "?1"))
RESP_PS = section(q_name_ref(24, "403"), q_literal("proxy-status", 'masque-node; error=destination_ip_prohibited'))

SETTINGS = (vi(0x01) + vi(0) + vi(0x07) + vi(0) + vi(0x08) + vi(1) + vi(0x33) + vi(1) + vi(0x06) + vi(16384))

SEEDS = {
    "capsule_decoder": {
        "datagram": b"\x40" + capsule(0, vi(0) + b"hello"),
        "two_datagrams_skip": b"\x41" + capsule(0, vi(0) + DNS_QUERY) + capsule(0, vi(2) + b"x"),
        "unknown_type": b"\x07" + capsule(0x2a, b"grease") + capsule(0, vi(0) + b"y"),
        "oversize": b"\x01" + capsule(0, vi(0) + b"z" * 200) + capsule(0, vi(0) + b"ok"),
        "long_varints": b"\x10" + vi(0, 8) + vi(3, 4) + b"\x00ab",
        "truncated": b"\x03" + vi(0) + vi(10) + b"abc",
    },
    "datagram": {
        "qsid0_ctx0": vi(0) + vi(0) + DNS_QUERY,
        "qsid4_ctx0": vi(4) + vi(0) + b"hello",
        "ctx2": vi(0) + vi(2) + b"x",
        "long_forms": vi(1, 8) + vi(0, 2) + b"abc",
        "empty_payload": vi(0) + vi(0),
    },
    "template_match": {
        "udp_v4": UDP_PATH.encode(),
        "udp_v6": b"/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/",
        "udp_name": b"/.well-known/masque/udp/example.org/53/",
        "ip_any": b"/.well-known/masque/ip/*/*/",
        "ip_prefix": b"/.well-known/masque/ip/192.0.2.0%2F24/17/",
        "tcp": b"/.well-known/masque/tcp/example.org/443/",
        "query": b"/m?target_host=192.0.2.1&target_port=443",
        "udp_template": b"https://proxy.example/.well-known/masque/udp/{target_host}/{target_port}/",
        "query_template": b"https://proxy.example/m{?target_host,target_port}",
        "ip_template": b"/ip{?target,ipproto}",
        "tcp_template": b"https://proxy.example/tcp/{target_host}/{target_port}/",
        "bad_escape": b"/.well-known/masque/udp/%zz/443/",
    },
    "connect_ip_capsules": {
        # type byte % 4: 1 ADDRESS_ASSIGN, 2 ADDRESS_REQUEST, 3 ROUTE_ADVERTISEMENT.
        "assign_v4": b"\x01" + vi(0) + b"\x04" + V4S + b"\x20",
        "assign_v6": b"\x01" + vi(1) + b"\x06" + V6S + b"\x40",
        "request_two": b"\x02" + vi(1) + b"\x04" + bytes(4) + b"\x20" + vi(2) + b"\x06" + bytes(16) + b"\x80",
        "routes": b"\x03" + b"\x04" + bytes(4) + b"\xff" * 4 + b"\x00" + b"\x06" + bytes(16) + b"\xff" * 16 + b"\x11",
        "empty_assign": b"\x01",
        "bad_prefix": b"\x01" + vi(0) + b"\x04" + V4S + b"\x21",
    },
    "ip_icmp": {
        "v4_udp": ipv4(17, udp4(DNS_QUERY)),
        "v6_udp": ipv6(17, udp6(DNS_QUERY)),
        "v4_icmp_echo": ipv4(1, icmp4_echo()),
        "v6_icmp_echo": ipv6(58, icmp6_echo()),
        "v4_ttl1": ipv4(17, udp4(b"x"), ttl=1),
        "v6_hl1": ipv6(17, udp6(b"x"), hl=1),
        "v4_options": (lambda p: p)(ipv4(6, bytes(20))),
        "v6_ext_hdr": ipv6(0, bytes([17, 0, 1, 4, 0, 0, 0, 0]) + udp6(b"y")),
    },
    "bind_tcp_capsules": {
        # type byte % 3: 0 COMPRESSION_ASSIGN, 1 COMPRESSION_ACK, 2 COMPRESSION_CLOSE;
        # the same value also goes through parse_uncompressed and the TCP receiver.
        "assign_v4": b"\x00" + bytes([0x04, 0x04, 0xCB, 0x00, 0x71, 0x0B, 0xEA, 0x60]),
        "assign_v6": b"\x00" + vi(6) + b"\x06" + V6D + struct.pack("!H", 443),
        "assign_uncompressed": b"\x00" + bytes([0x02, 0x00]),
        "ack": b"\x01\x04",
        "close": b"\x02\x02",
        "uncompressed_v4": b"\x03\x04" + V4D + struct.pack("!H", 53) + DNS_QUERY,
        "tcp_data": b"\x06" + b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n",
    },
    "structured_fields": {
        "true": b"?1",
        "false": b"?0",
        "public_v4": b"192.0.2.1:4433",
        "public_v6": b"[2001:db8::1]:4433",
        "proxy_status": b'masque-node; error=destination_ip_prohibited; details="no"',
        "proxy_status_list": b"a; error=dns_error; rcode=\"NXDOMAIN\", b; received-status=503",
        "bearer": b"Bearer abc.DEF-123_~+/==",
        "list": b'a, "b";x=1;y=?0, (c d);z=1.5, :YWJj:, @1659578233, %"caf%c3%a9"',
        "integer": b"-999999999999999",
    },
    "qpack_decode": {
        "connect_udp": CONNECT_UDP,
        "connect_ip": CONNECT_IP,
        "classic_connect": CLASSIC,
        "get": GET,
        "get_huffman": GET_HUFF,
        "response_200": RESP_200,
        "response_403": RESP_PS,
        "post_base": b"\x00\x81" + q_static(17),
        "encoder_insert": b"\x3f\xe1\x1f" + b"\xc0" + b"\x03abc",
    },
    "h3_frames": {
        "settings": b"\x05" + frame(0x04, SETTINGS),
        "settings_payload": SETTINGS,
        "headers_data": b"\x00" + frame(0x01, CONNECT_UDP) + frame(0x00, capsule(0, vi(0) + b"hi")),
        "grease_goaway": b"\x10" + frame(0x21, b"grease") + frame(0x07, vi(4)),
        "max_push_cancel": b"\x02" + frame(0x0D, vi(3)) + frame(0x03, vi(1)),
        "truncated_headers": b"\x03" + vi(0x01) + vi(100) + b"\x00\x00",
    },
    "h3_control": {
        # cfg byte: bit 0 our side (0 server, 1 client), the rest the chunk size.
        "settings_goaway_server": b"\x00" + frame(0x04, SETTINGS) + frame(0x0D, vi(3)),
        "settings_goaways_client": b"\x07" + frame(0x04, SETTINGS) + frame(0x07, vi(8)) + frame(0x07, vi(4)),
        "goaway_grows": b"\x01" + frame(0x04, b"") + frame(0x07, vi(4)) + frame(0x07, vi(8)),
        "missing_settings": b"\x00" + frame(0x07, vi(0)),
        "grease_after_settings": b"\x02" + frame(0x04, b"") + frame(0x21, b"grease"),
    },
    "ip_forward": {
        # cfg byte: egress MTU 1200 + 4 * cfg.
        "v4_from_peer": b"\x40" + ipv4(17, udp4(DNS_QUERY), src=bytes([10, 200, 0, 2])),
        "v4_spoofed": b"\x40" + ipv4(17, udp4(b"x")),
        "v4_to_peer_ttl1": b"\x40" + ipv4(17, udp4(b"x"), ttl=1, dst=bytes([10, 200, 0, 2])),
        "v4_to_peer": b"\x40" + ipv4(17, udp4(b"y"), dst=bytes([10, 200, 0, 2])),
        "v6_echo": b"\x40" + ipv6(58, icmp6_echo()),
    },
    "tunnel_core": {
        # cfg bit 0: IP rules; bit 1: 64 KiB bound (else cfg bytes).
        "udp_datagrams": b"\x02" + capsule(0, vi(0) + DNS_QUERY) + capsule(0, vi(0) + b"x"),
        "ip_datagrams": b"\x03" + capsule(0, vi(0) + ipv4(17, udp4(b"x"))) + capsule(1, vi(0) + b"\x01\x04" + V4S + b"\x20"),
        "unknown_ctx": b"\x06" + capsule(0, vi(8) + b"zz") + capsule(0x2a, b"grease"),
        "oversize_small_bound": b"\x10" + capsule(0, vi(0) + b"q" * 40) + capsule(0, vi(0) + b"ok"),
        "truncated_at_fin": b"\x02" + vi(0) + vi(20) + b"short",
    },
    "request_classify": {
        # method, protocol, scheme, authority, path/target, Host, Connection, Upgrade (0xff-separated)
        "h3_connect_udp": b"\xff".join([b"CONNECT", b"connect-udp", b"https", b"proxy.example", UDP_PATH.encode(), b"proxy.example", b"upgrade", b"connect-udp"]),
        "connect_ip": b"\xff".join([b"CONNECT", b"connect-ip", b"https", b"proxy.example", b"/.well-known/masque/ip/*/*/", b"proxy.example", b"", b""]),
        "connect_tcp": b"\xff".join([b"CONNECT", b"connect-tcp", b"https", b"proxy.example", b"/.well-known/masque/tcp/example.org/443/", b"proxy.example", b"", b""]),
        "classic": b"\xff".join([b"CONNECT", b"", b"", b"example.org:443", b"example.org:443", b"example.org:443"]),
        "h1_upgrade": b"\xff".join([b"GET", b"", b"", b"", UDP_PATH.encode(), b"proxy.example", b"keep-alive, Upgrade", b"connect-udp"]),
        "bind_any": b"\xff".join([b"CONNECT", b"connect-udp", b"https", b"proxy.example", b"/.well-known/masque/udp/*/*/", b"proxy.example", b"Upgrade", b"connect-udp"]) + b"\xff",
        "not_a_tunnel": b"\xff".join([b"POST", b"", b"https", b"proxy.example", b"/", b"proxy.example"]),
    },
    "h1_head": {
        "upgrade": ("GET " + UDP_PATH + " HTTP/1.1\r\nHost: proxy.example\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n").encode(),
        "absolute_form": b"GET https://proxy.example:443/.well-known/masque/udp/192.0.2.6/443/ HTTP/1.1\nHost: proxy.example\nConnection: keep-alive, upgrade\nUpgrade: CONNECT-UDP\n",
        "connect": b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n",
        "connect_v6": b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n",
        "two_hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: upgrade\r\nUpgrade: connect-ip\r\n",
        "two_protocols": b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket, connect-udp\r\n",
        "upgrade_lines": b"GET / HTTP/1.1\r\nHost: a\r\nconnection: upgrade\r\nupgrade: connect-udp/1\r\nupgrade:\r\n",
        "post": b"POST /x HTTP/1.1\r\nHost: a\r\n",
        "empty_host": b"GET /x HTTP/1.1\r\nHost: \r\nConnection: upgrade\r\nUpgrade: connect-udp\r\n",
    },
    "huffman": {
        # First byte: bit 0 set = no limit, else the limit. RFC 7541 C.4 / C.6 strings.
        "www_example_com": b"\x01" + HUFF_WWW,
        "no_cache": b"\x01" + bytes.fromhex("a8eb10649cbf"),
        "custom_key": b"\x01" + bytes.fromhex("25a849e95ba97d7f"),
        "custom_value": b"\x01" + bytes.fromhex("25a849e95bb8e8b4bf"),
        "date": b"\x01" + bytes.fromhex("d07abe941054d444a8200595040b8166e082a62d1bff"),
        "https_url": b"\x01" + bytes.fromhex("9d29ad171863c78f0b97c8e9ae82ae43d3"),
        "limited": b"\x04" + HUFF_WWW,
        "bad_padding": b"\x01\x18",
        "eos": b"\x01\xff\xff\xff\xff",
    },
    "metrics_http": {
        "get": b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "head_query_http10": b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n",
        "bare_lf": b"GET /metrics HTTP/1.1\nhost: x\n\nrest",
        "no_host": b"GET /metrics HTTP/1.1\r\n\r\n",
        "post": b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "other_path": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "garbage": b"\xff\xfe\r\n\r\n",
        "cut": b"GET /metr",
        "four_parts": b"GET /metrics HTTP/1.1 extra\r\n\r\n",
    },
    "socks5_wire": {
        # First byte: 0 greeting, 1 username/password, 2 request, 3 UDP datagram.
        "greeting_noauth": b"\x00\x05\x01\x00",
        "greeting_both": b"\x00\x05\x02\x00\x02",
        "greeting_v4": b"\x00\x04\x01\x00",
        "user_pass": b"\x01\x01\x05alice\x09s3cret pw",
        "user_pass_empty": b"\x01\x01\x00\x01p",
        "connect_v4": b"\x02\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90",
        "connect_v6": b"\x02\x05\x01\x00\x04" + bytes(15) + b"\x01\x00\x50",
        "connect_domain": b"\x02\x05\x01\x00\x03\x0bexample.com\x01\xbb",
        "connect_domain_bad_utf8": b"\x02\x05\x01\x00\x03\x02\xff\xfe\x00\x50",
        "udp_associate": b"\x02\x05\x03\x00\x01" + bytes(6),
        "bad_atyp": b"\x02\x05\x01\x00\x09\x00",
        "udp_v4": b"\x03\x00\x00\x00\x01\x09\x09\x09\x09\x00\x35" + b"dns query",
        "udp_domain": b"\x03\x00\x00\x00\x03\x0bexample.org\x00\x35payload",
        "udp_frag": b"\x03\x00\x00\x01\x01\x7f\x00\x00\x01\x00\x07x",
        "udp_v6_empty": b"\x03\x00\x00\x00\x04" + bytes(16) + b"\x00\x35",
    },
}

for target, files in SEEDS.items():
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(files)} seeds, {sum(map(len, files.values()))} bytes")
