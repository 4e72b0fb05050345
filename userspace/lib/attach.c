// SPDX-License-Identifier: MIT
/*
 * attach.c - attaching producers and consumers: a participant slot bound
 * to a queue, asked of the daemon and checked against the arena, with the
 * queue's seat eventfds; and giving the slot back.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "pool.h"

/*
 * DETACH @req. If the daemon is gone (or died before it answered), the
 * next daemon gets it once the watcher has rejoined: the slot is ours
 * again then, and would otherwise stay ours until the handle closes.
 * A connection swapped in since the call failed takes it at once.
 */
static void detach_call(struct shmbus *bus, const struct sbc_detach *req)
{
	uint32_t gen;
	int err;

	do {
		gen = READ_ONCE(bus->conn.gen);
		err = client_call(&bus->conn, SBC_DETACH, req, sizeof(*req),
				  NULL, 0, NULL, NULL);
	} while ((err == -ENOTCONN || err == -ECONNRESET) &&
		 !rejoin_owe_detach(bus, req, gen));
}

int attach(struct shmbus *bus, const char *name, uint32_t role,
	   struct attachment *at)
{
	struct sbc_attach req;
	int err;

	memset(at, 0, sizeof(*at));
	at->seat_fd = -1;
	if (bus->rdonly)
		return -EPERM;
	if ((err = queue_request(bus, &req, sizeof(req), name)))
		return err;
	req.role = role;
	return attach_call(bus, SBC_ATTACH, &req, sizeof(req), role, name, at);
}

int attach_call(struct shmbus *bus, unsigned type, const void *rq,
		size_t rqlen, uint32_t role, const char *name,
		struct attachment *at)
{
	const struct arena *a = &bus->arena;
	struct sbc_attach_reply rep;
	struct sbc_detach dreq;
	int fds[SBC_MAX_FDS];
	unsigned nfds = SBC_MAX_FDS;
	struct shmbus_slot *s;
	int err;

	memset(at, 0, sizeof(*at));
	at->seat_fd = -1;
	/* not CALL_RETRY: a slot the dead daemon gave us unanswered is ours
	 * again after the rejoin, and a second ATTACH would take another */
	err = client_call_flags(&bus->conn, CALL_WAIT, type, rq, rqlen, &rep,
				sizeof(rep), fds, &nfds);
	if (err)
		return err;

	/* trust nothing: the reply and the arena must agree */
	err = -EPROTO;
	if (rep.qid >= a->max_queues || rep.slot >= a->max_slots ||
	    rep.nr_seats < 1 || rep.nr_seats > SHMBUS_MAX_SEATS ||
	    nfds > rep.nr_seats ||
	    (role == SHMBUS_ROLE_CONSUMER
	     ? rep.seat >= rep.nr_seats ||
	       !(rep.seat_map[rep.seat / 64] & (1ULL << (rep.seat % 64)))
	     : rep.seat != UINT32_MAX))
		goto fail;
	at->bus = bus;
	at->qid = rep.qid;
	at->qgen = rep.qgen;
	at->slot_idx = rep.slot;
	at->slot_gen = rep.slot_gen;
	at->seat = rep.seat;
	at->q = &a->queues[rep.qid];
	s = at->slot = &a->slots[rep.slot];
	err = -EIDRM;
	if (READ_ONCE(at->q->gen) != rep.qgen)
		goto fail;
	err = -EUCLEAN;
	/* [SLOT] the daemon's slot_fill() released ACTIVE after the
	 * identity fields checked here */
	if (smp_load_acquire(&s->state) != SHMBUS_SLOT_ACTIVE ||
	    READ_ONCE(s->gen) != rep.slot_gen || READ_ONCE(s->qid) != rep.qid ||
	    READ_ONCE(s->qgen) != rep.qgen ||
	    READ_ONCE(at->q->nr_seats) != rep.nr_seats)
		goto fail;
	err = arena_queue_ring(a, at->q, &at->ring);
	if (err)
		goto fail;
	at->nr_prio = READ_ONCE(at->q->nr_prio);
	if (at->nr_prio < 1 || at->nr_prio > SHMBUS_MAX_PRIO) {
		err = -EUCLEAN;
		goto fail;
	}
	for (uint32_t l = 1; l < at->nr_prio; l++) {
		err = arena_queue_ring_level(a, at->q, l, &at->prio[l - 1]);
		if (err)
			goto fail;
	}
	at->msg_size = READ_ONCE(at->q->msg_size);
	at->checksum = READ_ONCE(at->q->flags) & SHMBUS_QF_CHECKSUM;
	if (at->msg_size < 1 ||
	    at->msg_size > a->pool[a->nr_pools - 1].payload_max) {
		err = -EUCLEAN;
		goto fail;
	}
	if (role == SHMBUS_ROLE_CONSUMER) {
		unsigned k = seat_map_index(rep.seat_map, rep.seat);

		at->seat_fd = k < nfds ? fcntl(fds[k], F_DUPFD_CLOEXEC, 3) : -1;
		if (at->seat_fd < 0) {
			err = -errno;
			goto fail;
		}
	}
	err = wake_table_install(&bus->wakes, rep.qid, rep.qgen, fds, nfds,
				 rep.seat_map, rep.nr_seats, rep.seat_epoch);
	nfds = 0;	/* owned by the table now, even on error */
	if (err)
		goto fail;
	return 0;

fail:
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	if (at->seat_fd >= 0)
		close(at->seat_fd);
	at->seat_fd = -1;
	dreq.slot = rep.slot;
	dreq.slot_gen = rep.slot_gen;
	detach_call(bus, &dreq);
	if (err == -EUCLEAN)
		pr_warn("attach to '%s': the arena disagrees with the daemon",
			name);
	return err;
}

int seats_fetch(struct wake_table *t, uint32_t qid, uint32_t qgen)
{
	struct shmbus *bus = container_of(t, struct shmbus, wakes);
	struct sbc_seats req = { .qid = qid, .gen = qgen };
	struct sbc_seats_reply rep;
	int fds[SBC_MAX_FDS];
	unsigned nfds = SBC_MAX_FDS;
	int err;

	/* a forked child has no connection of its own */
	if ((err = check_pid(bus)))
		return err;
	err = client_call(&bus->conn, SBC_SEATS, &req, sizeof(req), &rep,
			  sizeof(rep), fds, &nfds);
	if (err)
		return err;
	return wake_table_install(t, qid, qgen, fds, nfds, rep.seat_map,
				  rep.nr_seats, rep.seat_epoch);
}

void detach(struct attachment *at)
{
	struct sbc_detach req = { .slot = at->slot_idx,
				  .slot_gen = at->slot_gen };

	if (!at->bus)
		return;
	if (at->seat_fd >= 0)
		close(at->seat_fd);	/* our own fd, also in a forked child */
	at->seat_fd = -1;
	/* A forked child freeing an inherited handle must not touch the
	 * slot: it is the parent's, still in use. */
	if (check_pid(at->bus) == 0) {
		/* our cached chunks go back now; the daemon would do it
		 * too, but it may be dead and we are not */
		pool_drain_slot(&at->bus->arena, at->slot);
		detach_call(at->bus, &req);
	}
	at->bus = NULL;
}
