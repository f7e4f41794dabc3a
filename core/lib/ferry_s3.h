/* ferry_s3.h: libferry's S3 client (libcurl + OpenSSL SigV4), shared by ferry, ferryfs
 * and the stage plugins. Thread-safe: one client may serve many threads at once.
 *
 * Behaviour every caller can rely on (core/lib/s3_req.c and s3_retry.c have the reasons):
 *  - Retries: 5xx, 429, 400 RequestTimeout, connection resets, timeouts, short bodies are
 *    retried with full-jitter exponential backoff (retry_base .. retry_cap, max_retries)
 *    for idempotent requests: GET, HEAD, unconditional PUT and DELETE, list, part uploads,
 *    part copies, create/abort multipart; after a 429 the wait is a second longer (GCS
 *    takes about one write a second per object). res->attempts counts what was sent.
 *  - Conditional writes (PUT/DELETE/CopyObject with a condition, and every multipart
 *    complete) are never resent blindly; see ferry_s3_put. They always use a fresh
 *    connection, so libcurl cannot silently resend them either.
 *  - A GET into a sink that breaks off mid-body resumes at the byte it reached, pinned
 *    with If-Match to the ETag it started on: the sink never sees two versions mixed
 *    (the call fails with FERRY_S3_PRECONDITION instead).
 *  - res->msg names the request ("GET 'key': 404 NoSuchKey: ... (request id X)") and
 *    never contains a credential. Retries are logged at debug level as "s3 retrying".
 *  - Cancellation (ferry_s3_set_cancel) is polled every 100 ms during transfers and every
 *    20 ms during backoff; set it before sharing the client between threads. */
#ifndef FERRY_S3_H
#define FERRY_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

/* Result codes of every operation. */
enum ferry_s3_rc {
	FERRY_S3_OK = 0,
	FERRY_S3_NOTFOUND = -1,             /* 404 NoSuchKey / NoSuchBucket / NoSuchUpload */
	FERRY_S3_PRECONDITION = -2,         /* 412: If-Match / If-None-Match did not hold */
	FERRY_S3_CONFLICT = -3,             /* 409: e.g. ConditionalRequestConflict */
	FERRY_S3_NOTIMPL = -4,              /* 501 NotImplemented (e.g. UploadPartCopy on s3rver) */
	FERRY_S3_RANGE = -5,                /* 416: range not satisfiable */
	FERRY_S3_DENIED = -6,               /* 403 */
	FERRY_S3_CANCELLED = -7,            /* the cancel callback said stop */
	FERRY_S3_ERROR = -8,                /* anything else, after the retries allowed */
};

/* How a store spells conditions and names versions ([s3] dialect; core/lib/STORES.md).
 *  s3:  If-None-Match: * / If-Match: "etag"; the version is the ETag.
 *  gcs: x-goog-if-generation-match: 0 / N (writes, deletes and reads alike); the version is
 *       the generation (x-goog-generation); If-Match on writes is ignored by GCS; multipart
 *       completions take no precondition, so fenced writes are single PUTs.
 *  r2:  s3, with CopyObject's destination conditions spelled cf-copy-destination-if-*.
 *  auto (default): gcs for storage.googleapis.com, r2 for *.r2.cloudflarestorage.com, else s3. */
enum ferry_s3_dialect {
	FERRY_S3_DIALECT_AUTO = 0,
	FERRY_S3_DIALECT_S3,
	FERRY_S3_DIALECT_GCS,
	FERRY_S3_DIALECT_R2,
};

struct ferry_s3_conf {
	char *endpoint;                     /* "http://127.0.0.1:9000"; NULL = AWS for region */
	char *region;                       /* "auto" allowed (Tigris); default us-east-1 */
	char *bucket;                       /* bucket name */
	char *access_key;                   /* secret: never logged */
	char *secret_key;                   /* secret: never logged */
	char *session_token;                /* secret: never logged; may be NULL */
	int path_style;                     /* 1 path-style, 0 virtual-host, -1 auto */
	bool verify_tls;                    /* default true */
	char *ca_bundle;                    /* AWS_CA_BUNDLE or NULL */
	long connect_timeout_ms;            /* default 5000 */
	long low_speed_time_s;              /* abort when below low_speed_limit this long; 30 */
	long low_speed_limit;               /* bytes/s; default 1 */
	long request_timeout_ms;            /* whole request cap, 0 = none; default 0 */
	int max_retries;                    /* for idempotent requests; default 5 */
	long retry_base_ms;                 /* first backoff; default 100 */
	long retry_cap_ms;                  /* backoff cap; default 5000 */
	enum ferry_s3_dialect dialect;      /* default auto */
};

/* Defaults, then the environment the way AWS tools read it: AWS_ENDPOINT_URL_S3, then
 * AWS_ENDPOINT_URL; AWS_REGION, then AWS_DEFAULT_REGION; AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; AWS_CA_BUNDLE; BUCKET_NAME for bucket;
 * FERRY_S3_DIALECT (auto, s3, gcs, r2) for dialect. */
void ferry_s3_conf_init(struct ferry_s3_conf *conf);
void ferry_s3_conf_from_env(struct ferry_s3_conf *conf);
/* Apply one [s3] INI key (endpoint, region, bucket, path_style, verify_tls, ca_bundle,
 * connect_timeout, low_speed_time, low_speed_limit, request_timeout, max_retries,
 * retry_base, retry_cap, dialect). Returns 0, or -1 with a reason in err (unknown key, bad value). */
int ferry_s3_conf_set(struct ferry_s3_conf *conf, const char *key, const char *value,
		      char *err, size_t errlen);
bool ferry_s3_conf_is_key(const char *key);  /* is this a valid [s3] key */
void ferry_s3_conf_release(struct ferry_s3_conf *conf);

struct ferry_s3;

/* NULL with a reason in err (no bucket, no credentials, bad endpoint). */
struct ferry_s3 *ferry_s3_new(const struct ferry_s3_conf *conf, char *err, size_t errlen);
void ferry_s3_free(struct ferry_s3 *s3);
const char *ferry_s3_bucket(const struct ferry_s3 *s3);
/* The dialect in use (auto resolved) and its name ("s3", "gcs", "r2"). */
enum ferry_s3_dialect ferry_s3_dialect(const struct ferry_s3 *s3);
const char *ferry_s3_dialect_name(enum ferry_s3_dialect d);
/* Whether a multipart completion can be fenced (If-Match / If-None-Match on
 * CompleteMultipartUpload): not on GCS, where a fenced write is one PUT. */
bool ferry_s3_multipart_fenced(const struct ferry_s3 *s3);
/* How this dialect spells a condition, for messages: create-only ("If-None-Match: *",
 * "x-goog-if-generation-match: 0") or the version header ("If-Match",
 * "x-goog-if-generation-match"). */
const char *ferry_s3_cond_spelling(const struct ferry_s3 *s3, bool create_only);
/* "host[:port]/bucket" for messages. */
const char *ferry_s3_store_name(const struct ferry_s3 *s3);
/* A file in dir about this store and dialect: "DIR/STEM-HASH.json", the store only as a hash
 * (no URL on disk). 0, or -1 when dir is empty or the path does not fit in n. */
int ferry_s3_state_path(const struct ferry_s3 *s3, const char *dir, const char *stem,
			char *out, size_t n);
/* Called during transfers and backoff waits; returning true aborts with CANCELLED. */
void ferry_s3_set_cancel(struct ferry_s3 *s3, bool (*cancelled)(void *arg), void *arg);

/* What one request learned. Every call fills it (when not NULL), success or not. */
struct ferry_s3_res {
	long status;                        /* last HTTP status, 0 if none */
	char etag[80];                      /* the version conditions speak of: the ETag as sent
					     * (with its quotes), or on GCS the generation */
	char content_etag[80];              /* the ETag header itself (an MD5 or a multipart one) */
	uint64_t size;                      /* object size (HEAD, or total of a ranged GET) */
	time_t last_modified;               /* Last-Modified, 0 if none */
	time_t date;                        /* server Date header, 0 if none */
	int attempts;                       /* requests sent, retries included */
	char code[64];                      /* S3 error code, e.g. "PreconditionFailed" */
	char request_id[80];                /* x-amz-request-id or the error body's RequestId */
	char msg[512];                      /* ready-made: "PUT 'key': 412 PreconditionFailed: ... (request id X)" */
	bool verified;                      /* a write whose ETag proves its bytes: a PUT's ETag is
					     * the MD5 of the body sent (Content-MD5), a multipart's
					     * is the one its parts' MD5s make */
	bool etag_not_md5;                  /* the answer said its ETag is no MD5: SSE-KMS or SSE-C
					     * (x-amz-server-side-encryption: aws:kms..., or
					     * x-amz-server-side-encryption-customer-algorithm) */
};


/* Conditions for reads and writes; NULL fields are not sent. Spelled per dialect: on
 * GCS both become x-goog-if-generation-match (0 for create-only). */
struct ferry_s3_cond {
	const char *if_match;               /* a version (res.etag): ETag with quotes, or generation */
	const char *if_none_match;          /* "*" for create-only */
};

/* Receives body bytes of a GET; return 0 to continue, non-zero to abort. */
typedef int (*ferry_s3_sink)(void *arg, const void *data, size_t len);

struct ferry_buf {
	char *data;                         /* malloc'd, NUL-terminated for convenience */
	size_t len;                         /* bytes held */
	size_t cap;                         /* bytes allocated */
};
void ferry_buf_release(struct ferry_buf *b);

int ferry_s3_head(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		  struct ferry_s3_res *res);
/* len 0 = to the end. A GET with cond->if_match that no longer matches gives PRECONDITION. */
int ferry_s3_get(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		 uint64_t off, uint64_t len, ferry_s3_sink sink, void *arg,
		 struct ferry_s3_res *res);
int ferry_s3_get_buf(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		     uint64_t off, uint64_t len, struct ferry_buf *out, struct ferry_s3_res *res);
/* Reads exactly len bytes (a range) into dst; *got = bytes received (short at EOF). */
int ferry_s3_get_into(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		      uint64_t off, size_t len, void *dst, size_t *got,
		      struct ferry_s3_res *res);

/* PUT. With a condition the write is never retried blindly: after an ambiguous
 * outcome (timeout, reset, 5xx, 412 after a resend) the object is read back and the
 * write counts as ours only if the stored bytes equal ours. */
int ferry_s3_put(struct ferry_s3 *s3, const char *key, const void *data, size_t len,
		 const struct ferry_s3_cond *cond, struct ferry_s3_res *res);
int ferry_s3_put_fd(struct ferry_s3 *s3, const char *key, int fd, off_t off, uint64_t len,
		    const struct ferry_s3_cond *cond, struct ferry_s3_res *res);
/* DELETE; cond->if_match makes it conditional (stores without support ignore it). A
 * missing key is FERRY_S3_OK for an unconditional delete. */
/* CreateBucket of the configured bucket (with a LocationConstraint outside us-east-1 and
 * "auto"). FERRY_S3_OK, also when it exists and is ours already (*existed = true);
 * another owner's bucket is FERRY_S3_CONFLICT with res->msg saying so. */
int ferry_s3_create_bucket(struct ferry_s3 *s3, bool *existed, struct ferry_s3_res *res);
int ferry_s3_delete(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		    struct ferry_s3_res *res);
/* Server-side copy (CopyObject, up to 5 GiB); src_if_match pins the source version. */
int ferry_s3_copy(struct ferry_s3 *s3, const char *src_key, const char *src_if_match,
		  const char *dst_key, const struct ferry_s3_cond *cond,
		  struct ferry_s3_res *res);

struct ferry_s3_entry {
	char *key;                          /* full key */
	uint64_t size;
	char *etag;                         /* the version: ETag, or on GCS the generation */
	char *generation;                   /* GCS's <Generation>, NULL elsewhere */
	time_t last_modified;
};
struct ferry_s3_list {
	struct ferry_s3_entry *entries;     /* Contents */
	size_t n_entries;
	char **prefixes;                    /* CommonPrefixes */
	size_t n_prefixes;
	bool truncated;                     /* IsTruncated */
	char *next_token;                   /* NextContinuationToken or NULL */
};
/* One page of ListObjectsV2 (token NULL for the first); max_keys 0 = server default. */
int ferry_s3_list_page(struct ferry_s3 *s3, const char *prefix, const char *delimiter,
		       const char *token, int max_keys, struct ferry_s3_list *out,
		       struct ferry_s3_res *res);
/* All pages, appended into out. */
int ferry_s3_list_all(struct ferry_s3 *s3, const char *prefix, const char *delimiter,
		      struct ferry_s3_list *out, struct ferry_s3_res *res);
void ferry_s3_list_release(struct ferry_s3_list *l);

/* Multipart upload. Part numbers start at 1; etag_out holds at least 80 bytes. */
int ferry_s3_mpu_create(struct ferry_s3 *s3, const char *key, char **upload_id,
			struct ferry_s3_res *res);
int ferry_s3_mpu_part(struct ferry_s3 *s3, const char *key, const char *upload_id, int part,
		      const void *data, size_t len, char *etag_out, struct ferry_s3_res *res);
int ferry_s3_mpu_part_fd(struct ferry_s3 *s3, const char *key, const char *upload_id,
			 int part, int fd, off_t off, uint64_t len, char *etag_out,
			 struct ferry_s3_res *res);
/* UploadPartCopy of bytes [off, off+len) of src_key (pinned by src_if_match). */
int ferry_s3_mpu_part_copy(struct ferry_s3 *s3, const char *key, const char *upload_id,
			   int part, const char *src_key, const char *src_if_match,
			   uint64_t off, uint64_t len, char *etag_out, struct ferry_s3_res *res);
/* Complete, conditional like a PUT (If-Match / If-None-Match), never blindly retried. */
int ferry_s3_mpu_complete(struct ferry_s3 *s3, const char *key, const char *upload_id,
			  char *const *part_etags, int nparts, const struct ferry_s3_cond *cond,
			  struct ferry_s3_res *res);
int ferry_s3_mpu_abort(struct ferry_s3 *s3, const char *key, const char *upload_id,
		       struct ferry_s3_res *res);

/* An object written whole from a file, in ferry_fsproto.h's part layout (core/lib/s3_upload.c):
 * ferryfs's commits and push's write of the replica. A part that `changed` says holds no
 * new byte, and that lies inside base_size, is copied server-side from the version `base`
 * of the same key (pinned: a replaced source fails the copy); every other part is read from
 * fd and sent with Content-MD5, `threads` parts at a time. With no part to copy and size <=
 * put_max, or on a store that fences no multipart completion (GCS), it is one PUT. The write
 * is conditional on cond (If-Match on the version written over, If-None-Match: * for a new
 * key). After it a HEAD must give the new ETag and the size: res->verified says the store's
 * ETags prove every byte (ferry_s3_res). */
enum ferry_s3_upload_ev {
	FERRY_S3_UP_PUT,                    /* the object sent as one PUT (off 0, bytes: its size) */
	FERRY_S3_UP_CREATE,                 /* a multipart upload started */
	FERRY_S3_UP_PART,                   /* a part uploaded (off, bytes: where, its length) */
	FERRY_S3_UP_COPY,                   /* a part copied server-side (off, bytes: likewise) */
	FERRY_S3_UP_COMPLETE,               /* the completion sent */
	FERRY_S3_UP_ABORT,                  /* the upload aborted */
	FERRY_S3_UP_CONFLICT,               /* the condition (or a copy's pin) did not hold */
};
/* One part of a multipart upload: bytes [off, off + len) of the object. */
struct ferry_s3_part {
	uint64_t off, len;
	bool copy;                          /* copied server-side from the base, else uploaded */
};
/* Bytes [off, end) of an object. */
struct ferry_s3_range {
	uint64_t off, end;
};
/* A part layout around what changed: the new bytes of an object of `size` bytes are the
 * sorted, disjoint `dirty` ranges (widened to `align`, the page size) and every byte at or
 * past base_size; the rest is the base's. Each run of new bytes is uploaded in parts of at
 * least 5 MiB (S3's smallest but the last), as little around it as that minimum takes,
 * runs closer than 5 MiB apart in the same parts, and ~8 MiB a part; each gap between them
 * is copied in parts of up to 64 MiB (the sizes grow so that an object never needs more
 * than 9,000 parts). Every boundary is a multiple of align. *out is malloc'd; the number of
 * parts, or -1 (ENOMEM). Compared with ferry_fsproto.h's fixed layout (a 5 MiB part 0, then
 * 8 MiB parts), a changed page past part 0 costs 5 MiB up instead of 8, and far fewer copies
 * are sent. */
long ferry_s3_plan_around(const struct ferry_s3_range *dirty, size_t ndirty, uint64_t size,
			  uint64_t base_size, uint64_t align, struct ferry_s3_part **out);

/* What a part copy (UploadPartCopy) and a part upload (UploadPart: reading the file and
 * its MD5 included) cost on a store, in ms per MiB of one request (the requests overlap,
 * `threads` at a time: these are each one's own time over its bytes). 0: not known. */
struct ferry_s3_up_costs {
	double copy_ms_per_mib;
	double upload_ms_per_mib;
};

struct ferry_s3_upload {
	const char *key;
	int fd;                             /* the object's bytes are [0, size) of fd */
	uint64_t size;
	const char *base;                   /* version parts are copied from; NULL or "": none */
	uint64_t base_size;                 /* bytes of that version */
	uint64_t put_max;                   /* one PUT up to this when nothing is copied */
	int threads;                        /* parts at a time (1..16) */
	/* the parts (ferry_s3_plan_around); NULL: ferry_fsproto.h's layout, with `changed` */
	const struct ferry_s3_part *plan;
	size_t nplan;
	/* without a plan: does [off, off + len) hold a new byte? NULL: every part uploaded */
	bool (*changed)(void *arg, uint64_t off, uint64_t len);
	/* called before [off, off + len) is read from fd (a cache fills it); an errno */
	int (*before_read)(void *arg, uint64_t off, uint64_t len);
	/* counters, called from the upload's threads */
	void (*count)(void *arg, enum ferry_s3_upload_ev ev, uint64_t off, uint64_t bytes);
	void *arg;
	const char *failpoint;              /* ferry_failpoint() after the parts, before completing */
	/* ferry_failpoint() before reading the upload that passes half of those planned (the
	 * parts not copied; or before the one PUT) */
	const char *failpoint_mid;
	bool *no_copy;                      /* set (and read) once the store refused UploadPartCopy */
	/* 0: every part that can be copied is. > 0: such a part is uploaded instead once this
	 * upload's own timings (ns per byte of the copies and of the uploads done so far) say
	 * the copyable bytes left would take more than this many ms longer as copies (a store
	 * whose UploadPartCopy costs O(object), as moto's) */
	int64_t copy_slack_ms;
	/* With copy_slack_ms > 0: what earlier uploads to this store measured (push keeps them
	 * per store), or NULL. A figure this upload has not measured yet is taken from here:
	 * when they say the copyable bytes would take more than copy_slack_ms longer as copies,
	 * no copy is sent (no probe) and the object goes up as if nothing were copyable (the
	 * fixed layout's parts, or one PUT up to put_max; the plan is set aside); when they say
	 * copies are cheap, the parts are copied, timed, and switched as without a prior once
	 * this upload's own figures say otherwise (its own figure of a kind wins as soon as one
	 * request of that kind has ended). */
	const struct ferry_s3_up_costs *prior;
	/* for the info line of a switch decided on the prior: where it was kept, how old its
	 * copy figure is, how many earlier uploads went by that figure alone */
	const char *prior_file;
	double prior_age_days;
	int prior_uses;
	struct ferry_s3_up_costs measured;  /* out: this upload's own figures (0: none ended) */
	/* out: copyable parts uploaded on the prior's copy figure alone, no copy of this upload
	 * having ended (the prior decided, and copies were not measured again) */
	int prior_uploads;
	int err;                            /* out: before_read's errno when that failed the upload */
};
/* FERRY_S3_OK, or a code with res->msg naming the request (FERRY_S3_ERROR with u->err set
 * when before_read failed). On failure a started multipart upload is aborted. */
int ferry_s3_upload(struct ferry_s3 *s3, struct ferry_s3_upload *u,
		    const struct ferry_s3_cond *cond, struct ferry_s3_res *res);

/* Counters since ferry_s3_new, for reports and tests. */
struct ferry_s3_stats {
	uint64_t requests;                  /* HTTP requests sent, retries included */
	uint64_t gets, puts, heads, deletes, lists, copies, posts;
	uint64_t retries;
	uint64_t bytes_up;                  /* request bodies sent */
	uint64_t bytes_down;                /* response bodies received */
	uint64_t bytes_copied;              /* server-side copies (CopyObject, UploadPartCopy) */
};
void ferry_s3_stats_get(struct ferry_s3 *s3, struct ferry_s3_stats *out);

/* The endpoint probe behind `ferry check` and the lock stage (core/lib/s3_probe.c;
 * core/lib/STORES.md): on scratch keys under scratch_prefix, in the client's dialect,
 *  1. create if absent, twice: the second must be refused;
 *  2. replace with a wrong version: refused;
 *  3. write if version V on an absent key: refused (404 as AWS answers, or 412);
 *  4. delete with a wrong version: refused (and with the right one: done);
 *  5. a ranged GET returns exactly the bytes asked for;
 *  6. UploadPartCopy works (else ferryfs uploads the parts itself).
 * The scratch keys are removed. Returns 0 when the probe ran (see the flags), else an rc. */
struct ferry_s3_features {
	bool conditional_create;            /* 1 */
	bool conditional_put;               /* 2 */
	bool absent_refused;                /* 3 */
	bool conditional_delete;            /* 4 */
	bool ranged_get;                    /* 5 */
	bool upload_part_copy;              /* 6 */
	long status[6];                     /* the HTTP status each step got (0: not sent) */
	bool multipart_fenced;              /* ferry_s3_multipart_fenced */
	char dialect[8];                    /* "s3", "gcs", "r2" */
	time_t probed_at;
	bool cached;                        /* read from the probe cache */
};
int ferry_s3_probe(struct ferry_s3 *s3, const char *scratch_prefix,
		   struct ferry_s3_features *out, struct ferry_s3_res *res);
/* The probe, or its result of less than max_age_s ago for this endpoint, bucket and
 * dialect, kept in dir (state_dir) as s3-probe-HASH.json (no URL on disk). Only a safe
 * result is kept: a store found unsafe is probed again next time. */
int ferry_s3_probe_cached(struct ferry_s3 *s3, const char *dir, long max_age_s,
			  struct ferry_s3_features *out, struct ferry_s3_res *res);
/* Whether a safe result of less than max_age_s ago is cached (into out); sends nothing. */
bool ferry_s3_probe_peek(struct ferry_s3 *s3, const char *dir, long max_age_s,
			 struct ferry_s3_features *out);
/* NULL when the store fences what ferry relies on (1-5), else why not, naming the store,
 * the dialect and the first property that failed. */
const char *ferry_s3_features_unsafe(struct ferry_s3 *s3, const struct ferry_s3_features *f,
				     char *why, size_t n);
/* The matrix, one line a property, each line starting with prefix. */
void ferry_s3_features_print(FILE *out, const char *prefix, struct ferry_s3 *s3,
			     const struct ferry_s3_features *f);

#endif
