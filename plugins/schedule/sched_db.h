/* sched_db.h: the schedule stage's database side, shared by sched_db.c (the run), sched_load.c
 * (reading what the run starts from) and sched_write.c (the diff and the dry-run CSV). */
#ifndef FERRY_SCHED_DB_H
#define FERRY_SCHED_DB_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sched_core.h"

/* An owned row of email_schedules as read before the run (RULES.md, what is written). */
struct sched_old {
	int64_t rowid;                      /* rowid, for UPDATE/DELETE */
	int64_t cid;                        /* contact_id, INT64_MIN if not an integer */
	int32_t date;                       /* canonical scheduled_send_date, or SCHED_NODATE */
	int32_t event;                      /* event_year/month/day as a date, or SCHED_NODATE */
	uint8_t type;                       /* enum sched_type */
	uint8_t skipped;                    /* status = 'skipped' */
	uint8_t reason;                     /* enum sched_reason, R_ALIEN when not ours */
	int8_t state;                       /* state of the reason text */
	uint8_t time_ok;                    /* scheduled_send_time = send_time */
	uint8_t prio_ok;                    /* priority = the type's priority */
};

/* One sched_execute(): its inputs, connection, what was read and the warnings kept. */
struct sched_run {
	const struct sched_opts *o;         /* the options */
	struct sched_io *io;                /* where it reports */
	struct sched_report *rep;           /* the counts */
	const char *path;                   /* the database */
	sqlite3 *db;                        /* its connection */
	struct sched_plan plan;             /* contacts and counted rows read, then the candidates */
	struct sched_old *old;              /* owned rows */
	size_t nold;
	size_t aold;
	int64_t *failed;                    /* contact ids that failed underwriting, sorted */
	size_t nfailed;
	size_t afailed;
	bool es_exists;                     /* email_schedules exists */
	unsigned es_cols;                   /* bit per sched_es_cols entry */
	bool primed;                        /* old and counted rows came from the rows sidecar */
	bool keep_rowids;                   /* the write fills rid (for the rows sidecar) */
	int64_t *rid;                       /* after the write: rowid of each new row (plan.cd) */
	size_t load_nwarn;                  /* warn bytes kept by the load (the first ones) */
	bool capture;                       /* keep warnings for the fingerprint sidecar */
	bool warn_oom;                      /* a warning could not be kept */
	char *warn;                         /* kept lines, "LEVEL KIND MESSAGE\n" (sched_say) */
	size_t nwarn;
	size_t awarn;
};

/* The columns of email_schedules the stage knows, by bit of sched_run.es_cols. */
#define SCHED_ES_NCOLS 12
#define SCHED_ES_REQUIRED 4                 /* the first 4 must exist */
#define SCHED_ES_ADDABLE 11                 /* the first 11: updated_at is only used */
#define SCHED_ES_UPDATED_AT 11
extern const char *const sched_es_cols[SCHED_ES_NCOLS];
extern const char *const sched_es_col_defs[SCHED_ES_ADDABLE];   /* their ADD COLUMN text */
extern const char *const sched_es_col_absent[SCHED_ES_NCOLS];   /* what an absent one reads as */

/* ---- reporting (sched_db.c) ---- */
/* Sets io->err (the first error wins); returns rc. */
int sched_fail(struct sched_run *r, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A log line, kept for the fingerprint sidecar while r->capture ("LEVEL - MESSAGE"). */
void sched_say(struct sched_run *r, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A warning about a contact row, kept likewise ("LEVEL KIND-NAME MESSAGE"). */
void sched_warn(struct sched_run *r, enum sched_warn_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Says again the lines kept while r->capture (another run's warn text), kept again if
 * r->capture. */
void sched_replay(struct sched_run *r, const char *text, size_t len);
/* sched_fail with "WHAT 'PATH': SQLITE ERROR". */
int sched_db_fail(struct sched_run *r, const char *what);
int sched_exec(struct sched_run *r, const char *sql, const char *what);

/* ---- the connection's VFS (sched_vfs.c) ---- */
#define SCHED_VFS "ferry-sched"
/* The name of the default VFS with the journal's writes gathered (registered on the first
 * call), or NULL (then the default VFS). */
const char *sched_vfs(void);

/* ---- the rows sidecar (sched_rows.c) ---- */
/* The counts the load makes (struct sched_report, plan.n_emails). */
struct sched_loaded {
	int64_t contacts, valid, bad, no_email, no_state, unknown_state, n_emails;
};
/* An open rows sidecar whose header fits the inputs and the database's size. */
struct sched_rows {
	int fd;
	unsigned char fkey[SCHED_FP_KEYLEN];        /* its key */
	unsigned char file[SCHED_FP_LEN];           /* the database's tag under it */
	size_t nold, ncnt, nct, nwarn;
	char *warn;                                 /* after sched_rows_load: the load's lines */
};
/* DB_PATH ".ferry-sched-rows", malloc'd. */
char *sched_rows_path(const char *db_path);
/* sched_fp_key() with today left out: what the rows read back depend on. */
int sched_rows_key(const struct sched_opts *o, unsigned char key[SCHED_FP_LEN]);
/* 0 and rows open when DB_PATH's rows sidecar is for key and a database of size bytes. */
int sched_rows_open(const char *db_path, const unsigned char key[SCHED_FP_LEN], uint64_t size,
		    struct sched_rows *rows);
/* What the load made into r (old rows, counted rows, contacts, counts; replacing them) and
 * its warnings into rows->warn (sched_replay, nwarn bytes): 0, or -1 when torn or damaged. */
int sched_rows_load(struct sched_rows *rows, struct sched_run *r);
void sched_rows_close(struct sched_rows *rows);
/* Saving: the rows as the load would read back the file this run leaves, written by a
 * thread (r's plan and rid are only read) into a temporary file while the commit runs. */
struct sched_rows_job {
	bool started;                       /* the thread runs or has not been joined */
	pthread_t th;
	struct sched_run *r;
	unsigned char fkey[SCHED_FP_KEYLEN];        /* the GMAC's key: the file's tag uses it */
	FILE *f;
	struct evp_cipher_ctx_st *ctx;
	size_t nold;
	struct sched_loaded counts;         /* the load's, when the job began */
	char *warn;                         /* the load's warnings, copied */
	size_t nwarn;
	int rc;
	char *path;                         /* the sidecar's name */
	char tmp[4200], err[512];
};
/* After the write, before COMMIT; 0, or -1 (then no rows sidecar is saved). */
int sched_rows_begin(struct sched_run *r, const unsigned char fkey[SCHED_FP_KEYLEN],
		     struct sched_rows_job *j);
/* Once the fixed point is saved as fp (its fkey the job's): header, tag, rename. */
int sched_rows_finish(struct sched_rows_job *j, const unsigned char key[SCHED_FP_LEN],
		      const struct sched_fp *fp, char *err, size_t errlen);
/* Joins the thread and drops the temporary file; harmless after finish or without begin. */
void sched_rows_abort(struct sched_rows_job *j);
void sched_rows_remove(const char *db_path);
/* Removes the temporary files of runs that died writing a rows sidecar. */
void sched_rows_sweep(const char *db_path);

/* ---- reading (sched_load.c) ---- */
/* A skip_reason's text (n bytes, NULL: none) as enum sched_reason and *state. */
int sched_reason_of(const unsigned char *s, int n, int8_t *state);
/* The columns the stage needs exist; sets es_exists and es_cols. */
int sched_check_schema(struct sched_run *r);
/* Contacts, failed underwriting, counted and owned rows (RULES.md, inputs). */
int sched_load(struct sched_run *r);

/* ---- writing (sched_write.c) ---- */
/* The DDL, then the diff of the plan against the owned rows (RULES.md, what is written). */
int sched_write(struct sched_run *r);

/* email_schedules exactly as the stage creates it (sched_ddl.h): no other column, unique
 * index or trigger. */
bool sched_canonical(struct sched_run *r);
/* The counts of sched_write without writing (dry run). */
int sched_count(struct sched_run *r);
/* RULES.md, what is written dry-run CSV of the plan. */
int sched_print_csv(struct sched_run *r, FILE *out);

#endif
