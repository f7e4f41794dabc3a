/* sched_load.c: the schedule stage's reads: schema, contacts, failed underwriting, schedules. */
#include "sched_db.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry_stage.h"

/* A diagnostic-safe copy of a value: printable ASCII only, at most 64 bytes. */
static void shown(char *out, size_t outlen, const unsigned char *v, int n)
{
	size_t k = 0;

	for (int i = 0; i < n && k + 4 < outlen; i++) {
		if (k >= 64) {
			memcpy(out + k, "...", 3);
			k += 3;
			break;
		}
		out[k++] = v[i] >= 0x20 && v[i] < 0x7f && v[i] != '\'' ? (char)v[i] : '?';
	}
	out[k] = '\0';
}

/* Bits of names[] present as columns of table; -1 when the table does not exist. */
static int columns(struct sched_run *r, const char *table, const char *const *names, int n,
		   unsigned *mask)
{
	sqlite3_stmt *st;
	int rows = 0, rc;

	*mask = 0;
	if (sqlite3_prepare_v2(r->db, "SELECT name FROM pragma_table_info(?1)", -1, &st, NULL))
		return sched_db_fail(r, "cannot read the schema of"), -2;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *c = (const char *)sqlite3_column_text(st, 0);
		rows++;
		for (int i = 0; c && i < n; i++)
			if (!strcasecmp(c, names[i]))
				*mask |= 1u << i;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sched_db_fail(r, "cannot read the schema of"), -2;
	return rows ? 0 : -1;
}

static int need_columns(struct sched_run *r, const char *table, const char *const *names, int n)
{
	unsigned mask;
	int rc = columns(r, table, names, n, &mask);

	if (rc == -2)
		return FERRY_FAIL;
	if (rc == -1)
		return sched_fail(r, FERRY_FAIL, "database '%s' has no table %s", r->path, table);
	for (int i = 0; i < n; i++)
		if (!(mask & (1u << i)))
			return sched_fail(r, FERRY_FAIL, "table %s has no column %s", table,
					  names[i]);
	return 0;
}

int sched_check_schema(struct sched_run *r)
{
	static const char *const ct[] = { "id", "email", "state", "zip_code", "birth_date",
					  "effective_date" };
	static const char *const ev[] = { "id", "contact_id", "event_type", "metadata",
					  "created_at" };
	int rc = need_columns(r, "contacts", ct, 6);

	if (rc)
		return rc;
	if (r->o->exclude_fu) {
		rc = need_columns(r, "contact_events", ev, 5);
		if (rc)
			return rc;
	}
	rc = columns(r, "email_schedules", sched_es_cols, SCHED_ES_NCOLS, &r->es_cols);
	if (rc == -2)
		return FERRY_FAIL;
	r->es_exists = rc == 0;
	for (int i = 0; r->es_exists && i < SCHED_ES_REQUIRED; i++)
		if (!(r->es_cols & (1u << i)))
			return sched_fail(r, FERRY_FAIL, "table email_schedules has no column %s",
					  sched_es_cols[i]);
	return 0;
}

int sched_reason_of(const unsigned char *s, int n, int8_t *state)
{
	static const char *const pre[] = { "Year-round exclusion for ",
					   "Birthday exclusion window for ",
					   "Effective date exclusion window for " };

	*state = -1;
	if (!s)
		return R_NONE;
	if (n == 24 && !memcmp(s, "Frequency limit exceeded", 24))
		return R_FREQ;
	for (int i = 0; i < 3; i++) {
		int l = (int)strlen(pre[i]);
		if (n == l + 2 && !memcmp(s, pre[i], (size_t)l)) {
			int st = sched_state_index((const char *)s + l, 2);
			if (st < 0)
				return R_ALIEN;
			*state = (int8_t)st;
			return R_YEAR_ROUND + i;
		}
	}
	return R_ALIEN;
}

static int cmp_counted(const void *a, const void *b)
{
	const struct sched_counted *x = a, *y = b;

	return (x->cid > y->cid) - (x->cid < y->cid);
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

static int cmp_old(const void *a, const void *b)
{
	const struct sched_old *x = a, *y = b;

	if (x->cid != y->cid)
		return (x->cid > y->cid) - (x->cid < y->cid);
	if (x->type != y->type)
		return x->type - y->type;
	return (x->date > y->date) - (x->date < y->date);
}

static int type_of(const unsigned char *s, int n)
{
	for (int t = 0; t < 4; t++)
		if ((size_t)n == strlen(sched_type_name[t]) && !memcmp(s, sched_type_name[t], (size_t)n))
			return t;
	return T_OTHER;
}

/* One scan of the rowid range [lo, hi] of email_schedules: counted rows and owned
 * rows (RULES.md, what is written). */
static int load_schedules(struct sched_run *r, int64_t lo, int64_t hi)
{
	char sql[1024];
	sqlite3_stmt *st;
	int n, rc;

	if (!r->es_exists)
		return 0;
	n = snprintf(sql, sizeof(sql), "SELECT rowid, contact_id, email_type, scheduled_send_date, status");
	for (int i = 4; i < 11; i++)
		n += snprintf(sql + n, sizeof(sql) - (size_t)n, ", %s",
			      r->es_cols & (1u << i) ? sched_es_cols[i] : sched_es_col_absent[i]);
	snprintf(sql + n, sizeof(sql) - (size_t)n,
		 " FROM email_schedules WHERE rowid BETWEEN ?1 AND ?2");
	if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL))
		return sched_db_fail(r, "cannot read table email_schedules of");
	sqlite3_bind_int64(st, 1, lo);
	sqlite3_bind_int64(st, 2, hi);
	struct sched_plan *p = &r->plan;
	/* Room for the rowid span up front: growing by realloc in a thread arena is slow (a
	 * reader takes many spans: at least double, which only reserves addresses). */
	if (lo > INT64_MIN && hi < INT64_MAX && hi >= lo && hi - lo < (1 << 25) &&
	    r->aold < r->nold + (size_t)(hi - lo + 1)) {
		size_t na = r->nold + (size_t)(hi - lo + 1);
		na = na < 2 * r->aold ? 2 * r->aold : na;
		void *nb = sched_big(r->old, na * sizeof(*r->old));
		if (nb) {
			r->old = nb;
			r->aold = na;
		}
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* each column's value once: a sqlite3_column_*() call costs more than the
		 * sqlite3_value_*() it wraps, and 3M rows take up to 26 of them */
		sqlite3_value *v[11];
		for (int i = 0; i < 11; i++)
			v[i] = sqlite3_column_value(st, i);
		bool ttext = sqlite3_value_type(v[2]) == SQLITE_TEXT;
		const unsigned char *type = sqlite3_value_text(v[2]);
		int tlen = sqlite3_value_bytes(v[2]);
		bool dtext = sqlite3_value_type(v[3]) == SQLITE_TEXT;
		const unsigned char *date = sqlite3_value_text(v[3]);
		int dlen = sqlite3_value_bytes(v[3]);
		bool stext = sqlite3_value_type(v[4]) == SQLITE_TEXT;
		const unsigned char *status = sqlite3_value_text(v[4]);
		int slen = sqlite3_value_bytes(v[4]);
		bool own_status = stext &&
			((slen == 13 && !memcmp(status, "pre-scheduled", 13)) ||
			 (slen == 7 && !memcmp(status, "skipped", 7)));
		int64_t cid = sqlite3_value_type(v[1]) == SQLITE_INTEGER ?
			sqlite3_value_int64(v[1]) : INT64_MIN;
		int32_t d;

		if (own_status) {
			int t = ttext ? type_of(type, tlen) : T_OTHER;
			if (t == T_OTHER)
				continue;   /* someone else's plan: neither owned nor counted */
			if (r->nold == r->aold) {
				size_t na = r->aold ? r->aold * 2 : 4096;
				void *nb = sched_big(r->old, na * sizeof(*r->old));
				if (!nb)
					goto out_oom;
				r->old = nb;
				r->aold = na;
			}
			struct sched_old *o = &r->old[r->nold++];
			o->rowid = sqlite3_value_int64(v[0]);
			o->cid = cid;
			o->type = (uint8_t)t;
			o->date = dtext && sched_parse_ymd((const char *)date, (size_t)dlen, &d) ?
				d : SCHED_NODATE;
			o->skipped = slen == 7;
			o->time_ok = sqlite3_value_type(v[5]) == SQLITE_TEXT &&
				sqlite3_value_bytes(v[5]) == 8 &&
				!memcmp(sqlite3_value_text(v[5]), r->o->send_time, 8);
			o->reason = (uint8_t)sched_reason_of(sqlite3_value_text(v[6]),
						       sqlite3_value_bytes(v[6]), &o->state);
			o->prio_ok = sqlite3_value_type(v[7]) == SQLITE_INTEGER &&
				sqlite3_value_int64(v[7]) == sched_type_prio[t];
			o->event = SCHED_NODATE;
			if (sqlite3_value_type(v[8]) == SQLITE_INTEGER &&
			    sqlite3_value_type(v[9]) == SQLITE_INTEGER &&
			    sqlite3_value_type(v[10]) == SQLITE_INTEGER) {
				int64_t y = sqlite3_value_int64(v[8]), m = sqlite3_value_int64(v[9]),
					dd = sqlite3_value_int64(v[10]);
				if (y >= 1 && y <= 9999 && m >= 1 && m <= 12 && dd >= 1 &&
				    dd <= sched_mdays((int)y, (int)m))
					o->event = sched_days((int)y, (int)m, (int)dd);
			}
			continue;
		}
		/* a counted row */
		if (p->ncnt == p->acnt) {
			size_t na = p->acnt ? p->acnt * 2 : 1024;
			void *nb = sched_big(p->cnt, na * sizeof(*p->cnt));
			if (!nb)
				goto out_oom;
			p->cnt = nb;
			p->acnt = na;
		}
		struct sched_counted *k = &p->cnt[p->ncnt++];
		char low[16];
		int lt = T_OTHER;
		if (type && tlen < (int)sizeof(low)) {
			for (int i = 0; i < tlen; i++)
				low[i] = (char)(type[i] >= 'A' && type[i] <= 'Z' ? type[i] + 32 : type[i]);
			lt = type_of((const unsigned char *)low, tlen);
		}
		k->cid = cid;
		k->ltype = (uint8_t)lt;
		k->date = date && dlen >= 10 && sched_parse_ymd((const char *)date, 10, &d) ?
			d : SCHED_NODATE;
		k->blocks = ttext && dtext && dlen == 10 && k->date != SCHED_NODATE &&
			type_of(type, tlen) != T_OTHER;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sched_db_fail(r, "cannot read table email_schedules of");
	return 0;
out_oom:
	sqlite3_finalize(st);
	return sched_fail(r, FERRY_FAIL, "out of memory reading table email_schedules");
}

/* Owned rows into unique-key order by a counting sort on contact_id, when the ids are
 * dense enough (at most two buckets a row: they are a table's integer keys, usually
 * 1..N), then each contact's few rows by type and date. At 3M rows it takes a tenth of
 * what qsort took. False (nothing changed) when the ids are too spread or memory is short. */
static bool bucket_sort(struct sched_run *r)
{
	int64_t lo = INT64_MAX, hi = INT64_MIN;
	struct sched_old *out;
	uint32_t *at;
	size_t span;

	for (size_t i = 0; i < r->nold; i++) {
		lo = r->old[i].cid < lo ? r->old[i].cid : lo;
		hi = r->old[i].cid > hi ? r->old[i].cid : hi;
	}
	/* INT64_MIN (not an integer) or ids far apart: qsort */
	if (r->nold > UINT32_MAX || lo < -((int64_t)1 << 61) || hi > ((int64_t)1 << 61) ||
	    (uint64_t)(hi - lo) >= 2 * (uint64_t)r->nold + 65536)
		return false;
	span = (size_t)(hi - lo) + 1;
	at = sched_big(NULL, (span + 1) * sizeof(*at));
	out = sched_big(NULL, r->nold * sizeof(*out));
	if (!at || !out) {
		free(at);
		free(out);
		return false;
	}
	memset(at, 0, (span + 1) * sizeof(*at));
	for (size_t i = 0; i < r->nold; i++)
		at[r->old[i].cid - lo + 1]++;
	for (size_t b = 1; b <= span; b++)
		at[b] += at[b - 1];
	for (size_t i = 0; i < r->nold; i++)
		out[at[r->old[i].cid - lo]++] = r->old[i];
	/* at[b] is now the end of bucket b */
	for (size_t b = 0, from = 0; b < span; from = at[b++]) {
		size_t n = at[b] - from;
		struct sched_old *g = out + from;

		if (n > 16) {
			qsort(g, n, sizeof(*g), cmp_old);
			continue;
		}
		for (size_t i = 1; i < n; i++) {
			struct sched_old x = g[i];
			size_t j = i;
			for (; j > 0 && cmp_old(&g[j - 1], &x) > 0; j--)
				g[j] = g[j - 1];
			g[j] = x;
		}
	}
	free(at);
	free(r->old);
	r->old = out;
	r->aold = r->nold;
	return true;
}

/* The owned rows read into unique-key order, unless they are in it already (a table
 * written in key order reads back sorted). */
static void sort_old(struct sched_run *r)
{
	for (size_t i = 1; i < r->nold; i++)
		if (cmp_old(&r->old[i - 1], &r->old[i]) > 0) {
			if (!bucket_sort(r))
				qsort(r->old, r->nold, sizeof(*r->old), cmp_old);
			return;
		}
}

/* After every range is read: old rows in unique-key order, counted rows by contact and
 * their dates sorted (base load). */
static int finish_schedules(struct sched_run *r)
{
	struct sched_plan *p = &r->plan;

	sort_old(r);
	if (p->ncnt > 1)
		qsort(p->cnt, p->ncnt, sizeof(*p->cnt), cmp_counted);
	p->cnt_dates = sched_big(NULL, (p->ncnt + 1) * sizeof(*p->cnt_dates));
	if (!p->cnt_dates)
		return sched_fail(r, FERRY_FAIL, "out of memory");
	for (size_t i = 0; i < p->ncnt; i++)
		if (p->cnt[i].date != SCHED_NODATE)
			p->cnt_dates[p->ncnt_dates++] = p->cnt[i].date;
	if (p->ncnt_dates > 1)
		qsort(p->cnt_dates, p->ncnt_dates, sizeof(*p->cnt_dates), cmp_i32);
	return 0;
}

/* RULES.md, inputs: ids of contacts whose latest eligibility answer has medical conditions. */
static int load_failed(struct sched_run *r)
{
	static const char sql[] =
		"SELECT contact_id FROM (SELECT contact_id, metadata, row_number() OVER "
		"(PARTITION BY contact_id ORDER BY created_at DESC, id DESC) AS rn "
		"FROM contact_events WHERE event_type = 'eligibility_answered') "
		"WHERE rn = 1 AND CASE WHEN json_valid(metadata) "
		"THEN json_extract(metadata, '$.has_medical_conditions') IN (1, 'true') ELSE 0 END "
		"ORDER BY contact_id";
	sqlite3_stmt *st;
	int rc;

	if (!r->o->exclude_fu)
		return 0;
	if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL))
		return sched_db_fail(r, "cannot read table contact_events of");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (r->nfailed == r->afailed) {
			size_t na = r->afailed ? r->afailed * 2 : 256;
			void *nb = realloc(r->failed, na * sizeof(*r->failed));
			if (!nb) {
				sqlite3_finalize(st);
				return sched_fail(r, FERRY_FAIL, "out of memory");
			}
			r->failed = nb;
			r->afailed = na;
		}
		r->failed[r->nfailed++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sched_db_fail(r, "cannot read table contact_events of");
	return 0;
}

static bool has_failed(const struct sched_run *r, int64_t id)
{
	size_t lo = 0, hi = r->nfailed;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (r->failed[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->nfailed && r->failed[lo] == id;
}

static int bad_row(struct sched_run *r, enum sched_warn_kind kind, int64_t id, const char *col,
		   const unsigned char *v, int n, const char *what)
{
	char val[80];

	shown(val, sizeof(val), v, n);
	r->rep->bad++;
	if (r->o->strict)
		return sched_fail(r, FERRY_FAIL,
				  "contacts id=%lld %s '%s' is not a valid %s (strict = 1)",
				  (long long)id, col, val, what);
	sched_warn(r, kind, "contacts id=%lld %s '%s' is not a valid %s (contact skipped)",
		   (long long)id, col, val, what);
	return 0;
}

/* Reads contacts in id order and validates them (RULES.md): the plan's contacts. */
static int load_contacts(struct sched_run *r)
{
	static const char sql[] =
		"SELECT id, email, state, zip_code, birth_date, effective_date FROM contacts ORDER BY id";
	static const char *const dcol[2] = { "birth_date", "effective_date" };
	struct sched_plan *p = &r->plan;
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL))
		return sched_db_fail(r, "cannot read table contacts of");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		sqlite3_value *v[6];                /* as in load_schedules */
		for (int i = 0; i < 6; i++)
			v[i] = sqlite3_column_value(st, i);
		int64_t id = sqlite3_value_int64(v[0]);
		const char *em = (const char *)sqlite3_value_text(v[1]);
		size_t elen = (size_t)sqlite3_value_bytes(v[1]);
		int32_t dates[2];
		bool bad = false;

		r->rep->contacts++;
		const char *t = em;
		size_t tl = elen;
		if (t)
			sched_trim(&t, &tl);
		if (!t || tl == 0) {
			r->rep->no_email++;
			continue;
		}
		p->n_emails++;
		if (!sched_email_valid(em, elen)) {
			if (bad_row(r, SCHED_W_EMAIL, id, "email", (const unsigned char *)em, (int)elen,
				    "email"))
				goto out_fail;
			continue;
		}
		for (int i = 0; i < 2 && !bad; i++) {
			const char *dv = (const char *)sqlite3_value_text(v[4 + i]);
			int vl = sqlite3_value_bytes(v[4 + i]);
			int k = dv ? sched_parse_value_date(dv, (size_t)vl, &dates[i]) : 0;
			if (k == 0)
				dates[i] = SCHED_NODATE;
			if (k < 0) {
				bad = true;
				if (bad_row(r, i ? SCHED_W_EFFECTIVE_DATE : SCHED_W_BIRTH_DATE, id,
					    dcol[i], (const unsigned char *)dv, vl, "date"))
					goto out_fail;
			}
		}
		if (bad)
			continue;
		r->rep->valid++;
		const char *sv = (const char *)sqlite3_value_text(v[2]);
		size_t sl = (size_t)sqlite3_value_bytes(v[2]);
		int state = sv ? sched_state_resolve(sv, sl) : -1;
		if (state < 0 && sv) {
			const char *ts = sv;
			size_t tsl = sl;
			sched_trim(&ts, &tsl);
			if (tsl) {
				char val[80];
				shown(val, sizeof(val), (const unsigned char *)sv, (int)sl);
				r->rep->unknown_state++;
				sched_warn(r, SCHED_W_STATE,
					   "contacts id=%lld state '%s' is not a known state code",
					   (long long)id, val);
			}
		}
		if (state < 0) {
			const char *z = (const char *)sqlite3_value_text(v[3]);
			if (z)
				state = sched_zip_state(&r->o->zips, z, (size_t)sqlite3_value_bytes(v[3]));
		}
		if (state < 0 && r->o->unknown_skip) {
			r->rep->no_state++;
			continue;
		}
		if (p->nct == p->act) {
			size_t na = p->act ? p->act * 2 : 4096;
			void *nb = sched_big(p->ct, na * sizeof(*p->ct));
			if (!nb) {
				sched_fail(r, FERRY_FAIL, "out of memory reading table contacts");
				goto out_fail;
			}
			p->ct = nb;
			p->act = na;
		}
		struct sched_contact *c = &p->ct[p->nct++];
		int y, m, d;
		c->id = id;
		c->birth = dates[0];
		c->ed = dates[1];
		c->state = (int8_t)state;
		c->failed_uw = r->nfailed && has_failed(r, id);
		c->bm = c->bd = c->em = c->edd = 0;
		if (c->birth != SCHED_NODATE) {
			sched_civil(c->birth, &y, &m, &d);
			c->bm = (uint8_t)m;
			c->bd = (uint8_t)d;
		}
		if (c->ed != SCHED_NODATE) {
			sched_civil(c->ed, &y, &m, &d);
			c->em = (uint8_t)m;
			c->edd = (uint8_t)d;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sched_db_fail(r, "cannot read table contacts of");
	return 0;
out_fail:
	sqlite3_finalize(st);
	return FERRY_FAIL;
}

/* email_schedules' rowids not read yet, [lo, hi]: the two readers take chunks of them from
 * either end until they meet, so neither waits for the other however long contacts take
 * (a fixed share left one thread idle for a third of the load). */
struct split {
	pthread_mutex_t mu;
	int64_t lo, hi;
	int64_t chunk;                      /* rowids a claim takes */
};

/* The next chunk from the bottom (the reader thread) or the top (this one), into [*a, *b];
 * false when none is left. */
static bool claim(struct split *s, bool top, int64_t *a, int64_t *b)
{
	bool any;

	pthread_mutex_lock(&s->mu);
	any = s->lo <= s->hi;
	if (any && (uint64_t)s->hi - (uint64_t)s->lo < (uint64_t)s->chunk) {
		*a = s->lo;                 /* the last chunk: whatever is left */
		*b = s->hi;
		s->lo = 1;
		s->hi = 0;
	} else if (any && top) {
		*b = s->hi;
		*a = s->hi - (s->chunk - 1);
		s->hi = *a - 1;
	} else if (any) {
		*a = s->lo;
		*b = s->lo + (s->chunk - 1);
		s->lo = *b + 1;
	}
	pthread_mutex_unlock(&s->mu);
	return any;
}

struct reader {
	struct sched_run r;                 /* a copy of the run with its own connection */
	struct sched_io io;                 /* its own error buffer */
	struct split *split;
	int rc;
};

static void *read_schedules(void *arg)
{
	struct reader *t = arg;
	int64_t a, b;

	while (!t->rc && claim(t->split, false, &a, &b))
		t->rc = load_schedules(&t->r, a, b);
	return NULL;
}

/* Where one of this thread's chunks starts in its arrays. */
struct mark {
	size_t old, cnt;
};

/* This thread's chunks from the top, each appended in turn: marks[k] is where the k-th
 * begins (nmarks of them, room for amarks). */
static int read_top(struct sched_run *r, struct split *s, struct mark **marks, size_t *nmarks,
		    size_t *amarks)
{
	int64_t a, b;

	while (claim(s, true, &a, &b)) {
		if (*nmarks == *amarks) {
			size_t na = *amarks ? *amarks * 2 : 64;
			void *nb = realloc(*marks, na * sizeof(**marks));
			if (!nb)
				return sched_fail(r, FERRY_FAIL, "out of memory");
			*marks = nb;
			*amarks = na;
		}
		(*marks)[(*nmarks)++] = (struct mark){ r->nold, r->plan.ncnt };
		if (load_schedules(r, a, b))
			return FERRY_FAIL;
	}
	return 0;
}

static int load_serial(struct sched_run *r)
{
	if (load_schedules(r, INT64_MIN, INT64_MAX) || finish_schedules(r) || load_failed(r) ||
	    load_contacts(r))
		return FERRY_FAIL;
	return 0;
}

/* *dst (n0 elements of size sz, room for n0 + n1) then the chunks of src (marks[0..nmarks),
 * each up to the next one's start or n1) from the last taken to the first: rowid order. */
static void append_chunks(char *dst, size_t n0, const char *src, size_t n1,
			  const struct mark *marks, size_t nmarks, bool cnt, size_t sz)
{
	char *d = dst + n0 * sz;
	size_t end = n1;

	for (size_t k = nmarks; k-- > 0;) {
		size_t from = cnt ? marks[k].cnt : marks[k].old;

		if (end > from)
			memcpy(d, src + from * sz, (end - from) * sz);
		d += (end - from) * sz;
		end = from;
	}
}

/* The thread's rows (the bottom chunks, in rowid order) first, then ours (the top chunks,
 * taken from the top down) in rowid order: the rows as one thread would have read them
 * (finish_schedules sorts the owned ones); the counted ones likewise. The thread's arrays
 * grow in place (a large one is moved by mremap, not copied). */
static int merge_reader(struct sched_run *r, struct reader *t, const struct mark *marks,
			size_t nmarks)
{
	struct sched_plan *p = &r->plan, *q = &t->r.plan;
	size_t nold = t->r.nold + r->nold, ncnt = q->ncnt + p->ncnt;
	struct sched_old *old = sched_big(t->r.old, (nold + 1) * sizeof(*old));

	if (!old)
		return sched_fail(r, FERRY_FAIL, "out of memory");
	t->r.old = old;
	struct sched_counted *cnt = sched_big(q->cnt, (ncnt + 1) * sizeof(*cnt));
	if (!cnt)
		return sched_fail(r, FERRY_FAIL, "out of memory");
	q->cnt = cnt;
	append_chunks((char *)old, t->r.nold, (const char *)r->old, r->nold, marks, nmarks, false,
		      sizeof(*old));
	append_chunks((char *)cnt, q->ncnt, (const char *)p->cnt, p->ncnt, marks, nmarks, true,
		      sizeof(*cnt));
	free(r->old);
	r->old = old;
	r->nold = nold;
	r->aold = nold + 1;
	t->r.old = NULL;
	free(p->cnt);
	p->cnt = cnt;
	p->ncnt = ncnt;
	p->acnt = ncnt + 1;
	q->cnt = NULL;
	return 0;
}

/* Rowids a chunk takes: 128 chunks in all (a chunk is one statement), at least 16,384. */
#define CHUNK_MIN 16384

/* Two threads, each with its connection: the second reads email_schedules by rowid from the
 * bottom up; this one reads contacts, then the table from the top down until they meet (struct
 * split); the rows are joined in rowid order and sorted once (finish_schedules). The main
 * connection's transaction (RESERVED lock in a run) keeps writers out, so both see the same
 * database. */
int sched_load(struct sched_run *r)
{
	if (r->primed)                      /* what the last run read, from the rows sidecar */
		return finish_schedules(r);
	struct split split = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct mark *marks = NULL;
	size_t nmarks = 0, amarks = 0;
	struct reader t;
	sqlite3_stmt *st;
	int64_t lo = 0, hi = -1;
	pthread_t th;
	int rc;

	if (r->o->threads < 2 || !r->es_exists)
		return load_serial(r);
	/* two subqueries: min() and max() together would scan the table */
	if (sqlite3_prepare_v2(r->db, "SELECT (SELECT min(rowid) FROM email_schedules), "
			       "(SELECT max(rowid) FROM email_schedules)", -1,
			       &st, NULL) != SQLITE_OK)
		return sched_db_fail(r, "cannot read table email_schedules of");
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER) {
		lo = sqlite3_column_int64(st, 0);
		hi = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (hi < lo)
		return load_serial(r);
	split.lo = lo;
	split.hi = hi;
	split.chunk = (int64_t)(((uint64_t)hi - (uint64_t)lo) / 128) + 1;
	if (split.chunk < CHUNK_MIN)
		split.chunk = CHUNK_MIN;
	memset(&t, 0, sizeof(t));
	t.r = *r;
	t.r.io = &t.io;
	t.r.capture = false;                /* the warning buffer stays this thread's */
	t.r.warn = NULL;
	t.r.nwarn = t.r.awarn = 0;
	t.r.old = NULL;
	t.r.nold = t.r.aold = 0;
	memset(&t.r.plan, 0, sizeof(t.r.plan));
	t.split = &split;
	if (sqlite3_open_v2(r->path, &t.r.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(t.r.db);
		return load_serial(r);
	}
	sqlite3_busy_timeout(t.r.db, 10000);
	if (pthread_create(&th, NULL, read_schedules, &t) != 0) {
		sqlite3_close(t.r.db);
		return load_serial(r);
	}
	rc = load_failed(r) || load_contacts(r) || read_top(r, &split, &marks, &nmarks, &amarks) ?
		FERRY_FAIL : 0;
	pthread_join(th, NULL);
	sqlite3_close(t.r.db);
	if (t.rc) {
		/* the table is read first in the one-thread order, so its error wins */
		snprintf(r->io->err, sizeof(r->io->err), "%s", t.io.err);
		rc = FERRY_FAIL;
	}
	if (!rc)
		rc = merge_reader(r, &t, marks, nmarks);
	free(marks);
	free(t.r.old);
	free(t.r.plan.cnt);
	return rc ? rc : finish_schedules(r);
}
