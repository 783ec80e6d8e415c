/*
 * The load plot read back (issue 17): an estimate of four behaviours is drawn
 * as PNG and its pixels checked where each VM must be: the colour says the
 * behaviour (CPU red, disk orange, network green, light grey) whatever the
 * type's number, a VM at 100 % sits inside the frame, the four legend
 * markers have four different shapes, and the SVG output is an SVG.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "load/load_int.h"
#include "payguard/load.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct group {
	const char *name;
	double f[PG_LOAD_NFEAT];
};

/* cpu at 100 % (the right edge) and network at the top of the I/O scale. */
static const struct group groups[] = {
    {"cpu", {1.0, 0.1, 0.0, 0.0}},
    {"disk", {0.1, 0.1, 0.7, 0.0}},
    {"net", {0.1, 0.1, 0.0, 1.0}},
    {"light", {0.03, 0.03, 0.02, 0.02}},
};

static struct pg_load_est *
estimate(void)
{
	struct pg_load_params p;
	struct pg_load_est *e;
	double f[20 * PG_LOAD_NFEAT];
	char vm[32];

	pg_load_params_init(&p);
	p.k2 = 4;
	p.n_threads = 1;
	assert_int_equal(pg_load_est_new(&e, &p), 0);
	for (int g = 0; g < 4; g++)
		for (int v = 0; v < 3; v++) {
			for (int i = 0; i < 20; i++)
				for (int j = 0; j < PG_LOAD_NFEAT; j++)
					f[i * PG_LOAD_NFEAT + j] = groups[g].f[j];
			snprintf(vm, sizeof(vm), "%s-%d", groups[g].name, v);
			assert_int_equal(pg_load_est_add_features(e, vm, f, 20), 0);
		}
	assert_int_equal(pg_load_est_finish(e), 0);
	return e;
}

struct img {
	cairo_surface_t *sf;
	unsigned char *data;
	int stride;
};

static void
rgb(const struct img *im, int x, int y, double c[3])
{
	uint32_t px =
	    *(const uint32_t *)(im->data + (size_t)y * (size_t)im->stride + 4 * (size_t)x);

	c[0] = ((px >> 16) & 0xff) / 255.0;
	c[1] = ((px >> 8) & 0xff) / 255.0;
	c[2] = (px & 0xff) / 255.0;
}

/* Where the plot puts a VM of features f (plot.c's mapping). */
static void
where(const double f[PG_LOAD_NFEAT], int *x, int *y)
{
	double pw = LOAD_PLOT_W - LOAD_PLOT_ML - LOAD_PLOT_MR;
	double ph = LOAD_PLOT_H - LOAD_PLOT_MT - LOAD_PLOT_MB;
	double cx = f[0] > f[1] ? f[0] : f[1], cy = f[2] > f[3] ? f[2] : f[3];

	*x = (int)lround(LOAD_PLOT_ML + LOAD_PLOT_PAD + (pw - 2 * LOAD_PLOT_PAD) * cx);
	*y = (int)lround(LOAD_PLOT_MT + LOAD_PLOT_PAD + (ph - 2 * LOAD_PLOT_PAD) * (1 - cy));
}

static void
test_png(void **state)
{
	struct pg_load_est *e = estimate();
	char path[] = "/tmp/pg-plot-XXXXXX.png";
	int fd = mkstemps(path, 4);
	struct img im;
	double c[3];
	unsigned char mask[4][20][20];

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(pg_load_plot(e, path), 0);
	im.sf = cairo_image_surface_create_from_png(path);
	assert_int_equal(cairo_surface_status(im.sf), CAIRO_STATUS_SUCCESS);
	assert_int_equal(cairo_image_surface_get_width(im.sf), LOAD_PLOT_W);
	im.data = cairo_image_surface_get_data(im.sf);
	im.stride = cairo_image_surface_get_stride(im.sf);
	/* The colour is the behaviour's. */
	for (int g = 0; g < 4; g++) {
		int x, y;

		where(groups[g].f, &x, &y);
		rgb(&im, x, y, c);
		print_message("%s at (%d, %d): %.2f %.2f %.2f\n", groups[g].name, x, y, c[0], c[1],
			      c[2]);
		switch (g) {
		case 0: /* red */
			assert_true(c[0] > 0.6 && c[1] < 0.4 && c[2] < 0.4);
			break;
		case 1: /* orange */
			assert_true(c[0] > 0.8 && c[1] > 0.35 && c[1] < 0.7 && c[2] < 0.35);
			break;
		case 2: /* green */
			assert_true(c[1] > c[0] + 0.2 && c[1] > c[2] + 0.2);
			break;
		default: /* grey, not white */
			assert_true(fabs(c[0] - c[1]) < 0.06 && fabs(c[1] - c[2]) < 0.06 &&
				    c[0] < 0.8);
		}
	}
	/* The VM at 100 % CPU stays inside the frame: outside it, white. */
	{
		int x, y, border = LOAD_PLOT_W - LOAD_PLOT_MR;

		where(groups[0].f, &x, &y);
		assert_true(x < border - 4);
		for (int dx = 1; dx <= 6; dx++) {
			rgb(&im, border + dx, y, c);
			assert_true(c[0] > 0.95 && c[1] > 0.95 && c[2] > 0.95);
		}
	}
	/* The legend's markers: four different shapes (as pixel masks). */
	for (int t = 0; t < 4; t++) {
		int x0 = LOAD_PLOT_LEGEND_X - 10, y0 = (int)LOAD_PLOT_LEGEND_Y(t) - 4 - 10;

		for (int y = 0; y < 20; y++)
			for (int x = 0; x < 20; x++) {
				rgb(&im, x0 + x, y0 + y, c);
				mask[t][y][x] = (c[0] + c[1] + c[2]) < 2.4;
			}
	}
	for (int a = 0; a < 4; a++)
		for (int b = a + 1; b < 4; b++) {
			int diff = 0;

			for (int y = 0; y < 20; y++)
				for (int x = 0; x < 20; x++)
					diff += mask[a][y][x] != mask[b][y][x];
			print_message("legend shapes %d and %d differ in %d pixels\n", a, b, diff);
			assert_true(diff > 12);
		}
	cairo_surface_destroy(im.sf);
	unlink(path);
	pg_load_est_free(e);
}

static void
test_svg(void **state)
{
	struct pg_load_est *e = estimate();
	char path[] = "/tmp/pg-plot-XXXXXX.svg", buf[512];
	int fd = mkstemps(path, 4);
	FILE *f;
	size_t n;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(pg_load_plot(e, path), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	assert_non_null(strstr(buf, "<?xml"));
	assert_non_null(strstr(buf, "<svg"));
	assert_non_null(strstr(buf, "viewBox=\"0 0 1060 700\""));
	unlink(path);
	pg_load_est_free(e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_png),
	    cmocka_unit_test(test_svg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
