/*
 * The SE OS's test SEs (issue 7; `payguard seos sim`, `seos demo`, the
 * daemon's seos service, issue 9, and the tests): the GlobalPlatform card of
 * src/se/card configured by the SE OS's card profile (issue 16 item 1: one
 * card runtime), keyed by pg_scp03_diversify(master, its SE id), served on a
 * UNIX socket in the card role of one link driver, in its own thread, and
 * announced to the daemon with an endpoint file.
 */
#include "payguard/card.h"
#include "payguard/card_gp.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/log.h"
#include "payguard/mem.h"
#include "payguard/seos.h"
#include "payguard/stream.h"
#include "payguard/tlv.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * ATR: T=0 and T=1 offered, IFSC 254 (TA3), historical bytes of category 80
 * with card capabilities (ISO/IEC 7816-4 8.1.1.2.7, tag 73): selection by
 * full DF name, extended Lc/Le, logical channels assigned by the card, 8+.
 */
static const uint8_t atr_body[] = {0x3B, 0x85, 0x80, 0x11, 0xFE, 0x80, 0x73, 0x80, 0x21, 0x5F};
/* The default rules: every client, every application, every command (FF40's value). */
static const uint8_t default_rules[] = {0xE2, 0x0B, 0xE1, 0x04, 0x4F, 0x00, 0xC1,
					0x00, 0xE3, 0x03, 0xD0, 0x01, 0x01};
static const uint8_t sim_iin[] = {0x89, 0x50, 0x47};
static const char *const sim_applets[] = {"test", "echo@A0000000041010", "aram"};

int
pg_seos_sim_id(uint32_t serial, uint8_t id[PG_SEOS_ID_LEN])
{
	struct pg_card_rt *rt = NULL;
	uint8_t cplc[64];
	int rc = pg_card_sim_new(&rt, serial, NULL, 0);

	/* CPLC value after 9F7F 2A: fabricator, type (4), serial at 12 (4), batch (2). */
	if (rc == 0 && (rc = pg_card_rt_cplc(rt, cplc, sizeof(cplc))) >= 45) {
		memcpy(id, cplc + 3, 4);
		memcpy(id + 4, cplc + 3 + 12, 6);
		rc = 0;
	} else if (rc >= 0) {
		rc = pg_error(PG_EPROTO, "seos", "short CPLC");
	}
	pg_card_rt_free(rt);
	return rc;
}

/* The value of the FF40 object GET DATA [All] answers (the ARA-M's stored rules). */
static int
rules_value(const uint8_t *r, size_t n, const uint8_t **v, size_t *vl)
{
	struct pg_tlv t;
	int k;

	if (!r) {
		*v = default_rules;
		*vl = sizeof(default_rules);
		return 0;
	}
	k = pg_tlv_next(&t, r, n);
	if (k <= 0 || (size_t)k != n || t.tag != 0xFF40)
		return pg_error(PG_EINVAL, "seos", "rules must be one FF40 object (%zu bytes)", n);
	*v = t.val;
	*vl = t.len;
	return 0;
}

int
pg_seos_sim_card_new(struct pg_gp_card **out, const struct pg_seos_sim_card_cfg *cfg)
{
	uint8_t atr[sizeof(atr_body) + 1], id[PG_SEOS_ID_LEN], tck = 0;
	struct pg_scp03_keys keys;
	struct pg_gp_config g = {.atr = atr,
				 .atr_len = sizeof(atr),
				 .serial = cfg->serial,
				 .keys = &keys,
				 .applets = sim_applets,
				 .n_applets = 3,
				 .iin = sim_iin,
				 .iin_len = sizeof(sim_iin),
				 .cfg_version = cfg->version ? cfg->version : 1,
				 .no_cfg_version = cfg->no_version};
	int rc;

	*out = NULL;
	memcpy(atr, atr_body, sizeof(atr_body));
	for (size_t i = 1; i < sizeof(atr_body); i++)
		tck ^= atr_body[i];
	atr[sizeof(atr_body)] = tck;
	if ((rc = pg_seos_sim_id(cfg->serial, id)) < 0 ||
	    (rc = rules_value(cfg->rules, cfg->rules_len, &g.aram_rules, &g.aram_rules_len)) < 0)
		return rc;
	/* CIN: "PG" 00 02 and the IC serial, as an 8-byte number. */
	memcpy(g.cin, "\x50\x47\x00\x02", 4);
	memcpy(g.cin + 4, id + 4, 4);
	if (cfg->keys)
		keys = *cfg->keys;
	else if (!cfg->master)
		return pg_error(PG_EINVAL, "seos", "a test SE needs keys or a master key");
	else if ((rc = pg_scp03_diversify(cfg->master, cfg->master_len, id, sizeof(id), 0x30,
					  &keys)) < 0)
		return rc;
	rc = pg_gp_card_new(out, &g);
	pg_memzero(&keys, sizeof(keys));
	return rc;
}

struct pg_seos_sim {
	char name[64], link[16], addr[600];
	struct pg_gp_card *card;
	int fd, running;
	pthread_t t;
};

static void *
sim_thread(void *arg)
{
	struct pg_seos_sim *m = arg;

	(void)pg_card_serve_listener(m->fd, pg_link_find(m->link), pg_gp_card_card(m->card), NULL,
				     0);
	return NULL;
}

int
pg_seos_sim_start(struct pg_seos_sim **out, const char *name, const char *link, uint32_t serial,
		  const uint8_t master[16], const char *sock_path)
{
	struct pg_seos_sim_card_cfg cfg = {
	    .serial = serial, .master = master, .master_len = 16, .version = 1};
	struct pg_seos_sim *s;
	int rc;

	*out = NULL;
	if (!pg_link_find(link))
		return pg_error(PG_EINVAL, "seos", "no link driver '%s'", link);
	s = calloc(1, sizeof(*s));
	if (!s)
		return PG_ENOMEM;
	s->fd = -1;
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->link, sizeof(s->link), "%s", link);
	snprintf(s->addr, sizeof(s->addr), "unix:%s", sock_path);
	rc = pg_seos_sim_card_new(&s->card, &cfg);
	if (rc < 0)
		goto fail;
	unlink(sock_path); /* a leftover of an earlier run */
	s->fd = pg_stream_listen(s->addr);
	if (s->fd < 0) {
		rc = s->fd;
		goto fail;
	}
	if (pthread_create(&s->t, NULL, sim_thread, s) != 0) {
		rc = pg_error(PG_ESYS, "seos", "cannot start the thread of SE '%s'", name);
		goto fail;
	}
	s->running = 1;
	*out = s;
	return 0;
fail:
	pg_seos_sim_stop(s);
	return rc;
}

const char *
pg_seos_sim_addr(const struct pg_seos_sim *s)
{
	return s->addr;
}

int
pg_seos_sim_announce(const struct pg_seos_sim *s, const char *watch)
{
	char path[700], body[800];
	int n;

	snprintf(path, sizeof(path), "%s/%s.se", watch, s->name);
	n = snprintf(body, sizeof(body), "link=%s\naddr=%s\nkind=sim\n", s->link, s->addr);
	return pg_write_file_atomic(path, body, (size_t)n, 0600);
}

void
pg_seos_sim_stop(struct pg_seos_sim *s)
{
	if (!s)
		return;
	if (s->running) {
		shutdown(s->fd, SHUT_RDWR);
		close(s->fd);
		pthread_join(s->t, NULL);
	} else if (s->fd >= 0) {
		close(s->fd);
	}
	pg_gp_card_free(s->card);
	free(s);
}
