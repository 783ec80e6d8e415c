/*
 * Partition tables: MBR with extended/logical partitions (the EBR chain)
 * and GPT (UEFI spec 2.x chapter 5) with its header and entry-array CRC32s
 * checked; the backup GPT is used when only the primary is damaged.
 */
#include "image_int.h"

#include "payguard/error.h"
#include "payguard/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t
le64(const uint8_t *p)
{
	return le32(p) | ((uint64_t)le32(p + 4) << 32);
}

static void
guid_str(const uint8_t *g, char *out, size_t n)
{
	snprintf(out, n, "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X", le32(g),
		 g[4] | (g[5] << 8), g[6] | (g[7] << 8), g[8], g[9], g[10], g[11], g[12], g[13],
		 g[14], g[15]);
}

static int
is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void
utf16_name(const uint8_t *p, size_t units, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < units; i++) {
		unsigned c = p[2 * i] | (p[2 * i + 1] << 8);

		if (!c)
			break;
		if (c < 0x80 && o + 1 < outlen) {
			out[o++] = (char)(c >= 0x20 ? c : '?');
		} else if (c < 0x800 && o + 2 < outlen) {
			out[o++] = (char)(0xC0 | (c >> 6));
			out[o++] = (char)(0x80 | (c & 0x3F));
		} else if (o + 3 < outlen) {
			if (c >= 0xD800 && c < 0xE000)
				c = 0xFFFD; /* surrogates: not worth pairing for a label */
			out[o++] = (char)(0xE0 | (c >> 12));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
			out[o++] = (char)(0x80 | (c & 0x3F));
		}
	}
	out[o] = 0;
}

/* Validates one GPT header at lba and loads its entries. */
static int
gpt_try(struct pg_bdev *d, uint64_t ss, uint64_t lba, struct pg_ptable *pt, const char *which)
{
	uint8_t *h = NULL, *ents = NULL;
	uint32_t hsize, hcrc, n, esz;
	uint64_t elba, first, last;
	size_t elen;
	int rc = 0;

	if ((lba + 1) * ss > d->size)
		return pg_error(PG_ECORRUPT, "gpt", "%s GPT header outside the disk", which);
	h = malloc(ss);
	if (!h)
		return PG_ENOMEM;
	PG_TRY_GOTO(pgi_bdev_read(d, lba * ss, h, ss), out, "gpt", "header");
	if (memcmp(h, "EFI PART", 8) != 0) {
		rc = pg_error(PG_ECORRUPT, "gpt", "%s GPT header has no signature", which);
		goto out;
	}
	hsize = le32(h + 12);
	if (hsize < 92 || hsize > ss) {
		rc = pg_error(PG_ECORRUPT, "gpt", "%s GPT header size %u", which, hsize);
		goto out;
	}
	hcrc = le32(h + 16);
	memset(h + 16, 0, 4);
	if ((uint32_t)crc32(0, h, hsize) != hcrc) {
		rc = pg_error(PG_ECORRUPT, "gpt", "%s GPT header CRC32 mismatch", which);
		goto out;
	}
	if (le64(h + 24) != lba) {
		rc = pg_error(PG_ECORRUPT, "gpt", "%s GPT header is not at its own LBA", which);
		goto out;
	}
	first = le64(h + 40);
	last = le64(h + 48);
	elba = le64(h + 72);
	n = le32(h + 80);
	esz = le32(h + 84);
	if (n > 4096 || esz < 128 || esz > 4096 || esz % 8) {
		rc = pg_error(PG_ECORRUPT, "gpt", "%s GPT has %u entries of %u bytes", which, n,
			      esz);
		goto out;
	}
	elen = (size_t)n * esz;
	if (elba > d->size / ss || elen > d->size - elba * ss) {
		rc = pg_error(PG_ECORRUPT, "gpt", "%s GPT entry array outside the disk", which);
		goto out;
	}
	ents = malloc(elen ? elen : 1);
	if (!ents) {
		rc = PG_ENOMEM;
		goto out;
	}
	PG_TRY_GOTO(pgi_bdev_read(d, elba * ss, ents, elen), out, "gpt", "entries");
	if ((uint32_t)crc32(0, ents, (uInt)elen) != le32(h + 88)) {
		rc = pg_error(PG_ECORRUPT, "gpt", "%s GPT partition entry array CRC32 mismatch",
			      which);
		goto out;
	}
	strcpy(pt->scheme, "gpt");
	guid_str(h + 56, pt->disk_guid, sizeof(pt->disk_guid));
	pt->nparts = 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = ents + (size_t)i * esz;
		uint64_t s = le64(e + 32), l = le64(e + 40);
		struct pg_part *p;

		if (is_zero(e, 16))
			continue;
		if (s > l || s < first || l > last || (l + 1) > d->size / ss) {
			rc = pg_error(PG_ECORRUPT, "gpt",
				      "GPT partition %u (LBA %llu..%llu) outside the usable area",
				      i + 1, (unsigned long long)s, (unsigned long long)l);
			goto out;
		}
		if (pt->nparts >= PG_MAX_PARTS)
			break;
		p = &pt->parts[pt->nparts++];
		memset(p, 0, sizeof(*p));
		p->index = (int)i + 1;
		p->start = s * ss;
		p->size = (l - s + 1) * ss;
		guid_str(e, p->type, sizeof(p->type));
		guid_str(e + 16, p->uuid, sizeof(p->uuid));
		utf16_name(e + 56, 36, p->name, sizeof(p->name));
	}
out:
	free(h);
	free(ents);
	return rc;
}

static int
add_mbr_part(struct pg_bdev *d, struct pg_ptable *pt, int index, uint8_t type, uint64_t start,
	     uint64_t count, int logical)
{
	struct pg_part *p;

	if (start * 512 > d->size || count * 512 > d->size - start * 512)
		return pg_error(PG_ECORRUPT, "mbr",
				"MBR partition %d (sector %llu, %llu sectors) outside the disk",
				index, (unsigned long long)start, (unsigned long long)count);
	if (pt->nparts >= PG_MAX_PARTS)
		return pg_error(PG_ETOOBIG, "mbr", "more than %d partitions", PG_MAX_PARTS);
	p = &pt->parts[pt->nparts++];
	memset(p, 0, sizeof(*p));
	p->index = index;
	p->start = start * 512;
	p->size = count * 512;
	p->logical = logical;
	snprintf(p->type, sizeof(p->type), "0x%02x", type);
	return 0;
}

static int
is_extended(uint8_t t)
{
	return t == 0x05 || t == 0x0f || t == 0x85;
}

/* A protective MBR's GPT: the primary header, else the backup one (with a
 * warning). 4K-sector disks keep the GPT header at byte 4096. */
static int
gpt_read(struct pg_bdev *d, struct pg_ptable *pt)
{
	uint64_t ss = 512;
	uint8_t sig[8];
	int rc;

	if (d->size > 8192 && pgi_bdev_read(d, 512, sig, 8) == 0 && memcmp(sig, "EFI PART", 8) &&
	    pgi_bdev_read(d, 4096, sig, 8) == 0 && memcmp(sig, "EFI PART", 8) == 0)
		ss = 4096;
	rc = gpt_try(d, ss, 1, pt, "primary");
	if (rc < 0) {
		char first[256];

		snprintf(first, sizeof(first), "%s", pg_last_error());
		rc = gpt_try(d, ss, d->size / ss - 1, pt, "backup");
		if (rc < 0)
			return pg_error_ctx(PG_ECORRUPT, "gpt", "corrupt GPT: %s", first);
		pg_warn("gpt", "primary GPT damaged (%s); using the backup", first);
	}
	return 0;
}

/* The logical partitions: the chain of EBRs inside the extended partition
 * at sector ext_start (ext_size sectors), numbered from 5. */
static int
ebr_chain_read(struct pg_bdev *d, struct pg_ptable *pt, uint64_t ext_start, uint64_t ext_size)
{
	uint8_t ebr[512];
	uint64_t cur = ext_start;
	int rc, next_logical = 5;

	for (int hops = 0; hops < PG_MAX_PARTS; hops++) {
		const uint8_t *l, *nx;

		rc = pgi_bdev_read(d, cur * 512, ebr, 512);
		if (rc < 0)
			return rc;
		if (ebr[510] != 0x55 || ebr[511] != 0xAA)
			return pg_error(PG_ECORRUPT, "mbr", "EBR at sector %llu has no signature",
					(unsigned long long)cur);
		l = ebr + 446;
		nx = ebr + 462;
		if (l[4] && le32(l + 12)) {
			rc = add_mbr_part(d, pt, next_logical++, l[4], cur + le32(l + 8),
					  le32(l + 12), 1);
			if (rc < 0)
				return rc;
		}
		if (!is_extended(nx[4]) || le32(nx + 8) == 0)
			return 0;
		if (le32(nx + 8) >= ext_size)
			return pg_error(PG_ECORRUPT, "mbr",
					"EBR link outside the extended partition");
		if (ext_start + le32(nx + 8) <= cur)
			return pg_error(PG_ECORRUPT, "mbr", "EBR chain loops back");
		cur = ext_start + le32(nx + 8);
	}
	return pg_error(PG_ECORRUPT, "mbr", "EBR chain longer than %d", PG_MAX_PARTS);
}

/* The MBR's four primary entries, then the logical partitions of the first
 * extended one. */
static int
mbr_read(struct pg_bdev *d, const uint8_t mbr[512], struct pg_ptable *pt)
{
	uint64_t ext_start = 0, ext_size = 0;
	int rc;

	strcpy(pt->scheme, "mbr");
	for (int i = 0; i < 4; i++) {
		const uint8_t *e = mbr + 446 + 16 * i;
		uint8_t type = e[4];
		uint32_t start = le32(e + 8), count = le32(e + 12);

		if (type == 0 || count == 0)
			continue;
		rc = add_mbr_part(d, pt, i + 1, type, start, count, 0);
		if (rc < 0)
			return rc;
		if (is_extended(type) && !ext_start) {
			ext_start = start;
			ext_size = count;
		}
	}
	return ext_start ? ebr_chain_read(d, pt, ext_start, ext_size) : 0;
}

int
pgi_ptable_read(struct pg_bdev *d, struct pg_ptable *pt)
{
	uint8_t mbr[512];
	int rc;

	memset(pt, 0, sizeof(*pt));
	strcpy(pt->scheme, "none");
	if (d->size < 512)
		return 0;
	rc = pgi_bdev_read(d, 0, mbr, 512);
	if (rc < 0)
		return rc;
	if (mbr[510] != 0x55 || mbr[511] != 0xAA)
		return 0;
	for (int i = 0; i < 4; i++)
		if (mbr[446 + 16 * i + 4] == 0xEE)
			return gpt_read(d, pt);
	/* A FAT/NTFS boot sector also ends in 55AA: only take the entries if
	 * they are plausible (status byte 0x00 or 0x80). */
	for (int i = 0; i < 4; i++)
		if (mbr[446 + 16 * i] != 0 && mbr[446 + 16 * i] != 0x80)
			return 0;
	return mbr_read(d, mbr, pt);
}
