"""Publishing and looking at channels: raw-body, form and JSON publishers,
publish_ok(), channel info and waiting for subscribers; and the checks on
responses published through X-SSE-Publish (ids_of() and friends)."""
import json
import time
import urllib.parse

from .channels import chan_query
from .clients import request
from .wire import SERVER_ID_RE


def get(h, path, **kw):
    return request(h.port, "GET", path, **kw)


# Responses published through X-SSE-Publish (SSEPublishResponses): PHP
# scripts, CGI, proxied and module-made responses alike.

def ids_of(r):
    """The ids a response published, from its X-SSE-Published header."""
    v = r.headers.get("x-sse-published")
    assert v, f"no X-SSE-Published header: {r}"
    return [i.strip() for i in v.split(",")]


def assert_no_publish_headers(r):
    assert "x-sse-publish" not in r.headers and "x-sse-event" not in r.headers, r


def assert_unpublished(h, chan, s, idle):
    """Stream s got nothing for idle seconds and chan holds no event."""
    s.assert_no_event(idle)
    info = channel_info(h.port, chan)
    assert info.status == 200 and info.json["messages"] == 0, info


def pub_raw(port, channel, data=b"", event=None, id=None, retry=None, path="/pub",
            content_type="application/octet-stream", headers=None, **kw):
    """Raw-body publish; channel (str or list) goes in the query string
    (None: path is used as is)."""
    if isinstance(data, str):
        data = data.encode()
    hdrs = {"Content-Type": content_type}
    if event is not None:
        hdrs["SSE-Event"] = event
    if id is not None:
        hdrs["SSE-Id"] = id
    if retry is not None:
        hdrs["SSE-Retry"] = str(retry)
    hdrs.update(headers or {})
    target = path + (chan_query(channel) if channel is not None else "")
    return request(port, "POST", target, body=data, headers=hdrs, **kw)


def pub_form(port, fields, path="/pub", headers=None, **kw):
    """fields: list of (name, value) pairs (or a preformatted body str/bytes)."""
    if isinstance(fields, (str, bytes)):
        body = fields.encode() if isinstance(fields, str) else fields
    else:
        body = urllib.parse.urlencode(fields, quote_via=urllib.parse.quote).encode()
    hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
    hdrs.update(headers or {})
    return request(port, "POST", path, body=body, headers=hdrs, **kw)


def pub_json(port, obj, path="/pub", headers=None, raw=None, **kw):
    body = raw if raw is not None else json.dumps(obj).encode()
    if isinstance(body, str):
        body = body.encode()
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    return request(port, "POST", path, body=body, headers=hdrs, **kw)


def publish_ok(port, channel, data=b"", **kw):
    """Raw publish that must succeed; returns the new id."""
    r = pub_raw(port, channel, data, **kw)
    assert r.status == 200, r
    assert isinstance(r.json, dict) and isinstance(r.json.get("id"), str), r
    if kw.get("id") is None:
        assert SERVER_ID_RE.match(r.json["id"]), r
    else:
        assert r.json["id"] == kw["id"], r
    return r.json["id"]


def channel_info(port, channel, path="/pub"):
    return request(port, "GET", path + chan_query(channel))


def wait_subscribers(port, channel, n, timeout=10, path="/pub"):
    """Poll the channel info until it reports n subscribers."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = channel_info(port, channel, path)
        if last.status == 200 and last.json and last.json.get("subscribers") == n:
            return last
        time.sleep(0.05)
    raise AssertionError(f"channel {channel} never had {n} subscribers; last info {last}")
