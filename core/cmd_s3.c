/* cmd_s3.c: `ferry s3 ls|head|get|put|rm|cp`: the operator's view of the bucket, with
 * the pipeline's [s3] config and the AWS_* credentials. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ferry_file.h"
#include "ferry_log.h"
#include "ferry_s3.h"
#include "ferry_stage.h"

static void usage(FILE *f)
{
	cli_command_help("s3", f);          /* the text is in cmd_help.c */
}

static int fail_usage(const char *fmt, const char *arg)
{
	char msg[512];

	snprintf(msg, sizeof(msg), fmt, arg);
	ferry_logf(FERRY_ERROR, "s3", msg, NULL);
	usage(stdout);
	return FERRY_USAGE;
}

static int fail_res(const struct ferry_s3_res *res)
{
	ferry_logf(FERRY_ERROR, "s3", res->msg[0] ? res->msg : "request failed", NULL);
	return FERRY_FAIL;
}

/* "s3://bucket/key" -> "key" (checking the bucket), or a plain key as is; NULL after an error. */
static const char *key_of(struct ferry_s3 *s3, const char *arg, bool allow_empty)
{
	const char *bucket = ferry_s3_bucket(s3), *rest, *slash;
	char msg[512];
	size_t n;

	if (strncmp(arg, "s3://", 5) != 0) {
		if (!*arg && !allow_empty) {
			ferry_logf(FERRY_ERROR, "s3", "empty key", NULL);
			return NULL;
		}
		return arg;
	}
	rest = arg + 5;
	slash = strchr(rest, '/');
	n = slash ? (size_t)(slash - rest) : strlen(rest);
	if (n != strlen(bucket) || strncmp(rest, bucket, n) != 0) {
		snprintf(msg, sizeof(msg), "bucket '%.*s' of '%s' is not the configured bucket '%s'",
			 (int)n, rest, arg, bucket);
		ferry_logf(FERRY_ERROR, "s3", msg, NULL);
		return NULL;
	}
	rest = slash ? slash + 1 : rest + n;
	if (!*rest && !allow_empty) {
		snprintf(msg, sizeof(msg), "no key in '%s'", arg);
		ferry_logf(FERRY_ERROR, "s3", msg, NULL);
		return NULL;
	}
	return rest;
}

struct opts {
	const char *pos[2];                 /* positional arguments */
	int n_pos;
	const char *if_match;
	bool if_none_match;
	bool recursive;
};

/* Options may come anywhere; `allowed` lists the ones this subcommand takes. */
static int parse(struct cli *cli, int from, const char *allowed, int min_pos, int max_pos,
		 struct opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	for (i = from; i < cli->argc; i++) {
		const char *a = cli->argv[i];

		if (!strcmp(a, "--if-match") && strstr(allowed, "m") && i + 1 < cli->argc) {
			o->if_match = cli->argv[++i];
		} else if (!strncmp(a, "--if-match=", 11) && strstr(allowed, "m")) {
			o->if_match = a + 11;
		} else if (!strcmp(a, "--if-none-match") && strstr(allowed, "n")) {
			o->if_none_match = true;
		} else if ((!strcmp(a, "-r") || !strcmp(a, "--recursive")) && strstr(allowed, "r")) {
			o->recursive = true;
		} else if (a[0] == '-' && a[1]) {
			return fail_usage("unknown or incomplete option '%s'", a);
		} else if (o->n_pos < max_pos) {
			o->pos[o->n_pos++] = a;
		} else {
			return fail_usage("unexpected argument '%s'", a);
		}
	}
	if (o->n_pos < min_pos)
		return fail_usage("missing argument for '%s'", cli->argv[from - 1]);
	if (o->if_match && o->if_none_match)
		return fail_usage("%s: --if-match and --if-none-match exclude each other", "options");
	return 0;
}

static void fmt_time(time_t t, char *out, size_t n)
{
	struct tm tm;

	if (t <= 0 || !gmtime_r(&t, &tm))
		snprintf(out, n, "-");
	else
		strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
}

static int do_ls(struct ferry_s3 *s3, struct opts *o)
{
	struct ferry_s3_list l;
	struct ferry_s3_res res;
	const char *prefix = o->n_pos ? key_of(s3, o->pos[0], true) : "";
	size_t i;

	if (!prefix)
		return FERRY_USAGE;
	if (ferry_s3_list_all(s3, prefix, o->recursive ? NULL : "/", &l, &res) != FERRY_S3_OK)
		return fail_res(&res);
	for (i = 0; i < l.n_prefixes; i++)
		printf("%19s %12s %s\n", "", "PRE", l.prefixes[i]);
	for (i = 0; i < l.n_entries; i++) {
		char t[32];

		fmt_time(l.entries[i].last_modified, t, sizeof(t));
		printf("%19s %12" PRIu64 " %s\n", t, l.entries[i].size, l.entries[i].key);
	}
	ferry_s3_list_release(&l);
	return 0;
}

static int do_head(struct ferry_s3 *s3, struct opts *o)
{
	struct ferry_s3_res res;
	const char *key = key_of(s3, o->pos[0], false);
	char t[32];

	if (!key)
		return FERRY_USAGE;
	if (ferry_s3_head(s3, key, NULL, &res) != FERRY_S3_OK)
		return fail_res(&res);
	fmt_time(res.last_modified, t, sizeof(t));
	printf("key:           %s\n", key);
	printf("size:          %" PRIu64 "\n", res.size);
	printf("etag:          %s\n", res.etag);
	printf("last-modified: %s UTC\n", t);
	if (res.request_id[0])
		printf("request-id:    %s\n", res.request_id);
	return 0;
}

struct fd_sink {
	int fd;
	int err;
};

static int fd_sink(void *arg, const void *data, size_t len)
{
	struct fd_sink *s = arg;

	if (ferry_write_full(s->fd, data, len) != 0) {
		s->err = errno;
		return -1;
	}
	return 0;
}

static int do_get(struct ferry_s3 *s3, struct opts *o)
{
	struct ferry_s3_cond cond = { .if_match = o->if_match };
	struct ferry_s3_res res;
	const char *key = key_of(s3, o->pos[0], false);
	const char *path = o->n_pos > 1 ? o->pos[1] : "-";
	bool to_stdout = !strcmp(path, "-");
	struct fd_sink s = { 1, 0 };
	char *tmp = NULL, msg[1024];
	int rc;

	if (!key)
		return FERRY_USAGE;
	if (!to_stdout) {
		/* into a temp file renamed on success: a failed get leaves no half file */
		if (asprintf(&tmp, "%s.ferry-tmp.XXXXXX", path) < 0)
			return FERRY_FAIL;
		s.fd = mkstemp(tmp);
		if (s.fd < 0) {
			snprintf(msg, sizeof(msg), "cannot create '%s': %s", path, strerror(errno));
			ferry_logf(FERRY_ERROR, "s3", msg, NULL);
			free(tmp);
			return FERRY_FAIL;
		}
	}
	rc = ferry_s3_get(s3, key, o->if_match ? &cond : NULL, 0, 0, fd_sink, &s, &res);
	if (rc == FERRY_S3_OK && !to_stdout && fsync(s.fd) != 0)
		s.err = errno;
	if (!to_stdout) {
		if (close(s.fd) != 0 && !s.err)
			s.err = errno;
		if (rc == FERRY_S3_OK && !s.err && rename(tmp, path) != 0)
			s.err = errno;
		if (rc != FERRY_S3_OK || s.err)
			unlink(tmp);
		else
			ferry_fsync_dir(path);      /* the rename survives a crash, as the data did */
		free(tmp);
	}
	if (s.err) {
		snprintf(msg, sizeof(msg), "cannot write '%s': %s", path, strerror(s.err));
		ferry_logf(FERRY_ERROR, "s3", msg, NULL);
		return FERRY_FAIL;
	}
	if (rc != FERRY_S3_OK)
		return fail_res(&res);
	if (!to_stdout)
		ferry_logf(FERRY_INFO, "s3", "downloaded", "key=\"%s\" file=\"%s\" bytes=%" PRIu64
			   " etag=%s", key, path, res.size, res.etag);
	return 0;
}

static int read_all(int fd, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);

	while (buf) {
		ssize_t r;

		if (n == cap) {
			char *b = realloc(buf, cap * 2);

			if (!b)
				break;
			buf = b;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		if (r == 0) {
			*out = buf;
			*len = n;
			return 0;
		}
		n += (size_t)r;
	}
	free(buf);
	return -1;
}

static int do_put(struct ferry_s3 *s3, struct opts *o)
{
	struct ferry_s3_cond cond = { .if_match = o->if_match,
				      .if_none_match = o->if_none_match ? "*" : NULL };
	const struct ferry_s3_cond *c = o->if_match || o->if_none_match ? &cond : NULL;
	struct ferry_s3_res res;
	const char *path = o->pos[0], *key = key_of(s3, o->pos[1], false);
	char msg[1024];
	int rc;

	if (!key)
		return FERRY_USAGE;
	if (!strcmp(path, "-")) {
		char *data;
		size_t len;

		if (read_all(0, &data, &len) != 0) {
			ferry_logf(FERRY_ERROR, "s3", "cannot read standard input", NULL);
			return FERRY_FAIL;
		}
		rc = ferry_s3_put(s3, key, data, len, c, &res);
		free(data);
	} else {
		struct stat st;
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			snprintf(msg, sizeof(msg), "cannot read '%s': %s", path,
				 fd < 0 ? strerror(errno) : "not a regular file");
			ferry_logf(FERRY_ERROR, "s3", msg, NULL);
			if (fd >= 0)
				close(fd);
			return FERRY_FAIL;
		}
		rc = ferry_s3_put_fd(s3, key, fd, 0, (uint64_t)st.st_size, c, &res);
		close(fd);
	}
	if (rc != FERRY_S3_OK)
		return fail_res(&res);
	printf("%s\n", res.etag);
	return 0;
}

static int do_rm(struct ferry_s3 *s3, struct opts *o)
{
	struct ferry_s3_cond cond = { .if_match = o->if_match };
	struct ferry_s3_res res;
	const char *key = key_of(s3, o->pos[0], false);

	if (!key)
		return FERRY_USAGE;
	if (ferry_s3_delete(s3, key, o->if_match ? &cond : NULL, &res) != FERRY_S3_OK)
		return fail_res(&res);
	return 0;
}

static int do_mb(struct ferry_s3 *s3, struct opts *o)
{
	struct ferry_s3_res res;
	bool existed;

	(void)o;
	if (ferry_s3_create_bucket(s3, &existed, &res) != FERRY_S3_OK)
		return fail_res(&res);
	printf("%s s3://%s\n", existed ? "already there:" : "created:", ferry_s3_bucket(s3));
	return 0;
}

static int do_cp(struct ferry_s3 *s3, struct opts *o)
{
	struct ferry_s3_cond cond = { .if_match = o->if_match,
				      .if_none_match = o->if_none_match ? "*" : NULL };
	struct ferry_s3_res res;
	const char *src = key_of(s3, o->pos[0], false), *dst;

	if (!src)
		return FERRY_USAGE;
	dst = key_of(s3, o->pos[1], false);
	if (!dst)
		return FERRY_USAGE;
	if (ferry_s3_copy(s3, src, NULL, dst, o->if_match || o->if_none_match ? &cond : NULL,
			  &res) != FERRY_S3_OK)
		return fail_res(&res);
	printf("%s\n", res.etag);
	return 0;
}

int cmd_s3(struct cli *cli)
{
	static const struct {
		const char *name;
		const char *opts;               /* m: --if-match, n: --if-none-match, r: -r */
		int min_pos, max_pos;
		int (*fn)(struct ferry_s3 *s3, struct opts *o);
	} subs[] = {
		{ "ls", "r", 0, 1, do_ls },
		{ "head", "", 1, 1, do_head },
		{ "get", "m", 1, 2, do_get },
		{ "put", "mn", 2, 2, do_put },
		{ "rm", "m", 1, 1, do_rm },
		{ "cp", "mn", 2, 2, do_cp },
		{ "mb", "", 0, 0, do_mb },
	};
	struct ferry_s3 *s3;
	struct opts o;
	size_t i;

	if (cli->argc < 1) {
		usage(stdout);
		return FERRY_USAGE;
	}
	if (!strcmp(cli->argv[0], "-h") || !strcmp(cli->argv[0], "--help") ||
	    !strcmp(cli->argv[0], "help")) {
		usage(stdout);
		return 0;
	}
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (strcmp(cli->argv[0], subs[i].name) != 0)
			continue;
		if (parse(cli, 1, subs[i].opts, subs[i].min_pos, subs[i].max_pos, &o) != 0)
			return FERRY_USAGE;
		s3 = cli_s3(cli);
		if (!s3)
			return FERRY_USAGE;
		return subs[i].fn(s3, &o);
	}
	return fail_usage("unknown s3 command '%s' (ls, head, get, put, rm, cp, mb)", cli->argv[0]);
}
