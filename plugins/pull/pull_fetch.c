/* pull_fetch.c: reading the origin's pages and applying them to the replica, or to a fresh one. */
#include "pull.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry_ctx.h"
#include "ferry_time.h"
#include "ferry_failpoint.h"
#include "ferry_file.h"
#include "ferry_pages.h"
#include "ferry_s3.h"
#include "ferry_stage.h"

#define BATCH_BYTES (8u << 20)             /* pages patched per undo record */
#define FETCH_THREADS 7                    /* parallel ranged GETs (plus the caller) */
#define STREAM_BYTES (4u << 20)            /* chunk of a sequential pass */

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

struct fetch_pool {
	struct pull_job *j;
	struct pull_run *runs;
	size_t n;
	size_t next;                        /* next run to take, under mu */
	pthread_mutex_t mu;
};

/* A ranged GET pinned by If-Match: the object version pulled, or a precondition error. */
static void fetch_run_s3(struct pull_job *j, struct pull_run *r)
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
static int read_runs(struct pull_job *j, struct pull_run *runs, size_t n)
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

static int hash_mismatch(struct pull_job *j, uint64_t idx)
{
	return ferry_fail(j->c, FERRY_FAIL, "%s '%s' does not match origin '%s' at page %" PRIu64
			  "; nothing kept", j->source == SRC_STATE ? "state file" : "manifest",
			  j->source == SRC_STATE ? j->state_path : j->mf_path, j->origin, idx + 1);
}

/* state/manifest: read just the differing pages, runs of them bridging gaps of up to
 * PULL_MERGE_GAP pages (one request instead of two), in groups of up to PULL_GROUP_BYTES
 * (pull_plan_group); each page is checked against the expected hash before it is written. */
static int fetch_pages(struct pull_job *j, const uint64_t *list, size_t n)
{
	uint32_t ps = j->want.page_size;
	struct ferry_progress prog;
	struct ferry_hasher *h = ferry_hasher_new();
	unsigned char *buf = malloc(PULL_GROUP_BYTES + (size_t)pull_max_run(ps) * ps);
	unsigned char hash[FERRY_PAGE_HASH_LEN];
	struct pull_run *runs = calloc(PULL_GROUP_RUNS, sizeof(*runs));
	uint64_t requests = 0, b0;
	int64_t t0;
	int rc = FERRY_FAIL;

	if (!h || !buf || !runs) {
		rc = ferry_fail(j->c, FERRY_FAIL, "out of memory");
		goto out;
	}
	if (!j->s3key)
		posix_fadvise(j->ofd, 0, 0, POSIX_FADV_RANDOM);
	j->cb.step = "fetching changed pages";
	ferry_progress_init(&prog, &j->cb, n);
	t0 = ferry_mono_ms();
	b0 = j->bytes_s3;
	for (size_t i = 0; i < n;) {
		size_t nr = pull_plan_group(list, n, &i, ps, buf, runs);

		requests += nr;
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
	pull_costs_measured(j, false, j->bytes_s3 - b0, requests, ferry_mono_ms() - t0);
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
			if (j->source == SRC_COMPARE && pull_page_differs(j, i) &&
			    batch_add(j, i, pg) != 0)
				return FERRY_FAIL;
			continue;
		}
		if (!pull_page_differs(j, i))
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

/* A sequential pass over every origin page except the lock-byte page (pull.c, "How the
 * origin is read"); what happens to each chunk is take_pages'. */
static int stream_origin(struct pull_job *j)
{
	uint32_t ps = j->want.page_size;
	uint64_t lock = ferry_pages_lock_index(ps), end = j->want.page_count;
	struct ferry_progress prog;
	struct stream st = { .j = j, .prog = &prog };
	uint64_t b0;
	int64_t t0;
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
	j->cb.step = j->source == SRC_COPY ? "copying every origin page" :
		     "reading every origin page";
	ferry_progress_init(&prog, &j->cb, end);
	t0 = ferry_mono_ms();
	b0 = j->bytes_s3;
	/* two passes at most: before and after the lock-byte page, which is never read */
	for (uint64_t a = 0; a < end;) {
		uint64_t b = a < lock && lock < end ? lock : end;

		rc = j->s3key ? stream_s3(&st, a, b) : stream_fd(&st, a, b);
		if (rc)
			goto out_progress;
		a = b == lock ? lock + 1 : b;
	}
	pull_costs_measured(j, true, j->bytes_s3 - b0, 0, ferry_mono_ms() - t0);
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

/* The last word before a commit: the new content is the origin's, and the origin is still
 * the version pulled. */
static int check_before_commit(struct pull_job *j, int fd, const char *path)
{
	int rc = verify_local(j, fd, path);

	if (!rc)
		rc = check_etag_unchanged(j);
	if (!rc && ferry_failpoint("pull.before_commit"))
		rc = ferry_fail(j->c, FERRY_FAIL, "failpoint pull.before_commit");
	return rc;
}

/* The replica now has the pages of want: stamp it (a failed stamp only costs the next
 * run a hash of the replica). */
static void save_stamp(struct pull_job *j)
{
	char err[256];

	ferry_manifest_sum(&j->want);
	if (j->want.page_count &&
	    ferry_replica_stamp_save(j->replica, &j->want, err, sizeof(err)) != 0)
		ferry_log(j->c, FERRY_DEBUG, "replica not stamped", "reason='%s'", err);
}

static int save_state(struct pull_job *j)
{
	char err[256];

	snprintf(j->want.etag, sizeof(j->want.etag), "%s", j->etag_known ? j->etag : "");
	ferry_manifest_sum(&j->want);
	if (ferry_manifest_save(j->state_path, &j->want, err, sizeof(err)) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot save state '%s': %s", j->state_path, err);
	save_stamp(j);
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
	if (ftruncate(j->tfd, (off_t)pull_want_size(j)) != 0 || fsync(j->tfd) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot write '%s': %s", j->tmp_path, strerror(errno));
	rc = check_before_commit(j, j->tfd, j->tmp_path);
	if (rc)
		return rc;
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

	rc = pull_hash_replica(j);
	if (!rc)
		rc = pull_guard_local(j);
	if (rc)
		return rc;
	if (j->source != SRC_COMPARE) {
		rc = pull_diff_list(j, &list, &n);
		if (rc)
			return rc;
		if (n == 0 && j->rinfo.file_size == pull_want_size(j)) {
			free(list);
			j->zero = true;
			ferry_log(j->c, FERRY_INFO, "replica is current", "etag=%s source=%s", j->etag,
				  j->source == SRC_STATE ? "state" : "manifest");
			if (j->source == SRC_MANIFEST)
				return save_state(j);
			if (!j->stamp_held)
				save_stamp(j);
			return 0;
		}
	}
	j->patch = ferry_patch_begin(j->rfd, j->replica, j->want.page_size, err, sizeof(err));
	if (!j->patch) {
		free(list);
		return ferry_fail(j->c, FERRY_FAIL, "%s", err);
	}
	rc = batch_alloc(j);
	if (!rc && j->source != SRC_COMPARE && pull_read_in_order(j, list, n, true)) {
		j->sequential = true;
		ferry_log(j->c, FERRY_INFO, j->plan_why[0] ?
			  "reading the origin in order: one pass costs less than the ranged GETs here" :
			  "most pages differ: reading the origin in order",
			  "pages=%zu pages_total=%" PRIu64 " %s", n, j->want.page_count,
			  j->plan_why[0] ? j->plan_why : "ranged_gets=-");
	} else if (!rc && j->plan_why[0]) {
		ferry_log(j->c, FERRY_INFO, "reading just the differing pages: ranged GETs cost less "
			  "than one pass here", "pages=%zu pages_total=%" PRIu64 " %s", n,
			  j->want.page_count, j->plan_why);
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
	if (ferry_patch_truncate(j->patch, pull_want_size(j)) != 0 ||
	    ferry_patch_finish(j->patch) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "%s", ferry_patch_error(j->patch));
	rc = check_before_commit(j, j->rfd, j->replica);
	if (rc)
		return rc;
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

int pull_apply(struct pull_job *j)
{
	int rc;

	if (j->missing)
		return do_create(j);
	pull_costs_load(j);
	rc = j->source == SRC_COPY ? do_copy(j) : do_patch(j);
	if (!rc)
		pull_costs_save(j);
	return rc;
}
