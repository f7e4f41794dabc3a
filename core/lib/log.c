/* log.c: the one logging module: "ts level stage msg k=v" lines (or JSON) on stderr. */
#include "ferry_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192
#define MAX_SECRETS 16

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* Process-wide sink settings; set once at start-up, before threads exist. */
static struct {
	enum ferry_level min;               /* lines below this level are dropped */
	enum ferry_log_format fmt;          /* plain or JSON */
	char *secrets[MAX_SECRETS];         /* values masked in every line */
	int n_secrets;
	pthread_mutex_t lock;               /* one line at a time */
	int setup_done;
} sink = { FERRY_INFO, FERRY_LOG_PLAIN, { 0 }, 0, PTHREAD_MUTEX_INITIALIZER, 0 };

void ferry_log_add_secret(const char *secret)
{
	int i;

	if (!secret || strlen(secret) < 4)  /* masking "a" would mangle every line */
		return;
	pthread_mutex_lock(&sink.lock);
	for (i = 0; i < sink.n_secrets; i++)
		if (strcmp(sink.secrets[i], secret) == 0)
			goto out;
	if (sink.n_secrets < MAX_SECRETS)
		sink.secrets[sink.n_secrets++] = strdup(secret);
out:
	pthread_mutex_unlock(&sink.lock);
}

static void add_env_secrets(void)
{
	ferry_log_add_secret(getenv("AWS_SECRET_ACCESS_KEY"));
	ferry_log_add_secret(getenv("AWS_SESSION_TOKEN"));
	ferry_log_add_secret(getenv("AWS_ACCESS_KEY_ID"));
}

void ferry_log_setup(enum ferry_level min, enum ferry_log_format fmt)
{
	sink.min = min;
	sink.fmt = fmt;
	sink.setup_done = 1;
	add_env_secrets();
}

enum ferry_level ferry_log_level(void)
{
	return sink.min;
}

/* Caller holds sink.lock (or is single-threaded). */
static void mask_locked(char *buf)
{
	int i;

	for (i = 0; i < sink.n_secrets; i++) {
		const char *s = sink.secrets[i];
		size_t sl = strlen(s);
		char *p;

		while ((p = strstr(buf, s)) != NULL) {
			memcpy(p, "***", 3);
			memmove(p + 3, p + sl, strlen(p + sl) + 1);
		}
	}
}

void ferry_log_mask(char *buf)
{
	pthread_mutex_lock(&sink.lock);
	mask_locked(buf);
	pthread_mutex_unlock(&sink.lock);
}

static void timestamp(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (long)(ts.tv_nsec / 1000000) % 1000);
}

/* Appends s to out as the body of a JSON string. */
static size_t json_escape(char *out, size_t cap, size_t pos, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && pos + 7 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			out[pos++] = '\\';
			out[pos++] = (char)ch;
		} else if (ch < 0x20) {
			pos += (size_t)snprintf(out + pos, cap - pos, "\\u%04x", ch);
		} else {
			out[pos++] = (char)ch;
		}
	}
	out[pos] = '\0';
	return pos;
}

/* Turns "k=v k2='a b'" into ,"k":"v","k2":"a b" (values quoted with ' may hold spaces). */
static size_t json_kv(char *out, size_t cap, size_t pos, const char *kv)
{
	const char *p = kv;

	while (*p && pos + 16 < cap) {
		const char *k, *eq, *v, *ve;

		while (*p == ' ')
			p++;
		if (!*p)
			break;
		k = p;
		eq = p;
		while (*eq && *eq != '=' && *eq != ' ')
			eq++;
		if (*eq != '=') {               /* a bare word: keep it as a flag */
			pos += (size_t)snprintf(out + pos, cap - pos, ",\"");
			pos = json_escape(out, cap, pos, k, (size_t)(eq - k));
			pos += (size_t)snprintf(out + pos, cap - pos, "\":true");
			p = eq;
			continue;
		}
		v = eq + 1;
		if (*v == '\'') {
			v++;
			ve = strchr(v, '\'');
			if (!ve)
				ve = v + strlen(v);
			p = *ve ? ve + 1 : ve;
		} else {
			ve = v;
			while (*ve && *ve != ' ')
				ve++;
			p = ve;
		}
		pos += (size_t)snprintf(out + pos, cap - pos, ",\"");
		pos = json_escape(out, cap, pos, k, (size_t)(eq - k));
		pos += (size_t)snprintf(out + pos, cap - pos, "\":\"");
		pos = json_escape(out, cap, pos, v, (size_t)(ve - v));
		if (pos + 2 < cap)
			out[pos++] = '"';
		out[pos] = '\0';
	}
	return pos;
}

void ferry_vlogf(enum ferry_level lv, const char *who, const char *msg, const char *kvfmt,
		 va_list ap)
{
	char kv[LOG_LINE_MAX / 2] = "";
	char line[LOG_LINE_MAX];
	char ts[64];
	size_t pos;
	int saved = errno;

	if (!sink.setup_done) {
		sink.setup_done = 1;
		add_env_secrets();
	}
	if (lv < sink.min)
		return;
	if (lv > FERRY_ERROR)
		lv = FERRY_ERROR;
	if (kvfmt)
		vsnprintf(kv, sizeof(kv), kvfmt, ap);
	if (!who || !*who)
		who = "ferry";
	if (!msg)
		msg = "";
	timestamp(ts, sizeof(ts));
	pthread_mutex_lock(&sink.lock);
	if (sink.fmt == FERRY_LOG_JSON) {
		char m[LOG_LINE_MAX / 2];
		char k[LOG_LINE_MAX / 2];

		snprintf(m, sizeof(m), "%s", msg);
		snprintf(k, sizeof(k), "%s", kv);
		mask_locked(m);
		mask_locked(k);
		pos = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"stage\":\"",
				       ts, level_names[lv]);
		pos = json_escape(line, sizeof(line), pos, who, strlen(who));
		pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\",\"msg\":\"");
		pos = json_escape(line, sizeof(line), pos, m, strlen(m));
		pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\"");
		pos = json_kv(line, sizeof(line), pos, k);
		snprintf(line + pos, sizeof(line) - pos, "}\n");
	} else {
		snprintf(line, sizeof(line), "%s %s %s %s%s%s\n", ts, level_names[lv], who, msg,
			 *kv ? " " : "", kv);
		mask_locked(line);
		if (line[strlen(line) - 1] != '\n')     /* truncated: keep one line per event */
			line[sizeof(line) - 2] = '\n';
	}
	fputs(line, stderr);
	fflush(stderr);
	pthread_mutex_unlock(&sink.lock);
	errno = saved;
}

void ferry_logf(enum ferry_level lv, const char *who, const char *msg, const char *kvfmt, ...)
{
	va_list ap;

	va_start(ap, kvfmt);
	ferry_vlogf(lv, who, msg, kvfmt, ap);
	va_end(ap);
}

enum ferry_log_format ferry_log_format(void)
{
	return sink.fmt;
}

void ferry_log_text(const char *text)
{
	char *copy;
	size_t len = strlen(text) + 1;

	if (sink.fmt == FERRY_LOG_JSON || sink.min > FERRY_INFO)
		return;
	copy = malloc(len);
	if (!copy)
		return;
	memcpy(copy, text, len);
	pthread_mutex_lock(&sink.lock);
	mask_locked(copy);
	fputs(copy, stderr);
	fflush(stderr);
	pthread_mutex_unlock(&sink.lock);
	free(copy);
}
