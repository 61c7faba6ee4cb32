"""Publishing from another module: tests/modules/mod_sse_test.c, built here
with apxs, calls mod_sse's optional function sse_publish from a handler."""
import pytest

from ssetest.channels import q, uniq
from ssetest.clients import request, subscribe
from ssetest.publish import channel_info
from ssetest.wire import SERVER_ID_RE, wire_event
from testmod import sse_testmod_conf

CONF = """
<Location /t-publish>
    SetHandler sse-test-publish
</Location>
"""


def conf(so):
    return sse_testmod_conf(so, CONF)


def t_publish(port, channel, data, event=None, id=None):
    qs = f"channel={q(channel)}&data={q(data)}"
    if event is not None:
        qs += f"&event={q(event)}"
    if id is not None:
        qs += f"&id={q(id)}"
    return request(port, "GET", "/t-publish?" + qs)


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_module_publishes_to_subscribers(httpd, sse_testmod_so, mpm):
    h = httpd(mpm=mpm, conf=conf(sse_testmod_so))
    chan = uniq("mod")
    with subscribe(h.port, chan) as s1, subscribe(h.port, [chan, "other"]) as s2:
        r = t_publish(h.port, chan, "from a module\nline two", event="update")
        assert r.status == 200, r
        i1 = r.body.decode().strip()
        assert SERVER_ID_RE.match(i1), r
        r = t_publish(h.port, chan, "chosen id", id="mod-42")
        assert r.status == 200 and r.body == b"mod-42\n", r
        want = [wire_event(i1, b"from a module\nline two", event="update"),
                wire_event("mod-42", b"chosen id")]
        for s in (s1, s2):
            assert [e.raw for e in s.next_events(2)] == want
    info = channel_info(h.port, chan)
    assert info.status == 200 and info.json["messages"] == 2 and info.json["last_id"] == "mod-42"


def test_module_gets_the_same_checks(httpd, sse_testmod_so):
    h = httpd(conf=conf(sse_testmod_so))
    chan = uniq("mod")
    with subscribe(h.port, chan) as s:
        for args, why in [((chan, "x", "sse-gap"), "reserved"),
                          (("bad name", "x"), "channel"),
                          ((chan, "x", None, "1-2"), "id")]:
            r = t_publish(h.port, *args)
            assert r.status == 400, r
            assert r.body.startswith(b"refused: ") and why.encode() in r.body.lower(), r
        s.assert_no_event(0.5)
    info = channel_info(h.port, chan)
    assert info.status == 200 and info.json["messages"] == 0, info


def test_module_without_mod_sse(httpd, sse_testmod_so):
    """The optional function is simply absent: the caller can tell."""
    h = httpd(conf=conf(sse_testmod_so), std_locations=False,
              load_sse=False)
    r = t_publish(h.port, "c", "x")
    assert r.status == 503 and b"not available" in r.body, r
