/*
 * A database of its own for a unit test on the `postgres` CTest fixture
 * (tests/fixtures/postgres.sh): read the fixture's URL from url_file, drop
 * and create database `name` there, and write that database's URL to out.
 * 0, or -1 with the reason on stderr.
 */
#ifndef PAYGUARD_TEST_PG_TESTDB_H
#define PAYGUARD_TEST_PG_TESTDB_H

#include <stddef.h>

int pg_testdb_make(const char *url_file, const char *name, char *out, size_t outlen);

#endif
