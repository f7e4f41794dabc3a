/* sched_db.c: the schedule stage's database side: schema checks, loading, the §9.3 diff write, dry-run CSV. */
#include "sched_core.h"
#include "sched_ddl.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry_failpoint.h"
#include "ferry_stage.h"
#include "ferry_time.h"

/* An owned row of email_schedules as read before the run (§9.2). */
struct sched_old {
	int64_t rowid;                      /* rowid, for UPDATE/DELETE */
	int64_t cid;                        /* contact_id, INT64_MIN if not an integer */
	int32_t date;                       /* canonical scheduled_send_date, or SCHED_NODATE */
	int32_t event;                      /* event_year/month/day as a date, or SCHED_NODATE */
	uint8_t type;                       /* enum sched_type */
	uint8_t skipped;                    /* status = 'skipped' */
	uint8_t reason;                     /* enum sched_reason, R_ALIEN when not ours */
	int8_t state;                       /* state of the reason text */
	uint8_t time_ok;                    /* scheduled_send_time = send_time */
	uint8_t prio_ok;                    /* priority = the type's priority */
};

struct run {
	const struct sched_opts *o;
	struct sched_io *io;
	struct sched_report *rep;
	const char *path;
	sqlite3 *db;
	struct sched_plan plan;
	struct sched_old *old;              /* owned rows */
	size_t nold, aold;
	int64_t *failed;                    /* contact ids that failed underwriting, sorted */
	size_t nfailed, afailed;
	bool es_exists;                     /* email_schedules exists */
	unsigned es_cols;                   /* bit per es_col_names entry */
	bool capture;                       /* keep warnings for the fingerprint sidecar */
	bool warn_oom;                      /* a warning could not be kept */
	char *warn;                         /* kept warnings, "LEVEL MESSAGE\n" lines */
	size_t nwarn, awarn;
};

#define WARN_KEEP_MAX (64u << 20)           /* more warnings than this: no sidecar */

static const char *const es_col_names[] = {
	"contact_id", "email_type", "scheduled_send_date", "status",           /* required */
	"scheduled_send_time", "skip_reason", "priority", "event_year", "event_month",
	"event_day", "scheduler_run_id", "updated_at",
};
#define ES_REQUIRED 4
#define ES_ADDABLE 11                       /* the first 11: updated_at is only used */
static const char *const es_col_defs[] = {
	NULL, NULL, NULL, NULL,
	"scheduled_send_time TEXT DEFAULT '08:30:00'", "skip_reason TEXT",
	"priority INTEGER DEFAULT 10", "event_year INTEGER", "event_month INTEGER",
	"event_day INTEGER", "scheduler_run_id TEXT",
};
/* What an absent column reads as (its ADD COLUMN default). */
static const char *const es_col_absent[] = {
	NULL, NULL, NULL, NULL, "'08:30:00'", "NULL", "10", "NULL", "NULL", "NULL", "NULL", "NULL",
};

static const char create_sql[] = SCHED_CREATE_TABLE;

static int fail(struct run *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct run *r, int rc, const char *fmt, ...)
{
	va_list ap;

	if (r->io->err[0])
		return rc;          /* the first error wins */
	va_start(ap, fmt);
	vsnprintf(r->io->err, sizeof(r->io->err), fmt, ap);
	va_end(ap);
	return rc;
}

static void say(struct run *r, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(struct run *r, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (r->io->log)
		r->io->log(r->io->ud, level, buf);
	if (r->capture && !r->warn_oom) {
		size_t n = strlen(buf) + 16;
		if (r->nwarn + n > r->awarn) {
			size_t na = r->awarn ? r->awarn * 2 : 65536;
			char *nb = na <= WARN_KEEP_MAX ? realloc(r->warn, na) : NULL;
			if (!nb) {
				r->warn_oom = true;
				return;
			}
			r->warn = nb;
			r->awarn = na;
		}
		/* messages are one line: values go through shown() */
		r->nwarn += (size_t)sprintf(r->warn + r->nwarn, "%d %s\n", level, buf);
	}
}

static int db_fail(struct run *r, const char *what)
{
	return fail(r, FERRY_FAIL, "%s '%s': %s", what, r->path, sqlite3_errmsg(r->db));
}

static int exec(struct run *r, const char *sql, const char *what)
{
	if (sqlite3_exec(r->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(r, what);
	return 0;
}

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
static int columns(struct run *r, const char *table, const char *const *names, int n,
		   unsigned *mask)
{
	sqlite3_stmt *st;
	int rows = 0, rc;

	*mask = 0;
	if (sqlite3_prepare_v2(r->db, "SELECT name FROM pragma_table_info(?1)", -1, &st, NULL))
		return db_fail(r, "cannot read the schema of"), -2;
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
		return db_fail(r, "cannot read the schema of"), -2;
	return rows ? 0 : -1;
}

static int need_columns(struct run *r, const char *table, const char *const *names, int n)
{
	unsigned mask;
	int rc = columns(r, table, names, n, &mask);

	if (rc == -2)
		return FERRY_FAIL;
	if (rc == -1)
		return fail(r, FERRY_FAIL, "database '%s' has no table %s", r->path, table);
	for (int i = 0; i < n; i++)
		if (!(mask & (1u << i)))
			return fail(r, FERRY_FAIL, "table %s has no column %s", table, names[i]);
	return 0;
}

static int check_schema(struct run *r)
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
	rc = columns(r, "email_schedules", es_col_names, 12, &r->es_cols);
	if (rc == -2)
		return FERRY_FAIL;
	r->es_exists = rc == 0;
	for (int i = 0; r->es_exists && i < ES_REQUIRED; i++)
		if (!(r->es_cols & (1u << i)))
			return fail(r, FERRY_FAIL, "table email_schedules has no column %s",
				    es_col_names[i]);
	return 0;
}

static int reason_of(const unsigned char *s, int n, int8_t *state)
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

/* One scan of the rowid range [lo, hi] of email_schedules: counted rows (§2.3) and owned
 * rows (§9.2). */
static int load_schedules(struct run *r, int64_t lo, int64_t hi)
{
	char sql[1024];
	sqlite3_stmt *st;
	int n, rc;

	if (!r->es_exists)
		return 0;
	n = snprintf(sql, sizeof(sql), "SELECT rowid, contact_id, email_type, scheduled_send_date, status");
	for (int i = 4; i < 11; i++)
		n += snprintf(sql + n, sizeof(sql) - (size_t)n, ", %s",
			      r->es_cols & (1u << i) ? es_col_names[i] : es_col_absent[i]);
	snprintf(sql + n, sizeof(sql) - (size_t)n,
		 " FROM email_schedules WHERE rowid BETWEEN ?1 AND ?2");
	if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL))
		return db_fail(r, "cannot read table email_schedules of");
	sqlite3_bind_int64(st, 1, lo);
	sqlite3_bind_int64(st, 2, hi);
	struct sched_plan *p = &r->plan;
	/* Size for the rowid span up front: growing by realloc in a thread arena is slow. */
	if (lo > INT64_MIN && hi < INT64_MAX && hi >= lo && hi - lo < (1 << 25) &&
	    r->aold < (size_t)(hi - lo + 1)) {
		void *nb = realloc(r->old, (size_t)(hi - lo + 1) * sizeof(*r->old));
		if (nb) {
			r->old = nb;
			r->aold = (size_t)(hi - lo + 1);
		}
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *type = sqlite3_column_text(st, 2);
		int tlen = sqlite3_column_bytes(st, 2);
		bool ttext = sqlite3_column_type(st, 2) == SQLITE_TEXT;
		const unsigned char *date = sqlite3_column_text(st, 3);
		int dlen = sqlite3_column_bytes(st, 3);
		bool dtext = sqlite3_column_type(st, 3) == SQLITE_TEXT;
		const unsigned char *status = sqlite3_column_text(st, 4);
		int slen = sqlite3_column_bytes(st, 4);
		bool own_status = sqlite3_column_type(st, 4) == SQLITE_TEXT &&
			((slen == 13 && !memcmp(status, "pre-scheduled", 13)) ||
			 (slen == 7 && !memcmp(status, "skipped", 7)));
		int64_t cid = sqlite3_column_type(st, 1) == SQLITE_INTEGER ?
			sqlite3_column_int64(st, 1) : INT64_MIN;
		int32_t d;

		if (own_status) {
			int t = ttext ? type_of(type, tlen) : T_OTHER;
			if (t == T_OTHER)
				continue;   /* someone else's plan: neither owned nor counted */
			if (r->nold == r->aold) {
				size_t na = r->aold ? r->aold * 2 : 4096;
				void *nb = realloc(r->old, na * sizeof(*r->old));
				if (!nb)
					goto out_oom;
				r->old = nb;
				r->aold = na;
			}
			struct sched_old *o = &r->old[r->nold++];
			o->rowid = sqlite3_column_int64(st, 0);
			o->cid = cid;
			o->type = (uint8_t)t;
			o->date = dtext && sched_parse_ymd((const char *)date, (size_t)dlen, &d) ?
				d : SCHED_NODATE;
			o->skipped = slen == 7;
			o->time_ok = sqlite3_column_type(st, 5) == SQLITE_TEXT &&
				sqlite3_column_bytes(st, 5) == 8 &&
				!memcmp(sqlite3_column_text(st, 5), r->o->send_time, 8);
			o->reason = (uint8_t)reason_of(sqlite3_column_text(st, 6),
						       sqlite3_column_bytes(st, 6), &o->state);
			o->prio_ok = sqlite3_column_type(st, 7) == SQLITE_INTEGER &&
				sqlite3_column_int64(st, 7) == sched_type_prio[t];
			o->event = SCHED_NODATE;
			if (sqlite3_column_type(st, 8) == SQLITE_INTEGER &&
			    sqlite3_column_type(st, 9) == SQLITE_INTEGER &&
			    sqlite3_column_type(st, 10) == SQLITE_INTEGER) {
				int64_t y = sqlite3_column_int64(st, 8), m = sqlite3_column_int64(st, 9),
					dd = sqlite3_column_int64(st, 10);
				if (y >= 1 && y <= 9999 && m >= 1 && m <= 12 && dd >= 1 &&
				    dd <= sched_mdays((int)y, (int)m))
					o->event = sched_days((int)y, (int)m, (int)dd);
			}
			continue;
		}
		/* a counted row */
		if (p->ncnt == p->acnt) {
			size_t na = p->acnt ? p->acnt * 2 : 1024;
			void *nb = realloc(p->cnt, na * sizeof(*p->cnt));
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
		return db_fail(r, "cannot read table email_schedules of");
	return 0;
out_oom:
	sqlite3_finalize(st);
	return fail(r, FERRY_FAIL, "out of memory reading table email_schedules");
}

/* After every range is read: old rows in unique-key order, counted rows by contact and
 * their dates sorted (base load). */
static int finish_schedules(struct run *r)
{
	struct sched_plan *p = &r->plan;

	for (size_t i = 1; i < r->nold; i++)
		if (cmp_old(&r->old[i - 1], &r->old[i]) > 0) {
			qsort(r->old, r->nold, sizeof(*r->old), cmp_old);
			break;
		}
	if (p->ncnt > 1)
		qsort(p->cnt, p->ncnt, sizeof(*p->cnt), cmp_counted);
	p->cnt_dates = malloc((p->ncnt + 1) * sizeof(*p->cnt_dates));
	if (!p->cnt_dates)
		return fail(r, FERRY_FAIL, "out of memory");
	for (size_t i = 0; i < p->ncnt; i++)
		if (p->cnt[i].date != SCHED_NODATE)
			p->cnt_dates[p->ncnt_dates++] = p->cnt[i].date;
	if (p->ncnt_dates > 1)
		qsort(p->cnt_dates, p->ncnt_dates, sizeof(*p->cnt_dates), cmp_i32);
	return 0;
}

/* §2.2: ids of contacts whose latest eligibility answer has medical conditions. */
static int load_failed(struct run *r)
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
		return db_fail(r, "cannot read table contact_events of");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (r->nfailed == r->afailed) {
			size_t na = r->afailed ? r->afailed * 2 : 256;
			void *nb = realloc(r->failed, na * sizeof(*r->failed));
			if (!nb) {
				sqlite3_finalize(st);
				return fail(r, FERRY_FAIL, "out of memory");
			}
			r->failed = nb;
			r->afailed = na;
		}
		r->failed[r->nfailed++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(r, "cannot read table contact_events of");
	return 0;
}

static bool has_failed(const struct run *r, int64_t id)
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

static int bad_row(struct run *r, int64_t id, const char *col, const unsigned char *v, int n,
		   const char *what)
{
	char val[80];

	shown(val, sizeof(val), v, n);
	r->rep->bad++;
	if (r->o->strict)
		return fail(r, FERRY_FAIL, "contacts id=%lld %s '%s' is not a valid %s (strict = 1)",
			    (long long)id, col, val, what);
	say(r, FERRY_WARN, "contacts id=%lld %s '%s' is not a valid %s (contact skipped)",
	    (long long)id, col, val, what);
	return 0;
}

/* Reads contacts in id order and validates them (§6): the plan's contacts. */
static int load_contacts(struct run *r)
{
	static const char sql[] =
		"SELECT id, email, state, zip_code, birth_date, effective_date FROM contacts ORDER BY id";
	static const char *const dcol[2] = { "birth_date", "effective_date" };
	struct sched_plan *p = &r->plan;
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL))
		return db_fail(r, "cannot read table contacts of");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		const char *em = (const char *)sqlite3_column_text(st, 1);
		size_t elen = (size_t)sqlite3_column_bytes(st, 1);
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
			if (bad_row(r, id, "email", (const unsigned char *)em, (int)elen, "email"))
				goto out_fail;
			continue;
		}
		for (int i = 0; i < 2 && !bad; i++) {
			const char *v = (const char *)sqlite3_column_text(st, 4 + i);
			int vl = sqlite3_column_bytes(st, 4 + i);
			int k = v ? sched_parse_value_date(v, (size_t)vl, &dates[i]) : 0;
			if (k == 0)
				dates[i] = SCHED_NODATE;
			if (k < 0) {
				bad = true;
				if (bad_row(r, id, dcol[i], (const unsigned char *)v, vl, "date"))
					goto out_fail;
			}
		}
		if (bad)
			continue;
		r->rep->valid++;
		const char *sv = (const char *)sqlite3_column_text(st, 2);
		size_t sl = (size_t)sqlite3_column_bytes(st, 2);
		int state = sv ? sched_state_resolve(sv, sl) : -1;
		if (state < 0 && sv) {
			const char *ts = sv;
			size_t tsl = sl;
			sched_trim(&ts, &tsl);
			if (tsl) {
				char val[80];
				shown(val, sizeof(val), (const unsigned char *)sv, (int)sl);
				r->rep->unknown_state++;
				say(r, FERRY_WARN, "contacts id=%lld state '%s' is not a known state code",
				    (long long)id, val);
			}
		}
		if (state < 0) {
			const char *z = (const char *)sqlite3_column_text(st, 3);
			if (z)
				state = sched_zip_state(&r->o->zips, z, (size_t)sqlite3_column_bytes(st, 3));
		}
		if (state < 0 && r->o->unknown_skip) {
			r->rep->no_state++;
			continue;
		}
		if (p->nct == p->act) {
			size_t na = p->act ? p->act * 2 : 4096;
			void *nb = realloc(p->ct, na * sizeof(*p->ct));
			if (!nb) {
				fail(r, FERRY_FAIL, "out of memory reading table contacts");
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
		return db_fail(r, "cannot read table contacts of");
	return 0;
out_fail:
	sqlite3_finalize(st);
	return FERRY_FAIL;
}

/* §9.1 DDL: create or complete the table, then the indexes. */
static int ddl(struct run *r)
{
	char sql[256];

	if (!r->es_exists && exec(r, create_sql, "cannot create table email_schedules in"))
		return FERRY_FAIL;
	for (int i = ES_REQUIRED; r->es_exists && i < ES_ADDABLE; i++) {
		if (r->es_cols & (1u << i))
			continue;
		snprintf(sql, sizeof(sql), "ALTER TABLE email_schedules ADD COLUMN %s", es_col_defs[i]);
		if (exec(r, sql, "cannot add a column to table email_schedules in"))
			return FERRY_FAIL;
	}
	if (sqlite3_exec(r->db, "CREATE UNIQUE INDEX IF NOT EXISTS idx_email_schedules_unique "
			 "ON email_schedules(contact_id, email_type, scheduled_send_date)",
			 NULL, NULL, NULL) != SQLITE_OK)
		return fail(r, FERRY_FAIL, "cannot create unique index on table email_schedules: %s",
			    sqlite3_errmsg(r->db));
	if (exec(r, "CREATE INDEX IF NOT EXISTS idx_email_schedules_status_date "
		 "ON email_schedules(status, scheduled_send_date)",
		 "cannot create an index of table email_schedules in") ||
	    exec(r, "CREATE INDEX IF NOT EXISTS idx_email_schedules_run "
		 "ON email_schedules(scheduler_run_id)",
		 "cannot create an index of table email_schedules in"))
		return FERRY_FAIL;
	return 0;
}

static int key_cmp(const struct run *r, const struct sched_cand *k, const struct sched_old *o)
{
	int64_t cid = r->plan.ct[k->ci].id;

	if (cid != o->cid)
		return cid < o->cid ? -1 : 1;
	if (k->type != o->type)
		return k->type < o->type ? -1 : 1;
	return (k->date > o->date) - (k->date < o->date);
}

static bool same_row(const struct run *r, const struct sched_cand *k, const struct sched_old *o)
{
	int8_t st = k->reason == R_NONE || k->reason == R_FREQ ? -1 : r->plan.ct[k->ci].state;

	return o->time_ok && o->prio_ok && o->skipped == k->skipped && o->reason == k->reason &&
	       o->state == st && o->event == k->event;
}

struct writer {
	sqlite3_stmt *ins, *upd, *del;
	char date[11];
};

static void bind_row(struct run *r, sqlite3_stmt *st, int first, const struct sched_cand *k,
		     char *reason, size_t rlen)
{
	int y, m, d;
	const char *why = sched_reason_text(k->reason, r->plan.ct[k->ci].state, reason, rlen);

	sqlite3_bind_text(st, first, r->o->send_time, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, first + 1, k->skipped ? "skipped" : "pre-scheduled", -1, SQLITE_STATIC);
	if (why)
		sqlite3_bind_text(st, first + 2, why, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, first + 2);
	sqlite3_bind_int(st, first + 3, sched_type_prio[k->type]);
	sched_civil(k->event, &y, &m, &d);
	sqlite3_bind_int(st, first + 4, y);
	sqlite3_bind_int(st, first + 5, m);
	sqlite3_bind_int(st, first + 6, d);
	sqlite3_bind_text(st, first + 7, r->o->run_id, -1, SQLITE_STATIC);
}

static int step(struct run *r, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return fail(r, FERRY_FAIL, "cannot %s table email_schedules of '%s': %s", what,
			    r->path, sqlite3_errmsg(r->db));
	return 0;
}

static int do_insert(struct run *r, struct writer *w, struct sched_cand *k)
{
	char reason[64];

	if (!w->ins) {
		r->rep->inserted++;
		return 0;
	}
	sched_fmt_date(k->date, w->date);
	sqlite3_bind_int64(w->ins, 1, r->plan.ct[k->ci].id);
	sqlite3_bind_text(w->ins, 2, sched_type_name[k->type], -1, SQLITE_STATIC);
	sqlite3_bind_text(w->ins, 3, w->date, 10, SQLITE_STATIC);
	bind_row(r, w->ins, 4, k, reason, sizeof(reason));
	if (step(r, w->ins, "insert into"))
		return FERRY_FAIL;
	if (sqlite3_changes(r->db) == 0) {
		/* a row we did not see holds the key (INSERT OR IGNORE) */
		r->rep->ignored++;
		r->rep->rows--;
		if (k->skipped)
			r->rep->skipped--;
		else
			r->rep->pre_scheduled--;
		k->dup = 1;
	} else {
		r->rep->inserted++;
	}
	return 0;
}

static int do_update(struct run *r, struct writer *w, const struct sched_cand *k, int64_t rowid)
{
	char reason[64];

	r->rep->updated++;
	if (!w->upd)
		return 0;
	bind_row(r, w->upd, 1, k, reason, sizeof(reason));
	sqlite3_bind_int64(w->upd, 9, rowid);
	return step(r, w->upd, "update");
}

static int do_delete(struct run *r, struct writer *w, int64_t rowid)
{
	r->rep->deleted++;
	if (!w->del)
		return 0;
	sqlite3_bind_int64(w->del, 1, rowid);
	return step(r, w->del, "delete from");
}

/* §9.3: merge the new rows with the old owned rows (both in unique-key order). In a dry
 * run w has no statements and only counts. */
static int diff(struct run *r, struct writer *w)
{
	struct sched_plan *p = &r->plan;
	size_t j = 0;

	for (size_t i = 0; i < p->ncd; i++) {
		struct sched_cand *k = &p->cd[i];
		if (k->dup)
			continue;
		int c = 1;
		while (j < r->nold && (c = key_cmp(r, k, &r->old[j])) > 0) {
			if (do_delete(r, w, r->old[j].rowid))
				return FERRY_FAIL;
			j++;
		}
		if (j < r->nold && c == 0) {
			if (same_row(r, k, &r->old[j]))
				r->rep->unchanged++;
			else if (do_update(r, w, k, r->old[j].rowid))
				return FERRY_FAIL;
			j++;
			continue;
		}
		if (do_insert(r, w, k))
			return FERRY_FAIL;
	}
	for (; j < r->nold; j++)
		if (do_delete(r, w, r->old[j].rowid))
			return FERRY_FAIL;
	return 0;
}

static int write_rows(struct run *r)
{
	static const char ins[] =
		"INSERT OR IGNORE INTO email_schedules(contact_id, email_type, scheduled_send_date, "
		"scheduled_send_time, status, skip_reason, priority, event_year, event_month, "
		"event_day, scheduler_run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
	char upd[512];
	struct writer w = { 0 };
	int rc = FERRY_FAIL;

	snprintf(upd, sizeof(upd),
		 "UPDATE email_schedules SET scheduled_send_time = ?1, status = ?2, skip_reason = ?3, "
		 "priority = ?4, event_year = ?5, event_month = ?6, event_day = ?7, "
		 "scheduler_run_id = ?8%s WHERE rowid = ?9",
		 !r->es_exists || (r->es_cols & (1u << 11)) ? ", updated_at = datetime('now')" : "");
	if (ddl(r))
		return FERRY_FAIL;
	if (sqlite3_prepare_v2(r->db, ins, -1, &w.ins, NULL) ||
	    sqlite3_prepare_v2(r->db, upd, -1, &w.upd, NULL) ||
	    sqlite3_prepare_v2(r->db, "DELETE FROM email_schedules WHERE rowid = ?1", -1, &w.del, NULL)) {
		db_fail(r, "cannot prepare writing to");
		goto out_finalize;
	}
	rc = diff(r, &w);
out_finalize:
	sqlite3_finalize(w.ins);
	sqlite3_finalize(w.upd);
	sqlite3_finalize(w.del);
	return rc;
}

static char *put_int(char *p, int64_t v)
{
	char tmp[24];
	int n = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	if (v < 0)
		*p++ = '-';
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *put_str(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

/* §10 dry-run CSV, in unique-key order; rows INSERT OR IGNORE would drop are not shown. */
static int print_csv(struct run *r, FILE *out)
{
	struct sched_plan *p = &r->plan;
	char line[256], reason[64], date[11];

	fputs("contact_id,email_type,scheduled_send_date,scheduled_send_time,status,skip_reason,"
	      "priority,event_year,event_month,event_day\n", out);
	for (size_t i = 0; i < p->ncd; i++) {
		const struct sched_cand *k = &p->cd[i];
		char *q = line;
		int y, m, d;

		if (k->dup)
			continue;
		q = put_int(q, p->ct[k->ci].id);
		*q++ = ',';
		q = put_str(q, sched_type_name[k->type]);
		*q++ = ',';
		sched_fmt_date(k->date, date);
		q = put_str(q, date);
		*q++ = ',';
		q = put_str(q, r->o->send_time);
		*q++ = ',';
		q = put_str(q, k->skipped ? "skipped" : "pre-scheduled");
		*q++ = ',';
		const char *why = sched_reason_text(k->reason, p->ct[k->ci].state, reason,
						    sizeof(reason));
		if (why)
			q = put_str(q, why);
		*q++ = ',';
		q = put_int(q, sched_type_prio[k->type]);
		sched_civil(k->event, &y, &m, &d);
		*q++ = ',';
		q = put_int(q, y);
		*q++ = ',';
		q = put_int(q, m);
		*q++ = ',';
		q = put_int(q, d);
		*q++ = '\n';
		fwrite(line, 1, (size_t)(q - line), out);
	}
	if (fflush(out) != 0 || ferror(out))
		return fail(r, FERRY_FAIL, "cannot write the dry-run output");
	return 0;
}

/* Connection settings shared by both readers: a larger page cache keeps a big insert from
 * spilling mid-transaction, and reads come straight from the OS page cache. */
static const char conn_pragmas[] = "PRAGMA cache_size = -65536";

struct reader {
	struct run r;                       /* a copy of the run with its own connection */
	struct sched_io io;                 /* its own error buffer */
	int64_t lo, hi;                     /* its rowid range of email_schedules */
	int rc;
};

static void *read_schedules(void *arg)
{
	struct reader *t = arg;

	t->rc = load_schedules(&t->r, t->lo, t->hi);
	return NULL;
}

static int load_serial(struct run *r)
{
	if (load_schedules(r, INT64_MIN, INT64_MAX) || finish_schedules(r) || load_failed(r) ||
	    load_contacts(r))
		return FERRY_FAIL;
	return 0;
}

/* Two threads: a second connection reads email_schedules while this one reads contacts.
 * The main connection's transaction (RESERVED lock in a run) keeps writers out, so both
 * see the same database. (Splitting the table between the threads by rowid measured
 * slower here than this simple split.) */
static int load_all(struct run *r)
{
	struct reader t;
	pthread_t th;
	int rc;

	if (r->o->threads < 2 || !r->es_exists)
		return load_serial(r);
	memset(&t, 0, sizeof(t));
	t.r = *r;
	t.r.io = &t.io;
	t.r.capture = false;                /* the warning buffer stays this thread's */
	t.r.warn = NULL;
	t.r.nwarn = t.r.awarn = 0;
	t.r.old = NULL;
	t.r.nold = t.r.aold = 0;
	memset(&t.r.plan, 0, sizeof(t.r.plan));
	t.lo = INT64_MIN;
	t.hi = INT64_MAX;
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
	rc = load_failed(r) || load_contacts(r) ? FERRY_FAIL : 0;
	pthread_join(th, NULL);
	sqlite3_close(t.r.db);
	r->old = t.r.old;
	r->nold = t.r.nold;
	r->aold = t.r.aold;
	r->plan.cnt = t.r.plan.cnt;
	r->plan.ncnt = t.r.plan.ncnt;
	r->plan.acnt = t.r.plan.acnt;
	if (t.rc) {
		/* the table is read first in the one-thread order, so its error wins */
		snprintf(r->io->err, sizeof(r->io->err), "%s", t.io.err);
		return FERRY_FAIL;
	}
	return rc ? rc : finish_schedules(r);
}

/* ---- fingerprint (sched_fp.c says why it is sound) ---- */

struct fp_run {
	bool on;                            /* run mode, rollback journal, key known */
	sqlite3_file *file;                 /* the main database file, SQLite's own handle */
	char *path;                         /* the sidecar */
	unsigned char key[SCHED_FP_LEN];    /* the inputs */
	uint32_t counter0;                  /* file change counter before our write */
	bool have_h0;                       /* h0 = the file's hash before our write */
	unsigned char fkey[SCHED_FP_KEYLEN];        /* h0's key */
	unsigned char h0[SCHED_FP_LEN];
	uint64_t size0;
};

/* The header's file change counter, read from the file (not the page cache). */
static int read_counter(sqlite3_file *f, uint32_t *out)
{
	unsigned char b[4];

	if (f->pMethods->xRead(f, b, 4, 24) != SQLITE_OK)
		return -1;
	*out = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	return 0;
}

static bool wal_mode(struct run *r)
{
	sqlite3_stmt *st;
	bool wal = true;                    /* unknown: as unsafe as WAL */

	if (sqlite3_prepare_v2(r->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		const char *m = (const char *)sqlite3_column_text(st, 0);
		wal = !m || !strcasecmp(m, "wal");
	}
	sqlite3_finalize(st);
	return wal;
}

/* email_schedules exactly as §9.1 makes it: the affinities of what we write are known, so
 * every row reads back equal, and no trigger or other unique index acts on our writes.
 * Only then is the state after a run that wrote rows known to be a fixed point. */
static bool canonical_schema(struct run *r)
{
	static const char sql[] =
		"SELECT (SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'email_schedules') = ?1 "
		"AND (SELECT sql FROM sqlite_schema WHERE type = 'index' "
		"     AND name = 'idx_email_schedules_unique') = ?2 "
		"AND (SELECT count(*) FROM pragma_index_list('email_schedules') WHERE \"unique\") = 1 "
		"AND (SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' "
		"     AND tbl_name = 'email_schedules' COLLATE NOCASE) = 0";
	static const char uniq[] = "CREATE UNIQUE INDEX idx_email_schedules_unique "
		"ON email_schedules(contact_id, email_type, scheduled_send_date)";
	sqlite3_stmt *st;
	bool ok = false;

	if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_text(st, 1, create_sql, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, uniq, -1, SQLITE_STATIC);
	ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
	sqlite3_finalize(st);
	return ok;
}

/* Before any read of the data, holding the write lock: true when the sidecar says this
 * very file is a fixed point for these inputs (saved filled in). */
static bool fp_begin(struct run *r, struct fp_run *f, struct sched_fp *saved)
{
	sqlite3_int64 sz;

	if (!r->o->fingerprint || wal_mode(r) ||
	    sqlite3_file_control(r->db, "main", SQLITE_FCNTL_FILE_POINTER, &f->file) != SQLITE_OK ||
	    !f->file || !f->file->pMethods || read_counter(f->file, &f->counter0) ||
	    sched_fp_key(r->o, f->key))
		return false;
	f->path = sched_fp_path(r->path);
	if (!f->path)
		return false;
	f->on = true;
	r->capture = true;
	if (sched_fp_load(f->path, f->key, saved))
		return false;
	if (f->file->pMethods->xFileSize(f->file, &sz) != SQLITE_OK || (uint64_t)sz != saved->size ||
	    sched_fp_file(f->file, r->o->threads, saved->fkey, f->h0, &f->size0))
		return false;
	memcpy(f->fkey, saved->fkey, SCHED_FP_KEYLEN);
	f->have_h0 = true;
	return f->size0 == saved->size && !memcmp(f->h0, saved->file, SCHED_FP_LEN);
}

/* A hit: the counts and warnings of the run that proved the fixed point. */
static void fp_reuse(struct run *r, const struct sched_fp *saved)
{
	const char *p = saved->warn, *end = saved->warn + saved->nwarn;

	*r->rep = saved->rep;
	r->rep->unchanged = r->rep->rows;
	r->rep->reused = true;
	r->capture = false;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char msg[600];
		if (n >= 2 && n - 2 < sizeof(msg) && p[0] >= '0' && p[0] <= '3' && p[1] == ' ') {
			memcpy(msg, p + 2, n - 2);
			msg[n - 2] = '\0';
			if (r->io->log)
				r->io->log(r->io->ud, p[0] - '0', msg);
		}
		p += n + 1;
	}
}

/* After our COMMIT: hash the file as we left it and save the sidecar, when it is known
 * to be a fixed point: nothing was written (a verified one), or rows were written into
 * the canonical schema. A SHARED lock keeps writers out while we check that the header
 * counter is still ours (no commit slipped in after ours) and hash. Failures only cost
 * the next run its shortcut. */
static void fp_end(struct run *r, struct fp_run *f, bool canonical)
{
	struct sched_fp fp;
	uint32_t c1;
	int written = 0, hi;
	char err[512];

	r->capture = false;
	if (!f->on || r->warn_oom)
		return;
	memset(&fp, 0, sizeof(fp));
	/* pages this connection wrote to the database file (rollback mode; recovery of a hot
	 * journal is not counted): 0 means the run left the file as it found it */
	if (sqlite3_db_status(r->db, SQLITE_DBSTATUS_CACHE_WRITE, &written, &hi, 0) != SQLITE_OK)
		return;
	if (sqlite3_exec(r->db, "BEGIN; SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) !=
	    SQLITE_OK || read_counter(f->file, &c1))
		goto out_end;
	/* our commit adds exactly 1 to the counter, any other commit since adds more */
	if (written == 0 && c1 == f->counter0 && f->have_h0) {
		memcpy(fp.fkey, f->fkey, SCHED_FP_KEYLEN);
		memcpy(fp.file, f->h0, SCHED_FP_LEN);
		fp.size = f->size0;
	} else if ((written == 0 && c1 == f->counter0) ||
		   (written > 0 && c1 == f->counter0 + 1 && canonical)) {
		if (sched_fp_newkey(fp.fkey) ||
		    sched_fp_file(f->file, r->o->threads, fp.fkey, fp.file, &fp.size))
			goto out_end;
	} else {
		goto out_end;
	}
	sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
	memcpy(fp.key, f->key, SCHED_FP_LEN);
	fp.rep = *r->rep;
	fp.warn = r->warn;
	fp.nwarn = r->nwarn;
	if (sched_fp_save(f->path, &fp, err, sizeof(err)))
		say(r, FERRY_INFO, "fingerprint not saved (the next run reads everything): %s", err);
out_end:
	if (!sqlite3_get_autocommit(r->db))
		sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
}

int sched_execute(const struct sched_opts *o, const char *db_path, enum sched_mode mode,
		  FILE *csv, struct sched_io *io, struct sched_report *rep)
{
	struct run r = { .o = o, .io = io, .rep = rep, .path = db_path };
	struct fp_run fpr = { 0 };
	struct sched_fp saved = { 0 };
	int flags = mode == SCHED_DRY ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	int64_t t0, t1, t2;
	bool canonical = false;
	int rc = FERRY_FAIL;

	memset(rep, 0, sizeof(*rep));
	io->err[0] = '\0';
	if (sqlite3_open_v2(db_path, &r.db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		fail(&r, FERRY_FAIL, "cannot open database '%s': %s", db_path,
		     r.db ? sqlite3_errmsg(r.db) : "out of memory");
		goto out_close;
	}
	sqlite3_extended_result_codes(r.db, 1);
	sqlite3_busy_timeout(r.db, 10000);
	t0 = ferry_mono_ms();
	if (exec(&r, conn_pragmas, "cannot configure") ||
	    exec(&r, mode == SCHED_DRY ? "BEGIN" : "BEGIN IMMEDIATE", "cannot begin a transaction on"))
		goto out_close;
	rc = check_schema(&r);
	if (rc)
		goto out_rollback;
	if (mode == SCHED_RUN && fp_begin(&r, &fpr, &saved)) {
		fp_reuse(&r, &saved);
		rep->load_ms = ferry_mono_ms() - t0;
		goto out_rollback;          /* nothing to write: end the transaction, rc 0 */
	}
	rc = FERRY_FAIL;
	if (load_all(&r))
		goto out_rollback;
	t1 = ferry_mono_ms();
	rep->load_ms = t1 - t0;
	if (sched_compute(o, &r.plan, rep)) {
		fail(&r, FERRY_FAIL, "out of memory computing the schedule");
		goto out_rollback;
	}
	t2 = ferry_mono_ms();
	rep->compute_ms = t2 - t1;
	if (mode == SCHED_DRY) {
		struct writer none = { 0 };
		if (print_csv(&r, csv) || diff(&r, &none))
			goto out_rollback;
		exec(&r, "COMMIT", "cannot end the read transaction on");
	} else {
		if (write_rows(&r))
			goto out_rollback;
		/* crash matrix: every row written, the transaction not yet committed */
		if (ferry_failpoint("schedule.mid_write")) {
			fail(&r, FERRY_FAIL, "failpoint schedule.mid_write");
			goto out_rollback;
		}
		canonical = fpr.on && canonical_schema(&r);
		if (exec(&r, "COMMIT", "cannot commit to"))
			goto out_rollback;
		/* tests: another writer commits between our commit and the fingerprint */
		if (ferry_failpoint("schedule.after_commit")) {
			fail(&r, FERRY_FAIL, "failpoint schedule.after_commit");
			goto out_close;
		}
		fp_end(&r, &fpr, canonical);
	}
	rep->write_ms = ferry_mono_ms() - t2;
	rc = 0;
	goto out_close;
out_rollback:
	if (!sqlite3_get_autocommit(r.db))
		sqlite3_exec(r.db, "ROLLBACK", NULL, NULL, NULL);
out_close:
	sqlite3_close(r.db);
	sched_plan_free(&r.plan);
	free(r.old);
	free(r.failed);
	free(r.warn);
	free(fpr.path);
	free(saved.warn);
	return rc;
}
