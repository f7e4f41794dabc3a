/* ferry_fsclient.h: the client side of ferryfs: its stats file, mounts, ETag and fetch xattrs. */
#ifndef FERRY_FSCLIENT_H
#define FERRY_FSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Counters from a ferryfs mount's .ferryfs-stats (JSON); false when not available. */
struct ferry_fsstats {
	uint64_t bytes_down;                /* read from S3 */
	uint64_t bytes_up;                  /* written to S3 */
	uint64_t bytes_copied;              /* copied inside S3 (server-side copies) */
	uint64_t requests;                  /* S3 requests made */
};
bool ferry_fsstats_read(const char *mount_root, struct ferry_fsstats *out);
/* Mount root for a path: the fact if given, else the nearest parent directory that
 * holds .ferryfs-stats; malloc'd, NULL if none. */
char *ferry_fsstats_root(const char *path, const char *mountpoint_fact);

/* The S3 object behind a path on a ferryfs mount: finds the mount in mountinfo (normally
 * /proc/self/mountinfo; fstype fuse.ferryfs, source "ferryfs#BUCKET[:PREFIX]") and
 * returns PREFIX/RELATIVE-PATH (malloc'd) with the bucket in bucket; NULL when the
 * path is not on a ferryfs mount. */
char *ferry_pages_ferryfs_key(const char *mountinfo, const char *path, char *bucket, size_t blen);

/* ETag of a file on ferryfs (xattr user.ferry.etag) into out; 0, or -1 with errno
 * (ENODATA/ENOTSUP: unknown, e.g. a plain local file). */
int ferry_pages_etag_fd(int fd, char *out, size_t outlen);
int ferry_pages_etag_path(const char *path, char *out, size_t outlen);

/* Asks ferryfs to fetch only the bytes read through fd (xattr user.ferry.fetch=ranged):
 * no whole-file fetch after a random read. Only for an fd known to be on ferryfs (its
 * ETag is known): a plain file would keep the xattr. 0, or -1 with errno. */
int ferry_pages_ferryfs_ranged(int fd);

#endif
