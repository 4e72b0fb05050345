// SPDX-License-Identifier: MIT
/*
 * producer.c - the producer handle: attaching to a queue or topic and
 * binding what its publishes need (TTL, dedup table, overflow policy),
 * and detaching. Publishing is in publish.c and loan.c.
 */
#include <stdlib.h>

#include "producer.h"

SHMBUS_API struct shmbus_producer *
shmbus_producer__new(struct shmbus *bus, const char *queue,
		     const struct shmbus_producer_opts *opts)
{
	struct shmbus_producer *p;
	int err;

	if (!bus || !queue || !OPTS_VALID(opts, shmbus_producer_opts) ||
	    (OPTS_GET(opts, flags, 0) & ~(SHMBUS_PRODUCER_TIMESTAMP |
					  SHMBUS_PRODUCER_ASYNC_CONFIRM))) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		errno = ENOMEM;
		return NULL;
	}
	p->stamp = OPTS_GET(opts, flags, 0) & SHMBUS_PRODUCER_TIMESTAMP;
	err = attach(bus, queue, SHMBUS_ROLE_PRODUCER, &p->at);
	if (err) {
		free(p);
		errno = -err;
		return NULL;
	}
	p->ttl_ns = (int64_t)READ_ONCE(p->at.q->ttl_ns);
	if (p->ttl_ns < 0)
		p->ttl_ns = 0;		/* a peer's garbage */
	dedup_bind(p);
	p->topic = READ_ONCE(p->at.q->flags) & SHMBUS_QF_TOPIC;
	p->at.overflow = READ_ONCE(p->at.q->overflow);
	if (p->at.overflow > SHMBUS_OVERFLOW_DROP_OLDEST)
		p->at.overflow = SHMBUS_OVERFLOW_BLOCK;	/* a peer's garbage */
	/* the daemon bound us to a persistent queue's intake */
	p->durable = READ_ONCE(p->at.q->flags) & SHMBUS_QF_INTAKE;
	p->async_confirm = OPTS_GET(opts, flags, 0) &
			   SHMBUS_PRODUCER_ASYNC_CONFIRM;
	p->confirm_timeout = OPTS_GET(opts, confirm_timeout_ns, 0);
	if (!p->confirm_timeout)
		p->confirm_timeout = 30 * NSEC_PER_SEC;
	p->failed_seen = READ_ONCE(p->at.slot->failed);
	return p;
}

SHMBUS_API int shmbus_producer__flush(struct shmbus_producer *p)
{
	struct attachment *at;
	int err;

	if (!p)
		return -EINVAL;
	at = &p->at;
	if (!at->deferred)
		return 0;
	if (check_pid_fast(at->bus))
		return -ECHILD;
	epoch_enter(&at->bus->arena, at->slot);
	err = attachment_check(at);
	if (err)
		at->deferred = 0;	/* a queue gone has nobody to wake */
	else
		err = (int)wake_after(at, 0);
	epoch_exit(at->slot);
	return err;
}

SHMBUS_API void shmbus_producer__free(struct shmbus_producer *p)
{
	if (!p)
		return;
	/* in a forked child nothing of the parent's slot is touched */
	if (check_pid(p->at.bus) == 0)
		shmbus_producer__flush(p);
	detach(&p->at);
	free(p);
}

uint32_t producer_qid(const struct shmbus_producer *p)
{
	return p->at.qid;
}
