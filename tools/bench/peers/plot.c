// SPDX-License-Identifier: MIT
/*
 * plot.c - the PNGs of a shmbus-bench-peers run, drawn by gnuplot in the
 * plots directory from data files written beside them (kept: they are
 * the plotted numbers):
 *   lat-SIZE-MODE.png   p50, p99 and p99.9 round trip of every row
 *                       (medians of the repetitions), log scale
 *   tput-MODE.png       one-way throughput of every row, both sizes
 *   cdf-SIZE-MODE.png   the distribution of the round trips of each
 *                       row's first repetition
 * The script is peers.gp; gnuplot runs in the directory, so that no path
 * has to be quoted for it.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "report.h"

static const char *const gp_head =
	"set terminal pngcairo size 960,480 font 'sans,9'\n"
	"set datafile missing '-'\n"
	"set grid ytics\n"
	"set key outside right top\n"
	/* ten rows, ten colours: each row's place in row_order[] */
	"set linetype 1 lc rgb '#1f77b4'\n"
	"set linetype 2 lc rgb '#ff7f0e'\n"
	"set linetype 3 lc rgb '#2ca02c'\n"
	"set linetype 4 lc rgb '#d62728'\n"
	"set linetype 5 lc rgb '#9467bd'\n"
	"set linetype 6 lc rgb '#8c564b'\n"
	"set linetype 7 lc rgb '#e377c2'\n"
	"set linetype 8 lc rgb '#7f7f7f'\n"
	"set linetype 9 lc rgb '#bcbd22'\n"
	"set linetype 10 lc rgb '#17becf'\n"
	"set linetype cycle 10\n";

static int mkdir_p(const char *dir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s", dir);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static FILE *open_in(const char *dir, const char *name)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		fprintf(stderr, "shmbus-bench-peers: %s: %s\n", path,
			strerror(errno));
	return f;
}

/* p50, p99, p99.9 of the rows measured at one size and mode */
static int plot_latency(FILE *gp, const char *dir, int si, enum mode m)
{
	char name[64];
	FILE *f;

	snprintf(name, sizeof(name), "lat-%zu-%s.dat", sizes[si],
		 mode_names[m]);
	f = open_in(dir, name);
	if (!f)
		return -EIO;
	fprintf(f, "# transport p50_us p99_us p99.9_us\n");
	for (unsigned i = 0; i < nr_rows; i++) {
		enum tp tp = row_order[i];
		struct rtt_stat s = cell_rtt(&cells[si][tp][m]);

		if (cells[si][tp][m].nrtt)
			fprintf(f, "\"%s\" %.3f %.3f %.3f\n", row_name(tp, m),
				s.p50, s.p99, s.p999);
	}
	if (fclose(f))
		return -EIO;
	fprintf(gp,
		"set output 'lat-%zu-%s.png'\n"
		"set title 'Round trip, %zu B, %s (median of the repetitions)'\n"
		"set ylabel 'us (log scale)'\n"
		"set logscale y\n"
		"set style data histograms\n"
		"set style histogram clustered gap 1\n"
		"set style fill solid 0.8 border -1\n"
		"set xtics rotate by -30 nomirror\n"
		"plot '%s' using 2:xtic(1) title 'p50', "
		"'' using 3 title 'p99', '' using 4 title 'p99.9'\n"
		"unset logscale y\n",
		sizes[si], mode_names[m], sizes[si],
		m == MODE_BUSY ? "busy-poll" : "blocking", name);
	return 0;
}

static int plot_tput(FILE *gp, const char *dir, enum mode m)
{
	char name[64];
	FILE *f;

	snprintf(name, sizeof(name), "tput-%s.dat", mode_names[m]);
	f = open_in(dir, name);
	if (!f)
		return -EIO;
	fprintf(f, "# transport kmsg_s_64 kmsg_s_4096\n");
	for (unsigned i = 0; i < nr_rows; i++) {
		enum tp tp = row_order[i];
		const struct cell *a = &cells[0][tp][m], *b = &cells[1][tp][m];

		if (!a->ntput && !b->ntput)
			continue;
		fprintf(f, "\"%s\"", row_name(tp, m));
		for (int si = 0; si < NR_SIZES; si++) {
			const struct cell *c = &cells[si][tp][m];

			if (c->ntput)
				fprintf(f, " %.3f", cell_tput(c) / 1000);
			else
				fprintf(f, " -");
		}
		fprintf(f, "\n");
	}
	if (fclose(f))
		return -EIO;
	fprintf(gp,
		"set output 'tput-%s.png'\n"
		"set title 'One-way throughput, %s (median of the repetitions)'\n"
		"set ylabel 'thousand messages/s (log scale)'\n"
		"set logscale y\n"
		"set style data histograms\n"
		"set style histogram clustered gap 1\n"
		"set style fill solid 0.8 border -1\n"
		"set xtics rotate by -30 nomirror\n"
		"plot '%s' using %d:xtic(1) title '%s'%s\n"
		"unset logscale y\n",
		mode_names[m], m == MODE_BUSY ? "busy-poll" : "blocking",
		name, cfg.size_on[0] ? 2 : 3, cfg.size_on[0] ? "64 B" : "4096 B",
		cfg.size_on[0] && cfg.size_on[1] ?
			", '' using 3 title '4096 B'" : "");
	return 0;
}

static int plot_cdf(FILE *gp, const char *dir, int si, enum mode m)
{
	char name[64];
	unsigned idx = 0;
	FILE *f;

	snprintf(name, sizeof(name), "cdf-%zu-%s.dat", sizes[si],
		 mode_names[m]);
	f = open_in(dir, name);
	if (!f)
		return -EIO;
	fprintf(gp,
		"set output 'cdf-%zu-%s.png'\n"
		"set title 'Round trips, %zu B, %s (first repetition)'\n"
		"set xlabel 'us (log scale)'\n"
		"set ylabel 'fraction of round trips'\n"
		"set logscale x\n"
		"set xtics norotate\n"
		"set yrange [0:1]\n"
		"plot",
		sizes[si], mode_names[m], sizes[si],
		m == MODE_BUSY ? "busy-poll" : "blocking");
	for (unsigned i = 0; i < nr_rows; i++) {
		enum tp tp = row_order[i];

		if (!cdf_have[si][tp][m])
			continue;
		/* one block per row, gnuplot's "index" */
		fprintf(f, "# %s\n", row_name(tp, m));
		for (unsigned k = 0; k < CDF_PTS; k++)
			fprintf(f, "%.3f %.4f\n", cdf_us[si][tp][m][k],
				(double)k / (CDF_PTS - 1));
		fprintf(f, "\n\n");
		/* shmbus solid, the others dashed */
		fprintf(gp, "%s '%s' index %u using 1:2 with lines lt %u "
			"lw 2 dt %d title '%s'", idx ? "," : "", name, idx,
			i + 1, is_peer(tp) || tp == TP_RAW ? 2 : 1,
			row_name(tp, m));
		idx++;
	}
	fprintf(gp, "\nunset logscale x\nunset xlabel\nset yrange [*:*]\n");
	return fclose(f) ? -EIO : 0;
}

static int run_gnuplot(const char *dir)
{
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		if (chdir(dir) < 0)
			_exit(126);
		execlp("gnuplot", "gnuplot", "peers.gp", (char *)NULL);
		fprintf(stderr, "exec gnuplot: %s\n", strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && !WEXITSTATUS(st) ? 0 : -EIO;
}

int peers_plot(const char *dir)
{
	int err = mkdir_p(dir);
	FILE *gp;

	if (err) {
		fprintf(stderr, "shmbus-bench-peers: mkdir %s: %s\n", dir,
			strerror(-err));
		return err;
	}
	gp = open_in(dir, "peers.gp");
	if (!gp)
		return -EIO;
	fputs(gp_head, gp);
	for (int m = 0; m < NR_MODES && !err; m++) {
		if (!cfg.mode_on[m])
			continue;
		for (int si = 0; si < NR_SIZES && !err; si++) {
			if (!cfg.size_on[si])
				continue;
			err = plot_latency(gp, dir, si, (enum mode)m);
			if (!err)
				err = plot_cdf(gp, dir, si, (enum mode)m);
		}
		if (!err)
			err = plot_tput(gp, dir, (enum mode)m);
	}
	if (fclose(gp) && !err)
		err = -EIO;
	if (!err)
		err = run_gnuplot(dir);
	if (err)
		fprintf(stderr, "shmbus-bench-peers: plots in %s failed\n",
			dir);
	else
		fprintf(stderr, "shmbus-bench-peers: plots in %s\n", dir);
	return err;
}
