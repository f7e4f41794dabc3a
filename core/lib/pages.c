/* pages.c: the SQLite page engine of pull and push: header checks, page hashes, manifests, undo-file patching. */
#include "ferry_pages.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "ferry_file.h"
#include "ferry_log.h"
#include "ferry_fsproto.h"

/*
 * About the formats (all integers little-endian).
 *
 * Manifest (sidecar "<origin>.ferry-manifest" and the replica's "<replica>.ferry-state"):
 *   "FERRYPG1" | u32 version=1 | u32 page_size | u64 page_count | u64 generation |
 *   u32 flags | u16 etag_len | etag | db_sum[32] | page_count x hash[16] | sha256[32]
 * where hash = SHA-256(page)[0..16) (all zeros for the lock-byte page, which SQLite never
 * uses and we never copy), db_sum = SHA-256("ferry-db-sum-v1" | u32 page_size |
 * u64 page_count | all hashes) - the whole-database checksum - and the trailing sha256
 * covers every byte before it, so a torn or edited manifest is detected. 16 bytes per
 * page: 1 MiB for a 256 MiB database of 4 KiB pages.
 *
 * Undo file "<replica>.ferry-undo":
 *   header: "FERRYUN1" | u32 page_size | u64 old_size | sha256[32] of those 20 bytes
 *   records: u32 'BATC' | u32 n | n x u64 index | n x page (old content) | sha256[32]
 * A record is fsynced before any of its pages is overwritten, so a record that fails its
 * checksum (torn by a crash) was never acted on. Rolling back = truncate to old_size and
 * write every saved page back; each page is saved at most once, so order is irrelevant.
 */

#define MF_MAGIC     "FERRYPG1"
#define MF_VERSION   1u
#define UNDO_MAGIC   "FERRYUN1"
#define UNDO_TAG     0x43544142u           /* "BATC" */
#define UNDO_HDR_LEN (8 + 4 + 8 + 32)
#define CHUNK_BYTES  (4u << 20)            /* reads while hashing a whole file */
#define MF_MAX_BYTES (1ull << 31)           /* refuse absurd manifests before malloc */

static const unsigned char sqlite_magic[16] = "SQLite format 3";
static const unsigned char journal_magic[8] = { 0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7 };

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
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

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static bool valid_page_size(uint32_t ps)
{
	return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0;
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
		seterr(err, errlen, "truncated: %" PRIu64 " bytes is shorter than a database header",
		       file_size);
		return -1;
	}
	if (memcmp(hdr, sqlite_magic, sizeof(sqlite_magic)) != 0) {
		seterr(err, errlen, "not a SQLite database (bad magic)");
		return -1;
	}
	ps = (uint32_t)hdr[16] << 8 | hdr[17];
	if (ps == 1)
		ps = 65536;
	if (!valid_page_size(ps)) {
		seterr(err, errlen, "not a SQLite database (bad page size %u)", ps);
		return -1;
	}
	if (hdr[18] < 1 || hdr[18] > 2 || hdr[19] < 1 || hdr[19] > 2) {
		seterr(err, errlen, "unsupported SQLite file format (versions %u/%u)", hdr[18], hdr[19]);
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
			seterr(err, errlen, "truncated: header says %u pages of %u bytes (%" PRIu64
			       " bytes), file has %" PRIu64, hdr_pages, ps, (uint64_t)hdr_pages * ps,
			       file_size);
			return -1;
		}
		out->page_count = hdr_pages;
		return 0;
	}
	if (file_size % ps != 0) {
		seterr(err, errlen, "truncated: size %" PRIu64 " is not a multiple of the page size %u",
		       file_size, ps);
		return -1;
	}
	out->page_count = file_size / ps;
	return 0;
}

static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
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

static int write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t w = write(fd, (const char *)buf + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t w = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}

int ferry_pages_probe_fd(int fd, struct ferry_db_info *out, char *err, size_t errlen)
{
	unsigned char hdr[100];
	struct stat st;
	ssize_t n = 0;

	if (fstat(fd, &st) != 0) {
		seterr(err, errlen, "cannot stat: %s", strerror(errno));
		return -1;
	}
	if (st.st_size > 0) {
		n = pread_full(fd, hdr, sizeof(hdr), 0);
		if (n < 0) {
			seterr(err, errlen, "cannot read header: %s", strerror(errno));
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
	r = pread_full(fd, head, n, 0);
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
	EVP_MD *md;                         /* fetched once: per-call fetches dominate 4 KiB pages */
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

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void ferry_progress_init(struct ferry_progress *p, const struct ferry_pages_cb *cb, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->cb = cb;
	p->total = total;
	p->start = p->last = now_mono();
}

static void progress_draw(struct ferry_progress *p, double t)
{
	char line[160];
	double mib = p->bytes / 1048576.0, el = t - p->start;
	int n;

	n = snprintf(line, sizeof(line), "\r%s: pages %" PRIu64 "/%" PRIu64 ", %.1f MiB, %.1f MiB/s ",
		     p->cb->what ? p->cb->what : "pages", p->done, p->total, mib,
		     el > 0 ? mib / el : 0.0);
	/* A TTY progress line, not a log line: it is redrawn in place and never reaches logs. */
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
	p->drawn = true;
}

void ferry_progress_add(struct ferry_progress *p, uint64_t pages, uint64_t bytes)
{
	double t;

	p->done += pages;
	p->bytes += bytes;
	if (!p->cb || !p->cb->progress)
		return;
	t = now_mono();
	if (t - p->last < 0.2)
		return;
	p->last = t;
	progress_draw(p, t);
}

void ferry_progress_end(struct ferry_progress *p)
{
	if (!p->cb || !p->cb->progress || !p->drawn)
		return;
	progress_draw(p, now_mono());
	if (write(STDERR_FILENO, "\n", 1) < 0)
		return;
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
					 old_hashes + i * FERRY_PAGE_HASH_LEN, FERRY_PAGE_HASH_LEN) != 0))
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
	cb->progress = isatty(STDERR_FILENO);
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
			const struct ferry_pages_cb *cb, uint64_t *bytes_read, char *err, size_t errlen)
{
	return ferry_pages_hash_range(fd, page_size, 0, page_count, hashes, cb, bytes_read, err, errlen);
}

int ferry_pages_hash_range(int fd, uint32_t page_size, uint64_t first, uint64_t page_count,
			   unsigned char *hashes, const struct ferry_pages_cb *cb, uint64_t *bytes_read,
			   char *err, size_t errlen)
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
		seterr(err, errlen, "out of memory");
		return -1;
	}
	h = ferry_hasher_new();
	if (!h) {
		seterr(err, errlen, "cannot set up SHA-256");
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
			seterr(err, errlen, "cancelled");
			errno = ECANCELED;
			goto out_progress;
		}
		got = pread_full(fd, buf, (size_t)(n * page_size), i * page_size);
		if (got < 0) {
			seterr(err, errlen, "read at offset %" PRIu64 ": %s", i * page_size, strerror(errno));
			goto out_progress;
		}
		if ((uint64_t)got != n * page_size) {
			seterr(err, errlen, "truncated: file ends at %" PRIu64 ", expected %" PRIu64 " bytes",
			       i * page_size + (uint64_t)got, page_count * page_size);
			errno = EIO;
			goto out_progress;
		}
		if (bytes_read)
			*bytes_read += (uint64_t)got;
		for (uint64_t k = 0; k < n; k++)
			if (ferry_hasher_page(h, buf + k * page_size, page_size,
					      hashes + (i + k) * FERRY_PAGE_HASH_LEN) != 0) {
				seterr(err, errlen, "SHA-256 failed");
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

void ferry_manifest_release(struct ferry_manifest *m)
{
	free(m->hashes);
	memset(m, 0, sizeof(*m));
}

int ferry_manifest_alloc(struct ferry_manifest *m, uint32_t page_size, uint64_t page_count)
{
	m->page_size = page_size;
	m->page_count = page_count;
	free(m->hashes);
	m->hashes = calloc(page_count ? (size_t)page_count : 1, FERRY_PAGE_HASH_LEN);
	return m->hashes ? 0 : -1;
}

static void sum_hashes(uint32_t ps, uint64_t count, const unsigned char *hashes,
		       unsigned char out[FERRY_DB_SUM_LEN])
{
	static const char tag[] = "ferry-db-sum-v1";
	unsigned char le[12];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;

	memset(out, 0, FERRY_DB_SUM_LEN);
	if (!ctx)
		return;
	put32(le, ps);
	put64(le + 4, count);
	if (EVP_DigestInit_ex2(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, tag, sizeof(tag) - 1) == 1 &&
	    EVP_DigestUpdate(ctx, le, sizeof(le)) == 1 &&
	    (count == 0 || EVP_DigestUpdate(ctx, hashes, (size_t)count * FERRY_PAGE_HASH_LEN) == 1))
		EVP_DigestFinal_ex(ctx, out, &n);
	EVP_MD_CTX_free(ctx);
}

void ferry_manifest_sum(struct ferry_manifest *m)
{
	sum_hashes(m->page_size, m->page_count, m->hashes, m->db_sum);
}

void ferry_manifest_sum_hex(const struct ferry_manifest *m, char out[2 * FERRY_DB_SUM_LEN + 1])
{
	for (int i = 0; i < FERRY_DB_SUM_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", m->db_sum[i]);
}

static void sha256(const void *a, size_t n, unsigned char out[32])
{
	unsigned int len = 0;

	if (EVP_Digest(a, n, out, &len, EVP_sha256(), NULL) != 1)
		memset(out, 0, 32);
}

int ferry_manifest_encode(const struct ferry_manifest *m, unsigned char **buf, size_t *len)
{
	size_t el = strnlen(m->etag, sizeof(m->etag));
	size_t hl = (size_t)m->page_count * FERRY_PAGE_HASH_LEN;
	size_t n = 8 + 4 + 4 + 8 + 8 + 4 + 2 + el + FERRY_DB_SUM_LEN + hl + 32;
	unsigned char *b = malloc(n), *p;

	if (!b)
		return -1;
	p = b;
	memcpy(p, MF_MAGIC, 8);
	p += 8;
	put32(p, MF_VERSION);
	p += 4;
	put32(p, m->page_size);
	p += 4;
	put64(p, m->page_count);
	p += 8;
	put64(p, m->generation);
	p += 8;
	put32(p, m->flags);
	p += 4;
	p[0] = (unsigned char)el;
	p[1] = (unsigned char)(el >> 8);
	p += 2;
	memcpy(p, m->etag, el);
	p += el;
	memcpy(p, m->db_sum, FERRY_DB_SUM_LEN);
	p += FERRY_DB_SUM_LEN;
	if (hl)
		memcpy(p, m->hashes, hl);
	p += hl;
	sha256(b, (size_t)(p - b), p);
	*buf = b;
	*len = n;
	return 0;
}

int ferry_manifest_decode(const unsigned char *buf, size_t len, struct ferry_manifest *m,
			  char *err, size_t errlen)
{
	const size_t fixed = 8 + 4 + 4 + 8 + 8 + 4 + 2;
	unsigned char want[32], sum[FERRY_DB_SUM_LEN];
	const unsigned char *p = buf;
	size_t el;
	uint64_t count;
	uint32_t ps;

	memset(m, 0, sizeof(*m));
	if (len < fixed + FERRY_DB_SUM_LEN + 32 || memcmp(buf, MF_MAGIC, 8) != 0) {
		seterr(err, errlen, "not a ferry manifest");
		return -1;
	}
	if (get32(buf + 8) != MF_VERSION) {
		seterr(err, errlen, "unsupported manifest version %u", get32(buf + 8));
		return -1;
	}
	ps = get32(buf + 12);
	count = get64(buf + 16);
	el = (size_t)buf[36] | (size_t)buf[37] << 8;
	if (el >= FERRY_ETAG_MAX || (ps == 0) != (count == 0) || (ps && !valid_page_size(ps)) ||
	    count > (len / FERRY_PAGE_HASH_LEN) ||
	    len != fixed + el + FERRY_DB_SUM_LEN + count * FERRY_PAGE_HASH_LEN + 32) {
		seterr(err, errlen, "corrupt manifest (bad header or length %zu)", len);
		return -1;
	}
	sha256(buf, len - 32, want);
	if (memcmp(want, buf + len - 32, 32) != 0) {
		seterr(err, errlen, "corrupt manifest (checksum mismatch)");
		return -1;
	}
	p = buf + fixed;
	m->page_size = ps;
	m->page_count = count;
	m->generation = get64(buf + 24);
	m->flags = get32(buf + 32);
	memcpy(m->etag, p, el);
	m->etag[el] = '\0';
	p += el;
	memcpy(m->db_sum, p, FERRY_DB_SUM_LEN);
	p += FERRY_DB_SUM_LEN;
	m->hashes = malloc(count ? (size_t)count * FERRY_PAGE_HASH_LEN : 1);
	if (!m->hashes) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	if (count)
		memcpy(m->hashes, p, (size_t)count * FERRY_PAGE_HASH_LEN);
	sum_hashes(ps, count, m->hashes, sum);
	if (memcmp(sum, m->db_sum, sizeof(sum)) != 0) {
		ferry_manifest_release(m);
		seterr(err, errlen, "corrupt manifest (database checksum does not match its page hashes)");
		return -1;
	}
	return 0;
}

int ferry_manifest_load(const char *path, struct ferry_manifest *m, char *err, size_t errlen)
{
	unsigned char *buf;
	struct stat st;
	ssize_t got;
	int fd, rc = -1;

	memset(m, 0, sizeof(*m));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return -2;
		seterr(err, errlen, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size > MF_MAX_BYTES) {
		seterr(err, errlen, "cannot use: %s", st.st_size > 0 ? "too large" : strerror(errno));
		goto out_close;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		seterr(err, errlen, "out of memory");
		goto out_close;
	}
	got = pread_full(fd, buf, (size_t)st.st_size, 0);
	if (got < 0)
		seterr(err, errlen, "cannot read: %s", strerror(errno));
	else
		rc = ferry_manifest_decode(buf, (size_t)got, m, err, errlen);
	free(buf);
out_close:
	close(fd);
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
		seterr(err, errlen, "out of memory");
		return -1;
	}
	src = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
	sqlite3_free(uri);
	if (src != SQLITE_OK) {
		seterr(err, errlen, "cannot open: %s", db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
		goto out_close;
	}
	if (sqlite3_prepare_v2(db, full ? "PRAGMA integrity_check(1)" : "PRAGMA quick_check(1)", -1,
			       &st, NULL) != SQLITE_OK) {
		seterr(err, errlen, "%s", sqlite3_errmsg(db));
		goto out_close;
	}
	src = sqlite3_step(st);
	if (src != SQLITE_ROW) {
		seterr(err, errlen, "%s", sqlite3_errmsg(db));
		goto out_stmt;
	}
	if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
		seterr(err, errlen, "%s failed: %s", full ? "integrity_check" : "quick_check",
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
		seterr(err, errlen, "cannot open: %s", sqlite3_errmsg(db));
		goto out_close;
	}
	sqlite3_busy_timeout(db, 2000);
	if (sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		seterr(err, errlen, "checkpoint failed: %s", sqlite3_errmsg(db));
		goto out_stmt;
	}
	if (sqlite3_column_int(st, 0) != 0) {
		seterr(err, errlen, "checkpoint incomplete: the database is busy");
		goto out_stmt;
	}
	rc = 0;
out_stmt:
	sqlite3_finalize(st);
out_close:
	sqlite3_close(db);
	return rc;
}

int ferry_manifest_save(const char *path, const struct ferry_manifest *m, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	unsigned char *buf;
	size_t len;
	int fd, rc = -1;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		seterr(err, errlen, "path too long");
		return -1;
	}
	if (ferry_manifest_encode(m, &buf, &len) != 0) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		seterr(err, errlen, "cannot create '%s': %s", tmp, strerror(errno));
		goto out_buf;
	}
	if (write_full(fd, buf, len) != 0 || fsync(fd) != 0) {
		seterr(err, errlen, "cannot write '%s': %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out_buf;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		seterr(err, errlen, "cannot rename '%s': %s", tmp, strerror(errno));
		unlink(tmp);
		goto out_buf;
	}
	ferry_fsync_dir(path);
	rc = 0;
out_buf:
	free(buf);
	return rc;
}

int ferry_manifest_put(const char *path, const struct ferry_manifest *m, char *err, size_t errlen)
{
	unsigned char *buf;
	size_t len;
	int fd, rc = -1;

	if (ferry_manifest_encode(m, &buf, &len) != 0) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		seterr(err, errlen, "cannot open: %s", strerror(errno));
		goto out_buf;
	}
	if (write_full(fd, buf, len) != 0 || fsync(fd) != 0) {
		seterr(err, errlen, "cannot write: %s", strerror(errno));
		close(fd);
		goto out_buf;
	}
	if (close(fd) != 0) {
		seterr(err, errlen, "cannot close: %s", strerror(errno));
		goto out_buf;
	}
	rc = 0;
out_buf:
	free(buf);
	return rc;
}

struct ferry_patch {
	int fd;                             /* the file being patched (caller's) */
	int ufd;                            /* the undo file */
	char *path;
	char *upath;                        /* PATH.ferry-undo */
	uint32_t page_size;
	uint64_t old_size;                  /* size before the patch; rollback truncates to it */
	uint64_t undo_bytes;
	char err[256];
};

static char *undo_path(const char *path)
{
	size_t n = strlen(path) + sizeof(".ferry-undo");
	char *u = malloc(n);

	if (u)
		snprintf(u, n, "%s.ferry-undo", path);
	return u;
}

const char *ferry_patch_error(const struct ferry_patch *p)
{
	return p->err;
}

uint64_t ferry_patch_undo_bytes(const struct ferry_patch *p)
{
	return p->undo_bytes;
}

struct ferry_patch *ferry_patch_begin(int fd, const char *path, uint32_t page_size,
				      char *err, size_t errlen)
{
	unsigned char hdr[UNDO_HDR_LEN];
	struct ferry_patch *p;
	struct stat st;

	if (!valid_page_size(page_size) || fstat(fd, &st) != 0) {
		seterr(err, errlen, "cannot patch '%s': bad page size or stat failed", path);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		goto out_oom;
	p->fd = fd;
	p->page_size = page_size;
	p->old_size = (uint64_t)st.st_size;
	p->path = strdup(path);
	p->upath = undo_path(path);
	if (!p->path || !p->upath)
		goto out_free;
	p->ufd = open(p->upath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (p->ufd < 0) {
		seterr(err, errlen, "cannot create undo file '%s': %s", p->upath, strerror(errno));
		goto out_free_quiet;
	}
	memcpy(hdr, UNDO_MAGIC, 8);
	put32(hdr + 8, page_size);
	put64(hdr + 12, p->old_size);
	sha256(hdr, 20, hdr + 20);
	if (write_full(p->ufd, hdr, sizeof(hdr)) != 0 || fsync(p->ufd) != 0 ||
	    ferry_fsync_dir(p->upath) != 0) {
		seterr(err, errlen, "cannot write undo file '%s': %s", p->upath, strerror(errno));
		close(p->ufd);
		unlink(p->upath);
		goto out_free_quiet;
	}
	p->undo_bytes = sizeof(hdr);
	return p;
out_free:
	seterr(err, errlen, "out of memory");
out_free_quiet:
	free(p->path);
	free(p->upath);
	free(p);
	return NULL;
out_oom:
	seterr(err, errlen, "out of memory");
	return NULL;
}

int ferry_patch_save(struct ferry_patch *p, const uint64_t *pages, size_t n)
{
	size_t m = 0, len;
	unsigned char *rec, *q;
	int rc = -1;

	for (size_t i = 0; i < n; i++)
		if (pages[i] * p->page_size < p->old_size)
			m++;                /* pages past the old end vanish on rollback anyway */
	if (m == 0)
		return 0;
	len = 8 + m * 8 + m * p->page_size + 32;
	rec = malloc(len);
	if (!rec) {
		snprintf(p->err, sizeof(p->err), "out of memory");
		return -1;
	}
	put32(rec, UNDO_TAG);
	put32(rec + 4, (uint32_t)m);
	q = rec + 8;
	for (size_t i = 0; i < n; i++)
		if (pages[i] * p->page_size < p->old_size) {
			put64(q, pages[i]);
			q += 8;
		}
	for (size_t i = 0; i < n; i++) {
		ssize_t got;

		if (pages[i] * p->page_size >= p->old_size)
			continue;
		got = pread_full(p->fd, q, p->page_size, pages[i] * p->page_size);
		if (got < 0) {
			snprintf(p->err, sizeof(p->err), "cannot read '%s': %s", p->path, strerror(errno));
			goto out_rec;
		}
		memset(q + got, 0, p->page_size - (size_t)got);
		q += p->page_size;
	}
	sha256(rec, (size_t)(q - rec), q);
	if (write_full(p->ufd, rec, len) != 0 || fsync(p->ufd) != 0) {
		snprintf(p->err, sizeof(p->err), "cannot write undo file '%s': %s", p->upath,
			 strerror(errno));
		goto out_rec;
	}
	p->undo_bytes += len;
	rc = 0;
out_rec:
	free(rec);
	return rc;
}

int ferry_patch_write(struct ferry_patch *p, uint64_t index, const void *data)
{
	if (ferry_pages_is_lock_page(index, p->page_size)) {
		snprintf(p->err, sizeof(p->err), "refusing to write the lock-byte page %" PRIu64, index);
		return -1;
	}
	if (pwrite_full(p->fd, data, p->page_size, index * p->page_size) != 0) {
		snprintf(p->err, sizeof(p->err), "cannot write '%s': %s", p->path, strerror(errno));
		return -1;
	}
	return 0;
}

int ferry_patch_truncate(struct ferry_patch *p, uint64_t size)
{
	if (ftruncate(p->fd, (off_t)size) != 0) {
		snprintf(p->err, sizeof(p->err), "cannot truncate '%s': %s", p->path, strerror(errno));
		return -1;
	}
	return 0;
}

int ferry_patch_finish(struct ferry_patch *p)
{
	if (fsync(p->fd) != 0) {
		snprintf(p->err, sizeof(p->err), "cannot fsync '%s': %s", p->path, strerror(errno));
		return -1;
	}
	return 0;
}

static void patch_free(struct ferry_patch *p)
{
	if (p->ufd >= 0)
		close(p->ufd);
	free(p->path);
	free(p->upath);
	free(p);
}

int ferry_patch_commit(struct ferry_patch *p)
{
	int rc = 0;

	if (unlink(p->upath) != 0 || ferry_fsync_dir(p->upath) != 0)
		rc = -1;                    /* a leftover undo file would roll back a good replica */
	patch_free(p);
	return rc;
}

void ferry_patch_forget(struct ferry_patch *p)
{
	patch_free(p);
}

/* Restore the file from a complete undo prefix. */
static int undo_apply(int fd, int ufd, const char *upath, bool *rolled_back, char *err, size_t errlen)
{
	unsigned char hdr[UNDO_HDR_LEN], sum[32], *rec = NULL;
	uint64_t off = UNDO_HDR_LEN, old_size, usize;
	struct stat st;
	uint32_t ps;
	ssize_t got;
	int rc = -1;

	if (fstat(ufd, &st) != 0) {
		seterr(err, errlen, "cannot stat undo file '%s': %s", upath, strerror(errno));
		return -1;
	}
	usize = (uint64_t)st.st_size;

	got = pread_full(ufd, hdr, sizeof(hdr), 0);
	if (got < 0) {
		seterr(err, errlen, "cannot read undo file '%s': %s", upath, strerror(errno));
		return -1;
	}
	sha256(hdr, 20, sum);
	if (got != sizeof(hdr) || memcmp(hdr, UNDO_MAGIC, 8) != 0 || memcmp(sum, hdr + 20, 32) != 0)
		return 0;                   /* torn header: nothing was patched yet */
	ps = get32(hdr + 8);
	old_size = get64(hdr + 12);
	if (!valid_page_size(ps)) {
		seterr(err, errlen, "corrupt undo file '%s' (page size %u)", upath, ps);
		return -1;
	}
	if (ftruncate(fd, (off_t)old_size) != 0) {
		seterr(err, errlen, "cannot truncate: %s", strerror(errno));
		return -1;
	}
	*rolled_back = true;
	for (;;) {
		unsigned char head[8];
		uint32_t n;
		size_t len;

		if (pread_full(ufd, head, 8, off) != 8 || get32(head) != UNDO_TAG)
			break;
		n = get32(head + 4);
		if (n == 0 || n > (1u << 24) / (ps / 512))
			break;
		len = 8 + (size_t)n * 8 + (size_t)n * ps + 32;
		if (off + len > usize)
			break;              /* torn record: never acted on */
		free(rec);
		rec = malloc(len);
		if (!rec) {
			seterr(err, errlen, "out of memory");
			goto out;
		}
		if (pread_full(ufd, rec, len, off) != (ssize_t)len)
			break;              /* torn record: never acted on */
		sha256(rec, len - 32, sum);
		if (memcmp(sum, rec + len - 32, 32) != 0)
			break;
		for (uint32_t i = 0; i < n; i++) {
			uint64_t idx = get64(rec + 8 + (size_t)i * 8);
			uint64_t at = idx * ps;
			size_t wl = ps;

			if (at >= old_size)
				continue;
			if (old_size - at < wl)
				wl = (size_t)(old_size - at);
			if (pwrite_full(fd, rec + 8 + (size_t)n * 8 + (size_t)i * ps, wl, at) != 0) {
				seterr(err, errlen, "cannot restore page %" PRIu64 ": %s", idx, strerror(errno));
				goto out;
			}
		}
		off += len;
	}
	if (fsync(fd) != 0) {
		seterr(err, errlen, "cannot fsync: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(rec);
	return rc;
}

int ferry_patch_recover(const char *path, bool *rolled_back, char *err, size_t errlen)
{
	char *upath = undo_path(path);
	int fd, ufd, rc = -1;

	*rolled_back = false;
	if (!upath) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	ufd = open(upath, O_RDONLY | O_CLOEXEC);
	if (ufd < 0) {
		rc = errno == ENOENT ? 0 : -1;
		if (rc)
			seterr(err, errlen, "cannot open undo file '%s': %s", upath, strerror(errno));
		goto out_path;
	}
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {      /* nothing left to restore: drop the stray undo */
			rc = unlink(upath);
			goto out_ufd;
		}
		seterr(err, errlen, "cannot open '%s': %s", path, strerror(errno));
		goto out_ufd;
	}
	if (undo_apply(fd, ufd, upath, rolled_back, err, errlen) != 0)
		goto out_fd;
	if (unlink(upath) != 0 || ferry_fsync_dir(upath) != 0) {
		seterr(err, errlen, "cannot remove undo file '%s': %s", upath, strerror(errno));
		goto out_fd;
	}
	rc = 0;
out_fd:
	close(fd);
out_ufd:
	close(ufd);
out_path:
	free(upath);
	return rc;
}

int ferry_pages_recover(const char *who, const char *replica, char *err, size_t errlen)
{
	char why[256];
	bool rolled = false;

	if (ferry_patch_recover(replica, &rolled, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "cannot roll back the interrupted pull of '%s': %s", replica,
			 why);
		return -1;
	}
	if (rolled)
		ferry_logf(FERRY_WARN, who, "rolled back an interrupted pull", "replica='%s'",
			   replica);
	return 0;
}

int ferry_patch_abort(struct ferry_patch *p)
{
	bool rolled = false;
	int rc;

	close(p->ufd);
	p->ufd = -1;
	rc = ferry_patch_recover(p->path, &rolled, p->err, sizeof(p->err));
	patch_free(p);
	return rc;
}

bool ferry_fsstats_read(const char *mount_root, struct ferry_fsstats *out)
{
	char path[PATH_MAX], buf[65536];
	json_t *j;
	ssize_t got;
	int fd;

	memset(out, 0, sizeof(*out));
	if (!mount_root ||
	    (size_t)snprintf(path, sizeof(path), "%s/" FERRY_FS_STATS_NAME, mount_root) >= sizeof(path))
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	got = pread_full(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	if (got <= 0)
		return false;
	j = json_loadb(buf, (size_t)got, 0, NULL);
	if (!j)
		return false;
	out->bytes_down = (uint64_t)json_integer_value(json_object_get(j, "bytes_down"));
	out->bytes_up = (uint64_t)json_integer_value(json_object_get(j, "bytes_up"));
	out->bytes_copied = (uint64_t)json_integer_value(json_object_get(j, "bytes_copied"));
	out->requests = (uint64_t)json_integer_value(json_object_get(j, "requests"));
	json_decref(j);
	return true;
}

char *ferry_fsstats_root(const char *path, const char *mountpoint_fact)
{
	char dir[PATH_MAX], probe[PATH_MAX + 20];
	struct stat st;
	char *slash;

	if (mountpoint_fact && *mountpoint_fact) {
		snprintf(probe, sizeof(probe), "%s/" FERRY_FS_STATS_NAME, mountpoint_fact);
		return stat(probe, &st) == 0 ? strdup(mountpoint_fact) : NULL;
	}
	if (!path || path[0] != '/' || strlen(path) >= sizeof(dir))
		return NULL;
	snprintf(dir, sizeof(dir), "%s", path);
	for (;;) {
		slash = strrchr(dir, '/');
		if (!slash)
			return NULL;
		*slash = '\0';
		snprintf(probe, sizeof(probe), "%s/" FERRY_FS_STATS_NAME, *dir ? dir : "");
		if (stat(probe, &st) == 0 && S_ISREG(st.st_mode))
			return strdup(*dir ? dir : "/");
		if (!*dir)
			return NULL;
	}
}

/* mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo */
static void unescape_octal(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

char *ferry_pages_ferryfs_key(const char *mountinfo, const char *path, char *bucket, size_t blen)
{
	char *line = NULL, *best_src = NULL, *key = NULL;
	size_t cap = 0, best_len = 0;
	FILE *f;

	if (!path || path[0] != '/')
		return NULL;
	f = fopen(mountinfo ? mountinfo : "/proc/self/mountinfo", "re");
	if (!f)
		return NULL;
	while (getline(&line, &cap, f) > 0) {
		char *fld[6] = { 0 }, *sep, *save = NULL, *fstype, *src;
		size_t ml;
		int k = 0;

		sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		for (char *t = strtok_r(line, " ", &save); t && k < 6; t = strtok_r(NULL, " ", &save))
			fld[k++] = t;
		fstype = strtok_r(sep + 3, " \n", &save);
		src = strtok_r(NULL, " \n", &save);
		if (k < 5 || !fstype || !src || strcmp(fstype, FERRY_FS_TYPE) != 0)
			continue;
		unescape_octal(src);            /* '#' itself arrives as \043 */
		if (strncmp(src, FERRY_FS_SOURCE, strlen(FERRY_FS_SOURCE)) != 0)
			continue;
		unescape_octal(fld[4]);
		ml = strlen(fld[4]);
		if (strcmp(fld[4], "/") == 0)
			ml = 0;
		if (strncmp(path, fld[4], ml) != 0 || path[ml] != '/' || (best_src && ml <= best_len))
			continue;
		free(best_src);
		best_src = strdup(src + 8);
		best_len = ml;
	}
	free(line);
	fclose(f);
	if (best_src) {
		char *colon = strchr(best_src, ':');
		const char *rel = path + best_len + 1, *prefix = "";
		bool slash = false;

		if (colon) {
			*colon = '\0';
			prefix = colon + 1;
			slash = *prefix && prefix[strlen(prefix) - 1] != '/';
		}
		snprintf(bucket, blen, "%s", best_src);
		if (asprintf(&key, "%s%s%s", prefix, slash ? "/" : "", rel) < 0)
			key = NULL;
		free(best_src);
	}
	return key;
}

static int etag_fix(ssize_t n, char *out, size_t outlen)
{
	if (n < 0)
		return -1;
	if (n == 0) {
		errno = ENODATA;
		return -1;
	}
	out[(size_t)n < outlen ? (size_t)n : outlen - 1] = '\0';
	return 0;
}

int ferry_pages_etag_fd(int fd, char *out, size_t outlen)
{
	return etag_fix(fgetxattr(fd, FERRY_XATTR_ETAG, out, outlen - 1), out, outlen);
}

int ferry_pages_etag_path(const char *path, char *out, size_t outlen)
{
	return etag_fix(getxattr(path, FERRY_XATTR_ETAG, out, outlen - 1), out, outlen);
}

int ferry_pages_ferryfs_ranged(int fd)
{
	return fsetxattr(fd, FERRY_XATTR_FETCH, FERRY_FETCH_RANGED, strlen(FERRY_FETCH_RANGED), 0);
}
