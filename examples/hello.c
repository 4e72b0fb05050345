// SPDX-License-Identifier: MIT
/*
 * hello.c - the smallest complete shmbus program: a producer process and
 * a consumer process exchange messages through the queue "hello", zero-copy
 * on the receiving side. The daemon starts by itself if it is not running.
 *
 *   cc hello.c -o hello $(pkg-config --cflags --libs libshmbus)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmbus.h>

#define COUNT 5

static int produce(void)
{
	struct shmbus *bus = shmbus__open("example", NULL);
	struct shmbus_producer *p;
	char text[64];

	if (!bus)
		return perror("shmbus__open"), 1;
	p = shmbus_producer__new(bus, "hello", NULL);
	if (!p)
		return perror("shmbus_producer__new"), 1;
	for (int i = 1; i <= COUNT; i++) {
		int n = snprintf(text, sizeof(text), "hello #%d from pid %d", i,
				 (int)getpid());
		int err = shmbus_producer__publish(p, text, n, NULL);

		if (err)
			return fprintf(stderr, "publish: %s\n", strerror(-err)), 1;
	}
	shmbus_producer__free(p);
	shmbus__close(bus);
	return 0;
}

static int consume(void)
{
	struct shmbus *bus = shmbus__open("example", NULL);
	struct shmbus_consumer *c;

	if (!bus)
		return perror("shmbus__open"), 1;
	c = shmbus_consumer__new(bus, "hello", NULL);
	if (!c)
		return perror("shmbus_consumer__new"), 1;
	for (int i = 0; i < COUNT; i++) {
		struct shmbus_msg m;
		/* wait up to 5 s: spin briefly, then sleep on the eventfd */
		int err = shmbus_consumer__receive_view(c, &m, 5000000000LL);

		if (err)
			return fprintf(stderr, "receive: %s\n", strerror(-err)), 1;
		printf("consumer %d got: %.*s\n", (int)getpid(), (int)m.len,
		       (const char *)m.data);
		shmbus_consumer__release(c, &m);
	}
	shmbus_consumer__free(c);
	shmbus__close(bus);
	fflush(stdout);		/* the child leaves with _exit() */
	return 0;
}

int main(void)
{
	struct shmbus *bus = shmbus__open("example", NULL);
	int st, rc = 0;
	pid_t kid;

	if (!bus)
		return perror("shmbus__open"), 1;
	/* 0 = existed already, 1 = created: both fine */
	if (shmbus__queue_declare(bus, "hello", NULL) < 0)
		return fprintf(stderr, "cannot declare 'hello'\n"), 1;
	shmbus__close(bus);	/* a bus handle never crosses fork() */

	fflush(stdout);
	kid = fork();
	if (kid == 0)
		_exit(consume());
	rc |= produce();
	waitpid(kid, &st, 0);
	rc |= !WIFEXITED(st) || WEXITSTATUS(st);
	return rc;
}
