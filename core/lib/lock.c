/* lock.c: the distributed lock on an S3 object, shared by the lock/unlock stages,
 * `ferry lock` and the race tool. */
#include "ferry_lock.h"

#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "ferry_log.h"
#include "ferry_s3.h"
#include "ferry_time.h"

/* Lock bodies are a few hundred bytes; anything far bigger is not a lock. */
#define LOCK_BODY_MAX (64 * 1024)

static void copy_str(char *dst, size_t n, const char *src)
{
	if (!n)
		return;
	snprintf(dst, n, "%s", src ? src : "");
}

/* ---- times ---------------------------------------------------------------------------- */

static int parse_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int ferry_lock_time_parse(const char *s, time_t *out)
{
	struct tm tm = { 0 };
	int y, mo, d, h, mi, se, oh = 0, om = 0;
	long off = 0;
	const char *p = s;

	if (!s)
		return -1;
	while (*p == ' ')
		p++;
	if (parse_digits(&p, 4, &y) || *p++ != '-' || parse_digits(&p, 2, &mo) || *p++ != '-' ||
	    parse_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
		return -1;
	p++;
	if (parse_digits(&p, 2, &h) || *p++ != ':' || parse_digits(&p, 2, &mi) || *p++ != ':' ||
	    parse_digits(&p, 2, &se))
		return -1;
	if (*p == '.' || *p == ',') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1;

		if (parse_digits(&p, 2, &oh))
			return -1;
		if (*p == ':')
			p++;
		if (parse_digits(&p, 2, &om))
			return -1;
		off = sign * (oh * 3600L + om * 60L);
	}
	while (*p == ' ')
		p++;
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	*out = timegm(&tm) - off;
	return 0;
}

void ferry_lock_time_format(time_t t, char out[32])
{
	struct tm tm;

	/* ISO-8601 needs four-digit years: clamp to 1970..9999, which the parser reads back
	 * (a lock that expired before 1970 has simply expired; found by fuzz_lockjson) */
	if (t < 0)
		t = 0;
	if (t > (time_t)253402300799LL)
		t = (time_t)253402300799LL;
	if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "@%lld", (long long)t);
}

/* ---- body ----------------------------------------------------------------------------- */

/* A time field: ISO-8601 text or seconds since the epoch. 1 found, 0 absent, -1 bad. */
static int get_time(json_t *o, const char *name, time_t *out)
{
	json_t *v = json_object_get(o, name);

	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		*out = (time_t)json_integer_value(v);
		return 1;
	}
	if (json_is_string(v) && ferry_lock_time_parse(json_string_value(v), out) == 0)
		return 1;
	return -1;
}

/* An integer field, also accepted as decimal text (shell tools write either). */
static int get_int(json_t *o, const char *name, long long *out)
{
	json_t *v = json_object_get(o, name);
	char *end;

	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 1;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);

		/* out of range is a bad field, not undefined behaviour (found by fuzz_lockjson) */
		if (!(d > -9.2e18 && d < 9.2e18))
			return -1;
		*out = (long long)d;
		return 1;
	}
	if (json_is_string(v)) {
		errno = 0;
		*out = strtoll(json_string_value(v), &end, 10);
		if (!errno && end != json_string_value(v) && !*end)
			return 1;
	}
	return -1;
}

static const char *get_str(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

int ferry_lock_parse(const char *json, size_t len, struct ferry_lock_body *out,
		     char *err, size_t errlen)
{
	json_error_t je;
	json_t *o;
	long long n;
	time_t ts = 0, t;
	long long timeout = 0;
	bool have_ts, have_timeout, have_exp;
	int r, rc = -1;
	const char *s;

	memset(out, 0, sizeof(*out));
	o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		snprintf(err, errlen, "not JSON: %s (line %d)", je.text, je.line);
		return -1;
	}
	if (!json_is_object(o)) {
		snprintf(err, errlen, "not a JSON object");
		goto out;
	}
	copy_str(out->owner, sizeof(out->owner), get_str(o, "owner"));
	copy_str(out->instance_id, sizeof(out->instance_id), get_str(o, "instance_id"));
	s = get_str(o, "nonce");
	if (s && strlen(s) >= sizeof(out->nonce)) {
		snprintf(err, errlen, "field 'nonce' is too long");
		goto out;
	}
	copy_str(out->nonce, sizeof(out->nonce), s);
	out->legacy = !s || !*s;
	if (get_int(o, "pid", &n) < 0) {
		snprintf(err, errlen, "field 'pid' is not a number");
		goto out;
	}
	out->pid = (long)n;
	n = 0;
	if (get_int(o, "generation", &n) < 0 || n < 0) {
		snprintf(err, errlen, "field 'generation' is not a non-negative number");
		goto out;
	}
	out->generation = (uint64_t)n;
	n = 0;
	if (get_int(o, "ttl_s", &n) < 0 || n < 0) {
		snprintf(err, errlen, "field 'ttl_s' is not a non-negative number");
		goto out;
	}
	out->ttl_s = (long)n;

	r = get_time(o, "timestamp", &ts);
	if (r < 0) {
		snprintf(err, errlen, "field 'timestamp' is not an ISO-8601 time");
		goto out;
	}
	have_ts = r > 0;
	r = get_int(o, "timeout", &timeout);
	if (r < 0 || timeout < 0) {
		snprintf(err, errlen, "field 'timeout' is not a non-negative number");
		goto out;
	}
	have_timeout = r > 0;
	if (get_time(o, "acquired_at", &out->acquired_at) < 0) {
		snprintf(err, errlen, "field 'acquired_at' is not an ISO-8601 time");
		goto out;
	}
	r = get_time(o, "expires_at", &out->expires_at);
	if (r < 0) {
		snprintf(err, errlen, "field 'expires_at' is not an ISO-8601 time");
		goto out;
	}
	have_exp = r > 0;
	if (have_ts && have_timeout) {
		/* Honour both judgements of a body: the later expiry wins, so neither
		 * ferry nor the shell locker can see it free while the other sees it held. */
		t = ts + (time_t)timeout;
		if (!have_exp || t > out->expires_at)
			out->expires_at = t;
		if (!out->acquired_at)
			out->acquired_at = ts;
		if (!out->ttl_s)
			out->ttl_s = (long)timeout;
	} else if (!have_exp) {
		snprintf(err, errlen, "no expiry: neither 'expires_at' nor 'timestamp' and 'timeout'");
		goto out;
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}

char *ferry_lock_format(const struct ferry_lock_body *b)
{
	char acq[32], exp[32];
	json_t *o;
	char *s;

	ferry_lock_time_format(b->acquired_at, acq);
	ferry_lock_time_format(b->expires_at, exp);
	/* timestamp/timeout are the shell locker's fields: it treats the lock as held
	 * until timestamp + timeout, which is our expires_at (never a negative timeout, which
	 * our own parser, like the shell tool, refuses: found by fuzz_lockjson). */
	json_int_t timeout = b->expires_at > b->acquired_at ? (json_int_t)(b->expires_at - b->acquired_at) : 0;

	o = json_pack("{s:s, s:s, s:I, s:s, s:I, s:s, s:s, s:I, s:s, s:I}",
		      "owner", b->owner, "instance_id", b->instance_id, "pid", (json_int_t)b->pid,
		      "nonce", b->nonce, "generation", (json_int_t)b->generation,
		      "acquired_at", acq, "expires_at", exp, "ttl_s", (json_int_t)b->ttl_s,
		      "timestamp", acq, "timeout", timeout);
	if (!o)
		return NULL;
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

/* ---- decisions ------------------------------------------------------------------------ */

bool ferry_lock_is_expired(const struct ferry_lock_body *b, time_t server_now)
{
	return server_now > b->expires_at;
}

uint64_t ferry_lock_backoff_ms(unsigned int attempt, uint64_t base_ms, uint64_t cap_ms,
			       uint32_t rnd)
{
	uint64_t d = base_ms ? base_ms : 1;

	for (unsigned int i = 0; i < attempt && d < cap_ms; i++)
		d *= 2;
	if (cap_ms && d > cap_ms)
		d = cap_ms;
	/* "equal jitter": half fixed, half random, so waiters spread out but a
	 * release is noticed within the cap */
	return d / 2 + (d - d / 2) * (uint64_t)rnd / UINT32_MAX;
}

int64_t ferry_lock_lease_until(int64_t sent_ms, int64_t recv_ms, uint64_t ttl_ms,
			       uint64_t margin_ms, time_t expires_at, time_t date)
{
	int64_t a = sent_ms + (int64_t)ttl_ms - (int64_t)margin_ms;
	int64_t b;

	if (date) {
		/* The Date header is whole seconds, so server time at recv is below
		 * date + 1; others take over once their Date is past expires_at. */
		b = recv_ms + ((int64_t)(expires_at - date) - 1) * 1000 - (int64_t)margin_ms;
		if (b < a)
			a = b;
	}
	return a;
}

void ferry_lock_describe(const struct ferry_lock_body *b, char *out, size_t n)
{
	char exp[32];

	ferry_lock_time_format(b->expires_at, exp);
	if (b->legacy)
		snprintf(out, n, "shell locker instance '%s' (legacy lock) until %s",
			 b->instance_id, exp);
	else
		snprintf(out, n, "'%s' (instance '%s', pid %ld, generation %" PRIu64 ") until %s",
			 b->owner, b->instance_id, b->pid, b->generation, exp);
}

int ferry_lock_nonce(char out[65])
{
	unsigned char r[32];
	size_t got = 0;
	ssize_t k;

	while (got < sizeof(r)) {
		k = getrandom(r + got, sizeof(r) - got, 0);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)k;
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
	return 0;
}

void ferry_lock_boot_id(char out[40])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");

	out[0] = '\0';
	if (f) {
		if (!fgets(out, 40, f))
			out[0] = '\0';
		fclose(f);
	}
	out[strcspn(out, "\n")] = '\0';
}

void ferry_lock_instance_id(char out[128])
{
	const char *m = getenv("FLY_MACHINE_ID");

	if (m && *m) {
		copy_str(out, 128, m);
		return;
	}
	if (gethostname(out, 128) != 0)
		copy_str(out, 128, "unknown");
	out[127] = '\0';
}

/* ---- S3 ------------------------------------------------------------------------------- */

static bool is_conflict(int rc)
{
	return rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_CONFLICT;
}

int ferry_lock_read(struct ferry_s3 *s3, const char *key, struct ferry_lock_state *st,
		    char *err, size_t errlen)
{
	struct ferry_s3_res res;
	struct ferry_buf buf = { 0 };
	int rc;

	memset(st, 0, sizeof(*st));
	rc = ferry_s3_get_buf(s3, key, NULL, 0, 0, &buf, &res);
	st->server_now = res.date;
	if (rc == FERRY_S3_NOTFOUND) {
		ferry_buf_release(&buf);
		return 0;
	}
	if (rc != FERRY_S3_OK) {
		snprintf(err, errlen, "cannot read lock: %s", res.msg);
		ferry_buf_release(&buf);
		return 1;
	}
	st->exists = true;
	st->last_modified = res.last_modified;
	copy_str(st->etag, sizeof(st->etag), res.etag);
	if (buf.len > LOCK_BODY_MAX)
		snprintf(st->parse_err, sizeof(st->parse_err), "body of %zu bytes is too big",
			 buf.len);
	else if (ferry_lock_parse(buf.data ? buf.data : "", buf.len, &st->body, st->parse_err,
				  sizeof(st->parse_err)) == 0)
		st->parsed = true;
	ferry_buf_release(&buf);
	return 0;
}

/* Our guess of the server's clock: the last Date seen, advanced on CLOCK_BOOTTIME. */
struct srvclock {
	time_t date;                        /* last Date header, 0 = none yet */
	int64_t boot_ms;                    /* when it arrived */
};

static void srvclock_note(struct srvclock *sc, time_t date)
{
	if (date) {
		sc->date = date;
		sc->boot_ms = ferry_boot_ms();
	}
}

static time_t srvclock_now(const struct srvclock *sc)
{
	if (!sc->date)
		return time(NULL);
	return sc->date + (time_t)((ferry_boot_ms() - sc->boot_ms) / 1000);
}

struct acq {
	struct ferry_s3 *s3;
	const struct ferry_lock_opts *o;
	struct ferry_lock_held *h;
	struct srvclock sc;
	const char *who;
	char *err;
	size_t errlen;
	const char *holder;                 /* who holds it, as last read ("" = unknown) */
	int64_t start_ms;                   /* ferry_boot_ms() when acquire began */
	int64_t said_ms;                    /* the last "waiting for lock" line */
	int64_t every_ms;                   /* between two of them */
};

static int body_new(struct acq *a, struct ferry_lock_body *b, uint64_t generation)
{
	memset(b, 0, sizeof(*b));
	copy_str(b->owner, sizeof(b->owner), a->o->owner ? a->o->owner : "ferry");
	ferry_lock_instance_id(b->instance_id);
	b->pid = (long)getpid();
	if (ferry_lock_nonce(b->nonce) != 0) {
		snprintf(a->err, a->errlen, "cannot make a lock nonce: %s", strerror(errno));
		return -1;
	}
	b->generation = generation;
	b->ttl_s = (long)((a->o->ttl_ms + 999) / 1000);
	b->acquired_at = srvclock_now(&a->sc);
	b->expires_at = b->acquired_at + b->ttl_s;
	return 0;
}

/* One conditional PUT of body b; fills the held state on success. */
static int put_body(struct acq *a, const struct ferry_lock_body *b, const struct ferry_s3_cond *cond,
		    struct ferry_s3_res *res, int64_t *sent)
{
	char *text = ferry_lock_format(b);
	int rc;

	if (!text) {
		snprintf(a->err, a->errlen, "cannot format the lock body");
		return FERRY_S3_ERROR;
	}
	*sent = ferry_boot_ms();
	rc = ferry_s3_put(a->s3, a->o->key, text, strlen(text), cond, res);
	a->h->requests += res->attempts > 0 ? (unsigned int)res->attempts : 1;
	srvclock_note(&a->sc, res->date);
	free(text);
	return rc;
}

/* We won with body b: make sure the body's times are the server's, then note the lease. */
static int won(struct acq *a, struct ferry_lock_body *b, struct ferry_s3_res *res, int64_t sent)
{
	int64_t recv = ferry_boot_ms();
	struct ferry_s3_cond cond = { 0 };
	struct ferry_s3_res res2;
	int64_t lease;
	char etag[80];
	int rc;

	copy_str(etag, sizeof(etag), res->etag);
	if (res->date && llabs((long long)(b->acquired_at - res->date)) > 2) {
		/* Our estimate of the server clock was off (first request: we had only
		 * the local clock). Rewrite the body in server time so others judge
		 * its expiry right; same nonce, conditional on our own ETag. */
		b->acquired_at = res->date;
		b->expires_at = res->date + b->ttl_s;
		cond.if_match = etag;
		rc = put_body(a, b, &cond, &res2, &sent);
		if (rc != FERRY_S3_OK) {
			*res = res2;
			return rc;
		}
		recv = ferry_boot_ms();
		copy_str(etag, sizeof(etag), res2.etag);
		res = &res2;
	}
	lease = ferry_lock_lease_until(sent, recv, a->o->ttl_ms, a->o->margin_ms, b->expires_at,
				       res->date);
	copy_str(a->h->key, sizeof(a->h->key), a->o->key);
	copy_str(a->h->etag, sizeof(a->h->etag), etag);
	a->h->body = *b;
	a->h->sent_boot_ms = sent;
	a->h->lease_until_boot_ms = lease;
	ferry_lock_boot_id(a->h->boot_id);
	return FERRY_S3_OK;
}

/* A wait can last up to max_wait (minutes): a line every every_ms says it is still on, so
 * a log without a terminal (a container's) is never silent that long. */
static void say_waiting(struct acq *a)
{
	int64_t now = ferry_boot_ms();
	char msg[600];

	if (now - a->said_ms < a->every_ms)
		return;
	a->said_ms = now;
	snprintf(msg, sizeof(msg), "waiting for lock '%s' held by %s, %" PRId64 " s of %" PRIu64 " s",
		 a->o->key, a->holder[0] ? a->holder : "others", (now - a->start_ms) / 1000,
		 a->o->max_wait_ms / 1000);
	ferry_logf(FERRY_INFO, a->who, msg, "waited_s=%" PRId64 " max_wait_s=%" PRIu64,
		   (now - a->start_ms) / 1000, a->o->max_wait_ms / 1000);
}

static bool wait_ms(struct acq *a, int64_t ms)
{
	const struct ferry_lock_opts *o = a->o;

	while (ms > 0) {
		int64_t step = ms > 100 ? 100 : ms;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)step * 1000000L };

		if (o->cancelled && o->cancelled(o->cancel_arg))
			return false;
		nanosleep(&ts, NULL);
		ms -= step;
		say_waiting(a);
	}
	return !(o->cancelled && o->cancelled(o->cancel_arg));
}

static uint32_t rnd32(void)
{
	uint32_t r = 0;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (uint32_t)ferry_boot_ms() * 2654435761u;
	return r;
}

/* Was the holder a process of this machine that is gone (same instance id, no such pid)? */
static bool dead_here(const struct ferry_lock_body *b)
{
	char me[128];

	if (b->pid <= 0 || b->legacy)
		return false;
	ferry_lock_instance_id(me);
	return strcmp(me, b->instance_id) == 0 && kill((pid_t)b->pid, 0) != 0 && errno == ESRCH;
}

int ferry_lock_acquire(struct ferry_s3 *s3, const struct ferry_lock_opts *o,
		       struct ferry_lock_held *out, char *err, size_t errlen)
{
	struct acq a = { .s3 = s3, .o = o, .h = out, .who = o->log_who ? o->log_who : "lock",
			 .err = err, .errlen = errlen, .every_ms = ferry_log_progress_ms() };
	int64_t start = ferry_boot_ms(), deadline = start + (int64_t)o->max_wait_ms, now;
	struct ferry_s3_cond create = { .if_none_match = "*" };
	struct ferry_lock_state st;
	struct ferry_lock_body b;
	struct ferry_s3_res res;
	char holder[400] = "", exp[32];
	unsigned int attempt = 0, quick = 0;
	bool try_create = true;
	int64_t sent;
	int rc;

	memset(out, 0, sizeof(*out));
	a.holder = holder;
	a.start_ms = a.said_ms = start;
	for (;;) {
		if (o->cancelled && o->cancelled(o->cancel_arg)) {
			snprintf(err, errlen, "cancelled while waiting for lock '%s'", o->key);
			return FERRY_FAIL;
		}
		if (try_create) {
			if (body_new(&a, &b, 1) != 0)
				return FERRY_FAIL;
			rc = put_body(&a, &b, &create, &res, &sent);
			if (rc == FERRY_S3_OK) {
				rc = won(&a, &b, &res, sent);
				if (rc == FERRY_S3_OK)
					return FERRY_OK;
			}
			if (!is_conflict(rc)) {
				snprintf(err, errlen, "cannot create lock '%s': %s", o->key, res.msg);
				return FERRY_FAIL;
			}
			try_create = false;
		}
		if (ferry_lock_read(s3, o->key, &st, err, errlen) != 0)
			return FERRY_FAIL;
		out->requests++;
		srvclock_note(&a.sc, st.server_now);
		if (!st.exists) {
			/* released between our create and our read: create again now, but
			 * never spin on a key others keep creating and deleting */
			try_create = true;
			if (++quick < 3)
				continue;
		} else if (st.parsed && st.server_now &&
			   ferry_lock_is_expired(&st.body, st.server_now)) {
			struct ferry_s3_cond take = { .if_match = st.etag };
			char prev[400];

			ferry_lock_describe(&st.body, prev, sizeof(prev));
			if (body_new(&a, &b, st.body.generation + 1) != 0)
				return FERRY_FAIL;
			rc = put_body(&a, &b, &take, &res, &sent);
			if (rc == FERRY_S3_OK) {
				rc = won(&a, &b, &res, sent);
				if (rc == FERRY_S3_OK) {
					out->took_over = true;
					copy_str(out->previous, sizeof(out->previous), prev);
					ferry_logf(FERRY_WARN, a.who, "took over expired lock",
						   "key=%s previous=\"%s\" generation=%" PRIu64,
						   o->key, prev, b.generation);
					return FERRY_OK;
				}
			}
			if (rc == FERRY_S3_NOTFOUND) {
				try_create = true;
			} else if (!is_conflict(rc)) {
				snprintf(err, errlen, "cannot take over lock '%s': %s", o->key,
					 res.msg);
				return FERRY_FAIL;
			}
			/* someone else took it over (or released it) first: look again */
			if (++quick < 3)
				continue;
		} else {
			out->polls++;
			if (st.parsed) {
				ferry_lock_describe(&st.body, holder, sizeof(holder));
			} else {
				ferry_lock_time_format(st.last_modified, exp);
				snprintf(holder, sizeof(holder),
					 "an unreadable lock (%s; written %s)%s", st.parse_err, exp,
					 st.server_now ? "" : " (server sent no Date header)");
			}
			if (out->polls == 1)
				ferry_logf(FERRY_INFO, a.who, "lock held, waiting",
					   "key=%s holder=\"%s\" max_wait_ms=%" PRIu64, o->key,
					   holder, o->max_wait_ms);
			if (out->polls == 1 && st.parsed && dead_here(&st.body))
				ferry_logf(FERRY_WARN, a.who, "the lock's holder was on this machine and "
					   "is not running any more (killed?): `ferry run unlock` from its "
					   "state_dir, or `ferry lock break --yes`, frees it now; else it "
					   "expires by itself", "key=%s pid=%ld", o->key, st.body.pid);
		}
		quick = 0;
		now = ferry_boot_ms();
		if (now >= deadline) {
			if (!holder[0])
				snprintf(holder, sizeof(holder), "others (it kept changing hands)");
			snprintf(err, errlen, "cannot take lock '%s' within %" PRIu64 " ms: held by %s",
				 o->key, o->max_wait_ms, holder);
			return FERRY_NOLOCK;
		}
		{
			int64_t d = (int64_t)ferry_lock_backoff_ms(attempt++, o->backoff_base_ms,
								   o->backoff_cap_ms, rnd32());

			if (d > deadline - now)
				d = deadline - now;
			if (!wait_ms(&a, d)) {
				snprintf(err, errlen, "cancelled while waiting for lock '%s'", o->key);
				return FERRY_FAIL;
			}
		}
	}
}

int ferry_lock_release(struct ferry_s3 *s3, const char *key, const char *nonce,
		       enum ferry_lock_outcome *outcome, struct ferry_lock_body *holder,
		       char *err, size_t errlen)
{
	struct ferry_lock_state st;
	struct ferry_s3_cond cond = { 0 };
	struct ferry_s3_res res;
	int rc;

	*outcome = FERRY_LOCK_GONE;
	for (int round = 0, garbled = 0; round < 2; round++) {
		if (ferry_lock_read(s3, key, &st, err, errlen) != 0)
			return 1;
		if (!st.exists) {
			*outcome = FERRY_LOCK_GONE;
			return 0;
		}
		/* A body that does not parse is more often a garbled answer (a proxy, a broken
		 * connection) than someone's lock: read it again a few times before leaving it
		 * to expire. (Ours is never released unless its nonce is read back.) */
		if (!st.parsed && garbled++ < 3) {
			struct timespec ts = { 0, 200000000L * garbled };

			nanosleep(&ts, NULL);
			round--;
			continue;
		}
		if (!st.parsed || strcmp(st.body.nonce, nonce) != 0) {
			*outcome = FERRY_LOCK_NOT_OURS;
			if (holder)
				*holder = st.body;
			return 0;
		}
		cond.if_match = st.etag;
		rc = ferry_s3_delete(s3, key, &cond, &res);
		if (rc == FERRY_S3_OK) {
			*outcome = FERRY_LOCK_RELEASED;
			return 0;
		}
		if (rc == FERRY_S3_NOTFOUND) {
			*outcome = FERRY_LOCK_GONE;
			return 0;
		}
		if (!is_conflict(rc)) {
			snprintf(err, errlen, "cannot release lock '%s': %s", key, res.msg);
			return 1;
		}
		/* it changed between our read and our delete: look once more */
	}
	snprintf(err, errlen, "cannot release lock '%s': it keeps changing under us", key);
	return 1;
}

/* ---- the lease question of later stages ----------------------------------------------- */

int ferry_lock_check_lease(struct ferry_s3 *s3, const struct ferry_lock_lease *l, int64_t need_s,
			   char *err, size_t errlen)
{
	struct ferry_lock_state st;
	char my_boot[40], who[400];
	int64_t now, end;

	if (!l->key || !l->nonce || !l->until) {
		snprintf(err, errlen, "no lock held: the lock stage left no facts (did it run?)");
		return FERRY_FAIL;
	}
	ferry_lock_boot_id(my_boot);
	if (!l->boot_id || strcmp(l->boot_id, my_boot) != 0) {
		snprintf(err, errlen,
			 "lease of lock '%s' was measured before a reboot; it cannot be trusted",
			 l->key);
		return FERRY_FENCED;
	}
	end = strtoll(l->until, NULL, 10);
	now = ferry_boot_ms();
	if (now >= end) {
		snprintf(err, errlen, "lease of lock '%s' ran out %" PRId64 " s ago", l->key,
			 (now - end) / 1000);
		return FERRY_FENCED;
	}
	if (now + need_s * 1000 > end) {
		snprintf(err, errlen, "lease of lock '%s' has %" PRId64 " s left, %" PRId64
			 " s needed", l->key, (end - now) / 1000, need_s);
		return FERRY_FAIL;
	}
	if (!s3) {
		snprintf(err, errlen, "no S3 client to read lock '%s' back", l->key);
		return FERRY_FAIL;
	}
	if (ferry_lock_read(s3, l->key, &st, err, errlen) != 0)
		return FERRY_FAIL;
	if (!st.exists) {
		snprintf(err, errlen, "lock '%s' is gone: this run no longer holds it", l->key);
		return FERRY_FENCED;
	}
	if (!st.parsed) {
		snprintf(err, errlen, "lock '%s' was replaced by an unreadable one: %s", l->key,
			 st.parse_err);
		return FERRY_FENCED;
	}
	if (strcmp(st.body.nonce, l->nonce) != 0) {
		ferry_lock_describe(&st.body, who, sizeof(who));
		snprintf(err, errlen, "lock '%s' is now held by %s", l->key, who);
		return FERRY_FENCED;
	}
	return FERRY_OK;
}

int ferry_lock_release_report(struct ferry_s3 *s3, const char *who_logs, const char *key,
			      const char *nonce, char *err, size_t errlen)
{
	enum ferry_lock_outcome out;
	struct ferry_lock_body holder;
	char who[400];

	if (ferry_lock_release(s3, key, nonce, &out, &holder, err, errlen) != 0)
		return FERRY_FAIL;
	switch (out) {
	case FERRY_LOCK_RELEASED:
		ferry_logf(FERRY_INFO, who_logs, "released lock", "key=%s", key);
		break;
	case FERRY_LOCK_GONE:
		ferry_logf(FERRY_WARN, who_logs, "lock already gone, nothing to release", "key=%s",
			   key);
		break;
	case FERRY_LOCK_NOT_OURS:
		if (holder.expires_at || holder.instance_id[0])
			ferry_lock_describe(&holder, who, sizeof(who));
		else
			snprintf(who, sizeof(who), "an unreadable lock");
		ferry_logf(FERRY_WARN, who_logs, "lock was taken over by someone else; left untouched",
			   "key=%s holder=\"%s\"", key, who);
		break;
	}
	return FERRY_OK;
}
