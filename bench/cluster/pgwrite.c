/*
 * PostgreSQL write-path benchmark (issue 14, cluster intake): drives the POS
 * engine's batch writer (pg_pos_batch_write, what the server's committer
 * thread calls) directly with batches of realistic pos_txn rows, without the
 * event loop or a load generator, and reports per batch size what the store
 * costs: CPU microseconds per row of the connection's PostgreSQL backend and
 * of the whole server (every process of the postmaster), of this process
 * (payguard's side: building and sending the batches, and making the test
 * rows), bytes of WAL per row, and wall time per batch. Run it with
 * bench/cluster/pgwrite.sh.
 *
 * Usage: pgwrite URL ROWS SIZE...   (one JSON line per size on stdout)
 * URL must be a fresh PostgreSQL database (it is migrated here); the day
 * partitions are created as the server does before its first batch.
 */
#include "../../src/pos/pos_internal.h"

#include "payguard/clock.h"
#include "payguard/db.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/pos.h"
#include "payguard/store.h"

#include <dirent.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* utime + stime of a process, in clock ticks; 0 when it is gone */
static long long
cpu_ticks(long pid)
{
	char path[64], buf[1024], *p;
	long long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the name may hold spaces */
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut, &st) != 2)
		return 0;
	return ut + st;
}

/* This process's CPU time (the writer: building and sending batches), microseconds. */
static double
self_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return 1e6 * (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The CPU ticks of the postmaster pm and of every process whose parent it is. */
static long long
server_ticks(long pm)
{
	long long t = cpu_ticks(pm);
	DIR *d = opendir("/proc");
	struct dirent *de;

	while (d && (de = readdir(d))) {
		char path[300], buf[512], *p;
		long ppid = 0;
		FILE *f;
		size_t n;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		if ((p = strrchr(buf, ')')) && sscanf(p + 2, "%*c %ld", &ppid) == 1 && ppid == pm)
			t += cpu_ticks(atol(de->d_name));
	}
	if (d)
		closedir(d);
	return t;
}

static int64_t
query_int(struct pg_db *db, const char *sql)
{
	struct pg_db_stmt *q;
	int64_t v = -1;

	if (pg_db_prepare(db, sql, &q) < 0)
		return -1;
	if (pg_db_step(q) == 1)
		v = pg_db_column_int64(q, 0);
	pg_db_reset(q);
	return v;
}

/* The WAL position in bytes. */
static int64_t
wal_pos(struct pg_db *db)
{
	return query_int(db, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint");
}

/* Row k: an in-place decision of one of 2,000 terminals, as the cluster bench sends. */
static void
make_row(struct pos_record *r, int64_t ts, uint64_t k)
{
	unsigned t = (unsigned)(k % 2000);

	memset(r, 0, sizeof(*r));
	r->ts = ts;
	snprintf(r->tid, sizeof(r->tid), "T%07u", t);
	snprintf(r->mid, sizeof(r->mid), "M%014u", t);
	memcpy(r->mti, "0200", 5);
	snprintf(r->stan, sizeof(r->stan), "%06u", (unsigned)((k / 2000) % 1000000));
	memcpy(r->f7, "1207170000", 11);
	r->res.decision = PG_DEC_IN_PLACE;
	r->res.reason = 0;
	r->res.distance_m = 120.5 + (double)(k % 97);
	r->res.excess_m = -1400.25;
	r->res.est.lat = 47.3 + (double)t * 1e-3;
	r->res.est.lon = 5.9 + (double)t * 1e-3;
	r->res.est.acc_m = 750;
	r->res.est.confidence = PG_CONF_HIGH;
	memcpy(r->res.rc, "00", 3);
	r->have_cell = 1;
	r->cell.radio = 2;
	r->cell.mcc = 262;
	r->cell.mnc = 1;
	r->cell.area = 1000 + t / 100;
	r->cell.cid = 100000 + 3 * t;
}

int
main(int argc, char **argv)
{
	struct pg_store st = {0};
	struct pg_pos_engine *e = NULL;
	struct pg_pos_batch *b = pg_pos_batch_new();
	long backend, pm;
	long hz = sysconf(_SC_CLK_TCK);
	int64_t rows, now = pg_wall_ms();
	uint64_t k = 0;
	int rc;

	if (argc < 4 || (rows = atoll(argv[2])) <= 0) {
		fprintf(stderr, "usage: pgwrite URL ROWS SIZE...\n");
		return 2;
	}
	if ((rc = pg_store_open(&st, argv[1])) < 0 || (rc = pg_pos_migrate(&st)) < 0 ||
	    (rc = pg_pos_partitions_ensure(&st, now, 1)) < 0 ||
	    (rc = pg_pos_engine_open_writer(&e, &st, NULL)) < 0) {
		fprintf(stderr, "pgwrite: %s\n", pg_last_error());
		return 1;
	}
	backend = (long)query_int(st.pdb, "SELECT pg_backend_pid()");
	pm = (long)query_int(st.pdb, "SELECT pid FROM pg_stat_activity WHERE backend_type ="
				     " 'checkpointer'");
	if (pm > 0) { /* the checkpointer's parent is the postmaster */
		char path[64], buf[512], *p;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%ld/stat", pm);
		pm = 0;
		if ((f = fopen(path, "r"))) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);

			buf[n] = 0;
			if ((p = strrchr(buf, ')')))
				sscanf(p + 2, "%*c %ld", &pm);
			fclose(f);
		}
	}
	for (int a = 3; a < argc; a++) {
		int64_t size = atoll(argv[a]), nb = (rows + size - 1) / size;
		long long c0, s0, c1, s1;
		int64_t w0, w1;
		double t0, t1, u0, u1;

		if (size <= 0)
			continue;
		/* one untimed batch first: statements prepared, partitions cached */
		for (int64_t i = 0; i < size; i++) {
			struct pos_record r;

			make_row(&r, now + (int64_t)k / 64, k);
			k++;
			pgi_pos_batch_push(b, &r);
		}
		rc = pg_pos_batch_write(e, b, NULL);
		pgi_pos_batch_clear(b);
		w0 = wal_pos(st.pdb);
		c0 = cpu_ticks(backend);
		s0 = server_ticks(pm);
		u0 = self_us();
		t0 = (double)pg_mono_ns() / 1e3;
		for (int64_t n = 0; rc >= 0 && n < nb; n++) {
			for (int64_t i = 0; i < size; i++) {
				struct pos_record r;

				make_row(&r, now + (int64_t)k / 64, k);
				k++;
				pgi_pos_batch_push(b, &r);
			}
			rc = pg_pos_batch_write(e, b, NULL);
			pgi_pos_batch_clear(b);
		}
		t1 = (double)pg_mono_ns() / 1e3;
		u1 = self_us();
		c1 = cpu_ticks(backend);
		s1 = server_ticks(pm);
		w1 = wal_pos(st.pdb);
		if (rc < 0) {
			fprintf(stderr, "pgwrite: batch of %lld: %s\n", (long long)size,
				pg_last_error());
			return 1;
		}
		printf("{\"batch\": %lld, \"rows\": %lld, \"backend_us_per_row\": %.2f,"
		       " \"server_us_per_row\": %.2f, \"writer_us_per_row\": %.2f,"
		       " \"wal_bytes_per_row\": %.1f,"
		       " \"ms_per_batch\": %.3f, \"rows_per_s\": %.0f}\n",
		       (long long)size, (long long)(nb * size),
		       1e6 * (double)(c1 - c0) / (double)hz / (double)(nb * size),
		       1e6 * (double)(s1 - s0) / (double)hz / (double)(nb * size),
		       (u1 - u0) / (double)(nb * size), (double)(w1 - w0) / (double)(nb * size),
		       (t1 - t0) / 1e3 / (double)nb, (double)(nb * size) / ((t1 - t0) / 1e6));
		fflush(stdout);
	}
	pg_pos_engine_free(e);
	pg_pos_batch_free(b);
	pg_store_close(&st);
	return 0;
}
