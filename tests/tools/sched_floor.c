/* sched_floor.c: the schedule bench's floor: SQLite inserting the rows, same schema, one transaction. */
#include <sqlite3.h>

#include "../../plugins/schedule/sched_ddl.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Usage: sched_floor ROWS_DB TARGET_DB
 *
 * Reads the owned rows that a schedule run wrote into ROWS_DB (in unique-key order) into
 * memory, then times, on TARGET_DB (a copy of the same input database without
 * email_schedules): BEGIN IMMEDIATE, the DDL and indexes, one INSERT per row,
 * COMMIT (durable, default synchronous). The connection settings are the stage's own
 * (page cache), so the only difference left is the stage's reading and computing.
 * Prints "floor_ms=N rows=N".
 */

struct row {
	int64_t cid;
	int type;
	char date[11];
	int status;
	int reason;                 /* index into reasons[], -1 = NULL */
	int prio, ey, em, ed;
};

static const char *const types[] = { "aep", "birthday", "effective_date", "post_window" };
static const char *const statuses[] = { "pre-scheduled", "skipped" };

static char *reasons[512];
static int nreasons;

static int lookup(const char *const *tab, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(tab[i], s))
			return i;
	return -1;
}

static int reason_idx(const char *s)
{
	if (!s)
		return -1;
	int i = lookup((const char *const *)reasons, nreasons, s);
	if (i >= 0)
		return i;
	if (nreasons == 512)
		return -1;
	reasons[nreasons] = strdup(s);
	return nreasons++;
}

static const char ddl[] =
	SCHED_CREATE_TABLE ";\n"
	"CREATE UNIQUE INDEX IF NOT EXISTS idx_email_schedules_unique "
	"ON email_schedules(contact_id, email_type, scheduled_send_date);\n"
	"CREATE INDEX IF NOT EXISTS idx_email_schedules_status_date "
	"ON email_schedules(status, scheduled_send_date);\n"
	"CREATE INDEX IF NOT EXISTS idx_email_schedules_run ON email_schedules(scheduler_run_id);\n";

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	sqlite3 *src = NULL, *dst = NULL;
	sqlite3_stmt *st = NULL;
	struct row *rows = NULL;
	size_t n = 0, cap = 0;
	char send_time[16] = "08:30:00", run_id[128] = "";
	int rc = 1;

	if (argc != 3) {
		printf("usage: sched_floor ROWS_DB TARGET_DB\n");
		return 2;
	}
	if (sqlite3_open_v2(argv[1], &src, SQLITE_OPEN_READONLY, NULL) ||
	    sqlite3_prepare_v2(src,
			       "SELECT contact_id, email_type, scheduled_send_date, scheduled_send_time, "
			       "status, skip_reason, priority, event_year, event_month, event_day, "
			       "scheduler_run_id FROM email_schedules WHERE status IN "
			       "('pre-scheduled', 'skipped') AND email_type IN ('birthday', "
			       "'effective_date', 'aep', 'post_window') ORDER BY contact_id, email_type, "
			       "scheduled_send_date", -1, &st, NULL)) {
		printf("sched_floor: cannot read '%s': %s\n", argv[1], sqlite3_errmsg(src));
		goto out;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			struct row *nr = realloc(rows, cap * sizeof(*rows));
			if (!nr)
				goto out;
			rows = nr;
		}
		struct row *r = &rows[n++];
		r->cid = sqlite3_column_int64(st, 0);
		r->type = lookup(types, 4, (const char *)sqlite3_column_text(st, 1));
		snprintf(r->date, sizeof(r->date), "%s", (const char *)sqlite3_column_text(st, 2));
		snprintf(send_time, sizeof(send_time), "%s", (const char *)sqlite3_column_text(st, 3));
		r->status = lookup(statuses, 2, (const char *)sqlite3_column_text(st, 4));
		r->reason = reason_idx((const char *)sqlite3_column_text(st, 5));
		r->prio = sqlite3_column_int(st, 6);
		r->ey = sqlite3_column_int(st, 7);
		r->em = sqlite3_column_int(st, 8);
		r->ed = sqlite3_column_int(st, 9);
		if (sqlite3_column_text(st, 10))
			snprintf(run_id, sizeof(run_id), "%s", (const char *)sqlite3_column_text(st, 10));
	}
	sqlite3_finalize(st);
	st = NULL;

	if (sqlite3_open_v2(argv[2], &dst, SQLITE_OPEN_READWRITE, NULL)) {
		printf("sched_floor: cannot open '%s': %s\n", argv[2], sqlite3_errmsg(dst));
		goto out;
	}
	int64_t t0 = now_ms();
	if (sqlite3_exec(dst, "PRAGMA cache_size = -65536; BEGIN IMMEDIATE", NULL, NULL, NULL) ||
	    sqlite3_exec(dst, ddl, NULL, NULL, NULL) ||
	    sqlite3_prepare_v2(dst,
			       "INSERT INTO email_schedules(contact_id, email_type, scheduled_send_date, "
			       "scheduled_send_time, status, skip_reason, priority, event_year, "
			       "event_month, event_day, scheduler_run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
			       "?7, ?8, ?9, ?10, ?11)", -1, &st, NULL)) {
		printf("sched_floor: '%s': %s\n", argv[2], sqlite3_errmsg(dst));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		sqlite3_bind_int64(st, 1, r->cid);
		sqlite3_bind_text(st, 2, types[r->type], -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, r->date, 10, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, send_time, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, statuses[r->status], -1, SQLITE_STATIC);
		if (r->reason >= 0)
			sqlite3_bind_text(st, 6, reasons[r->reason], -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 6);
		sqlite3_bind_int(st, 7, r->prio);
		sqlite3_bind_int(st, 8, r->ey);
		sqlite3_bind_int(st, 9, r->em);
		sqlite3_bind_int(st, 10, r->ed);
		sqlite3_bind_text(st, 11, run_id, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			printf("sched_floor: insert: %s\n", sqlite3_errmsg(dst));
			goto out;
		}
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_exec(dst, "COMMIT", NULL, NULL, NULL)) {
		printf("sched_floor: commit: %s\n", sqlite3_errmsg(dst));
		goto out;
	}
	printf("floor_ms=%lld rows=%zu\n", (long long)(now_ms() - t0), n);
	rc = 0;
out:
	sqlite3_finalize(st);
	sqlite3_close(dst);
	sqlite3_close(src);
	for (int i = 0; i < nreasons; i++)
		free(reasons[i]);
	free(rows);
	return rc;
}
