/* sigv4.c: AWS Signature Version 4 for S3 requests, over OpenSSL's SHA-256 and HMAC.
 *
 * Why our own signer and not libcurl's CURLOPT_AWS_SIGV4 (libcurl 7.88 here):
 *  - the payload hash. Over plain http to another machine we must send the real SHA-256
 *    of the body in x-amz-content-sha256; libcurl only hashes POSTFIELDS bodies, not
 *    bodies streamed from a read callback (our PUTs from fds), and falls back to
 *    UNSIGNED-PAYLOAD, which is only acceptable over TLS (or on loopback, where the body
 *    never crosses a network: see payload_hash in s3_req.c).
 *  - testability: the signer has to match AWS's published vectors byte for byte in a
 *    unit test with no network; libcurl's signer cannot be called on its own, and we
 *    want to compare the canonical request and string-to-sign, not just the result.
 *  - control: exactly which headers are signed (conditions, copy source, session
 *    token), one canonical query encoder for our URLs and the signature, and no
 *    dependence on libcurl version differences in query canonicalisation.
 * The cost is ~200 lines over OpenSSL primitives we link anyway. */
#include "s3_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(data, len, md);
	hex(md, sizeof(md), out);
}

#define HASH_CHUNK (256 * 1024)

int sigv4_sha256_fd_hex(int fd, off_t off, uint64_t len, char out[65], char *why, size_t wl)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	char *chunk = malloc(HASH_CHUNK);
	uint64_t pos = 0;
	int rc = -1;

	if (!md || !chunk || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		snprintf(why, wl, "out of memory");
		goto out;
	}
	while (pos < len) {
		size_t want = len - pos < HASH_CHUNK ? (size_t)(len - pos) : HASH_CHUNK;
		ssize_t got = pread(fd, chunk, want, off + (off_t)pos);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			snprintf(why, wl, "cannot read the body: %s", got < 0 ? strerror(errno) : "file shrank");
			goto out;
		}
		EVP_DigestUpdate(md, chunk, (size_t)got);
		pos += (uint64_t)got;
	}
	EVP_DigestFinal_ex(md, dig, &dlen);
	hex(dig, dlen, out);
	rc = 0;
out:
	free(chunk);
	EVP_MD_CTX_free(md);
	return rc;
}

static void hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
	unsigned int outlen = 32;

	HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &outlen);
}

static bool unreserved(unsigned char ch)
{
	return isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

char *sigv4_uri_encode(const char *s, bool keep_slash)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *p = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (unreserved(ch) || (keep_slash && ch == '/')) {
			*p++ = (char)ch;
		} else {
			*p++ = '%';
			*p++ = digits[ch >> 4];
			*p++ = digits[ch & 15];
		}
	}
	*p = '\0';
	return out;
}

struct enc_kv {
	char *name;
	char *value;
};

static int cmp_enc_kv(const void *a, const void *b)
{
	const struct enc_kv *x = a, *y = b;
	int d = strcmp(x->name, y->name);

	return d ? d : strcmp(x->value, y->value);
}

char *sigv4_query(const struct sigv4_kv *params, size_t n)
{
	struct enc_kv *kv = calloc(n ? n : 1, sizeof(*kv));
	size_t i, total = 1;
	char *out = NULL, *p;

	if (!kv)
		return NULL;
	for (i = 0; i < n; i++) {
		kv[i].name = sigv4_uri_encode(params[i].name, false);
		kv[i].value = sigv4_uri_encode(params[i].value ? params[i].value : "", false);
		if (!kv[i].name || !kv[i].value)
			goto out_free;
		total += strlen(kv[i].name) + strlen(kv[i].value) + 2;
	}
	/* byte order of the encoded names, as the canonical form requires (not locale) */
	qsort(kv, n, sizeof(*kv), cmp_enc_kv);
	out = malloc(total);
	if (!out)
		goto out_free;
	p = out;
	*p = '\0';
	for (i = 0; i < n; i++)
		p += sprintf(p, "%s%s=%s", i ? "&" : "", kv[i].name, kv[i].value);
out_free:
	for (i = 0; i < n; i++) {
		free(kv[i].name);
		free(kv[i].value);
	}
	free(kv);
	return out;
}

struct canon_hdr {
	char *name;                         /* lower case */
	char *value;                        /* trimmed, inner runs of spaces collapsed */
};

static int cmp_hdr(const void *a, const void *b)
{
	const struct canon_hdr *x = a, *y = b;

	return strcmp(x->name, y->name);
}

static char *lower_dup(const char *s)
{
	char *d = strdup(s), *p;

	if (d)
		for (p = d; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	return d;
}

static char *trim_dup(const char *s)
{
	char *d = malloc(strlen(s) + 1), *p = d;
	bool space = false;

	if (!d)
		return NULL;
	while (*s == ' ' || *s == '\t')
		s++;
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t') {
			space = true;
			continue;
		}
		if (space && p != d)
			*p++ = ' ';
		space = false;
		*p++ = *s;
	}
	*p = '\0';
	return d;
}

/* A growing string; on allocation failure it goes NULL and stays so. */
struct sb {
	char *s;
	size_t len, cap;
};

static void sb_add(struct sb *b, const char *t)
{
	size_t n = strlen(t);

	if (!b->s && b->cap)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *s;

		while (b->len + n + 1 > cap)
			cap *= 2;
		s = realloc(b->s, cap);
		if (!s) {
			free(b->s);
			b->s = NULL;
			b->cap = 1;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
	memcpy(b->s + b->len, t, n + 1);
	b->len += n;
}

static void canon_hdrs_free(struct canon_hdr *h, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(h[i].name);
		free(h[i].value);
	}
	free(h);
}

/* r's headers as they are signed: names lower case, values trimmed, sorted by name; NULL
 * when out of memory. */
static struct canon_hdr *canon_hdrs(const struct sigv4_req *r)
{
	struct canon_hdr *h = calloc(r->n_hdrs ? r->n_hdrs : 1, sizeof(*h));
	size_t i;

	if (!h)
		return NULL;
	for (i = 0; i < r->n_hdrs; i++) {
		h[i].name = lower_dup(r->hdrs[i].name);
		h[i].value = trim_dup(r->hdrs[i].value);
		if (!h[i].name || !h[i].value) {
			canon_hdrs_free(h, r->n_hdrs);
			return NULL;
		}
	}
	qsort(h, r->n_hdrs, sizeof(*h), cmp_hdr);
	return h;
}

/* The canonical request into canon, the signed-header list into signed_hdrs. */
static void canonical_request(const struct sigv4_req *r, const struct canon_hdr *h,
			      struct sb *canon, struct sb *signed_hdrs)
{
	size_t i;

	sb_add(canon, r->method);
	sb_add(canon, "\n");
	sb_add(canon, r->path);
	sb_add(canon, "\n");
	sb_add(canon, r->query ? r->query : "");
	sb_add(canon, "\n");
	for (i = 0; i < r->n_hdrs; i++) {
		sb_add(canon, h[i].name);
		sb_add(canon, ":");
		sb_add(canon, h[i].value);
		sb_add(canon, "\n");
		if (i)
			sb_add(signed_hdrs, ";");
		sb_add(signed_hdrs, h[i].name);
	}
	sb_add(canon, "\n");
	sb_add(canon, signed_hdrs->s ? signed_hdrs->s : "");
	sb_add(canon, "\n");
	sb_add(canon, r->payload_hash);
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
 * "aws4_request"): 0, or -1 when out of memory. */
static int signing_key(const struct sigv4_req *r, const char *date, unsigned char key[32])
{
	unsigned char k1[32], k2[32], k3[32];
	char *kdate;

	if (asprintf(&kdate, "AWS4%s", r->secret_key) < 0)
		return -1;
	hmac(kdate, strlen(kdate), date, k1);
	hmac(k1, 32, r->region, k2);
	hmac(k2, 32, r->service, k3);
	hmac(k3, 32, "aws4_request", key);
	OPENSSL_cleanse(kdate, strlen(kdate));
	free(kdate);
	OPENSSL_cleanse(k1, sizeof(k1));
	OPENSSL_cleanse(k2, sizeof(k2));
	OPENSSL_cleanse(k3, sizeof(k3));
	return 0;
}

int sigv4_sign(const struct sigv4_req *r, struct sigv4_out *out)
{
	struct canon_hdr *h;
	struct sb canon = {0}, signed_hdrs = {0}, sts = {0}, auth = {0};
	char date[9], hash[65], scope[160];
	unsigned char key[32], sig[32];
	int rc = -1;

	memset(out, 0, sizeof(*out));
	h = canon_hdrs(r);
	if (!h)
		return -1;
	canonical_request(r, h, &canon, &signed_hdrs);
	if (!canon.s || !signed_hdrs.s)
		goto out_free;

	snprintf(date, sizeof(date), "%.8s", r->amz_date);
	snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, r->region, r->service);
	sigv4_sha256_hex(canon.s, canon.len, hash);
	sb_add(&sts, "AWS4-HMAC-SHA256\n");
	sb_add(&sts, r->amz_date);
	sb_add(&sts, "\n");
	sb_add(&sts, scope);
	sb_add(&sts, "\n");
	sb_add(&sts, hash);
	if (!sts.s || signing_key(r, date, key) != 0)
		goto out_free;
	hmac(key, 32, sts.s, sig);
	OPENSSL_cleanse(key, sizeof(key));
	hex(sig, 32, out->signature);

	sb_add(&auth, "AWS4-HMAC-SHA256 Credential=");
	sb_add(&auth, r->access_key);
	sb_add(&auth, "/");
	sb_add(&auth, scope);
	sb_add(&auth, ", SignedHeaders=");
	sb_add(&auth, signed_hdrs.s);
	sb_add(&auth, ", Signature=");
	sb_add(&auth, out->signature);
	if (!auth.s)
		goto out_free;
	out->canonical_request = canon.s;
	out->string_to_sign = sts.s;
	out->authorization = auth.s;
	canon.s = sts.s = auth.s = NULL;
	rc = 0;
out_free:
	free(canon.s);
	free(sts.s);
	free(auth.s);
	free(signed_hdrs.s);
	canon_hdrs_free(h, r->n_hdrs);
	return rc;
}

void sigv4_out_release(struct sigv4_out *out)
{
	free(out->canonical_request);
	free(out->string_to_sign);
	free(out->authorization);
	memset(out, 0, sizeof(*out));
}
