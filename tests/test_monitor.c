// SPDX-License-Identifier: MIT
/*
 * test_monitor.c - `shmbus monitor start` attaches to every file that
 * carries shmbus's probes, found in running processes' maps: a second
 * copy of libshmbus.so (a `shmbus pub` run with LD_LIBRARY_PATH on it)
 * and a program linked with libshmbus.a (build/testprogs/static-pub),
 * both running before the start, beside this program's own library,
 * named twice more through a symlink and a hard link (one attachment
 * each: the counts are exact). Processes of both files started after the
 * start are counted too. `monitor status` lists each file once, with its
 * device, inode and probes; `--lib` to a file without probes is an
 * error that names it. The map "names", dumped by bpftool, holds the
 * queues' names and the kind of event that named each, by its enum name.
 *
 * Needs root, BTF and bpftool: skips without them, fails under CI=true.
 * Only this program's processes are looked at (--pid), so that other
 * runs' libraries on the machine are left alone.
 */
#include <bpf/bpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "shmbus.h"
#include "shmbus_bpf.h"
#include "helpers.h"

#define BUS	"mon"

static char build[PATH_MAX / 2], cli[PATH_MAX], spub[PATH_MAX];
static char pin_dir[128], out[1 << 16], names_out[1 << 16];
static pid_t kids[8];
static int nkids;

/* A publisher of the lines written to *@in: `shmbus pub QUEUE` with
 * libshmbus from @libdir (LD_LIBRARY_PATH), or static-pub when @libdir is
 * NULL. */
static pid_t publisher(const char *libdir, const char *queue, int *in)
{
	int p[2];
	pid_t pid;

	/* close-on-exec: no other child (the monitor's holder) may keep
	 * the write end, or the publisher never sees the end of its input */
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		dup2(p[0], 0);
		if (!freopen("/dev/null", "w", stdout))
			_exit(126);
		if (!libdir)
			execl(spub, spub, BUS, queue, (char *)NULL);
		setenv("LD_LIBRARY_PATH", libdir, 1);
		execl(cli, cli, "--bus", BUS, "pub", queue, (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	*in = p[1];
	assert_true(nkids < 8);
	kids[nkids++] = pid;
	return pid;
}

/* @n lines into @in, which is closed; @pid then exits 0. */
static void publish_lines(pid_t pid, int in, int n)
{
	FILE *f = fdopen(in, "w");

	assert_non_null(f);
	for (int i = 0; i < n; i++)
		fprintf(f, "m%d\n", i);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(t_wait(pid, 20000), 0);
}

/* Wait (5 s at most) until @pid maps @path. */
static void wait_mapped(pid_t pid, const char *path)
{
	char maps[64], line[PATH_MAX + 128];

	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(maps, "r");
		bool found = false;

		assert_non_null(f);
		while (!found && fgets(line, sizeof(line), f))
			found = strstr(line, path) != NULL;
		fclose(f);
		if (found)
			return;
		usleep(10000);
	}
	fail_msg("pid %d never mapped %s", (int)pid, path);
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* The second copy: build/lib's libshmbus.so.X.Y.Z copied into @dir
 * (another inode), with its soname link; its path into @copy. */
static void copy_library(const char *dir, char *copy, size_t len)
{
	char real[PATH_MAX], link[PATH_MAX], *base;

	snprintf(link, sizeof(link), "%s/lib/libshmbus.so", build);
	assert_non_null(realpath(link, real));
	base = strrchr(real, '/') + 1;
	assert_true(strlen(dir) + strlen(base) + 2 <= len);
	assert_int_equal(mkdir(dir, 0755), 0);
	sprintf(copy, "%s/%s", dir, base);
	assert_int_equal(t_run("cp %s %s && ln -s %s %s/libshmbus.so.%d", real,
			     copy, base, dir, SHMBUS_VERSION_MAJOR), 0);
}

static uint64_t published(int fd, struct shmbus *bus, const char *queue)
{
	struct shmbus_queue_info qi;
	struct shmbus_qkey k = { .bus = shmbus__id(bus) };
	struct shmbus_qstats v;

	assert_int_equal(shmbus__queue_info(bus, queue, &qi), 0);
	k.qid = qi.id;
	if (bpf_map_lookup_elem(fd, &k, &v))
		return 0;
	return v.published;
}

static void test_every_copy(void **state)
{
	char lib2[PATH_MAX / 2], copy[PATH_MAX], hard[PATH_MAX / 2 + 16];
	char own[PATH_MAX], ownreal[PATH_MAX], want[PATH_MAX + 64], path[256];
	char none[128];
	uint64_t n_dyn, n_static, n_late, n_self;
	struct shmbus_producer *p;
	struct shmbus *bus;
	pid_t dyn, sta, dyn0, sta0;
	int in_dyn, in_sta, fd, rc;
	int64_t t0 = t_now_ns();

	(void)state;
	t_need_bpf();
	snprintf(pin_dir, sizeof(pin_dir), "/sys/fs/bpf/shmbus-test-mon-%d",
		 (int)getpid());
	bus = t_open_bus(BUS);
	for (const char *q[] = { "mon.dyn", "mon.static", "mon.late",
				 "mon.self", NULL }, **n = q; *n; n++)
		assert_int_equal(shmbus__queue_declare(bus, *n, NULL), 1);

	snprintf(lib2, sizeof(lib2), "%s/lib2", t_dir);
	copy_library(lib2, copy, sizeof(copy));
	snprintf(hard, sizeof(hard), "%s/hardlink.so", lib2);
	assert_int_equal(link(copy, hard), 0);
	dyn = publisher(lib2, "mon.dyn", &in_dyn);
	sta = publisher(NULL, "mon.static", &in_sta);
	wait_mapped(dyn, copy);
	wait_mapped(sta, spub);
	dyn0 = dyn;
	sta0 = sta;

	/* only our processes; the copy through a hard link too, and our own
	 * library through its symlink: one attachment each all the same */
	snprintf(own, sizeof(own), "%s/lib/libshmbus.so", build);
	rc = t_capture(out, sizeof(out), "%s monitor start --pin-dir %s --pid %d "
		     "--pid %d --pid %d --lib %s --lib %s 2>&1", cli, pin_dir,
		     (int)getpid(), (int)dyn, (int)sta, hard, own);
	print_message("%s", out);
	assert_int_equal(rc, 0);

	/* after the start: one declared, one declared and deleted */
	assert_int_equal(shmbus__queue_declare(bus, "mon.after", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "mon.gone", NULL), 1);
	assert_int_equal(shmbus__queue_delete(bus, "mon.gone"), 0);

	publish_lines(dyn, in_dyn, 100);
	publish_lines(sta, in_sta, 200);
	/* started after the attach, of both files */
	dyn = publisher(lib2, "mon.late", &in_dyn);
	publish_lines(dyn, in_dyn, 30);
	sta = publisher(NULL, "mon.late", &in_sta);
	publish_lines(sta, in_sta, 40);
	p = shmbus_producer__new(bus, "mon.self", NULL);
	assert_non_null(p);
	for (int i = 0; i < 10; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i),
							  NULL), 0);
	shmbus_producer__free(p);

	snprintf(path, sizeof(path), "%s/qstats", pin_dir);
	fd = bpf_obj_get(path);
	n_dyn = fd >= 0 ? published(fd, bus, "mon.dyn") : 0;
	n_static = fd >= 0 ? published(fd, bus, "mon.static") : 0;
	n_late = fd >= 0 ? published(fd, bus, "mon.late") : 0;
	n_self = fd >= 0 ? published(fd, bus, "mon.self") : 0;
	if (fd >= 0)
		close(fd);
	rc = t_capture(out, sizeof(out), "%s monitor status --pin-dir %s", cli,
		     pin_dir);
	print_message("%s", out);
	assert_int_equal(t_capture(names_out, sizeof(names_out),
				 "bpftool -j map dump pinned %s/names",
				 pin_dir), 0);
	/* stop before any check can fail and leave the probes attached */
	assert_int_equal(t_run("%s monitor stop --pin-dir %s >/dev/null", cli,
			     pin_dir), 0);
	assert_int_equal(rc, 0);
	assert_true(fd >= 0);

	print_message("published, as BPF counted: copy %llu, static %llu, "
		      "late %llu, own %llu\n", (unsigned long long)n_dyn,
		      (unsigned long long)n_static, (unsigned long long)n_late,
		      (unsigned long long)n_self);
	assert_int_equal(n_dyn, 100);
	assert_int_equal(n_static, 200);
	assert_int_equal(n_late, 70);
	assert_int_equal(n_self, 10);

	/* status: each file once, by its own path, with dev:ino and its
	 * probes; the other paths to them nowhere */
	assert_non_null(realpath(own, ownreal));
	for (const char *f[] = { copy, spub, ownreal, NULL }, **n = f; *n; n++) {
		struct stat st;

		assert_int_equal(stat(*n, &st), 0);
		snprintf(want, sizeof(want), "attached %s dev %u:%u ino %llu ",
			 *n, major(st.st_dev), minor(st.st_dev),
			 (unsigned long long)st.st_ino);
		if (count_of(out, want) != 1)
			fail_msg("status lists %s %d times, not once",
				 *n, count_of(out, want));
	}
	assert_null(strstr(out, hard));
	assert_null(strstr(out, "not attached"));
	/* found in the maps of the processes that ran before the start */
	snprintf(want, sizeof(want), "(mapped by pid %d)\n", (int)dyn0);
	assert_int_equal(count_of(out, want), 1);
	snprintf(want, sizeof(want), "(mapped by pid %d)\n", (int)sta0);
	assert_int_equal(count_of(out, want), 1);
	/* of the file's 16 (docs/probes.md), the 13 the monitor has programs for */
	assert_non_null(strstr(out, "13 probes (16 in the file"));
	assert_non_null(strstr(out, "programs:\n  publish "));
	snprintf(want, sizeof(want), "%s/names  map id ", pin_dir);
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "  " BUS "/mon.static\n"));

	/* names: bpftool prints them through the map's BTF, the kind by its
	 * enumerator's name */
	print_message("%.600s\n", names_out);
	for (const char *w[] = {
		"\"bus\":\"" BUS "\",\"queue\":\"mon.dyn\",\"kind\":\"SHMBUS_EVENT_SEEN\"",
		"\"bus\":\"" BUS "\",\"queue\":\"mon.after\",\"kind\":\"SHMBUS_EVENT_DECLARED\"",
		"\"bus\":\"" BUS "\",\"queue\":\"mon.gone\",\"kind\":\"SHMBUS_EVENT_DELETED\"",
		NULL }, **n = w; *n; n++)
		if (!strstr(names_out, *n))
			fail_msg("no %s in the names map", *n);

	/* --lib to a file without probes: said, with the file and why; the
	 * monitor starts with the others, and exits 1 */
	snprintf(none, sizeof(none), "%s/noprobes", t_dir);
	assert_int_equal(t_run("cp /bin/true %s", none), 0);
	rc = t_capture(out, sizeof(out), "%s monitor start --pin-dir %s --pid %d "
		     "--lib %s 2>&1", cli, pin_dir, (int)getpid(), none);
	assert_int_equal(t_run("%s monitor stop --pin-dir %s >/dev/null", cli,
			     pin_dir), 0);
	print_message("%s", out);
	assert_int_equal(rc, 1);
	snprintf(want, sizeof(want), "not attached: %s: no shmbus USDT probes",
		 none);
	assert_non_null(strstr(out, want));
	print_message("test_every_copy: %.1f s\n",
		      (t_now_ns() - t0) / 1e9);
	shmbus__close(bus);
}

/* Whatever a failed check left: the monitor (its probes stay attached
 * until stopped), the publishers. */
static int stop_all(void **state)
{
	(void)state;
	if (pin_dir[0])
		t_run("%s monitor stop --pin-dir %s >/dev/null", cli, pin_dir);
	for (int i = 0; i < nkids; i++)
		kill(kids[i], SIGKILL);
	return 0;
}

/* The build directory of this program: BUILD/tests/x -> BUILD. */
static void find_build(void)
{
	ssize_t n = readlink("/proc/self/exe", build, sizeof(build) - 1);

	if (n <= 0)
		abort();
	build[n] = '\0';
	*strrchr(build, '/') = '\0';
	*strrchr(build, '/') = '\0';
	snprintf(cli, sizeof(cli), "%s/bin/shmbus", build);
	snprintf(spub, sizeof(spub), "%s/testprogs/static-pub", build);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_every_copy, stop_all),
	};

	find_build();
	return T_RUN_WITH_DAEMON("monitor", tests);
}
