/* unlock.c: the `unlock` stage: release the lock the lock stage took, only if still ours. */
#include <stdio.h>
#include <string.h>

#include "ferry_ctx.h"
#include "ferry_lock.h"
#include "ferry_s3.h"
#include "ferry_stage.h"

static const struct ferry_key unlock_keys[] = {
	{ "lock", FERRY_KEY_STRING, "lock", 0,
	  "the lock stage whose lock to release (a stage name, or a plugin name: its first stage)" },
	{ NULL, 0, NULL, 0, NULL },
};

static const char *lock_stage(const struct ferry_ctx *c)
{
	const char *s = ferry_cfg(c, "lock");

	return s && *s ? s : "lock";
}

static int unlock_check(struct ferry_ctx *c)
{
	(void)c;
	return FERRY_OK;
}

static int unlock_run(struct ferry_ctx *c)
{
	const char *st = lock_stage(c);
	const char *key = ferry_fact(c, st, "key");
	const char *nonce = ferry_fact(c, st, "nonce");
	struct ferry_s3 *s3;
	char err[1024];

	if (!key || !nonce) {
		ferry_log(c, FERRY_WARN, "no lock recorded by the lock stage, nothing to release",
			  "lock_stage=%s", st);
		return FERRY_OK;
	}
	s3 = ferry_s3(c);
	if (!s3)
		return FERRY_FAIL;
	if (ferry_lock_release_report(s3, ferry_stage_name(c), key, nonce, err, sizeof(err)) != 0)
		return ferry_fail(c, FERRY_FAIL, "%s", err);
	return FERRY_OK;
}

static int unlock_dry_run(struct ferry_ctx *c)
{
	const char *st = lock_stage(c);
	const char *key = ferry_fact(c, st, "key");
	const char *nonce = ferry_fact(c, st, "nonce");
	struct ferry_lock_state s;
	struct ferry_s3 *s3;
	char err[1024], who[400];

	if (!key || !nonce) {
		/* In a dry run the lock stage took nothing: say what a real run would do. */
		ferry_log(c, FERRY_INFO,
			  "would release the lock the lock stage takes in this run",
			  "lock_stage=%s request=\"GET, compare nonce, DELETE if its version is still "
			  "the one read\"", st);
		return FERRY_OK;
	}
	s3 = ferry_s3(c);
	if (!s3)
		return FERRY_FAIL;
	if (ferry_lock_read(s3, key, &s, err, sizeof(err)) != 0)
		return ferry_fail(c, FERRY_FAIL, "%s", err);
	if (!s.exists) {
		ferry_log(c, FERRY_INFO, "lock already gone; would delete nothing", "key=%s", key);
	} else if (s.parsed && strcmp(s.body.nonce, nonce) == 0) {
		ferry_log(c, FERRY_INFO, "would delete our lock",
			  "request=\"DELETE %s %s: %s\"", key, ferry_s3_cond_spelling(s3, false),
			  s.etag);
	} else {
		if (s.parsed)
			ferry_lock_describe(&s.body, who, sizeof(who));
		else
			snprintf(who, sizeof(who), "an unreadable lock");
		ferry_log(c, FERRY_WARN, "lock is someone else's now; would leave it untouched",
			  "key=%s holder=\"%s\"", key, who);
	}
	return FERRY_OK;
}

static int unlock_nothing(struct ferry_ctx *c)
{
	(void)c;
	return FERRY_OK;
}

static int unlock_undo(struct ferry_ctx *c)
{
	ferry_fact_set(c, "undo", "kept: a released lock is not taken again");
	return FERRY_OK;
}

FERRY_EXPORT const struct ferry_stage ferry_stage_v1 = {
	.abi = FERRY_STAGE_ABI,
	.size = sizeof(struct ferry_stage),
	.name = "unlock",
	.check = unlock_check,
	.dry_run = unlock_dry_run,
	.run = unlock_run,
	.undo = unlock_undo,
	.cleanup = unlock_nothing,
	.keys = unlock_keys,
	.ends = "lock",
	.summary = "release the lock the lock stage took, only if it is still ours",
};
