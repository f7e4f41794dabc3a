/* cmd_work.c: `ferry work [--once] [--workers N] [--max-runs N] [--dry-run]`: a worker of a
 * fleet. It lists the orgs in the bucket, skips those recorded done for the period, and runs
 * the pipeline for the others, each in a child `ferry run` with its own state dir and mount,
 * coordinating with other workers only through the lock object and the run records
 * (conf/k8s/README.md has the design, the keys and the exit codes). */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd_work.h"
#include "ferry_lock.h"
#include "ferry_log.h"
#include "ferry_parse.h"
#include "ferry_s3.h"
#include "ferry_time.h"
#include "journal.h"
#include "pipeline.h"

extern char **environ;

/* What ORG_ID and FERRY_MOUNTPOINT hold while the worker reads the INI for itself: any value
 * that depends on them shows the marker, which is how the checks below see whether a key is
 * per org. */
#define ORG_MARK "_ORG_ID_"
#define MNT_MARK "/_FERRY_MOUNTPOINT_"

#define MAX_STAGES 32
#define MAX_WORKERS 64
#define CHECK_THREADS 16                    /* record LISTs in flight at the start of a pass */
#define PROGRESS_MS 10000

enum phase { PH_IDLE, PH_LOCK, PH_MAIN, PH_UNLOCK };

/* One pipeline slot: an org going through lock, main (the stages between) and unlock, each
 * a child `ferry run` sharing the org's state dir and journal. */
struct slot {
	enum phase ph;
	pid_t pid;
	char org[WORK_ORG_MAX];
	int64_t started_ms;                 /* unix ms, the lock child's start */
	int64_t t0;                         /* monotonic ms */
	struct work_stage_rec st[MAX_STAGES];
	size_t n;
	char run_id[64];
	const char *outcome;                /* ok, failed, cancelled, busy, done_elsewhere */
	int exit_code;                      /* of the phase that decided the outcome */
	char record[2048];                  /* key written, "" if none */
};

struct work {
	struct cli *cli;
	struct config *cfg;
	/* [work] and the command line */
	struct work_pattern pat;
	uint64_t period_ms, idle_ms;
	char records[1024];                 /* ends with '/' */
	int workers, retries;
	int64_t max_runs;
	bool once, dry_run, keep_state;
	int metrics_port;
	char state_dir[2048];               /* short enough for STATE_DIR/orgs/ORG/... in PATH_MAX */
	char mount_dir[2048];
	char self[PATH_MAX];                /* this ferry binary, run for each phase */
	char config_abs[PATH_MAX];
	/* the pipeline's shape */
	char lock_stage[64], unlock_stage[64];
	char *middle[MAX_STAGES];           /* enabled stages but lock and unlock, in order */
	size_t n_middle;
	bool has_pull;                      /* a middle stage is a pull: it runs as in a whole run */
	/* identity in records and lock bodies */
	char host[256];
	char worker[300];
	/* run state */
	struct ferry_s3 *s3;
	bool s3_cancellable;                /* listing may be cut short by a signal, records not */
	struct work_metrics *metrics;
	struct slot slots[MAX_WORKERS];
	bool stopping;
	int signo;
	int64_t runs;                       /* main phases started (for --max-runs) */
	/* this pass's counts */
	size_t n_ok, n_failed, n_cancelled, n_busy, n_elsewhere;
	int devnull;
	/* SIGCHLD, blocked in every thread of the worker and read here, wakes the wait for
	 * children (-1: polled); the children get the old mask back before exec */
	int chld_fd;
	sigset_t old_mask;
};

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p)
		abort();
	return p;
}

/* ---- settings ------------------------------------------------------------------------- */

/* A key's error with its place: "FILE:LINE: key 'K': why" (the section's line when the key
 * is not set there). */
static int key_error(const struct config *cfg, const struct cfg_section *sec, const char *key,
		     const char *why)
{
	const struct cfg_entry *e = cfg_find_entry(sec, key);
	char where[512];

	if (e)
		cfg_where(sec, e, where, sizeof(where));
	else
		snprintf(where, sizeof(where), "%s:%d", sec && sec->file ? sec->file : cfg->path,
			 sec ? sec->line : 0);
	return cli_usage_error("%s: key '%s': %s", where, key, why);
}

static int int_key(const struct config *cfg, const char *key, int64_t lo, int64_t hi,
		   int64_t *out)
{
	char why[128];

	if (ferry_parse_int(cfg_work(cfg, key), out) == 0 && *out >= lo && *out <= hi)
		return 0;
	snprintf(why, sizeof(why), "must be %" PRId64 "..%" PRId64, lo, hi);
	return key_error(cfg, cfg_work_section(cfg), key, why);
}

/* p against the working directory (as the pipeline resolves state_dir): 0, or -1 when
 * it does not fit out. */
static int abs_path(const char *p, char *out, size_t n)
{
	char cwd[PATH_MAX];
	int k;

	if (p[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		k = snprintf(out, n, "%s", p);
	else
		k = snprintf(out, n, "%s/%s", cwd, p);
	return k < 0 || (size_t)k >= n ? -1 : 0;
}

static int read_work_keys(struct work *w)
{
	const struct config *cfg = w->cfg;
	const char *rec = cfg_work(cfg, "records");
	int64_t v;
	char why[256];

	if (!cfg_work_section(cfg))
		return cli_usage_error("no [work] section in '%s': ferry work needs at least "
				       "`orgs = org-data/*.db` there (see conf/pipeline.ini)", cfg->path);
	if (cmd_work_rec_pattern(cfg_work(cfg, "orgs"), &w->pat, why, sizeof(why)) != 0)
		return key_error(cfg, cfg_work_section(cfg), "orgs", why);
	ferry_parse_duration_ms(cfg_work(cfg, "period"), &w->period_ms);
	if (cmd_work_rec_period_check(w->period_ms, why, sizeof(why)) != 0)
		return key_error(cfg, cfg_work_section(cfg), "period", why);
	ferry_parse_duration_ms(cfg_work(cfg, "idle"), &w->idle_ms);
	if (!rec[0] || rec[0] == '/' || strstr(rec, "..") || strchr(rec, '*') ||
	    strlen(rec) > 512)
		return key_error(cfg, cfg_work_section(cfg), "records",
				 "must be a key prefix such as ferry-runs/");
	snprintf(w->records, sizeof(w->records), "%s%s", rec,
		 rec[strlen(rec) - 1] == '/' ? "" : "/");
	if (!w->workers) {
		if (int_key(cfg, "workers", 1, MAX_WORKERS, &v))
			return FERRY_USAGE;
		w->workers = (int)v;
	}
	if (w->max_runs < 0) {
		if (int_key(cfg, "max_runs", 0, INT64_MAX, &v))
			return FERRY_USAGE;
		w->max_runs = v;
	}
	if (int_key(cfg, "retries", 0, 1000000, &v))
		return FERRY_USAGE;
	w->retries = (int)v;
	if (int_key(cfg, "metrics_port", 0, 65535, &v))
		return FERRY_USAGE;
	w->metrics_port = (int)v;
	ferry_parse_bool(cfg_work(cfg, "keep_state"), &w->keep_state);
	if (abs_path(cfg_pipeline(cfg, "state_dir"), w->state_dir, sizeof(w->state_dir) - 8))
		return cli_usage_error("%s: state_dir is too long for ferry work", cfg->path);
	if (cfg_work(cfg, "mount_dir") &&
	    abs_path(cfg_work(cfg, "mount_dir"), w->mount_dir, sizeof(w->mount_dir)))
		return key_error(cfg, cfg_work_section(cfg), "mount_dir", "too long");
	if (!cfg_work(cfg, "mount_dir") &&
	    snprintf(w->mount_dir, sizeof(w->mount_dir), "%s/mnt", w->state_dir) >=
	    (int)sizeof(w->mount_dir))
		return cli_usage_error("%s: state_dir is too long for ferry work", cfg->path);
	if (strstr(w->state_dir, ORG_MARK) || strstr(w->mount_dir, ORG_MARK))
		return cli_usage_error("%s: state_dir and [work] mount_dir must not depend on "
				       "${ORG_ID}: ferry work gives each org STATE_DIR/orgs/ORG_ID "
				       "and MOUNT_DIR/ORG_ID", cfg->path);
	return 0;
}

/* The pipeline as work mode runs it: the lock stage first, with max_wait 0, then the
 * stages between, then the unlock stage; every plugin loaded and checked now, so a bad
 * config is exit 2 before any org is touched. */
static int read_pipeline(struct work *w)
{
	struct pipeline_opts o = { .check_all = true };
	const char *key, *mp;
	struct run r;
	size_t i;
	int rc;

	rc = pipeline_prepare(&r, w->cfg, w->cli->config_path, &o);
	for (i = 0; rc == 0 && i < r.n; i++) {
		const struct stage_rt *st = &r.st[i];

		if (!st->enabled)
			continue;
		if (strcmp(st->plugin, "lock") == 0 && !w->lock_stage[0]) {
			snprintf(w->lock_stage, sizeof(w->lock_stage), "%s", st->name);
		} else if (strcmp(st->plugin, "unlock") == 0 && !w->unlock_stage[0]) {
			snprintf(w->unlock_stage, sizeof(w->unlock_stage), "%s", st->name);
		} else if (w->n_middle < MAX_STAGES - 2) {
			w->has_pull |= strcmp(st->plugin, "pull") == 0;
			w->middle[w->n_middle++] = strdup(st->name);
			if (!w->middle[w->n_middle - 1])
				abort();
		}
		if (strcmp(st->plugin, "mount") == 0 && w->workers > 1) {
			mp = cfg_get(w->cfg, st->name, "mountpoint");
			if (mp && !strstr(mp, MNT_MARK) && !strstr(mp, ORG_MARK))
				rc = key_error(w->cfg, st->sec, "mountpoint",
					       "is the same for every org, but workers > 1 run "
					       "orgs side by side: use ${FERRY_MOUNTPOINT} (ferry "
					       "work sets it to MOUNT_DIR/ORG_ID)");
		}
	}
	pipeline_release(&r);
	if (rc)
		return FERRY_USAGE;
	if (!w->lock_stage[0] || !w->unlock_stage[0])
		return cli_usage_error("%s: ferry work needs an enabled lock stage and an unlock "
				       "stage: the lock is how workers share the orgs", w->cfg->path);
	key = cfg_get(w->cfg, w->lock_stage, "key");
	if (!key || !strstr(key, ORG_MARK))
		return key_error(w->cfg, cfg_find_section(w->cfg, w->lock_stage), "key",
				 "does not depend on ${ORG_ID}: in work mode every org needs a "
				 "lock of its own");
	return 0;
}

/* ---- children ------------------------------------------------------------------------- */

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	return s;
}

struct vec {
	char **v;
	size_t n;
};

static void push(struct vec *a, char *s)
{
	a->v = realloc(a->v, (a->n + 2) * sizeof(char *));
	if (!a->v)
		abort();
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void vec_free(struct vec *a)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

static void org_paths(const struct work *w, const char *org, char *sd, char *mp, size_t n)
{
	snprintf(sd, n, "%s/orgs/%s", w->state_dir, org);
	snprintf(mp, n, "%s/%s", w->mount_dir, org);
}

static int mkdirs(const char *path, mode_t mode)
{
	char buf[PATH_MAX], *p;

	snprintf(buf, sizeof(buf), "%s", path);
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(buf, mode) != 0 && errno != EEXIST ? -1 : 0;
}

/* argv of one phase: ferry -c INI [log flags] [-o ...] run STAGES */
static void phase_argv(const struct work *w, enum phase ph, const char *sd, struct vec *a)
{
	size_t i;
	int k;

	push(a, strf("%s", w->self));
	push(a, strf("-c"));
	push(a, strf("%s", w->config_abs));
	if (ferry_log_format() == FERRY_LOG_JSON)
		push(a, strf("--log-format=json"));
	if (ferry_log_level() == FERRY_DEBUG)
		push(a, strf("-v"));
	else if (ferry_log_level() >= FERRY_WARN)
		push(a, strf("-q"));
	for (k = 0; k < w->cli->n_overrides; k++) {
		push(a, strf("-o"));
		push(a, strf("%s", w->cli->overrides[k]));
	}
	/* ours last: later overrides win */
	push(a, strf("-o"));
	push(a, strf("pipeline.state_dir=%s", sd));
	push(a, strf("-o"));
	push(a, strf("%s.max_wait=0", w->lock_stage));
	push(a, strf("run"));
	push(a, strf("--exact"));           /* the phases split the pipeline on purpose */
	/* together the phases are a whole run: pull replaces what a failed run left in the
	 * replica, as it does there (the schedule is recomputed) */
	if (ph != PH_LOCK && ph != PH_UNLOCK && w->has_pull)
		push(a, strf("--discard-local"));
	if (ph == PH_LOCK)
		push(a, strf("%s", w->lock_stage));
	else if (ph == PH_UNLOCK)
		push(a, strf("%s", w->unlock_stage));
	else
		for (i = 0; i < w->n_middle; i++)
			push(a, strf("%s", w->middle[i]));
}

static void phase_env(const char *org, const char *sd, const char *mp, struct vec *e)
{
	char **p;

	for (p = environ; *p; p++)
		if (strncmp(*p, "ORG_ID=", 7) != 0 && strncmp(*p, "FERRY_STATE_DIR=", 16) != 0 &&
		    strncmp(*p, "FERRY_MOUNTPOINT=", 17) != 0)
			push(e, strf("%s", *p));
	push(e, strf("ORG_ID=%s", org));
	push(e, strf("FERRY_STATE_DIR=%s", sd));
	push(e, strf("FERRY_MOUNTPOINT=%s", mp));
}

static const char *phase_name(enum phase ph)
{
	return ph == PH_LOCK ? "lock" : ph == PH_UNLOCK ? "unlock" : "pipeline";
}

/* Start phase ph of slot s: 0, or -1 (logged). The child's output goes to the org's
 * STATE_DIR/orgs/ORG/work.log (begun anew by the lock phase): N pipelines' lines
 * interleaved on one stderr would be unreadable; the worker logs one line per org. */
static int spawn(struct work *w, struct slot *s, enum phase ph)
{
	char sd[PATH_MAX], mp[PATH_MAX], logp[PATH_MAX + 16];
	struct vec argv = { 0 }, env = { 0 };
	pid_t parent = getpid(), pid;
	int logfd;

	org_paths(w, s->org, sd, mp, sizeof(sd));
	if (mkdirs(sd, 0700) != 0 || mkdirs(mp, 0755) != 0) {
		ferry_logf(FERRY_ERROR, "work", "cannot create the org's directories", "org=%s "
			   "state_dir='%s' mountpoint='%s' error='%s'", s->org, sd, mp,
			   strerror(errno));
		return -1;
	}
	snprintf(logp, sizeof(logp), "%s/work.log", sd);
	logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC |
		     (ph == PH_LOCK ? O_TRUNC : 0), 0600);
	if (logfd < 0) {
		ferry_logf(FERRY_ERROR, "work", "cannot open the org's log", "org=%s path='%s' "
			   "error='%s'", s->org, logp, strerror(errno));
		return -1;
	}
	phase_argv(w, ph, sd, &argv);
	phase_env(s->org, sd, mp, &env);
	pid = fork();
	if (pid == 0) {
		/* its own process group: a terminal's Ctrl-C reaches the worker, which decides
		 * what to forward; and if the worker dies, the child is told to unwind */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(128 + SIGTERM);
		sigprocmask(SIG_SETMASK, &w->old_mask, NULL);
		dup2(w->devnull, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		execve(w->self, argv.v, env.v);
		_exit(127);
	}
	close(logfd);
	vec_free(&argv);
	vec_free(&env);
	if (pid < 0) {
		ferry_logf(FERRY_ERROR, "work", "cannot start a child ferry", "org=%s error='%s'",
			   s->org, strerror(errno));
		return -1;
	}
	setpgid(pid, pid);                  /* also here: no race with a signal we forward */
	s->ph = ph;
	s->pid = pid;
	ferry_logf(FERRY_DEBUG, "work", "phase start", "org=%s phase=%s pid=%d", s->org,
		   phase_name(ph), (int)pid);
	return 0;
}

/* ---- journal of a phase ----------------------------------------------------------------- */

/* The bytes a stage moved: its first fact of these, as the run summary shows it. */
static const char *const byte_facts[] = { "bytes", "bytes_read", "bytes_uploaded",
					   "bytes_down", "bytes_up", NULL };

static void stage_from_journal(struct work_stage_rec *r, const struct journal_stage *js)
{
	const char *const *b;
	size_t j;

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", js->name ? js->name : "?");
	snprintf(r->plugin, sizeof(r->plugin), "%s", js->plugin ? js->plugin : "?");
	snprintf(r->result, sizeof(r->result), "%s", js->result ? js->result : "?");
	snprintf(r->error, sizeof(r->error), "%s", js->error ? js->error : "");
	r->ms = js->ms;
	for (b = byte_facts; *b && !r->has_bytes; b++)
		for (j = 0; j < js->n_facts; j++)
			if (strcmp(js->facts[j].key, *b) == 0 && js->facts[j].value) {
				r->bytes = strtoull(js->facts[j].value, NULL, 10);
				r->has_bytes = true;
				break;
			}
}

/* Append the stages the phase just ran (in_this_run) to the slot; keep its run id. */
static void read_phase_journal(struct work *w, struct slot *s)
{
	char sd[PATH_MAX], mp[PATH_MAX], path[PATH_MAX + 16], err[1024];
	struct journal_view v;
	json_t *stages;
	size_t i;

	org_paths(w, s->org, sd, mp, sizeof(sd));
	journal_path(sd, path, sizeof(path));
	if (journal_view_load(&v, path, err, sizeof(err)) != 0) {
		journal_view_release(&v);
		return;
	}
	stages = json_object_get(v.doc, "stages");
	for (i = 0; i < v.n && s->n < MAX_STAGES; i++)
		if (json_is_true(json_object_get(json_array_get(stages, i), "in_this_run")))
			stage_from_journal(&s->st[s->n++], &v.st[i]);
	if (v.run_id && (s->ph != PH_UNLOCK || !s->run_id[0]))
		snprintf(s->run_id, sizeof(s->run_id), "%s", v.run_id);
	journal_view_release(&v);
}

static const char *first_error(const struct slot *s, char *buf, size_t n)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->st[i].error[0]) {
			snprintf(buf, n, "%s: %s", s->st[i].name, s->st[i].error);
			return buf;
		}
	return NULL;
}

/* ---- records ----------------------------------------------------------------------------- */

/* Write the slot's record: the done key for a good run (conditional create: exactly one
 * per org and period), else a failed-/cancelled- key that does not mark the period done.
 * Written while the org's lock is still held, so the next holder sees it. */
static int write_record(struct work *w, struct slot *s, const struct work_period *p)
{
	struct work_record rec = { 0 };
	char err[1024], ebuf[700], rnd[65] = "", *json;
	const char *kind;
	int rc;

	rec.org = s->org;
	rec.period = p->name;
	rec.run_id = s->run_id[0] ? s->run_id : "-";
	rec.worker = w->worker;
	rec.host = w->host;
	rec.started_ms = s->started_ms;
	rec.ended_ms = ferry_now_ms();
	rec.exit_code = s->exit_code;
	rec.result = s->outcome;
	rec.error = first_error(s, ebuf, sizeof(ebuf));
	rec.st = s->st;
	rec.n = s->n;
	json = cmd_work_rec_json(&rec);
	if (!json)
		abort();
	kind = strcmp(s->outcome, "ok") == 0 ? NULL : s->outcome;
	if (!kind) {
		cmd_work_rec_done_key(w->records, s->org, p->name, s->record, sizeof(s->record));
	} else {
		/* run ids are per machine: a random tail keeps two machines' names apart */
		ferry_lock_nonce(rnd);
		snprintf(s->record, sizeof(s->record), "%s%s/%s.%s-%s-%.8s.json", w->records,
			 s->org, p->name, kind, rec.run_id, rnd);
	}
	rc = cmd_work_rec_create(w->s3, s->record, json, err, sizeof(err));
	free(json);
	if (rc == 1) {
		ferry_logf(FERRY_WARN, "work", "run record already written by another worker: "
			   "our lock must have expired mid-run", "org=%s record=%s", s->org,
			   s->record);
		return 0;
	}
	if (rc < 0) {
		ferry_logf(FERRY_ERROR, "work", err, "org=%s record=%s", s->org, s->record);
		s->record[0] = '\0';
		return -1;
	}
	return 0;
}

/* ---- one org through its phases ----------------------------------------------------------- */

static void slot_reset(struct slot *s)
{
	memset(s, 0, sizeof(*s));
	s->ph = PH_IDLE;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *f)
{
	(void)sb;
	(void)f;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}

/* keep_state = false: after a good run the org's replica and journal go (the record keeps
 * what happened); a failed run's stay for the operator. Never crosses into a mount. */
static void drop_state(struct work *w, const struct slot *s)
{
	char sd[PATH_MAX], mp[PATH_MAX];

	org_paths(w, s->org, sd, mp, sizeof(sd));
	if (nftw(sd, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
		ferry_logf(FERRY_WARN, "work", "cannot remove the org's state dir", "org=%s "
			   "path='%s' error='%s'", s->org, sd, strerror(errno));
	rmdir(mp);
}

/* The org is through: count it, log its line, write the metrics file. */
static void org_end(struct work *w, struct slot *s)
{
	char ebuf[700];
	const char *e;
	uint64_t bytes = cmd_work_rec_bytes(s->st, s->n);
	int64_t ms = ferry_mono_ms() - s->t0;

	if (strcmp(s->outcome, "busy") == 0) {
		w->n_busy++;
		cmd_work_metrics_busy(w->metrics);
		ferry_logf(FERRY_INFO, "work", "org busy: another worker holds its lock; skipped",
			   "org=%s", s->org);
	} else if (strcmp(s->outcome, "done_elsewhere") == 0) {
		w->n_elsewhere++;
		cmd_work_metrics_done_elsewhere(w->metrics);
		ferry_logf(FERRY_INFO, "work", "org already recorded by another worker; skipped",
			   "org=%s", s->org);
	} else if (strcmp(s->outcome, "ok") == 0) {
		w->n_ok++;
		cmd_work_metrics_run(w->metrics, "ok", s->st, s->n);
		ferry_logf(FERRY_INFO, "work", "org done", "org=%s run_id=%s ms=%" PRId64
			   " bytes=%" PRIu64 " record=%s", s->org, s->run_id, ms, bytes, s->record);
		if (!w->keep_state)
			drop_state(w, s);
	} else {
		char msg[900];

		e = first_error(s, ebuf, sizeof(ebuf));
		if (strcmp(s->outcome, "cancelled") == 0)
			w->n_cancelled++;
		else
			w->n_failed++;
		cmd_work_metrics_run(w->metrics, s->outcome, s->st, s->n);
		snprintf(msg, sizeof(msg), "org %s: %s", strcmp(s->outcome, "cancelled") == 0 ?
			 "cancelled" : "failed", e ? e : "see its log");
		ferry_logf(FERRY_ERROR, "work", msg, "org=%s exit=%d run_id=%s ms=%" PRId64
			   " record=%s log='%s/orgs/%s/work.log'", s->org, s->exit_code,
			   s->run_id[0] ? s->run_id : "-", ms, s->record[0] ? s->record : "-",
			   w->state_dir, s->org);
	}
	if (strcmp(s->outcome, "busy") != 0 && strcmp(s->outcome, "done_elsewhere") != 0)
		cmd_work_metrics_write(w->metrics);
	slot_reset(s);
}

static const char *exit_outcome(int code)
{
	return code > 128 ? "cancelled" : "failed";
}

/* A phase's child has ended with exit status code: what comes next. */
static void phase_done(struct work *w, struct slot *s, int code, const struct work_period *p)
{
	struct work_org_state os;
	char err[1024];

	read_phase_journal(w, s);
	switch (s->ph) {
	case PH_LOCK:
		if (code == FERRY_NOLOCK) {
			s->outcome = "busy";
			break;
		}
		if (code != 0) {
			/* the lock stage unwound itself (released what it took) */
			s->outcome = exit_outcome(code);
			s->exit_code = code;
			if (code <= 128)
				write_record(w, s, p);
			break;
		}
		/* locked: the authoritative look at the records, now that nobody else can run
		 * the org (a worker writes its record before it unlocks) */
		if (w->stopping) {
			s->outcome = "cancelled";
			s->exit_code = 128 + w->signo;
		} else if (cmd_work_rec_org_state(w->s3, w->records, s->org, p->name, &os, err,
						  sizeof(err)) != 0) {
			ferry_logf(FERRY_ERROR, "work", err, "org=%s", s->org);
			s->outcome = "failed";
			s->exit_code = FERRY_FAIL;
		} else if (os.done || (w->retries && os.failures >= w->retries)) {
			s->outcome = "done_elsewhere";
		} else {
			w->runs++;
			if (spawn(w, s, PH_MAIN) == 0)
				return;
			s->outcome = "failed";
			s->exit_code = FERRY_FAIL;
		}
		if (spawn(w, s, PH_UNLOCK) == 0)
			return;
		break;
	case PH_MAIN:
		s->exit_code = code;
		s->outcome = code == 0 ? "ok" : exit_outcome(code);
		if (write_record(w, s, p) != 0 && code == 0) {
			/* done but not recorded: a later pass runs it again, so say so */
			s->outcome = "failed";
			s->exit_code = FERRY_FAIL;
		}
		if (spawn(w, s, PH_UNLOCK) == 0)
			return;
		ferry_logf(FERRY_ERROR, "work", "cannot release the org's lock; it expires at its "
			   "ttl", "org=%s", s->org);
		break;
	case PH_UNLOCK:
		if (code != 0)
			ferry_logf(FERRY_WARN, "work", "unlock failed; the lock expires at its ttl",
				   "org=%s exit=%d log='%s/orgs/%s/work.log'", s->org, code,
				   w->state_dir, s->org);
		break;
	case PH_IDLE:
		break;
	}
	org_end(w, s);
}

/* ---- a pass ------------------------------------------------------------------------------ */

struct org_check {
	char **ids;
	size_t n;
	const struct work *w;
	const struct work_period *p;
	struct work_org_state *st;
	size_t next;
	int failed;
	char err[1024];
	int64_t t0, last;
	pthread_mutex_t mu;
};

static void *check_thread(void *arg)
{
	struct org_check *c = arg;
	char err[1024];

	for (;;) {
		size_t i;

		pthread_mutex_lock(&c->mu);
		i = c->failed ? c->n : c->next++;
		if (i < c->n && ferry_mono_ms() - c->last >= PROGRESS_MS) {
			c->last = ferry_mono_ms();
			ferry_logf(FERRY_INFO, "work", "reading run records", "orgs=%zu/%zu "
				   "per_s=%.0f", i, c->n,
				   (double)i * 1000.0 / (double)(c->last - c->t0 + 1));
		}
		pthread_mutex_unlock(&c->mu);
		if (i >= c->n)
			return NULL;
		if (cmd_work_rec_org_state(c->w->s3, c->w->records, c->ids[i], c->p->name,
					   &c->st[i], err, sizeof(err)) != 0) {
			pthread_mutex_lock(&c->mu);
			if (!c->failed)
				snprintf(c->err, sizeof(c->err), "%s", err);
			c->failed = 1;
			pthread_mutex_unlock(&c->mu);
		}
	}
}

/* Every org's records for the period, CHECK_THREADS LISTs at a time. */
static int check_orgs(struct work *w, char **ids, size_t n, const struct work_period *p,
		      struct work_org_state *st)
{
	struct org_check c = { .ids = ids, .n = n, .w = w, .p = p, .st = st };
	pthread_t th[CHECK_THREADS];
	size_t k, nth = n < CHECK_THREADS ? n : CHECK_THREADS;

	c.t0 = c.last = ferry_mono_ms();
	pthread_mutex_init(&c.mu, NULL);
	for (k = 0; k < nth; k++)
		if (pthread_create(&th[k], NULL, check_thread, &c) != 0)
			break;
	if (k == 0)
		check_thread(&c);
	nth = k;
	for (k = 0; k < nth; k++)
		pthread_join(th[k], NULL);
	pthread_mutex_destroy(&c.mu);
	if (c.failed) {
		ferry_logf(FERRY_ERROR, "work", c.err, NULL);
		return -1;
	}
	return 0;
}

static uint64_t rnd64(uint64_t *s)
{
	/* xorshift64*: only to spread workers over the orgs, nothing secret */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static void shuffle(char **v, size_t n)
{
	uint64_t seed = 0;
	size_t i;

	if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed) || !seed)
		seed = (uint64_t)ferry_now_ms() ^ ((uint64_t)getpid() << 32) ^ 1;
	for (i = n; i > 1; i--) {
		size_t j = (size_t)(rnd64(&seed) % i);
		char *t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

static int slots_in(const struct work *w, enum phase ph)
{
	int k, b = 0;

	for (k = 0; k < w->workers; k++)
		b += w->slots[k].ph == ph;
	return b;
}

static int busy_slots(const struct work *w)
{
	return w->workers - slots_in(w, PH_IDLE);
}

/* A signal came: no new org; the lock and pipeline children unwind (the unlock children
 * are left alone: cancelling them would keep the lock until its ttl). */
static void stop(struct work *w)
{
	int k;

	ferry_logf(FERRY_WARN, "work", "signal: finishing the running pipelines (they unwind "
		   "and release their locks), starting no new org", "signal=%d running=%d",
		   w->signo, busy_slots(w));
	w->stopping = true;
	for (k = 0; k < w->workers; k++) {
		struct slot *s = &w->slots[k];

		if (s->ph == PH_LOCK || s->ph == PH_MAIN)
			kill(-s->pid, w->signo);
	}
}

/* Has a signal come (main.c's handler sets *signo and writes to the self-pipe)? */
static bool signalled(struct work *w)
{
	char buf[64];

	if (w->cli->cancel_fd >= 0)
		while (read(w->cli->cancel_fd, buf, sizeof(buf)) > 0)
			;
	return w->cli->signo && *w->cli->signo;
}

/* Start the next due orgs in free slots; returns false when none is left to start. */
static bool fill(struct work *w, char **due, size_t n_due, size_t *next,
		 const struct work_period *p, size_t *given_up)
{
	int k;

	for (k = 0; k < w->workers && *next < n_due; k++) {
		struct slot *s = &w->slots[k];
		struct work_org_state os;
		char err[1024];
		const char *org;

		if (s->ph != PH_IDLE)
			continue;
		/* a lock child in flight may become a run: count it against --max-runs */
		if (w->stopping || (w->max_runs && w->runs + slots_in(w, PH_LOCK) >= w->max_runs))
			return false;
		org = due[(*next)++];
		/* again just before: another worker may have done it since the pass began */
		if (cmd_work_rec_org_state(w->s3, w->records, org, p->name, &os, err,
					   sizeof(err)) == 0 &&
		    (os.done || (w->retries && os.failures >= w->retries))) {
			if (!os.done)
				++*given_up;
			continue;
		}
		slot_reset(s);
		snprintf(s->org, sizeof(s->org), "%s", org);
		s->started_ms = ferry_now_ms();
		s->t0 = ferry_mono_ms();
		if (spawn(w, s, PH_LOCK) != 0) {
			s->outcome = "failed";
			s->exit_code = FERRY_FAIL;
			org_end(w, s);
		}
	}
	return *next < n_due;
}

static void progress(struct work *w, size_t started, size_t n_due, int64_t t0)
{
	int64_t ms = ferry_mono_ms() - t0;
	size_t ran = w->n_ok + w->n_failed + w->n_cancelled;

	ferry_logf(FERRY_INFO, "work", "pass progress", "orgs=%zu/%zu running=%d ok=%zu "
		   "failed=%zu busy=%zu elsewhere=%zu orgs_per_min=%.1f", started, n_due,
		   busy_slots(w), w->n_ok, w->n_failed, w->n_busy, w->n_elsewhere,
		   (double)ran * 60000.0 / (double)(ms + 1));
}

/* Wait for a child to end or a signal, then handle what happened. */
static void wait_children(struct work *w, const struct work_period *p, int timeout_ms)
{
	struct pollfd pf[2];
	struct signalfd_siginfo si;
	int k, np = 0, status;

	if (w->cli->cancel_fd >= 0)
		pf[np++] = (struct pollfd){ .fd = w->cli->cancel_fd, .events = POLLIN };
	if (w->chld_fd >= 0)
		pf[np++] = (struct pollfd){ .fd = w->chld_fd, .events = POLLIN };
	else if (timeout_ms > 100)
		timeout_ms = 100;           /* no signalfd: look for ended children every 100 ms */
	if (poll(pf, (nfds_t)np, timeout_ms) < 0 && errno != EINTR)
		ferry_logf(FERRY_WARN, "work", "poll failed", "error='%s'", strerror(errno));
	while (w->chld_fd >= 0 && read(w->chld_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		;                           /* SIGCHLDs merge: every slot is asked below */
	if (!w->stopping && signalled(w)) {
		w->signo = (int)*w->cli->signo;
		stop(w);                    /* once: a second signal changes nothing */
	}
	for (k = 0; k < w->workers; k++) {
		struct slot *s = &w->slots[k];
		pid_t r;

		if (s->ph == PH_IDLE)
			continue;
		r = waitpid(s->pid, &status, WNOHANG);
		if (r != s->pid)
			continue;
		phase_done(w, s, WIFEXITED(status) ? WEXITSTATUS(status) :
			   128 + WTERMSIG(status), p);
	}
	cmd_work_metrics_running(w->metrics, busy_slots(w));
}

/* One pass: 0 when every due org is done or in another worker's hands, 1 when a run
 * failed, 128+N after a signal, 2 when the bucket cannot be read. */
static int pass(struct work *w)
{
	struct work_period p;
	struct work_org_state *st = NULL;
	char **ids = NULL, **due = NULL, err[1024];
	size_t n = 0, ignored = 0, n_due = 0, n_done = 0, given_up = 0, next = 0, i;
	int64_t t0 = ferry_mono_ms(), last;
	int rc = 0;

	w->n_ok = w->n_failed = w->n_cancelled = w->n_busy = w->n_elsewhere = 0;
	cmd_work_rec_period(w->period_ms, ferry_now_ms(), &p);
	w->s3_cancellable = true;
	if (cmd_work_rec_list_orgs(w->s3, &w->pat, &ids, &n, &ignored, err, sizeof(err)) != 0) {
		w->s3_cancellable = false;
		if (signalled(w))
			return 128 + (int)*w->cli->signo;
		ferry_logf(FERRY_ERROR, "work", err, NULL);
		return FERRY_FAIL;
	}
	if (ignored)
		ferry_logf(FERRY_WARN, "work", "keys matching the org pattern with an id other than "
			   "letters, digits, '-' and '_' were ignored", "count=%zu", ignored);
	st = xcalloc(n, sizeof(*st));
	due = xcalloc(n, sizeof(*due));
	if (check_orgs(w, ids, n, &p, st) != 0) {
		w->s3_cancellable = false;
		rc = signalled(w) ? 128 + (int)*w->cli->signo : FERRY_FAIL;
		goto out;
	}
	w->s3_cancellable = false;
	for (i = 0; i < n; i++) {
		if (st[i].done)
			n_done++;
		else if (w->retries && st[i].failures >= w->retries)
			given_up++;
		else
			due[n_due++] = ids[i];
	}
	shuffle(due, n_due);
	cmd_work_metrics_pass(w->metrics, n, n_due, n_done, given_up);
	ferry_logf(FERRY_INFO, "work", "pass start", "period=%s orgs=%zu due=%zu done=%zu "
		   "given_up=%zu workers=%d", p.name, n, n_due, n_done, given_up, w->workers);
	if (w->dry_run) {
		for (i = 0; i < n; i++)
			printf("%-24s %s\n", ids[i], st[i].done ? "done" :
			       w->retries && st[i].failures >= w->retries ? "given up" : "due");
		printf("period %s: %zu orgs, %zu due (would run each: lock, pipeline, record, "
		       "unlock), %zu done, %zu given up after %d failed runs\n", p.name, n, n_due,
		       n_done, given_up, w->retries);
		goto out;
	}
	last = t0;
	while (fill(w, due, n_due, &next, &p, &given_up) || busy_slots(w)) {
		if (!busy_slots(w))
			continue;               /* fill skipped a done org and has more */
		wait_children(w, &p, 1000);
		if (ferry_mono_ms() - last >= PROGRESS_MS) {
			last = ferry_mono_ms();
			progress(w, next, n_due, t0);
		}
	}
	ferry_logf(w->n_failed ? FERRY_ERROR : FERRY_INFO, "work", "pass end",
		   "period=%s ok=%zu failed=%zu cancelled=%zu busy=%zu elsewhere=%zu "
		   "given_up=%zu not_started=%zu ms=%" PRId64 " orgs_per_min=%.1f", p.name, w->n_ok,
		   w->n_failed, w->n_cancelled, w->n_busy, w->n_elsewhere, given_up, n_due - next,
		   ferry_mono_ms() - t0, (double)(w->n_ok + w->n_failed) * 60000.0 /
		   (double)(ferry_mono_ms() - t0 + 1));
	if (given_up)
		ferry_logf(FERRY_ERROR, "work", "orgs left alone until the next period after "
			   "failing [work] retries times", "count=%zu retries=%d period=%s",
			   given_up, w->retries, p.name);
	if (w->stopping)
		rc = 128 + w->signo;
	else if (w->n_failed)
		rc = FERRY_FAIL;
out:
	free(st);
	free(due);
	cmd_work_rec_free_ids(ids, n);
	return rc;
}

/* ---- the command ------------------------------------------------------------------------- */

static bool s3_cancelled(void *arg)
{
	const struct work *w = arg;

	return w->s3_cancellable && w->cli->signo && *w->cli->signo;
}

static int parse_args(struct work *w)
{
	struct cli *cli = w->cli;
	int i;

	for (i = 0; i < cli->argc; i++) {
		const char *a = cli->argv[i];
		const char *v = i + 1 < cli->argc ? cli->argv[i + 1] : NULL;
		int64_t n;

		if (strcmp(a, "--once") == 0) {
			w->once = true;
		} else if (strcmp(a, "--dry-run") == 0) {
			w->dry_run = true;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			cli_command_help("work", stdout);
			return -1;
		} else if (strcmp(a, "-o") == 0 && v) {
			cli_add_override(cli, v);
			i++;
		} else if ((strcmp(a, "--workers") == 0 || strcmp(a, "--max-runs") == 0) && v) {
			bool workers = a[2] == 'w';

			if (ferry_parse_int(v, &n) != 0 || n < (workers ? 1 : 0) ||
			    (workers && n > MAX_WORKERS))
				return cli_usage_error("bad value '%s' for %s (%s)", v, a, workers ?
						       "1..64" : "0 or more");
			if (workers)
				w->workers = (int)n;
			else
				w->max_runs = n;
			i++;
		} else {
			cli_usage_error("unknown argument '%s' for work", a);
			cli_command_help("work", stderr);
			return FERRY_USAGE;
		}
	}
	return 0;
}

/* One `ferry work` per state_dir: two would run the same org's children in one dir. */
static int work_lock(const struct work *w)
{
	char path[PATH_MAX + 16];
	int fd;

	if (mkdirs(w->state_dir, 0700) != 0)
		return cli_usage_error("cannot create state_dir '%s': %s", w->state_dir,
				       strerror(errno));
	snprintf(path, sizeof(path), "%s/work.lock", w->state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return cli_usage_error("cannot open '%s': %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		ferry_logf(FERRY_ERROR, "work", "another ferry work is using this state_dir",
			   "state_dir='%s'", w->state_dir);
		return -1;
	}
	return fd;
}

static int setup(struct work *w)
{
	char inst[128];
	ssize_t k;

	/* The INI is read here with stand-ins for the per-org variables (see ORG_MARK): the
	 * children get the real ones. */
	setenv("ORG_ID", ORG_MARK, 1);
	setenv("FERRY_MOUNTPOINT", MNT_MARK, 1);
	w->cfg = cli_config(w->cli);
	if (!w->cfg)
		return FERRY_USAGE;
	if (read_work_keys(w) || read_pipeline(w))
		return FERRY_USAGE;
	k = readlink("/proc/self/exe", w->self, sizeof(w->self) - 1);
	if (k <= 0)
		return cli_usage_error("cannot find the ferry binary (/proc/self/exe): %s",
				       strerror(errno));
	w->self[k] = '\0';
	if (abs_path(w->cli->config_path, w->config_abs, sizeof(w->config_abs)))
		return cli_usage_error("config path too long: '%s'", w->cli->config_path);
	if (gethostname(w->host, sizeof(w->host)) != 0)
		snprintf(w->host, sizeof(w->host), "unknown");
	w->host[sizeof(w->host) - 1] = '\0';
	ferry_lock_instance_id(inst);
	snprintf(w->worker, sizeof(w->worker), "%s/%d", inst, (int)getpid());
	w->s3 = cli_s3(w->cli);
	if (!w->s3)
		return FERRY_USAGE;
	ferry_s3_set_cancel(w->s3, s3_cancelled, w);
	return 0;
}

/* Before any thread starts (metrics server, record readers), so that all inherit the mask. */
static void chld_setup(struct work *w)
{
	sigset_t chld;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (pthread_sigmask(SIG_BLOCK, &chld, &w->old_mask) != 0)
		return;
	w->chld_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (w->chld_fd < 0)
		pthread_sigmask(SIG_SETMASK, &w->old_mask, NULL);
}

/* Sleep between passes; false when a signal came. */
static bool idle(struct work *w)
{
	struct pollfd pf = { .fd = w->cli->cancel_fd, .events = POLLIN };
	int64_t until = ferry_mono_ms() + (int64_t)w->idle_ms;

	ferry_logf(FERRY_INFO, "work", "idle until the next pass", "idle_ms=%" PRIu64, w->idle_ms);
	while (ferry_mono_ms() < until) {
		int64_t left = until - ferry_mono_ms();

		poll(&pf, w->cli->cancel_fd >= 0 ? 1 : 0, left > 60000 ? 60000 : (int)left);
		if (signalled(w))
			return false;
	}
	return true;
}

int cmd_work(struct cli *cli)
{
	struct work *w = xcalloc(1, sizeof(*w));
	char err[512];
	int rc, lockfd = -1;
	size_t i;

	w->cli = cli;
	w->max_runs = -1;
	w->devnull = -1;
	w->chld_fd = -1;
	rc = parse_args(w);
	if (rc) {
		rc = rc < 0 ? 0 : rc;
		goto out;
	}
	rc = setup(w);
	if (rc)
		goto out;
	w->metrics = cmd_work_metrics_new(w->state_dir, w->workers);
	if (!w->metrics)
		abort();
	if (w->dry_run) {
		rc = pass(w);
		goto out;
	}
	lockfd = work_lock(w);
	if (lockfd < 0) {
		rc = lockfd == -1 ? FERRY_FAIL : FERRY_USAGE;
		goto out;
	}
	w->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	chld_setup(w);
	cmd_work_metrics_write(w->metrics);
	if (w->metrics_port && cmd_work_metrics_serve(w->metrics, w->metrics_port, err,
						      sizeof(err)) != 0) {
		rc = cli_usage_error("metrics_port: %s", err);
		goto out;
	}
	ferry_logf(FERRY_INFO, "work", "worker start", "worker=%s orgs='%s*%s' period_ms=%" PRIu64
		   " records=%s workers=%d once=%s max_runs=%" PRId64 " metrics_port=%d",
		   w->worker, w->pat.prefix, w->pat.suffix, w->period_ms, w->records, w->workers,
		   w->once ? "yes" : "no", w->max_runs, w->metrics_port);
	for (;;) {
		rc = pass(w);
		if (rc > 128 || w->once || (w->max_runs && w->runs >= w->max_runs))
			break;
		if (!idle(w)) {
			rc = 128 + (int)*cli->signo;
			break;
		}
	}
	cmd_work_metrics_write(w->metrics);
	ferry_logf(rc ? FERRY_ERROR : FERRY_INFO, "work", "worker end", "exit=%d runs=%" PRId64,
		   rc, w->runs);
out:
	if (lockfd >= 0)
		close(lockfd);
	if (w->devnull >= 0)
		close(w->devnull);
	if (w->chld_fd >= 0) {
		close(w->chld_fd);
		pthread_sigmask(SIG_SETMASK, &w->old_mask, NULL);
	}
	for (i = 0; i < w->n_middle; i++)
		free(w->middle[i]);
	cmd_work_metrics_free(w->metrics);
	free(w);
	return rc;
}
