"""Processes and sockets, by pid only (never by name), read from /proc:
children of a pid, whether a pid lives, its memory (PSS), open descriptors
and threads, the TCP table and which pid holds a socket; and free local
ports."""
import os
import signal
import socket
import subprocess


def child_pids(ppid):
    """Direct children of ppid."""
    pids = set()
    try:
        for task in os.listdir(f"/proc/{ppid}/task"):
            try:
                with open(f"/proc/{ppid}/task/{task}/children") as f:
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                pass
        return sorted(pids)
    except OSError:
        pass
    # Fallback: scan /proc for processes whose ppid matches.
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            if int(fields[1]) == ppid:
                pids.add(int(d))
        except (OSError, ValueError):
            pass
    return sorted(pids)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        state = st[st.rindex(")") + 2:].split()[0]
        return state != "Z"
    except OSError:
        return False


def terminate(proc, timeout=5):
    """Ends a subprocess we started: SIGTERM, then SIGKILL if it is still
    there after timeout seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def kill_leftovers(pids):
    """SIGKILL those of pids (children recorded before their parent was
    stopped) that are still alive: the children of a killed parent may
    linger."""
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def smaps_rollup(pid):
    """{field: KiB} of /proc/PID/smaps_rollup (Rss, Pss, Pss_Anon, Pss_File,
    Pss_Shmem, ...). Pss counts a shared page as a share of each process
    that maps it, so its sum over a process tree is the tree's footprint."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def fd_count(pid):
    """Open descriptors of pid (entries of /proc/PID/fd)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_switches(pid):
    """{tid: context switches so far} of each thread of pid: a thread that
    has done nothing since a sample has the same count."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        n = 0
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if "ctxt_switches:" in line:     # voluntary and not
                        n += int(line.split()[1])
        except OSError:
            continue
        out[int(tid)] = n
    return out


def thread_count(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def tcp_table():
    """[(local_port, remote_port, state, inode)] from /proc/net/tcp{,6}."""
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    lport = int(parts[1].rsplit(":", 1)[1], 16)
                    rport = int(parts[2].rsplit(":", 1)[1], 16)
                    rows.append((lport, rport, parts[3], int(parts[9])))
        except OSError:
            pass
    return rows


def socket_owner_pids(pids, inodes):
    """{inode: pid} for those socket inodes held open by one of pids."""
    want = set(inodes)
    owners = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                ino = int(link[8:-1])
                if ino in want:
                    owners[ino] = pid
    return owners


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
