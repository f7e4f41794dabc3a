/* cfg.c: the pipeline INI: parse with inih, apply -o, expand ${VAR}, validate. */
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <ini.h>

#include "ferry_log.h"
#include "ferry_parse.h"
#include "ferry_s3.h"

#define MAX_EXPAND_DEPTH 16

/* Keys of [pipeline]; [s3] keys belong to the S3 client (ferry_s3_conf_is_key). */
static const struct ferry_key pipeline_keys[] = {
	{ "name", FERRY_KEY_STRING, "ferry", 0, "pipeline name, used in logs and the lock owner" },
	{ "state_dir", FERRY_KEY_PATH, "/var/lib/ferry", 0, "run journal and local replica" },
	{ "deadline", FERRY_KEY_DURATION, "0", 0, "whole-run limit; 0 = none" },
	{ "plugin_dir", FERRY_KEY_PATH, NULL, 0, "where stage plugins (*.so) are found" },
	{ NULL, 0, NULL, 0, NULL },
};

/* Keys of [work], read by `ferry work` only (core/cmd_work.c checks what a type cannot:
 * the pattern's '*', the period's alignment, the records prefix). */
static const struct ferry_key work_keys[] = {
	{ "orgs", FERRY_KEY_STRING, NULL, FERRY_KEY_REQUIRED,
	  "object-key pattern of the org databases; '*' is the org id (org-data/*.db)" },
	{ "period", FERRY_KEY_DURATION, "1d", 0, "each org is due once per period (UTC-aligned)" },
	{ "records", FERRY_KEY_STRING, "ferry-runs/", 0, "prefix of the run records" },
	{ "workers", FERRY_KEY_INT, "1", 0, "pipelines run at once by one worker" },
	{ "idle", FERRY_KEY_DURATION, "5m", 0, "sleep between passes (without --once)" },
	{ "max_runs", FERRY_KEY_INT, "0", 0, "pipelines before the worker exits; 0 = no limit" },
	{ "retries", FERRY_KEY_INT, "3", 0, "failed runs of an org in a period before it waits for the next" },
	{ "mount_dir", FERRY_KEY_PATH, NULL, 0, "base of the per-org mountpoints; default STATE_DIR/mnt" },
	{ "keep_state", FERRY_KEY_BOOL, "true", 0, "keep an org's replica and journal after a good run" },
	{ "metrics_port", FERRY_KEY_INT, "0", 0, "serve the metrics file over HTTP on this port; 0 = off" },
	{ NULL, 0, NULL, 0, NULL },
};

/* Parser state shared with the inih callbacks. */
struct parse {
	struct config *cfg;
	FILE *fp;
	int line;                           /* lines handed to inih so far */
	int line_too_long;                  /* first over-long line, 0 if none */
	int line_started_blank;             /* the current line began with white space */
	int err_line;                       /* first error line */
	char err[512];                      /* first error text */
	struct cfg_section *cur;            /* section being filled */
};

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (!q) {
		fputs("ferry: out of memory\n", stderr);
		abort();
	}
	return q;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (!d) {
		fputs("ferry: out of memory\n", stderr);
		abort();
	}
	return d;
}

const struct ferry_key *cfg_key_find(const struct ferry_key *keys, const char *name)
{
	for (; keys && keys->name; keys++)
		if (strcmp(keys->name, name) == 0)
			return keys;
	return NULL;
}

struct cfg_section *cfg_find_section(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; cfg && i < cfg->n; i++)
		if (strcmp(cfg->s[i].name, name) == 0)
			return &cfg->s[i];
	return NULL;
}

struct cfg_entry *cfg_find_entry(const struct cfg_section *sec, const char *key)
{
	size_t i;

	for (i = 0; sec && i < sec->n; i++)
		if (strcmp(sec->e[i].key, key) == 0)
			return &sec->e[i];
	return NULL;
}

const char *cfg_get(const struct config *cfg, const char *section, const char *key)
{
	struct cfg_entry *e = cfg_find_entry(cfg_find_section(cfg, section), key);

	return e ? e->value : NULL;
}

const char *cfg_pipeline(const struct config *cfg, const char *key)
{
	const char *v = cfg_get(cfg, "pipeline", key);
	const struct ferry_key *k;

	if (v)
		return v;
	k = cfg_key_find(pipeline_keys, key);
	return k ? k->def : NULL;
}

struct cfg_section *cfg_work_section(const struct config *cfg)
{
	size_t i;

	for (i = 0; cfg && i < cfg->n; i++)
		if (cfg->s[i].kind == CFG_WORK)
			return &cfg->s[i];
	return NULL;
}

const char *cfg_work(const struct config *cfg, const char *key)
{
	struct cfg_entry *e = cfg_find_entry(cfg_work_section(cfg), key);
	const struct ferry_key *k;

	if (e)
		return e->value;
	k = cfg_key_find(work_keys, key);
	return k ? k->def : NULL;
}

void cfg_where(const struct cfg_section *sec, const struct cfg_entry *e, char *buf, size_t len)
{
	if (e && e->file)
		snprintf(buf, len, "%s:%d", e->file, e->line);
	else if (e)
		snprintf(buf, len, "-o %s.%s", sec ? sec->name : "?", e->key);
	else
		snprintf(buf, len, "?");
}

static struct cfg_section *section_add(struct config *cfg, const char *name, enum cfg_kind kind,
				       int line)
{
	struct cfg_section *s;

	if (cfg->n == cfg->cap) {
		cfg->cap = cfg->cap ? cfg->cap * 2 : 8;
		cfg->s = xrealloc(cfg->s, cfg->cap * sizeof(*cfg->s));
	}
	s = &cfg->s[cfg->n++];
	memset(s, 0, sizeof(*s));
	s->name = xstrdup(name);
	s->kind = kind;
	s->line = line;
	s->file = line ? cfg->path : NULL;
	return s;
}

static struct cfg_entry *entry_add(struct cfg_section *s, const char *key, const char *raw,
				   const char *file, int line)
{
	struct cfg_entry *e;

	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->e = xrealloc(s->e, s->cap * sizeof(*s->e));
	}
	e = &s->e[s->n++];
	e->key = xstrdup(key);
	e->raw = xstrdup(raw);
	e->value = NULL;
	e->file = file;
	e->line = line;
	return e;
}

static bool is_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

static void perr(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(struct parse *p, const char *fmt, ...)
{
	va_list ap;

	if (p->err_line)
		return;                     /* the first error wins */
	p->err_line = p->line;
	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
}

/* Section header: [pipeline], [s3] or [stage NAME]. */
static struct cfg_section *open_section(struct parse *p, const char *section)
{
	struct config *cfg = p->cfg;
	const char *name;
	enum cfg_kind kind;
	struct cfg_section *old;

	if (strcmp(section, "pipeline") == 0) {
		name = "pipeline";
		kind = CFG_PIPELINE;
	} else if (strcmp(section, "s3") == 0) {
		name = "s3";
		kind = CFG_S3;
	} else if (strcmp(section, "work") == 0) {
		name = "work";
		kind = CFG_WORK;
	} else if (strncmp(section, "stage", 5) == 0 && isspace((unsigned char)section[5])) {
		name = section + 6;
		while (isspace((unsigned char)*name))
			name++;
		kind = CFG_STAGE;
		if (!is_name(name)) {
			perr(p, "bad stage name '%s' (letters, digits, '_' and '-' only)", name);
			return NULL;
		}
		if (strcmp(name, "pipeline") == 0 || strcmp(name, "s3") == 0) {
			perr(p, "stage name '%s' is reserved", name);
			return NULL;
		}
	} else {
		perr(p, "unknown section [%s] (expected [pipeline], [s3] or [stage NAME])", section);
		return NULL;
	}
	/* [work] and a stage named "work" (older pipelines have one) are different sections */
	old = kind == CFG_WORK ? cfg_work_section(cfg) : cfg_find_section(cfg, name);
	if (old && kind != CFG_WORK && old->kind == CFG_WORK)
		old = NULL;
	if (old) {
		if (kind == CFG_STAGE)
			perr(p, "duplicate stage name '%s' (first at line %d)", name, old->line);
		else
			perr(p, "duplicate section [%s] (first at line %d)", name, old->line);
		return NULL;
	}
	return section_add(cfg, name, kind, p->line);
}

static const char *sec_label(const struct cfg_section *s, char *buf, size_t len)
{
	snprintf(buf, len, "[%s%s]", s->kind == CFG_STAGE ? "stage " : "", s->name);
	return buf;
}

static int on_entry(void *user, const char *section, const char *key, const char *value)
{
	struct parse *p = user;
	struct cfg_entry *e;
	char label[300];

	(void)section;                      /* headers are opened by reader() */
	if (p->err_line)
		return 1;
	if (!p->cur) {
		perr(p, "key '%s' outside any section", key);
		return 0;
	}
	e = cfg_find_entry(p->cur, key);
	if (e && p->line_started_blank && e == &p->cur->e[p->cur->n - 1]) {
		/* a continuation line (inih multi-line value): append with one space */
		size_t a = strlen(e->raw), b = strlen(value);

		e->raw = xrealloc(e->raw, a + b + 2);
		e->raw[a] = ' ';
		memcpy(e->raw + a + 1, value, b + 1);
		return 1;
	}
	if (e) {
		perr(p, "key '%s': duplicate key in %s (first at line %d)", key,
		     sec_label(p->cur, label, sizeof(label)), e->line);
		return 0;
	}
	if (!is_name(key)) {
		perr(p, "bad key name '%s'", key);
		return 0;
	}
	entry_add(p->cur, key, value, p->cfg->path, p->line);
	return 1;
}

/* A [header] line: open our section here, so that empty sections exist too and
 * every section knows its line. inih reports malformed headers itself. */
static void header_line(struct parse *p, const char *line)
{
	const char *s = line, *close;
	char name[256];
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s != '[')
		return;
	close = strchr(s, ']');
	if (!close)
		return;
	n = (size_t)(close - s - 1);
	if (n >= sizeof(name)) {
		perr(p, "section header too long");
		return;
	}
	memcpy(name, s + 1, n);
	name[n] = '\0';
	while (n && isspace((unsigned char)name[n - 1]))
		name[--n] = '\0';
	if (p->err_line)
		return;
	p->cur = open_section(p, name[0] ? name + strspn(name, " \t") : name);
}

/* inih reads through us so we know the line number of every callback. */
static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	size_t len;
	int ch;

	if (!fgets(str, num, p->fp))
		return NULL;
	p->line++;
	p->line_started_blank = (str[0] == ' ' || str[0] == '\t');
	header_line(p, str);
	len = strlen(str);
	if (len == (size_t)num - 1 && str[len - 1] != '\n') {
		if (!p->line_too_long)
			p->line_too_long = p->line;
		while ((ch = fgetc(p->fp)) != EOF && ch != '\n')
			;                   /* drop the rest; reported as an error */
	}
	return str;
}

/* ---------- variable expansion ---------- */

struct expand {
	const struct config *cfg;
	char *err;
	size_t errlen;
	const char *where;
	const char *key;
};

struct sbuf {
	char *s;
	size_t n;
	size_t cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->s = xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = '\0';
}

static int expand_into(struct expand *x, const char *in, size_t len, struct sbuf *out, int depth);

static int expand_var(struct expand *x, const char *name, size_t nlen, const char *def,
		      size_t dlen, bool has_def, struct sbuf *out, int depth)
{
	char nm[128];
	const struct cfg_entry *pe;
	const struct ferry_key *pk;
	const char *env;

	if (nlen >= sizeof(nm)) {
		snprintf(x->err, x->errlen, "%s: key '%s': variable name too long", x->where, x->key);
		return -1;
	}
	memcpy(nm, name, nlen);
	nm[nlen] = '\0';
	pe = cfg_find_entry(cfg_find_section(x->cfg, "pipeline"), nm);
	if (pe)
		return expand_into(x, pe->raw, strlen(pe->raw), out, depth + 1);
	env = getenv(nm);
	if (env && (*env || !has_def)) {
		sb_add(out, env, strlen(env));
		return 0;
	}
	if (has_def)
		return expand_into(x, def, dlen, out, depth + 1);
	/* a [pipeline] key left out takes its default, as it does everywhere else */
	pk = cfg_key_find(pipeline_keys, nm);
	if (pk && pk->def)
		return expand_into(x, pk->def, strlen(pk->def), out, depth + 1);
	snprintf(x->err, x->errlen, "%s: key '%s': variable '%s' is not set (neither a [pipeline] "
		 "key nor an environment variable)", x->where, x->key, nm);
	return -1;
}

static int expand_into(struct expand *x, const char *in, size_t len, struct sbuf *out, int depth)
{
	size_t i = 0;

	if (depth > MAX_EXPAND_DEPTH) {
		snprintf(x->err, x->errlen, "%s: key '%s': variables refer to each other in a cycle",
			 x->where, x->key);
		return -1;
	}
	while (i < len) {
		const char *name, *def = NULL;
		size_t nlen, j, dlen = 0;
		int brace = 1;

		if (in[i] != '$') {
			sb_add(out, in + i, 1);
			i++;
			continue;
		}
		if (i + 1 < len && in[i + 1] == '$') {      /* "$$" is a literal '$' */
			sb_add(out, "$", 1);
			i += 2;
			continue;
		}
		if (i + 1 >= len || in[i + 1] != '{') {
			sb_add(out, "$", 1);
			i++;
			continue;
		}
		name = in + i + 2;
		for (j = i + 2; j < len && (isalnum((unsigned char)in[j]) || in[j] == '_'); j++)
			;
		nlen = (size_t)(in + j - name);
		if (nlen == 0 || isdigit((unsigned char)name[0])) {
			snprintf(x->err, x->errlen, "%s: key '%s': bad variable reference '%.*s'",
				 x->where, x->key, (int)(len - i > 20 ? 20 : len - i), in + i);
			return -1;
		}
		if (j + 1 < len && in[j] == ':' && in[j + 1] == '-') {
			def = in + j + 2;
			for (j += 2; j < len; j++) {
				if (in[j] == '{')
					brace++;
				else if (in[j] == '}' && --brace == 0)
					break;
			}
			dlen = (size_t)(in + j - def);
		}
		if (j >= len || in[j] != '}') {
			snprintf(x->err, x->errlen, "%s: key '%s': unterminated '${' in '%.*s'",
				 x->where, x->key, (int)len, in);
			return -1;
		}
		if (expand_var(x, name, nlen, def, dlen, def != NULL, out, depth) != 0)
			return -1;
		i = j + 1;
	}
	return 0;
}

static int expand_entry(const struct config *cfg, const struct cfg_section *sec,
			struct cfg_entry *e, char *err, size_t errlen)
{
	char where[512];
	struct expand x = { cfg, err, errlen, where, e->key };
	struct sbuf b = { NULL, 0, 0 };

	cfg_where(sec, e, where, sizeof(where));
	sb_add(&b, "", 0);
	if (expand_into(&x, e->raw, strlen(e->raw), &b, 0) != 0) {
		free(b.s);
		return -1;
	}
	free(e->value);
	e->value = b.s;
	return 0;
}

/* ---------- value parsers ---------- */

/* The first bad segment of a '/'-separated value, or NULL. A '..' after a normal segment
 * ("a/../b") is how a value expanded from the environment (ORG_ID=../../etc) climbs out of
 * the directory or prefix it was put in; paths may start with '..' segments (relative to
 * the INI's directory) and hold '.' and empty ones, object keys may not. */
static const char *bad_segment(const char *v, bool is_path)
{
	const char *p = v, *e;
	bool leading = *p != '/';

	for (p += *p == '/'; *p; p = *e ? e + 1 : e) {
		size_t n;

		e = strchrnul(p, '/');
		n = (size_t)(e - p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (!(leading && is_path))
				return "'..'";
			continue;
		}
		leading = false;
		if (!is_path && n == 1 && p[0] == '.')
			return "'.'";
		if (!is_path && n == 0)
			return "empty";
	}
	return NULL;
}

/* Is value one of the '|'-separated words of choices? */
static bool is_choice(const char *choices, const char *value)
{
	size_t n = strlen(value);
	const char *p, *e;

	for (p = choices; n && p && *p; p = *e ? e + 1 : e) {
		e = strchrnul(p, '|');
		if ((size_t)(e - p) == n && memcmp(p, value, n) == 0)
			return true;
	}
	return false;
}

/* "'x' is not a, b or c" */
static void not_a_choice(const char *choices, const char *value, char *err, size_t errlen)
{
	const char *p, *e;
	size_t len;

	snprintf(err, errlen, "'%s' is not ", value);
	for (p = choices; *p; p = *e ? e + 1 : e) {
		e = strchrnul(p, '|');
		len = strlen(err);
		snprintf(err + len, errlen - len, "%s%.*s", p == choices ? "" : *e ? ", " : " or ",
			 (int)(e - p), p);
	}
}

int cfg_value_check(const struct ferry_key *k, const char *value, char *err, size_t errlen)
{
	const char *bad;
	uint64_t u;
	int64_t i;
	bool b;

	switch (k->type) {
	case FERRY_KEY_ENUM:
		if (k->choices && is_choice(k->choices, value))
			return 0;
		if (!k->choices)
			snprintf(err, errlen, "key declares no choices");
		else
			not_a_choice(k->choices, value, err, errlen);
		return -1;
	case FERRY_KEY_STRING:
		return 0;
	case FERRY_KEY_PATH:
		if (!*value) {
			snprintf(err, errlen, "empty path");
			return -1;
		}
		if (bad_segment(value, true)) {
			snprintf(err, errlen, "path '%s' has a '..' segment after its start (refused: a "
				 "value from the environment could climb out of its directory)", value);
			return -1;
		}
		return 0;
	case FERRY_KEY_OBJKEY:
		if (!*value || *value == '/' || strlen(value) > 1024) {
			snprintf(err, errlen, "bad object key '%s' (relative to the bucket, 1-1024 "
				 "bytes, no leading '/')", value);
			return -1;
		}
		bad = bad_segment(value, false);
		if (bad) {
			snprintf(err, errlen, "bad object key '%s': %s path segment (refused: the key "
				 "could leave its prefix on a mount or a normalising proxy)", value, bad);
			return -1;
		}
		return 0;
	case FERRY_KEY_BOOL:
		if (ferry_parse_bool(value, &b) == 0)
			return 0;
		snprintf(err, errlen, "bad boolean '%s' (true/false, yes/no, on/off, 1/0)", value);
		return -1;
	case FERRY_KEY_INT:
		if (ferry_parse_int(value, &i) == 0)
			return 0;
		snprintf(err, errlen, "bad integer '%s'", value);
		return -1;
	case FERRY_KEY_DURATION:
		if (ferry_parse_duration_ms(value, &u) == 0)
			return 0;
		snprintf(err, errlen, "bad duration '%s' (e.g. 250ms, 30s, 5m, 1h, 2d)", value);
		return -1;
	case FERRY_KEY_SIZE:
		if (ferry_parse_size(value, &u) == 0)
			return 0;
		snprintf(err, errlen, "bad size '%s' (e.g. 4096, 64KiB, 8MiB, 1GiB)", value);
		return -1;
	}
	snprintf(err, errlen, "unknown key type");
	return -1;
}

/* Does this entry, as written in the file, hold a credential? A key named like one, or
 * the literal value of the credentials in our environment (not a ${VAR} reference). */
static bool looks_secret(const struct cfg_entry *e)
{
	static const char *const names[] = {
		"secret", "password", "passwd", "token", "credential", "api_key", "apikey",
		"private_key", NULL,
	};
	static const char *const envs[] = { "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", NULL };
	char low[128];
	size_t i;

	for (i = 0; e->key[i] && i + 1 < sizeof(low); i++)
		low[i] = (char)tolower((unsigned char)e->key[i]);
	low[i] = '\0';
	for (i = 0; names[i]; i++)
		if (strstr(low, names[i]) && e->raw[0])
			return true;
	for (i = 0; envs[i]; i++) {
		const char *v = getenv(envs[i]);

		if (v && strlen(v) >= 8 && strstr(e->raw, v))
			return true;
	}
	return false;
}

/* Warn (once a run) when a credential sits in an INI file other users can read. Names the
 * file, line and key, never the value. */
static void warn_readable(const struct cfg_entry *e)
{
	static bool warned;
	struct stat st;

	if (warned || !e->file || stat(e->file, &st) != 0 || !S_ISREG(st.st_mode) ||
	    !(st.st_mode & (S_IRGRP | S_IROTH)))
		return;
	warned = true;
	ferry_logf(FERRY_WARN, "ferry", "configuration file readable by other users holds a "
		   "credential: chmod 600 it, or pass the value through the environment",
		   "file=%s line=%d key=%s mode=%04o", e->file, e->line, e->key,
		   (unsigned int)(st.st_mode & 07777));
}

static int check_typed(const struct cfg_section *sec, const struct ferry_key *keys,
		       const char *const *extra, char *err, size_t errlen)
{
	size_t i;
	char where[512], why[256];

	for (i = 0; i < sec->n; i++) {
		const struct cfg_entry *e = &sec->e[i];
		const struct ferry_key *k = cfg_key_find(keys, e->key);
		const char *const *x;
		bool known = k != NULL;

		for (x = extra; !known && x && *x; x++)
			known = strcmp(*x, e->key) == 0;
		cfg_where(sec, e, where, sizeof(where));
		if (!known) {
			snprintf(err, errlen, "%s: key '%s': unknown key in [%s%s]", where, e->key,
				 sec->kind == CFG_STAGE ? "stage " : "", sec->name);
			return FERRY_USAGE;
		}
		if (k && (k->flags & FERRY_KEY_SECRET) && e->raw[0])
			warn_readable(e);
		if (k && cfg_value_check(k, e->value, why, sizeof(why)) != 0) {
			if (k->flags & FERRY_KEY_SECRET)
				snprintf(why, sizeof(why), "bad value");
			snprintf(err, errlen, "%s: key '%s': %s", where, e->key, why);
			return FERRY_USAGE;
		}
	}
	for (; keys && keys->name; keys++) {
		if ((keys->flags & FERRY_KEY_REQUIRED) && !cfg_find_entry(sec, keys->name)) {
			if (sec->file)
				snprintf(err, errlen, "%s:%d: key '%s': missing required key in [%s%s]",
					 sec->file, sec->line, keys->name,
					 sec->kind == CFG_STAGE ? "stage " : "", sec->name);
			else
				snprintf(err, errlen, "key '%s': missing required key in [%s%s]",
					 keys->name, sec->kind == CFG_STAGE ? "stage " : "", sec->name);
			return FERRY_USAGE;
		}
	}
	return 0;
}

int cfg_check_keys(const struct cfg_section *sec, const struct ferry_key *keys, char *err,
		   size_t errlen)
{
	static const char *const base[] = { "plugin", "enabled", NULL };

	/* plugin and enabled were checked with the structure; the rest belongs to the plugin */
	return check_typed(sec, keys, base, err, errlen);
}

/* Structure checks that need no plugin: [pipeline] and [s3] keys, stage basics. */
static int check_structure(const struct config *cfg, char *err, size_t errlen)
{
	static const struct ferry_key stage_base[] = {
		{ "plugin", FERRY_KEY_STRING, NULL, FERRY_KEY_REQUIRED, NULL },
		{ "enabled", FERRY_KEY_BOOL, "true", 0, NULL },
		{ NULL, 0, NULL, 0, NULL },
	};
	size_t i, j;
	char where[512];

	for (i = 0; i < cfg->n; i++) {
		const struct cfg_section *s = &cfg->s[i];
		int rc;

		switch (s->kind) {
		case CFG_PIPELINE:
			rc = check_typed(s, pipeline_keys, NULL, err, errlen);
			if (rc)
				return rc;
			break;
		case CFG_WORK:
			rc = check_typed(s, work_keys, NULL, err, errlen);
			if (rc)
				return rc;
			break;
		case CFG_S3: {
			struct ferry_s3_conf sc;
			char why[256];

			ferry_s3_conf_init(&sc);
			for (j = 0; j < s->n; j++) {
				const struct cfg_entry *e = &s->e[j];

				cfg_where(s, e, where, sizeof(where));
				if (!ferry_s3_conf_is_key(e->key)) {
					snprintf(err, errlen, "%s: key '%s': unknown key in [s3]%s", where,
						 e->key,
						 strstr(e->key, "secret") || strstr(e->key, "access") ?
						 " (credentials come from AWS_ACCESS_KEY_ID and "
						 "AWS_SECRET_ACCESS_KEY, never from the file)" : "");
					ferry_s3_conf_release(&sc);
					return FERRY_USAGE;
				}
				why[0] = '\0';
				if (ferry_s3_conf_set(&sc, e->key, e->value, why, sizeof(why)) != 0) {
					snprintf(err, errlen, "%s: key '%s': %s", where, e->key,
						 why[0] ? why : "bad value");
					ferry_s3_conf_release(&sc);
					return FERRY_USAGE;
				}
			}
			ferry_s3_conf_release(&sc);
			break;
		}
		case CFG_STAGE: {
			const struct cfg_entry *pe = cfg_find_entry(s, "plugin");

			for (j = 0; j < s->n; j++) {
				const struct ferry_key *k = cfg_key_find(stage_base, s->e[j].key);
				char why[256];

				if (k && cfg_value_check(k, s->e[j].value, why, sizeof(why))) {
					cfg_where(s, &s->e[j], where, sizeof(where));
					snprintf(err, errlen, "%s: key '%s': %s", where, k->name, why);
					return FERRY_USAGE;
				}
			}
			if (!pe) {
				snprintf(err, errlen, "%s:%d: key 'plugin': missing required key in [stage %s]",
					 cfg->path, s->line, s->name);
				return FERRY_USAGE;
			}
			for (j = 0; pe->value[j]; j++) {
				char ch = pe->value[j];

				if (!islower((unsigned char)ch) && !isdigit((unsigned char)ch) && ch != '_') {
					cfg_where(s, pe, where, sizeof(where));
					snprintf(err, errlen, "%s: key 'plugin': bad plugin name '%s' "
						 "(lower-case letters, digits and '_')", where, pe->value);
					return FERRY_USAGE;
				}
			}
			if (!pe->value[0]) {
				cfg_where(s, pe, where, sizeof(where));
				snprintf(err, errlen, "%s: key 'plugin': empty plugin name", where);
				return FERRY_USAGE;
			}
			break;
		}
		}
	}
	return 0;
}

/* No value may hold a control character (tab aside): a newline or escape sequence from
 * the environment would forge log lines, and in a key or path it names something else. */
static int check_controls(const struct cfg_section *sec, const struct cfg_entry *e, char *err,
			  size_t errlen)
{
	const unsigned char *p;
	char where[512];

	for (p = (const unsigned char *)e->value; *p; p++) {
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
			cfg_where(sec, e, where, sizeof(where));
			snprintf(err, errlen, "%s: key '%s': control character 0x%02x in the value "
				 "(after ${...} expansion)", where, e->key, *p);
			return -1;
		}
	}
	return 0;
}

static int apply_override(struct config *cfg, const char *ov, char *err, size_t errlen)
{
	const char *dot = strchr(ov, '.');
	const char *eq = strchr(ov, '=');
	char sec_name[128], key[128];
	struct cfg_section *s;
	struct cfg_entry *e;

	if (!dot || !eq || dot > eq || dot == ov || eq == dot + 1 ||
	    (size_t)(dot - ov) >= sizeof(sec_name) || (size_t)(eq - dot - 1) >= sizeof(key)) {
		snprintf(err, errlen, "-o '%s': expected STAGE.KEY=VALUE", ov);
		return FERRY_USAGE;
	}
	memcpy(sec_name, ov, (size_t)(dot - ov));
	sec_name[dot - ov] = '\0';
	memcpy(key, dot + 1, (size_t)(eq - dot - 1));
	key[eq - dot - 1] = '\0';
	if (!is_name(key)) {
		snprintf(err, errlen, "-o %s.%s: bad key name", sec_name, key);
		return FERRY_USAGE;
	}
	s = cfg_find_section(cfg, sec_name);
	if (!s && (strcmp(sec_name, "pipeline") == 0 || strcmp(sec_name, "s3") == 0))
		s = section_add(cfg, sec_name, sec_name[0] == 'p' ? CFG_PIPELINE : CFG_S3, 0);
	if (!s && strcmp(sec_name, "work") == 0)
		s = section_add(cfg, sec_name, CFG_WORK, 0);
	if (!s) {
		snprintf(err, errlen, "-o %s.%s: no stage '%s' in '%s'", sec_name, key, sec_name,
			 cfg->path);
		return FERRY_USAGE;
	}
	e = cfg_find_entry(s, key);
	if (!e) {
		entry_add(s, key, eq + 1, NULL, 0);
		return 0;
	}
	free(e->raw);
	e->raw = xstrdup(eq + 1);
	e->file = NULL;
	e->line = 0;
	return 0;
}

/* Is line n of path a section header that lacks its ']' ("[stage push")? */
static bool header_unclosed(const char *path, int n)
{
	char line[512];
	bool yes = false;
	FILE *f = fopen(path, "r");
	int k = 0;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (++k == n) {
			const char *p = line + strspn(line, " \t");

			yes = *p == '[' && !strchr(p, ']');
			break;
		}
	fclose(f);
	return yes;
}

int cfg_load(struct config **out, const char *path, char *const *overrides, int n_overrides,
	     char *err, size_t errlen)
{
	struct config *cfg;
	struct parse p;
	char *abs;
	int rc, i;
	size_t si, ei;

	*out = NULL;
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		abort();
	cfg->path = xstrdup(path);
	memset(&p, 0, sizeof(p));
	p.cfg = cfg;
	p.fp = fopen(path, "r");
	if (!p.fp) {
		snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
		cfg_free(cfg);
		return FERRY_USAGE;
	}
	abs = realpath(path, NULL);
	if (abs) {
		char *slash = strrchr(abs, '/');

		if (slash == abs)
			slash[1] = '\0';
		else if (slash)
			*slash = '\0';
		cfg->dir = abs;
	} else {
		cfg->dir = xstrdup(".");
	}
	rc = ini_parse_stream(reader, &p, on_entry, &p);
	fclose(p.fp);
	if (p.err_line) {
		snprintf(err, errlen, "%s:%d: %s", path, p.err_line, p.err);
		goto fail;
	}
	if (p.line_too_long) {
		snprintf(err, errlen, "%s:%d: line too long (at most 199 characters; continue a long "
			 "value on indented lines)", path, p.line_too_long);
		goto fail;
	}
	if (rc != 0) {
		if (header_unclosed(path, rc))
			snprintf(err, errlen, "%s:%d: section header without its closing ']'", path, rc);
		else
			snprintf(err, errlen, "%s:%d: syntax error (expected [section], key = value, or "
				 "a comment)", path, rc);
		goto fail;
	}
	for (i = 0; i < n_overrides; i++)
		if (apply_override(cfg, overrides[i], err, errlen) != 0)
			goto fail;
	for (si = 0; si < cfg->n; si++)
		for (ei = 0; ei < cfg->s[si].n; ei++)
			if (expand_entry(cfg, &cfg->s[si], &cfg->s[si].e[ei], err, errlen) != 0 ||
			    check_controls(&cfg->s[si], &cfg->s[si].e[ei], err, errlen) != 0)
				goto fail;
	for (si = 0; si < cfg->n; si++)
		for (ei = 0; ei < cfg->s[si].n; ei++)
			if (looks_secret(&cfg->s[si].e[ei]))
				warn_readable(&cfg->s[si].e[ei]);
	if (check_structure(cfg, err, errlen) != 0)
		goto fail;
	*out = cfg;
	return 0;
fail:
	cfg_free(cfg);
	return FERRY_USAGE;
}

void cfg_free(struct config *cfg)
{
	size_t i, j;

	if (!cfg)
		return;
	for (i = 0; i < cfg->n; i++) {
		for (j = 0; j < cfg->s[i].n; j++) {
			free(cfg->s[i].e[j].key);
			free(cfg->s[i].e[j].raw);
			free(cfg->s[i].e[j].value);
		}
		free(cfg->s[i].e);
		free(cfg->s[i].name);
	}
	free(cfg->s);
	free(cfg->path);
	free(cfg->dir);
	free(cfg);
}

int cfg_s3_conf(const struct config *cfg, struct ferry_s3_conf *sc, char *err, size_t errlen)
{
	const struct cfg_section *s = cfg_find_section(cfg, "s3");
	size_t i;

	ferry_s3_conf_init(sc);
	ferry_s3_conf_from_env(sc);
	for (i = 0; s && i < s->n; i++) {
		char why[256] = "";

		if (!s->e[i].value[0])
			continue;           /* "${AWS_REGION:-}" left empty: keep env/default */
		if (ferry_s3_conf_set(sc, s->e[i].key, s->e[i].value, why, sizeof(why)) != 0) {
			char where[512];

			cfg_where(s, &s->e[i], where, sizeof(where));
			snprintf(err, errlen, "%s: key '%s': %s", where, s->e[i].key, why);
			return FERRY_USAGE;
		}
	}
	return 0;
}
