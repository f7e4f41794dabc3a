/* ferry_fsproto.h: the protocol between ferryfs and its clients (pull, push, mount, the
 * page engine): the names a client sees on a mount, spelled once. ferryfs serves them;
 * everyone else reads or sets them. A rename here changes both sides at compile time. */
#ifndef FERRY_FSPROTO_H
#define FERRY_FSPROTO_H

#include <stdint.h>

/* The object's ETag of the version an open file reads (getxattr, read-only). */
#define FERRY_XATTR_ETAG     "user.ferry.etag"
/* How the last commit of this file (by this mount) was proven (getxattr, read-only; ENODATA
 * before any commit): "md5", the store's ETags prove every byte of the new object: each
 * uploaded part or PUT went with Content-MD5 and came back with that MD5 as its ETag, the
 * copied parts' ETags and those make the object's ETag, which Complete and a HEAD after it
 * both gave (and the HEAD the size); "none", the store's ETags are not MD5s (SSE-KMS,
 * some stores): a client must read back what it needs to trust. */
#define FERRY_XATTR_VERIFIED "user.ferry.verified"
#define FERRY_VERIFIED_MD5   "md5"
#define FERRY_VERIFIED_NONE  "none"
/* When an open file's changes are committed (setxattr, write-only): "fsync", only
 * fsync(2) commits (a writer that dies half-way leaves the object as it was); "close",
 * the default, the last close commits too. */
#define FERRY_XATTR_COMMIT   "user.ferry.commit"
#define FERRY_COMMIT_FSYNC   "fsync"
#define FERRY_COMMIT_CLOSE   "close"
/* What a random read fetches (setxattr, write-only): "ranged", only the bytes read (the
 * reader knows its pages); "auto", the default, the whole file after enough random reads. */
#define FERRY_XATTR_FETCH    "user.ferry.fetch"
#define FERRY_FETCH_RANGED   "ranged"
#define FERRY_FETCH_AUTO     "auto"

/* ferryfs commits objects of more than one part in this layout: part 0 holds bytes
 * [0, FERRY_FS_PART0_SIZE), 5 MiB, the smallest part S3 takes (SQLite rewrites page 1, its
 * change counter, on every rollback-journal commit: the part holding it is uploaded each
 * time, so it is small); part i >= 1 holds FERRY_FS_PART_SIZE bytes from
 * FERRY_FS_PART0_SIZE + (i - 1) * FERRY_FS_PART_SIZE (the last may be shorter). A part with
 * no changed byte is copied server-side from the version the file was opened at. Every
 * SQLite page size divides both sizes, so a page never straddles two parts. */
#define FERRY_FS_PART0_SIZE  (5ull << 20)
#define FERRY_FS_PART_SIZE   (8ull << 20)

/* How the two writers of an object in this layout (ferryfs's commits, push's write from
 * the replica: ferry_s3_upload) send it: a write with no part to copy is one PUT up to
 * FERRY_FS_PUT_MAX (ferryfs: -o put_max), parts go FERRY_FS_UPLOAD_THREADS at a time. */
#define FERRY_FS_PUT_MAX        (256ull << 20)
#define FERRY_FS_UPLOAD_THREADS 4

/* The part holding byte off. */
static inline uint64_t ferry_fs_part_of(uint64_t off)
{
	return off < FERRY_FS_PART0_SIZE ? 0 : 1 + (off - FERRY_FS_PART0_SIZE) / FERRY_FS_PART_SIZE;
}

/* Where part i starts. */
static inline uint64_t ferry_fs_part_start(uint64_t i)
{
	return i == 0 ? 0 : FERRY_FS_PART0_SIZE + (i - 1) * FERRY_FS_PART_SIZE;
}

/* Bytes of part i of an object of size bytes (0 past its end). */
static inline uint64_t ferry_fs_part_len(uint64_t i, uint64_t size)
{
	uint64_t a = ferry_fs_part_start(i), b = ferry_fs_part_start(i + 1);

	return a >= size ? 0 : (b < size ? b : size) - a;
}

/* Parts of an object of size bytes (at least one). */
static inline uint64_t ferry_fs_nparts(uint64_t size)
{
	return size <= FERRY_FS_PART0_SIZE ? 1 :
	       1 + (size - FERRY_FS_PART0_SIZE + FERRY_FS_PART_SIZE - 1) / FERRY_FS_PART_SIZE;
}

/* A read-only JSON file in the mount's root with the mount's request counters. */
#define FERRY_FS_STATS_NAME  ".ferryfs-stats"

/* /proc/self/mountinfo: the file system type, and the mount source "ferryfs#BUCKET" or
 * "ferryfs#BUCKET:PREFIX" (FUSE's fsname=). */
#define FERRY_FS_TYPE        "fuse.ferryfs"
#define FERRY_FS_SOURCE      "ferryfs#"

#endif
