#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ from the inputs the tests
use (tests/unit/test_units.c, tests/test_publish.py, the text/event-stream
bodies of tests/test_publish_response.py and tests/test_php.py, Mercure JWTs
signed here for fuzz/jwt.c's keys), encoded the
way each target reads its input (see the opening comment of fuzz/<target>.c).

    /usr/bin/python3 fuzz/seeds.py      # rewrites every fuzz/corpus/<target>/

Each seed is a file named by the SHA-1 of its bytes, as libFuzzer names
what it finds. Kept small: a few dozen files per target, a few KiB each.
"""
import base64
import hashlib
import hmac
import json
import shutil
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# ---------------------------------------------------------------- inputs

# Form bodies (tests/unit/test_units.c test_body, tests/test_publish.py).
FORMS = [
    b"channel=a&topic=b&data=x%0Ay+z&type=upd&id=k&retry=10",
    b"data=%0", b"data=%zz", b"data=a&data=b", b"event=a&type=b", b"retry=1s",
    b"data=n%00l", b"channel=a",
    b"channel=t1&event=chat&id=msg-1&retry=3000&data=hello%0D%0Aform+%26+co+%3D+100%25",
    b"topic=topa&type=aliased&data=x", b"topic=a&topic=b&data=y",
    b"channel=a&channel=b&data=fan+out",
    b"channel=c&data=a+b%2Bc%0Ad%00e%C3%A9",
    b"channel=c&event=ping", b"data=q",
    b"channel=c&event=%C3%A9%ED%A0%80&id=a%FFb",
    b"channel=c&event=a%0D%0Aid%3A+1", b"channel=c&id=12-34", b"channel=c&retry=+10",
    b"channel=c&channel=a+b", b"channel=c&topic=%3Cx%3E", b"channel=c&channel=",
    b"channel=c&data=ab%4", b"channel=c&event=sse-gap", b"channel=c&id=-1&event=sse&retry=0",
    b"channel=c&id=1-2-3&event=ssefoo&retry=2147483647",
    b"channel=c&" + b"&".join(b"channel=tm-%d" % i for i in range(65)) + b"&data=x",
    b"channel=c&event=" + b"e" * 255 + b"&id=" + b"i" * 255 + b"&data=d",
    b"&&=&x&=y&channel=a&lastEventId=1-2",
]

# JSON bodies (tests/unit/test_units.c, tests/test_publish.py).
JSONS = [
    b'{"channel":["a","b"],"event":"e","data":{"k":[1,true,null]},"retry":5}',
    b'[{"channel":"a","data":"x\\u0000y"},{"channel":"b","data":42}]',
    b'{"data":', b"[]", b'"x"', b'{"event":1}', b'{"retry":-1}', b'{"retry":"5"}',
    b'{"channel":[1]}', b'{"a":1,"a":2}',
    b'{"channel":"c","event":"json-ev","data":"j\\nk","id":"j-1","retry":4500}',
    b'{"channel":"c","data":[1,2]}', b'{"channel":"c","data":true}', b'{"channel":"c","data":null}',
    b'{"channel":"c","data":"nul\\u0000cr\\rlf\\n"}', b'{"channel":"c","data":"str \\u00e9"}',
    b'[{"channel":"a","data":"1"},{"channel":"b","data":"2","event":"second"},'
    b'{"channel":["a","b"],"data":{"n":3}},{"channel":"a","data":"4","id":"arr-four"}]',
    b'{"channel":"c","event":"a\\nb"}', b'{"channel":"c","id":"a\\u0000b"}',
    b'{"channel":"c","id":"99-0"}', b'{"channel":"c","retry":"soon"}', b'{"channel":"c","retry":1.5}',
    b'{"channel":["c",5]}', b'{"channel":["c",""]}', b'{"channel": "c",}', b'[{"channel": "c"}',
    b'[{"channel": "c", "data": "1"}, 5]', b'[{"channel":"c","data":"first"},{"channel":"c","event":"sse-no"}]',
    json.dumps([{"channel": "c", "id": i, "data": "y"} for i in
                ['say "hi"', "back\\slash", "tab\there", "\u00e9\u2713 \U0001f600", "\x7f/</"]]).encode(),
    b'{"channel":"c","retry":2147483648}', b'{"channel":"c","retry":"2147483647"}',
    b'{"channel":"c","data":"\\ud83d\\ude00 \\ud800"}',
]

# Raw bodies: (event, id, retry, body); None is an absent header.
RAWS = [
    ("e", "i", "7", b"raw"), (None, None, "x", b""), ("sse-x", None, None, b""),
    (None, "1-2", None, b""), (None, "", None, b""),
    ("update", "order-17", "2000", b"raw body\r\nline 2"), (None, None, None, b"<x/>"),
    ("sse-custom", None, None, b"data"), ("e" * 256, None, None, b"data"),
    (None, "1795476000123-0", None, b"data"), (None, "i" * 256, None, b"data"),
    (None, None, "12a", b"data"), (None, None, "-1", b"data"), (None, None, "1.5", b"data"),
    (None, None, "1000ms", b"data"), (None, None, "2147483648", b"data"),
    (None, "a\xffb", None, b"data"), ("\xc3(", None, None, b"data"),
    (None, None, None, b"chunked " * 40), (None, None, None, b"n\x00ul\r\r\n\n end"),
]

# text/event-stream bodies (tests/unit/test_units.c test_parse,
# tests/test_publish_response.py, tests/test_php.py).
STREAMS = [
    b"event: foo\ndata: hello\n\n",
    b"data: a\r\ndata:b\rdata:  c\ndata\n\n",
    b": hi\nid: k1\nretry: 1500\nfoo: bar\ndata: one\n\ndata: two\n\r\n",
    b"event: x\nid: y\nretry: 5\n\ndata: z\n\n",
    b"data:\n\ndata\n\n", b"data: a\n\ndata: b\n", b"data: a\n\ndata: b",
    b"data: a\n\n: bye\nevent: x\n", b"", b"data: x\r",
    b"data: a\r\rdata: b\r\n\r\n", b"data: a\r\ndata: b\r\n\r\n",
    b"\xef\xbb\xbfdata: x\n\n", b"\xef\xbbdata: x\n\n", b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n",
    b"Data: no\ndata : no\ndata: a: b\nevent: t:1\n\n",
    b"event: a\nevent: b\ndata: x\n\nevent: a\nevent:\ndata: y\n\n",
    b"id: a\nid:\ndata: x\n\nid: b\nid: c\x00d\ndata: y\n\n",
    b"retry: 10s\nretry: -1\nretry:\nretry: 1 \ndata: x\n\n",
    b"retry: 0\ndata: x\n\nretry: 2147483647\ndata: y\n\n",
    b"retry: 2147483648\ndata: x\n\n", b"data: a\n\nretry: 99999999999999999999999\ndata: x\n\n",
    b"data: n\x00l\xff\n\n", b"event: sse-gap\ndata: x\n\nid: 17-3\ndata: y\n\n",
    b"event: a\r\ndata: 1\r\n\r\ndata: 2\r\ndata: 3\r\r",
    b": only a comment\n\nevent: x\n\ndata: not ended",
    b"event: proxied\ndata: via\ndata: proxy\n\n",
    b"event: split\r\ndata: x\r\ndata: y\n\ndata: tail\n",
    b"data: fine\n\nid: 17-3\ndata: not fine\n\n",
    b"event: foo\ndata: first\n\nid: order-42\nevent: order\ndata: {\"order\":42}\n"
    b"data: second line\n\n: a comment, not published\nretry: 2500\ndata: last\n\n",
    b"data: " + b"x" * 2000 + b"\n\n",
]

# Ids, event types, retries (tests/unit/test_units.c test_wire, test_publish.py).
IDS = [
    b"1795475281660-3", b"x-1", b"1-99999999", b"99999999999999999999-0", b"1795475281660-12",
    b"order-17", b"17-3", b"17-", b"-17", b"a\nb", b"a\x00b", b"\xc3\xa9t\xc3\xa9", b"\xc3",
    b"0", b"2500", b"1000ms", b"-1", b"1.5", b"", b"2147483648", b"2147483647",
    b"update", b"a\rb", b"sse-gap", b"ssex", b"\xff", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
    b"i" * 255, b"i" * 256, b"4398046511103-4194303", b"4398046511104-0", b"1-4194304",
    b"00000000000000000001-0", b"1-2-3", b"\xe2\x9c\x93 \xf0\x9f\x98\x80",
]

# Channel lists: (separator, names).
CHANNELS = [
    (b"&", [b"news"]), (b"&", [b"a-b.c_d~e:f/g@h!i$j&k'l(m)n*o+p,q;r=s"]),
    (b"\n", [b""]), (b"\n", [b"a b"]), (b"\n", [b'a"b']), (b"\n", [b"a%b"]),
    (b"\n", [b"caf\xc3\xa9"]), (b"\n", [b"x" * 255]), (b"\n", [b"x" * 256]),
    (b"\n", [b"ok", b"not ok"]), (b" ", [b"a", b"b", b"c"]), (b"\n", [b"<x>"]),
    (b",", [b"tm-%d" % i for i in range(64)]), (b",", [b"tm-%d" % i for i in range(65)]),
    (b"\n", [b"x" * 70 + b" y"]), (b"\n", [b"ok", b"\x01"]),
]


# Mercure JWTs for fuzz/jwt.c: valid for each of its keys (the HS256
# secret, the RS256 key, the HS256 key holding the RS256 key's PEM), then
# the refused kinds of tests/unit/test_units.c (alg none, other algs,
# expired, not yet valid, malformed claims, broken forms).
JWT_SECRET = b"fuzz-secret-of-thirty-two-bytes!"
JWT_RSA_PEM = (b"-----BEGIN PUBLIC KEY-----\n"
               b"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4DlF9a9G+SD4hcXjDo+3\n"
               b"VtJz+f4SQxhryJIoo7NfB0UNpD1JuQnb+AA3WcdAE+jWW8f5eF3B9YSuMGDUvI24\n"
               b"ffBI3NuAIDquHUtpEqtiEncwRaxsgLUGLIZcMM1JV0mCezskWYmaSpzpDQrd9kLn\n"
               b"xcoGJ3JbISLFpp3v5XDv1rdoloKet7qGqRKVpAzX1iaaHT0HdtQrPCWYpCQtXgu9\n"
               b"Tpz0tdQOS47KOA2srDYAUTPnnQWXI0t+zCcE9sOeF7rQlvcO5p7OlGT7YQUzxljx\n"
               b"BKE/cIXlxW3w7C1uRgQ4u12XqMnGYB9bbqdlgOQdYW0fbXUzj/CzfCLLx2L+waRD\n"
               b"6wIDAQAB\n"
               b"-----END PUBLIC KEY-----\n")
# Signed once with the private key of JWT_RSA_PEM (openssl dgst -sha256
# -sign), which was not kept.
JWT_RS256 = (b"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE5MDAwMDAwMDAsIm1lcmN1cmUiOnsicHVi"
             b"bGlzaCI6WyIqIl0sInN1YnNjcmliZSI6WyJodHRwczovL2V4YW1wbGUuY29tL2Jvb2tzL3tpZH0iXSwi"
             b"cGF5bG9hZCI6eyJ1IjoxfX19.IHm9PrYiVsTXlh1cLe-tOQm5kdu4Zx5tGI62CmGzKL-3BiJKPRa66cm2"
             b"RGDk_ufCq2x7BP4ZPkUa5h3usfb55urt717O5ZWaMYthnClD5U_6zuYuCslUXRHVEoMIFbfQD8kdAc3AZ"
             b"RF1JTcGtblxA22EYwpjqlxTw2yLJFtlAVZ8XrTzkSqoF-TIYNDMjFxovygzB6wyenE-7I3CjssXEYNGSM"
             b"i2a83qG_y1BupiOJMrsbnD2Pew6g2RBEeTyhasK_JmHLE_ONrYmPvTRmYuoRRip7EhvxXIuIMvi5wJ78b"
             b"2TiMGvHJW-N4em0W0NDrwJSp9tNpfXd_fC_9pmEAgsA")


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def jwt_seed(head, claims, secret=JWT_SECRET, sig=None):
    signing = b64url(head) + b"." + b64url(claims)
    if sig is None:
        sig = b64url(hmac.new(secret, signing, hashlib.sha256).digest())
    return signing + b"." + sig


HS = b'{"alg":"HS256","typ":"JWT"}'
MERCURE = (b'{"exp":1900000000,"mercure":{"publish":["https://example.com/books/{id}","*"],'
           b'"subscribe":["https://example.com/users/dunglas/{?topic}"],'
           b'"payload":{"user":"https://example.com/users/dunglas","n":[1,2.5,null]}}}')
JWTS = [
    jwt_seed(HS, MERCURE), jwt_seed(HS, b"{}"), jwt_seed(b'{"alg":"HS256"}', b'{"nbf":1700000000.5}'),
    jwt_seed(HS, b'{"mercure":{"publish":[],"subscribe":null,"payload":"s"}}'),
    JWT_RS256, jwt_seed(HS, MERCURE, secret=JWT_RSA_PEM),
    jwt_seed(b'{"alg":"RS256","typ":"JWT"}', MERCURE, secret=JWT_RSA_PEM),
    jwt_seed(b'{"alg":"none"}', MERCURE, sig=b""), jwt_seed(b'{"alg":"HS512"}', MERCURE),
    jwt_seed(HS, b'{"exp":1700000000}'), jwt_seed(HS, b'{"nbf":1900000000}'),
    jwt_seed(HS, b'{"mercure":{"publish":"*"}}'), jwt_seed(HS, b'{"exp":"soon"}'),
    jwt_seed(b'{"alg":"HS256","typ":"at+jwt"}', b"{}"), jwt_seed(b'{"alg":"HS256","crit":["x"]}', b"{}"),
    jwt_seed(HS, b'{"exp":1,"exp":1900000000}'), jwt_seed(HS, MERCURE, secret=b"wrong"),
    JWT_RS256 + b".x", JWT_RS256[:-1], b"a.b", b"a.b.c.d", b"...", b"",
]


def frame_seed(flags, stamp, id_=b"", event=b"", data=b""):
    return bytes([flags]) + struct.pack("<Q", stamp) + id_ + b"\0" + event + b"\0" + data


# Framing: (flags, stamp, id, event, data) from test_units.c FRAME() and
# test_publish.py's wire expectations.
FRAMES = [
    frame_seed(1, 0, b"1-0", b"", b"hello"), frame_seed(1 | 4 | 8, 1500, b"a", b"upd", b"x"),
    frame_seed(1, 0, b"a", b"", b""), frame_seed(1, 0, b"a", b"", b"one\r\ntwo\nthree\rfour"),
    frame_seed(1, 0, b"a", b"", b"end\n"), frame_seed(1, 0, b"a", b"", b"\r\n\r\n"),
    frame_seed(1, 0, b"a", b"", b"\n\r"), frame_seed(1, 0, b"a", b"", b" lead"),
    frame_seed(1, 0, b"a", b"", b"n\0ul"),
    frame_seed(2 | 4 | 8, (1795476000123 << 22) | 2000, b"", b"update",
               b"raw body\r\nline 2"),
    frame_seed(2, (1795475281660 << 22) | 12, b"", b"", b"a b+c\nd\0e\xc3\xa9"),
    frame_seed(1 | 4, 0, b"i" * 255, b"e" * 255, b"d"),
    frame_seed(1 | 4 | 8, 0x7fffffff, b"\xc3\xa9-1", b"t\xc3\xa9st", b"x"),
    frame_seed(2, 0, b"", b"", b"nul\0cr\rlf\n"), frame_seed(0, 0, b"", b"", b"data: fake\n\nid: x"),
    frame_seed(1 | 4, 0, b" sp", b" sp", b" : \xef\xbb\xbf"),
]


def num_seed(size, value, bounds=None, directive=0):
    flags = (1 if size else 0) | (2 if bounds else 0)
    head = bytes([flags, directive]) + b"\0" * 15
    if bounds:
        head = bytes([flags]) + struct.pack("<qq", *bounds)
    return head + value


# Directive values (tests/test_config.py, sse_config.h bounds, README).
NUMS = [
    num_seed(True, b"16M"), num_seed(True, b"64K", directive=0), num_seed(True, b"64kb", directive=1),
    num_seed(True, b"1024G"), num_seed(True, b"1T"), num_seed(True, b"512B", directive=1),
    num_seed(True, b"65536"), num_seed(True, b"0"), num_seed(True, b"63K"),
    num_seed(True, b"9223372036854775807", (1, 2 ** 63 - 1)),
    num_seed(True, b"8589934592G", (1, 2 ** 63 - 1)), num_seed(True, b"1.5M", directive=1),
    num_seed(True, b"2GB", (-5, 2 ** 40)), num_seed(True, b"12X"),
    num_seed(False, b"8192"), num_seed(False, b"0", directive=1), num_seed(False, b"86401", directive=1),
    num_seed(False, b"2147483647", directive=2), num_seed(False, b"100000", directive=3),
    num_seed(False, b"16K"), num_seed(False, b"-1", (-10, 10)), num_seed(False, b" 5"),
    num_seed(False, b"99999999999999999999", (0, 2 ** 63 - 1)), num_seed(False, b"007", directive=1),
]
# Times (flags bit 2; SSEPublishKeepAliveWait's bounds): the recommended
# value, a unit spelled out, and the largest allowed.
NUMS += [bytes([4]) + b"x" * 16 + t for t in (b"10ms", b"2mi", b"60s")]


def ring_seed(ops):
    return bytes(ops)


# Operation sequences for fuzz/ring.c: op byte % 8 then its arguments
# (publish: nchan, names, flags, [id], [event], [retry x2], len x2, seed).
RINGS = [
    ring_seed([1, 0, 0, 0, 0, 8, 1, 7, 7, 1, 0, 1, 1, 0, 0, 16, 3]),
    ring_seed([1, 1, 0, 1, 0, 0, 40, 9] * 40 + [7, 15, 0]),
    ring_seed([1, 0, 2, 16, 0x3f, 0xff, 5] * 12),
    ring_seed([1, 2, 3, 4, 5, 1 | 4 | 8 | 32, 2, 3, 1, 2, 1, 200, 11] * 20 + [4, 3, 7, 10, 1]),
    ring_seed(sum(([0, i, 1, 0, i, 0, 0, 30, i] for i in range(24)), [])),
    ring_seed([5, 0x80, 1, 0, 0, 0, 0, 10, 1, 4, 0, 1, 0, 0, 0, 0, 10, 1, 6, 0x90, 1, 0, 0, 1, 0, 10, 1]),
    ring_seed([1, 0, 5, 3, 250, 0, 10, 1, 7, 3, 1] * 30),
    ring_seed([1, 0, 9, 16 | 32, 0x20, 0, 77, 7, 0, 6] * 8),
]
# Inputs that once failed, kept as they were found (not through ring_seed):
# an event with a server id and 15,042 bytes of data, refused by
# sse_ring_fits (longest id) but stored by sse_ring_publish (its real id).
RINGS += [
    bytes.fromhex("96000000 21ffffd2 3ac2a401 00"),
]

# Topic selectors: (selector, topic, expansion bytes), from
# tests/unit/test_units.c test_topic_* (RFC 6570's examples among them).
TOPICS = [
    (b"*", b"https://example.com/books/1", b""), (b"https://example.com/books/1", b"https://example.com/books/1", b""),
    (b"https://example.com/books/1", b"https://example.com/books/10", b""), (b"a\0b", b"a\0b", b""),
    (b"https://example.com/books/{id}", b"https://example.com/books/1", b"\x01\x00\x03abc"),
    (b"https://example.com/books/{id}", b"https://example.com/books/1/2", b"\x01\x00\x07a/b c\xc3\xa9"),
    (b"https://example.com/{+path}", b"https://example.com/a/b?c=d#e", b"\x01\x00\x06/a%2Fb"),
    (b"/doc{#frag}", b"/doc#s1/a", b"\x02\x02\x02ab\x01c"), (b"/file{.ext}", b"/file.tar.gz", b"\x02\x01"),
    (b"/books{/a,b}", b"/books/1/2/3", b"\x01\x00\x01x\x01\x00\x01y"),
    (b"/books{/id*}", b"/books/1/2/3", b"\x03\x02\x01k\x01v\x01j\x00\x01w"),
    (b"/m{;x,y}", b"/m;x=1;y=2", b"\x01\x00\x00\x01\x00\x02ab"),
    (b"/s{?q,r}", b"/s?q=1&r=2&t=3", b"\x02\x02\x01a\x00\x01\x00\x00"),
    (b"/s?a=1{&b*}", b"/s?a=1&b=2&c=3", b"\x03\x01\x01k\x00"),
    (b"{x,keys*}", b"semi=%3B,dot=.", b"\x00\x00\x03\x02\x04semi\x01;\x03dot\x01."),
    (b"{var:3}", b"value", b"\x01\x00\x05value"), (b"{/var:1,var}", b"/v/value", b""),
    (b"{/list*,path:4}", b"/red/green/blue/%2Ffoo", b"\x02\x02\x03red\x05green\x04blue\x01\x00\x04/foo"),
    (b"X{.keys*}", b"X.semi=%3B.dot=..comma=%2C", b"\x03\x02\x04semi\x01;\x03dot\x01."),
    (b"{?keys*}", b"?semi=%3B&dot=.&comma=%2C", b""), (b"{&list}", b"&list=red,green,blue", b""),
    (b"up{+path}{var}/here", b"up/foo/barvalue/here", b""),
    (b"https://example.com/users/{uid}/books/{bid}{?format}", b"https://example.com/users/u1/books/b2?format=json", b""),
    (b"/caf\xc3\xa9/{x}", b"/caf\xc3\xa9/1", b""), (b"/%41/{x}", b"/A/1", b""), (b"'{x}'", b"'a'", b""),
    (b"{x}", b"%aF%Af", b""), (b"{x}", b"%ag", b""),
    (b"{", b"{", b""), (b"{x:0}", b"", b""), (b"{x:10000}", b"", b""), (b"{x:3*}", b"", b""),
    (b"{x..y}", b"", b""), (b"{=x}", b"", b""), (b"{}", b"", b""), (b"a b{x}", b"", b""),
    (b"a}{x}", b"", b""), (b"\xed\xa0\x80{x}", b"", b""), (b"\xef\xb7\x90{x}", b"", b""),
    (b"\xf3\xa1\x80\x80{x}", b"", b""), (b"{x%41.b_1:9999,y*}", b"1,k=v", b""),
    (b"{x}{x}{x}{x}{x}{x}{x}{x}{/z}", b"a" * 60 + b"/", b""), (b"{/a*}" * 10, b"/a" * 30 + b" ", b""),
]

TARGETS = {
    "body_form": FORMS,
    "body_json": JSONS,
    "body_raw": [bytes([(e is not None) | (i is not None) << 1 | (r is not None) << 2])
                 + "\0".join(x or "" for x in (e, i, r)).encode("latin-1") + b"\0" + body
                 for e, i, r, body in RAWS],
    "parse": [bytes([0]) + s for s in STREAMS]
             + [bytes([1, 1]) + s for s in STREAMS[:8]]
             + [bytes([3, 5, 0, 2]) + s for s in STREAMS[8:16]]
             + [bytes([2, 7, 1]) + s for s in STREAMS[16:]],
    "ids": IDS,
    "channels": [sep + sep.join(names) for sep, names in CHANNELS],
    "frame": FRAMES,
    "num": NUMS,
    "ring": RINGS,
    "topic": [b"\n" + b"\n".join(t) for t in TOPICS],
    "jwt": JWTS,
}


def main():
    for target, seeds in TARGETS.items():
        d = ROOT / "corpus" / target
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for s in seeds:
            (d / hashlib.sha1(s).hexdigest()).write_bytes(s)
        print(f"{target}: {len(set(seeds))} seeds")


if __name__ == "__main__":
    main()
