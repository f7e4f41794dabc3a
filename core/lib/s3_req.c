/* s3_req.c: one S3 request: built, signed (sigv4.c), sent once with libcurl, its answer
 * read and mapped to an rc and a message; s3_retry.c decides about another attempt. */
#include "ferry_s3.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "ferry_time.h"
#include "ferry_log.h"
#include "s3_internal.h"

/* ---------------------------------------------------------------- strings and bodies */

void s3_scopy(char *dst, size_t n, const char *src)
{
	size_t len = strnlen(src, n ? n - 1 : 0);

	if (!n)
		return;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

void ferry_buf_release(struct ferry_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int s3_buf_append(struct ferry_buf *b, const void *data, size_t len, size_t max)
{
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *d;

		while (b->len + len + 1 > cap)
			cap *= 2;
		if (cap > max + 1)
			cap = max + 1;
		if (b->len + len + 1 > cap)
			return -1;
		d = realloc(b->data, cap);
		if (!d)
			return -1;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

/* ---------------------------------------------------------------- requests */

struct ferry_s3_res *s3_res_begin(struct ferry_s3_res *res, struct ferry_s3_res *local)
{
	if (!res)
		res = local;
	memset(res, 0, sizeof(*res));
	return res;
}

void s3_req_init(struct s3_req *rq, const char *method, const char *op, const char *key)
{
	memset(rq, 0, sizeof(*rq));
	rq->method = method;
	rq->op = op;
	rq->key = key;
	rq->fd = -1;
	rq->idempotent = true;
}

struct ferry_s3_res *s3_req_begin(struct s3_req *rq, const char *method, const char *op,
				  const char *key, struct ferry_s3_res *res,
				  struct ferry_s3_res *local)
{
	s3_req_init(rq, method, op, key);
	return s3_res_begin(res, local);
}

void s3_req_body(struct s3_req *rq, const void *data, size_t len)
{
	rq->body = data ? data : "";
	rq->body_len = len;
}

void s3_req_body_fd(struct s3_req *rq, int fd, off_t off, uint64_t len)
{
	rq->fd = fd;
	rq->fd_off = off;
	rq->body_len = len;
}

int s3_req_md5(struct ferry_s3 *s3, struct s3_req *rq, struct ferry_s3_res *res)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int dlen = 0;
	bool ok = md && EVP_DigestInit_ex(md, EVP_md5(), NULL) == 1;

	if (ok && rq->fd >= 0) {
		static const size_t chunk = 1u << 20;
		unsigned char *buf = malloc(chunk);
		uint64_t done = 0;

		ok = buf != NULL;
		while (ok && done < rq->body_len) {
			size_t want = rq->body_len - done < chunk ? (size_t)(rq->body_len - done) : chunk;
			ssize_t n = pread(rq->fd, buf, want, rq->fd_off + (off_t)done);

			if (n <= 0) {
				s3_req_msg(s3, rq, res, "cannot read the body to checksum it: %s",
					   n < 0 ? strerror(errno) : "file shorter than the body");
				ok = false;
				break;
			}
			EVP_DigestUpdate(md, buf, (size_t)n);
			done += (uint64_t)n;
		}
		free(buf);
	} else if (ok) {
		EVP_DigestUpdate(md, rq->body ? rq->body : "", (size_t)rq->body_len);
	}
	if (ok)
		ok = EVP_DigestFinal_ex(md, rq->md5, &dlen) == 1 && dlen == 16;
	EVP_MD_CTX_free(md);
	if (!ok) {
		if (!res->msg[0])
			s3_req_msg(s3, rq, res, "cannot compute the body's MD5");
		return -1;
	}
	EVP_EncodeBlock((unsigned char *)rq->md5_b64, rq->md5, 16);
	rq->has_md5 = true;
	s3_req_hdr(rq, "content-md5", rq->md5_b64);
	return 0;
}

int s3_req_md5_check(struct ferry_s3 *s3, const struct s3_req *rq, struct ferry_s3_res *res)
{
	char hex[33];
	const char *e = res->content_etag[0] == '"' ? res->content_etag + 1 : res->content_etag;
	int i;

	if (!rq->has_md5 || res->etag_not_md5 || strspn(e, "0123456789abcdefABCDEF") != 32 ||
	    (e[32] && e[32] != '"'))
		return FERRY_S3_OK;         /* an ETag that is no MD5: it proves nothing */
	for (i = 0; i < 16; i++)
		sprintf(hex + 2 * i, "%02x", rq->md5[i]);
	res->verified = strncasecmp(e, hex, 32) == 0;
	if (res->verified)
		return FERRY_S3_OK;
	/* a store that checks Content-MD5 refuses a damaged body (400 BadDigest); one that
	 * does not stored other bytes than ours */
	s3_req_msg(s3, rq, res, "the store's ETag %s is not the MD5 \"%s\" of the body sent: "
		   "the bytes changed on the way", res->content_etag, hex);
	return FERRY_S3_ERROR;
}

void s3_req_hdr(struct s3_req *rq, const char *name, const char *value)
{
	if (value && rq->n_hdrs < S3_MAX_HDRS)
		rq->hdrs[rq->n_hdrs++] = (struct sigv4_kv){ name, value };
}

const char *s3_version_hdr(const struct ferry_s3 *s3)
{
	return s3->dialect == FERRY_S3_DIALECT_GCS ? "x-goog-if-generation-match" : "if-match";
}

void s3_req_cond(const struct ferry_s3 *s3, struct s3_req *rq, const struct ferry_s3_cond *cond)
{
	if (!cond)
		return;
	if (s3->dialect == FERRY_S3_DIALECT_GCS) {
		/* GCS ignores If-Match / If-None-Match on writes: its generation condition
		 * (0 = no live object) is the only fence it keeps */
		if (cond->if_none_match && !strcmp(cond->if_none_match, "*"))
			s3_req_hdr(rq, "x-goog-if-generation-match", "0");
		else
			s3_req_hdr(rq, "if-none-match", cond->if_none_match);
		s3_req_hdr(rq, "x-goog-if-generation-match", cond->if_match);
		return;
	}
	s3_req_hdr(rq, "if-match", cond->if_match);
	s3_req_hdr(rq, "if-none-match", cond->if_none_match);
}

const char *s3_copy_source_pin_hdr(const struct ferry_s3 *s3)
{
	return s3->dialect == FERRY_S3_DIALECT_GCS ? "x-goog-copy-source-if-generation-match" :
	       "x-amz-copy-source-if-match";
}

void s3_res_content_etag(const struct ferry_s3 *s3, struct ferry_s3_res *res, const char *etag)
{
	s3_scopy(res->content_etag, sizeof(res->content_etag), etag);
	if (s3->dialect != FERRY_S3_DIALECT_GCS)
		s3_scopy(res->etag, sizeof(res->etag), etag);
}

bool s3_is_conditional(const struct ferry_s3_cond *cond)
{
	return cond && (cond->if_match || cond->if_none_match);
}

/* ---------------------------------------------------------------- messages and error mapping */

/* Scrub every credential from a message we are about to hand out. */
void s3_scrub(const struct ferry_s3 *s3, char *msg)
{
	const char *secrets[3] = {
		s3->conf.access_key, s3->conf.secret_key, s3->conf.session_token,
	};
	size_t i;

	for (i = 0; i < 3; i++) {
		size_t n;
		char *p;

		if (!secrets[i] || !*secrets[i])
			continue;
		n = strlen(secrets[i]);
		while ((p = strstr(msg, secrets[i]))) {
			memmove(p + 3, p + n, strlen(p + n) + 1);
			memcpy(p, "***", 3);
		}
	}
}

const char *s3_req_what(const struct s3_req *rq)
{
	return rq->key ? rq->key : "";
}

void s3_req_msg(struct ferry_s3 *s3, const struct s3_req *rq, struct ferry_s3_res *res,
		const char *fmt, ...)
{
	char tail[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tail, sizeof(tail), fmt, ap);
	va_end(ap);
	if (rq->key)
		snprintf(res->msg, sizeof(res->msg), "%s '%s': %s", rq->op, s3_req_what(rq), tail);
	else
		snprintf(res->msg, sizeof(res->msg), "%s s3://%s: %s", rq->op, s3->conf.bucket,
			 tail);
	s3_scrub(s3, res->msg);
}

static const char *status_text(long status)
{
	switch (status) {
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 409: return "Conflict";
	case 412: return "Precondition Failed";
	case 416: return "Range Not Satisfiable";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "HTTP error";
	}
}

static int rc_of_status(long status)
{
	if (status >= 200 && status < 300)
		return FERRY_S3_OK;
	switch (status) {
	case 404: return FERRY_S3_NOTFOUND;
	case 412: return FERRY_S3_PRECONDITION;
	case 409: return FERRY_S3_CONFLICT;
	case 501: return FERRY_S3_NOTIMPL;
	case 416: return FERRY_S3_RANGE;
	case 403: return FERRY_S3_DENIED;
	default: return FERRY_S3_ERROR;
	}
}

/* Worth another try: server trouble and throttling, and S3's idle-socket 400; not 501
 * (NotImplemented: asking again does not implement it). */
static bool transient_status(long status, const char *code)
{
	return (status >= 500 && status != 501) || status == 429 ||
	       (status == 400 && (!strcmp(code, "RequestTimeout") || !strcmp(code, "SlowDown")));
}

static bool transient_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_BAD_CONTENT_ENCODING:
	/* a garbled status line ("Received HTTP/0.9"): the bytes on the wire were not a
	 * response, e.g. the tail of a broken earlier one on a reused connection */
	case CURLE_UNSUPPORTED_PROTOCOL:
		return true;
	default:
		return false;
	}
}

/* CopyObject and UploadPartCopy answer 200 and may still fail (an Error body). */
int s3_check_200_error(struct ferry_s3 *s3, struct s3_req *rq, struct ferry_buf *body,
		       struct ferry_s3_res *res)
{
	char root[64] = "", message[256] = "";

	if (!body->len || s3xml_root(body->data, body->len, root, sizeof(root)) != 0)
		return FERRY_S3_OK;
	if (strcmp(root, "Error"))
		return FERRY_S3_OK;
	s3xml_error(body->data, body->len, res->code, sizeof(res->code), message,
		    sizeof(message), res->request_id, sizeof(res->request_id));
	s3_req_msg(s3, rq, res, "200 with error %s: %s%s%s%s", res->code, message,
		   res->request_id[0] ? " (request id " : "", res->request_id,
		   res->request_id[0] ? ")" : "");
	return FERRY_S3_ERROR;
}

/* ---------------------------------------------------------------- libcurl callbacks */

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	struct s3_xfer *x = arg;
	struct ferry_s3_res *res = x->res;
	size_t len = size * n, vlen;
	char name[64], value[512];
	const char *colon, *v;

	if (len >= 5 && !strncmp(line, "HTTP/", 5)) {
		const char *sp = memchr(line, ' ', len);

		/* a new response (after 100 Continue): forget the previous one's headers */
		x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		x->etag[0] = '\0';
		return len;
	}
	colon = memchr(line, ':', len);
	if (!colon || (size_t)(colon - line) >= sizeof(name))
		return len;
	memcpy(name, line, (size_t)(colon - line));
	name[colon - line] = '\0';
	v = colon + 1;
	while (v < line + len && (*v == ' ' || *v == '\t'))
		v++;
	vlen = (size_t)(line + len - v);
	while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
		vlen--;
	if (vlen >= sizeof(value))
		vlen = sizeof(value) - 1;
	memcpy(value, v, vlen);
	value[vlen] = '\0';
	if (!strcasecmp(name, "etag")) {
		s3_scopy(x->etag, sizeof(x->etag), value);
		s3_scopy(res->content_etag, sizeof(res->content_etag), value);
		if (x->s3->dialect != FERRY_S3_DIALECT_GCS)
			s3_scopy(res->etag, sizeof(res->etag), value);
	} else if (!strcasecmp(name, "x-goog-generation")) {
		if (x->s3->dialect == FERRY_S3_DIALECT_GCS)
			s3_scopy(res->etag, sizeof(res->etag), value);
	} else if (!strcasecmp(name, "content-length")) {
		if (!x->rq->ranged || x->status == 200)
			res->size = strtoull(value, NULL, 10);
	} else if (!strcasecmp(name, "content-range")) {
		const char *slash = strchr(value, '/');

		if (slash && slash[1] != '*')
			res->size = strtoull(slash + 1, NULL, 10);
	} else if (!strcasecmp(name, "last-modified")) {
		time_t t = curl_getdate(value, NULL);

		res->last_modified = t > 0 ? t : 0;
	} else if (!strcasecmp(name, "date")) {
		time_t t = curl_getdate(value, NULL);

		res->date = t > 0 ? t : 0;
	} else if ((!strcasecmp(name, "x-amz-server-side-encryption") &&
		    !strncasecmp(value, "aws:kms", 7)) ||
		   !strcasecmp(name, "x-amz-server-side-encryption-customer-algorithm")) {
		res->etag_not_md5 = true;
	} else if (!strcasecmp(name, "x-amz-request-id") ||
		   (!strcasecmp(name, "x-amzn-requestid") && !res->request_id[0])) {
		s3_scopy(res->request_id, sizeof(res->request_id), value);
	}
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct s3_xfer *x = arg;
	size_t len = size * n;
	bool ok = x->status >= 200 && x->status < 300;

	if (ok && !x->rq->sink && !x->rq->keep_max)
		return len;                     /* nobody wants the body (a GET without a sink) */
	if (ok && x->rq->sink) {
		if (x->rq->sink(x->rq->sink_arg, data, len) != 0) {
			x->sink_stop = true;
			return 0;
		}
		x->delivered += len;
		x->got_this_attempt += len;
		return len;
	}
	if (s3_buf_append(&x->body, data, len,
			  ok && x->rq->keep_max ? x->rq->keep_max : S3_ERR_BODY_MAX) != 0) {
		if (ok) {
			x->overflow = true;
			return 0;
		}
		/* an over-long error body: keep what we have, the code is in the status */
	}
	return len;
}

static size_t on_read(char *dst, size_t size, size_t n, void *arg)
{
	struct s3_xfer *x = arg;
	const struct s3_req *rq = x->rq;
	size_t want = size * n;
	uint64_t left = rq->body_len - x->up_pos;
	ssize_t got;

	if (want > left)
		want = (size_t)left;
	if (!want)
		return 0;
	if (rq->fd < 0) {
		memcpy(dst, rq->body + x->up_pos, want);
		got = (ssize_t)want;
	} else {
		do
			got = pread(rq->fd, dst, want, rq->fd_off + (off_t)x->up_pos);
		while (got < 0 && errno == EINTR);
		if (got <= 0) {
			snprintf(x->read_err, sizeof(x->read_err), "cannot read the body: %s",
				 got < 0 ? strerror(errno) : "file shrank");
			x->read_failed = true;
			return CURL_READFUNC_ABORT;
		}
	}
	x->up_pos += (uint64_t)got;
	return (size_t)got;
}

static int on_seek(void *arg, curl_off_t off, int origin)
{
	struct s3_xfer *x = arg;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > x->rq->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	x->up_pos = (uint64_t)off;
	return CURL_SEEKFUNC_OK;
}

/* How long the server may think after the whole request went out: a store computes its
 * checksums over a large PUT before answering, and a server-side copy or a multipart
 * completion takes time in proportion to the object (S3 itself trickles whitespace to keep
 * such a reply alive; moto and others say nothing until done). A 1.1 GiB PUT to moto
 * takes longer than the default 30 s low-speed window; the retries it caused never ended. */
static int64_t reply_wait_ms(const struct ferry_s3 *s3, const struct s3_req *rq)
{
	int64_t base = (int64_t)s3->conf.low_speed_time_s * 1000;
	size_t i;

	if (!strcmp(rq->op, "COMPLETE-MULTIPART"))
		return base > 600000 ? base : 600000;
	for (i = 0; i < rq->n_hdrs; i++)
		if (!strcasecmp(rq->hdrs[i].name, "x-amz-copy-source"))
			return base > 600000 ? base : 600000;
	return base + (int64_t)(rq->body_len >> 24) * 1000;      /* + 1 s per 16 MiB sent */
}

/* The stall watch (instead of curl's LOW_SPEED options, which cannot tell "the server is
 * thinking about the body we sent" from "the connection hangs"): fewer than low_speed_limit
 * bytes/s in either direction over low_speed_time fails the attempt as a timeout, except
 * while the request is fully sent and no answer has come yet, where reply_wait_ms applies.
 * curl calls this at least once a second. Also where cancellation is noticed. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct s3_xfer *x = arg;
	const struct ferry_s3_conf *c = &x->s3->conf;
	int64_t now = ferry_mono_ms(), limit_ms = (int64_t)c->low_speed_time_s * 1000;
	curl_off_t moved = dn + un;

	(void)dt;
	if (s3_cancelled(x->s3))
		return 1;
	if (!x->win_ms) {
		x->win_ms = now;
		x->win_bytes = moved;
		return 0;
	}
	if (!x->status && un >= ut && (uint64_t)un >= x->rq->body_len)
		limit_ms = reply_wait_ms(x->s3, x->rq);
	if (moved - x->win_bytes >= (curl_off_t)c->low_speed_limit * c->low_speed_time_s) {
		x->win_ms = now;                /* enough moved: a new window */
		x->win_bytes = moved;
	} else if (now - x->win_ms >= limit_ms) {
		x->stalled = true;
		x->stall_ms = limit_ms;
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- building and signing */

static char *object_path(struct ferry_s3 *s3, const char *key)
{
	char *enc = sigv4_uri_encode(key ? key : "", true), *path = NULL;

	if (!enc)
		return NULL;
	if (s3->path_style) {
		if (asprintf(&path, "%s/%s%s%s", s3->base_path, s3->conf.bucket, key ? "/" : "",
			     enc) < 0)
			path = NULL;
	} else if (asprintf(&path, "%s/%s", s3->base_path, enc) < 0) {
		path = NULL;
	}
	free(enc);
	return path;
}

char *s3_copy_source(struct ferry_s3 *s3, const char *src_key)
{
	char *enc = sigv4_uri_encode(src_key, true), *out = NULL;

	if (enc && asprintf(&out, "/%s/%s", s3->conf.bucket, enc) < 0)
		out = NULL;
	free(enc);
	return out;
}

/* The body's SHA-256 (hex) for x-amz-content-sha256. */
static int payload_hash(struct ferry_s3 *s3, const struct s3_req *rq, char hex[65], char *why,
			size_t wl)
{
	if ((s3->https || s3->loopback) && rq->body_len) {
		/* TLS protects the body in transit, and a loopback body never leaves the
		 * machine: skip a second pass over big files */
		snprintf(hex, 65, "UNSIGNED-PAYLOAD");
		return 0;
	}
	if (rq->fd < 0) {
		sigv4_sha256_hex(rq->body ? rq->body : "", (size_t)rq->body_len, hex);
		return 0;
	}
	return sigv4_sha256_fd_hex(rq->fd, rq->fd_off, rq->body_len, hex, why, wl);
}

static struct curl_slist *add_hdr(struct curl_slist *l, bool *oom, const char *name,
				  const char *value)
{
	char *line;
	struct curl_slist *n;

	if (*oom)
		return l;
	if (asprintf(&line, "%s: %s", name, value) < 0) {
		*oom = true;
		return l;
	}
	n = curl_slist_append(l, line);
	free(line);
	if (!n) {
		*oom = true;
		return l;
	}
	return n;
}

/* A request ready for the wire: its canonical parts, signed headers and libcurl's list. */
struct wire {
	char amz_date[17];                  /* x-amz-date */
	char hash[65];                      /* x-amz-content-sha256 */
	char range[64];                     /* Range, when one is sent */
	char *path;                         /* canonical URI */
	char *query;                        /* canonical query */
	char *url;                          /* what libcurl opens */
	struct sigv4_kv sh[S3_MAX_HDRS + 6]; /* signed: up to 6 of ours, the request's */
	size_t n_sh;                        /* entries in sh */
	struct sigv4_out sig;               /* the signature */
	struct curl_slist *hl;              /* the headers as libcurl sends them */
};

static void wire_release(struct wire *w)
{
	curl_slist_free_all(w->hl);
	sigv4_out_release(&w->sig);
	free(w->url);
	free(w->query);
	free(w->path);
}

static int out_of_memory(struct s3_xfer *x)
{
	s3_req_msg(x->s3, x->rq, x->res, "out of memory");
	return FERRY_S3_ERROR;
}

/* The headers to sign: ours, the range still wanted, the version pin, the request's own. */
static void wire_headers(struct s3_xfer *x, struct wire *w)
{
	struct ferry_s3 *s3 = x->s3;
	const struct s3_req *rq = x->rq;
	const char *token = s3->conf.session_token, *pin = rq->if_match;
	size_t i;

	w->sh[w->n_sh++] = (struct sigv4_kv){ "host", s3->host };
	w->sh[w->n_sh++] = (struct sigv4_kv){ "x-amz-date", w->amz_date };
	w->sh[w->n_sh++] = (struct sigv4_kv){ "x-amz-content-sha256", w->hash };
	if (token)
		w->sh[w->n_sh++] = (struct sigv4_kv){ "x-amz-security-token", token };
	if (rq->ranged && (rq->range_off + x->delivered || rq->range_len)) {
		uint64_t from = rq->range_off + x->delivered;

		if (rq->range_len)
			snprintf(w->range, sizeof(w->range), "bytes=%" PRIu64 "-%" PRIu64, from,
				 rq->range_off + rq->range_len - 1);
		else
			snprintf(w->range, sizeof(w->range), "bytes=%" PRIu64 "-", from);
		w->sh[w->n_sh++] = (struct sigv4_kv){ "range", w->range };
	}
	/* a resumed GET is pinned to the version it started on: never a torn mix */
	if (rq->sink && x->delivered && !pin && x->res->etag[0])
		pin = x->res->etag;
	if (pin)
		w->sh[w->n_sh++] = (struct sigv4_kv){ s3_version_hdr(s3), pin };
	for (i = 0; i < rq->n_hdrs && w->n_sh < sizeof(w->sh) / sizeof(w->sh[0]); i++)
		w->sh[w->n_sh++] = rq->hdrs[i];
}

/* Sign, then the list libcurl sends: the signed headers and Authorization. 0, or -1 when
 * out of memory. */
static int wire_sign(struct ferry_s3 *s3, const struct s3_req *rq, struct wire *w)
{
	struct sigv4_req sr = {
		.method = rq->method, .path = w->path, .query = w->query, .hdrs = w->sh,
		.n_hdrs = w->n_sh, .payload_hash = w->hash, .amz_date = w->amz_date,
		.region = s3->sign_region, .service = "s3", .access_key = s3->conf.access_key,
		.secret_key = s3->conf.secret_key,
	};
	struct curl_slist *n;
	bool oom = false;
	size_t i;

	if (sigv4_sign(&sr, &w->sig) != 0)
		return -1;
	for (i = 0; i < w->n_sh; i++)
		w->hl = add_hdr(w->hl, &oom, w->sh[i].name, w->sh[i].value);
	w->hl = add_hdr(w->hl, &oom, "Authorization", w->sig.authorization);
	if (oom)
		return -1;
	n = curl_slist_append(w->hl, "Expect:");        /* no 100-continue round trip */
	if (!n)
		return -1;
	w->hl = n;
	return 0;
}

/* Everything of this attempt but the body: FERRY_S3_OK, or an rc with res->msg set. */
static int wire_build(struct s3_xfer *x, struct wire *w)
{
	struct ferry_s3 *s3 = x->s3;
	const struct s3_req *rq = x->rq;
	time_t now = (time_t)(ferry_now_ms() / 1000);
	char why[256] = "";
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(w->amz_date, sizeof(w->amz_date), "%Y%m%dT%H%M%SZ", &tm);
	if (payload_hash(s3, rq, w->hash, why, sizeof(why)) != 0) {
		s3_req_msg(s3, rq, x->res, "%s", why);
		return FERRY_S3_ERROR;
	}
	w->path = object_path(s3, rq->key);
	w->query = sigv4_query(rq->query, rq->n_query);
	if (!w->path || !w->query)
		return out_of_memory(x);
	if (asprintf(&w->url, "%s://%s%s%s%s", s3->scheme, s3->host, w->path,
		     *w->query ? "?" : "", w->query) < 0) {
		w->url = NULL;
		return out_of_memory(x);
	}
	wire_headers(x, w);
	if (wire_sign(s3, rq, w) != 0)
		return out_of_memory(x);
	return FERRY_S3_OK;
}

/* ---------------------------------------------------------------- sending */

static void count_request(struct ferry_s3 *s3, const struct s3_req *rq)
{
	size_t i;

	S3_STAT_ADD(s3, requests, 1);
	for (i = 0; i < rq->n_hdrs; i++) {
		if (!strcasecmp(rq->hdrs[i].name, "x-amz-copy-source")) {
			S3_STAT_ADD(s3, copies, 1);
			return;
		}
	}
	if (!strcmp(rq->method, "GET") && rq->key)
		S3_STAT_ADD(s3, gets, 1);
	else if (!strcmp(rq->method, "GET"))
		S3_STAT_ADD(s3, lists, 1);
	else if (!strcmp(rq->method, "PUT"))
		S3_STAT_ADD(s3, puts, 1);
	else if (!strcmp(rq->method, "HEAD"))
		S3_STAT_ADD(s3, heads, 1);
	else if (!strcmp(rq->method, "DELETE"))
		S3_STAT_ADD(s3, deletes, 1);
	else if (!strcmp(rq->method, "POST"))
		S3_STAT_ADD(s3, posts, 1);
}

/* Drive one transfer through a private multi handle so that cancellation is seen within
 * 100 ms even while the server is silent (libcurl calls the progress callback only about
 * once a second then). Connections live in the share, so they outlive the multi. */
static CURLcode perform_transfer(struct ferry_s3 *s3, CURL *h)
{
	CURLM *m = curl_multi_init();
	CURLcode cc = CURLE_OK;
	CURLMsg *msg;
	int running = 1, left;

	if (!m)
		return curl_easy_perform(h);
	if (curl_multi_add_handle(m, h) != CURLM_OK) {
		curl_multi_cleanup(m);
		return curl_easy_perform(h);
	}
	for (;;) {
		if (curl_multi_perform(m, &running) != CURLM_OK) {
			cc = CURLE_OUT_OF_MEMORY;
			break;
		}
		if (!running)
			break;
		if (s3_cancelled(s3)) {
			cc = CURLE_ABORTED_BY_CALLBACK;
			break;
		}
		if (curl_multi_poll(m, NULL, 0, 100, NULL) != CURLM_OK) {
			cc = CURLE_OUT_OF_MEMORY;
			break;
		}
	}
	while ((msg = curl_multi_info_read(m, &left)))
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == h)
			cc = msg->data.result;
	curl_multi_remove_handle(m, h);
	curl_multi_cleanup(m);
	return cc;
}


/* The easy handle for this attempt: the wire's URL and headers, our limits, callbacks on x. */
static void handle_setup(struct s3_xfer *x, CURL *h, const struct wire *w)
{
	const struct ferry_s3 *s3 = x->s3;
	const struct s3_req *rq = x->rq;

	curl_easy_setopt(h, CURLOPT_URL, w->url);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);   /* keys are opaque: no dot-segment folding */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, w->hl);
	curl_easy_setopt(h, CURLOPT_SHARE, s3->share);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	/* libcurl silently resends a request once when a reused connection dies before any
	 * answer; for a conditional write that is exactly the blind retry we must not do
	 * (it turns our own landed write into a 412). A fresh connection disables that. */
	if (!rq->idempotent)
		curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s3->conf.connect_timeout_ms);
	if (s3->conf.request_timeout_ms > 0)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, s3->conf.request_timeout_ms);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, s3->conf.verify_tls ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, s3->conf.verify_tls ? 2L : 0L);
	if (s3->conf.ca_bundle)
		curl_easy_setopt(h, CURLOPT_CAINFO, s3->conf.ca_bundle);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
	if (!strcmp(rq->method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(rq->method, "PUT") || !strcmp(rq->method, "POST")) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, x);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
		if (!strcmp(rq->method, "POST"))
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST");
	} else if (strcmp(rq->method, "GET")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
	}
}

/* Send on h, counting the request, the attempt and the bytes both ways. */
static CURLcode send_attempt(struct s3_xfer *x, CURL *h)
{
	curl_off_t down = 0;
	CURLcode cc;

	count_request(x->s3, x->rq);
	x->res->attempts++;
	cc = perform_transfer(x->s3, h);
	S3_STAT_ADD(x->s3, bytes_up, x->up_pos);
	curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &down);
	S3_STAT_ADD(x->s3, bytes_down, down > 0 ? down : 0);
	x->res->status = x->status;
	return cc;
}

/* An HTTP error answer, told by S3's XML error body when there is one. */
static int error_answer(struct s3_xfer *x, bool *transient)
{
	struct ferry_s3_res *res = x->res;
	char message[256] = "";
	char reqid[80] = "";

	if (x->body.len &&
	    s3xml_error(x->body.data, x->body.len, res->code, sizeof(res->code),
			message, sizeof(message), reqid, sizeof(reqid)) == 0) {
		if (reqid[0])
			s3_scopy(res->request_id, sizeof(res->request_id), reqid);
	} else {
		res->code[0] = '\0';
	}
	if (!res->code[0])
		s3_scopy(res->code, sizeof(res->code), x->status == 404 ? "NotFound" :
			 x->status == 412 ? "PreconditionFailed" : "");
	s3_req_msg(x->s3, x->rq, res, "%ld %s%s%s%s%s%s", x->status,
		   res->code[0] ? res->code : status_text(x->status),
		   message[0] ? ": " : "", message,
		   res->request_id[0] ? " (request id " : "", res->request_id,
		   res->request_id[0] ? ")" : "");
	if (strcmp(res->code, "NoSuchBucket") == 0) {
		char was[sizeof(res->msg)];

		/* the request is fine, the setting is wrong: say which */
		s3_scopy(was, sizeof(was), res->msg);
		if (snprintf(res->msg, sizeof(res->msg), "bucket '%s' does not exist (the [s3] "
			     "bucket setting or BUCKET_NAME names it; `ferry s3 mb` creates it): "
			     "%.300s", x->s3->conf.bucket, was) < 0)
			res->msg[0] = '\0';
		s3_scrub(x->s3, res->msg);
	}
	*transient = transient_status(x->status, res->code);
	return rc_of_status(x->status);
}

/* What a finished attempt amounts to: an rc, with res->msg set on failure. */
static int attempt_outcome(struct s3_xfer *x, CURLcode cc, bool *transient)
{
	struct ferry_s3 *s3 = x->s3;
	const struct s3_req *rq = x->rq;
	struct ferry_s3_res *res = x->res;

	if (x->read_failed) {
		s3_req_msg(s3, rq, res, "%s", x->read_err);
		return FERRY_S3_ERROR;
	}
	if (cc == CURLE_ABORTED_BY_CALLBACK && x->stalled) {
		*transient = true;
		s3_req_msg(s3, rq, res, "no progress for %" PRId64 " s (low_speed_time)",
			   x->stall_ms / 1000);
		return FERRY_S3_ERROR;
	}
	if (cc == CURLE_ABORTED_BY_CALLBACK || (cc != CURLE_OK && s3_cancelled(s3))) {
		s3_req_msg(s3, rq, res, "cancelled");
		return FERRY_S3_CANCELLED;
	}
	if (cc == CURLE_WRITE_ERROR && x->sink_stop) {
		s3_req_msg(s3, rq, res, "stopped by the receiver after %" PRIu64 " bytes",
			   x->delivered);
		return FERRY_S3_ERROR;
	}
	if (cc == CURLE_WRITE_ERROR && x->overflow) {
		s3_req_msg(s3, rq, res, "response body too large");
		return FERRY_S3_ERROR;
	}
	if (cc != CURLE_OK) {
		*transient = transient_curl(cc) || cc == CURLE_SEND_FAIL_REWIND;
		x->not_sent = cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST;
		s3_req_msg(s3, rq, res, "%s%s%s", curl_easy_strerror(cc),
			   x->errbuf[0] ? ": " : "", x->errbuf);
		return FERRY_S3_ERROR;
	}
	if (x->status >= 200 && x->status < 300)
		return FERRY_S3_OK;
	return error_answer(x, transient);
}

/* Forget what the previous attempt saw; delivered stays, a resumed GET goes on from it. */
static void xfer_restart(struct s3_xfer *x)
{
	x->status = 0;
	x->etag[0] = '\0';
	x->up_pos = 0;
	x->got_this_attempt = 0;
	x->stalled = x->not_sent = false;
	x->win_ms = 0;
	x->sink_stop = x->overflow = x->read_failed = false;
	x->errbuf[0] = '\0';
	x->body.len = 0;
	if (x->body.data)
		x->body.data[0] = '\0';
	x->res->code[0] = '\0';
}

int s3_req_attempt(struct s3_xfer *x, bool *transient)
{
	struct wire w = { 0 };
	CURL *h;
	int rc;

	*transient = false;
	xfer_restart(x);
	rc = wire_build(x, &w);
	if (rc != FERRY_S3_OK)
		goto out_wire;
	h = s3_pool_get(x->s3);
	if (!h) {
		rc = out_of_memory(x);
		goto out_wire;
	}
	handle_setup(x, h, &w);
	rc = attempt_outcome(x, send_attempt(x, h), transient);
	/* the handle goes back to the pool: nothing of this attempt may stay pointed to */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	s3_pool_put(x->s3, h);
out_wire:
	wire_release(&w);
	return rc;
}
