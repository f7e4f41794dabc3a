/* cmd_lock.c: `ferry lock status|break --yes`: the operator's view of the S3 lock object. */
#include "cli.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ferry_lock.h"
#include "ferry_log.h"
#include "ferry_s3.h"
#include "ferry_stage.h"

static void usage(FILE *f)
{
	cli_command_help("lock", f);        /* the text is in cmd_help.c */
}

static void span(char *out, size_t n, long long s)
{
	if (s < 0)
		s = -s;
	if (s >= 3600)
		snprintf(out, n, "%lldh%02lldm%02llds", s / 3600, s / 60 % 60, s % 60);
	else if (s >= 60)
		snprintf(out, n, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(out, n, "%llds", s);
}

static void show(const char *key, const struct ferry_lock_state *st)
{
	char t[32], d[32], now[32];

	ferry_lock_time_format(st->server_now, now);
	printf("key:         %s\n", key);
	if (!st->exists) {
		printf("state:       free (no lock object)\n");
		return;
	}
	printf("etag:        %s\n", st->etag);
	if (!st->parsed) {
		ferry_lock_time_format(st->last_modified, t);
		printf("state:       unreadable (%s)\n", st->parse_err);
		printf("written:     %s\n", t);
		return;
	}
	if (!st->server_now)
		printf("state:       held? (the server sent no Date header: expiry cannot be judged)\n");
	else if (ferry_lock_is_expired(&st->body, st->server_now))
		printf("state:       expired (may be taken over)\n");
	else
		printf("state:       held\n");
	if (st->body.legacy) {
		printf("holder:      shell locker (legacy lock)\n");
	} else {
		printf("holder:      %s\n", st->body.owner);
		printf("pid:         %ld\n", st->body.pid);
		printf("generation:  %" PRIu64 "\n", st->body.generation);
	}
	printf("instance:    %s\n", st->body.instance_id);
	ferry_lock_time_format(st->body.acquired_at, t);
	if (st->server_now) {
		span(d, sizeof(d), (long long)(st->server_now - st->body.acquired_at));
		printf("acquired:    %s (age %s by server time)\n", t, d);
	} else {
		printf("acquired:    %s\n", t);
	}
	ferry_lock_time_format(st->body.expires_at, t);
	if (st->server_now) {
		span(d, sizeof(d), (long long)(st->body.expires_at - st->server_now));
		printf("expires:     %s (%s %s by server time)\n", t,
		       st->body.expires_at >= st->server_now ? "in" : "expired", d);
	} else {
		printf("expires:     %s\n", t);
	}
	printf("ttl:         %lds\n", st->body.ttl_s);
	printf("legacy:      %s\n", st->body.legacy ? "yes" : "no");
	printf("server time: %s\n", st->server_now ? now : "unknown");
}

static int lock_break(struct ferry_s3 *s3, const char *key, const struct ferry_lock_state *st)
{
	struct ferry_s3_cond cond = { .if_match = st->etag };
	struct ferry_s3_res res;
	int rc;

	rc = ferry_s3_delete(s3, key, &cond, &res);
	if (rc == FERRY_S3_OK) {
		printf("removed lock '%s' (etag %s)\n", key, st->etag);
		ferry_logf(FERRY_WARN, "lock", "lock broken by operator", "key=%s etag=%s", key,
			   st->etag);
		return FERRY_OK;
	}
	if (rc == FERRY_S3_NOTFOUND) {
		printf("lock '%s' is already gone\n", key);
		return FERRY_OK;
	}
	if (rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_CONFLICT) {
		ferry_logf(FERRY_ERROR, "lock",
			   "lock changed since it was shown; not removed (run status again)",
			   "key=%s etag=%s", key, st->etag);
		return FERRY_FENCED;
	}
	ferry_logf(FERRY_ERROR, "lock", "cannot remove lock", "key=%s error=\"%s\"", key, res.msg);
	return FERRY_FAIL;
}

int cmd_lock(struct cli *cli)
{
	const char *verb = NULL, *key = NULL;
	struct ferry_lock_state st;
	struct ferry_s3 *s3;
	bool yes = false;
	char err[1024];

	for (int i = 0; i < cli->argc; i++) {
		const char *a = cli->argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return FERRY_OK;
		} else if (strcmp(a, "--yes") == 0 || strcmp(a, "-y") == 0) {
			yes = true;
		} else if (strcmp(a, "--key") == 0) {
			if (i + 1 >= cli->argc) {
				ferry_logf(FERRY_ERROR, "lock", "option '--key' needs a value", NULL);
				return FERRY_USAGE;
			}
			key = cli->argv[++i];
		} else if (strncmp(a, "--key=", 6) == 0) {
			key = a + 6;
		} else if (a[0] == '-') {
			ferry_logf(FERRY_ERROR, "lock", "unknown option", "option='%s'", a);
			usage(stdout);
			return FERRY_USAGE;
		} else if (!verb) {
			verb = a;
		} else {
			ferry_logf(FERRY_ERROR, "lock", "unexpected argument", "argument='%s'", a);
			return FERRY_USAGE;
		}
	}
	if (!verb || (strcmp(verb, "status") != 0 && strcmp(verb, "break") != 0)) {
		if (verb)
			ferry_logf(FERRY_ERROR, "lock", "unknown lock command", "command='%s'", verb);
		usage(stdout);
		return FERRY_USAGE;
	}
	if (!key)
		key = cli_stage_key(cli, "lock", "key");
	if (!key || !*key) {
		ferry_logf(FERRY_ERROR, "lock",
			   "no lock key: no enabled lock stage with a 'key' in the config; use --key KEY",
			   "config='%s'", cli->config_path ? cli->config_path : "");
		return FERRY_USAGE;
	}
	s3 = cli_s3(cli);
	if (!s3)
		return FERRY_USAGE;
	if (ferry_lock_read(s3, key, &st, err, sizeof(err)) != 0) {
		ferry_logf(FERRY_ERROR, "lock", "cannot read lock", "key=%s error=\"%s\"", key, err);
		return FERRY_FAIL;
	}
	show(key, &st);
	if (strcmp(verb, "status") == 0)
		return FERRY_OK;
	if (!st.exists) {
		printf("nothing to break\n");
		return FERRY_OK;
	}
	if (!yes) {
		ferry_logf(FERRY_ERROR, "lock",
			   "refusing to break the lock without --yes (only do it when its holder is dead)",
			   "key=%s", key);
		return FERRY_USAGE;
	}
	return lock_break(s3, key, &st);
}
