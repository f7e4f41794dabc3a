/* s3_xml.c: readers for S3's XML response bodies (errors, listings, results) over expat. */
#include "s3_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <expat.h>

#define XML_MAX_DEPTH 16
#define XML_MAX_TEXT  (64 * 1024)       /* longer element text is a malformed document */

/* A tiny walker: tracks the element path ("A/B/C") and hands each element's text to
 * a callback when the element ends. S3 documents are shallow and small per element. */
struct xml_walk {
	XML_Parser p;
	char path[512];
	size_t plen[XML_MAX_DEPTH + 1];     /* path length before each level */
	int depth;
	char *text;
	size_t tlen, tcap;
	bool bad;
	char root[64];
	/* called at each element's end with its full path and text */
	void (*on_end)(struct xml_walk *w, const char *path, const char *text);
	void (*on_start)(struct xml_walk *w, const char *path);
	void *arg;
};

static void XMLCALL w_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct xml_walk *w = ud;
	size_t n = strlen(name), at = strlen(w->path);

	(void)atts;
	if (w->bad)
		return;
	if (w->depth >= XML_MAX_DEPTH || at + n + 2 > sizeof(w->path)) {
		w->bad = true;
		XML_StopParser(w->p, XML_FALSE);
		return;
	}
	if (w->depth == 0)
		snprintf(w->root, sizeof(w->root), "%.63s", name);
	w->plen[w->depth++] = at;
	if (at)
		w->path[at++] = '/';
	memcpy(w->path + at, name, n + 1);
	w->tlen = 0;
	if (w->text)
		w->text[0] = '\0';
	if (w->on_start)
		w->on_start(w, w->path);
}

static void XMLCALL w_end(void *ud, const XML_Char *name)
{
	struct xml_walk *w = ud;

	(void)name;
	if (w->bad || w->depth == 0)
		return;
	if (w->on_end)
		w->on_end(w, w->path, w->text ? w->text : "");
	w->path[w->plen[--w->depth]] = '\0';
	w->tlen = 0;
	if (w->text)
		w->text[0] = '\0';
}

static void XMLCALL w_text(void *ud, const XML_Char *s, int len)
{
	struct xml_walk *w = ud;

	if (w->bad || len <= 0)
		return;
	if (w->tlen + (size_t)len + 1 > w->tcap) {
		size_t cap = w->tcap ? w->tcap : 256;
		char *t;

		while (w->tlen + (size_t)len + 1 > cap)
			cap *= 2;
		if (cap > XML_MAX_TEXT) {
			w->bad = true;
			XML_StopParser(w->p, XML_FALSE);
			return;
		}
		t = realloc(w->text, cap);
		if (!t) {
			w->bad = true;
			XML_StopParser(w->p, XML_FALSE);
			return;
		}
		w->text = t;
		w->tcap = cap;
	}
	memcpy(w->text + w->tlen, s, (size_t)len);
	w->tlen += (size_t)len;
	w->text[w->tlen] = '\0';
}

static int xml_run(struct xml_walk *w, const char *xml, size_t len)
{
	int rc = 0;

	if (len > (size_t)0x7fffffff)
		return -1;
	w->p = XML_ParserCreate("UTF-8");
	if (!w->p)
		return -1;
	XML_SetUserData(w->p, w);
	XML_SetElementHandler(w->p, w_start, w_end);
	XML_SetCharacterDataHandler(w->p, w_text);
	if (XML_Parse(w->p, xml, (int)len, XML_TRUE) != XML_STATUS_OK || w->bad || !w->root[0])
		rc = -1;
	XML_ParserFree(w->p);
	free(w->text);
	w->text = NULL;
	return rc;
}

struct err_out {
	char *code, *msg, *reqid;
	size_t codelen, msglen, reqidlen;
};

static void err_end(struct xml_walk *w, const char *path, const char *text)
{
	struct err_out *o = w->arg;

	if (!strcmp(path, "Error/Code"))
		s3_scopy(o->code, o->codelen, text);
	else if (!strcmp(path, "Error/Message"))
		s3_scopy(o->msg, o->msglen, text);
	else if (!strcmp(path, "Error/RequestId"))
		s3_scopy(o->reqid, o->reqidlen, text);
}

int s3xml_error(const char *xml, size_t len, char *code, size_t codelen,
		      char *msg, size_t msglen, char *reqid, size_t reqidlen)
{
	struct err_out o = { code, msg, reqid, codelen, msglen, reqidlen };
	struct xml_walk w = { .on_end = err_end, .arg = &o };

	if (xml_run(&w, xml, len) != 0 || strcmp(w.root, "Error") != 0)
		return -1;
	return 0;
}

static time_t parse_iso8601(const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		return 0;
	return timegm(&tm);
}

struct list_state {
	struct ferry_s3_list *out;
	struct ferry_s3_entry cur;          /* the Contents being read */
	bool oom;
	bool url;                           /* EncodingType url: keys are %-encoded */
};

static int push_entry(struct ferry_s3_list *l, const struct ferry_s3_entry *e)
{
	struct ferry_s3_entry *n = realloc(l->entries, (l->n_entries + 1) * sizeof(*n));

	if (!n)
		return -1;
	l->entries = n;
	l->entries[l->n_entries++] = *e;
	return 0;
}

static int push_prefix(struct ferry_s3_list *l, const char *p)
{
	char **n = realloc(l->prefixes, (l->n_prefixes + 1) * sizeof(*n));
	char *d = strdup(p);

	if (n)
		l->prefixes = n;
	if (!n || !d) {
		free(d);
		return -1;
	}
	l->prefixes[l->n_prefixes++] = d;
	return 0;
}

static void list_start(struct xml_walk *w, const char *path)
{
	struct list_state *st = w->arg;

	if (!strcmp(path, "ListBucketResult/Contents")) {
		free(st->cur.key);
		free(st->cur.etag);
		free(st->cur.generation);
		memset(&st->cur, 0, sizeof(st->cur));
	}
}

static void list_end(struct xml_walk *w, const char *path, const char *text)
{
	struct list_state *st = w->arg;
	struct ferry_s3_list *l = st->out;

	if (strncmp(path, "ListBucketResult/", 17) != 0)
		return;
	path += 17;
	if (!strcmp(path, "Contents/Key")) {
		free(st->cur.key);
		st->cur.key = strdup(text);
		st->oom |= !st->cur.key;
	} else if (!strcmp(path, "Contents/Size")) {
		st->cur.size = strtoull(text, NULL, 10);
	} else if (!strcmp(path, "Contents/ETag")) {
		free(st->cur.etag);
		st->cur.etag = strdup(text);
		st->oom |= !st->cur.etag;
	} else if (!strcmp(path, "Contents/Generation")) {
		free(st->cur.generation);
		st->cur.generation = strdup(text);
		st->oom |= !st->cur.generation;
	} else if (!strcmp(path, "Contents/LastModified")) {
		st->cur.last_modified = parse_iso8601(text);
	} else if (!strcmp(path, "Contents")) {
		if (!st->cur.key) {
			free(st->cur.etag);
			free(st->cur.generation);
		} else if (push_entry(l, &st->cur) != 0) {
			st->oom = true;
			free(st->cur.key);
			free(st->cur.etag);
			free(st->cur.generation);
		}
		memset(&st->cur, 0, sizeof(st->cur));
	} else if (!strcmp(path, "CommonPrefixes/Prefix")) {
		st->oom |= push_prefix(l, text) != 0;
	} else if (!strcmp(path, "IsTruncated")) {
		l->truncated = !strcmp(text, "true");
	} else if (!strcmp(path, "EncodingType")) {
		st->url = !strcmp(text, "url");
	} else if (!strcmp(path, "NextContinuationToken")) {
		free(l->next_token);
		l->next_token = strdup(text);
		st->oom |= !l->next_token;
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* encoding-type=url decoding in place ('+' is a space, as S3 writes it); -1 on a bad escape
 * or an encoded NUL, which no key may hold. */
static int url_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (*s == '+') {
			*o++ = ' ';
		} else if (*s == '%') {
			int hi = hexval(s[1]), lo = hi < 0 ? -1 : hexval(s[2]);

			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -1;
			*o++ = (char)(hi * 16 + lo);
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return 0;
}

int s3xml_list(const char *xml, size_t len, struct ferry_s3_list *out)
{
	struct list_state st = { .out = out };
	struct xml_walk w = { .on_start = list_start, .on_end = list_end, .arg = &st };
	size_t e0 = out->n_entries, p0 = out->n_prefixes, i;
	int rc;

	out->truncated = false;
	free(out->next_token);
	out->next_token = NULL;
	rc = xml_run(&w, xml, len);
	free(st.cur.key);
	free(st.cur.etag);
	free(st.cur.generation);
	if (rc != 0 || st.oom || strcmp(w.root, "ListBucketResult") != 0)
		return -1;
	for (i = e0; st.url && i < out->n_entries; i++)
		if (url_decode(out->entries[i].key) != 0)
			return -1;
	for (i = p0; st.url && i < out->n_prefixes; i++)
		if (url_decode(out->prefixes[i]) != 0)
			return -1;
	return 0;
}

struct field_state {
	const char *want;
	char *out;
	size_t outlen;
	bool found;
};

static void field_end(struct xml_walk *w, const char *path, const char *text)
{
	struct field_state *st = w->arg;

	const char *slash = strchr(path, '/');
	bool any_root = st->want[0] == '*' && st->want[1] == '/';

	if (!st->found && (any_root ? slash && !strcmp(slash + 1, st->want + 2) : !strcmp(path, st->want))) {
		s3_scopy(st->out, st->outlen, text);
		st->found = true;
	}
}

int s3xml_field(const char *xml, size_t len, const char *path, char *out, size_t outlen)
{
	struct field_state st = { path, out, outlen, false };
	struct xml_walk w = { .on_end = field_end, .arg = &st };

	if (xml_run(&w, xml, len) != 0 || !st.found)
		return -1;
	return 0;
}

int s3xml_root(const char *xml, size_t len, char *out, size_t outlen)
{
	struct xml_walk w = { 0 };

	if (xml_run(&w, xml, len) != 0)
		return -1;
	s3_scopy(out, outlen, w.root);
	return 0;
}
