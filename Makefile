# shmbus - top-level Makefile.
#
#   make            build the library, daemon, CLI, tests and benchmark
#   make deps       install missing Debian packages (root), else print how
#   make test       deps + build + run every test (CI=true: skips fail)
#   make demo       deps + build + run the demo
#   make bench      deps + build + run the benchmark
#   make install    DESTDIR=... PREFIX=/usr/local LIBDIR=... 
#   make clean
#
#   V=1             show commands
#   SAN=address|undefined|thread   sanitizer build (in build-$(SAN)/)
#   CI=true         -Werror, and tests that would skip fail instead

VERSION_MAJOR := 0
VERSION_MINOR := 1
VERSION_PATCH := 0
VERSION       := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
PCDIR   ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

CC  ?= gcc
CXX ?= g++

DEB_PKGS := build-essential pkg-config liburcu-dev libcmocka-dev systemtap-sdt-dev \
	clang llvm libbpf-dev bpftool \
	linux-headers-amd64 qemu-system-x86 busybox-static cpio xz-utils zstd

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
BASE_CFLAGS := -std=gnu11 -Wall -Wextra -Wshadow -Wno-unused-parameter \
	-Wmissing-prototypes -Wstrict-prototypes -fno-strict-aliasing \
	-D_GNU_SOURCE -Iinclude -Iuserspace/lib \
	-DSHMBUS_DAEMON_PATH='"$(BINDIR)/shmbusd"' \
	$(WERROR) $(SANFLAGS)
LIB_CFLAGS := $(BASE_CFLAGS) $(PROBE_CFLAGS) -fPIC -fvisibility=hidden
URCU_LIBS := -lurcu-bp -lurcu-common
LDLIBS := $(URCU_LIBS) -lpthread
LDFLAGS ?=
ALL_LDFLAGS := $(LDFLAGS) $(SANFLAGS)

LIB_SRCS := $(wildcard userspace/lib/*.c)
LIB_OBJS := $(patsubst userspace/lib/%.c,$(B)/lib/%.o,$(LIB_SRCS))
LIB_PIC  := $(patsubst userspace/lib/%.c,$(B)/lib/%.pic.o,$(LIB_SRCS))
DMN_SRCS := $(filter-out userspace/daemon/main.c,$(wildcard userspace/daemon/*.c))
DMN_OBJS := $(patsubst userspace/daemon/%.c,$(B)/daemon/%.o,$(DMN_SRCS))
HDRS     := $(wildcard include/*.h userspace/lib/*.h userspace/daemon/*.h tests/*.h tools/*.h)

SONAME   := libshmbus.so.$(VERSION_MAJOR)
SHLIB    := $(B)/libshmbus.so.$(VERSION)
STLIB    := $(B)/libshmbus.a
DMNLIB   := $(B)/libshmbusd.a
DAEMON   := $(B)/shmbusd
CLI      := $(B)/shmbus
BENCH    := $(B)/shmbus-bench
PCOST    := $(B)/probe-cost

# Unit tests link the static library (they test internals); the rest link
# the shared library like any user.
UNIT_TESTS := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/unit_*.c))
PROC_TESTS := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/test_*.c))
TESTS      := $(UNIT_TESTS) $(PROC_TESTS)

RPATH := -Wl,-rpath,'$$ORIGIN' -Wl,-rpath,'$$ORIGIN/..'

.PHONY: all deps test demo bench install clean check-header kmod kmod-progs \
	test-kmod
.DEFAULT_GOAL := all

EXAMPLES := $(patsubst examples/%.c,$(B)/examples/%,$(wildcard examples/*.c))

all: $(SHLIB) $(STLIB) $(DAEMON) $(CLI) $(BENCH) $(PCOST) $(TESTS) $(EXAMPLES) \
	$(B)/libshmbus.pc check-header

deps:
	$(Q)sh tools/deps.sh $(DEB_PKGS)

# test/demo/bench: install what is missing first, then build in a fresh
# make (so nothing is evaluated before the compiler exists).
test: deps
	$(Q)$(MAKE) $(if $(Q),-s) all
	$(Q)B=$(B) CI=$(CI) SAN=$(SAN) MAKE=$(MAKE) sh tests/run.sh

demo: deps
	$(Q)$(MAKE) $(if $(Q),-s) all
	$(Q)B=$(B) sh tools/demo.sh

bench: deps
	$(Q)$(MAKE) $(if $(Q),-s) all
	$(Q)$(BENCH) $(BENCH_ARGS)

# ---- the kernel module (Kbuild, kernel/; docs/kernel.md) ---------------
# Built against Debian's linux-headers-amd64 (tools/kver.sh), never the
# running kernel, in a copy under $(B)/kmod/src so that the tree stays
# clean; tested by booting Debian's kernel in qemu (tests/kmod/run-vm.sh).
KMOD_SRC := Kbuild $(wildcard kernel/*.c kernel/*.h) include/shmbus_kmod.h
KMOD_PROGS := $(B)/kmod/kmod_test $(B)/kmod/kmod_bench $(B)/kmod/kmod_fanout

kmod: $(B)/kmod/src/shmbus.ko

$(B)/kmod/src/shmbus.ko: $(KMOD_SRC)
	$(call msg,KBUILD,$@)
	$(Q)mkdir -p $(B)/kmod/src/kernel $(B)/kmod/src/include
	$(Q)cp Kbuild $(B)/kmod/src/
	$(Q)cp kernel/*.c $(B)/kmod/src/kernel/
	$(Q)cp include/shmbus_kmod.h $(B)/kmod/src/include/
	$(Q)$(MAKE) -s -C /usr/src/linux-headers-$$(sh tools/kver.sh) \
		M=$(abspath $(B)/kmod/src) modules >$(B)/kmod/build.log 2>&1 || \
		{ cat $(B)/kmod/build.log; exit 1; }
	$(Q)! grep -E "warning:|error:" $(B)/kmod/build.log

# the programs that run inside the VM: static, no cmocka
$(B)/kmod/kmod_%: tests/kmod/kmod_%.c include/shmbus_kmod.h | $(B)/kmod
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -static $< -o $@

# this one uses the library: static too
$(B)/kmod/kmod_fanout: tests/kmod/kmod_fanout.c $(STLIB) include/shmbus.h | $(B)/kmod
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -static $< -o $@ $(STLIB) $(LDLIBS)

kmod-progs: $(KMOD_PROGS) $(DAEMON) $(B)/tests/test_wake $(B)/tests/test_topics

$(B)/kmod:
	$(Q)mkdir -p $@

test-kmod: deps
	$(Q)$(MAKE) $(if $(Q),-s) all
	$(Q)B=$(B) MAKE=$(MAKE) sh tests/kmod/run-vm.sh

$(B)/lib/%.o: userspace/lib/%.c $(HDRS) | $(B)/lib
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(LIB_CFLAGS) -c $< -o $@

$(B)/lib/%.pic.o: userspace/lib/%.c $(HDRS) | $(B)/lib
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(LIB_CFLAGS) -c $< -o $@

$(B)/daemon/%.o: userspace/daemon/%.c $(HDRS) | $(B)/daemon
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -Iuserspace/daemon -c $< -o $@

# The version script: the public nodes, and the internals the daemon uses
# (userspace/lib/private.h) in a node named after this exact version.
$(B)/libshmbus.map: userspace/lib/libshmbus.map | $(B)/lib
	$(call msg,GEN,$@)
	$(Q){ cat $<; printf '\nSHMBUS_PRIVATE_$(VERSION) {\n\tglobal:\n\t\t__shmbus_*;\n};\n'; } > $@

$(SHLIB): $(LIB_PIC) $(B)/libshmbus.map
	$(call msg,LD,$@)
	$(Q)$(CC) -shared $(ALL_LDFLAGS) -Wl,-soname,$(SONAME) \
		-Wl,--version-script=$(B)/libshmbus.map -Wl,-z,defs \
		-o $@ $(LIB_PIC) $(LDLIBS)
	$(Q)ln -sf $(notdir $(SHLIB)) $(B)/$(SONAME)
	$(Q)ln -sf $(SONAME) $(B)/libshmbus.so

$(STLIB): $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(DMNLIB): $(DMN_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# The daemon links libshmbus.so like everyone else (one USDT attachment
# covers it), using the internals exported for it (private.h).
$(DAEMON): userspace/daemon/main.c $(DMNLIB) $(SHLIB) $(HDRS)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -Iuserspace/daemon $< -o $@ \
		$(ALL_LDFLAGS) $(DMNLIB) $(RPATH) -L$(B) -lshmbus $(LDLIBS)

# BPF (bpf/): CO-RE objects built with clang against the running kernel's
# BTF, and libbpf skeletons for the tools that load them.
BPFTOOL ?= bpftool
CLANG   ?= clang
BPF_ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BPF_MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(BPF_ARCH) -I$(B)/bpf \
	-Iinclude -idirafter /usr/include/$(BPF_MULTIARCH)
BPF_SKEL := $(B)/bpf/shmbus.skel.h

$(B)/bpf/vmlinux.h: | $(B)/bpf
	$(call msg,BTF,$@)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp
	$(Q)mv $@.tmp $@

$(B)/bpf/shmbus.bpf.o: bpf/shmbus.bpf.c include/shmbus_bpf.h $(B)/bpf/vmlinux.h
	$(call msg,CLANG,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BPF_SKEL): $(B)/bpf/shmbus.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name shmbus_bpf > $@.tmp
	$(Q)mv $@.tmp $@

# the shmbus command: its pieces, and the BPF skeleton monitor.c embeds
CLI_SRCS := tools/shmbus.c tools/monitor.c tools/metrics.c tools/top.c \
	    tools/observe.c

$(CLI): $(CLI_SRCS) tools/cli.h tools/observe.h tools/libpath.h $(SHLIB) \
	include/shmbus.h include/shmbus_bpf.h $(BPF_SKEL)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -I$(B)/bpf $(CLI_SRCS) -o $@ \
		$(ALL_LDFLAGS) $(RPATH) -L$(B) -lshmbus -lbpf -lm

$(PCOST): tools/bench/probe-cost.c $(SHLIB) include/shmbus.h
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) $< -o $@ $(ALL_LDFLAGS) $(RPATH) \
		-L$(B) -lshmbus

$(BENCH): tools/bench/bench.c $(wildcard tools/bench/*.h) $(SHLIB) include/shmbus.h
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) $< -o $@ $(ALL_LDFLAGS) $(RPATH) \
		-L$(B) -lshmbus -lpthread -lm

$(B)/tests/unit_%: tests/unit_%.c $(STLIB) $(DMNLIB) $(HDRS) | $(B)/tests
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -Iuserspace/daemon -Itests $< -o $@ \
		$(ALL_LDFLAGS) $(DMNLIB) $(STLIB) -lcmocka $(LDLIBS)

$(B)/tests/test_%: tests/test_%.c $(SHLIB) $(HDRS) | $(B)/tests
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -Itests $< -o $@ $(ALL_LDFLAGS) \
		-Wl,-rpath,'$$ORIGIN/..' -L$(B) -lshmbus -lcmocka -lpthread -lbpf

# Examples build as a user would: public header, shared library.
$(B)/examples/%: examples/%.c $(SHLIB) include/shmbus.h | $(B)/examples
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) $< -o $@ $(ALL_LDFLAGS) \
		-Wl,-rpath,'$$ORIGIN/..' -L$(B) -lshmbus

$(B)/libshmbus.pc: libshmbus.pc.in Makefile | $(B)
	$(call msg,GEN,$@)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCDIR@|$(INCDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# The public header must compile as C++ too.
check-header: $(B)/.header-cxx
$(B)/.header-cxx: include/shmbus.h | $(B)
	$(call msg,CXX,include/shmbus.h)
	$(Q)printf '#include "shmbus.h"\n#include "shmbus_layout.h"\nint main() { return 0; }\n' | \
		$(CXX) -x c++ -std=c++11 -Wall -Wextra -Werror -Iinclude -fsyntax-only -
	$(Q)touch $@

$(B) $(B)/lib $(B)/daemon $(B)/tests $(B)/examples $(B)/bpf:
	$(Q)mkdir -p $@

install: $(SHLIB) $(STLIB) $(DAEMON) $(CLI) $(B)/libshmbus.pc
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR)
	$(Q)install -m 0755 $(SHLIB) $(DESTDIR)$(LIBDIR)/
	$(Q)ln -sf $(notdir $(SHLIB)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	$(Q)ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libshmbus.so
	$(Q)install -m 0644 $(STLIB) $(DESTDIR)$(LIBDIR)/
	$(Q)install -m 0644 include/shmbus.h include/shmbus_layout.h \
		include/shmbus_bpf.h include/shmbus_kmod.h $(DESTDIR)$(INCDIR)/
	$(Q)install -m 0644 $(B)/libshmbus.pc $(DESTDIR)$(PCDIR)/
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -Iuserspace/daemon \
		userspace/daemon/main.c -o $(DESTDIR)$(BINDIR)/shmbusd \
		$(ALL_LDFLAGS) $(DMNLIB) -Wl,-rpath,'$(LIBDIR)' -L$(B) \
		-lshmbus $(LDLIBS)
	$(Q)$(CC) $(CFLAGS) $(BASE_CFLAGS) -I$(B)/bpf $(CLI_SRCS) \
		-o $(DESTDIR)$(BINDIR)/shmbus $(ALL_LDFLAGS) \
		-Wl,-rpath,'$(LIBDIR)' -L$(B) -lshmbus -lbpf -lm

clean:
	$(call msg,CLEAN,build*)
	$(Q)rm -rf build build-address build-undefined build-thread \
		build-noprobes
