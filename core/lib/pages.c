/* pages.c: the SQLite page engine of pull and push: header checks, page hashes, diffs, progress. */
#include "ferry_pages.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_log.h"
#include "ferry_time.h"
#include "pages_internal.h"

/*
 * The formats of the files around a database live with their code: the manifest and state
 * files in manifest.c, the undo file in patch.c. A page's hash is SHA-256(page)[0..16), all
 * zeros for the lock-byte page, which SQLite never uses and we never copy.
 */

#define CHUNK_BYTES  (4u << 20)            /* reads while hashing a whole file */

static const unsigned char sqlite_magic[16] = "SQLite format 3";
static const unsigned char journal_magic[8] = { 0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7 };

void pages_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

bool pages_valid_size(uint32_t ps)
{
	return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0;
}

ssize_t pages_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

void pages_sha256(const void *a, size_t n, unsigned char out[PAGES_SHA256_LEN])
{
	unsigned int len = 0;

	if (EVP_Digest(a, n, out, &len, EVP_sha256(), NULL) != 1)
		memset(out, 0, PAGES_SHA256_LEN);
}

int ferry_pages_parse_header(const unsigned char *hdr, size_t n, uint64_t file_size,
			     struct ferry_db_info *out, char *err, size_t errlen)
{
	uint32_t ps, hdr_pages;
	bool hdr_valid;

	memset(out, 0, sizeof(*out));
	out->file_size = file_size;
	if (file_size == 0)
		return 0;                   /* SQLite treats an empty file as an empty database */
	if (n < 100 || file_size < 100) {
		pages_seterr(err, errlen,
			     "truncated: %" PRIu64 " bytes is shorter than a database header",
			     file_size);
		return -1;
	}
	if (memcmp(hdr, sqlite_magic, sizeof(sqlite_magic)) != 0) {
		pages_seterr(err, errlen, "not a SQLite database (bad magic)");
		return -1;
	}
	ps = (uint32_t)hdr[16] << 8 | hdr[17];
	if (ps == 1)
		ps = 65536;
	if (!pages_valid_size(ps)) {
		pages_seterr(err, errlen, "not a SQLite database (bad page size %u)", ps);
		return -1;
	}
	if (hdr[18] < 1 || hdr[18] > 2 || hdr[19] < 1 || hdr[19] > 2) {
		pages_seterr(err, errlen, "unsupported SQLite file format (versions %u/%u)",
			     hdr[18], hdr[19]);
		return -1;
	}
	out->page_size = ps;
	out->wal_mode = hdr[18] == 2 || hdr[19] == 2;
	/* The in-header size is valid only when the change counter matches "version valid
	 * for"; older writers left it stale, then the file size rules (SQLite does the same). */
	hdr_pages = be32(hdr + 28);
	hdr_valid = hdr_pages != 0 && be32(hdr + 24) == be32(hdr + 92);
	if (hdr_valid) {
		if ((uint64_t)hdr_pages * ps > file_size) {
			pages_seterr(err, errlen,
				     "truncated: header says %u pages of %u bytes (%" PRIu64
				     " bytes), file has %" PRIu64, hdr_pages, ps,
				     (uint64_t)hdr_pages * ps, file_size);
			return -1;
		}
		out->page_count = hdr_pages;
		return 0;
	}
	if (file_size % ps != 0) {
		pages_seterr(err, errlen,
			     "truncated: size %" PRIu64 " is not a multiple of the page size %u",
			     file_size, ps);
		return -1;
	}
	out->page_count = file_size / ps;
	return 0;
}

int ferry_pages_probe_fd(int fd, struct ferry_db_info *out, char *err, size_t errlen)
{
	unsigned char hdr[100];
	struct stat st;
	ssize_t n = 0;

	if (fstat(fd, &st) != 0) {
		pages_seterr(err, errlen, "cannot stat: %s", strerror(errno));
		return -1;
	}
	if (st.st_size > 0) {
		n = pages_pread_full(fd, hdr, sizeof(hdr), 0);
		if (n < 0) {
			pages_seterr(err, errlen, "cannot read header: %s", strerror(errno));
			return -1;
		}
	}
	return ferry_pages_parse_header(hdr, (size_t)n, (uint64_t)st.st_size, out, err, errlen);
}

static bool side_file(const char *dbpath, const char *suffix, unsigned char *head, size_t n,
		      size_t *got)
{
	char p[PATH_MAX];
	ssize_t r;
	int fd;

	if ((size_t)snprintf(p, sizeof(p), "%s%s", dbpath, suffix) >= sizeof(p))
		return false;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	r = pages_pread_full(fd, head, n, 0);
	close(fd);
	*got = r > 0 ? (size_t)r : 0;
	return true;
}

bool ferry_pages_has_hot_journal(const char *dbpath)
{
	unsigned char head[8];
	size_t got = 0;

	if (!side_file(dbpath, "-journal", head, sizeof(head), &got))
		return false;
	return got == sizeof(head) && memcmp(head, journal_magic, sizeof(head)) == 0;
}

bool ferry_pages_has_wal(const char *dbpath)
{
	unsigned char head[1];
	size_t got = 0;

	return side_file(dbpath, "-wal", head, sizeof(head), &got) && got > 0;
}

uint64_t ferry_pages_lock_index(uint32_t page_size)
{
	return page_size ? FERRY_LOCK_BYTE_OFF / page_size : UINT64_MAX;
}

bool ferry_pages_is_lock_page(uint64_t index, uint32_t page_size)
{
	return page_size && index == ferry_pages_lock_index(page_size);
}

struct ferry_hasher {
	EVP_MD *md;                         /* fetched once: a fetch per page would dominate */
	EVP_MD_CTX *ctx;
};

struct ferry_hasher *ferry_hasher_new(void)
{
	struct ferry_hasher *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!h->md)
		goto out_free;
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx)
		goto out_md;
	return h;
out_md:
	EVP_MD_free(h->md);
out_free:
	free(h);
	return NULL;
}

void ferry_hasher_free(struct ferry_hasher *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	EVP_MD_free(h->md);
	free(h);
}

int ferry_hasher_page(struct ferry_hasher *h, const void *page, size_t len,
		      unsigned char out[FERRY_PAGE_HASH_LEN])
{
	unsigned char full[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (EVP_DigestInit_ex2(h->ctx, h->md, NULL) != 1 ||
	    EVP_DigestUpdate(h->ctx, page, len) != 1 ||
	    EVP_DigestFinal_ex(h->ctx, full, &n) != 1)
		return -1;
	memcpy(out, full, FERRY_PAGE_HASH_LEN);
	return 0;
}

void ferry_progress_init(struct ferry_progress *p, const struct ferry_pages_cb *cb, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->cb = cb && cb->progress ? cb : NULL;
	p->total = total;
	p->start_ms = p->last_ms = ferry_mono_ms();
	p->live = ferry_log_live();
	p->every_ms = p->live ? 200 : ferry_log_progress_ms();
}

static void progress_draw(struct ferry_progress *p, int64_t now_ms)
{
	char line[200];
	double mib = p->bytes / 1048576.0, el = (now_ms - p->start_ms) / 1000.0;
	int n;

	n = snprintf(line, sizeof(line),
		     "\r%s%s%s: pages %" PRIu64 "/%" PRIu64 ", %.1f MiB, %.1f MiB/s ",
		     p->cb->what ? p->cb->what : "pages", p->cb->step ? ", " : "",
		     p->cb->step ? p->cb->step : "", p->done, p->total, mib, el > 0 ? mib / el : 0.0);
	if (n >= (int)sizeof(line))
		n = (int)sizeof(line) - 1;
	/* A TTY progress line, not a log line: it is redrawn in place and never reaches logs. */
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
	p->drawn = true;
}

/* Without a terminal: one log line with how far, how fast and how long yet. */
static void progress_log(struct ferry_progress *p, int64_t now_ms)
{
	const char *step = p->cb->step ? p->cb->step : "working";
	int64_t el_ms = now_ms - p->start_ms;
	double mib = p->bytes / 1048576.0, rate = el_ms > 0 ? mib * 1000.0 / (double)el_ms : 0.0;
	unsigned pct = p->total ? (unsigned)(p->done * 100 / p->total) : 100;

	if (p->done && p->done <= p->total)
		ferry_logf(FERRY_INFO, p->cb->what, step,
			   "pages_done=%" PRIu64 " pages_total=%" PRIu64 " pct=%u mib=%.1f "
			   "mib_per_s=%.1f elapsed_s=%" PRId64 " eta_s=%" PRId64, p->done, p->total,
			   pct, mib, rate, el_ms / 1000,
			   (int64_t)((double)el_ms / 1000.0 * (double)(p->total - p->done) /
				     (double)p->done));
	else                                /* nothing yet: no rate, no estimate */
		ferry_logf(FERRY_INFO, p->cb->what, step,
			   "pages_done=%" PRIu64 " pages_total=%" PRIu64 " pct=%u mib=%.1f "
			   "elapsed_s=%" PRId64, p->done, p->total, pct, mib, el_ms / 1000);
	p->drawn = true;
}

void ferry_progress_add(struct ferry_progress *p, uint64_t pages, uint64_t bytes)
{
	int64_t now_ms;

	p->done += pages;
	p->bytes += bytes;
	if (!p->cb)
		return;
	now_ms = ferry_mono_ms();
	if (now_ms - p->last_ms < p->every_ms)
		return;
	p->last_ms = now_ms;
	if (p->live)
		progress_draw(p, now_ms);
	else
		progress_log(p, now_ms);
}

void ferry_progress_end(struct ferry_progress *p)
{
	int64_t now_ms = ferry_mono_ms(), el_ms = now_ms - p->start_ms;
	char msg[160];

	if (!p->cb || !p->drawn)
		return;
	if (p->live) {
		progress_draw(p, now_ms);
		(void)!write(STDERR_FILENO, "\n", 1);     /* nothing to do if stderr is gone */
		return;
	}
	/* the step logged progress: say how it ended (early, on an error, or complete) */
	snprintf(msg, sizeof(msg), "%s %s", p->cb->step ? p->cb->step : "working",
		 p->done >= p->total ? "done" : "stopped");
	ferry_logf(FERRY_INFO, p->cb->what, msg,
		   "pages_done=%" PRIu64 " pages_total=%" PRIu64 " mib=%.1f mib_per_s=%.1f ms=%" PRId64,
		   p->done, p->total, p->bytes / 1048576.0,
		   el_ms > 0 ? p->bytes / 1048576.0 * 1000.0 / (double)el_ms : 0.0, el_ms);
}

int ferry_pages_diff(const unsigned char *new_hashes, uint64_t new_count,
		     const unsigned char *old_hashes, uint64_t old_count, uint32_t page_size,
		     uint64_t **out, size_t *n)
{
	uint64_t lock = ferry_pages_lock_index(page_size), *l;
	size_t k = 0;

	l = malloc((new_count ? (size_t)new_count : 1) * sizeof(*l));
	if (!l)
		return -1;
	for (uint64_t i = 0; i < new_count; i++)
		if (i != lock && (i >= old_count ||
				  memcmp(new_hashes + i * FERRY_PAGE_HASH_LEN,
					 old_hashes + i * FERRY_PAGE_HASH_LEN,
					 FERRY_PAGE_HASH_LEN) != 0))
			l[k++] = i;
	*out = l;
	*n = k;
	return 0;
}

void ferry_pages_cb_init(struct ferry_pages_cb *cb, bool (*cancelled)(void *arg), void *arg,
			 const char *what)
{
	cb->cancelled = cancelled;
	cb->arg = arg;
	cb->what = what;
	cb->step = NULL;
	cb->progress = true;
}

char *ferry_pages_concat(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 1;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "%s%s", a, b);
	return s;
}

bool ferry_pages_parent_exists(const char *path)
{
	char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
	bool yes;

	if (slash && slash != dir)
		*slash = '\0';
	yes = dir && access(dir, F_OK) == 0;
	free(dir);
	return yes;
}

static bool cb_cancelled(const struct ferry_pages_cb *cb)
{
	return cb && cb->cancelled && cb->cancelled(cb->arg);
}

int ferry_pages_hash_fd(int fd, uint32_t page_size, uint64_t page_count, unsigned char *hashes,
			const struct ferry_pages_cb *cb, uint64_t *bytes_read, char *err,
			size_t errlen)
{
	return ferry_pages_hash_range(fd, page_size, 0, page_count, hashes, cb, bytes_read, err,
				      errlen);
}

int ferry_pages_hash_range(int fd, uint32_t page_size, uint64_t first, uint64_t page_count,
			   unsigned char *hashes, const struct ferry_pages_cb *cb,
			   uint64_t *bytes_read, char *err, size_t errlen)
{
	struct ferry_progress prog;
	struct ferry_hasher *h;
	uint64_t per = CHUNK_BYTES / page_size, lock = ferry_pages_lock_index(page_size);
	uint64_t i = first;
	unsigned char *buf;
	int rc = -1;

	if (page_count == 0)
		return 0;
	page_count += first;            /* from here on: the end index */
	if (per == 0)
		per = 1;
	buf = malloc((size_t)(per * page_size));
	if (!buf) {
		pages_seterr(err, errlen, "out of memory");
		return -1;
	}
	h = ferry_hasher_new();
	if (!h) {
		pages_seterr(err, errlen, "cannot set up SHA-256");
		goto out_buf;
	}
	ferry_progress_init(&prog, cb, page_count - first);
	while (i < page_count) {
		uint64_t n = page_count - i;
		ssize_t got;

		if (i == lock) {
			memset(hashes + i * FERRY_PAGE_HASH_LEN, 0, FERRY_PAGE_HASH_LEN);
			i++;
			continue;
		}
		if (n > per)
			n = per;
		if (i < lock && i + n > lock)
			n = lock - i;           /* stop before the lock-byte page: never read it */
		if (cb_cancelled(cb)) {
			pages_seterr(err, errlen, "cancelled");
			errno = ECANCELED;
			goto out_progress;
		}
		got = pages_pread_full(fd, buf, (size_t)(n * page_size), i * page_size);
		if (got < 0) {
			pages_seterr(err, errlen, "read at offset %" PRIu64 ": %s", i * page_size,
				     strerror(errno));
			goto out_progress;
		}
		if ((uint64_t)got != n * page_size) {
			pages_seterr(err, errlen,
				     "truncated: file ends at %" PRIu64 ", expected %" PRIu64
				     " bytes",
				     i * page_size + (uint64_t)got, page_count * page_size);
			errno = EIO;
			goto out_progress;
		}
		if (bytes_read)
			*bytes_read += (uint64_t)got;
		for (uint64_t k = 0; k < n; k++)
			if (ferry_hasher_page(h, buf + k * page_size, page_size,
					      hashes + (i + k) * FERRY_PAGE_HASH_LEN) != 0) {
				pages_seterr(err, errlen, "SHA-256 failed");
				goto out_progress;
			}
		i += n;
		ferry_progress_add(&prog, n, (uint64_t)got);
	}
	rc = 0;
out_progress:
	ferry_progress_end(&prog);
	ferry_hasher_free(h);
out_buf:
	free(buf);
	return rc;
}

int ferry_pages_sqlite_check(const char *path, bool full, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char *uri;
	int rc = -1, src;

	/* immutable: no locks, no -wal/-shm files; a URI cannot carry '?', '#' or '%' raw,
	 * so such (unlikely) paths are opened plainly */
	if (strpbrk(path, "?#%"))
		uri = sqlite3_mprintf("%s", path);
	else
		uri = sqlite3_mprintf("file:%s?immutable=1", path);
	if (!uri) {
		pages_seterr(err, errlen, "out of memory");
		return -1;
	}
	src = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
	sqlite3_free(uri);
	if (src != SQLITE_OK) {
		pages_seterr(err, errlen, "cannot open: %s",
			     db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
		goto out_close;
	}
	if (sqlite3_prepare_v2(db, full ? "PRAGMA integrity_check(1)" : "PRAGMA quick_check(1)", -1,
			       &st, NULL) != SQLITE_OK) {
		pages_seterr(err, errlen, "%s", sqlite3_errmsg(db));
		goto out_close;
	}
	src = sqlite3_step(st);
	if (src != SQLITE_ROW) {
		pages_seterr(err, errlen, "%s", sqlite3_errmsg(db));
		goto out_stmt;
	}
	if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
		pages_seterr(err, errlen, "%s failed: %s", full ? "integrity_check" : "quick_check",
			     (const char *)sqlite3_column_text(st, 0));
		goto out_stmt;
	}
	rc = 0;
out_stmt:
	sqlite3_finalize(st);
out_close:
	sqlite3_close(db);
	return rc;
}

int ferry_pages_checkpoint(const char *path, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		pages_seterr(err, errlen, "cannot open: %s", sqlite3_errmsg(db));
		goto out_close;
	}
	sqlite3_busy_timeout(db, 2000);
	if (sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		pages_seterr(err, errlen, "checkpoint failed: %s", sqlite3_errmsg(db));
		goto out_stmt;
	}
	if (sqlite3_column_int(st, 0) != 0) {
		pages_seterr(err, errlen, "checkpoint incomplete: the database is busy");
		goto out_stmt;
	}
	rc = 0;
out_stmt:
	sqlite3_finalize(st);
out_close:
	sqlite3_close(db);
	return rc;
}
