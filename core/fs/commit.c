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

/* What ferry_s3_upload asks of a node being committed. */
struct commit_src {
	struct fs *fs;
	struct node *n;
	const char *key;
	const struct ivl *dirty;            /* snapshot taken at commit start */
};

static bool src_changed(void *arg, uint64_t off, uint64_t len)
{
	const struct commit_src *c = arg;

	return ivl_overlaps(c->dirty, off, off + len);
}

/* The cache must hold a part's bytes before they are read from it to upload. */
static int src_fill(void *arg, uint64_t off, uint64_t len)
{
	struct commit_src *c = arg;
	int e;

	pthread_mutex_lock(&c->n->mu);
	e = fetch_present(c->fs, c->n, c->key, off, off + len);
	pthread_mutex_unlock(&c->n->mu);
	return e;
}

static void src_count(void *arg, enum ferry_s3_upload_ev ev, uint64_t off, uint64_t bytes)
{
	struct fs *fs = ((struct commit_src *)arg)->fs;

	(void)off;
	switch (ev) {
	case FERRY_S3_UP_PUT:
		STAT_ADD(fs, put, 1);
		STAT_ADD(fs, bytes_up, bytes);
		break;
	case FERRY_S3_UP_CREATE:
		STAT_ADD(fs, mpu_create, 1);
		break;
	case FERRY_S3_UP_PART:
		STAT_ADD(fs, mpu_part, 1);
		STAT_ADD(fs, bytes_up, bytes);
		break;
	case FERRY_S3_UP_COPY:
		STAT_ADD(fs, mpu_part_copy, 1);
		STAT_ADD(fs, bytes_copied, bytes);
		break;
	case FERRY_S3_UP_COMPLETE:
		STAT_ADD(fs, mpu_complete, 1);
		break;
	case FERRY_S3_UP_ABORT:
		STAT_ADD(fs, mpu_abort, 1);
		break;
	case FERRY_S3_UP_CONFLICT:
		STAT_ADD(fs, conflicts, 1);
		break;
	}
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
	{
		struct commit_src src = { .fs = fs, .n = n, .key = key, .dirty = &dirty };
		struct ferry_s3_upload u = {
			.key = key, .fd = n->cache_fd, .size = size,
			.base = is_new ? "" : base_etag, .base_size = base_limit,
			.put_max = fs->put_max, .threads = FERRY_FS_UPLOAD_THREADS,
			.changed = src_changed, .before_read = src_fill, .count = src_count,
			.arg = &src, .failpoint = "fs.before_complete", .no_copy = &fs->no_part_copy,
		};

		rc = ferry_s3_upload(fs->s3, &u, &cond, &res);
		if (rc != FERRY_S3_OK) {
			e = u.err ? u.err : s3_errno(rc);
			ferry_logf(FERRY_ERROR, "ferryfs", "commit failed", "msg=\"%s\" if_match=%s",
				   res.msg, cond.if_match ? cond.if_match : "-");
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
