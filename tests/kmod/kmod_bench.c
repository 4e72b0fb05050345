// SPDX-License-Identifier: MIT
/*
 * kmod_bench.c - wake-ups of N sleeping subscribers (N = 1 and 8), by N
 * eventfd writes (libshmbus without the module) against one
 * SHMBUS_IOC_WAKE with N targets (with it). Run inside the test VM, where
 * TCG makes absolute times meaningless: it prints both and their ratio,
 * measured in the same run.
 *
 * Each subscriber blocks in read() on its own eventfd, registered under
 * its own key (as topic subscriptions are). Per round the publisher waits
 * until every subscriber is blocked, takes t0, wakes them all, takes t1;
 * each subscriber stamps the time it runs again. "publish" is t1 - t0,
 * "last" is the latest stamp - t0. The two ways alternate round by round
 * (TCG timing drifts with the host's load); medians of ROUNDS rounds
 * each.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
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

#include "barrier.h"
#include "shmbus/kmod.h"

#define ROUNDS	300
#define MAXN	8

struct shared {
	uint32_t asleep;	/* subscribers about to block */
	uint32_t quit;
	uint64_t ran[MAXN];	/* when each ran again, ns */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

/* @n subscribers, woken by ioctl and by writes on alternate rounds:
 * medians into pub_med[way], last_med[way] (way 0 writes, 1 ioctl). */
static void run(int n, uint64_t pub_med[2], uint64_t last_med[2])
{
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int dev = open(SHMBUS_KMOD_DEV, O_RDWR | O_CLOEXEC);
	int afd = memfd_create("bench-arena", MFD_CLOEXEC);
	struct shmbus_kmod_target t[MAXN];
	struct shmbus_kmod_wake w = { .arena_fd = afd, .count = n,
				      .targets = (uintptr_t)t };
	static uint64_t pub[2][ROUNDS], last[2][ROUNDS];
	int efd[MAXN];
	pid_t kids[MAXN];

	if (sh == MAP_FAILED || dev < 0 || afd < 0) {
		perror("kmod_bench setup");
		exit(2);
	}
	for (int i = 0; i < n; i++) {
		struct shmbus_kmod_reg r = { .arena_fd = afd, .qid = i,
					     .gen = 1, .seat = 0 };

		efd[i] = eventfd(0, EFD_CLOEXEC);
		r.event_fd = efd[i];
		if (ioctl(dev, SHMBUS_IOC_REGISTER, &r)) {
			perror("register");
			exit(2);
		}
		t[i] = (struct shmbus_kmod_target){ .qid = i, .gen = 1,
						    .seat = 0 };
	}
	for (int i = 0; i < n; i++) {
		kids[i] = fork();
		if (kids[i])
			continue;
		for (;;) {
			uint64_t v;

			atomic_fetch_add(&sh->asleep, 1);
			if (read(efd[i], &v, sizeof(v)) != sizeof(v))
				_exit(1);
			if (smp_load_acquire(&sh->quit))
				_exit(0);
			smp_store_release(&sh->ran[i], now_ns());
		}
	}
	for (int r = 0; r < 2 * ROUNDS; r++) {
		int way = r & 1;
		uint64_t t0, t1, mx = 0;

		/* everyone announced, then a moment to be inside read() */
		while (smp_load_acquire(&sh->asleep) < (uint32_t)n)
			usleep(100);
		usleep(2000);
		smp_store_release(&sh->asleep, 0);
		for (int i = 0; i < n; i++)
			smp_store_release(&sh->ran[i], 0);
		t0 = now_ns();
		if (way) {
			if (ioctl(dev, SHMBUS_IOC_WAKE, &w) != n) {
				perror("wake");
				exit(2);
			}
		} else {
			for (int i = 0; i < n; i++) {
				static const uint64_t one = 1;

				if (write(efd[i], &one, sizeof(one)) != 8)
					exit(2);
			}
		}
		t1 = now_ns();
		for (int i = 0; i < n; i++) {
			uint64_t ts;

			while (!(ts = smp_load_acquire(&sh->ran[i])))
				sched_yield();
			if (ts > mx)
				mx = ts;
		}
		pub[way][r / 2] = t1 - t0;
		last[way][r / 2] = mx - t0;
	}
	smp_store_release(&sh->quit, 1);
	while (smp_load_acquire(&sh->asleep) < (uint32_t)n)
		usleep(100);
	for (int i = 0; i < n; i++) {
		static const uint64_t one = 1;

		(void)!write(efd[i], &one, sizeof(one));
		waitpid(kids[i], NULL, 0);
		close(efd[i]);
	}
	for (int way = 0; way < 2; way++) {
		pub_med[way] = median(pub[way], ROUNDS);
		last_med[way] = median(last[way], ROUNDS);
	}
	close(dev);
	close(afd);
	munmap(sh, sizeof(*sh));
}

int main(void)
{
	static const int ns[] = { 1, 8 };

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("wake-up of N sleeping subscribers, medians of %d rounds "
	       "(inside the VM: compare ratios only)\n", ROUNDS);
	printf("%3s  %-16s %12s %12s\n", "N", "how", "publish_us", "last_us");
	for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
		uint64_t p[2], l[2];

		run(ns[k], p, l);
		printf("%3d  %-16s %12.1f %12.1f\n", ns[k], "eventfd writes",
		       p[0] / 1e3, l[0] / 1e3);
		printf("%3d  %-16s %12.1f %12.1f\n", ns[k], "one ioctl",
		       p[1] / 1e3, l[1] / 1e3);
		printf("%3d  ratio ioctl/writes: publish %.2fx, last %.2fx\n",
		       ns[k], (double)p[1] / p[0], (double)l[1] / l[0]);
	}
	return 0;
}
