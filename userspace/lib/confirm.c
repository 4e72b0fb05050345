// SPDX-License-Identifier: MIT
/*
 * confirm.c - confirms of publishes to persistent queues. A producer of a
 * persistent queue publishes into the queue's intake; the daemon journals
 * what it finds there and, once the queue's sync policy is satisfied,
 * raises the producer slot's confirmed id (the slot's ids grow with every
 * publish, and the intake keeps one producer's messages in order, so one
 * word says "everything up to here"). Waiting is polling that backs off:
 * a confirm under sync always costs an fdatasync, tens of microseconds to
 * milliseconds, and the wait costs the publisher nothing on the path of
 * a queue that is not persistent.
 */
#include "producer.h"

int confirm_wait(struct shmbus_producer *p, int64_t timeout_ns)
{
	struct shmbus_slot *s = p->at.slot;
	int64_t deadline = 0;
	uint32_t failed;

	for (unsigned round = 0;; round++) {
		/* [CONFIRM] acquire: pairs with the daemon's release store of
		 * confirmed (durable.c slot_confirm()): failed and
		 * failed_err, written before it, are seen with it */
		if (smp_load_acquire(&s->confirmed) >= p->confirm_target)
			break;
		if (!attachment_live(&p->at))
			return -EIDRM;
		if (timeout_ns == 0)
			return -ETIMEDOUT;
		if (timeout_ns > 0) {
			int64_t now = now_ns();

			if (!deadline)
				deadline = now + timeout_ns;
			else if (now >= deadline)
				return -ETIMEDOUT;
		}
		/* a sync takes a while: skip most of the spinning */
		backoff_wait(round < 32 ? round : round + 2048);
	}
	failed = READ_ONCE(s->failed);
	if (failed != p->failed_seen) {
		int err = READ_ONCE(s->failed_err);

		p->failed_seen = failed;
		errmsg_set("the daemon could not journal a message of this "
			   "producer (it was dropped): %s", strerror(-err));
		return err < 0 && err > -4096 ? err : -EIO;
	}
	return 0;
}

SHMBUS_API int shmbus_producer__confirm_wait(struct shmbus_producer *p,
					     int64_t timeout_ns)
{
	if (!p)
		return -EINVAL;
	if (!p->durable || !p->confirm_target)
		return 0;
	return confirm_wait(p, timeout_ns);
}
