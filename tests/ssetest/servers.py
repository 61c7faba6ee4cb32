"""Servers over a test's life, for the fixtures in tests/conftest.py.

_track() records on the test item (request.node._sse_servers) which servers a
test used and from which error-log offset; conftest's
pytest_runtest_makereport hook appends those logs to a failed test's report
and sets item._sse_failed, which server_factory() reads to keep the
directories of a failed test. ServerPool holds the session's shared servers,
one per MPM."""
import shutil

from .httpd import Httpd


def _track(request, label, srv, mark=0):
    if not hasattr(request.node, "_sse_servers"):
        request.node._sse_servers = []
    request.node._sse_servers.append((label, srv, mark))


def server_factory(request, cls, label):
    """The body of a server-factory fixture (`yield from` it): yields
    make(start=True, **kw) -> cls(**kw), started unless start=False; its
    error log is shown if the test fails, under label(server, kw) #n. Every
    server made is stopped (by pid) after the test, and its directory removed
    unless the test failed (kept for a post-mortem)."""
    made = []

    def make(start=True, **kw):
        h = cls(**kw)
        made.append(h)
        _track(request, f"{label(h, kw)} #{len(made)}", h)
        if start:
            h.start()
        return h

    yield make
    for h in made:
        h.stop()
    if not getattr(request.node, "_sse_failed", False):
        for h in made:
            shutil.rmtree(h.dir, ignore_errors=True)


class ServerPool:
    """The shared servers of a session, one per MPM, (re)started on demand."""

    def __init__(self):
        self.servers = {}

    def get(self, mpm):
        h = self.servers.get(mpm)
        if h is not None and h.running() and h._port_answers():
            return h
        if h is not None:
            h.stop()
        h = Httpd(mpm=mpm, name=f"shared-{mpm}")
        h.start()
        self.servers[mpm] = h
        return h

    def stop_all(self):
        for h in self.servers.values():
            h.cleanup()
