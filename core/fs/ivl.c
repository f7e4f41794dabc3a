/* ivl.c: sorted sets of byte ranges (dirty and cached parts of a file). */
#include "ferryfs.h"

#include <stdlib.h>
#include <string.h>

static void ivl_reserve(struct ivl *s, size_t want)
{
	struct ivl_range *r;
	size_t cap;

	if (want <= s->cap)
		return;
	cap = s->cap ? s->cap * 2 : 8;
	while (cap < want)
		cap *= 2;
	r = realloc(s->r, cap * sizeof(*r));
	if (!r)
		abort();                    /* a few bytes per range; no sane recovery */
	s->r = r;
	s->cap = cap;
}

/* Index of the first range whose end is >= a (so it touches or follows a). */
static size_t ivl_lower(const struct ivl *s, uint64_t a)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->r[mid].b < a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void ivl_add(struct ivl *s, uint64_t a, uint64_t b)
{
	size_t i, j;

	if (a >= b)
		return;
	i = ivl_lower(s, a);
	j = i;
	while (j < s->n && s->r[j].a <= b) {
		s->sum -= s->r[j].b - s->r[j].a;
		if (s->r[j].a < a)
			a = s->r[j].a;
		if (s->r[j].b > b)
			b = s->r[j].b;
		j++;
	}
	if (j == i) {
		ivl_reserve(s, s->n + 1);
		memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(*s->r));
		s->n++;
	} else if (j > i + 1) {
		memmove(&s->r[i + 1], &s->r[j], (s->n - j) * sizeof(*s->r));
		s->n -= j - i - 1;
	}
	s->r[i].a = a;
	s->r[i].b = b;
	s->sum += b - a;
}

void ivl_del(struct ivl *s, uint64_t a, uint64_t b)
{
	size_t i;

	if (a >= b)
		return;
	i = ivl_lower(s, a);
	while (i < s->n && s->r[i].a < b) {
		struct ivl_range cur = s->r[i];

		if (cur.b <= a) {
			i++;
			continue;
		}
		if (cur.a < a && cur.b > b) {
			/* split in two */
			s->sum -= b - a;
			ivl_reserve(s, s->n + 1);
			memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(*s->r));
			s->n++;
			s->r[i].b = a;
			s->r[i + 1].a = b;
			return;
		}
		if (cur.a < a) {
			s->sum -= cur.b - a;
			s->r[i].b = a;
			i++;
		} else if (cur.b > b) {
			s->sum -= b - cur.a;
			s->r[i].a = b;
			return;
		} else {
			s->sum -= cur.b - cur.a;
			memmove(&s->r[i], &s->r[i + 1], (s->n - i - 1) * sizeof(*s->r));
			s->n--;
		}
	}
}

bool ivl_overlaps(const struct ivl *s, uint64_t a, uint64_t b)
{
	size_t i = ivl_lower(s, a);

	for (; i < s->n && s->r[i].a < b; i++)
		if (s->r[i].b > a)
			return true;
	return false;
}

/* Where the covered run starting at x (in s or t) ends; x itself when x is uncovered. */
static uint64_t covered_until(const struct ivl *s, const struct ivl *t, uint64_t x)
{
	for (;;) {
		uint64_t nx = x;
		size_t i = ivl_lower(s, x + 1);
		size_t j = ivl_lower(t, x + 1);

		if (i < s->n && s->r[i].a <= x && s->r[i].b > nx)
			nx = s->r[i].b;
		if (j < t->n && t->r[j].a <= x && t->r[j].b > nx)
			nx = t->r[j].b;
		if (nx == x)
			return x;
		x = nx;
	}
}

/* Next covered byte at or after x (in s or t), or UINT64_MAX. */
static uint64_t next_covered(const struct ivl *s, const struct ivl *t, uint64_t x)
{
	uint64_t best = UINT64_MAX;
	size_t i = ivl_lower(s, x + 1);
	size_t j = ivl_lower(t, x + 1);

	if (i < s->n)
		best = s->r[i].a > x ? s->r[i].a : x;
	if (j < t->n) {
		uint64_t c = t->r[j].a > x ? t->r[j].a : x;

		if (c < best)
			best = c;
	}
	return best;
}

bool ivl_first_gap2(const struct ivl *s, const struct ivl *t, uint64_t a, uint64_t b,
		    uint64_t *ga, uint64_t *gb)
{
	uint64_t x, e;

	if (a >= b)
		return false;
	x = covered_until(s, t, a);
	if (x >= b)
		return false;
	e = next_covered(s, t, x);
	*ga = x;
	*gb = e < b ? e : b;
	return true;
}

uint64_t ivl_last_gap_end2(const struct ivl *s, const struct ivl *t, uint64_t a, uint64_t b)
{
	uint64_t ga, gb, last = 0;

	while (ivl_first_gap2(s, t, a, b, &ga, &gb)) {
		last = gb;
		a = gb;
	}
	return last;
}

void ivl_union_into(struct ivl *dst, const struct ivl *src)
{
	for (size_t i = 0; i < src->n; i++)
		ivl_add(dst, src->r[i].a, src->r[i].b);
}

int ivl_copy(struct ivl *dst, const struct ivl *src)
{
	dst->r = NULL;
	dst->n = dst->cap = 0;
	dst->sum = src->sum;
	if (!src->n)
		return 0;
	ivl_reserve(dst, src->n);
	memcpy(dst->r, src->r, src->n * sizeof(*src->r));
	dst->n = src->n;
	return 0;
}

void ivl_clear(struct ivl *s)
{
	s->n = 0;
	s->sum = 0;
}

void ivl_release(struct ivl *s)
{
	free(s->r);
	s->r = NULL;
	s->n = s->cap = 0;
	s->sum = 0;
}
