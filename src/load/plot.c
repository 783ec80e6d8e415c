/*
 * Scatter plot of an estimate (seed 3's characteristic types made visible),
 * drawn with cairo as PNG or SVG: one marker per VM at (compute, I/O) of its
 * characteristic value. Made to be read without help (issue 17): the x axis
 * is in percent of the provisioned CPU or memory, the y axis is a named
 * normalised I/O scale with its definition written on it, every type has
 * its own marker shape as well as a colour, colours follow the behaviour
 * (CPU red, memory blue, disk orange, network green, light grey, mixed
 * purple), markers stay inside the frame, and the legend gives each type's
 * VM count and mean load.
 */
#include "load_int.h"
#include "payguard/error.h"
#include "payguard/fs.h"
#include "payguard/load.h"
#include "payguard/log.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W   LOAD_PLOT_W
#define H   LOAD_PLOT_H
#define ML  LOAD_PLOT_ML
#define MR  LOAD_PLOT_MR
#define MT  LOAD_PLOT_MT
#define MB  LOAD_PLOT_MB
#define PAD LOAD_PLOT_PAD
#define R   4.5 /* marker size */

struct out_buf {
	unsigned char *data;
	size_t len, cap;
};

static cairo_status_t
out_write(void *closure, const unsigned char *data, unsigned int length)
{
	struct out_buf *o = closure;

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

/* The colour of a behaviour, read from the type's name; shade varies repeats. */
static void
behaviour_colour(const char *name, int repeat, double rgb[3])
{
	static const struct {
		const char *prefix;
		double rgb[3];
	} map[] = {
	    {"cpu", {0.84, 0.15, 0.16}},   {"memory", {0.12, 0.47, 0.71}},
	    {"disk", {1.00, 0.50, 0.05}},  {"network", {0.17, 0.63, 0.17}},
	    {"light", {0.50, 0.50, 0.50}}, {"mixed", {0.58, 0.40, 0.74}},
	};
	double f = repeat == 0 ? 1.0 : repeat == 1 ? 0.65 : 1.35;

	rgb[0] = rgb[1] = rgb[2] = 0.3;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strncmp(name, map[i].prefix, strlen(map[i].prefix)) == 0) {
			memcpy(rgb, map[i].rgb, sizeof(map[i].rgb));
			break;
		}
	for (int j = 0; j < 3; j++) {
		rgb[j] = f <= 1 ? rgb[j] * f : rgb[j] + (1 - rgb[j]) * (f - 1);
		if (rgb[j] > 1)
			rgb[j] = 1;
	}
}

/* Marker shape number s (0..7) centred at x, y; filled and outlined. */
static void
marker(cairo_t *cr, int s, double x, double y, double r, const double rgb[3], double alpha)
{
	cairo_new_path(cr);
	switch (s % 8) {
	case 0: /* circle */
		cairo_arc(cr, x, y, r, 0, 2 * M_PI);
		break;
	case 1: /* square */
		cairo_rectangle(cr, x - r * 0.85, y - r * 0.85, r * 1.7, r * 1.7);
		break;
	case 2: /* triangle up */
		cairo_move_to(cr, x, y - r * 1.1);
		cairo_line_to(cr, x + r, y + r * 0.8);
		cairo_line_to(cr, x - r, y + r * 0.8);
		cairo_close_path(cr);
		break;
	case 3: /* diamond */
		cairo_move_to(cr, x, y - r * 1.2);
		cairo_line_to(cr, x + r * 1.2, y);
		cairo_line_to(cr, x, y + r * 1.2);
		cairo_line_to(cr, x - r * 1.2, y);
		cairo_close_path(cr);
		break;
	case 4: /* triangle down */
		cairo_move_to(cr, x, y + r * 1.1);
		cairo_line_to(cr, x + r, y - r * 0.8);
		cairo_line_to(cr, x - r, y - r * 0.8);
		cairo_close_path(cr);
		break;
	case 5: /* plus (filled cross) */
		cairo_rectangle(cr, x - r, y - r * 0.35, 2 * r, r * 0.7);
		cairo_rectangle(cr, x - r * 0.35, y - r, r * 0.7, 2 * r);
		break;
	case 6: /* pentagon */
		for (int i = 0; i < 5; i++) {
			double a = -M_PI / 2 + i * 2 * M_PI / 5;
			if (i == 0)
				cairo_move_to(cr, x + r * 1.1 * cos(a), y + r * 1.1 * sin(a));
			else
				cairo_line_to(cr, x + r * 1.1 * cos(a), y + r * 1.1 * sin(a));
		}
		cairo_close_path(cr);
		break;
	default: /* hexagon */
		for (int i = 0; i < 6; i++) {
			double a = i * M_PI / 3;
			if (i == 0)
				cairo_move_to(cr, x + r * cos(a), y + r * sin(a));
			else
				cairo_line_to(cr, x + r * cos(a), y + r * sin(a));
		}
		cairo_close_path(cr);
		break;
	}
	cairo_set_fill_rule(cr, CAIRO_FILL_RULE_WINDING);
	cairo_set_source_rgba(cr, rgb[0], rgb[1], rgb[2], alpha);
	cairo_fill_preserve(cr);
	cairo_set_source_rgba(cr, rgb[0] * 0.5, rgb[1] * 0.5, rgb[2] * 0.5, 0.9);
	cairo_set_line_width(cr, 0.8);
	cairo_stroke(cr);
}

static double
clamp01(double v)
{
	return !(v > 0) ? 0 : v > 1 ? 1 : v;
}

static void
text(cairo_t *cr, double x, double y, const char *s)
{
	cairo_move_to(cr, x, y);
	cairo_show_text(cr, s);
}

/* Text centred on x (and right-aligned when align > 0). */
static void
text_at(cairo_t *cr, double x, double y, const char *s, int align)
{
	cairo_text_extents_t ex;

	cairo_text_extents(cr, s, &ex);
	cairo_move_to(cr, align > 0 ? x - ex.x_advance : x - ex.x_advance / 2, y);
	cairo_show_text(cr, s);
}

static void
draw(cairo_t *cr, const struct pg_load_est *e)
{
	double pw = W - ML - MR, ph = H - MT - MB;
	double ix = ML + PAD, iy = MT + PAD, iw = pw - 2 * PAD, ih = ph - 2 * PAD;
	size_t nt = pg_load_est_ntypes(e);
	double colour[64][3];
	char label[160];

	/* Colour per type by behaviour; a repeated behaviour gets another shade. */
	for (size_t t = 0; t < nt && t < 64; t++) {
		const struct pg_load_type *ty = pg_load_est_type(e, t);
		size_t plen = strcspn(ty->name, "-( ");
		int rep = 0;

		for (size_t u = 0; u < t; u++)
			if (strncmp(pg_load_est_type(e, u)->name, ty->name, plen) == 0)
				rep++;
		behaviour_colour(ty->name, rep, colour[t]);
	}
	cairo_set_source_rgb(cr, 1, 1, 1);
	cairo_paint(cr);
	cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, 13);
	cairo_set_line_width(cr, 1);
	/* Grid and ticks: x in percent, y on the named scale with its MB/s. */
	for (int i = 0; i <= 4; i++) {
		double gx = ix + iw * i / 4, gy = iy + ih - ih * i / 4;
		double share = i / 4.0;

		cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
		cairo_move_to(cr, gx, MT);
		cairo_line_to(cr, gx, MT + ph);
		cairo_move_to(cr, ML, gy);
		cairo_line_to(cr, ML + pw, gy);
		cairo_stroke(cr);
		cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
		snprintf(label, sizeof(label), "%d %%", i * 25);
		text_at(cr, gx, MT + ph + 18, label, 0);
		snprintf(label, sizeof(label), "%.2f", share);
		text_at(cr, ML - 8, gy + 4, label, 1);
	}
	cairo_set_source_rgb(cr, 0, 0, 0);
	cairo_rectangle(cr, ML, MT, pw, ph);
	cairo_stroke(cr);
	cairo_set_font_size(cr, 13);
	text_at(cr, ML + pw / 2, H - 40,
		"compute: the higher of CPU and memory use, % of provisioned", 0);
	cairo_set_font_size(cr, 11);
	cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
	snprintf(
	    label, sizeof(label),
	    "I/O scale 0-1: the higher of disk d/(d + %.0f MB/s) and network n/(n + %.1f MB/s)",
	    LOAD_DISK_REF / 1024, LOAD_NET_REF / 1024);
	text_at(cr, ML + pw / 2, H - 18, label, 0);
	cairo_set_font_size(cr, 13);
	cairo_set_source_rgb(cr, 0, 0, 0);
	cairo_save(cr);
	cairo_move_to(cr, 24, MT + ph / 2 + 150);
	cairo_rotate(cr, -M_PI / 2);
	cairo_show_text(cr, "I/O scale (0.5 = 20 MB/s disk or 12.5 MB/s net)");
	cairo_restore(cr);
	cairo_set_font_size(cr, 16);
	snprintf(label, sizeof(label), "Load types of %zu VMs (characteristic value of each VM)",
		 pg_load_est_count(e));
	text(cr, ML, 30, label);
	/* The VMs, clipped to the frame. */
	cairo_save(cr);
	cairo_rectangle(cr, ML, MT, pw, ph);
	cairo_clip(cr);
	for (size_t i = 0; i < pg_load_est_count(e); i++) {
		const struct pg_load_vm *v = pg_load_est_vm(e, i);
		size_t t = v->type < 0 ? 0 : (size_t)v->type;
		double x = clamp01(v->feat[0] > v->feat[1] ? v->feat[0] : v->feat[1]);
		double y = clamp01(v->feat[2] > v->feat[3] ? v->feat[2] : v->feat[3]);

		marker(cr, (int)(t % 8), ix + iw * x, iy + ih - ih * y, R, colour[t % 64], 0.75);
	}
	cairo_restore(cr);
	/* Legend: shape, colour, name, count and mean load. */
	cairo_set_font_size(cr, 14);
	cairo_set_source_rgb(cr, 0, 0, 0);
	text(cr, W - MR + 24, MT + 10, "types");
	cairo_set_font_size(cr, 13);
	for (size_t t = 0; t < nt; t++) {
		const struct pg_load_type *ty = pg_load_est_type(e, t);
		double y = LOAD_PLOT_LEGEND_Y(t);

		marker(cr, (int)(t % 8), LOAD_PLOT_LEGEND_X, y - 4, 6.5, colour[t % 64], 1.0);
		cairo_set_source_rgb(cr, 0, 0, 0);
		snprintf(label, sizeof(label), "%s: %zu VM%s, mean load %.0f", ty->name, ty->count,
			 ty->count == 1 ? "" : "s", ty->mean_load);
		text(cr, W - MR + 50, y, label);
	}
	cairo_set_font_size(cr, 11);
	cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
	text(cr, W - MR + 24, MT + 46 + 26.0 * (double)nt,
	     "colour: behaviour; shape: type; load 0-100");
}

int
pg_load_plot(const struct pg_load_est *e, const char *path)
{
	size_t l = strlen(path);
	int svg = l > 4 && strcmp(path + l - 4, ".svg") == 0;
	struct out_buf out = {0};
	cairo_surface_t *sf;
	cairo_t *cr;
	int rc = 0;

	sf = svg ? cairo_svg_surface_create_for_stream(out_write, &out, W, H)
		 : cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
	cr = cairo_create(sf);
	draw(cr, e);
	cairo_surface_flush(sf);
	if (svg) {
		cairo_destroy(cr);
		cr = NULL;
		cairo_surface_finish(sf);
		if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS)
			rc = pg_error(PG_ENOMEM, "load", "svg encoding");
	} else if (cairo_surface_write_to_png_stream(sf, out_write, &out) != CAIRO_STATUS_SUCCESS) {
		rc = pg_error(PG_ENOMEM, "load", "png encoding");
	}
	/* Written beside its target and renamed: never a half-written plot. */
	if (rc == 0)
		rc = pg_write_file_atomic(path, out.data, out.len, 0644);
	free(out.data);
	if (cr)
		cairo_destroy(cr);
	cairo_surface_destroy(sf);
	/* Drop cairo's and fontconfig's caches: a plot is drawn once per run. */
	cairo_debug_reset_static_data();
	FcFini();
	return rc;
}

int
pg_load_plot_png(const struct pg_load_est *e, const char *path)
{
	return pg_load_plot(e, path);
}
