/* commit.c: ferryfs's commits: one conditional PUT, or a multipart upload with part copies. */
#include "ferryfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_failpoint.h"
#include "ferry_log.h"
#include "ferry_time.h"

#define MPU_THREADS   4

struct mpu_job {
	struct fs *fs;
	struct node *n;
	const char *key;
	const char *upload_id;
	const char *base_etag;              /* "" for a new object */
	uint64_t size;
	uint64_t base_limit;
	const struct ivl *dirty;            /* snapshot taken at commit start */
	int nparts;
	char **etags;
	int next;                           /* next part index to take */
	int err;                            /* first errno */
	bool unproven;                      /* an uploaded part's ETag was not its MD5 */
	pthread_mutex_t mu;
};

/* Whether part [off, off + len) of a commit can be copied server-side from the base. */
static bool part_copyable(const struct fs *fs, const char *base_etag, uint64_t base_limit,
			  const struct ivl *dirty, uint64_t off, uint64_t len)
{
	return base_etag[0] && off + len <= base_limit && !ivl_overlaps(dirty, off, off + len) &&
	       !__atomic_load_n(&fs->no_part_copy, __ATOMIC_RELAXED);
}

/* A commit with no part to copy uploads every byte anyway: up to put_max it is one PUT,
 * which spares the multipart round trips and the store's CompleteMultipartUpload (which
 * some stores pay for by reading every part again). Where a multipart completion cannot
 * be fenced (GCS), every commit is one PUT, whatever its size. */
static bool commit_as_put(const struct fs *fs, const char *base_etag, uint64_t size,
			  uint64_t base_limit, const struct ivl *dirty)
{
	if (size < FS_PART_SIZE || !ferry_s3_multipart_fenced(fs->s3))
		return true;            /* GCS fences no multipart completion: one PUT */
	if (size > fs->put_max)
		return false;
	for (uint64_t i = 0; i < ferry_fs_nparts(size); i++)
		if (part_copyable(fs, base_etag, base_limit, dirty, ferry_fs_part_start(i),
				  ferry_fs_part_len(i, size)))
			return false;
	return true;
}

static int mpu_one(struct mpu_job *j, int i)
{
	struct fs *fs = j->fs;
	struct node *n = j->n;
	uint64_t off = ferry_fs_part_start((uint64_t)i), len = ferry_fs_part_len((uint64_t)i, j->size);
	struct ferry_s3_res res;
	int rc, e;

	if (part_copyable(fs, j->base_etag, j->base_limit, j->dirty, off, len)) {
		STAT_ADD(fs, mpu_part_copy, 1);
		rc = ferry_s3_mpu_part_copy(fs->s3, j->key, j->upload_id, i + 1, j->key, j->base_etag,
					    off, len, j->etags[i], &res);
		if (rc == FERRY_S3_OK) {
			STAT_ADD(fs, bytes_copied, len);
			return 0;
		}
		if (rc == FERRY_S3_NOTIMPL) {
			if (!__atomic_exchange_n(&fs->no_part_copy, true, __ATOMIC_RELAXED))
				ferry_logf(FERRY_WARN, "ferryfs",
					   "store lacks UploadPartCopy; uploading parts instead",
					   "msg=\"%s\"", res.msg);
		} else {
			if (rc == FERRY_S3_PRECONDITION)
				STAT_ADD(fs, conflicts, 1);
			ferry_logf(FERRY_ERROR, "ferryfs", "part copy failed", "part=%d msg=\"%s\"",
				   i + 1, res.msg);
			return rc == FERRY_S3_PRECONDITION ? ESTALE : s3_errno(rc);
		}
	}
	pthread_mutex_lock(&n->mu);
	e = fetch_present(fs, n, j->key, off, off + len);
	pthread_mutex_unlock(&n->mu);
	if (e)
		return e;
	STAT_ADD(fs, mpu_part, 1);
	rc = ferry_s3_mpu_part_fd(fs->s3, j->key, j->upload_id, i + 1, n->cache_fd, (off_t)off, len,
				  j->etags[i], &res);
	if (rc != FERRY_S3_OK) {
		ferry_logf(FERRY_ERROR, "ferryfs", "part upload failed", "part=%d msg=\"%s\"", i + 1,
			   res.msg);
		return s3_errno(rc);
	}
	if (!res.verified)
		__atomic_store_n(&j->unproven, true, __ATOMIC_RELAXED);
	STAT_ADD(fs, bytes_up, len);
	return 0;
}

static void *mpu_worker(void *arg)
{
	struct mpu_job *j = arg;

	for (;;) {
		int i, e;

		pthread_mutex_lock(&j->mu);
		if (j->err || j->next >= j->nparts) {
			pthread_mutex_unlock(&j->mu);
			return NULL;
		}
		i = j->next++;
		pthread_mutex_unlock(&j->mu);
		e = mpu_one(j, i);
		if (e) {
			pthread_mutex_lock(&j->mu);
			if (!j->err)
				j->err = e;
			pthread_mutex_unlock(&j->mu);
		}
	}
}

/* Multipart commit; returns an errno, new ETag in res->etag. */
static int commit_mpu(struct mpu_job *j, const struct ferry_s3_cond *cond,
		      struct ferry_s3_res *res)
{
	struct fs *fs = j->fs;
	pthread_t th[MPU_THREADS];
	char *upload_id = NULL;
	int64_t t0 = ferry_mono_ms(), t_parts;
	int nth, started = 0, rc, e = 0;

	STAT_ADD(fs, mpu_create, 1);
	rc = ferry_s3_mpu_create(fs->s3, j->key, &upload_id, res);
	if (rc != FERRY_S3_OK) {
		ferry_logf(FERRY_ERROR, "ferryfs", "cannot start upload", "msg=\"%s\"", res->msg);
		return s3_errno(rc);
	}
	j->upload_id = upload_id;
	j->etags = calloc((size_t)j->nparts, sizeof(*j->etags));
	if (!j->etags) {
		e = ENOMEM;
		goto out_abort;
	}
	for (int i = 0; i < j->nparts; i++) {
		j->etags[i] = calloc(1, FS_ETAG_MAX);
		if (!j->etags[i]) {
			e = ENOMEM;
			goto out_abort;
		}
	}
	pthread_mutex_init(&j->mu, NULL);
	nth = j->nparts < MPU_THREADS ? j->nparts : MPU_THREADS;
	for (int t = 0; t < nth; t++) {
		if (pthread_create(&th[t], NULL, mpu_worker, j) != 0)
			break;
		started++;
	}
	if (!started)
		mpu_worker(j);
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&j->mu);
	e = j->err;
	if (e)
		goto out_abort;
	t_parts = ferry_mono_ms();
	/* crash matrix: every part is on S3, the object is not (FERRY_FAILPOINT=...:kill) */
	if (ferry_failpoint("fs.before_complete")) {
		e = EIO;
		goto out_abort;
	}
	STAT_ADD(fs, mpu_complete, 1);
	rc = ferry_s3_mpu_complete(fs->s3, j->key, upload_id, j->etags, j->nparts, cond, res);
	if (j->unproven)
		res->verified = false;
	ferry_logf(FERRY_DEBUG, "ferryfs", "multipart commit",
		   "key='%s' parts=%d parts_ms=%lld complete_ms=%lld", j->key, j->nparts,
		   (long long)(t_parts - t0), (long long)(ferry_mono_ms() - t_parts));
	if (rc != FERRY_S3_OK) {
		e = rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_CONFLICT ? ESTALE : s3_errno(rc);
		if (e == ESTALE)
			STAT_ADD(fs, conflicts, 1);
		ferry_logf(FERRY_ERROR, "ferryfs", "commit failed", "msg=\"%s\"", res->msg);
		goto out_abort;
	}
	goto out_free;
out_abort:
	{
		struct ferry_s3_res ares;

		STAT_ADD(fs, mpu_abort, 1);
		ferry_s3_mpu_abort(fs->s3, j->key, upload_id, &ares);
	}
out_free:
	if (j->etags)
		for (int i = 0; i < j->nparts; i++)
			free(j->etags[i]);
	free(j->etags);
	free(upload_id);
	return e;
}

int commit_node(struct fs *fs, struct node *n)
{
	struct ferry_s3_cond cond = { 0 };
	struct ferry_s3_res res = { 0 };
	char base_etag[FS_ETAG_MAX];
	struct ivl dirty;
	uint64_t size, base_limit;
	bool is_new;
	char *key;
	int e = 0, rc;

	key = fs_node_key(fs, n);
	if (!key)
		return ENOMEM;
	pthread_mutex_lock(&n->mu);
	while (n->committing)
		pthread_cond_wait(&n->cv, &n->mu);
	if (!n->changed || n->unlinked) {
		pthread_mutex_unlock(&n->mu);
		free(key);
		return 0;
	}
	e = data_cache_fd(fs, n);
	if (e) {
		pthread_mutex_unlock(&n->mu);
		free(key);
		return e;
	}
	n->committing = true;
	size = n->size;
	base_limit = n->base_limit;
	is_new = n->is_new;
	snprintf(base_etag, sizeof(base_etag), "%s", n->base_etag);
	ivl_copy(&dirty, &n->dirty);
	{
		struct stat st;

		/* holes past the cache file's end must read as zeros when uploaded */
		if (fstat(n->cache_fd, &st) == 0 && (uint64_t)st.st_size < size &&
		    ftruncate(n->cache_fd, (off_t)size) != 0)
			e = errno;
	}
	pthread_mutex_unlock(&n->mu);
	if (e)
		goto out;

	if (is_new || !base_etag[0])
		cond.if_none_match = "*";
	else
		cond.if_match = base_etag;
	STAT_ADD(fs, commits, 1);
	/* crash matrix: the commit is decided, nothing sent yet (FERRY_FAILPOINT=...:kill) */
	if (ferry_failpoint("fs.before_commit")) {
		e = EIO;
		goto out;
	}
	if (commit_as_put(fs, is_new ? "" : base_etag, size, base_limit, &dirty)) {
		pthread_mutex_lock(&n->mu);
		e = fetch_present(fs, n, key, 0, size < base_limit ? size : base_limit);
		pthread_mutex_unlock(&n->mu);
		if (e)
			goto out;
		STAT_ADD(fs, put, 1);
		if (size)
			rc = ferry_s3_put_fd(fs->s3, key, n->cache_fd, 0, size, &cond, &res);
		else
			rc = ferry_s3_put(fs->s3, key, "", 0, &cond, &res);
		if (rc != FERRY_S3_OK) {
			e = rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_CONFLICT ? ESTALE : s3_errno(rc);
			if (e == ESTALE)
				STAT_ADD(fs, conflicts, 1);
			ferry_logf(FERRY_ERROR, "ferryfs", "commit failed", "msg=\"%s\" if_match=%s",
				   res.msg, cond.if_match ? cond.if_match : "-");
			goto out;
		}
		STAT_ADD(fs, bytes_up, size);
	} else {
		struct mpu_job j = {
			.fs = fs, .n = n, .key = key, .base_etag = is_new ? "" : base_etag,
			.size = size, .base_limit = base_limit, .dirty = &dirty,
			.nparts = (int)ferry_fs_nparts(size),
		};

		e = commit_mpu(&j, &cond, &res);
		if (e)
			goto out;
	}
	if (!e) {
		/* the object as the store now describes it: our ETag and size, or it was not
		 * our commit that the ETag proved */
		struct ferry_s3_res h;

		if (ferry_s3_head(fs->s3, key, NULL, &h) != FERRY_S3_OK) {
			ferry_logf(FERRY_WARN, "ferryfs", "cannot HEAD the object just committed",
				   "msg=\"%s\"", h.msg);
			res.verified = false;
		} else if (strcmp(h.etag, res.etag) != 0) {
			ferry_logf(FERRY_WARN, "ferryfs", "the object changed right after our commit",
				   "key='%s' committed=%s now=%s", key, res.etag, h.etag);
			res.verified = false;
		} else if (h.size != size) {
			ferry_logf(FERRY_ERROR, "ferryfs", "the committed object has another size",
				   "key='%s' size=%llu expected=%llu", key,
				   (unsigned long long)h.size, (unsigned long long)size);
			e = EIO;
		}
	}
out:
	pthread_mutex_lock(&n->mu);
	if (!e) {
		n->verified = res.verified ? 1 : -1;
		snprintf(n->etag, sizeof(n->etag), "%s", res.etag);
		snprintf(n->base_etag, sizeof(n->base_etag), "%s", res.etag);
		n->base_limit = size;
		/* bytes written in this commit are the new version's bytes */
		ivl_union_into(&n->clean, &dirty);
		ivl_clear(&n->dirty);
		data_held_sync(fs, n);
		n->changed = n->size != size;   /* cannot differ: writes waited */
		n->is_new = false;
		n->attr_ms = ferry_mono_ms();
		ferry_logf(FERRY_DEBUG, "ferryfs", "committed", "key='%s' size=%llu etag=%s", key,
			   (unsigned long long)size, res.etag);
	} else {
		STAT_ADD(fs, errors, 1);
		if (e == ESTALE)
			n->stale = true;
	}
	n->committing = false;
	pthread_cond_broadcast(&n->cv);
	pthread_mutex_unlock(&n->mu);
	data_trim(fs);                      /* the bytes just committed are clean now */
	ivl_release(&dirty);
	free(key);
	return e;
}
