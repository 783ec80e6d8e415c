/* The store helper: open (refusing a SQLite store others can read or
 * replace), per-area migrations, transactions, on the store API (db.h); the
 * SQLite calls themselves are db_sqlite.c's. */
#include "payguard/store.h"
#include "db_int.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
pg_store_fail(struct pg_store *st, int sqlite_rc, const char *what)
{
	return pgi_db_sqlite_fail(st ? st->db : NULL, sqlite_rc, what);
}

static int open_path(struct pg_store *st, const char *path, int mutex_flags);

int
pg_store_open(struct pg_store *st, const char *path)
{
	return open_path(st, path, SQLITE_OPEN_FULLMUTEX);
}

int
pg_store_open_flags(struct pg_store *st, const char *path, int mutex_flags)
{
	char db[4200];
	int rc;

	if (path && *path)
		return open_path(st, path, mutex_flags);
	rc = pg_store_default_url(db, sizeof(db));
	return rc < 0 ? rc : open_path(st, db, mutex_flags);
}

/*
 * The store holds keys (wrapped) and everything else payguard knows: refuse
 * one that group or others can read or write, or whose directory they can
 * write (they could swap the file, or plant its -wal or -shm beside it).
 * The data directory itself is held to 0700 by pg_data_dir() and the daemon;
 * this is the check for any path, including an explicit --db FILE.
 */
int
pgi_store_check_path(const char *path)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char tmp[4200], dir[4200], q[4200], bad[8400] = "", f[4300];
	struct stat sb;
	size_t o = 0;
	unsigned worst = 0;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s", path);
	snprintf(dir, sizeof(dir), "%s", dirname(tmp));
	if (stat(dir, &sb) < 0)
		return pg_error(PG_ESYS, "store", "unable to stat '%s': %s", dir, strerror(errno));
	if (sb.st_mode & 022) {
		if (pg_fs_shell_quote(q, sizeof(q), dir) < 0)
			q[0] = '\0';
		if (sb.st_uid == geteuid() && !(sb.st_mode & S_ISVTX))
			return pg_error(PG_EPERM, "store",
					"permissions %04o for '%s' (the store's directory) are too "
					"open; run: chmod go-w %s",
					(unsigned)(sb.st_mode & 07777), dir, q);
		return pg_error(PG_EPERM, "store",
				"'%s' (the store's directory, mode %04o) is writable by group or "
				"others; keep the store in a directory only you can write",
				dir, (unsigned)(sb.st_mode & 07777));
	}
	/* a new store is created 0600 here, whatever the umask; SQLite gives its
	 * -wal and -shm files the database file's mode */
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		snprintf(f, sizeof(f), "%s%s", path, sfx[i]);
		if (stat(f, &sb) < 0) {
			if (errno == ENOENT && i > 0)
				continue;
			return pg_error(PG_ESYS, "store", "unable to stat '%s': %s", f,
					strerror(errno));
		}
		if (!S_ISREG(sb.st_mode))
			return pg_error(PG_EINVAL, "store", "'%s' is not a regular file", f);
		if (!(sb.st_mode & 077) || pg_fs_shell_quote(q, sizeof(q), f) < 0)
			continue;
		if (!worst)
			worst = (unsigned)(sb.st_mode & 07777);
		if (o + strlen(q) + 2 < sizeof(bad))
			o += (size_t)snprintf(bad + o, sizeof(bad) - o, " %s", q);
	}
	if (worst)
		return pg_error(PG_EPERM, "store",
				"permissions %04o for '%s' are too open; run: chmod 600%s", worst,
				path, bad);
	return 0;
}

static int
open_path(struct pg_store *st, const char *path, int mutex_flags)
{
	void *handle = NULL;
	int rc;

	st->db = NULL;
	st->pdb = NULL;
	st->path = NULL;
	if (strncmp(path, "sqlite:", 7) == 0) /* the store API's spelling of a path */
		path += 7;
	/* a PostgreSQL store has no file here: its server guards its own */
	if (!pg_db_url_is_postgres(path)) {
		rc = pgi_store_check_path(path);
		if (rc < 0)
			return rc;
	}
	st->path = strdup(path);
	if (!st->path)
		return PG_ENOMEM;
	if (pg_db_url_is_postgres(path))
		rc = pg_db_open(&st->pdb, path);
	else
		rc = pgi_db_sqlite_open_store(&st->pdb, path, mutex_flags, &handle);
	/* areas not moved to the store API yet use the SQLite handle itself */
	st->db = handle;
	if (rc < 0)
		pg_store_close(st);
	return rc;
}

void
pg_store_close(struct pg_store *st)
{
	if (!st)
		return;
	/* the store API's connection owns the SQLite handle too */
	pg_db_free(st->pdb);
	st->pdb = NULL;
	st->db = NULL;
	free(st->path);
	st->path = NULL;
}

int
pg_store_exec(struct pg_store *st, const char *sql)
{
	return pg_db_exec(st->pdb, sql);
}

int
pg_store_begin(struct pg_store *st)
{
	return pg_db_begin(st->pdb); /* BEGIN IMMEDIATE on SQLite */
}

int
pg_store_commit(struct pg_store *st)
{
	return pg_db_commit(st->pdb);
}

int
pg_store_rollback(struct pg_store *st)
{
	return pg_db_rollback(st->pdb);
}

int
pg_store_version(struct pg_store *st, const char *area)
{
	return pg_db_version(st->pdb, area);
}

/* The area's steps as the store API's (one text for both engines). */
int
pg_store_migrate(struct pg_store *st, const char *area, const struct pg_migration *m, size_t n)
{
	struct pg_db_migration *dm = calloc(n ? n : 1, sizeof(*dm));
	int rc;

	if (!dm)
		return PG_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		dm[i].version = m[i].version;
		dm[i].sql = m[i].sql;
	}
	rc = pg_db_migrate(st->pdb, area, dm, n);
	free(dm);
	return rc;
}

int
pg_data_dir(char *out, size_t outlen)
{
	const char *d = getenv("PAYGUARD_DATA_DIR");
	const char *x = getenv("XDG_DATA_HOME");
	const char *h = getenv("HOME");
	int n;

	if (d && *d)
		n = snprintf(out, outlen, "%s", d);
	else if (x && *x)
		n = snprintf(out, outlen, "%s/payguard", x);
	else if (h && *h)
		n = snprintf(out, outlen, "%s/.local/share/payguard", h);
	else
		n = snprintf(out, outlen, "./payguard-data");
	if (n < 0 || (size_t)n >= outlen)
		return pg_error(PG_ETOOBIG, "store", "data directory path too long");
	return pg_data_dir_prepare(out);
}

int
pg_data_dir_prepare(const char *dir)
{
	int rc = pg_mkdir_p(dir, 0700);

	return rc < 0 ? rc : pg_fs_check_private(dir, 1);
}

int
pg_store_default_url(char *out, size_t outlen)
{
	const char *env = getenv("PAYGUARD_STORE");
	char dir[4096];
	int n, rc;

	if (env && *env) {
		n = snprintf(out, outlen, "%s", env);
		if (n < 0 || (size_t)n >= outlen)
			return pg_error(PG_ETOOBIG, "store", "PAYGUARD_STORE is too long");
		return 0;
	}
	rc = pg_data_dir(dir, sizeof(dir));
	if (rc < 0)
		return rc;
	n = snprintf(out, outlen, "%s/payguard.db", dir);
	if (n < 0 || (size_t)n >= outlen)
		return pg_error(PG_ETOOBIG, "store", "store path too long");
	return 0;
}

int
pg_store_open_default(struct pg_store *st, const char *path)
{
	return pg_store_open_flags(st, path, SQLITE_OPEN_FULLMUTEX);
}
