"""The wire format against a reference parser: random events (seeded) are
published as JSON, the raw bytes of the stream that carries them are read
back and parsed by the npm `eventsource-parser` package
(tests/node/parse-stream.mjs), and every event must come back exactly as it
was published: data (with CRLF and lone CR as LF, as the wire format
documents), event type, id and retry, in order, with nothing else but
heartbeat comments."""
import json
import random
import subprocess

import pytest

from ssetest.clients import subscribe
from ssetest.env import NODE_DIR
from ssetest.publish import pub_json
from ssetest.wire import SERVER_ID_RE, HEARTBEAT, expected_client_data, wire_event

PARSER = NODE_DIR / "parse-stream.mjs"
EVENTS_PER_SEED = 150
BODY_MAX = 60000        # under the 64K SSEMaxMessageSize of /pub

# Pieces of data: line ends of every kind, NUL, non-ASCII (2, 3 and 4 byte
# UTF-8, U+2028, a BOM), and text that looks like fields.
PIECES = ["", "a", "plain text", " leading space", "trailing ", ":colon", "data: fake",
          "id: fake\n\nevent: x", "\r", "\n", "\r\n", "\n\r", "\r\r", "\n\n", "\r\n\r\n",
          "\0", "a\0b", "\u00e9", "\u65e5\u672c\u8a9e", "\U0001f600", "\u2028", "\ufeff",
          "\x7f", "\t", "\x01", '{"json": [1, 2]}', "\\", "\u00a0"]
EVENT_TYPES = ["update", "t\u00e9st", "a b", "x:y", " lead", "trail ", "ssefoo", "sse",
               "SSE-upper", "\U0001f600", "e" * 255, "\u00e9" * 127, "tab\there", "\x7f"]
# Ids are what a client can send back in Last-Event-ID: no space or tab at
# an end, no control character but tab (sse_wire_check_id).
ID_STEMS = ["order", "\u00e9-1", "1-2-3", "-1", "17-", "in\tside", "a b", "x:y", "\U0001f600",
            "say \"hi\"", "back\\slash", "\ufeff", "i" * 240]


def random_data(rng):
    r = rng.random()
    if r < 0.08:
        return ""
    if r < 0.14:
        # One long line, or a few.
        alphabet = "abcdefgh \u00e9\u65e5"
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(2000, 8000)))
        return line if rng.random() < 0.5 else line + "\r\n" + line[:1000] + "\n"
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12)))


def random_event(rng, i):
    ev = {"data": random_data(rng)}
    if rng.random() < 0.4:
        ev["event"] = rng.choice(EVENT_TYPES)
    if rng.random() < 0.4:
        # Unique, so that a stale id could not pass for the right one.
        ev["id"] = f"{rng.choice(ID_STEMS)}#{i}"
    if rng.random() < 0.3:
        ev["retry"] = rng.choice([0, 1, 2147483647, rng.randint(0, 2147483647)])
    return ev


def batches(rng, events):
    """Events in publish requests of 1 to 8 (a lone one as an object)."""
    i = 0
    while i < len(events):
        n = rng.randint(1, 8)
        batch = events[i:i + n]
        while len(batch) > 1 and len(body_of(batch)) > BODY_MAX:
            batch = batch[:-1]
        yield batch
        i += len(batch)


def body_of(batch):
    obj = batch[0] if len(batch) == 1 else batch
    return json.dumps(obj, ensure_ascii=False).encode()


def reference_parse(body, seed):
    p = subprocess.run(["node", str(PARSER), "--seed", str(seed)], input=body, cwd=str(NODE_DIR),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_events_parse_back_exactly(srv, chan, seed):
    if not (NODE_DIR / "node_modules" / "eventsource-parser").is_dir():
        pytest.fail("tests/node/node_modules is missing: run scripts/deps.sh")
    rng = random.Random(20261130 + seed)
    events = [random_event(rng, i) for i in range(EVENTS_PER_SEED)]
    ids = []
    with subscribe(srv.port, chan) as s:
        for batch in batches(rng, events):
            r = pub_json(srv.port, None, raw=body_of([dict(e, channel=chan) for e in batch]))
            assert r.status == 200, r
            answers = [r.json] if len(batch) == 1 else r.json
            assert isinstance(answers, list) and len(answers) == len(batch), r
            for ev, a in zip(batch, answers):
                assert a["subscribers"] == 1, r
                if "id" in ev:
                    assert a["id"] == ev["id"], r
                else:
                    assert SERVER_ID_RE.match(a["id"]), r
                ids.append(a["id"])
        assert s.read_until(lambda c: len(c.events()) >= len(events), 30), \
            f"{len(s.events())} of {len(events)} events arrived"
        raw = bytes(s.body)

    # The bytes: exactly the frames of sse_wire.h, and heartbeats between them.
    frames = b"".join(wire_event(i, e["data"].encode(), e.get("event"), e.get("retry"))
                      for i, e in zip(ids, events))
    assert b"".join(b.raw for b in s.blocks() if b.raw != HEARTBEAT) == frames
    assert raw.endswith(b"\n\n")

    # What the reference parser makes of them, fed in random pieces.
    got = reference_parse(raw, seed)
    comments = [x for x in got if x["kind"] == "comment"]
    assert all(x["value"] == "heartbeat" for x in comments), comments
    want = []
    for i, e in zip(ids, events):
        if "retry" in e:
            want.append({"kind": "retry", "value": e["retry"]})
        want.append({"kind": "event", "id": i, "event": e.get("event"),
                     "data": expected_client_data(e["data"])})
    got = [x for x in got if x["kind"] != "comment"]
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"item {n}: got {g!r}, published {w!r}"
