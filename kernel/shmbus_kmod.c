// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * shmbus_kmod.c - /dev/shmbus: one-syscall fan-out wake-ups and death
 * notice for shmbus (docs/kernel.md; the ABI is include/shmbus/kmod.h).
 *
 * A bus is known here by the inode of its arena (the memfd its members
 * map); every call proves membership by passing an arena fd open for
 * writing. Per bus:
 *
 *   - registrations: (qid, gen, seat) -> eventfd, in an RCU hash table
 *     that SHMBUS_IOC_WAKE walks without a lock (eventfd_signal() is safe
 *     in an RCU read section). Each belongs to the file that made it and
 *     goes with it.
 *   - death notice: files ATTACHed with a cookie; when one is released,
 *     a record goes to the bus's watcher file (the daemon), or waits in
 *     the bus while there is none (the daemon restarting).
 *
 * Control operations (register, attach, watch, release) take one global
 * mutex: they are rare, and one lock makes the lifetimes plain. A bus
 * lives while anything uses it (registrations, attached files, a watch),
 * holds a reference on its inode, and is freed after an RCU grace period.
 * Registrations are freed by call_rcu(); module exit waits for those with
 * rcu_barrier(). A counter of live objects must be back at zero at exit,
 * or the module WARNs (the VM test fails on any WARNING).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/hashtable.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/wait.h>

#include "shmbus/kmod.h"

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
#define shmbus_eventfd_signal(ctx)	eventfd_signal(ctx)
#else
#define shmbus_eventfd_signal(ctx)	eventfd_signal(ctx, 1)
#endif

#define SHMBUS_BUS_BITS	6
#define SHMBUS_REG_BITS	8
#define SHMBUS_MAX_WATCH	4096	/* buses one watcher file may watch */

struct shmbus_file;

struct shmbus_bus {
	struct hlist_node node;		/* shmbus_buses, by inode */
	struct inode *inode;		/* ihold()ed */
	unsigned int users;		/* regs + attached files + watch */
	atomic_t rr;			/* SEAT_ONE round robin */
	DECLARE_HASHTABLE(regs, SHMBUS_REG_BITS);	/* by (qid, gen) */
	struct shmbus_file *watcher;	/* or NULL */
	u64 tag;			/* the watcher's name for the bus */
	struct list_head pending;	/* struct shmbus_rec, no watcher */
	unsigned int npending;
	bool lost;			/* pending records were dropped */
	struct rcu_head rcu;
};

struct shmbus_reg {
	struct hlist_node bnode;	/* bus->regs, RCU */
	struct list_head fnode;		/* file->regs */
	struct shmbus_bus *bus;
	struct eventfd_ctx *ctx;
	u32 qid, gen, seat;
	struct rcu_head rcu;
};

struct shmbus_rec {
	struct list_head node;
	struct shmbus_bus *bus;		/* valid while queued: the watcher
					 * holds a user of it */
	struct shmbus_kmod_death d;
};

struct shmbus_watch {
	struct list_head node;		/* file->watches */
	struct shmbus_bus *bus;
};

struct shmbus_file {
	struct list_head regs;		/* struct shmbus_reg */
	unsigned int nregs;
	struct shmbus_bus *attached;	/* death notice, or NULL */
	u64 cookie;
	pid_t pid;
	struct list_head watches;	/* struct shmbus_watch */
	unsigned int nwatches;
	spinlock_t qlock;		/* records, for read/poll */
	struct list_head records;
	wait_queue_head_t wq;
};

static DEFINE_MUTEX(shmbus_lock);
static DEFINE_HASHTABLE(shmbus_buses, SHMBUS_BUS_BITS);	/* RCU readers */
static atomic_t shmbus_objects = ATOMIC_INIT(0);	/* leak check at exit */

static void *shmbus_alloc(size_t size)
{
	void *p = kzalloc(size, GFP_KERNEL_ACCOUNT);

	if (p)
		atomic_inc(&shmbus_objects);
	return p;
}

static void shmbus_free(void *p)
{
	if (p) {
		atomic_dec(&shmbus_objects);
		kfree(p);
	}
}

static u32 shmbus_key(u32 qid, u32 gen)
{
	return qid * 0x9e3779b1u ^ gen;
}

/*
 * The arena behind @fd: a regular file open for writing. The inode is
 * valid while *@f is held (fdput).
 */
static int shmbus_arena(int fd, struct fd *f, struct inode **inode)
{
	*f = fdget(fd);
	if (!f->file)
		return -EBADF;
	if (!(f->file->f_mode & FMODE_WRITE) ||
	    !S_ISREG(file_inode(f->file)->i_mode)) {
		fdput(*f);
		return -EACCES;
	}
	*inode = file_inode(f->file);
	return 0;
}

/* The result stays valid under RCU, or under shmbus_lock (buses are only
 * freed with it held). */
static struct shmbus_bus *shmbus_bus_find(struct inode *inode)
{
	struct shmbus_bus *b, *found = NULL;

	rcu_read_lock();
	hash_for_each_possible_rcu(shmbus_buses, b, node,
				   (unsigned long)inode) {
		if (b->inode == inode) {
			found = b;
			break;
		}
	}
	rcu_read_unlock();
	return found;
}

/* The bus of @inode with one more user, made if absent. Under shmbus_lock. */
static struct shmbus_bus *shmbus_bus_get(struct inode *inode)
{
	struct shmbus_bus *b = shmbus_bus_find(inode);

	lockdep_assert_held(&shmbus_lock);
	if (b) {
		b->users++;
		return b;
	}
	b = shmbus_alloc(sizeof(*b));
	if (!b)
		return NULL;
	ihold(inode);
	b->inode = inode;
	b->users = 1;
	hash_init(b->regs);
	INIT_LIST_HEAD(&b->pending);
	hash_add_rcu(shmbus_buses, &b->node, (unsigned long)inode);
	return b;
}

static void shmbus_bus_free_rcu(struct rcu_head *rcu)
{
	shmbus_free(container_of(rcu, struct shmbus_bus, rcu));
}

/* One user fewer; the last frees the bus and its waiting records. */
static void shmbus_bus_put(struct shmbus_bus *b)
{
	struct shmbus_rec *r, *tmp;

	lockdep_assert_held(&shmbus_lock);
	if (--b->users)
		return;
	WARN_ON(b->watcher || !hash_empty(b->regs));
	hash_del_rcu(&b->node);
	list_for_each_entry_safe(r, tmp, &b->pending, node) {
		list_del(&r->node);
		shmbus_free(r);
	}
	iput(b->inode);
	call_rcu(&b->rcu, shmbus_bus_free_rcu);
}

/* ---- registrations ------------------------------------------------ */

static void shmbus_reg_free_rcu(struct rcu_head *rcu)
{
	struct shmbus_reg *r = container_of(rcu, struct shmbus_reg, rcu);

	eventfd_ctx_put(r->ctx);
	shmbus_free(r);
}

/* Unhook @r from its bus and file; freed after a grace period. */
static void shmbus_reg_del(struct shmbus_file *sf, struct shmbus_reg *r)
{
	lockdep_assert_held(&shmbus_lock);
	hash_del_rcu(&r->bnode);
	list_del(&r->fnode);
	sf->nregs--;
	shmbus_bus_put(r->bus);
	call_rcu(&r->rcu, shmbus_reg_free_rcu);
}

static long shmbus_register(struct shmbus_file *sf, void __user *arg)
{
	struct shmbus_kmod_reg req;
	struct eventfd_ctx *ctx;
	struct inode *inode;
	struct shmbus_reg *r, *it;
	struct fd f;
	long err;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.seat >= SHMBUS_KMOD_SEAT_ONE)
		return -EINVAL;
	err = shmbus_arena(req.arena_fd, &f, &inode);
	if (err)
		return err;
	ctx = eventfd_ctx_fdget(req.event_fd);
	if (IS_ERR(ctx)) {
		fdput(f);
		return PTR_ERR(ctx) == -EBADF ? -EBADF : -EINVAL;
	}
	r = shmbus_alloc(sizeof(*r));
	if (!r) {
		err = -ENOMEM;
		goto out;
	}
	r->ctx = ctx;
	r->qid = req.qid;
	r->gen = req.gen;
	r->seat = req.seat;
	mutex_lock(&shmbus_lock);
	if (sf->nregs >= SHMBUS_KMOD_MAX_REGS) {
		err = -ENOSPC;
		goto unlock;
	}
	list_for_each_entry(it, &sf->regs, fnode) {
		if (it->bus->inode == inode && it->qid == r->qid &&
		    it->gen == r->gen && it->seat == r->seat &&
		    it->ctx == ctx) {
			err = -EEXIST;
			goto unlock;
		}
	}
	r->bus = shmbus_bus_get(inode);
	if (!r->bus) {
		err = -ENOMEM;
		goto unlock;
	}
	list_add(&r->fnode, &sf->regs);
	sf->nregs++;
	hash_add_rcu(r->bus->regs, &r->bnode, shmbus_key(r->qid, r->gen));
	mutex_unlock(&shmbus_lock);
	fdput(f);
	return 0;
unlock:
	mutex_unlock(&shmbus_lock);
	shmbus_free(r);
out:
	eventfd_ctx_put(ctx);
	fdput(f);
	return err;
}

static long shmbus_unregister(struct shmbus_file *sf, void __user *arg)
{
	struct shmbus_kmod_reg req;
	struct shmbus_reg *r, *tmp;
	struct inode *inode;
	struct fd f;
	long err;
	int n = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.seat >= SHMBUS_KMOD_SEAT_ONE)
		return -EINVAL;
	err = shmbus_arena(req.arena_fd, &f, &inode);
	if (err)
		return err;
	mutex_lock(&shmbus_lock);
	list_for_each_entry_safe(r, tmp, &sf->regs, fnode) {
		if (r->bus->inode == inode && r->qid == req.qid &&
		    r->gen == req.gen && r->seat == req.seat) {
			shmbus_reg_del(sf, r);
			n++;
		}
	}
	mutex_unlock(&shmbus_lock);
	fdput(f);
	return n ? 0 : -ENOENT;
}

/* Signal the registrations of one target. Under RCU. */
static u32 shmbus_wake_target(struct shmbus_bus *b,
			      struct shmbus_kmod_target *t)
{
	u32 key = shmbus_key(t->qid, t->gen), n = 0, pick = 0;
	struct shmbus_reg *r;

	if (t->seat == SHMBUS_KMOD_SEAT_ONE) {
		hash_for_each_possible_rcu(b->regs, r, bnode, key)
			n += r->qid == t->qid && r->gen == t->gen;
		if (!n)
			return 0;
		pick = (u32)atomic_inc_return(&b->rr) % n;
		n = 0;
	}
	hash_for_each_possible_rcu(b->regs, r, bnode, key) {
		if (r->qid != t->qid || r->gen != t->gen)
			continue;
		if (t->seat == SHMBUS_KMOD_SEAT_ONE) {
			if (pick--)
				continue;
			shmbus_eventfd_signal(r->ctx);
			return 1;
		}
		if (t->seat != SHMBUS_KMOD_SEAT_ALL && r->seat != t->seat)
			continue;
		shmbus_eventfd_signal(r->ctx);
		n++;
	}
	return n;
}

#define SHMBUS_WAKE_CHUNK	32

static long shmbus_wake(void __user *arg)
{
	struct shmbus_kmod_target t[SHMBUS_WAKE_CHUNK];
	struct shmbus_kmod_target __user *ut;
	struct shmbus_kmod_wake req;
	struct inode *inode;
	struct shmbus_bus *b;
	struct fd f;
	long err, total = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (!req.count || req.count > SHMBUS_KMOD_MAX_WAKE)
		return -EINVAL;
	ut = u64_to_user_ptr(req.targets);
	err = shmbus_arena(req.arena_fd, &f, &inode);
	if (err)
		return err;
	for (u32 done = 0; done < req.count; ) {
		u32 n = min_t(u32, req.count - done, SHMBUS_WAKE_CHUNK);

		if (copy_from_user(t, ut + done, n * sizeof(t[0]))) {
			err = -EFAULT;
			break;
		}
		rcu_read_lock();
		b = shmbus_bus_find(inode);
		for (u32 i = 0; i < n; i++) {
			t[i].woken = b ? shmbus_wake_target(b, &t[i]) : 0;
			total += t[i].woken;
		}
		rcu_read_unlock();
		if (copy_to_user(ut + done, t, n * sizeof(t[0]))) {
			err = -EFAULT;
			break;
		}
		done += n;
	}
	fdput(f);
	return err ? err : total;
}

/* ---- death notice ------------------------------------------------- */

static long shmbus_attach(struct shmbus_file *sf, void __user *arg)
{
	struct shmbus_kmod_attach req;
	struct inode *inode;
	struct fd f;
	long err = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags)
		return -EINVAL;
	err = shmbus_arena(req.arena_fd, &f, &inode);
	if (err)
		return err;
	mutex_lock(&shmbus_lock);
	if (sf->attached) {
		err = -EBUSY;
	} else {
		sf->attached = shmbus_bus_get(inode);
		if (!sf->attached)
			err = -ENOMEM;
		sf->cookie = req.cookie;
		sf->pid = task_tgid_vnr(current);
	}
	mutex_unlock(&shmbus_lock);
	fdput(f);
	return err;
}

/* Queue @r on watcher @w. */
static void shmbus_deliver(struct shmbus_file *w, struct shmbus_rec *r)
{
	spin_lock(&w->qlock);
	list_add_tail(&r->node, &w->records);
	spin_unlock(&w->qlock);
	wake_up_interruptible_poll(&w->wq, EPOLLIN | EPOLLRDNORM);
}

/* @sf, attached to its bus, is going: tell the watcher, or keep the
 * record for the next one. Under shmbus_lock. */
static void shmbus_notify_death(struct shmbus_file *sf)
{
	struct shmbus_bus *b = sf->attached;
	struct shmbus_rec *r;

	lockdep_assert_held(&shmbus_lock);
	r = b->npending < SHMBUS_KMOD_MAX_PENDING || b->watcher ?
	    shmbus_alloc(sizeof(*r)) : NULL;
	if (!r) {
		b->lost = true;
		return;
	}
	r->bus = b;
	r->d.cookie = sf->cookie;
	r->d.pid = sf->pid;
	if (b->lost) {
		r->d.flags |= SHMBUS_KMOD_DEATH_LOST;
		b->lost = false;
	}
	if (b->watcher) {
		r->d.tag = b->tag;
		shmbus_deliver(b->watcher, r);
	} else {
		list_add_tail(&r->node, &b->pending);
		b->npending++;
	}
}

/* A WATCH or UNWATCH request from @arg: its arena's file in @f (fdput()
 * it) and inode. */
static long shmbus_watch_req(void __user *arg, struct shmbus_kmod_watch *req,
			     struct fd *f, struct inode **inode)
{
	if (copy_from_user(req, arg, sizeof(*req)))
		return -EFAULT;
	if (req->flags)
		return -EINVAL;
	return shmbus_arena(req->arena_fd, f, inode);
}

static long shmbus_watch(struct shmbus_file *sf, void __user *arg)
{
	struct shmbus_kmod_watch req;
	struct shmbus_rec *r, *tmp;
	struct shmbus_watch *w;
	struct inode *inode;
	struct shmbus_bus *b;
	struct fd f;
	long err;

	err = shmbus_watch_req(arg, &req, &f, &inode);
	if (err)
		return err;
	w = shmbus_alloc(sizeof(*w));
	if (!w) {
		fdput(f);
		return -ENOMEM;
	}
	mutex_lock(&shmbus_lock);
	b = shmbus_bus_find(inode);
	if (b && b->watcher) {
		err = -EBUSY;
		goto unlock;
	}
	if (sf->nwatches >= SHMBUS_MAX_WATCH) {
		err = -ENOSPC;
		goto unlock;
	}
	b = shmbus_bus_get(inode);
	if (!b) {
		err = -ENOMEM;
		goto unlock;
	}
	b->watcher = sf;
	b->tag = req.tag;
	w->bus = b;
	list_add(&w->node, &sf->watches);
	sf->nwatches++;
	/* what happened while nobody watched */
	list_for_each_entry_safe(r, tmp, &b->pending, node) {
		list_del(&r->node);
		b->npending--;
		r->d.tag = b->tag;
		shmbus_deliver(sf, r);
	}
	mutex_unlock(&shmbus_lock);
	fdput(f);
	return 0;
unlock:
	mutex_unlock(&shmbus_lock);
	shmbus_free(w);
	fdput(f);
	return err;
}

static long shmbus_unwatch(struct shmbus_file *sf, void __user *arg)
{
	struct shmbus_kmod_watch req;
	struct shmbus_rec *r, *tmp;
	struct shmbus_watch *w, *found = NULL;
	struct inode *inode;
	struct shmbus_bus *b;
	LIST_HEAD(drop);
	struct fd f;
	long err;

	err = shmbus_watch_req(arg, &req, &f, &inode);
	if (err)
		return err;
	mutex_lock(&shmbus_lock);
	b = shmbus_bus_find(inode);
	if (b && b->watcher == sf)
		list_for_each_entry(w, &sf->watches, node)
			if (w->bus == b) {
				found = w;
				break;
			}
	if (!found) {
		err = -ENOENT;
		goto unlock;
	}
	/* the records read() has not taken yet name the bus: they go
	 * first, nobody will ask for them */
	spin_lock(&sf->qlock);
	list_for_each_entry_safe(r, tmp, &sf->records, node)
		if (r->bus == b)
			list_move(&r->node, &drop);
	spin_unlock(&sf->qlock);
	list_for_each_entry_safe(r, tmp, &drop, node) {
		list_del(&r->node);
		shmbus_free(r);
	}
	b->watcher = NULL;
	list_del(&found->node);
	sf->nwatches--;
	shmbus_bus_put(b);
	shmbus_free(found);
unlock:
	mutex_unlock(&shmbus_lock);
	fdput(f);
	return err;
}

/* The watcher @sf is going: its buses keep their unread records for the
 * next watcher. Under shmbus_lock. */
static void shmbus_unwatch_all(struct shmbus_file *sf)
{
	struct shmbus_watch *w, *wtmp;
	struct shmbus_rec *r, *tmp;
	LIST_HEAD(unread);

	lockdep_assert_held(&shmbus_lock);
	spin_lock(&sf->qlock);
	list_splice_init(&sf->records, &unread);
	spin_unlock(&sf->qlock);
	/* back to their buses, oldest first, ahead of anything newer */
	list_for_each_entry_safe_reverse(r, tmp, &unread, node) {
		list_del(&r->node);
		list_add(&r->node, &r->bus->pending);
		r->bus->npending++;
	}
	list_for_each_entry_safe(w, wtmp, &sf->watches, node) {
		w->bus->watcher = NULL;
		list_del(&w->node);
		shmbus_bus_put(w->bus);
		shmbus_free(w);
	}
	sf->nwatches = 0;
}

static ssize_t shmbus_read(struct file *file, char __user *buf, size_t count,
		       loff_t *ppos)
{
	struct shmbus_file *sf = file->private_data;
	const size_t rs = sizeof(struct shmbus_kmod_death);
	ssize_t done = 0;
	long err;

	if (count < rs)
		return -EINVAL;
	for (;;) {
		spin_lock(&sf->qlock);
		if (!list_empty(&sf->records))
			break;
		spin_unlock(&sf->qlock);
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		err = wait_event_interruptible(sf->wq,
				!list_empty_careful(&sf->records));
		if (err)
			return err;
	}
	while (count - done >= rs && !list_empty(&sf->records)) {
		struct shmbus_rec *r = list_first_entry(&sf->records,
						    struct shmbus_rec, node);
		struct shmbus_kmod_death d = r->d;

		list_del(&r->node);
		spin_unlock(&sf->qlock);
		if (copy_to_user(buf + done, &d, rs)) {
			/* put it back: nothing is lost to a bad buffer */
			spin_lock(&sf->qlock);
			list_add(&r->node, &sf->records);
			spin_unlock(&sf->qlock);
			return done ? done : -EFAULT;
		}
		shmbus_free(r);
		done += rs;
		spin_lock(&sf->qlock);
	}
	spin_unlock(&sf->qlock);
	return done;
}

static __poll_t shmbus_poll(struct file *file, poll_table *pt)
{
	struct shmbus_file *sf = file->private_data;

	poll_wait(file, &sf->wq, pt);
	return list_empty_careful(&sf->records) ? 0 : EPOLLIN | EPOLLRDNORM;
}

/* ---- the device --------------------------------------------------- */

static int shmbus_open(struct inode *inode, struct file *file)
{
	struct shmbus_file *sf = shmbus_alloc(sizeof(*sf));

	if (!sf)
		return -ENOMEM;
	INIT_LIST_HEAD(&sf->regs);
	INIT_LIST_HEAD(&sf->watches);
	INIT_LIST_HEAD(&sf->records);
	spin_lock_init(&sf->qlock);
	init_waitqueue_head(&sf->wq);
	file->private_data = sf;
	return stream_open(inode, file);
}

static int shmbus_release(struct inode *inode, struct file *file)
{
	struct shmbus_file *sf = file->private_data;
	struct shmbus_reg *r, *tmp;

	mutex_lock(&shmbus_lock);
	list_for_each_entry_safe(r, tmp, &sf->regs, fnode)
		shmbus_reg_del(sf, r);
	if (sf->attached) {
		shmbus_notify_death(sf);
		shmbus_bus_put(sf->attached);
		sf->attached = NULL;
	}
	shmbus_unwatch_all(sf);
	mutex_unlock(&shmbus_lock);
	shmbus_free(sf);
	return 0;
}

static long shmbus_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct shmbus_file *sf = file->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case SHMBUS_IOC_VERSION: {
		struct shmbus_kmod_version v = {
			.abi = SHMBUS_KMOD_ABI,
			.max_wake = SHMBUS_KMOD_MAX_WAKE,
			.max_regs = SHMBUS_KMOD_MAX_REGS,
		};

		return copy_to_user(uarg, &v, sizeof(v)) ? -EFAULT : 0;
	}
	case SHMBUS_IOC_REGISTER:
		return shmbus_register(sf, uarg);
	case SHMBUS_IOC_UNREGISTER:
		return shmbus_unregister(sf, uarg);
	case SHMBUS_IOC_WAKE:
		return shmbus_wake(uarg);
	case SHMBUS_IOC_ATTACH:
		return shmbus_attach(sf, uarg);
	case SHMBUS_IOC_WATCH:
		return shmbus_watch(sf, uarg);
	case SHMBUS_IOC_UNWATCH:
		return shmbus_unwatch(sf, uarg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations shmbus_fops = {
	.owner = THIS_MODULE,
	.open = shmbus_open,
	.release = shmbus_release,
	.read = shmbus_read,
	.poll = shmbus_poll,
	.unlocked_ioctl = shmbus_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};

static struct miscdevice shmbus_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "shmbus",
	.fops = &shmbus_fops,
	/* open grants nothing: every call needs a writable arena fd */
	.mode = 0666,
};

static int __init shmbus_init(void)
{
	int err = misc_register(&shmbus_dev);

	if (err)
		return err;
	pr_info("ABI %d, /dev/%s\n", SHMBUS_KMOD_ABI, shmbus_dev.name);
	return 0;
}

static void __exit shmbus_exit(void)
{
	misc_deregister(&shmbus_dev);
	rcu_barrier();		/* every call_rcu() of ours has run */
	WARN(atomic_read(&shmbus_objects), "%d objects leaked\n",
	     atomic_read(&shmbus_objects));
	WARN_ON(!hash_empty(shmbus_buses));
	pr_info("unloaded\n");
}

module_init(shmbus_init);
module_exit(shmbus_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("shmbus: fan-out wake-ups and death notice");
MODULE_AUTHOR("shmbus");
