/* log.c: the one logging module: "ts level stage msg k=v" lines (or JSON) on stderr. */
#include "ferry_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
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

/* A line under construction; once a piece does not fit, nothing more is added (a JSON
 * line stays well-formed: it is closed in the room kept for it). */
struct lbuf {
	char *b;
	size_t n;
	size_t cap;                         /* bytes usable, the NUL and the closing room kept */
	bool full;
};

static void put_mem(struct lbuf *l, const char *s, size_t n)
{
	if (l->full || l->n + n > l->cap) {
		l->full = true;
		return;
	}
	memcpy(l->b + l->n, s, n);
	l->n += n;
	l->b[l->n] = '\0';
}

static void put_str(struct lbuf *l, const char *s)
{
	put_mem(l, s, strlen(s));
}

/* s as the body of a JSON string; logfmt's quoted values use the same escapes. */
static void put_escaped(struct lbuf *l, const char *s)
{
	for (; *s && !l->full; s++) {
		unsigned char ch = (unsigned char)*s;
		char u[8];

		if (ch == '"' || ch == '\\') {
			u[0] = '\\';
			u[1] = (char)ch;
			put_mem(l, u, 2);
		} else if (ch == '\n') {
			put_mem(l, "\\n", 2);
		} else if (ch == '\t') {
			put_mem(l, "\\t", 2);
		} else if (ch == '\r') {
			put_mem(l, "\\r", 2);
		} else if (ch < 0x20 || ch == 0x7f) {
			snprintf(u, sizeof(u), "\\u%04x", ch);
			put_mem(l, u, 6);
		} else {
			put_mem(l, s, 1);
		}
	}
}

/* s with its control characters escaped: a plain line stays one line. */
static void put_line_safe(struct lbuf *l, const char *s)
{
	for (; *s && !l->full; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f) {
			char u[8];

			snprintf(u, sizeof(u), *s == '\n' ? "\\n" : "\\x%02x", (unsigned char)*s);
			put_str(l, u);
		} else {
			put_mem(l, s, 1);
		}
	}
}

/* "s", escaped; the closing quote always fits (a long s is cut short instead). */
static void put_quoted(struct lbuf *l, const char *s)
{
	size_t cap = l->cap;
	bool cut;

	if (l->full || l->n + 2 > l->cap) {
		l->full = true;
		return;
	}
	put_mem(l, "\"", 1);
	l->cap = cap - 1;
	put_escaped(l, s);
	l->cap = cap;
	cut = l->full;
	l->full = false;
	put_mem(l, "\"", 1);
	l->full = cut;
}

/* ---- key=value pairs ----------------------------------------------------------------
 * Call sites write "k=%s path='%s' n=%d": the template says where each value starts and
 * ends, so a value is cut out of the template, never out of the formatted text (a value
 * holding blanks, quotes or "x=y" cannot be mistaken for more pairs), and formatted on its
 * own. Quotes around a value in the template only say "this is text"; the one quoting of
 * the output is done here: logfmt in plain lines, JSON strings or numbers in JSON lines. */

#define KV_MAX 64                           /* pairs kept per line */
#define KV_TEXT (LOG_LINE_MAX / 2)          /* formatted keys and values of one line */

struct kv {
	char *key;
	char *val;                          /* NULL: a bare word (a flag) */
	bool text;                          /* quoted in the template: never a number */
};

enum len_mod { L_NONE, L_HH, L_H, L_L, L_LL, L_J, L_Z, L_T, L_BIGL };

/* A width or a precision at p: digits, or '*' taken from the arguments. */
static const char *fmt_field(const char *p, va_list *ap, int *stars, int *ns)
{
	if (*p == '*') {
		stars[(*ns)++] = va_arg(*ap, int);
		return p + 1;
	}
	while (*p >= '0' && *p <= '9')
		p++;
	return p;
}

/* An integer argument of its exact type, widened to long long (unsigned ones come back
 * through the same bits: the caller formats them as unsigned long long). */
static long long int_arg(enum len_mod len, bool sign, va_list *ap)
{
	switch (len) {
	case L_HH:
		return sign ? (signed char)va_arg(*ap, int) : (unsigned char)va_arg(*ap, unsigned);
	case L_H:
		return sign ? (short)va_arg(*ap, int) : (unsigned short)va_arg(*ap, unsigned);
	case L_L:
		return sign ? va_arg(*ap, long) : (long long)va_arg(*ap, unsigned long);
	case L_LL:
		return sign ? va_arg(*ap, long long) : (long long)va_arg(*ap, unsigned long long);
	case L_J:
		return sign ? va_arg(*ap, intmax_t) : (long long)va_arg(*ap, uintmax_t);
	case L_Z:
		return sign ? va_arg(*ap, ssize_t) : (long long)va_arg(*ap, size_t);
	case L_T:
		return va_arg(*ap, ptrdiff_t);
	default:
		return sign ? va_arg(*ap, int) : (long long)va_arg(*ap, unsigned);
	}
}

/* One printf conversion at spec (spec[0] == '%'), its argument taken from ap; its length
 * in the template in *used. A conversion the call sites have no business using (%n) or
 * cannot be parsed is written as it stands and takes nothing (the template is checked
 * against the arguments by the compiler's format attribute). Integers are formatted as
 * long long, so one snprintf serves every length modifier. */
static int fmt_one(char *out, size_t cap, const char *spec, size_t *used, va_list *ap)
{
	char f[40];
	const char *p = spec + 1, *flags_end;
	int stars[2] = { 0, 0 }, ns = 0;
	enum len_mod len = L_NONE;
	size_t head;

	while (*p && strchr("-+ #0'", *p))
		p++;
	p = fmt_field(p, ap, stars, &ns);
	if (*p == '.')
		p = fmt_field(p + 1, ap, stars, &ns);
	flags_end = p;
	if (p[0] == 'h' && p[1] == 'h') {
		len = L_HH;
		p += 2;
	} else if (p[0] == 'l' && p[1] == 'l') {
		len = L_LL;
		p += 2;
	} else if (*p && strchr("hljztL", *p)) {
		len = *p == 'h' ? L_H : *p == 'l' ? L_L : *p == 'j' ? L_J : *p == 'z' ? L_Z :
		      *p == 't' ? L_T : L_BIGL;
		p++;
	}
	*used = (size_t)(p - spec) + (*p ? 1 : 0);
	head = (size_t)(flags_end - spec);
	if (!*p || *used >= sizeof(f) - 3 || !strchr("diouxXeEfFgGaAcsp%", *p))
		return snprintf(out, cap, "%.*s", (int)*used, spec);
	memcpy(f, spec, *used);
	f[*used] = '\0';
#define FMT_ARG(v) (ns == 0 ? snprintf(out, cap, f, v) : ns == 1 ? \
		    snprintf(out, cap, f, stars[0], v) : snprintf(out, cap, f, stars[0], stars[1], v))
	if (strchr("diouxX", *p)) {
		bool sign = *p == 'd' || *p == 'i';
		long long v = int_arg(len, sign, ap);

		/* "%" flags width precision "ll" conversion */
		memcpy(f + head, "ll", 2);
		f[head + 2] = *p;
		f[head + 3] = '\0';
		return sign ? FMT_ARG(v) : FMT_ARG((unsigned long long)v);
	}
	switch (*p) {
	case '%':
		return snprintf(out, cap, "%%");
	case 'c':
		return FMT_ARG(va_arg(*ap, int));
	case 's': {
		const char *s = va_arg(*ap, const char *);

		return FMT_ARG(s ? s : "(null)");
	}
	case 'p':
		return FMT_ARG(va_arg(*ap, void *));
	default:                            /* e E f F g G a A */
		if (len == L_BIGL)
			return FMT_ARG(va_arg(*ap, long double));
		return FMT_ARG(va_arg(*ap, double));
	}
#undef FMT_ARG
}

static char no_text[1];                    /* what a piece that did not fit reads as */

/* Formats template [t, end) into the text buffer: literal bytes and conversions. Returns
 * the start of the NUL-terminated result (an empty string once the buffer is full). */
static char *fmt_piece(struct lbuf *txt, const char *t, const char *end, va_list *ap)
{
	size_t start = txt->n;

	while (t < end) {
		if (*t == '%') {
			char tmp[KV_TEXT];
			size_t used = 1;
			int r = fmt_one(tmp, sizeof(tmp), t, &used, ap);

			if (r > 0)
				put_mem(txt, tmp, (size_t)r < sizeof(tmp) ? (size_t)r : sizeof(tmp) - 1);
			t += used;
		} else {
			put_mem(txt, t, 1);
			t++;
		}
	}
	put_mem(txt, "", 1);                /* the NUL, counted: the next piece follows it */
	return txt->full ? no_text : txt->b + start;
}

/* End of a conversion (or of one plain byte) of the template at t. */
static const char *tmpl_step(const char *t)
{
	const char *p = t + 1;

	if (*t != '%')
		return t + 1;
	while (*p && !strchr("diouxXeEfFgGaAcspn%", *p))
		p++;
	return *p ? p + 1 : p;
}

/* End of the unquoted template word at p. */
static const char *tmpl_word(const char *p)
{
	while (*p && *p != ' ')
		p = tmpl_step(p);
	return p;
}

/* Splits the template into pairs, formatting each key and value with its arguments;
 * pairs past max are formatted nowhere but still take their arguments. */
static int kv_parse(const char *tmpl, va_list *ap, struct kv *kv, int max, struct lbuf *txt)
{
	struct lbuf drop = { no_text, 0, 0, true };
	const char *p = tmpl;
	int n = 0;

	while (*p) {
		struct lbuf *to = n < max ? txt : &drop;
		struct kv one = { no_text, NULL, false };
		const char *k = p, *v, *ve;
		char q, vt[256];

		if (*p == ' ') {
			p++;
			continue;
		}
		while (*p && *p != '=' && *p != ' ')
			p = tmpl_step(p);
		one.key = fmt_piece(to, k, p, ap);
		if (*p == '=') {
			q = p[1] == '\'' || p[1] == '"' ? p[1] : 0;
			if (!q) {
				v = p + 1;
				p = ve = tmpl_word(v);
				one.val = fmt_piece(to, v, ve, ap);
			} else {
				/* 'text' (or 'text'.suffix): the quotes go, the rest is the value */
				size_t vn = 0;

				for (v = p + 2; *v && *v != q && vn < sizeof(vt) - 1; v++)
					vt[vn++] = *v;
				p = *v == q ? v + 1 : v;
				ve = tmpl_word(p);
				for (; p < ve && vn < sizeof(vt) - 1; p++)
					vt[vn++] = *p;
				vt[vn] = '\0';
				p = ve;
				one.val = fmt_piece(to, vt, vt + vn, ap);
				one.text = true;
			}
		}
		if (n < max)
			kv[n++] = one;
	}
	return n;
}

/* A plain decimal number, as JSON writes one: -?(0|[1-9][0-9]*)(.[0-9]+)?, and an integer
 * that fits int64 (beyond it many JSON readers, jansson and Go's among them, refuse it). */
static bool is_number(const char *s)
{
	const char *p = s;
	bool frac = false;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
		frac = true;
	}
	if (*p)
		return false;
	if (!frac) {
		errno = 0;
		(void)strtoll(s, NULL, 10);
		return errno != ERANGE;
	}
	return true;
}

/* logfmt quotes a value that is empty or holds a blank, a quote, '=', a backslash or a
 * control character. */
static bool needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == '"' || *s == '=' || *s == '\\' || *s == 0x7f)
			return true;
	return false;
}

/* Field names of every JSON line: a pair of the same name is written as "kv_NAME". */
static bool reserved_key(const char *k)
{
	return !strcmp(k, "ts") || !strcmp(k, "level") || !strcmp(k, "stage") || !strcmp(k, "msg");
}

/* One pair, whole or not at all. */
static void put_pair(struct lbuf *l, const struct kv *kv, bool json)
{
	char tmp[LOG_LINE_MAX];
	struct lbuf one = { tmp, 0, sizeof(tmp) - 1, false };

	tmp[0] = '\0';
	put_str(&one, json ? "," : " ");
	if (json) {
		put_str(&one, reserved_key(kv->key) ? "\"kv_" : "\"");
		put_escaped(&one, kv->key);
		put_str(&one, "\":");
		if (!kv->val)
			put_str(&one, "true");
		else if (!kv->text && is_number(kv->val))
			put_str(&one, kv->val);
		else
			put_quoted(&one, kv->val);
	} else {
		put_str(&one, kv->key);
		if (kv->val) {
			put_str(&one, "=");
			if (needs_quotes(kv->val))
				put_quoted(&one, kv->val);
			else
				put_str(&one, kv->val);
		}
	}
	if (one.full)
		l->full = true;
	else
		put_mem(l, tmp, one.n);
}

void ferry_vlogf(enum ferry_level lv, const char *who, const char *msg, const char *kvfmt,
		 va_list ap)
{
	char text[KV_TEXT], line[LOG_LINE_MAX], m[LOG_LINE_MAX / 2], ts[64];
	struct lbuf txt = { text, 0, sizeof(text) - 1, false };
	/* room kept for the truncation mark, the line's end and the NUL */
	struct lbuf l = { line, 0, sizeof(line) - 32, false };
	struct kv kv[KV_MAX];
	bool json = sink.fmt == FERRY_LOG_JSON;
	int n = 0, saved = errno;
	va_list aq;

	if (!sink.setup_done) {
		sink.setup_done = 1;
		add_env_secrets();
	}
	if (lv < sink.min)
		return;
	if (lv > FERRY_ERROR)
		lv = FERRY_ERROR;
	text[0] = line[0] = '\0';
	if (kvfmt) {
		va_copy(aq, ap);
		n = kv_parse(kvfmt, &aq, kv, KV_MAX, &txt);
		va_end(aq);
	}
	if (!who || !*who)
		who = "ferry";
	snprintf(m, sizeof(m), "%s", msg ? msg : "");
	timestamp(ts, sizeof(ts));
	pthread_mutex_lock(&sink.lock);
	/* masked before quoting: a secret is found whatever characters it holds */
	mask_locked(m);
	for (int i = 0; i < n; i++) {
		mask_locked(kv[i].key);
		if (kv[i].val)
			mask_locked(kv[i].val);
	}
	if (json) {
		put_str(&l, "{\"ts\":\"");
		put_str(&l, ts);
		put_str(&l, "\",\"level\":\"");
		put_str(&l, level_names[lv]);
		put_str(&l, "\",\"stage\":");
		put_quoted(&l, who);
		put_str(&l, ",\"msg\":");
		put_quoted(&l, m);
	} else {
		char head[256];

		snprintf(head, sizeof(head), "%s %s %s ", ts, level_names[lv], who);
		put_str(&l, head);
		put_line_safe(&l, m);
	}
	for (int i = 0; i < n && !l.full; i++)
		put_pair(&l, &kv[i], json);
	if (l.full || txt.full) {
		l.cap = sizeof(line) - 4;
		l.full = false;
		put_str(&l, json ? ",\"truncated\":true" : " truncated");
	}
	l.cap = sizeof(line) - 1;
	put_str(&l, json ? "}\n" : "\n");
	if (!json)
		mask_locked(line);
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

bool ferry_log_live(void)
{
	return sink.fmt == FERRY_LOG_PLAIN && sink.min <= FERRY_INFO && isatty(STDERR_FILENO);
}

int64_t ferry_log_progress_ms(void)
{
	const char *e = getenv("FERRY_PROGRESS_INTERVAL_MS");
	char *end;
	long long v;

	if (!e || !*e)
		return 10000;
	errno = 0;
	v = strtoll(e, &end, 10);
	/* a typo must not silence progress: fall back to the default */
	if (errno || *end || v < 0)
		return 10000;
	return (int64_t)v;
}
