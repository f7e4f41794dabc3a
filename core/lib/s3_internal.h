/* s3_internal.h: libferry-internal parts of the S3 client shared between its files (the
 * client object, one request, retries, the SigV4 signer, the XML readers), reachable from
 * unit tests and fuzzers; not for plugins. */
#ifndef FERRY_S3_INTERNAL_H
#define FERRY_S3_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <curl/curl.h>

#include "ferry_s3.h"

/* ---------------------------------------------------------------- signing (sigv4.c) */

struct sigv4_kv {
	const char *name;                   /* header or query parameter name, as sent */
	const char *value;                  /* its value, raw (not encoded) */
};

struct sigv4_req {
	const char *method;                 /* "GET", "PUT", ... */
	const char *path;                   /* canonical URI: already URI-encoded, "/" at least */
	const char *query;                  /* canonical query (sigv4_query), "" for none */
	const struct sigv4_kv *hdrs;        /* the headers to sign, host included */
	size_t n_hdrs;                      /* entries in hdrs */
	const char *payload_hash;           /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
	const char *amz_date;               /* "20150830T123600Z" */
	const char *region;                 /* "us-east-1" */
	const char *service;                /* "s3" */
	const char *access_key;             /* secret-ish: only ever in the Authorization header */
	const char *secret_key;             /* secret */
};

/* What signing produced; the intermediate strings are kept for tests. */
struct sigv4_out {
	char *canonical_request;            /* malloc'd */
	char *string_to_sign;               /* malloc'd */
	char signature[65];                 /* hex */
	char *authorization;                /* malloc'd: the Authorization header value */
};

int sigv4_sign(const struct sigv4_req *r, struct sigv4_out *out);
void sigv4_out_release(struct sigv4_out *out);
/* S3's URI encoding: everything but A-Z a-z 0-9 - . _ ~ (and '/' when keep_slash). */
char *sigv4_uri_encode(const char *s, bool keep_slash);
/* The canonical query string of n raw parameters: encoded, sorted by name then value. */
char *sigv4_query(const struct sigv4_kv *params, size_t n);
void sigv4_sha256_hex(const void *data, size_t len, char hex[65]);
/* SHA-256 (hex) of len bytes of fd from off, read in chunks: 0, or -1 with why filled. */
int sigv4_sha256_fd_hex(int fd, off_t off, uint64_t len, char hex[65], char *why, size_t wl);

/* ---------------------------------------------------------------- uploads (s3_upload.c) */

/* What the parts of one upload took so far, each as its own thread timed it. */
struct s3up_cost {
	uint64_t copy_ns, copy_bytes;       /* UploadPartCopy */
	uint64_t up_ns, up_bytes;           /* UploadPart */
};
/* Upload rather than copy, with `left` copyable bytes still to go at `threads` parts at a
 * time: both kinds measured, copies dearer per byte, and the difference over `left` more
 * than slack_ms (ferry_s3_upload.copy_slack_ms; <= 0: never). */
bool s3up_prefer_upload(const struct s3up_cost *m, uint64_t left, int threads, int64_t slack_ms);
/* The figures to weigh with (into *out): for each kind, this upload's own (live) once one
 * of its requests has ended, else the prior's (ferry_s3_upload.prior, may be NULL). While no
 * copy has ended, a copy still running for run_ns over run_bytes (a lower bound of its
 * cost) counts instead of the prior's copy figure when it says more. Returns whether the
 * copy figure is the prior's. */
bool s3up_figures(const struct s3up_cost *live, const struct ferry_s3_up_costs *prior,
		  uint64_t run_ns, uint64_t run_bytes, struct s3up_cost *out);

/* ---------------------------------------------------------------- XML readers (s3_xml.c) */

/* XML readers over S3 response bodies (expat). Each returns 0, or -1 when the text is
 * not well-formed XML or not the expected document. */
int s3xml_error(const char *xml, size_t len, char *code, size_t codelen,
		      char *msg, size_t msglen, char *reqid, size_t reqidlen);
/* Appends the page's Contents and CommonPrefixes to out; sets truncated, next_token. */
int s3xml_list(const char *xml, size_t len, struct ferry_s3_list *out);
/* The text of the first element at path ("Root/Child"), e.g.
 * "InitiateMultipartUploadResult/UploadId", or "*\/Child" under any root; -1 when absent. */
int s3xml_field(const char *xml, size_t len, const char *path, char *out, size_t outlen);
/* The name of the root element ("Error", "CopyObjectResult", ...) into out. */
int s3xml_root(const char *xml, size_t len, char *out, size_t outlen);

/* ---------------------------------------------------------------- the client (s3.c) */

#define S3_POOL_MAX 64                  /* idle easy handles kept for keep-alive reuse */
#define S3_REFUSED_RETRIES 2              /* retries of a request no server accepted */
#define S3_SLOWDOWN_MS     1000            /* extra wait before resending after a 429 */

struct ferry_s3 {
	struct ferry_s3_conf conf;          /* private copy */
	char *scheme;                       /* "http" or "https" */
	char *host;                         /* Host header: host[:port], bucket. prefix if vhost */
	char *base_path;                    /* endpoint path without trailing '/', often "" */
	bool https;                         /* the endpoint's scheme is https */
	bool loopback;                      /* 127.0.0.0/8, ::1 or localhost */
	bool path_style;                    /* resolved from conf->path_style */
	char *sign_region;                  /* region used in the credential scope */
	enum ferry_s3_dialect dialect;      /* resolved: never AUTO */
	char *store_name;                   /* "host[:port]/bucket" */
	CURLSH *share;                      /* DNS, connections, TLS sessions */
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST]; /* one per kind of shared data */
	pthread_mutex_t pool_lock;          /* guards pool and n_pool */
	CURL *pool[S3_POOL_MAX];            /* idle easy handles (keep their connections warm) */
	int n_pool;                         /* handles in pool */
	bool (*cancelled)(void *arg);       /* set once before use by many threads */
	void *cancel_arg;                   /* for cancelled */
	struct ferry_s3_stats stats;        /* updated with __atomic adds */
	uint64_t rng;                       /* jitter state, __atomic */
};

#define S3_STAT_ADD(s3, field, n) \
	__atomic_add_fetch(&(s3)->stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

bool s3_cancelled(struct ferry_s3 *s3);
/* An easy handle, reset, from the pool or new (NULL when out of memory); back when done. */
CURL *s3_pool_get(struct ferry_s3 *s3);
void s3_pool_put(struct ferry_s3 *s3, CURL *h);

/* ---------------------------------------------------------------- configuration (s3_conf.c) */

/* Split s3->conf's endpoint into scheme, host, base path; pick the addressing style. */
int s3_conf_endpoint(struct ferry_s3 *s3, char *err, size_t errlen);

/* ---------------------------------------------------------------- one request (s3_req.c) */

#define S3_ERR_BODY_MAX (256 * 1024)    /* error bodies and XML results kept in memory */
#define S3_XML_BODY_MAX (32 * 1024 * 1024)
#define S3_MAX_HDRS     8               /* extra headers one request may carry */
#define S3_RC_AMBIGUOUS (-100)          /* transient failure of a non-idempotent request */

struct s3_req {
	const char *method;                 /* HTTP method */
	const char *op;                     /* for messages: "PUT", "GET", "LIST", ... */
	const char *key;                    /* object key, NULL for bucket-level requests */
	const struct sigv4_kv *query;       /* raw query parameters */
	size_t n_query;                     /* entries in query */
	struct sigv4_kv hdrs[S3_MAX_HDRS];  /* extra headers, all signed */
	size_t n_hdrs;                      /* entries in hdrs */
	const char *body;                   /* request body from memory, or */
	int fd;                             /* from fd (fd >= 0) at fd_off */
	off_t fd_off;                       /* where the body starts in fd */
	uint64_t body_len;                  /* request body bytes */
	ferry_s3_sink sink;                 /* where a 2xx body goes (else: into xfer.body) */
	void *sink_arg;                     /* for sink */
	size_t keep_max;                    /* cap of the kept body */
	bool idempotent;                    /* may be resent blindly */
	bool ranged;                        /* GET with a range: range_off/range_len */
	uint64_t range_off;                 /* first byte wanted */
	uint64_t range_len;                 /* 0 = to the end */
	const char *if_match;               /* GET: caller's pin (resumes pin the seen ETag) */
	bool has_md5;                       /* s3_req_md5: Content-MD5 sent, md5 holds it */
	unsigned char md5[16];
	char md5_b64[32];
};

/* One request's transfer state, across its attempts. */
struct s3_xfer {
	struct ferry_s3 *s3;                /* the client */
	struct s3_req *rq;                  /* what is sent */
	struct ferry_s3_res *res;           /* what is learned */
	long status;                        /* from the status line (last one wins) */
	struct ferry_buf body;              /* error body, or the kept 2xx body */
	uint64_t up_pos;                    /* request body bytes handed to curl */
	uint64_t delivered;                 /* 2xx body bytes handed to the sink (all attempts) */
	uint64_t got_this_attempt;          /* the part of delivered from this attempt */
	bool sink_stop;                     /* the sink asked to stop */
	bool overflow;                      /* kept body exceeded keep_max */
	bool read_failed;                   /* the request body could not be read */
	bool stalled;                       /* on_progress gave up: nothing moved for too long */
	bool not_sent;                      /* no connection (refused, no such host): nothing
					     * of the request reached the server */
	int64_t stall_ms;                   /* the limit it gave up at */
	int64_t win_ms;                     /* stall watch: start of the current window */
	curl_off_t win_bytes;               /* bytes moved (both ways) when it started */
	char etag[80];                      /* of this response */
	char errbuf[CURL_ERROR_SIZE];       /* libcurl's detail of a failure */
	char read_err[128];                 /* why the request body could not be read */
};

/* Copy with truncation (no format machinery, so no truncation warnings either). */
void s3_scopy(char *dst, size_t n, const char *src);
/* Append to b, growing it up to max bytes: 0, or -1 when full or out of memory. */
int s3_buf_append(struct ferry_buf *b, const void *data, size_t len, size_t max);

/* Start a public call: the caller's result, or local when it passed none, reset. */
struct ferry_s3_res *s3_res_begin(struct ferry_s3_res *res, struct ferry_s3_res *local);
void s3_req_init(struct s3_req *rq, const char *method, const char *op, const char *key);
/* s3_res_begin and s3_req_init at once, for a call of one request. */
struct ferry_s3_res *s3_req_begin(struct s3_req *rq, const char *method, const char *op,
				  const char *key, struct ferry_s3_res *res,
				  struct ferry_s3_res *local);
/* The request body: len bytes of data (NULL for none), or of fd from off. */
void s3_req_body(struct s3_req *rq, const void *data, size_t len);
void s3_req_body_fd(struct s3_req *rq, int fd, off_t off, uint64_t len);
/* The body's MD5 (read from memory or the fd) into rq->md5, sent as Content-MD5: the store
 * refuses a body that arrives changed (BadDigest). 0, or -1 with res->msg set. */
int s3_req_md5(struct ferry_s3 *s3, struct s3_req *rq, struct ferry_s3_res *res);
/* After a 2xx of a body with Content-MD5: res->verified when the ETag is that MD5 (the
 * stored bytes are ours). An ETag the answer says is no MD5 (SSE-KMS, SSE-C) or that is
 * not MD5-shaped proves nothing: FERRY_S3_OK, not verified. An MD5-shaped ETag of other
 * bytes (a store that does not check Content-MD5 took a damaged body): FERRY_S3_ERROR. */
int s3_req_md5_check(struct ferry_s3 *s3, const struct s3_req *rq, struct ferry_s3_res *res);
/* Add a signed header (nothing when value is NULL). */
void s3_req_hdr(struct s3_req *rq, const char *name, const char *value);
/* The cond as headers in the store's dialect: If-Match / If-None-Match, or on GCS
 * x-goog-if-generation-match (0 for create-only). */
void s3_req_cond(const struct ferry_s3 *s3, struct s3_req *rq, const struct ferry_s3_cond *cond);
/* The header that pins a version: If-Match, or x-goog-if-generation-match on GCS. */
const char *s3_version_hdr(const struct ferry_s3 *s3);
/* The header that pins a copy's source: x-amz-copy-source-if-match, or on GCS
 * x-goog-copy-source-if-generation-match. */
const char *s3_copy_source_pin_hdr(const struct ferry_s3 *s3);
/* A result's content ETag (from a response body: copy, complete, part copy); on S3 it is
 * the version too. */
void s3_res_content_etag(const struct ferry_s3 *s3, struct ferry_s3_res *res, const char *etag);
bool s3_is_conditional(const struct ferry_s3_cond *cond);
/* The key a request is about, "" for a bucket-level one. */
const char *s3_req_what(const struct s3_req *rq);
/* res->msg = "OP 'key': " (or "OP s3://bucket: ") and the formatted tail, scrubbed. */
void s3_req_msg(struct ferry_s3 *s3, const struct s3_req *rq, struct ferry_s3_res *res,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Scrub every credential from a message about to be handed out. */
void s3_scrub(const struct ferry_s3 *s3, char *msg);
/* "/bucket/key" for x-amz-copy-source (NULL when out of memory). */
char *s3_copy_source(struct ferry_s3 *s3, const char *src_key);
/* CopyObject and UploadPartCopy answer 200 and may still fail (an Error body). */
int s3_check_200_error(struct ferry_s3 *s3, struct s3_req *rq, struct ferry_buf *body,
		       struct ferry_s3_res *res);
/* Send x->rq once. Returns an rc; *transient says whether another attempt may succeed. */
int s3_req_attempt(struct s3_xfer *x, bool *transient);

/* ---------------------------------------------------------------- retries (s3_retry.c) */

/* What a read-back after an ambiguous (or echoed) conditional write found. */
enum s3_verdict {
	S3_V_OURS,                          /* our write landed */
	S3_V_RESEND,                        /* it did not: send again */
	S3_V_PRECOND,                       /* someone else's write is there now */
	S3_V_UNKNOWN,                       /* cannot tell */
};

typedef enum s3_verdict (*s3_verify_fn)(struct ferry_s3 *s3, const struct s3_req *rq,
					void *arg, struct ferry_s3_res *res);

/* Send with retries. Non-idempotent requests return S3_RC_AMBIGUOUS on a transient
 * failure; idempotent ones are resent up to max_retries. A 2xx body goes to keep. */
int s3_do(struct ferry_s3 *s3, struct s3_req *rq, struct ferry_s3_res *res,
	  struct ferry_buf *keep);
/* For writes whose ETag is known before they land (a copy, a multipart completion): ours
 * when key has ETag want (then into res->etag, the HEAD's result into found); unknown
 * when want is NULL. */
enum s3_verdict s3_verify_etag(struct ferry_s3 *s3, const char *key, const char *want,
			       struct ferry_s3_res *res, struct ferry_s3_res *found);
/* A write that must not be resent blindly: after an ambiguous outcome, or a 412/404 that
 * may be the echo of our own earlier attempt, verify reads back and decides. */
int s3_do_cond(struct ferry_s3 *s3, struct s3_req *rq, struct ferry_s3_res *res,
	       s3_verify_fn verify, void *varg, struct ferry_buf *keep);

#endif
