/* SPDX-License-Identifier: MIT */
/*
 * barrier.h - the one place that spells memory ordering.
 *
 * Kernel-style names over GCC/C11 __atomic builtins. No other file in
 * shmbus uses volatile, __sync, raw __atomic calls or C11 atomics; every
 * acquire, release and fence states what it pairs with.
 *
 * Shared memory here is mapped by several processes, so "the other side" of
 * a barrier is often another process; the C11 model still applies because
 * the same physical memory is accessed with the same instructions.
 *
 * Pairings that cross files carry the same label at both ends, as DPDK's
 * ring labels its edges: grep for the label to find every end.
 *
 *   [RING]     a ring cell: the producer's cmpxchg publishes the chunk
 *              (ring.h ring_enqueue) / the consumer's acquire loads of
 *              the cells it claims see it (ring_claim, ring_peek_head;
 *              daemon topics.c history_copy); a claimer's release store
 *              gives the cell back (ring_consumed)
 *   [ROOM]     the same pair for producers waiting for room: the taker
 *              gives a cell back, load room_wait (the fence between is
 *              the producer's membarrier, or the taker's smp_mb); the
 *              producer's read of room_seq, xchg room_wait, membarrier,
 *              look at the ring, futex wait on room_seq (overflow.c,
 *              room.h)
 *   [WAKE]     sleep/wake Dekker pair: cell cmpxchg, smp_mb__after_atomic,
 *              load sleep_mask (wake.h wake_after_publish, fanout.c
 *              wake_sub, daemon deliver.c dq_wake); or peek the ring,
 *              smp_mb, load sleep_mask (the hand-overs: consumer.c
 *              disarm, daemon deliver.c queue_pass_wake, wake_stalled) /
 *              fetch_or sleep_mask, smp_mb__after_atomic, peek the ring
 *              (wake.c seat_arm)
 *   [SEATFD]   a seat's eventfd: the daemon stores the queue's seat_epoch
 *              before the attach reply, the consumer's fetch_or of its bit
 *              after it / a producer lacking a sleeper's fd issues smp_rmb
 *              and loads seat_epoch (lib wake.c seats_stale; daemon
 *              queue.c seat_fd_make); inside a process the wake set's fd
 *              is released after it is received and acquired before it is
 *              written (wake.c wake_table_install / claim_seats, wake_seat)
 *   [QGEN]     a queue descriptor: the daemon writes the fields, then
 *              releases gen (daemon queue.c dqueue_publish) / readers
 *              acquire gen, then read the fields (arena.c, control.c,
 *              dlq.c, reqrep.c)
 *   [QDEL]     a queue delete: the daemon releases the even gen (queue.c
 *              dqueue_delete) / readers smp_rmb() after the fields and
 *              re-check gen (the same readers)
 *   [SLOT]     a participant slot's state: the daemon releases ACTIVE
 *              after the identity fields, DEAD and FREE (daemon slot.c) /
 *              readers acquire state (attach.c, arena.c, control.c)
 *   [EPOCH]    a grace period's epoch: released by epoch_gp_start (epoch.c)
 *              / acquired on section entry (epoch.h epoch_enter)
 *   [QUIESCE]  leaving a section: released by epoch_exit (epoch.h) /
 *              acquired by epoch_gp_done (epoch.c)
 *   [MEMB]     membarrier(GLOBAL) in epoch_gp_start (epoch.c) stands in
 *              for the fence epoch_enter (epoch.h) does not issue
 *   [FANOUT]   a topic's fan-out array: released by the daemon (topics.c
 *              fanout_set) / acquired by publishers (fanout.c fanout_of)
 *   [LEASE]    a delivery entry: the consumer releases its word after ref
 *              and deadline (consumer.c) / the daemon acquires it in its
 *              lease scan (daemon lease.c leases_expire)
 *   [CACHE]    a slot's chunk cache: the count is released after the refs
 *              (pool.h pool_free, pool.c) / acquired when the daemon
 *              drains a dead owner's cache (pool.c pool_drain_slot)
 *   [FREELIST] a pool's free list: push's cmpxchg releases the magazine
 *              (pool.c pool_push_global) / pop acquires the head (mag_pop)
 *   [MAGIC]    an arena is complete: arena_format releases magic last /
 *              snapshot_validate acquires it first (arena.c)
 *   [DEDUP]    a dedup entry's state: the owner's cmpxchgs (PENDING after
 *              the key; seen after the message is in the queue) release
 *              (dedup.c dedup_claim, dedup_commit; daemon dedup.c
 *              dedup_set) / a publish acquires the state, then reads the
 *              key (dedup.c dedup_claim)
 *   [SEQ]      a topic message's owner word read around a refcnt
 *              increment, seqlock-style (daemon topics.c history_copy) /
 *              the generation a free and reuse give it (pool.h chunk_own)
 *
 * tools/scripts/check-atomics.sh fails the build on an atomic builtin, a
 * C11 atomic or a volatile anywhere else in user space.
 */
#ifndef SHMBUS_BARRIER_H
#define SHMBUS_BARRIER_H

#include <stdint.h>

#define barrier()		__asm__ __volatile__("" ::: "memory")

#define READ_ONCE(x)		__atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v)	__atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

#define smp_load_acquire(p)	__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define smp_store_release(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Full fence: orders earlier loads/stores against later loads/stores. */
#define smp_mb()		__atomic_thread_fence(__ATOMIC_SEQ_CST)
#define smp_rmb()		__atomic_thread_fence(__ATOMIC_ACQUIRE)
#define smp_wmb()		__atomic_thread_fence(__ATOMIC_RELEASE)

/*
 * After a value-returning atomic RMW (cmpxchg, fetch_add, fetch_or, ...)
 * that was issued with __ATOMIC_SEQ_CST: on x86 the locked instruction is
 * already a full barrier, so this is a compiler barrier there, exactly as
 * the kernel's smp_mb__after_atomic(). Elsewhere it is a real fence.
 */
#if defined(__x86_64__) || defined(__i386__)
#define smp_mb__after_atomic()	barrier()
#else
#define smp_mb__after_atomic()	smp_mb()
#endif

/* Atomic read-modify-write, all sequentially consistent (full barriers). */
#define atomic_cmpxchg(p, oldp, newv) \
	__atomic_compare_exchange_n((p), (oldp), (newv), 0, \
				    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)
#define atomic_fetch_add(p, v)	__atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define atomic_fetch_sub(p, v)	__atomic_fetch_sub((p), (v), __ATOMIC_SEQ_CST)
#define atomic_fetch_or(p, v)	__atomic_fetch_or((p), (v), __ATOMIC_SEQ_CST)
#define atomic_fetch_and(p, v)	__atomic_fetch_and((p), (v), __ATOMIC_SEQ_CST)
#define atomic_xchg(p, v)	__atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)

/*
 * Relaxed read-modify-write: atomic, ordering nothing else. For counters
 * nobody orders against (statistics, free counts that are hints, id
 * blocks handed out) and test bookkeeping.
 */
#define atomic_add_relaxed(p, v) \
	((void)__atomic_fetch_add((p), (v), __ATOMIC_RELAXED))
#define atomic_sub_relaxed(p, v) \
	((void)__atomic_fetch_sub((p), (v), __ATOMIC_RELAXED))
#define atomic_fetch_add_relaxed(p, v) \
	__atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define atomic_xchg_relaxed(p, v) \
	__atomic_exchange_n((p), (v), __ATOMIC_RELAXED)

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	barrier();
#endif
}

#endif /* SHMBUS_BARRIER_H */
