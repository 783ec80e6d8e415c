/*
 * Client-side driver for the SE OS integration test:
 *   seos_clients load SOCK AID NCLIENTS COUNT READER...
 *     NCLIENTS threads (readers round-robin), each on its own logical channel
 *     to AID, COUNT echo APDUs carrying (client, counter, salt); every response
 *     must be exactly its own command's data: none delivered to the wrong client.
 *   seos_clients detach SOCK AID GONE OK ENDPOINT_FILE
 *     opens a channel on reader GONE and on OK, removes GONE's endpoint file,
 *     then expects GONE to fail with "removed" and OK to keep working.
 */
#include "payguard/error.h"
#include "payguard/log.h"
#include "payguard/seos.h"
#include "payguard/seos_client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *sock;
static uint8_t aid[16];
static int aid_len, count;
static char **readers;
static int nreaders;

struct job {
	int idx;
	int rc;
	char err[300];
};

static void *
load_thread(void *arg)
{
	struct job *j = arg;
	struct pg_seos_client *c = NULL;
	uint32_t sess, ch;
	uint8_t cmd[5 + 16 + 1], resp[64];
	char app[32];
	int rc;

	snprintf(app, sizeof(app), "load-%d", j->idx);
	rc = pg_seos_client_connect(&c, sock, app);
	if (rc == 0)
		rc = pg_seos_client_open_session(c, readers[j->idx % nreaders], &sess);
	if (rc == 0)
		rc = pg_seos_client_open_channel(c, sess, 1, aid, (size_t)aid_len, 0, &ch, NULL,
						 NULL);
	for (int i = 0; rc == 0 && i < count; i++) {
		size_t rl = sizeof(resp);

		memcpy(cmd, "\x80\x01\x00\x00\x10", 5);
		for (int k = 0; k < 4; k++) {
			cmd[5 + k] = (uint8_t)(j->idx >> (24 - 8 * k));
			cmd[9 + k] = (uint8_t)(i >> (24 - 8 * k));
		}
		for (int k = 13; k < 21; k++)
			cmd[k] = (uint8_t)(j->idx * 31 + i * 7 + k);
		cmd[21] = 0x00;
		rc = pg_seos_client_transmit(c, ch, cmd, sizeof(cmd), resp, &rl);
		if (rc == 0 && (rl != 18 || memcmp(resp, cmd + 5, 16) != 0 || resp[16] != 0x90)) {
			rc = pg_error(PG_ECORRUPT, "test",
				      "client %d APDU %d: response is not this command's echo",
				      j->idx, i);
		}
	}
	if (rc < 0)
		snprintf(j->err, sizeof(j->err), "client %d: %s", j->idx, pg_last_error());
	j->rc = rc;
	pg_seos_client_close(c);
	return NULL;
}

static int
hexaid(const char *h)
{
	aid_len = 0;
	for (; h[0] && h[1] && aid_len < 16; h += 2) {
		unsigned v;

		if (sscanf(h, "%2x", &v) != 1)
			return -1;
		aid[aid_len++] = (uint8_t)v;
	}
	return aid_len >= 5 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	if (argc >= 7 && strcmp(argv[1], "load") == 0) {
		int n = atoi(argv[4]), bad = 0;
		pthread_t *t = calloc((size_t)n, sizeof(*t));
		struct job *j = calloc((size_t)n, sizeof(*j));

		sock = argv[2];
		if (hexaid(argv[3]) < 0 || !t || !j)
			return 2;
		count = atoi(argv[5]);
		readers = argv + 6;
		nreaders = argc - 6;
		for (int i = 0; i < n; i++) {
			j[i].idx = i;
			pthread_create(&t[i], NULL, load_thread, &j[i]);
		}
		for (int i = 0; i < n; i++) {
			pthread_join(t[i], NULL);
			if (j[i].rc < 0) {
				fprintf(stderr, "%s\n", j[i].err);
				bad++;
			}
		}
		printf("%d clients x %d APDUs: %d failed\n", n, count, bad);
		free(t);
		free(j);
		return bad ? 1 : 0;
	}
	if (argc == 7 && strcmp(argv[1], "detach") == 0) {
		struct pg_seos_client *c1 = NULL, *c2 = NULL;
		uint32_t s1, s2, ch1, ch2;
		uint8_t cmd[] = {0x80, 0x01, 0x00, 0x00, 0x02, 0xAB, 0xCD, 0x00}, r[16];
		size_t rl = sizeof(r);
		int rc;

		sock = argv[2];
		if (hexaid(argv[3]) < 0)
			return 2;
		if (pg_seos_client_connect(&c1, sock, "detach-1") < 0 ||
		    pg_seos_client_connect(&c2, sock, "detach-2") < 0 ||
		    pg_seos_client_open_session(c1, argv[4], &s1) < 0 ||
		    pg_seos_client_open_session(c2, argv[5], &s2) < 0 ||
		    pg_seos_client_open_channel(c1, s1, 1, aid, (size_t)aid_len, 0, &ch1, NULL,
						NULL) < 0 ||
		    pg_seos_client_open_channel(c2, s2, 1, aid, (size_t)aid_len, 0, &ch2, NULL,
						NULL) < 0 ||
		    pg_seos_client_transmit(c1, ch1, cmd, sizeof(cmd), r, &rl) < 0) {
			fprintf(stderr, "setup: %s\n", pg_last_error());
			return 1;
		}
		if (unlink(argv[6]) < 0) {
			perror("unlink");
			return 1;
		}
		/* Wait until the daemon lists the SE as detached. */
		for (int i = 0; i < 100; i++) {
			struct pg_seos_reader rd[64];
			size_t n = 0;
			int gone = 0;

			if (pg_seos_client_readers(c2, rd, 64, &n) == 0)
				for (size_t k = 0; k < n; k++)
					gone |= strcmp(rd[k].name, argv[4]) == 0 &&
						rd[k].state == PG_SEOS_DETACHED;
			if (gone)
				break;
			usleep(50000);
		}
		rl = sizeof(r);
		rc = pg_seos_client_transmit(c1, ch1, cmd, sizeof(cmd), r, &rl);
		if (rc != PG_ENOCARD || !strstr(pg_last_error(), "removed")) {
			fprintf(stderr, "removed SE: expected PG_ENOCARD 'removed', got %d '%s'\n",
				rc, pg_last_error());
			return 1;
		}
		printf("removed SE's client: %s\n", pg_last_error());
		rl = sizeof(r);
		rc = pg_seos_client_transmit(c2, ch2, cmd, sizeof(cmd), r, &rl);
		if (rc < 0 || rl != 4 || r[2] != 0x90) {
			fprintf(stderr, "other SE's session broke: %s\n", pg_last_error());
			return 1;
		}
		printf("other SE's client: still served\n");
		pg_seos_client_close(c1);
		pg_seos_client_close(c2);
		return 0;
	}
	fprintf(stderr, "usage: seos_clients load|detach ...\n");
	return 2;
}
