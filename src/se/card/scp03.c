/*
 * GlobalPlatform SCP03 (Card Specification v2.3 Amendment D) for both roles:
 * SP 800-108 AES-CMAC key derivation (4.1.5), mutual authentication (6.2.2,
 * 6.2.3), C-MAC / C-DECRYPTION (6.2.4, 6.2.6), R-MAC / R-ENCRYPTION (6.2.5,
 * 6.2.7), the sequence counter and pseudo-random card challenge, and the PUT
 * KEY key blocks of GP 2.3 11.8. All crypto is OpenSSL: AES-CMAC through the
 * core's adapter (include/payguard/cmac.h), AES-CBC through EVP.
 */
#include "payguard/scp03.h"

#include "payguard/apdu.h"
#include "payguard/cmac.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/mem.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

#define SUBSYS "scp03"

enum {
	ST_IDLE = 0,
	ST_HOST_IU, /* host: INITIALIZE UPDATE sent */
	ST_HOST_EA, /* host: EXTERNAL AUTHENTICATE sent */
	ST_CARD_IU, /* card: INITIALIZE UPDATE answered, EA must come next */
	ST_OPEN,    /* both: mutual authentication done */
};

/* Derivation constants, Amd D table 4-1. */
enum {
	DC_CARD_CRYPTOGRAM = 0x00,
	DC_HOST_CRYPTOGRAM = 0x01,
	DC_CARD_CHALLENGE = 0x02,
	DC_S_ENC = 0x04,
	DC_S_MAC = 0x06,
	DC_S_RMAC = 0x07,
};

#define INS_INIT_UPDATE 0x50
#define INS_EXT_AUTH	0x82
#define INS_PUT_KEY	0xD8

/* ---------------------------------------------------------------- crypto */

/* Fetched once: EVP_*_fetch per APDU would dominate the cost of a short command. */
static EVP_CIPHER *cbc_alg[3]; /* AES-128/192/256-CBC */
static pthread_once_t alg_once = PTHREAD_ONCE_INIT;

static void
alg_fetch(void)
{
	cbc_alg[0] = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
	cbc_alg[1] = EVP_CIPHER_fetch(NULL, "AES-192-CBC", NULL);
	cbc_alg[2] = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
}

static const char *
aes_cbc_name(size_t key_len)
{
	switch (key_len) {
	case 16:
		return "AES-128-CBC";
	case 24:
		return "AES-192-CBC";
	case 32:
		return "AES-256-CBC";
	}
	return NULL;
}

static int
key_len_ok(size_t n)
{
	return n == 16 || n == 24 || n == 32;
}

/* AES-CBC without padding (n a multiple of 16); iv NULL = zero ICV. In place is fine. */
static int
aes_cbc(const uint8_t *key, size_t key_len, const uint8_t *iv, const uint8_t *in, size_t n,
	uint8_t *out, int enc)
{
	static const uint8_t zero[16];
	EVP_CIPHER_CTX *ctx = NULL;
	const EVP_CIPHER *c;
	int l1 = 0, l2 = 0, rc = PG_ECRYPTO;

	if (n % 16 || n > 0x7FFFFFF0 || !aes_cbc_name(key_len))
		return pg_error(PG_EINVAL, SUBSYS, "AES-CBC over %zu bytes", n);
	if (n == 0)
		return 0;
	pthread_once(&alg_once, alg_fetch);
	c = cbc_alg[(key_len - 16) / 8];
	ctx = EVP_CIPHER_CTX_new();
	if (!c || !ctx || !EVP_CipherInit_ex2(ctx, c, key, iv ? iv : zero, enc, NULL))
		goto out;
	EVP_CIPHER_CTX_set_padding(ctx, 0);
	if (!EVP_CipherUpdate(ctx, out, &l1, in, (int)n) || !EVP_CipherFinal_ex(ctx, out + l1, &l2))
		goto out;
	if ((size_t)(l1 + l2) == n)
		rc = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	if (rc)
		pg_error(rc, SUBSYS, "AES-CBC failed");
	return rc;
}

/* One AES block: ECB == CBC with a zero ICV over a single block. */
static int
aes_block(const uint8_t *key, size_t key_len, const uint8_t in[16], uint8_t out[16])
{
	return aes_cbc(key, key_len, NULL, in, 16, out, 1);
}

int
pg_scp03_kdf(const uint8_t *key, size_t key_len, uint8_t constant, const uint8_t *ctx,
	     size_t ctx_len, uint8_t *out, size_t out_len)
{
	uint8_t label[16], block[16];
	uint16_t bits = (uint16_t)(out_len * 8);
	int rc = 0;

	if (!key_len_ok(key_len) || out_len == 0 || out_len > 64 || ctx_len > 64 ||
	    (ctx_len && !ctx))
		return pg_error(PG_EINVAL, SUBSYS, "bad KDF arguments");
	/* Label: 11 zero bytes, the derivation constant, the separation indicator 00. */
	memset(label, 0, 12);
	label[11] = constant;
	label[12] = 0x00;
	label[13] = (uint8_t)(bits >> 8);
	label[14] = (uint8_t)bits;
	for (size_t done = 0, i = 1; done < out_len; i++) {
		struct pg_cmac_part parts[2] = {{label, 16}, {ctx, ctx_len}};
		size_t take = out_len - done < 16 ? out_len - done : 16;

		label[15] = (uint8_t)i; /* counter "i", 1-based */
		rc = pg_aes_cmac_parts(key, key_len, parts, 2, block);
		if (rc)
			break;
		memcpy(out + done, block, take);
		done += take;
	}
	pg_memzero(block, sizeof(block));
	return rc;
}

int
pg_scp03_kcv(const uint8_t *key, size_t key_len, uint8_t kcv[3])
{
	uint8_t ones[16], enc[16];
	int rc;

	if (!key_len_ok(key_len))
		return pg_error(PG_EINVAL, SUBSYS, "AES key of %zu bytes", key_len);
	memset(ones, 0x01, sizeof(ones));
	rc = aes_block(key, key_len, ones, enc);
	if (!rc)
		memcpy(kcv, enc, 3);
	return rc;
}

int
pg_scp03_diversify(const uint8_t *master, size_t len, const uint8_t *div, size_t div_len,
		   uint8_t kvn, struct pg_scp03_keys *out)
{
	uint8_t ctx[5 + 48];
	int rc;

	if (!key_len_ok(len) || !div || div_len == 0 || div_len > 48)
		return pg_error(PG_EINVAL, SUBSYS,
				"diversification needs an AES master key and "
				"1-48 bytes of card data");
	memcpy(ctx, "PGDIV", 5);
	memcpy(ctx + 5, div, div_len);
	memset(out, 0, sizeof(*out));
	rc = pg_scp03_kdf(master, len, 0x01, ctx, 5 + div_len, out->enc, len);
	if (!rc)
		rc = pg_scp03_kdf(master, len, 0x02, ctx, 5 + div_len, out->mac, len);
	if (!rc)
		rc = pg_scp03_kdf(master, len, 0x03, ctx, 5 + div_len, out->dek, len);
	if (rc) {
		pg_memzero(out, sizeof(*out));
		return rc;
	}
	out->len = len;
	out->kvn = kvn;
	return 0;
}

/* ISO/IEC 9797-1 padding method 2 in place: returns the padded length. */
static size_t
pad_m2(uint8_t *p, size_t n)
{
	p[n++] = 0x80;
	while (n % 16)
		p[n++] = 0x00;
	return n;
}

/* Length before method 2 padding, or PG_EFORMAT. Scans the whole last block. */
static int
unpad_m2(const uint8_t *p, size_t n)
{
	size_t i = n;

	if (n == 0 || n % 16)
		return PG_EFORMAT;
	while (i > n - 16 && p[i - 1] == 0x00)
		i--;
	if (i == n - 16 || p[i - 1] != 0x80)
		return PG_EFORMAT;
	return (int)(i - 1);
}

/* ICV for C-DECRYPTION / R-ENCRYPTION: AES(S-ENC, counter), MSB 80 for responses. */
static int
enc_icv(const struct pg_scp03 *s, int response, uint8_t icv[16])
{
	uint8_t blk[16] = {0};

	blk[12] = (uint8_t)(s->enc_counter >> 24);
	blk[13] = (uint8_t)(s->enc_counter >> 16);
	blk[14] = (uint8_t)(s->enc_counter >> 8);
	blk[15] = (uint8_t)s->enc_counter;
	if (response)
		blk[0] = 0x80;
	return aes_block(s->s_enc, s->key_len, blk, icv);
}

static size_t
mac_len(const struct pg_scp03 *s)
{
	return s->ch_len == 16 ? 16 : 8;
}

/* Session keys and both cryptograms from the static keys and the two challenges. */
static int
derive_session(struct pg_scp03 *s, const struct pg_scp03_keys *k, uint8_t card_cg[16],
	       uint8_t host_cg[16])
{
	uint8_t ctx[32];
	size_t cl = s->ch_len;
	int rc;

	memcpy(ctx, s->host_ch, cl);
	memcpy(ctx + cl, s->card_ch, cl);
	s->key_len = k->len;
	rc = pg_scp03_kdf(k->enc, k->len, DC_S_ENC, ctx, 2 * cl, s->s_enc, k->len);
	if (!rc)
		rc = pg_scp03_kdf(k->mac, k->len, DC_S_MAC, ctx, 2 * cl, s->s_mac, k->len);
	if (!rc)
		rc = pg_scp03_kdf(k->mac, k->len, DC_S_RMAC, ctx, 2 * cl, s->s_rmac, k->len);
	if (!rc)
		rc = pg_scp03_kdf(s->s_mac, k->len, DC_CARD_CRYPTOGRAM, ctx, 2 * cl, card_cg, cl);
	if (!rc)
		rc = pg_scp03_kdf(s->s_mac, k->len, DC_HOST_CRYPTOGRAM, ctx, 2 * cl, host_cg, cl);
	return rc;
}

static int
sl_valid(uint8_t sl)
{
	return sl == 0x00 || sl == 0x01 || sl == 0x03 || sl == 0x11 || sl == 0x13 || sl == 0x33;
}

/* Warning and success status words carry protected data; errors go bare (Amd D 6.2.5). */
static int
sw_protected(uint16_t sw)
{
	return sw == 0x9000 || (sw >> 8) == 0x62 || (sw >> 8) == 0x63;
}

int
pg_scp03_is_open(const struct pg_scp03 *s)
{
	return s && s->state == ST_OPEN;
}

void
pg_scp03_close(struct pg_scp03 *s)
{
	if (s)
		pg_memzero(s, sizeof(*s));
}

/* ------------------------------------------------------------- APDU layout */

/*
 * Secure messaging indication in CLA (ISO 7816-4 5.4.1, GP 2.3 11.1.4): b3
 * in the first classes (00-0F, GP 80-8F), b6 in the further classes (40-7F,
 * GP C0-FF), which logical channels 4-19 use.
 */
static uint8_t
cla_sm_bit(uint8_t cla)
{
	return (cla & 0x40) ? 0x20 : 0x04;
}

/*
 * Writes a C-APDU header, Lc and (later) Le in short or extended form. Returns
 * the offset where the data goes; the caller copies data, then calls put_le.
 */
static size_t
put_head(uint8_t *out, const uint8_t hdr[4], size_t lc, int ext)
{
	size_t o = 4;

	memcpy(out, hdr, 4);
	if (lc) {
		if (ext) {
			out[o++] = 0;
			out[o++] = (uint8_t)(lc >> 8);
			out[o++] = (uint8_t)lc;
		} else {
			out[o++] = (uint8_t)lc;
		}
	}
	return o;
}

static size_t
put_le(uint8_t *out, size_t o, const struct pg_capdu *c, size_t lc, int ext)
{
	if (!c->has_le)
		return o;
	if (!ext) {
		out[o++] = (uint8_t)(c->le == 256 ? 0 : c->le);
	} else {
		if (!lc)
			out[o++] = 0;
		out[o++] = (uint8_t)(c->le == 65536 ? 0 : c->le >> 8);
		out[o++] = (uint8_t)(c->le == 65536 ? 0 : c->le);
	}
	return o;
}

static size_t
head_len(size_t lc, int ext, const struct pg_capdu *c)
{
	size_t n = 4;

	if (lc)
		n += ext ? 3 : 1;
	if (c->has_le)
		n += ext ? (lc ? 2 : 3) : 1;
	return n;
}

static int
is_ext(const struct pg_capdu *c)
{
	return c->apdu_case >= PG_APDU_CASE2E;
}

/* --------------------------------------------------------------------- host */

int
pg_scp03_host_init_update(struct pg_scp03 *s, uint8_t kvn, const uint8_t *host_challenge,
			  size_t ch_len, uint8_t *apdu, size_t cap)
{
	if (ch_len != 8 && ch_len != 16)
		return pg_error(PG_EINVAL, SUBSYS, "host challenge of %zu bytes", ch_len);
	if (cap < 6 + ch_len)
		return PG_ETOOBIG;
	pg_scp03_close(s);
	s->ch_len = (uint8_t)ch_len;
	s->kvn = kvn;
	if (host_challenge)
		memcpy(s->host_ch, host_challenge, ch_len);
	else if (RAND_bytes(s->host_ch, (int)ch_len) != 1)
		return pg_error(PG_ECRYPTO, SUBSYS, "no random host challenge");
	apdu[0] = 0x80;
	apdu[1] = INS_INIT_UPDATE;
	apdu[2] = kvn;
	apdu[3] = 0x00;
	apdu[4] = (uint8_t)ch_len;
	memcpy(apdu + 5, s->host_ch, ch_len);
	apdu[5 + ch_len] = 0x00;
	s->state = ST_HOST_IU;
	return (int)(6 + ch_len);
}

int
pg_scp03_parse_iu_response(struct pg_scp03_iu_resp *r, const uint8_t *p, size_t n)
{
	size_t cl, want;

	memset(r, 0, sizeof(*r));
	if (n < 13)
		return pg_error(PG_ETRUNC, SUBSYS, "INITIALIZE UPDATE response of %zu bytes", n);
	r->div_data = p;
	r->kvn = p[10];
	r->scp = p[11];
	r->i_param = p[12];
	if (r->scp != 0x03)
		return pg_error(PG_EFORMAT, SUBSYS, "card answers with SCP %02X, not 03", r->scp);
	/* S8 / S16 from the length: the card may support S16 yet answer an S8 request. */
	r->has_seq = (r->i_param & PG_SCP03_I_PSEUDO) != 0;
	cl = 8;
	want = 13 + 2 * cl + (r->has_seq ? 3 : 0);
	if (n != want && (r->i_param & PG_SCP03_I_S16)) {
		cl = 16;
		want = 13 + 2 * cl + (r->has_seq ? 3 : 0);
	}
	if (n != want)
		return pg_error(PG_EFORMAT, SUBSYS,
				"INITIALIZE UPDATE response of %zu bytes for i=%02X", n,
				r->i_param);
	r->ch_len = cl;
	r->card_challenge = p + 13;
	r->card_cryptogram = p + 13 + cl;
	if (r->has_seq)
		r->seq =
		    (uint32_t)p[13 + 2 * cl] << 16 | (uint32_t)p[14 + 2 * cl] << 8 | p[15 + 2 * cl];
	return 0;
}

int
pg_scp03_host_auth(struct pg_scp03 *s, const struct pg_scp03_keys *k, const uint8_t *resp, size_t n,
		   uint8_t sl, uint8_t *apdu, size_t cap)
{
	struct pg_scp03_iu_resp r;
	uint8_t card_cg[16], host_cg[16], mac[16];
	uint16_t sw = pg_rapdu_sw(resp, n);
	size_t cl, ml;
	int rc;

	if (s->state != ST_HOST_IU)
		return pg_error(PG_ESTATE, SUBSYS, "no INITIALIZE UPDATE outstanding");
	if (n < 2 || sw != 0x9000) {
		pg_scp03_close(s);
		return pg_error(PG_EAUTH, SUBSYS, "INITIALIZE UPDATE refused: %s",
				pg_sw_meaning(sw));
	}
	if (!key_len_ok(k->len) || !sl_valid(sl)) {
		pg_scp03_close(s);
		return pg_error(PG_EINVAL, SUBSYS, "bad key length %zu or security level %02X",
				k->len, sl);
	}
	rc = pg_scp03_parse_iu_response(&r, resp, n - 2);
	if (rc)
		goto fail;
	cl = s->ch_len;
	if (r.ch_len != cl) {
		rc = pg_error(PG_EPROTO, SUBSYS, "card answered S%zu to an S%zu request", r.ch_len,
			      cl);
		goto fail;
	}
	if (s->kvn && r.kvn != s->kvn) {
		rc = pg_error(PG_EPROTO, SUBSYS, "card used key version %02X, asked %02X", r.kvn,
			      s->kvn);
		goto fail;
	}
	if (((sl & PG_SCP03_SL_RMAC) && !(r.i_param & PG_SCP03_I_RMAC)) ||
	    ((sl & PG_SCP03_SL_RENC) && !(r.i_param & PG_SCP03_I_RENC))) {
		rc = pg_error(PG_ENOTSUP, SUBSYS, "card (i=%02X) does not support level %02X",
			      r.i_param, sl);
		goto fail;
	}
	memcpy(s->card_ch, r.card_challenge, cl);
	s->i_param = r.i_param;
	s->kvn = r.kvn;
	rc = derive_session(s, k, card_cg, host_cg);
	if (rc)
		goto fail;
	if (!pg_ct_equal(card_cg, r.card_cryptogram, cl)) {
		rc = pg_error(PG_EAUTH, SUBSYS, "card cryptogram does not verify (wrong keys?)");
		goto fail;
	}
	ml = mac_len(s);
	if (cap < 5 + cl + ml) {
		rc = PG_ETOOBIG;
		goto fail;
	}
	apdu[0] = 0x84;
	apdu[1] = INS_EXT_AUTH;
	apdu[2] = sl;
	apdu[3] = 0x00;
	apdu[4] = (uint8_t)(cl + ml);
	memcpy(apdu + 5, host_cg, cl);
	/* The first C-MAC of the session chains from sixteen zero bytes. */
	memset(s->chain, 0, 16);
	{
		struct pg_cmac_part parts[2] = {{s->chain, 16}, {apdu, 5 + cl}};

		rc = pg_aes_cmac_parts(s->s_mac, s->key_len, parts, 2, mac);
	}
	if (rc)
		goto fail;
	memcpy(s->chain, mac, 16);
	memcpy(apdu + 5 + cl, mac, ml);
	s->sl = sl;
	s->enc_counter = 0;
	s->state = ST_HOST_EA;
	pg_memzero(card_cg, sizeof(card_cg));
	pg_memzero(host_cg, sizeof(host_cg));
	return (int)(5 + cl + ml);
fail:
	pg_memzero(card_cg, sizeof(card_cg));
	pg_memzero(host_cg, sizeof(host_cg));
	pg_scp03_close(s);
	return rc;
}

int
pg_scp03_host_auth_done(struct pg_scp03 *s, const uint8_t *resp, size_t n)
{
	uint16_t sw = pg_rapdu_sw(resp, n);

	if (s->state != ST_HOST_EA)
		return pg_error(PG_ESTATE, SUBSYS, "no EXTERNAL AUTHENTICATE outstanding");
	if (n != 2 || sw != 0x9000) {
		pg_scp03_close(s);
		return pg_error(PG_EAUTH, SUBSYS, "EXTERNAL AUTHENTICATE refused: %04X (%s)", sw,
				pg_sw_meaning(sw));
	}
	s->state = ST_OPEN;
	return 0;
}

int
pg_scp03_host_wrap(struct pg_scp03 *s, const uint8_t *capdu, size_t n, uint8_t *out, size_t cap)
{
	struct pg_capdu c;
	uint8_t hdr[4], icv[16], mac[16];
	size_t ml, dlen, lc, o, total;
	int ext, rc;

	if (s->state != ST_OPEN)
		return pg_error(PG_ESTATE, SUBSYS, "no open secure channel");
	rc = pg_capdu_parse(&c, capdu, n);
	if (rc)
		return rc;
	if (s->sl == 0) {
		if (n > cap)
			return PG_ETOOBIG;
		memmove(out, capdu, n);
		return (int)n;
	}
	if ((c.cla & cla_sm_bit(c.cla)) || (c.cla | cla_sm_bit(c.cla)) == 0xFF)
		return pg_error(PG_EINVAL, SUBSYS, "CLA %02X cannot take secure messaging", c.cla);
	ml = mac_len(s);
	dlen = c.lc;
	if ((s->sl & PG_SCP03_SL_CDEC) && dlen)
		dlen = (dlen / 16 + 1) * 16;
	lc = dlen + ml;
	if (lc > 65535)
		return pg_error(PG_ETOOBIG, SUBSYS, "wrapped command data of %zu bytes", lc);
	ext = is_ext(&c) || lc > 255;
	total = head_len(lc, ext, &c) + lc;
	if (total > cap)
		return PG_ETOOBIG;
	if (capdu < out + cap && out < capdu + n)
		return pg_error(PG_EINVAL, SUBSYS, "wrap buffers overlap");
	hdr[0] = (uint8_t)(c.cla | cla_sm_bit(c.cla));
	hdr[1] = c.ins;
	hdr[2] = c.p1;
	hdr[3] = c.p2;
	/* The counter counts every command of the session, with or without data. */
	s->enc_counter++;
	o = put_head(out, hdr, lc, ext);
	if (c.lc)
		memcpy(out + o, c.data, c.lc);
	if ((s->sl & PG_SCP03_SL_CDEC) && c.lc) {
		pad_m2(out + o, c.lc);
		rc = enc_icv(s, 0, icv);
		if (!rc)
			rc = aes_cbc(s->s_enc, s->key_len, icv, out + o, dlen, out + o, 1);
		if (rc)
			return rc;
	}
	{
		struct pg_cmac_part parts[2] = {{s->chain, 16}, {out, o + dlen}};

		rc = pg_aes_cmac_parts(s->s_mac, s->key_len, parts, 2, mac);
	}
	if (rc)
		return rc;
	memcpy(s->chain, mac, 16);
	memcpy(out + o + dlen, mac, ml);
	o = put_le(out, o + dlen + ml, &c, lc, ext);
	return (int)o;
}

int
pg_scp03_host_unwrap(struct pg_scp03 *s, const uint8_t *rapdu, size_t n, uint8_t *out, size_t cap)
{
	uint8_t mac[16], icv[16];
	uint16_t sw = pg_rapdu_sw(rapdu, n);
	size_t ml, dlen;
	int rc, plain;

	if (s->state != ST_OPEN)
		return pg_error(PG_ESTATE, SUBSYS, "no open secure channel");
	if (n < 2)
		return pg_error(PG_ETRUNC, SUBSYS, "response without status word");
	if (sw == PG_SW_SECURITY_STATUS) {
		/* The card closes its session on a bad C-MAC (Amd D 6.2.4); follow it. */
		pg_scp03_close(s);
		if (cap < 2)
			return PG_ETOOBIG;
		out[0] = rapdu[n - 2];
		out[1] = rapdu[n - 1];
		return 2;
	}
	if (!(s->sl & PG_SCP03_SL_RMAC) || !sw_protected(sw)) {
		if (n > cap)
			return PG_ETOOBIG;
		if ((s->sl & PG_SCP03_SL_RMAC) && n != 2) {
			pg_scp03_close(s);
			return pg_error(PG_EAUTH, SUBSYS, "unprotected data with error SW %04X",
					sw);
		}
		memmove(out, rapdu, n);
		return (int)n;
	}
	ml = mac_len(s);
	if (n < 2 + ml) {
		pg_scp03_close(s);
		return pg_error(PG_EAUTH, SUBSYS, "response of %zu bytes lacks its R-MAC", n);
	}
	dlen = n - 2 - ml;
	{
		struct pg_cmac_part parts[3] = {{s->chain, 16}, {rapdu, dlen}, {rapdu + n - 2, 2}};

		rc = pg_aes_cmac_parts(s->s_rmac, s->key_len, parts, 3, mac);
	}
	if (rc)
		return rc;
	if (!pg_ct_equal(mac, rapdu + dlen, ml)) {
		pg_scp03_close(s);
		return pg_error(PG_EAUTH, SUBSYS, "R-MAC does not verify; session closed");
	}
	if (dlen + 2 > cap)
		return PG_ETOOBIG;
	plain = (int)dlen;
	if ((s->sl & PG_SCP03_SL_RENC) && dlen) {
		rc = enc_icv(s, 1, icv);
		if (!rc && dlen % 16)
			rc = PG_EFORMAT;
		if (!rc)
			rc = aes_cbc(s->s_enc, s->key_len, icv, rapdu, dlen, out, 0);
		plain = rc ? rc : unpad_m2(out, dlen);
		if (plain < 0) {
			pg_memzero(out, dlen);
			pg_scp03_close(s);
			return pg_error(PG_EAUTH, SUBSYS, "R-ENCRYPTION data malformed");
		}
	} else {
		memmove(out, rapdu, dlen);
	}
	out[plain] = rapdu[n - 2];
	out[plain + 1] = rapdu[n - 1];
	return plain + 2;
}

/* --------------------------------------------------------------------- card */

static int
sw_out(uint8_t *resp, size_t cap, size_t o, uint16_t sw)
{
	if (o + 2 > cap)
		return PG_ETOOBIG;
	resp[o] = (uint8_t)(sw >> 8);
	resp[o + 1] = (uint8_t)sw;
	return (int)(o + 2);
}

static int
card_init_update(struct pg_scp03 *s, struct pg_scp03_card *card, const struct pg_capdu *c,
		 uint8_t *resp, size_t cap)
{
	const struct pg_scp03_keys *k = &card->keys;
	uint8_t card_cg[16], host_cg[16], ctx[3 + 16];
	size_t cl, o;
	int rc, seq = (card->i_param & PG_SCP03_I_PSEUDO) != 0;

	/* A new INITIALIZE UPDATE ends whatever session this channel had. */
	pg_scp03_close(s);
	if (c->p2 != 0x00)
		return sw_out(resp, cap, 0, PG_SW_INCORRECT_P1P2);
	if (c->lc != 8 && !(c->lc == 16 && (card->i_param & PG_SCP03_I_S16)))
		return sw_out(resp, cap, 0, PG_SW_WRONG_LENGTH);
	if ((c->p1 && c->p1 != k->kvn) || !key_len_ok(k->len))
		return sw_out(resp, cap, 0, PG_SW_REF_DATA_NOT_FOUND);
	if (card->aid_len > 16)
		return sw_out(resp, cap, 0, PG_SW_UNKNOWN);
	cl = c->lc;
	if (cap < 13 + 2 * cl + 3 + 2)
		return PG_ETOOBIG;
	s->ch_len = (uint8_t)cl;
	memcpy(s->host_ch, c->data, cl);
	if (seq) {
		/* Amd D 6.2.2.1: the challenge comes from the incremented counter and the AID. */
		if (card->seq >= 0xFFFFFF)
			return sw_out(resp, cap, 0, PG_SW_CONDITIONS);
		card->seq++;
		ctx[0] = (uint8_t)(card->seq >> 16);
		ctx[1] = (uint8_t)(card->seq >> 8);
		ctx[2] = (uint8_t)card->seq;
		memcpy(ctx + 3, card->aid, card->aid_len);
		rc = pg_scp03_kdf(k->enc, k->len, DC_CARD_CHALLENGE, ctx, 3 + card->aid_len,
				  s->card_ch, cl);
	} else {
		rc = RAND_bytes(s->card_ch, (int)cl) == 1 ? 0 : PG_ECRYPTO;
	}
	if (!rc)
		rc = derive_session(s, k, card_cg, host_cg);
	if (rc) {
		pg_scp03_close(s);
		return sw_out(resp, cap, 0, PG_SW_UNKNOWN);
	}
	s->kvn = k->kvn;
	s->i_param = card->i_param;
	s->state = ST_CARD_IU;
	memcpy(resp, card->div_data, 10);
	resp[10] = k->kvn;
	resp[11] = 0x03;
	resp[12] = card->i_param;
	memcpy(resp + 13, s->card_ch, cl);
	memcpy(resp + 13 + cl, card_cg, cl);
	o = 13 + 2 * cl;
	if (seq) {
		memcpy(resp + o, ctx, 3);
		o += 3;
	}
	pg_memzero(card_cg, sizeof(card_cg));
	pg_memzero(host_cg, sizeof(host_cg));
	return sw_out(resp, cap, o, PG_SW_OK);
}

static int
card_ext_auth(struct pg_scp03 *s, const uint8_t *capdu, const struct pg_capdu *c, uint8_t *resp,
	      size_t cap)
{
	uint8_t host_cg[16], mac[16];
	uint8_t sl = c->p1;
	size_t cl, ml;
	uint16_t sw;
	int rc;

	/* Only directly after INITIALIZE UPDATE: a replay in an open session is refused. */
	if (s->state != ST_CARD_IU)
		return sw_out(resp, cap, 0, PG_SW_CONDITIONS);
	cl = s->ch_len;
	ml = mac_len(s);
	if (!sl_valid(sl) || c->p2 != 0x00 ||
	    ((sl & PG_SCP03_SL_RMAC) && !(s->i_param & PG_SCP03_I_RMAC)) ||
	    ((sl & PG_SCP03_SL_RENC) && !(s->i_param & PG_SCP03_I_RENC))) {
		sw = PG_SW_INCORRECT_P1P2;
		goto refuse;
	}
	if (c->lc != cl + ml || is_ext(c)) {
		sw = PG_SW_WRONG_LENGTH;
		goto refuse;
	}
	if (!(c->cla & cla_sm_bit(c->cla))) {
		sw = PG_SW_SECURITY_STATUS;
		goto refuse;
	}
	/* The host cryptogram first: wrong keys answer 6300, a bad C-MAC alone 6982. */
	{
		uint8_t ctx[32];

		memcpy(ctx, s->host_ch, cl);
		memcpy(ctx + cl, s->card_ch, cl);
		rc = pg_scp03_kdf(s->s_mac, s->key_len, DC_HOST_CRYPTOGRAM, ctx, 2 * cl, host_cg,
				  cl);
	}
	if (rc || !pg_ct_equal(host_cg, c->data, cl)) {
		pg_warn(SUBSYS, "EXTERNAL AUTHENTICATE: host cryptogram does not verify");
		sw = 0x6300;
		goto refuse;
	}
	memset(s->chain, 0, 16);
	{
		struct pg_cmac_part parts[2] = {{s->chain, 16}, {capdu, 5 + cl}};

		rc = pg_aes_cmac_parts(s->s_mac, s->key_len, parts, 2, mac);
	}
	if (rc || !pg_ct_equal(mac, c->data + cl, ml)) {
		sw = PG_SW_SECURITY_STATUS;
		goto refuse;
	}
	memcpy(s->chain, mac, 16);
	s->sl = sl;
	s->enc_counter = 0;
	s->state = ST_OPEN;
	pg_memzero(host_cg, sizeof(host_cg));
	return sw_out(resp, cap, 0, PG_SW_OK);
refuse:
	pg_memzero(host_cg, sizeof(host_cg));
	pg_scp03_close(s);
	return sw_out(resp, cap, 0, sw);
}

int
pg_scp03_card_process(struct pg_scp03 *s, struct pg_scp03_card *card, const uint8_t *capdu,
		      size_t n, uint8_t *resp, size_t cap)
{
	struct pg_capdu c;

	if (cap < 2)
		return PG_ETOOBIG;
	if (pg_capdu_parse(&c, capdu, n) < 0) {
		pg_scp03_close(s);
		return sw_out(resp, cap, 0, PG_SW_WRONG_LENGTH);
	}
	if (c.ins == INS_INIT_UPDATE) {
		if ((c.cla & cla_sm_bit(c.cla)))
			return sw_out(resp, cap, 0, PG_SW_SM_NOT_SUPPORTED);
		return card_init_update(s, card, &c, resp, cap);
	}
	if (c.ins == INS_EXT_AUTH)
		return card_ext_auth(s, capdu, &c, resp, cap);
	return sw_out(resp, cap, 0, PG_SW_INS_NOT_SUPPORTED);
}

int
pg_scp03_card_unwrap(struct pg_scp03 *s, const uint8_t *capdu, size_t n, uint8_t *out, size_t cap,
		     uint16_t *sw)
{
	struct pg_capdu c;
	uint8_t mac[16], icv[16], hdr[4];
	size_t ml, doff, dlen, o;
	int sm, ext, plain, rc;

	*sw = PG_SW_OK;
	rc = pg_capdu_parse(&c, capdu, n);
	if (rc) {
		*sw = PG_SW_WRONG_LENGTH;
		return rc;
	}
	if (capdu < out + cap && out < capdu + n) {
		*sw = PG_SW_UNKNOWN;
		return pg_error(PG_EINVAL, SUBSYS, "unwrap buffers overlap");
	}
	sm = (c.cla & cla_sm_bit(c.cla)) != 0;
	s->last_wrapped = 0;
	if (s->state == ST_CARD_IU)
		pg_scp03_close(s); /* EXTERNAL AUTHENTICATE had to come next; it did not. */
	if (s->state != ST_OPEN || s->sl == 0) {
		if (sm) {
			*sw = PG_SW_SECURITY_STATUS;
			return pg_error(PG_EAUTH, SUBSYS, "secure messaging without a session");
		}
		if (n > cap) {
			*sw = PG_SW_UNKNOWN;
			return PG_ETOOBIG;
		}
		memcpy(out, capdu, n);
		return (int)n;
	}
	ml = mac_len(s);
	if (!sm || c.lc < ml) {
		pg_scp03_close(s);
		*sw = PG_SW_SECURITY_STATUS;
		return pg_error(PG_EAUTH, SUBSYS, "command without C-MAC in a secure channel");
	}
	s->enc_counter++;
	doff = (size_t)(c.data - capdu);
	dlen = c.lc - ml;
	{
		struct pg_cmac_part parts[2] = {{s->chain, 16}, {capdu, doff + dlen}};

		rc = pg_aes_cmac_parts(s->s_mac, s->key_len, parts, 2, mac);
	}
	if (rc || !pg_ct_equal(mac, c.data + dlen, ml)) {
		pg_scp03_close(s);
		*sw = PG_SW_SECURITY_STATUS;
		return pg_error(PG_EAUTH, SUBSYS, "C-MAC does not verify; session closed");
	}
	memcpy(s->chain, mac, 16);
	hdr[0] = (uint8_t)(c.cla & ~cla_sm_bit(c.cla));
	hdr[1] = c.ins;
	hdr[2] = c.p1;
	hdr[3] = c.p2;
	/* The data goes after the longest header; it moves once its length is known. */
	if (7 + dlen + 3 > cap) {
		*sw = PG_SW_UNKNOWN;
		return PG_ETOOBIG;
	}
	plain = (int)dlen;
	if ((s->sl & PG_SCP03_SL_CDEC) && dlen) {
		rc = dlen % 16 ? PG_EFORMAT : enc_icv(s, 0, icv);
		if (!rc)
			rc = aes_cbc(s->s_enc, s->key_len, icv, c.data, dlen, out + 7, 0);
		plain = rc ? rc : unpad_m2(out + 7, dlen);
		if (plain < 0) {
			pg_memzero(out, 7 + dlen);
			pg_scp03_close(s);
			*sw = PG_SW_SECURITY_STATUS;
			return pg_error(PG_EAUTH, SUBSYS, "C-DECRYPTION data malformed");
		}
	} else if (dlen) {
		memcpy(out + 7, c.data, dlen);
	}
	/*
	 * The plain command takes the shortest form that holds it: the MAC and
	 * padding may have pushed the wrapped one into extended length.
	 */
	ext = (size_t)plain > 255 || (c.has_le && c.le > 256);
	o = put_head(out, hdr, (size_t)plain, ext);
	memmove(out + o, out + 7, (size_t)plain);
	s->last_wrapped = 1;
	return (int)put_le(out, o + (size_t)plain, &c, (size_t)plain, ext);
}

int
pg_scp03_card_wrap(struct pg_scp03 *s, const uint8_t *data, size_t n, uint16_t sw, uint8_t *out,
		   size_t cap)
{
	uint8_t mac[16], icv[16], swb[2] = {(uint8_t)(sw >> 8), (uint8_t)sw};
	size_t ml, dlen;
	int rc;

	if (s->state != ST_OPEN || !s->last_wrapped || !(s->sl & PG_SCP03_SL_RMAC)) {
		if (n + 2 > cap)
			return PG_ETOOBIG;
		if (n)
			memmove(out, data, n);
		return sw_out(out, cap, n, sw);
	}
	s->last_wrapped = 0;
	if (!sw_protected(sw))
		return sw_out(out, cap, 0, sw);
	ml = mac_len(s);
	dlen = n;
	if ((s->sl & PG_SCP03_SL_RENC) && n)
		dlen = (n / 16 + 1) * 16;
	if (dlen + ml + 2 > cap)
		return PG_ETOOBIG;
	if (n && data < out + cap && out < data + n)
		return pg_error(PG_EINVAL, SUBSYS, "wrap buffers overlap");
	if (n)
		memcpy(out, data, n);
	if (dlen != n) {
		pad_m2(out, n);
		rc = enc_icv(s, 1, icv);
		if (!rc)
			rc = aes_cbc(s->s_enc, s->key_len, icv, out, dlen, out, 1);
		if (rc)
			return rc;
	}
	{
		struct pg_cmac_part parts[3] = {{s->chain, 16}, {out, dlen}, {swb, 2}};

		rc = pg_aes_cmac_parts(s->s_rmac, s->key_len, parts, 3, mac);
	}
	if (rc)
		return rc;
	memcpy(out + dlen, mac, ml);
	return sw_out(out, cap, dlen + ml, sw);
}

/* ------------------------------------------------------------------ PUT KEY */

#define KEY_TYPE_AES 0x88

int
pg_scp03_put_key_build(const uint8_t *dek, size_t dek_len, uint8_t old_kvn,
		       const struct pg_scp03_keys *nk, uint8_t *apdu, size_t cap)
{
	const uint8_t *keys[3] = {nk->enc, nk->mac, nk->dek};
	size_t el = (nk->len + 15) / 16 * 16, o = 5;
	uint8_t blk[32];
	int rc = 0;

	if (!key_len_ok(dek_len) || !key_len_ok(nk->len) || nk->kvn == 0 || nk->kvn > 0x7F)
		return pg_error(PG_EINVAL, SUBSYS, "bad PUT KEY keys (length %zu, kvn %02X)",
				nk->len, nk->kvn);
	if (cap < 5 + 1 + 3 * (3 + el + 4) + 1)
		return PG_ETOOBIG;
	apdu[0] = 0x80;
	apdu[1] = INS_PUT_KEY;
	apdu[2] = old_kvn;
	apdu[3] = 0x81; /* key identifier 1, more keys follow (b8) */
	apdu[o++] = nk->kvn;
	for (int i = 0; i < 3 && !rc; i++) {
		/* Amd D 7.2: '88' || length || clear key length || E(DEK, key) || '03' || KCV. */
		memset(blk, 0, sizeof(blk));
		memcpy(blk, keys[i], nk->len);
		if (el != nk->len)
			pad_m2(blk, nk->len);
		apdu[o++] = KEY_TYPE_AES;
		apdu[o++] = (uint8_t)(1 + el);
		apdu[o++] = (uint8_t)nk->len;
		rc = aes_cbc(dek, dek_len, NULL, blk, el, apdu + o, 1);
		o += el;
		apdu[o++] = 3;
		if (!rc)
			rc = pg_scp03_kcv(keys[i], nk->len, apdu + o);
		o += 3;
	}
	pg_memzero(blk, sizeof(blk));
	if (rc)
		return rc;
	apdu[4] = (uint8_t)(o - 5);
	apdu[o++] = 0x00;
	return (int)o;
}

int
pg_scp03_put_key_parse(const uint8_t *dek, size_t dek_len, const uint8_t *data, size_t n,
		       struct pg_scp03_keys *nk)
{
	uint8_t *keys[3] = {nk->enc, nk->mac, nk->dek};
	uint8_t blk[32], kcv[3];
	size_t o = 1, klen = 0;
	int rc = 0;

	memset(nk, 0, sizeof(*nk));
	if (!key_len_ok(dek_len))
		return pg_error(PG_EINVAL, SUBSYS, "no DEK for PUT KEY");
	if (n < 1 || data[0] == 0 || data[0] > 0x7F)
		return pg_error(PG_EFORMAT, SUBSYS, "PUT KEY without a valid new key version");
	for (int i = 0; i < 3; i++) {
		size_t l, lk, el;
		const uint8_t *e;

		if (n - o < 2 || data[o] != KEY_TYPE_AES) {
			rc = pg_error(PG_EFORMAT, SUBSYS, "key %d: not an AES key block", i + 1);
			goto out;
		}
		l = data[o + 1];
		o += 2;
		if (n - o < l + 1) {
			rc = pg_error(PG_ETRUNC, SUBSYS, "key %d: block truncated", i + 1);
			goto out;
		}
		/* With the clear-length byte (Amd D) or without it (GP 2.3 table 11-71). */
		if (l % 16 == 1) {
			lk = data[o];
			e = data + o + 1;
			el = l - 1;
		} else {
			lk = l;
			e = data + o;
			el = l;
		}
		if (!key_len_ok(lk) || el != (lk + 15) / 16 * 16 || el > sizeof(blk) ||
		    (klen && lk != klen)) {
			rc = pg_error(PG_EFORMAT, SUBSYS, "key %d: bad AES key length %zu", i + 1,
				      lk);
			goto out;
		}
		klen = lk;
		o += l;
		if (data[o] != 3 || n - o < 4) {
			rc = pg_error(PG_EFORMAT, SUBSYS, "key %d: KCV missing", i + 1);
			goto out;
		}
		rc = aes_cbc(dek, dek_len, NULL, e, el, blk, 0);
		if (!rc)
			rc = pg_scp03_kcv(blk, lk, kcv);
		if (rc)
			goto out;
		if (!pg_ct_equal(kcv, data + o + 1, 3)) {
			rc =
			    pg_error(PG_EAUTH, SUBSYS, "key %d: check value does not match", i + 1);
			goto out;
		}
		memcpy(keys[i], blk, lk);
		o += 4;
	}
	if (o != n) {
		rc = pg_error(PG_EFORMAT, SUBSYS, "%zu bytes after the third key", n - o);
		goto out;
	}
	nk->len = klen;
	nk->kvn = data[0];
out:
	pg_memzero(blk, sizeof(blk));
	if (rc)
		pg_memzero(nk, sizeof(*nk));
	return rc;
}

int
pg_scp03_put_key_check(const struct pg_scp03_keys *nk, const uint8_t *data, size_t n)
{
	const uint8_t *keys[3] = {nk->enc, nk->mac, nk->dek};
	uint8_t kcv[3];

	if (n != 10 || data[0] != nk->kvn)
		return pg_error(PG_EPROTO, SUBSYS, "PUT KEY response of %zu bytes", n);
	for (int i = 0; i < 3; i++) {
		int rc = pg_scp03_kcv(keys[i], nk->len, kcv);

		if (rc)
			return rc;
		if (!pg_ct_equal(kcv, data + 1 + 3 * i, 3))
			return pg_error(PG_EAUTH, SUBSYS, "card confirms a different key %d",
					i + 1);
	}
	return 0;
}

int
pg_scp03_card_put_key(const struct pg_scp03 *s, struct pg_scp03_card *card, const uint8_t *capdu,
		      size_t n, uint8_t *resp, size_t cap)
{
	struct pg_scp03_keys nk;
	struct pg_capdu c;
	const uint8_t *keys[3] = {nk.enc, nk.mac, nk.dek};
	int rc;

	if (cap < 12)
		return PG_ETOOBIG;
	/* Keys change only inside an authenticated, C-MACed secure channel. */
	if (s->state != ST_OPEN || !s->last_wrapped || !(s->sl & PG_SCP03_SL_CMAC))
		return sw_out(resp, cap, 0, PG_SW_SECURITY_STATUS);
	if (pg_capdu_parse(&c, capdu, n) < 0 || c.ins != INS_PUT_KEY)
		return sw_out(resp, cap, 0, PG_SW_WRONG_LENGTH);
	/* The whole SCP03 key set at once: key identifier 1 with b8 (more keys). */
	if ((c.p2 & 0x7F) != 0x01 || (c.p1 & 0x80))
		return sw_out(resp, cap, 0, PG_SW_INCORRECT_P1P2);
	if (c.p1 != 0 && c.p1 != card->keys.kvn)
		return sw_out(resp, cap, 0, PG_SW_REF_DATA_NOT_FOUND);
	rc = pg_scp03_put_key_parse(card->keys.dek, card->keys.len, c.data, c.lc, &nk);
	if (rc)
		return sw_out(resp, cap, 0, PG_SW_WRONG_DATA);
	resp[0] = nk.kvn;
	for (int i = 0; i < 3 && !rc; i++)
		rc = pg_scp03_kcv(keys[i], nk.len, resp + 1 + 3 * i);
	if (rc) {
		pg_memzero(&nk, sizeof(nk));
		return sw_out(resp, cap, 0, PG_SW_UNKNOWN);
	}
	pg_memzero(&card->keys, sizeof(card->keys));
	card->keys = nk;
	pg_memzero(&nk, sizeof(nk));
	pg_info(SUBSYS, "key set replaced by version %02X", card->keys.kvn);
	return sw_out(resp, cap, 10, PG_SW_OK);
}
