/*
 * The CSV reader of the pos imports (OpenCellID cells in cells.c, merchants
 * in merchants.c): one bounded line at a time, the header checked, bad rows
 * counted with their line numbers. Shared by both importers, so it lives
 * in neither.
 */
#include "pos_internal.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Reads lines of at most LINE_MAX_ bytes; longer lines are reported as bad rows. */
#define CSV_LINE_MAX 1024

void
pgi_pos_stats_bad(struct pg_import_stats *s, uint64_t line, const char *why)
{
	if (s->bad < 5) {
		s->first_bad_line[s->bad] = line;
		snprintf(s->first_bad_reason[s->bad], sizeof(s->first_bad_reason[0]), "%s", why);
	}
	s->bad++;
}

int
pgi_pos_csv_foreach(const char *path, const char *hdr, struct pg_import_stats *stats,
		    int (*row)(void *ctx, const char *line, size_t len), void *ctx)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char buf[CSV_LINE_MAX + 2];
	uint64_t lineno = 0;
	int rc = 0, skipping = 0;

	if (!f)
		return pg_error(PG_ENOENT, "csv", "cannot open '%s': %s", path, strerror(errno));
	while (fgets(buf, sizeof(buf), f)) {
		size_t n = strlen(buf);
		int complete = n > 0 && buf[n - 1] == '\n';

		if (skipping) { /* the tail of an over-long line */
			skipping = !complete;
			continue;
		}
		lineno++;
		if (!complete && !feof(f)) {
			pgi_pos_stats_bad(stats, lineno, "line too long");
			stats->rows++;
			skipping = 1;
			continue;
		}
		while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = 0;
		if (lineno == 1 && strncmp(buf, hdr, strcspn(hdr, ",")) == 0 &&
		    buf[strcspn(hdr, ",")] == ',') {
			if (strcmp(buf, hdr) != 0) {
				rc = pg_error(PG_EFORMAT, "csv", "'%s': header differs from '%s'",
					      path, hdr);
				goto out;
			}
			continue;
		}
		if (n == 0)
			continue;
		stats->rows++;
		if (memchr(buf, 0, n)) {
			pgi_pos_stats_bad(stats, lineno, "NUL byte");
			continue;
		}
		rc = row(ctx, buf, n);
		if (rc == PG_EFORMAT) {
			pgi_pos_stats_bad(stats, lineno, pg_last_error());
			rc = 0;
		} else if (rc < 0) {
			goto out;
		} else {
			stats->imported++;
		}
		if (stats->rows % 1000000 == 0)
			fprintf(stderr, "payguard: %llu rows read\n",
				(unsigned long long)stats->rows);
	}
	if (ferror(f))
		rc = pg_error(PG_EIO, "csv", "reading '%s': %s", path, strerror(errno));
out:
	if (f != stdin)
		fclose(f);
	return rc;
}
