/*
 * The VSE registry (src/se/vse/registry.c, issue 14) through the store API:
 * schema, insert with its id, a name unique across nodes, listing by node
 * and of every node, state updates, deletion, and the display JSON of
 * another node's VSE (no key in it). On a SQLite file; given
 * --postgres-url-file FILE, in a database of its own on the PostgreSQL
 * fixture's server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "payguard/db.h"
#include "pg_testdb.h"
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/vse.h"
#include "se/vse/vse_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char url[4096];

struct seen {
	int n;
	char names[8][40];
	char nodes[8][40];
	int running[8];
	json_t *json[8];
};

static int
collect(void *arg, const struct pg_vse_entry *e)
{
	struct seen *s = arg;

	if (s->n >= 8)
		return PG_ERANGE;
	snprintf(s->names[s->n], sizeof(s->names[0]), "%s", e->name);
	snprintf(s->nodes[s->n], sizeof(s->nodes[0]), "%s", e->node);
	s->running[s->n] = e->running;
	s->json[s->n] = pg_vse_entry_json(e);
	s->n++;
	return 0;
}

static void
seen_release(struct seen *s)
{
	for (int i = 0; i < s->n; i++)
		json_decref(s->json[i]);
	memset(s, 0, sizeof(*s));
}

static const char cfg_a[] =
    "{\"name\":\"va\",\"arena\":262144,\"pmem\":65536,\"applets\":[\"test\"],"
    "\"keys\":{\"kvn\":48,\"master_kw\":\"00112233445566778899AABBCCDDEEFF0011223344556677\"},"
    "\"expose\":{\"link\":\"vpcd\",\"slot\":3}}";
static const char cfg_b[] =
    "{\"name\":\"vb\",\"arena\":262144,\"pmem\":65536,\"applets\":[],"
    "\"keys\":{\"kvn\":48,\"enc_kw\":\"AA\",\"mac_kw\":\"BB\",\"dek_kw\":"
    "\"CC\"},\"expose\":{\"link\":\"t1\",\"listen\":\"tcp:127.0.0.1:4100\"}}";

static void
test_registry(void **state)
{
	struct pg_db *db = NULL;
	struct seen s = {0};
	int64_t ida = 0, idb = 0, idx = 0;
	char *text;

	(void)state;
	assert_int_equal(pg_db_open(&db, url), 0);
	assert_int_equal(pg_vse_registry_migrate(db), 0);
	assert_int_equal(pg_vse_registry_migrate(db), 0); /* again: nothing to do */
	assert_int_equal(pg_db_version(db, "vse"), 2);
	assert_int_equal(pgi_vse__reg_insert(db, "va", "node-a", cfg_a, 1000, &ida), 0);
	assert_int_equal(pgi_vse__reg_insert(db, "vb", "node-b", cfg_b, 1001, &idb), 0);
	assert_true(ida > 0 && idb > ida);
	/* a name is unique across nodes */
	assert_int_equal(pgi_vse__reg_insert(db, "va", "node-b", cfg_b, 1002, &idx), PG_EEXIST);

	/* by node, and every node */
	assert_int_equal(pg_vse_registry_list(db, "node-a", collect, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.names[0], "va");
	seen_release(&s);
	assert_int_equal(pg_vse_registry_list(db, "", collect, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(pg_vse_registry_list(db, NULL, collect, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.nodes[0], "node-a");
	assert_string_equal(s.nodes[1], "node-b");
	assert_int_equal(s.running[0], 1);
	/* the display JSON: node, state, address, request without the wrapped keys */
	text = json_dumps(s.json[0], JSON_SORT_KEYS);
	assert_non_null(text);
	assert_non_null(strstr(text, "\"node\": \"node-a\""));
	assert_non_null(strstr(text, "\"address\": \"vpcd slot 3\""));
	assert_non_null(strstr(text, "\"mode\": \"diversified\""));
	assert_null(strstr(text, "_kw"));
	assert_null(strstr(text, "00112233"));
	free(text);
	text = json_dumps(s.json[1], JSON_SORT_KEYS);
	assert_non_null(strstr(text, "\"address\": \"tcp:127.0.0.1:4100\""));
	assert_non_null(strstr(text, "\"mode\": \"explicit\""));
	free(text);
	seen_release(&s);

	/* state, then deletion; an unknown id is PG_ENOENT */
	assert_int_equal(pgi_vse__reg_update(db, ida, 0, 3, "signal 9 (Killed)", 2000), 0);
	assert_int_equal(pgi_vse__reg_set_config(db, idb, cfg_b), 0);
	assert_int_equal(pg_vse_registry_list(db, "node-a", collect, &s), 0);
	assert_int_equal(s.running[0], 0);
	text = json_dumps(s.json[0], 0);
	assert_non_null(strstr(text, "\"restarts\": 3"));
	assert_non_null(strstr(text, "\"last_exit\": \"signal 9 (Killed)\""));
	assert_non_null(strstr(text, "\"state\": \"stopped\""));
	free(text);
	seen_release(&s);
	assert_int_equal(pgi_vse__reg_delete(db, ida), 0);
	assert_int_equal(pgi_vse__reg_delete(db, ida), PG_ENOENT);
	assert_int_equal(pgi_vse__reg_update(db, ida, 1, 0, NULL, 1), PG_ENOENT);
	assert_int_equal(pg_vse_registry_list(db, NULL, collect, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.names[0], "vb");
	seen_release(&s);
	pg_db_free(db);
}

/* A database of this test's own on the fixture's server; its URL into url. */
static int
postgres_db(const char *url_file)
{
	return pg_testdb_make(url_file, "vse_registry_unit", url, sizeof(url));
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_registry)};
	char dir[] = "/tmp/pg-test-vsereg-XXXXXX", cmd[64];
	int rc;

	if (argc == 3 && strcmp(argv[1], "--postgres-url-file") == 0) {
		if (postgres_db(argv[2]) < 0)
			return 1;
		return cmocka_run_group_tests_name("vse_registry_postgres", tests, NULL, NULL);
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(url, sizeof(url), "sqlite:%s/t.db", dir);
	rc = cmocka_run_group_tests_name("vse_registry_sqlite", tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
