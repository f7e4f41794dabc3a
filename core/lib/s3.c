/* s3.c: libferry's S3 client: configuration, request engine (libcurl), retries, operations. */
#include "ferry_s3.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "ferry_log.h"
#include "ferry_parse.h"
#include "ferry_time.h"
#include "s3_internal.h"

#define ERR_BODY_MAX   (256 * 1024)     /* error bodies and XML results kept in memory */
#define XML_BODY_MAX   (32 * 1024 * 1024)
#define POOL_MAX       64               /* idle easy handles kept for keep-alive reuse */

/* Copy with truncation (no format machinery, so no truncation warnings either). */
static void scopy(char *dst, size_t n, const char *src)
{
	size_t len = strnlen(src, n ? n - 1 : 0);

	if (!n)
		return;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* ---------------------------------------------------------------- configuration */

void ferry_buf_release(struct ferry_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void ferry_s3_conf_init(struct ferry_s3_conf *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->path_style = -1;
	conf->verify_tls = true;
	conf->connect_timeout_ms = 5000;
	conf->low_speed_time_s = 30;
	conf->low_speed_limit = 1;
	conf->request_timeout_ms = 0;
	conf->max_retries = 5;
	conf->retry_base_ms = 100;
	conf->retry_cap_ms = 5000;
}

static int set_str(char **dst, const char *v)
{
	char *d = v ? strdup(v) : NULL;

	if (v && !d)
		return -1;
	free(*dst);
	*dst = d;
	return 0;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

void ferry_s3_conf_from_env(struct ferry_s3_conf *conf)
{
	const char *v;

	v = env("AWS_ENDPOINT_URL_S3");
	if (!v)
		v = env("AWS_ENDPOINT_URL");
	if (v)
		set_str(&conf->endpoint, v);
	v = env("AWS_REGION");
	if (!v)
		v = env("AWS_DEFAULT_REGION");
	if (v)
		set_str(&conf->region, v);
	v = env("AWS_ACCESS_KEY_ID");
	if (v)
		set_str(&conf->access_key, v);
	v = env("AWS_SECRET_ACCESS_KEY");
	if (v)
		set_str(&conf->secret_key, v);
	v = env("AWS_SESSION_TOKEN");
	if (v)
		set_str(&conf->session_token, v);
	v = env("AWS_CA_BUNDLE");
	if (v)
		set_str(&conf->ca_bundle, v);
	v = env("BUCKET_NAME");
	if (v)
		set_str(&conf->bucket, v);
}

static const char *const conf_keys[] = {
	"endpoint", "region", "bucket", "path_style", "verify_tls", "ca_bundle",
	"connect_timeout", "low_speed_time", "low_speed_limit", "request_timeout",
	"max_retries", "retry_base", "retry_cap", NULL,
};

bool ferry_s3_conf_is_key(const char *key)
{
	size_t i;

	for (i = 0; key && conf_keys[i]; i++)
		if (strcmp(key, conf_keys[i]) == 0)
			return true;
	return false;
}

static int conf_duration(const char *key, const char *value, long *out, long unit_ms,
			 char *err, size_t errlen)
{
	uint64_t ms;

	if (ferry_parse_duration_ms(value, &ms) != 0 || ms / (uint64_t)unit_ms > 86400000ULL) {
		snprintf(err, errlen, "bad duration '%s' for '%s' (e.g. 500ms, 5s, 2m)", value, key);
		return -1;
	}
	*out = (long)(ms / (uint64_t)unit_ms);
	return 0;
}

int ferry_s3_conf_set(struct ferry_s3_conf *conf, const char *key, const char *value,
		      char *err, size_t errlen)
{
	bool b;
	int64_t i;
	uint64_t u;

	if (!value)
		value = "";
	if (!strcmp(key, "endpoint")) {
		if (*value && strncmp(value, "http://", 7) && strncmp(value, "https://", 8)) {
			snprintf(err, errlen, "bad endpoint '%s' (expected http://HOST[:PORT] or https://...)", value);
			return -1;
		}
		return set_str(&conf->endpoint, *value ? value : NULL);
	}
	if (!strcmp(key, "region"))
		return set_str(&conf->region, *value ? value : NULL);
	if (!strcmp(key, "bucket"))
		return set_str(&conf->bucket, *value ? value : NULL);
	if (!strcmp(key, "ca_bundle"))
		return set_str(&conf->ca_bundle, *value ? value : NULL);
	if (!strcmp(key, "path_style")) {
		if (!strcasecmp(value, "auto")) {
			conf->path_style = -1;
		} else if (ferry_parse_bool(value, &b) == 0) {
			conf->path_style = b ? 1 : 0;
		} else {
			snprintf(err, errlen, "bad value '%s' for 'path_style' (true, false or auto)", value);
			return -1;
		}
		return 0;
	}
	if (!strcmp(key, "verify_tls")) {
		if (ferry_parse_bool(value, &b) != 0) {
			snprintf(err, errlen, "bad boolean '%s' for 'verify_tls'", value);
			return -1;
		}
		conf->verify_tls = b;
		return 0;
	}
	if (!strcmp(key, "connect_timeout"))
		return conf_duration(key, value, &conf->connect_timeout_ms, 1, err, errlen);
	if (!strcmp(key, "request_timeout"))
		return conf_duration(key, value, &conf->request_timeout_ms, 1, err, errlen);
	if (!strcmp(key, "retry_base"))
		return conf_duration(key, value, &conf->retry_base_ms, 1, err, errlen);
	if (!strcmp(key, "retry_cap"))
		return conf_duration(key, value, &conf->retry_cap_ms, 1, err, errlen);
	if (!strcmp(key, "low_speed_time")) {
		if (conf_duration(key, value, &conf->low_speed_time_s, 1000, err, errlen) != 0)
			return -1;
		if (conf->low_speed_time_s < 1)
			conf->low_speed_time_s = 1;     /* curl counts whole seconds */
		return 0;
	}
	if (!strcmp(key, "low_speed_limit")) {
		if (ferry_parse_size(value, &u) != 0 || u > 0x7fffffff) {
			snprintf(err, errlen, "bad size '%s' for 'low_speed_limit' (bytes/s, e.g. 1, 10KiB)", value);
			return -1;
		}
		conf->low_speed_limit = (long)u;
		return 0;
	}
	if (!strcmp(key, "max_retries")) {
		if (ferry_parse_int(value, &i) != 0 || i < 0 || i > 100) {
			snprintf(err, errlen, "bad value '%s' for 'max_retries' (0..100)", value);
			return -1;
		}
		conf->max_retries = (int)i;
		return 0;
	}
	snprintf(err, errlen, "unknown key '%s' in [s3]", key);
	return -1;
}

void ferry_s3_conf_release(struct ferry_s3_conf *conf)
{
	free(conf->endpoint);
	free(conf->region);
	free(conf->bucket);
	if (conf->access_key)
		OPENSSL_cleanse(conf->access_key, strlen(conf->access_key));
	free(conf->access_key);
	if (conf->secret_key)
		OPENSSL_cleanse(conf->secret_key, strlen(conf->secret_key));
	free(conf->secret_key);
	if (conf->session_token)
		OPENSSL_cleanse(conf->session_token, strlen(conf->session_token));
	free(conf->session_token);
	free(conf->ca_bundle);
	memset(conf, 0, sizeof(*conf));
}

/* ---------------------------------------------------------------- the client */

struct ferry_s3 {
	struct ferry_s3_conf conf;          /* private copy */
	char *scheme;                       /* "http" or "https" */
	char *host;                         /* Host header: host[:port], bucket. prefix if vhost */
	char *base_path;                    /* endpoint path without trailing '/', often "" */
	bool https;
	bool loopback;                      /* 127.0.0.0/8, ::1 or localhost */
	bool path_style;                    /* resolved from conf->path_style */
	char *sign_region;                  /* region used in the credential scope */
	CURLSH *share;                      /* DNS, connections, TLS sessions */
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock;
	CURL *pool[POOL_MAX];               /* idle easy handles (keep their connections warm) */
	int n_pool;
	bool (*cancelled)(void *arg);       /* set once before use by many threads */
	void *cancel_arg;
	struct ferry_s3_stats stats;        /* updated with __atomic adds */
	uint64_t rng;                       /* jitter state, __atomic */
};

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

static bool is_ip_or_local(const char *host)
{
	const char *p;
	bool digits_dots = true;

	if (host[0] == '[' || !strcasecmp(host, "localhost"))
		return true;
	for (p = host; *p; p++)
		if (!((*p >= '0' && *p <= '9') || *p == '.'))
			digits_dots = false;
	return digits_dots;
}

/* 127.0.0.0/8, ::1 or localhost: the only endpoints a disabled TLS check is allowed for. */
static bool is_loopback(const char *host)
{
	return !strcasecmp(host, "localhost") || !strcmp(host, "[::1]") ||
	       (!strncmp(host, "127.", 4) && is_ip_or_local(host));
}

static bool ends_with(const char *s, const char *sfx)
{
	size_t a = strlen(s), b = strlen(sfx);

	return a >= b && strcasecmp(s + a - b, sfx) == 0;
}

/* Split the endpoint into scheme, host[:port] and a base path, and pick the style. */
static int s3_endpoint(struct ferry_s3 *s3, char *err, size_t errlen)
{
	const struct ferry_s3_conf *c = &s3->conf;
	char *url = NULL, *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	CURLU *u;
	bool aws;
	int rc = -1;
	size_t n;

	if (c->endpoint) {
		url = strdup(c->endpoint);
	} else if (asprintf(&url, "https://s3.%s.amazonaws.com",
			    c->region && strcmp(c->region, "auto") ? c->region : "us-east-1") < 0) {
		url = NULL;
	}
	u = curl_url();
	if (!url || !u) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") && strcmp(scheme, "https"))) {
		snprintf(err, errlen, "bad endpoint '%s' (expected http[s]://HOST[:PORT])", url);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
		port = NULL;
	if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
		path = NULL;
	s3->https = !strcmp(scheme, "https");
	s3->loopback = is_loopback(host);
	s3->scheme = strdup(scheme);
	if (!c->verify_tls && !s3->loopback) {
		snprintf(err, errlen, "verify_tls = false is allowed only for a loopback endpoint "
			 "(127.0.0.0/8, ::1, localhost), not '%s'", host);
		goto out;
	}
	if (!c->verify_tls)
		ferry_logf(FERRY_WARN, "s3", "TLS certificate verification is disabled "
			   "(verify_tls = false)", "host=%s", host);
	else if (!s3->https && !s3->loopback)
		ferry_logf(FERRY_WARN, "s3", "endpoint is plain http: object data crosses the "
			   "network unencrypted (requests are still signed)", "host=%s", host);
	aws = !c->endpoint || ends_with(host, ".amazonaws.com");
	if (c->path_style >= 0)
		s3->path_style = c->path_style == 1;
	else
		/* virtual-host on AWS, except bucket names with dots (TLS wildcard mismatch) */
		s3->path_style = !aws || is_ip_or_local(host) || strchr(c->bucket, '.');
	if (asprintf(&s3->host, "%s%s%s%s%s", s3->path_style ? "" : c->bucket,
		     s3->path_style ? "" : ".", host, port ? ":" : "", port ? port : "") < 0) {
		s3->host = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	s3->base_path = strdup(path ? path : "");
	if (!s3->scheme || !s3->base_path) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	n = strlen(s3->base_path);
	while (n && s3->base_path[n - 1] == '/')
		s3->base_path[--n] = '\0';
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	free(url);
	return rc;
}

struct ferry_s3 *ferry_s3_new(const struct ferry_s3_conf *conf, char *err, size_t errlen)
{
	struct ferry_s3 *s3;
	int i;

	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK) {
		snprintf(err, errlen, "cannot initialise libcurl: %s", curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	if (!conf->bucket || !*conf->bucket) {
		snprintf(err, errlen, "no bucket configured (set [s3] bucket or BUCKET_NAME)");
		return NULL;
	}
	if (strlen(conf->bucket) > 255 ||
	    strspn(conf->bucket, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
	    strlen(conf->bucket)) {
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
	if (s3_endpoint(s3, err, errlen) != 0)
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
		s3->rng = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
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
	ferry_s3_conf_release(&s3->conf);
	free(s3);
}

const char *ferry_s3_bucket(const struct ferry_s3 *s3)
{
	return s3->conf.bucket;
}

void ferry_s3_set_cancel(struct ferry_s3 *s3, bool (*cancelled)(void *arg), void *arg)
{
	s3->cancelled = cancelled;
	s3->cancel_arg = arg;
}

static bool s3_cancelled(struct ferry_s3 *s3)
{
	return s3->cancelled && s3->cancelled(s3->cancel_arg);
}

#define STAT_ADD(s3, field, n) __atomic_add_fetch(&(s3)->stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

void ferry_s3_stats_get(struct ferry_s3 *s3, struct ferry_s3_stats *out)
{
	uint64_t *dst = (uint64_t *)out, *src = (uint64_t *)&s3->stats;
	size_t i;

	for (i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

static CURL *pool_get(struct ferry_s3 *s3)
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

static void pool_put(struct ferry_s3 *s3, CURL *h)
{
	pthread_mutex_lock(&s3->pool_lock);
	if (s3->n_pool < POOL_MAX) {
		s3->pool[s3->n_pool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&s3->pool_lock);
	if (h)
		curl_easy_cleanup(h);
}

/* ---------------------------------------------------------------- one request */

#define RC_AMBIGUOUS (-100)             /* internal: transient failure of a non-idempotent request */
#define MAX_HDRS 8

struct req {
	const char *method;                 /* HTTP method */
	const char *op;                     /* for messages: "PUT", "GET", "LIST", ... */
	const char *key;                    /* object key, NULL for bucket-level requests */
	const struct sigv4_kv *query; /* raw query parameters */
	size_t n_query;
	struct sigv4_kv hdrs[MAX_HDRS]; /* extra headers, all signed */
	size_t n_hdrs;
	const char *body;                   /* request body from memory, or */
	int fd;                             /* from fd (fd >= 0) at fd_off */
	off_t fd_off;
	uint64_t body_len;
	ferry_s3_sink sink;                 /* where a 2xx body goes (else: into xfer.body) */
	void *sink_arg;
	size_t keep_max;                    /* cap of the kept body */
	bool idempotent;                    /* may be resent blindly */
	bool ranged;                        /* GET with a range: range_off/range_len */
	uint64_t range_off;
	uint64_t range_len;                 /* 0 = to the end */
	const char *if_match;               /* GET: caller's pin (resumes pin the seen ETag) */
};

struct xfer {
	struct ferry_s3 *s3;
	struct req *rq;
	struct ferry_s3_res *res;
	long status;                        /* from the status line (last one wins) */
	struct ferry_buf body;              /* error body, or the kept 2xx body */
	uint64_t up_pos;                    /* request body bytes handed to curl */
	uint64_t delivered;                 /* 2xx body bytes handed to the sink (all attempts) */
	uint64_t got_this_attempt;
	bool sink_stop;                     /* the sink asked to stop */
	bool overflow;                      /* kept body exceeded keep_max */
	bool read_failed;                   /* the request body could not be read */
	bool stalled;                       /* on_progress gave up: nothing moved for too long */
	int64_t stall_ms;                   /* the limit it gave up at */
	int64_t win_ms;                     /* stall watch: start of the current window */
	curl_off_t win_bytes;               /* bytes moved (both ways) when it started */
	char etag[80];                      /* of this response */
	char errbuf[CURL_ERROR_SIZE];
	char read_err[128];
};

static int buf_append(struct ferry_buf *b, const void *data, size_t len, size_t max)
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

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
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
		scopy(x->etag, sizeof(x->etag), value);
		scopy(res->etag, sizeof(res->etag), value);
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
	} else if (!strcasecmp(name, "x-amz-request-id") ||
		   (!strcasecmp(name, "x-amzn-requestid") && !res->request_id[0])) {
		scopy(res->request_id, sizeof(res->request_id), value);
	}
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
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
	if (buf_append(&x->body, data, len, ok && x->rq->keep_max ? x->rq->keep_max : ERR_BODY_MAX) != 0) {
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
	struct xfer *x = arg;
	const struct req *rq = x->rq;
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
	struct xfer *x = arg;

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
static int64_t reply_wait_ms(const struct ferry_s3 *s3, const struct req *rq)
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
	struct xfer *x = arg;
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

/* Scrub every credential from a message we are about to hand out. */
static void scrub(const struct ferry_s3 *s3, char *msg)
{
	const char *secrets[3] = { s3->conf.access_key, s3->conf.secret_key, s3->conf.session_token };
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

static const char *what_of(const struct req *rq)
{
	return rq->key ? rq->key : "";
}

static void set_msg(struct ferry_s3 *s3, const struct req *rq, struct ferry_s3_res *res,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void set_msg(struct ferry_s3 *s3, const struct req *rq, struct ferry_s3_res *res,
		    const char *fmt, ...)
{
	char tail[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tail, sizeof(tail), fmt, ap);
	va_end(ap);
	if (rq->key)
		snprintf(res->msg, sizeof(res->msg), "%s '%s': %s", rq->op, what_of(rq), tail);
	else
		snprintf(res->msg, sizeof(res->msg), "%s s3://%s: %s", rq->op, s3->conf.bucket, tail);
	scrub(s3, res->msg);
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

/* Worth another try: server trouble and throttling, and S3's idle-socket 400. */
static bool transient_status(long status, const char *code)
{
	return status >= 500 || status == 429 ||
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

static char *object_path(struct ferry_s3 *s3, const char *key)
{
	char *enc = sigv4_uri_encode(key ? key : "", true), *path = NULL;

	if (!enc)
		return NULL;
	if (s3->path_style) {
		if (asprintf(&path, "%s/%s%s%s", s3->base_path, s3->conf.bucket, key ? "/" : "", enc) < 0)
			path = NULL;
	} else if (asprintf(&path, "%s/%s", s3->base_path, enc) < 0) {
		path = NULL;
	}
	free(enc);
	return path;
}

/* The body's SHA-256 (hex) for x-amz-content-sha256. */
static int payload_hash(struct ferry_s3 *s3, const struct req *rq, char hex[65], char *why, size_t wl)
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

static struct curl_slist *add_hdr(struct curl_slist *l, bool *oom, const char *name, const char *value)
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

static void count_request(struct ferry_s3 *s3, const struct req *rq)
{
	size_t i;

	STAT_ADD(s3, requests, 1);
	for (i = 0; i < rq->n_hdrs; i++) {
		if (!strcasecmp(rq->hdrs[i].name, "x-amz-copy-source")) {
			STAT_ADD(s3, copies, 1);
			return;
		}
	}
	if (!strcmp(rq->method, "GET") && rq->key)
		STAT_ADD(s3, gets, 1);
	else if (!strcmp(rq->method, "GET"))
		STAT_ADD(s3, lists, 1);
	else if (!strcmp(rq->method, "PUT"))
		STAT_ADD(s3, puts, 1);
	else if (!strcmp(rq->method, "HEAD"))
		STAT_ADD(s3, heads, 1);
	else if (!strcmp(rq->method, "DELETE"))
		STAT_ADD(s3, deletes, 1);
	else if (!strcmp(rq->method, "POST"))
		STAT_ADD(s3, posts, 1);
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

/* Send the request once. Returns an rc, RC_AMBIGUOUS-worthy failures flagged in *transient. */
static int perform_once(struct ferry_s3 *s3, struct xfer *x, bool *transient)
{
	struct req *rq = x->rq;
	struct ferry_s3_res *res = x->res;
	struct sigv4_kv sh[MAX_HDRS + 6];
	struct sigv4_out sig = { 0 };
	struct sigv4_req sr;
	struct curl_slist *hl = NULL;
	char amz_date[17], hash[65], range[64], why[256] = "";
	char *path = NULL, *query = NULL, *url = NULL;
	const char *pin = rq->if_match;
	time_t now = time(NULL);
	struct tm tm;
	size_t nh = 0, i;
	bool oom = false;
	CURL *h = NULL;
	CURLcode cc;
	int rc = FERRY_S3_ERROR;

	*transient = false;
	x->status = 0;
	x->etag[0] = '\0';
	x->up_pos = 0;
	x->got_this_attempt = 0;
	x->stalled = false;
	x->win_ms = 0;
	x->sink_stop = x->overflow = x->read_failed = false;
	x->errbuf[0] = '\0';
	x->body.len = 0;
	if (x->body.data)
		x->body.data[0] = '\0';
	res->code[0] = '\0';

	gmtime_r(&now, &tm);
	strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
	if (payload_hash(s3, rq, hash, why, sizeof(why)) != 0) {
		set_msg(s3, rq, res, "%s", why);
		return FERRY_S3_ERROR;
	}
	path = object_path(s3, rq->key);
	query = sigv4_query(rq->query, rq->n_query);
	if (!path || !query)
		goto out_oom;
	if (asprintf(&url, "%s://%s%s%s%s", s3->scheme, s3->host, path, *query ? "?" : "", query) < 0) {
		url = NULL;
		goto out_oom;
	}
	sh[nh++] = (struct sigv4_kv){ "host", s3->host };
	sh[nh++] = (struct sigv4_kv){ "x-amz-date", amz_date };
	sh[nh++] = (struct sigv4_kv){ "x-amz-content-sha256", hash };
	if (s3->conf.session_token)
		sh[nh++] = (struct sigv4_kv){ "x-amz-security-token", s3->conf.session_token };
	if (rq->ranged && (rq->range_off + x->delivered || rq->range_len)) {
		uint64_t from = rq->range_off + x->delivered;

		if (rq->range_len)
			snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, from,
				 rq->range_off + rq->range_len - 1);
		else
			snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", from);
		sh[nh++] = (struct sigv4_kv){ "range", range };
	}
	/* a resumed GET is pinned to the version it started on: never a torn mix */
	if (rq->sink && x->delivered && !pin && res->etag[0])
		pin = res->etag;
	if (pin)
		sh[nh++] = (struct sigv4_kv){ "if-match", pin };
	for (i = 0; i < rq->n_hdrs && nh < sizeof(sh) / sizeof(sh[0]); i++)
		sh[nh++] = rq->hdrs[i];
	sr = (struct sigv4_req){
		.method = rq->method, .path = path, .query = query, .hdrs = sh, .n_hdrs = nh,
		.payload_hash = hash, .amz_date = amz_date, .region = s3->sign_region,
		.service = "s3", .access_key = s3->conf.access_key, .secret_key = s3->conf.secret_key,
	};
	if (sigv4_sign(&sr, &sig) != 0)
		goto out_oom;
	for (i = 0; i < nh; i++)
		hl = add_hdr(hl, &oom, sh[i].name, sh[i].value);
	hl = add_hdr(hl, &oom, "Authorization", sig.authorization);
	if (!oom) {
		struct curl_slist *n = curl_slist_append(hl, "Expect:");  /* no 100-continue round trip */

		if (n)
			hl = n;
		else
			oom = true;
	}
	if (oom)
		goto out_oom;

	h = pool_get(s3);
	if (!h)
		goto out_oom;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);   /* keys are opaque: no dot-segment folding */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
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

	count_request(s3, rq);
	res->attempts++;
	cc = perform_transfer(s3, h);
	STAT_ADD(s3, bytes_up, x->up_pos);
	{
		curl_off_t down = 0;

		curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &down);
		STAT_ADD(s3, bytes_down, down > 0 ? down : 0);
	}
	res->status = x->status;
	if (x->read_failed) {
		set_msg(s3, rq, res, "%s", x->read_err);
		rc = FERRY_S3_ERROR;
		goto out;
	}
	if (cc == CURLE_ABORTED_BY_CALLBACK && x->stalled) {
		*transient = true;
		set_msg(s3, rq, res, "no progress for %" PRId64 " s (low_speed_time)",
			x->stall_ms / 1000);
		rc = FERRY_S3_ERROR;
		goto out;
	}
	if (cc == CURLE_ABORTED_BY_CALLBACK || (cc != CURLE_OK && s3_cancelled(s3))) {
		set_msg(s3, rq, res, "cancelled");
		rc = FERRY_S3_CANCELLED;
		goto out;
	}
	if (cc == CURLE_WRITE_ERROR && x->sink_stop) {
		set_msg(s3, rq, res, "stopped by the receiver after %" PRIu64 " bytes", x->delivered);
		rc = FERRY_S3_ERROR;
		goto out;
	}
	if (cc == CURLE_WRITE_ERROR && x->overflow) {
		set_msg(s3, rq, res, "response body too large");
		rc = FERRY_S3_ERROR;
		goto out;
	}
	if (cc != CURLE_OK) {
		*transient = transient_curl(cc) || cc == CURLE_SEND_FAIL_REWIND;
		set_msg(s3, rq, res, "%s%s%s", curl_easy_strerror(cc), x->errbuf[0] ? ": " : "", x->errbuf);
		rc = FERRY_S3_ERROR;
		goto out;
	}
	if (x->status >= 200 && x->status < 300) {
		rc = FERRY_S3_OK;
		goto out;
	}
	/* an error answer: S3's XML error body when there is one */
	{
		char message[256] = "";
		char reqid[80] = "";

		if (x->body.len &&
		    s3xml_error(x->body.data, x->body.len, res->code, sizeof(res->code),
				      message, sizeof(message), reqid, sizeof(reqid)) == 0) {
			if (reqid[0])
				scopy(res->request_id, sizeof(res->request_id), reqid);
		} else {
			res->code[0] = '\0';
		}
		if (!res->code[0])
			scopy(res->code, sizeof(res->code), x->status == 404 ? "NotFound" :
				 x->status == 412 ? "PreconditionFailed" : "");
		set_msg(s3, rq, res, "%ld %s%s%s%s%s%s", x->status,
			res->code[0] ? res->code : status_text(x->status),
			message[0] ? ": " : "", message,
			res->request_id[0] ? " (request id " : "", res->request_id,
			res->request_id[0] ? ")" : "");
		*transient = transient_status(x->status, res->code);
		rc = rc_of_status(x->status);
	}
	goto out;
out_oom:
	set_msg(s3, rq, res, "out of memory");
	rc = FERRY_S3_ERROR;
out:
	if (h) {
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
		pool_put(s3, h);
	}
	curl_slist_free_all(hl);
	sigv4_out_release(&sig);
	free(url);
	free(query);
	free(path);
	return rc;
}

static uint64_t rng_next(struct ferry_s3 *s3)
{
	/* splitmix64 over an atomic counter: threads never share a draw */
	uint64_t z = __atomic_add_fetch(&s3->rng, 0x9e3779b97f4a7c15ULL, __ATOMIC_RELAXED);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Full-jitter backoff: uniform in [0, min(cap, base * 2^attempt)]. False if cancelled. */
static bool backoff(struct ferry_s3 *s3, int attempt)
{
	uint64_t ceil_ms = (uint64_t)(s3->conf.retry_base_ms > 0 ? s3->conf.retry_base_ms : 1);
	uint64_t ms;

	while (attempt-- > 0 && ceil_ms < (uint64_t)s3->conf.retry_cap_ms)
		ceil_ms *= 2;
	if (ceil_ms > (uint64_t)s3->conf.retry_cap_ms)
		ceil_ms = (uint64_t)s3->conf.retry_cap_ms;
	ms = rng_next(s3) % (ceil_ms + 1);
	while (ms > 0) {
		uint64_t step = ms < 20 ? ms : 20;
		struct timespec ts = { 0, (long)step * 1000000L };

		if (s3_cancelled(s3))
			return false;
		nanosleep(&ts, NULL);
		ms -= step;
	}
	return !s3_cancelled(s3);
}

static void res_reset(struct ferry_s3_res *res)
{
	memset(res, 0, sizeof(*res));
}

/* Send with retries. Non-idempotent requests return RC_AMBIGUOUS on a transient failure
 * (the caller decides by reading back); idempotent ones are resent up to max_retries. */
static int s3_do(struct ferry_s3 *s3, struct req *rq, struct ferry_s3_res *res, struct ferry_buf *keep)
{
	struct xfer x = { .s3 = s3, .rq = rq, .res = res };
	int rc, attempt = 0;
	bool transient;

	for (;;) {
		bool resumed = rq->sink && x.delivered > 0;

		rc = perform_once(s3, &x, &transient);
		/* a resumed read starting at the end of the (pinned) version: nothing was missing */
		if (resumed && rc == FERRY_S3_RANGE) {
			res->msg[0] = '\0';
			res->code[0] = '\0';
			rc = FERRY_S3_OK;
			break;
		}
		/* the connection died after the last byte of the range: we have it all */
		if (transient && rq->sink && rq->range_len && x.delivered >= rq->range_len) {
			res->msg[0] = '\0';
			rc = FERRY_S3_OK;
			break;
		}
		if (!transient)
			break;
		if (!rq->idempotent) {
			rc = RC_AMBIGUOUS;
			break;
		}
		if (attempt >= s3->conf.max_retries) {
			size_t n = strlen(res->msg);

			snprintf(res->msg + n, sizeof(res->msg) - n, " (after %d attempts)", res->attempts);
			break;
		}
		STAT_ADD(s3, retries, 1);
		ferry_logf(FERRY_DEBUG, "s3", "retrying", "op=%s attempt=%d status=%ld why=\"%s\"",
			   rq->op, res->attempts, res->status, res->msg);
		if (!backoff(s3, attempt++)) {
			set_msg(s3, rq, res, "cancelled");
			rc = FERRY_S3_CANCELLED;
			break;
		}
	}
	if (keep && rc == FERRY_S3_OK) {
		*keep = x.body;
		x.body.data = NULL;
	}
	ferry_buf_release(&x.body);
	return rc;
}

static void req_init(struct req *rq, const char *method, const char *op, const char *key)
{
	memset(rq, 0, sizeof(*rq));
	rq->method = method;
	rq->op = op;
	rq->key = key;
	rq->fd = -1;
	rq->idempotent = true;
}

/* Start a public call: the caller's result (or its local one) reset, rq initialised. */
static struct ferry_s3_res *req_begin(struct req *rq, const char *method, const char *op,
				      const char *key, struct ferry_s3_res *res,
				      struct ferry_s3_res *local)
{
	if (!res)
		res = local;
	res_reset(res);
	req_init(rq, method, op, key);
	return res;
}

static void req_hdr(struct req *rq, const char *name, const char *value)
{
	if (value && rq->n_hdrs < MAX_HDRS)
		rq->hdrs[rq->n_hdrs++] = (struct sigv4_kv){ name, value };
}

static void req_cond(struct req *rq, const struct ferry_s3_cond *cond)
{
	if (!cond)
		return;
	req_hdr(rq, "if-match", cond->if_match);
	req_hdr(rq, "if-none-match", cond->if_none_match);
}

static bool is_conditional(const struct ferry_s3_cond *cond)
{
	return cond && (cond->if_match || cond->if_none_match);
}

/* ---------------------------------------------------------------- reads */

int ferry_s3_head(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		  struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct req rq;

	res = req_begin(&rq, "HEAD", "HEAD", key, res, &local);
	req_cond(&rq, cond);
	return s3_do(s3, &rq, res, NULL);
}

int ferry_s3_get(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		 uint64_t off, uint64_t len, ferry_s3_sink sink, void *arg,
		 struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct req rq;

	res = req_begin(&rq, "GET", "GET", key, res, &local);
	if (cond) {
		rq.if_match = cond->if_match;
		req_hdr(&rq, "if-none-match", cond->if_none_match);
	}
	rq.ranged = true;
	rq.range_off = off;
	rq.range_len = len;
	rq.sink = sink;
	rq.sink_arg = arg;
	return s3_do(s3, &rq, res, NULL);
}

struct buf_sink {
	struct ferry_buf *b;
	uint64_t max;
};

static int buf_sink(void *arg, const void *data, size_t len)
{
	struct buf_sink *bs = arg;

	return buf_append(bs->b, data, len, (size_t)bs->max);
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
	char *dst;
	size_t cap;
	size_t got;
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

/* ---------------------------------------------------------------- conditional writes */

enum verdict { V_OURS, V_RESEND, V_PRECOND, V_UNKNOWN };

/* Compares the stored object with our body while it streams in. */
struct cmp_sink {
	const struct req *rq;               /* our body */
	uint64_t pos;
	bool differs;
	char chunk[64 * 1024];
};

static int cmp_sink(void *arg, const void *data, size_t len)
{
	struct cmp_sink *c = arg;
	const struct req *rq = c->rq;
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
				return -1;      /* cannot tell: stays V_UNKNOWN */
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
static enum verdict verify_put(struct ferry_s3 *s3, const struct req *put, struct ferry_s3_res *out)
{
	struct cmp_sink *c = calloc(1, sizeof(*c));
	struct ferry_s3_res r;
	enum verdict v = V_UNKNOWN;
	int rc;

	if (!c)
		return V_UNKNOWN;
	c->rq = put;
	rc = ferry_s3_get(s3, put->key, NULL, 0, 0, cmp_sink, c, &r);
	if (rc == FERRY_S3_NOTFOUND)
		v = V_RESEND;
	else if (c->differs || (rc == FERRY_S3_OK && c->pos != put->body_len))
		v = V_RESEND;               /* not ours: the server re-judges the condition */
	else if (rc == FERRY_S3_OK) {
		v = V_OURS;
		scopy(out->etag, sizeof(out->etag), r.etag);
		out->last_modified = r.last_modified;
		out->date = r.date;
		out->size = r.size;
	}
	out->attempts += r.attempts;
	free(c);
	return v;
}

typedef enum verdict (*verify_fn)(struct ferry_s3 *s3, const struct req *rq, void *arg,
				  struct ferry_s3_res *res);

static enum verdict verify_put_cb(struct ferry_s3 *s3, const struct req *rq, void *arg,
				  struct ferry_s3_res *res)
{
	(void)arg;
	return verify_put(s3, rq, res);
}

/* A write that must not be resent blindly: after an ambiguous outcome, or a 412/404
 * that may be the echo of our own earlier attempt, read back and decide. */
static int s3_do_cond(struct ferry_s3 *s3, struct req *rq, struct ferry_s3_res *res,
		      verify_fn verify, void *varg, struct ferry_buf *keep)
{
	bool resent = false;
	int attempt = 0, rc;
	enum verdict v;

	rq->idempotent = false;
	for (;;) {
		rc = s3_do(s3, rq, res, keep);
		if (rc == FERRY_S3_OK || rc == FERRY_S3_CANCELLED)
			return rc;
		if ((rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_NOTFOUND) && resent) {
			char msg[sizeof(res->msg)];

			scopy(msg, sizeof(msg), res->msg);
			v = verify(s3, rq, varg, res);
			if (v == V_OURS) {
				res->status = 200;
				res->code[0] = '\0';
				res->msg[0] = '\0';
				ferry_logf(FERRY_INFO, "s3", "conditional write confirmed by read-back",
					   "op=%s key=\"%s\" attempts=%d", rq->op, what_of(rq), res->attempts);
				return FERRY_S3_OK;
			}
			scopy(res->msg, sizeof(res->msg), msg);
			return rc;
		}
		if (rc != RC_AMBIGUOUS)
			return rc;
		{
			char msg[sizeof(res->msg)];

			scopy(msg, sizeof(msg), res->msg);
			v = verify(s3, rq, varg, res);
			if (v == V_OURS) {
				res->status = 200;
				res->code[0] = '\0';
				res->msg[0] = '\0';
				ferry_logf(FERRY_INFO, "s3", "ambiguous write confirmed by read-back",
					   "op=%s key=\"%s\" attempts=%d why=\"%s\"", rq->op, what_of(rq),
					   res->attempts, msg);
				return FERRY_S3_OK;
			}
			if (v == V_PRECOND) {
				if (snprintf(res->msg, sizeof(res->msg), "%s '%s': 412 PreconditionFailed: "
					 "the object changed under an ambiguous write (%s)", rq->op,
					 what_of(rq), msg) < 0)
					res->msg[0] = '\0';
				scrub(s3, res->msg);
				res->status = 412;
				return FERRY_S3_PRECONDITION;
			}
			if (attempt >= s3->conf.max_retries) {
				if (snprintf(res->msg, sizeof(res->msg), "%s (outcome unknown after %d attempts)",
					     msg, res->attempts) < 0)
					res->msg[0] = '\0';
				return FERRY_S3_ERROR;
			}
			ferry_logf(FERRY_DEBUG, "s3", "resending conditional write after read-back",
				   "op=%s attempt=%d why=\"%s\"", rq->op, res->attempts, msg);
		}
		STAT_ADD(s3, retries, 1);
		if (!backoff(s3, attempt++)) {
			set_msg(s3, rq, res, "cancelled");
			return FERRY_S3_CANCELLED;
		}
		resent = true;
	}
}

static int put_common(struct ferry_s3 *s3, struct req *rq, const struct ferry_s3_cond *cond,
		      struct ferry_s3_res *res)
{
	req_cond(rq, cond);
	if (!is_conditional(cond))
		return s3_do(s3, rq, res, NULL);
	return s3_do_cond(s3, rq, res, verify_put_cb, NULL, NULL);
}

int ferry_s3_put(struct ferry_s3 *s3, const char *key, const void *data, size_t len,
		 const struct ferry_s3_cond *cond, struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct req rq;

	res = req_begin(&rq, "PUT", "PUT", key, res, &local);
	rq.body = data ? data : "";
	rq.body_len = len;
	return put_common(s3, &rq, cond, res);
}

int ferry_s3_put_fd(struct ferry_s3 *s3, const char *key, int fd, off_t off, uint64_t len,
		    const struct ferry_s3_cond *cond, struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct req rq;

	res = req_begin(&rq, "PUT", "PUT", key, res, &local);
	rq.fd = fd;
	rq.fd_off = off;
	rq.body_len = len;
	return put_common(s3, &rq, cond, res);
}

/* After an ambiguous conditional DELETE: gone is done; the same ETag means it never
 * happened; another ETag means someone else's object is there now. */
static enum verdict verify_delete(struct ferry_s3 *s3, const struct req *rq, void *arg,
				  struct ferry_s3_res *res)
{
	const char *if_match = arg;
	struct ferry_s3_res r;
	int rc = ferry_s3_head(s3, rq->key, NULL, &r);

	res->attempts += r.attempts;
	if (rc == FERRY_S3_NOTFOUND)
		return V_OURS;
	if (rc != FERRY_S3_OK)
		return V_UNKNOWN;
	return !strcmp(r.etag, if_match) ? V_RESEND : V_PRECOND;
}

int ferry_s3_delete(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
		    struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct req rq;
	int rc;

	res = req_begin(&rq, "DELETE", "DELETE", key, res, &local);
	req_cond(&rq, cond);
	if (cond && cond->if_match) {
		rc = s3_do_cond(s3, &rq, res, verify_delete, (void *)cond->if_match, NULL);
		/* resent after our own first delete landed: the key is gone, as we wanted */
		return rc;
	}
	rc = s3_do(s3, &rq, res, NULL);
	if (rc == FERRY_S3_NOTFOUND && !is_conditional(cond)) {
		res->msg[0] = '\0';
		rc = FERRY_S3_OK;
	}
	return rc;
}

/* CopyObject and UploadPartCopy answer 200 and may still fail (an Error body). */
static int check_200_error(struct ferry_s3 *s3, struct req *rq, struct ferry_buf *body,
			   struct ferry_s3_res *res)
{
	char root[64] = "", message[256] = "";

	if (!body->len || s3xml_root(body->data, body->len, root, sizeof(root)) != 0)
		return FERRY_S3_OK;
	if (strcmp(root, "Error"))
		return FERRY_S3_OK;
	s3xml_error(body->data, body->len, res->code, sizeof(res->code), message,
			  sizeof(message), res->request_id, sizeof(res->request_id));
	set_msg(s3, rq, res, "200 with error %s: %s%s%s%s", res->code, message,
		res->request_id[0] ? " (request id " : "", res->request_id,
		res->request_id[0] ? ")" : "");
	return FERRY_S3_ERROR;
}

static char *copy_source(struct ferry_s3 *s3, const char *src_key)
{
	char *enc = sigv4_uri_encode(src_key, true), *out = NULL;

	if (enc && asprintf(&out, "/%s/%s", s3->conf.bucket, enc) < 0)
		out = NULL;
	free(enc);
	return out;
}

struct copy_verify {
	const char *src_etag;               /* the source's ETag, if known */
};

static enum verdict verify_copy(struct ferry_s3 *s3, const struct req *rq, void *arg,
				struct ferry_s3_res *res)
{
	struct copy_verify *cv = arg;
	struct ferry_s3_res r;
	int rc;

	if (!cv->src_etag)
		return V_UNKNOWN;
	rc = ferry_s3_head(s3, rq->key, NULL, &r);
	res->attempts += r.attempts;
	if (rc == FERRY_S3_NOTFOUND)
		return V_RESEND;
	if (rc != FERRY_S3_OK)
		return V_UNKNOWN;
	if (!strcmp(r.etag, cv->src_etag)) {
		scopy(res->etag, sizeof(res->etag), r.etag);
		return V_OURS;
	}
	return V_RESEND;
}

int ferry_s3_copy(struct ferry_s3 *s3, const char *src_key, const char *src_if_match,
		  const char *dst_key, const struct ferry_s3_cond *cond,
		  struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct ferry_buf body = { 0 };
	struct copy_verify cv = { src_if_match };
	struct req rq;
	char etag[80];
	char *src;
	int rc;

	res = req_begin(&rq, "PUT", "COPY", dst_key, res, &local);
	src = copy_source(s3, src_key);
	if (!src) {
		set_msg(s3, &rq, res, "out of memory");
		return FERRY_S3_ERROR;
	}
	req_hdr(&rq, "x-amz-copy-source", src);
	req_hdr(&rq, "x-amz-copy-source-if-match", src_if_match);
	req_cond(&rq, cond);
	rq.keep_max = ERR_BODY_MAX;
	if (is_conditional(cond))
		rc = s3_do_cond(s3, &rq, res, verify_copy, &cv, &body);
	else
		rc = s3_do(s3, &rq, res, &body);
	if (rc == FERRY_S3_OK && body.len)
		rc = check_200_error(s3, &rq, &body, res);
	if (rc == FERRY_S3_OK && body.len &&
	    s3xml_field(body.data, body.len, "CopyObjectResult/ETag", etag, sizeof(etag)) == 0)
		scopy(res->etag, sizeof(res->etag), etag);
	/* a failed source condition is a 412 too; name the source so nobody hunts the target */
	if (rc == FERRY_S3_PRECONDITION && src_if_match && !is_conditional(cond)) {
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
	struct req rq;
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
	req_init(&rq, "GET", "LIST", NULL);
	rq.query = q;
	rq.n_query = n;
	rq.keep_max = XML_BODY_MAX;
	rc = s3_do(s3, &rq, res, &body);
	if (rc != FERRY_S3_OK)
		return rc;
	if (s3xml_list(body.data ? body.data : "", body.len, out) != 0) {
		set_msg(s3, &rq, res, "malformed ListObjectsV2 response (%zu bytes)", body.len);
		rc = FERRY_S3_ERROR;
	} else if (out->truncated && !out->next_token) {
		set_msg(s3, &rq, res, "truncated listing without a continuation token");
		rc = FERRY_S3_ERROR;
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

	if (!res)
		res = &local;
	res_reset(res);
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

	if (!res)
		res = &local;
	res_reset(res);
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

/* ---------------------------------------------------------------- multipart */

int ferry_s3_mpu_create(struct ferry_s3 *s3, const char *key, char **upload_id,
			struct ferry_s3_res *res)
{
	static const struct sigv4_kv q[] = { { "uploads", "" } };
	struct ferry_s3_res local;
	struct ferry_buf body = { 0 };
	struct req rq;
	char id[1024];
	int rc;

	if (!res)
		res = &local;
	res_reset(res);
	*upload_id = NULL;
	req_init(&rq, "POST", "CREATE-MULTIPART", key);
	rq.query = q;
	rq.n_query = 1;
	rq.keep_max = ERR_BODY_MAX;
	/* resending a create at worst leaves an idle upload behind, which abort/lifecycle clean */
	rc = s3_do(s3, &rq, res, &body);
	if (rc != FERRY_S3_OK)
		return rc;
	if (s3xml_field(body.data ? body.data : "", body.len,
			      "InitiateMultipartUploadResult/UploadId", id, sizeof(id)) != 0 || !id[0]) {
		set_msg(s3, &rq, res, "no UploadId in the response");
		rc = FERRY_S3_ERROR;
	} else {
		*upload_id = strdup(id);
		if (!*upload_id)
			rc = FERRY_S3_ERROR;
	}
	ferry_buf_release(&body);
	return rc;
}

static int part_common(struct ferry_s3 *s3, struct req *rq, const char *upload_id, int part,
		       char *etag_out, struct ferry_s3_res *res)
{
	struct sigv4_kv q[2];
	char pn[16];
	int rc;

	snprintf(pn, sizeof(pn), "%d", part);
	q[0] = (struct sigv4_kv){ "partNumber", pn };
	q[1] = (struct sigv4_kv){ "uploadId", upload_id };
	rq->query = q;
	rq->n_query = 2;
	rc = s3_do(s3, rq, res, NULL);
	if (rc == FERRY_S3_OK) {
		if (!res->etag[0]) {
			set_msg(s3, rq, res, "no ETag for part %d", part);
			return FERRY_S3_ERROR;
		}
		snprintf(etag_out, 80, "%s", res->etag);
	}
	return rc;
}

int ferry_s3_mpu_part(struct ferry_s3 *s3, const char *key, const char *upload_id, int part,
		      const void *data, size_t len, char *etag_out, struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct req rq;

	res = req_begin(&rq, "PUT", "UPLOAD-PART", key, res, &local);
	rq.body = data ? data : "";
	rq.body_len = len;
	return part_common(s3, &rq, upload_id, part, etag_out, res);
}

int ferry_s3_mpu_part_fd(struct ferry_s3 *s3, const char *key, const char *upload_id,
			 int part, int fd, off_t off, uint64_t len, char *etag_out,
			 struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct req rq;

	res = req_begin(&rq, "PUT", "UPLOAD-PART", key, res, &local);
	rq.fd = fd;
	rq.fd_off = off;
	rq.body_len = len;
	return part_common(s3, &rq, upload_id, part, etag_out, res);
}

int ferry_s3_mpu_part_copy(struct ferry_s3 *s3, const char *key, const char *upload_id,
			   int part, const char *src_key, const char *src_if_match,
			   uint64_t off, uint64_t len, char *etag_out, struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct sigv4_kv q[2];
	struct ferry_buf body = { 0 };
	struct req rq;
	char range[64], pn[16], etag[80];
	char *src;
	int rc;

	res = req_begin(&rq, "PUT", "UPLOAD-PART-COPY", key, res, &local);
	if (!len) {
		set_msg(s3, &rq, res, "empty copy range for part %d", part);
		return FERRY_S3_ERROR;
	}
	src = copy_source(s3, src_key);
	if (!src) {
		set_msg(s3, &rq, res, "out of memory");
		return FERRY_S3_ERROR;
	}
	snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
	req_hdr(&rq, "x-amz-copy-source", src);
	req_hdr(&rq, "x-amz-copy-source-range", range);
	req_hdr(&rq, "x-amz-copy-source-if-match", src_if_match);
	snprintf(pn, sizeof(pn), "%d", part);
	q[0] = (struct sigv4_kv){ "partNumber", pn };
	q[1] = (struct sigv4_kv){ "uploadId", upload_id };
	rq.query = q;
	rq.n_query = 2;
	rq.keep_max = ERR_BODY_MAX;
	rc = s3_do(s3, &rq, res, &body);
	if (rc == FERRY_S3_OK)
		rc = check_200_error(s3, &rq, &body, res);
	if (rc == FERRY_S3_OK) {
		if (s3xml_field(body.data ? body.data : "", body.len, "CopyPartResult/ETag",
				      etag, sizeof(etag)) != 0) {
			set_msg(s3, &rq, res, "no ETag in the UploadPartCopy response for part %d", part);
			rc = FERRY_S3_ERROR;
		} else {
			snprintf(etag_out, 80, "%s", etag);
			scopy(res->etag, sizeof(res->etag), etag);
			STAT_ADD(s3, bytes_copied, len);
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

static enum verdict verify_complete(struct ferry_s3 *s3, const struct req *rq, void *arg,
				    struct ferry_s3_res *res)
{
	const char *want = arg;
	struct ferry_s3_res r;
	int rc;

	if (!want[0])
		return V_UNKNOWN;
	rc = ferry_s3_head(s3, rq->key, NULL, &r);
	res->attempts += r.attempts;
	if (rc == FERRY_S3_NOTFOUND)
		return V_RESEND;
	if (rc != FERRY_S3_OK)
		return V_UNKNOWN;
	if (!strcmp(r.etag, want)) {
		scopy(res->etag, sizeof(res->etag), r.etag);
		res->size = r.size;
		return V_OURS;
	}
	return V_RESEND;
}

int ferry_s3_mpu_complete(struct ferry_s3 *s3, const char *key, const char *upload_id,
			  char *const *part_etags, int nparts, const struct ferry_s3_cond *cond,
			  struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct sigv4_kv q[1];
	struct ferry_buf xml = { 0 }, body = { 0 };
	struct req rq;
	char want[80] = "", etag[80], line[160];
	int i, rc;

	res = req_begin(&rq, "POST", "COMPLETE-MULTIPART", key, res, &local);
	rc = buf_append(&xml, "<CompleteMultipartUpload>", 25, XML_BODY_MAX);
	for (i = 0; rc == 0 && i < nparts; i++) {
		int n = snprintf(line, sizeof(line), "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
				 i + 1, part_etags[i]);

		rc = buf_append(&xml, line, (size_t)n, XML_BODY_MAX);
	}
	if (rc == 0)
		rc = buf_append(&xml, "</CompleteMultipartUpload>", 26, XML_BODY_MAX);
	if (rc != 0) {
		ferry_buf_release(&xml);
		set_msg(s3, &rq, res, "out of memory");
		return FERRY_S3_ERROR;
	}
	q[0] = (struct sigv4_kv){ "uploadId", upload_id };
	rq.query = q;
	rq.n_query = 1;
	rq.body = xml.data;
	rq.body_len = xml.len;
	rq.keep_max = ERR_BODY_MAX;
	req_hdr(&rq, "content-type", "application/xml");
	req_cond(&rq, cond);
	if (!mpu_expected_etag(part_etags, nparts, want))
		want[0] = '\0';
	/* Completing is never resent blindly, conditional or not: a second complete of a
	 * finished upload fails (NoSuchUpload), and the read-back tells which it was. */
	rc = s3_do_cond(s3, &rq, res, verify_complete, want, &body);
	if (rc == FERRY_S3_OK && body.len)
		rc = check_200_error(s3, &rq, &body, res);
	if (rc == FERRY_S3_OK && body.len &&
	    s3xml_field(body.data, body.len, "*/ETag", etag,
			      sizeof(etag)) == 0)
		scopy(res->etag, sizeof(res->etag), etag);
	ferry_buf_release(&body);
	ferry_buf_release(&xml);
	return rc;
}

int ferry_s3_mpu_abort(struct ferry_s3 *s3, const char *key, const char *upload_id,
		       struct ferry_s3_res *res)
{
	struct ferry_s3_res local;
	struct sigv4_kv q[1];
	struct req rq;
	int rc;

	res = req_begin(&rq, "DELETE", "ABORT-MULTIPART", key, res, &local);
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

/* ---------------------------------------------------------------- probe */

int ferry_s3_probe(struct ferry_s3 *s3, const char *scratch_prefix,
		   struct ferry_s3_features *out, struct ferry_s3_res *res)
{
	struct ferry_s3_res local, r;
	struct ferry_s3_cond create = { .if_none_match = "*" };
	struct ferry_s3_cond wrong = { .if_match = "\"00000000000000000000000000000000\"" };
	char key[512], key2[512], nonce[33], body[96], etag[80], petag[80];
	unsigned char rnd[16];
	char *upload = NULL;
	int rc, i;
	size_t blen;

	if (!res)
		res = &local;
	memset(out, 0, sizeof(*out));
	res_reset(res);
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		memset(rnd, 0x5a, sizeof(rnd));
	for (i = 0; i < 16; i++)
		sprintf(nonce + 2 * i, "%02x", rnd[i]);
	if (!scratch_prefix)
		scratch_prefix = "";
	snprintf(key, sizeof(key), "%s.ferry-probe-%s", scratch_prefix, nonce);
	snprintf(key2, sizeof(key2), "%s.ferry-probe-%s.copy", scratch_prefix, nonce);
	blen = (size_t)snprintf(body, sizeof(body), "ferry probe %s\n", nonce);

	/* 1. conditional create twice: the second must be refused */
	rc = ferry_s3_put(s3, key, body, blen, &create, res);
	if (rc != FERRY_S3_OK)
		return rc;
	scopy(etag, sizeof(etag), res->etag);
	rc = ferry_s3_put(s3, key, "other", 5, &create, &r);
	out->conditional_create = rc == FERRY_S3_PRECONDITION;
	if (rc == FERRY_S3_OK) {
		/* the store overwrote it: put our body back so the later checks are meaningful */
		ferry_s3_put(s3, key, body, blen, NULL, &r);
		scopy(etag, sizeof(etag), r.etag);
	}

	/* 2. If-Match with a wrong ETag must be refused */
	rc = ferry_s3_put(s3, key, "other", 5, &wrong, &r);
	out->conditional_put = rc == FERRY_S3_PRECONDITION;
	if (rc == FERRY_S3_OK) {
		ferry_s3_put(s3, key, body, blen, NULL, &r);
		scopy(etag, sizeof(etag), r.etag);
	}

	/* 3. UploadPartCopy of the scratch object (501 on stores without it) */
	rc = ferry_s3_mpu_create(s3, key2, &upload, &r);
	if (rc == FERRY_S3_OK) {
		rc = ferry_s3_mpu_part_copy(s3, key2, upload, 1, key, NULL, 0, blen, petag, &r);
		out->upload_part_copy = rc == FERRY_S3_OK;
		ferry_s3_mpu_abort(s3, key2, upload, &r);
		free(upload);
	}

	/* 4. conditional DELETE: a wrong ETag must be refused, the right one accepted */
	rc = ferry_s3_delete(s3, key, &wrong, &r);
	if (rc == FERRY_S3_PRECONDITION) {
		rc = ferry_s3_delete(s3, key, &(struct ferry_s3_cond){ .if_match = etag }, &r);
		out->conditional_delete = rc == FERRY_S3_OK;
	}
	/* scratch keys go, whatever the store did with the conditions */
	ferry_s3_delete(s3, key, NULL, &r);
	ferry_s3_delete(s3, key2, NULL, &r);
	res->msg[0] = '\0';
	return FERRY_S3_OK;
}
