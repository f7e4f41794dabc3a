/* sched_fp.c: the schedule stage's fingerprint sidecar: tags of the database file and the inputs of a fixed point. */
#include "sched_core.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_file.h"

/*
 * Why this is sound. The stage is a pure function of (database content, configuration,
 * data files, today, the stage's code). A sidecar records "a file whose bytes have tag F,
 * run with inputs that hash to K, is a fixed point: the stage writes nothing and reports
 * R". That statement never becomes false, whatever happens to the file later; a run only
 * trusts it when the file it holds under its write lock has tag F again. So any change by
 * any writer (another SQLite connection, pull patching pages, a restored copy, a non-SQLite
 * tool) changes F and forces the full run. Change counters alone would not do: SQLite's
 * file change counter and data_version say "some commit happened", not "the bytes are the
 * same" (a copy from another host, or pull's page patching, can bring other rows under
 * the same counter).
 *
 * The tag is GMAC (AES-128-GCM over the bytes as associated data) under a random key drawn
 * for each sidecar, on each half of the file: GHASH is almost-XOR-universal, so two
 * different halves of at most L 16-byte blocks get the same tag with probability at most
 * L / 2^128 over the key (below 2^-100 for 1 GiB), and the key is independent of what any
 * writer puts into the file. With AES-NI and PCLMULQDQ it costs a third to an eighth of
 * SHA-256 (SHA-NI) here, and the hash is the whole cost of a warm rerun. Neither would
 * stop someone who can write the state directory: they can write any sidecar (or any row).
 * The inputs and the sidecar's own integrity use SHA-256 (small).
 *
 * When is a state known to be a fixed point (sched_db.c, fp_end)? Either the full run
 * wrote no page (proved), or it wrote rows into the canonical schema of sched_ddl.h (no trigger,
 * no other unique index, known affinities), where the rules' idempotence holds: the
 * plan depends only on contacts, events and rows the stage does not own, and every row
 * written reads back equal. The header counter is used only to prove that the bytes
 * tagged after our COMMIT are ours: +0 when we wrote nothing, +1 for our one commit;
 * anything else means another writer slipped in, and nothing is saved.
 * Not eligible: WAL mode (the main file is not the whole state) and dry runs.
 */

#define FP_MAGIC "ferry-schedule-fingerprint 1\n"
#define FP_CHUNK (1u << 20)                 /* bytes per xRead while hashing */
#define FP_MAX_SIDECAR (256u << 20)         /* larger sidecars are not ours */

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < 2 * n; i++) {
		int c = s[i], v;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else
			return -1;
		if (i % 2)
			out[i / 2] = (unsigned char)(out[i / 2] | v);
		else
			out[i / 2] = (unsigned char)(v << 4);
	}
	return 0;
}

static int sha256(const void *data, size_t n, unsigned char out[SCHED_FP_LEN])
{
	unsigned int len = 0;

	return EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) == 1 && len == SCHED_FP_LEN ?
		0 : -1;
}

/* Growing text buffer for the key material and the sidecar. */
struct fp_buf {
	char *p;
	size_t n, a;
	bool oom;
};

static void put(struct fp_buf *b, const void *data, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->a) {
		size_t na = b->a ? b->a : 4096;
		while (na < b->n + n + 1)
			na *= 2;
		char *np = realloc(b->p, na);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->a = na;
	}
	if (n)
		memcpy(b->p + b->n, data, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void putf(struct fp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct fp_buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		b->oom = true;
	else
		put(b, tmp, (size_t)n);
}

/* SHA-256 of the file this code was loaded from (the plugin, or a unit test binary):
 * a rebuilt stage never trusts a sidecar of another build. */
static int code_hash(unsigned char out[SCHED_FP_LEN])
{
	Dl_info info;
	unsigned char buf[65536];
	EVP_MD_CTX *ctx;
	FILE *f;
	size_t n;
	unsigned int len = 0;
	int rc = -1;

	if (!dladdr((void *)code_hash, &info) || !info.dli_fname || !*info.dli_fname)
		return -1;
	f = fopen(info.dli_fname, "rb");
	if (!f)
		return -1;
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out_close;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		if (EVP_DigestUpdate(ctx, buf, n) != 1)
			goto out_close;
	if (!ferror(f) && EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == SCHED_FP_LEN)
		rc = 0;
out_close:
	EVP_MD_CTX_free(ctx);
	fclose(f);
	return rc;
}

static void put_window(struct fp_buf *b, const struct sched_window *w)
{
	putf(b, " %d %d %d %d %d", w->on, w->before, w->after, w->pre, w->month_start);
}

int sched_fp_key(const struct sched_opts *o, unsigned char key[SCHED_FP_LEN])
{
	struct fp_buf b = { 0 };
	unsigned char code[SCHED_FP_LEN];
	char codehex[2 * SCHED_FP_LEN + 1];
	int rc;

	if (code_hash(code))
		return -1;
	hex(code, SCHED_FP_LEN, codehex);
	/* every option that can change a row, a count or a warning; not run_id (unchanged
	 * rows keep theirs) nor threads */
	putf(&b, "code %s\nsqlite %s\n", codehex, sqlite3_sourceid());
	putf(&b, "today %" PRId32 " send_time %s leads %d %d %d aep %d %d %d post %d fu %d "
	     "unknown_skip %d freq %d %d profile %d cap %d %d %d %d strict %d\n",
	     o->today, o->send_time, o->bday_lead, o->ed_lead, o->ed_min_months, o->aep_enabled,
	     o->aep_month, o->aep_day, o->post_window, o->exclude_fu, o->unknown_skip,
	     o->max_per_period, o->period_days, o->profile, o->cap_percent, o->ed_soft_limit,
	     o->ed_window, o->min_daily_cap, o->strict);
	for (int i = 0; i < SCHED_NSTATES; i++) {
		putf(&b, "state %d %d", i, o->rules.st[i].year_round);
		put_window(&b, &o->rules.st[i].bday);
		put_window(&b, &o->rules.st[i].ed);
		put(&b, "\n", 1);
	}
	put(&b, "zips", 4);
	for (int i = 0; i < 1000; i++)
		putf(&b, " %d", o->zips.state[i]);
	rc = b.oom ? -1 : sha256(b.p, b.n, key);
	free(b.p);
	return rc;
}

struct fp_part {
	sqlite3_file *f;
	const unsigned char *fkey;
	unsigned char iv[12];               /* one per part: never two messages per (key, iv) */
	uint64_t off, len;
	unsigned char tag[SCHED_FP_LEN / 2];
	int rc;
};

EVP_CIPHER_CTX *sched_gmac_new(const unsigned char fkey[SCHED_FP_KEYLEN],
			       const unsigned char iv[12])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	if (ctx && EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, fkey, iv) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

int sched_gmac_add(EVP_CIPHER_CTX *ctx, const void *p, size_t n)
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

int sched_gmac_end(EVP_CIPHER_CTX *ctx, unsigned char tag[SCHED_GMAC_TAG])
{
	unsigned char fin[16];
	int ol;

	return EVP_EncryptFinal_ex(ctx, fin, &ol) == 1 &&
	       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SCHED_GMAC_TAG, tag) == 1 ? 0 : -1;
}

_Static_assert(SCHED_FP_LEN / 2 == SCHED_GMAC_TAG, "a file's tag is two parts' GMACs");

/* The GMAC of one part. */
static void *hash_part(void *arg)
{
	struct fp_part *p = arg;
	unsigned char *buf = malloc(FP_CHUNK);
	EVP_CIPHER_CTX *ctx = sched_gmac_new(p->fkey, p->iv);

	p->rc = -1;
	if (!buf || !ctx)
		goto out_free;
	for (uint64_t done = 0; done < p->len;) {
		int n = p->len - done < FP_CHUNK ? (int)(p->len - done) : (int)FP_CHUNK;
		if (p->f->pMethods->xRead(p->f, buf, n, (sqlite3_int64)(p->off + done)) != SQLITE_OK ||
		    sched_gmac_add(ctx, buf, (size_t)n))
			goto out_free;
		done += (uint64_t)n;
	}
	if (!sched_gmac_end(ctx, p->tag))
		p->rc = 0;
out_free:
	EVP_CIPHER_CTX_free(ctx);
	free(buf);
	return NULL;
}

int sched_fp_newkey(unsigned char fkey[SCHED_FP_KEYLEN])
{
	return RAND_bytes(fkey, SCHED_FP_KEYLEN) == 1 ? 0 : -1;
}

/* Always two halves, whatever the thread count, so the value does not depend on it. */
int sched_fp_file(struct sqlite3_file *f, int threads, const unsigned char fkey[SCHED_FP_KEYLEN],
		  unsigned char out[SCHED_FP_LEN], uint64_t *size)
{
	struct fp_part part[2];
	sqlite3_int64 sz = 0;

	if (!f || !f->pMethods || f->pMethods->xFileSize(f, &sz) != SQLITE_OK || sz < 0)
		return -1;
	uint64_t half = ((uint64_t)sz / 2) & ~(uint64_t)(FP_CHUNK - 1);
	part[0] = (struct fp_part){ .f = f, .fkey = fkey, .iv = { 'f', 'p', 0 }, .off = 0, .len = half };
	part[1] = (struct fp_part){ .f = f, .fkey = fkey, .iv = { 'f', 'p', 1 }, .off = half,
				    .len = (uint64_t)sz - half };
	/* The connection is idle meanwhile, and the unix VFS reads with pread: two threads
	 * can read one sqlite3_file. Its own fd is used because closing any other fd of the
	 * file would drop SQLite's POSIX locks. */
	sched_both(threads, hash_part, &part[0], &part[1]);
	if (part[0].rc || part[1].rc)
		return -1;
	/* GCM's length block covers each part's length; the size fixes the split */
	memcpy(out, part[0].tag, sizeof(part[0].tag));
	memcpy(out + sizeof(part[0].tag), part[1].tag, sizeof(part[1].tag));
	*size = (uint64_t)sz;
	return 0;
}

/* The report fields a sidecar keeps, in file order. */
#define FP_NREP 12
static int64_t *rep_field(struct sched_report *r, int i)
{
	int64_t *f[FP_NREP] = { &r->contacts, &r->valid, &r->bad, &r->no_email, &r->no_state,
				&r->unknown_state, &r->rows, &r->pre_scheduled, &r->skipped,
				&r->ignored, &r->daily_cap, &r->ed_limit };
	return f[i];
}

char *sched_side_path(const char *db_path, const char *suffix)
{
	size_t n = strlen(db_path), m = strlen(suffix) + 1;
	char *p = malloc(n + m);

	if (p) {
		memcpy(p, db_path, n);
		memcpy(p + n, suffix, m);
	}
	return p;
}

char *sched_fp_path(const char *db_path)
{
	return sched_side_path(db_path, ".ferry-sched");
}

int sched_fp_save(const char *path, const struct sched_fp *fp, char *err, size_t errlen)
{
	struct fp_buf b = { 0 };
	char kh[2 * SCHED_FP_LEN + 1], fh[2 * SCHED_FP_LEN + 1], gh[2 * SCHED_FP_KEYLEN + 1];
	unsigned char sum[SCHED_FP_LEN];
	struct sched_report rep = fp->rep;
	int rc = -1;

	hex(fp->key, SCHED_FP_LEN, kh);
	hex(fp->file, SCHED_FP_LEN, fh);
	hex(fp->fkey, SCHED_FP_KEYLEN, gh);
	put(&b, FP_MAGIC, strlen(FP_MAGIC));
	putf(&b, "key %s\nfile %s %s %" PRIu64 "\nreport", kh, gh, fh, fp->size);
	for (int i = 0; i < FP_NREP; i++)
		putf(&b, " %" PRId64, *rep_field(&rep, i));
	putf(&b, "\nwarnings %zu\n", fp->nwarn);
	put(&b, fp->warn, fp->nwarn);
	if (b.oom || sha256(b.p, b.n, sum)) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	hex(sum, SCHED_FP_LEN, fh);
	putf(&b, "sum %s\n", fh);
	if (b.oom) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	/* 0600 like every file ferry keeps: the warnings name contacts. No fsync: a torn or
	 * lost sidecar only costs a full run (the sum line checks it) */
	rc = ferry_file_replace(path, b.p, b.n, 0600, 0, err, errlen);
out_free:
	free(b.p);
	return rc;
}

/* Reads and checks a sidecar; -1 when absent, torn, corrupt or not for key. */
int sched_fp_load(const char *path, const unsigned char key[SCHED_FP_LEN], struct sched_fp *fp)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL, *p, *end;
	unsigned char sum[SCHED_FP_LEN], want[SCHED_FP_LEN];
	long len;
	size_t nwarn;
	int used;

	memset(fp, 0, sizeof(*fp));
	if (!f)
		return -1;
	if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || (unsigned long)len > FP_MAX_SIDECAR ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto out_bad;
	text = malloc((size_t)len + 1);
	if (!text || fread(text, 1, (size_t)len, f) != (size_t)len)
		goto out_bad;
	text[len] = '\0';
	/* the last line is "sum HEX\n" over everything before it */
	const size_t sl = 4 + 2 * SCHED_FP_LEN + 1;
	if ((size_t)len < strlen(FP_MAGIC) + sl || memcmp(text, FP_MAGIC, strlen(FP_MAGIC)))
		goto out_bad;
	end = text + len - sl;
	if (memcmp(end, "sum ", 4) || end[sl - 1] != '\n' || unhex(end + 4, want, SCHED_FP_LEN) ||
	    sha256(text, (size_t)(end - text), sum) || memcmp(sum, want, SCHED_FP_LEN))
		goto out_bad;
	p = text + strlen(FP_MAGIC);
	if (strncmp(p, "key ", 4) || unhex(p + 4, fp->key, SCHED_FP_LEN) ||
	    memcmp(fp->key, key, SCHED_FP_LEN))
		goto out_bad;
	p += 4 + 2 * SCHED_FP_LEN;
	if (strncmp(p, "\nfile ", 6) || unhex(p + 6, fp->fkey, SCHED_FP_KEYLEN) ||
	    p[6 + 2 * SCHED_FP_KEYLEN] != ' ' ||
	    unhex(p + 7 + 2 * SCHED_FP_KEYLEN, fp->file, SCHED_FP_LEN))
		goto out_bad;
	p += 7 + 2 * SCHED_FP_KEYLEN + 2 * SCHED_FP_LEN;
	used = 0;                       /* %n is not reached when "report" does not match
					 * (fuzz_schedfp: a stale count walked p off the end) */
	if (sscanf(p, " %" SCNu64 "\nreport%n", &fp->size, &used) != 1 || !used)
		goto out_bad;
	p += used;
	for (int i = 0; i < FP_NREP; i++) {
		if (sscanf(p, " %" SCNd64 "%n", rep_field(&fp->rep, i), &used) != 1)
			goto out_bad;
		p += used;
	}
	if (sscanf(p, "\nwarnings %zu%n", &nwarn, &used) != 1 || p[used] != '\n')
		goto out_bad;
	p += used + 1;
	if (nwarn != (size_t)(end - p))
		goto out_bad;
	fp->warn = malloc(nwarn + 1);
	if (!fp->warn)
		goto out_bad;
	memcpy(fp->warn, p, nwarn);
	fp->warn[nwarn] = '\0';
	fp->nwarn = nwarn;
	free(text);
	fclose(f);
	return 0;
out_bad:
	free(text);
	fclose(f);
	memset(fp, 0, sizeof(*fp));
	return -1;
}
