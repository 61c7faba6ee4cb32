"""One Apache httpd with mod_sse in its own temporary directory (the Httpd
class), and the configuration it is built from: the modules loaded, the MPM
tuning blocks, the standard locations most tests use."""
import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .env import APACHE_BIN, AUTH_USERS, DETACH_ALL, MODULE_SO, MODULES_DIR, MPMS, apache_env
from .procs import child_pids, free_port, kill_leftovers, socket_owner_pids, tcp_table

BASE_MODULES = [
    "authz_core", "authz_host", "authz_user", "authn_core", "authn_file",
    "auth_basic", "unixd", "log_config", "mime", "reqtimeout", "env",
    "setenvif", "headers", "filter", "deflate", "brotli",
]

# The event and worker MPMs take the same directives.
MPM_TUNING_THREADED = """
StartServers 2
ServerLimit 8
ThreadLimit 32
ThreadsPerChild 32
MinSpareThreads 16
MaxSpareThreads 256
MaxRequestWorkers 256
MaxConnectionsPerChild 0
"""
MPM_TUNING = {
    "event": MPM_TUNING_THREADED,
    "worker": MPM_TUNING_THREADED,
    "prefork": """
StartServers 4
MinSpareServers 4
MaxSpareServers 16
ServerLimit 64
MaxRequestWorkers 64
MaxConnectionsPerChild 0
""",
}

# Few threads/processes, so that a handful of streams spread over children.
SMALL_MPM_THREADED = """
StartServers 3
ServerLimit 6
ThreadLimit 4
ThreadsPerChild 4
MinSpareThreads 4
MaxSpareThreads 24
MaxRequestWorkers 24
"""
SMALL_MPM = {
    "event": SMALL_MPM_THREADED,
    "worker": SMALL_MPM_THREADED,
    "prefork": """
StartServers 4
MinSpareServers 4
MaxSpareServers 12
ServerLimit 24
MaxRequestWorkers 24
""",
}

# Locations that most tests use; {htpasswd} is filled in per server.
STD_LOCATIONS = """
<Location /events>
    SetHandler sse-stream
    SSEHeartbeat 2
</Location>
<Location /events-nohb>
    SetHandler sse-stream
    SSEHeartbeat 0
</Location>
<Location /events-hb>
    SetHandler sse-stream
    SSEHeartbeat 1
</Location>
<Location /events-retry>
    SetHandler sse-stream
    SSEHeartbeat 2
    SSERetry 2500
</Location>
<Location /events-replay>
    SetHandler sse-stream
    SSEHeartbeat 2
    SSEInitialReplay 3
</Location>
<Location /events-qs>
    SetHandler sse-stream
    SSEHeartbeat 2
    SSEChannel "qs-%{QUERY_STRING}"
</Location>
<Location /events-env>
    SetHandler sse-stream
    SSEHeartbeat 2
    SetEnv SSE_ROOM lobby
    SSEChannel "env-%{ENV:SSE_ROOM}"
</Location>
<Location /events-hdr>
    SetHandler sse-stream
    SSEHeartbeat 2
    SSEChannel "room-%{HTTP:X-Room} all-rooms-%{HTTP:X-Site}"
</Location>
<Location /events-user>
    SetHandler sse-stream
    SSEHeartbeat 2
    AuthType Basic
    AuthName "sse"
    AuthBasicProvider file
    AuthUserFile "{htpasswd}"
    Require valid-user
    SSEChannel "user-%{REMOTE_USER}"
</Location>
<Location /pub>
    SetHandler sse-publish
</Location>
<Location /pub-small>
    SetHandler sse-publish
    SSEMaxMessageSize 1K
</Location>
<Location /pub-fixed>
    SetHandler sse-publish
    SSEChannel "fixed-%{HTTP:X-Room}"
</Location>
<Location /pub-auth>
    SetHandler sse-publish
    AuthType Basic
    AuthName "sse publishers"
    AuthBasicProvider file
    AuthUserFile "{htpasswd}"
    Require user alice
</Location>
<Location /pub-denied>
    SetHandler sse-publish
    Require all denied
</Location>
"""


class StartError(RuntimeError):
    pass


class Httpd:
    """One Apache httpd with mod_sse, in its own temporary directory."""

    def __init__(self, mpm="event", conf="", server_conf="", std_locations=True,
                 modules=None, mpm_conf=None, log_level="notice sse:debug",
                 load_sse=True, sse_module=None, name="httpd"):
        assert mpm in MPMS, mpm
        self.mpm = mpm
        self.conf_extra = conf
        self.server_conf = server_conf
        self.std_locations = std_locations
        self.modules = list(BASE_MODULES if modules is None else modules)
        self.mpm_conf = MPM_TUNING[mpm] if mpm_conf is None else mpm_conf
        if not load_sse:
            log_level = " ".join(w for w in log_level.split() if not w.startswith("sse:"))
        self.log_level = log_level
        self.load_sse = load_sse
        self.sse_module = Path(sse_module) if sse_module else MODULE_SO
        self.dir = Path(tempfile.mkdtemp(prefix=f"mod_sse-{name}-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        for sub in ("htdocs", "run", "logs"):
            (self.dir / sub).mkdir()
            os.chmod(self.dir / sub, 0o755)
        (self.dir / "htdocs" / "index.html").write_text("ok\n")
        self.htpasswd = self.dir / "htpasswd"
        self.htpasswd.write_text("".join(
            f"{u}:{{SHA}}{base64.b64encode(hashlib.sha1(p.encode()).digest()).decode()}\n"
            for u, p in AUTH_USERS.items()))
        os.chmod(self.htpasswd, 0o644)
        self.conf_path = self.dir / "httpd.conf"
        self.error_log_path = self.dir / "logs" / "error.log"
        self.access_log_path = self.dir / "logs" / "access.log"
        self.pid_path = self.dir / "run" / "httpd.pid"
        self.port = None
        self.proc = None
        self._stdout = None

    # ---- configuration -------------------------------------------------
    def config_text(self):
        user = ""
        if os.geteuid() == 0:
            user = "User www-data\nGroup www-data\n"
        lines = [f"# generated by tests/ssetest/httpd.py for {self.mpm}",
                 f'ServerRoot "{self.dir}"',
                 f"Listen 127.0.0.1:{self.port}",
                 "ServerName 127.0.0.1",
                 f'LoadModule mpm_{self.mpm}_module "{MODULES_DIR}/mod_mpm_{self.mpm}.so"']
        for m in self.modules:
            # Debian builds unixd, log_config, ... into the binary: no .so.
            if not (MODULES_DIR / f"mod_{m}.so").exists():
                continue
            lines.append(f'LoadModule {m}_module "{MODULES_DIR}/mod_{m}.so"')
        if self.load_sse:
            lines.append(f'LoadModule sse_module "{self.sse_module}"')
            if DETACH_ALL:
                lines.append("SSEDetach on")
        lines.append(f"""{user}
PidFile "{self.pid_path}"
DefaultRuntimeDir "{self.dir / 'run'}"
ErrorLog "{self.error_log_path}"
LogLevel {self.log_level}
LogFormat "%h %l %u %t \\"%r\\" %>s %b %{{pid}}P" sse
CustomLog "{self.access_log_path}" sse
DocumentRoot "{self.dir / 'htdocs'}"
TypesConfig /etc/mime.types
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
Timeout 60
<Directory />
    AllowOverride None
    Require all granted
</Directory>
{self.mpm_conf}
{self.server_conf.replace("{dir}", str(self.dir))}
""")
        if self.std_locations:
            lines.append(STD_LOCATIONS.replace("{htpasswd}", str(self.htpasswd)))
        lines.append(self.conf_extra.replace("{dir}", str(self.dir))
                     .replace("{htpasswd}", str(self.htpasswd)))
        return "\n".join(lines) + "\n"

    def write_config(self):
        if self.port is None:
            self.port = free_port()
        self.conf_path.write_text(self.config_text())
        os.chmod(self.conf_path, 0o644)
        return self.conf_path

    def config_test(self):
        """`apache2 -t -f conf`: (returncode, combined output)."""
        self.write_config()
        p = subprocess.run([APACHE_BIN, "-t", "-f", str(self.conf_path)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60, env=apache_env())
        return p.returncode, p.stdout.decode(errors="replace")

    # ---- lifecycle -------------------------------------------------------
    def start(self, timeout=30):
        if not MODULE_SO.exists() and self.load_sse:
            pytest.fail(f"{MODULE_SO} is missing: run `make` first")
        last_err = None
        for attempt in range(3):
            if attempt:
                self.port = free_port()
            self.write_config()
            try:
                self._start_once(timeout)
                return self
            except StartError as e:
                last_err = e
                if "Address already in use" not in str(e):
                    break
        raise last_err

    def _start_once(self, timeout):
        self._stdout = open(self.dir / "logs" / "stdout.log", "ab")
        self.proc = subprocess.Popen(
            [APACHE_BIN, "-f", str(self.conf_path), "-DFOREGROUND"],
            stdout=self._stdout, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=apache_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"httpd exited with {self.proc.returncode} at start-up:\n"
                                 + self.startup_output())
            if self.pid_path.exists() and self._port_answers() and child_pids(self.proc.pid):
                return
            time.sleep(0.05)
        self.stop()
        raise StartError("httpd did not come up in time:\n" + self.startup_output())

    def _port_answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def startup_output(self):
        out = ""
        p = self.dir / "logs" / "stdout.log"
        if p.exists():
            out += p.read_text(errors="replace")
        return out + self.error_log()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def children(self):
        return child_pids(self.proc.pid) if self.running() else []

    def stop(self, timeout=20):
        """SIGTERM to the parent (by pid), wait; SIGKILL fallback.
        Returns the seconds the shutdown took."""
        if self.proc is None:
            return 0.0
        t0 = time.monotonic()
        kids = self.children()
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kids = sorted(set(kids) | set(self.children()))
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        took = time.monotonic() - t0
        # Children of a SIGKILLed parent may linger: only those we recorded.
        kill_leftovers(kids)
        if self._stdout:
            self._stdout.close()
            self._stdout = None
        self.proc = None
        return took

    def graceful(self, wait=True, timeout=30):
        """Graceful restart: SIGUSR1 to the parent. With wait, returns when
        the new generation logged 'resuming normal operations'."""
        before = self.error_log().count("resuming normal operations")
        os.kill(self.proc.pid, signal.SIGUSR1)
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error_log().count("resuming normal operations") > before:
                return
            assert self.running(), "httpd died during graceful restart:\n" + self.error_log()
            time.sleep(0.05)
        raise AssertionError("graceful restart did not complete:\n" + self.error_log())

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- logs ------------------------------------------------------------
    def error_log(self):
        try:
            return self.error_log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_mark(self):
        try:
            return self.error_log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, mark):
        try:
            with open(self.error_log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # ---- connections -----------------------------------------------------
    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def pid_of_client(self, client_port):
        """The child pid holding the server side of the connection whose
        client end is bound to client_port (None if not found)."""
        rows = [r for r in tcp_table()
                if r[0] == self.port and r[1] == client_port and r[2] == "01"]
        if not rows:
            return None
        owners = socket_owner_pids(self.children(), [r[3] for r in rows])
        for r in rows:
            if r[3] in owners:
                return owners[r[3]]
        return None

    def wait_pid_of_client(self, client_port, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid_of_client(client_port)
            if pid:
                return pid
            time.sleep(0.05)
        return None
