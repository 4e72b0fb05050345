// SPDX-License-Identifier: MIT
/*
 * kmod_test.c - the ABI of /dev/shmbus, run inside the test VM
 * (tests/kmod/run-vm.sh) against the loaded module: version, register /
 * unregister / wake one seat / wake one of a key / wake all / a list of
 * keys, death notice on kill -9 and on close, records kept while no
 * watcher, the LOST mark past the bound, bad arguments of every call,
 * and a bounded stress of concurrent register/wake/exit.
 *
 *   kmod_test            run every case; ends with "N passed, N failed"
 *   kmod_test hold       register and attach, then sleep in read() until
 *                        killed (the VM script tries rmmod meanwhile)
 *
 * No cmocka: the VM has only what run-vm.sh puts in its initramfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmbus/kmod.h"

static int failures;
static const char *current;

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			printf("FAIL %s: %s:%d: %s (errno %d %s)\n",	\
			       current, __FILE__, __LINE__, #cond, errno,\
			       strerror(errno));			\
			failures++;					\
			return;						\
		}							\
	} while (0)

/* an ioctl's -errno, or its value */
#define IOC(fd, cmd, arg)	(ioctl(fd, cmd, arg) < 0 ? -errno : 0)

static int dev_open(void)
{
	int fd = open(SHMBUS_KMOD_DEV, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		printf("cannot open %s: %s\n", SHMBUS_KMOD_DEV, strerror(errno));
		exit(2);
	}
	return fd;
}

static int arena(void)
{
	int fd = memfd_create("kmod-test-arena", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, 4096)) {
		perror("memfd");
		exit(2);
	}
	return fd;
}

static int reg(int dev, int afd, int efd, uint32_t qid, uint32_t gen,
	       uint32_t seat)
{
	struct shmbus_kmod_reg r = { .arena_fd = afd, .event_fd = efd,
				     .qid = qid, .gen = gen, .seat = seat };

	return IOC(dev, SHMBUS_IOC_REGISTER, &r);
}

static int unreg(int dev, int afd, uint32_t qid, uint32_t gen, uint32_t seat)
{
	struct shmbus_kmod_reg r = { .arena_fd = afd, .event_fd = -1,
				     .qid = qid, .gen = gen, .seat = seat };

	return IOC(dev, SHMBUS_IOC_UNREGISTER, &r);
}

/* WAKE one target; returns the total or -errno. */
static long wake1(int dev, int afd, uint32_t qid, uint32_t gen, uint32_t seat)
{
	struct shmbus_kmod_target t = { .qid = qid, .gen = gen, .seat = seat };
	struct shmbus_kmod_wake w = { .arena_fd = afd, .count = 1,
				      .targets = (uintptr_t)&t };
	long n = ioctl(dev, SHMBUS_IOC_WAKE, &w);

	return n < 0 ? -errno : n;
}

/* Tokens on a nonblocking eventfd (0 if none), drained. */
static uint64_t tokens(int efd)
{
	uint64_t v = 0;

	if (read(efd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static void test_version(void)
{
	struct shmbus_kmod_version v = { 0 };
	int dev = dev_open();

	CHECK(IOC(dev, SHMBUS_IOC_VERSION, &v) == 0);
	CHECK(v.abi == SHMBUS_KMOD_ABI);
	CHECK(v.max_wake == SHMBUS_KMOD_MAX_WAKE);
	CHECK(v.max_regs == SHMBUS_KMOD_MAX_REGS);
	close(dev);
}

static void test_register_wake(void)
{
	int dev = dev_open(), a = arena(), b = arena(), efd[4];
	struct shmbus_kmod_target t[3];
	struct shmbus_kmod_wake w;
	uint64_t got[4] = { 0 };

	for (int i = 0; i < 4; i++) {
		efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		CHECK(reg(dev, a, efd[i], 7, 1, i) == 0);
	}
	CHECK(reg(dev, a, efd[0], 7, 1, 0) == -EEXIST);
	/* one seat */
	CHECK(wake1(dev, a, 7, 1, 2) == 1);
	CHECK(tokens(efd[2]) == 1);
	for (int i = 0; i < 4; i++)
		CHECK(tokens(efd[i]) == 0);
	/* all of the key */
	CHECK(wake1(dev, a, 7, 1, SHMBUS_KMOD_SEAT_ALL) == 4);
	for (int i = 0; i < 4; i++)
		CHECK(tokens(efd[i]) == 1);
	/* one of the key, round robin: 8 wakes, 2 each */
	for (int k = 0; k < 8; k++)
		CHECK(wake1(dev, a, 7, 1, SHMBUS_KMOD_SEAT_ONE) == 1);
	for (int i = 0; i < 4; i++)
		got[i] = tokens(efd[i]);
	for (int i = 0; i < 4; i++)
		CHECK(got[i] == 2);
	/* other gen, other queue, other bus, nobody at that seat: 0 */
	CHECK(wake1(dev, a, 7, 2, SHMBUS_KMOD_SEAT_ALL) == 0);
	CHECK(wake1(dev, a, 8, 1, SHMBUS_KMOD_SEAT_ALL) == 0);
	CHECK(wake1(dev, b, 7, 1, SHMBUS_KMOD_SEAT_ALL) == 0);
	CHECK(wake1(dev, a, 7, 1, 9) == 0);
	/* a list of keys in one call, woken counted per target */
	CHECK(reg(dev, a, efd[3], 9, 1, 0) == 0);
	t[0] = (struct shmbus_kmod_target){ .qid = 7, .gen = 1, .seat = 1 };
	t[1] = (struct shmbus_kmod_target){ .qid = 9, .gen = 1,
					    .seat = SHMBUS_KMOD_SEAT_ALL };
	t[2] = (struct shmbus_kmod_target){ .qid = 5, .gen = 1, .seat = 0 };
	w = (struct shmbus_kmod_wake){ .arena_fd = a, .count = 3,
				       .targets = (uintptr_t)t };
	CHECK(ioctl(dev, SHMBUS_IOC_WAKE, &w) == 2);
	CHECK(t[0].woken == 1 && t[1].woken == 1 && t[2].woken == 0);
	CHECK(tokens(efd[1]) == 1 && tokens(efd[3]) == 1);
	/* unregister */
	CHECK(unreg(dev, a, 7, 1, 1) == 0);
	CHECK(unreg(dev, a, 7, 1, 1) == -ENOENT);
	CHECK(wake1(dev, a, 7, 1, SHMBUS_KMOD_SEAT_ALL) == 3);
	CHECK(tokens(efd[1]) == 0);
	/* registrations go with their file; the eventfds stay usable */
	close(dev);
	dev = dev_open();
	CHECK(wake1(dev, a, 7, 1, SHMBUS_KMOD_SEAT_ALL) == 0);
	for (int i = 0; i < 4; i++)
		close(efd[i]);
	close(dev);
	close(a);
	close(b);
}

static void test_bad_args(void)
{
	int dev = dev_open(), a = arena(), efd = eventfd(0, EFD_CLOEXEC);
	struct shmbus_kmod_target t = { .qid = 1, .gen = 1, .seat = 0 };
	struct shmbus_kmod_wake w = { .arena_fd = a, .count = 1,
				      .targets = (uintptr_t)&t };
	struct shmbus_kmod_reg r = { .arena_fd = a, .event_fd = efd };
	struct shmbus_kmod_attach at = { .arena_fd = a, .cookie = 1 };
	struct shmbus_kmod_watch wa = { .arena_fd = a, .tag = 1 };
	struct shmbus_kmod_death d[2];
	void *unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			      -1, 0);
	char path[64];
	int ro, p[2], dev2;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", a);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(ro >= 0 && pipe(p) == 0);
	/* pointers */
	CHECK(IOC(dev, SHMBUS_IOC_VERSION, NULL) == -EFAULT);
	CHECK(IOC(dev, SHMBUS_IOC_REGISTER, NULL) == -EFAULT);
	CHECK(IOC(dev, SHMBUS_IOC_UNREGISTER, unmapped) == -EFAULT);
	CHECK(IOC(dev, SHMBUS_IOC_WAKE, (void *)1) == -EFAULT);
	CHECK(IOC(dev, SHMBUS_IOC_ATTACH, NULL) == -EFAULT);
	CHECK(IOC(dev, SHMBUS_IOC_WATCH, unmapped) == -EFAULT);
	w.targets = (uintptr_t)unmapped;
	CHECK(IOC(dev, SHMBUS_IOC_WAKE, &w) == -EFAULT);
	w.targets = (uintptr_t)&t;
	/* counts, flags, seats */
	w.count = 0;
	CHECK(IOC(dev, SHMBUS_IOC_WAKE, &w) == -EINVAL);
	w.count = SHMBUS_KMOD_MAX_WAKE + 1;
	CHECK(IOC(dev, SHMBUS_IOC_WAKE, &w) == -EINVAL);
	w.count = 1;
	r.flags = 1;
	CHECK(IOC(dev, SHMBUS_IOC_REGISTER, &r) == -EINVAL);
	r.flags = 0;
	r.seat = SHMBUS_KMOD_SEAT_ONE;
	CHECK(IOC(dev, SHMBUS_IOC_REGISTER, &r) == -EINVAL);
	r.seat = 0;
	at.flags = 2;
	CHECK(IOC(dev, SHMBUS_IOC_ATTACH, &at) == -EINVAL);
	at.flags = 0;
	wa.flags = 4;
	CHECK(IOC(dev, SHMBUS_IOC_WATCH, &wa) == -EINVAL);
	wa.flags = 0;
	/* file descriptors: not open, not an eventfd, not a writable
	 * regular file (the proof of membership) */
	r.event_fd = p[0];
	CHECK(IOC(dev, SHMBUS_IOC_REGISTER, &r) == -EINVAL);
	r.event_fd = 1000;
	CHECK(IOC(dev, SHMBUS_IOC_REGISTER, &r) == -EBADF);
	r.event_fd = efd;
	r.arena_fd = -1;
	CHECK(IOC(dev, SHMBUS_IOC_REGISTER, &r) == -EBADF);
	r.arena_fd = ro;
	CHECK(IOC(dev, SHMBUS_IOC_REGISTER, &r) == -EACCES);
	r.arena_fd = p[1];
	CHECK(IOC(dev, SHMBUS_IOC_REGISTER, &r) == -EACCES);
	w.arena_fd = ro;
	CHECK(IOC(dev, SHMBUS_IOC_WAKE, &w) == -EACCES);
	at.arena_fd = ro;
	CHECK(IOC(dev, SHMBUS_IOC_ATTACH, &at) == -EACCES);
	wa.arena_fd = 12345;
	CHECK(IOC(dev, SHMBUS_IOC_WATCH, &wa) == -EBADF);
	r.arena_fd = a;
	at.arena_fd = a;
	wa.arena_fd = a;
	/* unknown ioctls, wrong sizes */
	CHECK(IOC(dev, _IO(SHMBUS_IOC_MAGIC, 77), NULL) == -ENOTTY);
	CHECK(IOC(dev, _IOW(SHMBUS_IOC_MAGIC, 1, int), &r) == -ENOTTY);
	/* once per file; one watcher per bus */
	CHECK(IOC(dev, SHMBUS_IOC_ATTACH, &at) == 0);
	CHECK(IOC(dev, SHMBUS_IOC_ATTACH, &at) == -EBUSY);
	CHECK(IOC(dev, SHMBUS_IOC_WATCH, &wa) == 0);
	dev2 = dev_open();
	CHECK(IOC(dev2, SHMBUS_IOC_WATCH, &wa) == -EBUSY);
	/* read: a buffer too small, a bad buffer, nothing there */
	CHECK(read(dev, d, sizeof(d[0]) - 1) == -1 && errno == EINVAL);
	CHECK(fcntl(dev, F_SETFL, O_NONBLOCK) == 0);
	CHECK(read(dev, d, sizeof(d)) == -1 && errno == EAGAIN);
	close(dev2);	/* never attached: no record */
	CHECK(read(dev, d, sizeof(d)) == -1 && errno == EAGAIN);
	/* the registration limit */
	dev2 = dev_open();
	for (uint32_t i = 0; i < SHMBUS_KMOD_MAX_REGS; i++) {
		r.qid = i;
		CHECK(IOC(dev2, SHMBUS_IOC_REGISTER, &r) == 0);
	}
	r.qid = SHMBUS_KMOD_MAX_REGS;
	CHECK(IOC(dev2, SHMBUS_IOC_REGISTER, &r) == -ENOSPC);
	close(dev2);
	close(dev);
	close(ro);
	close(p[0]);
	close(p[1]);
	close(efd);
	close(a);
	munmap(unmapped, 4096);
}

/* Read one record from watcher @w, waiting up to @ms. */
static int death(int w, struct shmbus_kmod_death *d, int ms)
{
	struct pollfd p = { .fd = w, .events = POLLIN };

	if (poll(&p, 1, ms) != 1)
		return -ETIMEDOUT;
	return read(w, d, sizeof(*d)) == sizeof(*d) ? 0 : -errno;
}

static void test_death_notice(void)
{
	int a = arena(), w = dev_open(), ready[2];
	struct shmbus_kmod_watch wa = { .arena_fd = a, .tag = 42 };
	struct shmbus_kmod_death d;
	pid_t kid;
	char c;

	CHECK(IOC(w, SHMBUS_IOC_WATCH, &wa) == 0);
	CHECK(pipe(ready) == 0);
	/* kill -9 */
	kid = fork();
	if (!kid) {
		int dev = dev_open();
		struct shmbus_kmod_attach at = { .arena_fd = a,
						 .cookie = 0xabcdef };

		if (IOC(dev, SHMBUS_IOC_ATTACH, &at))
			_exit(1);
		(void)!write(ready[1], "x", 1);
		pause();
		_exit(0);
	}
	CHECK(read(ready[0], &c, 1) == 1);
	CHECK(death(w, &d, 0) == -ETIMEDOUT);	/* alive: nothing */
	kill(kid, SIGKILL);
	CHECK(waitpid(kid, NULL, 0) == kid);
	CHECK(death(w, &d, 2000) == 0);
	CHECK(d.tag == 42 && d.cookie == 0xabcdef && d.pid == (uint32_t)kid &&
	      d.flags == 0);
	/* a normal exit, and a close, count the same */
	kid = fork();
	if (!kid) {
		int dev = dev_open();
		struct shmbus_kmod_attach at = { .arena_fd = a, .cookie = 7 };

		_exit(IOC(dev, SHMBUS_IOC_ATTACH, &at) ? 1 : 0);
	}
	CHECK(waitpid(kid, NULL, 0) == kid);
	CHECK(death(w, &d, 2000) == 0);
	CHECK(d.cookie == 7 && d.pid == (uint32_t)kid);
	close(w);
	close(ready[0]);
	close(ready[1]);
	close(a);
}

/*
 * A bus let go of (deleted): unwatch drops its unread records and the
 * watch, so another watcher may take the bus, and a watcher that
 * watches and unwatches more buses than it may hold at once never runs
 * out (a daemon whose users create and delete buses for ever).
 */
static void test_unwatch(void)
{
	int a = arena(), w = dev_open(), w2 = dev_open();
	struct shmbus_kmod_watch wa = { .arena_fd = a, .tag = 9 };
	struct shmbus_kmod_death d;
	pid_t kid;

	CHECK(IOC(w, SHMBUS_IOC_UNWATCH, &wa) == -ENOENT);
	CHECK(IOC(w, SHMBUS_IOC_WATCH, &wa) == 0);
	CHECK(IOC(w2, SHMBUS_IOC_UNWATCH, &wa) == -ENOENT);	/* not its */
	/* a death unread when the bus goes: dropped with it */
	kid = fork();
	if (!kid) {
		int dev = dev_open();
		struct shmbus_kmod_attach at = { .arena_fd = a, .cookie = 3 };

		_exit(IOC(dev, SHMBUS_IOC_ATTACH, &at) ? 1 : 0);
	}
	CHECK(waitpid(kid, NULL, 0) == kid);
	usleep(100000);
	CHECK(IOC(w, SHMBUS_IOC_UNWATCH, &wa) == 0);
	CHECK(death(w, &d, 0) == -ETIMEDOUT);
	wa.flags = 1;
	CHECK(IOC(w, SHMBUS_IOC_UNWATCH, &wa) == -EINVAL);
	wa.flags = 0;
	/* free for another watcher now */
	CHECK(IOC(w2, SHMBUS_IOC_WATCH, &wa) == 0);
	CHECK(IOC(w2, SHMBUS_IOC_UNWATCH, &wa) == 0);
	close(a);
	/* more buses than a watcher may hold, one at a time */
	for (int i = 0; i < 5000; i++) {
		int b = arena();

		wa.arena_fd = b;
		if (IOC(w, SHMBUS_IOC_WATCH, &wa) ||
		    IOC(w, SHMBUS_IOC_UNWATCH, &wa)) {
			CHECK(!"watch and unwatch 5000 buses");
			close(b);
			break;
		}
		close(b);
	}
	close(w);
	close(w2);
}

/* Deaths while no one watches wait for the next watcher; past the bound
 * they are dropped and the next record says so. */
static void test_pending(void)
{
	int a = arena(), keep = dev_open(), w;
	struct shmbus_kmod_attach at = { .arena_fd = a };
	struct shmbus_kmod_watch wa = { .arena_fd = a, .tag = 5 };
	struct shmbus_kmod_death d[64];
	unsigned n = 0, extra = 3;
	ssize_t got;

	/* one file attached throughout, so the bus outlives the others */
	at.cookie = 1ULL << 40;
	CHECK(IOC(keep, SHMBUS_IOC_ATTACH, &at) == 0);
	for (unsigned i = 0; i < SHMBUS_KMOD_MAX_PENDING + extra; i++) {
		int dev = dev_open();

		at.cookie = i;
		CHECK(IOC(dev, SHMBUS_IOC_ATTACH, &at) == 0);
		close(dev);
	}
	w = dev_open();
	CHECK(IOC(w, SHMBUS_IOC_WATCH, &wa) == 0);
	CHECK(fcntl(w, F_SETFL, O_NONBLOCK) == 0);
	while ((got = read(w, d, sizeof(d))) > 0) {
		for (unsigned k = 0; k < got / sizeof(d[0]); k++, n++) {
			CHECK(d[k].cookie == n && d[k].tag == 5 &&
			      d[k].flags == 0);
		}
	}
	CHECK(n == SHMBUS_KMOD_MAX_PENDING);
	/* the watcher goes with records unread: they wait again */
	{
		int dev = dev_open();

		at.cookie = 999999;
		CHECK(IOC(dev, SHMBUS_IOC_ATTACH, &at) == 0);
		close(dev);
	}
	close(w);
	w = dev_open();
	CHECK(IOC(w, SHMBUS_IOC_WATCH, &wa) == 0);
	CHECK(death(w, d, 1000) == 0);
	CHECK(d[0].cookie == 999999);
	CHECK(d[0].flags == SHMBUS_KMOD_DEATH_LOST);
	close(w);
	close(keep);
	close(a);
}

/* Register, wake and die concurrently for a bounded time. */
static void test_stress(void)
{
	int a = arena(), secs = 3;
	time_t end = time(NULL) + secs;
	pid_t kids[4];
	int st, bad = 0;

	for (int k = 0; k < 4; k++) {
		kids[k] = fork();
		if (kids[k])
			continue;
		srand(getpid());
		while (time(NULL) < end) {
			pid_t g = fork();

			if (!g) {
				/* a grandchild: registers, wakes, dies
				 * holding everything, sometimes by kill */
				int dev = dev_open();
				int efd = eventfd(0, EFD_NONBLOCK);
				struct shmbus_kmod_attach at = {
					.arena_fd = a, .cookie = getpid() };

				IOC(dev, SHMBUS_IOC_ATTACH, &at);
				for (int i = 0; i < 20; i++) {
					if (reg(dev, a, efd, rand() % 8, 1,
						rand() % 4) && errno != EEXIST)
						_exit(3);
					if (wake1(dev, a, rand() % 8, 1,
						  SHMBUS_KMOD_SEAT_ALL) < 0)
						_exit(4);
					if (rand() % 3 == 0)
						unreg(dev, a, rand() % 8, 1,
						      rand() % 4);
				}
				if (rand() % 2)
					raise(SIGKILL);
				_exit(0);
			}
			if (waitpid(g, &st, 0) != g ||
			    (WIFEXITED(st) && WEXITSTATUS(st)))
				_exit(5);
		}
		_exit(0);
	}
	{
		/* meanwhile: a watcher that comes and goes, and wakes */
		int dev = dev_open();
		struct shmbus_kmod_watch wa = { .arena_fd = a, .tag = 1 };

		while (time(NULL) < end) {
			int w = dev_open();
			struct shmbus_kmod_death d[16];

			IOC(w, SHMBUS_IOC_WATCH, &wa);
			fcntl(w, F_SETFL, O_NONBLOCK);
			for (int i = 0; i < 50; i++) {
				wake1(dev, a, i % 8, 1, SHMBUS_KMOD_SEAT_ONE);
				(void)!read(w, d, sizeof(d));
			}
			close(w);
		}
		close(dev);
	}
	for (int k = 0; k < 4; k++) {
		CHECK(waitpid(kids[k], &st, 0) == kids[k]);
		bad |= !WIFEXITED(st) || WEXITSTATUS(st);
	}
	CHECK(!bad);
	close(a);
}

/* `kmod_test hold`: hold registrations and an attachment, asleep. */
static int hold(void)
{
	int dev = dev_open(), a = arena(), efd = eventfd(0, 0);
	struct shmbus_kmod_attach at = { .arena_fd = a, .cookie = 1 };
	uint64_t v;

	for (int i = 0; i < 16; i++)
		if (reg(dev, a, efd, i, 1, 0))
			return 1;
	if (IOC(dev, SHMBUS_IOC_ATTACH, &at))
		return 1;
	printf("holding\n");
	fflush(stdout);
	return read(efd, &v, sizeof(v)) == sizeof(v) ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
		{ "version", test_version },
		{ "register_wake", test_register_wake },
		{ "bad_args", test_bad_args },
		{ "death_notice", test_death_notice },
		{ "unwatch", test_unwatch },
		{ "pending", test_pending },
		{ "stress", test_stress },
	};
	int passed = 0, failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "hold"))
		return hold();
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int before = failures;

		current = tests[i].name;
		tests[i].fn();
		if (failures == before) {
			printf("ok %s\n", current);
			passed++;
		} else {
			failed++;
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
