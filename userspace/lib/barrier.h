/* SPDX-License-Identifier: MIT */
/*
 * barrier.h - the one place that spells memory ordering.
 *
 * Kernel-style names over GCC/C11 __atomic builtins. No other file in
 * shmbus uses volatile, __sync or raw __atomic calls on shared memory;
 * every use of these macros states what it pairs with.
 *
 * Shared memory here is mapped by several processes, so "the other side" of
 * a barrier is often another process; the C11 model still applies because
 * the same physical memory is accessed with the same instructions.
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
