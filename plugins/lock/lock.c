/* lock.c: the `lock` stage: take the org's S3 lock object before anything touches its data. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry_ctx.h"
#include "ferry_lock.h"
#include "ferry_parse.h"
#include "ferry_s3.h"
#include "ferry_stage.h"
#include "ferry_time.h"

/* A positive endpoint probe is remembered this long (per endpoint, bucket and dialect) so
 * an uncontended acquire stays one request; a negative one is never cached. */
#define PROBE_CACHE_S (24 * 3600)

static const struct ferry_key lock_keys[] = {
	{ "key", FERRY_KEY_OBJKEY, NULL, FERRY_KEY_REQUIRED,
	  "the lock object's key, e.g. org-data/${ORG_ID}.db.lock" },
	{ "ttl", FERRY_KEY_DURATION, "1h", 0, "lease written into the lock; must exceed the pipeline deadline" },
	{ "max_wait", FERRY_KEY_DURATION, "5m", 0, "how long to wait for a held lock before exit 3" },
	{ "backoff_base", FERRY_KEY_DURATION, "250ms", 0, "first wait between polls of a held lock" },
	{ "backoff_cap", FERRY_KEY_DURATION, "2s", 0, "longest wait between polls (bounds the handoff)" },
	{ "margin", FERRY_KEY_DURATION, "60s", 0, "safety margin taken off the holder's own lease" },
	{ "owner", FERRY_KEY_STRING, NULL, 0, "free text in the lock body; default \"ferry <pipeline name>\"" },
	{ "require_conditional", FERRY_KEY_BOOL, "true", 0,
	  "refuse to run when the endpoint probe finds a condition ignored (create if absent, "
	  "replace or delete with a wrong version, write on an absent key, ranged GET)" },
	{ NULL, 0, NULL, 0, NULL },
};

/* What run leaves for undo/cleanup. */
struct lock_priv {
	char key[1024];                     /* the lock object's key */
	char nonce[65];                     /* our acquisition */
};

static int lock_check(struct ferry_ctx *c)
{
	uint64_t ttl = ferry_cfg_ms(c, "ttl"), margin = ferry_cfg_ms(c, "margin");
	uint64_t base = ferry_cfg_ms(c, "backoff_base"), cap = ferry_cfg_ms(c, "backoff_cap");
	const char *dl = ferry_cfg_global(c, "pipeline", "deadline");
	const char *key = ferry_cfg(c, "key");
	uint64_t deadline = 0;

	if (dl)
		ferry_parse_duration_ms(dl, &deadline);   /* validated by the supervisor */
	if (!key || !*key || key[0] == '/')
		return ferry_cfg_error(c, "key", "must be an object key (no leading '/')");
	if (ttl < 2000)
		return ferry_cfg_error(c, "ttl", "must be at least 2s (server clocks tick in seconds)");
	if (margin >= ttl)
		return ferry_cfg_error(c, "margin", "must be below ttl");
	if (!base)
		return ferry_cfg_error(c, "backoff_base", "must be above 0");
	if (cap < base)
		return ferry_cfg_error(c, "backoff_cap", "must not be below backoff_base");
	/* the whole run must end before the lock could be taken over. */
	if (deadline && deadline >= ttl)
		return ferry_cfg_error(c, "ttl", "must be above the pipeline deadline (%" PRIu64
				       " s), else another run could take the lock mid-run",
				       deadline / 1000);
	if (deadline && deadline > ttl - margin)
		ferry_log(c, FERRY_WARN, "pipeline deadline is within the lock's safety margin",
			  "deadline_s=%" PRIu64 " ttl_s=%" PRIu64 " margin_s=%" PRIu64,
			  deadline / 1000, ttl / 1000, margin / 1000);
	return FERRY_OK;
}

static void owner_of(const struct ferry_ctx *c, char *out, size_t n)
{
	const char *o = ferry_cfg(c, "owner");
	const char *p = ferry_cfg_global(c, "pipeline", "name");

	if (o && *o)
		snprintf(out, n, "%s", o);
	else
		snprintf(out, n, "ferry %s", p && *p ? p : "pipeline");
}

/* ---- endpoint probe, cached per endpoint, bucket and dialect in state_dir ------------ */

static int require_conditional(struct ferry_ctx *c, struct ferry_s3 *s3)
{
	struct ferry_s3_features f;
	struct ferry_s3_res res;
	char why[1024];
	int rc;

	rc = ferry_s3_probe_cached(s3, ferry_state_dir(c), PROBE_CACHE_S, &f, &res);
	if (rc != FERRY_S3_OK)
		return ferry_fail(c, FERRY_FAIL, "cannot probe the endpoint: %s", res.msg);
	if (ferry_s3_features_unsafe(s3, &f, why, sizeof(why)))
		return ferry_fail(c, FERRY_USAGE, "%s; refusing to take a lock there (`ferry check` "
				  "prints the whole matrix; require_conditional = false overrides)",
				  why);
	if (!f.cached)
		ferry_log(c, FERRY_INFO, "endpoint probed: it fences conditional writes",
			  "store=%s dialect=%s upload_part_copy=%s multipart_fenced=%s",
			  ferry_s3_store_name(s3), f.dialect, f.upload_part_copy ? "yes" : "no",
			  f.multipart_fenced ? "yes" : "no");
	return FERRY_OK;
}

/* ---- stage callbacks ------------------------------------------------------------------ */

static bool cancelled_cb(void *arg)
{
	return ferry_cancelled(arg);
}

static void opts_of(struct ferry_ctx *c, struct ferry_lock_opts *o, char *owner, size_t n)
{
	owner_of(c, owner, n);
	memset(o, 0, sizeof(*o));
	o->key = ferry_cfg(c, "key");
	o->owner = owner;
	o->ttl_ms = ferry_cfg_ms(c, "ttl");
	o->max_wait_ms = ferry_cfg_ms(c, "max_wait");
	o->backoff_base_ms = ferry_cfg_ms(c, "backoff_base");
	o->backoff_cap_ms = ferry_cfg_ms(c, "backoff_cap");
	o->margin_ms = ferry_cfg_ms(c, "margin");
	o->cancelled = cancelled_cb;
	o->cancel_arg = c;
	o->log_who = ferry_stage_name(c);
}

static int publish(struct ferry_ctx *c, const struct ferry_lock_held *h)
{
	char acq[32], exp[32];

	ferry_lock_time_format(h->body.acquired_at, acq);
	ferry_lock_time_format(h->body.expires_at, exp);
	if (ferry_fact_set(c, "key", h->key) || ferry_fact_set(c, "etag", h->etag) ||
	    ferry_fact_set(c, "nonce", h->body.nonce) ||
	    ferry_fact_setf(c, "generation", "%" PRIu64, h->body.generation) ||
	    ferry_fact_set(c, "acquired_at", acq) || ferry_fact_set(c, "expires_at", exp) ||
	    ferry_fact_setf(c, "lease_until_boot_ms", "%" PRId64, h->lease_until_boot_ms) ||
	    ferry_fact_set(c, "boot_id", h->boot_id) ||
	    ferry_fact_setf(c, "ttl_s", "%ld", h->body.ttl_s))
		return -1;
	return 0;
}

/* A rerun by hand (`ferry run lock pull work`, then `ferry run push`): this state_dir's
 * journal names a lock its earlier run took and never released (no unlock ran). When the
 * object still holds that nonce with lease left, it is ours: keep it rather than wait for
 * ourselves until max_wait. The journal's facts stay this stage's facts. */
static bool adopt(struct ferry_ctx *c, struct ferry_s3 *s3, const char *key, struct lock_priv *p)
{
	const struct ferry_lock_lease l = {
		.key = ferry_fact(c, NULL, "key"),
		.nonce = ferry_fact(c, NULL, "nonce"),
		.until = ferry_fact(c, NULL, "lease_until_boot_ms"),
		.boot_id = ferry_fact(c, NULL, "boot_id"),
	};
	char err[1024];

	if (!l.key || !l.nonce || !l.until || !l.boot_id || strcmp(l.key, key) != 0 ||
	    ferry_lock_check_lease(s3, &l, 1, err, sizeof(err)) != FERRY_OK)
		return false;
	snprintf(p->key, sizeof(p->key), "%s", l.key);
	snprintf(p->nonce, sizeof(p->nonce), "%s", l.nonce);
	*ferry_priv(c) = p;
	ferry_log(c, FERRY_INFO, "lock already ours: an earlier run from this state_dir took it "
		  "and did not release it; keeping it", "key=%s expires_at=%s", l.key,
		  ferry_fact(c, NULL, "expires_at") ? ferry_fact(c, NULL, "expires_at") : "?");
	return true;
}

static int lock_run(struct ferry_ctx *c)
{
	struct ferry_lock_opts o;
	struct ferry_lock_held h;
	struct lock_priv *p;
	struct ferry_s3 *s3;
	char owner[128], err[1024], exp[32];
	int64_t t0 = ferry_boot_ms();
	int rc;

	s3 = ferry_s3(c);
	if (!s3)
		return FERRY_FAIL;
	if (ferry_cfg_bool(c, "require_conditional")) {
		rc = require_conditional(c, s3);
		if (rc != FERRY_OK)
			return rc;
	} else {
		ferry_log(c, FERRY_WARN, "require_conditional = false: the endpoint is not probed; "
			  "if it ignores If-None-Match two machines can both take the lock", NULL);
	}
	opts_of(c, &o, owner, sizeof(owner));
	p = calloc(1, sizeof(*p));
	if (!p)
		return ferry_fail(c, FERRY_FAIL, "out of memory");
	if (adopt(c, s3, o.key, p))
		return FERRY_OK;
	rc = ferry_lock_acquire(s3, &o, &h, err, sizeof(err));
	if (rc != FERRY_OK) {
		free(p);
		return ferry_fail(c, rc, "%s", err);
	}
	snprintf(p->key, sizeof(p->key), "%s", h.key);
	snprintf(p->nonce, sizeof(p->nonce), "%s", h.body.nonce);
	*ferry_priv(c) = p;
	/* priv is set first: should publishing fail, undo still releases */
	if (publish(c, &h) != 0)
		return ferry_fail(c, FERRY_FAIL, "cannot record the lock's facts");
	ferry_lock_time_format(h.body.expires_at, exp);
	ferry_log(c, FERRY_INFO, "acquired lock",
		  "key=%s generation=%" PRIu64 " expires_at=%s lease_s=%" PRId64
		  " requests=%u waited_polls=%u took_over=%s ms=%" PRId64,
		  h.key, h.body.generation, exp, (h.lease_until_boot_ms - ferry_boot_ms()) / 1000,
		  h.requests, h.polls, h.took_over ? "yes" : "no", ferry_boot_ms() - t0);
	return FERRY_OK;
}

/* Release the lock with this nonce if it is still ours, logging what happened. */
static int release(struct ferry_ctx *c, const char *key, const char *nonce)
{
	struct ferry_s3 *s3 = ferry_s3(c);
	char err[1024];

	if (!s3)
		return FERRY_FAIL;
	if (ferry_lock_release_report(s3, ferry_stage_name(c), key, nonce, err, sizeof(err)) != 0)
		return ferry_fail(c, FERRY_FAIL, "%s", err);
	return FERRY_OK;
}

/* Release only if still ours; from run's private state, else (ferry run STAGE) facts. */
static int lock_undo(struct ferry_ctx *c)
{
	struct lock_priv *p = *ferry_priv(c);
	const char *key = p ? p->key : ferry_fact(c, NULL, "key");
	const char *nonce = p ? p->nonce : ferry_fact(c, NULL, "nonce");

	if (!key || !nonce) {
		ferry_log(c, FERRY_WARN, "no lock recorded, nothing to release", NULL);
		ferry_fact_set(c, "undo", "kept: no lock was recorded");
		return FERRY_OK;
	}
	if (release(c, key, nonce) != FERRY_OK)
		return FERRY_FAIL;
	ferry_fact_set(c, "undo", "lock released");
	return FERRY_OK;
}

static int lock_cleanup(struct ferry_ctx *c)
{
	free(*ferry_priv(c));
	*ferry_priv(c) = NULL;
	return FERRY_OK;
}

static int lock_dry_run(struct ferry_ctx *c)
{
	struct ferry_lock_opts o;
	struct ferry_lock_state st;
	struct ferry_s3_features f;
	struct ferry_s3 *s3;
	char owner[128], err[1024], who[400], exp[32];

	s3 = ferry_s3(c);
	if (!s3)
		return FERRY_FAIL;
	opts_of(c, &o, owner, sizeof(owner));
	if (ferry_cfg_bool(c, "require_conditional") &&
	    !ferry_s3_probe_peek(s3, ferry_state_dir(c), PROBE_CACHE_S, &f))
		ferry_log(c, FERRY_INFO, "would probe the endpoint first",
			  "requests=\"conditional PUTs and DELETEs, a ranged GET and an "
			  "UploadPartCopy on scratch keys under .ferry-probe/, then delete them\"");
	if (ferry_lock_read(s3, o.key, &st, err, sizeof(err)) != 0)
		return ferry_fail(c, FERRY_FAIL, "%s", err);
	if (!st.exists) {
		ferry_log(c, FERRY_INFO, "lock is free; would create it",
			  "request=\"PUT %s %s\" owner=\"%s\" generation=1 ttl_s=%" PRIu64,
			  o.key, ferry_s3_cond_spelling(s3, true), owner, (o.ttl_ms + 999) / 1000);
		return FERRY_OK;
	}
	if (!st.parsed) {
		ferry_log(c, FERRY_WARN, "lock object is unreadable; would wait for it",
			  "key=%s etag=%s reason=\"%s\" max_wait_ms=%" PRIu64, o.key, st.etag,
			  st.parse_err, o.max_wait_ms);
		return FERRY_OK;
	}
	ferry_lock_describe(&st.body, who, sizeof(who));
	ferry_lock_time_format(st.server_now, exp);
	if (st.server_now && ferry_lock_is_expired(&st.body, st.server_now))
		ferry_log(c, FERRY_INFO, "lock is expired; would take it over",
			  "request=\"PUT %s %s: %s\" holder=\"%s\" server_time=%s generation=%" PRIu64,
			  o.key, ferry_s3_cond_spelling(s3, false), st.etag, who, exp, st.body.generation + 1);
	else
		ferry_log(c, FERRY_INFO, "lock is held; would wait for it",
			  "key=%s holder=\"%s\" server_time=%s max_wait_ms=%" PRIu64
			  " then=\"PUT %s or, once expired, PUT %s: %s\"",
			  o.key, who, exp, o.max_wait_ms, ferry_s3_cond_spelling(s3, true),
			  ferry_s3_cond_spelling(s3, false), st.etag);
	return FERRY_OK;
}

FERRY_EXPORT const struct ferry_stage ferry_stage_v1 = {
	.abi = FERRY_STAGE_ABI,
	.size = sizeof(struct ferry_stage),
	.name = "lock",
	.check = lock_check,
	.dry_run = lock_dry_run,
	.run = lock_run,
	.undo = lock_undo,
	.cleanup = lock_cleanup,
	.keys = lock_keys,
	.provides = "lock",
	.summary = "take the org's lock object (conditional create, backoff, expired-lock takeover)",
};
