"""The sse-mercure handler: Apache as a Mercure hub (issue 13).

Each test runs a real httpd with a hub at /.well-known/mercure (HS256 keys
of its own for publishers and subscribers) and talks to it the way
symfony/mercure and EventSource do: form-encoded POSTs with a Bearer token,
GETs with topic selectors and a token in the header, the query or the
cookie. Streams are read byte for byte (ssetest.clients.SSEClient), so
every assertion is on the exact frames a client receives: no metadata, no
event for a subscriber whose selectors or token do not allow it.

Covered: publish/subscribe, several topics (canonical and alternate), URI
templates and *, private updates (anonymous subscribers and tokens whose
mercure.subscribe does not match get nothing; matching the canonical or an
alternate topic is enough), SSEMercureAnonymous off, every kind of bad token
(401 with the exact WWW-Authenticate), publish refused outside
mercure.publish (403) and bad fields (400 naming them), token precedence
(header, query, cookie; SSEMercureCookieName), replay with Last-Event-ID,
lastEventID and earliest and the Last-Event-ID response header, a stream
ending at its token's exp, subscription updates and the subscriptions API,
CORS on the hub, and with SSERedis an update published on server A's hub
reaching a subscriber of server B's. From the protocol review: the reserved
/.well-known/mercure namespace (403), no publishing with the cookie (CSRF),
empty optional fields, the namespaced claim, resumption after a publisher's
id and after overwritten updates (Last-Event-ID: earliest), the API by
topic, hostile input (4xx naming the problem) and selectors too costly to
match.

Tokens are minted by tests/ssetest/mercure.py (HS256 here; the other
algorithms are the verifier's unit tests' and test_mercure_php.py's)."""
import json
import socket
import time
import urllib.parse

import pytest

from ssetest.channels import uniq
from ssetest.clients import SSEClient, request
from ssetest.mercure import b64url, hmac_key, mint
from ssetest.wire import wire_event

HUB = "/.well-known/mercure"
PUB_KEY = "publisher-secret-of-the-tests-0123456789"
SUB_KEY = "subscriber-secret-of-the-tests-9876543210"

HUB_CONF = f"""
<Location {HUB}>
    SetHandler sse-mercure
    SSEMercurePublisherJWT {PUB_KEY}
    SSEMercureSubscriberJWT {SUB_KEY} HS256
    SSEMercureAnonymous on
    {{extra}}
</Location>
"""


def b64(data: bytes) -> str:
    return b64url(data)


def token(claims, key=SUB_KEY, header=None):
    """An HS256 JWT (compact form) of claims, signed with key (the shared
    minting of tests/ssetest/mercure.py)."""
    return mint(hmac_key(key), claims, header)


def pub_token(publish=("*",), **more):
    return token({"mercure": {"publish": list(publish)}, **more}, key=PUB_KEY)


def sub_token(subscribe=("*",), payload=None, **more):
    m = {"subscribe": list(subscribe)}
    if payload is not None:
        m["payload"] = payload
    return token({"mercure": m, **more}, key=SUB_KEY)


def publish(port, fields, tok=None, headers=None, path=HUB):
    """POSTs an update (fields: list of (name, value)); the response."""
    hdrs = {"Content-Type": "application/x-www-form-urlencoded"}
    if tok is not False:
        hdrs["Authorization"] = "Bearer " + (tok or pub_token())
    hdrs.update(headers or {})
    return request(port, "POST", path, body=urllib.parse.urlencode(fields).encode(),
                   headers=hdrs)


def publish_ok(port, fields, tok=None):
    r = publish(port, fields, tok)
    assert r.status == 200, r
    assert r.headers.get("content-type") == "text/plain; charset=utf-8"
    return r.body.decode()


def hub_path(topics, **query):
    q = [("topic", t) for t in topics] + list(query.items())
    return HUB + "?" + urllib.parse.urlencode(q)


def sub(port, topics, tok=None, headers=None, **query):
    """A subscriber of topics (a token in the Authorization header if tok)."""
    hdrs = dict(headers or {})
    if tok:
        hdrs["Authorization"] = "Bearer " + tok
    return SSEClient(port, hub_path(topics, **query), headers=hdrs)


@pytest.fixture
def hub(httpd):
    # Room for a header larger than the verifier accepts (8K), to see it refused.
    return httpd(conf=HUB_CONF.format(extra=""), server_conf="LimitRequestFieldSize 16384",
                 name="mercure")


def www_auth(why=None):
    if why is None:
        return 'Bearer realm="mercure"'
    return f'Bearer realm="mercure", error="invalid_token", error_description="{why}"'


# ---------------------------------------------------------------- pub/sub

def test_publish_reaches_subscribers_of_its_topic_only(hub):
    topic = "https://example.com/books/" + uniq("b")
    with sub(hub.port, [topic]) as s, sub(hub.port, [topic + "/other"]) as other:
        assert s.status == 200
        assert s.headers["content-type"] == "text/event-stream; charset=utf-8"
        id_ = publish_ok(hub.port, [("topic", topic), ("data", '{"title": "x"}')])
        # The hub's own id, the ring's stamp; no metadata reaches the client.
        assert s.next_event().raw == wire_event(id_, b'{"title": "x"}')
        other.assert_no_event(0.5)
        s.assert_no_event(0.2)


def test_fields_and_alternate_topics(hub):
    canonical, alternate = "https://example.com/a/" + uniq("t"), "urn:x:" + uniq("alt")
    with sub(hub.port, [alternate]) as s:
        id_ = publish_ok(hub.port, [("topic", canonical), ("topic", alternate),
                                    ("data", "line1\nline2"), ("id", "urn:uuid:mine-1"),
                                    ("type", "book-updated"), ("retry", "2500")])
        assert id_ == "urn:uuid:mine-1"
        assert s.next_event().raw == wire_event("urn:uuid:mine-1", b"line1\nline2",
                                                event="book-updated", retry=2500)
        # No data: an empty data line, as EventSource expects.
        id2 = publish_ok(hub.port, [("topic", alternate)])
        assert s.next_event().raw == wire_event(id2, b"")


def test_topics_are_any_string(hub):
    # Not a channel name, not a valid URI template: a selector all the same,
    # that matches itself exactly (the protocol: "any string").
    topic = "not a channel name: ünïcode {} ?&=#%"
    with sub(hub.port, [topic]) as s, sub(hub.port, ["not a channel name: {x}"]) as t:
        id_ = publish_ok(hub.port, [("topic", topic), ("data", "d")])
        assert s.next_event().raw == wire_event(id_, b"d")
        t.assert_no_event(0.3)


@pytest.mark.parametrize("selector,topic,want", [
    ("https://example.com/books/{id}", "https://example.com/books/1", True),
    ("https://example.com/books/{id}", "https://example.com/books/1/chapters", False),
    ("https://example.com/{+path}", "https://example.com/a/b/c", True),
    ("https://example.com/books{/id*}", "https://example.com/books/1/2", True),
    ("https://example.com/search{?q,page}", "https://example.com/search?q=x&page=2", True),
    ("https://example.com/search{?q}", "https://example.com/search/x", False),
    ("https://example.com/{a}/{b}", "https://example.com/1", False),
    ("*", "anything at all", True),
])
def test_uri_template_selectors(hub, selector, topic, want):
    with sub(hub.port, [selector]) as s:
        id_ = publish_ok(hub.port, [("topic", topic), ("data", "x")])
        if want:
            assert s.next_event().raw == wire_event(id_, b"x")
        else:
            s.assert_no_event(0.5)


# ---------------------------------------------------------------- private

@pytest.mark.parametrize("direct", ["on", "off", "detach"])
def test_private_updates_reach_only_authorized_subscribers(httpd, direct):
    # on: the dispatcher filters and writes to the socket; off: it filters
    # and queues, and the stream's thread strips the metadata. detach: a
    # hub's streams are never detached (their filter and token expiry are
    # the handler's), so they stay on the direct path.
    extra = "SSEDirectWrite on\n    SSEDetach on" if direct == "detach" else f"SSEDirectWrite {direct}"
    hub = httpd(conf=HUB_CONF.format(extra=extra))
    book = "https://example.com/books/" + uniq("p")
    user = "https://example.com/users/foo/?topic=" + urllib.parse.quote(book, safe="")
    tok_all = sub_token(["*"])
    tok_user = sub_token(["https://example.com/users/foo/{?topic}"])
    tok_other = sub_token(["https://example.com/users/bar/{?topic}"])
    with sub(hub.port, [book]) as anon, \
            sub(hub.port, [book], tok_all) as full, \
            sub(hub.port, ["https://example.com/books/{id}"], tok_user) as by_alt, \
            sub(hub.port, [book], tok_other) as other:
        id_ = publish_ok(hub.port, [("topic", book), ("topic", user), ("data", "secret"),
                                    ("private", "on")])
        want = wire_event(id_, b"secret")
        assert full.next_event().raw == want
        # Its subscribe claim matches the alternate topic only: enough.
        assert by_alt.next_event().raw == want
        anon.assert_no_event(0.3)
        other.assert_no_event(0.3)
        # Public updates reach everyone subscribed; an empty private is private.
        pub = publish_ok(hub.port, [("topic", book), ("data", "public")])
        priv = publish_ok(hub.port, [("topic", book), ("data", "p2"), ("private", "")])
        assert anon.next_event().raw == wire_event(pub, b"public")
        assert other.next_event().raw == wire_event(pub, b"public")
        assert [e.raw for e in full.next_events(2)] == [wire_event(pub, b"public"),
                                                        wire_event(priv, b"p2")]
        anon.assert_no_event(0.3)
    if direct == "detach":
        log = hub.error_log()
        assert log.count("SSE00304") == 4 and "SSE00311" not in log, log


def test_anonymous_off_requires_a_token(httpd):
    h = httpd(conf=HUB_CONF.format(extra="SSEMercureAnonymous off"))
    r = request(h.port, "GET", hub_path(["*"]))
    assert r.status == 401
    assert r.headers.get("www-authenticate") == www_auth()
    with sub(h.port, ["*"], sub_token()) as s:
        assert s.status == 200
        id_ = publish_ok(h.port, [("topic", "t"), ("data", "ok")])
        assert s.next_event().raw == wire_event(id_, b"ok")


# ---------------------------------------------------------------- bad tokens

def bad_tokens():
    good = sub_token()
    head, body, sig = good.split(".")
    none_head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    rs_head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return {
        "wrong key": (token({"mercure": {"subscribe": ["*"]}}, key="not-the-key"),
                      "bad signature"),
        "alg none": (f"{none_head}.{body}.", "algorithm not allowed"),
        "alg none signed": (f"{none_head}.{body}.{sig}", "algorithm not allowed"),
        "RS256 header": (token({"mercure": {"subscribe": ["*"]}},
                               header={"alg": "RS256", "typ": "JWT"}), "algorithm not allowed"),
        "RS256 header, HS256 signature": (f"{rs_head}.{body}.{sig}", "algorithm not allowed"),
        "expired": (sub_token(exp=int(time.time()) - 10), "token expired"),
        "malformed base64": (f"{head}.{body[:-2]}!!.{sig}", "malformed token"),
        "two segments": (f"{head}.{body}", "malformed token"),
        "enormous": (f"{head}.{'A' * 9000}.{sig}", "token too large"),
    }


@pytest.mark.parametrize("kind", sorted(bad_tokens()))
def test_bad_tokens_are_401(hub, kind):
    tok, why = bad_tokens()[kind]
    r = request(hub.port, "GET", hub_path(["*"]), headers={"Authorization": "Bearer " + tok})
    assert r.status == 401, r
    assert r.headers.get("www-authenticate") == www_auth(why)
    assert r.json == {"error": "invalid token: " + why}
    # The same token as a publisher's.
    r = publish(hub.port, [("topic", "t")], tok)
    assert r.status == 401, r
    # Never a crash: the hub still serves.
    assert publish(hub.port, [("topic", "t")]).status == 200


def test_namespaced_mercure_claim(hub):
    # Identity providers that require namespaced custom claims (Auth0, ...)
    # issue the claim as "https://mercure.rocks/"; the Go hub reads it, in
    # place of "mercure" when both are there.
    topic = "https://example.com/ns/" + uniq("n")
    ns = "https://mercure.rocks/"
    sub_tok = token({ns: {"subscribe": [topic]}, "mercure": {"subscribe": ["other"]}})
    pub_tok = token({ns: {"publish": [topic]}}, key=PUB_KEY)
    with sub(hub.port, [topic], sub_tok) as s:
        id_ = publish_ok(hub.port, [("topic", topic), ("data", "p"), ("private", "on")],
                         pub_tok)
        assert s.next_event().raw == wire_event(id_, b"p")
    r = publish(hub.port, [("topic", "elsewhere")], pub_tok)
    assert r.status == 403, r
    r = publish(hub.port, [("topic", topic)], token({ns: ["x"]}, key=PUB_KEY))
    assert r.status == 401 and r.headers.get("www-authenticate") == www_auth("malformed claims")


def test_authorization_header_must_be_bearer(hub):
    r = request(hub.port, "GET", hub_path(["*"]), headers={"Authorization": "Basic eDp5"})
    assert r.status == 401
    assert r.headers.get("www-authenticate") == www_auth(
        "the Authorization header is not a Bearer token")


# ---------------------------------------------------------------- publishing

def test_publish_needs_a_token_covering_every_topic(hub):
    r = publish(hub.port, [("topic", "a")], tok=False)
    assert r.status == 401 and r.headers.get("www-authenticate") == www_auth()
    # A subscriber's key does not sign publishers.
    r = publish(hub.port, [("topic", "a")], tok=sub_token())
    assert r.status == 401 and r.headers.get("www-authenticate") == www_auth("bad signature")
    tok = pub_token(["https://example.com/books/{id}"])
    with sub(hub.port, ["*"]) as s:
        r = publish(hub.port, [("topic", "https://example.com/books/1"),
                               ("topic", "https://example.com/users/1")], tok)
        assert r.status == 403, r
        assert r.json == {"error": "topic 'https://example.com/users/1' is not allowed by "
                                   "the token's mercure.publish"}
        r = publish(hub.port, [("topic", "a")], token({"mercure": {"publish": []}}, PUB_KEY))
        assert r.status == 403, r
        r = publish(hub.port, [("topic", "a")], token({"sub": "x"}, PUB_KEY))
        assert r.status == 403, r
        s.assert_no_event(0.3)
        id_ = publish_ok(hub.port, [("topic", "https://example.com/books/1"), ("data", "y")],
                         tok)
        assert s.next_event().raw == wire_event(id_, b"y")


@pytest.mark.parametrize("fields,status,why", [
    ([("data", "x")], 400, "topic: missing (name the update's topic; the first is canonical)"),
    ([("topic", "a"), ("id", "#frag")], 400,
     "id: ids beginning with '#' are the hub's (the protocol reserves them)"),
    ([("topic", "a"), ("id", "12-3")], 400,
     "id: ids of the form <digits>-<digits> are reserved for server-assigned ids"),
    ([("topic", "a"), ("retry", "soon")], 400, "retry: retry must be all digits (milliseconds)"),
    ([("topic", "a"), ("type", "x\ny")], 400, "type: event type contains a line break"),
    ([("topic", "a\nb")], 400, "topic 'a\\nb' contains a line break or a NUL byte"),
    ([("topic", "")], 400, "topic is empty"),
    ([("topic", f"t{i}") for i in range(65)], 400, "topic: more than 64 topics in one update"),
])
def test_publish_bad_fields_are_400(hub, fields, status, why):
    r = publish(hub.port, fields)
    assert r.status == status, r
    assert r.json == {"error": why}


def test_update_larger_than_the_ring_is_413(httpd):
    h = httpd(conf=HUB_CONF.format(extra=""), server_conf="SSEBufferSize 64K")
    r = publish(h.port, [("topic", "a"), ("data", "x" * 20000)])
    assert r.status == 413, r
    assert r.json == {"error": "event too large for the event ring (raise SSEBufferSize)"}
    # Its topics count: the same data fits with one topic, not with 64 long ones.
    assert publish(h.port, [("topic", "a"), ("data", "x" * 10000)]).status == 200
    r = publish(h.port, [("topic", f"https://example.com/{i:03d}/" + "t" * 100)
                         for i in range(64)] + [("data", "x" * 10000)])
    assert r.status == 413, r


def test_publish_must_be_form_encoded(hub):
    r = publish(hub.port, [("topic", "a")], headers={"Content-Type": "application/json"})
    assert r.status == 415, r


def test_publish_refuses_the_hubs_reserved_namespace(hub):
    # Topics under /.well-known/mercure are the hub's own (subscription
    # updates): a publisher that could post there would forge presence for
    # every subscriber of those topics. The Go hub refuses any topic holding
    # the path (403), canonical or alternate; so does this one.
    forged = "/.well-known/mercure/subscriptions/a/urn%3Auuid%3A1"
    with sub(hub.port, ["*"], tok=sub_token()) as s:
        for topics in ([forged], ["https://example.com/x", "https://example.com"
                                  "/.well-known/mercure/subscriptions/b/c"]):
            r = publish(hub.port, [("topic", t) for t in topics] + [("data", "f")])
            assert r.status == 403, r
            assert r.json == {"error": f"topic '{topics[-1]}' is in the hub's reserved "
                                       "namespace (/.well-known/mercure): only the hub "
                                       "publishes there"}
        s.assert_no_event(0.3)
        # Near misses are ordinary topics.
        id_ = publish_ok(hub.port, [("topic", "https://example.com/.well-known/mercur"),
                                    ("data", "ok")])
        assert s.next_event().raw == wire_event(id_, b"ok")


def test_publish_does_not_take_the_cookie(hub):
    # A browser sends the cookie with any cross-site form POST: taking it
    # for publishing is CSRF (the protocol: a hub reading it there MUST
    # check Origin; this one does not read it there at all).
    tok = pub_token()
    with sub(hub.port, ["*"]) as s:
        r = request(hub.port, "POST", HUB, body=b"topic=a&data=csrf",
                    headers={"Content-Type": "application/x-www-form-urlencoded",
                             "Cookie": "mercureAuthorization=" + tok,
                             "Origin": "https://evil.example"})
        assert r.status == 401, r
        assert r.headers.get("www-authenticate") == www_auth()
        assert r.json == {"error": "publishing takes the token from the Authorization "
                                   "header or the authorization parameter, not the cookie"}
        s.assert_no_event(0.3)
        # The same token in the header or the query publishes.
        id_ = publish_ok(hub.port, [("topic", "a"), ("data", "h")], tok)
        assert s.next_event().raw == wire_event(id_, b"h")
        r = request(hub.port, "POST", HUB + "?authorization=" + tok, body=b"topic=a&data=q",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 200, r
        assert s.next_event().raw == wire_event(r.body.decode(), b"q")


def test_publish_empty_optional_fields_are_absent(hub):
    # A form posts every field it has, empty or not: an empty id, type or
    # retry is an absent one (the Go hub's reading), not a 400.
    topic = uniq("empty")
    with sub(hub.port, [topic]) as s:
        id_ = publish_ok(hub.port, [("topic", topic), ("data", "x"), ("id", ""),
                                    ("type", ""), ("retry", "")])
        assert s.next_event().raw == wire_event(id_, b"x")


def test_hostile_input_gets_a_clear_4xx(hub):
    """Every hostile request is refused with a status and a message naming
    what is wrong, and the child that refused it goes on serving."""
    form = {"Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "Bearer " + pub_token()}
    cases = [
        # A form over SSEMaxMessageSize (64K by default).
        ("POST", HUB, b"topic=a&data=" + b"x" * 70000, 413, None),
        # 1,000 topics in one update.
        ("POST", HUB, "&".join(f"topic=t{i}" for i in range(1000)).encode(), 400,
         "topic: more than 64 topics in one update"),
        # Malformed percent-encoding, in the body and in the query.
        ("POST", HUB, b"topic=%zz&data=x", 400, "malformed %-escape in urlencoded data"),
        ("POST", HUB, b"topic=a&data=%4", 400, "malformed %-escape in urlencoded data"),
        ("GET", HUB + "?topic=%zz", None, 400, "malformed %-escape in urlencoded data"),
        # NUL bytes in every field that ends up in a header line of a frame.
        ("POST", HUB, b"topic=a%00b", 400, "topic 'a\\0b' contains a line break or a NUL byte"),
        ("POST", HUB, b"topic=a&id=x%00y", 400, "id: id contains a NUL byte"),
        ("POST", HUB, b"topic=a&type=x%00y", 400, "type: event type contains a NUL byte"),
        ("POST", HUB, b"topic=a&retry=1%002", 400,
         "retry: retry must be all digits (milliseconds)"),
        # Too many selectors, and one too long.
        ("GET", hub_path([f"s{i}" for i in range(33)]), None, 400,
         "topic: more than 32 selectors"),
        ("GET", hub_path(["x" * 1025]), None, 400,
         "topic: a selector is empty or longer than 1024 bytes"),
        ("GET", hub_path([""]), None, 400,
         "topic: a selector is empty or longer than 1024 bytes"),
        # A topic over the limit.
        ("POST", HUB, b"topic=" + b"t" * 4097, 400, "topic longer than 4096 bytes"),
    ]
    for method, path, body, status, why in cases:
        r = request(hub.port, method, path, body=body,
                    headers=form if method == "POST" else {})
        assert r.status == status, (path[:80], body and body[:80], r)
        if why is not None:
            assert r.json == {"error": why}, (path[:80], body and body[:80])
    # Still serving, every child (several connections).
    for _ in range(4):
        assert publish(hub.port, [("topic", "t")]).status == 200


def test_pathological_templates_match_in_bounded_time(hub):
    # Selectors that make a backtracking matcher explode (nested, adjacent
    # expressions over a long topic that almost matches): the matcher runs
    # in O(topic x program), so the hub delivers, refuses and goes on.
    nasty = ["{+a}" * 200 + "!", "{a,b,c,d,e,f,g,h,i,j,k,l}" * 35 + "!",
             "x{/a*}{/b*}{/c*}{/d*}{/e*}{/f*}{/g*}{/h*}!", "{;a*}{;b*}{;c*}{?d*}{&e*}!"]
    long_topic = "x" + "/a" * 2000
    with sub(hub.port, nasty) as bad, sub(hub.port, ["{+a}" * 200]) as good:
        assert bad.status == 200 and good.status == 200
        for _ in range(5):
            publish_ok(hub.port, [("topic", long_topic), ("data", "d")])
        id_ = publish_ok(hub.port, [("topic", long_topic + "!"), ("data", "hit")])
        # {+a}*200 then '!' matches the topic ending in '!'; the others do not.
        assert bad.next_event().raw == wire_event(id_, b"hit")
        assert [e.raw for e in good.next_events(5)][-1].endswith(b"data: d\n\n")
        bad.assert_no_event(0.3)


def test_selectors_too_costly_to_match_are_400(httpd):
    # Each selector is matched against every update of the hub in the
    # dispatcher: a subscription whose templates together cost more than
    # SSE_MERCURE_COST_MAX per topic byte is refused, naming the cost.
    # (A request line long enough for 32 selectors of 1K: httpd's own limit
    # would answer 414 first otherwise.)
    hub = httpd(conf=HUB_CONF.format(extra=""), server_conf="LimitRequestLine 400000",
                name="mercure-cost")
    heavy = "{+a}" * 255                       # 1,020 bytes, hundreds of positions
    r = request(hub.port, "GET", hub_path([heavy + str(i) for i in range(32)]))
    assert r.status == 400, r
    why = r.json["error"]
    assert why.startswith("topic: the selectors' templates are too complex to match (cost ")
    assert why.endswith(", at most 4096): use fewer or shorter expressions")
    assert int(why.split("(cost ")[1].split(",")[0]) > 4096
    # Ordinary templates cost 1 each: 32 of them subscribe, and so does one
    # heavy template alone.
    cheap = [f"https://example.com/books{i}/{{id}}{{?page}}" for i in range(32)]
    with sub(hub.port, cheap) as s, sub(hub.port, [heavy]) as t:
        assert s.status == 200 and t.status == 200
        id_ = publish_ok(hub.port, [("topic", "https://example.com/books7/1?page=2"),
                                    ("data", "c")])
        assert s.next_event().raw == wire_event(id_, b"c")


# ---------------------------------------------------------------- token sources

def test_token_precedence_header_query_cookie(httpd):
    h = httpd(conf=HUB_CONF.format(extra="SSEMercureAnonymous off\n"
                                         "    SSEMercureCookieName hubtok"))
    good, bad = sub_token(), sub_token(exp=1)
    cases = [
        ({"Authorization": "Bearer " + good}, {"authorization": bad}, f"hubtok={bad}", 200),
        ({"Authorization": "Bearer " + bad}, {"authorization": good}, f"hubtok={good}", 401),
        ({}, {"authorization": good}, f"hubtok={bad}", 200),
        ({}, {"authorization": bad}, f"hubtok={good}", 401),
        ({}, {}, f"a=b; hubtok={good}; c=d", 200),
        ({}, {}, f"mercureAuthorization={good}", 401),     # not this hub's cookie name
    ]
    for headers, query, cookie, want in cases:
        hdrs = dict(headers, Cookie=cookie)
        if want == 200:
            with SSEClient(h.port, hub_path(["*"], **query), headers=hdrs) as s:
                assert s.status == 200, (headers, query, cookie)
        else:
            r = request(h.port, "GET", hub_path(["*"], **query), headers=hdrs)
            assert r.status == 401, (headers, query, cookie, r)


# ---------------------------------------------------------------- replay

def test_replay_last_event_id_and_earliest(hub):
    topic = "https://example.com/r/" + uniq("r")
    ids = [publish_ok(hub.port, [("topic", topic), ("data", f"e{i}")]) for i in range(3)]
    publish_ok(hub.port, [("topic", "elsewhere"), ("data", "no")])
    want = [wire_event(i, f"e{n}".encode()) for n, i in enumerate(ids)]
    # From an id: what followed, and the header names it.
    with sub(hub.port, [topic], headers={"Last-Event-ID": ids[0]}) as s:
        assert s.headers["last-event-id"] == ids[0]
        assert [e.raw for e in s.next_events(2)] == want[1:]
        s.assert_no_event(0.3)
    # The header wins over the query parameter.
    with sub(hub.port, [topic], headers={"Last-Event-ID": ids[1]}, lastEventID=ids[0]) as s:
        assert s.headers["last-event-id"] == ids[1]
        assert s.next_event().raw == want[2]
        s.assert_no_event(0.3)
    with sub(hub.port, [topic], lastEventID=ids[1]) as s:
        assert s.headers["last-event-id"] == ids[1]
        assert s.next_event().raw == want[2]
    # earliest: everything retained on its topics.
    with sub(hub.port, [topic], lastEventID="earliest") as s:
        assert s.headers["last-event-id"] == "earliest"
        assert [e.raw for e in s.next_events(3)] == want
        s.assert_no_event(0.3)
    # An id the hub does not know: everything retained, and the header says so.
    with sub(hub.port, [topic], lastEventID="urn:uuid:unknown") as s:
        assert s.headers["last-event-id"] == "earliest"
        assert [e.raw for e in s.next_events(3)] == want
    # No id asked: no history, no header.
    with sub(hub.port, [topic]) as s:
        assert "last-event-id" not in s.headers
        s.assert_no_event(0.3)


def test_replay_after_overwritten_updates_says_earliest(httpd):
    # The header must be the id of the event preceding the first one sent:
    # when what followed the asked id was overwritten, that is not the
    # asked id, and only "earliest" lets the client see it lost updates.
    h = httpd(conf=HUB_CONF.format(extra=""), server_conf="SSEBufferSize 64K")
    topic = uniq("gap")
    first = publish_ok(h.port, [("topic", topic), ("data", "first")])
    publish_ok(h.port, [("topic", topic), ("data", "lost")])
    for i in range(60):    # 60 x 2K through a 64K ring: "lost" is overwritten
        publish_ok(h.port, [("topic", "filler"), ("data", "f" * 2000)])
    last = publish_ok(h.port, [("topic", topic), ("data", "last")])
    with sub(h.port, [topic], headers={"Last-Event-ID": first}) as s:
        assert s.headers["last-event-id"] == "earliest"
        assert s.next_event().raw == wire_event(last, b"last")
        s.assert_no_event(0.3)
    # Nothing lost after the newest: the asked id, as before.
    with sub(h.port, [topic], headers={"Last-Event-ID": last}) as s:
        assert s.headers["last-event-id"] == last
        s.assert_no_event(0.3)


def test_replay_from_a_publisher_chosen_id(hub):
    # EventSource reconnects with the last id it saw, which is the
    # publisher's when it chose one: the hub must resume after it too.
    topic = "https://example.com/pid/" + uniq("r")
    mine = [f"urn:uuid:{uniq('p')}-{i}" for i in range(3)]
    for n, i in enumerate(mine):
        assert publish_ok(hub.port, [("topic", topic), ("data", f"e{n}"), ("id", i)]) == i
    with sub(hub.port, [topic], headers={"Last-Event-ID": mine[0]}) as s:
        assert s.headers["last-event-id"] == mine[0]
        assert [e.raw for e in s.next_events(2)] == [wire_event(mine[1], b"e1"),
                                                     wire_event(mine[2], b"e2")]
        s.assert_no_event(0.3)


def test_private_updates_are_not_replayed_to_anonymous(hub):
    topic = "https://example.com/pr/" + uniq("r")
    secret = publish_ok(hub.port, [("topic", topic), ("data", "s"), ("private", "on")])
    public = publish_ok(hub.port, [("topic", topic), ("data", "p")])
    with sub(hub.port, [topic], lastEventID="earliest") as s:
        assert s.next_event().raw == wire_event(public, b"p")
        s.assert_no_event(0.3)
    with sub(hub.port, [topic], sub_token([topic]), lastEventID="earliest") as s:
        assert [e.raw for e in s.next_events(2)] == [wire_event(secret, b"s"),
                                                     wire_event(public, b"p")]


def test_slow_subscriber_catches_up_filtered(httpd):
    """A stream written through the filters whose client stops reading falls
    more than 256 updates behind: its queue is dropped and it catches up from
    the ring (SSE00306). The catch-up applies the same filter: the private
    updates between the public ones never reach it, nor any metadata."""
    h = httpd(conf=HUB_CONF.format(extra="SSEDirectWrite off\n    SSEHeartbeat 0"),
              server_conf="SSEBufferSize 64M")
    topic = "https://example.com/slow/" + uniq("s")
    big = "x" * 4089
    s = sub(h.port, [topic])
    # A small window (no autotuning) so that the socket buffers fill up, as
    # in test_slow_client: 10 MB of public updates are more than they hold.
    s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        want = []
        for i in range(2600):
            if i % 13 == 0:
                publish_ok(h.port, [("topic", topic), ("data", f"{i} secret"),
                                    ("private", "on")])
            else:
                d = f"{i:06d} {big}"
                want.append(wire_event(publish_ok(h.port, [("topic", topic), ("data", d)]),
                                       d.encode()))
        got = s.next_events(len(want), timeout=120)
        assert [e.raw for e in got] == want
        assert b"secret" not in bytes(s.body) and b"\n:t " not in bytes(s.body)
        s.assert_no_event(0.3)
    finally:
        s.close()
    assert "SSE00306" in h.error_log()


# ---------------------------------------------------------------- exp

def test_stream_ends_when_its_token_expires(hub):
    exp = int(time.time()) + 2
    with sub(hub.port, ["*"], sub_token(exp=exp)) as s:
        assert s.status == 200
        s.wait_eof(timeout=6)
        assert s.clean_end
        assert time.time() >= exp - 0.05
    assert "stream ends: its token expired" in hub.error_log()


# ---------------------------------------------------------------- subscriptions

# A departure is seen when a write fails: heartbeats every second.
SUBS_CONF = "SSEMercureSubscriptions on\n    SSEHeartbeat 1"


def test_subscription_updates_and_api(httpd):
    h = httpd(conf=HUB_CONF.format(extra=SUBS_CONF)
              + "AllowEncodedSlashes NoDecode\n", name="mercure-subs")
    watcher_tok = sub_token(["/.well-known/mercure/subscriptions{/topic}{/subscriber}"])
    api_tok = sub_token(["/.well-known/mercure/subscriptions{/topic}{/subscriber}",
                         "/.well-known/mercure/subscriptions"])
    selector = "https://example.com/books/{id}"
    with sub(h.port, ["/.well-known/mercure/subscriptions{/topic}{/subscriber}"],
             watcher_tok) as w:
        s = sub(h.port, [selector], sub_token(payload={"user": "alice"}))
        ev = w.next_event()
        doc = json.loads(ev.data)
        subscriber = doc["subscriber"]
        assert subscriber.startswith("urn:uuid:") and len(subscriber) == 45
        topic_id = ("/.well-known/mercure/subscriptions/"
                    + urllib.parse.quote(selector, safe="") + "/"
                    + urllib.parse.quote(subscriber, safe=""))
        assert doc == {"@context": "https://mercure.rocks/", "id": topic_id,
                       "type": "Subscription", "topic": selector, "subscriber": subscriber,
                       "active": True, "payload": {"user": "alice"}}
        # The API lists it, whole collection and by topic and subscriber.
        r = request(h.port, "GET", "/.well-known/mercure/subscriptions",
                    headers={"Authorization": "Bearer " + api_tok})
        assert r.status == 200, r
        assert r.headers.get("content-type") == "application/ld+json"
        body = json.loads(r.body)
        assert body["type"] == "Subscriptions" and body["id"] == "/.well-known/mercure/subscriptions"
        assert body["lastEventID"] == ev.id
        mine = [x for x in body["subscriptions"] if x["subscriber"] == subscriber]
        assert mine == [doc]
        r = request(h.port, "GET", topic_id, headers={"Authorization": "Bearer " + api_tok})
        assert r.status == 200, r
        assert json.loads(r.body) == dict(doc, lastEventID=ev.id)
        # Anonymous and unauthorized clients get nothing of it.
        assert request(h.port, "GET", topic_id).status == 401
        r = request(h.port, "GET", topic_id,
                    headers={"Authorization": "Bearer " + sub_token(["other"])})
        assert r.status == 403
        s.close()
        ev2 = w.next_event()
        assert json.loads(ev2.data) == dict(doc, active=False)
    # Gone from the API once inactive.
    deadline = time.monotonic() + 5
    while True:
        r = request(h.port, "GET", topic_id, headers={"Authorization": "Bearer " + api_tok})
        if r.status == 404 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status == 404, r


def test_subscriptions_api_by_topic(httpd):
    # /subscriptions/{topic}: the collection of one selector's subscriptions,
    # its id the URL asked; a malformed escape in the URL is httpd's 400.
    h = httpd(conf=HUB_CONF.format(extra=SUBS_CONF)
              + "AllowEncodedSlashes NoDecode\n", name="mercure-subs-topic")
    api_tok = sub_token(["/.well-known/mercure/subscriptions{/topic}{/subscriber}"])
    watch = "/.well-known/mercure/subscriptions{/topic}{/subscriber}"
    mine, other = "https://example.com/t/" + uniq("a") + "/{id}", "urn:x:" + uniq("b")
    with sub(h.port, [watch], api_tok) as w:
        with sub(h.port, [mine], sub_token()) as a, sub(h.port, [other], sub_token()) as b:
            docs = {}
            for _ in range(2):
                d = json.loads(w.next_event().data)
                docs[d["topic"]] = d
            url = "/.well-known/mercure/subscriptions/" + urllib.parse.quote(mine, safe="")
            r = request(h.port, "GET", url, headers={"Authorization": "Bearer " + api_tok})
            assert r.status == 200, r
            assert r.headers.get("content-type") == "application/ld+json"
            body = json.loads(r.body)
            assert body == {"@context": "https://mercure.rocks/", "id": url,
                            "type": "Subscriptions", "lastEventID": body["lastEventID"],
                            "subscriptions": [docs[mine]]}
            r = request(h.port, "GET", "/.well-known/mercure/subscriptions/%zz",
                        headers={"Authorization": "Bearer " + api_tok})
            assert r.status == 400, r       # httpd's own, before the hub: never a crash
            assert b"Bad Request" in r.body


def test_subscriptions_off_has_no_api(hub):
    r = request(hub.port, "GET", "/.well-known/mercure/subscriptions",
                headers={"Authorization": "Bearer " + sub_token()})
    assert r.status == 404


# ---------------------------------------------------------------- CORS

def test_cors_on_the_hub(httpd):
    h = httpd(conf=HUB_CONF.format(extra="SSECorsOrigin https://app.example\n"
                                         "    SSECorsCredentials on"))
    r = request(h.port, "OPTIONS", HUB, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status == 204
    assert r.headers.get("access-control-allow-origin") == "https://app.example"
    assert r.headers.get("access-control-allow-credentials") == "true"
    assert r.headers.get("access-control-allow-methods") == "GET, POST"
    assert r.headers.get("access-control-allow-headers") == "authorization, content-type"
    with sub(h.port, ["*"], headers={"Origin": "https://app.example",
                                     "Cookie": "mercureAuthorization=" + sub_token()}) as s:
        assert s.headers["access-control-allow-origin"] == "https://app.example"
        assert s.headers["access-control-allow-credentials"] == "true"
    with sub(h.port, ["*"], headers={"Origin": "https://evil.example"}) as s:
        assert "access-control-allow-origin" not in s.headers


# ---------------------------------------------------------------- across servers

def test_update_published_on_a_reaches_subscriber_on_b(httpd, redis):
    prefix = uniq("m") + ":"
    server = f"SSERedis {redis.url}\nSSERedisPrefix {prefix}\n"
    a = httpd(conf=HUB_CONF.format(extra=""), server_conf=server, name="mercure-a")
    b = httpd(conf=HUB_CONF.format(extra=""), server_conf=server, name="mercure-b")
    for h in (a, b):
        deadline = time.monotonic() + 10
        while "SSE01206" not in h.error_log() and time.monotonic() < deadline:
            time.sleep(0.05)
    topic = "https://example.com/x/" + uniq("t")
    with sub(b.port, [topic]) as sb, sub(b.port, [topic], sub_token([topic])) as priv, \
            sub(a.port, ["https://example.com/x/{id}"]) as sa:
        id_ = publish_ok(a.port, [("topic", topic), ("data", "across")])
        assert sb.next_event().raw == wire_event(id_, b"across")
        assert sa.next_event().raw == wire_event(id_, b"across")
        secret = publish_ok(a.port, [("topic", topic), ("data", "s"), ("private", "on")])
        assert priv.next_event().raw == wire_event(id_, b"across")
        assert priv.next_event().raw == wire_event(secret, b"s")
        sb.assert_no_event(0.3)
    # The update travels through Redis with its metadata (field m).
    entries = redis.cli_json("XRANGE", prefix + "events", "-", "+")
    assert entries[0][0] == id_
    assert entries[0][1] == ["c", "#mercure" + HUB, "m", f":t {topic}\n", "d", "across"]
    # Resuming on B from an id issued on A.
    with sub(b.port, [topic], sub_token([topic]), lastEventID=id_) as s:
        assert s.headers["last-event-id"] == id_
        assert s.next_event().raw == wire_event(secret, b"s")


# ---------------------------------------------------------------- configuration

@pytest.mark.parametrize("line,message", [
    ("SSEMercurePublisherJWT secret HS999", "SSEMercurePublisherJWT: "),
    ("SSEMercureSubscriberJWT /no/such/key.pem RS256", "SSEMercureSubscriberJWT: "),
    ("SSEMercureCookieName a;b", "SSEMercureCookieName: 'a;b' is not a cookie name"),
    ("SSEMercureAnonymous maybe", "SSEMercureAnonymous"),
    ("SSEMercureSubscriptions 1", "SSEMercureSubscriptions"),
])
def test_bad_mercure_directives_fail_startup(httpd, line, message):
    h = httpd(conf=f"<Location {HUB}>\n    SetHandler sse-mercure\n    {line}\n</Location>\n",
              start=False)
    rc, out = h.config_test()
    assert rc != 0, out
    assert message in out, out


def test_hub_without_keys(httpd):
    h = httpd(conf=f"<Location {HUB}>\n    SetHandler sse-mercure\n"
                   "    SSEMercureAnonymous on\n</Location>\n")
    r = publish(h.port, [("topic", "a")])
    assert r.status == 500
    assert r.json == {"error": "this hub cannot verify publishers: SSEMercurePublisherJWT "
                               "is not set"}
    # Anonymous subscribers are served; a token the hub cannot verify is refused.
    with sub(h.port, ["*"]) as s:
        assert s.status == 200
    r = request(h.port, "GET", hub_path(["*"]), headers={"Authorization": "Bearer x.y.z"})
    assert r.status == 401
    assert r.headers.get("www-authenticate") == www_auth(
        "this hub has no key to verify tokens (SSEMercureSubscriberJWT)")


def test_methods_and_paths(hub):
    r = request(hub.port, "DELETE", HUB)
    assert r.status == 405 and r.headers.get("allow") == "GET, POST, OPTIONS"
    r = request(hub.port, "OPTIONS", HUB)
    assert r.status == 204 and r.headers.get("allow") == "GET, POST, OPTIONS"
    r = request(hub.port, "GET", HUB + "/elsewhere?topic=a")
    assert r.status == 404
    r = request(hub.port, "GET", HUB)
    assert r.status == 400
    assert r.json == {"error": "topic: missing (name one or more topic selectors: a topic, "
                               "a URI template or *)"}
    r = request(hub.port, "HEAD", hub_path(["*"]))
    assert r.status == 200 and r.headers.get("content-type") == \
        "text/event-stream; charset=utf-8"


def test_hub_channel_is_out_of_reach_of_sse_stream_and_sse_publish(hub):
    """The hub's channel cannot be named by a plain stream or publisher, and
    a plain channel named like a topic gets nothing of the hub."""
    r = request(hub.port, "GET", "/events?channel=" + urllib.parse.quote("#mercure" + HUB))
    assert r.status == 400
    r = request(hub.port, "POST", "/pub?channel=" + urllib.parse.quote("#mercure" + HUB),
                body=b"x")
    assert r.status == 400
    with SSEClient(hub.port, "/events?channel=t") as plain, sub(hub.port, ["t"]) as s:
        id_ = publish_ok(hub.port, [("topic", "t"), ("data", "hub")])
        assert s.next_event().raw == wire_event(id_, b"hub")
        plain.assert_no_event(0.3)


def test_subscriptions_api_across_servers(httpd, redis):
    """A subscriber of server B is listed by server A's subscriptions API:
    the API reads the hub's subscription updates, which Redis carries."""
    prefix = uniq("m") + ":"
    server = f"SSERedis {redis.url}\nSSERedisPrefix {prefix}\n"
    conf = HUB_CONF.format(extra=SUBS_CONF) + "AllowEncodedSlashes NoDecode\n"
    a = httpd(conf=conf, server_conf=server, name="mercure-subs-a")
    b = httpd(conf=conf, server_conf=server, name="mercure-subs-b")
    for h in (a, b):
        deadline = time.monotonic() + 10
        while "SSE01206" not in h.error_log() and time.monotonic() < deadline:
            time.sleep(0.05)
    api_tok = sub_token(["/.well-known/mercure/subscriptions{/topic}{/subscriber}",
                         "/.well-known/mercure/subscriptions"])
    selector = "https://example.com/across/" + uniq("s")

    def listed():
        r = request(a.port, "GET", "/.well-known/mercure/subscriptions",
                    headers={"Authorization": "Bearer " + api_tok})
        assert r.status == 200, r
        return [x for x in json.loads(r.body)["subscriptions"] if x["topic"] == selector]

    with sub(b.port, [selector], sub_token(payload={"on": "b"})):
        deadline = time.monotonic() + 10
        while not listed() and time.monotonic() < deadline:
            time.sleep(0.1)
        got = listed()
        assert len(got) == 1 and got[0]["active"] is True and got[0]["payload"] == {"on": "b"}
    deadline = time.monotonic() + 10
    while listed() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert listed() == []
