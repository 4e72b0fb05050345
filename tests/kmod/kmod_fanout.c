// SPDX-License-Identifier: MIT
/*
 * kmod_fanout.c - topic fan-out to 8 sleeping subscribers through the
 * real library, on the backend $SHMBUS_KMOD picks (run-vm.sh runs it with
 * "required" and with "off"): 8 subscriber processes, each its own
 * consumer group, block in receive; the publisher waits until all 8 are
 * asleep, publishes one message, and waits until all 8 have it; ROUNDS
 * times. Every subscriber must get every message, in order, and every
 * message must have woken all 8 (8 wake-ups per publish). Then a consumer
 * is killed with -9 while holding a lease, and its message must come back
 * (the daemon learns of the death by the module, or by socket EOF).
 * Ends with "N passed, N failed".
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "barrier.h"
#include "shmbus.h"

#define SUBS	8
#define ROUNDS	50

struct shared {
	int got[SUBS];		/* messages each has */
	int bad;
};

static int passed, failed;

#define CHECK(c)							\
	do {								\
		if (!(c)) {						\
			printf("FAIL %s:%d: %s (errno %d)\n", __FILE__,	\
			       __LINE__, #c, errno);			\
			failed++;					\
			return;						\
		}							\
	} while (0)

static void subscriber(struct shared *sh, int k)
{
	SHMBUS_OPTS(shmbus_sub_opts, so, .spin_ns = -1,
		    .flags = SHMBUS_SUB_DURABLE);
	struct shmbus *bus = shmbus__open("fan", NULL);
	struct shmbus_consumer *c;
	char group[16];

	snprintf(group, sizeof(group), "g%d", k);
	so.group = group;
	c = bus ? shmbus_consumer__subscribe(bus, "fan.x", &so) : NULL;
	if (!c)
		_exit(2);
	atomic_fetch_add(&sh->got[k], 1000);	/* subscribed */
	for (int i = 0; i < ROUNDS; i++) {
		struct shmbus_msg m;

		if (shmbus_consumer__receive_view(c, &m, 60000000000LL) ||
		    m.len != sizeof(int) || *(const int *)m.data != i)
			atomic_fetch_add(&sh->bad, 1);
		shmbus_consumer__ack(c, &m);
		atomic_fetch_add(&sh->got[k], 1);
	}
	shmbus_consumer__free(c);
	shmbus__close(bus);
	_exit(0);
}

static uint64_t sleeps(struct shmbus *bus, int k)
{
	struct shmbus_queue_info qi;
	char name[64];

	snprintf(name, sizeof(name), "fan.x#g%d", k);
	return shmbus__queue_info(bus, name, &qi) ? 0 :
	       qi.stat[SHMBUS_STAT_SLEEPS];
}

static void test_fanout(void)
{
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct shmbus *bus = shmbus__open("fan", NULL);
	const char *want = getenv("SHMBUS_KMOD");
	struct shmbus_producer *p;
	uint64_t wake1 = 0;
	pid_t kids[SUBS];
	int st;

	CHECK(bus);
	printf("backend: %s\n", shmbus__wake_backend(bus));
	CHECK(!strcmp(shmbus__wake_backend(bus),
		      want && !strcmp(want, "off") ? "eventfd" : "kmod"));
	CHECK(shmbus__topic_declare(bus, "fan.x", NULL) >= 0);
	for (int k = 0; k < SUBS; k++)
		if (!(kids[k] = fork()))
			subscriber(sh, k);
	for (int k = 0; k < SUBS; k++)
		while (smp_load_acquire(&sh->got[k]) < 1000)
			usleep(1000);
	p = shmbus_producer__new(bus, "fan.x", NULL);
	CHECK(p);
	for (int i = 0; i < ROUNDS; i++) {
		/* all asleep: each subscription's sleeps counter moved */
		for (int k = 0; k < SUBS; k++) {
			while (sleeps(bus, k) <= (uint64_t)i)
				usleep(500);
		}
		usleep(2000);
		CHECK(shmbus_producer__publish(p, &i, sizeof(i), NULL) == 0);
		for (int k = 0; k < SUBS; k++)
			while (smp_load_acquire(&sh->got[k]) < 1000 + i + 1)
				usleep(200);
	}
	{
		/* counted where the publisher is attached: the topic */
		struct shmbus_queue_info qi;

		CHECK(shmbus__queue_info(bus, "fan.x", &qi) == 0);
		wake1 = qi.stat[SHMBUS_STAT_WAKEUPS];
	}
	for (int k = 0; k < SUBS; k++) {
		char name[64];

		CHECK(waitpid(kids[k], &st, 0) == kids[k]);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		snprintf(name, sizeof(name), "g%d", k);
		CHECK(shmbus__unsubscribe(bus, "fan.x", name) == 0);
	}
	printf("%d messages x %d subscribers, %llu wake-ups\n", ROUNDS, SUBS,
	       (unsigned long long)wake1);
	CHECK(smp_load_acquire(&sh->bad) == 0);
	CHECK(wake1 == (uint64_t)ROUNDS * SUBS);
	shmbus_producer__free(p);
	shmbus__close(bus);
	passed++;
}

/* A consumer killed holding a lease: its message comes back at once. */
static void test_killed_consumer(void)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .lease_ns = 600000000000LL);
	struct shmbus *bus = shmbus__open("fan", NULL);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	int pfd[2], v = 42;
	struct timespec t0, t1;
	pid_t kid;
	char ch;

	CHECK(bus && pipe(pfd) == 0);
	CHECK(shmbus__queue_declare(bus, "fan.q", &qo) >= 0);
	p = shmbus_producer__new(bus, "fan.q", NULL);
	CHECK(p && shmbus_producer__publish(p, &v, sizeof(v), NULL) == 0);
	if (!(kid = fork())) {
		struct shmbus *b = shmbus__open("fan", NULL);
		struct shmbus_consumer *k = shmbus_consumer__new(b, "fan.q",
								 NULL);
		struct shmbus_msg km;

		if (!k || shmbus_consumer__receive_view(k, &km, 10000000000LL))
			_exit(2);
		(void)!write(pfd[1], "x", 1);
		pause();	/* holding the lease: 10 minutes */
		_exit(0);
	}
	CHECK(read(pfd[0], &ch, 1) == 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	c = shmbus_consumer__new(bus, "fan.q", NULL);
	CHECK(c);
	CHECK(shmbus_consumer__receive_view(c, &m, 30000000000LL) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(*(const int *)m.data == 42 && m.delivery_count == 2);
	printf("redelivered %.1f ms after kill -9\n",
	       (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	shmbus_consumer__ack(c, &m);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__queue_delete(bus, "fan.q");
	shmbus__close(bus);
	passed++;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_fanout();
	test_killed_consumer();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
