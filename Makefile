# ferry: one non-recursive Makefile. Everything builds into $(B) (default build/).
#   make            ferry, libferry.so, ferryfs, plugins/*.so, test programs
#   make test       all tests (unit, plugin ABI, integration with moto_server)
#   make check      the same, built with ASan+UBSan into build/asan
#   make valgrind   the integration tests with ferry under valgrind
#   make fuzz       libFuzzer targets, each for FUZZ_SECONDS
#   make install    PREFIX=/usr/local DESTDIR=
VERSION  = 0.1.0
PREFIX  ?= /usr/local
B       ?= build
CC      ?= cc
PKGS     = fuse3 libcurl openssl sqlite3 inih expat jansson libmicrohttpd

# One clear line per missing dependency, naming the Debian package.
deb_fuse3 = libfuse3-dev
deb_libcurl = libcurl4-openssl-dev
deb_openssl = libssl-dev
deb_sqlite3 = libsqlite3-dev
deb_inih = libinih-dev
deb_expat = libexpat1-dev
deb_jansson = libjansson-dev
deb_libmicrohttpd = libmicrohttpd-dev
# (test, check, demo, valgrind and fuzz install missing packages first, then build)
ifeq ($(filter clean test check demo valgrind fuzz deps,$(MAKECMDGOALS)),)
MISSING := $(strip $(foreach p,$(PKGS),$(if $(shell pkg-config --exists $(p) 2>/dev/null && echo y),,$(p))))
ifneq ($(MISSING),)
$(error missing libraries: $(MISSING); install with: apt-get install pkg-config $(foreach p,$(MISSING),$(deb_$(p))))
endif
endif

OPT     ?= -g -O2
CFLAGS  += $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wstrict-prototypes -Wvla -Wshadow \
           -Wno-missing-field-initializers -fPIC -MMD -MP -Icore/lib \
           -DFERRY_VERSION='"$(VERSION)"' -DFERRY_PLUGIN_DIR='"$(PREFIX)/lib/ferry"' \
           -DFERRY_SHARE_DIR='"$(PREFIX)/share/ferry"' \
           $(shell pkg-config --cflags $(PKGS))
ifdef SANITIZE
CFLAGS  += -fsanitize=$(SANITIZE) -fno-sanitize-recover=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SANITIZE)
endif
LIBS_LIB = $(shell pkg-config --libs libcurl openssl sqlite3 inih expat jansson) -lm -lpthread -ldl
LIBS_FS  = $(shell pkg-config --libs fuse3)
# Only the supervisor serves HTTP (`ferry work`'s metrics endpoint, core/cmd_work_metrics.c).
LIBS_SUP = $(shell pkg-config --libs libmicrohttpd)

# The parts (README.md, "Source map"): libferry in core/lib/ (its public headers are
# core/lib/ferry_*.h), the supervisor in core/, ferryfs in core/fs/. Include paths say who
# may include what: everything sees core/lib/ and nothing else; the supervisor also sees
# core/, ferryfs core/fs/, a plugin its own directory.
LIB_SRC  = $(wildcard core/lib/*.c)
SUP_SRC  = $(wildcard core/*.c)
FS_SRC   = $(wildcard core/fs/*.c)
PLUGINS  = $(patsubst plugins/%/,%,$(sort $(dir $(wildcard plugins/*/*.c))))
UNIT     = $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))
TOOLS    = $(patsubst tests/tools/%.c,%,$(wildcard tests/tools/*.c))
FUZZ     = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
TPLUG    = $(patsubst tests/plugins/%.c,%,$(filter-out tests/plugins/test_%.c,$(wildcard tests/plugins/*.c)))

# Quiet by default; `make V=1` shows the commands.
ifeq ($(V),1)
Q =
say = @true
else
Q = @
say = @echo "  $(1) $@"
endif

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

all: $(B)/ferry $(B)/libferry.so $(if $(FS_SRC),$(B)/ferryfs) \
     $(patsubst %,$(B)/plugins/%.so,$(PLUGINS)) tests-build
.PHONY: all tests-build test check valgrind fuzz install clean demo deps

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(B)/obj/core/%.o: core/%.c
	@mkdir -p $(dir $@)
	$(call say,CC)
	$(Q)$(CC) $(CFLAGS) -Icore -c -o $@ $<

$(B)/obj/core/fs/%.o: core/fs/%.c
	@mkdir -p $(dir $@)
	$(call say,CC)
	$(Q)$(CC) $(CFLAGS) -Icore/fs -c -o $@ $<

$(B)/obj/core/lib/%.o: core/lib/%.c
	@mkdir -p $(dir $@)
	$(call say,CC)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# Plugin objects hide everything but the descriptor (plugins/stage.map too).
$(B)/obj/plugins/%.o: plugins/%.c
	@mkdir -p $(dir $@)
	$(call say,CC)
	$(Q)$(CC) $(CFLAGS) -I$(dir $<) -fvisibility=hidden -c -o $@ $<

# libferry exports exactly the functions its public headers declare, listed in
# core/lib/libferry.map (tests/plugins/exports.sh holds the two lists to each other), and
# leaves nothing undefined: it never calls up into the supervisor.
$(B)/libferry.so: $(call obj,$(LIB_SRC)) core/lib/libferry.map
	$(call say,LD)
	$(Q)$(CC) $(LDFLAGS) -shared -Wl,-soname,libferry.so -Wl,--version-script=core/lib/libferry.map \
		-Wl,--no-undefined -o $@ $(call obj,$(LIB_SRC)) $(LIBS_LIB)

# Every libferry object, internals included, for unit tests, fuzz replayers and tools.
$(B)/libferry.a: $(call obj,$(LIB_SRC))
	$(call say,AR)
	$(Q)rm -f $@ && ar rcs $@ $^

# The supervisor without main(), for tests of what it implements (the stage API, config).
SUP_LIB_SRC = $(filter-out core/main.c,$(SUP_SRC))
$(B)/libsup.a: $(call obj,$(SUP_LIB_SRC))
	$(call say,AR)
	$(Q)rm -f $@ && ar rcs $@ $^

# ferry exports the stage API (ferry_ctx.h) to the plugins it loads, and nothing else.
$(B)/ferry: $(call obj,$(SUP_SRC)) $(B)/libferry.so core/ferry.dynlist
	$(call say,LD)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(call obj,$(SUP_SRC)) -Wl,--dynamic-list=core/ferry.dynlist \
		-L$(B) -lferry -Wl,-rpath,'$$ORIGIN:$$ORIGIN/../lib/ferry' $(LIBS_LIB) $(LIBS_SUP)

$(B)/ferryfs: $(call obj,$(FS_SRC)) $(B)/libferry.so
	$(call say,LD)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(call obj,$(FS_SRC)) -L$(B) -lferry \
		-Wl,-rpath,'$$ORIGIN:$$ORIGIN/../lib/ferry' $(LIBS_FS) $(LIBS_LIB)

.SECONDEXPANSION:
$(B)/plugins/%.so: $$(call obj,$$(wildcard plugins/%/*.c)) $(B)/libferry.so plugins/stage.map
	@mkdir -p $(dir $@)
	$(call say,LD)
	$(Q)$(CC) $(LDFLAGS) -shared -Wl,--version-script=plugins/stage.map -o $@ \
		$(call obj,$(wildcard plugins/$*/*.c)) -L$(B) -lferry -Wl,-rpath,'$$ORIGIN/..:$$ORIGIN' $(LIBS_LIB)

# A unit test links libferry and the supervisor statically (internals reachable) and, for
# tests/unit/test_NAME.c, the objects of plugins/NAME/ (their non-static functions are
# reachable in a static link).
TEST_LIBS = $(B)/libsup.a $(B)/libferry.a
$(B)/tests/test_%: tests/unit/test_%.c $$(call obj,$$(wildcard plugins/%/*.c)) $(TEST_LIBS) tests/unit/unit.h
	@mkdir -p $(dir $@)
	$(call say,LD)
	$(Q)$(CC) $(CFLAGS) -Icore -Itests/unit -Iplugins/$* $(LDFLAGS) -o $@ $< \
		$(call obj,$(wildcard plugins/$*/*.c)) $(TEST_LIBS) $(LIBS_LIB) $(LIBS_SUP)

# test_ivl tests ferryfs's interval sets: the object of core/fs/ivl.c, which needs nothing else.
$(B)/tests/test_ivl: tests/unit/test_ivl.c $(call obj,core/fs/ivl.c) tests/unit/unit.h
	@mkdir -p $(dir $@)
	$(call say,LD)
	$(Q)$(CC) $(CFLAGS) -Icore/fs -Itests/unit $(LDFLAGS) -o $@ $< $(call obj,core/fs/ivl.c)

# test_abi dlopens the plugins RTLD_NOW the way ferry does: it exports the same stage API.
$(B)/tests/plugins/test_abi: tests/plugins/test_abi.c $(B)/libsup.a $(B)/libferry.so core/ferry.dynlist
	@mkdir -p $(dir $@)
	$(call say,LD)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -Wl,--dynamic-list=core/ferry.dynlist \
		-Wl,--whole-archive $(B)/libsup.a -Wl,--no-whole-archive -L$(B) -lferry \
		-Wl,-rpath,'$$ORIGIN/../..' $(LIBS_LIB) $(LIBS_SUP) -ldl

$(B)/tests/plugins/%.so: tests/plugins/%.c $(B)/libferry.so
	@mkdir -p $(dir $@)
	$(call say,LD)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -shared -o $@ $< -L$(B) -lferry -Wl,-rpath,'$$ORIGIN/../..'

$(B)/tests/tools/%: tests/tools/%.c $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(call say,LD)
	$(Q)$(CC) $(CFLAGS) -Icore $(LDFLAGS) -o $@ $< $(TEST_LIBS) $(LIBS_LIB)

# Each fuzz target also builds as a corpus replayer that `make test` runs.
$(B)/tests/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(call say,LD)
	$(Q)$(CC) $(CFLAGS) -Icore $(LDFLAGS) -o $@ $< tests/fuzz/replay.c $(TEST_LIBS) $(LIBS_LIB)

# fuzz_schedfp.c includes the plugin source it fuzzes (gcc's -MMD records only the last
# source of a multi-source link in the .d file)
$(B)/tests/fuzz/replay_schedfp: plugins/schedule/sched_fp.c plugins/schedule/sched_core.h

tests-build: $(patsubst %,$(B)/tests/%,$(UNIT)) $(B)/tests/plugins/test_abi \
	     $(patsubst %,$(B)/tests/fuzz/replay_%,$(FUZZ)) \
	     $(patsubst %,$(B)/tests/plugins/%.so,$(TPLUG)) $(patsubst %,$(B)/tests/tools/%,$(TOOLS))

deps:
	@bash tests/deps.sh

# TEST_JOBS=N runs up to N tests side by side (each has its own servers, ports and mounts).
TEST_JOBS ?= 1
test: deps
	@$(MAKE) --no-print-directory all
	FERRY_BUILD=$(abspath $(B)) TEST_JOBS=$(TEST_JOBS) bash tests/run.sh $(T)

check: deps
	$(MAKE) --no-print-directory B=build/asan SANITIZE=address,undefined OPT='-g -O1' test

# valgrind makes ferry ~20x slower: by default the supervisor's tests, a lock, ferryfs (its
# conflicts and its background whole-file fetch, ferryfs itself under valgrind), a schedule
# and an end-to-end pipeline; `make valgrind VALGRIND_TESTS=integration` runs them all.
VALGRIND_TESTS ?= t0 t1101 t1106 t2004 t2011 t4001 t5101 t5102
valgrind: deps
	@bash tests/deps.sh check
	@$(MAKE) --no-print-directory all
	FERRY_BUILD=$(abspath $(B)) FERRY_VALGRIND=1 bash tests/run.sh $(VALGRIND_TESTS)

demo: deps
	@$(MAKE) --no-print-directory all
	FERRY_BUILD=$(abspath $(B)) bash tests/demo.sh

FUZZ_SECONDS ?= 60
fuzz: deps
	@bash tests/deps.sh check
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/ferry $(DESTDIR)$(PREFIX)/share/ferry/conf \
		$(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(B)/ferry $(DESTDIR)$(PREFIX)/bin/ferry
	$(if $(FS_SRC),install -m 755 $(B)/ferryfs $(DESTDIR)$(PREFIX)/bin/ferryfs)
	install -m 755 $(B)/libferry.so $(DESTDIR)$(PREFIX)/lib/ferry/libferry.so
	install -m 755 $(patsubst %,$(B)/plugins/%.so,$(PLUGINS)) $(DESTDIR)$(PREFIX)/lib/ferry/
	cp -r conf/. $(DESTDIR)$(PREFIX)/share/ferry/conf/
	$(if $(wildcard core/*.1 core/fs/*.1),install -m 644 $(wildcard core/*.1 core/fs/*.1) $(DESTDIR)$(PREFIX)/share/man/man1/)

clean:
	rm -rf build

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
