# sagad — one non-recursive Makefile.
#
#   make            build everything into build/
#   make run        install what is missing, build, run the main job (no broker needed)
#   make test       install what is missing, build, run every test suite
#   make bench      benchmarks (bench/), never part of the tests
#   make asan       unit tests under AddressSanitizer + UBSan
#   make fuzz       every fuzz target for FUZZ_SECONDS each (default 60)
#   make install    PREFIX=/usr/local DESTDIR=
#   make format / format-check / clean
#
# Variants build into their own folders: build/ (release + debug info), build/asan/,
# build/fuzz/ (clang). Objects are in build*/obj/ with -MMD -MP dependency files.

PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
CC ?= cc
FUZZ_SECONDS ?= 60
FUZZ_QUICK_SECONDS ?= 10

PKGS := yaml-0.1 libcjson sqlite3 libmicrohttpd libcurl libprotobuf-c libjwt rdkafka
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -ljq

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
# CI builds with -Werror (CI=true is set by the CI runner); so does WERROR=1.
ifneq ($(filter true 1,$(CI) $(WERROR)),)
WARN += -Werror
endif

OPT ?= -O2 -g
SAN ?=
# Code generated from schemas/*.proto (protoc-c); shared by every variant.
GEN := build/gen
PROTOS := $(wildcard schemas/*.proto)
PROTO_SRCS := $(PROTOS:%.proto=$(GEN)/%.pb-c.c)
PROTO_HDRS := $(PROTOS:%.proto=$(GEN)/%.pb-c.h)

CFLAGS := -std=c11 -D_GNU_SOURCE -pthread $(OPT) $(WARN) $(SAN) -I. -I$(GEN) $(PKG_CFLAGS) \
          $(EXTRA_CFLAGS)
LDFLAGS := $(SAN) $(EXTRA_LDFLAGS)
LDLIBS := $(PKG_LIBS) -lm -pthread

# ---- sources ------------------------------------------------------------------------
LIB_SRCS := $(wildcard orchestrator/base/*.c orchestrator/yamltree/*.c \
                       orchestrator/jqcheck/*.c orchestrator/jsonschema/*.c \
                       orchestrator/dsl/*.c orchestrator/jqrt/*.c orchestrator/engine/*.c \
                       orchestrator/log/*.c orchestrator/store/*.c orchestrator/transport/*.c \
                       orchestrator/driver/*.c activities/*.c activities/*/*.c gateway/*.c \
                       visualize/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o) $(PROTO_SRCS:$(GEN)/%.c=$(BUILD)/obj/gen/%.o)
LIB := $(BUILD)/libsagad.a

BINS := $(BUILD)/bin/sagactl $(BUILD)/bin/sagad $(BUILD)/bin/saga-worker
TEST_SRCS := $(wildcard tests/unit/test_*.c)
TESTS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRCS := $(wildcard bench/bench_*.c)
BENCHES := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

.PHONY: all deps deps-test run demo test unit asan valgrind golden schema-check fuzz fuzz-quick \
        bench install uninstall clean format format-check
.DEFAULT_GOAL := all

all: $(BINS) $(TESTS) $(BENCHES)

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

$(BUILD)/obj/%.o: %.c | $(PROTO_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Generated code is not held to the project's warnings.
$(BUILD)/obj/gen/%.o: $(GEN)/%.c $(PROTO_HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -pthread $(OPT) $(SAN) -I$(GEN) $(PKG_CFLAGS) -c $< -o $@

$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: %.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) $<

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/sagactl: $(BUILD)/obj/cli/sagactl.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/bin/sagad: $(BUILD)/obj/orchestrator/sagad.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# saga-worker: hosts activity modules for Kafka queues (worker/*.c, not in the library).
WORKER_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard worker/*.c))
$(BUILD)/bin/saga-worker: $(WORKER_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# ---- the two commands -----------------------------------------------------------------
run demo: deps
	@$(MAKE) --no-print-directory $(BINS)
	@scripts/run.sh $(BUILD)

# `make test` runs every suite, even after one fails, and prints one closing line.
test: deps-test
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" all
	@tests/run.sh

unit: all
	@tests/run.sh unit

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
		SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" all
	@tests/run.sh asan

valgrind: all
	@tests/run.sh valgrind

golden: all
	@tests/run.sh golden

schema-check:
	@tests/run.sh schema

# ---- fuzzing (clang, libFuzzer) ---------------------------------------------------------
# The library is compiled once with coverage instrumentation (fuzzer-no-link) into its
# own archive; each target links only what it uses from it.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -pthread -g -O1 -I. -I$(GEN) $(PKG_CFLAGS) \
               -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
FUZZ_OBJS := $(LIB_SRCS:%.c=build/fuzz/obj/%.o) $(PROTO_SRCS:$(GEN)/%.c=build/fuzz/obj/gen/%.o)

build/fuzz/obj/%.o: %.c | $(PROTO_HDRS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

build/fuzz/obj/gen/%.o: $(GEN)/%.c $(PROTO_HDRS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build/fuzz/libsagad.a: $(FUZZ_OBJS)
	rm -f $@
	ar rcs $@ $^

build/fuzz/%: tests/fuzz/%.c build/fuzz/libsagad.a
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $< build/fuzz/libsagad.a $(LDLIBS) -o $@

fuzz-build: $(FUZZ_BINS)

fuzz: deps-test fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run.sh fuzz

fuzz-quick: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_QUICK_SECONDS) tests/run.sh fuzz

.PHONY: fuzz-build

# ---- benchmarks ------------------------------------------------------------------------
bench: deps
	@$(MAKE) --no-print-directory $(BINS) $(BENCHES)
	@bench/run.sh $(BUILD)

# ---- install ---------------------------------------------------------------------------
install: $(BINS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/sagad/workflows \
		$(DESTDIR)$(PREFIX)/share/sagad/schemas
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	cp -R workflows/. $(DESTDIR)$(PREFIX)/share/sagad/workflows/
	install -m 0644 schemas/*.json schemas/*.proto $(DESTDIR)$(PREFIX)/share/sagad/schemas/

uninstall:
	rm -f $(BINS:$(BUILD)/bin/%=$(DESTDIR)$(PREFIX)/bin/%)
	rm -rf $(DESTDIR)$(PREFIX)/share/sagad

clean:
	rm -rf build

# ---- formatting ------------------------------------------------------------------------
FORMAT_SRCS = $(shell git ls-files '*.c' '*.h')
format:
	clang-format -i $(FORMAT_SRCS)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRCS) && echo "format: ok"

-include $(shell find build -name '*.d' 2>/dev/null)
