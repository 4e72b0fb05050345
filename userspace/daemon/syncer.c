// SPDX-License-Identifier: MIT
/*
 * syncer.c - the sync thread of the journals, the daemon's only other
 * thread: fdatasync() can take milliseconds, and the event loop must not
 * wait for a disk. The loop hands over the fds of what to sync (a struct
 * jsync, journal_sync_begin()) and gets back, through the daemon's
 * eventfd, the result of each; the thread touches nothing else. While a
 * journal's sync runs, what the loop writes meanwhile waits for the next
 * one, which covers all of it: group commit. The thread starts with the
 * first sync: a daemon without durable queues stays one thread.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "shmbusd.h"

struct sreq {
	struct sreq *next;
	uint64_t token;
	struct jsync s;
	int err;
	int64_t ns;
};

static struct {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sreq *todo, **todo_tail, *done;
	bool running, stop;
	uint64_t seq;
	int efd;
} sy = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.efd = -1,
};

void jsync_drop(struct jsync *s)
{
	for (unsigned i = 0; i < s->nfds; i++)
		close(s->fds[i]);
	if (s->dirfd >= 0)
		close(s->dirfd);
	s->nfds = 0;
	s->dirfd = -1;
}

static void *sync_main(void *arg)
{
	static const uint64_t one = 1;

	(void)arg;
	pthread_mutex_lock(&sy.mu);
	for (;;) {
		struct sreq *r;
		int64_t t;

		while (!sy.todo && !sy.stop)
			pthread_cond_wait(&sy.cv, &sy.mu);
		if (sy.stop)
			break;
		r = sy.todo;
		sy.todo = r->next;
		if (!sy.todo)
			sy.todo_tail = &sy.todo;
		pthread_mutex_unlock(&sy.mu);
		t = now_ns();
		r->err = journal_sync_run(&r->s);
		r->ns = now_ns() - t;
		pthread_mutex_lock(&sy.mu);
		r->next = sy.done;
		sy.done = r;
		/* a full counter means a wake-up is pending already */
		(void)!write(sy.efd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&sy.mu);
	return NULL;
}

static int start(void)
{
	sigset_t all, old;
	int err;

	sy.todo_tail = &sy.todo;
	/* signals stay with the event loop (signalfd) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&sy.th, NULL, sync_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	sy.running = true;
	return 0;
}

void syncer_init(int efd)
{
	sy.efd = efd;
}

int syncer_post(const struct jsync *s, uint64_t *token)
{
	struct sreq *r;
	int err;

	if (!sy.running && (err = start()))
		return err;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->s = *s;
	pthread_mutex_lock(&sy.mu);
	r->token = *token = ++sy.seq;
	*sy.todo_tail = r;
	sy.todo_tail = &r->next;
	pthread_cond_signal(&sy.cv);
	pthread_mutex_unlock(&sy.mu);
	return 0;
}

void syncer_collect(syncer_done_fn *fn, void *ctx)
{
	struct sreq *done;

	pthread_mutex_lock(&sy.mu);
	done = sy.done;
	sy.done = NULL;
	pthread_mutex_unlock(&sy.mu);
	while (done) {
		struct sreq *r = done;

		done = r->next;
		fn(ctx, r->token, &r->s, r->err, r->ns);
		free(r);
	}
}

static void drop_all(struct sreq *r)
{
	while (r) {
		struct sreq *n = r->next;

		jsync_drop(&r->s);
		free(r);
		r = n;
	}
}

void syncer_fini(void)
{
	if (sy.running) {
		pthread_mutex_lock(&sy.mu);
		sy.stop = true;
		pthread_cond_signal(&sy.cv);
		pthread_mutex_unlock(&sy.mu);
		pthread_join(sy.th, NULL);
		sy.running = false;
	}
	drop_all(sy.todo);
	drop_all(sy.done);
	sy.todo = sy.done = NULL;
	sy.todo_tail = &sy.todo;
}
