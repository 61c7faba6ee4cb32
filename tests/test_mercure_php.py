"""mod_sse as the Mercure hub of a PHP application: a real publisher, Debian's
php-symfony-mercure (Symfony\\Component\\Mercure\\Hub with a
StaticTokenProvider, Update public and private, as a Symfony application
does), posts to SetHandler sse-mercure; real subscribers get exactly what it
published: the npm eventsource client (token in the `authorization` query
parameter), a raw HTTP/1.1 client (Authorization: Bearer), and Chromium's
native EventSource on a page, anonymous and with the mercureAuthorization
cookie (set HttpOnly by the server, as Symfony's Authorization::setCookie
does).

Tokens are minted by tests/ssetest/mercure.py (HS256 for the publisher,
ES256 for subscribers: the openssl CLI signs, the DER signature is rewritten
as JWS's r||s); test_minted_tokens_read_by_pyjwt checks them against a
second reader first, so that a failure below is the hub's, not the minting's.

Whether an update did not reach a subscriber is asserted without waiting:
each scenario ends with a public update every subscriber must get, and the
hub delivers in order, so what was skipped before it was never sent.
"""
import json
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

import pytest

from browser import es_state, open_event_source, wait_es
from ssetest.clients import NodeClient, request, subscribe
from ssetest.metrics import STATUS_LOCATION, wait_figure
from ssetest.mercure import (der_to_raw, directive, gen_key, hmac_key, mercure_claims, mint,
                             unsigned)

PHP = shutil.which("php") or "/usr/bin/php"
MERCURE_AUTOLOAD = Path("/usr/share/php/Symfony/Component/Mercure/autoload.php")
HUB = "/.well-known/mercure"
# The secret of Symfony's recipe (MERCURE_JWT_SECRET), as an application
# would have it.
PUBLISHER_SECRET = "!ChangeThisMercureHubJWTSecretKey!"
BLANK = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>t</title></head><body>t</body></html>\n"

BOOKS = "https://example.com/books/{id}"
USERS = "https://example.com/users/{id}"

# The publisher, as an application writes it; what to publish comes on
# stdin, one JSON line per update comes out: {"id"} or {"error", "status"}.
PUBLISH_PHP = r"""<?php
require_once 'Symfony/Component/Mercure/autoload.php';

use Symfony\Component\Mercure\Hub;
use Symfony\Component\Mercure\Jwt\StaticTokenProvider;
use Symfony\Component\Mercure\Update;
use Symfony\Contracts\HttpClient\Exception\HttpExceptionInterface;

$in = json_decode(stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
$hub = new Hub($in['hub'], new StaticTokenProvider($in['jwt']));
foreach ($in['updates'] as $u) {
    $update = new Update($u['topics'], $u['data'] ?? '', $u['private'] ?? false,
                         $u['id'] ?? null, $u['type'] ?? null, $u['retry'] ?? null);
    try {
        $out = ['id' => $hub->publish($update)];
    } catch (\Throwable $e) {
        $prev = $e->getPrevious();
        $out = ['error' => get_class($e) . ': ' . $e->getMessage()
                           . ($prev ? ' (' . $prev->getMessage() . ')' : ''),
                'status' => $prev instanceof HttpExceptionInterface
                            ? $prev->getResponse()->getStatusCode() : null];
    }
    echo json_encode($out, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), "\n";
}
"""


@pytest.fixture(scope="module")
def keys():
    """The hub's keys: the publisher's HS256 secret, an ES256 pair for
    subscribers (its public half in a directory httpd can read)."""
    if not MERCURE_AUTOLOAD.exists():
        pytest.fail(f"{MERCURE_AUTOLOAD} is missing: run scripts/deps.sh (php-symfony-mercure)")
    d = Path(tempfile.mkdtemp(prefix="mod_sse-mercure-keys-", dir="/tmp"))
    d.chmod(0o755)
    (d / "publish.php").write_text(PUBLISH_PHP)
    yield {"dir": d, "pub": hmac_key(PUBLISHER_SECRET, "HS256"), "sub": gen_key(d, "ES256")}
    shutil.rmtree(d, ignore_errors=True)


def hub_conf(keys, cookie_token=None):
    conf = f"""
<Location {HUB}>
    SetHandler sse-mercure
    SSEHeartbeat 2
    {directive(keys["pub"], "SSEMercurePublisherJWT")}
    {directive(keys["sub"], "SSEMercureSubscriberJWT")}
    SSEMercureAnonymous on
</Location>
""" + STATUS_LOCATION
    if cookie_token:
        # What Symfony's Authorization::setCookie sends: HttpOnly, for the
        # hub's path only.
        conf += f"""
<Location /login.html>
    Header always set Set-Cookie "mercureAuthorization={cookie_token}; Path={HUB}; HttpOnly; SameSite=Strict"
</Location>
"""
    return conf


@pytest.fixture
def hub(server, keys):
    def make(cookie_token=None):
        h = server(name="mercure", conf=hub_conf(keys, cookie_token))
        for page in ("blank.html", "login.html"):
            (h.dir / "htdocs" / page).write_text(BLANK)
        return h
    return make


def php_publish(keys, port, jwt, updates):
    """Runs the PHP publisher; one result dict per update."""
    p = subprocess.run([PHP, str(keys["dir"] / "publish.php")],
                       input=json.dumps({"hub": f"http://127.0.0.1:{port}{HUB}", "jwt": jwt,
                                         "updates": updates}).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace") + p.stdout.decode(errors="replace")
    out = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert len(out) == len(updates), out
    return out


def publisher_token(keys, publish=("*",)):
    return mint(keys["pub"], mercure_claims(publish=publish, ttl=3600))


def subscriber_token(keys, subscribe=(USERS, BOOKS), payload=None):
    return mint(keys["sub"], mercure_claims(subscribe=subscribe, payload=payload, ttl=3600))


def topic_query(*topics, token=None):
    q = [("topic", t) for t in topics]
    if token:
        q.append(("authorization", token))
    return HUB + "?" + urllib.parse.urlencode(q)


def ids_of(results):
    assert all("id" in r for r in results), results
    return [r["id"] for r in results]


# --------------------------------------------------------------------------

def test_minted_tokens_read_by_pyjwt(tmp_path):
    """tests/ssetest/mercure.py's tokens, read back by PyJWT (Debian's
    python3-jwt) with the public key: every algorithm of the hub, and 64
    ES256 signatures (r or s with a leading zero byte, 1 in 128 each, is
    likely among them; der_to_raw's padding is also checked on a fixed
    signature below)."""
    import jwt as pyjwt

    claims = mercure_claims(publish=["*"], subscribe=[BOOKS], payload={"u": "é"}, ttl=60)
    keys = [hmac_key(PUBLISHER_SECRET, a) for a in ("HS256", "HS384", "HS512")]
    keys += [gen_key(tmp_path, a) for a in ("RS256", "RS512", "ES256", "ES384")]
    for k in keys:
        verify_key = k.secret if k.secret is not None else k.pub.read_bytes()
        for n in range(64 if k.alg == "ES256" else 1):
            c = dict(claims, n=n)
            assert pyjwt.decode(mint(k, c), verify_key, algorithms=[k.alg]) == c, (k.alg, n)
    assert der_to_raw(bytes.fromhex("3006020100020101"), 4) == bytes.fromhex("0000000000000001")
    # The unsigned token is refused by a reader that wants a signature.
    with pytest.raises(pyjwt.exceptions.InvalidTokenError):
        pyjwt.decode(unsigned(claims), PUBLISHER_SECRET, algorithms=["HS256"])


def test_php_publishes_to_node_and_raw_subscribers(hub, keys):
    """Public updates from symfony/mercure reach the npm client (anonymous)
    and a raw client (Bearer token) subscribed by URI template, with the
    data, type, retry and ids as published; other topics and private
    updates do not reach the anonymous one."""
    h = hub()
    node = NodeClient(f"http://127.0.0.1:{h.port}{topic_query(BOOKS)}", count=3,
                      types=["book"], timeout=20)
    raw = subscribe(h.port, path=topic_query(BOOKS),
                    headers={"Authorization": "Bearer " + subscriber_token(keys)})
    try:
        node.wait_open()
        assert raw.headers["content-type"].startswith("text/event-stream"), raw.headers
        wait_figure(h.port, "sse_subscribers", 2)
        updates = [
            {"topics": "https://example.com/books/1", "data": json.dumps({"title": "Dune"})},
            {"topics": ["https://example.com/books/2", "https://example.com/authors/herbert"],
             "data": "two\nlines", "id": "book-2-v1", "type": "book", "retry": 2500},
            {"topics": "https://example.com/authors/1", "data": "not a book"},
            {"topics": "https://example.com/books/3", "data": "private", "private": True},
            {"topics": "https://example.com/books/4", "data": "é ✓ 日本語"},
        ]
        ids = ids_of(php_publish(keys, h.port, publisher_token(keys), updates))
        assert ids[1] == "book-2-v1"    # a publisher's id is kept as given
        assert len(set(ids)) == 5 and all(ids), ids

        final, events = node.result()
        assert final == "done", node.lines
        assert [(e["type"], e["data"], e["lastEventId"]) for e in events] == [
            ("message", '{"title": "Dune"}', ids[0]),
            ("book", "two\nlines", "book-2-v1"),
            ("message", "é ✓ 日本語", ids[4]),
        ]
        got = raw.next_events(4)
        assert [(e.id, e.event, e.retry, e.data) for e in got] == [
            (ids[0], None, None, b'{"title": "Dune"}'),
            ("book-2-v1", "book", "2500", b"two\nlines"),
            (ids[3], None, None, b"private"),
            (ids[4], None, None, "é ✓ 日本語".encode()),
        ]
    finally:
        node.close()
        raw.close()


def test_php_private_updates_reach_only_matching_subscribers(hub, keys):
    """A private update reaches a subscriber whose mercure.subscribe matches
    one of its topics (canonical or alternate), never an anonymous one nor
    one whose selectors do not match."""
    h = hub()
    alice = subscribe(h.port, path=topic_query(USERS),
                      headers={"Authorization": "Bearer " + subscriber_token(
                          keys, subscribe=["https://example.com/users/alice"])})
    admin = subscribe(h.port, path=topic_query("*"),
                      headers={"Authorization": "Bearer " + subscriber_token(
                          keys, subscribe=["*"])})
    anon = subscribe(h.port, path=topic_query(USERS))
    try:
        wait_figure(h.port, "sse_subscribers", 3)
        updates = [
            {"topics": "https://example.com/users/alice", "data": "for alice", "private": True},
            {"topics": "https://example.com/users/bob", "data": "for bob", "private": True},
            {"topics": ["https://example.com/users/carol", "https://example.com/users/alice"],
             "data": "alice by her alternate topic", "private": True},
            {"topics": "https://example.com/users/alice", "data": "public news"},
        ]
        ids = ids_of(php_publish(keys, h.port, publisher_token(keys), updates))
        assert [(e.id, e.data) for e in alice.next_events(3)] == [
            (ids[0], b"for alice"), (ids[2], b"alice by her alternate topic"),
            (ids[3], b"public news")]
        assert [(e.id, e.data) for e in admin.next_events(4)] == [
            (ids[0], b"for alice"), (ids[1], b"for bob"),
            (ids[2], b"alice by her alternate topic"), (ids[3], b"public news")]
        assert [(e.id, e.data) for e in anon.next_events(1)] == [(ids[3], b"public news")]
    finally:
        for c in (alice, admin, anon):
            c.close()


def test_php_publisher_refused(hub, keys, tmp_path):
    """symfony/mercure gets the hub's refusals as exceptions: 401 for a
    token that is not the publisher's (wrong secret, alg none, the
    subscribers' key, expired), 403 for topics its mercure.publish does not
    cover; none of those updates is delivered."""
    h = hub()
    sub = subscribe(h.port, path=topic_query("*"),
                    headers={"Authorization": "Bearer " + subscriber_token(keys, subscribe=["*"])})
    try:
        wait_figure(h.port, "sse_subscribers", 1)
        book = [{"topics": "https://example.com/books/1", "data": "refused"}]
        claims = mercure_claims(publish=["*"], ttl=3600)
        other_es = gen_key(tmp_path, "ES256", name="other")
        refused = {
            "wrong secret": mint(hmac_key(PUBLISHER_SECRET + "x"), claims),
            "alg none": unsigned(claims),
            "subscriber key": mint(keys["sub"], claims),
            "HS256 over the subscriber PEM": mint(hmac_key(keys["sub"].pub.read_bytes()), claims),
            "other ES256 key": mint(other_es, claims),
            "expired": mint(keys["pub"], mercure_claims(publish=["*"], exp=1000000000)),
        }
        for what, tok in refused.items():
            [r] = php_publish(keys, h.port, tok, book)
            assert r.get("status") == 401 and "id" not in r, (what, r)
        # Authenticated, but not for these topics: every topic must match.
        narrow = mint(keys["pub"], mercure_claims(publish=["https://example.com/authors/{id}"],
                                                  ttl=3600))
        [r] = php_publish(keys, h.port, narrow, book)
        assert r.get("status") == 403, r
        [r] = php_publish(keys, h.port, narrow, [
            {"topics": ["https://example.com/authors/1", "https://example.com/books/1"],
             "data": "half covered"}])
        assert r.get("status") == 403, r
        ok = php_publish(keys, h.port, narrow, [
            {"topics": "https://example.com/authors/1", "data": "covered"}])
        assert [(e.id, e.data) for e in sub.next_events(1)] == [(ids_of(ok)[0], b"covered")]
    finally:
        sub.close()


def test_subscriber_key_confusion_refused(hub, keys):
    """The subscribers' key is an ES256 public PEM: a token "signed" by
    HMAC with that PEM as the secret (which libjwt alone would take for
    HS256) is refused with 401, as is one signed by the publisher's key;
    the same claims signed with the subscribers' key are served."""
    h = hub()
    claims = mercure_claims(subscribe=["*"], ttl=3600)
    for tok in (mint(hmac_key(keys["sub"].pub.read_bytes()), claims),
                mint(keys["pub"], claims), unsigned(claims)):
        r = request(h.port, "GET", topic_query("*"), headers={"Authorization": "Bearer " + tok})
        assert r.status == 401 and "www-authenticate" in r.headers, r
    ok = subscribe(h.port, path=topic_query("*"),
                   headers={"Authorization": "Bearer " + mint(keys["sub"], claims)})
    ok.close()


def test_chromium_event_source_public_and_private(hub, keys, browser_factory):
    """Chromium's own EventSource on a page of the hub's origin: with the
    mercureAuthorization cookie (set HttpOnly by the server, so the page
    never sees it) it gets public and private updates; a second browser
    without the cookie gets the public ones only; both exactly as symfony/
    mercure published them."""
    cookie_token = subscriber_token(keys, subscribe=[BOOKS],
                                    payload={"user": "https://example.com/users/alice"})
    h = hub(cookie_token=cookie_token)
    base = f"http://127.0.0.1:{h.port}"
    logged_in = browser_factory()
    assert logged_in.goto(base + "/login.html") == 200
    assert logged_in.eval("document.cookie") == ""      # HttpOnly
    anon = browser_factory()
    assert anon.goto(base + "/blank.html") == 200
    for b in (logged_in, anon):
        open_event_source(b, "m", topic_query(BOOKS), types=["book"])
        wait_es(b, "m", "s.opens === 1")
    wait_figure(h.port, "sse_subscribers", 2)

    updates = [
        {"topics": "https://example.com/books/1", "data": "public one"},
        {"topics": "https://example.com/books/2", "data": "private two", "private": True,
         "type": "book"},
        {"topics": "https://example.com/books/3", "data": json.dumps({"n": 3, "t": "ü ✓"},
                                                                     ensure_ascii=False),
         "id": "book-3", "type": "book"},
        {"topics": "https://example.com/books/4", "data": "private four\nsecond line",
         "private": True},
        {"topics": "https://example.com/books/5", "data": "public five"},
    ]
    ids = ids_of(php_publish(keys, h.port, publisher_token(keys), updates))
    want = [{"type": u.get("type", "message"), "data": u["data"], "id": i}
            for u, i in zip(updates, ids)]
    wait_es(logged_in, "m", "s.log.length >= 5")
    wait_es(anon, "m", "s.log.length >= 3")
    for b, expect in ((logged_in, want), (anon, [want[0], want[2], want[4]])):
        st = es_state(b, "m")
        assert [{k: e[k] for k in ("type", "data", "id")} for e in st["log"]] == expect
        assert st["opens"] == 1 and st["errors"] == [] and st["readyState"] == 1
    assert want[2]["id"] == "book-3"
