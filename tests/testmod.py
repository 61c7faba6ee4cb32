"""The test module tests/modules/mod_sse_test.c: its source, and the
configuration that loads it. conftest.py's module-scoped fixture
sse_testmod_so builds it with apxs, once per test module that uses it."""
from ssetest.env import TESTS_DIR

TEST_MODULE_SRC = TESTS_DIR / "modules" / "mod_sse_test.c"


def sse_testmod_conf(so, locations=""):
    return f'LoadModule sse_test_module "{so}"\n' + locations
