/* ferry_lock.h: the S3 lock object: body, acquire, release, and the lease question. */
#ifndef FERRY_LOCK_H
#define FERRY_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct ferry_s3;

/* The lock body; also understands the older shell locker's {instance_id, timestamp, timeout}. */
struct ferry_lock_body {
	char owner[128];                    /* "ferry org-42" style, free text */
	char instance_id[128];              /* FLY_MACHINE_ID, else hostname */
	long pid;
	char nonce[65];                     /* random hex, unique per acquisition */
	uint64_t generation;                /* +1 on each takeover */
	time_t acquired_at;                 /* server time (UTC) */
	time_t expires_at;                  /* server time (UTC); the later of expires_at and timestamp+timeout */
	long ttl_s;
	bool legacy;                        /* written by the shell locker (no nonce) */
};

/* Parse a lock body (JSON); -1 with a reason in err when it is not one. */
int ferry_lock_parse(const char *json, size_t len, struct ferry_lock_body *out,
		     char *err, size_t errlen);
/* Serialise (with the legacy "timestamp"/"timeout" fields too); malloc'd. */
char *ferry_lock_format(const struct ferry_lock_body *b);

/* UTC ISO-8601 "2025-01-21T14:30:22Z" <-> time_t. parse accepts fractions and
 * Z/+hh:mm/-hh:mm offsets (none = UTC); -1 when s is not such a time. */
int ferry_lock_time_parse(const char *s, time_t *out);
void ferry_lock_time_format(time_t t, char out[32]);

/* Is the lock expired at server time now? Strictly after expires_at, so that the
 * holder's own bound (see ferry_lock_acquire) ends before anyone else may take over. */
bool ferry_lock_is_expired(const struct ferry_lock_body *b, time_t server_now);
/* Backoff before poll number attempt (0 = first): min(cap, base * 2^attempt), jittered
 * down to between half and all of it by rnd (any 32-bit random value). */
uint64_t ferry_lock_backoff_ms(unsigned int attempt, uint64_t base_ms, uint64_t cap_ms,
			       uint32_t rnd);
/* The holder's lease end on CLOCK_BOOTTIME, judged two ways, the earlier wins: ttl
 * from when the winning request was sent, and the body's expires_at against the
 * response's server Date (which may be up to 1 s behind the server; 0 = none);
 * the margin is taken off both. */
int64_t ferry_lock_lease_until(int64_t sent_ms, int64_t recv_ms, uint64_t ttl_ms,
			       uint64_t margin_ms, time_t expires_at, time_t date);
/* "'ferry org-42' (instance 'm1', pid 12, generation 3) until 2025-01-21T15:30:22Z" */
void ferry_lock_describe(const struct ferry_lock_body *b, char *out, size_t n);
/* A fresh 64-hex-digit nonce from the OS random source; -1 if none is available. */
int ferry_lock_nonce(char out[65]);
/* /proc/sys/kernel/random/boot_id (a boot-time lease means nothing on another boot). */
void ferry_lock_boot_id(char out[40]);
/* FLY_MACHINE_ID, else the hostname. */
void ferry_lock_instance_id(char out[128]);

/* What acquire needs to know. */
struct ferry_lock_opts {
	const char *key;                    /* the lock object's key */
	const char *owner;                  /* free text for humans ("ferry org-42") */
	uint64_t ttl_ms;                    /* written as ttl_s (rounded up to seconds) */
	uint64_t max_wait_ms;               /* 0 = try once (create or take over), never sleep */
	uint64_t backoff_base_ms;           /* first wait between polls */
	uint64_t backoff_cap_ms;            /* longest wait between polls */
	uint64_t margin_ms;                 /* taken off the lease the holder believes in */
	bool (*cancelled)(void *arg);       /* polled at least every 100 ms while waiting */
	void *cancel_arg;
	const char *log_who;                /* name for ferry_logf lines; NULL = "lock" */
};

/* A lock we hold. */
struct ferry_lock_held {
	char key[1024];                     /* the lock object's key */
	char etag[80];                      /* ETag of our body, with quotes */
	struct ferry_lock_body body;        /* what we wrote (server times) */
	int64_t sent_boot_ms;               /* CLOCK_BOOTTIME when the winning request was sent */
	int64_t lease_until_boot_ms;        /* our lease ends here (margin already taken off) */
	char boot_id[40];                   /* the boot lease_until_boot_ms belongs to */
	bool took_over;                     /* we replaced an expired lock */
	char previous[400];                 /* describe() of the lock we replaced, if any */
	unsigned int requests;              /* S3 requests acquire sent */
	unsigned int polls;                 /* times it found the lock held */
};

/* Acquire: create with If-None-Match: *, or take an expired lock over
 * with If-Match and generation + 1, else poll with jittered backoff until max_wait.
 * Returns FERRY_OK; FERRY_NOLOCK naming holder and expiry; FERRY_FAIL on an S3 error
 * or cancellation. err holds the reason (never a credential). */
int ferry_lock_acquire(struct ferry_s3 *s3, const struct ferry_lock_opts *o,
		       struct ferry_lock_held *out, char *err, size_t errlen);

/* The lock object as the server has it now. */
struct ferry_lock_state {
	bool exists;                        /* there is an object at key */
	bool parsed;                        /* its body parsed (else see parse_err) */
	char parse_err[160];
	struct ferry_lock_body body;
	char etag[80];
	time_t server_now;                  /* Date of the response (0 if none) */
	time_t last_modified;
};
/* GET key: FERRY_OK (see st->exists) or FERRY_FAIL with the request's reason in err. */
int ferry_lock_read(struct ferry_s3 *s3, const char *key, struct ferry_lock_state *st,
		    char *err, size_t errlen);

enum ferry_lock_outcome {
	FERRY_LOCK_RELEASED,                /* ours, deleted */
	FERRY_LOCK_GONE,                    /* nothing there any more */
	FERRY_LOCK_NOT_OURS,                /* someone else's now; left untouched */
};
/* Release the lock with this nonce only if it is still ours: read it back, compare
 * the nonce, then DELETE If-Match its ETag (so a takeover in between is not undone,
 * and a store that ignores If-Match still never loses someone else's lock to a stale
 * owner). *outcome says what happened; holder (may be NULL) gets the new holder's body
 * for NOT_OURS. FERRY_OK or FERRY_FAIL with err. */
int ferry_lock_release(struct ferry_s3 *s3, const char *key, const char *nonce,
		       enum ferry_lock_outcome *outcome, struct ferry_lock_body *holder,
		       char *err, size_t errlen);

/* ferry_lock_release for a stage: logs what happened as who_logs (the stage's name):
 * released; already gone: warning; taken over: warning naming the new holder, left
 * untouched. FERRY_OK, or FERRY_FAIL with the S3 error in err. */
int ferry_lock_release_report(struct ferry_s3 *s3, const char *who_logs, const char *key,
			      const char *nonce, char *err, size_t errlen);

/* What the lock stage published about the lease it took (its facts, from this run or
 * the journal); NULL members when a fact is missing. */
struct ferry_lock_lease {
	const char *key;                    /* fact "key": the lock object */
	const char *nonce;                  /* fact "nonce": ours, in the lock body */
	const char *until;                  /* fact "lease_until_boot_ms": CLOCK_BOOTTIME ms */
	const char *boot_id;                /* fact "boot_id": the boot `until` belongs to */
};
/* For stages after `lock` (push, ...): is the lock still ours, with at least need_s
 * seconds of lease left? Judges the lease on CLOCK_BOOTTIME, then reads the lock object
 * back to compare the nonce (s3 may be NULL when no fact names a lock). FERRY_OK, or
 * FERRY_FENCED / FERRY_FAIL with why in err. */
int ferry_lock_check_lease(struct ferry_s3 *s3, const struct ferry_lock_lease *l, int64_t need_s,
			   char *err, size_t errlen);

#endif
