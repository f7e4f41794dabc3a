/* sched_data.c: the two data files of the schedule stage, state codes, ZIP and email checks. */
#include "sched_core.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Sorted, so a code's index is its position (binary search). */
static const char codes[SCHED_NSTATES][3] = {
	"AA", "AE", "AK", "AL", "AP", "AR", "AS", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA",
	"GU", "HI", "IA", "ID", "IL", "IN", "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO",
	"MP", "MS", "MT", "NC", "ND", "NE", "NH", "NJ", "NM", "NV", "NY", "OH", "OK", "OR", "PA",
	"PR", "RI", "SC", "SD", "TN", "TX", "UT", "VA", "VI", "VT", "WA", "WI", "WV", "WY",
};

int sched_state_index(const char *s, size_t len)
{
	int lo = 0, hi = SCHED_NSTATES - 1;

	if (len != 2)
		return -1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		int c = (unsigned char)codes[mid][0] - (unsigned char)s[0];
		if (c == 0)
			c = (unsigned char)codes[mid][1] - (unsigned char)s[1];
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

const char *sched_state_code(int idx)
{
	return idx >= 0 && idx < SCHED_NSTATES ? codes[idx] : "";
}

void sched_trim(const char **s, size_t *n)
{
	const char *p = *s;
	size_t len = *n;

	while (len && (*p == ' ' || *p == '\t')) {
		p++;
		len--;
	}
	while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	*s = p;
	*n = len;
}

static bool is_alpha(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

bool sched_email_valid(const char *s, size_t n)
{
	const char *at = NULL, *dot = NULL;

	sched_trim(&s, &n);
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '@')
			continue;
		if (at)
			return false;
		at = s + i;
	}
	if (!at || at == s)
		return false;
	for (const char *p = s; p < at; p++)
		if (!is_alpha(*p) && !is_digit(*p) && *p != '.' && *p != '_' && *p != '%' &&
		    *p != '+' && *p != '-')
			return false;
	const char *dom = at + 1, *end = s + n;
	for (const char *p = dom; p < end; p++) {
		if (*p == '.')
			dot = p;
		else if (!is_alpha(*p) && !is_digit(*p) && *p != '-')
			return false;
	}
	if (!dot || dot == dom || end - (dot + 1) < 2)
		return false;
	for (const char *p = dot + 1; p < end; p++)
		if (!is_alpha(*p))
			return false;
	return true;
}

int sched_state_resolve(const char *s, size_t n)
{
	char up[2];

	sched_trim(&s, &n);
	if (n != 2)
		return -1;
	for (int i = 0; i < 2; i++)
		up[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 'a' + 'A' : s[i]);
	return sched_state_index(up, 2);
}

int sched_zip_state(const struct sched_zips *z, const char *s, size_t n)
{
	char buf[8];
	bool all = true;

	sched_trim(&s, &n);
	for (size_t i = 0; i < n && all; i++)
		all = is_digit(s[i]);
	if (all && (n == 3 || n == 4)) {
		memset(buf, '0', 5 - n);
		memcpy(buf + 5 - n, s, n);
		s = buf;
		n = 5;
	}
	if (n < 5)
		return -1;
	for (int i = 0; i < 5; i++)
		if (!is_digit(s[i]))
			return -1;
	if (n > 5 && s[5] != '-' && s[5] != ' ')
		return -1;
	return z->state[(s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0')];
}

/* ---- the CSV data files (RULES.md, exclusion windows line rules) ---- */

struct lines {
	const char *path;
	const char *p, *end;
	int lineno;
	char *err;
	size_t errlen;
};

static int data_err(struct lines *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int data_err(struct lines *l, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(l->err, l->errlen, "%s:%d: ", l->path, l->lineno);

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < l->errlen)
		vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Next significant line, trimmed; false at end of text. */
static bool next_line(struct lines *l, const char **s, size_t *n)
{
	while (l->p < l->end) {
		const char *nl = memchr(l->p, '\n', (size_t)(l->end - l->p));
		const char *e = nl ? nl : l->end;
		const char *b = l->p;
		size_t len = (size_t)(e - b);

		l->p = nl ? nl + 1 : l->end;
		l->lineno++;
		if (len && b[len - 1] == '\r')
			len--;
		sched_trim(&b, &len);
		if (len == 0 || b[0] == '#')
			continue;
		*s = b;
		*n = len;
		return true;
	}
	return false;
}

/* Split a line into exactly want trimmed fields. */
static int split(struct lines *l, const char *s, size_t n, int want, const char **f, size_t *fl)
{
	int k = 0;
	const char *b = s, *end = s + n;

	for (;;) {
		const char *c = memchr(b, ',', (size_t)(end - b));
		const char *e = c ? c : end;
		if (k < want) {
			f[k] = b;
			fl[k] = (size_t)(e - b);
			sched_trim(&f[k], &fl[k]);
		}
		k++;
		if (!c)
			break;
		b = c + 1;
	}
	if (k != want)
		return data_err(l, "expected %d comma-separated fields, got %d", want, k);
	return 0;
}

static int number(struct lines *l, const char *what, const char *s, size_t n, long max, long *out)
{
	long v = 0;

	if (n == 0 || n > 9)
		return data_err(l, "%s '%.*s' is not a decimal integer 0..%ld", what, (int)n, s, max);
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return data_err(l, "%s '%.*s' is not a decimal integer 0..%ld", what, (int)n,
					s, max);
		v = v * 10 + (s[i] - '0');
	}
	if (v > max)
		return data_err(l, "%s '%.*s' is not a decimal integer 0..%ld", what, (int)n, s, max);
	*out = v;
	return 0;
}

static int read_file(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f) {
		snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				snprintf(err, errlen, "cannot read '%s': out of memory", path);
				goto out_free;
			}
			buf = nb;
			cap = ncap;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
		goto out_free;
	}
	fclose(f);
	*text = buf;
	*len = n;
	return 0;
out_free:
	free(buf);
	fclose(f);
	return -1;
}

int sched_rules_parse(const char *path, const char *text, size_t len, struct sched_rules *r,
		      char *err, size_t errlen)
{
	static const char header[] = "state,rule,before_days,after_days,pre_buffer_days,month_start";
	struct lines l = { path, text, text + len, 0, err, errlen };
	bool seen[3][26 * 26] = { { false } };
	const char *s, *f[6];
	size_t n, fl[6];

	memset(r, 0, sizeof(*r));
	if (len && memchr(text, '\0', len))
		return data_err(&l, "file contains a NUL byte");
	if (!next_line(&l, &s, &n))
		return data_err(&l, "missing header line '%s'", header);
	if (n != sizeof(header) - 1 || memcmp(s, header, n) != 0)
		return data_err(&l, "header must be '%s'", header);
	while (next_line(&l, &s, &n)) {
		long v[4];
		int kind;

		if (split(&l, s, n, 6, f, fl))
			return -1;
		if (fl[0] != 2 || f[0][0] < 'A' || f[0][0] > 'Z' || f[0][1] < 'A' || f[0][1] > 'Z')
			return data_err(&l, "state '%.*s' is not two upper-case letters", (int)fl[0],
					f[0]);
		if (fl[1] == 8 && !memcmp(f[1], "birthday", 8))
			kind = 0;
		else if (fl[1] == 14 && !memcmp(f[1], "effective_date", 14))
			kind = 1;
		else if (fl[1] == 10 && !memcmp(f[1], "year_round", 10))
			kind = 2;
		else
			return data_err(&l, "rule '%.*s' is not birthday, effective_date or year_round",
					(int)fl[1], f[1]);
		if (number(&l, "before_days", f[2], fl[2], 999999999, &v[0]) ||
		    number(&l, "after_days", f[3], fl[3], 999999999, &v[1]) ||
		    number(&l, "pre_buffer_days", f[4], fl[4], 999999999, &v[2]) ||
		    number(&l, "month_start", f[5], fl[5], 1, &v[3]))
			return -1;
		int key = (f[0][0] - 'A') * 26 + (f[0][1] - 'A');
		if (seen[kind][key])
			return data_err(&l, "second '%.*s' rule for state '%.2s'", (int)fl[1], f[1],
					f[0]);
		seen[kind][key] = true;
		if (kind != 2 && v[0] + v[2] > 365)
			return data_err(&l, "before_days + pre_buffer_days is %ld, more than 365",
					v[0] + v[2]);
		if (kind != 2 && v[1] > 365)
			return data_err(&l, "after_days is %ld, more than 365", v[1]);
		int idx = sched_state_index(f[0], 2);
		if (idx < 0)
			continue;           /* no contact can resolve to it */
		struct sched_state_rules *st = &r->st[idx];
		if (kind == 2) {
			st->year_round = true;
			continue;
		}
		struct sched_window *w = kind == 0 ? &st->bday : &st->ed;
		w->on = true;
		w->before = (int)v[0];
		w->after = (int)v[1];
		w->pre = (int)v[2];
		w->month_start = v[3] == 1;
	}
	return 0;
}

int sched_zips_parse(const char *path, const char *text, size_t len, struct sched_zips *z,
		     char *err, size_t errlen)
{
	static const char header[] = "zip3_lo,zip3_hi,state";
	struct lines l = { path, text, text + len, 0, err, errlen };
	const char *s, *f[3];
	size_t n, fl[3];

	memset(z->state, -1, sizeof(z->state));
	if (len && memchr(text, '\0', len))
		return data_err(&l, "file contains a NUL byte");
	if (!next_line(&l, &s, &n))
		return data_err(&l, "missing header line '%s'", header);
	if (n != sizeof(header) - 1 || memcmp(s, header, n) != 0)
		return data_err(&l, "header must be '%s'", header);
	while (next_line(&l, &s, &n)) {
		long lo, hi;

		if (split(&l, s, n, 3, f, fl))
			return -1;
		if (number(&l, "zip3_lo", f[0], fl[0], 999, &lo) ||
		    number(&l, "zip3_hi", f[1], fl[1], 999, &hi))
			return -1;
		if (lo > hi)
			return data_err(&l, "zip3_lo %ld is greater than zip3_hi %ld", lo, hi);
		int idx = sched_state_index(f[2], fl[2]);
		if (idx < 0)
			return data_err(&l, "state '%.*s' is not a known state code", (int)fl[2], f[2]);
		for (long p = lo; p <= hi; p++) {
			if (z->state[p] >= 0)
				return data_err(&l, "range %03ld-%03ld overlaps an earlier range at %03ld",
						lo, hi, p);
			z->state[p] = (int8_t)idx;
		}
	}
	return 0;
}

int sched_rules_load(const char *path, struct sched_rules *r, char *err, size_t errlen)
{
	char *text;
	size_t len;

	if (read_file(path, &text, &len, err, errlen))
		return -1;
	int rc = sched_rules_parse(path, text, len, r, err, errlen);
	free(text);
	return rc;
}

int sched_zips_load(const char *path, struct sched_zips *z, char *err, size_t errlen)
{
	char *text;
	size_t len;

	if (read_file(path, &text, &len, err, errlen))
		return -1;
	int rc = sched_zips_parse(path, text, len, z, err, errlen);
	free(text);
	return rc;
}
