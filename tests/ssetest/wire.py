"""The exact bytes mod_sse writes: server-form ids and their order, the
heartbeat comment, the id/event/retry/data lines of an event, and what a
conforming client makes of published data."""
import re

SERVER_ID_RE = re.compile(r"^([0-9]+)-([0-9]+)$")
HEARTBEAT = b": heartbeat\n\n"


def server_id_key(i):
    """Sort key of a server-form id ('<ms>-<seq>'), compared numerically."""
    m = SERVER_ID_RE.match(i)
    assert m, f"not a server-form id: {i!r}"
    return (int(m.group(1)), int(m.group(2)))


def assert_strictly_increasing(ids):
    keys = [server_id_key(i) for i in ids]
    for a, b, ia, ib in zip(keys, keys[1:], ids, ids[1:]):
        assert a < b, f"ids not strictly increasing: {ia} then {ib} (all: {ids})"


def expected_client_data(data):
    """What a conforming client receives for published data (str)."""
    return data.replace("\r\n", "\n").replace("\r", "\n")


def wire_data_lines(data: bytes) -> bytes:
    """The `data:` lines mod_sse writes for `data` (see decisions: split on
    CRLF, LF, lone CR; every line 'data: <line>\\n')."""
    lines = re.split(rb"\r\n|\n|\r", data)
    return b"".join(b"data: " + ln + b"\n" for ln in lines)


def wire_event(id, data: bytes, event=None, retry=None) -> bytes:
    out = b"id: " + id.encode() + b"\n"
    if event is not None:
        out += b"event: " + event.encode() + b"\n"
    if retry is not None:
        out += b"retry: " + str(retry).encode() + b"\n"
    return out + wire_data_lines(data) + b"\n"
