/* xattr.c: ferryfs's user.ferry.* extended attributes (named in ferry_fsproto.h). */
#include "ferryfs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = fs_of(req);
	char etag[FS_ETAG_MAX] = "";
	struct node *n;
	size_t len;

	bool verified = ino != FS_STATS_INO && strcmp(name, FERRY_XATTR_VERIFIED) == 0;

	if (ino == FS_STATS_INO || (strcmp(name, FERRY_XATTR_ETAG) != 0 && !verified)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	n = node_of(fs, ino);
	pthread_mutex_lock(&n->mu);
	if (verified && n->verified)        /* the value travels in etag[] */
		snprintf(etag, sizeof(etag), "%s", n->verified > 0 ? FERRY_VERIFIED_MD5 :
			 FERRY_VERIFIED_NONE);
	else if (!verified && !n->is_dir && !n->is_new)
		snprintf(etag, sizeof(etag), "%s", n->nopen ? n->base_etag : n->etag);
	pthread_mutex_unlock(&n->mu);
	len = strlen(etag);
	if (!len)
		fuse_reply_err(req, ENODATA);
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, etag, len);
}

void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = fs_of(req);
	static const char list[] = FERRY_XATTR_ETAG;
	bool has = false;
	struct node *n;

	if (ino != FS_STATS_INO) {
		n = node_of(fs, ino);
		pthread_mutex_lock(&n->mu);
		has = !n->is_dir && !n->is_new && (n->nopen ? n->base_etag[0] : n->etag[0]);
		pthread_mutex_unlock(&n->mu);
	}
	if (!has)
		fuse_reply_xattr(req, 0);
	else if (size == 0)
		fuse_reply_xattr(req, sizeof(list));
	else if (size < sizeof(list))
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, list, sizeof(list));
}

/*
 * user.ferry.commit on an open file chooses when its changes are committed:
 *   "close" (default)  every close(2) and fsync(2) commits;
 *   "fsync"            only fsync(2) commits; changes not committed when the last handle
 *                      is released are discarded.
 * A writer that patches a file in place (push) sets "fsync": if it dies half-way, the
 * kernel's close of its descriptors must not commit a half-written object. The setting
 * lasts until the last handle of the file is released.
 * user.ferry.fetch on an open file chooses what a random read fetches:
 *   "auto" (default)   its own pages, then (files up to fetch_whole) the rest of the file
 *                      in the background;
 *   "ranged"           its own pages only. pull and push set it: they know which pages
 *                      they need, and bytes moved are what they report.
 * It also lasts until the last handle is released. Other names: ENOTSUP.
 */

/* An xattr value (not NUL-terminated, size bytes) equals the protocol word w. */
static bool value_is(const char *value, size_t size, const char *w)
{
	return size == strlen(w) && memcmp(value, w, size) == 0;
}

void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		 size_t size, int flags)
{
	struct fs *fs = fs_of(req);
	struct node *n;
	bool commit = strcmp(name, FERRY_XATTR_COMMIT) == 0, on;

	(void)flags;
	if (ino == FS_STATS_INO || (!commit && strcmp(name, FERRY_XATTR_FETCH) != 0)) {
		fuse_reply_err(req, ENOTSUP);
		return;
	}
	/* on: fsync-only commits, or ranged-only fetches */
	if (commit && (value_is(value, size, FERRY_COMMIT_FSYNC) ||
		       value_is(value, size, FERRY_COMMIT_CLOSE))) {
		on = value_is(value, size, FERRY_COMMIT_FSYNC);
	} else if (!commit && (value_is(value, size, FERRY_FETCH_RANGED) ||
			       value_is(value, size, FERRY_FETCH_AUTO))) {
		on = value_is(value, size, FERRY_FETCH_RANGED);
	} else {
		fuse_reply_err(req, EINVAL);
		return;
	}
	n = node_of(fs, ino);
	pthread_mutex_lock(&n->mu);
	if (n->is_dir || n->nopen == 0) {
		pthread_mutex_unlock(&n->mu);
		fuse_reply_err(req, n->is_dir ? EISDIR : EBADF);   /* only for an open file */
		return;
	}
	if (commit)
		n->fsync_only = on;
	else
		n->fetch_ranged = on;
	pthread_mutex_unlock(&n->mu);
	fuse_reply_err(req, 0);
}

void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	fuse_reply_err(req, ENOTSUP);
}
