#!/usr/bin/env python3
"""The CONNECT-TCP capsule codec of the TCP-tunnel peer (tcp_peer.py),
written from draft-ietf-httpbis-connect-tcp-11 alone (no code of the node):
the capsule codepoints per upgrade token, DATA / FINAL_DATA encoding, a
streaming reader of the node's capsule stream, the seeded payloads and the
GREASE capsules the peer sends.

Run as a script it checks itself against the draft's vectors and prints one
JSON line (`"ok": true`), exiting 1 on a mismatch.

Capsule = type (QUIC varint) + length (varint) + value (RFC 9297 §3.2).
Tokens `connect-tcp` and `connect-tcp-07` (draft -11): DATA 0x2028d7f0,
FINAL_DATA 0x2028d7f1; `connect-tcp-12`: 0x2028d7f2 / 0x2028d7f3. The TCP
stream is the concatenation of the DATA and FINAL_DATA payloads; FINAL_DATA
is the FIN (after its payload); other capsule types are skipped; DATA or
FINAL_DATA after FINAL_DATA is malformed.
"""
import hashlib
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # masque_peer, even under `python -P`
from masque_peer import read_varint, varint  # noqa: E402

# token -> (DATA, FINAL_DATA)
CODEPOINTS = {
    "connect-tcp": (0x2028D7F0, 0x2028D7F1),
    "connect-tcp-07": (0x2028D7F0, 0x2028D7F1),
    "connect-tcp-12": (0x2028D7F2, 0x2028D7F3),
}


def capsule(ctype, value):
    return varint(ctype) + varint(len(value)) + bytes(value)


class Codec:
    """DATA / FINAL_DATA of one upgrade token."""

    def __init__(self, token):
        if token not in CODEPOINTS:
            raise ValueError(f"no codepoints for token {token!r}")
        self.token = token
        self.data_type, self.final_type = CODEPOINTS[token]

    def data(self, payload):
        return capsule(self.data_type, payload)

    def final(self, payload=b""):
        return capsule(self.final_type, payload)

    def reader(self):
        return Reader(self)


class Reader:
    """Reassembles the TCP stream from a capsule stream split anywhere.

    `stream` is the bytes of every DATA / FINAL_DATA payload; `final` is set
    once FINAL_DATA is complete; `after_final` counts DATA / FINAL_DATA
    capsules after it (malformed), `after_final_bytes` every byte after it;
    `unknown` counts other capsules (skipped, as the draft says)."""

    def __init__(self, codec):
        self.codec = codec
        self.buf = bytearray()
        self.stream = bytearray()
        self.final = False
        self.after_final = 0
        self.after_final_bytes = 0
        self.capsules = 0
        self.unknown = 0

    def feed(self, data):
        if self.final:
            self.after_final_bytes += len(data)
        self.buf += data
        off = 0
        while True:
            t = read_varint(self.buf, off)
            if t is None:
                break
            ln = read_varint(self.buf, t[1])
            if ln is None:
                break
            end = ln[1] + ln[0]
            if end > len(self.buf):
                break
            ctype = t[0]
            self.capsules += 1
            if ctype in (self.codec.data_type, self.codec.final_type):
                if self.final:
                    self.after_final += 1
                else:
                    self.stream += self.buf[ln[1] : end]
                    if ctype == self.codec.final_type:
                        self.final = True
                        # Bytes of this same feed past the FINAL_DATA.
                        self.after_final_bytes += len(self.buf) - end
            else:
                self.unknown += 1
            off = end
        del self.buf[:off]

    @property
    def truncated(self):
        """Bytes of an incomplete capsule left at the end."""
        return len(self.buf)


def payload(seed, n):
    """`n` pseudo-random bytes, the same for the same seed."""
    return random.Random(seed).randbytes(n)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def grease_capsule(rng, size=None):
    """A capsule of a reserved type 0x29 * N + 0x17 (RFC 9297 §5.4, the
    first ones 0x17, 0x40, 0x69 ...), random content of `size` bytes (or a
    small random size)."""
    n = rng.choice([0, 1, rng.randrange(2, 1 << 20)])
    if size is None:
        size = rng.randrange(0, 64)
    return capsule(0x29 * n + 0x17, rng.randbytes(size))


def grease_stream(codec, data, rng, big=(70000, 200000)):
    """`data` as DATA capsules of random sizes (1 .. 20000 bytes) with GREASE
    capsules in between: one or two small ones around every DATA capsule and
    the `big` sizes (over the 64 KiB capsule bound the node skips unbuffered)
    once each, the first before any DATA; an empty DATA capsule after about
    every eighth (empty payloads are allowed). No FINAL_DATA. Returns (bytes,
    GREASE capsules, DATA capsules)."""
    out = bytearray()
    grease = 0
    datas = 0
    big = list(big)
    if big:
        out += grease_capsule(rng, big.pop(0))
        grease += 1
    off = 0
    while off < len(data):
        n = rng.randrange(1, 20000)
        out += codec.data(data[off : off + n])
        datas += 1
        off += n
        if rng.randrange(8) == 0:
            out += codec.data(b"")
            datas += 1
        for _ in range(rng.randrange(1, 3)):
            out += grease_capsule(rng)
            grease += 1
        if big and off >= len(data) // 2:
            out += grease_capsule(rng, big.pop(0))
            grease += 1
    return bytes(out), grease, datas


# ---------------------------------------------------------------- self-test


def selftest():
    """The draft's vectors, every token, and a reader fed one byte at a
    time; returns a list of failures."""
    bad = []

    def eq(name, got, want):
        if got != want:
            bad.append(f"{name}: {bytes(got).hex()} != {bytes(want).hex()}")

    c = Codec("connect-tcp")
    eq("DATA abc", c.data(b"abc"), bytes.fromhex("a028d7f0 03 616263"))
    eq("empty FINAL_DATA", c.final(), bytes.fromhex("a028d7f1 00"))
    eq("-07 DATA", Codec("connect-tcp-07").data(b"abc"), bytes.fromhex("a028d7f0 03 616263"))
    eq("-12 DATA", Codec("connect-tcp-12").data(b"abc"), bytes.fromhex("a028d7f2 03 616263"))
    eq("-12 FINAL_DATA", Codec("connect-tcp-12").final(), bytes.fromhex("a028d7f3 00"))
    eq("2-byte length", c.data(bytes(64))[:6], bytes.fromhex("a028d7f0 4040"))
    eq("GREASE 0x17", capsule(0x17, b"\x01"), bytes.fromhex("17 01 01"))

    rng = random.Random(7)
    data = payload(1, 50000)
    blob, _, _ = grease_stream(c, data, rng, big=(70000,))
    blob += c.final(b"end")
    for step in (1, 7, 4096, len(blob)):
        r = c.reader()
        for i in range(0, len(blob), step):
            r.feed(blob[i : i + step])
        if bytes(r.stream) != data + b"end" or not r.final or r.truncated or r.after_final:
            bad.append(f"reader fed {step} bytes at a time: {len(r.stream)} bytes, final {r.final}")
    r = c.reader()
    r.feed(c.final() + c.data(b"x") + capsule(0x17, b""))
    if r.after_final != 1 or r.unknown != 1 or r.after_final_bytes != 8:
        bad.append(f"after FINAL_DATA: {r.after_final} capsules, {r.after_final_bytes} bytes")
    r = c.reader()
    r.feed(c.data(b"abc")[:-1])
    if r.truncated != 7 or r.stream:
        bad.append("a truncated capsule is held back")
    # -12 codepoints are no data for a connect-tcp reader.
    r = c.reader()
    r.feed(Codec("connect-tcp-12").data(b"abc"))
    if r.stream or r.unknown != 1:
        bad.append("the other token's DATA is an unknown capsule")
    return bad


if __name__ == "__main__":
    failures = selftest()
    print(json.dumps({"scenario": "codec", "ok": not failures, "failures": failures}), flush=True)
    sys.exit(1 if failures else 0)
