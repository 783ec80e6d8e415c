/*
 * Fuzzes the seed-4 request path behind the decoder: decode (binary dialect)
 * -> policy (merchant, cell TLV, estimate, window) -> response. Every request
 * that decodes must get a response that encodes. The engine runs on an
 * in-memory store with a few cells and terminals, recording nothing.
 */
#include "payguard/pos.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct pg_pos_engine *
engine(void)
{
	static struct pg_store st;
	static struct pg_pos_engine *e;
	struct pg_pos_policy pol;

	if (e)
		return e;
	if (pg_store_open(&st, ":memory:") < 0 || pg_pos_migrate(&st) < 0 ||
	    pg_store_exec(&st, "INSERT INTO pos_cells(radio,mcc,net,area,cell,lon,lat,range) VALUES"
			       "(2,262,1,1001,11001,13.4045,52.5205,500),"
			       "(2,262,1,1001,11002,13.41,52.523,800),"
			       "(2,262,1,1201,12001,13.405,52.97,1000),"
			       "(0,260,2,5001,77001,14.5528,53.4285,1000);"
			       "INSERT INTO pos_merchants VALUES('M00000000000001',52.52,13.405,50,"
			       "1000,262,'a'),('M00000000000002',-33.9,151.2,0,1,505,'b');"
			       "INSERT INTO pos_terminals VALUES('T0000001','M00000000000001'),"
			       "('T0000002','M00000000000002');") < 0)
		abort();
	pg_pos_policy_default(&pol);
	pol.alert_n = 2;
	if (pg_pos_engine_open(&e, &st, &pol) < 0)
		abort();
	pg_pos_engine_detach_store(e);
	return e;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pg_iso_msg req, resp;
	const struct pg_iso_dialect *d = pg_iso_dialect_builtin("binary");
	struct pg_pos_engine *e = engine();
	struct pg_pos_result res;
	struct pg_buf out = PG_BUF_INIT(PG_ISO_ARENA);

	if (size > PG_ISO_MAX_MSG || pg_iso_unpack(d, data, size, &req) < 0)
		return 0;
	if ((req.mti[1] == '1' || req.mti[1] == '2') && req.mti[2] == '0') {
		if (pg_pos_engine_check(e, &req, 1700000000000LL, &res) < 0)
			abort();
		if (pg_pos_engine_respond(e, &req, &res, &resp) < 0)
			abort();
	} else if (pg_pos_engine_respond(e, &req, NULL, &resp) < 0) {
		return 0; /* not a request: the server closes such connections */
	}
	if (pg_iso_pack(d, &resp, &out) < 0)
		abort();
	pg_buf_release(&out);
	return 0;
}
