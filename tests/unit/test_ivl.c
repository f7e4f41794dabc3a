/* test_ivl.c: unit tests of ferryfs's interval sets (core/fs/ivl.c), against hand-worked
 * cases and, at random, against a bitmap of the same bytes. */
#include "ferryfs.h"
#include "unit.h"

#include <stdbool.h>
#include <stdint.h>

#define MODEL_BYTES 300                 /* bytes the bitmap model spans */
#define MODEL_STEPS 4000                /* random operations per run */

/* The set's own promises: ranges non-empty, sorted, apart (never touching), sum right. */
static void check_shape(const struct ivl *s)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < s->n; i++) {
		ASSERT_TRUE(s->r[i].a < s->r[i].b);
		if (i)
			ASSERT_TRUE(s->r[i - 1].b < s->r[i].a);
		sum += s->r[i].b - s->r[i].a;
	}
	ASSERT_TRUE(s->n <= s->cap);
	ASSERT_EQ(s->sum, sum);
}

/* s holds exactly the ranges given as a, b pairs. */
static void check_ranges(const struct ivl *s, size_t n, const uint64_t *ab)
{
	check_shape(s);
	ASSERT_EQ(s->n, n);
	for (size_t i = 0; i < n && i < s->n; i++) {
		ASSERT_TRUE(s->r[i].a == ab[2 * i]);
		ASSERT_TRUE(s->r[i].b == ab[2 * i + 1]);
	}
}

/* The first part of [a, b) in neither s nor t is [ga, gb). */
static void check_gap(const struct ivl *s, const struct ivl *t, uint64_t a, uint64_t b,
		      uint64_t ga, uint64_t gb)
{
	uint64_t x = 0, y = 0;

	ASSERT_TRUE(ivl_first_gap2(s, t, a, b, &x, &y));
	ASSERT_TRUE(x == ga);
	ASSERT_TRUE(y == gb);
}

static void test_empty(void)
{
	struct ivl s = { 0 }, t = { 0 };
	uint64_t ga = 0, gb = 0;

	check_ranges(&s, 0, NULL);
	ASSERT_TRUE(!ivl_overlaps(&s, 0, 10));
	check_gap(&s, &t, 5, 9, 5, 9);
	ASSERT_EQ(ivl_last_gap_end2(&s, &t, 5, 9), 9);
	/* an empty range is no range */
	ASSERT_TRUE(!ivl_first_gap2(&s, &t, 9, 9, &ga, &gb));
	ASSERT_TRUE(!ivl_first_gap2(&s, &t, 9, 5, &ga, &gb));
	ASSERT_EQ(ivl_last_gap_end2(&s, &t, 9, 9), 0);
	ivl_add(&s, 7, 7);
	ivl_add(&s, 8, 3);
	check_ranges(&s, 0, NULL);
	ivl_del(&s, 0, 100);
	ivl_del(&s, 50, 10);
	check_ranges(&s, 0, NULL);
	ivl_release(&s);
	ASSERT_TRUE(s.r == NULL);
}

static void test_add(void)
{
	struct ivl s = { 0 };

	ivl_add(&s, 30, 40);
	ivl_add(&s, 10, 20);
	ivl_add(&s, 60, 70);
	check_ranges(&s, 3, (const uint64_t[]){ 10, 20, 30, 40, 60, 70 });
	/* inside a range: nothing changes */
	ivl_add(&s, 12, 18);
	check_ranges(&s, 3, (const uint64_t[]){ 10, 20, 30, 40, 60, 70 });
	/* touching on the right, then on the left: one range each time */
	ivl_add(&s, 20, 25);
	check_ranges(&s, 3, (const uint64_t[]){ 10, 25, 30, 40, 60, 70 });
	ivl_add(&s, 5, 10);
	check_ranges(&s, 3, (const uint64_t[]){ 5, 25, 30, 40, 60, 70 });
	/* filling the gap between two ranges exactly joins them */
	ivl_add(&s, 25, 30);
	check_ranges(&s, 2, (const uint64_t[]){ 5, 40, 60, 70 });
	/* overlapping both ends of a range grows it */
	ivl_add(&s, 55, 75);
	check_ranges(&s, 2, (const uint64_t[]){ 5, 40, 55, 75 });
	/* one range swallowing several */
	ivl_add(&s, 80, 90);
	ivl_add(&s, 100, 110);
	ivl_add(&s, 0, 95);
	check_ranges(&s, 2, (const uint64_t[]){ 0, 95, 100, 110 });
	ASSERT_EQ(s.sum, 105);
	/* many ranges: the array grows */
	ivl_clear(&s);
	for (uint64_t i = 0; i < 100; i++)
		ivl_add(&s, 1000 - 10 * i, 1005 - 10 * i);
	check_shape(&s);
	ASSERT_EQ(s.n, 100);
	ASSERT_EQ(s.sum, 500);
	ASSERT_TRUE(s.r[0].a == 10 && s.r[99].b == 1005);
	ivl_add(&s, 5, 2000);
	check_ranges(&s, 1, (const uint64_t[]){ 5, 2000 });
	ivl_release(&s);
}

static void test_del(void)
{
	struct ivl s = { 0 };

	ivl_add(&s, 0, 100);
	/* from the middle: one range splits in two */
	ivl_del(&s, 40, 60);
	check_ranges(&s, 2, (const uint64_t[]){ 0, 40, 60, 100 });
	/* at the edges of a range */
	ivl_del(&s, 0, 10);
	ivl_del(&s, 90, 100);
	check_ranges(&s, 2, (const uint64_t[]){ 10, 40, 60, 90 });
	/* over a gap and into both neighbours */
	ivl_del(&s, 30, 70);
	check_ranges(&s, 2, (const uint64_t[]){ 10, 30, 70, 90 });
	/* exactly one range, then where there is nothing */
	ivl_del(&s, 10, 30);
	ivl_del(&s, 0, 70);
	ivl_del(&s, 90, 200);
	check_ranges(&s, 1, (const uint64_t[]){ 70, 90 });
	/* a range next to the deleted bytes stays whole */
	ivl_add(&s, 100, 110);
	ivl_del(&s, 90, 100);
	check_ranges(&s, 2, (const uint64_t[]){ 70, 90, 100, 110 });
	/* several ranges at once, cutting the last */
	ivl_add(&s, 120, 130);
	ivl_del(&s, 60, 125);
	check_ranges(&s, 1, (const uint64_t[]){ 125, 130 });
	/* down to nothing, as truncation does */
	ivl_del(&s, 0, UINT64_MAX);
	check_ranges(&s, 0, NULL);
	ivl_release(&s);
}

static void test_overlaps(void)
{
	struct ivl s = { 0 };

	ivl_add(&s, 10, 20);
	ivl_add(&s, 40, 50);
	ASSERT_TRUE(!ivl_overlaps(&s, 0, 10));      /* touching is not overlapping */
	ASSERT_TRUE(!ivl_overlaps(&s, 20, 40));
	ASSERT_TRUE(!ivl_overlaps(&s, 50, 60));
	ASSERT_TRUE(ivl_overlaps(&s, 0, 11));
	ASSERT_TRUE(ivl_overlaps(&s, 19, 40));
	ASSERT_TRUE(ivl_overlaps(&s, 12, 15));      /* inside */
	ASSERT_TRUE(ivl_overlaps(&s, 0, 100));      /* around both */
	ASSERT_TRUE(ivl_overlaps(&s, 49, 50));
	ASSERT_TRUE(!ivl_overlaps(&s, 50, UINT64_MAX));
	ivl_release(&s);
}

static void test_gaps(void)
{
	struct ivl s = { 0 }, t = { 0 }, e = { 0 };
	uint64_t ga = 0, gb = 0;

	ivl_add(&s, 0, 10);
	ivl_add(&s, 30, 40);
	ivl_add(&t, 10, 20);                        /* touches s: 0..20 covered as one */
	ivl_add(&t, 35, 60);                        /* overlaps s */
	check_gap(&s, &t, 0, 100, 20, 30);
	check_gap(&s, &t, 25, 100, 25, 30);
	check_gap(&s, &t, 30, 100, 60, 100);
	/* the gap is cut at b */
	check_gap(&s, &t, 5, 22, 20, 22);
	/* all of it covered, by s, by t, or by both in turn */
	ASSERT_TRUE(!ivl_first_gap2(&s, &t, 0, 20, &ga, &gb));
	ASSERT_TRUE(!ivl_first_gap2(&s, &t, 32, 60, &ga, &gb));
	ASSERT_TRUE(!ivl_first_gap2(&t, &s, 3, 18, &ga, &gb));
	/* the same with the sets the other way round */
	check_gap(&t, &s, 0, 100, 20, 30);
	/* one set empty */
	check_gap(&s, &e, 0, 100, 10, 30);
	check_gap(&e, &t, 0, 100, 0, 10);

	ASSERT_EQ(ivl_last_gap_end2(&s, &t, 0, 100), 100);
	ASSERT_EQ(ivl_last_gap_end2(&s, &t, 0, 60), 30);
	ASSERT_EQ(ivl_last_gap_end2(&s, &t, 0, 35), 30);
	ASSERT_EQ(ivl_last_gap_end2(&s, &t, 0, 25), 25);
	ASSERT_EQ(ivl_last_gap_end2(&s, &t, 0, 20), 0);  /* no gap */
	ASSERT_EQ(ivl_last_gap_end2(&s, &t, 30, 60), 0);
	ivl_release(&s);
	ivl_release(&t);
}

static void test_union_copy_clear(void)
{
	struct ivl s = { 0 }, t = { 0 }, c, z;

	ivl_add(&s, 0, 5);
	ivl_add(&s, 20, 25);
	ivl_add(&t, 5, 10);
	ivl_add(&t, 22, 30);
	ivl_add(&t, 40, 50);
	ivl_union_into(&s, &t);
	check_ranges(&s, 3, (const uint64_t[]){ 0, 10, 20, 30, 40, 50 });
	check_ranges(&t, 3, (const uint64_t[]){ 5, 10, 22, 30, 40, 50 });   /* src untouched */
	ivl_union_into(&s, &s);
	check_ranges(&s, 3, (const uint64_t[]){ 0, 10, 20, 30, 40, 50 });
	ASSERT_EQ(s.sum, 30);

	/* a copy is a set of its own */
	ASSERT_EQ(ivl_copy(&c, &s), 0);
	check_ranges(&c, 3, (const uint64_t[]){ 0, 10, 20, 30, 40, 50 });
	ASSERT_TRUE(c.r != s.r);
	ivl_del(&s, 0, 100);
	ivl_add(&c, 60, 70);
	check_ranges(&s, 0, NULL);
	check_ranges(&c, 4, (const uint64_t[]){ 0, 10, 20, 30, 40, 50, 60, 70 });
	/* of an empty set: no array */
	ASSERT_EQ(ivl_copy(&z, &s), 0);
	check_ranges(&z, 0, NULL);
	ASSERT_TRUE(z.r == NULL);
	ASSERT_EQ(z.cap, 0);

	/* clear empties and keeps the array for reuse; release frees it */
	ivl_clear(&c);
	check_ranges(&c, 0, NULL);
	ASSERT_TRUE(c.r != NULL && c.cap > 0);
	ivl_add(&c, 1, 2);
	check_ranges(&c, 1, (const uint64_t[]){ 1, 2 });
	ivl_release(&c);
	ASSERT_TRUE(c.r == NULL);
	ASSERT_EQ(c.n, 0);
	ASSERT_EQ(c.cap, 0);
	ASSERT_EQ(c.sum, 0);
	ivl_release(&c);                            /* twice is fine */
	ivl_release(&s);
	ivl_release(&t);
	ivl_release(&z);
}

/* The top of the offset space, where an end of UINT64_MAX must not wrap. */
static void test_top(void)
{
	const uint64_t M = UINT64_MAX;
	struct ivl s = { 0 }, e = { 0 };
	uint64_t ga = 0, gb = 0;

	ivl_add(&s, M - 100, M);
	ivl_add(&s, M - 300, M - 200);
	check_ranges(&s, 2, (const uint64_t[]){ M - 300, M - 200, M - 100, M });
	ASSERT_TRUE(ivl_overlaps(&s, M - 1, M));
	ASSERT_TRUE(!ivl_overlaps(&s, M - 200, M - 100));
	check_gap(&s, &e, M - 300, M, M - 200, M - 100);
	ASSERT_TRUE(!ivl_first_gap2(&s, &e, M - 50, M, &ga, &gb));
	ASSERT_TRUE(!ivl_first_gap2(&e, &s, M - 100, M, &ga, &gb));
	ASSERT_TRUE(ivl_last_gap_end2(&s, &e, 0, M) == M - 100);
	ASSERT_TRUE(ivl_last_gap_end2(&e, &s, M - 150, M) == M - 100);
	ivl_del(&s, M - 50, M);
	check_ranges(&s, 2, (const uint64_t[]){ M - 300, M - 200, M - 100, M - 50 });
	ivl_del(&s, M - 250, M - 75);
	check_ranges(&s, 2, (const uint64_t[]){ M - 300, M - 250, M - 75, M - 50 });

	/* everything there is, and a byte taken out of each end */
	ivl_add(&s, 0, M);
	check_ranges(&s, 1, (const uint64_t[]){ 0, M });
	ASSERT_TRUE(s.sum == M);
	ivl_del(&s, 0, 1);
	ivl_del(&s, M - 1, M);
	check_ranges(&s, 1, (const uint64_t[]){ 1, M - 1 });
	check_gap(&s, &e, 0, M, 0, 1);
	check_gap(&s, &e, 1, M, M - 1, M);
	ASSERT_TRUE(ivl_last_gap_end2(&s, &e, 0, M) == M);
	ivl_release(&s);
}

/* ---- the same operations on a bitmap ---- */

struct model {
	bool bit[MODEL_BYTES];              /* byte i of the span is in the set */
};

static uint64_t rng_state;

static uint64_t rnd(uint64_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state % n;
}

static void model_set(struct model *m, size_t a, size_t b, bool v)
{
	for (size_t i = a; i < b; i++)
		m->bit[i] = v;
}

/* s holds exactly the model's bytes, offset by base. */
static void check_model(const struct ivl *s, const struct model *m, uint64_t base)
{
	size_t k = 0, i = 0;
	uint64_t sum = 0;

	check_shape(s);
	while (i < MODEL_BYTES) {
		size_t j;

		if (!m->bit[i]) {
			i++;
			continue;
		}
		for (j = i; j < MODEL_BYTES && m->bit[j]; j++)
			;
		ASSERT_TRUE(k < s->n);
		if (k < s->n) {
			ASSERT_TRUE(s->r[k].a == base + i);
			ASSERT_TRUE(s->r[k].b == base + j);
		}
		sum += j - i;
		k++;
		i = j;
	}
	ASSERT_EQ(s->n, k);
	ASSERT_EQ(s->sum, sum);
}

/* Random spans [*a, *b) within the model, sometimes empty or reversed. */
static void rnd_span(size_t *a, size_t *b)
{
	*a = (size_t)rnd(MODEL_BYTES + 1);
	*b = rnd(8) ? *a + (size_t)rnd(MODEL_BYTES / 4) : (size_t)rnd(MODEL_BYTES + 1);
	if (*b > MODEL_BYTES)
		*b = MODEL_BYTES;
}

/* The questions asked of two sets, answered by the models. */
static void check_queries(const struct ivl *s, const struct ivl *t, const struct model *ms,
			  const struct model *mt, uint64_t base)
{
	for (int q = 0; q < 4; q++) {
		uint64_t ga = 0, gb = 0, last = 0;
		size_t a, b, x, y;
		bool any = false, gap;

		rnd_span(&a, &b);
		for (x = a; x < b && !any; x++)
			any = ms->bit[x];
		if (a < b)
			ASSERT_EQ(ivl_overlaps(s, base + a, base + b), any);
		for (x = a; x < b && (ms->bit[x] || mt->bit[x]); x++)
			;
		for (y = x; y < b && !ms->bit[y] && !mt->bit[y]; y++)
			;
		gap = ivl_first_gap2(s, t, base + a, base + b, &ga, &gb);
		ASSERT_EQ(gap, x < b);
		if (gap && x < b) {
			ASSERT_TRUE(ga == base + x);
			ASSERT_TRUE(gb == base + y);
		}
		for (x = a; x < b; x++)
			if (!ms->bit[x] && !mt->bit[x])
				last = base + x + 1;
		ASSERT_TRUE(ivl_last_gap_end2(s, t, base + a, base + b) == last);
	}
}

/* MODEL_STEPS random adds and deletes on two sets, each checked against its bitmap, with
 * the queries, a copy and a union checked along the way. */
static void test_model(uint64_t base, uint64_t seed)
{
	struct ivl s[2] = { { 0 }, { 0 } };
	struct model m[2] = { { { 0 } }, { { 0 } } };

	rng_state = seed;
	for (int step = 0; step < MODEL_STEPS && !unit_failures; step++) {
		int w = (int)rnd(2);
		size_t a, b;

		rnd_span(&a, &b);
		if (rnd(3)) {
			ivl_add(&s[w], base + a, base + b);
			model_set(&m[w], a, b, true);
		} else {
			ivl_del(&s[w], base + a, base + b);
			model_set(&m[w], a, b, false);
		}
		check_model(&s[w], &m[w], base);
		check_queries(&s[0], &s[1], &m[0], &m[1], base);
		if (step % 97 == 0) {
			struct ivl c;
			struct model u = m[0];

			ivl_copy(&c, &s[0]);
			check_model(&c, &m[0], base);
			ivl_union_into(&c, &s[1]);
			for (size_t i = 0; i < MODEL_BYTES; i++)
				u.bit[i] = u.bit[i] || m[1].bit[i];
			check_model(&c, &u, base);
			check_model(&s[0], &m[0], base);
			ivl_release(&c);
		}
		if (step % 1000 == 999) {
			ivl_clear(&s[w]);
			model_set(&m[w], 0, MODEL_BYTES, false);
			check_model(&s[w], &m[w], base);
		}
	}
	if (unit_failures)
		fprintf(stderr, "test_model: base=%" PRIu64 " seed=%" PRIu64 "\n", base, seed);
	ivl_release(&s[0]);
	ivl_release(&s[1]);
}

int main(void)
{
	test_empty();
	test_add();
	test_del();
	test_overlaps();
	test_gaps();
	test_union_copy_clear();
	test_top();
	test_model(0, 0x9e3779b97f4a7c15ull);
	test_model(1ull << 40, 0x2545f4914f6cdd1dull);
	test_model(UINT64_MAX - MODEL_BYTES, 0xd1b54a32d192ed03ull);
	return UNIT_DONE();
}
