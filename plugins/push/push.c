/* push.c: the push stage: write the replica's changed pages into the origin, one fenced atomic commit. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "ferry_ctx.h"
#include "ferry_failpoint.h"
#include "ferry_fsclient.h"
#include "ferry_lock.h"
#include "ferry_log.h"
#include "ferry_manifest.h"
#include "ferry_pages.h"
#include "ferry_patch.h"
#include "ferry_s3.h"
#include "ferry_stage.h"
#include "ferry_fsproto.h"
#include "ferry_time.h"
#include "push_cost.h"

/*
 * About push.
 *
 * The replica's state file (written by pull, see pull.c) holds the page hashes of the
 * origin version the replica came from and its ETag. push
 *   1. asks the lock stage whether the lock is still ours with lease_need left (once
 *      something may be written: after the checks of 2, before 3);
 *   2. freezes the replica: no hot journal, WAL checkpointed (TRUNCATE), quick_check,
 *      then a read transaction held until the end so no writer can change the file;
 *   3. opens the origin on the mount and compares its ETag with the state's: another
 *      ETag means somebody else wrote it -> exit 4, nothing written;
 *   4. an object of the [s3] bucket is written from the replica straight to the store
 *      (commit_direct: the parts holding a changed page uploaded, the others copied
 *      server-side, or uploaded too where copies cost more (copy_slack, and the costs
 *      earlier pushes kept: push_cost.c), completed If-Match the ETag synced); any
 *      other origin gets only the pages whose hash differs pwritten through the mount,
 *      truncated or extended, and fsynced: ferryfs commits the same way from its cache;
 *      a lost race fails either;
 *   5. proves the new object equals the replica (verify): by default from what the write
 *      learned (every uploaded part went with Content-MD5 and came back with
 *      that MD5 as its ETag; the object's ETag is the one computed from all parts' ETags,
 *      copied ones included; a HEAD gave that ETag and the size): nothing is read back.
 *      Where the store's ETags are not MD5s, only the uploaded parts are read back from
 *      the store and their pages compared; verify = readback reads the whole object;
 *   6. writes the manifest sidecar for the new ETag (page hashes, checksum, lock
 *      generation) and the replica's new state.
 * A crash after 4 and before 6 leaves a manifest for an older ETag: the next pull sees
 * it is stale and compares every page; nothing is ever wrong, only slower.
 * A plain local origin (no ETag, development) is fenced by content instead: its page
 * hashes must still equal the state's.
 */

#define RUN_BYTES (1u << 20)

struct push_job {
	struct ferry_ctx *c;
	char *origin;
	char *replica;
	char *state_path;
	char *mf_path;
	sqlite3 *db;                        /* holds the read transaction */
	int rfd;
	int ofd;
	struct ferry_db_info rinfo;
	struct ferry_manifest state;        /* what pull recorded: the origin at its ETag */
	struct ferry_manifest now;          /* the replica's pages, pushed */
	uint64_t *list;                     /* pages to write */
	size_t n;
	uint64_t pages_filled;              /* unchanged pages written to complete a part */
	bool upload_all;                    /* server_copy = no: every part uploaded */
	bool stamp_held;                    /* the replica's stamp held: not hashed */
	uint64_t origin_size;
	char etag[FERRY_ETAG_MAX];
	bool etag_known;
	bool create;                        /* the origin did not exist at pull */
	char *stats_root;
	bool have_stats;
	struct ferry_fsstats stats_before;
	struct ferry_fsstats stats_commit;      /* right after the commit (before the manifest) */
	bool have_commit_stats;
	bool direct;                        /* written from the replica straight to the store */
	bool proven;                        /* direct: the store's ETags prove every byte */
	uint64_t up, copied;                /* direct: bytes uploaded / copied server-side */
	struct ferry_s3_range *upl;         /* direct: the byte ranges uploaded (any order) */
	size_t nupl, capupl;
	bool upl_lost;                      /* out of memory recording one */
	struct ferry_pages_cb cb;
};

static void job_release(struct push_job *j)
{
	if (j->ofd >= 0)
		close(j->ofd);
	if (j->rfd >= 0)
		close(j->rfd);
	if (j->db) {
		sqlite3_exec(j->db, "COMMIT", NULL, NULL, NULL);
		sqlite3_close(j->db);
	}
	ferry_manifest_release(&j->state);
	ferry_manifest_release(&j->now);
	free(j->list);
	free(j->upl);
	free(j->origin);
	free(j->replica);
	free(j->state_path);
	free(j->mf_path);
	free(j->stats_root);
}

/* Key, else the pull stage's fact. */
static char *key_or_fact(struct ferry_ctx *c, const char *key, const char *fact)
{
	char *v = ferry_cfg_path(c, key);
	const char *f;

	if (v)
		return v;
	f = ferry_fact(c, "pull", fact);
	return f && *f ? strdup(f) : NULL;
}

static bool stage_cancelled(void *c)
{
	return ferry_cancelled(c);
}

static int job_init(struct push_job *j, struct ferry_ctx *c)
{
	const char *suffix = ferry_cfg(c, "manifest");

	memset(j, 0, sizeof(*j));
	j->rfd = j->ofd = -1;
	j->c = c;
	ferry_pages_cb_init(&j->cb, stage_cancelled, c, "push");
	j->origin = key_or_fact(c, "origin", "origin");
	j->replica = key_or_fact(c, "replica", "replica");
	if (!j->origin || !j->replica)
		return ferry_fail(c, FERRY_FAIL, "push needs '%s': set it in [stage %s] or run pull first",
				  j->origin ? "replica" : "origin", ferry_stage_name(c));
	j->state_path = ferry_pages_concat(j->replica, ".ferry-state");
	j->mf_path = ferry_pages_concat(j->origin, suffix ? suffix : ".ferry-manifest");
	if (!j->state_path || !j->mf_path)
		return ferry_fail(c, FERRY_FAIL, "out of memory");
	return 0;
}

/* What pull recorded, and that it is this run's pull when there was one. */
static void who_won(struct push_job *j, char *out, size_t n);

/* The state file is the truth about what the replica was last synced with: pull writes it,
 * and so does every successful push (the origin at the ETag push committed). A rerun of
 * push after a manual stage, or after a failed push, works from it: pull's facts in the
 * journal may describe an older sync and are not consulted. */
static int load_state(struct push_job *j)
{
	char err[256];
	int rc;

	rc = ferry_manifest_load(j->state_path, &j->state, err, sizeof(err));
	if (rc == -2)
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s' has no state file '%s': run pull first",
				  j->replica, j->state_path);
	if (rc)
		return ferry_fail(j->c, FERRY_FAIL, "state file '%s': %s", j->state_path, err);
	j->create = j->state.flags & FERRY_MANIFEST_ABSENT;
	return 0;
}

static int sql_one(struct push_job *j, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(j->db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && out)
		snprintf(out, outlen, "%s", sqlite3_column_text(st, 0) ?
			 (const char *)sqlite3_column_text(st, 0) : "");
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* PRAGMA quick_check inside the read transaction freeze_replica holds. Only needed when
 * something will be sent: on a 1 GiB replica it costs seconds, and a warm run with no
 * change sends nothing. */
static int check_replica(struct push_job *j)
{
	char out[512] = "";

	if (sql_one(j, "PRAGMA quick_check(1)", out, sizeof(out)) != 0 || strcmp(out, "ok") != 0)
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s' fails quick_check: %s; nothing sent",
				  j->replica, *out ? out : sqlite3_errmsg(j->db));
	return 0;
}

/* A consistent snapshot of the replica that stays put while we copy (checked by
 * check_replica once we know something will be sent). */
static int freeze_replica(struct push_job *j, bool dry)
{
	char mode[32] = "", out[512] = "";
	char err[256];

	if (ferry_pages_has_hot_journal(j->replica))
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s' has a hot journal '%s-journal': "
				  "an unfinished transaction; nothing sent", j->replica, j->replica);
	if (sqlite3_open_v2(j->replica, &j->db, dry ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE,
			    NULL) != SQLITE_OK)
		return ferry_fail(j->c, FERRY_FAIL, "cannot open replica '%s': %s", j->replica,
				  sqlite3_errmsg(j->db));
	sqlite3_busy_timeout(j->db, 5000);
	if (sql_one(j, "PRAGMA journal_mode", mode, sizeof(mode)) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s': %s; nothing sent", j->replica,
				  sqlite3_errmsg(j->db));
	if (strcmp(mode, "wal") == 0 && !dry) {
		if (sql_one(j, "PRAGMA wal_checkpoint(TRUNCATE)", out, sizeof(out)) != 0 ||
		    strcmp(out, "0") != 0)
			return ferry_fail(j->c, FERRY_FAIL, "cannot checkpoint replica '%s': %s; nothing sent",
					  j->replica, *out ? "database busy" : sqlite3_errmsg(j->db));
	}
	if (sql_one(j, "BEGIN", NULL, 0) != 0 ||
	    sql_one(j, "SELECT count(*) FROM sqlite_master", NULL, 0) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot hold a read transaction on '%s': %s",
				  j->replica, sqlite3_errmsg(j->db));
	if (strcmp(mode, "wal") == 0 && ferry_pages_has_wal(j->replica))
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s' has uncheckpointed WAL frames; "
				  "nothing sent", j->replica);
	j->rfd = open(j->replica, O_RDONLY | O_CLOEXEC);
	if (j->rfd < 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot open replica '%s': %s", j->replica,
				  strerror(errno));
	if (ferry_pages_probe_fd(j->rfd, &j->rinfo, err, sizeof(err)) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s': %s; nothing sent", j->replica, err);
	if (ferry_manifest_alloc(&j->now, j->rinfo.page_size, j->rinfo.page_count) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	if (j->rinfo.page_count && j->state.page_size == j->rinfo.page_size &&
	    j->state.page_count == j->rinfo.page_count && !(j->state.flags & FERRY_MANIFEST_ABSENT) &&
	    ferry_replica_stamp_holds(j->replica, j->rfd, &j->state)) {
		/* unchanged since the last sync (its stamp holds): its pages are the state's */
		memcpy(j->now.hashes, j->state.hashes, (size_t)j->rinfo.page_count * FERRY_PAGE_HASH_LEN);
		memcpy(j->now.db_sum, j->state.db_sum, FERRY_DB_SUM_LEN);   /* checked at load */
		j->stamp_held = true;
		ferry_log(j->c, FERRY_INFO, "replica unchanged since the last sync: not hashed",
			  "pages=%" PRIu64, j->rinfo.page_count);
	} else if (j->rinfo.page_count) {
		int64_t t0 = ferry_mono_ms();
		uint64_t bytes = 0;

		j->cb.step = "hashing the replica";
		if (ferry_pages_hash_fd(j->rfd, j->rinfo.page_size, j->rinfo.page_count, j->now.hashes,
					dry ? NULL : &j->cb, &bytes, err, sizeof(err)) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "replica '%s': %s", j->replica, err);
		ferry_log(j->c, FERRY_INFO, "hashed the replica", "pages=%" PRIu64 " bytes=%" PRIu64
			  " ms=%" PRId64, j->rinfo.page_count, bytes, ferry_mono_ms() - t0);
	}
	if (!j->stamp_held)
		ferry_manifest_sum(&j->now);
	return 0;
}

/* The replica now has the pages of the saved state: stamp it (a failed stamp only costs
 * the next run a hash of the replica). */
static void save_stamp(struct push_job *j)
{
	char err[256];

	if (j->now.page_count && !j->stamp_held &&
	    ferry_replica_stamp_save(j->replica, &j->now, err, sizeof(err)) != 0)
		ferry_log(j->c, FERRY_DEBUG, "replica not stamped", "reason='%s'", err);
}

static int diff(struct push_job *j)
{
	uint64_t keep = j->create || j->state.page_size != j->now.page_size ? 0 : j->state.page_count;

	if (ferry_pages_diff(j->now.hashes, j->now.page_count, j->state.hashes, keep,
			     j->now.page_size, &j->list, &j->n) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	return 0;
}

/* Distinct parts (ferry_fsproto.h's layout) touched by the pages to write: what ferryfs
 * uploads (through the mount). */
static uint64_t parts_touched(const struct push_job *j)
{
	uint64_t parts = 0, last = UINT64_MAX;

	for (size_t i = 0; i < j->n; i++) {
		uint64_t p = ferry_fs_part_of(j->list[i] * j->now.page_size);

		if (p != last)
			parts++;
		last = p;
	}
	return parts;
}

/* The parts of a direct write (ferry_s3_plan_around): the runs of pages to write, uploaded
 * in parts of 5 MiB or more around them, the rest copied from the version synced. The
 * number of parts (*plan malloc'd), 0 for an empty object, -1 out of memory. */
static long plan_direct(const struct push_job *j, struct ferry_s3_part **plan)
{
	const uint64_t ps = j->now.page_size;
	struct ferry_s3_range *r = calloc(j->n ? j->n : 1, sizeof(*r));
	size_t nr = 0;
	long n;

	*plan = NULL;
	if (!r)
		return -1;
	for (size_t i = 0; i < j->n; i++) {
		if (nr && r[nr - 1].end == j->list[i] * ps)
			r[nr - 1].end += ps;
		else
			r[nr++] = (struct ferry_s3_range){ j->list[i] * ps, (j->list[i] + 1) * ps };
	}
	n = ferry_s3_plan_around(r, nr, j->now.page_count * ps, j->origin_size, ps, plan);
	free(r);
	return n;
}

static uint64_t plan_uploads(const struct ferry_s3_part *plan, long n)
{
	uint64_t up = 0;

	for (long i = 0; i < n; i++)
		up += !plan[i].copy;
	return up;
}

/* The dry run's count of parts to upload: an existing object is written from the replica
 * (plan_direct) unless every part is uploaded; a new one goes through the mount. */
static uint64_t parts_changed(const struct push_job *j)
{
	struct ferry_s3_part *plan;
	long n;
	uint64_t up;

	if (!j->etag_known || j->create || !j->n)
		return parts_touched(j);
	if (j->upload_all)
		return ferry_fs_nparts(j->now.page_count * j->now.page_size);
	n = plan_direct(j, &plan);
	up = n < 0 ? parts_touched(j) : plan_uploads(plan, n);
	free(plan);
	return up;
}

/* Open the origin for writing and prove nobody wrote it since the replica's last sync (the
 * fence). */
static int open_origin(struct push_job *j)
{
	char err[256];
	struct stat st;

	if (j->create) {
		j->ofd = open(j->origin, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (j->ofd < 0 && errno == EEXIST)
			return ferry_fail(j->c, FERRY_FENCED, "origin '%s' was created by someone else "
					  "since this replica's last sync: nothing written", j->origin);
		if (j->ofd < 0)
			return ferry_fail(j->c, FERRY_FAIL, "cannot create origin '%s': %s", j->origin,
					  strerror(errno));
		return 0;
	}
	j->ofd = open(j->origin, O_RDWR | O_CLOEXEC);
	if (j->ofd < 0 && errno == ENOENT) {
		/* gone from a live mount = removed by someone; no mount = nothing to say yet */
		if (!j->stats_root && !ferry_pages_parent_exists(j->origin))
			return ferry_fail(j->c, FERRY_FAIL, "origin '%s' is not reachable: is the "
					  "mount active? (run the mount stage too)", j->origin);
		return ferry_fail(j->c, FERRY_FENCED, "origin '%s' was removed since this replica's "
				  "last sync: nothing written", j->origin);
	}
	if (j->ofd < 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot open origin '%s': %s", j->origin,
				  strerror(errno));
	if (fstat(j->ofd, &st) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot stat origin '%s': %s", j->origin,
				  strerror(errno));
	j->origin_size = (uint64_t)st.st_size;
	j->etag_known = ferry_pages_etag_fd(j->ofd, j->etag, sizeof(j->etag)) == 0;
	if (j->etag_known) {
		/* push reads through the mount only what it checks: no whole-file fetch */
		if (ferry_pages_ferryfs_ranged(j->ofd) != 0)
			ferry_log(j->c, FERRY_DEBUG, "cannot limit ferryfs fetches", "origin='%s' err='%s'",
				  j->origin, strerror(errno));
		if (strcmp(j->etag, j->state.etag) != 0) {
			char who[1024];

			who_won(j, who, sizeof(who));
			return ferry_fail(j->c, FERRY_FENCED, "origin '%s' changed since this replica's "
					  "last sync (etag %s, synced %s): someone else wrote it; nothing "
					  "written; %s. Pull again to work on the new version", j->origin,
					  j->etag, j->state.etag[0] ? j->state.etag : "none",
					  *who ? who : "who wrote it is not known");
		}
		return 0;
	}
	/* no ETag (plain file): fence by content */
	{
		struct ferry_manifest cur = { 0 };
		int rc = 0;

		if (j->origin_size != j->state.page_count * j->state.page_size)
			return ferry_fail(j->c, FERRY_FENCED, "origin '%s' changed since this "
					  "replica's last sync (size %" PRIu64 ", synced %" PRIu64 "): "
					  "nothing written", j->origin,
					  j->origin_size, j->state.page_count * j->state.page_size);
		if (ferry_manifest_alloc(&cur, j->state.page_size, j->state.page_count) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "out of memory");
		if (cur.page_count && ferry_pages_hash_fd(j->ofd, cur.page_size, cur.page_count,
							  cur.hashes, &j->cb, NULL, err, sizeof(err)) != 0)
			rc = ferry_fail(j->c, FERRY_FAIL, "origin '%s': %s", j->origin, err);
		else if (cur.page_count && memcmp(cur.hashes, j->state.hashes,
						  (size_t)cur.page_count * FERRY_PAGE_HASH_LEN) != 0)
			rc = ferry_fail(j->c, FERRY_FENCED, "origin '%s' changed since this "
					"replica's last sync: someone else wrote it; nothing written",
					j->origin);
		ferry_manifest_release(&cur);
		return rc;
	}
}

/* The page runs to write, [first, first + count) each, in order: the changed pages; on
 * ferryfs, every page of each part (ferry_fsproto.h's layout) that holds a changed one (the
 * replica's unchanged pages are the origin's, the fence proved it), so that ferryfs holds
 * the whole part and uploads it without first fetching the rest of it from the store. */
struct page_run {
	uint64_t first, count;
};

static struct page_run *page_runs(const struct push_job *j, size_t *nruns, uint64_t *pages)
{
	const uint64_t ps = j->now.page_size;
	struct page_run *r = calloc(j->n ? j->n : 1, sizeof(*r));
	size_t n = 0;

	*pages = 0;
	if (!r)
		return NULL;
	if (j->upload_all && j->etag_known && j->n) {
		/* no part left to copy server-side: every page goes to the mount */
		r[0].first = 0;
		r[0].count = j->now.page_count;
		*nruns = 1;
		*pages = j->now.page_count;
		return r;
	}
	for (size_t i = 0; i < j->n; i++) {
		uint64_t first = j->list[i], count = 1;

		if (j->etag_known && ps) {
			uint64_t part = ferry_fs_part_of(first * ps);

			first = ferry_fs_part_start(part) / ps;
			count = ferry_fs_part_len(part, j->now.page_count * ps) / ps;
		}
		if (n && r[n - 1].first + r[n - 1].count >= first + count)
			continue;           /* inside the run before (same part) */
		if (n && r[n - 1].first + r[n - 1].count == first) {
			r[n - 1].count += count;
		} else {
			r[n].first = first;
			r[n].count = count;
			n++;
		}
		*pages += count;
	}
	*nruns = n;
	return r;
}

static int write_pages(struct push_job *j)
{
	uint32_t ps = j->now.page_size;
	size_t max_run, nruns = 0;
	uint64_t pages = 0, done = 0;
	struct page_run *runs;
	unsigned char *buf;
	struct ferry_progress prog;
	int rc = FERRY_FAIL;

	if (j->n == 0)
		return 0;                   /* also: an empty database has no page size */
	max_run = RUN_BYTES / ps ? RUN_BYTES / ps : 1;
	buf = malloc(max_run * ps);
	runs = page_runs(j, &nruns, &pages);
	if (!buf || !runs) {
		free(buf);
		free(runs);
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	}
	j->pages_filled = pages - j->n;
	j->cb.step = "writing changed pages into the mount's cache";
	ferry_progress_init(&prog, &j->cb, pages);
	for (size_t r = 0; r < nruns; r++) {
		for (uint64_t at = runs[r].first; at < runs[r].first + runs[r].count;) {
			uint64_t run = runs[r].first + runs[r].count - at;
			size_t len;
			ssize_t w;

			if (run > max_run)
				run = max_run;
			len = (size_t)run * ps;
			if (pread(j->rfd, buf, len, (off_t)(at * ps)) != (ssize_t)len) {
				rc = ferry_fail(j->c, FERRY_FAIL, "cannot read replica '%s': %s", j->replica,
						strerror(errno));
				goto out;
			}
			w = pwrite(j->ofd, buf, len, (off_t)(at * ps));
			if (w != (ssize_t)len) {
				rc = ferry_fail(j->c, FERRY_FAIL, "cannot write origin '%s': %s", j->origin,
						w < 0 ? strerror(errno) : "short write");
				goto out;
			}
			at += run;
			done += run;
			ferry_progress_add(&prog, run, len);
			if (done >= pages / 2 && done - run < pages / 2 &&
			    ferry_failpoint("push.mid_write")) {
				rc = ferry_fail(j->c, FERRY_FAIL, "failpoint push.mid_write");
				goto out;
			}
		}
	}
	rc = 0;
out:
	ferry_progress_end(&prog);
	free(runs);
	free(buf);
	return rc;
}

/* Who got there first: the object's ETag and time now, and who holds the lock (when the
 * origin is an object of the [s3] bucket). "" when nothing can be learnt. */
static void who_won(struct push_job *j, char *out, size_t n)
{
	char bucket[256] = "", err[256], desc[512];
	char *key = ferry_pages_ferryfs_key(NULL, j->origin, bucket, sizeof(bucket));
	const char *lock_key = ferry_fact(j->c, "lock", "key");
	struct ferry_s3_res res = { 0 };
	struct ferry_lock_state ls;
	struct ferry_s3 *s3 = NULL;
	size_t o = 0;

	*out = '\0';
	if (key && (ferry_cfg_global(j->c, "s3", "bucket") || getenv("BUCKET_NAME")))
		s3 = ferry_s3(j->c);
	if (s3 && strcmp(ferry_s3_bucket(s3), bucket) == 0 &&
	    ferry_s3_head(s3, key, NULL, &res) == FERRY_S3_OK) {
		struct tm tm;
		char when[32] = "?";

		if (res.last_modified && gmtime_r(&res.last_modified, &tm))
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		o += (size_t)snprintf(out + o, n - o, "the object is now etag %s, written %s", res.etag,
				      when);
	}
	if (s3 && lock_key && o < n && ferry_lock_read(s3, lock_key, &ls, err, sizeof(err)) == 0) {
		const char *ours = ferry_fact(j->c, "lock", "nonce");

		if (ls.exists && ls.parsed && ours && strcmp(ls.body.nonce, ours) == 0) {
			/* our own lock: it tells nothing about the other writer */
		} else if (ls.exists && ls.parsed) {
			ferry_lock_describe(&ls.body, desc, sizeof(desc));
			o += (size_t)snprintf(out + o, n - o, "%slock '%s' is held by %s", o ? "; " : "",
					      lock_key, desc);
		} else if (!ls.exists) {
			o += (size_t)snprintf(out + o, n - o, "%slock '%s' is free", o ? "; " : "",
					      lock_key);
		}
	}
	free(key);
}

/* The conditional write lost: someone replaced the origin since the replica's last sync. */
static int fail_replaced(struct push_job *j)
{
	char who[1024];

	who_won(j, who, sizeof(who));
	return ferry_fail(j->c, FERRY_FENCED, "origin '%s' was replaced by another writer since "
			  "this replica's last sync (etag %s): nothing overwritten; %s. Pull "
			  "again to work on the new version", j->origin, j->state.etag,
			  *who ? who : "who wrote it is not known");
}

/* fsync = ferryfs's conditional commit. A failure is a fence when the ETag moved, and
 * ESTALE is ferryfs's word for "the conditional commit lost" (412/409 from the store). */
static int commit(struct push_job *j)
{
	char now[FERRY_ETAG_MAX];
	int e;

	if (fsync(j->ofd) == 0)
		return 0;
	e = errno;
	if ((j->etag_known && ferry_pages_etag_path(j->origin, now, sizeof(now)) == 0 &&
	     strcmp(now, j->state.etag) != 0) || (e == ESTALE && !j->create))
		return fail_replaced(j);
	if (j->create && (e == EEXIST || e == ESTALE))
		return ferry_fail(j->c, FERRY_FENCED, "origin '%s' was created by someone else during "
				  "push: nothing overwritten", j->origin);
	return ferry_fail(j->c, FERRY_FAIL, "cannot commit origin '%s': %s", j->origin, strerror(e));
}

/* While fsync commits, ferryfs uploads: its stats file's bytes_up and bytes_copied are
 * what was actually sent (bytes_up per whole part or PUT). A thread turns them into the
 * progress of the commit, in pages of the database: every byte of the new object is either
 * uploaded or copied server-side once. */
struct commit_watch {
	struct push_job *j;
	struct ferry_progress prog;
	uint64_t up, copied;                /* what the progress was told so far */
	volatile bool stop;
	pthread_t th;
};

static void watch_poll(struct commit_watch *w)
{
	const struct push_job *j = w->j;
	struct ferry_fsstats now;
	uint64_t up, copied, ps = j->now.page_size ? j->now.page_size : 1, was, is;

	if (!ferry_fsstats_read(j->stats_root, &now))
		return;
	up = now.bytes_up - j->stats_before.bytes_up;
	copied = now.bytes_copied - j->stats_before.bytes_copied;
	if (up < w->up || copied < w->copied)
		return;                     /* counters of another mount's life: ignore */
	was = (w->up + w->copied) / ps;
	is = (up + copied) / ps;
	ferry_progress_add(&w->prog, is - was, up - w->up);
	w->up = up;
	w->copied = copied;
}

static void *watch_main(void *arg)
{
	struct commit_watch *w = arg;

	while (!w->stop) {
		struct timespec ts = { 0, 100 * 1000000L };

		nanosleep(&ts, NULL);
		watch_poll(w);
	}
	return NULL;
}

/* commit(), with progress lines while it runs and a phase line when it ends. */
static int commit_watched(struct push_job *j)
{
	struct commit_watch w = { .j = j };
	int64_t t0 = ferry_mono_ms();
	bool watching = false;
	int rc;

	j->cb.step = "committing: uploading to S3";
	ferry_progress_init(&w.prog, &j->cb, j->now.page_count);
	if (j->have_stats)
		watching = pthread_create(&w.th, NULL, watch_main, &w) == 0;
	rc = commit(j);
	if (watching) {
		w.stop = true;
		pthread_join(w.th, NULL);
		watch_poll(&w);
	}
	ferry_progress_end(&w.prog);
	if (rc == 0)
		ferry_log(j->c, FERRY_INFO, "committed", "bytes_uploaded=%" PRIu64
			  " bytes_copied=%" PRIu64 " ms=%" PRId64, w.up, w.copied, ferry_mono_ms() - t0);
	return rc;
}

/* The replica written straight to the store (ferry_s3_upload): the parts that hold a
 * changed page are read from the replica and uploaded, the others copied server-side from
 * the version synced; completed If-Match that version. Nothing passes through the mount:
 * no second local copy of what is sent (through ferryfs the bytes went into its cache file
 * first, and the page cache had to write that file out while the upload ran). */
struct direct_up {
	struct push_job *j;
	struct ferry_progress prog;
	pthread_mutex_t mu;
};

static void direct_count(void *arg, enum ferry_s3_upload_ev ev, uint64_t off, uint64_t bytes)
{
	struct direct_up *d = arg;
	struct push_job *j = d->j;
	const uint64_t ps = j->now.page_size ? j->now.page_size : 1;

	if (ev != FERRY_S3_UP_PUT && ev != FERRY_S3_UP_PART && ev != FERRY_S3_UP_COPY)
		return;
	pthread_mutex_lock(&d->mu);
	if (ev == FERRY_S3_UP_COPY) {
		j->copied += bytes;
	} else {
		j->up += bytes;
		if (j->nupl == j->capupl) {
			size_t cap = j->capupl ? j->capupl * 2 : 64;
			struct ferry_s3_range *r = realloc(j->upl, cap * sizeof(*r));

			if (r) {
				j->upl = r;
				j->capupl = cap;
			}
		}
		if (j->nupl < j->capupl)    /* else verify_parts reads every part back */
			j->upl[j->nupl++] = (struct ferry_s3_range){ off, off + bytes };
		else
			j->upl_lost = true;
	}
	ferry_progress_add(&d->prog, bytes / ps, ev == FERRY_S3_UP_COPY ? 0 : bytes);
	pthread_mutex_unlock(&d->mu);
}

static int commit_direct(struct push_job *j, struct ferry_s3 *s3, const char *key)
{
	const uint64_t size = j->now.page_count * j->now.page_size;
	const struct ferry_s3_cond cond = { .if_match = j->state.etag };
	struct direct_up d = { .j = j };
	struct ferry_s3_part *plan = NULL;
	long nplan = j->upload_all ? 0 : plan_direct(j, &plan);
	struct push_costs costs;
	struct ferry_s3_upload u = {
		.key = key, .fd = j->rfd, .size = size, .base = j->state.etag,
		.base_size = j->origin_size, .put_max = FERRY_FS_PUT_MAX, .threads = FERRY_FS_UPLOAD_THREADS,
		.plan = nplan > 0 ? plan : NULL, .nplan = nplan > 0 ? (size_t)nplan : 0,
		.count = direct_count, .arg = &d,
		.failpoint = "push.before_complete", .failpoint_mid = "push.mid_write",
		.copy_slack_ms = (int64_t)ferry_cfg_ms(j->c, "copy_slack"),
		.prior = &costs.prior, .prior_file = costs.path,
	};
	struct ferry_s3_res res;
	int64_t t0 = ferry_mono_ms();
	int rc;

	if (nplan < 0)
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	/* what copies and uploads cost here, as earlier pushes timed them: a store whose
	 * copies are slow gets its parts uploaded without a probe copy first (push_cost.c) */
	push_costs_load(j->c, s3, &costs, ferry_now_ms() / 1000);
	u.prior_age_days = costs.copy_age_days;
	u.prior_uses = costs.copy_pushes;
	pthread_mutex_init(&d.mu, NULL);
	j->cb.step = "committing: uploading to S3";
	ferry_progress_init(&d.prog, &j->cb, j->now.page_count);
	rc = ferry_s3_upload(s3, &u, &cond, &res);
	ferry_progress_end(&d.prog);
	pthread_mutex_destroy(&d.mu);
	free(plan);
	if (rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_CONFLICT)
		return fail_replaced(j);
	if (rc != FERRY_S3_OK)
		return ferry_fail(j->c, FERRY_FAIL, "cannot commit origin '%s': %s", j->origin,
				  u.err && !res.msg[0] ? strerror(u.err) : res.msg);
	/* committed: what this upload timed is worth keeping (a failed one may have been cut
	 * short anywhere) */
	push_costs_update(&costs, &u.measured, u.prior_uploads, ferry_now_ms() / 1000);
	push_costs_save(j->c, &costs);
	j->direct = true;
	j->proven = res.verified;
	snprintf(j->etag, sizeof(j->etag), "%s", res.etag);
	ferry_log(j->c, FERRY_INFO, "committed", "from=replica bytes_uploaded=%" PRIu64
		  " bytes_copied=%" PRIu64 " ms=%" PRId64, j->up, j->copied, ferry_mono_ms() - t0);
	return 0;
}

/* Read the new object back through its path and compare the whole-database checksum: for
 * an origin that is no object of the [s3] bucket (a local file in development). */
static int verify_readback(struct push_job *j)
{
	struct ferry_manifest back = { 0 };
	char err[256], a[65], b[65];
	int64_t t0 = ferry_mono_ms();
	uint64_t bytes = 0;
	int fd, rc = FERRY_FAIL;

	fd = open(j->origin, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot reopen origin '%s' to verify: %s", j->origin,
				  strerror(errno));
	if (ferry_manifest_alloc(&back, j->now.page_size, j->now.page_count) != 0) {
		rc = ferry_fail(j->c, FERRY_FAIL, "out of memory");
		goto out;
	}
	j->cb.step = "verifying: reading the new object back";
	if (back.page_count && ferry_pages_hash_fd(fd, back.page_size, back.page_count, back.hashes,
						   &j->cb, &bytes, err, sizeof(err)) != 0) {
		rc = ferry_fail(j->c, FERRY_FAIL, "cannot verify origin '%s': %s", j->origin, err);
		goto out;
	}
	ferry_manifest_sum(&back);
	if (memcmp(back.db_sum, j->now.db_sum, FERRY_DB_SUM_LEN) != 0) {
		ferry_manifest_sum_hex(&back, a);
		ferry_manifest_sum_hex(&j->now, b);
		rc = ferry_fail(j->c, FERRY_FAIL, "origin '%s' does not match the replica after push "
				"(checksum %s, expected %s)", j->origin, a, b);
		goto out;
	}
	ferry_log(j->c, FERRY_INFO, "verified: the new object matches the replica",
		  "bytes_read=%" PRIu64 " ms=%" PRId64, bytes, ferry_mono_ms() - t0);
	rc = 0;
out:
	ferry_manifest_release(&back);
	close(fd);
	return rc;
}

enum verify_mode { VERIFY_NONE, VERIFY_ETAG, VERIFY_READBACK };

static enum verify_mode verify_mode(struct ferry_ctx *c)
{
	const char *v = ferry_cfg(c, "verify");

	if (!strcmp(v, "none"))
		return VERIFY_NONE;
	if (!strcmp(v, "etag"))
		return VERIFY_ETAG;
	return VERIFY_READBACK;             /* readback, or its old name checksum */
}

/* Did ferryfs prove the commit by the store's ETags (user.ferry.verified = md5)? */
static bool commit_proven(const struct push_job *j)
{
	char v[16];
	ssize_t n;

	if (j->direct)
		return j->proven;
	n = getxattr(j->origin, FERRY_XATTR_VERIFIED, v, sizeof(v) - 1);
	if (n < 0)
		return false;
	v[n] = '\0';
	return strcmp(v, FERRY_VERIFIED_MD5) == 0;
}

/* Compare the pages of one part read back from the store with the replica's hashes. */
static int compare_part(struct push_job *j, struct ferry_hasher *h, const unsigned char *buf,
			uint64_t off, uint64_t len)
{
	const uint64_t ps = j->now.page_size;
	unsigned char hash[FERRY_PAGE_HASH_LEN];

	for (uint64_t p = off / ps; p < (off + len) / ps; p++) {
		if (ferry_pages_is_lock_page(p, j->now.page_size))
			continue;
		if (ferry_hasher_page(h, buf + (p * ps - off), ps, hash) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "cannot hash page %" PRIu64, p);
		if (memcmp(hash, j->now.hashes + p * FERRY_PAGE_HASH_LEN, FERRY_PAGE_HASH_LEN) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "origin '%s' does not match the replica after "
					  "push: page %" PRIu64 " differs in the part read back from "
					  "the store (bytes %" PRIu64 "..%" PRIu64 ", etag %s)", j->origin,
					  p + 1, off, off + len, j->etag);
	}
	return 0;
}

/* Read back, straight from the store (never through the mount, whose cache holds what
 * push wrote) and pinned to the new ETag, every part (all), or the parts this push uploaded
 * (those with a written page; the others were copied server-side from the version the
 * replica was synced to; every part when the commit copied none), and compare their pages
 * with the replica's. 0; -1 when the store
 * cannot be read directly (the caller reads the whole object back through the mount); or a
 * FERRY_ code after ferry_fail. */
static int range_cmp(const void *a, const void *b)
{
	const struct ferry_s3_range *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* What verify_parts reads: the whole object (all); the ranges the direct write uploaded;
 * through the mount, the fixed layout's parts holding a written page. NULL: out of memory. */
static struct ferry_s3_range *readback_ranges(struct push_job *j, bool all, size_t *n)
{
	const uint64_t ps = j->now.page_size, size = j->now.page_count * ps;
	struct ferry_s3_range *r = calloc(all || !j->n ? 1 : j->n, sizeof(*r));
	uint64_t last = UINT64_MAX;

	*n = 0;
	if (!r)
		return NULL;
	if (all) {
		r[(*n)++] = (struct ferry_s3_range){ 0, size };
	} else if (j->direct) {
		free(r);
		if (!(r = malloc((j->nupl ? j->nupl : 1) * sizeof(*r))))
			return NULL;
		memcpy(r, j->upl, j->nupl * sizeof(*r));
		qsort(r, j->nupl, sizeof(*r), range_cmp);
		*n = j->nupl;
	} else {
		for (size_t i = 0; i < j->n; i++) {
			uint64_t part = ferry_fs_part_of(j->list[i] * ps);

			if (part != last && ferry_fs_part_start(part) < size)
				r[(*n)++] = (struct ferry_s3_range){ ferry_fs_part_start(part),
					ferry_fs_part_start(part) + ferry_fs_part_len(part, size) };
			last = part;
		}
	}
	return r;
}

/* Read back, straight from the store (never through the mount, whose cache holds what
 * push wrote) and pinned to the new ETag, the whole object (all), or what this push
 * uploaded (the rest was copied server-side from the version the replica was synced to;
 * everything when the commit copied nothing), and compare its pages with the replica's, 8
 * MiB a request. 0; -1 when the store cannot be read directly (the caller reads the whole
 * object back through the mount); or a FERRY_ code after ferry_fail. */
static int verify_parts(struct push_job *j, bool all)
{
	const uint64_t ps = j->now.page_size, size = j->now.page_count * ps;
	const struct ferry_s3_cond cond = { .if_match = j->etag };
	char *key = NULL;
	struct ferry_s3 *s3 = j->etag_known ? ferry_s3_for_mount(j->c, j->origin, &key) : NULL;
	uint64_t bytes = 0, total = 0, reads = 0;
	struct ferry_s3_range *r = NULL;
	struct ferry_hasher *h = NULL;
	struct ferry_progress prog;
	unsigned char *buf = NULL;
	int64_t t0 = ferry_mono_ms();
	size_t nr = 0;
	int rc = 0;

	if (!s3)
		return -1;
	all = all || (j->direct ? j->copied == 0 || j->upl_lost : !j->have_commit_stats ||
		      j->stats_commit.bytes_copied == j->stats_before.bytes_copied);
	r = readback_ranges(j, all, &nr);
	buf = malloc(FERRY_FS_PART_SIZE);
	h = ferry_hasher_new();
	if (!r || !buf || !h) {
		rc = ferry_fail(j->c, FERRY_FAIL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nr; i++)
		total += r[i].end - r[i].off;
	j->cb.step = all ? "verifying: reading the new object back from the store" :
			   "verifying: reading the uploaded parts back from the store";
	ferry_progress_init(&prog, &j->cb, total / ps);
	for (size_t i = 0; i < nr && !rc; i++) {
		for (uint64_t off = r[i].off; off < r[i].end && !rc; off += FERRY_FS_PART_SIZE) {
			uint64_t len = r[i].end - off < FERRY_FS_PART_SIZE ? r[i].end - off :
				       FERRY_FS_PART_SIZE;
			struct ferry_s3_res res;
			size_t got = 0;

			if (j->cb.cancelled && j->cb.cancelled(j->cb.arg)) {
				rc = ferry_fail(j->c, FERRY_FAIL, "cancelled while verifying");
				break;
			}
			if (ferry_s3_get_into(s3, key, &cond, off, (size_t)len, buf, &got, &res) !=
			    FERRY_S3_OK || got != len) {
				rc = ferry_fail(j->c, FERRY_FAIL, "cannot read origin '%s' back to "
						"verify: %s", j->origin, got != len && !res.msg[0] ?
						"short read" : res.msg);
				break;
			}
			rc = compare_part(j, h, buf, off, len);
			bytes += len;
			reads++;
			ferry_progress_add(&prog, len / ps, len);
		}
	}
	ferry_progress_end(&prog);
	if (!rc)
		ferry_log(j->c, FERRY_INFO, "verified: what was read back from the store matches the "
			  "replica", "how=%s bytes_read=%" PRIu64 " of=%" PRIu64 " reads=%" PRIu64
			  " ms=%" PRId64, all ? "readback" : "readback-uploaded", bytes, size, reads,
			  ferry_mono_ms() - t0);
out:
	ferry_hasher_free(h);
	free(buf);
	free(r);
	free(key);
	return rc;
}

/* Prove the committed object equals the replica, as verify says. */
static int verify(struct push_job *j, enum verify_mode mode)
{
	int rc;

	if (mode == VERIFY_NONE)
		return 0;
	if (mode == VERIFY_ETAG) {
		if (commit_proven(j)) {
			ferry_log(j->c, FERRY_INFO, "verified by the store's ETags: nothing read back",
				  "how=md5 etag=%s", j->etag);
			return 0;
		}
		if (j->etag_known)
			ferry_log(j->c, FERRY_INFO, "the store's ETags prove nothing here (not MD5s): "
				  "reading back what was uploaded", "etag=%s", j->etag);
	}
	rc = verify_parts(j, mode == VERIFY_READBACK);
	/* a plain local origin, or [s3] does not address the mount's bucket */
	return rc >= 0 ? rc : verify_readback(j);
}

static int write_sidecars(struct push_job *j)
{
	const char *gen = ferry_fact(j->c, "lock", "generation");
	char err[256];

	j->now.generation = gen ? strtoull(gen, NULL, 10) : 0;
	j->now.flags = 0;
	snprintf(j->now.etag, sizeof(j->now.etag), "%s", j->etag_known ? j->etag : "");
	if (j->etag_known) {
		if (ferry_failpoint("push.before_manifest"))
			return ferry_fail(j->c, FERRY_FAIL, "failpoint push.before_manifest");
		/* a manifest that fails to land only costs the next pull a full compare */
		if (ferry_manifest_put(j->mf_path, &j->now, err, sizeof(err)) != 0)
			ferry_log(j->c, FERRY_WARN, "cannot write manifest", "path='%s' reason='%s'",
				  j->mf_path, err);
	}
	if (ferry_manifest_save(j->state_path, &j->now, err, sizeof(err)) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot save state '%s': %s", j->state_path, err);
	save_stamp(j);
	return 0;
}

/* A sidecar's header (m) describes the version etag of the replica's pages: the same
 * ETag, page size and count, and whole-database sum of the page hashes. */
static bool describes(const struct push_job *j, const struct ferry_manifest *m, const char *etag)
{
	return strcmp(m->etag, etag) == 0 && m->page_size == j->now.page_size &&
	       m->page_count == j->now.page_count &&
	       !memcmp(m->db_sum, j->now.db_sum, FERRY_DB_SUM_LEN);
}

/* The sidecar may be missing (first push after a plain upload) or describe another
 * version: then write it, it is cheap. Reading only its header keeps a warm push from
 * fetching 16 bytes a page (3.5 MiB at 1M contacts) through the mount. */
static bool manifest_current(const struct push_job *j)
{
	struct ferry_manifest m;
	char err[256];

	return ferry_manifest_peek(j->mf_path, &m, err, sizeof(err)) == 0 &&
	       describes(j, &m, j->etag);
}

/* Nothing to send, told without the mount: the replica is unchanged since the last sync
 * (its stamp holds), one HEAD says the origin is still the version synced, and one ranged
 * GET of the sidecar's first bytes says it describes that version. Opening the origin and
 * the sidecar through ferryfs costs several more requests (lookups, opens, a 1 MiB first
 * read); pull does the same (pull.c, current_by_head). False: take the full path. */
static bool current_by_head(struct push_job *j, uint64_t size)
{
	const char *suffix = j->mf_path + strlen(j->origin);        /* the sidecar's */
	unsigned char head[FERRY_MANIFEST_HEAD_MAX];
	struct ferry_s3_res res = { 0 }, mres = { 0 };
	struct ferry_manifest m;
	char err[256], *mkey = NULL, *key = NULL;
	struct ferry_s3 *s3 = ferry_s3_for_mount(j->c, j->origin, &key);
	size_t got = 0;
	bool ok;

	ok = s3 && ferry_s3_head(s3, key, NULL, &res) == FERRY_S3_OK &&
	     strcmp(res.etag, j->state.etag) == 0 && res.size == size &&
	     (mkey = ferry_pages_concat(key, suffix)) &&
	     ferry_s3_get_into(s3, mkey, NULL, 0, sizeof(head), head, &got, &mres) == FERRY_S3_OK &&
	     ferry_manifest_head_decode(head, got, mres.size, &m, err, sizeof(err)) == 0 &&
	     describes(j, &m, res.etag);
	if (ok) {
		snprintf(j->etag, sizeof(j->etag), "%s", res.etag);
		j->etag_known = true;
		j->origin_size = res.size;
		ferry_log(j->c, FERRY_INFO, "replica and origin unchanged since the last sync (one "
			  "HEAD, the sidecar's header): nothing to send", "etag=%s", j->etag);
	}
	free(mkey);
	free(key);
	return ok;
}

static void publish(struct push_job *j, uint64_t ms, bool wrote)
{
	struct ferry_fsstats after = { 0 };
	uint64_t up = 0, copied = 0;
	char sum[65];

	if (j->direct) {
		up = j->up;
		copied = j->copied;
	} else if (j->have_commit_stats) {
		up = j->stats_commit.bytes_up - j->stats_before.bytes_up;
		copied = j->stats_commit.bytes_copied - j->stats_before.bytes_copied;
	} else if (j->have_stats && ferry_fsstats_read(j->stats_root, &after)) {
		up = after.bytes_up - j->stats_before.bytes_up;
		copied = after.bytes_copied - j->stats_before.bytes_copied;
	} else if (wrote) {
		up = (uint64_t)j->n * j->now.page_size;
	}
	ferry_manifest_sum_hex(&j->now, sum);
	ferry_fact_set(j->c, "etag", j->etag_known ? j->etag : "");
	ferry_fact_setf(j->c, "pages_written", "%zu", wrote ? j->n : 0);
	ferry_fact_setf(j->c, "pages_total", "%" PRIu64, j->now.page_count);
	ferry_fact_setf(j->c, "bytes_uploaded", "%" PRIu64, up);
	ferry_fact_setf(j->c, "bytes_copied", "%" PRIu64, copied);
	ferry_fact_set(j->c, "checksum", sum);
	ferry_log(j->c, FERRY_INFO, wrote ? "pushed" : "origin is current",
		  "pages_written=%zu pages_total=%" PRIu64 " bytes_uploaded=%" PRIu64
		  " bytes_copied=%" PRIu64 " etag=%s ms=%" PRIu64, wrote ? j->n : 0, j->now.page_count,
		  up, copied, j->etag_known ? j->etag : "-", ms);
}

/* Is the lock stage's lease (its facts, from this run or the journal) still ours, with
 * need_s seconds left? FERRY_OK, or FERRY_FENCED / FERRY_FAIL after ferry_fail. */
static int assert_lock_held(struct ferry_ctx *c, int64_t need_s)
{
	const struct ferry_lock_lease l = {
		.key = ferry_fact(c, "lock", "key"),
		.nonce = ferry_fact(c, "lock", "nonce"),
		.until = ferry_fact(c, "lock", "lease_until_boot_ms"),
		.boot_id = ferry_fact(c, "lock", "boot_id"),
	};
	struct ferry_s3 *s3 = l.key ? ferry_s3(c) : NULL;
	char err[1024];
	int rc;

	if (l.key && !s3)
		return FERRY_FAIL;
	rc = ferry_lock_check_lease(s3, &l, need_s, err, sizeof(err));
	return rc ? ferry_fail(c, rc, "%s", err) : FERRY_OK;
}

static int push_run(struct ferry_ctx *c)
{
	struct push_job j;
	uint64_t t0 = (uint64_t)ferry_mono_ms(), tw, size;
	struct ferry_s3 *s3;
	char err[512], *key = NULL;
	enum verify_mode mode;
	int rc;

	rc = job_init(&j, c);
	if (rc)
		goto out;
	mode = verify_mode(c);
	if (ferry_pages_recover(ferry_stage_name(c), j.replica, err, sizeof(err)) != 0) {
		rc = ferry_fail(c, FERRY_FAIL, "%s", err);
		goto out;
	}
	rc = load_state(&j);
	if (!rc)
		rc = freeze_replica(&j, false);
	if (!rc)
		rc = diff(&j);
	if (rc)
		goto out;
	size = j.now.page_count * j.now.page_size;
	if (j.n == 0 && j.stamp_held && !j.create && j.state.etag[0] && current_by_head(&j, size)) {
		publish(&j, (uint64_t)ferry_mono_ms() - t0, false);
		goto out;
	}
	/* from here on something may be written to the store (the object, or its sidecar) */
	rc = assert_lock_held(c, (int64_t)(ferry_cfg_ms(c, "lease_need") / 1000));
	if (rc)
		goto out;
	j.stats_root = ferry_fsstats_root(j.origin, ferry_fact(c, "mount", "mountpoint"));
	if (j.stats_root)
		j.have_stats = ferry_fsstats_read(j.stats_root, &j.stats_before);
	rc = open_origin(&j);
	if (rc)
		goto out;
	if (j.n == 0 && j.origin_size == size && !j.create) {
		if (j.etag_known && !manifest_current(&j))
			rc = write_sidecars(&j);
		else
			save_stamp(&j);
		if (!rc)
			publish(&j, (uint64_t)ferry_mono_ms() - t0, false);
		goto out;
	}
	rc = check_replica(&j);
	if (rc)
		goto out;
	j.upload_all = !ferry_cfg_bool(c, "server_copy");
	if (j.etag_known && !j.create && (s3 = ferry_s3_for_mount(c, j.origin, &key))) {
		/* an object of the [s3] bucket: written from the replica, not through the mount */
		close(j.ofd);
		j.ofd = -1;
		if (ferry_failpoint("push.before_fsync")) {
			rc = ferry_fail(c, FERRY_FAIL, "failpoint push.before_fsync");
			goto out;
		}
		rc = commit_direct(&j, s3, key);
		if (!rc && ferry_failpoint("push.after_commit"))
			rc = ferry_fail(c, FERRY_FAIL, "failpoint push.after_commit");
		if (rc)
			goto out;
		goto verify;
	}
	/* ferryfs commits on close as well as on fsync, and the kernel closes our fd when we
	 * die: a crash mid-write would commit a torn database. This asks ferryfs to commit
	 * only on fsync and to drop uncommitted writes on release. */
	if ((j.etag_known || j.create) && fsetxattr(j.ofd, FERRY_XATTR_COMMIT, FERRY_COMMIT_FSYNC, strlen(FERRY_COMMIT_FSYNC), 0) != 0)
		ferry_log(c, FERRY_WARN, "ferryfs would commit a partial write on a crash",
			  "origin='%s' reason='setxattr user.ferry.commit: %s'", j.origin, strerror(errno));
	tw = (uint64_t)ferry_mono_ms();
	rc = write_pages(&j);
	if (rc)
		goto out;
	ferry_log(c, FERRY_INFO, "wrote changed pages into the mount's cache (sent by the commit)",
		  "pages=%zu bytes=%" PRIu64 " filled=%" PRIu64 " ms=%" PRIu64, j.n,
		  (uint64_t)(j.n + j.pages_filled) * j.now.page_size, j.pages_filled,
		  (uint64_t)ferry_mono_ms() - tw);
	if (j.origin_size != size && ftruncate(j.ofd, (off_t)size) != 0) {
		rc = ferry_fail(c, FERRY_FAIL, "cannot resize origin '%s': %s", j.origin, strerror(errno));
		goto out;
	}
	if (ferry_failpoint("push.before_fsync")) {
		rc = ferry_fail(c, FERRY_FAIL, "failpoint push.before_fsync");
		goto out;
	}
	rc = commit_watched(&j);
	if (rc)
		goto out;
	if (j.have_stats)
		j.have_commit_stats = ferry_fsstats_read(j.stats_root, &j.stats_commit);
	if (ferry_failpoint("push.after_commit")) {
		rc = ferry_fail(c, FERRY_FAIL, "failpoint push.after_commit");
		goto out;
	}
	close(j.ofd);
	j.ofd = -1;
	if (j.etag_known || j.create)
		j.etag_known = ferry_pages_etag_path(j.origin, j.etag, sizeof(j.etag)) == 0;
verify:
	rc = verify(&j, mode);
	if (!rc)
		rc = write_sidecars(&j);
	if (rc)
		goto out;
	publish(&j, (uint64_t)ferry_mono_ms() - t0, true);
out:
	free(key);
	job_release(&j);
	return rc;
}

static int push_dry_run(struct ferry_ctx *c)
{
	struct push_job j;
	char now[FERRY_ETAG_MAX];
	int rc;

	rc = job_init(&j, c);
	if (!rc && access(j.state_path, F_OK) != 0 && errno == ENOENT) {
		/* in a whole-pipeline dry run pull did not run: there is nothing to compare yet */
		ferry_log(c, FERRY_INFO, "dry-run: replica has no state file yet (pull makes it); a "
			  "real push would write what pull and the stages after it produce",
			  "replica='%s' origin='%s'", j.replica, j.origin);
		goto out;
	}
	if (!rc)
		rc = load_state(&j);
	if (!rc)
		rc = freeze_replica(&j, true);
	if (!rc)
		rc = diff(&j);
	if (rc)
		goto out;
	j.upload_all = !ferry_cfg_bool(c, "server_copy");
	/* the pipeline's pull would bring a newer origin in first: say so, do not fail */
	if (!j.create && ferry_pages_etag_path(j.origin, now, sizeof(now)) == 0 &&
	    strcmp(now, j.state.etag) != 0)
		ferry_log(c, FERRY_WARN, "dry-run: origin changed since the last pull; counts are "
			  "against the last pulled version", "etag=%s pulled=%s", now, j.state.etag);
	ferry_log(c, FERRY_INFO, "dry-run: would write pages from replica into origin",
		  "pages=%zu bytes=%" PRIu64 " pages_total=%" PRIu64 " parts_changed=%" PRIu64
		  " create=%s if_match=%s origin='%s' replica='%s'", j.n,
		  (uint64_t)j.n * j.now.page_size, j.now.page_count, parts_changed(&j),
		  j.create ? "yes" : "no", j.create ? "-" : j.state.etag[0] ? j.state.etag : "-",
		  j.origin, j.replica);
out:
	job_release(&j);
	return rc;
}

static int push_check(struct ferry_ctx *c)
{
	const char *m = ferry_cfg(c, "manifest");

	/* verify is a FERRY_KEY_ENUM: the supervisor checked it at load */
	if (!m || !*m || strchr(m, '/'))
		return ferry_cfg_error(c, "manifest", "must be a file name suffix without '/'");
	return FERRY_OK;
}

static const struct ferry_key push_keys[] = {
	{ "replica", FERRY_KEY_PATH, NULL, 0, "the local database (default: the pull stage's replica)" },
	{ "origin", FERRY_KEY_PATH, NULL, 0,
	  "the database on the ferryfs mount (default: the pull stage's origin)" },
	{ "lease_need", FERRY_KEY_DURATION, "2m", 0, "lock lease that must be left to push" },
	{ "server_copy", FERRY_KEY_BOOL, "true", 0,
	  "parts without a changed page are copied server-side (UploadPartCopy) from the "
	  "version pulled; false: every part is uploaded from the replica (for a store whose "
	  "part copies cost more than uploading, as moto's do: tests/bench/RESULTS.md)" },
	{ "copy_slack", FERRY_KEY_DURATION, "1s", 0,
	  "with server_copy, the parts left to copy are uploaded instead once this push's own "
	  "timings say copying them would take this much longer than uploading them, or from "
	  "the start when the figures earlier pushes kept for this store "
	  "(state_dir/push-costs-HASH.json) say so; 0: always copy" },
	{ "verify", FERRY_KEY_ENUM, "etag", 0,
	  "how the new object is proven equal to the replica: etag, by the store's checksums "
	  "(Content-MD5 on every upload, the multipart ETag computed from all parts), reading "
	  "back only the uploaded parts where the store's ETags are not MD5s; readback (old "
	  "name: checksum), the whole object read back; none, not at all",
	  "etag|readback|checksum|none" },
	{ "manifest", FERRY_KEY_OBJKEY, ".ferry-manifest", 0,
	  "suffix of the page-hash sidecar next to the origin (as in pull)" },
	{ NULL, 0, NULL, 0, NULL },
};

FERRY_EXPORT const struct ferry_stage ferry_stage_v1 = {
	.abi = FERRY_STAGE_ABI, .size = sizeof(struct ferry_stage), .name = "push",
	.check = push_check, .dry_run = push_dry_run, .run = push_run, .keys = push_keys,
	.needs = "lock mount",
	.summary = "write the replica's changed pages into the origin: one fenced atomic commit",
};
