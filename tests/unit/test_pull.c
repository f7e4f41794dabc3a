/* test_pull.c: the pull stage: key values, the read plan, and whole pulls between local files. */
#include "pull.h"
#include "unit.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ctx.h"
#include "ferry_ctx.h"
#include "ferry_fsproto.h"
#include "ferry_stage.h"
#include "run.h"

#define LOCK_BYTE (1ull << 30)              /* SQLite's lock-byte page starts here */

static char tmpdir[] = "/tmp/test_pull.XXXXXX";
static struct run run;                      /* a run with no config: jobs get paths directly */
static struct stage_rt stage = { .name = "pull", .plugin = "pull" };
static struct ferry_ctx *ctx;

static void test_modes(void)
{
	ASSERT_EQ(pull_verify_mode(NULL), VERIFY_QUICK);
	ASSERT_EQ(pull_verify_mode("quick"), VERIFY_QUICK);
	ASSERT_EQ(pull_verify_mode("full"), VERIFY_FULL);
	ASSERT_EQ(pull_verify_mode("none"), VERIFY_NONE);
	ASSERT_EQ(pull_verify_mode("Full"), VERIFY_BAD);
	ASSERT_EQ(pull_verify_mode(""), VERIFY_BAD);
	ASSERT_EQ(pull_reads_mode(NULL), READS_AUTO);
	ASSERT_EQ(pull_reads_mode("auto"), READS_AUTO);
	ASSERT_EQ(pull_reads_mode("ranged"), READS_RANGED);
	ASSERT_EQ(pull_reads_mode("sequential"), READS_SEQUENTIAL);
	ASSERT_EQ(pull_reads_mode("seq"), READS_BAD);
}

static void test_runs(void)
{
	uint64_t lock = LOCK_BYTE / 4096;
	const uint64_t gaps[] = { 1, 2, 3, 9, 10, 16 };
	const uint64_t bridged[] = { 0, 5, 10 };
	const uint64_t adjacent[] = { 0, 1, 2, 3, 4, 5 };
	const uint64_t across[] = { lock - 1, lock + 1 };
	const uint64_t below[] = { lock - 2, lock - 1 };

	ASSERT_EQ(pull_max_run(4096), PULL_RUN_BYTES / 4096);
	ASSERT_EQ(pull_max_run(512), 2048);
	ASSERT_EQ(pull_max_run(65536), 16);
	ASSERT_EQ(pull_max_run(2u << 20), 1);      /* a page above PULL_RUN_BYTES: one per read */
	/* gaps of up to PULL_MERGE_GAP pages are read along, wider ones end the run */
	ASSERT_EQ(pull_plan_run(gaps, 6, 0, 256, lock), 3);
	ASSERT_EQ(pull_plan_run(gaps, 6, 3, 256, lock), 5);
	ASSERT_EQ(pull_plan_run(gaps, 6, 5, 256, lock), 6);
	ASSERT_EQ(pull_plan_run(bridged, 3, 0, 256, lock), 3);
	/* a run spans fewer than max_run pages */
	ASSERT_EQ(pull_plan_run(adjacent, 6, 0, 4, lock), 4);
	ASSERT_EQ(pull_plan_run(adjacent, 6, 4, 4, lock), 6);
	/* never across the lock-byte page, which is never read */
	ASSERT_EQ(pull_plan_run(across, 2, 0, 256, lock), 1);
	ASSERT_EQ(pull_plan_run(below, 2, 0, 256, lock), 2);
}

static void test_groups(void)
{
	size_t cap = PULL_GROUP_BYTES + (size_t)pull_max_run(65536) * 65536;
	unsigned char *buf = malloc(cap);
	struct pull_run *runs = calloc(PULL_GROUP_RUNS, sizeof(*runs));
	uint64_t list[1000];
	size_t i = 0, nr;

	ASSERT_TRUE(buf && runs);
	if (!buf || !runs)
		goto out;
	/* isolated pages: one run each, PULL_GROUP_RUNS to a group */
	for (size_t k = 0; k < 100; k++)
		list[k] = k * 10;
	nr = pull_plan_group(list, 100, &i, 4096, buf, runs);
	ASSERT_EQ(nr, PULL_GROUP_RUNS);
	ASSERT_EQ(i, PULL_GROUP_RUNS);
	ASSERT_EQ(runs[5].first, 50);
	ASSERT_EQ(runs[5].span, 1);
	ASSERT_EQ(runs[5].i, 5);
	ASSERT_EQ(runs[5].k, 6);
	ASSERT_TRUE(runs[5].buf == buf + 5 * 4096);
	nr = pull_plan_group(list, 100, &i, 4096, buf, runs);
	ASSERT_EQ(nr, 100 - PULL_GROUP_RUNS);
	ASSERT_EQ(i, 100);
	ASSERT_EQ(runs[0].first, PULL_GROUP_RUNS * 10);
	ASSERT_TRUE(runs[0].buf == buf);
	/* adjacent 64 KiB pages: runs of PULL_RUN_BYTES until the group holds PULL_GROUP_BYTES */
	for (size_t k = 0; k < 1000; k++)
		list[k] = k;
	i = 0;
	nr = pull_plan_group(list, 1000, &i, 65536, buf, runs);
	ASSERT_EQ(nr, PULL_GROUP_BYTES / PULL_RUN_BYTES);
	ASSERT_EQ(i, PULL_GROUP_BYTES / 65536);
	ASSERT_EQ(runs[nr - 1].first, (nr - 1) * 16);
	ASSERT_EQ(runs[nr - 1].span, 16);
	ASSERT_TRUE(runs[nr - 1].buf == buf + (nr - 1) * PULL_RUN_BYTES);
out:
	free(runs);
	free(buf);
}

static void test_sequential(void)
{
	struct pull_job j = { 0 };
	uint64_t list[100];

	j.want.page_size = 4096;
	j.want.page_count = 100;
	for (size_t k = 0; k < 100; k++)
		list[k] = k;
	/* half of the database or more: one pass in order */
	ASSERT_TRUE(pull_sequential_pays(&j, list, PULL_SEQ_PERCENT));
	ASSERT_TRUE(!pull_sequential_pays(&j, list, PULL_SEQ_PERCENT - 1));
	/* what counts is what the runs span, bridged gaps included */
	for (size_t k = 0; k < 20; k++)
		list[k] = k * 5;
	ASSERT_TRUE(!pull_sequential_pays(&j, list, 10));   /* pages 0..45 */
	ASSERT_TRUE(pull_sequential_pays(&j, list, 20));    /* pages 0..95 */
	j.reads = READS_AUTO;
	ASSERT_TRUE(pull_read_in_order(&j, list, 20, false));
	ASSERT_TRUE(!pull_read_in_order(&j, list, 10, false));
	j.reads = READS_RANGED;
	ASSERT_TRUE(!pull_read_in_order(&j, list, 20, false));
	j.reads = READS_SEQUENTIAL;
	ASSERT_TRUE(pull_read_in_order(&j, list, 1, false));

	/* with the store's costs known (direct reads): the estimated times decide, not the
	 * share. 10 single pages 10 apart (10 runs, 10 % of the file); 100 pages of 4 KiB in
	 * order at 1 MB/s: 410 ms. */
	for (size_t k = 0; k < 10; k++)
		list[k] = k * 10;
	j.reads = READS_AUTO;
	j.s3key = "org.db";
	j.costs.bytes_per_ms = 1000;
	j.costs.req_ms = 5;                 /* 10 runs x 5 ms: ranged */
	ASSERT_TRUE(!pull_read_in_order(&j, list, 10, false));
	ASSERT_CONTAINS(j.plan_why, "ranged_gets=10 est_ranged_ms=50");
	ASSERT_CONTAINS(j.plan_why, "est_in_order_ms=410");
	j.costs.req_ms = 50;                /* 10 x 50 ms: in order, though 10 % of the file */
	ASSERT_TRUE(pull_read_in_order(&j, list, 10, false));
	j.costs.req_ms = 0;                 /* a figure missing, no probe allowed: the share */
	ASSERT_TRUE(!pull_read_in_order(&j, list, 10, false));
	j.costs.req_ms = 50;
	j.costs.bytes_per_ms = 0;
	ASSERT_TRUE(!pull_read_in_order(&j, list, 10, false));
	j.s3key = NULL;
}

static void test_diff(void)
{
	unsigned char want[4 * FERRY_PAGE_HASH_LEN], have[3 * FERRY_PAGE_HASH_LEN];
	struct pull_job j = { 0 };
	uint64_t *list = NULL;
	size_t n = 0;

	for (size_t k = 0; k < sizeof(want); k++)
		want[k] = (unsigned char)(k * 7 + 1);
	memcpy(have, want, sizeof(have));
	have[FERRY_PAGE_HASH_LEN + 3] ^= 0x40;             /* page 1 changed locally */
	j.c = ctx;
	j.want.page_size = 4096;
	j.want.page_count = 4;
	j.want.hashes = want;
	j.rinfo.page_size = 4096;
	j.rinfo.page_count = 3;
	j.rhashes = have;
	ASSERT_EQ(pull_want_size(&j), 4 * 4096);
	ASSERT_TRUE(!pull_page_differs(&j, 0));
	ASSERT_TRUE(pull_page_differs(&j, 1));
	ASSERT_TRUE(!pull_page_differs(&j, 2));
	ASSERT_TRUE(pull_page_differs(&j, 3));             /* past the replica's end */
	ASSERT_EQ(pull_diff_list(&j, &list, &n), 0);
	ASSERT_EQ(n, 2);
	if (n == 2) {
		ASSERT_EQ(list[0], 1);
		ASSERT_EQ(list[1], 3);
	}
	free(list);
	/* another page size: nothing of the replica can be kept */
	j.rinfo.page_size = 1024;
	ASSERT_TRUE(pull_page_differs(&j, 0));
	ASSERT_EQ(pull_diff_list(&j, &list, &n), 0);
	ASSERT_EQ(n, 4);
	free(list);
}

/* ---- whole pulls between local files ---- */

static char *tmp_path(const char *name)
{
	static char buf[8][PATH_MAX];
	static int k;

	k = (k + 1) % 8;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

static void sql(const char *path, const char *stmt)
{
	sqlite3 *db = NULL;
	char *err = NULL;

	ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, stmt, NULL, NULL, &err) != SQLITE_OK)
		UNIT_FAIL("%s: %s", stmt, err ? err : "?");
	sqlite3_free(err);
	sqlite3_close(db);
}

static void make_db(const char *path, int page_size)
{
	char stmt[512];

	snprintf(stmt, sizeof(stmt), "PRAGMA page_size = %d; PRAGMA journal_mode = DELETE; "
		 "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); "
		 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) "
		 "INSERT INTO t SELECT i, hex(zeroblob(500)) FROM n", page_size);
	sql(path, stmt);
}

static void change_row(const char *path, int id)
{
	char stmt[128];

	snprintf(stmt, sizeof(stmt), "UPDATE t SET v = hex(randomblob(500)) WHERE id = %d", id);
	sql(path, stmt);
}

/* The whole file, malloc'd; NULL when it cannot be read. */
static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b = NULL;
	long n;

	*len = 0;
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (b = malloc((size_t)n + 1)) && fread(b, 1, (size_t)n, f) == (size_t)n)
		*len = (size_t)n;
	fclose(f);
	return b;
}

static bool same_bytes(const char *a, const char *b)
{
	size_t la, lb;
	unsigned char *x = slurp(a, &la), *y = slurp(b, &lb);
	bool same = x && y && la == lb && la > 0 && memcmp(x, y, la) == 0;

	free(x);
	free(y);
	return same;
}

static bool copy_file(const char *from, const char *to)
{
	size_t len;
	unsigned char *b = slurp(from, &len);
	FILE *f = b ? fopen(to, "wb") : NULL;
	bool ok = f && fwrite(b, 1, len, f) == len;

	if (f && fclose(f) != 0)
		ok = false;
	free(b);
	return ok;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* What ferryfs shows: the object's ETag as an xattr of the file. */
static bool set_etag(const char *path, const char *etag)
{
	return setxattr(path, FERRY_XATTR_ETAG, etag, strlen(etag), 0) == 0;
}

/* pull_run without the config: a job from origin to replica, prepared. */
static int prepare(struct pull_job *j, const char *origin, const char *replica,
		   enum pull_reads reads, bool create)
{
	ctx_clear_error(ctx);
	ASSERT_EQ(pull_job_init(j, ctx, strdup(origin), strdup(replica), ".ferry-manifest"), 0);
	j->verify = VERIFY_QUICK;
	j->reads = reads;
	j->create = create;
	return pull_prepare(j, false);
}

/* A whole pull: 0 or the failure code; the job is released. */
static int pull(const char *origin, const char *replica, enum pull_source *source)
{
	struct pull_job j;
	int rc = prepare(&j, origin, replica, READS_AUTO, false);

	if (source)
		*source = j.source;
	if (!rc)
		rc = pull_apply(&j);
	pull_job_release(&j);
	return rc;
}

static void test_missing_origin(void)
{
	struct pull_job j;
	struct stat st;
	char *replica = tmp_path("empty.db");

	ASSERT_EQ(prepare(&j, tmp_path("nodir/o.db"), replica, READS_AUTO, false), FERRY_FAIL);
	ASSERT_CONTAINS(ctx_error(ctx), "is not reachable");
	pull_job_release(&j);
	ASSERT_EQ(prepare(&j, tmp_path("none.db"), replica, READS_AUTO, false), FERRY_FAIL);
	ASSERT_CONTAINS(ctx_error(ctx), "does not exist (set create_if_missing");
	pull_job_release(&j);
	/* create_if_missing: an empty replica and a state saying the origin was absent */
	ASSERT_EQ(prepare(&j, tmp_path("none.db"), replica, READS_AUTO, true), 0);
	ASSERT_TRUE(j.missing);
	ASSERT_EQ(pull_apply(&j), 0);
	ASSERT_TRUE(j.created);
	pull_job_release(&j);
	ASSERT_TRUE(stat(replica, &st) == 0 && st.st_size == 0);
	ASSERT_TRUE(exists(tmp_path("empty.db.ferry-state")));
	ASSERT_TRUE(!exists(tmp_path("empty.db.ferry-tmp")));
}

/* Plain files (no ETag): a copy, then compares of every page. */
static void test_plain(void)
{
	char *origin = tmp_path("origin.db"), *replica = tmp_path("replica.db");
	enum pull_source src;
	struct pull_job j;

	make_db(origin, 4096);
	ASSERT_EQ(pull(origin, replica, &src), 0);
	ASSERT_EQ(src, SRC_COPY);
	ASSERT_TRUE(same_bytes(origin, replica));
	ASSERT_TRUE(exists(tmp_path("replica.db.ferry-state")));
	ASSERT_TRUE(!exists(tmp_path("replica.db.ferry-tmp")));
	change_row(origin, 10);
	ASSERT_TRUE(!same_bytes(origin, replica));
	ASSERT_EQ(prepare(&j, origin, replica, READS_AUTO, false), 0);
	ASSERT_EQ(j.source, SRC_COMPARE);
	ASSERT_EQ(pull_apply(&j), 0);
	ASSERT_TRUE(j.pages_moved > 0 && j.pages_moved < j.want.page_count);
	pull_job_release(&j);
	ASSERT_TRUE(same_bytes(origin, replica));
	ASSERT_TRUE(!exists(tmp_path("replica.db.ferry-undo")));
	/* a replica of another page size is replaced whole */
	make_db(tmp_path("small.db"), 1024);
	ASSERT_EQ(pull(origin, tmp_path("small.db"), &src), 0);
	ASSERT_EQ(src, SRC_COPY);
	ASSERT_TRUE(same_bytes(origin, tmp_path("small.db")));
}

/* With ETags (as on ferryfs): the state file, then a manifest written next to the origin. */
static void test_etags(void)
{
	char *origin = tmp_path("origin.db"), *replica = tmp_path("replica.db");
	char *helper = tmp_path("helper.db"), *manifest = tmp_path("origin.db.ferry-manifest");
	unsigned char *before;
	enum pull_source src;
	struct pull_job j;
	size_t len;

	if (!set_etag(origin, "\"e1\"")) {
		fprintf(stderr, "test_pull: no user xattrs in %s (%s): ETag cases not run\n", tmpdir,
			strerror(errno));
		return;
	}
	/* the state has no ETag yet: compare, which records e1 */
	ASSERT_EQ(pull(origin, replica, &src), 0);
	ASSERT_EQ(src, SRC_COMPARE);
	/* the state matches the origin's ETag and the replica: nothing moves */
	ASSERT_EQ(prepare(&j, origin, replica, READS_AUTO, false), 0);
	ASSERT_EQ(j.source, SRC_STATE);
	ASSERT_EQ(pull_apply(&j), 0);
	ASSERT_TRUE(j.zero);
	ASSERT_EQ(j.pages_moved, 0);
	pull_job_release(&j);
	/* a local change to the replica: the state says which pages to read back, ranged */
	change_row(replica, 30);
	ASSERT_EQ(prepare(&j, origin, replica, READS_RANGED, false), 0);
	ASSERT_EQ(j.source, SRC_STATE);
	ASSERT_EQ(pull_apply(&j), 0);
	ASSERT_TRUE(!j.zero && !j.sequential);
	ASSERT_TRUE(j.pages_moved > 0 && j.pages_moved < j.want.page_count);
	pull_job_release(&j);
	ASSERT_TRUE(same_bytes(origin, replica));

	/* a new origin version e2 and its manifest (a pull's state file has the same form) */
	change_row(origin, 20);
	ASSERT_TRUE(set_etag(origin, "\"e2\""));
	ASSERT_EQ(pull(origin, helper, &src), 0);
	ASSERT_TRUE(copy_file(tmp_path("helper.db.ferry-state"), manifest));
	/* the object changes under the same ETag: the manifest's hashes catch it, nothing kept */
	change_row(origin, 40);
	before = slurp(replica, &len);
	ASSERT_EQ(prepare(&j, origin, replica, READS_AUTO, false), 0);
	ASSERT_EQ(j.source, SRC_MANIFEST);
	ASSERT_EQ(pull_apply(&j), FERRY_FAIL);
	ASSERT_CONTAINS(ctx_error(ctx), "does not match origin");
	pull_job_release(&j);
	ASSERT_TRUE(!exists(tmp_path("replica.db.ferry-undo")));
	{
		size_t now_len;
		unsigned char *now = slurp(replica, &now_len);

		ASSERT_TRUE(before && now && now_len == len && memcmp(before, now, len) == 0);
		free(now);
	}
	free(before);
	/* e3 with a true manifest: read through it, here in one pass */
	ASSERT_TRUE(set_etag(origin, "\"e3\""));
	ASSERT_EQ(pull(origin, helper, &src), 0);
	ASSERT_TRUE(copy_file(tmp_path("helper.db.ferry-state"), manifest));
	ASSERT_EQ(prepare(&j, origin, replica, READS_SEQUENTIAL, false), 0);
	ASSERT_EQ(j.source, SRC_MANIFEST);
	ASSERT_EQ(pull_apply(&j), 0);
	ASSERT_TRUE(j.sequential);
	pull_job_release(&j);
	ASSERT_TRUE(same_bytes(origin, replica));
}

int main(void)
{
	char cmd[PATH_MAX + 16];

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	ctx = ctx_new(&run, &stage);
	test_modes();
	test_runs();
	test_groups();
	test_sequential();
	test_diff();
	test_missing_origin();
	test_plain();
	test_etags();
	ctx_free(ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_pull: cannot remove %s\n", tmpdir);
	return UNIT_DONE();
}
