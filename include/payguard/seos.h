/*
 * The device-side SE operating system (issue 7; seeds "Secure element
 * operating system and method" and "Establishment of communication
 * connection between mobile device and secure element"): GlobalPlatform SE
 * Access Control (ARA-M rules, v1.1), the SE list and the MACed
 * connection-configuration cache in the SQLite store, and the connect flow
 * (identify -> SCP03 authenticate -> cache hit or read from the SE).
 */
#ifndef PAYGUARD_SEOS_H
#define PAYGUARD_SEOS_H

#include "payguard/link.h"
#include "payguard/scp03.h"
#include "payguard/store.h"

#include <stddef.h>
#include <stdint.h>

/* ---------------- ARA-M access rules (GP SE Access Control v1.1) ---------------- */

#define PG_ARA_MAX_RULES   256
#define PG_ARA_MAX_FILTERS 32	  /* APDU filters per AR-DO */
#define PG_ARA_MAX_DATA	   65536u /* largest Response-ALL-REF-AR-DO accepted */

/* The ARA-M AID (SEAC v1.1 table 3-1). */
extern const uint8_t pg_ara_m_aid[9];

enum pg_ara_aid_kind {
	PG_ARA_AID_SPECIFIC = 0, /* 4F with 5..16 bytes */
	PG_ARA_AID_ALL,		 /* 4F 00: every SE application */
	PG_ARA_AID_DEFAULT,	 /* C0 00: the implicitly selected application */
};
enum pg_ara_apdu {
	PG_ARA_APDU_NONE = 0, /* no APDU-AR-DO in the rule: no APDU access granted */
	PG_ARA_APDU_NEVER,
	PG_ARA_APDU_ALWAYS,
	PG_ARA_APDU_FILTER,
};

struct pg_ara_rule {
	enum pg_ara_aid_kind aid_kind;
	uint8_t aid[16];
	size_t aid_len;
	uint8_t hash[32]; /* DeviceAppID-REF-DO: SHA-1 (20) or SHA-256 (32) */
	size_t hash_len;  /* 0: every device application (C1 00) */
	enum pg_ara_apdu apdu;
	uint8_t filters[PG_ARA_MAX_FILTERS][8]; /* header (4) + mask (4) */
	size_t nfilters;
	int nfc; /* -1 absent, 0 never, 1 always */
};

struct pg_ara_rules {
	struct pg_ara_rule *rule;
	size_t n;
};

/* The decision for one client on one SE application. */
struct pg_ara_access {
	enum pg_ara_apdu apdu; /* NONE/NEVER: refused */
	uint8_t filters[PG_ARA_MAX_FILTERS][8];
	size_t nfilters;
	int nfc;
	int level; /* which precedence level matched (1..4), 0 none */
};

/* The identity a client presents: hashes of its certificate or declared name. */
struct pg_ara_client {
	uint8_t sha1[20];
	uint8_t sha256[32];
};

/*
 * Parses the data of GET DATA [All] (tag FF40 + Response-ALL-REF-AR-DO, as
 * the ARA-M returns it). PG_EFORMAT with a detail on anything the spec does
 * not allow. rules is allocated (free with pg_ara_rules_release).
 */
int pg_ara_parse(struct pg_ara_rules *rules, const uint8_t *p, size_t n);
void pg_ara_rules_release(struct pg_ara_rules *rules);
/* Builds a client identity from raw bytes (certificate DER, or "uid:exe" string). */
void pg_ara_client_from(struct pg_ara_client *c, const void *id, size_t n);
/*
 * Decides access of client c to the application aid (aid_len 0: the
 * implicitly selected one), with SEAC's precedence: specific AID + specific
 * client, specific AID + all clients, all AIDs + specific client, all + all;
 * when rules exist for the AID but none matches the client, access is
 * denied. Rules of the same level combine: NEVER beats ALWAYS beats filters
 * (filters are united). Returns 0 allowed (out filled) or PG_EPERM.
 */
int pg_ara_decide(const struct pg_ara_rules *r, const uint8_t *aid, size_t aid_len,
		  const struct pg_ara_client *c, struct pg_ara_access *out);
/* Checks one C-APDU against an access decision: 0 or PG_EPERM. */
int pg_ara_check_apdu(const struct pg_ara_access *a, const uint8_t *capdu, size_t n);

#endif
