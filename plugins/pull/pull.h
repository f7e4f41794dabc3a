/* pull.h: the pull stage's internals, shared by its files and tests/unit/test_pull.c. */
#ifndef FERRY_PULL_H
#define FERRY_PULL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry_fsclient.h"
#include "ferry_manifest.h"
#include "ferry_pages.h"
#include "ferry_patch.h"

struct ferry_ctx;
struct ferry_patch;
struct ferry_s3;

enum pull_verify { VERIFY_QUICK, VERIFY_FULL, VERIFY_NONE, VERIFY_BAD };

enum pull_reads { READS_AUTO, READS_RANGED, READS_SEQUENTIAL, READS_BAD };

enum pull_source {
	SRC_STATE,                          /* the replica's state file has the current etag */
	SRC_MANIFEST,                       /* the origin's sidecar manifest has it */
	SRC_COMPARE,                        /* read and hash every origin page */
	SRC_COPY,                           /* full copy to a temp file, renamed */
};

struct pull_job {
	struct ferry_ctx *c;
	char *origin;                       /* database on the mount */
	char *replica;                      /* local file */
	char *state_path;                   /* replica + ".ferry-state" */
	char *mf_path;                      /* origin + manifest suffix */
	char *tmp_path;                     /* replica + ".ferry-tmp" (full copies) */
	enum pull_verify verify;
	enum pull_reads reads;              /* key reads: ranged GETs or one pass (auto) */
	bool create;                        /* create_if_missing */
	bool discard_local;                 /* discard_local: replace unpushed local changes */
	int ofd;                            /* origin, read-only (ETag pinned by ferryfs) */
	uint64_t origin_size;
	char etag[FERRY_ETAG_MAX];
	bool etag_known;                    /* false on a plain file */
	bool missing;                       /* the origin does not exist */
	struct ferry_db_info oinfo;         /* origin header (compare/copy only) */
	int rfd;                            /* replica */
	bool replica_exists;
	struct ferry_db_info rinfo;
	struct ferry_manifest state;        /* replica's state file */
	bool have_state;
	bool stamp_held;                    /* the replica's stamp held: not hashed */
	struct ferry_manifest want;         /* hashes of the origin version being pulled */
	enum pull_source source;
	unsigned char *rhashes;             /* replica page hashes */
	int tfd;                            /* temp file of a full copy */
	struct ferry_patch *patch;
	uint64_t *batch_idx;                /* pages waiting for their undo record */
	unsigned char *batch_data;
	size_t batch_n;
	size_t batch_cap;
	uint64_t pages_moved;
	uint64_t bytes_self;                /* bytes this process read through the mount */
	uint64_t bytes_s3;                  /* bytes read from the object directly */
	bool zero;                          /* nothing had to move */
	bool sequential;                    /* state/manifest, but read in one pass */
	bool created;
	struct ferry_s3 *s3;                /* direct page reads (origin on ferryfs) */
	char *s3key;                        /* the origin's object key, or NULL */
	char *stats_root;                   /* ferryfs mount root, for .ferryfs-stats */
	bool have_stats;
	struct ferry_fsstats stats_before;
	struct ferry_pages_cb cb;
	struct pull_costs {                 /* pull_cost.c: what reads cost on this store */
		double req_ms;              /* one ranged GET, parallelism included; 0 unknown */
		double bytes_per_ms;        /* a pass in order; 0 unknown */
		bool probed;                /* req_ms timed by this pull before its plan */
		bool dirty;                 /* measured by this pull: to be saved */
	} costs;
	char plan_why[256];                 /* the figures the read plan was chosen by, or "" */
};

/* How the origin is read (pull.c, "How the origin is read"). */
#define PULL_RUN_BYTES   (1u << 20)        /* largest single read of adjacent pages */
#define PULL_MERGE_GAP   4                 /* unchanged pages read to save a request */
#define PULL_GROUP_RUNS  64                /* runs read per group */
#define PULL_GROUP_BYTES (16u << 20)       /* bytes read per group (plus one run) */
#define PULL_SEQ_PERCENT 50                /* runs covering this much: read it all in order */

/* One read of adjacent (or nearly adjacent) differing pages. */
struct pull_run {
	uint64_t first;                     /* first page read */
	uint64_t span;                      /* pages read */
	size_t i;                           /* list[i..k) are the differing pages in it */
	size_t k;
	unsigned char *buf;                 /* span pages */
	int rc;                             /* FERRY_S3_* of its GET */
	size_t got;                         /* bytes its GET returned */
	char msg[512];                      /* the S3 error, ready-made */
};

/* Bytes of the state or manifest that the replica must end up with. */
static inline uint64_t pull_want_size(const struct pull_job *j)
{
	return j->want.page_count * j->want.page_size;
}

/* ---- the stage (pull.c) ---- */
/* Takes ownership of origin and replica (malloc'd). */
int pull_job_init(struct pull_job *j, struct ferry_ctx *c, char *origin, char *replica,
		  const char *suffix);
void pull_job_release(struct pull_job *j);
/* Open the origin, look at the replica and pick the source; dry: read-only, no checkpoint.
 * j->missing when the origin does not exist and create_if_missing allows it. */
int pull_prepare(struct pull_job *j, bool dry);
/* After pull_hash_replica: the replica's pages that differ from its state file (changed
 * locally since the last sync, not pushed). None: 0. Some: in a whole run or with
 * discard_local a warning and 0; in a rerun by hand a refusal (ferry_fail code). */
int pull_guard_local(struct pull_job *j);
/* The values of the verify and reads keys; NULL is the default, unknown words _BAD. */
enum pull_verify pull_verify_mode(const char *v);
enum pull_reads pull_reads_mode(const char *v);

/* ---- which pages to read (pull_plan.c) ---- */
/* j->rhashes: the hashes of the replica's pages (those a patch could keep). */
int pull_hash_replica(struct pull_job *j);
/* Page i must be fetched: past the replica's end, another page size, or another hash. */
bool pull_page_differs(const struct pull_job *j, uint64_t i);
/* Pages to fetch when the hashes are known (state or manifest): ascending, malloc'd. */
int pull_diff_list(struct pull_job *j, uint64_t **out, size_t *n);
/* Pages in the largest single read at page size ps (PULL_RUN_BYTES, at least one page). */
uint64_t pull_max_run(uint32_t ps);
/* The run starting at list[i]: bridge gaps of up to PULL_MERGE_GAP pages, span at most
 * max_run pages, never across the lock-byte page lock. Returns the end index k (list[i..k)
 * are in the run). */
size_t pull_plan_run(const uint64_t *list, size_t n, size_t i, uint64_t max_run, uint64_t lock);
/* The next group of runs from list[*i], *i moved past them: up to PULL_GROUP_RUNS runs, until
 * they span PULL_GROUP_BYTES; each reads into buf after the runs before it (buf holds
 * PULL_GROUP_BYTES plus one run). Returns how many runs. */
size_t pull_plan_group(const uint64_t *list, size_t n, size_t *i, uint32_t ps,
		       unsigned char *buf, struct pull_run *runs);
/* The pages the runs of list[0..n) read in all; *runs (when not NULL) how many runs. */
uint64_t pull_plan_span(const struct pull_job *j, const uint64_t *list, size_t n, uint64_t *runs);
/* Ranged reads of the differing pages, or one sequential pass, by share alone? True when
 * their runs would span at least PULL_SEQ_PERCENT of the database. */
bool pull_sequential_pays(const struct pull_job *j, const uint64_t *list, size_t n);
/* The differing pages list[0..n) are read in one sequential pass: the reads key says so,
 * or says auto and pull_cost_plan does (may_probe: it may time one ranged GET). */
bool pull_read_in_order(struct pull_job *j, const uint64_t *list, size_t n, bool may_probe);

/* ---- what reads cost (pull_cost.c) ---- */
/* The store's figures from state_dir (none: zeros). */
void pull_costs_load(struct pull_job *j);
/* A read of bytes by requests in ms, in order or ranged, joins the figures. */
void pull_costs_measured(struct pull_job *j, bool in_order, uint64_t bytes, uint64_t requests,
			 int64_t ms);
/* Keep what this pull measured for the next one. */
void pull_costs_save(struct pull_job *j);
/* In order (true) or ranged, by the estimated time of each: runs x a ranged GET against the
 * object's size at the rate of a pass in order (j->plan_why says the figures); by share
 * (pull_sequential_pays) when a figure is missing. */
bool pull_cost_plan(struct pull_job *j, const uint64_t *list, size_t n, bool may_probe);

/* ---- reading and applying the pages (pull_fetch.c) ---- */
/* After pull_prepare: an empty replica when the origin is missing; SRC_COPY: every page
 * into the temp file, verified, renamed over the replica; else the differing pages patched
 * in through the undo file. Then the state file. 0 or the ferry_fail code. */
int pull_apply(struct pull_job *j);

#endif
