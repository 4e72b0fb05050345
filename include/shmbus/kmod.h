/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * shmbus/kmod.h - the ABI of the optional kernel module (/dev/shmbus),
 * shared by the module (kernel/) and libshmbus/shmbusd. docs/kernel.md.
 *
 * Every call names its bus by passing a file descriptor of the bus's arena
 * (the memfd every participant maps), open for writing: holding it is the
 * proof of membership, and the arena's inode is the bus's identity in the
 * kernel. Keys below are per bus; nobody can register, wake, attach or
 * watch on a bus whose arena it does not hold.
 *
 * Versioning: SHMBUS_IOC_VERSION reports SHMBUS_KMOD_ABI. Structures only
 * grow at their end, with their size in the ioctl number; a changed
 * meaning bumps the ABI number and the library falls back to eventfds.
 */
#ifndef SHMBUS_KMOD_H
#define SHMBUS_KMOD_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define SHMBUS_KMOD_DEV		"/dev/shmbus"
#define SHMBUS_KMOD_ABI		1

/* Wake targets per SHMBUS_IOC_WAKE call; registrations per open file. */
#define SHMBUS_KMOD_MAX_WAKE	256
#define SHMBUS_KMOD_MAX_REGS	4096

/* struct shmbus_kmod_target.seat, besides a seat index: */
#define SHMBUS_KMOD_SEAT_ONE	0xfffffffeu	/* one registration of the
						 * key, round robin */
#define SHMBUS_KMOD_SEAT_ALL	0xffffffffu	/* every registration */

struct shmbus_kmod_version {
	__u32 abi;		/* out: SHMBUS_KMOD_ABI */
	__u32 max_wake;		/* out: SHMBUS_KMOD_MAX_WAKE */
	__u32 max_regs;		/* out: SHMBUS_KMOD_MAX_REGS */
	__u32 __rsvd;
};

/*
 * A wait key is (bus, qid, gen): one queue or subscription incarnation.
 * REGISTER puts @event_fd under (key, seat) until UNREGISTER or until this
 * file is released (the process exits); UNREGISTER removes this file's
 * registrations of (key, seat) (event_fd is ignored).
 */
struct shmbus_kmod_reg {
	__s32 arena_fd;
	__s32 event_fd;
	__u32 qid;
	__u32 gen;
	__u32 seat;		/* < SHMBUS_KMOD_SEAT_ONE */
	__u32 flags;		/* 0 */
};

/*
 * WAKE signals (adds 1 to) the eventfds registered under each target, in
 * one call: the seat's (a seat index), one of the key's (SEAT_ONE), or
 * all of the key's (SEAT_ALL). Per target, @woken comes back as the
 * number of eventfds signalled (0: nobody registered; the caller falls
 * back to its own eventfd write). Returns the total.
 */
struct shmbus_kmod_target {
	__u32 qid;
	__u32 gen;
	__u32 seat;
	__u32 woken;		/* out */
};

struct shmbus_kmod_wake {
	__s32 arena_fd;
	__u32 count;		/* 1..SHMBUS_KMOD_MAX_WAKE */
	__u64 targets;		/* pointer to count struct shmbus_kmod_target */
};

/*
 * Death notice. A participant ATTACHes its file to a bus with a cookie the
 * daemon gave it (once per file). The bus's watcher (the daemon: WATCH on
 * its own file, with a tag naming the bus for it) read()s one struct
 * shmbus_kmod_death per attached file released — the process exited,
 * kill -9 included, or closed the file. Records made while the bus has
 * no watcher (the daemon restarting) wait, up to SHMBUS_KMOD_MAX_PENDING
 * per bus, for the next WATCH of the same bus; beyond that they are
 * dropped and the next record says so (SHMBUS_KMOD_DEATH_LOST: the
 * watcher must find the dead by other means; shmbusd has socket EOF).
 * The watcher's file polls readable while records wait.
 */
#define SHMBUS_KMOD_MAX_PENDING	4096

struct shmbus_kmod_attach {
	__s32 arena_fd;
	__u32 flags;		/* 0 */
	__u64 cookie;
};

struct shmbus_kmod_watch {
	__s32 arena_fd;
	__u32 flags;		/* 0 */
	__u64 tag;		/* returned in this bus's records */
};

#define SHMBUS_KMOD_DEATH_LOST	0x1u	/* records were dropped before
					 * this one */

struct shmbus_kmod_death {
	__u64 tag;		/* the watcher's tag of the bus */
	__u64 cookie;		/* the participant's */
	__u32 pid;		/* thread group that attached */
	__u32 flags;		/* SHMBUS_KMOD_DEATH_* */
};

#define SHMBUS_IOC_MAGIC	0xb7
#define SHMBUS_IOC_VERSION	_IOR(SHMBUS_IOC_MAGIC, 0, struct shmbus_kmod_version)
#define SHMBUS_IOC_REGISTER	_IOW(SHMBUS_IOC_MAGIC, 1, struct shmbus_kmod_reg)
#define SHMBUS_IOC_UNREGISTER	_IOW(SHMBUS_IOC_MAGIC, 2, struct shmbus_kmod_reg)
#define SHMBUS_IOC_WAKE		_IOW(SHMBUS_IOC_MAGIC, 3, struct shmbus_kmod_wake)
#define SHMBUS_IOC_ATTACH	_IOW(SHMBUS_IOC_MAGIC, 4, struct shmbus_kmod_attach)
#define SHMBUS_IOC_WATCH	_IOW(SHMBUS_IOC_MAGIC, 5, struct shmbus_kmod_watch)
/* The watcher lets go of a bus (deleted): its unread records are dropped,
 * and so is the module's hold on the arena. tag is not read. -ENOENT if
 * this file does not watch it; -ENOTTY from a module older than it. */
#define SHMBUS_IOC_UNWATCH	_IOW(SHMBUS_IOC_MAGIC, 6, struct shmbus_kmod_watch)

#endif /* SHMBUS_KMOD_H */
