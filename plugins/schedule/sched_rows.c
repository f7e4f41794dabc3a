/* sched_rows.c: the rows sidecar (DB.ferry-sched-rows): everything the load makes of the
 * database (email_schedules' owned and counted rows, the contacts as validated, their
 * counts and warnings), kept beside a fingerprinted fixed point so that the next day's run
 * need not decode the file again.
 *
 * Why this is sound. The fingerprint sidecar (sched_fp.c) proves "a file with tag F is the
 * state a run left". What the load makes of a file (sched_load: the owned rows decoded, in
 * unique-key order, the counted rows, the valid contacts with their state and
 * failed-underwriting flag, the counts and the warnings about bad rows) is a function of the
 * file's bytes and of the inputs that decode them (send_time, the data files, the options,
 * the code), not of today: so what is saved with F and with the hash of those inputs, today
 * left out, is exactly what a full load of any file with tag F gives. The run that proved the
 * fixed point knows it without reading anything back: it loaded contacts and contact_events,
 * which it does not write; after its commit the owned rows are exactly its new rows that
 * were not dropped (RULES.md, what is written), each with the rowid it kept or the insert
 * gave, and each field made the way the load makes it from the text written (row_back:
 * dates and reasons formatted and parsed back); the counted rows are never written by the
 * stage. The next run (another today, the same other inputs) tags the file under its write
 * lock with the sidecar's key before it trusts any of it; any other file, input or a torn
 * sidecar means the full load.
 *
 * Format (native byte order and struct layout: the code's own hash is part of the input
 * key, so another build never reads it): nold struct sched_old, ncnt struct sched_counted,
 * nct struct sched_contact, nwarn bytes of warnings (as sched_say keeps them), struct
 * rows_hdr, then a 16-byte GMAC of all that under the header's key. That key is in the file,
 * so the tag only detects a torn or damaged file, like the fingerprint sidecar's sum. The
 * header comes last because the body is written by a thread while the commit syncs
 * (sched_rows_begin), before the file's tag is known (sched_rows_finish).
 */
#include "sched_db.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_file.h"

#define ROWS_MAGIC "ferry-sched-rows"
#define ROWS_VERSION 2u
#define ROWS_TAG SCHED_GMAC_TAG
#define ROWS_BUF 4096                       /* records per write */

struct rows_hdr {
	char magic[16];
	uint32_t version, rec_old, rec_cnt, rec_ct;
	unsigned char key[SCHED_FP_LEN];    /* inputs, today left out */
	unsigned char fkey[SCHED_FP_KEYLEN];
	unsigned char file[SCHED_FP_LEN];   /* the database's tag under fkey */
	uint64_t size;                      /* the database's size */
	uint64_t nold, ncnt, nct, nwarn;
	struct sched_loaded counts;
};

char *sched_rows_path(const char *db_path)
{
	return sched_side_path(db_path, ".ferry-sched-rows");
}

int sched_rows_key(const struct sched_opts *o, unsigned char key[SCHED_FP_LEN])
{
	struct sched_opts any = *o;

	any.today = 0;                      /* the rows of a file do not depend on today */
	return sched_fp_key(&any, key);
}

/* The GMAC's nonce for a rows sidecar (the fingerprint's file tags use "fp" 0 and 1) */
static const unsigned char rows_iv[12] = { 'r', 'o', 'w', 's' };

/* The owned row the load would read back for new row k, written with rowid. */
static void row_back(const struct sched_run *r, const struct sched_cand *k, int64_t rowid,
		     struct sched_old *o)
{
	char text[64], date[11];
	const char *why = sched_reason_text(k->reason, r->plan.ct[k->ci].state, text, sizeof(text));
	int y, m, d;
	int32_t day;

	memset(o, 0, sizeof(*o));
	o->rowid = rowid;
	o->cid = r->plan.ct[k->ci].id;
	o->type = k->type;
	sched_fmt_date(k->date, date);
	o->date = sched_parse_ymd(date, 10, &day) ? day : SCHED_NODATE;
	o->skipped = k->skipped;
	o->time_ok = strlen(r->o->send_time) == 8;
	o->prio_ok = 1;
	o->reason = (uint8_t)sched_reason_of((const unsigned char *)why, why ? (int)strlen(why) : 0,
					     &o->state);
	sched_civil(k->event, &y, &m, &d);
	o->event = y >= 1 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= sched_mdays(y, m) ?
		sched_days(y, m, d) : SCHED_NODATE;
}

/* n bytes into the GMAC and the temporary file: 0 or -1. */
static int put(struct sched_rows_job *j, const void *p, size_t n)
{
	return sched_gmac_add(j->ctx, p, n) || fwrite(p, 1, n, j->f) != n ? -1 : 0;
}

/* The writer thread: the owned rows, the counted rows, the contacts and the load's
 * warnings into the temporary file. */
static void *write_body(void *arg)
{
	struct sched_rows_job *j = arg;
	const struct sched_run *r = j->r;
	/* ROWS_BUF records of the largest of the three kinds */
	struct sched_old *buf = malloc(ROWS_BUF * sizeof(struct sched_old));
	size_t nb = 0;

	_Static_assert(sizeof(struct sched_old) >= sizeof(struct sched_counted) &&
		       sizeof(struct sched_old) >= sizeof(struct sched_contact), "ROWS_BUF's record");
	j->rc = -1;
	/* the last run's sidecar describes the file before this commit: freeing its blocks
	 * (a large unlink) here keeps it out of the run's time; if the run fails, the next
	 * one loads in full */
	if (j->path)
		unlink(j->path);
	if (!buf) {
		snprintf(j->err, sizeof(j->err), "out of memory");
		return NULL;
	}
	for (size_t i = 0; i <= r->plan.ncd; i++) {
		if (nb == ROWS_BUF || (i == r->plan.ncd && nb)) {
			if (put(j, buf, nb * sizeof(*buf)))
				goto out_write;
			j->nold += nb;
			nb = 0;
		}
		if (i < r->plan.ncd && !r->plan.cd[i].dup)
			row_back(r, &r->plan.cd[i], r->rid[i], &buf[nb++]);
	}
	/* the counted rows and the contacts field by field into zeroed records: their
	 * structs' padding was never written, and the file holds no stray bytes */
	for (size_t i = 0; i < r->plan.ncnt; i++) {
		struct sched_counted *k = (struct sched_counted *)buf + nb;

		memset(k, 0, sizeof(*k));
		k->cid = r->plan.cnt[i].cid;
		k->date = r->plan.cnt[i].date;
		k->ltype = r->plan.cnt[i].ltype;
		k->blocks = r->plan.cnt[i].blocks;
		if (++nb == ROWS_BUF || i + 1 == r->plan.ncnt) {
			if (put(j, buf, nb * sizeof(*k)))
				goto out_write;
			nb = 0;
		}
	}
	for (size_t i = 0; i < r->plan.nct; i++) {
		struct sched_contact *c = (struct sched_contact *)buf + nb;
		const struct sched_contact *from = &r->plan.ct[i];

		memset(c, 0, sizeof(*c));
		c->id = from->id;
		c->birth = from->birth;
		c->ed = from->ed;
		c->state = from->state;
		c->failed_uw = from->failed_uw;
		c->bm = from->bm;
		c->bd = from->bd;
		c->em = from->em;
		c->edd = from->edd;
		if (++nb == ROWS_BUF || i + 1 == r->plan.nct) {
			if (put(j, buf, nb * sizeof(*c)))
				goto out_write;
			nb = 0;
		}
	}
	if (j->nwarn && put(j, j->warn, j->nwarn))
		goto out_write;
	j->rc = 0;
	free(buf);
	return NULL;
out_write:
	snprintf(j->err, sizeof(j->err), "cannot write '%.400s': %s", j->tmp,
		 errno ? strerror(errno) : "failed");
	free(buf);
	return NULL;
}

int sched_rows_begin(struct sched_run *r, const unsigned char fkey[SCHED_FP_KEYLEN],
		     struct sched_rows_job *j)
{
	char *path = sched_rows_path(r->path);
	int fd;

	memset(j, 0, sizeof(*j));
	if (!path)
		return -1;
	snprintf(j->tmp, sizeof(j->tmp), "%s.%ld.tmp", path, (long)getpid());
	j->path = path;
	j->r = r;
	memcpy(j->fkey, fkey, SCHED_FP_KEYLEN);
	/* the load's warnings and counts as they are now: r->warn may grow meanwhile */
	j->counts = (struct sched_loaded){ r->rep->contacts, r->rep->valid, r->rep->bad,
					   r->rep->no_email, r->rep->no_state, r->rep->unknown_state,
					   r->plan.n_emails };
	j->nwarn = r->load_nwarn;
	if (j->nwarn && !(j->warn = malloc(j->nwarn))) {
		sched_rows_abort(j);
		return -1;
	}
	if (j->nwarn)
		memcpy(j->warn, r->warn, j->nwarn);
	unlink(j->tmp);
	fd = open(j->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		sched_rows_abort(j);
		return -1;
	}
	if (!(j->f = fdopen(fd, "wb")) || !(j->ctx = sched_gmac_new(fkey, rows_iv)) ||
	    (r->o->threads < 2 ? (write_body(j), false) :   /* threads = 1: here and now */
	     pthread_create(&j->th, NULL, write_body, j) != 0)) {
		if (j->f)
			fclose(j->f);
		else
			close(fd);
		j->f = NULL;
		unlink(j->tmp);
		sched_rows_abort(j);
		return -1;
	}
	j->started = r->o->threads >= 2;
	return 0;
}

static void job_end(struct sched_rows_job *j)
{
	if (!j->started)
		return;
	pthread_join(j->th, NULL);
	j->started = false;
}

int sched_rows_finish(struct sched_rows_job *j, const unsigned char key[SCHED_FP_LEN],
		      const struct sched_fp *fp, char *err, size_t errlen)
{
	struct rows_hdr h = { .magic = ROWS_MAGIC, .version = ROWS_VERSION,
			      .rec_old = sizeof(struct sched_old),
			      .rec_cnt = sizeof(struct sched_counted), .size = fp->size };
	unsigned char tag[ROWS_TAG];
	int rc = -1;

	job_end(j);
	if (!j->f) {
		snprintf(err, errlen, "not started");
		return -1;
	}
	if (j->rc) {
		snprintf(err, errlen, "%s", j->err);
		goto out;
	}
	memcpy(h.key, key, SCHED_FP_LEN);
	memcpy(h.fkey, fp->fkey, SCHED_FP_KEYLEN);
	memcpy(h.file, fp->file, SCHED_FP_LEN);
	h.nold = j->nold;
	h.ncnt = j->r->plan.ncnt;
	h.nct = j->r->plan.nct;
	h.nwarn = j->nwarn;
	h.counts = j->counts;
	h.rec_ct = sizeof(struct sched_contact);
	if (memcmp(fp->fkey, j->fkey, SCHED_FP_KEYLEN)) {
		snprintf(err, errlen, "the file was tagged under another key");
		goto out;
	}
	if (sched_gmac_add(j->ctx, &h, sizeof(h)) || fwrite(&h, sizeof(h), 1, j->f) != 1 ||
	    sched_gmac_end(j->ctx, tag) || fwrite(tag, sizeof(tag), 1, j->f) != 1) {
		snprintf(err, errlen, "cannot write '%.400s': %s", j->tmp, errno ? strerror(errno) : "failed");
		goto out;
	}
	rc = fclose(j->f);
	j->f = NULL;
	if (rc != 0) {
		snprintf(err, errlen, "cannot write '%.400s': %s", j->tmp, strerror(errno));
		goto out;
	}
	/* no fsync: a torn or lost file only costs the next run its shortcut (the tag) */
	rc = rename(j->tmp, j->path);
	if (rc)
		snprintf(err, errlen, "cannot rename '%.400s': %s", j->tmp, strerror(errno));
out:
	sched_rows_abort(j);
	return rc;
}

void sched_rows_abort(struct sched_rows_job *j)
{
	job_end(j);
	if (j->f) {
		fclose(j->f);
		j->f = NULL;
		unlink(j->tmp);
	}
	EVP_CIPHER_CTX_free(j->ctx);
	j->ctx = NULL;
	free(j->warn);
	j->warn = NULL;
	free(j->path);
	j->path = NULL;
}

void sched_rows_sweep(const char *db_path)
{
	char *path = sched_rows_path(db_path), *slash, dir[4096];
	const char *base;
	struct dirent *e;
	DIR *d;

	if (!path)
		return;
	slash = strrchr(path, '/');
	base = slash ? slash + 1 : path;
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
	if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		size_t bl = strlen(base);
		char *end;
		long pid;

		/* BASE.PID.tmp of a run that died before its rename */
		if (strncmp(e->d_name, base, bl) || e->d_name[bl] != '.')
			continue;
		pid = strtol(e->d_name + bl + 1, &end, 10);
		if (pid <= 0 || strcmp(end, ".tmp") || (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		char stale[8200];
		snprintf(stale, sizeof(stale), "%s/%s", dir, e->d_name);
		unlink(stale);
	}
	if (d)
		closedir(d);
	free(path);
}

void sched_rows_remove(const char *db_path)
{
	char *path = sched_rows_path(db_path);

	if (path)
		unlink(path);
	free(path);
}

int sched_rows_open(const char *db_path, const unsigned char key[SCHED_FP_LEN], uint64_t size,
		    struct sched_rows *rows)
{
	struct rows_hdr h;
	char *path = sched_rows_path(db_path);
	struct stat st;
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;

	free(path);
	memset(rows, 0, sizeof(*rows));
	rows->fd = -1;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < sizeof(h) + ROWS_TAG ||
	    pread(fd, &h, sizeof(h), st.st_size - (off_t)(sizeof(h) + ROWS_TAG)) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, ROWS_MAGIC, sizeof(h.magic)) || h.version != ROWS_VERSION ||
	    h.rec_old != sizeof(struct sched_old) || h.rec_cnt != sizeof(struct sched_counted) ||
	    h.rec_ct != sizeof(struct sched_contact) ||
	    memcmp(h.key, key, SCHED_FP_LEN) || h.size != size ||
	    h.nold > (uint64_t)st.st_size / sizeof(struct sched_old) ||
	    h.ncnt > (uint64_t)st.st_size / sizeof(struct sched_counted) ||
	    h.nct > (uint64_t)st.st_size / sizeof(struct sched_contact) ||
	    h.nwarn > (uint64_t)st.st_size ||
	    (uint64_t)st.st_size != h.nold * sizeof(struct sched_old) +
	    h.ncnt * sizeof(struct sched_counted) + h.nct * sizeof(struct sched_contact) +
	    h.nwarn + sizeof(h) + ROWS_TAG) {
		close(fd);
		return -1;
	}
	rows->fd = fd;
	memcpy(rows->fkey, h.fkey, SCHED_FP_KEYLEN);
	memcpy(rows->file, h.file, SCHED_FP_LEN);
	rows->nold = h.nold;
	rows->ncnt = h.ncnt;
	rows->nct = h.nct;
	rows->nwarn = h.nwarn;
	return 0;
}

/* n bytes at off, all of them: 0 or -1 */
static int read_at(int fd, void *p, size_t n, uint64_t off)
{
	return ferry_pread_full(fd, p, n, off) == (ssize_t)n ? 0 : -1;
}

int sched_rows_load(struct sched_rows *rows, struct sched_run *r)
{
	struct rows_hdr h;
	size_t bo = rows->nold * sizeof(struct sched_old), bc = rows->ncnt * sizeof(struct sched_counted),
	       bt = rows->nct * sizeof(struct sched_contact);
	struct sched_old *old = sched_big(NULL, bo + sizeof(*old));
	struct sched_counted *cnt = sched_big(NULL, bc + sizeof(*cnt));
	struct sched_contact *ct = sched_big(NULL, bt + sizeof(*ct));
	char *warn = malloc(rows->nwarn + 1);
	EVP_CIPHER_CTX *ctx = sched_gmac_new(rows->fkey, rows_iv);
	unsigned char tag[ROWS_TAG], want[ROWS_TAG];
	int rc = -1;

	if (!old || !cnt || !ct || !warn || !ctx || read_at(rows->fd, old, bo, 0) ||
	    read_at(rows->fd, cnt, bc, bo) || read_at(rows->fd, ct, bt, bo + bc) ||
	    read_at(rows->fd, warn, rows->nwarn, bo + bc + bt) ||
	    read_at(rows->fd, &h, sizeof(h), bo + bc + bt + rows->nwarn) ||
	    read_at(rows->fd, want, sizeof(want), bo + bc + bt + rows->nwarn + sizeof(h)) ||
	    sched_gmac_add(ctx, old, bo) || sched_gmac_add(ctx, cnt, bc) || sched_gmac_add(ctx, ct, bt) ||
	    sched_gmac_add(ctx, warn, rows->nwarn) || sched_gmac_add(ctx, &h, sizeof(h)) ||
	    sched_gmac_end(ctx, tag) || memcmp(tag, want, ROWS_TAG))
		goto out;
	free(r->old);
	r->old = old;
	r->nold = r->aold = rows->nold;
	free(r->plan.cnt);
	r->plan.cnt = cnt;
	r->plan.ncnt = r->plan.acnt = rows->ncnt;
	free(r->plan.ct);
	r->plan.ct = ct;
	r->plan.nct = r->plan.act = rows->nct;
	r->rep->contacts = h.counts.contacts;
	r->rep->valid = h.counts.valid;
	r->rep->bad = h.counts.bad;
	r->rep->no_email = h.counts.no_email;
	r->rep->no_state = h.counts.no_state;
	r->rep->unknown_state = h.counts.unknown_state;
	r->plan.n_emails = h.counts.n_emails;
	rows->warn = warn;
	old = NULL;
	cnt = NULL;
	ct = NULL;
	warn = NULL;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	free(old);
	free(cnt);
	free(ct);
	free(warn);
	return rc;
}

void sched_rows_close(struct sched_rows *rows)
{
	if (rows->fd >= 0)
		close(rows->fd);
	rows->fd = -1;
	free(rows->warn);
	rows->warn = NULL;
}
