/* sched_db.c: what loading, writing and the run share on one database: the email_schedules
 * columns, errors and messages, statements without results. */
#include "sched_db.h"
#include "sched_ddl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry_failpoint.h"
#include "ferry_stage.h"
#include "ferry_time.h"

#define WARN_KEEP_MAX (64u << 20)           /* more warnings than this: no sidecar */

const char *const sched_es_cols[SCHED_ES_NCOLS] = {
	"contact_id", "email_type", "scheduled_send_date", "status",           /* required */
	"scheduled_send_time", "skip_reason", "priority", "event_year", "event_month",
	"event_day", "scheduler_run_id", "updated_at",
};
const char *const sched_es_col_defs[SCHED_ES_ADDABLE] = {
	NULL, NULL, NULL, NULL,
	"scheduled_send_time TEXT DEFAULT '08:30:00'", "skip_reason TEXT",
	"priority INTEGER DEFAULT 10", "event_year INTEGER", "event_month INTEGER",
	"event_day INTEGER", "scheduler_run_id TEXT",
};
/* What an absent column reads as (its ADD COLUMN default). */
const char *const sched_es_col_absent[SCHED_ES_NCOLS] = {
	NULL, NULL, NULL, NULL, "'08:30:00'", "NULL", "10", "NULL", "NULL", "NULL", "NULL", "NULL",
};

int sched_fail(struct sched_run *r, int rc, const char *fmt, ...)
{
	va_list ap;

	if (r->io->err[0])
		return rc;          /* the first error wins */
	va_start(ap, fmt);
	vsnprintf(r->io->err, sizeof(r->io->err), fmt, ap);
	va_end(ap);
	return rc;
}

const char *const sched_warn_kind_name[SCHED_W_NKINDS] = {
	"bad_email", "bad_birth_date", "bad_effective_date", "unknown_state",
};

/* kind < 0: an ordinary line. */
static void say(struct sched_run *r, int level, int kind, const char *fmt, va_list ap)
{
	const char *kname = kind >= 0 ? sched_warn_kind_name[kind] : "-";
	char buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (kind >= 0 && r->io->warn)
		r->io->warn(r->io->ud, kind, buf);
	else if (r->io->log)
		r->io->log(r->io->ud, level, buf);
	if (r->capture && !r->warn_oom) {
		size_t n = strlen(buf) + strlen(kname) + 16;
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
		/* messages are one line: values go through shown() (sched_load.c) */
		r->nwarn += (size_t)sprintf(r->warn + r->nwarn, "%d %s %s\n", level, kname, buf);
	}
}

void sched_say(struct sched_run *r, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(r, level, -1, fmt, ap);
	va_end(ap);
}

void sched_warn(struct sched_run *r, enum sched_warn_kind kind, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(r, FERRY_WARN, (int)kind, fmt, ap);
	va_end(ap);
}

static void say_kind(struct sched_run *r, int level, int kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void say_kind(struct sched_run *r, int level, int kind, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(r, level, kind, fmt, ap);
	va_end(ap);
}

void sched_replay(struct sched_run *r, const char *text, size_t len)
{
	const char *p = text, *end = text + len;

	while (p && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *sp = n > 2 ? memchr(p + 2, ' ', n - 2) : NULL;
		size_t kl = sp ? (size_t)(sp - (p + 2)) : 0, ml = sp ? n - (size_t)(sp + 1 - p) : 0;
		int kind = -1;

		/* "LEVEL KIND MESSAGE" (say): said again as it was said */
		if (sp && ml < 600 && p[0] >= '0' && p[0] <= '3' && p[1] == ' ') {
			for (int k = 0; k < SCHED_W_NKINDS; k++)
				if (strlen(sched_warn_kind_name[k]) == kl &&
				    !memcmp(sched_warn_kind_name[k], p + 2, kl))
					kind = k;
			say_kind(r, p[0] - '0', kind, "%.*s", (int)ml, sp + 1);
		}
		p += n + 1;
	}
}

int sched_db_fail(struct sched_run *r, const char *what)
{
	return sched_fail(r, FERRY_FAIL, "%s '%s': %s", what, r->path, sqlite3_errmsg(r->db));
}

int sched_exec(struct sched_run *r, const char *sql, const char *what)
{
	if (sqlite3_exec(r->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return sched_db_fail(r, what);
	return 0;
}
