#!/usr/bin/env python3
"""mod_sse vs Nchan benchmark driver (issue 5). Stdlib only; run as root.

    /usr/bin/python3 bench/bench.py                 # what `make bench` runs
    /usr/bin/python3 bench/bench.py --only 1,2      # some scenarios
    /usr/bin/python3 bench/bench.py --quick         # short windows, for trying things
    /usr/bin/python3 bench/bench.py --report        # rebuild results.md and the plot
                                                    # from bench/results/runs.jsonl
    /usr/bin/python3 bench/bench.py --only 1,7 --name redis
                                                    # writes redis.md, redis.jsonl,
                                                    # redis-machine.json, redis-latency.png

For every scenario it starts a fresh server from a generated configuration on
a free 127.0.0.1 port (mod_sse under the event MPM, Nchan under nginx, and for
scenario 6 a PHP polling script under Apache prefork + mod_php), runs
bench/loadgen against it, stops the server by pid, and appends the loadgen's
JSON line to bench/results/runs.jsonl. The servers alternate: odd scenarios
start with mod_sse, even ones with Nchan. Then it writes
bench/results/results.md and bench/results/latency.png (gnuplot).

Scenario 7 (issue 15) is "two servers + Redis": for each server kind a fresh
redis-server of its own (own directory, own port, --save '', started and
stopped by pid) and two servers of that kind sharing their channels through
it (mod_sse: two httpd with the same SSERedis and SSERedisPrefix; Nchan: two
nginx with nchan_redis_pass to an upstream naming that Redis). The load
generator splits the subscribers between the two (--port2) and alternates
the fixed-rate publishes; 7m is its publish-rate part (as fast as possible,
like scenario 4), on fresh servers too. The CPU of both servers and of Redis
counts as the server's (--server-pid three times).

Issue 11 (SSEDetach): scenarios 1 and 2 run a third server, "detached"
(SSEDetach on, few threads); scenario 9 holds 30,000 subscribers (mod_sse
detached on 4 event children against Nchan, the load generator as 2
processes: --procs) and 9p compares prefork + mod_php with SSEDetach on (4
processes) and off (a process per stream). The thread-path servers set
SSEMaxStreamsPerChild to their ThreadsPerChild.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"
LOADGEN = BENCH / "loadgen"
MODULE = ROOT / ".libs" / "mod_sse.so"
# The servers load a private copy taken when the run starts: the module may be
# rebuilt in the work tree while the benchmark runs.
MODULE_RUN = None
APACHE = "/usr/sbin/apache2"
NGINX = "/usr/sbin/nginx"
APACHE_MODS = Path("/usr/lib/apache2/modules")
NCHAN_SO = "/usr/lib/nginx/modules/ngx_nchan_module.so"
REDIS = "/usr/bin/redis-server"

# ---------------------------------------------------------------------------
# scenarios (issue 5). rate None = no publishing; "max" = as fast as possible.
# Fixed-rate scenarios publish over 4 keep-alive connections, each event on
# the next idle one: a server that answers a POST only after fanning the event
# out (Nchan) would otherwise hold one connection below the asked rate, and
# the servers would not carry the same load. Order is checked per connection.

SCENARIOS = [
    dict(id=1, name="broadcast", subs=1000, channels=1, rate=200, pub_conns=4,
         servers=["mod_sse", "nchan", "detached"],
         ratios=[("detached", "nchan"), ("detached", "mod_sse")]),
    dict(id=2, name="scale", subs=10000, channels=1, rate=50, pub_conns=4,
         servers=["nchan", "mod_sse", "detached"],
         ratios=[("detached", "nchan"), ("detached", "mod_sse")]),
    dict(id=3, name="many channels", subs=10000, channels=1000, rate=1000, pub_conns=4,
         servers=["mod_sse", "nchan"]),
    dict(id=4, name="publish rate", subs=10, channels=1, rate="max", pub_conns=8,
         servers=["nchan", "mod_sse"]),
    dict(id=5, name="idle memory", subs=10000, channels=1, rate=None, pub_conns=1,
         servers=["mod_sse", "nchan"], rounds=1),
    dict(id=6, name="PHP polling vs mod_sse", subs=200, channels=1, rate=200, pub_conns=4,
         servers=["php", "mod_sse"], rounds=1),
    # issue 15: two servers sharing one Redis, scenario 1's load split over
    # them (500 + 500 subscribers, publishes alternating between the two);
    # 7m, part of 7 (--only 7 runs both): scenario 4's publishing, 4
    # connections to each server, 5 + 5 subscribers
    dict(id=7, name="two servers + Redis", subs=1000, channels=1, rate=200, pub_conns=4,
         servers=["mod_sse", "nchan"], topology="redis2"),
    dict(id="7m", part_of=7, name="two servers + Redis, publish rate", subs=10, channels=1,
         rate="max", pub_conns=8, servers=["nchan", "mod_sse"], topology="redis2"),
    # Issue 13: the Mercure hub (sse-mercure) against mod_sse's own sse-stream
    # (no Mercure hub is packaged for Debian or npm here: `apt-cache policy
    # mercure` knows none). Subscribers hold a URI-template selector and a
    # subscriber token; updates are POSTed as Mercure forms with a JWT.
    dict(id=8, name="Mercure hub vs sse-stream", subs=1000, channels=1, rate=200, pub_conns=4,
         servers=["mod_sse", "mercure"]),
    # Issue 11 (SSEDetach): scenarios 1 and 2 above run a third server,
    # "detached" (SSEDetach on, 2 event children of 64 threads). 9: 30,000
    # subscribers at 10 events/s, detached (4 children: each holds its
    # streams under the 20,000 descriptors a process may have here) against
    # Nchan with 2 workers behind reuseport (15,000 each); the load
    # generator runs as 2 processes (--procs) for the same reason.
    dict(id=9, name="30,000 subscribers", subs=30000, channels=1, rate=10, pub_conns=4,
         servers=["detached", "nchan"], rounds=1, procs=2, detached_children=4,
         nchan_workers=2, all_pss=True, ratios=[("detached", "nchan")]),
    # 9p: a PHP site's server, prefork with mod_php loaded, 2,000 streams on
    # 4 processes (SSEDetach on) against SSEDetach off, which needs a
    # process per stream: 500 streams on 502 processes here (2,000 processes
    # with mod_php do not fit beside the other work on this machine). One
    # publisher connection: a keep-alive connection holds a prefork process.
    dict(id="9p", part_of=9, name="prefork + mod_php", subs=2000, channels=1, rate=10,
         pub_conns=1, servers=["detached-prefork", "prefork"], rounds=1,
         subs_by_server={"prefork": 500}, detached_prefork_procs=4, prefork_procs=502,
         all_pss=True, ratios=[("detached-prefork", "prefork")]),
]

ROUNDS = 3            # scenarios 1-4, 7 and 8 run this many times, alternating the order;
                      # the table shows the median of each metric
WARMUP = 2.0
DURATION = 10.0
DRAIN = 30.0          # at most, after the last publish; stops earlier when all is
DRAIN_IDLE = 3.0      # delivered, or when nothing arrived for this long
PHP_POLL = "sleep(1)"        # the classic loop's pause

# What a run writes in bench/results/ (--name): results.md, runs.jsonl,
# machine.json, latency.png by default, so that `make bench` replaces the
# last full run; a partial run given a name of its own (e.g. scenario 7
# with scenario 1 for its single-server p99) leaves those alone.
OUT = dict(md="results.md", runs="runs.jsonl", machine="machine.json", png="latency.png",
           dat="latency.dat")


def set_name(name):
    if name != "results":
        OUT.update(md=f"{name}.md", runs=f"{name}.jsonl", machine=f"{name}-machine.json",
                   png=f"{name}-latency.png", dat=f"{name}-latency.dat")


# ---------------------------------------------------------------------------
# helpers


def log(*a):
    print("[bench %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


NICE = -10    # servers and load generator alike: less disturbance from other work


def boost():
    try:
        os.nice(NICE)
    except OSError:
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def proc_start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        return int(st[st.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def descendants(root):
    """[(pid, starttime)] of root and everything below it."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            parent[int(d)] = int(st[st.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            pass
    out = {root}
    changed = True
    while changed:
        changed = False
        for pid, pp in parent.items():
            if pp in out and pid not in out:
                out.add(pid)
                changed = True
    return [(p, proc_start_time(p)) for p in sorted(out)]


def alive_same(pid, start):
    st = proc_start_time(pid)
    if st is None or st != start:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2] != "Z"
    except OSError:
        return False


def wait_port(port, proc, timeout=20):
    t = time.time() + timeout
    while time.time() < t:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


# ---------------------------------------------------------------------------
# servers


class Server:
    kind = "?"

    def __init__(self, tag, redis_port=None):
        self.dir = Path(tempfile.mkdtemp(prefix=f"mod_sse-bench-{self.kind}-"))
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.tag = tag
        self.proc = None
        self.orphans = 0
        self.exit_status = None     # set when the server had exited before stop()
        # scenario 7: the Redis this server shares its channels through
        self.redis_port = redis_port

    def start(self):
        self.write_config()
        self.logf = open(LOGS / f"{self.tag}.server.log", "w")
        self.proc = subprocess.Popen(self.cmd(), stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=self.dir, start_new_session=True, preexec_fn=boost)
        if not wait_port(self.port, self.proc):
            self.stop()
            raise RuntimeError(f"{self.kind} did not start, see {LOGS / (self.tag + '.server.log')}"
                               f" and {self.dir}")
        self.settle()
        return self

    def settle(self):
        time.sleep(1.0)

    def stop(self):
        if not self.proc:
            return
        if self.proc.poll() is not None:
            self.exit_status = self.proc.returncode
        tree = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # whatever of the tree survived its master (PHP scripts under prefork
        # keep running as orphans): by pid, checking it is the same process
        time.sleep(0.5)
        left = [(p, s) for p, s in tree if p != self.proc.pid and alive_same(p, s)]
        self.orphans = len(left)
        for p, s in left:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.collect_logs()
        self.logf.close()
        self.proc = None

    def collect_logs(self):
        for name in ("error.log",):
            f = self.dir / name
            if f.exists():
                shutil.copy(f, LOGS / f"{self.tag}.{name}")


class ModSse(Server):
    kind = "mod_sse"
    # conf/mod_sse.conf's sizing for 10,000 streams on 2 CPU cores: 2 children
    # x 5250 threads, 500 of them for publishers and stragglers.
    CHILDREN = 2
    THREADS = 5250
    MPM_NOTE = "conf/mod_sse.conf's sizing for 10,000 streams"
    EXTRA_PROCS = 0     # processes under the master that are not children (none)

    def cmd(self):
        return [APACHE, "-f", str(self.dir / "httpd.conf"), "-DFOREGROUND"]

    def write_config(self):
        d = self.dir
        (d / "htdocs").mkdir(exist_ok=True)
        (d / "httpd.conf").write_text(f"""# generated by bench/bench.py: mod_sse, event MPM
ServerRoot "{d}"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
ListenBacklog 4096
{self.mpm_modules()}
LoadModule authz_core_module {APACHE_MODS}/mod_authz_core.so
LoadModule authz_host_module {APACHE_MODS}/mod_authz_host.so
LoadModule sse_module        {MODULE_RUN}
User www-data
Group www-data
DefaultRuntimeDir {d}
PidFile {d}/httpd.pid
ErrorLog {d}/error.log
LogLevel warn
# no access log (nginx runs with access_log off too)
# as Debian's apache2.conf has it for /: no .htaccess lookups, and
# FollowSymLinks, which spares httpd an lstat() of each path component of
# every publish URL (about 8% more publishes/s in scenario 4)
DocumentRoot "{d}/htdocs"
<Directory />
    AllowOverride None
    Options FollowSymLinks
</Directory>

{self.mpm_conf()}
Timeout 60
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30

SSEBufferSize   16M
SSEMaxChannels  8192
Mutex default sse-ring
# issue 11: streams hold a worker (off) or go to the child's detach thread (on)
SSEDetach {"on" if self.DETACH else "off"}
{self.max_streams_conf()}
{self.redis_conf()}

<Location /events>
    SetHandler sse-stream
    Require all granted
    # large enough never to fire during a run
    SSEHeartbeat 600
    SSEInitialReplay 0
</Location>
<Location /publish>
    SetHandler sse-publish
    Require ip 127.0.0.1
    SSEMaxMessageSize 64K
    # the README's setting for publishers that POST many events over one
    # connection
    SSEPublishKeepAliveWait 10ms
</Location>
""")

    DETACH = False

    def max_streams_conf(self):
        # The thread path: a child holds at most ThreadsPerChild streams
        # anyway. SSEMaxStreamsPerChild's default (RLIMIT_NOFILE less 128 +
        # 4 x ThreadsPerChild) would be its floor with 5250 threads and
        # 20,000 descriptors, and refuse all but a few streams.
        return f"SSEMaxStreamsPerChild {self.THREADS}"

    def mpm_modules(self):
        return f"LoadModule mpm_event_module  {APACHE_MODS}/mod_mpm_event.so"

    def mpm_conf(self):
        return f"""# {self.MPM_NOTE}
<IfModule mpm_event_module>
    ServerLimit             {2 * self.CHILDREN}
    ThreadLimit             {self.THREADS}
    ThreadsPerChild         {self.THREADS}
    StartServers            {self.CHILDREN}
    MaxRequestWorkers       {self.CHILDREN * self.THREADS}
    MinSpareThreads         {self.THREADS}
    MaxSpareThreads         {self.CHILDREN * self.THREADS}
    MaxConnectionsPerChild  0
    ThreadStackSize         262144
</IfModule>"""

    def redis_conf(self):
        if not self.redis_port:
            return ""
        # scenario 7: both servers of the run name the same Redis and prefix
        return (f"SSERedis redis://127.0.0.1:{self.redis_port}\n"
                "SSERedisPrefix bench:\n")

    def settle(self):
        # every child up with all its threads
        t = time.time() + 20
        while time.time() < t:
            kids = [p for p, _ in descendants(self.proc.pid) if p != self.proc.pid]
            if len(kids) >= self.CHILDREN + self.EXTRA_PROCS:
                break
            time.sleep(0.2)
        time.sleep(2.0)

    sub_path = "/events?channel=%s"
    pub_path = "/publish/%s"


class Nchan(Server):
    kind = "nchan"

    def cmd(self):
        return [NGINX, "-p", str(self.dir) + "/", "-c", str(self.dir / "nginx.conf"),
                "-g", "daemon off;"]

    def write_config(self):
        d = self.dir
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir(exist_ok=True)
            shutil.chown(d / sub, "www-data", "www-data")
        (d / "nginx.conf").write_text(f"""# generated by bench/bench.py: Nchan
load_module {NCHAN_SO};
user www-data;
worker_processes {self.workers()};                 # the machine's 2 cores (scenario 9: more, see workers())
worker_rlimit_nofile 20000;         # the hard limit here
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections {self.worker_connections()};
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 30s;
    # Nchan's default shared memory; message retention per channel set below
    # to what mod_sse's 16M ring retains of 64-byte events (about 110,000).
    nchan_shared_memory_size 128M;
{self.redis_upstream()}
    server {{
        listen 127.0.0.1:{self.port} backlog=4096{self.reuseport()};
        location = /sub {{
            nchan_subscriber eventsource;
            nchan_channel_id $arg_channel;
            # like mod_sse's SSEInitialReplay 0: no history for a new subscriber
            nchan_subscriber_first_message newest;
{self.redis_pass()}
        }}
        location ~ ^/pub/(.+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 110000;
            nchan_message_timeout 1h;
{self.redis_pass()}
        }}
    }}
}}
""")

    # Scenario 9 (30,000 subscribers): as many workers as hold them under
    # the 20,000 descriptors a process may have, and reuseport so that the
    # kernel spreads the connections evenly over the workers (without it
    # one worker may take more than it can hold).
    def workers(self):
        return getattr(self, "sc", {}).get("nchan_workers", 2)

    def worker_connections(self):
        return 19000 if "nchan_workers" in getattr(self, "sc", {}) else 16384

    def reuseport(self):
        return " reuseport" if "nchan_workers" in getattr(self, "sc", {}) else ""

    # Scenario 7: nchan_redis_pass to an upstream of nchan_redis_server (the
    # form Nchan's documentation gives since 1.2; nchan_use_redis with
    # nchan_redis_url is the older one), in Nchan's default storage mode
    # (distributed: Redis holds the messages, every nginx sees every
    # publish). Both nginx of the run name the same Redis.
    def redis_upstream(self):
        if not self.redis_port:
            return ""
        return f"""    upstream bench_redis {{
        nchan_redis_server redis://127.0.0.1:{self.redis_port};
    }}"""

    def redis_pass(self):
        return "            nchan_redis_pass bench_redis;" if self.redis_port else ""

    sub_path = "/sub?channel=%s"
    pub_path = "/pub/%s"


class ModSseDetached(ModSse):
    """Issue 11: SSEDetach on under the event MPM. Workers only serve
    requests (headers and replay of a new stream, publishes), so a few
    threads per child do; streams are bounded by each child's descriptors
    (SSEMaxStreamsPerChild's default: RLIMIT_NOFILE, 20,000 here, less a
    margin). Children are never reaped (MaxSpareThreads = MaxRequestWorkers,
    MaxConnectionsPerChild 0): a retired child ends its streams. The
    scenario may ask for more children (detached_children) so that 30,000
    streams fit under 20,000 descriptors per child."""
    kind = "detached"
    DETACH = True
    CHILDREN = 2
    THREADS = 64
    MPM_NOTE = "issue 11, detached streams: threads for requests only"

    def max_streams_conf(self):
        return "# SSEMaxStreamsPerChild: its default, from the descriptor limit"

    def write_config(self):
        self.CHILDREN = getattr(self, "sc", {}).get("detached_children", type(self).CHILDREN)
        super().write_config()


class ModSsePrefork(ModSse):
    """Issue 11's PHP site: prefork with mod_php loaded (nothing of PHP
    runs: the streams are mod_sse's), SSEDetach off, one process per
    stream. Every process is started up front (StartServers = ServerLimit)
    and none is reaped, so "all PSS / sub" counts the processes the streams
    need; the scenario says how many (prefork_procs: 2,000 does not fit
    this shared machine, see bench/README.md)."""
    kind = "prefork"
    DETACH = False
    PROCS = 500

    def max_streams_conf(self):
        return "# SSEMaxStreamsPerChild: its default, from the descriptor limit"

    def write_config(self):
        self.CHILDREN = getattr(self, "sc", {}).get(self.kind.replace("-", "_") + "_procs",
                                                   type(self).PROCS)
        super().write_config()

    def mpm_modules(self):
        return (f"LoadModule mpm_prefork_module {APACHE_MODS}/mod_mpm_prefork.so\n"
                f"LoadModule php_module         {APACHE_MODS}/libphp8.2.so")

    def mpm_conf(self):
        return f"""# prefork + mod_php, every process started up front, none reaped
<IfModule mpm_prefork_module>
    ServerLimit             {self.CHILDREN}
    StartServers            {self.CHILDREN}
    MinSpareServers         1
    MaxSpareServers         {self.CHILDREN}
    MaxRequestWorkers       {self.CHILDREN}
    MaxConnectionsPerChild  0
</IfModule>"""

    def settle(self):
        t = time.time() + 120
        while time.time() < t:
            kids = [p for p, _ in descendants(self.proc.pid) if p != self.proc.pid]
            if len(kids) >= self.CHILDREN:
                break
            time.sleep(0.5)
        time.sleep(3.0)


class ModSsePreforkDetached(ModSsePrefork):
    """The same prefork + mod_php server with SSEDetach on: 4 processes
    hold every stream (each stream takes a process only for its headers)."""
    kind = "detached-prefork"
    DETACH = True
    PROCS = 4


class Redis(Server):
    """Scenario 7's Redis: Debian's redis-server, fresh for each run, in its
    own directory, nothing saved, started and stopped by pid like the
    servers (SIGTERM; with --save '' it exits without writing)."""
    kind = "redis"

    def cmd(self):
        return [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--logfile", str(self.dir / "error.log")]

    def write_config(self):
        pass

    def settle(self):
        time.sleep(0.2)


PHP_STREAM = r"""<?php
// The classic PHP SSE loop: poll a file for new lines, echo, flush, sleep.
set_time_limit(0);
header('Content-Type: text/event-stream');
header('Cache-Control: no-cache');
$file = __DIR__ . '/data/events.txt';
clearstatcache();
$pos = file_exists($file) ? filesize($file) : 0;
echo ": connected\n\n";
@ob_flush();
flush();
while (true) {
    clearstatcache(false, $file);
    $size = @filesize($file);
    if ($size !== false && $size > $pos) {
        $fh = fopen($file, 'r');
        fseek($fh, $pos);
        $out = '';
        while (($line = fgets($fh)) !== false) {
            if (substr($line, -1) !== "\n")
                break;                      // a line still being written
            $pos += strlen($line);
            $out .= "data: " . rtrim($line, "\n") . "\n\n";
        }
        fclose($fh);
        echo $out;
        @ob_flush();
        flush();
    }
    if (connection_aborted())
        break;
    @POLL@;
}
"""

PHP_PUBLISH = r"""<?php
// Publish: append one line to the event file.
$data = str_replace(["\r", "\n"], ' ', file_get_contents('php://input'));
file_put_contents(__DIR__ . '/data/events.txt', $data . "\n", FILE_APPEND | LOCK_EX);
header('Content-Type: application/json');
echo '{"ok":true}';
"""


class PhpApache(Server):
    kind = "php"

    def cmd(self):
        return [APACHE, "-f", str(self.dir / "httpd.conf"), "-DFOREGROUND"]

    def write_config(self):
        d = self.dir
        www = d / "www"
        (www / "data").mkdir(parents=True, exist_ok=True)
        (www / "stream.php").write_text(PHP_STREAM.replace("@POLL@", PHP_POLL))
        (www / "publish.php").write_text(PHP_PUBLISH)
        (www / "data" / "events.txt").write_text("")
        shutil.chown(www / "data", "www-data", "www-data")
        shutil.chown(www / "data" / "events.txt", "www-data", "www-data")
        (d / "httpd.conf").write_text(f"""# generated by bench/bench.py: PHP polling script, prefork + mod_php
ServerRoot "{d}"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
ListenBacklog 4096
LoadModule mpm_prefork_module {APACHE_MODS}/mod_mpm_prefork.so
LoadModule authz_core_module  {APACHE_MODS}/mod_authz_core.so
LoadModule php_module         {APACHE_MODS}/libphp8.2.so
User www-data
Group www-data
DefaultRuntimeDir {d}
PidFile {d}/httpd.pid
ErrorLog {d}/error.log
LogLevel warn
<IfModule mpm_prefork_module>
    StartServers          10
    MinSpareServers       5
    MaxSpareServers       400
    ServerLimit           400
    MaxRequestWorkers     400
    MaxConnectionsPerChild 0
</IfModule>
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
DocumentRoot {www}
<Directory />
    AllowOverride None
    Options FollowSymLinks
</Directory>
<Directory {www}>
    Require all granted
</Directory>
<FilesMatch "\\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>
php_admin_value output_buffering 0
php_admin_flag zlib.output_compression off
php_admin_value max_execution_time 0
""")

    sub_path = "/stream.php?channel=%s"
    pub_path = "/publish.php?channel=%s"


def hs256(claims, key):
    """An HS256 JWT of claims (the hub's tokens, issue 13)."""
    import base64
    import hashlib
    import hmac

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


class ModSseMercure(ModSse):
    """mod_sse as a Mercure hub: the same server, plus /.well-known/mercure."""
    kind = "mercure"
    KEY = "bench-hub-key-0123456789abcdef0123456789"

    def write_config(self):
        super().write_config()
        with open(self.dir / "httpd.conf", "a") as f:
            f.write(f"""
<Location /.well-known/mercure>
    SetHandler sse-mercure
    Require all granted
    SSEMercurePublisherJWT {self.KEY}
    SSEMercureSubscriberJWT {self.KEY}
    SSEHeartbeat 600
    SSEMaxMessageSize 64K
    SSEPublishKeepAliveWait 10ms
</Location>
""")

    # A template selector matching the channel's topic, and a token: what
    # every delivery pays for is the JWT-authorized, selector-matched path.
    # (%%s: the channel, unused by the hub; loadgen fills it in.)
    sub_path = ("/.well-known/mercure?topic=https%%3A%%2F%%2Fbench.example%%2F%%7Bname%%7D"
                "&c=%s&authorization=" + hs256({"mercure": {"subscribe": ["*"]}}, KEY))
    pub_path = "/.well-known/mercure"
    extra_args = ["--mercure-token", hs256({"mercure": {"publish": ["*"]}}, KEY),
                  "--mercure-topic", "https://bench.example/"]


SERVERS = {"mod_sse": ModSse, "nchan": Nchan, "php": PhpApache, "mercure": ModSseMercure,
           "detached": ModSseDetached, "prefork": ModSsePrefork,
           "detached-prefork": ModSsePreforkDetached}

# ---------------------------------------------------------------------------
# one run


def snapshot_module():
    global MODULE_RUN
    d = Path(tempfile.mkdtemp(prefix="mod_sse-bench-module-"))
    os.chmod(d, 0o755)
    shutil.copy(MODULE, d / "mod_sse.so")
    MODULE_RUN = d / "mod_sse.so"
    import atexit
    atexit.register(shutil.rmtree, d, True)
    return sh(f"sha256sum {MODULE_RUN} | cut -c1-12")


def loadgen_args(sc, srv, kind, quick):
    warmup = 1.0 if quick else WARMUP
    duration = 3.0 if quick else DURATION
    subs = sc.get("subs_by_server", {}).get(kind, sc["subs"])
    args = [str(LOADGEN), "--port", str(srv.port), "--sub-path", srv.sub_path,
            "--pub-path", srv.pub_path, "--subs", str(subs), "--procs", str(sc.get("procs", 1)),
            "--channels", str(sc["channels"]), "--pub-conns", str(sc["pub_conns"]),
            "--size", "64", "--scenario", str(sc["id"]), "--server", kind,
            "--drain", str(DRAIN), "--drain-idle", str(DRAIN_IDLE), "--connect-timeout", "90"]
    args += getattr(srv, "extra_args", [])
    if sc["rate"] is None:
        # idle: hold the subscribers for the measured time, then measure memory
        args += ["--duration", "0", "--idle", str(duration), "--warmup", "0"]
    else:
        args += ["--warmup", str(warmup), "--duration", str(duration), "--idle", "1"]
        args += ["--max-rate"] if sc["rate"] == "max" else ["--rate", str(sc["rate"])]
    return args


def run_one(sc, kind, quick, rnd=1):
    tag = f"s{sc['id']}-{kind}" + (f"-r{rnd}" if rnd > 1 else "")
    # every process started for this run, stopped in reverse order
    started = []
    if sc.get("topology") == "redis2":
        redis = Redis(f"{tag}-redis")
        srv = SERVERS[kind](f"{tag}-a", redis.port)
        srv2 = SERVERS[kind](f"{tag}-b", redis.port)
        srv2.sc = sc
        todo = [redis, srv, srv2]
        log(f"scenario {sc['id']} ({sc['name']}): {kind} on ports {srv.port} and {srv2.port},"
            f" Redis on {redis.port}")
    else:
        srv, srv2 = SERVERS[kind](tag), None
        todo = [srv]
        log(f"scenario {sc['id']} ({sc['name']}): {kind} on port {srv.port}")
    srv.sc = sc         # the scenario's sizing (workers, children, processes)
    args = loadgen_args(sc, srv, kind, quick)
    if srv2:
        args += ["--port2", str(srv2.port)]
    try:
        for x in todo:
            x.start()
            started.append(x)
    except RuntimeError as e:
        log(str(e))
        for x in reversed(started):
            x.stop()
        return {"scenario": str(sc["id"]), "server": kind, "error": str(e)}
    try:
        # the servers first, then Redis: CPU and memory are summed over all
        # of them, and reported per process tree in this order
        for x in (started[1:] + started[:1]) if srv2 else started:
            args += ["--server-pid", str(x.proc.pid)]
        # --hold: the subscribers stay connected after the result line, so
        # that the server is stopped with its streams open, as in production
        args += ["--hold", "20"]
        with open(LOGS / f"{tag}.loadgen.log", "w") as lf:
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=lf, text=True,
                                 preexec_fn=boost)
            line = p.stdout.readline().strip()
            try:
                res = json.loads(line)
            except ValueError:
                res = {"scenario": str(sc["id"]), "server": kind,
                       "error": f"loadgen failed, see logs/{tag}.loadgen.log"}
            t_stop = time.time()
            # a server that died during the run: say so in the results
            died = [x.tag for x in started if x.proc.poll() is not None]
            if died:
                res["exited_during_run"] = died
            for x in reversed(started):
                x.stop()
            res["stop_s"] = round(time.time() - t_stop, 2)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    finally:
        for x in reversed(started):
            x.stop()
    res["orphans_after_stop"] = sum(x.orphans for x in started)
    res["scenario_name"] = sc["name"]
    if srv2:
        res["topology"] = "redis2"
    if kind == "php":
        res["php_poll"] = PHP_POLL
    for x in started:
        shutil.rmtree(x.dir, ignore_errors=True)
    if "error" not in res:
        log(f"  -> subs {res['subs_connected']}/{res['subs_target']}, published {res['published']},"
            f" delivered {res['delivered']}/{res['expected']}, loss {res['loss']},"
            f" p99 {res['lat_us']['p99']} us, cpu {res['cpu_us_per_delivered']} us/ev,"
            f" pss/sub {res['pss_per_sub_kb']} KiB, loadgen cpu {res['loadgen_cpu_s']} s")
    return res


# ---------------------------------------------------------------------------
# report


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for l in f:
            if l.startswith("model name"):
                model = l.split(":", 1)[1].strip()
                break
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    return {
        "nproc": sh("nproc"), "model": model, "loadavg": sh("cut -d' ' -f1-3 /proc/loadavg"), "kernel": platform.release(), "mem": mem,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "apache": sh(f"{APACHE} -v | head -1 | sed 's/Server version: //'"),
        "nginx": sh(f"{NGINX} -v 2>&1 | sed 's/nginx version: //'"),
        "nchan": sh("dpkg-query -W -f='${Version}' libnginx-mod-nchan"),
        "php": sh("dpkg-query -W -f='${Version}' libapache2-mod-php8.2"),
        "redis": sh("dpkg-query -W -f='${Version}' redis-server"),
        "commit": sh(f"git -C {ROOT} rev-parse --short HEAD") +
                  (" + uncommitted changes" if sh(f"git -C {ROOT} status --porcelain -- '*.c' '*.h'") else ""),
    }


def fmt_lat(us):
    if us is None or us < 0:
        return "–"
    if us >= 1000000:
        return f"{us / 1e6:.2f} s"
    if us >= 1000:
        return f"{us / 1000:.1f} ms"
    return f"{us:.0f} µs"


def ratio(a, b):
    try:
        if b == 0:
            return "–" if a == 0 else "∞"
        return f"{a / b:.2f}"
    except TypeError:
        return "–"


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


SUMMED = ("loss", "out_of_order", "duplicates", "pub_errors", "missed_slots",
          "subs_closed_during_run", "subs_failed", "orphans_after_stop", "bad_events")


def aggregate(rs):
    """One result from the rounds of a (scenario, server): the median of each
    number, the sum of the error counters, the minimum of subscribers."""
    ok = [r for r in rs if "error" not in r]
    if not ok:
        return rs[0]
    out = dict(ok[0])
    out["rounds"] = len(ok)
    for k, v in ok[0].items():
        if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v) and \
                all(len(r.get(k, [])) == len(v) for r in ok):
            # per-server figures (scenario 7): the median of each element
            out[k] = [median([r[k][i] for r in ok]) for i in range(len(v))]
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if isinstance(v, dict):
                out[k] = {kk: median([r[k][kk] for r in ok]) if isinstance(vv, (int, float)) else vv
                          for kk, vv in v.items()}
            continue
        vals = [r[k] for r in ok]
        if k in SUMMED:
            out[k] = sum(vals)
        elif k == "subs_connected":
            out[k] = min(vals)
        else:
            out[k] = median(vals)
    out["p99_all"] = [r["lat_us"]["p99"] for r in ok]
    out["cpu_all"] = [r["cpu_us_per_delivered"] for r in ok]
    out["pub_all"] = [r["published_per_s"] for r in ok]
    return out


def write_report(runs_all, mach):
    groups = {}
    for r in runs_all:
        groups.setdefault((str(r.get("scenario")), r.get("server")), []).append(r)
    runs = [aggregate(v) for v in groups.values()]
    nrounds = max((len(v) for v in groups.values()), default=1)
    # which scenarios of this run had rounds, which ran once (as their ids go)
    many = sorted({k[0] for k, v in groups.items() if len(v) > 1}, key=lambda i: (len(i), i))
    once = sorted({k[0] for k, v in groups.items() if len(v) == 1} - set(many),
                  key=lambda i: (len(i), i))
    lines = []
    lines.append("# mod_sse vs Nchan: latest results\n")
    lines.append(f"Machine: {mach['nproc']} × {mach['model']}, {mach['mem']}, "
                 f"kernel {mach['kernel']}; {mach['date']}.  ")
    lines.append(f"Servers: {mach['apache']} (event MPM) with mod_sse {mach['commit']}; "
                 f"nginx {mach['nginx']} with libnginx-mod-nchan {mach['nchan']} "
                 f"(2 workers); PHP {mach['php']} (prefork + mod_php)"
                 + (f"; Redis {mach['redis']} (scenario 7)" if mach.get("redis") else "")
                 + f". mod_sse.so sha256 "
                 f"{mach.get('module_sha256', '?')}….  ")
    lines.append(f"The machine is shared: load average {mach.get('loadavg', '?')} when the run "
                 "started; the last column shows how much CPU other processes took during each "
                 f"window. Servers and load generator run at nice {NICE}.  ")
    lines.append("Load generator, servers and this report share the same 2 cores. All numbers "
                 "from one `make bench` run; ratios are mod_sse / Nchan within this run. "
                 f"Each scenario: {WARMUP:g} s warm-up, {DURATION:g} s measured, 64-byte events. "
                 + (f"Scenarios {', '.join(many)} ran {nrounds} times, alternating which server "
                    "goes first; each cell is the median over the rounds (loss, out-of-order and "
                    "duplicates: the sum), and the per-round values follow the table."
                    + (f" Scenarios {', '.join(once)} ran once." if once else "") + "\n"
                    if nrounds > 1 else "\n"))
    hdr = ("| scenario | server | subscribers | published (/s) | delivered (/s) | loss | "
           "ooo / dup | p50 | p90 | p99 | max | CPU µs / delivered | KiB / sub PSS (RSS) | CPU s in window: server / loadgen / others |")
    lines.append(hdr)
    lines.append("|" + "|".join(["---"] * (hdr.count("|") - 1)) + "|")
    by = {}
    for r in runs:
        by.setdefault(str(r.get("scenario")), {})[r.get("server")] = r
    for sc in SCENARIOS:
        got = by.get(str(sc["id"]), {})
        for kind in sc["servers"]:
            r = got.get(kind)
            label = f"{sc['id']}. {sc['name']}"
            if r is None:
                continue
            if "error" in r:
                lines.append(f"| {label} | {kind} | – | – | – | – | – | – | – | – | – | – | – | – |  ")
                lines.append(f"\n> {kind}: {r['error']}\n")
                continue
            lat = r["lat_us"]
            idle = sc["rate"] is None
            subs = f"{r['subs_connected']:,}" + ("" if r["subs_connected"] == r["subs_target"]
                                                  else f" of {r['subs_target']:,}")
            if r.get("subs_closed_during_run"):
                subs += f" ({r['subs_closed_during_run']} dropped)"
            pub = "–" if idle else f"{round(r['published']):,} ({r['published_per_s']:,.0f})"
            deliv = "–" if idle else f"{round(r['delivered']):,} ({r['delivered_per_s']:,.0f})"
            loss = "–" if idle else f"{round(r['loss']):,}"
            od = "–" if idle else f"{r['out_of_order']} / {r['duplicates']}"
            cpu = "–" if idle else f"{r['cpu_us_per_delivered']:.2f}"
            others = (r["window_machine_busy_s"] - r["window_loadgen_cpu_s"] - r["server_cpu_s"])
            cpus = "–" if idle else (f"{r['server_cpu_s']:.1f} / {r['window_loadgen_cpu_s']:.1f} / "
                                     f"{max(others, 0):.1f} of "
                                     f"{2 * r['window_s']:.0f}")
            mem = f"{r['pss_per_sub_kb']:.1f} ({r['rss_per_sub_kb']:.1f})"
            if idle or sc.get("all_pss"):
                mem += f"; all PSS / sub: {r['pss_after_per_sub_kb']:.1f}"
            lines.append(f"| {label} | {kind} | {subs} | {pub} | {deliv} | {loss} | {od} | "
                         + " | ".join("–" if idle else fmt_lat(lat[k]) for k in ("p50", "p90", "p99"))
                         + f" | {'–' if idle else fmt_lat(lat['max'])} | {cpu} | {mem} | {cpus} |")
        pairs = []
        if got.get("mod_sse") and (got.get("nchan") or got.get("php")):
            pairs.append(("mod_sse", "nchan" if "nchan" in got else "php"))
        pairs += [p for p in sc.get("ratios", []) if p[0] in got and p[1] in got]
        for ka, kb in pairs:
            lines.append(ratio_row(sc, got[ka], got[kb], ka, kb))
    lines.append("")
    lines.append("Columns: *published* = events whose POST was answered 2xx in the measured window "
                 "(per second of the window); *delivered* = (event, subscriber) receipts of those "
                 "events; *loss* = expected − delivered by the end of the drain (which ends when all "
                 f"arrived, after {DRAIN_IDLE:g} s without a delivery, or {DRAIN:g} s after the last "
                 "publish), where expected sums each published event's connected subscribers; *ooo / dup* = out-of-order / duplicate receipts (sequence "
                 "numbers in the data); latency = publish (just before the POST is written) to "
                 "receipt (the read that completed the event), CLOCK_MONOTONIC; *CPU µs / delivered* "
                 "= utime+stime of all server processes over the window and drain, divided by "
                 "delivered (scenario 7: both servers' and their Redis's processes; each one's share "
                 "is in the notes below); *CPU s in window*: CPU seconds used from the start of the measured window "
                 "to the end of the drain by the server, by the load generator and by all other "
                 "processes of the machine (other engineers' work included), of the 2 × window "
                 "seconds the 2 cores offer. This kernel accounts CPU by ticks: softirq work is "
                 "charged to the task it interrupts, so on loopback a server's CPU includes part "
                 "of the receiving side's TCP processing that its own sends trigger, for both "
                 "servers alike; *KiB / sub* = (PSS, and in parentheses RSS, of all server processes "
                 "after the subscribers connected − before) / subscribers, from "
                 "/proc/PID/smaps_rollup (RSS counts shared pages once per process, PSS "
                 "divides them among the processes sharing them); for scenario 5, *all PSS / sub* "
                 "= the server's whole PSS at 10,000 idle subscribers / 10,000, pre-started idle "
                 "threads and processes included. "
                 "Ratios: mod_sse / Nchan (scenario 6: mod_sse / PHP); below 1 means mod_sse is "
                 "lower (better for latency, CPU, memory; worse for rates).")
    lines.append("")
    extra = []
    for r in runs:
        if "error" in r:
            continue
        notes = []
        if r.get("missed_slots"):
            notes.append(f"{r['missed_slots']} publish slots skipped (the publisher was more "
                         f"than 100 ms behind its schedule: the server answered POSTs too slowly)")
        if r.get("pub_errors"):
            notes.append(f"{r['pub_errors']} publish errors")
        if r.get("subs_failed"):
            notes.append(f"{r['subs_failed']} subscribers failed to connect "
                         f"(first bad status {r.get('first_bad_status')})")
        if r.get("orphans_after_stop"):
            notes.append(f"{r['orphans_after_stop']} processes still running after the master "
                         f"exited on SIGTERM (killed by pid)")
        if r.get("exited_during_run"):
            notes.append("exited before the end of the run: " + ", ".join(r["exited_during_run"]))
        if r.get("topology") == "redis2":
            parts = r.get("server_cpu_parts_s") or []
            if len(parts) == 3:
                notes.append(f"CPU s in window: server A {parts[0]:.2f}, server B {parts[1]:.2f}, "
                             f"Redis {parts[2]:.2f} (each the median of the rounds)")
            notes.append(f"subscribers per server {r['subs_per_server'][0]:,} + "
                         f"{r['subs_per_server'][1]:,}; publishes answered 2xx per server "
                         f"(warm-up included) {r['published_per_server'][0]:,} + "
                         f"{r['published_per_server'][1]:,}")
        if r["server"] in ("prefork", "detached-prefork", "detached") or r.get("subs_target", 0) > 10000:
            ma = r["mem_after"]
            notes.append(f"after the subscribers connected: {ma['nproc']} server processes, "
                         f"PSS {ma['pss_kb'] / 1024:.0f} MiB, RSS {ma['rss_kb'] / 1024:.0f} MiB")
        if r["server"] == "php":
            notes.append(f"PHP loop pauses with `{r.get('php_poll')}`; memory after "
                         f"{r['mem_after']['nproc']} processes: RSS {r['mem_after']['rss_kb'] / 1024:.0f} MiB, "
                         f"PSS {r['mem_after']['pss_kb'] / 1024:.0f} MiB")
        if notes:
            extra.append(f"- scenario {r['scenario']}, {r['server']}: " + "; ".join(notes) + ".")
    if extra:
        lines.append("Notes from this run:\n")
        lines += extra
        lines.append("")
    lines += issue15_targets(by)
    lines += issue11_targets(by)
    if nrounds > 1:
        lines.append("Per round (p99 latency · CPU µs per delivered event · published/s):\n")
        lines.append("| scenario | server | " + " | ".join(f"round {i + 1}" for i in range(nrounds)) + " |")
        lines.append("|---|---|" + "---|" * nrounds)
        for sc in SCENARIOS:
            for kind in sc["servers"]:
                rs = sorted((r for r in runs_all if str(r.get("scenario")) == str(sc["id"])
                             and r.get("server") == kind and "error" not in r),
                            key=lambda r: r.get("round", 1))
                if len(rs) < 2 or sc["rate"] is None:
                    continue
                cells = [f"{fmt_lat(r['lat_us']['p99'])} · {r['cpu_us_per_delivered']:.2f} · "
                         f"{r['published_per_s']:,.0f}" for r in rs]
                lines.append(f"| {sc['id']}. {sc['name']} | {kind} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"![latency]({OUT['png']})\n")
    lines.append(f"Raw data: `{OUT['runs']}` (one loadgen JSON line per run); logs in `logs/`.")
    (RESULTS / OUT["md"]).write_text("\n".join(lines) + "\n")


KIND_LABEL = {"nchan": "Nchan", "php": "PHP", "mod_sse": "mod_sse"}


def ratio_row(sc, a, b, ka, kb):
    """The table's ratio line of server ka against kb (same scenario)."""
    if "error" in a or "error" in b:
        return f"| **ratio {ka}/{kb}** | | – |" + " – |" * 11
    idle = sc["rate"] is None
    cells = [f"**ratio {KIND_LABEL.get(ka, ka)}/{KIND_LABEL.get(kb, kb)}**", "",
             ratio(a["subs_connected"], b["subs_connected"])]
    if idle:
        cells += ["–"] * 9
    else:
        cells += [ratio(a["published_per_s"], b["published_per_s"]),
                  ratio(a["delivered_per_s"], b["delivered_per_s"]),
                  f"{a['loss']} vs {b['loss']}",
                  "–"]
        cells += [ratio(a["lat_us"][k], b["lat_us"][k]) for k in ("p50", "p90", "p99", "max")]
        cells += [ratio(a["cpu_us_per_delivered"], b["cpu_us_per_delivered"])]
    mem = ratio(a["pss_per_sub_kb"], b["pss_per_sub_kb"]) + \
        f" ({ratio(a['rss_per_sub_kb'], b['rss_per_sub_kb'])})"
    if idle or sc.get("all_pss"):
        mem += f"; all: {ratio(a['pss_after_per_sub_kb'], b['pss_after_per_sub_kb'])}"
    cells += [mem, ""]
    return "| " + " | ".join(cells) + " |"


def issue11_targets(by):
    """The targets of issue 11 (SSEDetach) against scenarios 1, 9 and 9p of
    this run, as lines of results.md."""
    def ok(x):
        return "yes" if x else "**no**"

    def get(sid):
        return {k: v for k, v in by.get(sid, {}).items() if "error" not in v}
    s1, s2, s9, s9p = get("1"), get("2"), get("9"), get("9p")
    out = []
    d, n = s9.get("detached"), s9.get("nchan")
    if d and n:
        out.append(f"| 9: no loss | detached: {d['loss']:,} lost of {d['expected']:,} "
                   f"({d['out_of_order']} out of order, {d['duplicates']} duplicates), "
                   f"{d['subs_connected']:,} of {d['subs_target']:,} connected; Nchan: "
                   f"{n['loss']:,} lost, {n['subs_connected']:,} connected: "
                   f"{ok(d['loss'] == 0 and d['subs_connected'] == d['subs_target'])} |")
        out.append(f"| 9: p99 ≤ Nchan's | {fmt_lat(d['lat_us']['p99'])} against "
                   f"{fmt_lat(n['lat_us']['p99'])} ({ratio(d['lat_us']['p99'], n['lat_us']['p99'])}): "
                   f"{ok(d['lat_us']['p99'] <= n['lat_us']['p99'])} |")
        out.append(f"| 9: PSS / subscriber ≤ ½ Nchan's | added: {d['pss_per_sub_kb']:.2f} against "
                   f"{n['pss_per_sub_kb']:.2f} KiB ({ratio(d['pss_per_sub_kb'], n['pss_per_sub_kb'])}): "
                   f"{ok(d['pss_per_sub_kb'] <= 0.5 * n['pss_per_sub_kb'])}; whole server: "
                   f"{d['pss_after_per_sub_kb']:.2f} against {n['pss_after_per_sub_kb']:.2f} KiB "
                   f"({ratio(d['pss_after_per_sub_kb'], n['pss_after_per_sub_kb'])}) |")
    for sid, s in (("1", s1), ("2", s2)):
        d, n, m = s.get("detached"), s.get("nchan"), s.get("mod_sse")
        if d and n:
            lim = f" (target ≤ 0.75: {ok(d['lat_us']['p99'] <= 0.75 * n['lat_us']['p99'])})" \
                if sid == "1" else ""
            out.append(f"| {sid}: p99, detached / Nchan{' ≤ 0.75' if sid == '1' else ''} | "
                       f"{fmt_lat(d['lat_us']['p99'])} against {fmt_lat(n['lat_us']['p99'])}: "
                       f"{ratio(d['lat_us']['p99'], n['lat_us']['p99'])}{lim}"
                       + (f"; SSEDetach off: {fmt_lat(m['lat_us']['p99'])} "
                          f"({ratio(m['lat_us']['p99'], n['lat_us']['p99'])} of Nchan's)" if m else "")
                       + f"; loss {d['loss']:,} |")
    d, p = s9p.get("detached-prefork"), s9p.get("prefork")
    if d and p:
        out.append(f"| 9p: prefork + mod_php memory | SSEDetach on: {d['subs_connected']:,} streams "
                   f"on {d['mem_after']['nproc']} processes, whole server PSS "
                   f"{d['mem_after']['pss_kb'] / 1024:.0f} MiB, {d['pss_after_per_sub_kb']:.1f} KiB "
                   f"per stream; off: {p['subs_connected']:,} streams on {p['mem_after']['nproc']} "
                   f"processes, {p['mem_after']['pss_kb'] / 1024:.0f} MiB, "
                   f"{p['pss_after_per_sub_kb']:.1f} KiB per stream (ratio on/off "
                   f"{ratio(d['pss_after_per_sub_kb'], p['pss_after_per_sub_kb'])}) |")
    if not out:
        return []
    return ["Targets of issue 11 (SSEDetach), in this run:\n", "| target | result |", "|---|---|"] \
        + out + [""]


def issue15_targets(by):
    """The targets of issue 15 against scenario 7 (and 7m, and scenario 1 of
    the same run for the single-server p99), as lines of results.md."""
    s7 = {k: v for k, v in by.get("7", {}).items() if "error" not in v}
    s7m = {k: v for k, v in by.get("7m", {}).items() if "error" not in v}
    s1 = {k: v for k, v in by.get("1", {}).items() if "error" not in v}
    if not s7 and not s7m:
        return []
    out = ["Targets of issue 15 (scenario 7, two servers + Redis), in this run:\n",
           "| target | result |", "|---|---|"]
    a, b = s7.get("mod_sse"), s7.get("nchan")
    if a:
        out.append(f"| no loss | mod_sse: {a['loss']:,} lost, {a['out_of_order']} out of order, "
                   f"{a['duplicates']} duplicates" +
                   (f"; Nchan: {b['loss']:,} lost" if b else "") + " |")
        if b:
            ok = "yes" if a["lat_us"]["p99"] <= b["lat_us"]["p99"] else "**no**"
            out.append(f"| p99 ≤ Nchan's | {ok}: {fmt_lat(a['lat_us']['p99'])} against "
                       f"{fmt_lat(b['lat_us']['p99'])} ({ratio(a['lat_us']['p99'], b['lat_us']['p99'])}) |")
        else:
            out.append("| p99 ≤ Nchan's | Nchan's scenario 7 not run |")
        one = s1.get("mod_sse")
        if one:
            q = a["lat_us"]["p99"] / one["lat_us"]["p99"] if one["lat_us"]["p99"] else float("inf")
            ok = "yes" if q <= 2 else "**no**"
            out.append(f"| p99 ≤ 2 × single-server mod_sse's (scenario 1, same run) | {ok}: "
                       f"{fmt_lat(a['lat_us']['p99'])} against {fmt_lat(one['lat_us']['p99'])} "
                       f"({q:.2f} ×) |")
        else:
            out.append("| p99 ≤ 2 × single-server mod_sse's | scenario 1 not run in this run: "
                       "no comparison |")
        if b:
            out.append(f"| CPU per delivered event, Redis included (reported) | "
                       f"{a['cpu_us_per_delivered']:.2f} µs against Nchan's "
                       f"{b['cpu_us_per_delivered']:.2f} "
                       f"({ratio(a['cpu_us_per_delivered'], b['cpu_us_per_delivered'])}) |")
    am, bm = s7m.get("mod_sse"), s7m.get("nchan")
    if am or bm:
        cells = []
        for name, r in (("mod_sse", am), ("Nchan", bm)):
            if r:
                cells.append(f"{name} {r['published_per_s']:,.0f}/s ({r['loss']:,} lost, "
                             f"{r['cpu_us_per_delivered']:.2f} µs CPU per delivery)")
        rat = f"; ratio {ratio(am['published_per_s'], bm['published_per_s'])}" if am and bm else ""
        out.append(f"| publishes/s at maximum rate (7m, reported) | {'; '.join(cells)}{rat} |")
    out.append("")
    return out


def write_plot(runs):
    rows = []
    for sc in SCENARIOS:
        if sc["rate"] is None:
            continue
        for kind in sorted(sc["servers"], key=lambda k: k != "mod_sse"):
            r = next((x for x in runs if str(x.get("scenario")) == str(sc["id"])
                      and x.get("server") == kind and "error" not in x), None)
            if not r or r["lat_us"]["n"] == 0:
                continue
            l = r["lat_us"]
            rows.append((f"{sc['id']}. {sc['name'].split(' vs')[0]}: {kind}", *(max(l[k], 1) / 1000.0 for k in ("p50", "p90", "p99", "max"))))
    if not rows:
        return
    dat = RESULTS / OUT["dat"]
    with open(dat, "w") as f:
        f.write("# label p50_ms p90_ms p99_ms max_ms\n")
        for r in rows:
            f.write('"%s" %.3f %.3f %.3f %.3f\n' % r)
    gp = f"""
set terminal pngcairo size 1200,600 font "sans,10" noenhanced
set output "{RESULTS / OUT['png']}"
set title "Publish-to-receive latency per scenario (one make bench run; scenarios 1-4 and 7: median of 3 rounds; 2 cores shared)"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set ylabel "latency, ms (log scale)"
set yrange [0.1:*]
set grid ytics
set xtics rotate by -30
set key top left
plot "{dat}" using 2:xtic(1) title "p50", '' using 3 title "p90", '' using 4 title "p99", '' using 5 title "max"
"""
    subprocess.run(["gnuplot"], input=gp, text=True, check=False)


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated scenario ids")
    ap.add_argument("--servers", help="comma-separated: mod_sse,nchan,php,mercure,detached,"
                                        "prefork,detached-prefork")
    ap.add_argument("--quick", action="store_true", help="1 s warm-up, 3 s measured")
    ap.add_argument("--report", action="store_true", help="only rebuild the report")
    ap.add_argument("--name", default="results",
                    help="results file names: NAME.md, NAME.jsonl, NAME-machine.json, "
                         "NAME-latency.png (default: results.md, runs.jsonl, machine.json, "
                         "latency.png)")
    ap.add_argument("--rounds", type=int, help=f"rounds of scenarios 1-4 (default {ROUNDS})")
    a = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    LOGS.mkdir(exist_ok=True)
    set_name(a.name)
    runs_file = RESULTS / OUT["runs"]
    mach_file = RESULTS / OUT["machine"]
    if a.report:
        runs = [json.loads(l) for l in runs_file.read_text().splitlines() if l.strip()]
        mach = json.loads(mach_file.read_text())
    else:
        if os.geteuid() != 0:
            sys.exit("bench.py: run as root (servers switch to www-data)")
        for p in (LOADGEN, MODULE):
            if not p.exists():
                sys.exit(f"bench.py: {p} missing (make bench builds it)")
        only = set(a.only.split(",")) if a.only else None
        kinds = set(a.servers.split(",")) if a.servers else None
        for f in LOGS.glob("*"):
            f.unlink()
        mach = machine()
        mach["module_sha256"] = snapshot_module()
        mach_file.write_text(json.dumps(mach, indent=1) + "\n")
        runs = []
        t0 = time.time()
        rounds = a.rounds if a.rounds is not None else (1 if a.quick else ROUNDS)
        with open(runs_file, "w") as out:
            for rnd in range(rounds):
                for sc in SCENARIOS:
                    if only and str(sc["id"]) not in only and \
                            str(sc.get("part_of")) not in only:
                        continue
                    if rnd >= sc.get("rounds", rounds):
                        continue
                    order = sc["servers"] if rnd % 2 == 0 else sc["servers"][::-1]
                    for kind in order:
                        if kinds and kind not in kinds:
                            continue
                        r = run_one(sc, kind, a.quick, rnd + 1)
                        r["round"] = rnd + 1
                        runs.append(r)
                        out.write(json.dumps(r) + "\n")
                        out.flush()
        log(f"all runs done in {time.time() - t0:.0f} s")
    write_report(runs, mach)
    groups = {}
    for r in runs:
        groups.setdefault((str(r.get("scenario")), r.get("server")), []).append(r)
    write_plot([aggregate(v) for v in groups.values()])
    log(f"wrote {RESULTS / OUT['md']} and {RESULTS / OUT['png']}")


if __name__ == "__main__":
    main()
