/* run.c: the state of one pipeline run (its stages from the config, their facts and last
 * results from the journal), and the stage API (ferry_ctx.h) over it: config accessors,
 * facts, errors, cancellation. ferry exports the ferry_* functions of this file to its
 * plugins (core/ferry.dynlist); libferry never calls them. */
#include "run.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "ferry_ctx.h"
#include "ferry_log.h"
#include "ferry_parse.h"
#include "ferry_s3.h"
#include "ferry_time.h"
#include "journal.h"

#define CTX_ERR_MAX 2048

struct ferry_ctx {
	struct run *run;                    /* the run this stage belongs to */
	struct stage_rt *st;                /* the stage */
	void *priv;                         /* stage-private pointer */
	int err_rc;                         /* code of the first ferry_fail, 0 if none */
	char err[CTX_ERR_MAX];              /* message of the first ferry_fail */
};

void run_event(struct run *r, const char *stage, const char *op, const char *result,
	       const char *error)
{
	struct event *e;

	if (r->n_ev == r->cap_ev) {
		r->cap_ev = r->cap_ev ? r->cap_ev * 2 : 16;
		r->ev = realloc(r->ev, r->cap_ev * sizeof(*r->ev));
		if (!r->ev)
			abort();
	}
	e = &r->ev[r->n_ev++];
	e->ts = ferry_now_ms();
	e->stage = strdup(stage);
	e->op = strdup(op);
	e->result = strdup(result);
	e->error = error ? strdup(error) : NULL;
}

struct ferry_ctx *run_ctx_new(struct run *r, struct stage_rt *st)
{
	struct ferry_ctx *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->run = r;
	c->st = st;
	return c;
}

static void run_ctx_free(struct ferry_ctx *c)
{
	free(c);
}

const char *run_ctx_error(const struct ferry_ctx *c)
{
	return c->err_rc ? c->err : NULL;
}

int run_ctx_error_rc(const struct ferry_ctx *c)
{
	return c->err_rc;
}

void run_ctx_clear_error(struct ferry_ctx *c)
{
	c->err_rc = 0;
	c->err[0] = '\0';
}

static const struct cfg_entry *stage_entry(const struct ferry_ctx *c, const char *key)
{
	return cfg_find_entry(c->st->sec, key);
}

static const struct ferry_key *stage_key(const struct ferry_ctx *c, const char *key)
{
	return c->st->desc ? cfg_key_find(c->st->desc->keys, key) : NULL;
}

const char *ferry_cfg(const struct ferry_ctx *c, const char *key)
{
	const struct cfg_entry *e = stage_entry(c, key);
	const struct ferry_key *k;

	if (e)
		return e->value;
	k = stage_key(c, key);
	return k ? k->def : NULL;
}

bool ferry_cfg_bool(const struct ferry_ctx *c, const char *key)
{
	bool b = false;

	ferry_parse_bool(ferry_cfg(c, key), &b);
	return b;
}

int64_t ferry_cfg_int(const struct ferry_ctx *c, const char *key)
{
	int64_t v = 0;

	ferry_parse_int(ferry_cfg(c, key), &v);
	return v;
}

uint64_t ferry_cfg_ms(const struct ferry_ctx *c, const char *key)
{
	uint64_t v = 0;
	const char *s = ferry_cfg(c, key);

	if (s)
		ferry_parse_duration_ms(s, &v);
	return v;
}

uint64_t ferry_cfg_bytes(const struct ferry_ctx *c, const char *key)
{
	uint64_t v = 0;
	const char *s = ferry_cfg(c, key);

	if (s)
		ferry_parse_size(s, &v);
	return v;
}

/* Relative paths resolve against the INI's directory when the INI set them, else the cwd. */
char *ferry_cfg_path(const struct ferry_ctx *c, const char *key)
{
	const struct cfg_entry *e = stage_entry(c, key);
	const char *v = ferry_cfg(c, key);
	char *out;

	if (!v || !*v)
		return NULL;
	if (v[0] == '/' || !e || !e->file || !c->run->cfg || !c->run->cfg->dir)
		return strdup(v);
	if (asprintf(&out, "%s/%s", c->run->cfg->dir, v) < 0)
		return NULL;
	return out;
}

const char *ferry_cfg_global(const struct ferry_ctx *c, const char *section, const char *key)
{
	return cfg_get(c->run->cfg, section, key);
}

static int vfail(struct ferry_ctx *c, int rc, const char *fmt, va_list ap)
{
	if (c->err_rc == 0) {
		vsnprintf(c->err, sizeof(c->err), fmt, ap);
		ferry_log_mask(c->err);
		c->err_rc = rc ? rc : FERRY_FAIL;
	}
	return rc;
}

int ferry_fail(struct ferry_ctx *c, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(c, rc, fmt, ap);
	va_end(ap);
	return rc;
}

int ferry_cfg_error(struct ferry_ctx *c, const char *key, const char *fmt, ...)
{
	const struct cfg_entry *e = stage_entry(c, key);
	char where[512], why[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (e)
		cfg_where(c->st->sec, e, where, sizeof(where));
	else if (c->st->sec && c->st->sec->file)
		snprintf(where, sizeof(where), "%s:%d", c->st->sec->file, c->st->sec->line);
	else
		snprintf(where, sizeof(where), "[stage %s]", c->st->name);
	return ferry_fail(c, FERRY_USAGE, "%s: key '%s': %s", where, key, why);
}

void run_stages_from_config(struct run *r, const struct config *cfg)
{
	size_t i;

	r->n = 0;
	for (i = 0; i < cfg->n; i++)
		if (cfg->s[i].kind == CFG_STAGE)
			r->n++;
	r->st = calloc(r->n ? r->n : 1, sizeof(*r->st));
	if (!r->st)
		abort();
	r->n = 0;
	for (i = 0; i < cfg->n; i++) {
		const struct cfg_section *sec = &cfg->s[i];
		struct stage_rt *st;
		const char *en;
		bool enabled = true;

		if (sec->kind != CFG_STAGE)
			continue;
		st = &r->st[r->n++];
		st->name = strdup(sec->name);
		st->plugin = strdup(cfg_get(cfg, sec->name, "plugin"));
		if (!st->name || !st->plugin)
			abort();
		st->sec = sec;
		en = cfg_get(cfg, sec->name, "enabled");
		if (en)
			ferry_parse_bool(en, &enabled);
		st->enabled = enabled;
	}
}

struct stage_rt *run_stage(struct run *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (strcmp(r->st[i].name, name) == 0)
			return &r->st[i];
	return NULL;
}

/* The stage named stage_or_plugin, else the first enabled stage of that plugin; NULL. */
static struct stage_rt *run_find(struct run *r, const char *stage_or_plugin)
{
	struct stage_rt *st = run_stage(r, stage_or_plugin);
	size_t i;

	if (st)
		return st;
	for (i = 0; i < r->n; i++)
		if (r->st[i].enabled && r->st[i].plugin && strcmp(r->st[i].plugin, stage_or_plugin) == 0)
			return &r->st[i];
	return NULL;
}

const char *ferry_fact(const struct ferry_ctx *c, const char *stage, const char *key)
{
	const struct stage_rt *st = stage ? run_find(c->run, stage) : c->st;
	size_t i;

	for (i = 0; st && i < st->n_facts; i++)
		if (strcmp(st->facts[i].key, key) == 0)
			return st->facts[i].value;
	return NULL;
}

int ferry_fact_each(const struct ferry_ctx *c,
		    int (*fn)(void *arg, const char *stage, const char *key, const char *value),
		    void *arg)
{
	size_t i, j;
	int rc;

	for (i = 0; i < c->run->n; i++) {
		const struct stage_rt *st = &c->run->st[i];

		for (j = 0; j < st->n_facts; j++) {
			rc = fn(arg, st->name, st->facts[j].key, st->facts[j].value);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int run_fact_put(struct stage_rt *st, const char *key, const char *value)
{
	size_t i;
	char *v = strdup(value ? value : "");

	if (!v)
		return -1;
	for (i = 0; i < st->n_facts; i++) {
		if (strcmp(st->facts[i].key, key) == 0) {
			free(st->facts[i].value);
			st->facts[i].value = v;
			return 0;
		}
	}
	st->facts = realloc(st->facts, (st->n_facts + 1) * sizeof(*st->facts));
	if (!st->facts)
		abort();
	st->facts[st->n_facts].key = strdup(key);
	st->facts[st->n_facts].value = v;
	st->n_facts++;
	return 0;
}

int run_journal_load(struct run *r, char *err, size_t errlen)
{
	struct journal_view v;
	char path[4096];
	size_t i, j;
	int rc;

	if (journal_path(r->state_dir, path, sizeof(path)) != 0)
		return -1;
	rc = journal_view_load(&v, path, err, errlen);
	if (rc != 0) {
		journal_view_release(&v);
		return rc == 1 ? -2 : rc;
	}
	for (i = 0; i < v.n; i++) {
		const struct journal_stage *js = &v.st[i];
		struct stage_rt *st = js->name ? run_stage(r, js->name) : NULL;

		if (!st)
			continue;
		st->result = journal_result_parse(js->result);
		free(st->error);
		st->error = js->error ? strdup(js->error) : NULL;
		for (j = 0; j < js->n_facts; j++)
			if (js->facts[j].value)
				run_fact_put(st, js->facts[j].key, js->facts[j].value);
		st->facts_from_journal = st->n_facts > 0;
	}
	journal_view_release(&v);
	return 0;
}

int ferry_fact_set(struct ferry_ctx *c, const char *key, const char *value)
{
	if (c->st->facts_from_journal) {
		/* this run produces fresh facts: drop the journaled ones first */
		size_t i;

		for (i = 0; i < c->st->n_facts; i++) {
			free(c->st->facts[i].key);
			free(c->st->facts[i].value);
		}
		c->st->n_facts = 0;
		c->st->facts_from_journal = false;
	}
	if (run_fact_put(c->st, key, value) != 0)
		return -1;
	ferry_logf(FERRY_DEBUG, c->st->name, "fact", "%s=%s", key, value ? value : "");
	if (c->run->journal && !c->run->dry_run)
		journal_write(c->run);
	return 0;
}

int ferry_fact_setf(struct ferry_ctx *c, const char *key, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return ferry_fact_set(c, key, buf);
}

void ferry_log(const struct ferry_ctx *c, enum ferry_level lv, const char *msg,
	       const char *kvfmt, ...)
{
	va_list ap;

	va_start(ap, kvfmt);
	ferry_vlogf(lv, c->st->name, msg, kvfmt, ap);
	va_end(ap);
}

void **ferry_priv(struct ferry_ctx *c)
{
	return &c->priv;
}

const char *ferry_stage_name(const struct ferry_ctx *c)
{
	return c->st->name;
}

const char *ferry_state_dir(const struct ferry_ctx *c)
{
	return c->run->state_dir;
}

const char *ferry_config_file(const struct ferry_ctx *c)
{
	return c->run->config_path;
}

bool run_cancelled(const struct run *r)
{
	if (r->unwinding)
		return false;               /* unwinding must finish whatever arrives */
	if (r->signo && *r->signo)
		return true;
	return r->deadline_ms && ferry_mono_ms() >= r->deadline_ms;
}

bool ferry_cancelled(const struct ferry_ctx *c)
{
	return run_cancelled(c->run);
}

int ferry_cancel_fd(const struct ferry_ctx *c)
{
	return c->run->unwinding ? -1 : c->run->cancel_fd;
}

int64_t ferry_deadline_left_ms(const struct ferry_ctx *c)
{
	int64_t left;

	if (!c->run->deadline_ms || c->run->unwinding)
		return INT64_MAX;
	left = c->run->deadline_ms - ferry_mono_ms();
	return left > 0 ? left : 0;
}

static bool s3_cancel_cb(void *arg)
{
	return run_cancelled(arg);
}

struct ferry_s3 *run_s3(struct run *r)
{
	struct ferry_s3_conf sc;

	if (r->s3)
		return r->s3;
	if (cfg_s3_conf(r->cfg, &sc, r->s3_err, sizeof(r->s3_err)) == 0) {
		r->s3 = ferry_s3_new(&sc, r->s3_err, sizeof(r->s3_err));
		if (r->s3)
			ferry_s3_set_cancel(r->s3, s3_cancel_cb, r);
	}
	ferry_s3_conf_release(&sc);
	ferry_log_mask(r->s3_err);
	return r->s3;
}

struct ferry_s3 *ferry_s3(struct ferry_ctx *c)
{
	struct ferry_s3 *s3 = run_s3(c->run);

	if (!s3)
		ferry_fail(c, FERRY_USAGE, "cannot open the S3 client: %s", c->run->s3_err);
	return s3;
}

void run_release(struct run *r)
{
	size_t i, j;

	for (i = 0; i < r->n; i++) {
		struct stage_rt *st = &r->st[i];

		for (j = 0; j < st->n_facts; j++) {
			free(st->facts[j].key);
			free(st->facts[j].value);
		}
		free(st->facts);
		free(st->name);
		free(st->plugin);
		free(st->error);
		run_ctx_free(st->ctx);
	}
	free(r->st);
	for (i = 0; i < r->n_ev; i++) {
		free(r->ev[i].stage);
		free(r->ev[i].op);
		free(r->ev[i].result);
		free(r->ev[i].error);
	}
	free(r->ev);
	free(r->state_dir);
	free(r->run_id);
	if (r->s3)
		ferry_s3_free(r->s3);
	memset(r, 0, sizeof(*r));
}
