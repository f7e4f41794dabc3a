/* s3_conf.c: the S3 client's configuration: defaults, environment, [s3] keys, endpoint. */
#include "ferry_s3.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "ferry_log.h"
#include "ferry_parse.h"
#include "s3_internal.h"

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

/* The variables AWS tools read, each with the one read when it is unset. */
static const struct {
	const char *name;                   /* the variable */
	const char *fallback;               /* read when name is unset or empty; NULL for none */
	size_t field;                       /* offsetof its char * in struct ferry_s3_conf */
} env_vars[] = {
	{ "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", offsetof(struct ferry_s3_conf, endpoint) },
	{ "AWS_REGION", "AWS_DEFAULT_REGION", offsetof(struct ferry_s3_conf, region) },
	{ "AWS_ACCESS_KEY_ID", NULL, offsetof(struct ferry_s3_conf, access_key) },
	{ "AWS_SECRET_ACCESS_KEY", NULL, offsetof(struct ferry_s3_conf, secret_key) },
	{ "AWS_SESSION_TOKEN", NULL, offsetof(struct ferry_s3_conf, session_token) },
	{ "AWS_CA_BUNDLE", NULL, offsetof(struct ferry_s3_conf, ca_bundle) },
	{ "BUCKET_NAME", NULL, offsetof(struct ferry_s3_conf, bucket) },
};

void ferry_s3_conf_from_env(struct ferry_s3_conf *conf)
{
	size_t i;

	for (i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++) {
		const char *v = env(env_vars[i].name);

		if (!v && env_vars[i].fallback)
			v = env(env_vars[i].fallback);
		if (v)
			set_str((char **)((char *)conf + env_vars[i].field), v);
	}
	/* ferry's own: the dialect, for a container set up by environment alone; an
	 * unknown name leaves auto (the [s3] key, checked, wins anyway) */
	if (env("FERRY_S3_DIALECT")) {
		char err[128];

		ferry_s3_conf_set(conf, "dialect", env("FERRY_S3_DIALECT"), err, sizeof(err));
	}
}

static const char *const conf_keys[] = {
	"endpoint", "region", "bucket", "path_style", "verify_tls", "ca_bundle",
	"connect_timeout", "low_speed_time", "low_speed_limit", "request_timeout",
	"max_retries", "retry_base", "retry_cap", "dialect", NULL,
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
	if (!strcmp(key, "dialect")) {
		static const char *const names[] = { "auto", "s3", "gcs", "r2" };

		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (!strcasecmp(value, names[k])) {
				conf->dialect = (enum ferry_s3_dialect)k;
				return 0;
			}
		snprintf(err, errlen, "bad value '%s' for 'dialect' (auto, s3, gcs or r2)", value);
		return -1;
	}
	snprintf(err, errlen, "unknown key '%s' in [s3]", key);
	return -1;
}

const char *ferry_s3_dialect_name(enum ferry_s3_dialect d)
{
	return d == FERRY_S3_DIALECT_GCS ? "gcs" : d == FERRY_S3_DIALECT_R2 ? "r2" :
	       d == FERRY_S3_DIALECT_S3 ? "s3" : "auto";
}

/* Credentials do not linger in freed memory. */
static void free_secret(char *s)
{
	if (s)
		OPENSSL_cleanse(s, strlen(s));
	free(s);
}

void ferry_s3_conf_release(struct ferry_s3_conf *conf)
{
	free(conf->endpoint);
	free(conf->region);
	free(conf->bucket);
	free_secret(conf->access_key);
	free_secret(conf->secret_key);
	free_secret(conf->session_token);
	free(conf->ca_bundle);
	memset(conf, 0, sizeof(*conf));
}

/* ---------------------------------------------------------------- the endpoint */

/* An address or localhost: no DNS name a virtual-host bucket prefix could go in front of. */
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
int s3_conf_endpoint(struct ferry_s3 *s3, char *err, size_t errlen)
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
	s3->dialect = c->dialect;
	if (s3->dialect == FERRY_S3_DIALECT_AUTO)
		s3->dialect = !strcasecmp(host, "storage.googleapis.com") ||
			      ends_with(host, ".storage.googleapis.com") ? FERRY_S3_DIALECT_GCS :
			      ends_with(host, ".r2.cloudflarestorage.com") ? FERRY_S3_DIALECT_R2 :
			      FERRY_S3_DIALECT_S3;
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
	if (asprintf(&s3->store_name, "%s%s%s/%s", host, port ? ":" : "", port ? port : "",
		     c->bucket) < 0)
		s3->store_name = NULL;
	if (!s3->scheme || !s3->base_path || !s3->store_name) {
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
