/*
 * Fuzzes the VSE's card (seed 6: vse-card's GP card with its allocations in
 * a 64 KiB VSE arena and its image in a memfd): a sequence of C-APDUs, each
 * prefixed by a 2-byte length, as a host on the link sends them. Every
 * command must get a well-formed R-APDU; the arena must never be exceeded.
 */
#include "payguard/arena.h"
#include "payguard/vse.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pg_vse_request r;
	static uint8_t rapdu[PG_APDU_MAX_R];
	struct pg_arena *a = NULL;
	struct pg_vse_card *c = NULL;
	const struct pg_card *card;
	int fd = memfd_create("pmem", 0);

	if (fd < 0)
		return 0;
	memset(&r, 0, sizeof(r));
	strcpy(r.name, "f");
	r.arena_size = 64 * 1024;
	r.pmem_size = 8192;
	r.n_applets = 1;
	strcpy(r.applets[0], "test");
	r.keys.len = 16;
	r.keys.kvn = 0x30;
	memset(r.keys.enc, 0x40, 16);
	memset(r.keys.mac, 0x41, 16);
	memset(r.keys.dek, 0x42, 16);
	if (ftruncate(fd, 2 * (64 + 8192)) != 0 || pg_arena_new(&a, r.arena_size) != 0 ||
	    pg_vse_card_new(&c, &r, 1, a, fd) != 0)
		goto out;
	card = pg_vse_card_card(c);
	while (size >= 2) {
		size_t n = (size_t)(data[0] << 8 | data[1]), rl = sizeof(rapdu);

		data += 2, size -= 2;
		if (n > size)
			n = size;
		if (card->process(card->ctx, data, n, rapdu, &rl) == 0 &&
		    (rl < 2 || rl > sizeof(rapdu)))
			abort();
		data += n, size -= n;
	}
	{
		struct pg_arena_stats st;

		pg_arena_stats(a, &st);
		if (st.used > st.size)
			abort();
	}
out:
	pg_vse_card_free(c);
	pg_arena_free(a);
	close(fd);
	return 0;
}
