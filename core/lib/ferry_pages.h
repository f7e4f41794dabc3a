/* ferry_pages.h: SQLite page engine shared by pull and push (header checks, page hashes, manifests, crash-safe patching). */
#ifndef FERRY_PAGES_H
#define FERRY_PAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY_PAGE_HASH_LEN  16            /* SHA-256 of a page, truncated */
#define FERRY_DB_SUM_LEN     32            /* SHA-256 over the page hashes (see pages.c) */
#define FERRY_LOCK_BYTE_OFF  0x40000000ULL /* SQLite's lock-byte page starts here (1 GiB) */
#define FERRY_ETAG_MAX       80

/* What the 100-byte SQLite header and the file size say about a database file. */
struct ferry_db_info {
	uint32_t page_size;                 /* 512..65536; 0 for an empty (0-byte) file */
	uint64_t page_count;                /* pages of the database (not the file's tail) */
	uint64_t file_size;                 /* st_size of the file */
	bool wal_mode;                      /* header read/write versions say WAL */
};

/* Parse the first bytes of a database file (n >= 100 unless the file is empty). Errors:
 * bad magic, bad page size, file shorter than the header's page count, a size that is
 * not a whole number of pages. Returns 0, or -1 with a reason in err. */
int ferry_pages_parse_header(const unsigned char *hdr, size_t n, uint64_t file_size,
			     struct ferry_db_info *out, char *err, size_t errlen);
/* fstat + pread of the header of an open database file. */
int ferry_pages_probe_fd(int fd, struct ferry_db_info *out, char *err, size_t errlen);
/* A rollback journal next to dbpath that SQLite would replay ("hot"): DBPATH-journal
 * exists, is not empty and starts with the journal magic. */
bool ferry_pages_has_hot_journal(const char *dbpath);
/* DBPATH-wal exists and is not empty. */
bool ferry_pages_has_wal(const char *dbpath);

/* 0-based index of the lock-byte page for a page size; it is never read, hashed
 * (its hash is all zeros) nor written. */
uint64_t ferry_pages_lock_index(uint32_t page_size);
bool ferry_pages_is_lock_page(uint64_t index, uint32_t page_size);

/* The pages of a new version to write over an old one: every index below new_count,
 * except the lock-byte page, at or past old_count or whose hash differs (pass old_count
 * 0 when everything moves, e.g. another page size). *out is malloc'd (never NULL on
 * success, even when *n is 0). 0, or -1 when out of memory. */
int ferry_pages_diff(const unsigned char *new_hashes, uint64_t new_count,
		     const unsigned char *old_hashes, uint64_t old_count, uint32_t page_size,
		     uint64_t **out, size_t *n);

/* Per-page hashing (SHA-256 via OpenSSL EVP, fetched once). */
struct ferry_hasher;
struct ferry_hasher *ferry_hasher_new(void);
void ferry_hasher_free(struct ferry_hasher *h);
int ferry_hasher_page(struct ferry_hasher *h, const void *page, size_t len,
		      unsigned char out[FERRY_PAGE_HASH_LEN]);

/* Long loops report through this: cancellation and a progress line on a TTY. */
struct ferry_pages_cb {
	bool (*cancelled)(void *arg);       /* true: stop with ECANCELED; may be NULL */
	void *arg;
	const char *what;                   /* "pull", "push": prefix of the progress line */
	bool progress;                      /* draw a progress line on stderr (a TTY) */
};
/* Callbacks of a stage: cancelled(arg) (e.g. ferry_cancelled of its context), and a
 * progress line when stderr is a TTY. */
void ferry_pages_cb_init(struct ferry_pages_cb *cb, bool (*cancelled)(void *arg), void *arg,
			 const char *what);
/* Progress line: "\rWHAT: pages D/T, X.Y MiB, R MiB/s"; at most ~5 times a second. */
struct ferry_progress {
	const struct ferry_pages_cb *cb;
	uint64_t total;                     /* pages */
	uint64_t done;
	uint64_t bytes;
	double start;                       /* monotonic seconds */
	double last;
	bool drawn;
};
void ferry_progress_init(struct ferry_progress *p, const struct ferry_pages_cb *cb, uint64_t total);
void ferry_progress_add(struct ferry_progress *p, uint64_t pages, uint64_t bytes);
void ferry_progress_end(struct ferry_progress *p);

/* Hash pages [0, page_count) of an open file into hashes (page_count * 16 bytes),
 * reading big chunks with pread; the lock-byte page is skipped (zero hash). Adds the
 * bytes read to *bytes_read when not NULL. Returns 0, or -1 with a reason in err. */
int ferry_pages_hash_fd(int fd, uint32_t page_size, uint64_t page_count, unsigned char *hashes,
			const struct ferry_pages_cb *cb, uint64_t *bytes_read, char *err, size_t errlen);
/* The same for pages [first, first + count): hashes[i] is the hash of page i (the array
 * is indexed from page 0). */
int ferry_pages_hash_range(int fd, uint32_t page_size, uint64_t first, uint64_t count,
			   unsigned char *hashes, const struct ferry_pages_cb *cb, uint64_t *bytes_read,
			   char *err, size_t errlen);

/* A manifest: the page hashes of one version of a database. Used for the sidecar next
 * to the origin (written by push for the object's ETag) and for the replica's state
 * file (the origin version the replica was last synced with). Compact binary format,
 * see pages.c. */
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
/* Local file, atomically: PATH.tmp, fsync, rename, fsync of the directory. */
int ferry_manifest_save(const char *path, const struct ferry_manifest *m, char *err, size_t errlen);
/* Write through a mount: open (O_CREAT|O_TRUNC), write, fsync, close (fsync commits). */
int ferry_manifest_put(const char *path, const struct ferry_manifest *m, char *err, size_t errlen);

/* Crash-safe patching of a local file (the replica). Protocol:
 *   begin   writes PATH.ferry-undo with the old size, fsyncs it and the directory;
 *   save    appends a batch of old page contents to the undo file and fsyncs it; only
 *           then may those pages be overwritten;
 *   write / truncate   change the file;
 *   finish  fsyncs the file; commit removes the undo file (the new version is final);
 *   abort   rolls back now. ferry_patch_recover() rolls back after a crash.
 * Each undo record carries its own SHA-256; a torn last record was never acted on. */
struct ferry_patch;
struct ferry_patch *ferry_patch_begin(int fd, const char *path, uint32_t page_size,
				      char *err, size_t errlen);
/* Save the current content of these pages (those below the current size). A page must
 * be saved at most once per patch. */
int ferry_patch_save(struct ferry_patch *p, const uint64_t *pages, size_t n);
int ferry_patch_write(struct ferry_patch *p, uint64_t index, const void *data);
/* Set the final size; pages beyond it must have been saved before shrinking. */
int ferry_patch_truncate(struct ferry_patch *p, uint64_t size);
int ferry_patch_finish(struct ferry_patch *p);
int ferry_patch_commit(struct ferry_patch *p);
int ferry_patch_abort(struct ferry_patch *p);
/* Drop the handle without touching anything (tests: simulated crash). */
void ferry_patch_forget(struct ferry_patch *p);
const char *ferry_patch_error(const struct ferry_patch *p);
uint64_t ferry_patch_undo_bytes(const struct ferry_patch *p);
/* At start: roll back PATH from PATH.ferry-undo if present. *rolled_back tells whether
 * pages were restored (a torn undo file is just removed). 0, or -1 with err. */
int ferry_patch_recover(const char *path, bool *rolled_back, char *err, size_t errlen);
/* The same for a stage (pull and push both start with it): logs a rollback as who; 0, or
 * -1 with "cannot roll back the interrupted pull of 'REPLICA': why" in err. */
int ferry_pages_recover(const char *who, const char *replica, char *err, size_t errlen);

/* PRAGMA quick_check (full: integrity_check) on a local database file, opened read-only
 * and immutable (no -wal/-shm/-journal files appear). 0, or -1 with the first complaint. */
int ferry_pages_sqlite_check(const char *path, bool full, char *err, size_t errlen);
/* Merge a WAL into the database file: PRAGMA wal_checkpoint(TRUNCATE); -1 when busy. */
int ferry_pages_checkpoint(const char *path, char *err, size_t errlen);

/* The directory holding path exists (a missing one usually means: no mount). */
bool ferry_pages_parent_exists(const char *path);
/* a followed by b, malloc'd (NULL when out of memory): "REPLICA" + ".ferry-state". */
char *ferry_pages_concat(const char *a, const char *b);

/* Counters from a ferryfs mount's .ferryfs-stats (JSON); false when not available. */
struct ferry_fsstats {
	uint64_t bytes_down;
	uint64_t bytes_up;
	uint64_t bytes_copied;
	uint64_t requests;
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
