/* sched_compute.c: candidates, smoothing, daily cap, frequency limit (RULES.md), on day numbers. */
#include "sched_core.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *const sched_type_name[4] = { "aep", "birthday", "effective_date", "post_window" };
const int sched_type_prio[4] = { 30, 10, 20, 40 };

/* Priority rank (0 = most important) of each type, for ordering. */
static const uint8_t prio_rank[4] = { 2, 0, 1, 3 };

const char *sched_reason_text(int reason, int state, char *buf, size_t len)
{
	switch (reason) {
	case R_YEAR_ROUND:
		snprintf(buf, len, "Year-round exclusion for %s", sched_state_code(state));
		return buf;
	case R_BDAY_WINDOW:
		snprintf(buf, len, "Birthday exclusion window for %s", sched_state_code(state));
		return buf;
	case R_ED_WINDOW:
		snprintf(buf, len, "Effective date exclusion window for %s", sched_state_code(state));
		return buf;
	case R_FREQ:
		return "Frequency limit exceeded";
	default:
		return NULL;
	}
}

/* Is d in a window of years d.year-1 .. d.year+1 ? (RULES.md) W = the largest end, A = the
 * anchor's real anniversary in the year that produced W. */
static bool in_window(const struct sched_window *w, int am, int ad, int32_t d, int32_t *W,
		      int32_t *A)
{
	int y = sched_year(d);
	bool hit = false;

	for (int yy = y - 1; yy <= y + 1; yy++) {
		int32_t b = w->month_start ? sched_days(yy, am, 1) : sched_anniv(yy, am, ad);
		int32_t lo = b - w->before - w->pre, hi = b + w->after;
		if (d < lo || d > hi || (hit && hi <= *W))
			continue;
		hit = true;
		*W = hi;
		*A = sched_anniv(yy, am, ad);
	}
	return hit;
}

int32_t sched_excluded(const struct sched_opts *o, const struct sched_contact *c, int32_t d,
		       int *reason, int32_t *event)
{
	int32_t w = SCHED_NODATE, a = SCHED_NODATE;

	*reason = R_NONE;
	if (c->state < 0)
		return SCHED_NODATE;
	const struct sched_state_rules *st = &o->rules.st[c->state];
	if (st->year_round) {
		*reason = R_YEAR_ROUND;
		return SCHED_NODATE;
	}
	if (st->bday.on && c->birth != SCHED_NODATE && in_window(&st->bday, c->bm, c->bd, d, &w, &a)) {
		*reason = R_BDAY_WINDOW;
		*event = a;
		return w;
	}
	if (st->ed.on && c->ed != SCHED_NODATE && in_window(&st->ed, c->em, c->edd, d, &w, &a)) {
		*reason = R_ED_WINDOW;
		*event = a;
		return w;
	}
	return SCHED_NODATE;
}

static bool is_excluded(const struct sched_opts *o, const struct sched_contact *c, int32_t d)
{
	int r;
	int32_t a;

	sched_excluded(o, c, d, &r, &a);
	return r != R_NONE;
}

#define BIG_MIN ((size_t)4 << 20)          /* smaller blocks: left as malloc has them */

/* The advice covers the whole pages of the block malloc gave (a large one is a mapping of its
 * own: then the mapping, which a later realloc moves or grows with its advice). */
void *sched_big(void *p, size_t n)
{
	void *q = realloc(p, n);
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a, e;

	if (!q || n < BIG_MIN || pg & (pg - 1))
		return q;
	a = (uintptr_t)q & ~(pg - 1);
	e = ((uintptr_t)q + malloc_usable_size(q) + pg - 1) & ~(pg - 1);
	madvise((void *)a, e - a, MADV_HUGEPAGE);       /* only advice: no harm if refused */
	return q;
}

static int grow(void **arr, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 1024;
	while (ncap < need)
		ncap *= 2;
	void *n = sched_big(*arr, ncap * size);
	if (!n)
		return -1;
	*arr = n;
	*cap = ncap;
	return 0;
}

/* Counted rows of one contact: [*b, *e) in p->cnt (sorted by cid). */
static void counted_range(const struct sched_plan *p, size_t *pos, int64_t cid, size_t *b, size_t *e)
{
	size_t i = *pos;

	while (i < p->ncnt && p->cnt[i].cid < cid)
		i++;
	*b = i;
	while (i < p->ncnt && p->cnt[i].cid == cid)
		i++;
	*e = i;
	*pos = *b;          /* a repeated contact id sees the same rows */
}

/* RULES.md, the four emails: a counted row of this type dated in [lo, hi]. */
static bool already_sent(const struct sched_plan *p, size_t b, size_t e, int type, int32_t lo,
			 int32_t hi)
{
	for (size_t i = b; i < e; i++)
		if (p->cnt[i].ltype == type && p->cnt[i].date >= lo && p->cnt[i].date <= hi)
			return true;
	return false;
}

struct post {
	int32_t date;
	int32_t event;
};

/* Candidates made from a range of contacts (a thread's share). */
struct cands {
	const struct sched_opts *o;
	const struct sched_plan *p;         /* contacts and counted rows, read only */
	uint32_t from, to;                  /* contact indexes */
	struct sched_cand *cd;
	size_t ncd, acd;
	int rc;
};

/* RULES.md, the four emails for contact ci: appends its candidates to out. */
static int contact_candidates(const struct sched_opts *o, const struct sched_plan *p,
			      struct cands *out, uint32_t ci, size_t cb, size_t ce)
{
	const struct sched_contact *c = &p->ct[ci];
	struct post posts[3];
	int nposts = 0;
	int32_t today = o->today;

	if (grow((void **)&out->cd, &out->acd, out->ncd + 6, sizeof(*out->cd)))
		return -1;
	for (int type = T_AEP; type <= T_ED; type++) {
		int32_t a, lead;

		if (type == T_BIRTHDAY) {
			if (c->birth == SCHED_NODATE || c->failed_uw)
				continue;
			a = sched_next_anniv(today, c->bm, c->bd);
			lead = o->bday_lead;
		} else if (type == T_ED) {
			int ty, tm, td, ey, em, ed;

			if (c->ed == SCHED_NODATE || c->failed_uw || c->ed > today)
				continue;
			sched_civil(today, &ty, &tm, &td);
			sched_civil(c->ed, &ey, &em, &ed);
			if ((ty - ey) * 12 + (tm - em) < o->ed_min_months)
				continue;
			a = sched_next_anniv(today, c->em, c->edd);
			lead = o->ed_lead;
		} else {
			if (!o->aep_enabled)
				continue;
			a = sched_next_anniv(today, o->aep_month, o->aep_day);
			lead = 0;
		}
		int32_t s0 = a - lead;
		if (already_sent(p, cb, ce, type, s0 - 30, s0 + lead + 30))
			continue;
		struct sched_cand *k = &out->cd[out->ncd++];
		int reason;
		int32_t ev = SCHED_NODATE;
		int32_t w;

		k->ci = ci;
		k->type = (uint8_t)type;
		k->event = a;
		k->date = s0 > today ? s0 : today;
		k->orig = k->date;
		k->dup = 0;
		w = sched_excluded(o, c, k->date, &reason, &ev);
		k->skipped = reason != R_NONE;
		k->reason = (uint8_t)reason;
		if (!o->post_window || c->failed_uw || (reason != R_BDAY_WINDOW && reason != R_ED_WINDOW))
			continue;
		int j;
		for (j = 0; j < nposts && posts[j].date != w + 1; j++)
			;
		if (j == nposts) {
			posts[nposts].date = w + 1;
			posts[nposts++].event = ev;
		} else if (ev < posts[j].event) {
			posts[j].event = ev;
		}
	}
	/* AEP was made first (type order) but birthday/ED posts must not depend on that:
	 * posts are keyed by date, so their order only matters for ties, which merge. */
	for (int j = 0; j < nposts; j++) {
		int32_t s = posts[j].date;
		if (already_sent(p, cb, ce, T_POST, s - 30, s + 30))
			continue;
		struct sched_cand *k = &out->cd[out->ncd++];
		int reason;
		int32_t ev;

		k->ci = ci;
		k->type = T_POST;
		k->event = posts[j].event;
		k->date = s;
		k->orig = s;
		k->dup = 0;
		sched_excluded(o, c, s, &reason, &ev);
		k->skipped = reason != R_NONE;
		k->reason = (uint8_t)reason;
	}
	return 0;
}

static void profile_params(const struct sched_opts *o, int64_t n, struct sched_report *rep,
			   int *window)
{
	static const int pct[4] = { 20, 10, 7, 5 }, soft[4] = { 50, 200, 500, 1000 },
			 win[4] = { 3, 5, 7, 10 };
	int prof = o->profile;

	if (prof == 0)
		prof = n < 10000 ? 1 : n < 100000 ? 2 : n < 500000 ? 3 : 4;
	int cp = o->cap_percent >= 0 ? o->cap_percent : pct[prof - 1];
	int sl = o->ed_soft_limit >= 0 ? o->ed_soft_limit : soft[prof - 1];
	*window = o->ed_window >= 0 ? o->ed_window : win[prof - 1];
	int64_t cap = n * cp / 100;
	if (cap < o->min_daily_cap)
		cap = o->min_daily_cap;
	int64_t lim = cap * 3 / 10;
	if (lim > sl)
		lim = sl;
	rep->daily_cap = cap;
	rep->ed_limit = lim;
}

/* A share of the candidates [from, to) to smooth against the counts taken before any move. */
struct smooth_share {
	const struct sched_opts *o;
	struct sched_plan *p;
	const uint32_t *count;              /* per day from lo */
	int64_t limit;
	int window;
	int32_t lo;
	size_t from, to;
};

static void *smooth_share(void *arg)
{
	const struct smooth_share *s = arg;
	const struct sched_opts *o = s->o;
	struct sched_plan *p = s->p;
	char key[64];

	for (size_t i = s->from; i < s->to; i++) {
		struct sched_cand *k = &p->cd[i];
		if (k->type != T_ED || k->skipped || s->count[k->date - s->lo] <= s->limit)
			continue;
		/* "%lld-effective_date-%d" of id and year, without printf's cost (at 1M
		 * contacts most effective-date emails get here) */
		char *q = sched_put_int(key, p->ct[k->ci].id);
		memcpy(q, "-effective_date-", 16);
		q = sched_put_int(q + 16, sched_year(k->event));
		uint32_t h = sched_fnv1a32(key, (size_t)(q - key));
		int32_t j = (int32_t)(h % (uint32_t)s->window) - s->window / 2;
		int32_t t = k->date + j;
		if (j != 0 && t >= o->today && !is_excluded(o, &p->ct[k->ci], t))
			k->date = t;
	}
	return NULL;
}

/* RULES.md, spreading the load smoothing: counts taken once, before any move; each
 * candidate's move depends on those counts only, so the two halves go on two threads. */
static int smooth(const struct sched_opts *o, struct sched_plan *p, int64_t limit, int window,
		  int32_t lo, int32_t hi)
{
	uint32_t *count = calloc((size_t)(hi - lo + 1), sizeof(*count));

	if (!count)
		return -1;
	for (size_t i = 0; i < p->ncd; i++)
		if (p->cd[i].type == T_ED && !p->cd[i].skipped)
			count[p->cd[i].date - lo]++;
	struct smooth_share a = { .o = o, .p = p, .count = count, .limit = limit,
				  .window = window, .lo = lo, .from = 0, .to = p->ncd / 2 };
	struct smooth_share b = a;
	b.from = a.to;
	b.to = p->ncd;
	sched_both(o->threads, smooth_share, &a, &b);
	free(count);
	return 0;
}

/* Cap ordering: (priority, O, contact_id, email_type); ci is in contact_id order and the
 * type follows from the priority. */
static bool cap_before(const struct sched_cand *a, const struct sched_cand *b)
{
	if (prio_rank[a->type] != prio_rank[b->type])
		return prio_rank[a->type] < prio_rank[b->type];
	if (a->orig != b->orig)
		return a->orig < b->orig;
	if (a->ci != b->ci)
		return a->ci < b->ci;
	return a < b;
}

/* A share of an overflowing day's pool: members excluded on the next day stay (pinned,
 * counted), the others are packed to the front of the share in their order. */
struct pin_share {
	const struct sched_opts *o;
	const struct sched_plan *p;
	uint32_t *pool;
	size_t n, npin, nmov;
	int32_t next;
};

static void *pin_share(void *arg)
{
	struct pin_share *s = arg;

	s->npin = s->nmov = 0;
	for (size_t x = 0; x < s->n; x++) {
		if (is_excluded(s->o, &s->p->ct[s->p->cd[s->pool[x]].ci], s->next))
			s->npin++;
		else
			s->pool[s->nmov++] = s->pool[x];
	}
	return NULL;
}

/* pool[0, *nmov) = the members that may move to `next`, in pool order; *npin = the others.
 * A large pool (at 1M contacts the AEP day carries most contacts for weeks) is split in
 * two halves on two threads; the second half's movers then follow the first's. */
static void pin_movers(const struct sched_opts *o, const struct sched_plan *p, uint32_t *pool,
		       size_t npool, int32_t next, size_t *npin, size_t *nmov)
{
	size_t half = npool >= 65536 ? npool / 2 : npool;
	struct pin_share a = { .o = o, .p = p, .pool = pool, .n = half, .next = next };
	struct pin_share b = { .o = o, .p = p, .pool = pool + half, .n = npool - half, .next = next };

	if (b.n)
		sched_both(o->threads, pin_share, &a, &b);
	else
		pin_share(&a);
	memmove(pool + a.nmov, b.pool, b.nmov * sizeof(*pool));
	*npin = a.npin + b.npin;
	*nmov = a.nmov + b.nmov;
}

/* The first of carry[a, n) (in cap order) that is not before f: a gallop from a, then a
 * binary search. */
static size_t carry_end(const struct sched_plan *p, const uint32_t *carry, size_t a, size_t n,
			const struct sched_cand *f)
{
	size_t lo = a, step = 1, hi;

	while (lo + step <= n && cap_before(&p->cd[carry[lo + step - 1]], f)) {
		lo += step;
		step *= 2;
	}
	hi = lo + step <= n ? lo + step - 1 : n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cap_before(&p->cd[carry[mid]], f))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* pool = carry and fresh (each in cap order) merged in cap order; returns its size. The
 * carried members that come before a fresh one are copied as one run (a crowded day carries
 * most of the contacts for weeks, with few fresh ones among them). */
static size_t merge_pool(const struct sched_plan *p, const uint32_t *carry, size_t ncarry,
			 const uint32_t *fresh, size_t nfresh, uint32_t *pool)
{
	size_t a = 0, npool = 0;

	for (size_t b = 0; b < nfresh; b++) {
		size_t e = carry_end(p, carry, a, ncarry, &p->cd[fresh[b]]);
		if (e > a)
			memcpy(pool + npool, carry + a, (e - a) * sizeof(*pool));
		npool += e - a;
		a = e;
		pool[npool++] = fresh[b];
	}
	if (ncarry > a)
		memcpy(pool + npool, carry + a, (ncarry - a) * sizeof(*pool));
	return npool + ncarry - a;
}

/* RULES.md, spreading the load daily cap with overflow. */
static int daily_cap(const struct sched_opts *o, struct sched_plan *p, int64_t cap, int32_t lo,
		     int32_t hi)
{
	size_t nd = (size_t)(hi - lo + 2), npre = 0;
	size_t *start = calloc(nd + 1, sizeof(*start));
	uint32_t *byday = NULL, *fresh = NULL, *pool = NULL, *carry = NULL;
	int rc = -1;

	if (!start)
		return -1;
	for (size_t i = 0; i < p->ncd; i++)
		if (!p->cd[i].skipped) {
			start[p->cd[i].date - lo + 1]++;
			npre++;
		}
	for (size_t d = 1; d <= nd; d++)
		start[d] += start[d - 1];
	byday = sched_big(NULL, (npre + 1) * sizeof(*byday));
	fresh = sched_big(NULL, (npre + 1) * sizeof(*fresh));
	pool = sched_big(NULL, (npre + 1) * sizeof(*pool));
	carry = sched_big(NULL, (npre + 1) * sizeof(*carry));
	if (!byday || !fresh || !pool || !carry)
		goto out;
	{
		size_t *fill = malloc(nd * sizeof(*fill));
		if (!fill)
			goto out;
		memcpy(fill, start, nd * sizeof(*fill));
		for (size_t i = 0; i < p->ncd; i++)
			if (!p->cd[i].skipped)
				byday[fill[p->cd[i].date - lo]++] = (uint32_t)i;
		free(fill);
	}

	size_t ncarry = 0, bi = 0;          /* bi: next counted date to look at */
	int32_t d = lo;
	while (d <= hi || ncarry) {
		size_t di = (size_t)(d - lo);
		size_t nfresh = 0, npool = 0;

		if (!ncarry && d <= hi && start[di] == start[di + 1]) {
			d++;                /* nothing here and nothing carried */
			continue;
		}
		/* fresh members all have O = d and come in contact order: group by priority */
		if (d <= hi) {
			for (int r = 0; r < 4; r++)
				for (size_t x = start[di]; x < start[di + 1]; x++)
					if (prio_rank[p->cd[byday[x]].type] == r)
						fresh[nfresh++] = byday[x];
		}
		npool = merge_pool(p, carry, ncarry, fresh, nfresh, pool);
		while (bi < p->ncnt_dates && p->cnt_dates[bi] < d)
			bi++;
		int64_t base = 0;
		while (bi + (size_t)base < p->ncnt_dates && p->cnt_dates[bi + (size_t)base] == d)
			base++;
		int64_t room = cap - base > 0 ? cap - base : 0;
		ncarry = 0;
		if ((int64_t)npool > room) {
			size_t npin, nmov;
			pin_movers(o, p, pool, npool, d + 1, &npin, &nmov);
			int64_t keep = room - (int64_t)npin > 0 ? room - (int64_t)npin : 0;
			for (size_t x = (size_t)keep; x < nmov; x++) {
				p->cd[pool[x]].date = d + 1;
				carry[ncarry++] = pool[x];
			}
		}
		d++;
	}
	rc = 0;
out:
	free(carry);
	free(pool);
	free(fresh);
	free(byday);
	free(start);
	return rc;
}

/* Frequency limit: is d acceptable given the multiset f (n dates) of the contact's counted and
 * accepted dates? */
static bool freq_ok(const int32_t *f, size_t n, int32_t d, int period, int max)
{
	for (size_t i = 0; i <= n; i++) {
		int32_t s = i < n ? f[i] : d;
		if (s > d || s < d - period + 1)
			continue;
		int cnt = 1;            /* d itself */
		for (size_t j = 0; j < n; j++)
			if (f[j] >= s && f[j] <= s + period - 1)
				cnt++;
		if (cnt > max)
			return false;
	}
	return true;
}

static int freq_limit(const struct sched_opts *o, struct sched_plan *p)
{
	int32_t *f = NULL;
	size_t af = 0, cpos = 0;
	int rc = -1;

	for (size_t b = 0; b < p->ncd;) {
		size_t e = b, cb, ce, nf = 0, ord[8], no = 0;
		uint32_t ci = p->cd[b].ci;

		while (e < p->ncd && p->cd[e].ci == ci)
			e++;
		counted_range(p, &cpos, p->ct[ci].id, &cb, &ce);
		if (grow((void **)&f, &af, ce - cb + (e - b) + 1, sizeof(*f)))
			goto out;
		for (size_t i = cb; i < ce; i++)
			if (p->cnt[i].date != SCHED_NODATE)
				f[nf++] = p->cnt[i].date;
		/* (priority, date, email_type): insertion sort of at most 6 */
		for (size_t i = b; i < e; i++) {
			if (p->cd[i].skipped)
				continue;
			size_t j = no;
			while (j > 0) {
				const struct sched_cand *x = &p->cd[ord[j - 1]], *y = &p->cd[i];
				if (prio_rank[x->type] < prio_rank[y->type] ||
				    (prio_rank[x->type] == prio_rank[y->type] && x->date <= y->date))
					break;
				ord[j] = ord[j - 1];
				j--;
			}
			ord[j] = i;
			no++;
		}
		for (size_t i = 0; i < no; i++) {
			struct sched_cand *k = &p->cd[ord[i]];
			if (freq_ok(f, nf, k->date, o->period_days, o->max_per_period)) {
				f[nf++] = k->date;
			} else {
				k->skipped = 1;
				k->reason = R_FREQ;
			}
		}
		b = e;
	}
	rc = 0;
out:
	free(f);
	return rc;
}

/* Per contact: unique-key order (email_type, date), stable; mark duplicates and keys held
 * by non-owned rows as dup (INSERT OR IGNORE drops them). */
static void finish(struct sched_plan *p, struct sched_report *rep)
{
	size_t cpos = 0;

	for (size_t b = 0; b < p->ncd;) {
		size_t e = b, cb, ce;
		uint32_t ci = p->cd[b].ci;

		while (e < p->ncd && p->cd[e].ci == ci)
			e++;
		for (size_t i = b + 1; i < e; i++) {
			struct sched_cand t = p->cd[i];
			size_t j = i;
			while (j > b && (p->cd[j - 1].type > t.type ||
					 (p->cd[j - 1].type == t.type && p->cd[j - 1].date > t.date))) {
				p->cd[j] = p->cd[j - 1];
				j--;
			}
			p->cd[j] = t;
		}
		counted_range(p, &cpos, p->ct[ci].id, &cb, &ce);
		for (size_t i = b; i < e; i++) {
			struct sched_cand *k = &p->cd[i];
			if (i > b && k->type == k[-1].type && k->date == k[-1].date)
				k->dup = 1;
			for (size_t x = cb; x < ce && !k->dup; x++)
				if (p->cnt[x].blocks && p->cnt[x].ltype == k->type &&
				    p->cnt[x].date == k->date)
					k->dup = 1;
			if (k->dup)
				rep->ignored++;
			else if (k->skipped)
				rep->skipped++;
			else
				rep->pre_scheduled++;
		}
		b = e;
	}
	rep->rows = rep->pre_scheduled + rep->skipped;
}

static void *make_candidates(void *arg)
{
	struct cands *c = arg;
	size_t cpos = 0;

	for (uint32_t ci = c->from; ci < c->to && !c->rc; ci++) {
		size_t cb, ce;
		counted_range(c->p, &cpos, c->p->ct[ci].id, &cb, &ce);
		c->rc = contact_candidates(c->o, c->p, c, ci, cb, ce);
	}
	return NULL;
}

/* The candidates of each half of the contacts on its own thread, then the second half's
 * appended: the same array, grouped per contact in contact order, as one loop makes. */
static int candidates(const struct sched_opts *o, struct sched_plan *p)
{
	uint32_t mid = (uint32_t)(p->nct / 2);
	struct cands a = { .o = o, .p = p, .from = 0, .to = mid };
	struct cands b = { .o = o, .p = p, .from = mid, .to = (uint32_t)p->nct };
	int rc = -1;

	sched_both(o->threads, make_candidates, &a, &b);
	if (!a.rc && !b.rc && !grow((void **)&a.cd, &a.acd, a.ncd + b.ncd + 1, sizeof(*a.cd))) {
		if (b.ncd)
			memcpy(a.cd + a.ncd, b.cd, b.ncd * sizeof(*b.cd));
		free(p->cd);
		p->cd = a.cd;
		p->ncd = a.ncd + b.ncd;
		p->acd = a.acd;
		a.cd = NULL;
		rc = 0;
	}
	free(a.cd);
	free(b.cd);
	return rc;
}

int sched_compute(const struct sched_opts *o, struct sched_plan *p, struct sched_report *rep)
{
	int window;

	if (candidates(o, p))
		return -1;
	profile_params(o, p->n_emails, rep, &window);

	int32_t lo = o->today, hi = o->today;
	for (size_t i = 0; i < p->ncd; i++)
		if (p->cd[i].date > hi)
			hi = p->cd[i].date;
	/* smoothing moves at most window/2 days either way */
	if (smooth(o, p, rep->ed_limit, window, lo, hi))
		return -1;
	for (size_t i = 0; i < p->ncd; i++) {
		p->cd[i].orig = p->cd[i].date;
		if (p->cd[i].date > hi)
			hi = p->cd[i].date;
	}
	if (daily_cap(o, p, rep->daily_cap, lo, hi))
		return -1;
	if (freq_limit(o, p))
		return -1;
	finish(p, rep);
	return 0;
}

void sched_plan_free(struct sched_plan *p)
{
	free(p->ct);
	free(p->cnt);
	free(p->cnt_dates);
	free(p->cd);
	memset(p, 0, sizeof(*p));
}

void sched_opts_default(struct sched_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->today = sched_days(2024, 10, 1);
	memcpy(o->send_time, "08:30:00", 9);
	o->bday_lead = 14;
	o->ed_lead = 30;
	o->ed_min_months = 11;
	o->aep_enabled = true;
	o->aep_month = 9;
	o->aep_day = 15;
	o->post_window = true;
	o->max_per_period = 3;
	o->period_days = 30;
	o->cap_percent = -1;
	o->ed_soft_limit = -1;
	o->ed_window = -1;
	o->min_daily_cap = 50;
	o->threads = 2;
	o->fingerprint = true;
	o->run_id = "";
	memset(o->zips.state, -1, sizeof(o->zips.state));
}
