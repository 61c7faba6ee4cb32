"""The Debian package (`make deb`), installed into this machine's Apache.

The package is built once per module with `make deb` (which must leave the
tree as it found it, but for the ignored build/), then its metadata is read
with dpkg-deb, and it is installed with `apt-get install ./....deb` into the
real /etc/apache2 and /usr/lib/apache2/modules, enabled with `a2enmod sse`,
checked with `apache2ctl configtest`, served by an apache2 of our own on a
free loopback port that loads exactly what the package installed (through
the mods-enabled/ links a2enmod made), and purged.

Invariants:
- The machine is put back as it was. Before installing, every path the
  package or a2enmod may touch (the module, sse.load and sse.conf in
  mods-available and mods-enabled, the conf-enabled/mod_sse.conf of a
  `make install`, a2enmod's state markers) is copied aside (cp -a) to a
  directory in /var/tmp and removed, so that dpkg never meets a file it did
  not ship; after the purge they are copied back and the state is compared
  with the one recorded before (type, mode, owner, link target, content).
  A package already installed is not replaced: the test fails and says so.
- The Debian apache2 service is neither started nor restarted: the
  maintainer scripts only act through invoke-rc.d, which a policy-rc.d
  denying everything (ours if none exists, removed after) keeps quiet; the
  apache2 we start is stopped by pid.
- Needs root (dpkg); as another user the module's tests are skipped with the
  reason shown.
"""
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ssetest.channels import chan_query, uniq
from ssetest.clients import request, subscribe
from ssetest.env import REPO
from ssetest.publish import pub_raw, wait_subscribers
from ssetest.wire import wire_event

PKG = "libapache2-mod-sse"
MODULE = Path("/usr/lib/apache2/modules/mod_sse.so")
AVAIL = Path("/etc/apache2/mods-available")
ENABLED = Path("/etc/apache2/mods-enabled")
STATE_DIRS = [Path("/var/lib/apache2/module") / d for d in
              ("enabled_by_admin", "enabled_by_maint", "disabled_by_admin", "disabled_by_maint")]
# Everything the package, its maintainer scripts or a2enmod/a2dismod may
# create, change or remove; conf-enabled/mod_sse.conf (README: make install)
# would load the module a second time.
TOUCHED = ([MODULE, AVAIL / "sse.load", AVAIL / "sse.conf", ENABLED / "sse.load",
            ENABLED / "sse.conf", Path("/etc/apache2/conf-enabled/mod_sse.conf")]
           + [d / "sse" for d in STATE_DIRS])
POLICY = Path("/usr/sbin/policy-rc.d")
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: installs the package with dpkg")


def maps_of(pid):
    """The memory map of a process, "" once it has exited."""
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def run(cmd, timeout=300, check=True, **kw):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       env=env, **kw)
    out = p.stdout.decode(errors="replace")
    if check:
        assert p.returncode == 0, f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{out}"
    return p.returncode, out


def path_state(p):
    """What is at p, comparable: None, ("dir", ...), ("link", target) or
    ("file", mode, uid, gid, sha256)."""
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    if os.path.islink(p):
        return ("link", os.readlink(p))
    if os.path.isdir(p):
        return ("dir", st.st_mode, st.st_uid, st.st_gid)
    return ("file", st.st_mode, st.st_uid, st.st_gid, hashlib.sha256(p.read_bytes()).hexdigest())


def machine_state():
    return {str(p): path_state(p) for p in TOUCHED + STATE_DIRS + [POLICY]}


def installed_version():
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", PKG],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = p.stdout.decode()
    return out.split()[-1] if p.returncode == 0 and out.startswith("install ok installed") else None


def tree_status():
    """`git status` of the repository, ignored files included."""
    return set(run(["git", "-C", str(REPO), "status", "--porcelain", "--ignored",
                    "--untracked-files=all"])[1].splitlines())


def sse_conf_from_source():
    """sse.conf as debian/rules makes it: conf/mod_sse.conf without its
    LoadModule line (which is sse.load)."""
    lines = (REPO / "conf" / "mod_sse.conf").read_text().splitlines(keepends=True)
    load = [ln for ln in lines if ln.startswith("LoadModule sse_module ")]
    assert len(load) == 1, load
    return load[0], "".join(ln for ln in lines if ln not in load)


@pytest.fixture(scope="module")
def deb():
    """Builds the package with `make deb`; (path of the .deb, version, arch)."""
    version = run(["dpkg-parsechangelog", "-l", str(REPO / "debian" / "changelog"),
                   "-S", "Version"])[1].strip()
    arch = run(["dpkg", "--print-architecture"])[1].strip()
    before = tree_status()
    _, out = run(["make", "-C", str(REPO), "deb"], timeout=900)
    name = f"{PKG}_{version}_{arch}.deb"
    assert f"make deb: wrote build/deb/{name}" in out, out[-3000:]
    # The build wrote nothing in the tree outside the ignored build/.
    new = {line for line in tree_status() - before if not line.startswith("!! build/")}
    assert new == set(), new
    path = REPO / "build" / "deb" / name
    assert path.is_file()
    return path, version, arch


@pytest.fixture
def system_apache():
    """Moves aside what the package may touch and restores it afterwards
    (see the module's docstring); purges the package if a test left it."""
    if installed_version() is not None:
        pytest.fail(f"{PKG} {installed_version()} is installed on this machine: the test would "
                    f"replace it; remove it first (apt-get purge {PKG})")
    before = machine_state()
    backup = Path(tempfile.mkdtemp(prefix="mod_sse-test-deb-", dir="/var/tmp"))
    (backup / "README").write_text("Saved by tests/test_deb.py, copied back after the test.\n"
                                   + "".join(f"{i} {p}\n" for i, p in enumerate(TOUCHED)))
    saved = {}
    for i, p in enumerate(TOUCHED):
        if before[str(p)] is not None:
            run(["cp", "-a", str(p), str(backup / str(i))])
            saved[p] = backup / str(i)
            p.unlink()
    own_policy = not POLICY.exists()
    if own_policy:
        POLICY.write_text("#!/bin/sh\n# temporary, written by mod_sse tests/test_deb.py\nexit 101\n")
        POLICY.chmod(0o755)
    try:
        yield
    finally:
        try:
            if installed_version() is not None:
                run(APT + ["purge", PKG])
        finally:
            for p in TOUCHED:
                if os.path.lexists(p):
                    p.unlink()
            for p, b in saved.items():
                p.parent.mkdir(parents=True, exist_ok=True)
                run(["cp", "-a", str(b), str(p)])
            for d in STATE_DIRS:
                if before[str(d)] is None and d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
            if own_policy:
                POLICY.unlink()
        after = machine_state()
        assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        shutil.rmtree(backup)


def test_deb_metadata(deb):
    path, version, arch = deb
    fields = {f: run(["dpkg-deb", "-f", str(path), f])[1].strip()
              for f in ("Package", "Version", "Architecture", "Section", "Depends")}
    assert fields["Package"] == PKG
    assert fields["Version"] == version
    assert fields["Architecture"] == arch
    assert fields["Section"] == "httpd"
    # ${shlibs:Depends} (computed from the module's NEEDED libraries) and
    # dh_apache2's API dependency, nothing else.
    api = re.search(r"^our \$API = \"(\d+)\";", Path("/usr/bin/dh_apache2").read_text(), re.M)
    depends = [d.strip() for d in fields["Depends"].split(",")]
    names = sorted(re.match(r"[a-z0-9.+-]+", d).group(0) for d in depends)
    assert names == sorted(["libc6", "libjansson4", "libhiredis0.14", "libjwt0", "libssl3",
                            f"apache2-api-{api.group(1)}", "apache2-bin"]), fields["Depends"]
    for lib in ("libjansson4", "libhiredis0.14", "libjwt0", "libssl3"):
        assert re.fullmatch(re.escape(lib) + r" \(>= [\d.]+\)",
                            next(d for d in depends if d.startswith(lib + " "))), depends
    # The files: the module, sse.load and sse.conf, and the documentation
    # (dh_compress gzips documents over 4 KiB).
    listing = run(["dpkg-deb", "-c", str(path)])[1]
    files = sorted(line.split()[-1] for line in listing.splitlines() if line.startswith("-"))
    doc = "./usr/share/doc/" + PKG
    assert files == sorted([
        "./usr/lib/apache2/modules/mod_sse.so",
        "./etc/apache2/mods-available/sse.load",
        "./etc/apache2/mods-available/sse.conf",
        f"{doc}/README.md.gz", f"{doc}/changelog.gz", f"{doc}/copyright",
        f"{doc}/log-messages.txt.gz"]), listing
    assert re.search(r"^-rw-r--r-- root/root .* \./usr/lib/apache2/modules/mod_sse\.so$",
                     listing, re.M), listing
    # The files under /etc are conffiles: an administrator's edits survive upgrades.
    with tempfile.TemporaryDirectory() as d:
        run(["dpkg-deb", "-e", str(path), d])
        assert Path(d, "conffiles").read_text().split() == [
            "/etc/apache2/mods-available/sse.conf", "/etc/apache2/mods-available/sse.load"]
        # Installed, not enabled: no postinst enables it behind the administrator's back.
        assert not Path(d, "postinst").exists()


def test_install_enable_serve_purge(deb, system_apache, httpd):
    path, version, _ = deb
    _, out = run(APT + ["install", "--no-install-recommends", str(path)])
    assert installed_version() == version, out

    # What the package installed: one LoadModule line, and the rest of
    # conf/mod_sse.conf as sse.conf; the module is not enabled yet.
    load_line, conf = sse_conf_from_source()
    assert load_line == f"LoadModule sse_module {MODULE}\n"
    assert (AVAIL / "sse.load").read_text() == load_line
    assert (AVAIL / "sse.conf").read_text() == conf
    assert MODULE.is_file()
    owned = set(run(["dpkg", "-L", PKG])[1].splitlines())
    assert {str(MODULE), str(AVAIL / "sse.load"), str(AVAIL / "sse.conf")} <= owned
    assert not os.path.lexists(ENABLED / "sse.load")

    # An apache2 of our own on a loopback port, configured with what a2enmod
    # enables: nothing yet.
    h = httpd(mpm="event", std_locations=False, load_sse=False,
              server_conf="".join(f"IncludeOptional {ENABLED}/sse.{x}\n" for x in ("load", "conf")))
    chan = uniq("deb")
    assert request(h.port, "GET", "/events" + chan_query(chan)).status == 404

    # README: a2enmod sse, apachectl configtest, systemctl reload apache2.
    _, out = run(["a2enmod", "sse"])
    assert "Enabling module sse." in out, out
    assert os.readlink(ENABLED / "sse.load") == "../mods-available/sse.load"
    assert os.readlink(ENABLED / "sse.conf") == "../mods-available/sse.conf"
    # The machine's real configuration, with the module in it.
    _, out = run(["apache2ctl", "configtest"])
    assert "Syntax OK" in out, out
    _, out = run(["apache2ctl", "-M"])
    assert re.search(r"^ sse_module \(shared\)$", out, re.M), out
    # Our apache2 reloaded (graceful, as systemctl reload): the installed
    # module serves the /events and /publish locations of the installed sse.conf.
    h.graceful()
    # The parent logs "resuming normal operations" before it forks the new
    # children: wait for one of them to have the installed module mapped.
    deadline = time.monotonic() + 15
    while not any(str(MODULE) in maps_of(pid) for pid in h.children()):
        assert time.monotonic() < deadline, "no child maps " + str(MODULE)
        time.sleep(0.05)
    with subscribe(h.port, chan, path="/events") as s:
        assert s.headers["content-type"] == "text/event-stream; charset=utf-8"
        wait_subscribers(h.port, chan, 1, path="/publish")
        r = pub_raw(h.port, chan, b"installed\nfrom the package", event="deb", path="/publish")
        assert r.status == 200, r
        assert r.json == {"id": r.json["id"], "subscribers": 1}, r
        ev = s.next_event(10)
        assert ev.raw == wire_event(r.json["id"], b"installed\nfrom the package", event="deb")
    h.stop()

    # Removing the package disables the module (prerm) and removes its
    # files; purging removes the conffiles too.
    _, out = run(APT + ["purge", PKG])
    assert installed_version() is None, out
    for p in (MODULE, AVAIL / "sse.load", AVAIL / "sse.conf", ENABLED / "sse.load",
              ENABLED / "sse.conf"):
        assert not os.path.lexists(p), p
    _, out = run(["apache2ctl", "configtest"])
    assert "Syntax OK" in out, out
