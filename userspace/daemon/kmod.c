// SPDX-License-Identifier: MIT
/*
 * kmod.c - the daemon's side of the kernel module (docs/kernel.md): it
 * watches each bus it creates, so that /dev/shmbus tells it at once, by
 * cookie, which connection's process died; without the module, socket
 * EOF says the same. $SHMBUS_KMOD=auto|off|required as for the library.
 *
 * What the kernel checks: that whoever ATTACHes or WATCHes holds the
 * bus's arena open for writing. What it leaves to us: a record only names
 * a cookie we handed to one connection (over its socket, nowhere else),
 * so a record for an unknown cookie is ignored, and a known one means
 * exactly what that connection's EOF would.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include "shmbus/kmod.h"
#include "shmbusd.h"

static int kfd = -1;

int kmod_init(void)
{
	const char *mode = getenv("SHMBUS_KMOD");
	struct shmbus_kmod_version v = { 0 };
	bool required = mode && !strcmp(mode, "required");

	if (mode && *mode && !required && strcmp(mode, "auto") &&
	    strcmp(mode, "off")) {
		log_err("SHMBUS_KMOD=%s: want auto, off or required", mode);
		return -EINVAL;
	}
	if (mode && !strcmp(mode, "off"))
		return 0;
	kfd = open(SHMBUS_KMOD_DEV, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (kfd >= 0 && (ioctl(kfd, SHMBUS_IOC_VERSION, &v) ||
			 v.abi != SHMBUS_KMOD_ABI)) {
		log_warn("%s: ABI %u, not %u: not used", SHMBUS_KMOD_DEV, v.abi,
			 SHMBUS_KMOD_ABI);
		close(kfd);
		kfd = -1;
		errno = EPROTO;
	}
	if (kfd < 0) {
		if (required) {
			log_err("SHMBUS_KMOD=required: %s: %s", SHMBUS_KMOD_DEV,
				strerror(errno));
			return -ENODEV;
		}
		log_debug("no %s: deaths by socket EOF", SHMBUS_KMOD_DEV);
		return 0;
	}
	log_info("kernel module: ABI %u; death notice and one-ioctl wake-ups",
		 v.abi);
	return kfd;
}

int kmod_fd(void)
{
	return kfd;
}

void kmod_watch(struct dbus *b)
{
	struct shmbus_kmod_watch w = { .arena_fd = b->fd,
				       .tag = (uintptr_t)b };

	if (kfd >= 0 && ioctl(kfd, SHMBUS_IOC_WATCH, &w))
		log_warn("bus '%s': kernel module watch: %s; deaths by "
			 "socket EOF", b->name, strerror(errno));
}

void kmod_unwatch(struct dbus *b)
{
	struct shmbus_kmod_watch w = { .arena_fd = b->fd };

	/* a module older than the call keeps its hold until we exit */
	if (kfd >= 0 && ioctl(kfd, SHMBUS_IOC_UNWATCH, &w) &&
	    errno != ENOTTY)
		log_warn("bus '%s': kernel module unwatch: %s", b->name,
			 strerror(errno));
}

uint64_t kmod_cookie(void)
{
	uint64_t c = 0;

	if (kfd < 0)
		return 0;	/* the library attaches nothing */
	while (!c)
		if (getrandom(&c, sizeof(c), 0) != sizeof(c))
			c = ((uint64_t)rand() << 32) ^ (uint64_t)rand();
	return c;
}

int kmod_read(uint64_t *cookies, uint32_t *pids, int max)
{
	struct shmbus_kmod_death d[32];
	ssize_t n;
	int got = 0;

	if (max > 32)
		max = 32;
	n = read(kfd, d, max * sizeof(d[0]));
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	for (size_t i = 0; i < n / sizeof(d[0]); i++) {
		if (d[i].flags & SHMBUS_KMOD_DEATH_LOST)
			log_warn("kernel module dropped death records; "
				 "socket EOF still covers them");
		cookies[got] = d[i].cookie;
		pids[got++] = d[i].pid;
	}
	return got;
}
