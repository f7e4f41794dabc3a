/* s3_probe.c: the endpoint probe: does this store fence the writes ferry relies on, in the
 * dialect the client speaks? Used by `ferry check` and by the lock stage before it takes a
 * lock; its result is cached per endpoint, bucket and dialect (core/lib/STORES.md). */
#include "ferry_s3.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "ferry_file.h"
#include "ferry_log.h"
#include "s3_internal.h"

enum { P_CREATE, P_PUT, P_ABSENT, P_DELETE, P_RANGE, P_UPC, P_N };

/* 2 * bytes hex digits of randomness (a fixed pattern if the kernel gives none) into out. */
static void random_hex(char *out, size_t bytes)
{
	unsigned char rnd[32];

	if (bytes > sizeof(rnd))
		bytes = sizeof(rnd);
	if (getrandom(rnd, bytes, 0) != (ssize_t)bytes)
		memset(rnd, 0x5a, bytes);
	for (size_t i = 0; i < bytes; i++)
		sprintf(out + 2 * i, "%02x", rnd[i]);
}

/* A version no live object has: an ETag of no bytes anybody wrote, or generation 1. */
static const char *wrong_version(const struct ferry_s3 *s3)
{
	return s3->dialect == FERRY_S3_DIALECT_GCS ? "1" : "\"00000000000000000000000000000000\"";
}

/* Does the store refuse a PUT of other bytes over key under cond? When it takes it, our
 * body goes back (its new version into version) so the later steps are meaningful. */
static bool probe_refused(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
			  const char *body, size_t blen, char version[80], long *status)
{
	struct ferry_s3_res r;
	int rc = ferry_s3_put(s3, key, "other", 5, cond, &r);

	*status = r.status;
	if (rc == FERRY_S3_OK) {
		ferry_s3_put(s3, key, body, blen, NULL, &r);
		s3_scopy(version, 80, r.etag);
	}
	return rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_NOTFOUND;
}

int ferry_s3_probe(struct ferry_s3 *s3, const char *scratch_prefix,
		   struct ferry_s3_features *out, struct ferry_s3_res *res)
{
	struct ferry_s3_res local, r;
	struct ferry_s3_cond create = { .if_none_match = "*" };
	struct ferry_s3_cond wrong = { .if_match = wrong_version(s3) };
	char key[512], key2[512], key3[512], nonce[33], body[96], version[80], petag[80];
	struct ferry_buf got = { 0 };
	char *upload = NULL;
	int rc;
	size_t blen;

	res = s3_res_begin(res, &local);
	memset(out, 0, sizeof(*out));
	s3_scopy(out->dialect, sizeof(out->dialect), ferry_s3_dialect_name(s3->dialect));
	out->multipart_fenced = ferry_s3_multipart_fenced(s3);
	out->probed_at = time(NULL);
	random_hex(nonce, 16);
	if (!scratch_prefix)
		scratch_prefix = "";
	snprintf(key, sizeof(key), "%s.ferry-probe-%s", scratch_prefix, nonce);
	snprintf(key2, sizeof(key2), "%s.ferry-probe-%s.copy", scratch_prefix, nonce);
	snprintf(key3, sizeof(key3), "%s.ferry-probe-%s.absent", scratch_prefix, nonce);
	blen = (size_t)snprintf(body, sizeof(body), "ferry probe %s\n", nonce);

	/* 1. create if absent, twice: the second must be refused */
	rc = ferry_s3_put(s3, key, body, blen, &create, res);
	if (rc != FERRY_S3_OK)
		return rc;
	s3_scopy(version, sizeof(version), res->etag);
	out->conditional_create = probe_refused(s3, key, &create, body, blen, version,
						&out->status[P_CREATE]);
	/* 2. replace with a wrong version */
	out->conditional_put = probe_refused(s3, key, &wrong, body, blen, version,
					     &out->status[P_PUT]);
	/* 3. write if version V on an absent key: AWS answers 404, others 412 */
	rc = ferry_s3_put(s3, key3, "other", 5, &wrong, &r);
	out->status[P_ABSENT] = r.status;
	out->absent_refused = rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_NOTFOUND;
	/* 5. a ranged GET gives exactly the range */
	rc = ferry_s3_get_buf(s3, key, NULL, 3, 5, &got, &r);
	out->status[P_RANGE] = r.status;
	out->ranged_get = rc == FERRY_S3_OK && got.len == 5 && !memcmp(got.data, body + 3, 5) &&
			  r.size == blen;
	ferry_buf_release(&got);
	/* 6. UploadPartCopy of the scratch object (501 on stores without it); not on GCS,
	 * where no commit is a multipart upload */
	rc = out->multipart_fenced ? ferry_s3_mpu_create(s3, key2, &upload, &r) : FERRY_S3_NOTIMPL;
	if (!out->multipart_fenced) {
		out->status[P_UPC] = 0;
	} else if (rc == FERRY_S3_OK) {
		rc = ferry_s3_mpu_part_copy(s3, key2, upload, 1, key, NULL, 0, blen, petag, &r);
		out->status[P_UPC] = r.status;
		out->upload_part_copy = rc == FERRY_S3_OK;
		ferry_s3_mpu_abort(s3, key2, upload, &r);
		free(upload);
	} else {
		out->status[P_UPC] = r.status;
	}
	/* 4. delete with a wrong version: refused; with the right one: done */
	rc = ferry_s3_delete(s3, key, &wrong, &r);
	out->status[P_DELETE] = r.status;
	out->conditional_delete = rc == FERRY_S3_PRECONDITION;
	if (rc == FERRY_S3_PRECONDITION)
		ferry_s3_delete(s3, key, &(struct ferry_s3_cond){ .if_match = version }, &r);
	/* scratch keys go, whatever the store did with the conditions */
	ferry_s3_delete(s3, key, NULL, &r);
	ferry_s3_delete(s3, key2, NULL, &r);
	ferry_s3_delete(s3, key3, NULL, &r);
	res->msg[0] = '\0';
	return FERRY_S3_OK;
}

/* ---------------------------------------------------------------- verdict and matrix */

static const struct {
	const char *what;                   /* the property, in the dialect-neutral words */
	const char *why;                    /* what breaks without it */
} props[P_N] = {
	{ "create if absent, twice: the second refused",
	  "two machines could both take the lock" },
	{ "replace with a wrong version: refused",
	  "a stale owner could overwrite newer data" },
	{ "write if version V on an absent key: refused",
	  "a lock released meanwhile could be written back by its old owner" },
	{ "delete with a wrong version: refused",
	  "a stale owner could delete the lock another machine took over" },
	{ "ranged GET: exactly the bytes asked for",
	  "pulls and reads would get wrong pages" },
	{ "UploadPartCopy", NULL },
};

static bool prop_ok(const struct ferry_s3_features *f, int p)
{
	switch (p) {
	case P_CREATE: return f->conditional_create;
	case P_PUT: return f->conditional_put;
	case P_ABSENT: return f->absent_refused;
	case P_DELETE: return f->conditional_delete;
	case P_RANGE: return f->ranged_get;
	default: return f->upload_part_copy;
	}
}

const char *ferry_s3_features_unsafe(struct ferry_s3 *s3, const struct ferry_s3_features *f,
				     char *why, size_t n)
{
	for (int p = 0; p < P_UPC; p++) {
		if (prop_ok(f, p))
			continue;
		snprintf(why, n, "store %s (dialect %s) failed the probe: %s: %s (it answered %ld); "
			 "%s", s3->store_name, f->dialect, props[p].what,
			 p == P_RANGE ? "no" : "it was accepted", f->status[p],
			 props[p].why);
		return why;
	}
	return NULL;
}

/* How each condition is spelled in this dialect, for the matrix. */
static const char *spelling(const struct ferry_s3 *s3, int p)
{
	bool gcs = s3->dialect == FERRY_S3_DIALECT_GCS;

	switch (p) {
	case P_CREATE: return gcs ? "x-goog-if-generation-match: 0" : "If-None-Match: *";
	case P_PUT:
	case P_ABSENT:
	case P_DELETE: return gcs ? "x-goog-if-generation-match: N" : "If-Match: \"etag\"";
	case P_RANGE: return "Range: bytes=3-7";
	default: return "x-amz-copy-source-range";
	}
}

void ferry_s3_features_print(FILE *out, const char *prefix, struct ferry_s3 *s3,
			     const struct ferry_s3_features *f)
{
	long age = (long)(time(NULL) - f->probed_at);

	fprintf(out, "%sstore %s, dialect %s, %s\n", prefix, s3->store_name, f->dialect,
		f->cached ? "probe cached" : "probed now");
	if (f->cached)
		fprintf(out, "%s  (probed %ld min ago; `ferry check` probes again)\n", prefix,
			age / 60);
	for (int p = 0; p < P_N; p++) {
		const char *verdict = prop_ok(f, p) ? "ok" : p == P_UPC ? "no" : "FAILED";

		if (p == P_UPC && !f->multipart_fenced) {
			fprintf(out, "%s  %-6s %s: not used (no multipart commit here)\n", prefix, "-",
				props[p].what);
			continue;
		}
		fprintf(out, "%s  %-6s %s: %ld to %s%s\n", prefix, verdict, props[p].what,
			f->status[p], spelling(s3, p),
			p == P_ABSENT && f->absent_refused && f->status[p] == 404 ? " (as AWS)" :
			p == P_UPC && !f->upload_part_copy ? " (ferryfs uploads the parts itself)" : "");
	}
	fprintf(out, "%s  %-6s fenced multipart commit: %s\n", prefix,
		f->multipart_fenced ? "yes" : "no",
		f->multipart_fenced ? "conditions on CompleteMultipartUpload" :
		"every commit is one conditional PUT");
}

/* ---------------------------------------------------------------- the cache */

/* The cache file: DIR/s3-probe-HASH.json. */
static int cache_path(const struct ferry_s3 *s3, const char *dir, char *out, size_t n)
{
	return ferry_s3_state_path(s3, dir, "s3-probe", out, n);
}

static const char *const keys[P_N] = {
	"conditional_create", "conditional_put", "absent_refused", "conditional_delete",
	"ranged_get", "upload_part_copy",
};

static bool cache_read(struct ferry_s3 *s3, const char *path, long max_age_s,
		       struct ferry_s3_features *f)
{
	json_t *o = json_load_file(path, 0, NULL), *st;
	json_int_t at;
	bool ok;

	if (!o)
		return false;
	memset(f, 0, sizeof(*f));
	at = json_integer_value(json_object_get(o, "probed_at"));
	st = json_object_get(o, "status");
	ok = at <= (json_int_t)time(NULL) && (json_int_t)time(NULL) - at < max_age_s &&
	     json_is_array(st) && json_array_size(st) == P_N;
	for (int p = 0; ok && p < P_N; p++) {
		bool *b = p == P_CREATE ? &f->conditional_create : p == P_PUT ? &f->conditional_put :
			  p == P_ABSENT ? &f->absent_refused : p == P_DELETE ? &f->conditional_delete :
			  p == P_RANGE ? &f->ranged_get : &f->upload_part_copy;

		*b = json_is_true(json_object_get(o, keys[p]));
		f->status[p] = (long)json_integer_value(json_array_get(st, (size_t)p));
	}
	json_decref(o);
	if (!ok)
		return false;
	f->probed_at = (time_t)at;
	f->cached = true;
	f->multipart_fenced = ferry_s3_multipart_fenced(s3);
	s3_scopy(f->dialect, sizeof(f->dialect), ferry_s3_dialect_name(s3->dialect));
	return true;
}

static void cache_write(const char *dir, const char *path, const struct ferry_s3_features *f)
{
	json_t *o = json_pack("{s:I, s:s}", "probed_at", (json_int_t)f->probed_at, "dialect",
			      f->dialect);
	json_t *st = json_array();
	char err[256], *text;

	if (!o || !st) {
		json_decref(o);
		json_decref(st);
		return;
	}
	for (int p = 0; p < P_N; p++) {
		json_object_set_new(o, keys[p], json_boolean(prop_ok(f, p)));
		json_array_append_new(st, json_integer(f->status[p]));
	}
	json_object_set_new(o, "status", st);
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	/* no fsync: a lost cache only costs the next run a probe; `ferry check` may come
	 * before any run made state_dir */
	if (text && mkdir(dir, 0755) != 0 && errno != EEXIST)
		ferry_logf(FERRY_DEBUG, "s3", "cannot make the probe cache's directory",
			   "dir=%s", dir);
	if (text)
		ferry_file_replace(path, text, strlen(text), 0666, 0, err, sizeof(err));
	free(text);
}

bool ferry_s3_probe_peek(struct ferry_s3 *s3, const char *dir, long max_age_s,
			 struct ferry_s3_features *out)
{
	char path[4096], why[8];

	return cache_path(s3, dir, path, sizeof(path)) == 0 &&
	       cache_read(s3, path, max_age_s, out) &&
	       !ferry_s3_features_unsafe(s3, out, why, sizeof(why));
}

int ferry_s3_probe_cached(struct ferry_s3 *s3, const char *dir, long max_age_s,
			  struct ferry_s3_features *out, struct ferry_s3_res *res)
{
	char path[4096], nonce[17], prefix[64], why[8];
	bool have_path = cache_path(s3, dir, path, sizeof(path)) == 0;
	int rc;

	if (have_path && max_age_s > 0 && cache_read(s3, path, max_age_s, out)) {
		struct ferry_s3_res local;

		s3_res_begin(res, &local);
		return FERRY_S3_OK;
	}
	/* a scratch prefix of our own, so concurrent runs never probe each other's keys */
	random_hex(nonce, 8);
	snprintf(prefix, sizeof(prefix), ".ferry-probe/%s/", nonce);
	rc = ferry_s3_probe(s3, prefix, out, res);
	if (rc == FERRY_S3_OK && have_path && !ferry_s3_features_unsafe(s3, out, why, sizeof(why)))
		cache_write(dir, path, out);
	return rc;
}
