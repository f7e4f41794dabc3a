/* pipeline.c: run the selected stages in order; on failure unwind them like a stack. */
#include "pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "cli.h"
#include "ctx.h"
#include "ferry_ctx.h"
#include "ferry_failpoint.h"
#include "ferry_log.h"
#include "ferry_parse.h"
#include "ferry_time.h"
#include "journal.h"
#include "plugin.h"

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		abort();
	return d;
}

static char *abs_path(const char *p)
{
	char cwd[4096], *out;

	if (p[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return xstrdup(p);
	if (asprintf(&out, "%s/%s", cwd, p) < 0)
		abort();
	return out;
}

static char *make_run_id(void)
{
	char buf[64];
	time_t t = (time_t)(ferry_now_ms() / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "-%d", (int)getpid());
	return xstrdup(buf);
}

/* "no stage 'X' in 'INI' (did you mean 'Y'?)" */
static int no_stage(struct run *r, const char *name)
{
	const char **names = calloc(r->n ? r->n : 1, sizeof(*names));
	const char *s;
	size_t i;
	int rc;

	if (!names)
		abort();
	for (i = 0; i < r->n; i++)
		names[i] = r->st[i].name;
	s = cli_suggest(name, names, r->n);
	rc = cli_usage_error("no stage '%s' in '%s'%s%s%s", name, r->config_path,
			     s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
	free(names);
	return rc;
}

static int select_stages(struct run *r, const struct pipeline_opts *o)
{
	size_t i;
	int k;

	if (o->from && o->n_only)
		return cli_usage_error("--from and stage names cannot be combined");
	for (k = 0; k < o->n_only; k++) {
		struct stage_rt *st = run_stage(r, o->only[k]);

		if (!st)
			return no_stage(r, o->only[k]);
		if (!st->enabled)
			return cli_usage_error("stage '%s' is disabled (enabled = false); enable "
					       "it with -o %s.enabled=true", st->name, st->name);
		st->selected = true;
	}
	if (o->n_only)
		return 0;
	for (i = 0; i < r->n; i++) {
		if (o->from && strcmp(r->st[i].name, o->from) == 0) {
			if (!r->st[i].enabled)
				return cli_usage_error("stage '%s' is disabled (enabled = false)", o->from);
			break;
		}
	}
	if (o->from && i == r->n)
		return no_stage(r, o->from);
	for (i = o->from ? i : 0; i < r->n; i++)
		r->st[i].selected = r->st[i].enabled;
	return 0;
}

/* The descriptor of st's plugin, loaded without checks (NULL if it cannot be loaded: such a
 * stage provides nothing; prepare_stage reports it if it is selected). */
static const struct ferry_stage *peek(struct stage_rt *st, const char *dir)
{
	char err[2048];

	if (!st->desc)
		st->desc = plugin_load(dir, st->plugin, err, sizeof(err));
	return st->desc;
}

/* Is `res` held at position `at`: provided by a selected stage before it, or still held
 * from a run that died (journal), and not ended by a selected stage between? 0 no, 1 by
 * this run, 2 held over. */
static int held_at(struct run *r, size_t at, const char *res, const char *dir)
{
	int held = 0;
	size_t i;

	for (i = 0; i < r->n; i++)
		if (r->st[i].held_over && peek(&r->st[i], dir) &&
		    plugin_word_in(plugin_res(r->st[i].desc, PLUGIN_PROVIDES), res))
			held = 2;
	for (i = 0; i < at; i++) {
		const struct ferry_stage *d;

		if (!r->st[i].selected || !(d = peek(&r->st[i], dir)))
			continue;
		if (plugin_word_in(plugin_res(d, PLUGIN_PROVIDES), res))
			held = 1;
		if (plugin_word_in(plugin_res(d, PLUGIN_ENDS), res))
			held = 0;
	}
	return held;
}

/* A selection of stages (names or --from) that lacks what its stages need: select, from
 * the INI, the enabled stages that provide it, and those that end what they provide
 * (the lock brought in is released by unlock). Logs "bringing in lock, mount, unlock for push". */
static void bring_in(struct run *r, const char *dir)
{
	bool changed = true;
	size_t i, k;

	while (changed) {
		changed = false;
		for (i = 0; i < r->n; i++) {
			struct stage_rt *st = &r->st[i];
			const char *needs, *p;
			char added[512] = "";

			if (!st->selected || !peek(st, dir))
				continue;
			needs = plugin_res(st->desc, PLUGIN_NEEDS);
			for (p = needs; p && *p;) {
				char res[64];
				size_t n = strcspn(p, " ");

				snprintf(res, sizeof(res), "%.*s", (int)n, p);
				p += n + strspn(p + n, " ");
				if (!*res || held_at(r, i, res, dir))
					continue;
				for (k = 0; k < i; k++) {
					struct stage_rt *pr = &r->st[k];

					if (pr->selected || !pr->enabled || !peek(pr, dir) ||
					    !plugin_word_in(plugin_res(pr->desc, PLUGIN_PROVIDES), res))
						continue;
					pr->selected = pr->brought_in = pr->just_added = true;
					break;
				}
				if (k == i) {
					ferry_logf(FERRY_DEBUG, st->name, "no stage before it provides "
						   "what it needs", "resource=%s", res);
					continue;
				}
				/* and the stages after it that end what was brought in */
				for (k = i + 1; k < r->n; k++) {
					struct stage_rt *e = &r->st[k];

					if (e->selected || !e->enabled || !peek(e, dir) ||
					    !plugin_word_in(plugin_res(e->desc, PLUGIN_ENDS), res))
						continue;
					e->selected = e->brought_in = e->just_added = true;
					break;
				}
				changed = true;
			}
			for (k = 0; k < r->n; k++)  /* in INI order */
				if (r->st[k].just_added) {
					r->st[k].just_added = false;
					snprintf(added + strlen(added), sizeof(added) - strlen(added),
						 "%s%s", *added ? ", " : "", r->st[k].name);
				}
			if (*added) {
				char msg[700];

				snprintf(msg, sizeof(msg), "bringing in %s for %s", added, st->name);
				ferry_logf(FERRY_INFO, "ferry", msg, "hint='ferry run --exact runs only "
					   "the stages named'");
			}
		}
	}
	for (i = 0; i < r->n; i++) {
		const char *p;

		if (!r->st[i].selected || !r->st[i].desc)
			continue;
		for (p = plugin_res(r->st[i].desc, PLUGIN_NEEDS); p && *p;) {
			char res[64], msg[160];
			size_t n = strcspn(p, " ");

			snprintf(res, sizeof(res), "%.*s", (int)n, p);
			p += n + strspn(p + n, " ");
			if (!*res || held_at(r, i, res, dir) != 2)
				continue;
			snprintf(msg, sizeof(msg), "using the %s still held by the last run, which "
				 "did not end", res);
			ferry_logf(FERRY_INFO, r->st[i].name, msg, "hint='ferry status shows that run'");
		}
	}
}

/* `ferry check`: a stage placed where what it needs is not held (before the stage that
 * provides it, or after the one that ends it). FERRY_USAGE (logged) per problem. */
static int check_order(struct run *r, const char *dir)
{
	int rc = 0;
	size_t i;

	for (i = 0; i < r->n; i++) {
		struct stage_rt *st = &r->st[i];
		const char *p;

		if (!st->selected || !peek(st, dir))
			continue;
		for (p = plugin_res(st->desc, PLUGIN_NEEDS); p && *p;) {
			char res[64], where[512] = "", what[600];
			size_t n = strcspn(p, " "), k;
			const char *reason = "no stage before it provides it";

			snprintf(res, sizeof(res), "%.*s", (int)n, p);
			p += n + strspn(p + n, " ");
			if (!*res || held_at(r, i, res, dir))
				continue;
			for (k = 0; k < i; k++)
				if (r->st[k].selected && peek(&r->st[k], dir) &&
				    plugin_word_in(plugin_res(r->st[k].desc, PLUGIN_ENDS), res)) {
					snprintf(what, sizeof(what), "stage '%s' ends it before", r->st[k].name);
					reason = what;
				}
			if (reason != what) {
				bool later = false;

				for (k = i + 1; k < r->n; k++)
					if (r->st[k].selected && peek(&r->st[k], dir) &&
					    plugin_word_in(plugin_res(r->st[k].desc, PLUGIN_PROVIDES), res)) {
						snprintf(what, sizeof(what), "stage '%s', which provides it, comes "
							 "after", r->st[k].name);
						reason = what;
						later = true;
						break;
					}
				if (!later)
					continue;   /* nothing provides it at all: a local setup */
			}
			if (st->sec && st->sec->file)
				snprintf(where, sizeof(where), "%s:%d", st->sec->file, st->sec->line);
			else
				snprintf(where, sizeof(where), "-o %s", st->name);
			rc = cli_usage_error("%s: stage '%s' needs the %s held, but %s; move the "
					     "[stage %s] section", where, st->name, res, reason, st->name);
		}
	}
	return rc;
}

/* A plugin that did not load: where the INI names it; when it does not exist, the plugins
 * there (and the likely one). FERRY_USAGE, logged. */
static int plugin_error(const struct stage_rt *st, const char *dir, const char *err)
{
	const struct cfg_entry *e = st->sec ? cfg_find_entry(st->sec, "plugin") : NULL;
	char where[600] = "", so[4200], list[1024] = "";
	size_t n, i;
	char **names;
	const char *s;
	int rc;

	if (e)
		cfg_where(st->sec, e, where, sizeof(where));
	snprintf(so, sizeof(so), "%s/%s.so", dir, st->plugin);
	if (access(so, F_OK) == 0)
		return cli_usage_error("%s%sstage '%s': %s", where, *where ? ": " : "", st->name, err);
	names = plugin_list(dir, &n);
	for (i = 0; i < n; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
			 names[i]);
	s = cli_suggest(st->plugin, (const char *const *)names, n);
	rc = cli_usage_error("%s%sstage '%s': no plugin '%s' in %s%s%s%s; there: %s", where,
			     *where ? ": " : "", st->name, st->plugin, dir, s ? " (did you mean '" : "",
			     s ? s : "", s ? "'?)" : "", n ? list : "none");
	plugin_list_free(names, n);
	return rc;
}

/* Load and validate one stage's plugin; FERRY_USAGE (logged) on failure. */
static int prepare_stage(struct run *r, struct stage_rt *st, const char *dir)
{
	char err[2048];
	int rc;

	if (!st->desc)
		st->desc = plugin_load(dir, st->plugin, err, sizeof(err));
	if (!st->desc)
		return plugin_error(st, dir, err);
	if (cfg_check_keys(st->sec, st->desc->keys, err, sizeof(err)) != 0)
		return cli_usage_error("%s", err);
	st->ctx = ctx_new(r, st);
	if (!st->desc->check)
		return 0;
	rc = st->desc->check(st->ctx);
	if (rc == FERRY_OK)
		return 0;
	cli_usage_error("stage '%s': %s", st->name,
			ctx_error(st->ctx) ? ctx_error(st->ctx) : "check failed");
	ctx_clear_error(st->ctx);
	return FERRY_USAGE;
}

int pipeline_prepare(struct run *r, struct config *cfg, const char *config_path,
		     const struct pipeline_opts *o)
{
	const char *dir;
	uint64_t deadline = 0;
	size_t i;
	int rc = 0;

	memset(r, 0, sizeof(*r));
	r->cfg = cfg;
	r->config_path = config_path;
	r->cancel_fd = -1;
	r->dry_run = o->dry_run;
	r->journal = !o->dry_run && !o->check_all;
	r->result = "running";
	r->pipeline = cfg_pipeline(cfg, "name");
	r->state_dir = abs_path(cfg_pipeline(cfg, "state_dir"));
	ferry_parse_duration_ms(cfg_pipeline(cfg, "deadline"), &deadline);
	r->deadline_text = cfg_pipeline(cfg, "deadline");
	if (deadline)
		r->deadline_ms = ferry_mono_ms() + (int64_t)deadline;
	r->run_id = make_run_id();
	run_stages_from_config(r, cfg);
	if (select_stages(r, o) != 0)
		return FERRY_USAGE;
	dir = plugin_dir(cfg_pipeline(cfg, "plugin_dir"));
	r->partial = o->from || o->n_only;
	if (r->partial) {
		char err[1024];

		if (journal_load_run(r, err, sizeof(err)) == -2)
			ferry_logf(FERRY_WARN, "ferry", "journal unreadable; facts of earlier stages "
				   "are not available", "error='%s'", err);
		if (!o->exact)
			bring_in(r, dir);
	}
	if (o->check_all && check_order(r, dir) != 0)
		rc = FERRY_USAGE;
	for (i = 0; i < r->n; i++) {
		struct stage_rt *st = &r->st[i];

		/* a full run or `check` validates every enabled stage; a rerun of some
		 * stages only those, so an unrelated plugin cannot block the operator */
		if (!st->selected && !(o->check_all && st->enabled))
			continue;
		if (prepare_stage(r, st, dir) != 0) {
			st->invalid = true;
			rc = FERRY_USAGE;
			if (!o->check_all)
				return rc;
		}
	}
	for (i = 0; i < r->n; i++)
		if (!r->st[i].ctx)
			r->st[i].ctx = ctx_new(r, &r->st[i]);
	return rc;
}

static const char *stage_error(const struct stage_rt *st, const char *fallback)
{
	const char *e = ctx_error(st->ctx);

	return e ? e : fallback;
}

/* One callback with its events and log lines; returns its rc. */
static int call(struct run *r, struct stage_rt *st, const char *op,
		int (*fn)(struct ferry_ctx *))
{
	int64_t t0 = ferry_mono_ms(), ms;
	const char *err;
	char msg[2300];
	int rc;

	ctx_clear_error(st->ctx);
	ferry_logf(FERRY_DEBUG, st->name, op, "plugin=%s", st->plugin);
	/* STAGE.before_OP / STAGE.after_OP fault points of the crash matrix (tests only) */
	snprintf(msg, sizeof(msg), "%s.before_%s", st->name, op);
	if (ferry_failpoint(msg))
		rc = ferry_fail(st->ctx, FERRY_FAIL, "failpoint %s", msg);
	else
		rc = fn(st->ctx);
	snprintf(msg, sizeof(msg), "%s.after_%s", st->name, op);
	if (rc == FERRY_OK && ferry_failpoint(msg))
		rc = ferry_fail(st->ctx, FERRY_FAIL, "failpoint %s", msg);
	ms = ferry_mono_ms() - t0;
	if (rc == FERRY_OK && ctx_error(st->ctx))
		rc = ctx_error_rc(st->ctx);   /* ferry_fail without returning it */
	if (rc == FERRY_OK) {
		snprintf(msg, sizeof(msg), "%s ok", op);
		ferry_logf(FERRY_INFO, st->name, msg, "ms=%" PRId64, ms);
		run_event(r, st->name, op, "ok", NULL);
	} else {
		err = stage_error(st, "failed without a message");
		snprintf(msg, sizeof(msg), "%s failed: %s", op, err);
		ferry_logf(FERRY_ERROR, st->name, msg, "rc=%d ms=%" PRId64, rc, ms);
		run_event(r, st->name, op, "failed", err);
	}
	if (strcmp(op, "run") == 0 || strcmp(op, "dry-run") == 0)
		st->ms = ms;
	return rc;
}

static int dry_run(struct run *r)
{
	size_t i;
	int worst = 0;

	for (i = 0; i < r->n; i++) {
		struct stage_rt *st = &r->st[i];
		int rc;

		if (!st->selected)
			continue;
		if (!st->desc->dry_run) {
			ferry_logf(FERRY_WARN, st->name, "dry-run not supported by this plugin; run "
				   "would be called", "plugin=%s", st->plugin);
			continue;
		}
		rc = call(r, st, "dry-run", st->desc->dry_run);
		st->result = rc == FERRY_OK ? SR_DRY : SR_FAILED;
		if (rc && !worst)
			worst = rc;
	}
	return worst;
}

/* mkdir -p, each new directory 0700. */
static int mkdirs(const char *dir)
{
	char p[4096];
	size_t i;

	if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
		return errno = ENAMETOOLONG, -1;
	for (i = 1; p[i]; i++) {
		if (p[i] != '/')
			continue;
		p[i] = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			return -1;
		p[i] = '/';
	}
	return mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* The state_dir's run lock: its fd (held until exit), -1 when another run holds it, -2
 * after a usage error (logged). */
static int local_lock(struct run *r)
{
	char path[4200];
	int fd;

	if (mkdirs(r->state_dir) != 0) {
		cli_usage_error("cannot create state_dir '%s': %s", r->state_dir, strerror(errno));
		return -2;
	}
	snprintf(path, sizeof(path), "%s/run.lock", r->state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		cli_usage_error("cannot open '%s': %s", path, strerror(errno));
		return -2;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		char who[256] = "";
		ssize_t n = pread(fd, who, sizeof(who) - 1, 0);

		close(fd);
		who[n > 0 ? n : 0] = '\0';
		who[strcspn(who, "\n")] = '\0';
		ferry_logf(FERRY_ERROR, "ferry", "another ferry run is using this state_dir; wait "
			   "for it or stop it", "state_dir='%s' %s", r->state_dir,
			   *who ? who : "holder=unknown");
		return -1;
	}
	/* who holds it, for the next one to name: "pid=N run_id=ID" */
	if (ftruncate(fd, 0) == 0)
		dprintf(fd, "pid=%d run_id=%s\n", (int)getpid(), r->run_id);
	return fd;                          /* held until exit */
}

/* A fact of st, "" when unset. */
static const char *fact_of(const struct stage_rt *st, const char *key)
{
	size_t j;

	for (j = 0; j < st->n_facts; j++)
		if (strcmp(st->facts[j].key, key) == 0)
			return st->facts[j].value ? st->facts[j].value : "";
	return "";
}

static void summary(struct run *r)
{
	static const char *const byte_facts[] = { "bytes", "bytes_read", "bytes_uploaded",
						   "bytes_down", "bytes_up", NULL };
	char line[512];
	size_t i;

	if (ferry_log_format() == FERRY_LOG_JSON) {
		for (i = 0; i < r->n; i++)
			if (r->st[i].started || r->st[i].result == SR_DRY)
				ferry_logf(FERRY_INFO, r->st[i].name, "summary",
					   "result=%s ms=%" PRId64 " brought_in=%s undo='%s'",
					   journal_result_name(r->st[i].result), r->st[i].ms,
					   r->st[i].brought_in ? "true" : "false",
					   fact_of(&r->st[i], "undo"));
		return;
	}
	snprintf(line, sizeof(line), "%-16s %-10s %-12s %10s %14s\n", "stage", "plugin", "result",
		 "time", "bytes");
	ferry_log_text(line);
	for (i = 0; i < r->n; i++) {
		const struct stage_rt *st = &r->st[i];
		const char *bytes = NULL;
		const char *const *b;
		char t[32];

		if (!st->started && st->result != SR_DRY)
			continue;
		for (b = byte_facts; *b && !bytes; b++) {
			size_t j;

			for (j = 0; j < st->n_facts; j++)
				if (strcmp(st->facts[j].key, *b) == 0)
					bytes = st->facts[j].value;
		}
		snprintf(t, sizeof(t), "%.3fs", (double)st->ms / 1000.0);
		snprintf(line, sizeof(line), "%-16s %-10s %-12s %10s %14s%s\n", st->name, st->plugin,
			 journal_result_name(st->result), t, bytes ? bytes : "-",
			 st->brought_in ? "  (brought in)" : "");
		ferry_log_text(line);
		if ((st->result == SR_KEPT || st->result == SR_UNDONE) && *fact_of(st, "undo")) {
			snprintf(line, sizeof(line), "%-16s undo: %s\n", "", fact_of(st, "undo"));
			ferry_log_text(line);
		}
	}
}

int pipeline_run(struct run *r)
{
	struct stage_rt *failed = NULL;
	int rc = FERRY_OK, lockfd = -1, exit_code;
	size_t i, started = 0;
	char names[1024] = "";

	for (i = 0; i < r->n; i++)
		if (r->st[i].selected)
			snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
				 *names ? "," : "", r->st[i].name);
	r->started_at = ferry_now_ms();
	ferry_logf(FERRY_INFO, "ferry", r->dry_run ? "dry-run start" : "run start",
		   "pipeline=%s stages=%s run_id=%s", r->pipeline, names, r->run_id);
	if (r->dry_run) {
		rc = dry_run(r);
		summary(r);
		return rc;
	}
	lockfd = local_lock(r);
	if (lockfd < 0)
		return lockfd == -1 ? FERRY_FAIL : FERRY_USAGE;
	journal_note(r);
	for (i = 0; i < r->n; i++) {
		struct stage_rt *st = &r->st[i];

		if (!st->selected)
			continue;
		if (run_cancelled(r))
			break;
		st->started = true;
		st->cleaned = st->held_over = false;
		st->result = SR_RUNNING;
		st->started_at = ferry_now_ms();
		free(st->error);
		st->error = NULL;
		started = i + 1;
		journal_note(r);
		rc = call(r, st, "run", st->desc->run);
		st->rc = rc;
		st->ended_at = ferry_now_ms();
		st->result = rc == FERRY_OK ? SR_OK : SR_FAILED;
		if (rc != FERRY_OK) {
			st->error = xstrdup(stage_error(st, "failed"));
			failed = st;
		}
		journal_note(r);
		if (failed)
			break;
	}
	if (!failed && r->signo && *r->signo)
		ferry_logf(FERRY_ERROR, "ferry", "interrupted by a signal; unwinding", "signal=%d",
			   (int)*r->signo);
	else if (!failed && r->deadline_ms && ferry_mono_ms() >= r->deadline_ms) {
		char msg[160];

		r->deadline_hit = true;
		snprintf(msg, sizeof(msg), "deadline %s reached; unwinding", r->deadline_text);
		ferry_logf(FERRY_ERROR, "ferry", msg, "deadline=%s", r->deadline_text);
	}
	/* Unwinding: the started stages in reverse; undo (if its run succeeded and the
	 * pipeline failed) then cleanup. Signals no longer cancel anything. */
	r->unwinding = true;
	{
		bool pipeline_failed = failed || (r->signo && *r->signo) ||
				       (r->deadline_ms && ferry_mono_ms() >= r->deadline_ms);
		int unwind_rc = 0;

		if (pipeline_failed && !failed && r->deadline_ms && ferry_mono_ms() >= r->deadline_ms)
			r->deadline_hit = true;
		for (i = started; i-- > 0;) {
			struct stage_rt *st = &r->st[i];

			if (!st->started)
				continue;
			if (pipeline_failed && st->result == SR_OK && st->desc->undo) {
				int u;

				run_fact_put(st, "undo", "");
				u = call(r, st, "undo", st->desc->undo);
				st->result = u != FERRY_OK ? SR_UNDO_FAILED :
					     strncmp(fact_of(st, "undo"), "kept", 4) == 0 ? SR_KEPT :
					     SR_UNDONE;
				if (u)
					unwind_rc = FERRY_FAIL;
				journal_write(r);
			}
			if (st->desc->cleanup) {
				if (call(r, st, "cleanup", st->desc->cleanup) != FERRY_OK)
					unwind_rc = FERRY_FAIL;
				st->cleaned = true;
				journal_note(r);
			}
		}
		if (r->signo && *r->signo)
			exit_code = 128 + (int)*r->signo;
		else if (failed)
			exit_code = failed->rc >= 1 && failed->rc <= 4 ? failed->rc : FERRY_FAIL;
		else if (r->deadline_hit)
			exit_code = FERRY_FAIL;
		else
			exit_code = unwind_rc;
		r->result = exit_code == 0 ? "ok" : (r->signo && *r->signo) ? "cancelled" : "failed";
	}
	r->exit_code = exit_code;
	r->ended_at = ferry_now_ms();
	journal_write(r);
	journal_history_append(r);
	summary(r);
	ferry_logf(exit_code ? FERRY_ERROR : FERRY_INFO, "ferry", "run end",
		   "result=%s exit=%d ms=%" PRId64, r->result, exit_code, r->ended_at - r->started_at);
	if (lockfd >= 0)
		close(lockfd);
	return exit_code;
}

void pipeline_release(struct run *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		ctx_free(r->st[i].ctx);
	run_release(r);
}
