/*
 * The batch check (issue 16, item 4): every ISO 8583 request of a file's
 * bytes through the relocation engine, as `payguard pos check` runs it. The
 * messages are frames of a framing (seed 4's length-prefixed TCP frames) or,
 * in hex mode, one hex message per line. The CLI only prints; counting,
 * framing, rejects and group commits are here.
 */
#include "payguard/pos.h"
#include "payguard/error.h"
#include "payguard/clock.h"
#include "payguard/hex.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/store.h"

#include <stdlib.h>
#include <string.h>

/* A commit at least every this many queued records keeps a batch's memory bounded. */
#define BATCH_COMMIT_EVERY 4096

/* The next hex line at *pos into buf: its length (0: an empty line), or a
 * negative PG_E code for a line that is not a hex message. */
static int
next_hex(const uint8_t *data, size_t len, size_t *pos, uint8_t *buf)
{
	size_t e = *pos;
	char *line;
	int rc;

	while (e < len && data[e] != '\n')
		e++;
	if (e - *pos > 2 * PG_ISO_MAX_MSG) {
		*pos = e + 1;
		return pg_error(PG_ETOOBIG, "check", "line too long");
	}
	line = strndup((const char *)data + *pos, e - *pos);
	*pos = e + 1;
	rc = line ? pg_hex_decode(buf, PG_ISO_MAX_MSG, line) : PG_ENOMEM;
	free(line);
	if (rc < 0)
		return pg_error(rc, "check", "line is not a hex message (%s)", pg_strerror(rc));
	return rc;
}

/* Decides one message and counts it. */
static int
check_one(struct pg_pos_engine *e, const struct pg_pos_check_input *b, const uint8_t *msg,
	  size_t mlen, struct pg_iso_msg *m, struct pg_pos_check_stats *st)
{
	struct pg_pos_result res;
	int rc;

	st->messages++;
	rc = pg_iso_unpack(b->dialect, msg, mlen, m);
	if (rc < 0) {
		st->rejected++;
		if (b->each)
			b->each(b->arg, st->messages, NULL, NULL);
		return 0;
	}
	st->stage = PG_POS_CHECK_CHECK;
	rc = pg_pos_engine_check(e, m, pg_wall_ms(), &res);
	if (rc < 0)
		return rc;
	if (res.decision < 0 || res.decision > PG_DEC_FORMAT)
		return pg_error(PG_EINVAL, "check", "engine decision %d out of range",
				res.decision);
	st->decisions[res.decision]++;
	st->alerts += res.alert ? 1 : 0;
	if (pg_pos_engine_pending(e) >= BATCH_COMMIT_EVERY) {
		st->stage = PG_POS_CHECK_COMMIT;
		rc = pg_pos_engine_commit(e);
		if (rc < 0)
			return rc;
	}
	st->stage = 0;
	if (b->each)
		b->each(b->arg, st->messages, m, &res);
	return 0;
}

/* The next message of a batch: 1 with *msg and *mlen, 0 at the end, or a
 * negative PG_E code (a framing error: nothing after it can be found). A
 * hex line that is not a message is counted rejected here. */
static int
next_msg(const struct pg_pos_check_input *b, size_t *pos, uint8_t *buf, const uint8_t **msg,
	 size_t *mlen, struct pg_pos_check_stats *st)
{
	size_t hdr = 0;
	int rc;

	while (b->hex && *pos < b->len) {
		rc = next_hex(b->data, b->len, pos, buf);
		if (rc == 0)
			continue; /* an empty line */
		if (rc > 0) {
			*msg = buf;
			*mlen = (size_t)rc;
			return 1;
		}
		st->messages++;
		st->rejected++;
		if (b->each)
			b->each(b->arg, st->messages, NULL, NULL);
	}
	if (b->hex || *pos >= b->len)
		return 0;
	rc = pg_iso_frame_find(b->framing, b->data + *pos, b->len - *pos, PG_ISO_MAX_MSG, &hdr,
			       mlen);
	if (rc == 0)
		rc = pg_error(PG_ETRUNC, "check", "last frame truncated");
	if (rc < 0) {
		st->offset = *pos;
		return rc;
	}
	*msg = b->data + *pos + hdr;
	*pos += hdr + *mlen;
	return 1;
}

int
pg_pos_check_batch(struct pg_pos_engine *e, const struct pg_pos_check_input *b,
		   struct pg_pos_check_stats *st)
{
	struct pg_iso_msg *m = malloc(sizeof(*m));
	uint8_t *buf = malloc(PG_ISO_MAX_MSG);
	const uint8_t *msg;
	size_t pos = 0, mlen = 0;
	uint64_t t0 = pg_mono_ns();
	int rc;

	memset(st, 0, sizeof(*st));
	if (!m || !buf) {
		free(m);
		free(buf);
		return pg_error(PG_ENOMEM, "check", "out of memory");
	}
	while ((rc = next_msg(b, &pos, buf, &msg, &mlen, st)) > 0) {
		rc = check_one(e, b, msg, mlen, m, st);
		if (rc < 0)
			break;
	}
	if (rc < 0 && !st->stage)
		st->stage = PG_POS_CHECK_FRAME;
	if (rc == 0) {
		rc = pg_pos_engine_commit(e);
		if (rc < 0)
			st->stage = PG_POS_CHECK_COMMIT;
	}
	st->seconds = (double)(pg_mono_ns() - t0) / 1e9;
	free(m);
	free(buf);
	return rc;
}

int
pg_pos_check_file(const char *db, const struct pg_pos_policy *pol, const char *path, int dry,
		  struct pg_pos_check_input *b, struct pg_pos_check_stats *st)
{
	struct pg_store store = {0};
	struct pg_pos_engine *e = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	memset(st, 0, sizeof(*st));
	st->stage = PG_POS_CHECK_READ;
	rc = pg_read_file(path, 1u << 30, &data, &len);
	if (rc < 0)
		return rc;
	st->stage = PG_POS_CHECK_STORE;
	rc = pg_store_open_default(&store, db);
	if (rc == 0)
		rc = pg_pos_migrate(&store);
	if (rc < 0)
		goto out;
	st->stage = PG_POS_CHECK_ENGINE;
	rc = pg_pos_engine_open(&e, &store, pol);
	if (rc < 0)
		goto out;
	if (dry) /* windows in memory, nothing written */
		pg_pos_engine_detach_store(e);
	b->data = data;
	b->len = len;
	rc = pg_pos_check_batch(e, b, st);
	b->data = NULL;
	b->len = 0;
out:
	pg_pos_engine_free(e);
	pg_store_close(&store);
	free(data);
	return rc;
}
