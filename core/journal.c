/* journal.c: the run journal in state_dir (JSON), written atomically at each transition. */
#include "journal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry_file.h"
#include "ferry_log.h"
#include "run.h"

int journal_path(const struct run *r, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/journal.json", r->state_dir);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static void iso_ms(int64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!ms) {
		snprintf(out, len, "%s", "");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + strlen(out), len - strlen(out), ".%03dZ", (int)(ms % 1000));
}

static json_t *journal_json(const struct run *r)
{
	json_t *root = json_object(), *stages = json_array(), *events = json_array();
	char ts[64];
	size_t i, j;

	json_object_set_new(root, "version", json_integer(1));
	json_object_set_new(root, "pipeline", json_string(r->pipeline ? r->pipeline : ""));
	json_object_set_new(root, "run_id", json_string(r->run_id ? r->run_id : ""));
	json_object_set_new(root, "config", json_string(r->config_path ? r->config_path : ""));
	json_object_set_new(root, "pid", json_integer(getpid()));
	iso_ms(r->started_at, ts, sizeof(ts));
	json_object_set_new(root, "started_at", json_string(ts));
	iso_ms(r->ended_at, ts, sizeof(ts));
	json_object_set_new(root, "ended_at", json_string(ts));
	json_object_set_new(root, "result", json_string(r->result ? r->result : "running"));
	json_object_set_new(root, "exit", json_integer(r->exit_code));
	for (i = 0; i < r->n; i++) {
		const struct stage_rt *st = &r->st[i];
		json_t *s = json_object(), *facts = json_object();

		json_object_set_new(s, "name", json_string(st->name));
		json_object_set_new(s, "plugin", json_string(st->plugin ? st->plugin : ""));
		json_object_set_new(s, "result", json_string(run_result_name(st->result)));
		json_object_set_new(s, "in_this_run", json_boolean(st->started));
		iso_ms(st->started_at, ts, sizeof(ts));
		json_object_set_new(s, "started_at", json_string(ts));
		iso_ms(st->ended_at, ts, sizeof(ts));
		json_object_set_new(s, "ended_at", json_string(ts));
		json_object_set_new(s, "ms", json_integer(st->ms));
		if (st->error)
			json_object_set_new(s, "error", json_string(st->error));
		for (j = 0; j < st->n_facts; j++)
			json_object_set_new(facts, st->facts[j].key, json_string(st->facts[j].value));
		json_object_set_new(s, "facts", facts);
		json_array_append_new(stages, s);
	}
	json_object_set_new(root, "stages", stages);
	for (i = 0; i < r->n_ev; i++) {
		const struct event *e = &r->ev[i];
		json_t *o = json_object();

		iso_ms(e->ts, ts, sizeof(ts));
		json_object_set_new(o, "ts", json_string(ts));
		json_object_set_new(o, "stage", json_string(e->stage));
		json_object_set_new(o, "op", json_string(e->op));
		json_object_set_new(o, "result", json_string(e->result));
		if (e->error)
			json_object_set_new(o, "error", json_string(e->error));
		json_array_append_new(events, o);
	}
	json_object_set_new(root, "events", events);
	return root;
}

/* Temporary file, fsync, rename, fsync of the directory: a crash leaves the old or the new
 * journal, never a torn one. */
int journal_write(struct run *r)
{
	char path[4096], err[8192];
	json_t *root;
	char *text;
	int rc;

	if (!r->journal || r->dry_run)
		return 0;
	if (journal_path(r, path, sizeof(path)) != 0)
		return -1;
	if (mkdir(r->state_dir, 0700) != 0 && errno != EEXIST) {
		ferry_logf(FERRY_ERROR, "ferry", "cannot create state dir", "path='%s' error='%s'",
			   r->state_dir, strerror(errno));
		return -1;
	}
	root = journal_json(r);
	text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!text)
		return -1;
	rc = ferry_file_replace(path, text, strlen(text), 0600, FERRY_FILE_DURABLE, err,
				sizeof(err));
	if (rc != 0)
		ferry_logf(FERRY_ERROR, "ferry", "cannot write journal", "path='%s' error='%s'", path,
			   err);
	free(text);
	return rc;
}

int journal_load(struct run *r, char *err, size_t errlen)
{
	char path[4096];
	json_error_t je;
	json_t *root, *stages, *s;
	size_t i;

	if (journal_path(r, path, sizeof(path)) != 0)
		return -1;
	if (access(path, F_OK) != 0)
		return -1;
	root = json_load_file(path, 0, &je);
	if (!root || !json_is_object(root)) {
		snprintf(err, errlen, "cannot read journal '%s': line %d: %s", path, je.line, je.text);
		json_decref(root);
		return -2;
	}
	stages = json_object_get(root, "stages");
	json_array_foreach(stages, i, s) {
		const char *name = json_string_value(json_object_get(s, "name"));
		json_t *facts = json_object_get(s, "facts"), *v;
		const char *k;
		struct stage_rt *st = NULL;
		size_t j;

		for (j = 0; name && j < r->n; j++)
			if (strcmp(r->st[j].name, name) == 0)
				st = &r->st[j];
		if (!st)
			continue;
		st->result = run_result_parse(json_string_value(json_object_get(s, "result")));
		free(st->error);
		st->error = NULL;
		if (json_string_value(json_object_get(s, "error")))
			st->error = strdup(json_string_value(json_object_get(s, "error")));
		json_object_foreach(facts, k, v)
			if (json_is_string(v))
				run_fact_put(st, k, json_string_value(v));
		st->facts_from_journal = st->n_facts > 0;
	}
	json_decref(root);
	return 0;
}
