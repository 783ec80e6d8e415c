/*
 * Fuzzes the cell-information TLV decoder (field 62, seed 4). A report that
 * decodes must survive encode -> decode unchanged.
 */
#include "payguard/pos.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* field by field: the struct has padding */
static int
same(const struct pg_cell_obs *a, const struct pg_cell_obs *b)
{
	return a->radio == b->radio && a->mcc == b->mcc && a->mnc == b->mnc && a->area == b->area &&
	       a->cid == b->cid && a->signal == b->signal && a->ta == b->ta;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pg_cell_report r, r2;
	struct pg_buf b = PG_BUF_INIT(1024);
	json_t *j;

	if (pg_celltlv_decode(data, size, &r) < 0)
		return 0;
	if (pg_celltlv_encode(&r, &b) < 0 || pg_celltlv_decode(b.data, b.len, &r2) < 0)
		abort();
	if (r.nneigh != r2.nneigh || !same(&r.serving, &r2.serving))
		abort();
	for (int i = 0; i < r.nneigh; i++)
		if (!same(&r.neigh[i], &r2.neigh[i]))
			abort();
	j = pg_celltlv_to_json(&r);
	if (!j || pg_celltlv_from_json(j, &r2) < 0)
		abort();
	json_decref(j);
	pg_buf_release(&b);
	return 0;
}
