# mod_sse: build, run, test.
#
#   make            build .libs/mod_sse.so with apxs
#   make run        build and start a local httpd on 127.0.0.1 with the demo page
#   make test       install what the tests need, build, run unit and httpd tests
#                   (tests/test_deb.py builds the package, installs it into this
#                   machine's Apache, serves through it and restores the machine)
#   make unit       only the C unit tests (pure units, ring and store under threads),
#                   under ASan/UBSan and under TSan (make unit-tsan), and the log tags
#   make itest-asan the httpd tests against a module built with ASan and UBSan
#   make bench-selftest  build bench/loadgen and run its self-test (part of make test)
#   make soak       soak test (tests/soak.py; not part of make test): rounds of 2,000
#                   subscribers connected and dropped (FIN and RST), publishes checked,
#                   channels deleted, for SOAK_SECONDS (default 300); fails if httpd's
#                   PSS or descriptors keep growing; writes bench/results/soak/
#   make fuzz       build the libFuzzer targets of fuzz/ (clang) and run each for
#                   FUZZ_SECONDS (default 10) from its seed corpus; fails on any report;
#                   FUZZ_SEED=N repeats a run (CI uses a fixed seed)
#   make install    copy the module into httpd's module directory (apxs -i)
#   make deb        the Debian package libapache2-mod-sse (debhelper, dh_apache2),
#                   written to build/deb/; its version is debian/changelog's

APXS    ?= apxs
PYTEST  ?= /usr/bin/python3 -m pytest
# What itest and itest-asan run: the whole suite, or files given here
# (PYTEST_ARGS is added to the paths, so a file there would come on top).
PYTEST_PATHS ?= tests
CFLAGS_EXTRA ?=
# What the module links: JSON, the Redis client, JWT verification (libjwt, OpenSSL).
MODULE_LIBS = -ljansson -lhiredis -ljwt -lcrypto

# The module's units; each sse_*.c holds one idea (see README "Layout").
SRC = mod_sse.c sse_config.c sse_http.c sse_stream.c sse_publish.c sse_filter.c sse_cors.c \
      sse_store.c sse_store_ring.c sse_shm.c sse_dispatch.c sse_registry.c sse_replay.c \
      sse_frame.c sse_wake.c sse_ring.c sse_wire.c sse_body.c sse_parse.c sse_buf.c sse_num.c \
      sse_status.c sse_metrics.c sse_redis_url.c sse_store_redis.c sse_detach.c sse_topic.c \
      sse_jwt.c sse_mercure.c
HDR = mod_sse.h sse_config.h sse_http.h sse_stream.h sse_publish.h sse_filter.h sse_cors.h \
      sse_store.h sse_shm.h sse_dispatch.h sse_registry.h sse_replay.h sse_frame.h \
      sse_wake.h sse_wake_futex.c sse_wake_poll.c sse_ring.h sse_wire.h sse_body.h \
      sse_parse.h sse_buf.h sse_num.h sse_assert.h sse_log.h sse_status.h sse_metrics.h \
      sse_redis_url.h sse_detach.h sse_topic.h sse_jwt.h sse_mercure.h

# Pure units: no httpd, only APR (for pools), jansson, and libjwt with
# OpenSSL's libcrypto (sse_jwt.c). The ring store
# needs httpd's headers (status codes) but none of its code.
UNIT_SRC  = sse_wire.c sse_body.c sse_ring.c sse_parse.c sse_buf.c sse_num.c sse_metrics.c \
            sse_redis_url.c sse_topic.c sse_jwt.c
STORE_SRC = $(UNIT_SRC) sse_store.c sse_store_ring.c sse_wake.c
APR_CFLAGS := $(shell apr-1-config --cflags --cppflags --includes 2>/dev/null)
APR_LIBS   := $(shell apr-1-config --link-ld --libs 2>/dev/null)
HTTPD_INC  := $(shell $(APXS) -q INCLUDEDIR 2>/dev/null)
UNIT_CFLAGS = -std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter -DSSE_NO_HTTPD -I. \
              -I$(HTTPD_INC) $(APR_CFLAGS) -fno-omit-frame-pointer
UNIT_LIBS   = $(APR_LIBS) -ljansson -ljwt -lcrypto -lpthread
# ThreadSanitizer builds use clang: GCC's TSan ignores atomic fences.
TSAN_CC ?= clang

.PHONY: all run test unit itest itest-asan deps install clean bench bench-selftest soak fuzz \
        deb deps-deb variant

all: .libs/mod_sse.so

.libs/mod_sse.so: $(SRC) $(HDR)
	$(APXS) -c -o mod_sse.la -Wc,-Wall -Wc,-Wextra -Wc,-Wno-unused-parameter \
	    -Wc,-std=gnu11 $(CFLAGS_EXTRA) $(SRC) $(MODULE_LIBS)

install: .libs/mod_sse.so
	$(APXS) -i -n sse mod_sse.la

deps:
	scripts/deps.sh

# The Debian package (debian/rules says how it is built). dpkg-buildpackage
# writes debhelper's files into the source and the .deb beside it, so the
# sources the build needs are copied to build/deb/src and built there: the
# tree stays clean and the package lands in build/deb/.
DEB_DIR     = build/deb
DEB_SOURCES = $(SRC) $(HDR) Makefile debian conf docs README.md
deb: deps-deb
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/src
	cp -R $(DEB_SOURCES) $(DEB_DIR)/src/
	cd $(DEB_DIR)/src && dpkg-buildpackage -b -us -uc
	@cd $(DEB_DIR) && for f in *.deb; do echo "make deb: wrote $(DEB_DIR)/$$f"; done

deps-deb:
	scripts/deps.sh --deb

run: deps-run all
	scripts/run.sh

deps-run:
	scripts/deps.sh --run

# The unit tests, each built with ASan/UBSan and, as <name>.tsan, with TSan
# (binaries of their own: the two do not mix; a TSan report exits 66).
#   test_units          wire, body, parse, ring, buffer, num, topic (single-threaded)
#   test_ring_threads   the ring under concurrent publishers and lock-free readers
#   test_store_threads  the store boundary: batches, all-or-none, counts, threads
#   test_ring_crash     a writer SIGKILLed with the lock held at each step of a write
#                       (sse_ring.c built with its test hooks, -DSSE_RING_TEST_HOOKS)
UNITS = tests/unit/test_units tests/unit/test_ring_threads tests/unit/test_store_threads \
        tests/unit/test_ring_crash
UNIT_TSAN = $(UNITS:=.tsan)

tests/unit/test_ring_crash tests/unit/test_ring_crash.tsan: UNIT_CFLAGS += -DSSE_RING_TEST_HOOKS
# sse_topic.c's switch to its general matcher, so that both are tested.
tests/unit/test_units tests/unit/test_units.tsan: UNIT_CFLAGS += -DSSE_TOPIC_TEST_HOOKS

$(UNITS): tests/unit/%: tests/unit/%.c tests/unit/check.h $(STORE_SRC) $(HDR)
	$(CC) $(UNIT_CFLAGS) -fsanitize=address,undefined -o $@ $< $(STORE_SRC) $(UNIT_LIBS)

$(UNIT_TSAN): tests/unit/%.tsan: tests/unit/%.c tests/unit/check.h $(STORE_SRC) $(HDR)
	$(TSAN_CC) $(UNIT_CFLAGS) -fsanitize=thread -o $@ $< $(STORE_SRC) $(UNIT_LIBS)

unit: $(UNITS)
	tests/unit/test_units
	tests/unit/test_ring_threads
	tests/unit/test_store_threads
	tests/unit/test_ring_crash
	/usr/bin/python3 scripts/lognos.py
	$(MAKE) unit-tsan

.PHONY: unit-tsan
unit-tsan: $(UNIT_TSAN)
	tests/unit/test_units.tsan
	tests/unit/test_ring_threads.tsan
	tests/unit/test_store_threads.tsan
	tests/unit/test_ring_crash.tsan

# Another build of the module in $(VARIANT_DIR), with $(CFLAGS_EXTRA): a test
# loads one at a graceful restart, as an upgrade does.
VARIANT_DIR ?= build/variant
variant:
	rm -rf $(VARIANT_DIR) && mkdir -p $(VARIANT_DIR)
	cp $(SRC) $(HDR) $(VARIANT_DIR)/
	cd $(VARIANT_DIR) && $(APXS) -c -o mod_sse.la -Wc,-std=gnu11 $(CFLAGS_EXTRA) $(SRC) \
	    $(MODULE_LIBS) >/dev/null

itest: all
	$(PYTEST) -q $(PYTEST_PATHS) $(PYTEST_ARGS)

# The module is built apart (build-asan/) and the sanitizer runtimes are
# preloaded into httpd only; a report lands in build-asan/*san.<pid>.
ASAN_LIBS = /lib/x86_64-linux-gnu/libasan.so.8 /lib/x86_64-linux-gnu/libubsan.so.1
itest-asan:
	rm -rf build-asan && mkdir -p build-asan && chmod 777 build-asan
	cp $(SRC) $(HDR) build-asan/
	cd build-asan && $(APXS) -c -o mod_sse.la -Wc,-std=gnu11 -Wc,-fsanitize=address,undefined \
	    -Wc,-fno-omit-frame-pointer -Wl,-fsanitize=address,undefined $(SRC) $(MODULE_LIBS) \
	    >/dev/null
	SSE_TEST_MODULE=$(CURDIR)/build-asan/.libs/mod_sse.so SSE_TEST_APACHE_PRELOAD="$(ASAN_LIBS)" \
	ASAN_OPTIONS=detect_leaks=0:log_path=$(CURDIR)/build-asan/asan \
	UBSAN_OPTIONS=print_stacktrace=1:log_path=$(CURDIR)/build-asan/ubsan \
	    $(PYTEST) -q $(PYTEST_PATHS) $(PYTEST_ARGS)
	@if ls build-asan/asan.* build-asan/ubsan.* >/dev/null 2>&1; then \
	    cat build-asan/asan.* build-asan/ubsan.* 2>/dev/null; echo "sanitizer reports above"; exit 1; fi

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) bench-selftest
	$(MAKE) itest

# Soak: minutes, stops by itself after SOAK_SECONDS (README "Testing").
SOAK_SECONDS ?= 300
soak: all
	SOAK_SECONDS=$(SOAK_SECONDS) /usr/bin/python3 tests/soak.py

# Fuzzing (fuzz/README.md): one libFuzzer target per parser or validator of
# outside input in the pure units, built with clang under ASan and UBSan
# (a UBSan report aborts, so it fails the run like a crash).
#   body_form body_json body_raw   publish bodies, then the field and channel checks
#   parse      the text/event-stream parser fed in pieces = parsed whole
#   ids        ids, event types, retry, server ids and stamps (Last-Event-ID)
#   channels   channel names and channel lists
#   frame      framing parsed back gives the event; the frame size is exact
#   num        directive sizes and counts (sse_num.c), against the old code
#   ring       the ring under a sequence of operations, checked after each
#   topic      Mercure topic selectors: the grammar and matching against second
#              implementations; an expansion of a template matches it
#   jwt        Mercure JWTs against three keys: an acceptance is a real signature
# fuzz/run.sh runs each for FUZZ_SECONDS with fuzz/corpus/<target>/ as seeds;
# new inputs go to fuzz/work/ and crashes to fuzz/artifacts/ (not kept).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 10
FUZZ_SEED    ?=
FUZZ_TARGETS  = body_form body_json body_raw parse ids channels frame num ring topic jwt
FUZZ_BINS     = $(FUZZ_TARGETS:%=fuzz/bin/%)
FUZZ_CFLAGS   = $(UNIT_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

fuzz/bin/topic: FUZZ_CFLAGS += -DSSE_TOPIC_TEST_HOOKS
$(FUZZ_BINS): fuzz/bin/%: fuzz/%.c fuzz/fuzz.h $(UNIT_SRC) $(HDR)
	@mkdir -p fuzz/bin
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(UNIT_SRC) $(UNIT_LIBS)

fuzz: $(FUZZ_BINS)
	FUZZ_SEED=$(FUZZ_SEED) fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf .libs *.la *.lo *.slo *.o $(UNITS) $(UNIT_TSAN) build-asan build fuzz/bin fuzz/work fuzz/artifacts

# Benchmark against Nchan (bench/README.md): installs nginx, Nchan, mod_php, Redis,
# gnuplot when missing, builds, runs every scenario, writes bench/results/.
bench/loadgen: bench/loadgen.c
	$(CC) -O2 -Wall -Wextra -Wno-unused-parameter -o $@ bench/loadgen.c

# The load generator's self-test against an awkward stdlib server (a few seconds).
bench-selftest: bench/loadgen
	/usr/bin/python3 bench/test_loadgen.py bench/loadgen

bench:
	bench/deps.sh
	$(MAKE) all bench/loadgen
	/usr/bin/python3 bench/bench.py $(BENCH_ARGS)
