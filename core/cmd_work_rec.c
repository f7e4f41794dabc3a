/* cmd_work_rec.c: the bucket side of `ferry work`: UTC periods, org ids found by listing a
 * key pattern, and the run records (RECORDS/ORG/PERIOD.json) that say an org is done. */
#include "cmd_work.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry_log.h"
#include "ferry_s3.h"
#include "ferry_time.h"

#define DAY_MS (24 * 3600 * 1000LL)
#define HOUR_MS (3600 * 1000LL)
#define MINUTE_MS (60 * 1000LL)

int cmd_work_rec_period_check(uint64_t period_ms, char *why, size_t n)
{
	if (period_ms < (uint64_t)MINUTE_MS || period_ms % MINUTE_MS) {
		snprintf(why, n, "must be whole minutes, at least 1m");
		return -1;
	}
	/* a period that does not divide the day would start at another hour each day */
	if (period_ms < (uint64_t)DAY_MS && DAY_MS % (int64_t)period_ms) {
		snprintf(why, n, "must divide a day (1h, 2h, 6h, 30m...) or be whole days");
		return -1;
	}
	if (period_ms > (uint64_t)DAY_MS && period_ms % DAY_MS) {
		snprintf(why, n, "must be whole days when longer than a day");
		return -1;
	}
	return 0;
}

void cmd_work_rec_period(uint64_t period_ms, int64_t now_ms, struct work_period *out)
{
	int64_t p = (int64_t)period_ms;
	time_t t;
	struct tm tm;

	out->start_ms = now_ms - now_ms % p;
	out->end_ms = out->start_ms + p;
	t = (time_t)(out->start_ms / 1000);
	gmtime_r(&t, &tm);
	if (p % DAY_MS == 0)
		strftime(out->name, sizeof(out->name), "%Y-%m-%d", &tm);
	else if (p % HOUR_MS == 0)
		strftime(out->name, sizeof(out->name), "%Y-%m-%dT%H", &tm);
	else
		strftime(out->name, sizeof(out->name), "%Y-%m-%dT%H%M", &tm);
}

int cmd_work_rec_pattern(const char *pat, struct work_pattern *p, char *why, size_t n)
{
	const char *star = strchr(pat, '*');

	if (!star || strchr(star + 1, '*')) {
		snprintf(why, n, "'%s' must hold exactly one '*' (the org id), e.g. org-data/*.db",
			 pat);
		return -1;
	}
	if (pat[0] == '/' || (size_t)(star - pat) >= sizeof(p->prefix) ||
	    strlen(star + 1) >= sizeof(p->suffix)) {
		snprintf(why, n, "'%s' must be an object key pattern (no leading '/')", pat);
		return -1;
	}
	memcpy(p->prefix, pat, (size_t)(star - pat));
	p->prefix[star - pat] = '\0';
	snprintf(p->suffix, sizeof(p->suffix), "%s", star + 1);
	return 0;
}

bool cmd_work_rec_valid_id(const char *id)
{
	size_t i;

	for (i = 0; id[i]; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '-' && id[i] != '_')
			return false;
	return i > 0 && i < WORK_ORG_MAX;
}

bool cmd_work_rec_match(const struct work_pattern *p, const char *key, char *id, size_t n)
{
	size_t kl = strlen(key), pl = strlen(p->prefix), sl = strlen(p->suffix), il;

	if (kl <= pl + sl || strncmp(key, p->prefix, pl) != 0 ||
	    strcmp(key + kl - sl, p->suffix) != 0)
		return false;
	il = kl - pl - sl;
	if (il >= n)
		return false;
	memcpy(id, key + pl, il);
	id[il] = '\0';
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		abort();
	return d;
}

int cmd_work_rec_list_orgs(struct ferry_s3 *s3, const struct work_pattern *p, char ***ids,
			   size_t *n, size_t *ignored, char *err, size_t errlen)
{
	struct ferry_s3_list page;
	struct ferry_s3_res res;
	char *token = NULL, id[WORK_ORG_MAX];
	size_t cap = 0, keys = 0, pages = 0, i, u;
	int64_t t0 = ferry_mono_ms(), last = t0;
	int rc = 0;

	*ids = NULL;
	*n = 0;
	*ignored = 0;
	do {
		memset(&page, 0, sizeof(page));
		if (ferry_s3_list_page(s3, p->prefix, NULL, token, 1000, &page, &res) != FERRY_S3_OK) {
			snprintf(err, errlen, "cannot list the orgs: %s", res.msg);
			ferry_s3_list_release(&page);
			rc = -1;
			break;
		}
		pages++;
		for (i = 0; i < page.n_entries; i++) {
			keys++;
			if (!cmd_work_rec_match(p, page.entries[i].key, id, sizeof(id)))
				continue;
			if (!cmd_work_rec_valid_id(id)) {
				++*ignored;
				continue;
			}
			if (*n == cap) {
				cap = cap ? cap * 2 : 256;
				*ids = realloc(*ids, cap * sizeof(**ids));
				if (!*ids)
					abort();
			}
			(*ids)[(*n)++] = xstrdup(id);
		}
		free(token);
		token = page.truncated && page.next_token ? xstrdup(page.next_token) : NULL;
		ferry_s3_list_release(&page);
		if (ferry_mono_ms() - last >= 10000) {
			last = ferry_mono_ms();
			ferry_logf(FERRY_INFO, "work", "listing orgs",
				   "prefix='%s' pages=%zu keys=%zu orgs=%zu keys_per_s=%.0f",
				   p->prefix, pages, keys, *n,
				   (double)keys * 1000.0 / (double)(last - t0 + 1));
		}
	} while (token);
	free(token);
	if (rc != 0) {
		cmd_work_rec_free_ids(*ids, *n);
		*ids = NULL;
		*n = 0;
		return rc;
	}
	if (*n)
		qsort(*ids, *n, sizeof(**ids), cmp_str);
	for (i = u = 0; i < *n; i++) {
		if (u && strcmp((*ids)[u - 1], (*ids)[i]) == 0)
			free((*ids)[i]);
		else
			(*ids)[u++] = (*ids)[i];
	}
	*n = u;
	return 0;
}

void cmd_work_rec_free_ids(char **ids, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

void cmd_work_rec_done_key(const char *records, const char *org, const char *period,
			   char *out, size_t n)
{
	snprintf(out, n, "%s%s/%s.json", records, org, period);
}

void cmd_work_rec_failed_key(const char *records, const char *org, const char *period,
			     const char *run_id, char *out, size_t n)
{
	snprintf(out, n, "%s%s/%s.failed-%s.json", records, org, period, run_id);
}

int cmd_work_rec_org_state(struct ferry_s3 *s3, const char *records, const char *org,
			   const char *period, struct work_org_state *st, char *err,
			   size_t errlen)
{
	struct ferry_s3_list l;
	struct ferry_s3_res res;
	char prefix[2048], done[2048], failed[2100];
	size_t i;

	memset(st, 0, sizeof(*st));
	memset(&l, 0, sizeof(l));
	snprintf(prefix, sizeof(prefix), "%s%s/%s.", records, org, period);
	cmd_work_rec_done_key(records, org, period, done, sizeof(done));
	snprintf(failed, sizeof(failed), "%sfailed-", prefix);
	if (ferry_s3_list_all(s3, prefix, NULL, &l, &res) != FERRY_S3_OK) {
		snprintf(err, errlen, "cannot read the run records of org '%s': %s", org, res.msg);
		ferry_s3_list_release(&l);
		return -1;
	}
	for (i = 0; i < l.n_entries; i++) {
		if (strcmp(l.entries[i].key, done) == 0)
			st->done = true;
		else if (strncmp(l.entries[i].key, failed, strlen(failed)) == 0)
			st->failures++;
	}
	ferry_s3_list_release(&l);
	return 0;
}

static void iso_ms(int64_t ms, char *out, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + strlen(out), n - strlen(out), ".%03dZ", (int)(ms % 1000));
}

uint64_t cmd_work_rec_bytes(const struct work_stage_rec *st, size_t n)
{
	uint64_t b = 0;
	size_t i;

	for (i = 0; i < n; i++)
		b += st[i].bytes;
	return b;
}

char *cmd_work_rec_json(const struct work_record *r)
{
	json_t *o = json_object(), *stages = json_array();
	char started[40], ended[40];
	char *text;
	size_t i;

	if (!o || !stages)
		abort();
	iso_ms(r->started_ms, started, sizeof(started));
	iso_ms(r->ended_ms, ended, sizeof(ended));
	for (i = 0; i < r->n; i++) {
		const struct work_stage_rec *s = &r->st[i];
		json_t *j = json_pack("{s:s, s:s, s:s, s:f}", "name", s->name, "plugin", s->plugin,
				      "result", s->result, "seconds", (double)s->ms / 1000.0);

		if (!j)
			abort();
		if (s->has_bytes)
			json_object_set_new(j, "bytes", json_integer((json_int_t)s->bytes));
		if (s->error[0])
			json_object_set_new(j, "error", json_string(s->error));
		json_array_append_new(stages, j);
	}
	json_object_set_new(o, "version", json_integer(1));
	json_object_set_new(o, "org", json_string(r->org));
	json_object_set_new(o, "period", json_string(r->period));
	json_object_set_new(o, "result", json_string(r->result));
	json_object_set_new(o, "exit", json_integer(r->exit_code));
	json_object_set_new(o, "run_id", json_string(r->run_id));
	json_object_set_new(o, "worker", json_string(r->worker));
	json_object_set_new(o, "host", json_string(r->host));
	json_object_set_new(o, "started_at", json_string(started));
	json_object_set_new(o, "ended_at", json_string(ended));
	json_object_set_new(o, "seconds", json_real((double)(r->ended_ms - r->started_ms) / 1000.0));
	json_object_set_new(o, "bytes", json_integer((json_int_t)cmd_work_rec_bytes(r->st, r->n)));
	if (r->error)
		json_object_set_new(o, "error", json_string(r->error));
	json_object_set_new(o, "stages", stages);
	text = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(o);
	return text;
}

int cmd_work_rec_create(struct ferry_s3 *s3, const char *key, const char *json, char *err,
			size_t errlen)
{
	struct ferry_s3_cond cond = { .if_none_match = "*" };
	struct ferry_s3_res res;
	int rc = ferry_s3_put(s3, key, json, strlen(json), &cond, &res);

	if (rc == FERRY_S3_OK)
		return 0;
	if (rc == FERRY_S3_PRECONDITION)
		return 1;
	snprintf(err, errlen, "cannot write the run record: %s", res.msg);
	return -1;
}
