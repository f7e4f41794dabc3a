/* ferry_fsproto.h: the protocol between ferryfs and its clients (pull, push, mount, the
 * page engine): the names a client sees on a mount, spelled once. ferryfs serves them;
 * everyone else reads or sets them. A rename here changes both sides at compile time. */
#ifndef FERRY_FSPROTO_H
#define FERRY_FSPROTO_H

/* The object's ETag of the version an open file reads (getxattr, read-only). */
#define FERRY_XATTR_ETAG     "user.ferry.etag"
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

/* A read-only JSON file in the mount's root with the mount's request counters. */
#define FERRY_FS_STATS_NAME  ".ferryfs-stats"

/* /proc/self/mountinfo: the file system type, and the mount source "ferryfs#BUCKET" or
 * "ferryfs#BUCKET:PREFIX" (FUSE's fsname=). */
#define FERRY_FS_TYPE        "fuse.ferryfs"
#define FERRY_FS_SOURCE      "ferryfs#"

#endif
