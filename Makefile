# Thin wrapper over scripts/setup.sh, CMake and ctest.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
LISTEN     ?= 127.0.0.1:50051
ADMIN_LISTEN ?= 127.0.0.1:9090
HTTP_LISTEN ?= 127.0.0.1:8080

.PHONY: all setup build run install test test-asan soak bench bench-web bench-client profile fuzz clean

all: build

setup:
	@scripts/setup.sh $(BUILD)

$(BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/moonwire serve --listen $(LISTEN) --admin $(ADMIN_LISTEN) --http $(HTTP_LISTEN) examples/helloworld

# The binary, with its Lua library compiled in: PREFIX/bin/moonwire.
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# The whole suite, then the same suite under ASan+UBSan. The clients only
# the tests use are installed first (tests/tools/setup.sh: pinned, cached).
test: build
	@tests/tools/setup.sh
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory test-asan

test-asan:
	@scripts/setup.sh $(ASAN_BUILD)
	@tests/tools/setup.sh
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMW_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

# Hot reloads under steady load (about 20 s): 20 file saves and 200 SIGHUPs,
# every call checked; prints the save-to-new-code times and RSS growth.
soak: build
	/usr/bin/python3 tests/reload_soak.py --binary $(BUILD)/moonwire

# Moonwire against grpc-go, C++, grpc-js, Python and a C echo on gRPC core,
# side by side, then the web protocols against connect-node (bench-web);
# writes docs/benchmarks.md. Slow (about 25 minutes), and not part of
# `make test` (which runs a smoke test of each harness).
bench: build
	tests/bench/setup.sh
	tests/bench/build.sh $(BUILD)
	/usr/bin/python3 tests/bench/run.py --build-dir $(BUILD) --out docs/benchmarks.md \
	  --json $(BUILD)/bench/results.json
	$(MAKE) --no-print-directory bench-web

# Unary over Connect (proto, JSON; h2c, HTTP/1.1), gRPC-Web and REST JSON
# against the same method over gRPC, on Moonwire and on @connectrpc/connect-node
# serving it from the same descriptors, as ratios in one run (about 4 minutes);
# writes its section of docs/benchmarks.md (performance.md, "The HTTP listener").
bench-web: build
	@tests/tools/setup.sh
	/usr/bin/python3 tests/bench/web_bench.py --build-dir $(BUILD) --out docs/benchmarks.md \
	  --json $(BUILD)/bench/web.json

# What an outbound call (mw.client) costs: unary calls straight to a Lua
# echo and through a Lua gateway that calls one, side by side, at 1, 16 and
# 64 calls in flight; memory per idle cached channel; the time a parent's
# cancellation takes to reach its child. About 2 minutes; prints the
# figures (docs/performance.md, "Outbound calls"). `make test` runs a smoke
# test of it.
bench-client: build
	/usr/bin/python3 tests/bench/client_bench.py --build-dir $(BUILD) \
	  --json $(BUILD)/bench/client.json

# Instructions per unary call and where they go (callgrind, one worker):
# make profile [PAYLOAD=4096] [INTERCEPT=lua|access_log|trace1|trace0|idem_first|idem_replay|idem_nokey|client]
# (client: the server is a gateway making one outbound call per call)
#              [ADMIN=1: with the admin listener, so metrics count]
#              [CTX=0: the Unary handler declares no ctx (function(req))]
#              [SERVER=cecho|cecho-mwt: the bench's C echo on gRPC core instead,
#               with core's channel defaults or with Moonwire's]
# Per streamed message instead: make profile MODE=server-stream|client-stream|bidi|bidi-duplex
#              [PAYLOAD=64] [SECONDS=4 (of load)] [STREAMS=10] [WRITE_BATCH=16 (client-stream, bidi-duplex)]
PAYLOAD ?= 16
CALLS ?= 20000
INTERCEPT ?= none
ADMIN ?= 0
CTX ?= 1
SERVER ?= moonwire
MODE ?= unary
STREAMS ?= 10
WRITE_BATCH ?=
profile: build
	tests/bench/setup.sh
	ADMIN=$(ADMIN) CTX=$(CTX) SERVER=$(SERVER) MODE=$(MODE) STREAMS=$(STREAMS) WRITE_BATCH=$(WRITE_BATCH) \
	  tests/bench/profile.sh $(BUILD) $(PAYLOAD) $(if $(filter unary,$(MODE)),$(CALLS),$(or $(SECONDS),4)) $(INTERCEPT)

# libFuzzer over the codec, the config loader, descriptor sets and the
# inflater (tests/fuzz/, clang from tests/fuzz/setup.sh), FUZZ_SECONDS each;
# a crashing input is written to $(BUILD)/fuzz/crashes and fails the target.
FUZZ_SECONDS ?= 60
fuzz: build
	@tests/fuzz/setup.sh
	tests/fuzz/fuzz.sh build $(BUILD)
	@failed=; for t in codec config schema inflate; do \
	  tests/fuzz/fuzz.sh run $(BUILD) $$t $(FUZZ_SECONDS) || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed (see $(BUILD)/fuzz/crashes)"; exit 1; fi

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
