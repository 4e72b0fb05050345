# shmbus - top-level Makefile.
#
#   make            build the library, daemon, CLI, tests and benchmark
#   make deps       install missing Debian packages (root), else print how
#   make test       deps + build + run every test (CI=true: skips fail)
#   make demo       deps + build + run the demo
#   make bench      deps + build + run the benchmark (BENCH_ARGS, e.g.
#                   '--quick --format json'; shmbus-bench --help)
#   make bench-durable  deps + build + run shmbus-bench-durable (persistent
#                   queues against a private RabbitMQ; DBENCH_ARGS)
#   make bench-bridge   deps + build + run shmbus-bench-bridge (the bridge
#                   against plain AMQP clients of a private RabbitMQ;
#                   BBENCH_ARGS)
#   make bench-peers    deps (and PEERS_PKGS) + build + run
#                   shmbus-bench-peers (shmbus against pipe, socketpair,
#                   ZeroMQ, Redis, iceoryx; PBENCH_ARGS, e.g. '--quick')
#   make bench-scale    deps + build + run shmbus-bench-scale (how the
#                   cost grows with queues, consumers, subscribers, sizes
#                   and backlog; SBENCH_ARGS, e.g. '--quick')
#   make install    DESTDIR=... PREFIX=/usr/local LIBDIR=... (what was built;
#                   ldconfig after it without DESTDIR); make uninstall
#   make deb        Debian packages (debian/) in $(B)/deb; make test-deb
#                   installs them into a fresh debootstrap root, tries them;
#                   make test-systemd boots that root with systemd (qemu)
#                   and tries the units under it
#   make kmod       the kernel module; make test-kmod runs its VM tests
#   make fuzz       the libFuzzer targets (clang), FUZZ_SECONDS each
#   make clean
#
#   V=1             show commands
#   SAN=address|undefined|thread   sanitizer build (in build-$(SAN)/)
#   CI=true         -Werror, and tests that would skip fail instead
#
# The build tree mirrors an installation: $(B)/bin, $(B)/lib, plus
# $(B)/obj (objects and their generated dependencies), $(B)/tests,
# $(B)/examples, $(B)/bpf (generated BPF objects and skeleton) and
# $(B)/kmod. Every source file is compiled once; the library's objects
# make both the shared and the static library.

# One version source: include/shmbus.h. The build fails when the newest
# node of the version script disagrees with it (tools/scripts/check-abi.sh).
version_of = $(shell sed -n 's/^\#define SHMBUS_VERSION_$(1)[[:space:]]*\([0-9]*\).*/\1/p' include/shmbus.h)
VERSION_MAJOR := $(call version_of,MAJOR)
VERSION_MINOR := $(call version_of,MINOR)
VERSION_PATCH := $(call version_of,PATCH)
VERSION       := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
PCDIR   ?= $(LIBDIR)/pkgconfig
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
MANDIR  ?= $(PREFIX)/share/man
DESTDIR ?=
# run after installing into (or removing from) the real root, so that
# the dynamic linker's cache knows the library; not with DESTDIR
LDCONFIG ?= ldconfig
# Where the programs look for libshmbus.so besides the dynamic linker's
# own path: beside them in ../lib, which is where the build tree keeps it
# and where PREFIX/bin finds PREFIX/lib; and LIBDIR itself when it is
# elsewhere (lib64, a multiarch directory). Empty for none (a
# distribution package, whose LIBDIR is in the linker's path).
RUNPATH ?= $$ORIGIN/../lib$(if $(filter-out $(abspath $(BINDIR)/../lib),$(abspath $(LIBDIR))),:$(LIBDIR))

CC  ?= gcc
CXX ?= g++

DEB_PKGS := build-essential pkg-config liburcu-dev libcmocka-dev systemtap-sdt-dev \
	clang llvm libclang-rt-14-dev libbpf-dev bpftool \
	linux-headers-amd64 qemu-system-x86 busybox-static cpio xz-utils zstd \
	python3 librabbitmq-dev libssl-dev openssl rabbitmq-server systemd \
	scdoc man-db debhelper dpkg-dev lintian debootstrap e2fsprogs
# what shmbus-bench-peers measures shmbus against, and its plots: only it
# links them (make bench-peers, make test)
PEERS_PKGS := libzmq3-dev libhiredis-dev redis-server gnuplot-nox iceoryx \
	libiceoryx-binding-c-dev

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-7s %s\n' $(1) $(2)
MAKEFLAGS += --no-print-directory
endif

# PROBES=0: a library without USDT probes (only to measure their cost)
ifeq ($(PROBES),0)
PROBE_CFLAGS := -DSHMBUS_NO_PROBES
B_SUFFIX := -noprobes
endif

ifneq ($(SAN),)
ifeq ($(filter $(SAN),address undefined thread),)
$(error SAN must be address, undefined or thread)
endif
B := build-$(SAN)$(B_SUFFIX)
SANFLAGS := -fsanitize=$(SAN) -fno-omit-frame-pointer
ifeq ($(SAN),undefined)
SANFLAGS += -fno-sanitize-recover=undefined
endif
ifeq ($(SAN),thread)
# TSan does not model standalone fences (gcc -Wtsan); our few fences order
# shared memory against other processes, which TSan cannot see anyway.
SANFLAGS += -Wno-tsan
endif
else
B := build$(B_SUFFIX)
SANFLAGS :=
endif

WERROR := $(if $(filter true 1 yes,$(CI)),-Werror,)
OPT    ?= -O2
CFLAGS ?= $(OPT) -g
# e.g. dpkg-buildflags' -D_FORTIFY_SOURCE=2 (make deb)
CPPFLAGS ?=
# -MMD -MP: each compile writes the headers it read to a .d file beside
# its output, which the next make includes.
BASE_CFLAGS := -std=gnu11 -Wall -Wextra -Wshadow -Wno-unused-parameter \
	-Wmissing-prototypes -Wstrict-prototypes -fno-strict-aliasing \
	-D_GNU_SOURCE -Iinclude -Iuserspace/lib \
	$(CPPFLAGS) $(WERROR) $(SANFLAGS) -MMD -MP
LIB_CFLAGS := $(BASE_CFLAGS) $(PROBE_CFLAGS) -fPIC -fvisibility=hidden \
	-DSHMBUS_DAEMON_PATH='"$(BINDIR)/shmbusd"'
URCU_LIBS := -lurcu-bp -lurcu-common
LDLIBS := $(URCU_LIBS) -lpthread
LDFLAGS ?=
ALL_LDFLAGS := $(LDFLAGS) $(SANFLAGS)
comma := ,
RUNPATH_FLAG := $(if $(RUNPATH),-Wl$(comma)-rpath$(comma)'$(RUNPATH)')
# tests and examples live in $(B)/tests and $(B)/examples
TEST_RPATH := -Wl,-rpath,'$$ORIGIN/../lib'

O := $(B)/obj

# BPF: clang and bpftool (bpf/; the rules below)
BPFTOOL ?= bpftool
CLANG   ?= clang
BPF_ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BPF_MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(BPF_ARCH) -I$(B)/bpf \
	-Ibpf -idirafter /usr/include/$(BPF_MULTIARCH) -MMD -MP
BPF_SKEL := $(B)/bpf/shmbus.skel.h

LIB_SRCS  := $(wildcard userspace/lib/*.c)
LIB_OBJS  := $(patsubst userspace/lib/%.c,$(O)/lib/%.o,$(LIB_SRCS))
DMN_SRCS  := $(wildcard userspace/daemon/*.c)
DMN_OBJS  := $(patsubst userspace/daemon/%.c,$(O)/daemon/%.o,$(DMN_SRCS))
# everything but main(): the daemon, and unit tests of its parts
DMN_PARTS := $(filter-out $(O)/daemon/main.o,$(DMN_OBJS))
CLI_SRCS  := $(wildcard tools/cli/*.c)
CLI_OBJS  := $(patsubst tools/cli/%.c,$(O)/cli/%.o,$(CLI_SRCS))
# the user-space half of bpf/: loading the programs, reading the maps
OBS_SRCS  := $(filter-out %.bpf.c,$(wildcard bpf/*.c))
OBS_OBJS  := $(patsubst bpf/%.c,$(O)/bpf/%.o,$(OBS_SRCS))
BENCH_SRCS := $(filter-out tools/bench/probe-cost.c tools/bench/ring-ceiling.c,$(wildcard tools/bench/*.c))
BENCH_OBJS := $(patsubst tools/bench/%.c,$(O)/bench/%.o,$(BENCH_SRCS))
BRIDGE_SRCS := $(wildcard tools/bridge/*.c)
BRIDGE_OBJS := $(patsubst tools/bridge/%.c,$(O)/bridge/%.o,$(BRIDGE_SRCS))
DBENCH_SRCS := $(wildcard tools/bench/durable/*.c)
DBENCH_OBJS := $(patsubst tools/bench/durable/%.c,$(O)/dbench/%.o,$(DBENCH_SRCS))
BBENCH_SRCS := $(wildcard tools/bench/bridge/*.c)
BBENCH_OBJS := $(patsubst tools/bench/bridge/%.c,$(O)/bbench/%.o,$(BBENCH_SRCS))
# a private RabbitMQ and the AMQP client side, for both benchmarks that
# measure against it
RABBIT_OBJ  := $(O)/rabbit/rabbit.o
# shmbus-bench-peers: shmbus-bench's measurement compiled again with
# SHMBUS_BENCH_PEERS (the peers' rows, tools/bench/peers/peers.h) in
# $(O)/pbench, and the peers' own files
PBENCH_SHARED := transport transport_raw transport_shmbus transport_fd \
	child run stats reps proc daemon
PBENCH_OBJS := $(patsubst %,$(O)/pbench/%.o,$(PBENCH_SHARED)) \
	$(patsubst tools/bench/peers/%.c,$(O)/pbench/peers/%.o,$(wildcard tools/bench/peers/*.c))
# the C binding's headers are in a versioned directory
IOX_INC := $(firstword $(wildcard /usr/include/iceoryx/v*))

SONAME   := libshmbus.so.$(VERSION_MAJOR)
SHLIB    := $(B)/lib/libshmbus.so.$(VERSION)
STLIB    := $(B)/lib/libshmbus.a
PCFILE   := $(B)/lib/pkgconfig/libshmbus.pc
UNITS    := $(B)/systemd/shmbus-bridge@.service $(B)/systemd/shmbusd.service \
	    $(B)/systemd/shmbusd.socket
USER_UNITS := $(B)/systemd/user/shmbusd.service $(B)/systemd/user/shmbusd.socket
# manual pages: docs/man/NAME.SECTION.scd, rendered by scdoc
MANS     := $(patsubst docs/man/%.scd,$(B)/man/%,$(wildcard docs/man/*.scd))
DMNLIB   := $(O)/libshmbusd.a
DAEMON   := $(B)/bin/shmbusd
CLI      := $(B)/bin/shmbus
BENCH    := $(B)/bin/shmbus-bench
DBENCH   := $(B)/bin/shmbus-bench-durable
BBENCH   := $(B)/bin/shmbus-bench-bridge
PBENCH   := $(B)/bin/shmbus-bench-peers
BRIDGE   := $(B)/bin/shmbus-bridge
PCOST    := $(B)/bin/probe-cost
RCEIL    := $(B)/bin/ring-ceiling

# Unit tests link the static library (they test internals); the rest link
# the shared library like any user.
UNIT_TESTS := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/unit_*.c))
PROC_TESTS := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/test_*.c))
TESTS      := $(UNIT_TESTS) $(PROC_TESTS)
EXAMPLES   := $(patsubst examples/%.c,$(B)/examples/%,$(wildcard examples/*.c))
# programs the tests run, in a folder of their own (run.sh runs every
# program in $(B)/tests)
TEST_PROGS := $(B)/testprogs/static-pub

# Public headers, installed as <shmbus.h> and <shmbus/*.h>. The header
# the BPF programs share with user space lives beside them in bpf/ and is
# installed as <shmbus/bpf.h>.
PUB_HDRS := include/shmbus.h $(wildcard include/shmbus/*.h)

.PHONY: FORCE all lib dist deb test-deb test-systemd deps deps-build deps-peers test demo bench bench-durable bench-bridge bench-peers bench-peers-build install uninstall clean kmod kmod-progs test-kmod \
	powercut-progs \
	checks fuzz fuzz-build
.DEFAULT_GOAL := all

all: $(SHLIB) $(STLIB) $(DAEMON) $(CLI) $(BRIDGE) $(BENCH) $(DBENCH) $(BBENCH) $(PCOST) $(RCEIL) $(TESTS) \
	$(TEST_PROGS) $(EXAMPLES) $(PCFILE) $(UNITS) $(USER_UNITS) $(MANS) checks

lib: $(SHLIB) $(STLIB)

deps: deps-build

deps-build:
	$(Q)sh tools/scripts/deps.sh $(DEB_PKGS)

deps-peers:
	$(Q)sh tools/scripts/deps.sh $(PEERS_PKGS)

# test/demo/bench: install what is missing first, then build in a fresh
# make (so nothing is evaluated before the compiler exists). shmbus-bench-
# peers is not in all: its libraries are not what building shmbus needs.
test: deps-build deps-peers
	$(Q)$(MAKE) $(if $(Q),-s) all bench-peers-build
	$(Q)B=$(B) CI=$(CI) SAN=$(SAN) MAKE=$(MAKE) sh tests/run.sh

demo: deps-build
	$(Q)$(MAKE) $(if $(Q),-s) all
	$(Q)B=$(B) sh tools/scripts/demo.sh

# the benchmarks against RabbitMQ take minutes and measure mostly the
# broker: their own targets (docs/decisions.md)
# Their stdout is the report alone (BENCH_ARGS='--format json' makes it
# a JSON document): what the build prints goes to stderr.
bench: deps-build
	$(Q)$(MAKE) $(if $(Q),-s) all >&2
	$(Q)$(BENCH) $(BENCH_ARGS)
	@echo 'also: make bench-durable (durable queues), make bench-bridge (the RabbitMQ bridge), make bench-peers (ZeroMQ, Redis, iceoryx), make bench-scale (scaling)' >&2

bench-durable: deps
	$(Q)$(MAKE) $(if $(Q),-s) all >&2
	$(Q)$(DBENCH) $(DBENCH_ARGS)

bench-bridge: deps
	$(Q)$(MAKE) $(if $(Q),-s) all >&2
	$(Q)$(BBENCH) $(BBENCH_ARGS)

# stdout: the Markdown report alone; the plots go to $(B)/bench-peers
bench-peers: deps deps-peers
	$(Q)$(MAKE) $(if $(Q),-s) all bench-peers-build >&2
	$(Q)$(PBENCH) $(PBENCH_ARGS)

bench-peers-build: $(PBENCH) $(DAEMON)

# ---- compiling: one rule per source folder --------------------------

$(O)/lib/%.o: userspace/lib/%.c | $(O)/lib
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(LIB_CFLAGS) -c $< -o $@

$(O)/daemon/%.o: userspace/daemon/%.c | $(O)/daemon
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -Iuserspace/daemon \
		-DSHMBUS_SYSCONFDIR='"$(SYSCONFDIR)"' -c $< -o $@

# the configuration file's and the policy's default places
$(O)/daemon/options.o: $(B)/.paths

$(O)/cli/%.o: tools/cli/%.c | $(O)/cli $(BPF_SKEL)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -Ibpf -I$(B)/bpf -c $< -o $@

# targets.c looks for an installed libshmbus.so in /usr/lib/TRIPLET too
$(O)/bpf/%.o: bpf/%.c | $(O)/bpf $(BPF_SKEL)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -Ibpf -I$(B)/bpf \
		-DSHMBUS_MULTIARCH='"$(BPF_MULTIARCH)"' -c $< -o $@

$(O)/bench/%.o: tools/bench/%.c | $(O)/bench
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -c $< -o $@

$(O)/bridge/%.o: tools/bridge/%.c | $(O)/bridge
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -c $< -o $@

$(O)/dbench/%.o: tools/bench/durable/%.c | $(O)/dbench
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -c $< -o $@

$(O)/bbench/%.o: tools/bench/bridge/%.c | $(O)/bbench
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -c $< -o $@

$(O)/rabbit/%.o: tools/bench/rabbit/%.c | $(O)/rabbit
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -c $< -o $@

$(O)/pbench/%.o: tools/bench/%.c | $(O)/pbench
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -DSHMBUS_BENCH_PEERS -c $< -o $@

# -isystem: the iceoryx headers are not warning-clean C
$(O)/pbench/peers/%.o: tools/bench/peers/%.c | $(O)/pbench/peers
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -DSHMBUS_BENCH_PEERS -Itools/bench \
		$(if $(IOX_INC),-isystem $(IOX_INC)) -c $< -o $@

# ---- the library ------------------------------------------------------

# The version script: the public nodes, and the internals the daemon uses
# (userspace/lib/private.h) in a node named after this version and a hash
# of every header the daemon is compiled against: change any of them and
# a daemon built before will not load against the new library (ld.so
# names the missing node), rather than run with a mismatched interface.
PRIV_HDRS := $(sort $(wildcard userspace/lib/*.h)) $(PUB_HDRS)

$(B)/lib/libshmbus.map: userspace/lib/libshmbus.map $(PRIV_HDRS) | $(B)/lib
	$(call msg,GEN,$@)
	$(Q)id=$$(cat $(PRIV_HDRS) | sha256sum | cut -c1-12) && \
		{ cat $<; printf '\nSHMBUS_PRIVATE_$(VERSION)_%s {\n\tglobal:\n\t\t__shmbus_*;\n};\n' "$$id"; } > $@

$(SHLIB): $(LIB_OBJS) $(B)/lib/libshmbus.map
	$(call msg,LD,$@)
	$(Q)$(CC) -shared $(ALL_LDFLAGS) -Wl,-soname,$(SONAME) \
		-Wl,--version-script=$(B)/lib/libshmbus.map -Wl,-z,defs \
		-o $@ $(LIB_OBJS) $(LDLIBS)
	$(Q)ln -sf $(notdir $(SHLIB)) $(B)/lib/$(SONAME)
	$(Q)ln -sf $(SONAME) $(B)/lib/libshmbus.so

$(STLIB): $(LIB_OBJS) | $(B)/lib
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# What embeds the installation paths (the .pc file, the daemon's path in
# the library, the programs' RUNPATH) is rebuilt when they change:
# $(B)/.paths holds them and is rewritten only when they differ.
$(B)/.paths: FORCE | $(B)
	$(Q)printf '%s\n' 'PREFIX=$(PREFIX)' 'BINDIR=$(BINDIR)' 'LIBDIR=$(LIBDIR)' \
		'INCDIR=$(INCDIR)' 'RUNPATH=$(RUNPATH)' 'SYSCONFDIR=$(SYSCONFDIR)' \
		'UNITDIR=$(UNITDIR)' 'USERUNITDIR=$(USERUNITDIR)' \
		'MANDIR=$(MANDIR)' > $@.tmp
	$(Q)if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi

$(O)/lib/client.o: $(B)/.paths

$(PCFILE): libshmbus.pc.in include/shmbus.h $(B)/.paths | $(B)/lib/pkgconfig
	$(call msg,GEN,$@)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCDIR@|$(INCDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

$(B)/systemd/%: systemd/%.in $(B)/.paths | $(B)/systemd
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		$< > $@

# ---- programs ---------------------------------------------------------

$(DMNLIB): $(DMN_PARTS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# The daemon links libshmbus.so like everyone else (one USDT attachment
# covers it), using the internals exported for it (private.h).
$(DAEMON): $(O)/daemon/main.o $(DMNLIB) $(SHLIB) $(B)/.paths | $(B)/bin
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $< $(DMNLIB) -o $@ $(RUNPATH_FLAG) \
		-L$(B)/lib -lshmbus $(LDLIBS)

# the shmbus command: tools/cli, and the loader and map reader of bpf/
$(CLI): $(CLI_OBJS) $(OBS_OBJS) $(SHLIB) $(B)/.paths | $(B)/bin
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $(CLI_OBJS) $(OBS_OBJS) -o $@ $(RUNPATH_FLAG) \
		-L$(B)/lib -lshmbus -lbpf -lelf -lm

# shmbus-bridge: its own program, so that the shmbus command and the
# library need neither librabbitmq nor OpenSSL
$(BRIDGE): $(BRIDGE_OBJS) $(SHLIB) $(B)/.paths | $(B)/bin
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $(BRIDGE_OBJS) -o $@ $(RUNPATH_FLAG) \
		-L$(B)/lib -lshmbus -lrabbitmq -lssl -lcrypto -lpthread

$(BENCH): $(BENCH_OBJS) $(SHLIB) $(B)/.paths | $(B)/bin
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $(BENCH_OBJS) -o $@ $(RUNPATH_FLAG) \
		-L$(B)/lib -lshmbus -lpthread -lm

# proc.o: the helpers of every benchmark program
$(DBENCH): $(DBENCH_OBJS) $(O)/bench/proc.o $(RABBIT_OBJ) $(SHLIB) $(B)/.paths | $(B)/bin
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $(DBENCH_OBJS) $(O)/bench/proc.o $(RABBIT_OBJ) \
		-o $@ $(RUNPATH_FLAG) -L$(B)/lib -lshmbus -lrabbitmq -lm

# it runs $(BRIDGE) and $(DAEMON) from beside itself
$(BBENCH): $(BBENCH_OBJS) $(O)/bench/proc.o $(RABBIT_OBJ) $(SHLIB) $(B)/.paths \
		| $(B)/bin $(BRIDGE) $(DAEMON)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $(BBENCH_OBJS) $(O)/bench/proc.o $(RABBIT_OBJ) \
		-o $@ $(RUNPATH_FLAG) -L$(B)/lib -lshmbus -lrabbitmq -lm

# it runs $(DAEMON) from beside itself
$(PBENCH): $(PBENCH_OBJS) $(SHLIB) $(B)/.paths | $(B)/bin $(DAEMON)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $(PBENCH_OBJS) -o $@ $(RUNPATH_FLAG) \
		-L$(B)/lib -lshmbus -lzmq -lhiredis -liceoryx_binding_c \
		-lpthread -lm

$(PCOST): $(O)/bench/probe-cost.o $(SHLIB) $(B)/.paths | $(B)/bin
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $< -o $@ $(RUNPATH_FLAG) -L$(B)/lib -lshmbus

# standalone: ring.h is inline, no library
$(RCEIL): $(O)/bench/ring-ceiling.o | $(B)/bin
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $< -o $@

# ---- BPF (bpf/) -------------------------------------------------------
# CO-RE objects built with clang against the running kernel's BTF, and a
# libbpf skeleton for the loader (bpf/monitor.c).

$(B)/bpf/vmlinux.h: | $(B)/bpf
	$(call msg,BTF,$@)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp
	$(Q)mv $@.tmp $@

$(B)/bpf/shmbus.bpf.o: bpf/shmbus.bpf.c $(B)/bpf/vmlinux.h
	$(call msg,CLANG,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BPF_SKEL): $(B)/bpf/shmbus.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name shmbus_bpf > $@.tmp
	$(Q)mv $@.tmp $@

# ---- shmbus-bench-scale: cost against queues, consumers, subscribers,
# message size and backlog depth (tools/bench/scale/), plotted by gnuplot
# into $(B)/bench-scale (SBENCH_ARGS, e.g. '--quick --only sizes')

SBENCH_SRCS := $(wildcard tools/bench/scale/*.c)
SBENCH_OBJS := $(patsubst tools/bench/scale/%.c,$(O)/sbench/%.o,$(SBENCH_SRCS))
SBENCH      := $(B)/bin/shmbus-bench-scale
# make deps (and so make test) installs it with the rest
DEB_PKGS    += gnuplot-nox

.PHONY: bench-scale
all: $(SBENCH)

$(O)/sbench/%.o: tools/bench/scale/%.c | $(O)/sbench
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -c $< -o $@

# the helpers of every benchmark program, and the private daemon's start
# and stop of shmbus-bench
$(SBENCH): $(SBENCH_OBJS) $(O)/bench/proc.o $(O)/bench/reps.o \
		$(O)/bench/daemon.o $(SHLIB) $(B)/.paths | $(B)/bin $(DAEMON)
	$(call msg,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $(SBENCH_OBJS) $(O)/bench/proc.o \
		$(O)/bench/reps.o $(O)/bench/daemon.o -o $@ $(RUNPATH_FLAG) \
		-L$(B)/lib -lshmbus -lm

$(O)/sbench:
	$(Q)mkdir -p $@

bench-scale: deps
	$(Q)$(MAKE) $(if $(Q),-s) all >&2
	$(Q)$(SBENCH) --plots $(B)/bench-scale $(SBENCH_ARGS)

# ---- tests and examples: one source each, compiled and linked at once --

$(B)/tests/unit_%: tests/unit_%.c $(STLIB) $(DMNLIB) | $(B)/tests
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -MF $@.d -Iuserspace/daemon -Itests \
		$< $(UNIT_OBJS) -o $@ $(ALL_LDFLAGS) $(DMNLIB) $(STLIB) -lcmocka \
		$(LDLIBS) -lm

# the benchmark's summary of repetitions, which has no other part of it
$(B)/tests/unit_bench_reps: $(O)/bench/reps.o
$(B)/tests/unit_bench_reps: UNIT_OBJS := $(O)/bench/reps.o

$(B)/tests/test_%: tests/test_%.c $(SHLIB) | $(B)/tests
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -MF $@.d -Itests -Ibpf $< -o $@ \
		$(ALL_LDFLAGS) $(TEST_RPATH) -L$(B)/lib -lshmbus -lcmocka \
		-lpthread -lbpf $(TEST_AMQP_LIBS)

# Tests that run a private RabbitMQ (tests/rmq.h) talk to it with
# librabbitmq.
AMQP_TESTS := $(B)/tests/test_rmq $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/test_bridge*.c))
$(AMQP_TESTS): TEST_AMQP_LIBS := -lrabbitmq
# it checks the bridge's correlation ids (HMAC) itself
$(B)/tests/test_bridge_rpc: TEST_AMQP_LIBS += -lcrypto
# test_bridge_sec checks the bridge's signatures with its own HMAC
$(B)/tests/test_bridge_sec: TEST_AMQP_LIBS += -lcrypto

# A program linked with libshmbus.a, its probes in its own executable
# (test_monitor attaches to it); libc and the sanitizer's runtime stay
# shared, so that it builds with SAN too.
$(B)/testprogs/static-pub: tests/progs/static_pub.c $(STLIB) | $(B)/testprogs
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -MF $@.d $< -o $@ $(ALL_LDFLAGS) \
		$(STLIB) $(LDLIBS)

# Examples build as a user would: public header, shared library.
$(B)/examples/%: examples/%.c $(SHLIB) | $(B)/examples
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -MF $@.d $< -o $@ $(ALL_LDFLAGS) \
		$(TEST_RPATH) -L$(B)/lib -lshmbus

# ---- checks that fail the build -----------------------------------------
# check-abi.sh: the version script's newest node is the version in
#   shmbus.h, the library exports exactly the symbols of the version
#   script, each in its node (no more, no fewer, none moved), and every
#   SHMBUS_API function of the code is in the version script.
# check-atomics.sh: no atomic builtin, C11 atomic or volatile outside
#   userspace/lib/barrier.h.
# The public headers compile as C++ too.
# the files tools/scripts/check-atomics.sh reads
ATOMIC_SRCS := $(shell find userspace include tools tests examples bpf \
		 -name '*.[ch]' ! -name '*.bpf.c')

checks: $(B)/.abi-ok $(B)/.atomics-ok $(B)/.header-cxx

$(B)/.abi-ok: tools/scripts/check-abi.sh $(SHLIB) $(STLIB) \
		userspace/lib/libshmbus.map include/shmbus.h
	$(call msg,CHECK,abi)
	$(Q)sh tools/scripts/check-abi.sh $(SHLIB) userspace/lib/libshmbus.map \
		include/shmbus.h $(STLIB)
	$(Q)touch $@

$(B)/.atomics-ok: tools/scripts/check-atomics.sh $(ATOMIC_SRCS) | $(B)
	$(call msg,CHECK,atomics)
	$(Q)sh tools/scripts/check-atomics.sh
	$(Q)touch $@

$(B)/.header-cxx: $(PUB_HDRS) bpf/shmbus_bpf.h | $(B)
	$(call msg,CXX,$(PUB_HDRS) bpf/shmbus_bpf.h)
	$(Q)printf '#include <shmbus.h>\n#include <shmbus/layout.h>\n#include <shmbus/kmod.h>\n#include "shmbus_bpf.h"\nint main() { return 0; }\n' | \
		$(CXX) -x c++ -std=c++11 -Wall -Wextra -Werror -Iinclude -Ibpf \
		-fsyntax-only -
	$(Q)touch $@

# ---- the kernel module (Kbuild, kernel/; docs/kernel.md) ---------------
# Built against Debian's linux-headers-amd64 (tools/scripts/kver.sh),
# never the running kernel, in a copy under $(B)/kmod/src so that the
# tree stays clean; tested by booting Debian's kernel in qemu
# (tests/kmod/run-vm.sh).
KMOD_SRC := Kbuild $(wildcard kernel/*.c kernel/*.h) include/shmbus/kmod.h
KMOD_PROGS := $(B)/kmod/kmod_test $(B)/kmod/kmod_bench $(B)/kmod/kmod_fanout

kmod: $(B)/kmod/src/shmbus.ko

$(B)/kmod/src/shmbus.ko: $(KMOD_SRC)
	$(call msg,KBUILD,$@)
	$(Q)mkdir -p $(B)/kmod/src/kernel $(B)/kmod/src/include/shmbus
	$(Q)cp Kbuild $(B)/kmod/src/
	$(Q)cp kernel/*.c $(B)/kmod/src/kernel/
	$(Q)cp include/shmbus/kmod.h $(B)/kmod/src/include/shmbus/
	$(Q)$(MAKE) -s -C /usr/src/linux-headers-$$(sh tools/scripts/kver.sh) \
		M=$(abspath $(B)/kmod/src) modules >$(B)/kmod/build.log 2>&1 || \
		{ cat $(B)/kmod/build.log; exit 1; }
	$(Q)! grep -E "warning:|error:" $(B)/kmod/build.log

# the programs that run inside the VM: static, no cmocka
$(B)/kmod/kmod_%: tests/kmod/kmod_%.c | $(B)/kmod
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -MF $@.d -static $< -o $@

# this one uses the library: static too
$(B)/kmod/kmod_fanout: tests/kmod/kmod_fanout.c $(STLIB) | $(B)/kmod
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -MF $@.d -static $< -o $@ \
		$(STLIB) $(LDLIBS)

kmod-progs: $(KMOD_PROGS) $(DAEMON) $(B)/tests/test_wake $(B)/tests/test_topics

# the power-cut test of persistent queues (tests/powercut/run-vm.sh): a
# static program beside the daemon in the same VM
$(B)/powercut/powercut: tests/powercut/powercut.c $(STLIB) | $(B)/powercut
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -MF $@.d -static $< -o $@ \
		$(STLIB) $(LDLIBS)

powercut-progs: $(B)/powercut/powercut $(DAEMON)

test-kmod: deps-build
	$(Q)$(MAKE) $(if $(Q),-s) all
	$(Q)B=$(B) MAKE=$(MAKE) sh tests/kmod/run-vm.sh

# ---- fuzzing (tests/fuzz/; docs/security.md) ----------------------------
# libFuzzer targets built with clang, instrumented and sanitized (address,
# undefined), from every source of the library and the daemon compiled
# once more in $(B)/fuzz: the gcc build is untouched. Seed corpora are made
# at build time by mkseeds (from proto.h's structures); inputs that once
# crashed are kept in tests/fuzz/regress-*/ and run first on every run.
# make fuzz runs each target FUZZ_SECONDS (default 300), growing a corpus
# in $(B)/fuzz/corpus-*; make test runs them for 10 s each from the seeds
# and regression inputs (tests/fuzz/run.sh).
FZ          := $(B)/fuzz
FUZZ_CC     ?= clang
FUZZ_SECONDS ?= 300
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer
FUZZ_CFLAGS := -O1 -g $(filter-out $(SANFLAGS),$(BASE_CFLAGS)) \
	-fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_LIB_OBJS := $(patsubst userspace/lib/%.c,$(FZ)/obj/lib/%.o,$(LIB_SRCS))
FUZZ_DMN_OBJS := $(patsubst userspace/daemon/%.c,$(FZ)/obj/daemon/%.o,\
	$(filter-out userspace/daemon/main.c,$(DMN_SRCS)))
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(FZ)/%,$(wildcard tests/fuzz/fuzz_*.c))

fuzz-build: $(FUZZ_TARGETS) $(FZ)/mkseeds
# kept: they are the inputs of pattern rules only
.SECONDARY: $(FUZZ_LIB_OBJS) $(FUZZ_DMN_OBJS)

fuzz: deps-build
	$(Q)$(MAKE) $(if $(Q),-s) fuzz-build
	$(Q)B=$(B) FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_KEEP=1 MAKE=$(MAKE) \
		sh tests/fuzz/run.sh

$(FZ)/obj/lib/%.o: userspace/lib/%.c | $(FZ)/obj/lib
	$(call msg,FUZZCC,$@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(PROBE_CFLAGS) \
		-DSHMBUS_DAEMON_PATH='"$(BINDIR)/shmbusd"' -c $< -o $@

$(FZ)/obj/daemon/%.o: userspace/daemon/%.c | $(FZ)/obj/daemon
	$(call msg,FUZZCC,$@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -Iuserspace/daemon -c $< -o $@

$(FZ)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJS) $(FUZZ_DMN_OBJS) | $(FZ)
	$(call msg,FUZZLD,$@)
	$(Q)$(FUZZ_CC) $(filter-out -fsanitize=fuzzer-no-link,$(FUZZ_CFLAGS)) \
		-fsanitize=fuzzer -MF $@.d -Iuserspace/daemon $< -o $@ \
		$(FUZZ_DMN_OBJS) $(FUZZ_LIB_OBJS) $(LDLIBS)

# the seed generator runs on the build machine: the ordinary compiler
$(FZ)/mkseeds: tests/fuzz/mkseeds.c | $(FZ)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(filter-out $(SANFLAGS),$(BASE_CFLAGS)) -MF $@.d \
		$< -o $@

$(FZ) $(FZ)/obj/lib $(FZ)/obj/daemon:
	$(Q)mkdir -p $@

# ---- install: the files built above, as they are ------------------------

# what install installs, and only that (no tests, no benchmarks)
DIST := $(SHLIB) $(STLIB) $(DAEMON) $(CLI) $(BRIDGE) $(PCFILE) $(UNITS) \
	$(USER_UNITS) $(MANS)
dist: $(DIST)

install: $(DIST)
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(INCDIR)/shmbus $(DESTDIR)$(PCDIR)
	$(Q)install -m 0755 $(SHLIB) $(DESTDIR)$(LIBDIR)/
	$(Q)ln -sf $(notdir $(SHLIB)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	$(Q)ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libshmbus.so
	$(Q)install -m 0644 $(STLIB) $(DESTDIR)$(LIBDIR)/
	$(Q)install -m 0644 include/shmbus.h $(DESTDIR)$(INCDIR)/
	$(Q)install -m 0644 $(wildcard include/shmbus/*.h) $(DESTDIR)$(INCDIR)/shmbus/
	$(Q)install -m 0644 bpf/shmbus_bpf.h $(DESTDIR)$(INCDIR)/shmbus/bpf.h
	$(Q)install -m 0644 $(PCFILE) $(DESTDIR)$(PCDIR)/
	$(Q)install -m 0755 $(DAEMON) $(CLI) $(BRIDGE) $(DESTDIR)$(BINDIR)/
	$(Q)install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(USERUNITDIR)
	$(Q)install -m 0644 $(UNITS) $(DESTDIR)$(UNITDIR)/
	$(Q)install -m 0644 $(USER_UNITS) $(DESTDIR)$(USERUNITDIR)/
	$(Q)for m in $(MANS); do \
		install -D -m 0644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}/$${m##*/} \
			|| exit 1; done
	$(Q)$(if $(DESTDIR),:,$(LDCONFIG))

# what install put there, and nothing else (directories only if empty)
uninstall:
	$(call msg,UNINSTALL,$(DESTDIR)$(PREFIX))
	$(Q)rm -f $(DESTDIR)$(LIBDIR)/$(notdir $(SHLIB)) \
		$(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libshmbus.so \
		$(DESTDIR)$(LIBDIR)/$(notdir $(STLIB)) \
		$(DESTDIR)$(INCDIR)/shmbus.h \
		$(addprefix $(DESTDIR)$(INCDIR)/shmbus/,$(notdir $(wildcard include/shmbus/*.h)) bpf.h) \
		$(DESTDIR)$(PCDIR)/$(notdir $(PCFILE)) \
		$(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(DAEMON) $(CLI) $(BRIDGE))) \
		$(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS))) \
		$(addprefix $(DESTDIR)$(USERUNITDIR)/,$(notdir $(USER_UNITS))) \
		$(foreach m,$(MANS),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m)))
	$(Q)rmdir $(DESTDIR)$(INCDIR)/shmbus 2>/dev/null || :
	$(Q)$(if $(DESTDIR),:,$(LDCONFIG))

clean:
	$(call msg,CLEAN,build*)
	$(Q)rm -rf build build-address build-undefined build-thread \
		build-noprobes

# ---- Debian packages (debian/): libshmbus0, libshmbus-dev, shmbus ------

deb: deps-build
	$(Q)sh tools/scripts/mkdeb.sh $(B)/deb $(VERSION)

# the packages installed into a fresh Debian root and tried there
test-deb: deps-build
	$(Q)B=$(B) MAKE=$(MAKE) sh tests/deb.sh

# the units under a real systemd: the packages in a Debian root booted in
# qemu (tests/systemd/run-vm.sh)
test-systemd: deps-build
	$(Q)$(MAKE) $(if $(Q),-s) all
	$(Q)B=$(B) MAKE=$(MAKE) sh tests/systemd/run-vm.sh

# ---- manual pages: scdoc sources in docs/man/ ------------------------

$(B)/man/%: docs/man/%.scd | $(B)/man
	$(call msg,SCDOC,$@)
	$(Q)scdoc < $< > $@.tmp && mv $@.tmp $@

$(B) $(B)/bin $(B)/lib $(B)/lib/pkgconfig $(B)/systemd $(B)/tests $(B)/testprogs $(B)/examples $(B)/man \
$(B)/bpf $(B)/kmod $(B)/powercut $(O)/lib $(O)/daemon $(O)/cli $(O)/bpf $(O)/bench \
	$(O)/dbench $(O)/bbench $(O)/rabbit $(O)/bridge $(O)/pbench $(O)/pbench/peers:
	$(Q)mkdir -p $@

# the headers each object and program read, as the compiler found them
-include $(wildcard $(O)/*/*.d $(B)/tests/*.d $(B)/testprogs/*.d $(B)/examples/*.d \
	$(B)/kmod/*.d $(B)/powercut/*.d $(B)/bpf/*.d $(FZ)/*.d $(FZ)/obj/*/*.d \
	$(O)/pbench/peers/*.d)
