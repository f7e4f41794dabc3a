/* journal.h: the run journal (STATE_DIR/journal.json): what ran, its facts and results, so
 * that a later `ferry run STAGE` and `ferry status` see them. Supervisor-internal. The
 * journal saves and loads a run (run.h); run.c knows nothing of it. */
#ifndef FERRY_JOURNAL_H
#define FERRY_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include "run.h"

struct json_t;

/* One fact of a journaled stage. */
struct journal_fact {
	const char *key;                    /* fact name */
	const char *value;                  /* its value, NULL if the journal holds no string */
};

/* A stage as the journal holds it; a string is NULL where the journal has none. */
struct journal_stage {
	const char *name;                   /* [stage NAME] */
	const char *plugin;                 /* plugin = ... */
	const char *result;                 /* a journal_result_name() word, as written */
	int64_t ms;                         /* duration of run() */
	const char *error;                  /* run()'s message */
	bool in_this_run;                   /* run() was called in that run (else carried over) */
	bool brought_in;                    /* selected for what a named stage needed */
	bool cleaned;                       /* cleanup() ran after its last run() */
	struct journal_fact *facts;         /* in journal order */
	size_t n_facts;
};

/* A journal read back; a string is NULL where the journal has none. Everything points
 * into doc and lives until journal_view_release(). */
struct journal_view {
	const char *pipeline;               /* [pipeline] name */
	const char *run_id;
	const char *config;                 /* the INI path of that run */
	const char *started_at;             /* ISO 8601 UTC, "" if not reached */
	const char *ended_at;
	const char *result;                 /* running, ok, failed, cancelled */
	const char *deadline;               /* "50m" when the deadline ended it, else NULL */
	bool partial;                       /* stage names or --from, not the whole pipeline */
	int64_t exit_code;
	struct journal_stage *st;           /* every stage of that run, in its order */
	size_t n;
	struct json_t *doc;                 /* the parsed file */
};

/* STATE_DIR/journal.json into buf (cut short if it does not fit): 0, or -1 if it did not. */
int journal_path(const char *state_dir, char *buf, size_t len);
/* Save r: atomic (temporary file and rename: a killed process leaves the old or the new
 * journal, never a torn one); logs and returns -1 on failure. journal_write also makes it
 * durable (fsync of the file and the directory): after an undo and at the run's end.
 * journal_note does not: everything else (a run's start, a stage's start and its result
 * with the facts it set, each cleanup). A warm pipeline at 1M contacts saved the journal
 * ~50 times (each fact too), an fsync each: 0.1-0.5 s of a 0.3-1.1 s run. What a power
 * loss can cost: the newest notes (a stage's result, a lock's facts), so `ferry status`
 * shows an older state and a one-stage rerun may not find the lock (run the pipeline
 * again). Nothing of the data rests on the journal: push's commit is fenced, pull's and
 * push's state and undo files are fsynced themselves, and a lock whose holder is gone
 * expires. */
int journal_write(struct run *r);
int journal_note(struct run *r);
/* Read the journal at path: 0; 1 when it is JSON but no object (v holds no field and no
 * stage; err says why: `ferry status` shows the empty fields, a run treats it as
 * unreadable); -1 when there is no journal (not an error); -2 when it is not JSON (err). */
int journal_view_load(struct journal_view *v, const char *path, char *err, size_t errlen);
void journal_view_release(struct journal_view *v);
/* Load the facts, last results and errors of the journal in r->state_dir into r's stages
 * of the same name: 0, -1 if there is none (not an error), -2 if it is unreadable (err). */
int journal_load_run(struct run *r, char *err, size_t errlen);

/* STATE_DIR/history.jsonl: one JSON line per finished run (run_id, started_at, ended_at,
 * result, exit, ms, stages that ran, partial, deadline), appended when a run ends; past
 * HISTORY_MAX_BYTES the older half is dropped. A run that is killed leaves no line (the
 * journal still says "running"). */
#define HISTORY_MAX_BYTES (256 * 1024)
int journal_history_path(const char *state_dir, char *buf, size_t len);
void journal_history_append(const struct run *r);

/* A stage result's word as journaled and listed, and back (SR_NONE when unknown). */
const char *journal_result_name(enum stage_result r);
enum stage_result journal_result_parse(const char *s);

#endif
