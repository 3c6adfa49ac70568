# mproc - the front door.  CMake does the building; this file only names the
# usual jobs.  Every target drives cmake/ctest directly, so any generator
# works (set CMAKE_GENERATOR=Ninja in the environment to use Ninja).
#
#   make                  build (RelWithDebInfo) in $(BUILD)
#   make check            install-deps, build, every test; again with the
#                         kernel-feature fallbacks forced (no io_uring, no
#                         pidfd); then the same suite built with ASan+UBSan
#                         in $(ASAN_BUILD)
#   make check-repeat     make check $(CHECK_REPEAT) times in a row, stopping
#                         at the first failure (the flakiness check:
#                         make check-repeat CTEST_JOBS=8)
#   make demo             install-deps, build, run the demo
#   make fuzz             build the fuzz targets with clang (libFuzzer) in
#                         $(FUZZ_BUILD) and run each for $(FUZZ_SECONDS) s
#                         (make check runs this too)
#   make bench            install-deps, build, run the benchmarks
#   make install          install into $(PREFIX) (default /usr/local;
#                         DESTDIR is honoured)
#   make clean            remove both build directories
#
# Variables (override on the command line: make BUILD=build-mine check):
#   BUILD, ASAN_BUILD     build directories (build, build-asan)
#   FUZZ_BUILD            fuzz build directory (build-fuzz)
#   FUZZ_SECONDS          seconds each fuzz target runs (10)
#   BUILD_TYPE            CMake build type of $(BUILD) (RelWithDebInfo)
#   PREFIX                install prefix (/usr/local)
#   JOBS                  parallel compile jobs (all CPUs)
#   CTEST_JOBS            tests run at once (2)
#   CHECK_REPEAT          rounds of make check-repeat (5)
#   CMAKE_ARGS            extra arguments for both configure steps
#   CMAKE, CTEST          the tools

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 10
BUILD_TYPE ?= RelWithDebInfo
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_JOBS ?= 2
CHECK_REPEAT ?= 5
CMAKE      ?= cmake
CTEST      ?= ctest
CMAKE_ARGS ?=

# The sanitizer build runs slower: the test runner stretches its per-case
# timeout by this factor there.
ASAN_TIMEOUT_MULTIPLIER ?= 3

CTEST_FLAGS = --output-on-failure --no-tests=error -j$(CTEST_JOBS)

# Recipes run in sh with -e: the first failing command fails the target.
.SHELLFLAGS := -ec

.PHONY: all build deps test test-fallbacks asan test-asan fuzz check \
        check-repeat demo bench install clean help

all: build

help:
	@sed -n '1,/^$$/s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

deps:
	sh scripts/install-deps.sh

# Configure every time: cheap when nothing changed, and it picks up changed
# options (BUILD_TYPE, CMAKE_ARGS).
build:
	$(CMAKE) -S . -B "$(BUILD)" -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DMPROC_BUILD_TESTS=ON -DMPROC_BUILD_EXAMPLES=ON -DMPROC_BUILD_BENCH=ON \
	  $(CMAKE_ARGS)
	$(CMAKE) --build "$(BUILD)" --parallel $(JOBS)

test: build
	cd "$(BUILD)" && $(CTEST) $(CTEST_FLAGS)

# The same suite again with the kernel features mproc prefers switched off,
# so the fallbacks stay tested on a new kernel: children reaped by a thread
# instead of io_uring, watched through pipes instead of pidfds, and queue
# locks released with an exchange instead of relying on membarrier(2).
# Without pidfds there is no forkserver (mproc/context.h): the cases run
# under it (name@forkserver) are left out of that run; the start-method
# cases skip their forkserver parts themselves.
test-fallbacks: build
	cd "$(BUILD)" && MPROC_NO_URING=1 $(CTEST) $(CTEST_FLAGS)
	cd "$(BUILD)" && MPROC_NO_PIDFD=1 MPROC_NO_URING=1 MPROC_NO_MEMBARRIER=1 \
	  $(CTEST) $(CTEST_FLAGS) -LE method-forkserver

asan:
	$(CMAKE) -S . -B "$(ASAN_BUILD)" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DMPROC_SANITIZE=ON -DMPROC_BUILD_EXAMPLES=OFF -DMPROC_BUILD_BENCH=OFF \
	  $(CMAKE_ARGS)
	$(CMAKE) --build "$(ASAN_BUILD)" --parallel $(JOBS)

test-asan: asan
	cd "$(ASAN_BUILD)" && \
	  MPROC_TEST_TIMEOUT_MULTIPLIER=$(ASAN_TIMEOUT_MULTIPLIER) \
	  UBSAN_OPTIONS="$${UBSAN_OPTIONS:-print_stacktrace=1}" \
	  $(CTEST) $(CTEST_FLAGS)

# The parsers of untrusted bytes (frame headers, the handshake) under
# libFuzzer with ASan+UBSan, a short run each (fuzz/README.md).
fuzz: deps
	sh fuzz/run.sh "$(FUZZ_BUILD)" $(FUZZ_SECONDS)

# Sequential on purpose, also under make -j: dependencies first, then the
# normal suite, then the sanitizer suite, then a short fuzz run; the first
# failure stops it.
check: deps
	$(MAKE) --no-print-directory test
	$(MAKE) --no-print-directory test-fallbacks
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory fuzz
	@echo "make check: all tests passed, with the fallbacks, under ASan+UBSan, and the fuzz targets ran clean"

# A test that passes once may still fail under load: make check again and
# again (CTEST_JOBS=8 on a small machine crowds it), until the first
# failure.  Command-line variables (CTEST_JOBS) reach every round.
check-repeat:
	i=1; while [ $$i -le $(CHECK_REPEAT) ]; do \
	  echo "make check-repeat: round $$i of $(CHECK_REPEAT)"; \
	  $(MAKE) --no-print-directory check || \
	    { echo "make check-repeat: round $$i failed"; exit 1; }; \
	  i=$$((i + 1)); \
	done; \
	echo "make check-repeat: $(CHECK_REPEAT) rounds of make check passed"

demo: deps
	$(MAKE) --no-print-directory build
	sh examples/demo.sh "$(BUILD)/examples"

bench:
	sh scripts/install-deps.sh --bench
	$(MAKE) --no-print-directory build
	sh bench/run.sh "$(BUILD)"

install: build
	DESTDIR="$(DESTDIR)" $(CMAKE) --install "$(BUILD)" --prefix "$(PREFIX)"

clean:
	@test -n "$(BUILD)" && test -n "$(ASAN_BUILD)" && test -n "$(FUZZ_BUILD)"
	rm -rf -- "$(BUILD)" "$(ASAN_BUILD)" "$(FUZZ_BUILD)"
