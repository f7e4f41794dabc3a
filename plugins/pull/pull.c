/* pull.c: the pull stage: page-level copy of the origin database into a local replica. */
#include "pull.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_ctx.h"
#include "ferry_failpoint.h"
#include "ferry_pages.h"
#include "ferry_s3.h"
#include "ferry_stage.h"
#include "ferry_time.h"

/*
 * About pull.
 *
 * The replica keeps a state file, REPLICA.ferry-state: the manifest (page hashes) of the
 * origin version it was last synced from, tagged with that version's ETag. It always
 * describes the ORIGIN, never the replica, so it stays true even when the replica is
 * changed locally (schedule) or a pull is rolled back: comparing the replica's hashes
 * with it yields exactly the pages to fetch. The sources of "what the origin holds", best
 * first:
 *   state     state.etag == the origin's current ETag: fetch only the replica pages whose
 *             hash differs from the state (none: zero bytes move);
 *   manifest  ORIGIN.ferry-manifest (written by push) carries the current ETag: the same,
 *             with the manifest's hashes; every page fetched is checked against them;
 *   compare   no usable manifest (or a plain file without ETag): read and hash every
 *             origin page, write only the differing ones;
 *   copy      no replica yet, or another page size: full copy into REPLICA.ferry-tmp,
 *             verified, then renamed over the replica.
 * Local patches go through ferry_patch (undo file, core/lib/patch.c): a crash at any instant
 * leaves the old or the new replica; the next pull (or push) rolls back a leftover undo.
 *
 * How the origin is read. state/manifest with a few differing pages: ranged GETs of just
 * those pages (runs of them), in parallel. When they would cost more than one pass over
 * the whole origin, by what requests and passes cost on this store (pull_cost.c; with no
 * figures yet: when the runs cover at least half of the database, PULL_SEQ_PERCENT), or
 * in compare/copy mode (every page is needed): one pass in order, on ferryfs as one
 * streaming GET per side of the lock-byte page, straight from the object and pinned by
 * If-Match, else big preads.
 *
 * Where: this file is the stage and the job (config, origin, replica, source, facts);
 * pull_plan.c says which pages to read and how, pull_fetch.c reads and applies them.
 */

void pull_job_release(struct pull_job *j)
{
	if (j->patch)
		ferry_patch_abort(j->patch);
	if (j->tfd >= 0) {
		close(j->tfd);
		unlink(j->tmp_path);
	}
	if (j->ofd >= 0)
		close(j->ofd);
	if (j->rfd >= 0)
		close(j->rfd);
	ferry_manifest_release(&j->state);
	ferry_manifest_release(&j->want);
	free(j->rhashes);
	free(j->batch_idx);
	free(j->batch_data);
	free(j->origin);
	free(j->replica);
	free(j->state_path);
	free(j->mf_path);
	free(j->tmp_path);
	free(j->stats_root);
	free(j->s3key);
	memset(j, 0, sizeof(*j));
	j->ofd = j->rfd = j->tfd = -1;
}

static bool stage_cancelled(void *c)
{
	return ferry_cancelled(c);
}

int pull_job_init(struct pull_job *j, struct ferry_ctx *c, char *origin, char *replica,
		  const char *suffix)
{
	memset(j, 0, sizeof(*j));
	j->ofd = j->rfd = j->tfd = -1;
	j->c = c;
	j->origin = origin;
	j->replica = replica;
	j->state_path = ferry_pages_concat(replica, ".ferry-state");
	j->mf_path = ferry_pages_concat(origin, suffix);
	j->tmp_path = ferry_pages_concat(replica, ".ferry-tmp");
	ferry_pages_cb_init(&j->cb, stage_cancelled, c, "pull");
	return j->state_path && j->mf_path && j->tmp_path ? 0 : -1;
}

/* On ferryfs, page reads go straight to the object (pull_fetch.c); needs the [s3]
 * client to address the mount's bucket. */
static void direct_s3(struct pull_job *j)
{
	j->s3 = ferry_s3_for_mount(j->c, j->origin, &j->s3key);
	if (!j->s3)
		ferry_log(j->c, FERRY_DEBUG, "reading pages through the mount", "origin='%s'",
			  j->origin);
}

/* Whether the store may hold the origin's -journal or -wal: one listing of the keys that
 * start with the origin's (on ferryfs each stat of an absent name costs a HEAD and a LIST).
 * True when it does, or when the store cannot say: then the files are looked at. */
static bool sidecars_possible(struct pull_job *j)
{
	struct ferry_s3_list l = { 0 };
	struct ferry_s3_res res;
	size_t kl = j->s3key ? strlen(j->s3key) : 0;
	bool any = false;

	if (!j->s3 || ferry_s3_list_page(j->s3, j->s3key, "/", NULL, 1000, &l, &res) != FERRY_S3_OK ||
	    l.truncated) {
		ferry_s3_list_release(&l);
		return true;
	}
	for (size_t i = 0; i < l.n_entries && !any; i++)
		any = !strncmp(l.entries[i].key, j->s3key, kl) &&
		      (!strcmp(l.entries[i].key + kl, "-journal") ||
		       !strcmp(l.entries[i].key + kl, "-wal"));
	ferry_s3_list_release(&l);
	return any;
}

/* Open the origin and learn its ETag (none on a plain file). 1 when it does not exist. */
static int open_origin(struct pull_job *j)
{
	struct stat st;

	j->ofd = open(j->origin, O_RDONLY | O_CLOEXEC);
	if (j->ofd < 0) {
		if (errno == ENOENT)
			return 1;
		return ferry_fail(j->c, FERRY_FAIL, "cannot open origin '%s': %s", j->origin,
				  strerror(errno));
	}
	if (fstat(j->ofd, &st) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "cannot stat origin '%s': %s", j->origin,
				  strerror(errno));
	if (!S_ISREG(st.st_mode))
		return ferry_fail(j->c, FERRY_FAIL, "origin '%s' is not a regular file", j->origin);
	j->origin_size = (uint64_t)st.st_size;
	j->etag_known = ferry_pages_etag_fd(j->ofd, j->etag, sizeof(j->etag)) == 0;
	if (!j->etag_known) {
		ferry_log(j->c, FERRY_DEBUG, "origin has no etag: comparing by hashes", "origin='%s'",
			  j->origin);
	} else {
		/* pull reads only the pages it needs: no whole-file fetch by ferryfs */
		if (ferry_pages_ferryfs_ranged(j->ofd) != 0)
			ferry_log(j->c, FERRY_DEBUG, "cannot limit ferryfs fetches", "origin='%s' err='%s'",
				  j->origin, strerror(errno));
		direct_s3(j);
	}
	if (!sidecars_possible(j))
		return 0;
	if (ferry_pages_has_hot_journal(j->origin))
		return ferry_fail(j->c, FERRY_FAIL, "origin '%s' has a hot journal '%s-journal': "
				  "refusing to copy a database with an unfinished transaction; nothing written",
				  j->origin, j->origin);
	if (ferry_pages_has_wal(j->origin))
		return ferry_fail(j->c, FERRY_FAIL, "origin '%s' has a non-empty '%s-wal': checkpoint it "
				  "first; nothing written", j->origin, j->origin);
	return 0;
}

/* The replica as it is: existence, header, and the state file next to it. */
static int inspect_replica(struct pull_job *j, bool dry)
{
	char err[256];
	int rc;

	if (ferry_pages_has_hot_journal(j->replica))
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s' has a hot journal '%s-journal': "
				  "refusing to overwrite it; nothing written (opening it with sqlite3 "
				  "rolls it back)", j->replica, j->replica);
	if (!dry && ferry_pages_has_wal(j->replica)) {
		if (ferry_pages_checkpoint(j->replica, err, sizeof(err)) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "replica '%s': %s", j->replica, err);
		ferry_log(j->c, FERRY_INFO, "checkpointed replica wal", "replica='%s'", j->replica);
	}
	j->rfd = open(j->replica, (dry ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (j->rfd < 0) {
		if (errno != ENOENT)
			return ferry_fail(j->c, FERRY_FAIL, "cannot open replica '%s': %s", j->replica,
					  strerror(errno));
		return 0;
	}
	j->replica_exists = true;
	if (ferry_pages_probe_fd(j->rfd, &j->rinfo, err, sizeof(err)) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s': %s; nothing written", j->replica, err);
	rc = j->have_state ? 0 : ferry_manifest_load(j->state_path, &j->state, err, sizeof(err));
	if (rc == 0)
		j->have_state = true;
	else if (rc == -1)
		ferry_log(j->c, FERRY_WARN, "ignoring unusable state file", "path='%s' reason='%s'",
			  j->state_path, err);
	return 0;
}

static int copy_manifest(struct ferry_manifest *to, const struct ferry_manifest *from)
{
	size_t n = (size_t)from->page_count * FERRY_PAGE_HASH_LEN;

	*to = *from;
	to->hashes = malloc(n ? n : 1);
	if (!to->hashes)
		return -1;
	if (n)
		memcpy(to->hashes, from->hashes, n);
	return 0;
}

/* The origin's header. On ferryfs it comes from the object itself, like the pages after
 * it: a read through the mount would start ferryfs's read-ahead window for nothing.
 * 0, -1 with err, or -2 after ferry_fail. */
static int probe_origin(struct pull_job *j, char *err, size_t errlen)
{
	struct ferry_s3_cond cond = { .if_match = j->etag };
	struct ferry_s3_res res = { 0 };
	unsigned char hdr[100];
	size_t want = j->origin_size < sizeof(hdr) ? (size_t)j->origin_size : sizeof(hdr), got = 0;
	int rc;

	if (!j->s3key) {
		j->bytes_self += j->origin_size ? 100 : 0;
		return ferry_pages_probe_fd(j->ofd, &j->oinfo, err, errlen);
	}
	if (want) {
		rc = ferry_s3_get_into(j->s3, j->s3key, &cond, 0, want, hdr, &got, &res);
		j->bytes_s3 += got;
		if (rc == FERRY_S3_PRECONDITION) {
			ferry_fail(j->c, FERRY_FAIL, "origin '%s' changed during the pull (etag %s no "
				   "longer current); nothing written", j->origin, j->etag);
			return -2;
		}
		if (rc != FERRY_S3_OK) {
			ferry_fail(j->c, FERRY_FAIL, "cannot read origin '%s': %s", j->origin, res.msg);
			return -2;
		}
	}
	return ferry_pages_parse_header(hdr, got, j->origin_size, &j->oinfo, err, errlen);
}

/* Pick where the origin's page hashes come from (see "About pull"). */
static int choose_source(struct pull_job *j)
{
	struct ferry_manifest mf;
	char err[256];
	int rc;

	j->source = SRC_COMPARE;
	if (j->replica_exists && j->etag_known && j->have_state &&
	    !(j->state.flags & FERRY_MANIFEST_ABSENT) && strcmp(j->state.etag, j->etag) == 0 &&
	    j->origin_size >= j->state.page_count * j->state.page_size) {
		if (copy_manifest(&j->want, &j->state) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "out of memory");
		j->source = SRC_STATE;
	} else if (j->replica_exists && j->etag_known) {
		rc = ferry_manifest_load(j->mf_path, &mf, err, sizeof(err));
		if (rc == -1)
			return ferry_fail(j->c, FERRY_FAIL, "manifest '%s': %s; delete it to fall back to "
					  "a full compare; nothing written", j->mf_path, err);
		if (rc == 0 && strcmp(mf.etag, j->etag) != 0) {
			ferry_log(j->c, FERRY_INFO, "manifest is stale: comparing every page",
				  "manifest_etag=%s origin_etag=%s", mf.etag, j->etag);
			ferry_manifest_release(&mf);
		} else if (rc == 0) {
			if (mf.page_count * mf.page_size != j->origin_size) {
				rc = ferry_fail(j->c, FERRY_FAIL, "manifest '%s' does not match origin '%s': "
						"%" PRIu64 " pages of %u bytes, origin has %" PRIu64
						" bytes; nothing written", j->mf_path, j->origin,
						mf.page_count, mf.page_size, j->origin_size);
				ferry_manifest_release(&mf);
				return rc;
			}
			j->want = mf;
			j->source = SRC_MANIFEST;
		}
	}
	if (j->source == SRC_COMPARE) {
		/* no hashes yet: the origin header says how big it is */
		rc = probe_origin(j, err, sizeof(err));
		if (rc == -2)
			return FERRY_FAIL;
		if (rc != 0)
			return ferry_fail(j->c, FERRY_FAIL, "origin '%s': %s; nothing written", j->origin, err);
		if (ferry_manifest_alloc(&j->want, j->oinfo.page_size, j->oinfo.page_count) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	}
	/* no replica, an empty origin, or another page size: every page moves anyway */
	if (!j->replica_exists || j->want.page_count == 0 ||
	    (j->rinfo.page_count > 0 && j->rinfo.page_size != j->want.page_size))
		j->source = SRC_COPY;
	return 0;
}

static const char *source_name(enum pull_source s)
{
	switch (s) {
	case SRC_STATE: return "state";
	case SRC_MANIFEST: return "manifest";
	case SRC_COMPARE: return "compare";
	case SRC_COPY: return "copy";
	}
	return "?";
}

/* How the origin was read: "ranged" (differing pages only), "sequential" (one pass over
 * every page) or "none". */
static const char *read_mode(const struct pull_job *j)
{
	if (j->created || j->zero)
		return "none";
	if (j->source == SRC_COMPARE || j->source == SRC_COPY || j->sequential)
		return "sequential";
	return "ranged";
}

static void publish(struct pull_job *j, uint64_t ms)
{
	struct ferry_fsstats after;
	uint64_t bytes = j->bytes_self;
	struct ferry_ctx *c = j->c;

	if (j->have_stats && ferry_fsstats_read(j->stats_root, &after))
		bytes = after.bytes_down - j->stats_before.bytes_down;
	bytes += j->bytes_s3;
	ferry_fact_set(c, "origin", j->origin);
	ferry_fact_set(c, "replica", j->replica);
	ferry_fact_set(c, "origin_etag", j->etag_known ? j->etag : "");
	ferry_fact_setf(c, "page_size", "%u", j->want.page_size);
	ferry_fact_setf(c, "pages_total", "%" PRIu64, j->want.page_count);
	ferry_fact_setf(c, "pages_moved", "%" PRIu64, j->pages_moved);
	ferry_fact_setf(c, "bytes_read", "%" PRIu64, bytes);
	ferry_fact_set(c, "source", j->created ? "create" : j->zero ? "current" : source_name(j->source));
	ferry_fact_set(c, "created", j->created ? "true" : "false");
	ferry_fact_set(c, "reads", read_mode(j));
	ferry_log(c, FERRY_INFO, "pulled",
		  "source=%s reads=%s pages_total=%" PRIu64 " pages_moved=%" PRIu64 " bytes_read=%"
		  PRIu64 " page_size=%u etag=%s ms=%" PRIu64, j->created ? "create" : j->zero ?
		  "current" : source_name(j->source), read_mode(j), j->want.page_count, j->pages_moved,
		  bytes, j->want.page_size, j->etag_known ? j->etag : "-", ms);
}

/* Pages of the replica that differ from its state: changed here since the last sync. */
static int local_changes(struct pull_job *j, uint64_t *n)
{
	uint64_t *list = NULL;
	size_t k = 0;

	*n = 0;
	if (!j->have_state || (j->state.flags & FERRY_MANIFEST_ABSENT) ||
	    j->state.page_size != j->rinfo.page_size || !j->rhashes)
		return 0;
	if (ferry_pages_diff(j->rhashes, j->rinfo.page_count, j->state.hashes, j->state.page_count,
			     j->rinfo.page_size, &list, &k) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	free(list);
	*n = k;
	if (j->state.page_count > j->rinfo.page_count)
		*n += j->state.page_count - j->rinfo.page_count;
	return 0;
}

int pull_guard_local(struct pull_job *j)
{
	bool origin_moved = j->etag_known && strcmp(j->state.etag, j->etag) != 0;
	uint64_t n;
	int rc = local_changes(j, &n);

	if (rc || n == 0)
		return rc;
	if (j->discard_local || ferry_run_whole(j->c)) {
		ferry_log(j->c, FERRY_WARN, j->discard_local ? "discarding local changes not pushed "
			  "(discard_local)" : "discarding local changes not pushed: a whole run "
			  "starts from the origin (its stages make them again)",
			  "pages=%" PRIu64 " replica='%s' synced_etag=%s", n, j->replica,
			  j->state.etag[0] ? j->state.etag : "-");
		return 0;
	}
	if (!origin_moved)
		return ferry_fail(j->c, FERRY_FAIL, "replica '%s' has %" PRIu64 " pages changed since "
				  "the last sync (etag %s) that were never pushed; pull would "
				  "overwrite them: push them (ferry run push), or discard them "
				  "(ferry run --discard-local pull); nothing written", j->replica, n,
				  j->state.etag[0] ? j->state.etag : "-");
	return ferry_fail(j->c, FERRY_FAIL, "conflict: replica '%s' has %" PRIu64 " pages changed "
			  "since the last sync (etag %s) that were never pushed, and the origin "
			  "changed too (now etag %s): the two cannot both be kept. Take the origin "
			  "with ferry run --discard-local pull (the local changes are lost; a "
			  "copy of the replica first keeps them); nothing written", j->replica, n,
			  j->state.etag[0] ? j->state.etag : "-", j->etag);
}

int pull_prepare(struct pull_job *j, bool dry)
{
	int rc;

	j->stats_root = ferry_fsstats_root(j->origin, ferry_fact(j->c, "mount", "mountpoint"));
	if (j->stats_root)
		j->have_stats = ferry_fsstats_read(j->stats_root, &j->stats_before);
	rc = open_origin(j);
	if (rc == 1) {
		if (!j->create && !j->stats_root && !ferry_pages_parent_exists(j->origin))
			return ferry_fail(j->c, FERRY_FAIL, "origin '%s' is not reachable: is the mount "
					  "active? (run the mount stage too)", j->origin);
		if (!j->create)
			return ferry_fail(j->c, FERRY_FAIL, "origin '%s' does not exist (set "
					  "create_if_missing = true to start from an empty database)",
					  j->origin);
		j->missing = true;
		return 0;
	}
	if (rc)
		return rc;
	rc = inspect_replica(j, dry);
	if (rc)
		return rc;
	return choose_source(j);
}

/* The warm case without the mount: the replica is unchanged since the last sync (its stamp
 * holds), one HEAD of the object says the origin is still the version synced, and the
 * listing finds no -journal or -wal beside it (committed rows in a WAL would not show in the
 * object's ETag): the origin is then byte for byte the replica, and nothing is read or
 * written. Opening the origin through ferryfs would cost four more requests (a HEAD of the
 * directory name, a LIST, a HEAD at lookup and one at open). True when it applied (the job
 * is ready for publish()); false leaves the job as it was, for the full path, which also
 * says why a sidecar stops the pull. */
static bool current_by_head(struct pull_job *j)
{
	struct ferry_s3_res res = { 0 };
	char err[256];
	char *key = NULL;
	struct ferry_s3 *s3;

	if (j->discard_local || ferry_pages_has_hot_journal(j->replica) ||
	    ferry_pages_has_wal(j->replica) ||
	    !(s3 = ferry_s3_for_mount(j->c, j->origin, &key)))
		return false;
	/* loaded once: the full path keeps it (inspect_replica) */
	j->have_state = ferry_manifest_load(j->state_path, &j->state, err, sizeof(err)) == 0;
	if (!j->have_state || (j->state.flags & FERRY_MANIFEST_ABSENT) || !j->state.etag[0] ||
	    (j->rfd = open(j->replica, O_RDONLY | O_CLOEXEC)) < 0 ||
	    !ferry_replica_stamp_holds(j->replica, j->rfd, &j->state) ||
	    ferry_s3_head(s3, key, NULL, &res) != FERRY_S3_OK ||
	    strcmp(res.etag, j->state.etag) != 0 ||
	    res.size != j->state.page_count * j->state.page_size ||
	    (j->s3 = s3, j->s3key = key, sidecars_possible(j))) {
		if (j->rfd >= 0)
			close(j->rfd);
		j->rfd = -1;
		j->s3 = NULL;
		j->s3key = NULL;
		free(key);
		return false;
	}
	j->replica_exists = j->stamp_held = j->etag_known = j->zero = true;
	j->source = SRC_STATE;
	j->origin_size = res.size;
	snprintf(j->etag, sizeof(j->etag), "%s", res.etag);
	j->want.page_size = j->state.page_size;
	j->want.page_count = j->state.page_count;
	ferry_log(j->c, FERRY_INFO, "replica is current: unchanged since the last sync, and so is "
		  "the origin (one HEAD)", "etag=%s pages=%" PRIu64, j->etag, j->want.page_count);
	return true;
}

static int pull_run(struct ferry_ctx *c)
{
	struct pull_job j;
	uint64_t t0 = (uint64_t)ferry_mono_ms();
	char err[512];
	int rc;

	if (pull_job_init(&j, c, ferry_cfg_path(c, "origin"), ferry_cfg_path(c, "replica"),
			  ferry_cfg(c, "manifest")) != 0) {
		rc = ferry_fail(c, FERRY_FAIL, "out of memory");
		goto out;
	}
	j.verify = pull_verify_mode(ferry_cfg(c, "verify"));
	j.reads = pull_reads_mode(ferry_cfg(c, "reads"));
	j.create = ferry_cfg_bool(c, "create_if_missing");
	j.discard_local = ferry_cfg_bool(c, "discard_local");
	if (ferry_pages_recover(ferry_stage_name(c), j.replica, err, sizeof(err)) != 0) {
		rc = ferry_fail(c, FERRY_FAIL, "%s", err);
		goto out;
	}
	unlink(j.tmp_path);
	if (!current_by_head(&j)) {
		rc = pull_prepare(&j, false);
		if (rc)
			goto out;
		rc = pull_apply(&j);
		if (rc)
			goto out;
	}
	if (ferry_failpoint("pull.after_commit")) {
		rc = ferry_fail(c, FERRY_FAIL, "failpoint pull.after_commit");
		goto out;
	}
	publish(&j, (uint64_t)ferry_mono_ms() - t0);
out:
	pull_job_release(&j);
	return rc;
}

/* The dry run's word on unpushed local changes (pull_guard_local decides in a real run). */
static int dry_local(struct pull_job *j)
{
	uint64_t n;
	int rc = local_changes(j, &n);

	if (rc || n == 0)
		return rc;
	ferry_log(j->c, FERRY_WARN, j->discard_local || ferry_run_whole(j->c) ?
		  "dry-run: would discard local changes not pushed" :
		  "dry-run: would refuse: the replica has local changes not pushed",
		  "pages=%" PRIu64 " replica='%s' synced_etag=%s", n, j->replica,
		  j->state.etag[0] ? j->state.etag : "-");
	return 0;
}

static void dry_report(struct pull_job *j, uint64_t *list, size_t n)
{
	bool seq;

	pull_costs_load(j);                 /* the plan a run would make, without its timed GET */
	seq = n > 0 && pull_read_in_order(j, list, n, false);

	/* bytes: what would be read from S3 (a sequential pass reads every page) */
	ferry_log(j->c, FERRY_INFO, "dry-run: would read pages from origin into replica",
		  "source=%s reads=%s pages=%zu bytes=%" PRIu64 " pages_total=%" PRIu64 " etag=%s "
		  "origin='%s' replica='%s'", source_name(j->source), n == 0 ? "none" : seq ?
		  "sequential" : "ranged", n,
		  seq ? pull_want_size(j) : (uint64_t)n * j->want.page_size, j->want.page_count,
		  j->etag, j->origin, j->replica);
	free(list);
}

/* A dry run has no mount (the mount stage only says what it would do): ask S3 itself,
 * when the mount stage tells where its mountpoint and bucket[:prefix] are. */
static int dry_run_s3(struct pull_job *j, const char *mp, const char *source)
{
	struct ferry_s3_res res = { 0 };
	struct ferry_buf buf = { 0 };
	struct ferry_manifest mf;
	const char *colon = strchr(source, ':'), *rel = j->origin + strlen(mp) + 1;
	char err[256], *key = NULL, *mkey = NULL;
	uint64_t *list = NULL;
	size_t n = 0;
	int rc = 0, src;

	if (colon && colon[1])
		src = asprintf(&key, "%s%s%s", colon + 1, colon[strlen(colon) - 1] == '/' ? "" : "/", rel);
	else
		src = asprintf(&key, "%s", rel);
	if (src < 0 || asprintf(&mkey, "%s%s", key, j->mf_path + strlen(j->origin)) < 0) {
		rc = ferry_fail(j->c, FERRY_FAIL, "out of memory");
		goto out;
	}
	j->s3 = ferry_s3(j->c);
	if (!j->s3) {
		rc = FERRY_FAIL;
		goto out;
	}
	src = ferry_s3_head(j->s3, key, NULL, &res);
	if (src == FERRY_S3_NOTFOUND && j->create) {
		ferry_log(j->c, FERRY_INFO, "dry-run: would start from an empty database (origin missing)",
			  "key=%s replica='%s'", key, j->replica);
		goto out;
	}
	if (src != FERRY_S3_OK) {
		rc = ferry_fail(j->c, FERRY_FAIL, "origin '%s': %s", j->origin, res.msg);
		goto out;
	}
	snprintf(j->etag, sizeof(j->etag), "%s", res.etag);
	j->etag_known = true;
	j->origin_size = res.size;
	rc = inspect_replica(j, true);
	if (rc)
		goto out;
	if (j->replica_exists && j->have_state && strcmp(j->state.etag, j->etag) == 0 &&
	    !(j->state.flags & FERRY_MANIFEST_ABSENT) && copy_manifest(&j->want, &j->state) == 0) {
		j->source = SRC_STATE;
	} else if (j->replica_exists &&
		   ferry_s3_get_buf(j->s3, mkey, NULL, 0, 0, &buf, &res) == FERRY_S3_OK &&
		   ferry_manifest_decode((unsigned char *)buf.data, buf.len, &mf, err, sizeof(err)) == 0) {
		if (strcmp(mf.etag, j->etag) == 0) {
			j->want = mf;
			j->source = SRC_MANIFEST;
		} else {
			ferry_manifest_release(&mf);
		}
	}
	if ((j->source == SRC_STATE || j->source == SRC_MANIFEST) &&
	    (j->rinfo.page_count == 0 || j->rinfo.page_size == j->want.page_size)) {
		rc = pull_hash_replica(j);
		if (!rc)
			rc = dry_local(j);
		if (!rc)
			rc = pull_diff_list(j, &list, &n);
		if (!rc)
			dry_report(j, list, n);
		goto out;
	}
	ferry_log(j->c, FERRY_INFO, j->replica_exists ? "dry-run: would read and hash every origin "
		  "page, writing only differing ones" : "dry-run: would copy every page of origin",
		  "source=%s bytes=%" PRIu64 " etag=%s key=%s replica='%s'",
		  j->replica_exists ? "compare" : "copy", j->origin_size, j->etag, key, j->replica);
out:
	ferry_buf_release(&buf);
	free(key);
	free(mkey);
	return rc;
}

static int pull_dry_run(struct ferry_ctx *c)
{
	const char *mp = ferry_fact(c, "mount", "mountpoint");
	const char *source = ferry_fact(c, "mount", "source");
	struct pull_job j;
	uint64_t *list = NULL;
	struct stat st;
	size_t n = 0;
	int rc = 0;

	if (pull_job_init(&j, c, ferry_cfg_path(c, "origin"), ferry_cfg_path(c, "replica"),
			  ferry_cfg(c, "manifest")) != 0) {
		rc = ferry_fail(c, FERRY_FAIL, "out of memory");
		goto out;
	}
	j.create = ferry_cfg_bool(c, "create_if_missing");
	j.discard_local = ferry_cfg_bool(c, "discard_local");
	j.reads = pull_reads_mode(ferry_cfg(c, "reads"));
	j.cb.progress = false;
	/* in memory only (a dry run journals nothing): lets push's dry run find its files */
	ferry_fact_set(c, "origin", j.origin);
	ferry_fact_set(c, "replica", j.replica);
	if (stat(j.origin, &st) != 0 && errno != ENOENT) {
		rc = ferry_fail(c, FERRY_FAIL, "cannot stat origin '%s': %s", j.origin, strerror(errno));
		goto out;
	}
	if (stat(j.origin, &st) != 0 && mp && source && strncmp(j.origin, mp, strlen(mp)) == 0 &&
	    j.origin[strlen(mp)] == '/') {
		rc = dry_run_s3(&j, mp, source);
		goto out;
	}
	if (stat(j.origin, &st) != 0 && !j.create) {
		ferry_log(c, FERRY_WARN, "dry-run: origin not there now (no mount in a dry run?); "
			  "cannot count pages", "origin='%s' replica='%s'", j.origin, j.replica);
		goto out;
	}
	rc = pull_prepare(&j, true);
	if (rc)
		goto out;
	if (j.missing) {
		ferry_log(c, FERRY_INFO, "dry-run: would start from an empty database (origin missing)",
			  "origin='%s' replica='%s'", j.origin, j.replica);
		goto out;
	}
	if (j.source == SRC_STATE || j.source == SRC_MANIFEST) {
		rc = pull_hash_replica(&j);
		if (!rc)
			rc = dry_local(&j);
		if (!rc)
			rc = pull_diff_list(&j, &list, &n);
		if (!rc)
			dry_report(&j, list, n);
		goto out;
	}
	ferry_log(c, FERRY_INFO, j.source == SRC_COPY ? "dry-run: would copy every page of origin"
		  : "dry-run: would read and hash every origin page, writing only differing ones",
		  "source=%s pages=%" PRIu64 " bytes=%" PRIu64 " etag=%s origin='%s' replica='%s'",
		  source_name(j.source), j.want.page_count, pull_want_size(&j),
		  j.etag_known ? j.etag : "-", j.origin, j.replica);
out:
	pull_job_release(&j);
	return rc;
}

enum pull_verify pull_verify_mode(const char *v)
{
	if (!v || strcmp(v, "quick") == 0)
		return VERIFY_QUICK;
	if (strcmp(v, "full") == 0)
		return VERIFY_FULL;
	if (strcmp(v, "none") == 0)
		return VERIFY_NONE;
	return VERIFY_BAD;
}

enum pull_reads pull_reads_mode(const char *v)
{
	if (!v || strcmp(v, "auto") == 0)
		return READS_AUTO;
	if (strcmp(v, "ranged") == 0)
		return READS_RANGED;
	if (strcmp(v, "sequential") == 0)
		return READS_SEQUENTIAL;
	return READS_BAD;
}

static int pull_check(struct ferry_ctx *c)
{
	const char *m = ferry_cfg(c, "manifest");

	/* verify and reads are FERRY_KEY_ENUM: the supervisor checked them at load */
	if (!m || !*m || strchr(m, '/'))
		return ferry_cfg_error(c, "manifest", "must be a file name suffix without '/'");
	return FERRY_OK;
}

static const struct ferry_key pull_keys[] = {
	{ "origin", FERRY_KEY_PATH, NULL, FERRY_KEY_REQUIRED,
	  "the database file on the ferryfs mount" },
	{ "replica", FERRY_KEY_PATH, NULL, FERRY_KEY_REQUIRED, "the local copy" },
	{ "verify", FERRY_KEY_ENUM, "quick", 0,
	  "quick|full|none: PRAGMA quick_check / integrity_check after the pull",
	  "quick|full|none" },
	{ "create_if_missing", FERRY_KEY_BOOL, "false", 0,
	  "a missing origin starts an empty database (push then creates it)" },
	{ "manifest", FERRY_KEY_OBJKEY, ".ferry-manifest", 0,
	  "suffix of the page-hash sidecar next to the origin" },
	{ "discard_local", FERRY_KEY_BOOL, "false", 0,
	  "replace replica pages changed since the last sync and never pushed (a rerun of pull "
	  "refuses otherwise; a whole run replaces them with a warning)" },
	{ "reads", FERRY_KEY_ENUM, "auto", 0,
	  "auto|ranged|sequential: with known hashes, read just the differing pages or the whole "
	  "origin in order (auto: in order once they cover half of it)", "auto|ranged|sequential" },
	{ NULL, 0, NULL, 0, NULL },
};

FERRY_EXPORT const struct ferry_stage ferry_stage_v1 = {
	.abi = FERRY_STAGE_ABI, .size = sizeof(struct ferry_stage), .name = "pull",
	.check = pull_check, .dry_run = pull_dry_run, .run = pull_run, .keys = pull_keys,
	.needs = "mount",
	.summary = "copy the origin database into the local replica, only the pages that differ",
};
