/* s3_ops.c: the S3 client's object operations: reads, writes, deletes, server-side copy,
 * listing. Multipart uploads are in s3_mpu.c, the endpoint probe in s3_probe.c. */
#include "ferry_s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3_internal.h"

/* ---------------------------------------------------------------- reads */

int ferry_s3_head(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		  struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct s3_req rq;

	res = s3_req_begin(&rq, "HEAD", "HEAD", key, res, &local);
	s3_req_cond(s3, &rq, cond);
	return s3_do(s3, &rq, res, NULL);
}

int ferry_s3_get(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		 uint64_t off, uint64_t len, ferry_s3_sink sink, void *arg,
		 struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct s3_req rq;

	res = s3_req_begin(&rq, "GET", "GET", key, res, &local);
	if (cond) {
		rq.if_match = cond->if_match;   /* spelled per dialect, kept on resumes */
		s3_req_hdr(&rq, "if-none-match", cond->if_none_match);
	}
	rq.ranged = true;
	rq.range_off = off;
	rq.range_len = len;
	rq.sink = sink;
	rq.sink_arg = arg;
	return s3_do(s3, &rq, res, NULL);
}

struct buf_sink {
	struct ferry_buf *b;                /* the caller's buffer */
	uint64_t max;                       /* the most it may hold */
};

static int buf_sink(void *arg, const void *data, size_t len)
{
	struct buf_sink *bs = arg;

	return s3_buf_append(bs->b, data, len, (size_t)bs->max);
}

int ferry_s3_get_buf(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		     uint64_t off, uint64_t len, struct ferry_buf *out, struct ferry_s3_res *res)
{
	struct buf_sink bs = { out, len ? len : (uint64_t)SIZE_MAX / 2 };
	int rc;

	memset(out, 0, sizeof(*out));
	rc = ferry_s3_get(s3, key, cond, off, len, buf_sink, &bs, res);
	if (rc == FERRY_S3_OK && !out->data) {
		out->data = calloc(1, 1);
		out->cap = out->data ? 1 : 0;
		if (!out->data)
			rc = FERRY_S3_ERROR;
	}
	if (rc != FERRY_S3_OK)
		ferry_buf_release(out);
	return rc;
}

struct into_sink {
	char *dst;                          /* the caller's memory */
	size_t cap;                         /* its size: the range asked for */
	size_t got;                         /* bytes written to it */
};

static int into_sink(void *arg, const void *data, size_t len)
{
	struct into_sink *is = arg;

	if (len > is->cap - is->got)
		return -1;                      /* the server sent more than the range */
	memcpy(is->dst + is->got, data, len);
	is->got += len;
	return 0;
}

int ferry_s3_get_into(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		      uint64_t off, size_t len, void *dst, size_t *got,
		      struct ferry_s3_res *res)
{
	struct into_sink is = { dst, len, 0 };
	int rc;

	*got = 0;
	if (!len) {
		struct ferry_s3_res local;

		/* nothing to read: still answer whether the object (version) is there */
		if (!res)
			res = &local;
		return ferry_s3_head(s3, key, cond, res);
	}
	rc = ferry_s3_get(s3, key, cond, off, len, into_sink, &is, res);
	*got = is.got;
	/* a range starting at or past the end reads as zero bytes */
	if (rc == FERRY_S3_RANGE) {
		*got = 0;
		rc = FERRY_S3_OK;
	}
	return rc;
}

/* ---------------------------------------------------------------- writes */

/* Compares the stored object with our body while it streams in. */
struct cmp_sink {
	const struct s3_req *rq;            /* our body */
	uint64_t pos;                       /* bytes compared so far */
	bool differs;                       /* the stored object is not ours */
	char chunk[64 * 1024];              /* our bytes read back from rq->fd */
};

static int cmp_sink(void *arg, const void *data, size_t len)
{
	struct cmp_sink *c = arg;
	const struct s3_req *rq = c->rq;
	const char *d = data;

	while (len) {
		size_t n = len < sizeof(c->chunk) ? len : sizeof(c->chunk);
		const char *ours;

		if (c->pos + n > rq->body_len) {
			c->differs = true;
			return -1;
		}
		if (rq->fd < 0) {
			ours = rq->body + c->pos;
		} else {
			ssize_t r = pread(rq->fd, c->chunk, n, rq->fd_off + (off_t)c->pos);

			if (r != (ssize_t)n)
				return -1;      /* cannot tell: stays S3_V_UNKNOWN */
			ours = c->chunk;
		}
		if (memcmp(ours, d, n) != 0) {
			c->differs = true;
			return -1;
		}
		c->pos += n;
		d += n;
		len -= n;
	}
	return 0;
}

/* After an ambiguous PUT: is the stored object byte for byte ours? */
static enum s3_verdict verify_put(struct ferry_s3 *s3, const struct s3_req *put, void *arg,
				  struct ferry_s3_res *out)
{
	struct cmp_sink *c = calloc(1, sizeof(*c));
	struct ferry_s3_res r;
	enum s3_verdict v = S3_V_UNKNOWN;
	int rc;

	(void)arg;
	if (!c)
		return S3_V_UNKNOWN;
	c->rq = put;
	rc = ferry_s3_get(s3, put->key, NULL, 0, 0, cmp_sink, c, &r);
	if (rc == FERRY_S3_NOTFOUND)
		v = S3_V_RESEND;
	else if (c->differs || (rc == FERRY_S3_OK && c->pos != put->body_len))
		v = S3_V_RESEND;               /* not ours: the server re-judges the condition */
	else if (rc == FERRY_S3_OK) {
		v = S3_V_OURS;
		s3_scopy(out->etag, sizeof(out->etag), r.etag);
		s3_scopy(out->content_etag, sizeof(out->content_etag), r.content_etag);
		out->last_modified = r.last_modified;
		out->date = r.date;
		out->size = r.size;
	}
	out->attempts += r.attempts;
	free(c);
	return v;
}

static int put_common(struct ferry_s3 *s3, struct s3_req *rq, const struct ferry_s3_cond *cond,
		      struct ferry_s3_res *res)
{
	int rc;

	if (s3_req_md5(s3, rq, res) != 0)
		return FERRY_S3_ERROR;
	s3_req_cond(s3, rq, cond);
	if (!s3_is_conditional(cond))
		rc = s3_do(s3, rq, res, NULL);
	else
		rc = s3_do_cond(s3, rq, res, verify_put, NULL, NULL);
	return rc == FERRY_S3_OK ? s3_req_md5_check(s3, rq, res) : rc;
}

int ferry_s3_put(struct ferry_s3 *s3, const char *key, const void *data, size_t len,
		 const struct ferry_s3_cond *cond, struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct s3_req rq;

	res = s3_req_begin(&rq, "PUT", "PUT", key, res, &local);
	s3_req_body(&rq, data, len);
	return put_common(s3, &rq, cond, res);
}

int ferry_s3_put_fd(struct ferry_s3 *s3, const char *key, int fd, off_t off, uint64_t len,
		    const struct ferry_s3_cond *cond, struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct s3_req rq;

	res = s3_req_begin(&rq, "PUT", "PUT", key, res, &local);
	s3_req_body_fd(&rq, fd, off, len);
	return put_common(s3, &rq, cond, res);
}

/* After an ambiguous conditional DELETE: gone is done; the same ETag means it never
 * happened; another ETag means someone else's object is there now. */
static enum s3_verdict verify_delete(struct ferry_s3 *s3, const struct s3_req *rq, void *arg,
				     struct ferry_s3_res *res)
{
	const char *if_match = arg;
	struct ferry_s3_res r;
	int rc = ferry_s3_head(s3, rq->key, NULL, &r);

	res->attempts += r.attempts;
	if (rc == FERRY_S3_NOTFOUND)
		return S3_V_OURS;
	if (rc != FERRY_S3_OK)
		return S3_V_UNKNOWN;
	return !strcmp(r.etag, if_match) ? S3_V_RESEND : S3_V_PRECOND;
}

int ferry_s3_create_bucket(struct ferry_s3 *s3, bool *existed, struct ferry_s3_res *res)
{
	const char *region = s3->conf.region ? s3->conf.region : "us-east-1";
	struct ferry_s3_res local;
	struct s3_req rq;
	char body[256];
	int rc;

	*existed = false;
	/* us-east-1 answers a second create of one's own bucket with 200: ask first */
	res = s3_req_begin(&rq, "HEAD", "HEAD BUCKET", NULL, res, &local);
	rq.idempotent = true;
	rc = s3_do(s3, &rq, res, NULL);
	if (rc == FERRY_S3_OK) {
		*existed = true;
		return FERRY_S3_OK;
	}
	res = s3_req_begin(&rq, "PUT", "CREATE BUCKET", NULL, res, &local);
	if (strcmp(region, "us-east-1") != 0 && strcmp(region, "auto") != 0) {
		snprintf(body, sizeof(body), "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws."
			 "com/doc/2006-03-01/\"><LocationConstraint>%s</LocationConstraint>"
			 "</CreateBucketConfiguration>", region);
		rq.body = body;
		rq.body_len = strlen(body);
	}
	rq.idempotent = true;
	rc = s3_do(s3, &rq, res, NULL);
	if (rc != FERRY_S3_OK && strcmp(res->code, "BucketAlreadyOwnedByYou") == 0) {
		*existed = true;
		res->msg[0] = '\0';
		return FERRY_S3_OK;
	}
	if (rc != FERRY_S3_OK && strcmp(res->code, "BucketAlreadyExists") == 0) {
		char was[sizeof(res->msg)];

		s3_scopy(was, sizeof(was), res->msg);
		if (snprintf(res->msg, sizeof(res->msg), "bucket '%s' exists and belongs to someone "
			     "else (bucket names are global): %.300s", s3->conf.bucket, was) < 0)
			res->msg[0] = '\0';
		return FERRY_S3_CONFLICT;
	}
	return rc;
}

int ferry_s3_delete(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		    struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct s3_req rq;
	int rc;

	res = s3_req_begin(&rq, "DELETE", "DELETE", key, res, &local);
	s3_req_cond(s3, &rq, cond);
	/* resent after our own first delete landed, verify_delete finds the key gone, as
	 * we wanted */
	if (cond && cond->if_match)
		return s3_do_cond(s3, &rq, res, verify_delete, (void *)cond->if_match, NULL);
	rc = s3_do(s3, &rq, res, NULL);
	if (rc == FERRY_S3_NOTFOUND && !s3_is_conditional(cond)) {
		res->msg[0] = '\0';
		rc = FERRY_S3_OK;
	}
	return rc;
}

/* ---------------------------------------------------------------- server-side copy */

/* A copy keeps the source's ETag: ours when the target has the one arg pinned. */
static enum s3_verdict verify_copy(struct ferry_s3 *s3, const struct s3_req *rq, void *arg,
				   struct ferry_s3_res *res)
{
	struct ferry_s3_res r;

	return s3_verify_etag(s3, rq->key, arg, res, &r);
}

int ferry_s3_copy(struct ferry_s3 *s3, const char *src_key, const char *src_if_match,
		  const char *dst_key, const struct ferry_s3_cond *cond,
		  struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct ferry_buf body = { 0 };
	struct s3_req rq;
	char etag[80];
	char *src;
	int rc;

	res = s3_req_begin(&rq, "PUT", "COPY", dst_key, res, &local);
	src = s3_copy_source(s3, src_key);
	if (!src) {
		s3_req_msg(s3, &rq, res, "out of memory");
		return FERRY_S3_ERROR;
	}
	s3_req_hdr(&rq, "x-amz-copy-source", src);
	s3_req_hdr(&rq, s3_copy_source_pin_hdr(s3), src_if_match);
	if (s3->dialect == FERRY_S3_DIALECT_R2 && cond) {
		/* R2 spells CopyObject's destination conditions its own way */
		s3_req_hdr(&rq, "cf-copy-destination-if-match", cond->if_match);
		s3_req_hdr(&rq, "cf-copy-destination-if-none-match", cond->if_none_match);
	} else {
		s3_req_cond(s3, &rq, cond);
	}
	rq.keep_max = S3_ERR_BODY_MAX;
	/* on S3 a copy keeps its source's ETag, which src_if_match pinned; a GCS copy gets
	 * a generation of its own, unknown beforehand */
	if (s3_is_conditional(cond))
		rc = s3_do_cond(s3, &rq, res, verify_copy,
				s3->dialect == FERRY_S3_DIALECT_GCS ? NULL : (void *)src_if_match,
				&body);
	else
		rc = s3_do(s3, &rq, res, &body);
	if (rc == FERRY_S3_OK && body.len)
		rc = s3_check_200_error(s3, &rq, &body, res);
	if (rc == FERRY_S3_OK && body.len &&
	    s3xml_field(body.data, body.len, "CopyObjectResult/ETag", etag, sizeof(etag)) == 0)
		s3_res_content_etag(s3, res, etag);
	/* a failed source condition is a 412 too; name the source so nobody hunts the target */
	if (rc == FERRY_S3_PRECONDITION && src_if_match && !s3_is_conditional(cond)) {
		size_t n = strlen(res->msg);

		snprintf(res->msg + n, sizeof(res->msg) - n, " (source '%s' if-match %s)", src_key,
			 src_if_match);
	}
	ferry_buf_release(&body);
	free(src);
	return rc;
}

/* ---------------------------------------------------------------- listing */

void ferry_s3_list_release(struct ferry_s3_list *l)
{
	size_t i;

	for (i = 0; i < l->n_entries; i++) {
		free(l->entries[i].key);
		free(l->entries[i].etag);
		free(l->entries[i].generation);
	}
	free(l->entries);
	for (i = 0; i < l->n_prefixes; i++)
		free(l->prefixes[i]);
	free(l->prefixes);
	free(l->next_token);
	memset(l, 0, sizeof(*l));
}

static int list_into(struct ferry_s3 *s3, const char *prefix, const char *delimiter,
		     const char *token, int max_keys, struct ferry_s3_list *out,
		     struct ferry_s3_res *res)
{
	struct sigv4_kv q[6];
	struct ferry_buf body = { 0 };
	struct s3_req rq;
	char mk[16];
	size_t n = 0;
	int rc;

	/* keys may hold bytes XML 1.0 cannot carry (control characters): ask for them
	 * URL-encoded; s3xml_list decodes them when the answer says it did */
	q[n++] = (struct sigv4_kv){ "encoding-type", "url" };
	q[n++] = (struct sigv4_kv){ "list-type", "2" };
	if (prefix && *prefix)
		q[n++] = (struct sigv4_kv){ "prefix", prefix };
	if (delimiter && *delimiter)
		q[n++] = (struct sigv4_kv){ "delimiter", delimiter };
	if (token)
		q[n++] = (struct sigv4_kv){ "continuation-token", token };
	if (max_keys > 0) {
		snprintf(mk, sizeof(mk), "%d", max_keys);
		q[n++] = (struct sigv4_kv){ "max-keys", mk };
	}
	s3_req_init(&rq, "GET", "LIST", NULL);
	rq.query = q;
	rq.n_query = n;
	rq.keep_max = S3_XML_BODY_MAX;
	rc = s3_do(s3, &rq, res, &body);
	if (rc != FERRY_S3_OK)
		return rc;
	size_t e0 = out->n_entries;

	if (s3xml_list(body.data ? body.data : "", body.len, out) != 0) {
		s3_req_msg(s3, &rq, res, "malformed ListObjectsV2 response (%zu bytes)", body.len);
		rc = FERRY_S3_ERROR;
	} else if (out->truncated && !out->next_token) {
		s3_req_msg(s3, &rq, res, "truncated listing without a continuation token");
		rc = FERRY_S3_ERROR;
	}
	/* on GCS the version is the generation, as everywhere else */
	for (size_t i = e0; s3->dialect == FERRY_S3_DIALECT_GCS && i < out->n_entries; i++) {
		free(out->entries[i].etag);
		out->entries[i].etag = out->entries[i].generation;
		out->entries[i].generation = NULL;
	}
	ferry_buf_release(&body);
	return rc;
}

int ferry_s3_list_page(struct ferry_s3 *s3, const char *prefix, const char *delimiter,
		       const char *token, int max_keys, struct ferry_s3_list *out,
		       struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	int rc;

	res = s3_res_begin(res, &local);
	memset(out, 0, sizeof(*out));
	rc = list_into(s3, prefix, delimiter, token, max_keys, out, res);
	if (rc != FERRY_S3_OK)
		ferry_s3_list_release(out);
	return rc;
}

int ferry_s3_list_all(struct ferry_s3 *s3, const char *prefix, const char *delimiter,
		      struct ferry_s3_list *out, struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	char *token = NULL;
	int rc, pages = 0;

	res = s3_res_begin(res, &local);
	memset(out, 0, sizeof(*out));
	do {
		rc = list_into(s3, prefix, delimiter, token, 0, out, res);
		free(token);
		token = NULL;
		if (rc != FERRY_S3_OK)
			break;
		if (out->truncated) {
			token = out->next_token;
			out->next_token = NULL;
		}
	} while (token && ++pages < 1000000);
	free(token);
	out->truncated = false;
	if (rc != FERRY_S3_OK)
		ferry_s3_list_release(out);
	return rc;
}
