"""The mod_sse integration-test harness (what tests/conftest.py used to hold).

Everything here talks to a real Apache httpd (Debian's /usr/sbin/apache2)
started from a generated configuration in a private temporary directory, on a
free 127.0.0.1 port, with the freshly built .libs/mod_sse.so.

Modules, lowest first (each imports only from those above it):
  env       where things are: repository, module, apache2 binary and its
            environment, node client, MPMs, test credentials.
  procs     processes and sockets by pid, read from /proc; free ports.
  wire      the exact bytes mod_sse writes (events, ids, heartbeats) and id
            ordering.
  channels  unique channel names and the ?channel= query string.
  ring      what a server's ring retains of the events a test published,
            from their ids and SSEBufferSize (sse_ring.c's accounting).
  clients   Response/request() (http.client), the raw-socket SSEClient and
            its Event blocks, subscribe(), read_all() (many streams at once),
            NodeClient (npm eventsource).
  publish   publishers (pub_raw/pub_form/pub_json/publish_ok), channel info,
            and checks on responses published through X-SSE-Publish.
  delivery  what each stream must receive: Sent records, keep-alive
            Publisher, publish_burst(), assert_events()/assert_stream_is(),
            and the direct and filtered stream locations.
  httpd     the Httpd class (config generation, start/stop/graceful by pid,
            error log, which child holds a connection) and the configuration
            pieces it is built from.
  servers   servers over a test's life: tracking for the failure report, the
            body of server-factory fixtures, the session pool of shared
            servers.

The pytest fixtures and hooks themselves live in tests/conftest.py; this
package defines none. Tests import from the modules directly, e.g.
`from ssetest.publish import pub_raw`.
"""
