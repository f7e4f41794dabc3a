/* s3.c: the S3 client object: its lifetime, shared connections, handle pool, cancellation
 * and counters. Configuration is in s3_conf.c, one request in s3_req.c, retries in
 * s3_retry.c, the operations in s3_ops.c and s3_mpu.c. */
#include "ferry_s3.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "ferry_time.h"
#include "s3_internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
	struct ferry_s3 *s3 = arg;

	(void)h;
	(void)access;
	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&s3->share_lock[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
	struct ferry_s3 *s3 = arg;

	(void)h;
	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&s3->share_lock[data]);
}

struct ferry_s3 *ferry_s3_new(const struct ferry_s3_conf *conf, char *err, size_t errlen)
{
	struct ferry_s3 *s3;
	int i;

	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK) {
		snprintf(err, errlen, "cannot initialise libcurl: %s",
			 curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	if (!conf->bucket || !*conf->bucket) {
		snprintf(err, errlen, "no bucket configured (set [s3] bucket or BUCKET_NAME)");
		return NULL;
	}
	if (strlen(conf->bucket) > 255 ||
	    strspn(conf->bucket, "abcdefghijklmnopqrstuvwxyz" "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		   "0123456789.-_") != strlen(conf->bucket)) {
		snprintf(err, errlen, "bad bucket name '%.80s' (letters, digits, '.', '-', '_')",
			 conf->bucket);
		return NULL;
	}
	if (!conf->access_key || !*conf->access_key || !conf->secret_key || !*conf->secret_key) {
		snprintf(err, errlen, "no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
		return NULL;
	}
	s3 = calloc(1, sizeof(*s3));
	if (!s3) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ferry_s3_conf_init(&s3->conf);
	s3->conf = *conf;
	s3->conf.endpoint = conf->endpoint ? strdup(conf->endpoint) : NULL;
	s3->conf.region = strdup(conf->region ? conf->region : "us-east-1");
	s3->conf.bucket = strdup(conf->bucket);
	s3->conf.access_key = strdup(conf->access_key);
	s3->conf.secret_key = strdup(conf->secret_key);
	s3->conf.session_token = conf->session_token ? strdup(conf->session_token) : NULL;
	s3->conf.ca_bundle = conf->ca_bundle ? strdup(conf->ca_bundle) : NULL;
	s3->sign_region = s3->conf.region;
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&s3->share_lock[i], NULL);
	pthread_mutex_init(&s3->pool_lock, NULL);
	if (!s3->conf.region || !s3->conf.bucket || !s3->conf.access_key || !s3->conf.secret_key) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	if (s3_conf_endpoint(s3, err, errlen) != 0)
		goto out_free;
	s3->share = curl_share_init();
	if (!s3->share) {
		snprintf(err, errlen, "cannot create a libcurl share handle");
		goto out_free;
	}
	curl_share_setopt(s3->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(s3->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(s3->share, CURLSHOPT_USERDATA, s3);
	curl_share_setopt(s3->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(s3->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	curl_share_setopt(s3->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	if (getrandom(&s3->rng, sizeof(s3->rng), 0) != sizeof(s3->rng))
		s3->rng = (uint64_t)ferry_now_ms() ^ (uint64_t)getpid() << 32;
	return s3;
out_free:
	ferry_s3_free(s3);
	return NULL;
}

void ferry_s3_free(struct ferry_s3 *s3)
{
	int i;

	if (!s3)
		return;
	for (i = 0; i < s3->n_pool; i++)
		curl_easy_cleanup(s3->pool[i]);
	if (s3->share)
		curl_share_cleanup(s3->share);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&s3->share_lock[i]);
	pthread_mutex_destroy(&s3->pool_lock);
	free(s3->scheme);
	free(s3->host);
	free(s3->base_path);
	free(s3->store_name);
	ferry_s3_conf_release(&s3->conf);
	free(s3);
}

const char *ferry_s3_bucket(const struct ferry_s3 *s3)
{
	return s3->conf.bucket;
}

enum ferry_s3_dialect ferry_s3_dialect(const struct ferry_s3 *s3)
{
	return s3->dialect;
}

bool ferry_s3_multipart_fenced(const struct ferry_s3 *s3)
{
	return s3->dialect != FERRY_S3_DIALECT_GCS;
}

const char *ferry_s3_cond_spelling(const struct ferry_s3 *s3, bool create_only)
{
	if (s3->dialect == FERRY_S3_DIALECT_GCS)
		return create_only ? "x-goog-if-generation-match: 0" : "x-goog-if-generation-match";
	return create_only ? "If-None-Match: *" : "If-Match";
}

const char *ferry_s3_store_name(const struct ferry_s3 *s3)
{
	return s3->store_name;
}

int ferry_s3_state_path(const struct ferry_s3 *s3, const char *dir, const char *stem,
			char *out, size_t n)
{
	const char *parts[2] = { s3->store_name, ferry_s3_dialect_name(s3->dialect) };
	uint64_t h = 1469598103934665603ull;    /* FNV-1a */

	if (!dir || !*dir)
		return -1;
	for (int i = 0; i < 2; i++) {
		for (const char *p = parts[i]; *p; p++)
			h = (h ^ (unsigned char)*p) * 1099511628211ull;
		h = (h ^ '\n') * 1099511628211ull;
	}
	return snprintf(out, n, "%s/%s-%016" PRIx64 ".json", dir, stem, h) < (int)n ? 0 : -1;
}

void ferry_s3_set_cancel(struct ferry_s3 *s3, bool (*cancelled)(void *arg), void *arg)
{
	s3->cancelled = cancelled;
	s3->cancel_arg = arg;
}

bool s3_cancelled(struct ferry_s3 *s3)
{
	return s3->cancelled && s3->cancelled(s3->cancel_arg);
}

void ferry_s3_stats_get(struct ferry_s3 *s3, struct ferry_s3_stats *out)
{
	uint64_t *dst = (uint64_t *)out, *src = (uint64_t *)&s3->stats;
	size_t i;

	for (i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

CURL *s3_pool_get(struct ferry_s3 *s3)
{
	CURL *h = NULL;

	pthread_mutex_lock(&s3->pool_lock);
	if (s3->n_pool > 0)
		h = s3->pool[--s3->n_pool];
	pthread_mutex_unlock(&s3->pool_lock);
	if (h)
		curl_easy_reset(h);
	else
		h = curl_easy_init();
	return h;
}

void s3_pool_put(struct ferry_s3 *s3, CURL *h)
{
	pthread_mutex_lock(&s3->pool_lock);
	if (s3->n_pool < S3_POOL_MAX) {
		s3->pool[s3->n_pool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&s3->pool_lock);
	if (h)
		curl_easy_cleanup(h);
}
