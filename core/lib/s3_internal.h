/* s3_internal.h: libferry-internal parts of the S3 client (SigV4 signer, XML readers),
 * reachable from unit tests and fuzzers; not for plugins. */
#ifndef FERRY_S3_INTERNAL_H
#define FERRY_S3_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "ferry_s3.h"

struct sigv4_kv {
	const char *name;                   /* header or query parameter name, as sent */
	const char *value;                  /* its value, raw (not encoded) */
};

struct sigv4_req {
	const char *method;                 /* "GET", "PUT", ... */
	const char *path;                   /* canonical URI: already URI-encoded, "/" at least */
	const char *query;                  /* canonical query (sigv4_query), "" for none */
	const struct sigv4_kv *hdrs;  /* the headers to sign, host included */
	size_t n_hdrs;
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

#endif
