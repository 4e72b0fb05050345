// SPDX-License-Identifier: MIT
/*
 * confirm.c - confirms of publishes to persistent queues. A producer of a
 * persistent queue publishes into the queue's intake; the daemon journals
 * what it finds there and, once the queue's sync policy is satisfied,
 * raises the producer slot's confirmed id (the slot's ids grow with every
 * publish, and the intake keeps one producer's messages in order, so one
 * word says "everything up to here"). A confirm under sync always costs
 * an fdatasync, tens of microseconds to milliseconds: after a short spin
 * the producer sleeps on a futex in its slot, which the daemon wakes when
 * it confirms (layout.h, slot line 21). Nothing of it is on the path of a
 * queue that is not persistent.
 */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "producer.h"

#define CONFIRM_SPIN_NS		(20 * NSEC_PER_USEC)
#define CONFIRM_NAP_NS		(100 * NSEC_PER_MSEC)

/* Sleep on slot @s's confirm futex (cseq, read as @seq before) up to
 * @deadline (0: no limit). */
static void confirm_sleep(struct shmbus_slot *s, uint32_t seq,
			  int64_t deadline)
{
	struct timespec ts, *tp = NULL;

	if (deadline) {
		int64_t left = deadline - now_ns();

		if (left <= 0)
			return;
		ts.tv_sec = left / NSEC_PER_SEC;
		ts.tv_nsec = left % NSEC_PER_SEC;
		tp = &ts;
	}
	/* a shared futex (the arena is a MAP_SHARED memfd); EAGAIN (cseq
	 * moved), EINTR and ETIMEDOUT all mean "look again" */
	syscall(SYS_futex, &s->cseq, FUTEX_WAIT, seq, tp, NULL, 0);
}

int confirm_wait(struct shmbus_producer *p, int64_t timeout_ns)
{
	struct shmbus_slot *s = p->at.slot;
	int64_t deadline = 0, spin_end = 0;
	uint32_t failed;

	/* the daemon journals what it was woken for: SHMBUS_PUB_MORE may
	 * owe it that */
	wake_owed(&p->at);
	for (unsigned round = 0;; round++) {
		uint32_t seq;

		/* [CONFIRM] acquire: pairs with the daemon's release store of
		 * confirmed (durable.c slot_confirm()): failed and
		 * failed_err, written before it, are seen with it */
		if (smp_load_acquire(&s->confirmed) >= p->confirm_target)
			break;
		if (!attachment_live(&p->at))
			return -EIDRM;
		if (timeout_ns == 0)
			return -ETIMEDOUT;
		if (!spin_end) {
			int64_t now = now_ns();

			spin_end = now + CONFIRM_SPIN_NS;
			if (timeout_ns > 0)
				deadline = now + timeout_ns;
		}
		if (deadline && now_ns() >= deadline)
			return -ETIMEDOUT;
		/* a sync takes tens of microseconds at least: a short spin
		 * for a confirm already on its way, then sleep until it */
		if (now_ns() < spin_end) {
			backoff_wait(round < 64 ? round : 64);
			continue;
		}
		seq = READ_ONCE(s->cseq);
		WRITE_ONCE(s->waiting, 1);
		/* [CWAKE] waiting, then confirmed: pairs with the daemon's
		 * bump of cseq, fence, read of waiting */
		smp_mb();
		if (smp_load_acquire(&s->confirmed) >= p->confirm_target)
			break;
		/* the daemon's death or restart wakes nobody: a bounded
		 * sleep, then a look again */
		confirm_sleep(s, seq, deadline ? MIN(deadline, now_ns() +
						     CONFIRM_NAP_NS)
					       : now_ns() + CONFIRM_NAP_NS);
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
	if (check_pid_fast(p->at.bus))
		return -ECHILD;
	return confirm_wait(p, timeout_ns);
}
