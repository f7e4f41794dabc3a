/* sched_run.c: the schedule stage's run on one database: connection, transaction,
 * fingerprint shortcut, loading, computing and writing, reporting. */
#include "sched_db.h"
#include "sched_ddl.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_failpoint.h"
#include "ferry_file.h"
#include "ferry_stage.h"
#include "ferry_time.h"

/* Connection settings shared by both readers: a larger page cache keeps a big write from
 * spilling mid-transaction (the next day's run at 1M contacts changes about 35,000 pages,
 * 140 MB: 192 MiB holds them; peak RSS stays near 430 MB), and reads come straight from the
 * OS page cache. */
static const char conn_pragmas[] = "PRAGMA cache_size = -196608";

/* ---- fingerprint (sched_fp.c says why it is sound) ---- */

struct fp_run {
	bool on;                            /* run mode, rollback journal, key known */
	sqlite3_file *file;                 /* the main database file, SQLite's own handle */
	char *path;                         /* the sidecar */
	unsigned char key[SCHED_FP_LEN];    /* the inputs */
	unsigned char rkey[SCHED_FP_LEN];   /* the inputs but today (the rows sidecar) */
	uint32_t counter0;                  /* file change counter before our write */
	bool have_h0;                       /* h0 = the file's hash before our write */
	unsigned char fkey[SCHED_FP_KEYLEN];        /* h0's key */
	unsigned char h0[SCHED_FP_LEN];
	uint64_t size0;
	bool compacted;                     /* reopened after a compaction: its write count is 0 */
	unsigned char nkey[SCHED_FP_KEYLEN];        /* the new sidecars' key, with job */
	struct sched_rows_job job;          /* the rows sidecar being written */
};

/* The header's file change counter, read from the file (not the page cache). */
static int read_counter(sqlite3_file *f, uint32_t *out)
{
	unsigned char b[4];

	if (f->pMethods->xRead(f, b, 4, 24) != SQLITE_OK)
		return -1;
	*out = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	return 0;
}

static bool wal_mode(struct sched_run *r)
{
	sqlite3_stmt *st;
	bool wal = true;                    /* unknown: as unsafe as WAL */

	if (sqlite3_prepare_v2(r->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		const char *m = (const char *)sqlite3_column_text(st, 0);
		wal = !m || !strcasecmp(m, "wal");
	}
	sqlite3_finalize(st);
	return wal;
}

/* The rows sidecar (sched_rows.c), when the sidecar's inputs were not these (another today):
 * if its list is of this very file, it replaces the read of email_schedules. The file's
 * tag is kept as h0. */
static void rows_begin(struct sched_run *r, struct fp_run *f, uint64_t size)
{
	struct sched_rows rows;
	unsigned char h[SCHED_FP_LEN];
	uint64_t sz;
	int64_t t0 = ferry_mono_ms();

	if (sched_rows_open(r->path, f->rkey, size, &rows))
		return;
	if (!sched_fp_file(f->file, r->o->threads, rows.fkey, h, &sz) && sz == size &&
	    !memcmp(h, rows.file, SCHED_FP_LEN)) {
		memcpy(f->fkey, rows.fkey, SCHED_FP_KEYLEN);
		memcpy(f->h0, h, SCHED_FP_LEN);
		f->size0 = sz;
		f->have_h0 = true;
		if (!sched_rows_load(&rows, r)) {
			r->primed = true;
			r->capture = false;         /* not a line a rerun replays */
			sched_say(r, FERRY_INFO, "the database as the last run read and left it (rows "
				  "sidecar %s.ferry-sched-rows, the file's tag checked): %zu contacts, "
				  "%zu owned and %zu counted rows in %lld ms", r->path, r->plan.nct,
				  r->nold, r->plan.ncnt, (long long)(ferry_mono_ms() - t0));
			r->capture = true;
			/* the load's warnings, said where the load would say them */
			sched_replay(r, rows.warn, rows.nwarn);
		}
	}
	sched_rows_close(&rows);
}

/* Before any read of the data, holding the write lock: true when the sidecar says this
 * very file is a fixed point for these inputs (saved filled in). */
static bool fp_begin(struct sched_run *r, struct fp_run *f, struct sched_fp *saved)
{
	sqlite3_int64 sz;

	if (!r->o->fingerprint || wal_mode(r) ||
	    sqlite3_file_control(r->db, "main", SQLITE_FCNTL_FILE_POINTER, &f->file) != SQLITE_OK ||
	    !f->file || !f->file->pMethods || read_counter(f->file, &f->counter0) ||
	    sched_fp_key(r->o, f->key) || sched_rows_key(r->o, f->rkey))
		return false;
	f->path = sched_fp_path(r->path);
	if (!f->path)
		return false;
	f->on = true;
	r->capture = true;
	r->keep_rowids = true;
	if (f->file->pMethods->xFileSize(f->file, &sz) != SQLITE_OK)
		return false;
	if (sched_fp_load(f->path, f->key, saved)) {
		rows_begin(r, f, (uint64_t)sz);
		return false;
	}
	if ((uint64_t)sz != saved->size ||
	    sched_fp_file(f->file, r->o->threads, saved->fkey, f->h0, &f->size0))
		return false;
	memcpy(f->fkey, saved->fkey, SCHED_FP_KEYLEN);
	f->have_h0 = true;
	return f->size0 == saved->size && !memcmp(f->h0, saved->file, SCHED_FP_LEN);
}

/* A hit: the counts and warnings of the run that proved the fixed point. */
static void fp_reuse(struct sched_run *r, const struct sched_fp *saved)
{
	*r->rep = saved->rep;
	r->rep->unchanged = r->rep->rows;
	r->rep->reused = true;
	r->capture = false;
	sched_replay(r, saved->warn, saved->nwarn);
}

/* After our COMMIT: hash the file as we left it and save the sidecar, when it is known
 * to be a fixed point: nothing was written (a verified one), or rows were written into
 * the canonical schema. A SHARED lock keeps writers out while we check that the header
 * counter is still ours (no commit slipped in after ours) and hash. Failures only cost
 * the next run its shortcut. */
static void fp_end(struct sched_run *r, struct fp_run *f, bool canonical)
{
	struct sched_fp fp;
	uint32_t c1;
	int written = 0, hi;
	char err[512];
	bool saved_rows = false;

	r->capture = false;
	if (!f->on)
		return;
	if (r->warn_oom)
		goto out_end;
	memset(&fp, 0, sizeof(fp));
	/* pages this connection wrote to the database file (rollback mode; recovery of a hot
	 * journal is not counted): 0 means the run left the file as it found it */
	if (sqlite3_db_status(r->db, SQLITE_DBSTATUS_CACHE_WRITE, &written, &hi, 0) != SQLITE_OK)
		goto out_end;
	if (sqlite3_exec(r->db, "BEGIN; SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) !=
	    SQLITE_OK || read_counter(f->file, &c1))
		goto out_end;
	/* our commit adds exactly 1 to the counter, any other commit since adds more; a rows
	 * sidecar being written is under nkey, so the file is tagged again under it */
	if (written == 0 && c1 == f->counter0 && f->have_h0 && !f->job.f) {
		memcpy(fp.fkey, f->fkey, SCHED_FP_KEYLEN);
		memcpy(fp.file, f->h0, SCHED_FP_LEN);
		fp.size = f->size0;
	} else if ((written == 0 && c1 == f->counter0 && (!f->compacted || canonical)) ||
		   (written > 0 && c1 == f->counter0 + 1 && canonical)) {
		if (f->job.f)
			memcpy(fp.fkey, f->nkey, SCHED_FP_KEYLEN);
		if ((!f->job.f && sched_fp_newkey(fp.fkey)) ||
		    sched_fp_file(f->file, r->o->threads, fp.fkey, fp.file, &fp.size))
			goto out_end;
	} else {
		goto out_end;
	}
	sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
	memcpy(fp.key, f->key, SCHED_FP_LEN);
	fp.rep = *r->rep;
	fp.warn = r->warn;
	fp.nwarn = r->nwarn;
	if (sched_fp_save(f->path, &fp, err, sizeof(err))) {
		sched_say(r, FERRY_INFO, "fingerprint not saved (the next run reads everything): %s",
			  err);
	} else if (f->job.f) {
		if (sched_rows_finish(&f->job, f->rkey, &fp, err, sizeof(err)))
			sched_say(r, FERRY_INFO, "rows sidecar not saved (the next day's run reads "
				  "email_schedules): %s", err);
		else
			saved_rows = true;
	}
out_end:
	if (!sqlite3_get_autocommit(r->db))
		sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
	sched_rows_abort(&f->job);
	/* a rows sidecar of an older state would only cost the next run a tag of the file */
	if (!saved_rows)
		sched_rows_remove(r->path);
}

/* ---- compaction (the `compact` key; RULES.md, what is written) ---- */

/* The compacted copy beside the database (compact()), also removed if a crash left it. */
static void compact_path(const char *db_path, char *out, size_t n)
{
	snprintf(out, n, "%s.ferry-compact", db_path);
}

/* The counter of the main database file of r's connection (read_counter). */
static int db_counter(struct sched_run *r, uint32_t *out)
{
	sqlite3_file *file = NULL;

	if (sqlite3_file_control(r->db, "main", SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK ||
	    !file || !file->pMethods)
		return -1;
	return read_counter(file, out);
}

static bool want_compact(struct sched_run *r)
{
	struct stat st;

	if (r->o->compact == 2 || (!r->rep->inserted && !r->rep->updated && !r->rep->deleted) ||
	    wal_mode(r))
		return false;
	if (r->o->compact == 1)
		return true;
	return r->rep->inserted * 4 >= r->rep->rows && stat(r->path, &st) == 0 &&
	       st.st_size >= 64 << 20;
}

/* After our commit: VACUUM INTO a sibling file (fsynced, the original's mode and owner),
 * then rename it over the database, unless a commit slipped in meanwhile. The connection
 * is reopened on the new file, and the fingerprint starts from it. A failure leaves the
 * committed database as it was: compaction only saves later uploads. */
static void compact(struct sched_run *r, struct fp_run *f)
{
	char tmp[4096];
	struct stat st;
	uint32_t c0, c1;
	sqlite3_stmt *vs = NULL;
	int64_t t0 = ferry_mono_ms();
	const char *why = NULL;
	int fd;

	compact_path(r->path, tmp, sizeof(tmp));
	unlink(tmp);
	if (stat(r->path, &st) != 0 || db_counter(r, &c0) != 0) {
		why = "cannot read the database file";
		goto out;
	}
	sched_say(r, FERRY_INFO, "compacting the database (%lld MiB): each table and index into "
		  "one run of pages", (long long)(st.st_size >> 20));
	/* the copy streams: the write's page cache goes back first (peak RSS) */
	sqlite3_exec(r->db, "PRAGMA cache_size = -8192; PRAGMA shrink_memory", NULL, NULL, NULL);
	if (sqlite3_prepare_v2(r->db, "VACUUM INTO ?1", -1, &vs, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(vs, 1, tmp, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    sqlite3_step(vs) != SQLITE_DONE) {
		why = sqlite3_errmsg(r->db);
		goto out;
	}
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0 || fchmod(fd, st.st_mode & 07777) != 0) {
		why = strerror(errno);
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (fchown(fd, st.st_uid, st.st_gid) != 0) {
		/* not root: the file is ours already */
	}
	close(fd);
	/* crash matrix: the copy is made, the database not yet replaced */
	if (ferry_failpoint("schedule.before_compact_rename")) {
		why = "failpoint schedule.before_compact_rename";
		goto out;
	}
	if (db_counter(r, &c1) != 0 || c1 != c0) {
		why = "another writer committed meanwhile";
		goto out;
	}
	sqlite3_finalize(vs);
	vs = NULL;
	sqlite3_close(r->db);
	r->db = NULL;
	/* the connection reopened below has written nothing: only a canonical write may
	 * leave a fingerprint (fp_end), whether the rename happened or not */
	f->compacted = true;
	if (rename(tmp, r->path) != 0) {
		why = strerror(errno);
	} else {
		ferry_fsync_dir(r->path);
		r->rep->compact_ms = ferry_mono_ms() - t0;
		if (stat(r->path, &st) == 0)
			r->rep->compact_bytes = st.st_size;
		sched_say(r, FERRY_INFO, "compacted the database: %lld MiB in %lld ms",
			  (long long)(r->rep->compact_bytes >> 20), (long long)r->rep->compact_ms);
	}
	if (sqlite3_open_v2(r->path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		sqlite3_close(r->db);
		r->db = NULL;
		f->on = false;
		return;
	}
	sqlite3_busy_timeout(r->db, 10000);
	/* the fingerprint hashes the new file: nothing was written to it since */
	if (f->on && (sqlite3_file_control(r->db, "main", SQLITE_FCNTL_FILE_POINTER, &f->file) !=
		      SQLITE_OK || !f->file || read_counter(f->file, &f->counter0)))
		f->on = false;
	f->have_h0 = false;
out:
	sqlite3_finalize(vs);
	if (why) {
		unlink(tmp);
		sched_say(r, FERRY_WARN, "database not compacted (later pushes upload more): %s", why);
	}
}

/* While the plan is computed (no SQLite call), a second thread reads the unique index of
 * email_schedules into the connection's page cache: the write visits most of its pages,
 * and the cache's memory is then in place (each fresh 4 KiB costs a page fault here). A
 * full load reads the table through the same cache, which does as much; this is for a
 * load from the rows sidecar, which reads nothing. Only a cache's worth: errors do not
 * matter. */
static void *warm_unique(void *arg)
{
	sqlite3_exec(arg, "SELECT count(*) FROM email_schedules WHERE contact_id >= "
		     "-9223372036854775808", NULL, NULL, NULL);
	return NULL;
}

int sched_execute(const struct sched_opts *o, const char *db_path, enum sched_mode mode,
		  FILE *csv, struct sched_io *io, struct sched_report *rep)
{
	struct sched_run r = { .o = o, .io = io, .rep = rep, .path = db_path };
	struct fp_run fpr = { 0 };
	pthread_t warm_th;
	bool warm_started = false;          /* warm_unique runs on the connection */
	struct sched_fp saved = { 0 };
	int flags = mode == SCHED_DRY ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	int64_t t0, t1, t2;
	bool canonical = false;
	int rc = FERRY_FAIL;

	memset(rep, 0, sizeof(*rep));
	io->err[0] = '\0';
	if (sqlite3_open_v2(db_path, &r.db, flags | SQLITE_OPEN_NOMUTEX,
			    sched_vfs()) != SQLITE_OK) {
		sched_fail(&r, FERRY_FAIL, "cannot open database '%s': %s", db_path,
			   r.db ? sqlite3_errmsg(r.db) : "out of memory");
		goto out_close;
	}
	sqlite3_extended_result_codes(r.db, 1);
	sqlite3_busy_timeout(r.db, 10000);
	t0 = ferry_mono_ms();
	if (mode == SCHED_RUN) {
		char stale[4096];

		compact_path(db_path, stale, sizeof(stale));
		unlink(stale);
		sched_rows_sweep(db_path);
	}
	if (sched_exec(&r, conn_pragmas, "cannot configure") ||
	    sched_exec(&r, mode == SCHED_DRY ? "BEGIN" : "BEGIN IMMEDIATE",
		       "cannot begin a transaction on"))
		goto out_close;
	rc = sched_check_schema(&r);
	if (rc)
		goto out_rollback;
	if (mode == SCHED_RUN && fp_begin(&r, &fpr, &saved)) {
		fp_reuse(&r, &saved);
		rep->load_ms = ferry_mono_ms() - t0;
		goto out_rollback;          /* nothing to write: end the transaction, rc 0 */
	}
	rc = FERRY_FAIL;
	if (sched_load(&r))
		goto out_rollback;
	/* the sidecars keep what the load said (a rerun replays it); what this run says later
	 * (a compaction) is not the next run's to say */
	r.load_nwarn = r.nwarn;
	r.capture = false;
	t1 = ferry_mono_ms();
	rep->load_ms = t1 - t0;
	if (mode == SCHED_RUN && r.primed && r.es_exists && o->threads >= 2)
		warm_started = pthread_create(&warm_th, NULL, warm_unique, r.db) == 0;
	int crc = sched_compute(o, &r.plan, rep);
	if (warm_started)                   /* the connection is this thread's again */
		pthread_join(warm_th, NULL);
	if (crc) {
		sched_fail(&r, FERRY_FAIL, "out of memory computing the schedule");
		goto out_rollback;
	}
	t2 = ferry_mono_ms();
	rep->compute_ms = t2 - t1;
	if (mode == SCHED_DRY) {
		if ((csv && sched_print_csv(&r, csv)) || sched_count(&r))
			goto out_rollback;
		sched_exec(&r, "COMMIT", "cannot end the read transaction on");
	} else {
		if (sched_write(&r))
			goto out_rollback;
		/* crash matrix: every row written, the transaction not yet committed */
		if (ferry_failpoint("schedule.mid_write")) {
			sched_fail(&r, FERRY_FAIL, "failpoint schedule.mid_write");
			goto out_rollback;
		}
		/* the rows sidecar's rows are known now: written while the commit syncs */
		if (fpr.on && r.rid && !sched_fp_newkey(fpr.nkey))
			sched_rows_begin(&r, fpr.nkey, &fpr.job);
		canonical = fpr.on && sched_canonical(&r);
		if (sched_exec(&r, "COMMIT", "cannot commit to"))
			goto out_rollback;
		/* tests: another writer commits between our commit and the fingerprint */
		if (ferry_failpoint("schedule.after_commit")) {
			sched_fail(&r, FERRY_FAIL, "failpoint schedule.after_commit");
			goto out_close;
		}
		if (want_compact(&r))
			compact(&r, &fpr);
		fp_end(&r, &fpr, canonical);
	}
	rep->write_ms = ferry_mono_ms() - t2 - rep->compact_ms;
	rc = 0;
	goto out_close;
out_rollback:
	if (!sqlite3_get_autocommit(r.db))
		sqlite3_exec(r.db, "ROLLBACK", NULL, NULL, NULL);
out_close:
	sched_rows_abort(&fpr.job);
	sqlite3_close(r.db);
	sched_plan_free(&r.plan);
	free(r.old);
	free(r.rid);
	free(r.failed);
	free(r.warn);
	free(fpr.path);
	free(saved.warn);
	return rc;
}
