"""Where things are: paths, the module under test, the apache2 binary and the
environment it runs in, the node client, the MPMs tested, and the test
credentials. Everything configurable through SSE_TEST_* variables is read
here."""
import os
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO = TESTS_DIR.parent
MODULE_SO = Path(os.environ.get("SSE_TEST_MODULE", REPO / ".libs" / "mod_sse.so"))
# For sanitizer runs: preloaded into httpd only (see README, Testing).
APACHE_PRELOAD = os.environ.get("SSE_TEST_APACHE_PRELOAD")
APACHE_BIN = os.environ.get("SSE_TEST_APACHE", "/usr/sbin/apache2")
MODULES_DIR = Path(os.environ.get("SSE_TEST_MODULES_DIR", "/usr/lib/apache2/modules"))
NODE_DIR = TESTS_DIR / "node"
NODE_CLIENT = NODE_DIR / "sse-client.mjs"
MPMS = ("event", "worker", "prefork")
# SSE_TEST_DETACH=on: every generated configuration says `SSEDetach on` at
# server level (locations that set it themselves keep theirs), to run the
# whole suite on the detached path (README, Testing).
DETACH_ALL = os.environ.get("SSE_TEST_DETACH", "off").lower() in ("1", "on", "yes")

# Credentials for the locations protected by Basic auth in the shared config.
AUTH_USERS = {"alice": "wonderland", "bob": "builder"}


def apache_env():
    """The environment of every apache2 the tests run."""
    env = dict(os.environ)
    if APACHE_PRELOAD:
        env["LD_PRELOAD"] = APACHE_PRELOAD
    return env
