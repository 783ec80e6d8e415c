/*
 * The device-side SE operating system (issue 7; seeds "Secure element
 * operating system and method" and "Establishment of communication
 * connection between mobile device and secure element"): GlobalPlatform SE
 * Access Control (ARA-M rules, v1.1), the SE list and the MACed
 * connection-configuration cache in the store (SQLite or PostgreSQL), and the connect flow
 * (identify -> SCP03 authenticate -> cache hit or read from the SE).
 */
#ifndef PAYGUARD_SEOS_H
#define PAYGUARD_SEOS_H

#include "payguard/link.h"
#include "payguard/scp03.h"
#include "payguard/store.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

/* ---------------- connection configuration (what the cache holds) ---------------- */

#define PG_SEOS_MAX_APPS 32
#define PG_SEOS_ID_LEN	 10 /* CPLC IC fabricator | IC type | IC serial | IC batch */

/* The ISD's GET DATA tags the connect flow reads (GP 2.3 H.4; DF50 is payguard's). */
#define PG_SEOS_TAG_IIN		   0x0042
#define PG_SEOS_TAG_CIN		   0x0045
#define PG_SEOS_TAG_CPLC	   0x9F7F
#define PG_SEOS_TAG_CONFIG_VERSION 0xDF50 /* 4 bytes, bumped when apps or rules change */

struct pg_seos_app {
	uint8_t aid[16];
	size_t aid_len;
	uint8_t life_cycle; /* GP 2.3 11.1.1: 03 installed, 07 selectable, 0F personalized ... */
	uint8_t priv[3];
};

struct pg_seos_config {
	uint32_t version; /* the SE's configuration version (GET DATA DF50) */
	char link[8];	  /* link driver name */
	uint16_t ifsc, ifsd;
	uint8_t window;	  /* SHDLC sliding window (SWP) */
	uint8_t ext_len;  /* extended-length APDUs supported */
	uint8_t channels; /* logical channels (basic included) */
	uint8_t iin[16], cin[16];
	size_t iin_len, cin_len;
	struct pg_seos_app app[PG_SEOS_MAX_APPS];
	size_t napps;
	uint8_t *ara; /* ARA-M GET DATA [All] data (FF40 ...), malloc'd; NULL if no ARA-M */
	size_t ara_len;
};

void pg_seos_config_release(struct pg_seos_config *c);
/* Serialises / parses a configuration (BER-TLV, private template E0). */
int pg_seos_config_encode(const struct pg_seos_config *c, uint8_t **out, size_t *len);
int pg_seos_config_decode(struct pg_seos_config *c, const uint8_t *p, size_t n);

/* ---------------- key store ---------------- */

/*
 * A text file, one entry a line ('#' comments): "se <id hex> <kvn> <enc> <mac> <dek>"
 * gives one SE's static keys; "master <kvn> <key>" a master key that
 * pg_scp03_diversify() turns into an SE's keys with the SE identity as data;
 * "master-cin <kvn> <key> <cin-prefix hex>" one diversified by the SE's CIN
 * instead (read with GET DATA 45 before authentication) for SEs whose CIN
 * starts with the prefix, as the VSE hypervisor derives its VSEs' keys.
 */
struct pg_seos_keystore;
int pg_seos_keystore_load(struct pg_seos_keystore **out, const char *path);
int pg_seos_keystore_parse(struct pg_seos_keystore **out, const char *text);
void pg_seos_keystore_free(struct pg_seos_keystore *ks);
/* The keys for an SE identity: its own entry, else the diversified master; PG_ENOENT. */
int pg_seos_keystore_find(const struct pg_seos_keystore *ks, const uint8_t id[PG_SEOS_ID_LEN],
			  struct pg_scp03_keys *out);
/* The same, with the SE's CIN (read in clear) for the "master-cin" entry; cin may be NULL. */
int pg_seos_keystore_find_cin(const struct pg_seos_keystore *ks, const uint8_t id[PG_SEOS_ID_LEN],
			      const uint8_t *cin, size_t cin_len, struct pg_scp03_keys *out);
/* 1 if the store has a "master-cin" entry (the CIN must then be read first). */
int pg_seos_keystore_wants_cin(const struct pg_seos_keystore *ks);

/* ---------------- the SE OS: SE list, cache, connect flow ---------------- */

enum pg_seos_state {
	PG_SEOS_ATTACHED = 0,
	PG_SEOS_AUTHENTICATED,
	PG_SEOS_REJECTED,
	PG_SEOS_DETACHED,
};
const char *pg_seos_state_name(int state);

struct pg_seos;

/*
 * Opens the SE OS over the store at db (a SQLite path or a PostgreSQL URL,
 * include/payguard/db.h; NULL: the default database) and its
 * device key file key_path (NULL: "<data dir>/seos-device.key"; created with
 * 32 random bytes, mode 0600, if missing; refused if group/other may read it).
 * ks is borrowed and may be NULL (every SE is then rejected).
 */
int pg_seos_open(struct pg_seos **out, const char *db, const char *key_path,
		 const struct pg_seos_keystore *ks);
void pg_seos_close(struct pg_seos *os);
struct pg_store *pg_seos_store(struct pg_seos *os);

/* What one connection establishment did. */
struct pg_seos_conn {
	uint8_t id[PG_SEOS_ID_LEN];
	char id_hex[2 * PG_SEOS_ID_LEN + 1];
	uint8_t atr[PG_ATR_MAX];
	size_t atr_len;
	int state;	  /* enum pg_seos_state */
	char reason[160]; /* why rejected/unreachable (empty if authenticated) */
	int cache;	  /* 1 hit, 0 miss (read from the SE), -1 not reached */
	int refresh_why;  /* 0 none, 1 no record, 2 version changed, 3 MAC mismatch,
			     4 the SE reports no version (always read) */
	uint64_t apdus;	  /* APDUs this establishment sent */
	struct pg_seos_config cfg;
};

/*
 * The seed's flow for an SE that has just attached as `name` over host link l
 * (borrowed): power on, identify (CPLC), SCP03 mutual authentication with
 * the key store's keys, then the configuration from the cache when its
 * record for (identity, version) verifies, else read from the SE (GET DATA,
 * GET STATUS, ARA-M) and stored. The SE list row for `name` is written in
 * every case. Returns 0 when authenticated; PG_EAUTH (rejected) or the link's
 * error (unreachable), with conn->reason set. Release conn->cfg afterwards.
 */
int pg_seos_connect(struct pg_seos *os, const char *name, const char *addr, struct pg_link *l,
		    struct pg_seos_conn *conn);
/* Records an SE that never reached the connect flow (unreachable) in the SE list. */
int pg_seos_mark(struct pg_seos *os, const char *name, const char *link, const char *addr,
		 int state, const char *reason);
/* Marks `name` detached in the SE list. */
int pg_seos_detach(struct pg_seos *os, const char *name, const char *reason);

/* One SE list row. */
struct pg_seos_entry {
	char name[64], id_hex[2 * PG_SEOS_ID_LEN + 1], link[16], addr[256],
	    atr_hex[2 * PG_ATR_MAX + 1];
	int state;
	char reason[160];
	uint32_t version;
	size_t napps;
};
/* Calls fn for each SE list row (by name); stops and returns fn's negative value. */
int pg_seos_list(struct pg_seos *os, int (*fn)(void *arg, const struct pg_seos_entry *e),
		 void *arg);
/*
 * The same rows read through another process's store connection (the NFC
 * switch follows the SE OS's list this way): no device key, no migration;
 * PG_ESTORE (or the store's error) while the SE OS has not made its tables.
 */
int pg_seos_list_store(struct pg_store *st, int (*fn)(void *arg, const struct pg_seos_entry *e),
		       void *arg);

/* ---------------- the daemon (`payguard seos serve`) ---------------- */

struct pg_seos_serve_opts {
	const char *sock;  /* UNIX socket for clients */
	const char *watch; /* directory of endpoint files "<name>.se" (NULL: none) */
	/*
	 * Directory of ports (NULL: none): each authenticated SE is also served
	 * there as unix:<ports>/<name>.sock in the T=1 card role through the
	 * converter (pg_conv_port_start), the way the NFC switch's master ports
	 * reach the SE OS's SEs. Raw APDU access: keep it private (0700).
	 */
	const char *ports;
	int pcsc; /* follow PC/SC reader events */
	const char *db, *devkey;
	const struct pg_seos_keystore *ks;
	volatile int *stop;	  /* set non-zero to stop */
	void (*ready)(void *arg); /* called once listening (may be NULL) */
	void *ready_arg;
};
struct pg_seos_server;
int pg_seos_serve_new(struct pg_seos_server **out, const struct pg_seos_serve_opts *o);
/* Runs until *o->stop; then ends every session and waits for the clients. */
int pg_seos_serve_run(struct pg_seos_server *s);
void pg_seos_serve_free(struct pg_seos_server *s);
/*
 * Attaches an SE by hand (what an endpoint file does): opens it through the
 * converter by its link address (pg_conv_link_open: T=1/SWP/SPI sockets, a
 * VSE's endpoint, a PC/SC reader), binds it as the converter interface `name`
 * and runs the connect flow over that interface; client sessions and the port
 * use the same interface.
 */
int pg_seos_serve_attach(struct pg_seos_server *s, const char *name, const char *link,
			 const char *addr);

/* The demonstration (`payguard seos demo`), printed to out. */
int pg_seos_demo(FILE *out);

/* ---------------- the test SE: the GP card with the SE OS's profile ---------------- */

struct pg_gp_card;
/*
 * The card profile of the SE OS's test SEs, on the GlobalPlatform card of
 * src/se/card (include/payguard/card_gp.h): an ATR offering T=0 and T=1 with
 * IFSC 254 and category-80 card capabilities (extended lengths, 8 logical
 * channels), IC serial `serial` in the CPLC, CIN "PG" 00 02 || serial, IIN
 * 89 50 47, the ISD's SCP03 key set (KVN 30) either `keys` or `master`
 * diversified by the SE identity (what the key store line "master 30 HEX"
 * derives), applets test, echo (at A0000000041010) and ARA-M serving `rules`
 * (the FF40 object GET DATA [All] answers; NULL: everyone may use
 * everything), configuration version `version` (GET DATA DF50), or none.
 */
struct pg_seos_sim_card_cfg {
	uint32_t serial;
	const uint8_t *master; /* 16, 24 or 32 bytes; or NULL and keys */
	size_t master_len;
	const struct pg_scp03_keys *keys;
	uint32_t version; /* 0: 1 */
	const uint8_t *rules;
	size_t rules_len;
	int no_version; /* GET DATA DF50 answers 6A88, as a plain GP ISD does */
};
int pg_seos_sim_card_new(struct pg_gp_card **out, const struct pg_seos_sim_card_cfg *cfg);
/* The SE identity (CPLC fields) a simulated card with this IC serial reports. */
int pg_seos_sim_id(uint32_t serial, uint8_t id[PG_SEOS_ID_LEN]);

/*
 * A test SE (the profile above) served on unix:sock_path in the card role of
 * `link`, in its own thread, keyed by pg_scp03_diversify(master, its SE id) with KVN 0x30 (what
 * the key store line "master 30 <master>" derives).
 */
struct pg_seos_sim;
int pg_seos_sim_start(struct pg_seos_sim **out, const char *name, const char *link, uint32_t serial,
		      const uint8_t master[16], const char *sock_path);
const char *pg_seos_sim_addr(const struct pg_seos_sim *s);
/* Writes the endpoint file NAME.se (link=, addr=, kind=sim) into watch, atomically. */
int pg_seos_sim_announce(const struct pg_seos_sim *s, const char *watch);
/* Stops serving and frees; NULL is fine. */
void pg_seos_sim_stop(struct pg_seos_sim *s);

#endif
