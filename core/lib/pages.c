/* pages.c: the SQLite page engine of pull and push: header checks, page hashes, diffs, progress. */
#include "ferry_pages.h"
#include "ferry_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
		n = ferry_pread_full(fd, hdr, sizeof(hdr), 0);
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
	r = ferry_pread_full(fd, head, n, 0);
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

/* Hashing a whole database is the cost of a warm run: big ranges are cut into one slice
 * per core (at most HASH_THREADS), each read and hashed by its own thread; the calling
 * thread reports progress from the slices' counters. */
#define HASH_THREADS     4
#define HASH_SLICE_MIN   (32ull << 20)      /* bytes below which one thread does it all */

struct hash_slice {
	int fd;
	uint32_t page_size;
	uint64_t first, end;                /* pages [first, end) */
	unsigned char *hashes;
	const struct ferry_pages_cb *cb;    /* cancellation only */
	uint64_t done;                      /* pages (atomic) */
	uint64_t bytes;                     /* bytes read (atomic) */
	bool *stop;                         /* another slice failed */
	int errnum;
	char err[200];
	pthread_mutex_t *mu;                /* with cv: the caller waits for the slices */
	pthread_cond_t *cv;
	int *running;
};

static int slice_hash(struct hash_slice *s)
{
	uint64_t per = CHUNK_BYTES / s->page_size, lock = ferry_pages_lock_index(s->page_size);
	uint64_t i = s->first;
	struct ferry_hasher *h;
	unsigned char *buf;
	int rc = -1;

	if (per == 0)
		per = 1;
	buf = malloc((size_t)(per * s->page_size));
	h = ferry_hasher_new();
	if (!buf || !h) {
		snprintf(s->err, sizeof(s->err), !buf ? "out of memory" : "cannot set up SHA-256");
		s->errnum = ENOMEM;
		goto out;
	}
	while (i < s->end) {
		uint64_t n = s->end - i;
		ssize_t got;

		if (i == lock) {
			memset(s->hashes + i * FERRY_PAGE_HASH_LEN, 0, FERRY_PAGE_HASH_LEN);
			i++;
			__atomic_add_fetch(&s->done, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (n > per)
			n = per;
		if (i < lock && i + n > lock)
			n = lock - i;           /* stop before the lock-byte page: never read it */
		if (__atomic_load_n(s->stop, __ATOMIC_RELAXED) || cb_cancelled(s->cb)) {
			snprintf(s->err, sizeof(s->err), "cancelled");
			s->errnum = ECANCELED;
			goto out;
		}
		got = ferry_pread_full(s->fd, buf, (size_t)(n * s->page_size), i * s->page_size);
		if (got < 0) {
			s->errnum = errno;
			snprintf(s->err, sizeof(s->err), "read at offset %" PRIu64 ": %s",
				 i * s->page_size, strerror(errno));
			goto out;
		}
		if ((uint64_t)got != n * s->page_size) {
			snprintf(s->err, sizeof(s->err), "truncated: file ends at %" PRIu64 ", expected %"
				 PRIu64 " bytes", i * s->page_size + (uint64_t)got,
				 s->end * s->page_size);
			s->errnum = EIO;
			goto out;
		}
		for (uint64_t k = 0; k < n; k++)
			if (ferry_hasher_page(h, buf + k * s->page_size, s->page_size,
					      s->hashes + (i + k) * FERRY_PAGE_HASH_LEN) != 0) {
				snprintf(s->err, sizeof(s->err), "SHA-256 failed");
				s->errnum = EIO;
				goto out;
			}
		i += n;
		__atomic_add_fetch(&s->done, n, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->bytes, (uint64_t)got, __ATOMIC_RELAXED);
	}
	rc = 0;
out:
	if (rc)
		__atomic_store_n(s->stop, true, __ATOMIC_RELAXED);
	ferry_hasher_free(h);
	free(buf);
	return rc;
}

static void *slice_main(void *arg)
{
	struct hash_slice *s = arg;

	slice_hash(s);
	pthread_mutex_lock(s->mu);
	(*s->running)--;
	pthread_cond_signal(s->cv);
	pthread_mutex_unlock(s->mu);
	return NULL;
}

static int hash_threads(uint64_t bytes)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t t = bytes / HASH_SLICE_MIN;

	if (cpus < 1)
		cpus = 1;
	if (t > (uint64_t)cpus)
		t = (uint64_t)cpus;
	if (t > HASH_THREADS)
		t = HASH_THREADS;
	return t < 1 ? 1 : (int)t;
}

int ferry_pages_hash_range(int fd, uint32_t page_size, uint64_t first, uint64_t page_count,
			   unsigned char *hashes, const struct ferry_pages_cb *cb,
			   uint64_t *bytes_read, char *err, size_t errlen)
{
	struct hash_slice sl[HASH_THREADS];
	pthread_t th[HASH_THREADS];
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv;
	pthread_condattr_t ca;
	struct ferry_progress prog;
	uint64_t reported = 0, reported_b = 0, bytes = 0;
	int nt = hash_threads(page_count * page_size), started = 0, running = 0, rc = 0;
	bool stop = false;

	if (page_count == 0)
		return 0;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &ca);
	pthread_condattr_destroy(&ca);
	ferry_progress_init(&prog, cb, page_count);
	for (int t = 0; t < nt; t++) {
		sl[t] = (struct hash_slice){
			.fd = fd, .page_size = page_size, .hashes = hashes, .cb = cb, .stop = &stop,
			.first = first + page_count * (uint64_t)t / (uint64_t)nt,
			.end = first + page_count * (uint64_t)(t + 1) / (uint64_t)nt,
			.mu = &mu, .cv = &cv, .running = &running,
		};
	}
	if (page_count * page_size < HASH_SLICE_MIN) {
		slice_hash(&sl[0]);         /* small: no thread, no progress to report */
	} else {
		pthread_mutex_lock(&mu);
		for (int t = 0; t < nt; t++) {
			running++;
			if (pthread_create(&th[t], NULL, slice_main, &sl[t]) != 0) {
				running--;
				break;
			}
			started++;
		}
		/* what no thread took, this one does (after the others finish) */
		while (running > 0) {
			struct timespec ts;
			uint64_t done = 0, b = 0;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += 100 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&cv, &mu, &ts);
			for (int t = 0; t < started; t++) {
				done += __atomic_load_n(&sl[t].done, __ATOMIC_RELAXED);
				b += __atomic_load_n(&sl[t].bytes, __ATOMIC_RELAXED);
			}
			pthread_mutex_unlock(&mu);
			if (done > reported)
				ferry_progress_add(&prog, done - reported, b - reported_b);
			reported = done;
			reported_b = b;
			pthread_mutex_lock(&mu);
		}
		pthread_mutex_unlock(&mu);
		for (int t = 0; t < started; t++)
			pthread_join(th[t], NULL);
		for (int t = started; t < nt && !stop; t++)
			slice_hash(&sl[t]);
	}
	/* the first real failure, else a cancellation */
	for (int t = 0; t < nt; t++) {
		bytes += sl[t].bytes;
		if (sl[t].errnum && (!rc || errno == ECANCELED)) {
			rc = -1;
			pages_seterr(err, errlen, "%s", sl[t].err);
			errno = sl[t].errnum;
		}
	}
	if (!rc) {
		uint64_t done = 0;

		for (int t = 0; t < nt; t++)
			done += sl[t].done;
		if (done > reported)
			ferry_progress_add(&prog, done - reported, bytes - reported_b);
	}
	if (bytes_read)
		*bytes_read += bytes;
	ferry_progress_end(&prog);
	pthread_cond_destroy(&cv);
	pthread_mutex_destroy(&mu);
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
