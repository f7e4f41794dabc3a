/* schedule.c: the `schedule` stage plugin: configuration, run, dry run, summary (README.md). */
#include "sched_core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry_ctx.h"
#include "ferry_file.h"
#include "ferry_log.h"
#include "ferry_stage.h"

static const struct ferry_key schedule_keys[] = {
	{ "db", FERRY_KEY_PATH, NULL, FERRY_KEY_REQUIRED, "SQLite database to schedule (local replica)" },
	{ "today", FERRY_KEY_STRING, "", 0, "fixed YYYY-MM-DD; empty = today in timezone" },
	{ "timezone", FERRY_KEY_STRING, "America/Chicago", 0, "IANA zone that defines today" },
	{ "send_time", FERRY_KEY_STRING, "08:30:00", 0, "scheduled_send_time, HH:MM:SS" },
	{ "birthday_days_before", FERRY_KEY_INT, "14", 0, "lead of the birthday email, 0-180" },
	{ "effective_date_days_before", FERRY_KEY_INT, "30", 0, "lead of the effective-date email, 0-180" },
	{ "effective_date_min_months", FERRY_KEY_INT, "11", 0, "minimum policy age in months, 0-120" },
	{ "aep_enabled", FERRY_KEY_INT, "1", 0, "0/1: AEP email" },
	{ "aep_date", FERRY_KEY_STRING, "09-15", 0, "MM-DD of the AEP email (not 02-29)" },
	{ "post_window_enabled", FERRY_KEY_INT, "1", 0, "0/1: post-window catch-up emails" },
	{ "exclude_failed_underwriting", FERRY_KEY_INT, "0", 0,
	  "0/1: leave out contacts that failed underwriting (contact_events)" },
	{ "unknown_state_policy", FERRY_KEY_ENUM, "no_rules", 0, "no_rules or skip",
	  "no_rules|skip" },
	{ "max_emails_per_period", FERRY_KEY_INT, "3", 0, "frequency limit, >= 1" },
	{ "period_days", FERRY_KEY_INT, "30", 0, "frequency window in days, >= 1" },
	{ "size_profile", FERRY_KEY_ENUM, "auto", 0, "auto, small, medium, large, enterprise",
	  "auto|small|medium|large|enterprise" },
	{ "daily_cap_percent", FERRY_KEY_INT, NULL, 0, "1-100; default from size_profile" },
	{ "ed_soft_limit", FERRY_KEY_INT, NULL, 0, ">= 0; default from size_profile" },
	{ "ed_smoothing_window", FERRY_KEY_INT, NULL, 0, "1-31; default from size_profile" },
	{ "min_daily_cap", FERRY_KEY_INT, "50", 0, "daily cap floor, >= 1" },
	{ "state_rules", FERRY_KEY_PATH, "conf/state_rules.csv", 0, "state exclusion rules data file" },
	{ "zip_states", FERRY_KEY_PATH, "conf/zip3_states.csv", 0, "ZIP3 prefix to state data file" },
	{ "strict", FERRY_KEY_INT, "0", 0, "0/1: the first bad row fails the run" },
	{ "run_id", FERRY_KEY_STRING, "", 0, "scheduler_run_id; empty = sched-<UTC time>-<pid>" },
	{ "threads", FERRY_KEY_INT, "2", 0,
	  "1 or 2: read email_schedules (and tag the file) in a second thread" },
	{ "fingerprint", FERRY_KEY_INT, "1", 0,
	  "0/1: skip a rerun on a database byte-identical to a fixed point (DB.ferry-sched); "
	  "the next day takes email_schedules from DB.ferry-sched-rows" },
	{ "compact", FERRY_KEY_ENUM, "auto", 0,
	  "rewrite the database compacted after a run that inserted a quarter of the rows or "
	  "more into a file of 64 MiB or more (auto), after every run that wrote (always), or "
	  "never: each table and index then sits in one run of pages, and later runs change "
	  "few upload parts", "auto|always|never" },
	{ "dry_run_csv", FERRY_KEY_PATH, NULL, 0,
	  "dry run only: write the rows the run would leave as CSV to this file ('-': stdout)" },
	{ NULL, 0, NULL, 0, NULL },
};

/* What one run/dry_run call works with. */
struct sched_priv {
	struct sched_opts opts;             /* parsed configuration */
	char *db;                           /* resolved db path */
	char today[11];                     /* YYYY-MM-DD */
	char run_id[96];                    /* scheduler_run_id */
};

static int int_key(struct ferry_ctx *c, const char *key, int64_t lo, int64_t hi, int *out)
{
	const char *v = ferry_cfg(c, key);
	int64_t n;

	if (!v) {
		*out = -1;              /* unset: from the size profile */
		return 0;
	}
	n = ferry_cfg_int(c, key);
	if (n < lo || n > hi)
		return ferry_cfg_error(c, key, "'%s' is out of range %lld..%lld", v, (long long)lo,
				       (long long)hi);
	*out = (int)n;
	return 0;
}

static bool valid_time(const char *s)
{
	if (strlen(s) != 8 || s[2] != ':' || s[5] != ':')
		return false;
	for (int i = 0; i < 8; i++)
		if (i != 2 && i != 5 && (s[i] < '0' || s[i] > '9'))
			return false;
	return (s[0] - '0') * 10 + (s[1] - '0') <= 23 && s[3] <= '5' && s[6] <= '5';
}

/* An IANA name with a TZif file under the system zone database. */
static bool valid_zone(const char *z)
{
	char path[512], magic[4];
	struct stat sb;

	if (!*z || z[0] == '/' || strstr(z, "..") || strlen(z) > 200)
		return false;
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", z);
	if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
		return false;
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	size_t n = fread(magic, 1, 4, f);
	fclose(f);
	return n == 4 && !memcmp(magic, "TZif", 4);
}

/* today in zone z, computed once per run (RULES.md, inputs). */
static int32_t zone_today(const char *z)
{
	char *saved = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
	time_t now = time(NULL);
	struct tm tm;

	setenv("TZ", z, 1);
	tzset();
	localtime_r(&now, &tm);
	if (saved) {
		setenv("TZ", saved, 1);
		free(saved);
	} else {
		unsetenv("TZ");
	}
	tzset();
	return sched_days(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* A rule table's path. A relative value resolves against the INI's directory; when that
 * file is not there and the value is a bare file name (the shipped pipeline.ini's
 * "state_rules.csv"), the shipped table is used: from the installed share directory
 * (FERRY_SHARE_DIR/conf), else the source tree's conf/ above the ferry binary (a build).
 * So a copied pipeline INI keeps working; a table of one's own is named by a path. */
static char *data_path(struct ferry_ctx *c, const char *key)
{
	const char *v = ferry_cfg(c, key);
	char *p = ferry_cfg_path(c, key), exe[4096], *alt;
	ssize_t n;

	if (!p || access(p, F_OK) == 0 || !v || strchr(v, '/'))
		return p;
	if (asprintf(&alt, "%s/conf/%s", FERRY_SHARE_DIR, v) >= 0) {
		if (access(alt, R_OK) == 0)
			goto found;
		free(alt);
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		if (strrchr(exe, '/'))
			*strrchr(exe, '/') = '\0';
		/* build trees: build/ferry and build/asan/ferry */
		for (const char *up = "/..", *up2 = "/../.."; up; up = up2, up2 = NULL) {
			if (asprintf(&alt, "%s%s/conf/%s", exe, up, v) < 0)
				break;
			if (access(alt, R_OK) == 0)
				goto found;
			free(alt);
		}
	}
	return p;                           /* the load reports it, naming the key */
found:
	ferry_log(c, FERRY_DEBUG, "using the shipped table", "key=%s path='%s' not_found='%s'",
		  key, alt, p);
	free(p);
	return alt;
}

/* All keys and both data files; FERRY_USAGE with a file:line error on bad values. */
static int load_config(struct ferry_ctx *c, struct sched_priv *p)
{
	struct sched_opts *o = &p->opts;
	const char *v;
	char err[1024];
	int b[6], fpk, rc = 0;

	sched_opts_default(o);
	v = ferry_cfg(c, "today");
	if (v && *v && !sched_parse_ymd(v, strlen(v), &o->today))
		return ferry_cfg_error(c, "today", "'%s' is not a valid date YYYY-MM-DD", v);
	v = ferry_cfg(c, "timezone");
	if (!v || !valid_zone(v))
		return ferry_cfg_error(c, "timezone", "'%s' is not a time zone of /usr/share/zoneinfo",
				       v ? v : "");
	v = ferry_cfg(c, "send_time");
	if (!v || !valid_time(v))
		return ferry_cfg_error(c, "send_time", "'%s' is not a time HH:MM:SS", v ? v : "");
	memcpy(o->send_time, v, 9);
	v = ferry_cfg(c, "aep_date");
	if (!v || strlen(v) != 5 || v[2] != '-' || v[0] < '0' || v[0] > '9' || v[1] < '0' ||
	    v[1] > '9' || v[3] < '0' || v[3] > '9' || v[4] < '0' || v[4] > '9')
		return ferry_cfg_error(c, "aep_date", "'%s' is not a date MM-DD", v ? v : "");
	o->aep_month = (v[0] - '0') * 10 + (v[1] - '0');
	o->aep_day = (v[3] - '0') * 10 + (v[4] - '0');
	if (o->aep_month < 1 || o->aep_month > 12 || o->aep_day < 1 ||
	    o->aep_day > sched_mdays(2001, o->aep_month))
		return ferry_cfg_error(c, "aep_date", "'%s' is not a date MM-DD (02-29 is not allowed)", v);
	/* unknown_state_policy and size_profile are FERRY_KEY_ENUM, checked at load */
	v = ferry_cfg(c, "unknown_state_policy");
	o->unknown_skip = v && !strcmp(v, "skip");
	v = ferry_cfg(c, "size_profile");
	static const char *const profiles[] = { "auto", "small", "medium", "large", "enterprise" };
	o->profile = 0;
	for (int i = 0; v && i < 5; i++)
		if (!strcmp(v, profiles[i]))
			o->profile = i;
	if (int_key(c, "birthday_days_before", 0, 180, &o->bday_lead) ||
	    int_key(c, "effective_date_days_before", 0, 180, &o->ed_lead) ||
	    int_key(c, "effective_date_min_months", 0, 120, &o->ed_min_months) ||
	    int_key(c, "aep_enabled", 0, 1, &b[0]) ||
	    int_key(c, "post_window_enabled", 0, 1, &b[1]) ||
	    int_key(c, "exclude_failed_underwriting", 0, 1, &b[2]) ||
	    int_key(c, "strict", 0, 1, &b[3]) ||
	    int_key(c, "max_emails_per_period", 1, 1000000, &o->max_per_period) ||
	    int_key(c, "period_days", 1, 36500, &o->period_days) ||
	    int_key(c, "daily_cap_percent", 1, 100, &o->cap_percent) ||
	    int_key(c, "ed_soft_limit", 0, 1000000000, &o->ed_soft_limit) ||
	    int_key(c, "ed_smoothing_window", 1, 31, &o->ed_window) ||
	    int_key(c, "min_daily_cap", 1, 1000000000, &o->min_daily_cap) ||
	    int_key(c, "threads", 1, 2, &b[4]) ||
	    int_key(c, "fingerprint", 0, 1, &fpk))
		return FERRY_USAGE;
	o->aep_enabled = b[0] == 1;
	o->post_window = b[1] == 1;
	o->exclude_fu = b[2] == 1;
	o->strict = b[3] == 1;
	o->threads = b[4] < 1 ? 1 : b[4];
	o->fingerprint = fpk != 0;
	{
		const char *cm = ferry_cfg(c, "compact");

		o->compact = cm && !strcmp(cm, "always") ? 1 : cm && !strcmp(cm, "never") ? 2 : 0;
	}

	char *rules = data_path(c, "state_rules");
	char *zips = data_path(c, "zip_states");
	if (!rules || !zips) {
		rc = ferry_cfg_error(c, rules ? "zip_states" : "state_rules", "path is empty");
		goto out_free;
	}
	if (sched_rules_load(rules, &o->rules, err, sizeof(err)))
		rc = ferry_cfg_error(c, "state_rules", "%s", err);
	else if (sched_zips_load(zips, &o->zips, err, sizeof(err)))
		rc = ferry_cfg_error(c, "zip_states", "%s", err);
out_free:
	free(rules);
	free(zips);
	return rc;
}

static int schedule_check(struct ferry_ctx *c)
{
	struct sched_priv *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return ferry_fail(c, FERRY_FAIL, "out of memory");
	rc = load_config(c, p);
	free(p);
	return rc;
}

/* Warnings about contact rows: thousands on a big org, on every run. The log gets the
 * first WARN_SHOWN and a summary (counts per kind, where the list is); the whole list goes
 * to STATE_DIR/WARN_FILE, or to the log as well with -v. */
#define WARN_SHOWN 5
#define WARN_FILE "schedule-warnings.txt"

struct warn_sink {
	struct ferry_ctx *c;
	bool all;                           /* -v: every warning is logged */
	int64_t count[SCHED_W_NKINDS];
	int64_t total;
	char *text;                         /* every warning, one a line (for the file) */
	size_t n, cap;
	bool oom;                           /* the list is incomplete: no file */
};

static void log_cb(void *ud, int level, const char *msg)
{
	struct warn_sink *w = ud;

	ferry_log(w->c, (enum ferry_level)level, msg, NULL);
}

static void warn_cb(void *ud, int kind, const char *msg)
{
	struct warn_sink *w = ud;
	size_t len = strlen(msg);

	w->count[kind]++;
	if (++w->total <= WARN_SHOWN || w->all)
		ferry_log(w->c, FERRY_WARN, msg, NULL);
	if (w->oom)
		return;
	if (w->n + len + 2 > w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 65536;
		char *t;

		while (cap < w->n + len + 2)
			cap *= 2;
		t = realloc(w->text, cap);
		if (!t) {
			w->oom = true;
			return;
		}
		w->text = t;
		w->cap = cap;
	}
	memcpy(w->text + w->n, msg, len);
	w->n += len;
	w->text[w->n++] = '\n';
}

/* The summary line, and the list in its file (a real run; a dry run writes nothing). A run
 * without warnings removes the file of an earlier run, so it never describes another run. */
static void warn_report(struct warn_sink *w, const struct sched_report *rep, bool dry)
{
	const char *dir = ferry_state_dir(w->c), *file = NULL;
	const char *const *k = sched_warn_kind_name;
	char *path = NULL, err[512], msg[800], shown[64];

	if (dir && asprintf(&path, "%s/%s", dir, WARN_FILE) < 0)
		path = NULL;
	if (!w->total) {
		if (path && !dry && unlink(path) != 0 && errno != ENOENT)
			ferry_log(w->c, FERRY_WARN, "cannot remove the warnings of an earlier run",
				  "file='%s' reason='%s'", path, strerror(errno));
		free(path);
		return;
	}
	if (path && !dry) {
		/* 0600: the list names contacts */
		if (w->oom)
			snprintf(err, sizeof(err), "out of memory");
		if (!w->oom && ferry_file_replace(path, w->text, w->n, 0600, 0, err, sizeof(err)) == 0)
			file = path;
		else
			ferry_log(w->c, FERRY_WARN, "cannot write the list of warnings",
				  "file='%s' reason='%s'", path, err);
	}
	if (w->all)
		snprintf(shown, sizeof(shown), "all %lld shown", (long long)w->total);
	else
		snprintf(shown, sizeof(shown), "first %d shown", WARN_SHOWN);
	snprintf(msg, sizeof(msg), "%lld contact rows with bad or unknown values (%lld skipped): "
		 "%s%s%s%s", (long long)w->total, (long long)rep->bad, shown,
		 file ? ", all in '" : w->all ? "" : ", -v shows all", file ? file : "",
		 file ? "'" : "");
	ferry_log(w->c, FERRY_WARN, msg, "%s=%lld %s=%lld %s=%lld %s=%lld file='%s'",
		  k[0], (long long)w->count[0], k[1], (long long)w->count[1], k[2],
		  (long long)w->count[2], k[3], (long long)w->count[3], file ? file : "-");
	free(path);
}

static void summary(struct ferry_ctx *c, const struct sched_priv *p, const struct sched_report *r)
{
	int64_t ms = r->load_ms + r->compute_ms + r->write_ms;
	long long cps = ms > 0 ? (long long)(r->contacts * 1000 / ms) : (long long)r->contacts * 1000;

	ferry_log(c, FERRY_INFO, "summary",
		  "today=%s contacts=%lld valid=%lld bad=%lld no_email=%lld no_state=%lld rows=%lld "
		  "pre_scheduled=%lld skipped=%lld ignored=%lld inserted=%lld updated=%lld "
		  "unchanged=%lld deleted=%lld moved=%lld daily_cap=%lld ed_limit=%lld load_ms=%lld "
		  "compute_ms=%lld write_ms=%lld compact_ms=%lld contacts_per_s=%lld",
		  p->today, (long long)r->contacts, (long long)r->valid, (long long)r->bad,
		  (long long)r->no_email, (long long)r->no_state, (long long)r->rows,
		  (long long)r->pre_scheduled, (long long)r->skipped, (long long)r->ignored,
		  (long long)r->inserted, (long long)r->updated, (long long)r->unchanged,
		  (long long)r->deleted, (long long)r->moved, (long long)r->daily_cap, (long long)r->ed_limit,
		  (long long)r->load_ms, (long long)r->compute_ms, (long long)r->write_ms,
		  (long long)r->compact_ms, cps);
}

/* The dry run's CSV: to dry_run_csv when it is set ("-": stdout), else nowhere (the CSV of
 * a big org is tens of thousands of lines). *path is the file, malloc'd, for the log. */
static int open_csv(struct ferry_ctx *c, FILE **out, char **path)
{
	const char *v = ferry_cfg(c, "dry_run_csv");
	int fd;

	*out = NULL;
	*path = NULL;
	if (!v || !*v)
		return 0;
	if (!strcmp(v, "-")) {
		*out = stdout;
		return 0;
	}
	*path = ferry_cfg_path(c, "dry_run_csv");
	if (!*path)
		return ferry_fail(c, FERRY_FAIL, "out of memory");
	/* 0600 like every file ferry keeps: the rows name contacts */
	fd = open(*path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || !(*out = fdopen(fd, "w"))) {
		if (fd >= 0)
			close(fd);
		return ferry_fail(c, FERRY_FAIL, "cannot write '%s': %s", *path, strerror(errno));
	}
	return 0;
}

static int close_csv(struct ferry_ctx *c, FILE *f, const char *path, int rc)
{
	if (!f || f == stdout)
		return f == stdout && fflush(stdout) != 0 && !rc ?
			ferry_fail(c, FERRY_FAIL, "cannot write the CSV to stdout: %s",
				   strerror(errno)) : rc;
	if ((ferror(f) | fclose(f)) != 0 && !rc)
		return ferry_fail(c, FERRY_FAIL, "cannot write '%s': %s", path, strerror(errno));
	return rc;
}

static int execute_with(struct ferry_ctx *c, struct sched_priv *p, enum sched_mode mode)
{
	struct sched_report rep;
	struct warn_sink w = { .c = c, .all = ferry_log_level() <= FERRY_DEBUG };
	struct sched_io io = { .log = log_cb, .warn = warn_cb, .ud = &w };
	time_t start = time(NULL);
	FILE *csv = NULL;
	char *csv_path = NULL;
	int rc;

	rc = load_config(c, p);
	if (rc)
		return rc;
	p->db = ferry_cfg_path(c, "db");
	if (!p->db)
		return ferry_cfg_error(c, "db", "no database given (db = PATH or --db PATH)");
	const char *today = ferry_cfg(c, "today");
	if (!today || !*today)
		p->opts.today = zone_today(ferry_cfg(c, "timezone"));
	sched_fmt_date(p->opts.today, p->today);
	const char *rid = ferry_cfg(c, "run_id");
	if (rid && *rid) {
		snprintf(p->run_id, sizeof(p->run_id), "%s", rid);
	} else {
		struct tm tm;
		gmtime_r(&start, &tm);
		snprintf(p->run_id, sizeof(p->run_id), "sched-%04d%02d%02dT%02d%02d%02dZ-%ld",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (long)getpid());
	}
	p->opts.run_id = p->run_id;
	if (mode == SCHED_DRY) {
		rc = open_csv(c, &csv, &csv_path);
		if (rc)
			goto out;
	}
	rc = sched_execute(&p->opts, p->db, mode, csv, &io, &rep);
	warn_report(&w, &rep, mode == SCHED_DRY);
	if (rc) {
		rc = ferry_fail(c, rc, "%s", io.err);
		goto out;
	}
	if (rep.reused)
		ferry_log(c, FERRY_INFO, "database is byte-identical to a fixed point of these inputs "
			  "(fingerprint): nothing to read, compute or write", "sidecar='%s.ferry-sched'",
			  p->db);
	summary(c, p, &rep);
	if (mode == SCHED_DRY) {
		char msg[64];
		snprintf(msg, sizeof(msg), "would delete %lld owned rows", (long long)rep.deleted);
		ferry_log(c, FERRY_INFO, msg,
			  "would_insert=%lld would_update=%lld unchanged=%lld would_move=%lld",
			  (long long)rep.inserted, (long long)rep.updated, (long long)rep.unchanged,
			  (long long)rep.moved);
		rc = close_csv(c, csv, csv_path, FERRY_OK);
		csv = NULL;
		if (!rc && csv_path)
			ferry_log(c, FERRY_INFO, "dry-run: wrote the rows the run would leave as CSV",
				  "rows=%lld csv='%s'", (long long)rep.rows, csv_path);
		else if (!rc && !ferry_cfg(c, "dry_run_csv"))
			ferry_log(c, FERRY_INFO, "dry-run: rows not listed; dry_run_csv = PATH writes "
				  "them as CSV (ferry run schedule --dry-run --dry-run-csv PATH)", NULL);
		goto out;
	}
	ferry_fact_set(c, "run_id", p->run_id);
	ferry_fact_set(c, "today", p->today);
	ferry_fact_setf(c, "rows", "%lld", (long long)rep.rows);
	ferry_fact_setf(c, "pre_scheduled", "%lld", (long long)rep.pre_scheduled);
	ferry_fact_setf(c, "skipped", "%lld", (long long)rep.skipped);
	ferry_fact_setf(c, "inserted", "%lld", (long long)rep.inserted);
	ferry_fact_setf(c, "updated", "%lld", (long long)rep.updated);
	ferry_fact_setf(c, "deleted", "%lld", (long long)rep.deleted);
	ferry_fact_setf(c, "moved", "%lld", (long long)rep.moved);
	ferry_fact_setf(c, "unchanged", "%lld", (long long)rep.unchanged);
out:
	rc = close_csv(c, csv, csv_path, rc);
	free(csv_path);
	free(w.text);
	return rc;
}

/* Nothing outlives the call: the dry run gets no cleanup, and undo needs no state. */
static int execute(struct ferry_ctx *c, enum sched_mode mode)
{
	struct sched_priv *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return ferry_fail(c, FERRY_FAIL, "out of memory");
	rc = execute_with(c, p, mode);
	free(p->db);
	free(p);
	return rc;
}

static int schedule_run(struct ferry_ctx *c)
{
	return execute(c, SCHED_RUN);
}

static int schedule_dry_run(struct ferry_ctx *c)
{
	char *db = ferry_cfg_path(c, "db");
	bool absent = db && access(db, F_OK) != 0 && errno == ENOENT;

	if (absent) {
		/* in a whole-pipeline dry run the replica is made by pull, which did not run */
		ferry_log(c, FERRY_INFO, "dry-run: database does not exist yet (an earlier stage "
			  "makes it); nothing to compute", "db='%s'", db);
		free(db);
		return FERRY_OK;
	}
	free(db);
	return execute(c, SCHED_DRY);
}

/* The schedule is written to the local replica in one transaction, and push never runs
 * after a failure, so a committed schedule needs no reversal. */
static int schedule_undo(struct ferry_ctx *c)
{
	ferry_fact_set(c, "undo", "kept: the new schedule stays in the replica, not pushed "
		       "(ferry run push publishes it; the next whole run recomputes it)");
	return FERRY_OK;
}

/* run and dry_run free what they allocate before returning; nothing is held. */
static int schedule_cleanup(struct ferry_ctx *c)
{
	(void)c;
	return FERRY_OK;
}

FERRY_EXPORT const struct ferry_stage ferry_stage_v1 = {
	.abi = FERRY_STAGE_ABI, .size = sizeof(struct ferry_stage), .name = "schedule",
	.check = schedule_check, .dry_run = schedule_dry_run, .run = schedule_run,
	.undo = schedule_undo, .cleanup = schedule_cleanup, .keys = schedule_keys,
	.summary = "compute the email schedule into the replica (anniversaries, state exclusions)",
};
