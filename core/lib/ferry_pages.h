/* ferry_pages.h: SQLite page engine shared by pull and push (header checks, page hashes, diffs). */
#ifndef FERRY_PAGES_H
#define FERRY_PAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY_PAGE_HASH_LEN  16            /* SHA-256 of a page, truncated */
#define FERRY_LOCK_BYTE_OFF  0x40000000ULL /* SQLite's lock-byte page starts here (1 GiB) */
#define FERRY_ETAG_MAX       80            /* an origin ETag with quotes, NUL included */

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

/* Long loops report through this: cancellation and progress. */
struct ferry_pages_cb {
	bool (*cancelled)(void *arg);       /* true: stop with ECANCELED; may be NULL */
	void *arg;
	const char *what;                   /* "pull", "push": who reports (the log lines' stage) */
	const char *step;                   /* what is being done, "fetching changed pages";
					     * set by the caller before each long step */
	bool progress;                      /* report progress (ferry_progress_*) */
};
/* Callbacks of a stage: cancelled(arg) (e.g. ferry_cancelled of its context), progress on. */
void ferry_pages_cb_init(struct ferry_pages_cb *cb, bool (*cancelled)(void *arg), void *arg,
			 const char *what);
/* Progress of one long step, in pages (and bytes). Where a line may be redrawn in place
 * (ferry_log_live: a terminal, plain format, not -q) a live line
 * "\rWHAT: pages D/T, X.Y MiB, R MiB/s" at most ~5 times a second. Elsewhere (a container
 * log, `fly logs`, JSON lines) a log line every ferry_log_progress_ms() (10 s):
 * "STEP pages_done=D pages_total=T pct=P mib=X mib_per_s=R elapsed_s=E eta_s=S", and
 * one "STEP done ..." line at the end of a step that logged any. */
struct ferry_progress {
	const struct ferry_pages_cb *cb;
	uint64_t total;                     /* pages */
	uint64_t done;
	uint64_t bytes;
	int64_t start_ms;                   /* ferry_mono_ms() at init */
	int64_t last_ms;                    /* ferry_mono_ms() at the last line */
	int64_t every_ms;                   /* between two log lines */
	bool live;                          /* a redrawn terminal line, else log lines */
	bool drawn;                         /* a live line or a log line went out */
};
void ferry_progress_init(struct ferry_progress *p, const struct ferry_pages_cb *cb, uint64_t total);
void ferry_progress_add(struct ferry_progress *p, uint64_t pages, uint64_t bytes);
void ferry_progress_end(struct ferry_progress *p);

/* Hash pages [0, page_count) of an open file into hashes (page_count * 16 bytes),
 * reading big chunks with pread; the lock-byte page is skipped (zero hash). Adds the
 * bytes read to *bytes_read when not NULL. Returns 0, or -1 with a reason in err. */
int ferry_pages_hash_fd(int fd, uint32_t page_size, uint64_t page_count, unsigned char *hashes,
			const struct ferry_pages_cb *cb, uint64_t *bytes_read, char *err,
			size_t errlen);
/* The same for pages [first, first + count): hashes[i] is the hash of page i (the array
 * is indexed from page 0). */
int ferry_pages_hash_range(int fd, uint32_t page_size, uint64_t first, uint64_t count,
			   unsigned char *hashes, const struct ferry_pages_cb *cb,
			   uint64_t *bytes_read, char *err, size_t errlen);

/* PRAGMA quick_check (full: integrity_check) on a local database file, opened read-only
 * and immutable (no -wal/-shm/-journal files appear). 0, or -1 with the first complaint. */
int ferry_pages_sqlite_check(const char *path, bool full, char *err, size_t errlen);
/* Merge a WAL into the database file: PRAGMA wal_checkpoint(TRUNCATE); -1 when busy. */
int ferry_pages_checkpoint(const char *path, char *err, size_t errlen);

/* The directory holding path exists (a missing one usually means: no mount). */
bool ferry_pages_parent_exists(const char *path);
/* a followed by b, malloc'd (NULL when out of memory): "REPLICA" + ".ferry-state". */
char *ferry_pages_concat(const char *a, const char *b);

#endif
