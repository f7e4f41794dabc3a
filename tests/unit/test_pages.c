/* test_pages.c: unit tests of the page engine (header checks, hashes, manifests, undo-file recovery). */
#include "unit.h"
#include "ferry_fsclient.h"
#include "ferry_manifest.h"
#include "ferry_pages.h"
#include "ferry_patch.h"
#include "ferry_time.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/ferry-test-pages.XXXXXX";

static char *tpath(const char *name)
{
	static char buf[8][512];
	static int k;
	char *p = buf[k++ % 8];

	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

static int exec_sql(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	int rc = sqlite3_open(db, &h);

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
	sqlite3_close(h);
	return rc;
}

static int quick_check(const char *db)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	int ok = 0;

	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, "PRAGMA quick_check", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		ok = strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
	sqlite3_finalize(st);
	sqlite3_close(h);
	return ok;
}

/* A database with page size ps and about `rows` rows of 200 bytes. */
static void make_db(const char *path, int ps, int rows)
{
	char sql[512];

	unlink(path);
	snprintf(sql, sizeof(sql),
		 "PRAGMA page_size=%d; PRAGMA journal_mode=DELETE; CREATE TABLE t(a INTEGER PRIMARY KEY, b);"
		 "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<%d)"
		 " INSERT INTO t SELECT x, randomblob(200) FROM c;", ps, rows);
	ASSERT_EQ(exec_sql(path, sql), SQLITE_OK);
}

static int probe(const char *path, struct ferry_db_info *info, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY), rc;

	if (fd < 0)
		return -2;
	rc = ferry_pages_probe_fd(fd, info, err, errlen);
	close(fd);
	return rc;
}

static void test_header(void)
{
	struct ferry_db_info info;
	unsigned char junk[100];
	char err[256];
	struct stat st;

	make_db(tpath("a1024.db"), 1024, 100);
	ASSERT_EQ(probe(tpath("a1024.db"), &info, err, sizeof(err)), 0);
	stat(tpath("a1024.db"), &st);
	ASSERT_EQ(info.page_size, 1024);
	ASSERT_EQ(info.page_count * 1024, st.st_size);
	ASSERT_TRUE(!info.wal_mode);

	make_db(tpath("a64k.db"), 65536, 50);
	ASSERT_EQ(probe(tpath("a64k.db"), &info, err, sizeof(err)), 0);
	ASSERT_EQ(info.page_size, 65536);
	stat(tpath("a64k.db"), &st);
	ASSERT_EQ(info.page_count * 65536, st.st_size);

	ASSERT_EQ(exec_sql(tpath("a64k.db"), "PRAGMA journal_mode=WAL;"), SQLITE_OK);
	ASSERT_EQ(probe(tpath("a64k.db"), &info, err, sizeof(err)), 0);
	ASSERT_TRUE(info.wal_mode);

	memset(junk, 'x', sizeof(junk));
	ASSERT_EQ(ferry_pages_parse_header(junk, sizeof(junk), 4096, &info, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "bad magic");

	/* Page size 3000 is not a power of two. */
	{
		unsigned char h[100] = "SQLite format 3";

		h[16] = 3000 >> 8;
		h[17] = 3000 & 0xff;
		h[18] = h[19] = 1;
		ASSERT_EQ(ferry_pages_parse_header(h, sizeof(h), 6000, &info, err, sizeof(err)), -1);
		ASSERT_CONTAINS(err, "bad page size");
	}
	ASSERT_EQ(ferry_pages_parse_header(junk, 40, 40, &info, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "truncated");
	ASSERT_EQ(ferry_pages_parse_header(NULL, 0, 0, &info, err, sizeof(err)), 0);
	ASSERT_EQ(info.page_count, 0);

	/* Truncated to half: the in-header page count says more. */
	make_db(tpath("trunc.db"), 4096, 200);
	stat(tpath("trunc.db"), &st);
	ASSERT_EQ(truncate(tpath("trunc.db"), st.st_size / 2 / 4096 * 4096), 0);
	ASSERT_EQ(probe(tpath("trunc.db"), &info, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "truncated");
	/* Not a whole number of pages. */
	make_db(tpath("trunc2.db"), 4096, 200);
	ASSERT_EQ(truncate(tpath("trunc2.db"), 4096 * 3 + 17), 0);
	ASSERT_EQ(probe(tpath("trunc2.db"), &info, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "truncated");
}

static void test_hot_journal(void)
{
	static const unsigned char magic[8] = { 0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7 };
	const char *db = tpath("hot.db");
	char j[600];
	pid_t pid;
	int fd, st = 0;

	make_db(db, 4096, 10);
	snprintf(j, sizeof(j), "%s-journal", db);
	ASSERT_TRUE(!ferry_pages_has_hot_journal(db));
	fd = open(j, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ASSERT_TRUE(write(fd, "\0\0\0\0\0\0\0\0", 8) == 8);
	close(fd);
	ASSERT_TRUE(!ferry_pages_has_hot_journal(db));      /* zeroed header (PERSIST mode) */
	unlink(j);

	/* A real one: a writer dies mid-transaction after spilling pages to the database. */
	pid = fork();
	if (pid == 0) {
		sqlite3 *h;

		sqlite3_open(db, &h);
		sqlite3_exec(h, "PRAGMA cache_size=1; BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL"
			     " SELECT x+1 FROM c WHERE x<2000) INSERT INTO t(b) SELECT randomblob(300) FROM c;",
			     NULL, NULL, NULL);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	ASSERT_TRUE(ferry_pages_has_hot_journal(db));
	{
		unsigned char head[8] = { 0 };

		fd = open(j, O_RDONLY);
		ASSERT_TRUE(fd >= 0 && read(fd, head, 8) == 8);
		close(fd);
		ASSERT_TRUE(memcmp(head, magic, 8) == 0);
	}
	ASSERT_TRUE(!ferry_pages_has_wal(db));
}

static void test_manifest(void)
{
	struct ferry_manifest m = { 0 }, d = { 0 };
	unsigned char *buf;
	size_t len;
	char err[256];

	ASSERT_EQ(ferry_manifest_alloc(&m, 4096, 1000), 0);
	for (int i = 0; i < 1000 * FERRY_PAGE_HASH_LEN; i++)
		m.hashes[i] = (unsigned char)(i * 7);
	m.generation = 42;
	snprintf(m.etag, sizeof(m.etag), "\"abc-3\"");
	ferry_manifest_sum(&m);
	ASSERT_EQ(ferry_manifest_encode(&m, &buf, &len), 0);
	ASSERT_TRUE(len < 1000 * FERRY_PAGE_HASH_LEN + 200);
	ASSERT_EQ(ferry_manifest_decode(buf, len, &d, err, sizeof(err)), 0);
	ASSERT_EQ(d.page_size, 4096);
	ASSERT_EQ(d.page_count, 1000);
	ASSERT_EQ(d.generation, 42);
	ASSERT_STREQ(d.etag, "\"abc-3\"");
	ASSERT_TRUE(memcmp(d.hashes, m.hashes, 1000 * FERRY_PAGE_HASH_LEN) == 0);
	ASSERT_TRUE(memcmp(d.db_sum, m.db_sum, FERRY_DB_SUM_LEN) == 0);
	ferry_manifest_release(&d);

	buf[len / 2] ^= 1;
	ASSERT_EQ(ferry_manifest_decode(buf, len, &d, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "corrupt manifest");
	buf[len / 2] ^= 1;
	ASSERT_EQ(ferry_manifest_decode(buf, len - 1, &d, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "corrupt manifest");
	ASSERT_EQ(ferry_manifest_decode((const unsigned char *)"hello", 5, &d, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "not a ferry manifest");
	free(buf);

	ASSERT_EQ(ferry_manifest_save(tpath("m.state"), &m, err, sizeof(err)), 0);
	ASSERT_EQ(ferry_manifest_load(tpath("m.state"), &d, err, sizeof(err)), 0);
	ASSERT_TRUE(memcmp(d.db_sum, m.db_sum, FERRY_DB_SUM_LEN) == 0);
	ferry_manifest_release(&d);
	ASSERT_EQ(ferry_manifest_load(tpath("nope.state"), &d, err, sizeof(err)), -2);
	/* the header alone: what push compares on a warm run */
	ASSERT_EQ(ferry_manifest_peek(tpath("m.state"), &d, err, sizeof(err)), 0);
	ASSERT_STREQ(d.etag, "\"abc-3\"");
	ASSERT_EQ(d.page_size, 4096);
	ASSERT_EQ(d.page_count, 1000);
	ASSERT_EQ(d.generation, 42);
	ASSERT_TRUE(d.hashes == NULL && memcmp(d.db_sum, m.db_sum, FERRY_DB_SUM_LEN) == 0);
	ASSERT_EQ(ferry_manifest_peek(tpath("nope.state"), &d, err, sizeof(err)), -2);
	ASSERT_EQ(truncate(tpath("m.state"), 300), 0);
	ASSERT_EQ(ferry_manifest_load(tpath("m.state"), &d, err, sizeof(err)), -1);
	ASSERT_EQ(ferry_manifest_peek(tpath("m.state"), &d, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "corrupt manifest (bad header or length 300)");
	ASSERT_EQ(truncate(tpath("m.state"), 20), 0);
	ASSERT_EQ(ferry_manifest_peek(tpath("m.state"), &d, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "not a ferry manifest");

	/* The whole-database sum depends on every page hash. */
	{
		unsigned char before[FERRY_DB_SUM_LEN];

		memcpy(before, m.db_sum, sizeof(before));
		m.hashes[999 * FERRY_PAGE_HASH_LEN] ^= 1;
		ferry_manifest_sum(&m);
		ASSERT_TRUE(memcmp(before, m.db_sum, sizeof(before)) != 0);
	}
	/* An empty database is representable. */
	{
		struct ferry_manifest e = { 0 };

		ASSERT_EQ(ferry_manifest_alloc(&e, 0, 0), 0);
		e.flags = FERRY_MANIFEST_ABSENT;
		ferry_manifest_sum(&e);
		ASSERT_EQ(ferry_manifest_encode(&e, &buf, &len), 0);
		ASSERT_EQ(ferry_manifest_decode(buf, len, &d, err, sizeof(err)), 0);
		ASSERT_EQ(d.flags, FERRY_MANIFEST_ABSENT);
		ASSERT_EQ(d.page_count, 0);
		free(buf);
		ferry_manifest_release(&d);
		ferry_manifest_release(&e);
	}
	ferry_manifest_release(&m);
}

static void test_lock_page(void)
{
	struct ferry_manifest m = { 0 };
	char err[256];
	int fd;

	ASSERT_EQ(ferry_pages_lock_index(4096), 262144);
	ASSERT_EQ(ferry_pages_lock_index(1024), 1048576);
	ASSERT_EQ(ferry_pages_lock_index(65536), 16384);
	ASSERT_TRUE(ferry_pages_is_lock_page(16384, 65536));
	ASSERT_TRUE(!ferry_pages_is_lock_page(16383, 65536));
	ASSERT_TRUE(!ferry_pages_is_lock_page(16385, 65536));

	/* A sparse file that ends exactly where the lock-byte page starts, but claims
	 * one more page: hashing succeeds only if the lock-byte page is never read. Page
	 * 16385 (after it) has content. */
	fd = open(tpath("big.db"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(ftruncate(fd, (off_t)FERRY_LOCK_BYTE_OFF), 0);
	ASSERT_EQ(ferry_manifest_alloc(&m, 65536, 16385), 0);
	memset(m.hashes, 0xee, 16385 * FERRY_PAGE_HASH_LEN);
	ASSERT_EQ(ferry_pages_hash_range(fd, 65536, 16380, 5, m.hashes, NULL, NULL, err, sizeof(err)), 0);
	{
		static const unsigned char zero[FERRY_PAGE_HASH_LEN];

		ASSERT_TRUE(memcmp(m.hashes + 16384 * FERRY_PAGE_HASH_LEN, zero, sizeof(zero)) == 0);
		ASSERT_TRUE(memcmp(m.hashes + 16383 * FERRY_PAGE_HASH_LEN, zero, sizeof(zero)) != 0);
	}
	/* One page short of the claim (not counting the lock-byte page): truncated. */
	ASSERT_EQ(ftruncate(fd, (off_t)FERRY_LOCK_BYTE_OFF - 65536), 0);
	ASSERT_EQ(ferry_pages_hash_range(fd, 65536, 16380, 5, m.hashes, NULL, NULL, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "truncated");
	ferry_manifest_release(&m);

	/* The patcher refuses to write it. */
	{
		struct ferry_patch *p = ferry_patch_begin(fd, tpath("big.db"), 65536, err, sizeof(err));
		unsigned char page[65536] = { 0 };

		ASSERT_TRUE(p != NULL);
		if (p) {
			ASSERT_EQ(ferry_patch_write(p, 16384, page), -1);
			ASSERT_CONTAINS(ferry_patch_error(p), "lock-byte page");
			ASSERT_EQ(ferry_patch_abort(p), 0);
		}
	}
	close(fd);
	unlink(tpath("big.db"));
}

static unsigned char *slurp(const char *path, size_t *len)
{
	struct stat st;
	unsigned char *b;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) != 0)
		return NULL;
	b = malloc((size_t)st.st_size + 1);
	*len = (size_t)read(fd, b, (size_t)st.st_size);
	close(fd);
	return b;
}

static void copy_file(const char *from, const char *to)
{
	size_t len;
	unsigned char *b = slurp(from, &len);
	int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ASSERT_TRUE(b && fd >= 0 && write(fd, b, len) == (ssize_t)len);
	close(fd);
	free(b);
}

static bool same_file(const char *a, const char *b)
{
	size_t la, lb;
	unsigned char *x = slurp(a, &la), *y = slurp(b, &lb);
	bool same = x && y && la == lb && memcmp(x, y, la) == 0;

	free(x);
	free(y);
	return same;
}

/* Patch OLD towards NEW (same page size) the way pull does, stopping at `crash`:
 * 0 begin only, 1 after the first saved batch, 2 after writing half of the pages,
 * 3 after all writes and the truncate, 4 after finish, 5 committed, 6 torn 2nd record. */
static void patch_to(const char *work, const char *newdb, uint32_t ps, int crash)
{
	size_t ln, lo;
	unsigned char *nb = slurp(newdb, &ln), *ob = slurp(work, &lo);
	uint64_t nn = ln / ps, no = lo / ps, *list = calloc(nn + no + 1, sizeof(uint64_t));
	size_t n = 0, half;
	char err[256];
	struct ferry_patch *p;
	int fd = open(work, O_RDWR);

	for (uint64_t i = 0; i < nn; i++)
		if (i >= no || memcmp(nb + i * ps, ob + i * ps, ps) != 0)
			list[n++] = i;
	p = ferry_patch_begin(fd, work, ps, err, sizeof(err));
	ASSERT_TRUE(p != NULL);
	if (!p)
		goto out;
	if (crash == 0)
		goto crash;
	half = n / 2;
	ASSERT_EQ(ferry_patch_save(p, list, half), 0);
	if (crash == 1)
		goto crash;
	for (size_t i = 0; i < half; i++)
		ASSERT_EQ(ferry_patch_write(p, list[i], nb + list[i] * ps), 0);
	if (crash == 2)
		goto crash;
	if (crash == 6) {
		/* a second record torn mid-write: its pages were never touched */
		char up[600];
		int ufd;

		snprintf(up, sizeof(up), "%s.ferry-undo", work);
		ufd = open(up, O_WRONLY | O_APPEND);
		/* the record tag, a page count, then the write stops */
		ASSERT_TRUE(write(ufd, "BATC\x05\0\0\0garbage", 15) == 15);
		close(ufd);
		goto crash;
	}
	ASSERT_EQ(ferry_patch_save(p, list + half, n - half), 0);
	for (size_t i = half; i < n; i++)
		ASSERT_EQ(ferry_patch_write(p, list[i], nb + list[i] * ps), 0);
	if (nn < no) {
		uint64_t tail[4096];
		size_t k = 0;

		for (uint64_t i = nn; i < no && k < 4096; i++)
			tail[k++] = i;
		ASSERT_EQ(ferry_patch_save(p, tail, k), 0);
	}
	ASSERT_EQ(ferry_patch_truncate(p, ln), 0);
	if (crash == 3)
		goto crash;
	ASSERT_EQ(ferry_patch_finish(p), 0);
	if (crash == 4)
		goto crash;
	ASSERT_EQ(ferry_patch_commit(p), 0);
	goto out;
crash:
	ferry_patch_forget(p);
out:
	close(fd);
	free(list);
	free(nb);
	free(ob);
}

static void test_undo(void)
{
	const char *old = tpath("old.db"), *grown = tpath("grown.db"), *shrunk = tpath("shrunk.db");
	const char *work = tpath("work.db");
	char up[600], err[256];
	bool rolled;

	make_db(old, 1024, 300);
	copy_file(old, grown);
	ASSERT_EQ(exec_sql(grown, "UPDATE t SET b = randomblob(200) WHERE a % 17 = 0;"
			   "INSERT INTO t(b) SELECT randomblob(200) FROM t LIMIT 200;"), SQLITE_OK);
	copy_file(old, shrunk);
	ASSERT_EQ(exec_sql(shrunk, "DELETE FROM t WHERE a > 50; VACUUM;"), SQLITE_OK);
	snprintf(up, sizeof(up), "%s.ferry-undo", work);

	for (int target = 0; target < 2; target++) {
		const char *newdb = target ? shrunk : grown;

		for (int crash = 0; crash <= 6; crash++) {
			copy_file(old, work);
			patch_to(work, newdb, 1024, crash);
			if (crash == 5) {
				ASSERT_TRUE(access(up, F_OK) != 0);
				ASSERT_TRUE(same_file(work, newdb));
			} else {
				ASSERT_TRUE(access(up, F_OK) == 0);
			}
			ASSERT_EQ(ferry_patch_recover(work, &rolled, err, sizeof(err)), 0);
			ASSERT_TRUE(access(up, F_OK) != 0);
			if (crash == 5) {
				ASSERT_TRUE(!rolled);
				ASSERT_TRUE(same_file(work, newdb));
			} else {
				if (!same_file(work, old))
					UNIT_FAIL("target %d crash point %d: not rolled back", target, crash);
				ASSERT_TRUE(rolled);
			}
			ASSERT_TRUE(quick_check(work));
		}
	}

	/* A torn undo header: nothing had been patched, the undo file is just dropped. */
	copy_file(old, work);
	{
		int fd = open(up, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		ASSERT_TRUE(write(fd, "FERRYUN1\0\0", 10) == 10);
		close(fd);
	}
	ASSERT_EQ(ferry_patch_recover(work, &rolled, err, sizeof(err)), 0);
	ASSERT_TRUE(!rolled);
	ASSERT_TRUE(access(up, F_OK) != 0);
	ASSERT_TRUE(same_file(work, old));

	/* A record claiming a huge page count (garbage after a crash): ignored, no huge malloc. */
	copy_file(old, work);
	{
		int wfd = open(work, O_RDWR);
		struct ferry_patch *p = ferry_patch_begin(wfd, work, 1024, err, sizeof(err));
		int ufd;

		ASSERT_TRUE(p != NULL);
		if (p)
			ferry_patch_forget(p);
		ufd = open(up, O_WRONLY | O_APPEND);
		ASSERT_TRUE(write(ufd, "BATC\xff\xff\x3f\0", 8) == 8);
		close(ufd);
		close(wfd);
	}
	ASSERT_EQ(ferry_patch_recover(work, &rolled, err, sizeof(err)), 0);
	ASSERT_TRUE(access(up, F_OK) != 0);
	ASSERT_TRUE(same_file(work, old));

	/* A second begin while an undo file exists is refused (recover first). */
	{
		int fd = open(work, O_RDWR);
		struct ferry_patch *p = ferry_patch_begin(fd, work, 1024, err, sizeof(err)), *q;

		ASSERT_TRUE(p != NULL);
		q = ferry_patch_begin(fd, work, 1024, err, sizeof(err));
		ASSERT_TRUE(q == NULL);
		ASSERT_CONTAINS(err, "undo file");
		if (p)
			ASSERT_EQ(ferry_patch_abort(p), 0);
		close(fd);
	}
	/* Nothing to recover. */
	ASSERT_EQ(ferry_patch_recover(work, &rolled, err, sizeof(err)), 0);
	ASSERT_TRUE(!rolled);
}

static void test_hash_fd(void)
{
	struct ferry_db_info info;
	struct ferry_manifest a = { 0 }, b = { 0 };
	char err[256];
	uint64_t bytes = 0;
	int fd, diff = 0;

	make_db(tpath("h1.db"), 4096, 2000);
	copy_file(tpath("h1.db"), tpath("h2.db"));
	ASSERT_EQ(exec_sql(tpath("h2.db"), "UPDATE t SET b = randomblob(200) WHERE a = 1000;"), SQLITE_OK);
	fd = open(tpath("h1.db"), O_RDONLY);
	ASSERT_EQ(ferry_pages_probe_fd(fd, &info, err, sizeof(err)), 0);
	ASSERT_EQ(ferry_manifest_alloc(&a, info.page_size, info.page_count), 0);
	ASSERT_EQ(ferry_pages_hash_fd(fd, info.page_size, info.page_count, a.hashes, NULL, &bytes,
				      err, sizeof(err)), 0);
	ASSERT_EQ(bytes, info.page_count * 4096);
	close(fd);
	fd = open(tpath("h2.db"), O_RDONLY);
	ASSERT_EQ(ferry_manifest_alloc(&b, info.page_size, info.page_count), 0);
	ASSERT_EQ(ferry_pages_hash_fd(fd, info.page_size, info.page_count, b.hashes, NULL, NULL,
				      err, sizeof(err)), 0);
	close(fd);
	for (uint64_t i = 0; i < info.page_count; i++)
		diff += memcmp(a.hashes + i * 16, b.hashes + i * 16, 16) != 0;
	/* the row's leaf page and page 1 (change counter) */
	ASSERT_EQ(diff, 2);
	ferry_manifest_release(&a);
	ferry_manifest_release(&b);
}

/* A file big enough to be hashed by several threads (80 MiB of 4 KiB pages, random bytes):
 * every page's hash equals the single-page hasher's; bytes are counted once; a truncated
 * file fails with the offset named; a range starting mid-file hashes only its pages. */
static void test_hash_threads(void)
{
	const uint64_t pages = 20480;
	const uint32_t ps = 4096;
	unsigned char *buf = malloc(ps), *h = calloc(pages, FERRY_PAGE_HASH_LEN), one[16];
	struct ferry_hasher *hs = ferry_hasher_new();
	char err[256];
	uint64_t bytes = 0, bad = 0;
	int fd = open(tpath("big.bin"), O_RDWR | O_CREAT | O_TRUNC, 0600);

	ASSERT_TRUE(buf && h && hs && fd >= 0);
	if (!buf || !h || !hs || fd < 0)
		return;
	uint64_t x = 88172645463325252ull, wrote = 0;

	for (uint64_t i = 0; i < pages; i++) {
		for (uint32_t k = 0; k < ps; k += 8) {
			x ^= x << 13;       /* xorshift64 */
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(buf + k, &x, 8);
		}
		wrote += pwrite(fd, buf, ps, (off_t)(i * ps)) == (ssize_t)ps;
	}
	ASSERT_EQ(wrote, pages);
	ASSERT_EQ(ferry_pages_hash_fd(fd, ps, pages, h, NULL, &bytes, err, sizeof(err)), 0);
	ASSERT_EQ(bytes, pages * ps);
	for (uint64_t i = 0; i < pages; i += 97) {
		ASSERT_EQ(pread(fd, buf, ps, (off_t)(i * ps)), (ssize_t)ps);
		ASSERT_EQ(ferry_hasher_page(hs, buf, ps, one), 0);
		bad += memcmp(one, h + i * FERRY_PAGE_HASH_LEN, FERRY_PAGE_HASH_LEN) != 0;
	}
	ASSERT_EQ(bad, 0);
	/* the last page of each slice and the first of the next, hashed alone */
	for (uint64_t i = pages / 4 - 1; i < pages; i += pages / 4) {
		for (uint64_t k = i; k <= i + 1 && k < pages; k++) {
			ASSERT_EQ(pread(fd, buf, ps, (off_t)(k * ps)), (ssize_t)ps);
			ASSERT_EQ(ferry_hasher_page(hs, buf, ps, one), 0);
			ASSERT_EQ(memcmp(one, h + k * FERRY_PAGE_HASH_LEN, FERRY_PAGE_HASH_LEN), 0);
		}
	}
	memset(h, 0, pages * FERRY_PAGE_HASH_LEN);
	ASSERT_EQ(ferry_pages_hash_range(fd, ps, pages / 2, pages / 2, h, NULL, NULL, err,
					 sizeof(err)), 0);
	ASSERT_EQ(h[0] | h[(pages / 2 - 1) * FERRY_PAGE_HASH_LEN], 0);
	ASSERT_EQ(pread(fd, buf, ps, (off_t)(pages / 2 * ps)), (ssize_t)ps);
	ASSERT_EQ(ferry_hasher_page(hs, buf, ps, one), 0);
	ASSERT_EQ(memcmp(one, h + pages / 2 * FERRY_PAGE_HASH_LEN, FERRY_PAGE_HASH_LEN), 0);
	ASSERT_EQ(ftruncate(fd, (off_t)((pages - 100) * ps)), 0);
	ASSERT_EQ(ferry_pages_hash_fd(fd, ps, pages, h, NULL, NULL, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "truncated: file ends at");
	close(fd);
	unlink(tpath("big.bin"));
	ferry_hasher_free(hs);
	free(h);
	free(buf);
}

/* ferry_pages_diff: differing, added and lock-byte pages; the shared helpers */
static void test_diff(void)
{
	uint32_t ps = 65536;                    /* lock-byte page = index 16384 */
	uint64_t total = 16390, lock = ferry_pages_lock_index(ps), *l = NULL;
	unsigned char *a = calloc(total, FERRY_PAGE_HASH_LEN), *b = calloc(total, FERRY_PAGE_HASH_LEN);
	char *s;
	size_t n = 99;

	ASSERT_TRUE(a && b);
	ASSERT_EQ(16384, lock);
	ASSERT_EQ(0, ferry_pages_diff(a, total, b, total, ps, &l, &n));
	ASSERT_EQ(0, n);
	free(l);
	a[7 * FERRY_PAGE_HASH_LEN + 3] = 1;     /* page 7 differs */
	a[lock * FERRY_PAGE_HASH_LEN] = 1;      /* never listed, whatever its hash */
	ASSERT_EQ(0, ferry_pages_diff(a, total, b, total - 2, ps, &l, &n));
	ASSERT_EQ(3, n);                        /* 7 and the two pages past the old end */
	if (n == 3) {
		ASSERT_EQ(7, l[0]);
		ASSERT_EQ(total - 2, l[1]);
		ASSERT_EQ(total - 1, l[2]);
	}
	free(l);
	ASSERT_EQ(0, ferry_pages_diff(a, total, NULL, 0, ps, &l, &n));
	ASSERT_EQ(total - 1, n);                /* everything but the lock-byte page */
	free(l);
	ASSERT_EQ(0, ferry_pages_diff(a, 0, b, total, ps, &l, &n));
	ASSERT_EQ(0, n);
	ASSERT_TRUE(l != NULL);
	free(l);
	free(a);
	free(b);
	s = ferry_pages_concat("/x/org.db", ".ferry-state");
	ASSERT_STREQ("/x/org.db.ferry-state", s);
	free(s);
	ASSERT_TRUE(ferry_pages_parent_exists(tpath("no-such-file")));
	ASSERT_TRUE(!ferry_pages_parent_exists("/no-such-dir-ferry/x.db"));
	ASSERT_TRUE(ferry_mono_ms() > 0);
}

static void test_ferryfs_key(void)
{
	const char *mi = tpath("mountinfo");
	char bucket[64] = "";
	char *k;
	FILE *f = fopen(mi, "w");

	fprintf(f, "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
		"40 22 0:40 / /mnt/bucket rw,nosuid,nodev - fuse.ferryfs ferryfs\\043org-bkt:tenants/a rw\n"
		"41 22 0:41 / /mnt/with\\040space rw - fuse.ferryfs ferryfs#b2 rw\n"
		"42 22 0:42 / /mnt/other rw - fuse.sshfs host:/x rw\n");
	fclose(f);
	k = ferry_pages_ferryfs_key(mi, "/mnt/bucket/org-data/42.db", bucket, sizeof(bucket));
	ASSERT_STREQ(k, "tenants/a/org-data/42.db");
	ASSERT_STREQ(bucket, "org-bkt");
	free(k);
	k = ferry_pages_ferryfs_key(mi, "/mnt/with space/x.db", bucket, sizeof(bucket));
	ASSERT_STREQ(k, "x.db");
	ASSERT_STREQ(bucket, "b2");
	free(k);
	ASSERT_TRUE(ferry_pages_ferryfs_key(mi, "/mnt/other/x.db", bucket, sizeof(bucket)) == NULL);
	ASSERT_TRUE(ferry_pages_ferryfs_key(mi, "/mnt/bucketx/x.db", bucket, sizeof(bucket)) == NULL);
	ASSERT_TRUE(ferry_pages_ferryfs_key(mi, "relative.db", bucket, sizeof(bucket)) == NULL);
}

int main(void)
{
	char cmd[600];

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_header();
	test_hot_journal();
	test_manifest();
	test_lock_page();
	test_undo();
	test_hash_fd();
	test_hash_threads();
	test_ferryfs_key();
	test_diff();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return UNIT_DONE();
}
