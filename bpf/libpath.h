/* SPDX-License-Identifier: MIT */
/*
 * libpath.h - the path of the libshmbus.so this process runs with (where
 * its USDT probes are). For the monitor and the probe tests.
 */
#ifndef SHMBUS_LIBPATH_H
#define SHMBUS_LIBPATH_H

#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int shmbus_libpath_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	char *out = data;

	(void)size;
	if (!strstr(info->dlpi_name, "libshmbus.so"))
		return 0;
	if (!realpath(info->dlpi_name, out))
		snprintf(out, PATH_MAX, "%s", info->dlpi_name);
	return 1;
}

/* Fills @out (PATH_MAX bytes); "" if the library is not loaded. */
static inline void shmbus_libpath(char *out)
{
	out[0] = '\0';
	dl_iterate_phdr(shmbus_libpath_cb, out);
}

#endif /* SHMBUS_LIBPATH_H */
