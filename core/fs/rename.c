/* rename.c: ferryfs's rename: a server-side copy pinned to the source, a conditional delete. */
#include "ferryfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_log.h"

static int rename_dir(struct fs *fs, const char *src, const char *dst, unsigned int flags)
{
	struct ferry_s3_cond cond = { 0 };
	struct ferry_s3_res res;
	struct probe pr;
	bool nonempty;
	char *skey = NULL, *dkey = NULL;
	int err, rc;

	err = dir_nonempty(fs, src, &nonempty);
	if (err)
		return err;
	if (nonempty)
		return EXDEV;               /* no tree moves: mv(1) falls back to copy + delete */
	err = node_probe(fs, dst, &pr);
	if (!err) {
		if (!pr.is_dir)
			return ENOTDIR;
		if (flags & RENAME_NOREPLACE)
			return EEXIST;
		err = dir_nonempty(fs, dst, &nonempty);
		if (err)
			return err;
		if (nonempty)
			return ENOTEMPTY;
	} else if (err != ENOENT) {
		return err;
	}
	skey = fs_key(fs, src, true);
	dkey = fs_key(fs, dst, true);
	err = ENOMEM;
	if (!skey || !dkey)
		goto out;
	STAT_ADD(fs, put, 1);
	rc = ferry_s3_put(fs->s3, dkey, "", 0, &cond, &res);
	err = s3_errno(rc);
	if (err)
		goto out;
	STAT_ADD(fs, delete, 1);
	rc = ferry_s3_delete(fs->s3, skey, NULL, &res);
	err = s3_errno(rc);
out:
	if (err && err != ENOMEM)
		ferry_logf(FERRY_ERROR, "ferryfs", "rename failed", "msg=\"%s\"", res.msg);
	free(skey);
	free(dkey);
	return err;
}

/*
 * CopyObject stops at 5 GiB (copy_max lowers the limit for tests): a larger object is
 * copied by a multipart upload of UploadPartCopy ranges of the source pinned by its ETag,
 * completed under the same condition a CopyObject would carry. Returns an errno; a store
 * without UploadPartCopy gives EXDEV, so mv(1) copies through the mount instead.
 */
static int copy_in_parts(struct fs *fs, const char *skey, const char *etag, const char *dkey,
			 uint64_t size, const struct ferry_s3_cond *cond, struct ferry_s3_res *res)
{
	uint64_t part = fs->copy_max;
	char *upload_id = NULL, **etags = NULL;
	int nparts, rc, e = 0;

	if ((size + part - 1) / part > 10000)
		part = ((size + 9999) / 10000 + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
	if (part > FS_COPY_MAX)
		return EFBIG;
	nparts = (int)((size + part - 1) / part);
	etags = calloc((size_t)nparts, sizeof(*etags));
	if (!etags)
		return ENOMEM;
	STAT_ADD(fs, mpu_create, 1);
	rc = ferry_s3_mpu_create(fs->s3, dkey, &upload_id, res);
	if (rc != FERRY_S3_OK) {
		e = s3_errno(rc);
		goto out;
	}
	for (int i = 0; i < nparts && !e; i++) {
		uint64_t off = (uint64_t)i * part, len = size - off < part ? size - off : part;

		etags[i] = calloc(1, FS_ETAG_MAX);
		if (!etags[i]) {
			e = ENOMEM;
			break;
		}
		STAT_ADD(fs, mpu_part_copy, 1);
		rc = ferry_s3_mpu_part_copy(fs->s3, dkey, upload_id, i + 1, skey, etag, off, len,
					    etags[i], res);
		if (rc == FERRY_S3_OK)
			STAT_ADD(fs, bytes_copied, len);
		else if (rc == FERRY_S3_NOTIMPL)
			e = EXDEV;
		else
			e = s3_errno(rc) == ENOENT ? ESTALE : s3_errno(rc);
	}
	if (!e) {
		STAT_ADD(fs, mpu_complete, 1);
		rc = ferry_s3_mpu_complete(fs->s3, dkey, upload_id, etags, nparts, cond, res);
		if (rc != FERRY_S3_OK)
			e = rc == FERRY_S3_PRECONDITION && cond->if_none_match ? EEXIST : s3_errno(rc);
	}
	if (e) {
		struct ferry_s3_res ares;

		STAT_ADD(fs, mpu_abort, 1);
		ferry_s3_mpu_abort(fs->s3, dkey, upload_id, &ares);
	}
out:
	for (int i = 0; i < nparts; i++)
		free(etags[i]);
	free(etags);
	free(upload_id);
	return e;
}

static int rename_file(struct fs *fs, struct node *n, const char *src, const char *dst,
		       unsigned int flags, char *new_etag)
{
	struct ferry_s3_cond cond = { 0 }, dcond = { 0 };
	struct ferry_s3_res res = { 0 };
	char etag[FS_ETAG_MAX] = "";
	char *skey = NULL, *dkey = NULL;
	uint64_t size = 0;
	int err, rc;

	if (n) {
		/* the copy must carry what was written through open handles */
		err = commit_node(fs, n);
		if (err)
			return err;
		pthread_mutex_lock(&n->mu);
		snprintf(etag, sizeof(etag), "%s", n->etag);
		size = n->size;
		pthread_mutex_unlock(&n->mu);
	}
	skey = fs_key(fs, src, false);
	dkey = fs_key(fs, dst, false);
	err = ENOMEM;
	if (!skey || !dkey)
		goto out;
	if (!etag[0]) {
		/* pin the version that gets copied, and learn its size */
		STAT_ADD(fs, head, 1);
		rc = ferry_s3_head(fs->s3, skey, NULL, &res);
		if (rc != FERRY_S3_OK) {
			err = s3_errno(rc);
			goto out_log;
		}
		snprintf(etag, sizeof(etag), "%s", res.etag);
		size = res.size;
	}
	if (flags & RENAME_NOREPLACE)
		cond.if_none_match = "*";
	if (size > fs->copy_max) {
		err = copy_in_parts(fs, skey, etag, dkey, size, &cond, &res);
		if (err)
			goto out_log;
	} else {
		STAT_ADD(fs, copy, 1);
		rc = ferry_s3_copy(fs->s3, skey, etag[0] ? etag : NULL, dkey, &cond, &res);
		if (rc != FERRY_S3_OK) {
			err = rc == FERRY_S3_PRECONDITION && (flags & RENAME_NOREPLACE) ? EEXIST :
			      s3_errno(rc);
			goto out_log;
		}
		STAT_ADD(fs, bytes_copied, res.size);
	}
	snprintf(new_etag, FS_ETAG_MAX, "%s", res.etag);
	/* delete only the version we copied; a newer one is someone else's */
	dcond.if_match = etag[0] ? etag : NULL;
	STAT_ADD(fs, delete, 1);
	rc = ferry_s3_delete(fs->s3, skey, &dcond, &res);
	if (rc != FERRY_S3_OK)
		ferry_logf(FERRY_WARN, "ferryfs", "rename left the source in place", "msg=\"%s\"",
			   res.msg);
	err = 0;
	goto out;
out_log:
	if (err != EEXIST)
		ferry_logf(FERRY_ERROR, "ferryfs", "rename failed", "msg=\"%s\" err='%s'", res.msg,
			   strerror(err));
out:
	free(skey);
	free(dkey);
	return err;
}

void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	char new_etag[FS_ETAG_MAX] = "";
	struct node *n, *d;
	struct probe pr;
	char *src, *dst;
	bool is_dir;
	int err = 0;

	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (stats_is(fs, node_of(fs, parent), name) ||
	    stats_is(fs, node_of(fs, newparent), newname)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	src = node_join(fs, node_of(fs, parent), name);
	dst = node_join(fs, node_of(fs, newparent), newname);
	if (!src || !dst) {
		err = ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&fs->mu);
	n = node_get(fs, src);
	pthread_mutex_unlock(&fs->mu);
	if (n) {
		is_dir = n->is_dir;
	} else {
		err = node_probe(fs, src, &pr);
		if (err)
			goto out;
		is_dir = pr.is_dir;
	}
	err = is_dir ? rename_dir(fs, src, dst, flags) : rename_file(fs, n, src, dst, flags, new_etag);
	if (err)
		goto out;
	pthread_mutex_lock(&fs->mu);
	d = node_get(fs, dst);
	if (d && d != n) {
		pthread_mutex_lock(&d->mu);
		d->unlinked = true;         /* replaced: its handles must not commit over n */
		pthread_mutex_unlock(&d->mu);
		node_detach(fs, d);
	}
	if (n && node_move(fs, n, dst)) {
		pthread_mutex_lock(&n->mu);
		if (!is_dir && new_etag[0]) {
			snprintf(n->etag, sizeof(n->etag), "%s", new_etag);
			if (n->nopen)
				snprintf(n->base_etag, sizeof(n->base_etag), "%s", new_etag);
		}
		pthread_mutex_unlock(&n->mu);
	}
	pthread_mutex_unlock(&fs->mu);
out:
	fuse_reply_err(req, err);
	free(src);
	free(dst);
}
