/* file.c: ferryfs's open files: create, open, read, write, commits on close, setattr, unlink. */
#include "ferryfs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ferry_log.h"
#include "ferry_time.h"

static void handle_track(struct fs *fs, struct handle *h)
{
	node_track_open(fs, &fs->handles, &h->link);
}

static void handle_free(struct fs *fs, struct handle *h)
{
	node_untrack_open(fs, &fs->handles, &h->link);
	free(h->text);
	free(h);
}

/* At exit: handles the kernel never released (unmounted while files were open). */
void file_release_handles(struct fs *fs)
{
	while (fs->handles)
		handle_free(fs, OPEN_OF(fs->handles, struct handle, link));
}

/* Opens n's data state (n->nopen++), pinning the current object version. */
static int open_node(struct fs *fs, struct node *n, bool trunc)
{
	struct ferry_s3_res res;
	char *key;
	int rc, err = 0;

	key = fs_node_key(fs, n);
	if (!key)
		return ENOMEM;
	pthread_mutex_lock(&n->mu);
	if (n->nopen > 0 && n->stale && !n->is_new) {
		/* Its pinned version is gone (a GET or a commit got 412) while other handles
		 * are still open, e.g. the RELEASE of a close(2) not yet in. Sharing their
		 * state would fail every read: ESTALE makes the kernel look the name up again,
		 * and the detached node makes that lookup find the new version. */
		err = ESTALE;
		goto out_unlock;
	}
	if (n->nopen == 0 && !n->is_new) {
		pthread_mutex_unlock(&n->mu);
		STAT_ADD(fs, head, 1);
		rc = ferry_s3_head(fs->s3, key, NULL, &res);
		pthread_mutex_lock(&n->mu);
		if (n->nopen == 0) {
			if (rc != FERRY_S3_OK) {
				err = s3_errno(rc);
				if (rc != FERRY_S3_NOTFOUND) {
					STAT_ADD(fs, errors, 1);
					ferry_logf(FERRY_ERROR, "ferryfs", "open failed", "msg=\"%s\"",
						   res.msg);
				}
				goto out_unlock;
			}
			if (n->etag[0] && strcmp(n->etag, res.etag) != 0) {
				/* ESTALE makes the kernel redo the lookup (LOOKUP_REVAL), which
				 * then finds the new version under a new node */
				err = ESTALE;
				goto out_unlock;
			}
			snprintf(n->etag, sizeof(n->etag), "%s", res.etag);
			snprintf(n->base_etag, sizeof(n->base_etag), "%s", res.etag);
			n->size = res.size;
			n->base_limit = res.size;
			if (res.last_modified) {
				n->mtime.tv_sec = res.last_modified;
				n->mtime.tv_nsec = 0;
			}
			n->attr_ms = ferry_mono_ms();
			data_open_state(n);
			n->changed = false;
		}
	} else if (n->nopen == 0) {
		/* a local new file whose first commit failed: still nothing on S3 */
		data_open_state(n);
		n->base_etag[0] = '\0';
		n->base_limit = 0;
		n->changed = true;
	}
	if (trunc && n->size) {
		err = data_truncate(fs, n, 0);
		if (err)
			goto out_unlock;
	}
	n->nopen++;
out_unlock:
	pthread_mutex_unlock(&n->mu);
	if (err == ESTALE || err == ENOENT) {
		pthread_mutex_lock(&fs->mu);
		if (n->nopen == 0 || err == ESTALE)
			node_detach(fs, n);
		pthread_mutex_unlock(&fs->mu);
	}
	free(key);
	return err;
}

static void close_node(struct fs *fs, struct node *n)
{
	bool detach = false;

	pthread_mutex_lock(&n->mu);
	/* waiting drops n->mu: an open may come in meanwhile and keep the state alive */
	if (n->nopen == 1)
		data_quiesce(n);
	if (--n->nopen == 0) {
		if (n->changed && !n->unlinked) {
			ferry_logf(FERRY_ERROR, "ferryfs", "discarding uncommitted changes",
				   "path='%s' size=%" PRIu64, n->path, n->size);
			/* The kernel's page cache and size of this inode now hold bytes S3 never
			 * got: retire the inode. The next lookup makes a new one from S3, and an
			 * open through a cached dentry gets ESTALE, which makes the kernel look
			 * the name up again. */
			n->discarded = true;
			detach = true;
		}
		data_close_state(fs, n);
	}
	pthread_mutex_unlock(&n->mu);
	if (detach) {
		pthread_mutex_lock(&fs->mu);
		node_detach(fs, n);
		pthread_mutex_unlock(&fs->mu);
	}
	/* the kernel may have forgotten n while it was open */
	node_unref(fs, n, 0);
}

void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node *n;
	struct stat st;
	int err = 0;

	(void)fi;
	if (ino == FS_STATS_INO) {
		fuse_reply_err(req, EACCES);
		return;
	}
	n = node_of(fs, ino);
	/* S3 keeps no modes or owners: accept only what we already report */
	if ((to_set & FUSE_SET_ATTR_MODE) &&
	    (attr->st_mode & 07777) != (unsigned)(n->is_dir ? 0755 : 0644)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != fs->uid) ||
	    ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != fs->gid)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		bool internal;

		if (n->is_dir) {
			fuse_reply_err(req, EISDIR);
			return;
		}
		pthread_mutex_lock(&n->mu);
		internal = n->nopen == 0;
		pthread_mutex_unlock(&n->mu);
		/* truncate(2) by path has no close to commit at: open, apply, commit here */
		if (internal) {
			err = open_node(fs, n, false);
			if (err) {
				fuse_reply_err(req, err);
				return;
			}
		}
		pthread_mutex_lock(&n->mu);
		if ((uint64_t)attr->st_size != n->size)
			err = data_truncate(fs, n, (uint64_t)attr->st_size);
		pthread_mutex_unlock(&n->mu);
		if (internal) {
			if (!err)
				err = commit_node(fs, n);
			close_node(fs, n);
		}
		if (err) {
			fuse_reply_err(req, err);
			return;
		}
	}
	pthread_mutex_lock(&n->mu);
	/* kept in memory only: S3's LastModified wins once the node is refreshed */
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		clock_gettime(CLOCK_REALTIME, &n->mtime);
	else if (to_set & FUSE_SET_ATTR_MTIME)
		n->mtime = attr->st_mtim;
	node_attr(fs, n, &st);
	pthread_mutex_unlock(&n->mu);
	fuse_reply_attr(req, &st, fs->attr_timeout);
}

void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct node *n;
	bool local_only = false;
	char *path;
	int err = 0;

	if (stats_is(fs, node_of(fs, parent), name)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	path = node_join(fs, node_of(fs, parent), name);
	if (!path) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = node_get(fs, path);
	if (n) {
		pthread_mutex_lock(&n->mu);
		local_only = n->is_new;
		n->unlinked = true;
		pthread_mutex_unlock(&n->mu);
		node_detach(fs, n);
	}
	pthread_mutex_unlock(&fs->mu);
	if (!local_only)
		err = fs_delete(fs, path, false, "unlink failed");
	fuse_reply_err(req, err);
	free(path);
}

void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ferry_s3_cond cond = { .if_none_match = "*" };
	struct ferry_s3_res res = { 0 };
	struct fuse_entry_param e;
	bool excl = fi->flags & O_EXCL;
	struct handle *h = NULL;
	struct node *n, *old;
	char *path, *key = NULL;
	int err = 0, rc;

	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (stats_is(fs, node_of(fs, parent), name)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	path = node_join(fs, node_of(fs, parent), name);
	key = path ? fs_key(fs, path, false) : NULL;
	h = calloc(1, sizeof(*h));
	if (!key || !h) {
		err = ENOMEM;
		goto out;
	}
	if (excl) {
		/* O_EXCL is a conditional create on S3, decided now */
		STAT_ADD(fs, put, 1);
		rc = ferry_s3_put(fs->s3, key, "", 0, &cond, &res);
		if (rc != FERRY_S3_OK) {
			err = rc == FERRY_S3_PRECONDITION ? EEXIST : s3_errno(rc);
			if (rc != FERRY_S3_PRECONDITION)
				ferry_logf(FERRY_ERROR, "ferryfs", "create failed", "msg=\"%s\"", res.msg);
			goto out;
		}
	}
	pthread_mutex_lock(&fs->mu);
	old = node_get(fs, path);
	if (old)
		node_detach(fs, old);
	n = node_new(fs, path, false);
	if (!n) {
		pthread_mutex_unlock(&fs->mu);
		err = ENOMEM;
		goto out;
	}
	n->nlookup++;
	pthread_mutex_lock(&n->mu);
	n->is_new = !excl;
	snprintf(n->etag, sizeof(n->etag), "%s", excl ? res.etag : "");
	snprintf(n->base_etag, sizeof(n->base_etag), "%s", n->etag);
	n->size = 0;
	n->base_limit = 0;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	n->attr_ms = ferry_mono_ms();
	data_open_state(n);
	n->changed = !excl;
	n->nopen = 1;
	pthread_mutex_unlock(&n->mu);
	pthread_mutex_unlock(&fs->mu);
	h->n = n;
	fi->fh = (uintptr_t)h;
	fi->keep_cache = 1;
	node_entry(fs, n, &e);
	handle_track(fs, h);
	if (fuse_reply_create(req, &e, fi) != 0) {
		close_node(fs, n);
		node_unref(fs, n, 1);
		handle_free(fs, h);
	}
	h = NULL;
out:
	if (err)
		fuse_reply_err(req, err);
	free(h);
	free(key);
	free(path);
}

void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h;
	struct node *n;
	int err;

	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (ino == FS_STATS_INO) {
		if ((fi->flags & O_ACCMODE) != O_RDONLY) {
			free(h);
			fuse_reply_err(req, EACCES);
			return;
		}
		h->text = malloc(4096);
		if (!h->text) {
			free(h);
			fuse_reply_err(req, ENOMEM);
			return;
		}
		h->text_len = (size_t)stats_json(fs, h->text, 4096);
		fi->direct_io = 1;
		fi->fh = (uintptr_t)h;
		handle_track(fs, h);
		if (fuse_reply_open(req, fi) != 0)
			handle_free(fs, h);
		return;
	}
	n = node_of(fs, ino);
	if (n->is_dir) {
		free(h);
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (n->discarded) {
		free(h);
		fuse_reply_err(req, ESTALE);
		return;
	}
	err = open_node(fs, n, fi->flags & O_TRUNC);
	if (err) {
		free(h);
		fuse_reply_err(req, err);
		return;
	}
	h->n = n;
	fi->fh = (uintptr_t)h;
	fi->keep_cache = 1;                 /* a node is one object version (see node_found) */
	handle_track(fs, h);
	if (fuse_reply_open(req, fi) != 0) {
		close_node(fs, n);
		handle_free(fs, h);
	}
}

void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	     struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)ino;
	if (!h->n) {
		size_t o = (size_t)off < h->text_len ? (size_t)off : h->text_len;
		size_t len = h->text_len - o < size ? h->text_len - o : size;
		char copy[4096];

		/* Reply from our own stack: the kernel may finish this read, and the reader
		 * close the file (RELEASE frees h on another thread), while writev is still
		 * returning; ASan checks the iovec after the call (t3003 caught it). */
		if (len > sizeof(copy))
			len = sizeof(copy);
		memcpy(copy, h->text + o, len);
		fuse_reply_buf(req, copy, len);
		return;
	}
	fetch_read(fs_of(req), h, req, size, off);
}

void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	int err;

	(void)ino;
	if (!h->n) {
		fuse_reply_err(req, EACCES);
		return;
	}
	err = data_write(fs_of(req), h->n, buf, size, off);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, size);
}

/* close(2): commits, unless a writer asked for fsync-only commits (see fs_setxattr). */
void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	bool skip = false;

	(void)ino;
	if (h->n) {
		pthread_mutex_lock(&h->n->mu);
		skip = h->n->fsync_only;
		pthread_mutex_unlock(&h->n->mu);
	}
	fuse_reply_err(req, h->n && !skip ? commit_node(fs_of(req), h->n) : 0);
}

void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)ino, (void)datasync;
	fuse_reply_err(req, h->n ? commit_node(fs_of(req), h->n) : 0);
}

void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)ino;
	if (h->n)
		close_node(fs_of(req), h->n);
	handle_free(fs_of(req), h);
	fuse_reply_err(req, 0);
}
