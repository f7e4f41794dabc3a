/* cmd_work.h: what the files of `ferry work` and `ferry status --org` share (periods, the
 * org pattern, run records, metrics); supervisor-internal. The design is in
 * conf/k8s/README.md, "How a worker runs an org". */
#ifndef FERRY_CMD_WORK_H
#define FERRY_CMD_WORK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ferry_s3;

#define WORK_ORG_MAX 128                    /* longest org id */

/* ---- cmd_work_rec.c: periods, org ids, run records ------------------------------------ */

/* A period's name is its UTC start: "2026-12-03" (whole days), "2026-12-03T06" (hours),
 * "2026-12-03T0630" (minutes). */
struct work_period {
	int64_t start_ms;                   /* unix ms, UTC-aligned */
	int64_t end_ms;
	char name[32];
};
/* Is period_ms usable: whole minutes; below a day it divides the day, from a day on it is
 * whole days. 0, or -1 with why. */
int cmd_work_rec_period_check(uint64_t period_ms, char *why, size_t n);
/* The period of period_ms that holds now_ms (epoch-aligned, so days start at 00:00 UTC). */
void cmd_work_rec_period(uint64_t period_ms, int64_t now_ms, struct work_period *out);

/* A pattern such as "org-data/<*>.db": the list prefix before '*', the suffix after it. */
struct work_pattern {
	char prefix[1024];
	char suffix[1024];
};
/* 0, or -1 with why: exactly one '*', no leading '/'. */
int cmd_work_rec_pattern(const char *pat, struct work_pattern *p, char *why, size_t n);
/* Letters, digits, '-' and '_', 1 to WORK_ORG_MAX - 1 bytes. */
bool cmd_work_rec_valid_id(const char *id);
/* Copy the org id of key into id when key matches the pattern with a valid id. */
bool cmd_work_rec_match(const struct work_pattern *p, const char *key, char *id, size_t n);
/* Every org id under the pattern (all list pages; sorted, no duplicates); *ignored counts
 * keys that matched prefix and suffix but not the id's alphabet. 0, or -1 with the
 * request's error in err. Logs a progress line every 10 s of listing. */
int cmd_work_rec_list_orgs(struct ferry_s3 *s3, const struct work_pattern *p, char ***ids,
			   size_t *n, size_t *ignored, char *err, size_t errlen);
void cmd_work_rec_free_ids(char **ids, size_t n);

/* "RECORDS/ORG/PERIOD.json": the record that marks the period done. */
void cmd_work_rec_done_key(const char *records, const char *org, const char *period,
			   char *out, size_t n);
/* "RECORDS/ORG/PERIOD.failed-RUNID.json": a failed run, which does not. */
void cmd_work_rec_failed_key(const char *records, const char *org, const char *period,
			     const char *run_id, char *out, size_t n);

/* What the records say of one org in one period. */
struct work_org_state {
	bool done;                          /* PERIOD.json exists */
	int failures;                       /* PERIOD.failed-*.json */
};
/* One LIST of "RECORDS/ORG/PERIOD.": 0, or -1 with the request's error. */
int cmd_work_rec_org_state(struct ferry_s3 *s3, const char *records, const char *org,
			   const char *period, struct work_org_state *st, char *err,
			   size_t errlen);

/* One stage of a run, as its journal told it. */
struct work_stage_rec {
	char name[64];
	char plugin[64];
	char result[16];                    /* a journal result word: ok, failed, undone... */
	int64_t ms;
	uint64_t bytes;                     /* its bytes fact (what the run summary shows) */
	bool has_bytes;
	char error[512];
};

/* A run record's content. */
struct work_record {
	const char *org;
	const char *period;
	const char *run_id;
	const char *worker;                 /* "INSTANCE/PID" */
	const char *host;                   /* hostname */
	int64_t started_ms, ended_ms;       /* unix ms */
	int exit_code;
	const char *result;                 /* ok, failed, cancelled */
	const char *error;                  /* first failing stage's message, or NULL */
	const struct work_stage_rec *st;
	size_t n;
};
/* The record as JSON (malloc'd), or NULL out of memory. */
char *cmd_work_rec_json(const struct work_record *r);
/* PUT key If-None-Match: *: 0 written, 1 already there (412: someone recorded it first),
 * -1 with the request's error. */
int cmd_work_rec_create(struct ferry_s3 *s3, const char *key, const char *json, char *err,
			size_t errlen);
/* Sum of the stages' bytes. */
uint64_t cmd_work_rec_bytes(const struct work_stage_rec *st, size_t n);

/* ---- cmd_work_metrics.c: the Prometheus text file and its HTTP endpoint --------------- */

struct work_metrics;
/* Counters start at zero; the file is STATE_DIR/metrics.prom. NULL out of memory. */
struct work_metrics *cmd_work_metrics_new(const char *state_dir, int workers);
/* One org's pipeline ended: result ok, failed or cancelled, with its stages. */
void cmd_work_metrics_run(struct work_metrics *m, const char *result,
			  const struct work_stage_rec *st, size_t n);
/* An org's lock was held by another worker (skipped), or was found recorded once locked. */
void cmd_work_metrics_busy(struct work_metrics *m);
void cmd_work_metrics_done_elsewhere(struct work_metrics *m);
/* A pass started: its org counts. */
void cmd_work_metrics_pass(struct work_metrics *m, size_t orgs, size_t due, size_t done,
			   size_t given_up);
void cmd_work_metrics_running(struct work_metrics *m, int running);
/* Render and replace the file atomically (and what the endpoint serves): 0 or -1 (logged). */
int cmd_work_metrics_write(struct work_metrics *m);
/* Serve GET /metrics on port (all addresses) until free: 0, or -1 with why. */
int cmd_work_metrics_serve(struct work_metrics *m, int port, char *err, size_t errlen);
void cmd_work_metrics_free(struct work_metrics *m);

/* ---- cmd_work_status.c ---------------------------------------------------------------- */

struct cli;
/* `ferry status --org ID [--last N]`: that org's run records from the bucket and its
 * lock; called by cmd_status() when its first argument is --org. */
int cmd_work_status(struct cli *cli);

#endif
