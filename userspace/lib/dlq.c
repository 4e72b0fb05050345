// SPDX-License-Identifier: MIT
/*
 * dlq.c - redrive: move dead-lettered messages back to the queues they
 * came from (or to a queue of the caller's choice), as SQS does.
 *
 * Built on the public calls: receive under a lease from the DLQ, publish a
 * copy (payload, correlation id and attributes; a new id, delivery count
 * 0, and no dead-letter marks) to the target, then ack. A failure after the publish
 * and before the ack leaves the message in both places, never in neither.
 */
#include <stdlib.h>
#include <string.h>

#include "bus.h"

#define REDRIVE_TARGETS	8

struct target {
	uint32_t qid;
	struct shmbus_producer *p;
};

/* A producer for queue id @qid, opened on first use. */
static struct shmbus_producer *target_of(struct shmbus *bus,
					 struct target *t, unsigned *n,
					 uint32_t qid, int *err)
{
	const struct shmbus_queue *q = queue_at(&bus->arena, qid);
	char name[SHMBUS_NAME_MAX];
	uint32_t g;

	for (unsigned i = 0; i < *n; i++)
		if (t[i].qid == qid)
			return t[i].p;
	if (!q || *n == REDRIVE_TARGETS) {
		*err = q ? -E2BIG : -ENOENT;
		return NULL;
	}
	g = smp_load_acquire(&q->gen);		/* [QGEN] */
	memcpy(name, q->name, sizeof(name));
	name[sizeof(name) - 1] = '\0';
	smp_rmb();				/* [QDEL] then re-check */
	if (!SHMBUS_QGEN_LIVE(g) || READ_ONCE(q->gen) != g) {
		*err = -ENOENT;		/* the source queue is gone */
		return NULL;
	}
	t[*n].p = shmbus_producer__new(bus, name, NULL);
	if (!t[*n].p) {
		*err = -errno;
		return NULL;
	}
	t[*n].qid = qid;
	return t[(*n)++].p;
}

SHMBUS_API int shmbus__redrive(struct shmbus *bus, const char *dlq,
			       const char *to, unsigned max)
{
	struct target t[REDRIVE_TARGETS];
	struct shmbus_consumer *c;
	unsigned nt = 0;
	int moved = 0, err = 0;
	int to_qid = -1;

	if (!bus || !dlq)
		return -EINVAL;
	if (to) {
		to_qid = arena_find_queue(&bus->arena, to);
		if (to_qid < 0)
			return to_qid;
	}
	c = shmbus_consumer__new(bus, dlq, NULL);
	if (!c)
		return -errno;
	while (!max || (unsigned)moved < max) {
		SHMBUS_OPTS(shmbus_pub_opts, po);
		struct shmbus_producer *p;
		struct shmbus_msg m;

		err = shmbus_consumer__try_receive(c, &m);
		if (err == -EAGAIN || err == -ENOBUFS) {
			err = 0;
			break;
		}
		if (err)
			break;
		if (to_qid < 0 && !m.dl_src) {
			/* published to the DLQ directly: no source */
			shmbus_consumer__nack(c, &m, 0);
			err = -EDESTADDRREQ;
			break;
		}
		p = target_of(bus, t, &nt, to_qid >= 0 ? (uint32_t)to_qid
						       : m.dl_src - 1, &err);
		po.corr_id = m.corr_id;
		{
			/* the message's own attributes, not the dlq.* marks */
			struct shmbus_attr at[64];
			char keys[64][256];
			uint32_t it = 0, n = 0;
			const char *k;
			const void *v;
			size_t kl, vl;

			while (n < 64 && shmbus_msg__attr_next(&m, &it, &k, &kl,
							       &v, &vl) == 1) {
				if (kl >= 4 && !memcmp(k, "dlq.", 4))
					continue;
				memcpy(keys[n], k, kl);
				keys[n][kl] = '\0';
				at[n] = (struct shmbus_attr){ .key = keys[n],
							      .value = v,
							      .value_len = (uint32_t)vl };
				n++;
			}
			po.attrs = n ? at : NULL;
			po.nr_attrs = n;
			if (p)
				err = shmbus_producer__publish(p, m.data, m.len,
							       &po);
		}
		if (!p || err) {
			shmbus_consumer__nack(c, &m, 0);
			break;
		}
		shmbus_consumer__ack(c, &m);
		moved++;
	}
	shmbus_consumer__free(c);
	for (unsigned i = 0; i < nt; i++)
		shmbus_producer__free(t[i].p);
	return moved ? moved : err;
}
