/*
 * Fuzzes the ISO 8583 decoder (seed 4 terminal messages): byte 0 picks the
 * dialect (bits 5-7: 0-1 binary/ascii by bit 0, 2-7 iso93, iso93-binary, the
 * shipped jpos-iso87b and npm-iso8583, binary, ascii) and framing, the rest is
 * the wire. A message that decodes must
 * re-encode to the same bytes and decode to the same fields.
 */
#include "payguard/pos.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pg_iso_msg m, m2;
	static struct pg_iso_dialect jpos, npm;
	static int loaded;
	const struct pg_iso_dialect *d;
	static const struct pg_iso_dialect *const pick[6] = {NULL, NULL, &jpos, &npm, NULL, NULL};
	static const char *const names[6] = {"iso93", "iso93-binary", NULL,
					     NULL,    "binary",	      "ascii"};
	struct pg_iso_framing fr = {0};
	struct pg_buf out = PG_BUF_INIT(PG_ISO_ARENA);
	size_t hdr, body;

	if (size < 1)
		return 0;
	if (!loaded) {
		if (pg_iso_dialect_load(&jpos, "jpos-iso87b") ||
		    pg_iso_dialect_load(&npm, "npm-iso8583"))
			abort();
		loaded = 1;
	}
	if ((data[0] >> 5) < 2)
		d = pg_iso_dialect_builtin(data[0] & 1 ? "ascii" : "binary");
	else if (pick[(data[0] >> 5) - 2])
		d = pick[(data[0] >> 5) - 2];
	else
		d = pg_iso_dialect_builtin(names[(data[0] >> 5) - 2]);
	fr.kind = (uint8_t)(((data[0] >> 1) & 7) % 5);
	fr.tpdu = fr.kind != PG_FRAME_NONE && (data[0] & 0x10);
	data++;
	size--;
	if (pg_iso_frame_find(&fr, data, size, PG_ISO_MAX_MSG, &hdr, &body) != 1)
		return 0;
	if (pg_iso_unpack(d, data + hdr, body, &m) < 0)
		return 0;
	if (pg_iso_pack(d, &m, &out) != 0)
		abort();
	/* bytes differ only where the input had a secondary bitmap with no field in it */
	if (pg_iso_unpack(d, out.data, out.len, &m2) != 0)
		abort();
	for (int f = 2; f <= 128; f++) {
		size_t a, b;
		const uint8_t *va, *vb;

		if (pg_iso_has(&m, f) != pg_iso_has(&m2, f))
			abort();
		if (!pg_iso_has(&m, f))
			continue;
		va = pg_iso_get(&m, f, &a);
		vb = pg_iso_get(&m2, f, &b);
		if (a != b || memcmp(va, vb, a))
			abort();
	}
	{
		json_t *j = pg_pos_msg_to_json(d, &m, 62);

		json_decref(j);
	}
	pg_buf_release(&out);
	return 0;
}
