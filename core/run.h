/* run.h: the state of one pipeline run; run.c owns it, pipeline.c drives it, journal.c
 * saves it and reads it back, ctx.c shows it to the stages. Supervisor-internal: plugins
 * see only ferry_ctx.h. */
#ifndef FERRY_RUN_H
#define FERRY_RUN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ferry_stage.h"

struct config;
struct cfg_section;
struct ferry_s3;
struct ferry_s3_conf;

struct fact {
	char *key;
	char *value;
};

/* A stage's result as journaled and listed. */
enum stage_result {
	SR_NONE,                            /* not run (this run or ever) */
	SR_RUNNING,                         /* run() under way (a crash leaves this) */
	SR_OK,                              /* run() succeeded */
	SR_FAILED,                          /* run() failed */
	SR_UNDONE,                          /* run() succeeded, then undo() on failure */
	SR_UNDO_FAILED,                     /* undo() failed */
	SR_DRY,                             /* dry_run() only (never journaled) */
	SR_KEPT,                            /* undo() ran and reverted nothing (fact `undo`
					     * says "kept: why") */
};

struct stage_rt {
	char *name;                         /* [stage NAME] */
	char *plugin;                       /* plugin = ... */
	const struct cfg_section *sec;      /* its config */
	const struct ferry_stage *desc;     /* loaded descriptor, NULL if not loaded */
	bool enabled;
	bool selected;                      /* part of this run */
	bool brought_in;                    /* selected for what a named stage needs */
	bool just_added;                    /* pipeline.c's bring_in: not logged yet */
	bool invalid;                       /* failed to load, its keys or check() */
	bool started;                       /* run() was called in this run */
	bool cleaned;                       /* cleanup() ran after the stage's last run() */
	bool held_over;                     /* the journal's run died while this stage held
					     * what it provides (lock, mount): still held */
	enum stage_result result;
	int rc;                             /* run()'s return code */
	int64_t started_at;                 /* unix ms, 0 if not this run */
	int64_t ended_at;                   /* unix ms */
	int64_t ms;                         /* duration of run() */
	char *error;                        /* run()'s message, or NULL */
	struct fact *facts;
	size_t n_facts;
	bool facts_from_journal;            /* facts were loaded, not produced by this run */
	struct ferry_ctx *ctx;
};

struct event {
	int64_t ts;                         /* unix ms */
	char *stage;
	char *op;                           /* run, undo, cleanup, dry_run */
	char *result;                       /* ok, failed */
	char *error;                        /* message or NULL */
};

struct run {
	struct config *cfg;
	const char *config_path;
	const char *pipeline;               /* [pipeline] name */
	char *state_dir;                    /* absolute */
	char *run_id;
	struct stage_rt *st;
	size_t n;
	struct event *ev;
	size_t n_ev;
	size_t cap_ev;
	volatile sig_atomic_t *signo;       /* last signal received (main.c owns it) */
	int cancel_fd;                      /* read end of the self-pipe, -1 if none */
	int64_t deadline_ms;                /* CLOCK_MONOTONIC ms, 0 = none */
	bool deadline_hit;
	const char *deadline_text;          /* [pipeline] deadline as written ("50m") */
	bool unwinding;                     /* undo/cleanup: cancellation is not reported */
	bool dry_run;
	bool partial;                       /* stage names or --from: not the whole pipeline */
	bool journal;                       /* write the journal (not for dry runs) */
	int64_t started_at;
	int64_t ended_at;
	const char *result;                 /* "running", "ok", "failed", "cancelled" */
	int exit_code;
	struct ferry_s3 *s3;                /* shared client, opened on first use */
	char s3_err[512];
};

/* Fill r's stages from the [stage] sections of cfg, in file order: name, plugin, enabled
 * (unless `enabled` says no) and section. Loads no plugin: list works without them. */
void run_stages_from_config(struct run *r, const struct config *cfg);
/* The stage named name, or NULL. */
struct stage_rt *run_stage(struct run *r, const char *name);
/* The stage named stage_or_plugin, else the first enabled stage of that plugin; NULL. */
struct stage_rt *run_find(struct run *r, const char *stage_or_plugin);
/* Set (or replace) a fact of st: 0, or -1 out of memory. */
int run_fact_put(struct stage_rt *st, const char *key, const char *value);
/* Free what r holds (stages, facts, events, the S3 client); the stage contexts are the
 * pipeline's (pipeline_release). */
void run_release(struct run *r);
bool run_cancelled(const struct run *r);
/* Opens r->s3 from [s3] and the environment; NULL with r->s3_err set. */
struct ferry_s3 *run_s3(struct run *r);
/* Record one stage event (run, undo, cleanup, dry_run) for the journal. */
void run_event(struct run *r, const char *stage, const char *op, const char *result,
	       const char *error);

#endif
