/* cmd_work_status.c: `ferry status --org ID [--last N]`: on any machine, an org's last run
 * records from the bucket (who ran it, when, the result of each stage) and its lock now. */
#include "cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "cmd_work.h"
#include "ferry_lock.h"
#include "ferry_log.h"
#include "ferry_parse.h"
#include "ferry_s3.h"
#include "ferry_stage.h"

static const char *jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "-";
}

static double jnum(const json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

/* The last record's stages, as the run summary shows them. */
static void show_stages(const json_t *rec)
{
	const json_t *stages = json_object_get(rec, "stages"), *s;
	size_t i;

	printf("  %-16s %-10s %-12s %10s %14s\n", "stage", "plugin", "result", "time", "bytes");
	json_array_foreach(stages, i, s) {
		char bytes[32] = "-";

		if (json_is_integer(json_object_get(s, "bytes")))
			snprintf(bytes, sizeof(bytes), "%" JSON_INTEGER_FORMAT,
				 json_integer_value(json_object_get(s, "bytes")));
		printf("  %-16s %-10s %-12s %9.3fs %14s\n", jstr(s, "name"), jstr(s, "plugin"),
		       jstr(s, "result"), jnum(s, "seconds"), bytes);
		if (json_object_get(s, "error"))
			printf("  %-16s error: %s\n", "", jstr(s, "error"));
	}
}

/* GET and show the records (keys in order: periods sort by time, and within one the
 * failed and cancelled runs come before the one that marked it done). */
static int show_records(struct ferry_s3 *s3, const char *prefix, const char *org, long last)
{
	struct ferry_s3_list l = { 0 };
	struct ferry_s3_res res;
	json_t *latest = NULL;
	size_t i, from;
	int rc = 0;

	if (ferry_s3_list_all(s3, prefix, NULL, &l, &res) != FERRY_S3_OK) {
		ferry_logf(FERRY_ERROR, "ferry", "cannot list the run records", "org=%s error=\"%s\"",
			   org, res.msg);
		ferry_s3_list_release(&l);
		return FERRY_FAIL;
	}
	from = l.n_entries > (size_t)last ? l.n_entries - (size_t)last : 0;
	printf("org %s: %zu run record%s under '%s' in bucket '%s'%s\n", org, l.n_entries,
	       l.n_entries == 1 ? "" : "s", prefix, ferry_s3_bucket(s3),
	       from ? " (the last ones below; --last N for more)" : "");
	if (!l.n_entries) {
		printf("no run yet (or another records prefix: [work] records)\n");
		goto out;
	}
	printf("\n%-16s %-10s %4s %9s %12s  %-24s %-24s %s\n", "period", "result", "exit",
	       "seconds", "bytes", "started_at", "worker", "run_id");
	for (i = from; i < l.n_entries; i++) {
		struct ferry_buf b = { 0 };
		json_t *rec;

		if (ferry_s3_get_buf(s3, l.entries[i].key, NULL, 0, 0, &b, &res) != FERRY_S3_OK) {
			printf("%-16s cannot read: %s\n", "?", res.msg);
			rc = FERRY_FAIL;
			ferry_buf_release(&b);
			continue;
		}
		rec = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
		ferry_buf_release(&b);
		if (!json_is_object(rec)) {
			printf("%-16s not a run record: '%s'\n", "?", l.entries[i].key);
			json_decref(rec);
			continue;
		}
		printf("%-16s %-10s %4" JSON_INTEGER_FORMAT " %9.3f %12" JSON_INTEGER_FORMAT
		       "  %-24s %-24s %s\n", jstr(rec, "period"), jstr(rec, "result"),
		       json_integer_value(json_object_get(rec, "exit")), jnum(rec, "seconds"),
		       json_integer_value(json_object_get(rec, "bytes")), jstr(rec, "started_at"),
		       jstr(rec, "worker"), jstr(rec, "run_id"));
		json_decref(latest);
		latest = rec;
	}
	if (latest) {
		printf("\nlast run: period %s, %s on host %s, ended %s\n", jstr(latest, "period"),
		       jstr(latest, "result"), jstr(latest, "host"), jstr(latest, "ended_at"));
		if (json_object_get(latest, "error"))
			printf("error: %s\n", jstr(latest, "error"));
		show_stages(latest);
	}
	json_decref(latest);
out:
	ferry_s3_list_release(&l);
	return rc;
}

/* One line on the org's lock now (`ferry lock status` has the details). */
static int show_lock(struct ferry_s3 *s3, const char *key)
{
	struct ferry_lock_state st;
	char err[1024], who[400];

	if (ferry_lock_read(s3, key, &st, err, sizeof(err)) != 0) {
		ferry_logf(FERRY_ERROR, "ferry", "cannot read the lock", "key=%s error=\"%s\"", key,
			   err);
		return FERRY_FAIL;
	}
	if (!st.exists) {
		printf("\nlock %s: free\n", key);
		return 0;
	}
	if (st.parsed)
		ferry_lock_describe(&st.body, who, sizeof(who));
	else
		snprintf(who, sizeof(who), "unreadable (%s)", st.parse_err);
	printf("\nlock %s: %s %s\n", key, st.parsed && st.server_now &&
	       ferry_lock_is_expired(&st.body, st.server_now) ? "expired, was held by" : "held by",
	       who);
	return 0;
}

int cmd_work_status(struct cli *cli)
{
	const char *org = NULL, *rec, *key;
	char prefix[2048];
	struct config *cfg;
	struct ferry_s3 *s3;
	int64_t last = 10;
	int i, rc;

	for (i = 0; i < cli->argc; i++) {
		const char *a = cli->argv[i], *v = i + 1 < cli->argc ? cli->argv[i + 1] : NULL;

		if (strncmp(a, "--org=", 6) == 0)
			org = a + 6;
		else if (strcmp(a, "--org") == 0 && v)
			org = cli->argv[++i];
		else if (strcmp(a, "--last") == 0 && v && ferry_parse_int(v, &last) == 0 && last > 0)
			i++;
		else
			return cli_usage_error("bad argument '%s' (ferry status --org ID [--last N], "
					       "N at least 1)", a);
	}
	if (!org || !cmd_work_rec_valid_id(org))
		return cli_usage_error("bad org id '%s' (letters, digits, '-' and '_')",
				       org ? org : "");
	/* the INI's ${ORG_ID} (the lock key) is this org's */
	setenv("ORG_ID", org, 1);
	cfg = cli_config(cli);
	if (!cfg)
		return FERRY_USAGE;
	rec = cfg_work(cfg, "records");
	snprintf(prefix, sizeof(prefix), "%s%s%s/", rec, rec[0] && rec[strlen(rec) - 1] != '/' ?
		 "/" : "", org);
	s3 = cli_s3(cli);
	if (!s3)
		return FERRY_USAGE;
	rc = show_records(s3, prefix, org, (long)last);
	key = cli_stage_key(cli, "lock", "key");
	if (key && show_lock(s3, key) != 0 && !rc)
		rc = FERRY_FAIL;
	return rc;
}
