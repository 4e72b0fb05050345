// SPDX-License-Identifier: MIT
/*
 * targets.c - finding the files that carry shmbus's USDT probes
 * (targets.h): their ELF notes read with libelf, running processes'
 * mappings from /proc/PID/maps, the install paths; one entry per inode.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "targets.h"

#define NT_STAPSDT	3

bool target_has_probe(const struct target *t, const char *name)
{
	for (int i = 0; i < t->nprobes; i++)
		if (!strcmp(t->probes[i], name))
			return true;
	return false;
}

/* A stapsdt note's descriptor: three addresses (pc, base, semaphore) of
 * the file's class, then "provider\0name\0args\0". */
static void read_stapsdt(struct target *t, const char *desc, size_t len,
			 int elfclass)
{
	size_t addrs = elfclass == ELFCLASS32 ? 12 : 24;
	const char *prov = desc + addrs, *name, *end = desc + len;

	if (len <= addrs || !memchr(prov, '\0', end - prov))
		return;
	name = prov + strlen(prov) + 1;
	if (name >= end || !memchr(name, '\0', end - name) ||
	    strcmp(prov, "shmbus"))
		return;
	t->nsites++;
	if (target_has_probe(t, name) || t->nprobes == TARGET_PROBES_MAX ||
	    strlen(name) >= TARGET_PROBE_NAME)
		return;
	strcpy(t->probes[t->nprobes++], name);
}

static void read_build_id(struct target *t, const unsigned char *desc,
			  size_t len)
{
	for (size_t i = 0; i < len && i < 20; i++)
		sprintf(t->build_id + 2 * i, "%02x", desc[i]);
}

/* The shmbus probes and the build id in the notes of @elf. */
static void read_notes(struct target *t, Elf *elf)
{
	int elfclass = gelf_getclass(elf);
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *d;
		GElf_Nhdr nh;
		size_t off = 0, noff, doff;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
			continue;
		d = elf_getdata(scn, NULL);
		while (d && (off = gelf_getnote(d, off, &nh, &noff, &doff))) {
			const char *nm = (const char *)d->d_buf + noff;
			const char *desc = (const char *)d->d_buf + doff;

			if (nh.n_type == NT_STAPSDT && nh.n_namesz == 8 &&
			    !memcmp(nm, "stapsdt", 8))
				read_stapsdt(t, desc, nh.n_descsz, elfclass);
			else if (nh.n_type == NT_GNU_BUILD_ID &&
				 nh.n_namesz == 4 && !memcmp(nm, "GNU", 4))
				read_build_id(t, (const unsigned char *)desc,
					      nh.n_descsz);
		}
	}
}

/* Read @t->path's probes; ->why says what went wrong, if anything. */
static void read_elf(struct target *t)
{
	int fd = open(t->path, O_RDONLY | O_CLOEXEC);
	Elf *elf;

	if (fd < 0) {
		snprintf(t->why, sizeof(t->why), "cannot open: %s",
			 strerror(errno));
		return;
	}
	elf_version(EV_CURRENT);
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		snprintf(t->why, sizeof(t->why), "not an ELF file");
	} else {
		read_notes(t, elf);
		if (!t->nprobes)
			snprintf(t->why, sizeof(t->why), "no shmbus USDT probes "
				 "(no stapsdt note of provider shmbus)");
	}
	if (elf)
		elf_end(elf);
	close(fd);
}

static struct target *target_find(struct target_set *s, dev_t dev,
				  ino_t ino)
{
	for (int i = 0; i < s->n; i++)
		if (s->t[i].dev == dev && s->t[i].ino == ino)
			return &s->t[i];
	return NULL;
}

static bool seen_without_probes(const struct target_set *s, dev_t dev,
				 ino_t ino)
{
	for (int i = 0; i < s->nseen; i++)
		if (s->seen[i].dev == dev && s->seen[i].ino == ino)
			return true;
	return false;
}

static int remember_seen(struct target_set *s, dev_t dev, ino_t ino)
{
	if (s->nseen == s->capseen) {
		int cap = s->capseen ? 2 * s->capseen : 64;
		void *n = realloc(s->seen, cap * sizeof(*s->seen));

		if (!n)
			return -ENOMEM;
		s->seen = n;
		s->capseen = cap;
	}
	s->seen[s->nseen].dev = dev;
	s->seen[s->nseen++].ino = ino;
	return 0;
}

static struct target *target_new(struct target_set *s)
{
	if (s->n == s->cap) {
		int cap = s->cap ? 2 * s->cap : 8;
		struct target *n = realloc(s->t, cap * sizeof(*n));

		if (!n)
			return NULL;
		s->t = n;
		s->cap = cap;
	}
	memset(&s->t[s->n], 0, sizeof(s->t[0]));
	return &s->t[s->n];
}

int target_add(struct target_set *s, const char *path, const char *found,
	       bool asked)
{
	struct target *t, *old;
	struct stat st;
	char real[PATH_MAX];

	if (stat(path, &st) == 0) {
		old = target_find(s, st.st_dev, st.st_ino);
		if (old) {
			old->asked |= asked;
			return 0;
		}
		if (!asked && seen_without_probes(s, st.st_dev, st.st_ino))
			return 0;
	}
	t = target_new(s);
	if (!t)
		return -ENOMEM;
	/* the file's own name, not a symlink's (libshmbus.so.0) */
	snprintf(t->path, sizeof(t->path), "%s",
		 realpath(path, real) ? real : path);
	snprintf(t->found, sizeof(t->found), "%s", found);
	t->asked = asked;
	if (stat(path, &st)) {
		snprintf(t->why, sizeof(t->why), "%s", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		snprintf(t->why, sizeof(t->why), "not a regular file");
	} else {
		t->dev = st.st_dev;
		t->ino = st.st_ino;
		read_elf(t);
	}
	if (t->why[0] && !asked)
		return t->dev ? remember_seen(s, t->dev, t->ino) : 0;
	s->n++;
	return 0;
}

/* The files matching @pattern, each added as found at an install path. */
static int add_glob(struct target_set *s, const char *pattern)
{
	glob_t g;
	int err = 0;

	if (glob(pattern, 0, NULL, &g))
		return 0;	/* none there */
	for (size_t i = 0; !err && i < g.gl_pathc; i++)
		err = target_add(s, g.gl_pathv[i], "install path", false);
	globfree(&g);
	return err;
}

int targets_installed(struct target_set *s)
{
	static const char *const patterns[] = {
		"/usr/local/lib/libshmbus.so*",
		"/usr/lib/" SHMBUS_MULTIARCH "/libshmbus.so*",
		"/usr/lib/libshmbus.so*",
		"/usr/local/bin/shmbus-bridge",
		"/usr/bin/shmbus-bridge",
	};
	int err = 0;

	for (size_t i = 0; !err && i < sizeof(patterns) / sizeof(*patterns);
	     i++)
		err = add_glob(s, patterns[i]);
	return err;
}

/* ---- running processes ------------------------------------------- */

static int parse_maps_line(char *line, struct proc_map *pm)
{
	unsigned maj, min;
	unsigned long long ino;
	int pos = 0;
	char *nl;

	if (sscanf(line, "%lx-%lx %4s %*x %x:%x %llu %n", &pm->start,
		   &pm->end, pm->perms, &maj, &min, &ino, &pos) < 6 || !pos)
		return -EINVAL;
	pm->dev = makedev(maj, min);
	pm->ino = ino;
	nl = strchr(line + pos, '\n');
	if (nl)
		*nl = '\0';
	pm->path = line + pos;
	return 0;
}

static int scan_pid(pid_t pid, int (*cb)(const struct proc_map *, void *),
		    void *ctx)
{
	char path[64], line[PATH_MAX + 128];
	struct proc_map pm = { .pid = pid };
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;	/* gone, or not ours to read */
	while (!ret && fgets(line, sizeof(line), f))
		if (!parse_maps_line(line, &pm))
			ret = cb(&pm, ctx);
	fclose(f);
	return ret;
}

int proc_maps_scan(const pid_t *pids, int npids,
		   int (*cb)(const struct proc_map *pm, void *ctx), void *ctx)
{
	struct dirent *de;
	DIR *d;
	int ret = 0;

	for (int i = 0; i < npids && !ret; i++)
		ret = scan_pid(pids[i], cb, ctx);
	if (npids)
		return ret;
	d = opendir("/proc");
	if (!d)
		return -errno;
	while (!ret && (de = readdir(d)))
		if (isdigit((unsigned char)de->d_name[0]))
			ret = scan_pid(atoi(de->d_name), cb, ctx);
	closedir(d);
	return ret;
}

/*
 * An executable mapping's file, by the name the process knows it by: in
 * this mount namespace that path if it still leads to the mapped inode,
 * else through the process's root (a container), else nothing (a file
 * deleted or replaced since: a rebuilt library) and 0 returned.
 */
static int mapped_file(const struct proc_map *pm, char *out, size_t len)
{
	struct stat st;

	if (pm->path[0] != '/' || strchr(pm->path, '\t'))
		return 0;
	snprintf(out, len, "%s", pm->path);
	/* the inode alone: some filesystems (btrfs subvolumes) show
	 * another device in maps than stat() does */
	if (stat(out, &st) == 0 && st.st_ino == pm->ino)
		return 1;
	snprintf(out, len, "/proc/%d/root%s", (int)pm->pid, pm->path);
	return stat(out, &st) == 0 && st.st_ino == pm->ino;
}

static int add_mapping(const struct proc_map *pm, void *ctx)
{
	struct target_set *s = ctx;
	char path[PATH_MAX + 32], found[48];

	if (pm->perms[2] != 'x' || !mapped_file(pm, path, sizeof(path)))
		return 0;
	snprintf(found, sizeof(found), "mapped by pid %d", (int)pm->pid);
	return target_add(s, path, found, false);
}

int targets_running(struct target_set *s, const pid_t *pids, int npids)
{
	return proc_maps_scan(pids, npids, add_mapping, s);
}

void targets_free(struct target_set *s)
{
	free(s->t);
	free(s->seen);
	memset(s, 0, sizeof(*s));
}
