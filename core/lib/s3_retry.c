/* s3_retry.c: the S3 client's retries: full-jitter backoff for idempotent requests, and
 * read-back verification for writes that must never be resent blindly. */
#include "ferry_s3.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ferry_log.h"
#include "s3_internal.h"

/* ---------------------------------------------------------------- backoff */

static uint64_t rng_next(struct ferry_s3 *s3)
{
	/* splitmix64 over an atomic counter: threads never share a draw */
	uint64_t z = __atomic_add_fetch(&s3->rng, 0x9e3779b97f4a7c15ULL, __ATOMIC_RELAXED);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Full-jitter backoff: uniform in [0, min(cap, base * 2^attempt)], plus a second after a
 * 429: a store that says "too many requests" about one object (GCS: about one write a
 * second per object name) is not asked again within that second. False if cancelled. */
static bool backoff(struct ferry_s3 *s3, int attempt, long status)
{
	uint64_t ceil_ms = (uint64_t)(s3->conf.retry_base_ms > 0 ? s3->conf.retry_base_ms : 1);
	uint64_t ms;

	while (attempt-- > 0 && ceil_ms < (uint64_t)s3->conf.retry_cap_ms)
		ceil_ms *= 2;
	if (ceil_ms > (uint64_t)s3->conf.retry_cap_ms)
		ceil_ms = (uint64_t)s3->conf.retry_cap_ms;
	ms = rng_next(s3) % (ceil_ms + 1) + (status == 429 ? S3_SLOWDOWN_MS : 0);
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

/* ---------------------------------------------------------------- idempotent requests */

/* Non-idempotent requests are left to the caller after a transient failure: only a read
 * back can tell whether they landed. */
int s3_do(struct ferry_s3 *s3, struct s3_req *rq, struct ferry_s3_res *res,
	  struct ferry_buf *keep)
{
	struct s3_xfer x = { .s3 = s3, .rq = rq, .res = res };
	int rc, attempt = 0, refused = 0;
	bool transient;

	for (;;) {
		bool resumed = rq->sink && x.delivered > 0;

		rc = s3_req_attempt(&x, &transient);
		/* a resumed read starting at the end of the (pinned) version: nothing was
		 * missing */
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
		/* no connection: nothing was sent, so even a conditional write may go again,
		 * but a server that is not there is not there: two quick retries (fewer if max_retries
		 * says so), then say so
		 * (not 40 retries over 11 s as "outcome unknown") */
		if (x.not_sent) {
			if (refused++ >= S3_REFUSED_RETRIES || attempt >= s3->conf.max_retries) {
				size_t n = strlen(res->msg);

				snprintf(res->msg + n, sizeof(res->msg) - n, " (nothing was sent; %d "
					 "attempts: is the endpoint %s up?)", res->attempts,
					 s3->conf.endpoint ? s3->conf.endpoint : "(AWS)");
				s3_scrub(s3, res->msg);
				break;
			}
			if (!backoff(s3, attempt++, res->status)) {
				s3_req_msg(s3, rq, res, "cancelled");
				rc = FERRY_S3_CANCELLED;
				break;
			}
			continue;
		}
		if (!rq->idempotent) {
			rc = S3_RC_AMBIGUOUS;
			break;
		}
		if (attempt >= s3->conf.max_retries) {
			size_t n = strlen(res->msg);

			snprintf(res->msg + n, sizeof(res->msg) - n, " (after %d attempts)",
				 res->attempts);
			break;
		}
		S3_STAT_ADD(s3, retries, 1);
		ferry_logf(FERRY_DEBUG, "s3", "retrying", "op=%s attempt=%d status=%ld why=\"%s\"",
			   rq->op, res->attempts, res->status, res->msg);
		if (!backoff(s3, attempt++, res->status)) {
			s3_req_msg(s3, rq, res, "cancelled");
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

/* ---------------------------------------------------------------- conditional writes */

/* Our write landed after all: the call succeeds. */
static void res_confirmed(struct ferry_s3_res *res)
{
	res->status = 200;
	res->code[0] = '\0';
	res->msg[0] = '\0';
}

/* A 412 or 404 after a resend may be the condition meeting our own earlier attempt. */
static int after_echo(struct ferry_s3 *s3, const struct s3_req *rq, struct ferry_s3_res *res,
		      s3_verify_fn verify, void *varg, int rc)
{
	char msg[sizeof(res->msg)];

	s3_scopy(msg, sizeof(msg), res->msg);
	if (verify(s3, rq, varg, res) == S3_V_OURS) {
		res_confirmed(res);
		ferry_logf(FERRY_INFO, "s3", "conditional write confirmed by read-back",
			   "op=%s key=\"%s\" attempts=%d", rq->op, s3_req_what(rq), res->attempts);
		return FERRY_S3_OK;
	}
	s3_scopy(res->msg, sizeof(res->msg), msg);
	return rc;
}

/* After an ambiguous outcome: FERRY_S3_OK when the write is ours, an rc to give up with,
 * or S3_RC_AMBIGUOUS to send it again. */
static int after_ambiguous(struct ferry_s3 *s3, const struct s3_req *rq,
			   struct ferry_s3_res *res, s3_verify_fn verify, void *varg, int attempt)
{
	char msg[sizeof(res->msg)];
	enum s3_verdict v;

	s3_scopy(msg, sizeof(msg), res->msg);
	v = verify(s3, rq, varg, res);
	if (v == S3_V_OURS) {
		res_confirmed(res);
		ferry_logf(FERRY_INFO, "s3", "ambiguous write confirmed by read-back",
			   "op=%s key=\"%s\" attempts=%d why=\"%s\"", rq->op, s3_req_what(rq),
			   res->attempts, msg);
		return FERRY_S3_OK;
	}
	if (v == S3_V_PRECOND) {
		if (snprintf(res->msg, sizeof(res->msg), "%s '%s': 412 PreconditionFailed: "
			     "the object changed under an ambiguous write (%s)", rq->op,
			     s3_req_what(rq), msg) < 0)
			res->msg[0] = '\0';
		s3_scrub(s3, res->msg);
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
	return S3_RC_AMBIGUOUS;
}

enum s3_verdict s3_verify_etag(struct ferry_s3 *s3, const char *key, const char *want,
			       struct ferry_s3_res *res, struct ferry_s3_res *found)
{
	int rc;

	if (!want)
		return S3_V_UNKNOWN;
	rc = ferry_s3_head(s3, key, NULL, found);
	res->attempts += found->attempts;
	if (rc == FERRY_S3_NOTFOUND)
		return S3_V_RESEND;
	if (rc != FERRY_S3_OK)
		return S3_V_UNKNOWN;
	if (strcmp(found->content_etag, want))
		return S3_V_RESEND;
	s3_scopy(res->etag, sizeof(res->etag), found->etag);
	s3_scopy(res->content_etag, sizeof(res->content_etag), found->content_etag);
	return S3_V_OURS;
}

int s3_do_cond(struct ferry_s3 *s3, struct s3_req *rq, struct ferry_s3_res *res,
	       s3_verify_fn verify, void *varg, struct ferry_buf *keep)
{
	bool resent = false;
	int attempt = 0, rc;
	long status;

	rq->idempotent = false;
	for (;;) {
		rc = s3_do(s3, rq, res, keep);
		if (rc == FERRY_S3_OK || rc == FERRY_S3_CANCELLED)
			return rc;
		if ((rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_NOTFOUND) && resent)
			return after_echo(s3, rq, res, verify, varg, rc);
		if (rc != S3_RC_AMBIGUOUS)
			return rc;
		status = res->status;       /* the write's answer, not the read-back's */
		rc = after_ambiguous(s3, rq, res, verify, varg, attempt);
		if (rc != S3_RC_AMBIGUOUS)
			return rc;
		S3_STAT_ADD(s3, retries, 1);
		if (!backoff(s3, attempt++, status)) {
			s3_req_msg(s3, rq, res, "cancelled");
			return FERRY_S3_CANCELLED;
		}
		resent = true;
	}
}
