/* ferry_lock.h: the lock object's body and the lease question other stages ask (DESIGN §6). */
#ifndef FERRY_LOCK_H
#define FERRY_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct ferry_ctx;

/* The lock body; also understands the older shell locker's {instance_id, timestamp, timeout}. */
struct ferry_lock_body {
	char owner[128];                    /* "ferry org-42" style, free text */
	char instance_id[128];              /* FLY_MACHINE_ID, else hostname */
	long pid;
	char nonce[65];                     /* random hex, unique per acquisition */
	uint64_t generation;                /* +1 on each takeover */
	time_t acquired_at;                 /* server time (UTC) */
	time_t expires_at;                  /* server time (UTC) */
	long ttl_s;
	bool legacy;                        /* written by the shell locker (no nonce) */
};

/* Parse a lock body (JSON); -1 with a reason in err when it is not one. */
int ferry_lock_parse(const char *json, size_t len, struct ferry_lock_body *out,
		     char *err, size_t errlen);
/* Serialise (with the legacy "timestamp"/"timeout" fields too); malloc'd. */
char *ferry_lock_format(const struct ferry_lock_body *b);

/* For stages after `lock` (push, ...): is the lock still ours, with at least need_s
 * seconds of lease left? Uses the lock stage's facts (from this run or the journal),
 * judges the lease on CLOCK_BOOTTIME, and reads the lock object back to compare the
 * nonce. Returns FERRY_OK, or FERRY_FENCED / FERRY_FAIL after ferry_fail(c, ...). */
int ferry_lock_assert_held(struct ferry_ctx *c, int64_t need_s);

#endif
