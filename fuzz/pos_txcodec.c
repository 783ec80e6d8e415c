/*
 * Fuzzes the JetStream intake's record decoder (src/pos/txcodec.c, issue
 * 15): the sink decodes bytes it pulls from the stream. A record that
 * decodes must encode to exactly the same bytes, and its stable id must be
 * a header value (no control bytes).
 */
#include "pos/pos_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pos_record r;
	struct pg_buf b = PG_BUF_INIT(PG_POS_REC_MAX);
	char id[160];

	if (pgi_pos_rec_decode(data, size, &r) < 0)
		return 0;
	if (pgi_pos_rec_encode(&r, &b) < 0 || b.len != size || memcmp(b.data, data, size) != 0)
		abort();
	pg_buf_release(&b);
	pgi_pos_rec_id(&r, id, sizeof(id));
	for (const char *p = id; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			abort();
	return 0;
}
