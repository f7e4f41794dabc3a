/* sched_core.h: internals of the schedule stage (RULES.md), shared by its files and unit tests. */
#ifndef FERRY_SCHED_CORE_H
#define FERRY_SCHED_CORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- dates (sched_date.c): a date is a day number, 0 = 1970-01-01 ---- */
#define SCHED_NODATE INT32_MIN              /* "absent" marker for a day number */

bool sched_leap(int y);
int sched_mdays(int y, int m);
int32_t sched_days(int y, int m, int d);
void sched_civil(int32_t n, int *y, int *m, int *d);
int sched_year(int32_t n);
/* anniv(y, E) of RULES.md, exclusion windows for an anchor of month m, day d. */
int32_t sched_anniv(int y, int m, int d);
/* next_anniv(ref, E) of RULES.md, exclusion windows. */
int32_t sched_next_anniv(int32_t ref, int m, int d);
/* Exactly "YYYY-MM-DD", a real date with year 1800..2200 (len must be 10). */
bool sched_parse_ymd(const char *s, size_t len, int32_t *out);
/* A contact date (RULES.md, contacts that get nothing): 1 = parsed, 0 = absent, -1 = malformed. */
int sched_parse_value_date(const char *s, size_t len, int32_t *out);
void sched_fmt_date(int32_t n, char out[11]);
/* v in decimal at p (up to 20 bytes, no NUL); returns the end. */
char *sched_put_int(char *p, int64_t v);
uint32_t sched_fnv1a32(const char *s, size_t n);

/* ---- data files, states, emails (sched_data.c) ---- */
#define SCHED_NSTATES 59                    /* 50 states, DC and 8 territories/military */

struct sched_window {
	bool on;                            /* the state has this rule */
	int before;                         /* before_days */
	int after;                          /* after_days */
	int pre;                            /* pre_buffer_days */
	bool month_start;                   /* B is the 1st of the anchor's month */
};

struct sched_state_rules {
	bool year_round;                    /* every date is excluded */
	struct sched_window bday;           /* birthday window rule */
	struct sched_window ed;             /* effective-date window rule */
};

struct sched_rules {
	struct sched_state_rules st[SCHED_NSTATES];
};

struct sched_zips {
	int8_t state[1000];                 /* zip3 prefix -> state index, -1 none */
};

int sched_state_index(const char *s, size_t len);  /* exact code, -1 unknown */
const char *sched_state_code(int idx);
/* Parse conf/state_rules.csv; 0 or -1 with "FILE:LINE: ..." in err. */
int sched_rules_load(const char *path, struct sched_rules *r, char *err, size_t errlen);
int sched_rules_parse(const char *path, const char *text, size_t len, struct sched_rules *r,
		      char *err, size_t errlen);
int sched_zips_load(const char *path, struct sched_zips *z, char *err, size_t errlen);
int sched_zips_parse(const char *path, const char *text, size_t len, struct sched_zips *z,
		     char *err, size_t errlen);
/* RULES.md, contacts that get nothing, on the trimmed value. */
bool sched_email_valid(const char *s, size_t n);
/* The state index derived from a (raw) zip_code value, -1 if none (RULES.md). */
int sched_zip_state(const struct sched_zips *z, const char *s, size_t n);
/* The state index of a raw state value, -1 if absent/unknown (RULES.md). */
int sched_state_resolve(const char *s, size_t n);
/* Trim ASCII spaces and tabs of [*s, *s + *n). */
void sched_trim(const char **s, size_t *n);

/* ---- options and results ---- */
enum sched_type { T_AEP, T_BIRTHDAY, T_ED, T_POST, T_OTHER };   /* ASCII order of the names */
enum sched_reason { R_NONE, R_YEAR_ROUND, R_BDAY_WINDOW, R_ED_WINDOW, R_FREQ, R_ALIEN };

extern const char *const sched_type_name[4];
extern const int sched_type_prio[4];

struct sched_opts {
	int32_t today;                      /* day number of today */
	char send_time[9];                  /* HH:MM:SS */
	int bday_lead;                      /* birthday_days_before */
	int ed_lead;                        /* effective_date_days_before */
	int ed_min_months;                  /* effective_date_min_months */
	bool aep_enabled;                   /* aep_enabled */
	int aep_month;                      /* aep_date month */
	int aep_day;                        /* aep_date day */
	bool post_window;                   /* post_window_enabled */
	bool exclude_fu;                    /* exclude_failed_underwriting */
	bool unknown_skip;                  /* unknown_state_policy = skip */
	int max_per_period;                 /* max_emails_per_period */
	int period_days;                    /* period_days */
	int profile;                        /* 0 auto, 1 small .. 4 enterprise */
	int cap_percent;                    /* daily_cap_percent, -1 = from profile */
	int ed_soft_limit;                  /* ed_soft_limit, -1 = from profile */
	int ed_window;                      /* ed_smoothing_window, -1 = from profile */
	int min_daily_cap;                  /* min_daily_cap */
	bool strict;                        /* strict */
	int threads;                        /* reader threads (1 or 2) */
	bool fingerprint;                   /* fingerprint: skip a run on a fixed point */
	int compact;                        /* compact: 0 auto, 1 always, 2 never */
	const char *run_id;                 /* scheduler_run_id of written rows */
	struct sched_rules rules;           /* state_rules.csv */
	struct sched_zips zips;             /* zip3_states.csv */
};

void sched_opts_default(struct sched_opts *o);

struct sched_report {
	int64_t contacts;                   /* rows of contacts */
	int64_t valid;                      /* present, valid email and dates */
	int64_t bad;                        /* bad rows (RULES.md, contacts that get nothing) */
	int64_t no_email;                   /* absent email */
	int64_t no_state;                   /* unknown state with policy skip */
	int64_t unknown_state;              /* present but unknown state values (warned) */
	int64_t rows;                       /* owned rows after the run */
	int64_t pre_scheduled;
	int64_t skipped;
	int64_t ignored;                    /* new rows whose key a non-owned row holds */
	int64_t inserted;
	int64_t updated;                    /* rows changed in place, moves included */
	int64_t moved;                      /* of which a new date (same contact and type) */
	int64_t unchanged;
	int64_t deleted;                    /* owned rows removed (dry run: would be) */
	int64_t daily_cap;
	int64_t ed_limit;
	int64_t load_ms;
	int64_t compute_ms;
	int64_t write_ms;
	bool reused;                        /* fingerprint matched: nothing read or computed */
	int64_t compact_ms;                 /* the compaction after the write, 0 if none */
	int64_t compact_bytes;              /* the file it wrote */
};

/* Kinds of the warnings about contact rows: a bad value (the contact is skipped) or an
 * unknown state code (scheduled without state rules). */
enum sched_warn_kind { SCHED_W_EMAIL, SCHED_W_BIRTH_DATE, SCHED_W_EFFECTIVE_DATE, SCHED_W_STATE,
		       SCHED_W_NKINDS };
extern const char *const sched_warn_kind_name[SCHED_W_NKINDS];     /* "bad_email", ... */

/* Where the core reports: info lines, warnings about contact rows, the error. */
struct sched_io {
	void (*log)(void *ud, int level, const char *msg);  /* level: enum ferry_level */
	/* a warning about a contact row (thousands on a big org: the caller summarises);
	 * NULL: log(ud, FERRY_WARN, msg) */
	void (*warn)(void *ud, int kind, const char *msg);
	void *ud;
	char err[1024];                     /* the failure, when sched_execute returns != 0 */
};

enum sched_mode { SCHED_RUN, SCHED_DRY };

/* The whole stage on one database: read, compute, write (or in a dry run count, and print
 * CSV to csv unless it is NULL). Returns 0, 1 (data/database failure) or 2 (usage), with io->err set. */
int sched_execute(const struct sched_opts *o, const char *db_path, enum sched_mode mode,
		  FILE *csv, struct sched_io *io, struct sched_report *rep);

/* ---- fingerprint (sched_fp.c) ---- */
#define SCHED_FP_LEN 32                     /* SHA-256 of the inputs; two GMAC tags of the file */
#define SCHED_FP_KEYLEN 16                  /* AES-128 key of the file's GMAC */
struct sqlite3_file;

/* A sidecar: a file of these bytes, run with these inputs, is a fixed point. */
struct sched_fp {
	unsigned char key[SCHED_FP_LEN];    /* sched_fp_key() of the inputs */
	unsigned char fkey[SCHED_FP_KEYLEN];        /* random, drawn for this sidecar */
	unsigned char file[SCHED_FP_LEN];   /* sched_fp_file() of the database with fkey */
	uint64_t size;                      /* database file size */
	struct sched_report rep;            /* counts a rerun reports (no timings) */
	char *warn;                         /* the run's warnings: "LEVEL MESSAGE\n" lines */
	size_t nwarn;                       /* bytes of warn */
};

/* SHA-256 over the stage's code file, SQLite's version and every option: -1 if unknown. */
int sched_fp_key(const struct sched_opts *o, unsigned char key[SCHED_FP_LEN]);
/* GMAC: AES-128-GCM over the bytes as associated data, nothing encrypted. new: under key
 * and nonce (never two messages per pair), NULL when out of memory; add: 0 or -1; end: the
 * tag into tag, 0 or -1. The context is freed with EVP_CIPHER_CTX_free. */
#define SCHED_GMAC_TAG 16
struct evp_cipher_ctx_st;
struct evp_cipher_ctx_st *sched_gmac_new(const unsigned char fkey[SCHED_FP_KEYLEN],
					 const unsigned char iv[12]);
int sched_gmac_add(struct evp_cipher_ctx_st *ctx, const void *p, size_t n);
int sched_gmac_end(struct evp_cipher_ctx_st *ctx, unsigned char tag[SCHED_GMAC_TAG]);
/* A new random key for sched_fp_file(). */
int sched_fp_newkey(unsigned char fkey[SCHED_FP_KEYLEN]);
/* GMAC-AES-128 of the whole file's two halves under fkey, read through SQLite's own
 * handle (threads 1 or 2). */
int sched_fp_file(struct sqlite3_file *f, int threads, const unsigned char fkey[SCHED_FP_KEYLEN],
		  unsigned char out[SCHED_FP_LEN], uint64_t *size);
/* DB_PATH SUFFIX, malloc'd: a sidecar's name. */
char *sched_side_path(const char *db_path, const char *suffix);
/* DB_PATH ".ferry-sched", malloc'd. */
char *sched_fp_path(const char *db_path);
/* Atomically, without fsync (ferry_file_replace); 0, or -1 with err. */
int sched_fp_save(const char *path, const struct sched_fp *fp, char *err, size_t errlen);
/* 0 when PATH is a whole, intact sidecar for key (fp->warn malloc'd), else -1. */
int sched_fp_load(const char *path, const unsigned char key[SCHED_FP_LEN], struct sched_fp *fp);

/* ---- compute (sched_compute.c), used by the database side (sched_db.h) ---- */
/* realloc() for the stage's large arrays, which asks the kernel to back a large block with
 * transparent huge pages (madvise mode): a next-day run at 1M contacts fills about 300 MB
 * of fresh arrays, and in a VM each 4 KiB page fault costs more than the page's bytes. */
void *sched_big(void *p, size_t n);
struct sched_contact {
	int64_t id;                         /* contacts.id */
	int32_t birth;                      /* day number or SCHED_NODATE */
	int32_t ed;                         /* day number or SCHED_NODATE */
	int8_t state;                       /* state index, -1 = no rules */
	uint8_t failed_uw;                  /* failed underwriting (RULES.md, inputs) */
	uint8_t bm, bd;                     /* birth month and day */
	uint8_t em, edd;                    /* effective date month and day */
};

struct sched_cand {
	uint32_t ci;                        /* index into the contacts array */
	int32_t date;                       /* send date S, final after RULES.md, spreading the load */
	int32_t orig;                       /* O: date after smoothing (cap ordering) */
	int32_t event;                      /* event date A */
	uint8_t type;                       /* enum sched_type */
	uint8_t skipped;                    /* 0 pre-scheduled, 1 skipped */
	uint8_t reason;                     /* enum sched_reason */
	uint8_t dup;                        /* dropped: key held by another row */
};

struct sched_counted {
	int64_t cid;                        /* contact_id */
	int32_t date;                       /* first 10 chars as a date, SCHED_NODATE if none */
	uint8_t ltype;                      /* lower(email_type) as enum sched_type */
	uint8_t blocks;                     /* exact type and 10-char date: holds a unique key */
};

struct sched_plan {
	struct sched_contact *ct;           /* valid contacts, ascending id */
	size_t nct, act;
	struct sched_counted *cnt;          /* counted rows, sorted by cid */
	size_t ncnt, acnt;
	int32_t *cnt_dates;                 /* dates of counted rows, sorted (base load) */
	size_t ncnt_dates;
	struct sched_cand *cd;              /* candidates, grouped per contact */
	size_t ncd, acd;
	int64_t n_emails;                   /* N of RULES.md, spreading the load */
};

int32_t sched_excluded(const struct sched_opts *o, const struct sched_contact *c, int32_t d,
		       int *reason, int32_t *event);
/* Candidates for all contacts, then the load passes (RULES.md); results in p->cd, sorted by
 * unique key per contact. */
int sched_compute(const struct sched_opts *o, struct sched_plan *p, struct sched_report *rep);
void sched_plan_free(struct sched_plan *p);
/* The text of a skip reason (NULL for none) for contact c. */
const char *sched_reason_text(int reason, int state, char *buf, size_t len);

/* fn(a) here and fn(b) on a second thread when threads > 1 and one can be started, else
 * both here; returns when both are done. */
static inline void sched_both(int threads, void *(*fn)(void *), void *a, void *b)
{
	pthread_t th;

	if (threads > 1 && pthread_create(&th, NULL, fn, b) == 0) {
		fn(a);
		pthread_join(th, NULL);
		return;
	}
	fn(a);
	fn(b);
}

#endif
