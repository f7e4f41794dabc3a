/* s3_mpu.c: the S3 client's multipart uploads: create, parts (from memory, an fd, or a
 * server-side copy), complete and abort. */
#include "ferry_s3.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ferry_log.h"
#include "s3_internal.h"

int ferry_s3_mpu_create(struct ferry_s3 *s3, const char *key, char **upload_id,
			struct ferry_s3_res *res)
{
	static const struct sigv4_kv q[] = { { "uploads", "" } };
	struct ferry_s3_res local;
	struct ferry_buf body = { 0 };
	struct s3_req rq;
	char id[1024];
	int rc;

	res = s3_res_begin(res, &local);
	*upload_id = NULL;
	s3_req_init(&rq, "POST", "CREATE-MULTIPART", key);
	rq.query = q;
	rq.n_query = 1;
	rq.keep_max = S3_ERR_BODY_MAX;
	/* resending a create at worst leaves an idle upload behind, which abort/lifecycle clean */
	rc = s3_do(s3, &rq, res, &body);
	if (rc != FERRY_S3_OK)
		return rc;
	if (s3xml_field(body.data ? body.data : "", body.len,
			"InitiateMultipartUploadResult/UploadId", id, sizeof(id)) != 0 || !id[0]) {
		s3_req_msg(s3, &rq, res, "no UploadId in the response");
		rc = FERRY_S3_ERROR;
	} else {
		*upload_id = strdup(id);
		if (!*upload_id)
			rc = FERRY_S3_ERROR;
	}
	ferry_buf_release(&body);
	return rc;
}

/* The query naming part of upload_id, in q (pn holds the number's text). */
static void part_query(struct s3_req *rq, struct sigv4_kv q[2], char pn[16], int part,
		       const char *upload_id)
{
	snprintf(pn, 16, "%d", part);
	q[0] = (struct sigv4_kv){ "partNumber", pn };
	q[1] = (struct sigv4_kv){ "uploadId", upload_id };
	rq->query = q;
	rq->n_query = 2;
}

static int part_common(struct ferry_s3 *s3, struct s3_req *rq, const char *upload_id, int part,
		       char *etag_out, struct ferry_s3_res *res)
{
	struct sigv4_kv q[2];
	char pn[16];
	int rc;

	part_query(rq, q, pn, part, upload_id);
	if (s3_req_md5(s3, rq, res) != 0)
		return FERRY_S3_ERROR;
	rc = s3_do(s3, rq, res, NULL);
	if (rc == FERRY_S3_OK) {
		if (!res->content_etag[0]) {
			s3_req_msg(s3, rq, res, "no ETag for part %d", part);
			return FERRY_S3_ERROR;
		}
		rc = s3_req_md5_check(s3, rq, res);
		snprintf(etag_out, 80, "%s", res->content_etag);
	}
	return rc;
}

int ferry_s3_mpu_part(struct ferry_s3 *s3, const char *key, const char *upload_id, int part,
		      const void *data, size_t len, char *etag_out, struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct s3_req rq;

	res = s3_req_begin(&rq, "PUT", "UPLOAD-PART", key, res, &local);
	s3_req_body(&rq, data, len);
	return part_common(s3, &rq, upload_id, part, etag_out, res);
}

int ferry_s3_mpu_part_fd(struct ferry_s3 *s3, const char *key, const char *upload_id,
			 int part, int fd, off_t off, uint64_t len, char *etag_out,
			 struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct s3_req rq;

	res = s3_req_begin(&rq, "PUT", "UPLOAD-PART", key, res, &local);
	s3_req_body_fd(&rq, fd, off, len);
	return part_common(s3, &rq, upload_id, part, etag_out, res);
}

int ferry_s3_mpu_part_copy(struct ferry_s3 *s3, const char *key, const char *upload_id,
			   int part, const char *src_key, const char *src_if_match,
			   uint64_t off, uint64_t len, char *etag_out, struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct sigv4_kv q[2];
	struct ferry_buf body = { 0 };
	struct s3_req rq;
	char range[64], pn[16], etag[80];
	char *src;
	int rc;

	res = s3_req_begin(&rq, "PUT", "UPLOAD-PART-COPY", key, res, &local);
	if (!len) {
		s3_req_msg(s3, &rq, res, "empty copy range for part %d", part);
		return FERRY_S3_ERROR;
	}
	src = s3_copy_source(s3, src_key);
	if (!src) {
		s3_req_msg(s3, &rq, res, "out of memory");
		return FERRY_S3_ERROR;
	}
	snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
	s3_req_hdr(&rq, "x-amz-copy-source", src);
	s3_req_hdr(&rq, "x-amz-copy-source-range", range);
	s3_req_hdr(&rq, s3_copy_source_pin_hdr(s3), src_if_match);
	part_query(&rq, q, pn, part, upload_id);
	rq.keep_max = S3_ERR_BODY_MAX;
	rc = s3_do(s3, &rq, res, &body);
	if (rc == FERRY_S3_OK)
		rc = s3_check_200_error(s3, &rq, &body, res);
	if (rc == FERRY_S3_OK) {
		if (s3xml_field(body.data ? body.data : "", body.len, "CopyPartResult/ETag",
				etag, sizeof(etag)) != 0) {
			s3_req_msg(s3, &rq, res,
				   "no ETag in the UploadPartCopy response for part %d", part);
			rc = FERRY_S3_ERROR;
		} else {
			snprintf(etag_out, 80, "%s", etag);
			s3_res_content_etag(s3, res, etag);
			S3_STAT_ADD(s3, bytes_copied, len);
		}
	}
	ferry_buf_release(&body);
	free(src);
	return rc;
}

/* The ETag S3 gives a completed multipart object: MD5 of the parts' binary MD5s, "-N".
 * Lets us recognise our own completion after an ambiguous outcome. */
static bool mpu_expected_etag(char *const *etags, int n, char out[80])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char dig[16], bin[16];
	unsigned int dlen = 0;
	bool ok = md && EVP_DigestInit_ex(md, EVP_md5(), NULL) == 1;
	int i, j;

	for (i = 0; ok && i < n; i++) {
		const char *e = etags[i];

		if (*e == '"')
			e++;
		for (j = 0; j < 16 && ok; j++) {
			unsigned int byte;

			if (sscanf(e + 2 * j, "%2x", &byte) != 1)
				ok = false;
			bin[j] = (unsigned char)byte;
		}
		if (ok && e[32] != '"' && e[32] != '\0')
			ok = false;
		if (ok)
			EVP_DigestUpdate(md, bin, 16);
	}
	if (ok) {
		EVP_DigestFinal_ex(md, dig, &dlen);
		out[0] = '"';
		for (j = 0; j < 16; j++)
			sprintf(out + 1 + 2 * j, "%02x", dig[j]);
		snprintf(out + 33, 80 - 33, "-%d\"", n);
	}
	EVP_MD_CTX_free(md);
	return ok;
}

/* A completion's ETag is known beforehand (mpu_expected_etag): ours when the key has it. */
static enum s3_verdict verify_complete(struct ferry_s3 *s3, const struct s3_req *rq,
				       void *arg, struct ferry_s3_res *res)
{
	const char *want = arg;
	struct ferry_s3_res r;
	enum s3_verdict v = s3_verify_etag(s3, rq->key, want[0] ? want : NULL, res, &r);

	if (v == S3_V_OURS)
		res->size = r.size;
	return v;
}

int ferry_s3_mpu_complete(struct ferry_s3 *s3, const char *key, const char *upload_id,
			  char *const *part_etags, int nparts, const struct ferry_s3_cond *cond,
			  struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct sigv4_kv q[1];
	struct ferry_buf xml = { 0 }, body = { 0 };
	struct s3_req rq;
	char want[80] = "", etag[80], line[160];
	int i, rc;

	res = s3_req_begin(&rq, "POST", "COMPLETE-MULTIPART", key, res, &local);
	rc = s3_buf_append(&xml, "<CompleteMultipartUpload>", 25, S3_XML_BODY_MAX);
	for (i = 0; rc == 0 && i < nparts; i++) {
		int n = snprintf(line, sizeof(line),
				 "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
				 i + 1, part_etags[i]);

		rc = s3_buf_append(&xml, line, (size_t)n, S3_XML_BODY_MAX);
	}
	if (rc == 0)
		rc = s3_buf_append(&xml, "</CompleteMultipartUpload>", 26, S3_XML_BODY_MAX);
	if (rc != 0) {
		ferry_buf_release(&xml);
		s3_req_msg(s3, &rq, res, "out of memory");
		return FERRY_S3_ERROR;
	}
	q[0] = (struct sigv4_kv){ "uploadId", upload_id };
	rq.query = q;
	rq.n_query = 1;
	s3_req_body(&rq, xml.data, xml.len);
	rq.keep_max = S3_ERR_BODY_MAX;
	s3_req_hdr(&rq, "content-type", "application/xml");
	s3_req_cond(s3, &rq, cond);
	if (!mpu_expected_etag(part_etags, nparts, want))
		want[0] = '\0';
	/* Completing is never resent blindly, conditional or not: a second complete of a
	 * finished upload fails (NoSuchUpload), and the read-back tells which it was. */
	rc = s3_do_cond(s3, &rq, res, verify_complete, want, &body);
	if (rc == FERRY_S3_OK && body.len)
		rc = s3_check_200_error(s3, &rq, &body, res);
	if (rc == FERRY_S3_OK && body.len &&
	    s3xml_field(body.data, body.len, "*/ETag", etag, sizeof(etag)) == 0)
		s3_res_content_etag(s3, res, etag);
	/* the parts' MD5s (uploaded: checked against Content-MD5; copied: the store's) make
	 * the object's ETag: when the store gives that ETag, the object is the parts; another
	 * ETag proves nothing (the object is committed: the caller reads back to know) */
	res->verified = rc == FERRY_S3_OK && want[0] && strcmp(res->content_etag, want) == 0;
	if (rc == FERRY_S3_OK && !res->verified)
		ferry_logf(FERRY_INFO, "s3", "the completed object's ETag is not the one its parts make",
			   "key='%s' etag=%s expected=%s parts=%d", key, res->content_etag,
			   want[0] ? want : "-", nparts);
	ferry_buf_release(&body);
	ferry_buf_release(&xml);
	return rc;
}

int ferry_s3_mpu_abort(struct ferry_s3 *s3, const char *key, const char *upload_id,
		       struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct sigv4_kv q[1];
	struct s3_req rq;
	int rc;

	res = s3_req_begin(&rq, "DELETE", "ABORT-MULTIPART", key, res, &local);
	q[0] = (struct sigv4_kv){ "uploadId", upload_id };
	rq.query = q;
	rq.n_query = 1;
	rc = s3_do(s3, &rq, res, NULL);
	/* already gone (an earlier attempt of ours, or completed) is what we wanted */
	if (rc == FERRY_S3_NOTFOUND && res->attempts > 1) {
		res->msg[0] = '\0';
		rc = FERRY_S3_OK;
	}
	return rc;
}

