/* run.c: the state of one pipeline run: its stages from the config, their facts, results
 * and events, cancellation, the shared S3 client. pipeline.c drives it, journal.c saves and
 * loads it, ctx.c shows it to the stages. */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "ferry_log.h"
#include "ferry_parse.h"
#include "ferry_s3.h"
#include "ferry_time.h"

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
struct stage_rt *run_find(struct run *r, const char *stage_or_plugin)
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

int run_fact_put(struct stage_rt *st, const char *key, const char *value)
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

bool run_cancelled(const struct run *r)
{
	if (r->unwinding)
		return false;               /* unwinding must finish whatever arrives */
	if (r->signo && *r->signo)
		return true;
	return r->deadline_ms && ferry_mono_ms() >= r->deadline_ms;
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
