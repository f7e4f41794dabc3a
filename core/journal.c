/* journal.c: the run journal in state_dir (JSON), written atomically at each transition
 * and read back for reruns, `ferry list` and `ferry status`. */
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

static const char *const result_names[] = {
	[SR_NONE] = "none", [SR_RUNNING] = "running", [SR_OK] = "ok", [SR_FAILED] = "failed",
	[SR_UNDONE] = "undone", [SR_UNDO_FAILED] = "undo-failed", [SR_DRY] = "dry-run",
	[SR_KEPT] = "kept",
};

const char *journal_result_name(enum stage_result r)
{
	return (unsigned)r < sizeof(result_names) / sizeof(result_names[0]) ? result_names[r] : "?";
}

enum stage_result journal_result_parse(const char *s)
{
	size_t i;

	for (i = 0; s && i < sizeof(result_names) / sizeof(result_names[0]); i++)
		if (strcmp(result_names[i], s) == 0)
			return (enum stage_result)i;
	return SR_NONE;
}

int journal_path(const char *state_dir, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/journal.json", state_dir);

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

/* A run's start, end, result (none yet: unset) and exit code into o. */
static void put_outcome(json_t *o, const struct run *r, const char *unset)
{
	char ts[64];

	iso_ms(r->started_at, ts, sizeof(ts));
	json_object_set_new(o, "started_at", json_string(ts));
	iso_ms(r->ended_at, ts, sizeof(ts));
	json_object_set_new(o, "ended_at", json_string(ts));
	json_object_set_new(o, "result", json_string(r->result ? r->result : unset));
	json_object_set_new(o, "exit", json_integer(r->exit_code));
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
	put_outcome(root, r, "running");
	if (r->partial)
		json_object_set_new(root, "partial", json_boolean(true));
	if (r->deadline_hit)
		json_object_set_new(root, "deadline", json_string(r->deadline_text ?
								     r->deadline_text : ""));
	for (i = 0; i < r->n; i++) {
		const struct stage_rt *st = &r->st[i];
		json_t *s = json_object(), *facts = json_object();

		json_object_set_new(s, "name", json_string(st->name));
		json_object_set_new(s, "plugin", json_string(st->plugin ? st->plugin : ""));
		json_object_set_new(s, "result", json_string(journal_result_name(st->result)));
		json_object_set_new(s, "in_this_run", json_boolean(st->started));
		if (st->brought_in)
			json_object_set_new(s, "brought_in", json_boolean(true));
		json_object_set_new(s, "cleaned", json_boolean(st->cleaned));
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

/* Temporary file, (fsync), rename, (fsync of the directory): journal.h says when. */
static int journal_save(struct run *r, unsigned int flags)
{
	char path[4096], err[8192];
	json_t *root;
	char *text;
	int rc;

	if (!r->journal || r->dry_run)
		return 0;
	if (journal_path(r->state_dir, path, sizeof(path)) != 0)
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
	rc = ferry_file_replace(path, text, strlen(text), 0600, flags, err, sizeof(err));
	if (rc != 0)
		ferry_logf(FERRY_ERROR, "ferry", "cannot write journal", "path='%s' error='%s'", path,
			   err);
	free(text);
	return rc;
}

int journal_write(struct run *r)
{
	return journal_save(r, FERRY_FILE_DURABLE);
}

int journal_note(struct run *r)
{
	return journal_save(r, 0);
}

static const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p)
		abort();
	return p;
}

int journal_view_load(struct journal_view *v, const char *path, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root, *stages, *s, *facts, *val;
	const char *k;
	size_t i;

	memset(v, 0, sizeof(*v));
	if (access(path, F_OK) != 0)
		return -1;
	root = json_load_file(path, 0, &je);
	if (!root || !json_is_object(root)) {
		snprintf(err, errlen, "cannot read journal '%s': line %d: %s", path, je.line,
			 je.text);
		v->doc = root;
		return root ? 1 : -2;
	}
	v->doc = root;
	v->pipeline = str(root, "pipeline");
	v->run_id = str(root, "run_id");
	v->config = str(root, "config");
	v->started_at = str(root, "started_at");
	v->ended_at = str(root, "ended_at");
	v->result = str(root, "result");
	v->deadline = str(root, "deadline");
	v->partial = json_is_true(json_object_get(root, "partial"));
	v->exit_code = json_integer_value(json_object_get(root, "exit"));
	stages = json_object_get(root, "stages");
	v->st = xcalloc(json_array_size(stages), sizeof(*v->st));
	json_array_foreach(stages, i, s) {
		struct journal_stage *st = &v->st[v->n++];

		st->name = str(s, "name");
		st->plugin = str(s, "plugin");
		st->result = str(s, "result");
		st->ms = json_integer_value(json_object_get(s, "ms"));
		st->error = str(s, "error");
		st->in_this_run = json_is_true(json_object_get(s, "in_this_run"));
		st->brought_in = json_is_true(json_object_get(s, "brought_in"));
		st->cleaned = json_is_true(json_object_get(s, "cleaned"));
		facts = json_object_get(s, "facts");
		st->facts = xcalloc(json_object_size(facts), sizeof(*st->facts));
		json_object_foreach(facts, k, val) {
			st->facts[st->n_facts].key = k;
			st->facts[st->n_facts].value = json_string_value(val);
			st->n_facts++;
		}
	}
	return 0;
}

void journal_view_release(struct journal_view *v)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		free(v->st[i].facts);
	free(v->st);
	json_decref(v->doc);
	memset(v, 0, sizeof(*v));
}

int journal_load_run(struct run *r, char *err, size_t errlen)
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
		st->cleaned = js->cleaned;
		/* that run died (journal still "running") after this stage ran and before its
		 * cleanup: what it provides (a lock, a mount) may still be held */
		st->held_over = v.result && strcmp(v.result, "running") == 0 &&
				st->result == SR_OK && !js->cleaned;
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

int journal_history_path(const char *state_dir, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/history.jsonl", state_dir);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Keep the newer half of the history file's lines (atomically replaced). */
static void history_trim(const char *path)
{
	char *text = NULL, *keep, err[512];
	size_t len = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	text = malloc(HISTORY_MAX_BYTES * 2 + 1);
	if (text)
		len = fread(text, 1, HISTORY_MAX_BYTES * 2, f);
	fclose(f);
	if (!text)
		return;
	text[len] = '\0';
	keep = text + len / 2;
	keep = strchr(keep, '\n');
	if (keep && ferry_file_replace(path, keep + 1, strlen(keep + 1), 0600, 0, err,
				       sizeof(err)) != 0)
		ferry_logf(FERRY_WARN, "ferry", "cannot trim the run history", "error='%s'", err);
	free(text);
}

void journal_history_append(const struct run *r)
{
	json_t *o = json_object();
	char path[4096], stages[1024] = "", *line;
	struct stat st;
	size_t i;
	FILE *f;

	if (journal_history_path(r->state_dir, path, sizeof(path)) != 0 || !o)
		goto out;
	for (i = 0; i < r->n; i++)
		if (r->st[i].started)
			snprintf(stages + strlen(stages), sizeof(stages) - strlen(stages), "%s%s",
				 *stages ? "," : "", r->st[i].name);
	json_object_set_new(o, "run_id", json_string(r->run_id ? r->run_id : ""));
	put_outcome(o, r, "");
	json_object_set_new(o, "ms", json_integer(r->ended_at - r->started_at));
	json_object_set_new(o, "stages", json_string(stages));
	json_object_set_new(o, "partial", json_boolean(r->partial));
	if (r->deadline_hit)
		json_object_set_new(o, "deadline", json_string(r->deadline_text ? r->deadline_text : ""));
	line = json_dumps(o, JSON_COMPACT);
	if (!line)
		goto out;
	f = fopen(path, "a");
	if (f) {
		fprintf(f, "%s\n", line);
		fclose(f);
	}
	free(line);
	if (stat(path, &st) == 0 && st.st_size > HISTORY_MAX_BYTES)
		history_trim(path);
out:
	json_decref(o);
}
