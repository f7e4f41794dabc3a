/* manifest.c: the manifest and replica-state formats: page hashes of one database version. */
#include "ferry_manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry_file.h"
#include "ferry_fsclient.h"
#include "pages_internal.h"

/*
 * The format (all integers little-endian), for the sidecar "<origin>.ferry-manifest" and the
 * replica's "<replica>.ferry-state":
 *   "FERRYPG1" | u32 version=1 | u32 page_size | u64 page_count | u64 generation |
 *   u32 flags | u16 etag_len | etag | db_sum[32] | page_count x hash[16] | sha256[32]
 * where hash = SHA-256(page)[0..16) (all zeros for the lock-byte page, which SQLite never
 * uses and we never copy), db_sum = SHA-256("ferry-db-sum-v1" | u32 page_size |
 * u64 page_count | all hashes) - the whole-database checksum - and the trailing sha256
 * covers every byte before it, so a torn or edited manifest is detected. 16 bytes per
 * page: 1 MiB for a 256 MiB database of 4 KiB pages.
 */

#define MF_MAGIC     "FERRYPG1"
#define MF_VERSION   1u
#define MF_MAX_BYTES (1ull << 31)           /* refuse absurd manifests before malloc */
#define MF_FIXED     (8 + 4 + 4 + 8 + 8 + 4 + 2)    /* the header up to the etag */
_Static_assert(FERRY_MANIFEST_HEAD_MAX == MF_FIXED + FERRY_ETAG_MAX + FERRY_DB_SUM_LEN,
	       "FERRY_MANIFEST_HEAD_MAX is the longest header");

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
	pages_put32(le, ps);
	pages_put64(le + 4, count);
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

int ferry_manifest_encode(const struct ferry_manifest *m, unsigned char **buf, size_t *len)
{
	size_t el = strnlen(m->etag, sizeof(m->etag));
	size_t hl = (size_t)m->page_count * FERRY_PAGE_HASH_LEN;
	size_t n = MF_FIXED + el + FERRY_DB_SUM_LEN + hl + 32;
	unsigned char *b = malloc(n), *p;

	if (!b)
		return -1;
	p = b;
	memcpy(p, MF_MAGIC, 8);
	p += 8;
	pages_put32(p, MF_VERSION);
	p += 4;
	pages_put32(p, m->page_size);
	p += 4;
	pages_put64(p, m->page_count);
	p += 8;
	pages_put64(p, m->generation);
	p += 8;
	pages_put32(p, m->flags);
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
	pages_sha256(b, (size_t)(p - b), p);
	*buf = b;
	*len = n;
	return 0;
}

/* The header of a manifest of total length len, from its first got bytes: magic, version,
 * sizes, and the lengths they imply; fills m up to db_sum (no hashes). 0, or -1 with err. */
static int parse_head(const unsigned char *buf, size_t got, uint64_t len, struct ferry_manifest *m,
		      char *err, size_t errlen)
{
	size_t el;
	uint64_t count;
	uint32_t ps;

	memset(m, 0, sizeof(*m));
	if (got < MF_FIXED || len < MF_FIXED + FERRY_DB_SUM_LEN + 32 ||
	    memcmp(buf, MF_MAGIC, 8) != 0) {
		pages_seterr(err, errlen, "not a ferry manifest");
		return -1;
	}
	if (pages_get32(buf + 8) != MF_VERSION) {
		pages_seterr(err, errlen, "unsupported manifest version %u", pages_get32(buf + 8));
		return -1;
	}
	ps = pages_get32(buf + 12);
	count = pages_get64(buf + 16);
	el = (size_t)buf[36] | (size_t)buf[37] << 8;
	if (el >= FERRY_ETAG_MAX || (ps == 0) != (count == 0) || (ps && !pages_valid_size(ps)) ||
	    count > len / FERRY_PAGE_HASH_LEN || got < MF_FIXED + el + FERRY_DB_SUM_LEN ||
	    len != MF_FIXED + el + FERRY_DB_SUM_LEN + count * FERRY_PAGE_HASH_LEN + 32) {
		pages_seterr(err, errlen, "corrupt manifest (bad header or length %llu)",
			     (unsigned long long)len);
		return -1;
	}
	m->page_size = ps;
	m->page_count = count;
	m->generation = pages_get64(buf + 24);
	m->flags = pages_get32(buf + 32);
	memcpy(m->etag, buf + MF_FIXED, el);
	m->etag[el] = '\0';
	memcpy(m->db_sum, buf + MF_FIXED + el, FERRY_DB_SUM_LEN);
	return 0;
}

int ferry_manifest_decode(const unsigned char *buf, size_t len, struct ferry_manifest *m,
			  char *err, size_t errlen)
{
	unsigned char want[32], sum[FERRY_DB_SUM_LEN];

	if (parse_head(buf, len, len, m, err, errlen) != 0)
		return -1;
	pages_sha256(buf, len - 32, want);
	if (memcmp(want, buf + len - 32, 32) != 0) {
		memset(m, 0, sizeof(*m));
		pages_seterr(err, errlen, "corrupt manifest (checksum mismatch)");
		return -1;
	}
	m->hashes = malloc(m->page_count ? (size_t)m->page_count * FERRY_PAGE_HASH_LEN : 1);
	if (!m->hashes) {
		pages_seterr(err, errlen, "out of memory");
		return -1;
	}
	if (m->page_count)
		memcpy(m->hashes, buf + len - 32 - m->page_count * FERRY_PAGE_HASH_LEN,
		       (size_t)m->page_count * FERRY_PAGE_HASH_LEN);
	sum_hashes(m->page_size, m->page_count, m->hashes, sum);
	if (memcmp(sum, m->db_sum, sizeof(sum)) != 0) {
		ferry_manifest_release(m);
		pages_seterr(err, errlen,
			     "corrupt manifest (database checksum does not match its page hashes)");
		return -1;
	}
	return 0;
}

/* Open a manifest file: its fd, or -2 when it does not exist, -1 with err. */
static int open_manifest(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT)
		return -2;
	if (fd < 0)
		pages_seterr(err, errlen, "cannot open: %s", strerror(errno));
	return fd < 0 ? -1 : fd;
}

int ferry_manifest_load(const char *path, struct ferry_manifest *m, char *err, size_t errlen)
{
	unsigned char *buf;
	struct stat st;
	ssize_t got;
	int fd, rc = -1;

	memset(m, 0, sizeof(*m));
	fd = open_manifest(path, err, errlen);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size > MF_MAX_BYTES) {
		pages_seterr(err, errlen, "cannot use: %s",
			     st.st_size > 0 ? "too large" : strerror(errno));
		goto out_close;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		pages_seterr(err, errlen, "out of memory");
		goto out_close;
	}
	got = ferry_pread_full(fd, buf, (size_t)st.st_size, 0);
	if (got < 0)
		pages_seterr(err, errlen, "cannot read: %s", strerror(errno));
	else
		rc = ferry_manifest_decode(buf, (size_t)got, m, err, errlen);
	free(buf);
out_close:
	close(fd);
	return rc;
}

int ferry_manifest_head_decode(const unsigned char *buf, size_t got, uint64_t len,
			       struct ferry_manifest *m, char *err, size_t errlen)
{
	return parse_head(buf, got, len, m, err, errlen);
}

int ferry_manifest_peek(const char *path, struct ferry_manifest *m, char *err, size_t errlen)
{
	unsigned char buf[FERRY_MANIFEST_HEAD_MAX];
	struct stat st;
	ssize_t got;
	int fd, rc = -1;

	memset(m, 0, sizeof(*m));
	fd = open_manifest(path, err, errlen);
	if (fd < 0)
		return fd;
	/* on ferryfs: fetch the bytes read, not the object (not ferryfs: nothing to do) */
	(void)ferry_pages_ferryfs_ranged(fd);
	if (fstat(fd, &st) != 0) {
		pages_seterr(err, errlen, "cannot stat: %s", strerror(errno));
	} else {
		got = ferry_pread_full(fd, buf, (uint64_t)st.st_size < sizeof(buf) ?
				       (size_t)st.st_size : sizeof(buf), 0);
		if (got < 0)
			pages_seterr(err, errlen, "cannot read: %s", strerror(errno));
		else
			rc = parse_head(buf, (size_t)got, (uint64_t)st.st_size, m, err, errlen);
	}
	close(fd);
	return rc;
}

int ferry_manifest_save(const char *path, const struct ferry_manifest *m, char *err, size_t errlen)
{
	unsigned char *buf;
	size_t len;
	int rc;

	if (ferry_manifest_encode(m, &buf, &len) != 0) {
		pages_seterr(err, errlen, "out of memory");
		return -1;
	}
	rc = ferry_file_replace(path, buf, len, 0600, FERRY_FILE_DURABLE, err, errlen);
	free(buf);
	return rc;
}

int ferry_manifest_put(const char *path, const struct ferry_manifest *m, char *err, size_t errlen)
{
	unsigned char *buf;
	size_t len;
	int fd, rc = -1;

	if (ferry_manifest_encode(m, &buf, &len) != 0) {
		pages_seterr(err, errlen, "out of memory");
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		pages_seterr(err, errlen, "cannot open: %s", strerror(errno));
		goto out_buf;
	}
	if (ferry_write_full(fd, buf, len) != 0 || fsync(fd) != 0) {
		pages_seterr(err, errlen, "cannot write: %s", strerror(errno));
		close(fd);
		goto out_buf;
	}
	if (close(fd) != 0) {
		pages_seterr(err, errlen, "cannot close: %s", strerror(errno));
		goto out_buf;
	}
	rc = 0;
out_buf:
	free(buf);
	return rc;
}

#define STAMP_SUFFIX ".ferry-stamp"
#define STAMP_MAGIC  "ferry-replica-stamp 1"

static char *stamp_path(const char *replica)
{
	size_t n = strlen(replica) + sizeof(STAMP_SUFFIX);
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s%s", replica, STAMP_SUFFIX);
	return p;
}

static void stamp_body(char *out, size_t n, const struct stat *st, const char *sum)
{
	snprintf(out, n, "%s\n%ju %ju %jd %jd.%09ld %jd.%09ld\n%s\n", STAMP_MAGIC,
		 (uintmax_t)st->st_dev, (uintmax_t)st->st_ino, (intmax_t)st->st_size,
		 (intmax_t)st->st_mtim.tv_sec, st->st_mtim.tv_nsec, (intmax_t)st->st_ctim.tv_sec,
		 st->st_ctim.tv_nsec, sum);
}

static int64_t ts_ns(struct timespec t)
{
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int ferry_replica_stamp_save(const char *replica, const struct ferry_manifest *state, char *err,
			     size_t errlen)
{
	char *path = stamp_path(replica), body[512], sum[2 * FERRY_DB_SUM_LEN + 1];
	struct stat st, ss;
	struct timespec now;
	int rc = -1;

	if (!path) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (stat(replica, &st) != 0) {
		snprintf(err, errlen, "cannot stat '%s': %s", replica, strerror(errno));
		goto out;
	}
	/* the stamp file's mtime must come after the replica's (see the header) */
	clock_gettime(CLOCK_REALTIME, &now);
	if (ts_ns(now) - ts_ns(st.st_mtim) < 20000000 && ts_ns(now) >= ts_ns(st.st_mtim)) {
		int64_t wait = 20000000 - (ts_ns(now) - ts_ns(st.st_mtim));
		struct timespec ts = { 0, (long)wait };

		nanosleep(&ts, NULL);
	}
	ferry_manifest_sum_hex(state, sum);
	stamp_body(body, sizeof(body), &st, sum);
	if (ferry_file_replace(path, body, strlen(body), 0600, 0, err, errlen) != 0)
		goto out;
	if (stat(path, &ss) != 0 || ts_ns(ss.st_mtim) <= ts_ns(st.st_mtim)) {
		unlink(path);               /* a clock that did not move: no stamp, no harm */
		snprintf(err, errlen, "the stamp's time is not after the replica's");
		goto out;
	}
	rc = 0;
out:
	free(path);
	return rc;
}

bool ferry_replica_stamp_holds(const char *replica, int fd, const struct ferry_manifest *state)
{
	char *path = stamp_path(replica), want[512], got[512], sum[2 * FERRY_DB_SUM_LEN + 1];
	struct stat st, ss;
	bool ok = false;
	ssize_t n;
	int sfd;

	if (!path)
		return false;
	sfd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (sfd < 0)
		return false;
	n = read(sfd, got, sizeof(got) - 1);
	if (n > 0 && fstat(sfd, &ss) == 0 && fstat(fd, &st) == 0 &&
	    ts_ns(st.st_mtim) < ts_ns(ss.st_mtim) &&
	    (uint64_t)st.st_size == state->page_count * state->page_size) {
		got[n] = '\0';
		ferry_manifest_sum_hex(state, sum);
		stamp_body(want, sizeof(want), &st, sum);
		ok = strcmp(want, got) == 0;
	}
	close(sfd);
	return ok;
}
