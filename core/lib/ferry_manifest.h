/* ferry_manifest.h: manifests, the page hashes of one database version (sidecar, replica state). */
#ifndef FERRY_MANIFEST_H
#define FERRY_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry_pages.h"

#define FERRY_DB_SUM_LEN     32            /* SHA-256 over the page hashes (see manifest.c) */

/* A manifest: the page hashes of one version of a database. Used for the sidecar next
 * to the origin (written by push for the object's ETag) and for the replica's state
 * file (the origin version the replica was last synced with). Compact binary format,
 * see manifest.c. */
struct ferry_manifest {
	uint32_t page_size;                 /* 0 with page_count 0: empty database */
	uint64_t page_count;
	uint64_t generation;                /* lock generation of the writer, 0 if unknown */
	uint32_t flags;                     /* FERRY_MANIFEST_* */
	char etag[FERRY_ETAG_MAX];          /* origin ETag with quotes; "" when unknown */
	unsigned char db_sum[FERRY_DB_SUM_LEN];     /* ferry_manifest_sum() of the hashes */
	unsigned char *hashes;              /* page_count * FERRY_PAGE_HASH_LEN, malloc'd */
};
#define FERRY_MANIFEST_ABSENT 0x1u         /* state: the origin did not exist (create) */

void ferry_manifest_release(struct ferry_manifest *m);
/* Allocate hashes for page_count pages (zeroed). */
int ferry_manifest_alloc(struct ferry_manifest *m, uint32_t page_size, uint64_t page_count);
/* Compute db_sum: SHA-256 over page size, page count and every page hash. */
void ferry_manifest_sum(struct ferry_manifest *m);
/* Hex of db_sum (65 bytes with the NUL). */
void ferry_manifest_sum_hex(const struct ferry_manifest *m, char out[2 * FERRY_DB_SUM_LEN + 1]);
int ferry_manifest_encode(const struct ferry_manifest *m, unsigned char **buf, size_t *len);
/* Decodes and checks (magic, version, lengths, trailing checksum, db_sum). */
int ferry_manifest_decode(const unsigned char *buf, size_t len, struct ferry_manifest *m,
			  char *err, size_t errlen);
/* Read a manifest file; returns 0, -1 with err, or -2 when the file does not exist. */
int ferry_manifest_load(const char *path, struct ferry_manifest *m, char *err, size_t errlen);
/* The longest header: what a reader of a manifest's first bytes asks for. */
#define FERRY_MANIFEST_HEAD_MAX (38 + FERRY_ETAG_MAX + FERRY_DB_SUM_LEN)
/* The header from a manifest's first got bytes, the whole being len bytes long (as peek,
 * for bytes read some other way, e.g. one ranged GET). 0, or -1 with err. */
int ferry_manifest_head_decode(const unsigned char *buf, size_t got, uint64_t len,
			       struct ferry_manifest *m, char *err, size_t errlen);
/* A manifest file's header only (etag, page size and count, generation, flags, db_sum;
 * no hashes: m->hashes is NULL, nothing to release), its length checked against it but
 * not its trailing checksum; on ferryfs only that range is fetched. 0, -1 with err, or -2
 * when the file does not exist. */
int ferry_manifest_peek(const char *path, struct ferry_manifest *m, char *err, size_t errlen);
/* Local file, atomically and durably (ferry_file_replace): PATH.tmp.PID, fsync, rename, fsync
 * of the directory. */
int ferry_manifest_save(const char *path, const struct ferry_manifest *m, char *err, size_t errlen);
/* Write through a mount: open (O_CREAT|O_TRUNC), write, fsync, close (fsync commits). */
int ferry_manifest_put(const char *path, const struct ferry_manifest *m, char *err, size_t errlen);

/* The replica's stamp, REPLICA.ferry-stamp: "while the replica has this identity (device,
 * inode, size, mtime, ctime), its pages are those of the state file whose db_sum is S".
 * Written after a sync (pull, push); while it holds, pull and push take the state's page
 * hashes instead of hashing the replica again. Any write changes mtime and ctime (ctime
 * cannot be set back by anyone); as in git's racy-clean rule a stamp is trusted only when
 * the replica's mtime is older than the stamp file's own, so that a write in the clock
 * tick of the stamp is never missed (save waits out that tick when it must, <= 20 ms). */
int ferry_replica_stamp_save(const char *replica, const struct ferry_manifest *state, char *err,
			     size_t errlen);
/* Does the stamp hold for the open replica fd and this state? */
bool ferry_replica_stamp_holds(const char *replica, int fd, const struct ferry_manifest *state);

#endif
