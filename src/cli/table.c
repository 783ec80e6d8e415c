/* Plain-text tables for human output; --json is the machine form. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pg_table {
	size_t ncols, nrows, cap;
	char **cells; /* row-major, (nrows + 1) * ncols, row 0 = headers */
};

struct pg_table *
pg_table_new(size_t ncols, const char *const *headers)
{
	struct pg_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ncols = ncols;
	if (pg_table_add(t, headers) < 0) {
		free(t);
		return NULL;
	}
	return t;
}

int
pg_table_add(struct pg_table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));

		if (!c)
			return -1;
		t->cells = c;
		t->cap = cap;
	}
	for (size_t i = 0; i < t->ncols; i++)
		t->cells[t->nrows * t->ncols + i] = strdup(cells[i] ? cells[i] : "-");
	t->nrows++;
	return 0;
}

void
pg_table_print(struct pg_table *t)
{
	size_t w[64] = {0};
	size_t n = t->ncols < 64 ? t->ncols : 64;

	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < n; c++) {
			const char *s = t->cells[r * t->ncols + c];
			size_t l = s ? strlen(s) : 1;

			if (l > w[c])
				w[c] = l;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < n; c++) {
			const char *s = t->cells[r * t->ncols + c];

			if (c + 1 < n)
				printf("%-*s  ", (int)w[c], s ? s : "-");
			else
				printf("%s", s ? s : "-");
		}
		putchar('\n');
	}
}

void
pg_table_free(struct pg_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
