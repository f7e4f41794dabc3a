/* sched_rows.c: the rows sidecar (DB.ferry-sched-rows): email_schedules as the load would read
 * it back, kept beside a fingerprinted fixed point so that the next day's run need not decode
 * the table again.
 *
 * Why this is sound. The fingerprint sidecar (sched_fp.c) proves "a file with tag F is the
 * state a run left". What the load makes of email_schedules (the owned rows, decoded, in
 * unique-key order, and the counted rows) is a function of the file's bytes and of the
 * inputs that decode them (send_time, the state table, the code): so a list saved with F and
 * with the hash of those inputs, today left out, is exactly what a full read of any file with
 * tag F would give. The run that proved the fixed point knows that list without reading it
 * back: after its commit the owned rows are exactly its new rows that were not dropped
 * (RULES.md, what is written), each with the rowid it kept or the insert gave, and each
 * field is made the way the load makes it from the text written (sched_rows_save: dates and
 * reasons formatted and parsed back). The counted rows are never written by the stage. The
 * next run (another today, the same other inputs) tags the file under its write lock with
 * the sidecar's key before it trusts the list; any other file, input or a torn sidecar
 * means the full read.
 *
 * Format (native byte order and struct layout: the code's own hash is part of the input
 * key, so another build never reads it): struct rows_hdr, nold struct sched_old, ncnt struct
 * sched_counted, then a 16-byte GMAC of all that under the header's key. That key is in the
 * file, so the tag only detects a torn or damaged file, like the fingerprint sidecar's sum.
 */
#include "sched_db.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROWS_MAGIC "ferry-sched-rows"
#define ROWS_VERSION 1u
#define ROWS_TAG 16
#define ROWS_BUF 4096                       /* records per write */

struct rows_hdr {
	char magic[16];
	uint32_t version, rec_old, rec_cnt, pad;
	unsigned char key[SCHED_FP_LEN];    /* inputs, today left out */
	unsigned char fkey[SCHED_FP_KEYLEN];
	unsigned char file[SCHED_FP_LEN];   /* the database's tag under fkey */
	uint64_t size;                      /* the database's size */
	uint64_t nold, ncnt;
};

char *sched_rows_path(const char *db_path)
{
	size_t n = strlen(db_path);
	char *p = malloc(n + sizeof(".ferry-sched-rows"));

	if (p) {
		memcpy(p, db_path, n);
		memcpy(p + n, ".ferry-sched-rows", sizeof(".ferry-sched-rows"));
	}
	return p;
}

int sched_rows_key(const struct sched_opts *o, unsigned char key[SCHED_FP_LEN])
{
	struct sched_opts any = *o;

	any.today = 0;                      /* the rows of a file do not depend on today */
	return sched_fp_key(&any, key);
}

static EVP_CIPHER_CTX *gmac_new(const unsigned char fkey[SCHED_FP_KEYLEN])
{
	static const unsigned char iv[12] = { 'r', 'o', 'w', 's' };  /* fp uses "fp" 0 and 1 */
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	if (ctx && EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, fkey, iv) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

static int gmac_add(EVP_CIPHER_CTX *ctx, const void *p, size_t n)
{
	const unsigned char *b = p;
	int ol;

	while (n > 0) {
		int k = n > (1u << 30) ? 1 << 30 : (int)n;
		if (EVP_EncryptUpdate(ctx, NULL, &ol, b, k) != 1)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

static int gmac_end(EVP_CIPHER_CTX *ctx, unsigned char tag[ROWS_TAG])
{
	unsigned char fin[16];
	int ol;

	return EVP_EncryptFinal_ex(ctx, fin, &ol) == 1 &&
	       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ROWS_TAG, tag) == 1 ? 0 : -1;
}

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

int sched_rows_save(struct sched_run *r, const unsigned char key[SCHED_FP_LEN],
		    const struct sched_fp *fp, char *err, size_t errlen)
{
	struct rows_hdr h = { .magic = ROWS_MAGIC, .version = ROWS_VERSION,
			      .rec_old = sizeof(struct sched_old),
			      .rec_cnt = sizeof(struct sched_counted), .size = fp->size,
			      .ncnt = r->plan.ncnt };
	struct sched_old *buf = malloc(ROWS_BUF * sizeof(*buf));
	EVP_CIPHER_CTX *ctx = gmac_new(fp->fkey);
	unsigned char tag[ROWS_TAG];
	char *path = sched_rows_path(r->path), tmp[4200];
	FILE *f = NULL;
	size_t nb = 0;
	int fd = -1, rc = -1;

	memcpy(h.key, key, SCHED_FP_LEN);
	memcpy(h.fkey, fp->fkey, SCHED_FP_KEYLEN);
	memcpy(h.file, fp->file, SCHED_FP_LEN);
	for (size_t i = 0; i < r->plan.ncd; i++)
		h.nold += !r->plan.cd[i].dup;
	if (!buf || !ctx || !path || !r->rid) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || !(f = fdopen(fd, "wb"))) {
		snprintf(err, errlen, "cannot create '%s': %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (gmac_add(ctx, &h, sizeof(h)) || fwrite(&h, sizeof(h), 1, f) != 1)
		goto out_write;
	for (size_t i = 0; i <= r->plan.ncd; i++) {
		if (nb == ROWS_BUF || (i == r->plan.ncd && nb)) {
			if (gmac_add(ctx, buf, nb * sizeof(*buf)) || fwrite(buf, sizeof(*buf), nb, f) != nb)
				goto out_write;
			nb = 0;
		}
		if (i < r->plan.ncd && !r->plan.cd[i].dup)
			row_back(r, &r->plan.cd[i], r->rid[i], &buf[nb++]);
	}
	if ((r->plan.ncnt && (gmac_add(ctx, r->plan.cnt, r->plan.ncnt * sizeof(*r->plan.cnt)) ||
			      fwrite(r->plan.cnt, sizeof(*r->plan.cnt), r->plan.ncnt, f) !=
			      r->plan.ncnt)) ||
	    gmac_end(ctx, tag) || fwrite(tag, sizeof(tag), 1, f) != 1)
		goto out_write;
	if (fclose(f) != 0) {
		f = NULL;
		goto out_write;
	}
	f = NULL;
	/* no fsync: a torn or lost file only costs the next run its shortcut (the tag) */
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot rename '%s': %s", tmp, strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
out_write:
	snprintf(err, errlen, "cannot write '%s': %s", tmp, errno ? strerror(errno) : "failed");
out:
	if (f)
		fclose(f);
	if (rc)
		unlink(tmp);
	EVP_CIPHER_CTX_free(ctx);
	free(buf);
	free(path);
	return rc;
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
	if (fstat(fd, &st) != 0 || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, ROWS_MAGIC, sizeof(h.magic)) || h.version != ROWS_VERSION ||
	    h.rec_old != sizeof(struct sched_old) || h.rec_cnt != sizeof(struct sched_counted) ||
	    memcmp(h.key, key, SCHED_FP_LEN) || h.size != size ||
	    h.nold > (uint64_t)st.st_size / sizeof(struct sched_old) ||
	    h.ncnt > (uint64_t)st.st_size / sizeof(struct sched_counted) ||
	    (uint64_t)st.st_size != sizeof(h) + h.nold * sizeof(struct sched_old) +
	    h.ncnt * sizeof(struct sched_counted) + ROWS_TAG) {
		close(fd);
		return -1;
	}
	rows->fd = fd;
	memcpy(rows->fkey, h.fkey, SCHED_FP_KEYLEN);
	memcpy(rows->file, h.file, SCHED_FP_LEN);
	rows->nold = h.nold;
	rows->ncnt = h.ncnt;
	return 0;
}

static int read_at(int fd, void *p, size_t n, uint64_t off)
{
	char *b = p;

	while (n > 0) {
		ssize_t k = pread(fd, b, n, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

int sched_rows_load(struct sched_rows *rows, struct sched_run *r)
{
	struct rows_hdr h;
	size_t bo = rows->nold * sizeof(struct sched_old), bc = rows->ncnt * sizeof(struct sched_counted);
	struct sched_old *old = sched_big(NULL, bo + sizeof(*old));
	struct sched_counted *cnt = sched_big(NULL, bc + sizeof(*cnt));
	EVP_CIPHER_CTX *ctx = gmac_new(rows->fkey);
	unsigned char tag[ROWS_TAG], want[ROWS_TAG];
	int rc = -1;

	if (!old || !cnt || !ctx || read_at(rows->fd, &h, sizeof(h), 0) ||
	    read_at(rows->fd, old, bo, sizeof(h)) || read_at(rows->fd, cnt, bc, sizeof(h) + bo) ||
	    read_at(rows->fd, want, sizeof(want), sizeof(h) + bo + bc) ||
	    gmac_add(ctx, &h, sizeof(h)) || gmac_add(ctx, old, bo) || gmac_add(ctx, cnt, bc) ||
	    gmac_end(ctx, tag) || memcmp(tag, want, ROWS_TAG))
		goto out;
	free(r->old);
	r->old = old;
	r->nold = r->aold = rows->nold;
	free(r->plan.cnt);
	r->plan.cnt = cnt;
	r->plan.ncnt = r->plan.acnt = rows->ncnt;
	old = NULL;
	cnt = NULL;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	free(old);
	free(cnt);
	return rc;
}

void sched_rows_close(struct sched_rows *rows)
{
	if (rows->fd >= 0)
		close(rows->fd);
	rows->fd = -1;
}
