"""The sse-status location: fetching its JSON and Prometheus forms, parsing
the Prometheus text exposition format strictly (every sample has HELP and
TYPE before it), and waiting for a figure to settle."""
import re
import time

from .clients import request

STATUS_LOCATION = """
<Location /sse-status>
    SetHandler sse-status
</Location>
"""

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Every metric the module exports, with its type (README "Operating").
METRICS = {
    "sse_subscribers": "gauge",
    "sse_slow_subscribers": "gauge",
    "sse_streams_detached": "gauge",
    "sse_max_subscribers": "gauge",
    "sse_channels": "gauge",
    "sse_ring_size_bytes": "gauge",
    "sse_ring_used_bytes": "gauge",
    "sse_ring_oldest_event_age_seconds": "gauge",
    "sse_streams_opened_total": "counter",
    "sse_overload_refusals_total": "counter",
    "sse_events_published_total": "counter",
    "sse_publish_requests_total": "counter",
    "sse_publish_rejected_total": "counter",
    "sse_events_delivered_total": "counter",
    "sse_replayed_events_total": "counter",
    "sse_gaps_total": "counter",
    "sse_heartbeats_total": "counter",
    "sse_bytes_sent_total": "counter",
    "sse_stream_catchups_total": "counter",
    "sse_ring_evicted_events_total": "counter",
    "sse_redis_up": "gauge",
    "sse_redis_errors_total": "counter",
}
# Shown only by a server with SSERedis: the others leave them out.
REDIS_METRICS = {"sse_redis_up", "sse_redis_errors_total"}
REASONS = ("bad_request", "forbidden", "method_not_allowed", "too_large", "unavailable",
           "internal", "failed_response")
REDIS_OPS = ("publish", "delete", "read", "follow")

_SAMPLE = re.compile(r'^([a-z_]+)(?:\{(?:reason|op)="([a-z_]+)"\})? (\S+)$')


def status_json(port, path="/sse-status"):
    r = request(port, "GET", path)
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/json", r
    assert isinstance(r.json, dict), r
    return r.json


def status_prometheus(port, path="/sse-status?format=prometheus", headers=None, redis=False):
    r = request(port, "GET", path, headers=headers)
    assert r.status == 200, r
    assert r.headers["content-type"] == PROMETHEUS_TYPE, r
    return parse_prometheus(r.body.decode(), redis)


def parse_prometheus(text, redis=False):
    """{name: value} with labelled samples as {name: {label: value}}; checks
    that each metric has exactly one HELP and one TYPE line before its
    samples, and that nothing else is in the text. redis: the server has
    SSERedis (the Redis metrics are there), else they must be absent."""
    out, helped, typed = {}, set(), {}
    assert text.endswith("\n"), text[-80:]
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helped, line
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in typed, line
            typed[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, reason, value = m.groups()
        assert name in helped and name in typed, f"sample before HELP/TYPE: {line}"
        v = float(value)
        if reason:
            out.setdefault(name, {})[reason] = v
        else:
            assert name not in out, f"{name} twice"
            out[name] = v
    want = {k: v for k, v in METRICS.items() if redis or k not in REDIS_METRICS}
    assert typed == want, typed
    return out


def wait_figure(port, name, want, timeout=10):
    """Poll the JSON form until figure `name` equals want; returns the form."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = status_json(port)
        if last.get(name) == want:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{name} never became {want}; last {last}")
