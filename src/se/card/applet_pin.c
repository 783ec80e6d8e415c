/*
 * PIN and key store applet (ISO/IEC 7816-4 VERIFY / CHANGE REFERENCE DATA,
 * ISO/IEC 7816-8 GENERATE ASYMMETRIC KEY PAIR and PSO: COMPUTE DIGITAL
 * SIGNATURE): a PIN in ISO 9564 format 2 blocks with a persistent try
 * counter (decremented and committed BEFORE the comparison, so a power cut
 * cannot buy a free guess), and one EC P-256 key pair generated on the card
 * whose private half never leaves it; ECDSA over SHA-256 through OpenSSL.
 */
#include "gp_int.h"

#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/mem.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <string.h>

const uint8_t pg_gp_pin_aid[7] = {0xF0, 'P', 'G', 'P', 'I', 'N', 0x01};

#define SW_TRIES(n) ((uint16_t)(0x63C0 | ((n)&0x0F)))

struct pin_p {
	uint8_t pin[8]; /* ISO 9564 format 2 block */
	uint8_t tries, limit;
	uint8_t has_key;
	uint8_t priv[32]; /* P-256 private scalar */
	uint8_t pub[65];  /* uncompressed point */
};
struct pin_v {
	uint8_t verified;
};

/* Format 2 PIN block: 2L then L digits (4..12) then F fill (EMV Book 3 6.5.12). */
static int
block_ok(const uint8_t *b)
{
	int l = b[0] & 0x0F;

	if ((b[0] >> 4) != 2 || l < 4 || l > 12)
		return 0;
	for (int i = 0; i < 14; i++) {
		int nib = (b[1 + i / 2] >> (i % 2 ? 0 : 4)) & 0x0F;

		if (i < l ? nib > 9 : nib != 0x0F)
			return 0;
	}
	return 1;
}

static uint16_t
pin_install(struct gp_inst *in, const uint8_t *params, size_t n)
{
	struct pin_p *p = (struct pin_p *)in->p;
	static const uint8_t transport[8] = {0x24, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

	if (n > 0 && (n != 1 || params[0] < 1 || params[0] > 15))
		return PG_SW_WRONG_DATA; /* C9: [try limit] */
	memcpy(p->pin, transport, 8);	 /* transport PIN 1234 until changed */
	p->limit = p->tries = n ? params[0] : 3;
	return PG_SW_OK;
}

static int
pin_check(const uint8_t *raw)
{
	const struct pin_p *p = (const struct pin_p *)raw;

	return block_ok(p->pin) && p->limit >= 1 && p->limit <= 15 && p->tries <= p->limit &&
		       p->has_key <= 1
		   ? 0
		   : -1;
}

static uint16_t
pin_select(struct gp_inst *in, int chn, struct pg_buf *b)
{
	(void)chn, (void)b;
	((struct pin_v *)in->v)->verified = 0;
	return PG_SW_OK;
}

/* The try-counter protocol shared by VERIFY and CHANGE REFERENCE DATA. */
static uint16_t
try_pin(struct gp_inst *in, const uint8_t *block)
{
	struct pin_p *p = (struct pin_p *)in->p;
	struct pin_v *v = (struct pin_v *)in->v;

	if (p->tries == 0)
		return PG_SW_AUTH_BLOCKED;
	v->verified = 0;
	p->tries--;
	if (pgi_gp_commit(in->g) < 0)
		return GP_SW_MEMFAIL;
	if (!pg_ct_equal(block, p->pin, 8))
		return p->tries ? SW_TRIES(p->tries) : PG_SW_AUTH_BLOCKED;
	p->tries = p->limit;
	pgi_gp_dirty(in->g);
	v->verified = 1;
	return PG_SW_OK;
}

static uint16_t
verify(struct gp_inst *in, const struct pg_capdu *c)
{
	struct pin_p *p = (struct pin_p *)in->p;

	if (c->p1 != 0x00 || c->p2 != 0x80)
		return PG_SW_INCORRECT_P1P2;
	if (c->lc == 0) /* the retry counter, or 9000 if already verified (7816-4 11.5.6) */
		return ((struct pin_v *)in->v)->verified ? PG_SW_OK
		       : p->tries			 ? SW_TRIES(p->tries)
							 : PG_SW_AUTH_BLOCKED;
	if (c->lc != 8)
		return PG_SW_WRONG_LENGTH;
	if (!block_ok(c->data))
		return PG_SW_WRONG_DATA;
	return try_pin(in, c->data);
}

static uint16_t
change(struct gp_inst *in, const struct pg_capdu *c)
{
	struct pin_p *p = (struct pin_p *)in->p;
	uint16_t sw;

	if (c->p1 != 0x00 || c->p2 != 0x80)
		return PG_SW_INCORRECT_P1P2;
	if (c->lc != 16)
		return PG_SW_WRONG_LENGTH;
	if (!block_ok(c->data) || !block_ok(c->data + 8))
		return PG_SW_WRONG_DATA;
	sw = try_pin(in, c->data);
	if (sw != PG_SW_OK)
		return sw;
	memcpy(p->pin, c->data + 8, 8);
	pgi_gp_dirty(in->g);
	return PG_SW_OK;
}

static uint16_t
pub_out(const struct pin_p *p, uint8_t *resp, size_t *rlen)
{
	/* 7F49 { 86 (public point) } (ISO/IEC 7816-8 table 3) */
	if (*rlen < 3 + 2 + 65) {
		*rlen = 0;
		return PG_SW_WRONG_LENGTH;
	}
	resp[0] = 0x7F, resp[1] = 0x49, resp[2] = 2 + 65, resp[3] = 0x86, resp[4] = 65;
	memcpy(resp + 5, p->pub, 65);
	*rlen = 70;
	return PG_SW_OK;
}

static uint16_t
genkey(struct gp_inst *in, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	struct pin_p *p = (struct pin_p *)in->p;
	EVP_PKEY *k = NULL;
	BIGNUM *d = NULL;
	size_t publen = 0;
	uint16_t sw = PG_SW_UNKNOWN;

	*rlen = *rlen; /* capacity in, length out */
	if (c->p2 != 0x00 || (c->p1 != 0x80 && c->p1 != 0x81)) {
		*rlen = 0;
		return PG_SW_INCORRECT_P1P2;
	}
	if (c->p1 == 0x81) { /* read the public key */
		if (!p->has_key) {
			*rlen = 0;
			return PG_SW_REF_DATA_NOT_FOUND;
		}
		return pub_out(p, resp, rlen);
	}
	if (!((struct pin_v *)in->v)->verified) {
		*rlen = 0;
		return PG_SW_SECURITY_STATUS;
	}
	k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!k || !EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &d) ||
	    BN_bn2binpad(d, p->priv, 32) != 32 ||
	    !EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, p->pub, 65,
					     &publen) ||
	    publen != 65) {
		pg_memzero(p->priv, 32);
		p->has_key = 0;
		*rlen = 0;
		goto out;
	}
	p->has_key = 1;
	pgi_gp_dirty(in->g);
	sw = pub_out(p, resp, rlen);
out:
	BN_clear_free(d);
	EVP_PKEY_free(k);
	return sw;
}

static EVP_PKEY *
load_key(const struct pin_p *p)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *prm = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *k = NULL;
	BIGNUM *d = BN_secure_new();

	if (!bld || !d || !BN_bin2bn(p->priv, 32, d) ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, p->pub, 65))
		goto out;
	prm = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!prm || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_KEYPAIR, prm) <= 0)
		k = NULL;
out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(prm);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(d);
	return k;
}

static uint16_t
sign(struct gp_inst *in, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	struct pin_p *p = (struct pin_p *)in->p;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY *k = NULL;
	size_t cap = *rlen, slen = cap;
	uint16_t sw = PG_SW_UNKNOWN;

	*rlen = 0;
	if (c->p1 != 0x9E || c->p2 != 0x9A)
		return PG_SW_INCORRECT_P1P2;
	if (!((struct pin_v *)in->v)->verified)
		return PG_SW_SECURITY_STATUS;
	if (!p->has_key)
		return PG_SW_REF_DATA_NOT_FOUND;
	if (c->lc == 0)
		return PG_SW_WRONG_LENGTH;
	k = load_key(p);
	md = EVP_MD_CTX_new();
	if (k && md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
	    EVP_DigestSign(md, resp, &slen, c->data, c->lc) == 1) {
		*rlen = slen;
		sw = PG_SW_OK;
	}
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	return sw;
}

static int
pin_process(struct gp_inst *in, int chn, const struct pg_capdu *c, uint8_t *resp, size_t *rlen,
	    uint16_t *sw)
{
	(void)chn;
	if (c->cla & 0x80) {
		*rlen = 0;
		*sw = PG_SW_CLA_NOT_SUPPORTED;
		return 0;
	}
	switch (c->ins) {
	case 0x20:
		*rlen = 0;
		*sw = verify(in, c);
		break;
	case 0x24:
		*rlen = 0;
		*sw = change(in, c);
		break;
	case 0x46:
		if (*rlen < 80)
			return PG_ETOOBIG;
		*sw = genkey(in, c, resp, rlen);
		break;
	case 0x2A:
		if (*rlen < 80)
			return PG_ETOOBIG;
		*sw = sign(in, c, resp, rlen);
		break;
	default:
		*rlen = 0;
		*sw = PG_SW_INS_NOT_SUPPORTED;
	}
	return 0;
}

/* Personalisation: DGI 8010 PIN block, DGI 9010 try limit (resets the counter). */
static uint16_t
pin_store_dgi(struct gp_inst *in, uint16_t dgi, const uint8_t *d, size_t n)
{
	struct pin_p *p = (struct pin_p *)in->p;

	if (dgi == 0x8010) {
		if (n != 8 || !block_ok(d))
			return PG_SW_WRONG_DATA;
		memcpy(p->pin, d, 8);
		p->tries = p->limit;
		return PG_SW_OK;
	}
	if (dgi == 0x9010) {
		if (n != 1 || d[0] < 1 || d[0] > 15)
			return PG_SW_WRONG_DATA;
		p->limit = p->tries = d[0];
		return PG_SW_OK;
	}
	return PG_SW_REF_DATA_NOT_FOUND;
}

static int
pin_perso_done(const struct gp_inst *in)
{
	(void)in;
	return 1;
}

const struct gp_class pgi_gp_class_pin = {
    .name = "pin",
    .id = 3,
    .elf_aid = {0xF0, 'P', 'G', 'L', 'F', 0x03},
    .elf_len = 6,
    .mod_aid = {0xF0, 'P', 'G', 'M', 'D', 0x03},
    .mod_len = 6,
    .def_aid = {0xF0, 'P', 'G', 'P', 'I', 'N', 0x01},
    .def_len = 7,
    .pstate = sizeof(struct pin_p),
    .vstate = sizeof(struct pin_v),
    .install = pin_install,
    .check = pin_check,
    .select = pin_select,
    .process = pin_process,
    .store_dgi = pin_store_dgi,
    .perso_done = pin_perso_done,
};
