// SPDX-License-Identifier: MIT
/*
 * consumer.c - receiving: zero-copy views and copies, single and batched,
 * non-blocking, spinning, and blocking on the seat's eventfd; plus the
 * epoll integration (fd + arm).
 *
 * A receive takes a ref from the ring with one cmpxchg (ring.h), marks the
 * chunk HELD by our slot and validates its header against the chunk size
 * before handing out a view: a peer that wrote garbage costs one -EBADMSG
 * (counted), never an access outside the chunk.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "epoch.h"
#include "pool.h"

#define DEFAULT_SPIN_NS		(50 * NSEC_PER_USEC)
#define SPIN_CLOCK_EVERY	64	/* ring checks between clock reads */

struct shmbus_consumer {
	struct attachment at;
	struct seat seat;
	int64_t spin_ns;
	bool stash_valid;		/* a message kept after -EMSGSIZE */
	struct shmbus_msg stash;
};

SHMBUS_API struct shmbus_consumer *
shmbus_consumer__new(struct shmbus *bus, const char *queue,
		     const struct shmbus_consumer_opts *opts)
{
	struct shmbus_consumer *c;
	int64_t spin;
	int err;

	if (!bus || !queue || !OPTS_VALID(opts, shmbus_consumer_opts) ||
	    OPTS_GET(opts, flags, 0)) {
		errno = EINVAL;
		return NULL;
	}
	spin = OPTS_GET(opts, spin_ns, 0);
	c = calloc(1, sizeof(*c));
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	c->spin_ns = spin == 0 ? DEFAULT_SPIN_NS : spin < 0 ? 0 : spin;
	err = attach(bus, queue, SHMBUS_KIND_CONSUMER, &c->at);
	if (err) {
		free(c);
		errno = -err;
		return NULL;
	}
	c->seat.word = &c->at.q->sleep_mask[c->at.seat / 64];
	c->seat.bit = 1ULL << (c->at.seat % 64);
	c->seat.fd = c->at.seat_fd;
	/* tokens a previous holder of this seat left behind */
	seat_drain(&c->seat);
	return c;
}

/*
 * Withdraw our sleep announcement, in an epoch section: if the queue was
 * deleted, its descriptor (and mask) may belong to another queue by now,
 * and the daemon cleared our bit anyway.
 */
static void disarm(struct shmbus_consumer *c)
{
	struct attachment *at = &c->at;

	if (!c->seat.armed)
		return;
	epoch_enter(&at->bus->arena, at->slot);
	if (likely(attachment_live(at)))
		seat_disarm(&c->seat);
	else
		c->seat.armed = false;
	epoch_exit(at->slot);
}

SHMBUS_API void shmbus_consumer__free(struct shmbus_consumer *c)
{
	if (!c)
		return;
	/* in a forked child the seat and the stash are the parent's */
	if (check_pid(c->at.bus) == 0) {
		disarm(c);
		if (c->stash_valid)
			shmbus_consumer__release(c, &c->stash);
	}
	detach(&c->at);
	free(c);
}

/*
 * Start moving a chunk we are about to claim while the claiming cmpxchg
 * takes the ring cell: the header with intent to write (we mark it HELD),
 * the first payload line to read.
 */
static inline void claim_hook(const void *ctx, uint32_t ref)
{
	struct shmbus_chunk *c = chunk_at(ctx, ref);

	if (c) {
		__builtin_prefetch(c, 1, 3);
		__builtin_prefetch(chunk_payload(c), 0, 3);
	}
}

/* Take one message. Inside an epoch section. */
static inline int take(struct attachment *at, struct shmbus_msg *msg)
{
	const struct arena *a = &at->bus->arena;
	struct shmbus_chunk *ch;
	uint32_t ref, len, al;
	uint64_t owner;
	int err;

	err = ring_dequeue_pf(&at->ring, &ref, claim_hook, a);
	if (err)
		return err;
	ch = chunk_at(a, ref);
	if (unlikely(!ch)) {
		slot_count(at->slot, SHMBUS_CTR_CORRUPT, 1);
		return -EBADMSG;
	}
	owner = chunk_set(ch, SHMBUS_CHUNK_HELD, at->slot_idx);
	/* read once, validate, and use only these copies */
	len = READ_ONCE(ch->len);
	al = READ_ONCE(ch->attr_len);
	/* 64-bit: a 32-bit ALIGN_UP of len ~ 4 GiB would wrap to 0 */
	if (unlikely(ALIGN_UP((uint64_t)len, 8) + al >
		     a->pool[SHMBUS_REF_POOL(ref)].payload_max)) {
		pool_free(a, at->slot, ref);
		slot_count(at->slot, SHMBUS_CTR_CORRUPT, 1);
		return -EBADMSG;
	}
	msg->data = chunk_payload(ch);
	msg->len = len;
	msg->flags = READ_ONCE(ch->flags);
	msg->id = READ_ONCE(ch->id);
	msg->ts_ns = READ_ONCE(ch->ts_pub);
	msg->corr_id = READ_ONCE(ch->corr_id);
	msg->__ref = ref;
	/* our slot, and the low bits of the chunk's generation: a stale
	 * view (already released, chunk since received again) is told
	 * apart from the current one on release */
	msg->__slot = at->slot_idx | (SHMBUS_OWNER_GEN(owner) << 16);
	slot_count(at->slot, SHMBUS_CTR_DELIVERED, 1);
	return 0;
}

static inline int try_take(struct shmbus_consumer *c, struct shmbus_msg *msg)
{
	struct attachment *at = &c->at;
	int err;

	epoch_enter(&at->bus->arena, at->slot);
	err = likely(attachment_live(at)) ? take(at, msg) : -EIDRM;
	epoch_exit(at->slot);
	return err;
}

/* Announce sleep and re-check. 1: a message is there; 0: armed. */
static int arm(struct shmbus_consumer *c)
{
	struct attachment *at = &c->at;
	int r;

	epoch_enter(&at->bus->arena, at->slot);
	r = likely(attachment_live(at)) ? seat_arm(&c->seat, &at->ring) : -EIDRM;
	epoch_exit(at->slot);
	return r;
}

SHMBUS_API int shmbus_consumer__receive_view(struct shmbus_consumer *c,
					     struct shmbus_msg *msg,
					     int64_t timeout_ns)
{
	int64_t deadline, spin_until, t;
	unsigned spins = 0;
	int err;

	if (!c || !msg)
		return -EINVAL;
	if (c->stash_valid) {
		*msg = c->stash;
		c->stash_valid = false;
		return 0;
	}
	err = try_take(c, msg);
	if (likely(err != -EAGAIN) || timeout_ns == 0)
		return err;

	t = now_ns();
	deadline = deadline_of(timeout_ns);
	spin_until = c->spin_ns >= INT64_MAX - t ? INT64_MAX : t + c->spin_ns;
	for (;;) {
		err = try_take(c, msg);
		if (err != -EAGAIN)
			return err;
		/* read the clock only every SPIN_CLOCK_EVERY empty checks */
		if (c->spin_ns && ++spins % SPIN_CLOCK_EVERY) {
			cpu_relax();
			continue;
		}
		t = now_ns();
		if (t >= deadline)
			return -ETIMEDOUT;
		if (t < spin_until) {
			cpu_relax();
			continue;
		}
		/* spin budget spent: announce, re-check, block */
		err = arm(c);
		if (err < 0)
			return err;
		if (err == 1)
			continue;
		slot_count(c->at.slot, SHMBUS_CTR_SLEEPS, 1);
		err = seat_sleep(&c->seat, deadline);
		disarm(c);
		if (err == -ETIMEDOUT) {
			/* one last look: it may have landed at the end */
			err = try_take(c, msg);
			return err == -EAGAIN ? -ETIMEDOUT : err;
		}
		if (err)
			return err;
		/* woken: spin again briefly before sleeping again */
		t = now_ns();
		spin_until = c->spin_ns >= INT64_MAX - t ? INT64_MAX
							 : t + c->spin_ns;
	}
}

SHMBUS_API int shmbus_consumer__try_receive(struct shmbus_consumer *c,
					    struct shmbus_msg *msg)
{
	return shmbus_consumer__receive_view(c, msg, 0);
}

SHMBUS_API void shmbus_consumer__release(struct shmbus_consumer *c,
					 struct shmbus_msg *msg)
{
	struct attachment *at;
	struct shmbus_chunk *ch;

	if (!c || !msg || !msg->data)
		return;
	at = &c->at;
	ch = chunk_at(&at->bus->arena, msg->__ref);
	if (!ch || (msg->__slot & 0xffff) != at->slot_idx)
		return;
	/* only a chunk we hold, in the generation we received: a second
	 * release is a no-op */
	{
		uint64_t o = READ_ONCE(ch->owner);

		if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_HELD ||
		    SHMBUS_OWNER_SLOT(o) != at->slot_idx ||
		    (SHMBUS_OWNER_GEN(o) & 0xffff) != msg->__slot >> 16)
			return;
	}
	pool_free(&at->bus->arena, at->slot, msg->__ref);
	msg->data = NULL;
}

SHMBUS_API ssize_t shmbus_consumer__receive(struct shmbus_consumer *c,
					    void *buf, size_t cap,
					    int64_t timeout_ns)
{
	struct shmbus_msg m;
	int err;

	if (!c || (!buf && cap))
		return -EINVAL;
	err = shmbus_consumer__receive_view(c, &m, timeout_ns);
	if (err)
		return err;
	if (m.len > cap) {
		c->stash = m;
		c->stash_valid = true;
		return -EMSGSIZE;
	}
	memcpy(buf, m.data, m.len);
	shmbus_consumer__release(c, &m);
	return m.len;
}

SHMBUS_API ssize_t shmbus_consumer__pending_len(struct shmbus_consumer *c)
{
	return c && c->stash_valid ? (ssize_t)c->stash.len : -ENOENT;
}

SHMBUS_API int shmbus_consumer__receive_batch(struct shmbus_consumer *c,
					      struct shmbus_msg *msgs,
					      unsigned n, int64_t timeout_ns)
{
	struct attachment *at;
	unsigned got;
	int err;

	if (!c || !msgs || !n)
		return -EINVAL;
	err = shmbus_consumer__receive_view(c, &msgs[0], timeout_ns);
	if (err)
		return err;
	at = &c->at;
	got = 1;
	epoch_enter(&at->bus->arena, at->slot);
	if (likely(attachment_live(at))) {
		while (got < n && take(at, &msgs[got]) == 0)
			got++;
	}
	epoch_exit(at->slot);
	return (int)got;
}

SHMBUS_API int shmbus_consumer__fd(const struct shmbus_consumer *c)
{
	return c ? c->seat.fd : -EINVAL;
}

SHMBUS_API int shmbus_consumer__arm(struct shmbus_consumer *c)
{
	if (!c)
		return -EINVAL;
	if (c->stash_valid)
		return 1;
	seat_drain(&c->seat);
	return arm(c);	/* seat_arm() notices a bit a producer took */
}
