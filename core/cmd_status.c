/* cmd_status.c: `ferry status [-v] [--json]`: the last run (alive, ended or killed, and how
 * long ago), its stages (ran in it or carried over), the replica against its last sync,
 * recent runs from the history, and the lock holder from S3. `--org ID` is the fleet's
 * view (cmd_work_status.c). Lines fit 80 columns; -v adds every stage's facts. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "cmd_work.h"
#include "ferry_lock.h"
#include "ferry_manifest.h"
#include "ferry_pages.h"
#include "ferry_s3.h"
#include "ferry_time.h"
#include "journal.h"
#include "plugin.h"

#define HISTORY_SHOWN 5

enum liveness { LIVE_ENDED, LIVE_RUNNING, LIVE_KILLED };

struct status {
	struct journal_view v;
	bool have_journal;
	enum liveness live;
	long holder_pid;                    /* from run.lock: the run that holds it */
	int64_t age_s;                      /* since the last run ended (or started), -1 unknown */
	/* the replica against its state file */
	const char *replica;
	int replica_rc;                     /* 0 known, 1 no replica/state, -1 error */
	uint64_t changed;                   /* pages that differ from the last sync */
	char synced_etag[FERRY_ETAG_MAX];
	char replica_err[256];
	json_t *history;                    /* array of the last HISTORY_SHOWN lines */
};

/* ISO 8601 "2026-12-03T17:15:35.003Z" to unix seconds; -1 if it is not one. */
static int64_t iso_secs(const char *s)
{
	struct tm tm = { 0 };
	const char *end;

	if (!s || !*s)
		return -1;
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		return -1;
	return (int64_t)timegm(&tm);
}

static void human_age(int64_t s, char *out, size_t n)
{
	if (s < 0)
		snprintf(out, n, "?");
	else if (s < 120)
		snprintf(out, n, "%" PRId64 " s ago", s);
	else if (s < 7200)
		snprintf(out, n, "%" PRId64 " min ago", s / 60);
	else if (s < 172800)
		snprintf(out, n, "%" PRId64 " h ago", s / 3600);
	else
		snprintf(out, n, "%" PRId64 " days ago", s / 86400);
}

/* Is a run alive in state_dir? The run lock tells: a run holds STATE_DIR/run.lock (flock)
 * for its whole life and writes "pid=N run_id=ID" into it; a killed run's lock is gone
 * with its process. Only asked when the journal says "running". */
static enum liveness liveness(const char *state_dir, long *pid)
{
	char path[4200], buf[256] = "";
	enum liveness l = LIVE_KILLED;
	ssize_t n;
	int fd;

	*pid = 0;
	snprintf(path, sizeof(path), "%s/run.lock", state_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return LIVE_KILLED;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	if (strncmp(buf, "pid=", 4) == 0)
		*pid = strtol(buf + 4, NULL, 10);
	if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK)
		l = LIVE_RUNNING;
	else
		flock(fd, LOCK_UN);
	close(fd);
	return l;
}

static const char *journal_fact(const struct journal_view *v, const char *stage, const char *key)
{
	size_t i, j;

	for (i = 0; i < v->n; i++) {
		if (!v->st[i].plugin || strcmp(v->st[i].plugin, stage) != 0)
			continue;
		for (j = 0; j < v->st[i].n_facts; j++)
			if (strcmp(v->st[i].facts[j].key, key) == 0)
				return v->st[i].facts[j].value;
	}
	return NULL;
}

/* Pages of the replica that differ from the state file pull and push keep beside it. */
static void replica_state(struct status *s, struct cli *cli)
{
	struct ferry_manifest state = { 0 };
	struct ferry_db_info info;
	unsigned char *h = NULL;
	uint64_t *list = NULL;
	char *state_path = NULL;
	size_t k = 0;
	int fd = -1;

	s->replica_rc = 1;
	s->replica = s->have_journal ? journal_fact(&s->v, "pull", "replica") : NULL;
	if (!s->replica)
		s->replica = cli_stage_key(cli, "pull", "replica");
	if (!s->replica || asprintf(&state_path, "%s.ferry-state", s->replica) < 0)
		return;
	fd = open(s->replica, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || ferry_manifest_load(state_path, &state, s->replica_err,
					  sizeof(s->replica_err)) != 0)
		goto out;
	snprintf(s->synced_etag, sizeof(s->synced_etag), "%s", state.etag);
	s->replica_rc = -1;
	if (ferry_pages_probe_fd(fd, &info, s->replica_err, sizeof(s->replica_err)) != 0)
		goto out;
	if (state.flags & FERRY_MANIFEST_ABSENT) {
		/* the origin did not exist at the last sync: every page is new */
		s->changed = info.page_count;
		s->replica_rc = 0;
		goto out;
	}
	if (info.page_count && info.page_size != state.page_size) {
		snprintf(s->replica_err, sizeof(s->replica_err), "page size %u, the last sync had %u",
			 info.page_size, state.page_size);
		goto out;
	}
	h = calloc(info.page_count ? info.page_count : 1, FERRY_PAGE_HASH_LEN);
	if (!h || (info.page_count && ferry_pages_hash_fd(fd, info.page_size, info.page_count, h,
							  NULL, NULL, s->replica_err,
							  sizeof(s->replica_err)) != 0))
		goto out;
	if (ferry_pages_diff(h, info.page_count, state.hashes, state.page_count, state.page_size,
			     &list, &k) != 0)
		goto out;
	s->changed = k + (state.page_count > info.page_count ? state.page_count - info.page_count : 0);
	s->replica_rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(list);
	free(h);
	free(state_path);
	ferry_manifest_release(&state);
}

static void load_history(struct status *s, const char *state_dir)
{
	char path[4200], line[8192];
	json_t *all = json_array();
	FILE *f;

	s->history = json_array();
	if (journal_history_path(state_dir, path, sizeof(path)) != 0 || !(f = fopen(path, "r"))) {
		json_decref(all);
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		json_t *o = json_loads(line, 0, NULL);

		if (o && json_is_object(o))
			json_array_append_new(all, o);
		else
			json_decref(o);
	}
	fclose(f);
	for (size_t i = json_array_size(all) > HISTORY_SHOWN ? json_array_size(all) - HISTORY_SHOWN : 0;
	     i < json_array_size(all); i++)
		json_array_append(s->history, json_array_get(all, i));
	json_decref(all);
}

static const char *live_word(const struct status *s)
{
	if (!s->have_journal)
		return "none";
	if (s->live == LIVE_RUNNING)
		return "running";
	if (s->live == LIVE_KILLED)
		return "killed";
	return s->v.result ? s->v.result : "?";
}

static void print_text(const struct status *s, bool verbose)
{
	const struct journal_view *v = &s->v;
	char age[32];
	size_t i, j;

	human_age(s->age_s, age, sizeof(age));
	printf("pipeline  %s\nconfig    %s\nlast run  %s\n", v->pipeline, v->config, v->run_id);
	if (s->live == LIVE_RUNNING)
		printf("          running now (pid %ld), started %s\n", s->holder_pid, age);
	else if (s->live == LIVE_KILLED)
		printf("          killed or crashed: started %s and never ended (no process\n"
		       "          holds its run lock); its lock and mount may still be held:\n"
		       "          `ferry run STAGE` goes on with them, `ferry run unlock` lets\n"
		       "          the lock go (the next mount replaces the old mount)\n", age);
	else
		printf("          %s (exit %" PRId64 "), ended %s\n", v->result, v->exit_code, age);
	if (v->deadline)
		printf("          deadline %s reached\n", v->deadline);
	printf("\n%-16s %-12s %8s  %s\n", "stage", "result", "time", "in the last run");
	for (i = 0; i < v->n; i++) {
		const struct journal_stage *st = &v->st[i];
		char t[32] = "-";
		const char *how = st->in_this_run ? (st->brought_in ? "ran (brought in)" : "ran") :
				  strcmp(st->result ? st->result : "none", "none") == 0 ?
				  "never ran" : "carried over";

		if (st->in_this_run || st->ms)
			snprintf(t, sizeof(t), "%.2fs", (double)st->ms / 1000.0);
		printf("%-16s %-12s %8s  %s\n", st->name, st->result, t, how);
		if (st->error)
			printf("%-16s error: %.*s%s\n", "", verbose ? 4000 : 58, st->error,
			       !verbose && strlen(st->error) > 58 ? "... (-v)" : "");
		if (verbose)
			for (j = 0; j < st->n_facts; j++)
				printf("%-16s   %s=%s\n", "", st->facts[j].key, st->facts[j].value);
	}
	if (s->replica_rc == 0 && s->changed == 0)
		printf("\nreplica   in sync (etag %s)\n",
		       *s->synced_etag ? s->synced_etag : "-");
	else if (s->replica_rc == 0)
		printf("\nreplica   %" PRIu64 " pages changed since the last sync (not pushed)\n",
		       s->changed);
	else if (s->replica_rc < 0)
		printf("\nreplica   cannot tell: %s\n", s->replica_err);
	if (json_array_size(s->history)) {
		json_t *o;

		printf("\nrecent runs (newest last; * = named stages only)\n");
		printf("  %-16s  %-8s %4s %8s  %s\n", "ended (UTC)", "result", "exit", "time",
		       "stages that ran");
		json_array_foreach(s->history, i, o) {
			const char *end = json_string_value(json_object_get(o, "ended_at"));
			const char *stages = json_string_value(json_object_get(o, "stages"));
			const char *res = json_string_value(json_object_get(o, "result"));
			bool part = json_is_true(json_object_get(o, "partial"));
			size_t room = part ? 35 : 36;

			stages = stages ? stages : "";
			printf("  %.10s %.5s  %-9s %3" PRId64 " %7.1fs  %s%.*s%s\n",
			       end ? end : "?", end && strlen(end) > 11 ? end + 11 : "?",
			       res ? res : "?", (int64_t)json_integer_value(json_object_get(o, "exit")),
			       (double)json_integer_value(json_object_get(o, "ms")) / 1000.0,
			       part ? "*" : "", (int)(strlen(stages) > room ? room - 3 : room), stages,
			       strlen(stages) > room ? "..." : "");
		}
	}
}

static json_t *to_json(const struct status *s, const char *journal_path_s)
{
	json_t *o = json_object(), *doc = s->have_journal ? json_deep_copy(s->v.doc) : json_null();

	json_object_set_new(o, "journal_path", json_string(journal_path_s));
	json_object_set_new(o, "state", json_string(live_word(s)));
	if (s->live == LIVE_RUNNING)
		json_object_set_new(o, "pid", json_integer(s->holder_pid));
	json_object_set_new(o, "age_s", s->age_s >= 0 ? json_integer(s->age_s) : json_null());
	if (s->replica) {
		json_t *r = json_object();

		json_object_set_new(r, "path", json_string(s->replica));
		if (s->replica_rc == 0) {
			json_object_set_new(r, "changed_pages", json_integer((json_int_t)s->changed));
			json_object_set_new(r, "synced_etag", json_string(s->synced_etag));
		} else if (s->replica_rc < 0) {
			json_object_set_new(r, "error", json_string(s->replica_err));
		}
		json_object_set_new(o, "replica", r);
	}
	json_object_set_new(o, "history", json_incref(s->history));
	json_object_set_new(o, "run", doc);
	return o;
}

static void lock_json(struct cli *cli, json_t *o)
{
	const char *key = cli_stage_key(cli, "lock", "key");
	struct ferry_lock_state ls;
	struct ferry_s3 *s3;
	char err[512], desc[512];
	json_t *l = json_object();

	if (!key) {
		json_decref(l);
		return;
	}
	json_object_set_new(l, "key", json_string(key));
	s3 = cli_s3(cli);
	if (!s3 || ferry_lock_read(s3, key, &ls, err, sizeof(err)) != 0) {
		json_object_set_new(l, "error", json_string(s3 ? err : "no S3 client"));
	} else {
		json_object_set_new(l, "held", json_boolean(ls.exists));
		if (ls.exists && ls.parsed) {
			ferry_lock_describe(&ls.body, desc, sizeof(desc));
			json_object_set_new(l, "holder", json_string(desc));
			json_object_set_new(l, "expired",
					    json_boolean(ferry_lock_is_expired(&ls.body, ls.server_now)));
		}
	}
	json_object_set_new(o, "lock", l);
}

int cmd_status(struct cli *cli)
{
	bool verbose = false, as_json = false;
	struct status s = { 0 };
	struct config *cfg;
	const char *sd;
	char path[4200], err[1024];
	int i, rc = 0;

	for (i = 0; i < cli->argc; i++) {
		const char *a = cli->argv[i];

		if (strncmp(a, "--org", 5) == 0)
			return cmd_work_status(cli);  /* a fleet org's run records (cmd_work_status.c) */
		if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0)
			verbose = true;
		else if (strcmp(a, "--json") == 0)
			as_json = true;
		else
			return cli_usage_error("unknown argument '%s' for status (ferry status [-v] "
					       "[--json] [--org ID])", a);
	}
	cfg = cli_config(cli);
	if (!cfg)
		return FERRY_USAGE;
	sd = cfg_pipeline(cfg, "state_dir");
	journal_path(sd, path, sizeof(path));
	s.have_journal = journal_view_load(&s.v, path, err, sizeof(err)) == 0;
	if (s.have_journal) {
		int64_t t = iso_secs(s.v.ended_at);

		s.live = LIVE_ENDED;
		if (s.v.result && strcmp(s.v.result, "running") == 0) {
			s.live = liveness(sd, &s.holder_pid);
			t = iso_secs(s.v.started_at);
		}
		s.age_s = t >= 0 ? ferry_now_ms() / 1000 - t : -1;
	}
	replica_state(&s, cli);
	load_history(&s, sd);
	if (as_json) {
		json_t *o = to_json(&s, path);
		char *text;

		lock_json(cli, o);
		text = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(o);
		goto out;
	}
	if (!s.have_journal)
		printf("no run journal at '%s' (no run yet in this state_dir)\n", path);
	else
		print_text(&s, verbose);
	fflush(stdout);
	if (cli_stage_key(cli, "lock", "key") && plugin_load(plugin_dir(NULL), "lock", err,
							     sizeof(err))) {
		char *argv[] = { (char *)"status", NULL };
		struct cli sub = *cli;

		printf("\nlock\n");
		fflush(stdout);
		sub.argc = 1;
		sub.argv = argv;
		rc = cmd_lock(&sub) == 0 ? 0 : FERRY_FAIL;
		cli->s3 = sub.s3;                   /* opened for the lock, closed at exit */
	}
out:
	json_decref(s.history);
	journal_view_release(&s.v);
	return rc;
}
