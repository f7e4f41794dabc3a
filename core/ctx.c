/* ctx.c: the stage API (ferry_ctx.h) over a run: one context per stage with its config
 * accessors, facts, first error, private pointer and cancellation. The ferry binary exports
 * the ferry_* functions of this file to its plugins (core/ferry.dynlist); libferry never
 * calls them. */
#include "ctx.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "ferry_ctx.h"
#include "ferry_fsclient.h"
#include "ferry_log.h"
#include "ferry_parse.h"
#include "ferry_s3.h"
#include "ferry_time.h"
#include "journal.h"
#include "run.h"

#define CTX_ERR_MAX 2048

struct ferry_ctx {
	struct run *run;                    /* the run this stage belongs to */
	struct stage_rt *st;                /* the stage */
	void *priv;                         /* stage-private pointer */
	int err_rc;                         /* code of the first ferry_fail, 0 if none */
	char err[CTX_ERR_MAX];              /* message of the first ferry_fail */
};

struct ferry_ctx *ctx_new(struct run *r, struct stage_rt *st)
{
	struct ferry_ctx *c = calloc(1, sizeof(*c));

	if (!c)
		abort();
	c->run = r;
	c->st = st;
	return c;
}

void ctx_free(struct ferry_ctx *c)
{
	free(c);
}

const char *ctx_error(const struct ferry_ctx *c)
{
	return c->err_rc ? c->err : NULL;
}

int ctx_error_rc(const struct ferry_ctx *c)
{
	return c->err_rc;
}

void ctx_clear_error(struct ferry_ctx *c)
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
	/* journaled when the stage's call returns (pipeline.c): stages set their facts as
	 * they finish, and a kill before that is the same as one before the facts were set,
	 * which recovery does not count on (the crash matrix kills there) */
	ferry_logf(FERRY_DEBUG, c->st->name, "fact", "%s=%s", key, value ? value : "");
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

bool ferry_cancelled(const struct ferry_ctx *c)
{
	return run_cancelled(c->run);
}

int ferry_cancel_fd(const struct ferry_ctx *c)
{
	return c->run->unwinding ? -1 : c->run->cancel_fd;
}

bool ferry_run_whole(const struct ferry_ctx *c)
{
	return !c->run->partial;
}

int64_t ferry_deadline_left_ms(const struct ferry_ctx *c)
{
	int64_t left;

	if (!c->run->deadline_ms || c->run->unwinding)
		return INT64_MAX;
	left = c->run->deadline_ms - ferry_mono_ms();
	return left > 0 ? left : 0;
}

struct ferry_s3 *ferry_s3(struct ferry_ctx *c)
{
	struct ferry_s3 *s3 = run_s3(c->run);

	if (!s3)
		ferry_fail(c, FERRY_USAGE, "cannot open the S3 client: %s", c->run->s3_err);
	return s3;
}

struct ferry_s3 *ferry_s3_for_mount(struct ferry_ctx *c, const char *path, char **key)
{
	char bucket[256] = "";
	char *k = ferry_pages_ferryfs_key(NULL, path, bucket, sizeof(bucket));
	struct ferry_s3 *s3;

	*key = NULL;
	if (!k)
		return NULL;
	s3 = ferry_cfg_global(c, "s3", "bucket") || getenv("BUCKET_NAME") ? run_s3(c->run) : NULL;
	if (!s3 || strcmp(ferry_s3_bucket(s3), bucket) != 0) {
		free(k);
		return NULL;
	}
	*key = k;
	return s3;
}
