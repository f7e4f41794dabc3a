/* pull.h: internals of the pull stage, reachable from tests/unit/test_pull.c (not exported from pull.so). */
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
};

/* Takes ownership of origin and replica (malloc'd). */
int pull_job_init(struct pull_job *j, struct ferry_ctx *c, char *origin, char *replica,
		  const char *suffix);
void pull_job_release(struct pull_job *j);
int pull_prepare(struct pull_job *j, bool dry);
enum pull_verify pull_verify_mode(const char *v);
enum pull_reads pull_reads_mode(const char *v);

#endif
