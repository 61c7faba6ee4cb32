"""Builds tests/modules/mod_sse_test.c with apxs, once per test module that
imports the fixture: `from testmod import sse_testmod_so`."""
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import REPO, TESTS_DIR

TEST_MODULE_SRC = TESTS_DIR / "modules" / "mod_sse_test.c"


def sse_testmod_conf(so, locations=""):
    return f'LoadModule sse_test_module "{so}"\n' + locations


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
