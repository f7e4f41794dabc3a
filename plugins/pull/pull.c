/* pull.c: the pull stage: page-level copy of the origin database (on the ferryfs mount) into a local replica. */
#include "pull.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_ctx.h"
#include "ferry_failpoint.h"
#include "ferry_file.h"
#include "ferry_pages.h"
#include "ferry_s3.h"
#include "ferry_stage.h"
#include "ferry_time.h"

/*
 * About pull.
 *
 * The replica keeps a state file, REPLICA.ferry-state: the manifest (page hashes) of the
 * origin version it was last synced from, tagged with that version's ETag. It always
 * describes the ORIGIN, never the replica, so it stays true even when the replica is
 * changed locally (schedule) or a pull is rolled back: comparing the replica's hashes
 * with it yields exactly the pages to fetch. The sources of "what the origin holds", best
 * first:
 *   state     state.etag == the origin's current ETag: fetch only the replica pages whose
 *             hash differs from the state (none: zero bytes move);
 *   manifest  ORIGIN.ferry-manifest (written by push) carries the current ETag: the same,
 *             with the manifest's hashes; every page fetched is checked against them;
 *   compare   no usable manifest (or a plain file without ETag): read and hash every
 *             origin page, write only the differing ones;
 *   copy      no replica yet, or another page size: full copy into REPLICA.ferry-tmp,
 *             verified, then renamed over the replica.
 * Local patches go through ferry_patch (undo file, pages.c): a crash at any instant
 * leaves the old or the new replica; the next pull (or push) rolls back a leftover undo.
 *
 * How the origin is read. state/manifest with a few differing pages: ranged GETs of just
 * those pages (runs of them), in parallel. When the runs would cover at least half of
 * the database (SEQ_PERCENT), or in compare/copy mode (every page is needed): one pass
 * over the whole origin in order, on ferryfs as one streaming GET per side of the
 * lock-byte page, straight from the object and pinned by If-Match, else big preads.
 * Many small requests cost more than the bytes they save once most of the file is
 * wanted; below half, bytes win (the target: a 1% change reads <= 2%).
 */

#define BATCH_BYTES (8u << 20)             /* pages patched per undo record */
#define RUN_BYTES   (1u << 20)             /* largest single read of adjacent pages */
#define MERGE_GAP   4                      /* unchanged pages read to save a request */
#define FETCH_THREADS 7                    /* parallel ranged GETs (plus the caller) */
#define GROUP_RUNS  64                     /* runs read per group */
#define GROUP_BYTES (16u << 20)            /* bytes read per group (plus one run) */
#define STREAM_BYTES (4u << 20)            /* chunk of a sequential pass */
#define SEQ_PERCENT 50                     /* runs covering this much: read it all in order */

void pull_job_release(struct pull_job *j)
{
	if (j->patch)
		ferry_patch_abort(j->patch);
	if (j->tfd >= 0) {
		close(j->tfd);
		unlink(j->tmp_path);
	}
	if (j->ofd >= 0)
		close(j->ofd);
	if (j->rfd >= 0)
		close(j->rfd);
	ferry_manifest_release(&j->state);
	ferry_manifest_release(&j->want);
	free(j->rhashes);
	free(j->batch_idx);
	free(j->batch_data);
	free(j->origin);
	free(j->replica);
	free(j->state_path);
	free(j->mf_path);
	free(j->tmp_path);
	free(j->stats_root);
	free(j->s3key);
	memset(j, 0, sizeof(*j));
	j->ofd = j->rfd = j->tfd = -1;
}

static bool stage_cancelled(void *c)
{
	return ferry_cancelled(c);
}

int pull_job_init(struct pull_job *j, struct ferry_ctx *c, char *origin, char *replica,
		  const char *suffix)
{
	memset(j, 0, sizeof(*j));
	j->ofd = j->rfd = j->tfd = -1;
	j->c = c;
	j->origin = origin;
	j->replica = replica;
	j->state_path = ferry_pages_concat(replica, ".ferry-state");
	j->mf_path = ferry_pages_concat(origin, suffix);
	j->tmp_path = ferry_pages_concat(replica, ".ferry-tmp");
	ferry_pages_cb_init(&j->cb, stage_cancelled, c, "pull");
	return j->state_path && j->mf_path && j->tmp_path ? 0 : -1;
}

/* Bytes of the state or manifest that the replica must end up with. */
static uint64_t want_size(const struct pull_job *j)
{
	return j->want.page_count * j->want.page_size;
}

/* On ferryfs, page reads go straight to the object (see read_runs); needs the [s3]
 * client to address the mount's bucket. */
static void direct_s3(struct pull_job *j)
{
	char bucket[256] = "";
	char *key = ferry_pages_ferryfs_key(NULL, j->origin, bucket, sizeof(bucket));

	if (!key)
		return;
	if (ferry_cfg_global(j->c, "s3", "bucket") || getenv("BUCKET_NAME"))
		j->s3 = ferry_s3(j->c);
	if (!j->s3 || strcmp(ferry_s3_bucket(j->s3), bucket) != 0) {
		ferry_log(j->c, FERRY_DEBUG, "reading pages through the mount", "bucket=%s", bucket);
		j->s3 = NULL;
		free(key);
		return;
	}
	j->s3key = key;
}

/* Open the origin and learn its ETag (none on a plain file). 1 when it does not exist. */
static int open_origin(struct pull_job *j)
{
	struct stat st;

	j->ofd = open(j->origin, O_RDONLY | O_CLOEXEC);
	if (j->ofd < 0) {
		if (errno == ENOENT)
			return 1;
		return ferry_fail(j->c, FERRY_FAIL, "cannot open origin '%s': %s", j->origin,
				  strerror(errno));
	}
	if (fstat(j->ofd, &st) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot stat origin '%s': %s", j->origin,
				  strerror(errno));
	if (!S_ISREG(st.st_mode))
		return ferry_fail(j->c, FERRY_FAIL, "origin '%s' is not a regular file", j->origin);
	j->origin_size = (uint64_t)st.st_size;
	j->etag_known = ferry_pages_etag_fd(j->ofd, j->etag, sizeof(j->etag)) == 0;
	if (!j->etag_known) {
		ferry_log(j->c, FERRY_DEBUG, "origin has no etag: comparing by hashes", "origin='%s'",
			  j->origin);
	} else {
		/* pull reads only the pages it needs: no whole-file fetch by ferryfs */
		if (ferry_pages_ferryfs_ranged(j->ofd) != 0)
			ferry_log(j->c, FERRY_DEBUG, "cannot limit ferryfs fetches", "origin='%s' err='%s'",
				  j->origin, strerror(errno));
		direct_s3(j);
	}
	if (ferry_pages_has_hot_journal(j->origin))
		return ferry_fail(j->c, FERRY_FAIL, "origin '%s' has a hot journal '%s-journal': "
				  "refusing to copy a database with an unfinished transaction; nothing written",
				  j->origin, j->origin);
	if (ferry_pages_has_wal(j->origin))
		return ferry_fail(j->c, FERRY_FAIL, "origin '%s' has a non-empty '%s-wal': checkpoint it "
				  "first; nothing written", j->origin, j->origin);
	return 0;
}

/* The replica as it is: existence, header, and the state file next to it. */
static int inspect_replica(struct pull_job *j, bool dry)
{
	char err[256];
	int rc;

	if (ferry_pages_has_hot_journal(j->replica))
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s' has a hot journal '%s-journal': "
				  "refusing to overwrite it; nothing written (opening it with sqlite3 "
				  "rolls it back)", j->replica, j->replica);
	if (!dry && ferry_pages_has_wal(j->replica)) {
		if (ferry_pages_checkpoint(j->replica, err, sizeof(err)) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "replica '%s': %s", j->replica, err);
		ferry_log(j->c, FERRY_INFO, "checkpointed replica wal", "replica='%s'", j->replica);
	}
	j->rfd = open(j->replica, (dry ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (j->rfd < 0) {
		if (errno != ENOENT)
			return ferry_fail(j->c, FERRY_FAIL, "cannot open replica '%s': %s", j->replica,
					  strerror(errno));
		return 0;
	}
	j->replica_exists = true;
	if (ferry_pages_probe_fd(j->rfd, &j->rinfo, err, sizeof(err)) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s': %s; nothing written", j->replica, err);
	rc = ferry_manifest_load(j->state_path, &j->state, err, sizeof(err));
	if (rc == 0)
		j->have_state = true;
	else if (rc == -1)
		ferry_log(j->c, FERRY_WARN, "ignoring unusable state file", "path='%s' reason='%s'",
			  j->state_path, err);
	return 0;
}

static int copy_manifest(struct ferry_manifest *to, const struct ferry_manifest *from)
{
	size_t n = (size_t)from->page_count * FERRY_PAGE_HASH_LEN;

	*to = *from;
	to->hashes = malloc(n ? n : 1);
	if (!to->hashes)
		return -1;
	if (n)
		memcpy(to->hashes, from->hashes, n);
	return 0;
}

/* The origin's header. On ferryfs it comes from the object itself, like the pages after
 * it: a read through the mount would start ferryfs's read-ahead window for nothing.
 * 0, -1 with err, or -2 after ferry_fail. */
static int probe_origin(struct pull_job *j, char *err, size_t errlen)
{
	struct ferry_s3_cond cond = { .if_match = j->etag };
	struct ferry_s3_res res = { 0 };
	unsigned char hdr[100];
	size_t want = j->origin_size < sizeof(hdr) ? (size_t)j->origin_size : sizeof(hdr), got = 0;
	int rc;

	if (!j->s3key) {
		j->bytes_self += j->origin_size ? 100 : 0;
		return ferry_pages_probe_fd(j->ofd, &j->oinfo, err, errlen);
	}
	if (want) {
		rc = ferry_s3_get_into(j->s3, j->s3key, &cond, 0, want, hdr, &got, &res);
		j->bytes_s3 += got;
		if (rc == FERRY_S3_PRECONDITION) {
			ferry_fail(j->c, FERRY_FAIL, "origin '%s' changed during the pull (etag %s no "
				   "longer current); nothing written", j->origin, j->etag);
			return -2;
		}
		if (rc != FERRY_S3_OK) {
			ferry_fail(j->c, FERRY_FAIL, "cannot read origin '%s': %s", j->origin, res.msg);
			return -2;
		}
	}
	return ferry_pages_parse_header(hdr, got, j->origin_size, &j->oinfo, err, errlen);
}

/* Pick where the origin's page hashes come from (see "About pull"). */
static int choose_source(struct pull_job *j)
{
	struct ferry_manifest mf;
	char err[256];
	int rc;

	j->source = SRC_COMPARE;
	if (j->replica_exists && j->etag_known && j->have_state &&
	    !(j->state.flags & FERRY_MANIFEST_ABSENT) && strcmp(j->state.etag, j->etag) == 0 &&
	    j->origin_size >= j->state.page_count * j->state.page_size) {
		if (copy_manifest(&j->want, &j->state) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "out of memory");
		j->source = SRC_STATE;
	} else if (j->replica_exists && j->etag_known) {
		rc = ferry_manifest_load(j->mf_path, &mf, err, sizeof(err));
		if (rc == -1)
			return ferry_fail(j->c, FERRY_FAIL, "manifest '%s': %s; delete it to fall back to "
					  "a full compare; nothing written", j->mf_path, err);
		if (rc == 0 && strcmp(mf.etag, j->etag) != 0) {
			ferry_log(j->c, FERRY_INFO, "manifest is stale: comparing every page",
				  "manifest_etag=%s origin_etag=%s", mf.etag, j->etag);
			ferry_manifest_release(&mf);
		} else if (rc == 0) {
			if (mf.page_count * mf.page_size != j->origin_size) {
				rc = ferry_fail(j->c, FERRY_FAIL, "manifest '%s' does not match origin '%s': "
						"%" PRIu64 " pages of %u bytes, origin has %" PRIu64
						" bytes; nothing written", j->mf_path, j->origin,
						mf.page_count, mf.page_size, j->origin_size);
				ferry_manifest_release(&mf);
				return rc;
			}
			j->want = mf;
			j->source = SRC_MANIFEST;
		}
	}
	if (j->source == SRC_COMPARE) {
		/* no hashes yet: the origin header says how big it is */
		rc = probe_origin(j, err, sizeof(err));
		if (rc == -2)
			return FERRY_FAIL;
		if (rc != 0)
			return ferry_fail(j->c, FERRY_FAIL, "origin '%s': %s; nothing written", j->origin, err);
		if (ferry_manifest_alloc(&j->want, j->oinfo.page_size, j->oinfo.page_count) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	}
	/* no replica, an empty origin, or another page size: every page moves anyway */
	if (!j->replica_exists || j->want.page_count == 0 ||
	    (j->rinfo.page_count > 0 && j->rinfo.page_size != j->want.page_size))
		j->source = SRC_COPY;
	return 0;
}

/* Hash the replica's pages (those a patch could keep). */
static int hash_replica(struct pull_job *j)
{
	char err[256];
	uint64_t n = j->rinfo.page_count;

	j->rhashes = calloc(n ? (size_t)n : 1, FERRY_PAGE_HASH_LEN);
	if (!j->rhashes)
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	if (n && j->rinfo.page_size &&
	    ferry_pages_hash_fd(j->rfd, j->rinfo.page_size, n, j->rhashes, NULL, NULL, err,
				sizeof(err)) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s': %s", j->replica, err);
	return 0;
}

static bool page_differs(const struct pull_job *j, uint64_t i)
{
	if (i >= j->rinfo.page_count || j->rinfo.page_size != j->want.page_size)
		return true;
	return memcmp(j->rhashes + i * FERRY_PAGE_HASH_LEN, j->want.hashes + i * FERRY_PAGE_HASH_LEN,
		      FERRY_PAGE_HASH_LEN) != 0;
}

/* Pages to fetch when the hashes are known (state or manifest). */
static int diff_list(struct pull_job *j, uint64_t **out, size_t *n)
{
	uint64_t keep = j->rinfo.page_size == j->want.page_size ? j->rinfo.page_count : 0;

	if (ferry_pages_diff(j->want.hashes, j->want.page_count, j->rhashes, keep,
			     j->want.page_size, out, n) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	return 0;
}

static int batch_alloc(struct pull_job *j)
{
	j->batch_cap = BATCH_BYTES / j->want.page_size;
	if (j->batch_cap == 0)
		j->batch_cap = 1;
	j->batch_idx = malloc(j->batch_cap * sizeof(*j->batch_idx));
	j->batch_data = malloc(j->batch_cap * j->want.page_size);
	j->batch_n = 0;
	return j->batch_idx && j->batch_data ? 0 : ferry_fail(j->c, FERRY_FAIL, "out of memory");
}

/* Save the old content of the batched pages in the undo file, then overwrite them. */
static int batch_flush(struct pull_job *j)
{
	if (j->batch_n == 0)
		return 0;
	if (ferry_patch_save(j->patch, j->batch_idx, j->batch_n) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "%s", ferry_patch_error(j->patch));
	if (ferry_failpoint("pull.after_undo"))
		return ferry_fail(j->c, FERRY_FAIL, "failpoint pull.after_undo");
	for (size_t i = 0; i < j->batch_n; i++) {
		if (ferry_patch_write(j->patch, j->batch_idx[i],
				      j->batch_data + i * j->want.page_size) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "%s", ferry_patch_error(j->patch));
		if (i == j->batch_n / 2 && ferry_failpoint("pull.mid_patch"))
			return ferry_fail(j->c, FERRY_FAIL, "failpoint pull.mid_patch");
	}
	j->pages_moved += j->batch_n;
	j->batch_n = 0;
	return 0;
}

static int batch_add(struct pull_job *j, uint64_t idx, const unsigned char *page)
{
	j->batch_idx[j->batch_n] = idx;
	memcpy(j->batch_data + j->batch_n * j->want.page_size, page, j->want.page_size);
	if (++j->batch_n == j->batch_cap)
		return batch_flush(j);
	return 0;
}

static ssize_t read_origin(struct pull_job *j, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = pread(j->ofd, (char *)buf + got, len - got, (off_t)(off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			/* ferryfs pins reads to the ETag seen at open: a replaced object fails here */
			ferry_fail(j->c, FERRY_FAIL, "cannot read origin '%s' at offset %" PRIu64
				   ": %s (was it replaced during the pull?)", j->origin, off + got,
				   strerror(errno));
			return -1;
		}
		if (r == 0) {
			ferry_fail(j->c, FERRY_FAIL, "origin '%s' is truncated: ends at %" PRIu64
				   " bytes, expected %zu more", j->origin, off + got, len - got);
			return -1;
		}
		got += (size_t)r;
	}
	j->bytes_self += got;
	return (ssize_t)got;
}

/* One read of adjacent (or nearly adjacent) differing pages. */
struct run {
	uint64_t first;                     /* first page read */
	uint64_t span;                      /* pages read */
	size_t i;                           /* list[i..k) are the differing pages in it */
	size_t k;
	unsigned char *buf;                 /* span pages */
	int rc;                             /* FERRY_S3_* of its GET */
	size_t got;
	char msg[512];                      /* the S3 error, ready-made */
};

struct fetch_pool {
	struct pull_job *j;
	struct run *runs;
	size_t n;
	size_t next;                        /* next run to take, under mu */
	pthread_mutex_t mu;
};

/* A ranged GET pinned by If-Match: the object version pulled, or a precondition error. */
static void fetch_run_s3(struct pull_job *j, struct run *r)
{
	struct ferry_s3_cond cond = { .if_match = j->etag };
	struct ferry_s3_res res = { 0 };
	uint32_t ps = j->want.page_size;

	r->rc = ferry_s3_get_into(j->s3, j->s3key, &cond, r->first * ps, (size_t)(r->span * ps),
				  r->buf, &r->got, &res);
	snprintf(r->msg, sizeof(r->msg), "%s", res.msg);
}

static void *fetch_worker(void *arg)
{
	struct fetch_pool *p = arg;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&p->mu);
		i = p->next++;
		pthread_mutex_unlock(&p->mu);
		if (i >= p->n)
			return NULL;
		fetch_run_s3(p->j, &p->runs[i]);
	}
}

/* Read a group of runs: on ferryfs straight from the object with FETCH_THREADS parallel
 * ranged GETs pinned by If-Match (ferryfs would treat ascending reads as sequential
 * read-ahead and start its window small; S3 latency, not bandwidth, bounds
 * many small reads), else pread through the mount. */
static int read_runs(struct pull_job *j, struct run *runs, size_t n)
{
	uint32_t ps = j->want.page_size;
	struct fetch_pool pool = { .j = j, .runs = runs, .n = n };
	pthread_t th[FETCH_THREADS];
	size_t nt = 0;

	if (!j->s3key) {
		for (size_t r = 0; r < n; r++)
			if (read_origin(j, runs[r].buf, (size_t)(runs[r].span * ps), runs[r].first * ps) < 0)
				return -1;
		return 0;
	}
	pthread_mutex_init(&pool.mu, NULL);
	while (nt < FETCH_THREADS && nt < n && pthread_create(&th[nt], NULL, fetch_worker, &pool) == 0)
		nt++;
	fetch_worker(&pool);                /* this thread works too (and alone if none started) */
	for (size_t t = 0; t < nt; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&pool.mu);
	for (size_t r = 0; r < n; r++) {
		j->bytes_s3 += runs[r].got;
		if (runs[r].rc == FERRY_S3_PRECONDITION) {
			ferry_fail(j->c, FERRY_FAIL, "origin '%s' changed during the pull (etag %s no "
				   "longer current); nothing kept", j->origin, j->etag);
			return -1;
		}
		if (runs[r].rc != FERRY_S3_OK) {
			ferry_fail(j->c, FERRY_FAIL, "cannot read origin '%s': %s", j->origin, runs[r].msg);
			return -1;
		}
		if (runs[r].got != runs[r].span * ps) {
			ferry_fail(j->c, FERRY_FAIL, "origin '%s' is truncated: ends at %" PRIu64 " bytes",
				   j->origin, runs[r].first * ps + runs[r].got);
			return -1;
		}
	}
	return 0;
}

/* The run starting at list[i]: bridge small gaps, never across the lock-byte page.
 * Returns the end index k (list[i..k) are in the run). */
static size_t plan_run(const uint64_t *list, size_t n, size_t i, uint64_t max_run, uint64_t lock)
{
	size_t k = i + 1;

	while (k < n && list[k] - list[k - 1] <= MERGE_GAP + 1 && list[k] - list[i] < max_run &&
	       !(list[k - 1] < lock && list[k] > lock))
		k++;
	return k;
}

/* Ranged reads of the differing pages, or one sequential pass (see "How the origin is
 * read")? True when the runs would cover at least SEQ_PERCENT of the database. */
static bool sequential_pays(const struct pull_job *j, const uint64_t *list, size_t n)
{
	uint32_t ps = j->want.page_size;
	uint64_t max_run = RUN_BYTES / ps ? RUN_BYTES / ps : 1, lock = ferry_pages_lock_index(ps);
	uint64_t span = 0;

	for (size_t i = 0; i < n;) {
		size_t k = plan_run(list, n, i, max_run, lock);

		span += list[k - 1] - list[i] + 1;
		i = k;
	}
	return span * 100 >= j->want.page_count * SEQ_PERCENT;
}

static int hash_mismatch(struct pull_job *j, uint64_t idx)
{
	return ferry_fail(j->c, FERRY_FAIL, "%s '%s' does not match origin '%s' at page %" PRIu64
			  "; nothing kept", j->source == SRC_STATE ? "state file" : "manifest",
			  j->source == SRC_STATE ? j->state_path : j->mf_path, j->origin, idx + 1);
}

/* state/manifest: read just the differing pages, runs of them bridging gaps of up to
 * MERGE_GAP pages (one request instead of two), in groups of up to GROUP_BYTES; each
 * page is checked against the expected hash before it is written. */
static int fetch_pages(struct pull_job *j, const uint64_t *list, size_t n)
{
	uint32_t ps = j->want.page_size;
	uint64_t max_run = RUN_BYTES / ps ? RUN_BYTES / ps : 1, lock = ferry_pages_lock_index(ps);
	struct ferry_progress prog;
	struct ferry_hasher *h = ferry_hasher_new();
	unsigned char *buf = malloc(GROUP_BYTES + (size_t)max_run * ps), hash[FERRY_PAGE_HASH_LEN];
	struct run *runs = calloc(GROUP_RUNS, sizeof(*runs));
	int rc = FERRY_FAIL;

	if (!h || !buf || !runs) {
		rc = ferry_fail(j->c, FERRY_FAIL, "out of memory");
		goto out;
	}
	if (!j->s3key)
		posix_fadvise(j->ofd, 0, 0, POSIX_FADV_RANDOM);
	ferry_progress_init(&prog, &j->cb, n);
	for (size_t i = 0; i < n;) {
		size_t nr = 0, used = 0;

		/* plan a group of runs */
		while (i < n && nr < GROUP_RUNS && used < GROUP_BYTES) {
			struct run *r = &runs[nr++];
			size_t k = plan_run(list, n, i, max_run, lock);

			memset(r, 0, sizeof(*r));
			r->first = list[i];
			r->span = list[k - 1] - list[i] + 1;
			r->i = i;
			r->k = k;
			r->buf = buf + used;
			used += (size_t)(r->span * ps);
			i = k;
		}
		if (ferry_cancelled(j->c)) {
			rc = ferry_fail(j->c, FERRY_FAIL, "pull cancelled");
			goto out_progress;
		}
		if (read_runs(j, runs, nr) != 0)
			goto out_progress;
		for (size_t r = 0; r < nr; r++) {
			for (size_t q = runs[r].i; q < runs[r].k; q++) {
				const unsigned char *pg = runs[r].buf + (list[q] - runs[r].first) * ps;
				uint64_t idx = list[q];

				ferry_hasher_page(h, pg, ps, hash);
				if (memcmp(hash, j->want.hashes + idx * FERRY_PAGE_HASH_LEN,
					   sizeof(hash)) != 0) {
					rc = hash_mismatch(j, idx);
					goto out_progress;
				}
				if (batch_add(j, idx, pg) != 0)
					goto out_progress;
			}
			ferry_progress_add(&prog, runs[r].k - runs[r].i, runs[r].span * ps);
		}
	}
	rc = batch_flush(j);
out_progress:
	ferry_progress_end(&prog);
out:
	free(runs);
	free(buf);
	ferry_hasher_free(h);
	return rc;
}

/* One chunk of a sequential pass: pages [first, first + n) in buf. copy: hash and write
 * them to the temp file; compare: hash them, patch in those that differ; state/manifest:
 * patch in those that differ, each checked against its expected hash. */
static int take_pages(struct pull_job *j, struct ferry_hasher *h, uint64_t first, uint64_t n,
		      const unsigned char *buf)
{
	uint32_t ps = j->want.page_size;
	unsigned char hash[FERRY_PAGE_HASH_LEN];

	for (uint64_t k = 0; k < n; k++) {
		uint64_t i = first + k;
		unsigned char *want = j->want.hashes + i * FERRY_PAGE_HASH_LEN;
		const unsigned char *pg = buf + k * ps;

		if (j->source == SRC_COPY || j->source == SRC_COMPARE) {
			ferry_hasher_page(h, pg, ps, want);
			if (j->source == SRC_COMPARE && page_differs(j, i) && batch_add(j, i, pg) != 0)
				return FERRY_FAIL;
			continue;
		}
		if (!page_differs(j, i))
			continue;
		ferry_hasher_page(h, pg, ps, hash);
		if (memcmp(hash, want, sizeof(hash)) != 0)
			return hash_mismatch(j, i);
		if (batch_add(j, i, pg) != 0)
			return FERRY_FAIL;
	}
	if (j->source == SRC_COPY) {
		if (pwrite(j->tfd, buf, (size_t)(n * ps), (off_t)(first * ps)) != (ssize_t)(n * ps))
			return ferry_fail(j->c, FERRY_FAIL, "cannot write '%s': %s", j->tmp_path,
					  strerror(errno));
		j->pages_moved += n;
	}
	return 0;
}

/* A sequential pass in progress: bytes gather in buf until a chunk of whole pages. */
struct stream {
	struct pull_job *j;
	struct ferry_hasher *h;
	struct ferry_progress *prog;
	unsigned char *buf;
	size_t cap;                         /* bytes: a whole number of pages */
	size_t fill;
	uint64_t next;                      /* index of the page at buf[0] */
	int rc;                             /* the first failure of take_pages */
};

static int stream_flush(struct stream *st)
{
	uint32_t ps = st->j->want.page_size;
	uint64_t n = st->fill / ps;

	if (n == 0)
		return 0;
	st->rc = take_pages(st->j, st->h, st->next, n, st->buf);
	if (st->rc)
		return st->rc;
	ferry_progress_add(st->prog, n, n * ps);
	st->next += n;
	st->fill -= (size_t)(n * ps);
	memmove(st->buf, st->buf + n * ps, st->fill);
	return 0;
}

static int stream_sink(void *arg, const void *data, size_t len)
{
	struct stream *st = arg;
	const unsigned char *p = data;

	st->j->bytes_s3 += len;
	while (len) {
		size_t take = st->cap - st->fill < len ? st->cap - st->fill : len;

		memcpy(st->buf + st->fill, p, take);
		st->fill += take;
		p += take;
		len -= take;
		if (st->fill == st->cap && stream_flush(st) != 0)
			return 1;
	}
	if (ferry_cancelled(st->j->c)) {
		st->rc = ferry_fail(st->j->c, FERRY_FAIL, "pull cancelled");
		return 1;
	}
	return 0;
}

/* Pages [a, b) in one streaming GET, pinned to the ETag being pulled. */
static int stream_s3(struct stream *st, uint64_t a, uint64_t b)
{
	struct pull_job *j = st->j;
	struct ferry_s3_cond cond = { .if_match = j->etag };
	struct ferry_s3_res res = { 0 };
	uint32_t ps = j->want.page_size;
	int rc;

	st->next = a;
	st->fill = 0;
	rc = ferry_s3_get(j->s3, j->s3key, &cond, a * ps, (b - a) * ps, stream_sink, st, &res);
	if (st->rc)
		return st->rc;
	if (rc == FERRY_S3_PRECONDITION)
		return ferry_fail(j->c, FERRY_FAIL, "origin '%s' changed during the pull (etag %s no "
				  "longer current); nothing kept", j->origin, j->etag);
	if (rc != FERRY_S3_OK)
		return ferry_fail(j->c, FERRY_FAIL, "cannot read origin '%s': %s", j->origin, res.msg);
	if (stream_flush(st) != 0)
		return st->rc;
	if (st->next != b || st->fill)
		return ferry_fail(j->c, FERRY_FAIL, "origin '%s' is truncated: ends at %" PRIu64
				  " bytes, expected %" PRIu64, j->origin, st->next * ps + st->fill, b * ps);
	return 0;
}

/* Pages [a, b) with big preads through the mount (or from a plain file). */
static int stream_fd(struct stream *st, uint64_t a, uint64_t b)
{
	struct pull_job *j = st->j;
	uint32_t ps = j->want.page_size;
	uint64_t per = st->cap / ps;

	for (uint64_t i = a; i < b;) {
		uint64_t n = b - i < per ? b - i : per;

		if (ferry_cancelled(j->c))
			return ferry_fail(j->c, FERRY_FAIL, "pull cancelled");
		if (read_origin(j, st->buf, (size_t)(n * ps), i * ps) < 0)
			return FERRY_FAIL;
		st->next = i;
		st->fill = (size_t)(n * ps);
		if (stream_flush(st) != 0)
			return st->rc;
		i += n;
	}
	return 0;
}

/* A sequential pass over every origin page except the lock-byte page (see "How the
 * origin is read"); what happens to each chunk is take_pages'. */
static int stream_origin(struct pull_job *j)
{
	uint32_t ps = j->want.page_size;
	uint64_t lock = ferry_pages_lock_index(ps), end = j->want.page_count;
	struct ferry_progress prog;
	struct stream st = { .j = j, .prog = &prog };
	int rc = FERRY_FAIL;

	if (end == 0)
		return 0;
	st.cap = STREAM_BYTES / ps ? (size_t)(STREAM_BYTES / ps) * ps : ps;
	st.h = ferry_hasher_new();
	st.buf = malloc(st.cap);
	if (!st.h || !st.buf) {
		rc = ferry_fail(j->c, FERRY_FAIL, "out of memory");
		goto out;
	}
	if (lock < end)
		memset(j->want.hashes + lock * FERRY_PAGE_HASH_LEN, 0, FERRY_PAGE_HASH_LEN);
	if (!j->s3key)
		posix_fadvise(j->ofd, 0, 0, POSIX_FADV_SEQUENTIAL);
	ferry_progress_init(&prog, &j->cb, end);
	/* two passes at most: before and after the lock-byte page, which is never read */
	for (uint64_t a = 0; a < end;) {
		uint64_t b = a < lock && lock < end ? lock : end;

		rc = j->s3key ? stream_s3(&st, a, b) : stream_fd(&st, a, b);
		if (rc)
			goto out_progress;
		a = b == lock ? lock + 1 : b;
	}
	rc = j->source == SRC_COPY ? 0 : batch_flush(j);
out_progress:
	ferry_progress_end(&prog);
out:
	free(st.buf);
	ferry_hasher_free(st.h);
	return rc;
}

/* Shrinking: the pages past the new end go into the undo file before the truncate. */
static int save_tail(struct pull_job *j, uint64_t new_pages)
{
	uint64_t old = j->rinfo.page_count, lock = ferry_pages_lock_index(j->rinfo.page_size);
	uint64_t buf[4096];
	size_t k = 0;

	for (uint64_t i = new_pages; i < old; i++) {
		if (i == lock)
			continue;
		buf[k++] = i;
		if (k == sizeof(buf) / sizeof(buf[0]) || i + 1 == old) {
			if (ferry_patch_save(j->patch, buf, k) != 0)
				return ferry_fail(j->c, FERRY_FAIL, "%s", ferry_patch_error(j->patch));
			k = 0;
		}
	}
	if (k && ferry_patch_save(j->patch, buf, k) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "%s", ferry_patch_error(j->patch));
	return 0;
}

/* The replica (or temp file) must now hash to exactly what the origin holds, and pass
 * SQLite's own check. */
static int verify_local(struct pull_job *j, int fd, const char *path)
{
	char err[256];
	uint64_t n = j->want.page_count;
	unsigned char *h = calloc(n ? (size_t)n : 1, FERRY_PAGE_HASH_LEN);
	int rc = FERRY_FAIL;

	if (!h)
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	if (n && ferry_pages_hash_fd(fd, j->want.page_size, n, h, NULL, NULL, err, sizeof(err)) != 0) {
		rc = ferry_fail(j->c, FERRY_FAIL, "cannot verify '%s': %s", path, err);
		goto out;
	}
	if (n && memcmp(h, j->want.hashes, (size_t)n * FERRY_PAGE_HASH_LEN) != 0) {
		rc = ferry_fail(j->c, FERRY_FAIL, "'%s' does not hash to the origin's pages after the "
				"pull; rolled back", path);
		goto out;
	}
	if (j->verify != VERIFY_NONE && n &&
	    ferry_pages_sqlite_check(path, j->verify == VERIFY_FULL, err, sizeof(err)) != 0) {
		rc = ferry_fail(j->c, FERRY_FAIL, "pulled database '%s' fails verification: %s; "
				"rolled back", path, err);
		goto out;
	}
	rc = 0;
out:
	free(h);
	return rc;
}

static int check_etag_unchanged(struct pull_job *j)
{
	char now[FERRY_ETAG_MAX];

	if (!j->etag_known)
		return 0;
	if (ferry_pages_etag_fd(j->ofd, now, sizeof(now)) != 0 || strcmp(now, j->etag) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "origin '%s' changed during the pull (etag %s, "
				  "now %s); rolled back", j->origin, j->etag,
				  ferry_pages_etag_fd(j->ofd, now, sizeof(now)) == 0 ? now : "unknown");
	return 0;
}

static int save_state(struct pull_job *j)
{
	char err[256];

	snprintf(j->want.etag, sizeof(j->want.etag), "%s", j->etag_known ? j->etag : "");
	ferry_manifest_sum(&j->want);
	if (ferry_manifest_save(j->state_path, &j->want, err, sizeof(err)) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot save state '%s': %s", j->state_path, err);
	return 0;
}

static int do_copy(struct pull_job *j)
{
	int rc;

	j->tfd = open(j->tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (j->tfd < 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot create '%s': %s", j->tmp_path, strerror(errno));
	rc = stream_origin(j);
	if (rc)
		return rc;
	if (ftruncate(j->tfd, (off_t)want_size(j)) != 0 || fsync(j->tfd) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot write '%s': %s", j->tmp_path, strerror(errno));
	rc = verify_local(j, j->tfd, j->tmp_path);
	if (rc)
		return rc;
	rc = check_etag_unchanged(j);
	if (rc)
		return rc;
	if (ferry_failpoint("pull.before_commit"))
		return ferry_fail(j->c, FERRY_FAIL, "failpoint pull.before_commit");
	if (rename(j->tmp_path, j->replica) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot rename '%s' to '%s': %s", j->tmp_path,
				  j->replica, strerror(errno));
	ferry_fsync_dir(j->replica);
	close(j->tfd);
	j->tfd = -1;
	/* a replaced replica makes the old undo/state meaningless: state is rewritten below */
	return save_state(j);
}

static int do_patch(struct pull_job *j)
{
	char err[256];
	uint64_t *list = NULL;
	size_t n = 0;
	int rc;

	rc = hash_replica(j);
	if (rc)
		return rc;
	if (j->source != SRC_COMPARE) {
		rc = diff_list(j, &list, &n);
		if (rc)
			return rc;
		if (n == 0 && j->rinfo.file_size == want_size(j)) {
			free(list);
			j->zero = true;
			ferry_log(j->c, FERRY_INFO, "replica is current", "etag=%s source=%s", j->etag,
				  j->source == SRC_STATE ? "state" : "manifest");
			if (j->source == SRC_MANIFEST)
				return save_state(j);
			return 0;
		}
	}
	j->patch = ferry_patch_begin(j->rfd, j->replica, j->want.page_size, err, sizeof(err));
	if (!j->patch) {
		free(list);
		return ferry_fail(j->c, FERRY_FAIL, "%s", err);
	}
	rc = batch_alloc(j);
	if (!rc && j->source != SRC_COMPARE &&
	    (j->reads == READS_SEQUENTIAL || (j->reads == READS_AUTO && sequential_pays(j, list, n)))) {
		j->sequential = true;
		ferry_log(j->c, FERRY_INFO, "most pages differ: reading the origin in order",
			  "pages=%zu pages_total=%" PRIu64, n, j->want.page_count);
	}
	if (!rc)
		rc = j->source == SRC_COMPARE || j->sequential ? stream_origin(j) : fetch_pages(j, list, n);
	free(list);
	if (rc)
		return rc;
	if (j->rinfo.page_count > j->want.page_count) {
		rc = save_tail(j, j->want.page_count);
		if (rc)
			return rc;
	}
	if (ferry_patch_truncate(j->patch, want_size(j)) != 0 || ferry_patch_finish(j->patch) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "%s", ferry_patch_error(j->patch));
	rc = verify_local(j, j->rfd, j->replica);
	if (rc)
		return rc;
	rc = check_etag_unchanged(j);
	if (rc)
		return rc;
	if (ferry_failpoint("pull.before_commit"))
		return ferry_fail(j->c, FERRY_FAIL, "failpoint pull.before_commit");
	rc = save_state(j);
	if (rc)
		return rc;
	rc = ferry_patch_commit(j->patch);
	j->patch = NULL;
	if (rc)
		return ferry_fail(j->c, FERRY_FAIL, "cannot remove the undo file of '%s': %s", j->replica,
				  strerror(errno));
	return 0;
}

/* Origin missing and create_if_missing: an empty replica; push will create the object. */
static int do_create(struct pull_job *j)
{
	int fd;

	fd = open(j->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || fsync(fd) != 0) {
		if (fd >= 0)
			close(fd);
		return ferry_fail(j->c, FERRY_FAIL, "cannot create '%s': %s", j->tmp_path, strerror(errno));
	}
	close(fd);
	if (rename(j->tmp_path, j->replica) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot create replica '%s': %s", j->replica,
				  strerror(errno));
	ferry_fsync_dir(j->replica);
	ferry_manifest_release(&j->want);
	if (ferry_manifest_alloc(&j->want, 0, 0) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	j->want.flags = FERRY_MANIFEST_ABSENT;
	j->etag_known = false;
	j->created = true;
	return save_state(j);
}

static const char *source_name(enum pull_source s)
{
	switch (s) {
	case SRC_STATE: return "state";
	case SRC_MANIFEST: return "manifest";
	case SRC_COMPARE: return "compare";
	case SRC_COPY: return "copy";
	}
	return "?";
}

/* How the origin was read: "ranged" (differing pages only), "sequential" (one pass over
 * every page) or "none". */
static const char *read_mode(const struct pull_job *j)
{
	if (j->created || j->zero)
		return "none";
	if (j->source == SRC_COMPARE || j->source == SRC_COPY || j->sequential)
		return "sequential";
	return "ranged";
}

static void publish(struct pull_job *j, uint64_t ms)
{
	struct ferry_fsstats after;
	uint64_t bytes = j->bytes_self;
	struct ferry_ctx *c = j->c;

	if (j->have_stats && ferry_fsstats_read(j->stats_root, &after))
		bytes = after.bytes_down - j->stats_before.bytes_down;
	bytes += j->bytes_s3;
	ferry_fact_set(c, "origin", j->origin);
	ferry_fact_set(c, "replica", j->replica);
	ferry_fact_set(c, "origin_etag", j->etag_known ? j->etag : "");
	ferry_fact_setf(c, "page_size", "%u", j->want.page_size);
	ferry_fact_setf(c, "pages_total", "%" PRIu64, j->want.page_count);
	ferry_fact_setf(c, "pages_moved", "%" PRIu64, j->pages_moved);
	ferry_fact_setf(c, "bytes_read", "%" PRIu64, bytes);
	ferry_fact_set(c, "source", j->created ? "create" : j->zero ? "current" : source_name(j->source));
	ferry_fact_set(c, "created", j->created ? "true" : "false");
	ferry_fact_set(c, "reads", read_mode(j));
	ferry_log(c, FERRY_INFO, "pulled",
		  "source=%s reads=%s pages_total=%" PRIu64 " pages_moved=%" PRIu64 " bytes_read=%"
		  PRIu64 " page_size=%u etag=%s ms=%" PRIu64, j->created ? "create" : j->zero ?
		  "current" : source_name(j->source), read_mode(j), j->want.page_count, j->pages_moved,
		  bytes, j->want.page_size, j->etag_known ? j->etag : "-", ms);
}

int pull_prepare(struct pull_job *j, bool dry)
{
	int rc;

	j->stats_root = ferry_fsstats_root(j->origin, ferry_fact(j->c, "mount", "mountpoint"));
	if (j->stats_root)
		j->have_stats = ferry_fsstats_read(j->stats_root, &j->stats_before);
	rc = open_origin(j);
	if (rc == 1) {
		if (!j->create && !j->stats_root && !ferry_pages_parent_exists(j->origin))
			return ferry_fail(j->c, FERRY_FAIL, "origin '%s' is not reachable: is the mount "
					  "active? (run the mount stage too)", j->origin);
		if (!j->create)
			return ferry_fail(j->c, FERRY_FAIL, "origin '%s' does not exist (set "
					  "create_if_missing = true to start from an empty database)",
					  j->origin);
		j->missing = true;
		return 0;
	}
	if (rc)
		return rc;
	rc = inspect_replica(j, dry);
	if (rc)
		return rc;
	return choose_source(j);
}

static int pull_run(struct ferry_ctx *c)
{
	struct pull_job j;
	uint64_t t0 = (uint64_t)ferry_mono_ms();
	char err[512];
	int rc;

	if (pull_job_init(&j, c, ferry_cfg_path(c, "origin"), ferry_cfg_path(c, "replica"),
			  ferry_cfg(c, "manifest")) != 0) {
		rc = ferry_fail(c, FERRY_FAIL, "out of memory");
		goto out;
	}
	j.verify = pull_verify_mode(ferry_cfg(c, "verify"));
	j.reads = pull_reads_mode(ferry_cfg(c, "reads"));
	j.create = ferry_cfg_bool(c, "create_if_missing");
	if (ferry_pages_recover(ferry_stage_name(c), j.replica, err, sizeof(err)) != 0) {
		rc = ferry_fail(c, FERRY_FAIL, "%s", err);
		goto out;
	}
	unlink(j.tmp_path);
	rc = pull_prepare(&j, false);
	if (rc)
		goto out;
	if (j.missing)
		rc = do_create(&j);
	else if (j.source == SRC_COPY)
		rc = do_copy(&j);
	else
		rc = do_patch(&j);
	if (rc)
		goto out;
	if (ferry_failpoint("pull.after_commit")) {
		rc = ferry_fail(c, FERRY_FAIL, "failpoint pull.after_commit");
		goto out;
	}
	publish(&j, (uint64_t)ferry_mono_ms() - t0);
out:
	pull_job_release(&j);
	return rc;
}

static void dry_report(struct pull_job *j, uint64_t *list, size_t n)
{
	bool seq = n > 0 && (j->reads == READS_SEQUENTIAL ||
			     (j->reads == READS_AUTO && sequential_pays(j, list, n)));

	/* bytes: what would be read from S3 (a sequential pass reads every page) */
	ferry_log(j->c, FERRY_INFO, "dry-run: would read pages from origin into replica",
		  "source=%s reads=%s pages=%zu bytes=%" PRIu64 " pages_total=%" PRIu64 " etag=%s "
		  "origin='%s' replica='%s'", source_name(j->source), n == 0 ? "none" : seq ?
		  "sequential" : "ranged", n, seq ? want_size(j) : (uint64_t)n * j->want.page_size,
		  j->want.page_count, j->etag, j->origin, j->replica);
	free(list);
}

/* A dry run has no mount (the mount stage only says what it would do): ask S3 itself,
 * when the mount stage tells where its mountpoint and bucket[:prefix] are. */
static int dry_run_s3(struct pull_job *j, const char *mp, const char *source)
{
	struct ferry_s3_res res = { 0 };
	struct ferry_buf buf = { 0 };
	struct ferry_manifest mf;
	const char *colon = strchr(source, ':'), *rel = j->origin + strlen(mp) + 1;
	char err[256], *key = NULL, *mkey = NULL;
	uint64_t *list = NULL;
	size_t n = 0;
	int rc = 0, src;

	if (colon && colon[1])
		src = asprintf(&key, "%s%s%s", colon + 1, colon[strlen(colon) - 1] == '/' ? "" : "/", rel);
	else
		src = asprintf(&key, "%s", rel);
	if (src < 0 || asprintf(&mkey, "%s%s", key, j->mf_path + strlen(j->origin)) < 0) {
		rc = ferry_fail(j->c, FERRY_FAIL, "out of memory");
		goto out;
	}
	j->s3 = ferry_s3(j->c);
	if (!j->s3) {
		rc = FERRY_FAIL;
		goto out;
	}
	src = ferry_s3_head(j->s3, key, NULL, &res);
	if (src == FERRY_S3_NOTFOUND && j->create) {
		ferry_log(j->c, FERRY_INFO, "dry-run: would start from an empty database (origin missing)",
			  "key=%s replica='%s'", key, j->replica);
		goto out;
	}
	if (src != FERRY_S3_OK) {
		rc = ferry_fail(j->c, FERRY_FAIL, "origin '%s': %s", j->origin, res.msg);
		goto out;
	}
	snprintf(j->etag, sizeof(j->etag), "%s", res.etag);
	j->etag_known = true;
	j->origin_size = res.size;
	rc = inspect_replica(j, true);
	if (rc)
		goto out;
	if (j->replica_exists && j->have_state && strcmp(j->state.etag, j->etag) == 0 &&
	    !(j->state.flags & FERRY_MANIFEST_ABSENT) && copy_manifest(&j->want, &j->state) == 0) {
		j->source = SRC_STATE;
	} else if (j->replica_exists &&
		   ferry_s3_get_buf(j->s3, mkey, NULL, 0, 0, &buf, &res) == FERRY_S3_OK &&
		   ferry_manifest_decode((unsigned char *)buf.data, buf.len, &mf, err, sizeof(err)) == 0) {
		if (strcmp(mf.etag, j->etag) == 0) {
			j->want = mf;
			j->source = SRC_MANIFEST;
		} else {
			ferry_manifest_release(&mf);
		}
	}
	if ((j->source == SRC_STATE || j->source == SRC_MANIFEST) &&
	    (j->rinfo.page_count == 0 || j->rinfo.page_size == j->want.page_size)) {
		rc = hash_replica(j);
		if (!rc)
			rc = diff_list(j, &list, &n);
		if (!rc)
			dry_report(j, list, n);
		goto out;
	}
	ferry_log(j->c, FERRY_INFO, j->replica_exists ? "dry-run: would read and hash every origin "
		  "page, writing only differing ones" : "dry-run: would copy every page of origin",
		  "source=%s bytes=%" PRIu64 " etag=%s key=%s replica='%s'",
		  j->replica_exists ? "compare" : "copy", j->origin_size, j->etag, key, j->replica);
out:
	ferry_buf_release(&buf);
	free(key);
	free(mkey);
	return rc;
}

static int pull_dry_run(struct ferry_ctx *c)
{
	const char *mp = ferry_fact(c, "mount", "mountpoint");
	const char *source = ferry_fact(c, "mount", "source");
	struct pull_job j;
	uint64_t *list = NULL;
	struct stat st;
	size_t n = 0;
	int rc = 0;

	if (pull_job_init(&j, c, ferry_cfg_path(c, "origin"), ferry_cfg_path(c, "replica"),
			  ferry_cfg(c, "manifest")) != 0) {
		rc = ferry_fail(c, FERRY_FAIL, "out of memory");
		goto out;
	}
	j.create = ferry_cfg_bool(c, "create_if_missing");
	j.reads = pull_reads_mode(ferry_cfg(c, "reads"));
	j.cb.progress = false;
	/* in memory only (a dry run journals nothing): lets push's dry run find its files */
	ferry_fact_set(c, "origin", j.origin);
	ferry_fact_set(c, "replica", j.replica);
	if (stat(j.origin, &st) != 0 && errno != ENOENT) {
		rc = ferry_fail(c, FERRY_FAIL, "cannot stat origin '%s': %s", j.origin, strerror(errno));
		goto out;
	}
	if (stat(j.origin, &st) != 0 && mp && source && strncmp(j.origin, mp, strlen(mp)) == 0 &&
	    j.origin[strlen(mp)] == '/') {
		rc = dry_run_s3(&j, mp, source);
		goto out;
	}
	if (stat(j.origin, &st) != 0 && !j.create) {
		ferry_log(c, FERRY_WARN, "dry-run: origin not there now (no mount in a dry run?); "
			  "cannot count pages", "origin='%s' replica='%s'", j.origin, j.replica);
		goto out;
	}
	rc = pull_prepare(&j, true);
	if (rc)
		goto out;
	if (j.missing) {
		ferry_log(c, FERRY_INFO, "dry-run: would start from an empty database (origin missing)",
			  "origin='%s' replica='%s'", j.origin, j.replica);
		goto out;
	}
	if (j.source == SRC_STATE || j.source == SRC_MANIFEST) {
		rc = hash_replica(&j);
		if (!rc)
			rc = diff_list(&j, &list, &n);
		if (!rc)
			dry_report(&j, list, n);
		goto out;
	}
	ferry_log(c, FERRY_INFO, j.source == SRC_COPY ? "dry-run: would copy every page of origin"
		  : "dry-run: would read and hash every origin page, writing only differing ones",
		  "source=%s pages=%" PRIu64 " bytes=%" PRIu64 " etag=%s origin='%s' replica='%s'",
		  source_name(j.source), j.want.page_count, want_size(&j),
		  j.etag_known ? j.etag : "-", j.origin, j.replica);
out:
	pull_job_release(&j);
	return rc;
}

enum pull_verify pull_verify_mode(const char *v)
{
	if (!v || strcmp(v, "quick") == 0)
		return VERIFY_QUICK;
	if (strcmp(v, "full") == 0)
		return VERIFY_FULL;
	if (strcmp(v, "none") == 0)
		return VERIFY_NONE;
	return VERIFY_BAD;
}

enum pull_reads pull_reads_mode(const char *v)
{
	if (!v || strcmp(v, "auto") == 0)
		return READS_AUTO;
	if (strcmp(v, "ranged") == 0)
		return READS_RANGED;
	if (strcmp(v, "sequential") == 0)
		return READS_SEQUENTIAL;
	return READS_BAD;
}

static int pull_check(struct ferry_ctx *c)
{
	const char *m = ferry_cfg(c, "manifest");

	/* verify and reads are FERRY_KEY_ENUM: the supervisor checked them at load */
	if (!m || !*m || strchr(m, '/'))
		return ferry_cfg_error(c, "manifest", "must be a file name suffix without '/'");
	return FERRY_OK;
}

static const struct ferry_key pull_keys[] = {
	{ "origin", FERRY_KEY_PATH, NULL, FERRY_KEY_REQUIRED,
	  "the database file on the ferryfs mount" },
	{ "replica", FERRY_KEY_PATH, NULL, FERRY_KEY_REQUIRED, "the local copy" },
	{ "verify", FERRY_KEY_ENUM, "quick", 0,
	  "quick|full|none: PRAGMA quick_check / integrity_check after the pull",
	  "quick|full|none" },
	{ "create_if_missing", FERRY_KEY_BOOL, "false", 0,
	  "a missing origin starts an empty database (push then creates it)" },
	{ "manifest", FERRY_KEY_OBJKEY, ".ferry-manifest", 0,
	  "suffix of the page-hash sidecar next to the origin" },
	{ "reads", FERRY_KEY_ENUM, "auto", 0,
	  "auto|ranged|sequential: with known hashes, read just the differing pages or the whole "
	  "origin in order (auto: in order once they cover half of it)", "auto|ranged|sequential" },
	{ NULL, 0, NULL, 0, NULL },
};

FERRY_EXPORT const struct ferry_stage ferry_stage_v1 = {
	.abi = FERRY_STAGE_ABI, .size = sizeof(struct ferry_stage), .name = "pull",
	.check = pull_check, .dry_run = pull_dry_run, .run = pull_run, .keys = pull_keys,
};
