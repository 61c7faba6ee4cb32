"""pytest fixtures and hooks of the mod_sse integration tests.

The harness itself (Httpd, SSEClient, the publishers, wire-format helpers,
...) is the package tests/ssetest/; tests import from it directly, e.g.
`from ssetest.publish import pub_raw`, and get the fixtures below by pytest's
injection only.

Fixtures:
  httpd            factory, per test: httpd(mpm=..., conf=..., server_conf=...,
                   start=True) -> Httpd.
  srv              the shared event-MPM server with the standard locations.
  mpm_srv          the shared server of each MPM in turn (parametrised).
  chan             a channel name no other test uses.
  server           factory of browser.Server (configs naming their own ports).
  browser_factory  headless Chromium (browser.Browser), closed after the test.
  sse_testmod_so   tests/modules/mod_sse_test.c built with apxs, per module.
  _pool            (session) the shared servers behind srv and mpm_srv.
Hook: pytest_runtest_makereport appends the error log of every server a
failed test used to its report (see ssetest.servers).
"""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# Before ssetest is imported: its assert statements get pytest's messages.
pytest.register_assert_rewrite("ssetest")

from ssetest.channels import uniq  # noqa: E402
from ssetest.env import MPMS, REPO  # noqa: E402
from ssetest.httpd import Httpd  # noqa: E402
from ssetest.redis import REDIS_SERVER, RedisServer  # noqa: E402
from ssetest.servers import ServerPool, _track, server_factory  # noqa: E402

from browser import Browser, Server  # noqa: E402
from testmod import TEST_MODULE_SRC  # noqa: E402

# pytest must not wander into node_modules or the C unit tests.
collect_ignore = ["node", "unit"]


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item._sse_failed = True
        for label, srv, mark in getattr(item, "_sse_servers", []):
            text = srv.log_since(mark)
            if len(text) > 6000:
                text = "...\n" + text[-6000:]
            rep.sections.append((f"httpd error log ({label}, {srv.dir})", text or "(empty)"))


@pytest.fixture
def httpd(request):
    """Factory: httpd(mpm=..., conf=..., server_conf=..., start=True) -> Httpd."""
    yield from server_factory(request, Httpd, lambda h, kw: h.mpm)


@pytest.fixture
def redis():
    """A redis-server of the test's own on a free loopback port, stopped by pid."""
    if not os.path.exists(REDIS_SERVER):
        pytest.fail(f"{REDIS_SERVER} is missing: run scripts/deps.sh (Debian's redis-server)")
    r = RedisServer()
    r.start()
    yield r
    r.cleanup()


@pytest.fixture(scope="session")
def _pool():
    p = ServerPool()
    yield p
    p.stop_all()


@pytest.fixture
def srv(_pool, request):
    """The shared event-MPM server with the standard locations."""
    h = _pool.get("event")
    _track(request, "shared event", h, h.log_mark())
    return h


@pytest.fixture(params=MPMS)
def mpm_srv(_pool, request):
    """The shared server of each MPM in turn."""
    h = _pool.get(request.param)
    _track(request, f"shared {request.param}", h, h.log_mark())
    return h


@pytest.fixture
def chan():
    return uniq("t")


@pytest.fixture
def server(request):
    """Factory: server(**Httpd kwargs, extra_ports=(...)) -> started Server;
    each is stopped by pid after the test (error log shown on failure)."""
    yield from server_factory(request, Server, lambda h, kw: kw.get("name", "server"))


@pytest.fixture
def browser_factory(tmp_path):
    """browser_factory(**kw) -> Browser; every browser is closed after the test."""
    made = []

    def make(**kw):
        b = Browser(tmp_path, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture(scope="module")
def sse_testmod_so():
    """mod_sse_test.so, built with apxs (against mod_sse.h) in a temporary
    directory."""
    d = Path(tempfile.mkdtemp(prefix="mod_sse-testmod-", dir="/tmp"))
    shutil.copy(TEST_MODULE_SRC, d)
    p = subprocess.run(["apxs", "-c", "-I", str(REPO), "-Wc,-Wall", "-Wc,-Wextra",
                        "-Wc,-Wno-unused-parameter", "-Wc,-Werror", "mod_sse_test.c"],
                       cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    so = d / ".libs" / "mod_sse_test.so"
    assert p.returncode == 0 and so.exists(), p.stdout.decode(errors="replace")
    for x in (d, d / ".libs", so):
        x.chmod(0o755)
    yield so
    shutil.rmtree(d, ignore_errors=True)
