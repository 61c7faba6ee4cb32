# mod_sse: build, run, test.
#
#   make            build .libs/mod_sse.so with apxs
#   make run        build and start a local httpd on 127.0.0.1 with the demo page
#   make test       install what the tests need, build, run unit and httpd tests
#   make unit       only the C unit tests of the pure units (wire, ring, body)
#   make itest-asan the httpd tests against a module built with ASan and UBSan
#   make install    copy the module into httpd's module directory (apxs -i)

APXS    ?= apxs
PYTEST  ?= /usr/bin/python3 -m pytest
CFLAGS_EXTRA ?=

# The module's units; each sse_*.c holds one idea (see README "Layout").
SRC = mod_sse.c sse_wire.c sse_body.c sse_ring.c sse_shm.c sse_hub.c \
      sse_stream.c sse_publish.c sse_cors.c sse_parse.c sse_filter.c
HDR = mod_sse.h sse_wire.h sse_body.h sse_ring.h sse_shm.h sse_hub.h \
      sse_cors.h sse_parse.h sse_private.h

# Pure units: no httpd, only APR (for pools) and jansson.
UNIT_SRC = sse_wire.c sse_body.c sse_ring.c sse_parse.c
APR_CFLAGS := $(shell apr-1-config --cflags --cppflags --includes 2>/dev/null)
APR_LIBS   := $(shell apr-1-config --link-ld --libs 2>/dev/null)

.PHONY: all run test unit itest itest-asan deps install clean bench

all: .libs/mod_sse.so

.libs/mod_sse.so: $(SRC) $(HDR)
	$(APXS) -c -o mod_sse.la -Wc,-Wall -Wc,-Wextra -Wc,-Wno-unused-parameter \
	    -Wc,-std=gnu11 $(CFLAGS_EXTRA) $(SRC) -ljansson

install: .libs/mod_sse.so
	$(APXS) -i -n sse mod_sse.la

deps:
	scripts/deps.sh

run: deps-run all
	scripts/run.sh

deps-run:
	scripts/deps.sh --run

tests/unit/test_units: tests/unit/test_units.c $(UNIT_SRC) sse_wire.h sse_body.h sse_ring.h \
                       sse_parse.h
	$(CC) -std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter -I. $(APR_CFLAGS) \
	    -fsanitize=address,undefined -fno-omit-frame-pointer \
	    -o $@ tests/unit/test_units.c $(UNIT_SRC) $(APR_LIBS) -ljansson -lpthread

unit: tests/unit/test_units
	tests/unit/test_units

itest: all
	$(PYTEST) -q tests $(PYTEST_ARGS)

# The module is built apart (build-asan/) and the sanitizer runtimes are
# preloaded into httpd only; a report lands in build-asan/*san.<pid>.
ASAN_LIBS = /lib/x86_64-linux-gnu/libasan.so.8 /lib/x86_64-linux-gnu/libubsan.so.1
itest-asan:
	rm -rf build-asan && mkdir -p build-asan && chmod 777 build-asan
	cp $(SRC) $(HDR) build-asan/
	cd build-asan && $(APXS) -c -o mod_sse.la -Wc,-std=gnu11 -Wc,-fsanitize=address,undefined \
	    -Wc,-fno-omit-frame-pointer -Wl,-fsanitize=address,undefined $(SRC) -ljansson >/dev/null
	SSE_TEST_MODULE=$(CURDIR)/build-asan/.libs/mod_sse.so SSE_TEST_APACHE_PRELOAD="$(ASAN_LIBS)" \
	ASAN_OPTIONS=detect_leaks=0:log_path=$(CURDIR)/build-asan/asan \
	UBSAN_OPTIONS=print_stacktrace=1:log_path=$(CURDIR)/build-asan/ubsan \
	    $(PYTEST) -q tests $(PYTEST_ARGS)
	@if ls build-asan/asan.* build-asan/ubsan.* >/dev/null 2>&1; then \
	    cat build-asan/asan.* build-asan/ubsan.* 2>/dev/null; echo "sanitizer reports above"; exit 1; fi

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) itest

clean:
	rm -rf .libs *.la *.lo *.slo *.o tests/unit/test_units build-asan

# Benchmark against Nchan (bench/README.md): installs nginx, Nchan, mod_php,
# gnuplot when missing, builds, runs every scenario, writes bench/results/.
bench/loadgen: bench/loadgen.c
	$(CC) -O2 -Wall -Wextra -Wno-unused-parameter -o $@ bench/loadgen.c

bench:
	bench/deps.sh
	$(MAKE) all bench/loadgen
	/usr/bin/python3 bench/bench.py $(BENCH_ARGS)
