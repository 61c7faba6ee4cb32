"""A real redis-server (Debian's) for the SSERedis tests, in its own
temporary directory on a free loopback port, started and stopped by pid
only; redis-cli for looking at what mod_sse wrote. kill() is a SIGKILL (a
crash, nothing saved); start() again reuses the same port and directory."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .procs import free_port

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"


class RedisServer:
    def __init__(self, appendonly=False):
        self.dir = Path(tempfile.mkdtemp(prefix="mod_sse-redis-", dir="/tmp"))
        self.port = free_port()
        self.appendonly = appendonly
        self.proc = None
        self._log = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout=15):
        assert self.proc is None
        self._log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes" if self.appendonly else "no",
             "--daemonize", "no", "--logfile", ""],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "redis-server exited:\n" + self.log()
            if self.cli("PING", check=False) == "PONG":
                return self
            time.sleep(0.05)
        raise AssertionError("redis-server did not answer PING:\n" + self.log())

    def cli(self, *args, check=True):
        p = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), *args],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        out = p.stdout.decode(errors="replace").strip()
        if check:
            assert p.returncode == 0, out
        return out

    def cli_json(self, *args):
        """A command's reply, decoded (redis-cli --json: arrays as lists)."""
        return json.loads(self.cli("--json", *args))

    def kill(self):
        """SIGKILL, by pid: Redis gone as in a crash."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None
        self._log.close()

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            self.proc = None
            self._log.close()

    def log(self):
        try:
            return (self.dir / "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
