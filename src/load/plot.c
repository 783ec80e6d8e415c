/*
 * PNG scatter plot of an estimate (seed 3's characteristic types made
 * visible), drawn with cairo: one dot per VM at (compute, I/O) of its
 * characteristic value, coloured by type, with a legend.
 */
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/load.h"
#include "payguard/log.h"

#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define W  900
#define H  680
#define ML 70
#define MR 250
#define MT 40
#define MB 60

static const double palette[][3] = {
    {0.55, 0.55, 0.55}, {0.89, 0.10, 0.11}, {0.22, 0.49, 0.72}, {0.30, 0.69, 0.29},
    {0.60, 0.31, 0.64}, {1.00, 0.50, 0.00}, {0.65, 0.34, 0.16}, {0.97, 0.51, 0.75},
};

struct png_out {
	unsigned char *data;
	size_t len, cap;
};

static cairo_status_t
png_write(void *closure, const unsigned char *data, unsigned int length)
{
	struct png_out *o = closure;

	if (o->len + length > o->cap) {
		size_t ncap = (o->cap ? o->cap * 2 : 65536) + length;
		unsigned char *p = realloc(o->data, ncap);
		if (!p)
			return CAIRO_STATUS_NO_MEMORY;
		o->data = p;
		o->cap = ncap;
	}
	memcpy(o->data + o->len, data, length);
	o->len += length;
	return CAIRO_STATUS_SUCCESS;
}

int
pg_load_plot_png(const struct pg_load_est *e, const char *path)
{
	cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
	cairo_t *cr = cairo_create(sf);
	struct png_out out = {0};
	double pw = W - ML - MR, ph = H - MT - MB;
	char label[96];
	int rc = 0;

	cairo_set_source_rgb(cr, 1, 1, 1);
	cairo_paint(cr);
	cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, 13);
	/* Axes and grid at 0.25 steps. */
	cairo_set_line_width(cr, 1);
	for (int i = 0; i <= 4; i++) {
		double gx = ML + pw * i / 4, gy = MT + ph - ph * i / 4;
		cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
		cairo_move_to(cr, gx, MT);
		cairo_line_to(cr, gx, MT + ph);
		cairo_move_to(cr, ML, gy);
		cairo_line_to(cr, ML + pw, gy);
		cairo_stroke(cr);
		cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
		snprintf(label, sizeof(label), "%.2f", i / 4.0);
		cairo_move_to(cr, gx - 12, MT + ph + 18);
		cairo_show_text(cr, label);
		cairo_move_to(cr, ML - 40, gy + 4);
		cairo_show_text(cr, label);
	}
	cairo_set_source_rgb(cr, 0, 0, 0);
	cairo_rectangle(cr, ML, MT, pw, ph);
	cairo_stroke(cr);
	cairo_move_to(cr, ML + pw / 2 - 120, H - 18);
	cairo_show_text(cr, "compute: max(CPU, memory) characteristic");
	cairo_save(cr);
	cairo_move_to(cr, 20, MT + ph / 2 + 110);
	cairo_rotate(cr, -1.5707963);
	cairo_show_text(cr, "I/O: max(disk, network) characteristic");
	cairo_restore(cr);
	cairo_set_font_size(cr, 15);
	snprintf(label, sizeof(label), "payguard load estimate: %zu VMs, %zu types",
		 pg_load_est_count(e), pg_load_est_ntypes(e));
	cairo_move_to(cr, ML, 25);
	cairo_show_text(cr, label);
	cairo_set_font_size(cr, 13);
	for (size_t i = 0; i < pg_load_est_count(e); i++) {
		const struct pg_load_vm *v = pg_load_est_vm(e, i);
		const double *c = palette[(v->type < 0 ? 0 : v->type) % 8];
		double x = v->feat[0] > v->feat[1] ? v->feat[0] : v->feat[1];
		double y = v->feat[2] > v->feat[3] ? v->feat[2] : v->feat[3];

		cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.7);
		cairo_arc(cr, ML + pw * x, MT + ph - ph * y, 2.5, 0, 6.2831853);
		cairo_fill(cr);
	}
	for (size_t t = 0; t < pg_load_est_ntypes(e); t++) {
		const struct pg_load_type *ty = pg_load_est_type(e, t);
		const double *c = palette[t % 8];

		cairo_set_source_rgb(cr, c[0], c[1], c[2]);
		cairo_arc(cr, W - MR + 25, MT + 20 + 24.0 * (double)t, 6, 0, 6.2831853);
		cairo_fill(cr);
		cairo_set_source_rgb(cr, 0, 0, 0);
		snprintf(label, sizeof(label), "%s (%zu, load %.0f)", ty->name, ty->count,
			 ty->mean_load);
		cairo_move_to(cr, W - MR + 38, MT + 25 + 24.0 * (double)t);
		cairo_show_text(cr, label);
	}
	cairo_surface_flush(sf);
	if (cairo_surface_write_to_png_stream(sf, png_write, &out) != CAIRO_STATUS_SUCCESS) {
		rc = pg_error(PG_ENOMEM, "load", "png encoding");
		goto done;
	}
	/* Written beside its target and renamed: never a half-written PNG. */
	rc = pg_write_file_atomic(path, out.data, out.len, 0644);
done:
	free(out.data);
	cairo_destroy(cr);
	cairo_surface_destroy(sf);
	/* Drop cairo's and fontconfig's caches: a plot is drawn once per run. */
	cairo_debug_reset_static_data();
	FcFini();
	return rc;
}
