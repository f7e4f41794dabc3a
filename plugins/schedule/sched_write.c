/* sched_write.c: the schedule stage's writes: the DDL, the diff, the dry-run CSV (RULES.md). */
#include "sched_db.h"
#include "sched_ddl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_stage.h"

/* RULES.md, what is written DDL: create or complete the table. */
static int ddl_table(struct sched_run *r)
{
	char sql[256];

	if (!r->es_exists &&
	    sched_exec(r, SCHED_CREATE_TABLE, "cannot create table email_schedules in"))
		return FERRY_FAIL;
	for (int i = SCHED_ES_REQUIRED; r->es_exists && i < SCHED_ES_ADDABLE; i++) {
		if (r->es_cols & (1u << i))
			continue;
		snprintf(sql, sizeof(sql), "ALTER TABLE email_schedules ADD COLUMN %s",
			 sched_es_col_defs[i]);
		if (sched_exec(r, sql, "cannot add a column to table email_schedules in"))
			return FERRY_FAIL;
	}
	return 0;
}

/* The indexes. The unique one exists before any row is written into an existing table
 * (INSERT OR IGNORE needs it); on a table this run created it comes after the rows, which
 * are unique by construction there. The status/date and run-id indexes, when missing, come
 * after the rows: one sorted pass each instead of an insert per row (at 1M contacts the
 * first run's write takes seconds less), and their pages are packed. */
static int ddl_unique(struct sched_run *r)
{
	if (sqlite3_exec(r->db, "CREATE UNIQUE INDEX IF NOT EXISTS idx_email_schedules_unique "
			 "ON email_schedules(contact_id, email_type, scheduled_send_date)",
			 NULL, NULL, NULL) != SQLITE_OK)
		return sched_fail(r, FERRY_FAIL,
				  "cannot create unique index on table email_schedules: %s",
				  sqlite3_errmsg(r->db));
	return 0;
}

static int ddl_secondary(struct sched_run *r)
{
	if (sched_exec(r, "CREATE INDEX IF NOT EXISTS idx_email_schedules_status_date "
		       "ON email_schedules(status, scheduled_send_date)",
		       "cannot create an index of table email_schedules in") ||
	    sched_exec(r, "CREATE INDEX IF NOT EXISTS idx_email_schedules_run "
		       "ON email_schedules(scheduler_run_id)",
		       "cannot create an index of table email_schedules in"))
		return FERRY_FAIL;
	return 0;
}

/* email_schedules exactly as sched_ddl.h makes it: the affinities of what we write are known, so
 * every row reads back equal, and no trigger or other unique index acts on our writes.
 * Only then is the state after a run that wrote rows known to be a fixed point, and only
 * then can a move set every column as an insert would (sched_write). */
bool sched_canonical(struct sched_run *r)
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
	sqlite3_bind_text(st, 1, SCHED_CREATE_TABLE, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, uniq, -1, SQLITE_STATIC);
	ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
	sqlite3_finalize(st);
	return ok;
}

static int key_cmp(const struct sched_run *r, const struct sched_cand *k, const struct sched_old *o)
{
	int64_t cid = r->plan.ct[k->ci].id;

	if (cid != o->cid)
		return cid < o->cid ? -1 : 1;
	if (k->type != o->type)
		return k->type < o->type ? -1 : 1;
	return (k->date > o->date) - (k->date < o->date);
}

static bool same_row(const struct sched_run *r, const struct sched_cand *k,
		     const struct sched_old *o)
{
	int8_t st = k->reason == R_NONE || k->reason == R_FREQ ? -1 : r->plan.ct[k->ci].state;

	return o->time_ok && o->prio_ok && o->skipped == k->skipped && o->reason == k->reason &&
	       o->state == st && o->event == k->event;
}

struct writer {
	bool moves;                         /* pair stale and new rows into moves */
	sqlite3_stmt *ins, *upd, *mov, *del;
	char date[11];
};

/* A stale old row and a new row of the same contact and type: the row moves to its new
 * date in place (one UPDATE instead of a DELETE and an INSERT). */
struct move {
	int64_t rowid;                      /* the old row */
	uint32_t cand;                      /* the new row, index in plan.cd */
};

static void bind_row(struct sched_run *r, sqlite3_stmt *st, int first, const struct sched_cand *k,
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

static int step(struct sched_run *r, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sched_fail(r, FERRY_FAIL, "cannot %s table email_schedules of '%s': %s",
				  what, r->path, sqlite3_errmsg(r->db));
	return 0;
}

/* New row k is not written: a row the stage does not own holds its key (INSERT OR IGNORE,
 * UPDATE OR IGNORE). It counts as ignored, not among the rows. */
static void dropped(struct sched_run *r, struct sched_cand *k)
{
	r->rep->ignored++;
	r->rep->rows--;
	if (k->skipped)
		r->rep->skipped--;
	else
		r->rep->pre_scheduled--;
	k->dup = 1;
}

static int do_insert(struct sched_run *r, struct writer *w, struct sched_cand *k)
{
	char reason[64];

	sched_fmt_date(k->date, w->date);
	sqlite3_bind_int64(w->ins, 1, r->plan.ct[k->ci].id);
	sqlite3_bind_text(w->ins, 2, sched_type_name[k->type], -1, SQLITE_STATIC);
	sqlite3_bind_text(w->ins, 3, w->date, 10, SQLITE_STATIC);
	bind_row(r, w->ins, 4, k, reason, sizeof(reason));
	if (step(r, w->ins, "insert into"))
		return FERRY_FAIL;
	if (sqlite3_changes(r->db) == 0) {
		dropped(r, k);              /* a row we did not see holds the key */
	} else {
		r->rep->inserted++;
		if (r->rid)
			r->rid[k - r->plan.cd] = sqlite3_last_insert_rowid(r->db);
	}
	return 0;
}

static int do_update(struct sched_run *r, struct writer *w, const struct sched_cand *k,
		     int64_t rowid)
{
	char reason[64];

	r->rep->updated++;
	if (!w->upd)
		return 0;
	bind_row(r, w->upd, 1, k, reason, sizeof(reason));
	sqlite3_bind_int64(w->upd, 9, rowid);
	return step(r, w->upd, "update");
}

static int cmp_rowid(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The stale rows in rowid order: the table's pages are then visited once each, in file
 * order (the merge meets them in key order, which is all over the table). */
static int delete_rows(struct sched_run *r, struct writer *w, int64_t *rowids, size_t n)
{
	if (n > 1)
		qsort(rowids, n, sizeof(*rowids), cmp_rowid);
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int64(w->del, 1, rowids[i]);
		if (step(r, w->del, "delete from"))
			return FERRY_FAIL;
	}
	return 0;
}

static int cmp_move(const void *a, const void *b)
{
	const struct move *x = a, *y = b;

	return (x->rowid > y->rowid) - (x->rowid < y->rowid);
}

/* Moves in rowid order, like the deletes. UPDATE OR IGNORE: when a row we did not see
 * holds the new key, the old row is deleted instead and the new one counted as ignored,
 * as INSERT OR IGNORE would have dropped it. */
static int move_rows(struct sched_run *r, struct writer *w, struct move *mv, size_t n)
{
	char reason[64];

	if (n > 1)
		qsort(mv, n, sizeof(*mv), cmp_move);
	for (size_t i = 0; i < n; i++) {
		struct sched_cand *k = &r->plan.cd[mv[i].cand];

		sched_fmt_date(k->date, w->date);
		sqlite3_bind_text(w->mov, 1, w->date, 10, SQLITE_STATIC);
		bind_row(r, w->mov, 2, k, reason, sizeof(reason));
		sqlite3_bind_int64(w->mov, 10, mv[i].rowid);
		if (step(r, w->mov, "update"))
			return FERRY_FAIL;
		if (sqlite3_changes(r->db) > 0)
			continue;
		sqlite3_bind_int64(w->del, 1, mv[i].rowid);
		if (step(r, w->del, "delete from"))
			return FERRY_FAIL;
		r->rep->updated--;
		r->rep->moved--;
		r->rep->deleted++;
		dropped(r, k);
	}
	return 0;
}

/* Inserts go in after every delete and update, in (date, contact, type) order: the table
 * then keeps a day's rows on neighbouring pages, and the rows the next day's run moves (the
 * ones around today) sit on few pages instead of on most of them (RULES.md, what is
 * written: tests/bench/RESULTS.md has the pages before and after). */
static int cmp_ins(const void *a, const void *b, void *arg)
{
	const struct sched_run *r = arg;
	const struct sched_cand *x = &r->plan.cd[*(const uint32_t *)a];
	const struct sched_cand *y = &r->plan.cd[*(const uint32_t *)b];
	int64_t cx = r->plan.ct[x->ci].id, cy = r->plan.ct[y->ci].id;

	if (x->date != y->date)
		return x->date < y->date ? -1 : 1;
	if (cx != cy)
		return cx < cy ? -1 : 1;
	return (x->type > y->type) - (x->type < y->type);
}

/* Pair the stale old rows with the new rows (both in unique-key order) by contact and
 * type, in date order within each: a pair is a move. What is left of each list is
 * compacted in place, still in key order; returns the number of moves. */
static size_t pair_moves(struct sched_run *r, uint32_t *stale, size_t *nstale, uint32_t *ins,
			 size_t *nins, struct move *mv)
{
	const struct sched_plan *p = &r->plan;
	size_t a = 0, b = 0, ns = 0, ni = 0, nm = 0;

	while (a < *nstale || b < *nins) {
		int c;

		if (a == *nstale) {
			c = 1;
		} else if (b == *nins) {
			c = -1;
		} else {
			const struct sched_old *o = &r->old[stale[a]];
			const struct sched_cand *k = &p->cd[ins[b]];
			int64_t cid = p->ct[k->ci].id;

			c = o->cid != cid ? (o->cid < cid ? -1 : 1) :
			    (o->type > k->type) - (o->type < k->type);
		}
		if (c == 0) {
			mv[nm].rowid = r->old[stale[a++]].rowid;
			mv[nm].cand = ins[b++];
			if (r->rid)
				r->rid[mv[nm].cand] = mv[nm].rowid;
			nm++;
		} else if (c < 0) {
			stale[ns++] = stale[a++];
		} else {
			ins[ni++] = ins[b++];
		}
	}
	*nstale = ns;
	*nins = ni;
	return nm;
}

/* Merge the new rows with the old owned rows (both in unique-key order): updates as the
 * merge meets them; then a stale row and a new row of the same contact and type become a
 * move (the date changes in place: RULES.md, what is written); then the other stale rows
 * are deleted in rowid order, the moves made in rowid order, and the other new rows
 * inserted in date order. In a dry run w has no statements and only counts. */
static int diff(struct sched_run *r, struct writer *w)
{
	struct sched_plan *p = &r->plan;
	uint32_t *ins = NULL, *stale = NULL;
	struct move *mv = NULL;
	int64_t *rowids = NULL;
	size_t j = 0, nins = 0, nstale = 0, nmv;
	int rc = FERRY_FAIL;

	free(r->rid);
	r->rid = NULL;
	if (w->ins && r->keep_rowids && p->ncd && !(r->rid = sched_big(NULL, p->ncd * sizeof(*r->rid))))
		goto oom;
	if (r->nold > UINT32_MAX || p->ncd > UINT32_MAX ||
	    (p->ncd && !(ins = sched_big(NULL, p->ncd * sizeof(*ins)))) ||
	    (r->nold && !(stale = sched_big(NULL, r->nold * sizeof(*stale)))))
		goto oom;
	for (size_t i = 0; i < p->ncd; i++) {
		struct sched_cand *k = &p->cd[i];
		if (k->dup)
			continue;
		int c = 1;
		while (j < r->nold && (c = key_cmp(r, k, &r->old[j])) > 0)
			stale[nstale++] = (uint32_t)j++;
		if (j < r->nold && c == 0) {
			if (r->rid)
				r->rid[i] = r->old[j].rowid;
			if (same_row(r, k, &r->old[j]))
				r->rep->unchanged++;
			else if (do_update(r, w, k, r->old[j].rowid))
				goto out;
			j++;
			continue;
		}
		ins[nins++] = (uint32_t)i;
	}
	for (; j < r->nold; j++)
		stale[nstale++] = (uint32_t)j;
	if ((w->moves && nins && nstale && !(mv = sched_big(NULL, (nins < nstale ? nins : nstale) * sizeof(*mv)))))
		goto oom;
	nmv = mv ? pair_moves(r, stale, &nstale, ins, &nins, mv) : 0;
	r->rep->deleted += (int64_t)nstale;
	r->rep->updated += (int64_t)nmv;
	r->rep->moved += (int64_t)nmv;
	if (!w->ins) {
		r->rep->inserted += (int64_t)nins;
		rc = 0;
		goto out;
	}
	if (nstale && !(rowids = sched_big(NULL, nstale * sizeof(*rowids))))
		goto oom;
	for (size_t i = 0; i < nstale; i++)
		rowids[i] = r->old[stale[i]].rowid;
	if (delete_rows(r, w, rowids, nstale) || move_rows(r, w, mv, nmv))
		goto out;
	if (nins)
		qsort_r(ins, nins, sizeof(*ins), cmp_ins, r);
	for (size_t i = 0; i < nins; i++)
		if (do_insert(r, w, &p->cd[ins[i]]))
			goto out;
	rc = 0;
	goto out;
oom:
	sched_fail(r, FERRY_FAIL, "out of memory writing table email_schedules");
out:
	free(ins);
	free(stale);
	free(mv);
	free(rowids);
	return rc;
}

int sched_write(struct sched_run *r)
{
	static const char ins[] =
		"INSERT OR IGNORE INTO email_schedules(contact_id, email_type, scheduled_send_date, "
		"scheduled_send_time, status, skip_reason, priority, event_year, event_month, "
		"event_day, scheduler_run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
	/* A move leaves the row as the INSERT above would make it (the columns it does not name
	 * at their defaults, created_at too); only the id stays. Canonical tables only: there
	 * every column and default is known (sched_ddl.h). */
	static const char mov[] =
		"UPDATE OR IGNORE email_schedules SET scheduled_send_date = ?1, "
		"scheduled_send_time = ?2, status = ?3, skip_reason = ?4, priority = ?5, "
		"event_year = ?6, event_month = ?7, event_day = ?8, scheduler_run_id = ?9, "
		"campaign_instance_id = NULL, email_template = NULL, sms_template = NULL, "
		"batch_id = NULL, catchup_note = NULL, actual_send_datetime = NULL, metadata = NULL, "
		"created_at = datetime('now'), updated_at = datetime('now') WHERE rowid = ?10";
	char upd[512];
	struct writer w = { 0 };
	int rc = FERRY_FAIL;

	snprintf(upd, sizeof(upd),
		 "UPDATE email_schedules SET scheduled_send_time = ?1, status = ?2, skip_reason = ?3, "
		 "priority = ?4, event_year = ?5, event_month = ?6, event_day = ?7, "
		 "scheduler_run_id = ?8%s WHERE rowid = ?9",
		 !r->es_exists || (r->es_cols & (1u << SCHED_ES_UPDATED_AT)) ?
		 ", updated_at = datetime('now')" : "");
	if (ddl_table(r) || (r->es_exists && ddl_unique(r)))
		return FERRY_FAIL;
	w.moves = r->es_exists && sched_canonical(r);
	if (sqlite3_prepare_v2(r->db, ins, -1, &w.ins, NULL) ||
	    sqlite3_prepare_v2(r->db, upd, -1, &w.upd, NULL) ||
	    (w.moves && sqlite3_prepare_v2(r->db, mov, -1, &w.mov, NULL)) ||
	    sqlite3_prepare_v2(r->db, "DELETE FROM email_schedules WHERE rowid = ?1", -1, &w.del, NULL)) {
		sched_db_fail(r, "cannot prepare writing to");
		goto out_finalize;
	}
	rc = diff(r, &w);
	if (!rc && !r->es_exists)
		rc = ddl_unique(r);
	if (!rc)
		rc = ddl_secondary(r);
out_finalize:
	sqlite3_finalize(w.ins);
	sqlite3_finalize(w.upd);
	sqlite3_finalize(w.mov);
	sqlite3_finalize(w.del);
	return rc;
}

int sched_count(struct sched_run *r)
{
	struct writer none = { .moves = r->es_exists && sched_canonical(r) };

	return diff(r, &none);
}

static char *put_str(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

/* The dry-run CSV, in unique-key order; rows INSERT OR IGNORE would drop are not shown. */
int sched_print_csv(struct sched_run *r, FILE *out)
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
		q = sched_put_int(q, p->ct[k->ci].id);
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
		q = sched_put_int(q, sched_type_prio[k->type]);
		sched_civil(k->event, &y, &m, &d);
		*q++ = ',';
		q = sched_put_int(q, y);
		*q++ = ',';
		q = sched_put_int(q, m);
		*q++ = ',';
		q = sched_put_int(q, d);
		*q++ = '\n';
		fwrite(line, 1, (size_t)(q - line), out);
	}
	if (fflush(out) != 0 || ferror(out))
		return sched_fail(r, FERRY_FAIL, "cannot write the dry-run output");
	return 0;
}
