/* main.c: ferryfs entry point: options, S3 client, FUSE session, signals, counters. */
#include "ferryfs.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_fsproto.h"
#include "ferry_log.h"
#include "ferry_parse.h"

struct opts {
	char *source;                       /* BUCKET[:PREFIX] */
	char *mountpoint;
	bool foreground;
	bool debug;
	char *fuse_opts;                    /* comma list passed to the kernel / libfuse */
};

static void usage(FILE *to)
{
	fprintf(to,
		"usage: ferryfs BUCKET[:PREFIX] MOUNTPOINT [-o opt[,opt...]] [-f] [-d] [-v|-q]\n"
		"               [--log-format=plain|json]\n"
		"\n"
		"  -f                 stay in the foreground\n"
		"  -d                 debug log and FUSE's request trace (implies -f)\n"
		"  -v                 debug log lines\n"
		"  -q                 warnings and errors only\n"
		"  --log-format=F     plain (ts level who msg key=value, default) or json lines\n"
		"  -o endpoint=URL    S3 endpoint (default AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)\n"
		"  -o region=R        region (default AWS_REGION, else us-east-1)\n"
		"  -o path_style=0|1  path-style addressing\n"
		"  -o KEY=V           any other [s3] key of ferry (verify_tls, ca_bundle, ...)\n"
		"  -o cache_dir=DIR   local cache of dirty and read data (0700; default $TMPDIR/ferryfs-UID)\n"
		"  -o attr_timeout=S  seconds attributes are trusted (default 1)\n"
		"  -o entry_timeout=S seconds names are trusted (default 1)\n"
		"  -o neg_timeout=S   seconds a missing name is trusted (default 1)\n"
		"  -o readahead_max=N largest read-ahead window in bytes (default 64MiB)\n"
		"  -o cache_max=N     cap on the cache dir's data; clean data is evicted beyond it\n"
		"                     (default 1GiB, 0 = no cap; dirty data is never evicted)\n"
		"  -o put_max=N       a commit with nothing to copy server-side is one PUT up to\n"
		"                     this size, else a multipart upload (default 256MiB, >= 8MiB)\n"
		"  -o fetch_whole=N   files up to this size that are read at random long enough are\n"
		"                     fetched whole in the background (default 256MiB, at most\n"
		"                     cache_max/4; 0 = never)\n"
		"  -o uid=N,gid=N     owner shown for every file (default: ours)\n"
		"  other -o options go to FUSE (e.g. allow_other)\n"
		"credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY only\n");
}

static int append_opt(char **list, const char *opt)
{
	char *n;

	if (asprintf(&n, "%s%s%s", *list ? *list : "", *list ? "," : "", opt) < 0)
		return -1;
	free(*list);
	*list = n;
	return 0;
}

/* One -o item: ours, an [s3] key, or FUSE's. Returns 0 or -1 after logging. */
static int apply_opt(struct fs *fs, struct ferry_s3_conf *conf, struct opts *o, char *item)
{
	char err[256], *eq = strchr(item, '='), *end;
	const char *v;

	if (!item[0])
		return 0;
	v = eq ? eq + 1 : "";
	if (eq)
		*eq = '\0';
	if (!strcmp(item, "cache_dir") && eq) {
		free(fs->cache_dir);
		fs->cache_dir = strdup(v);
	} else if ((!strcmp(item, "attr_timeout") || !strcmp(item, "entry_timeout") ||
		    !strcmp(item, "neg_timeout")) && eq) {
		double d = strtod(v, &end);

		if (end == v || *end || d < 0) {
			ferry_logf(FERRY_ERROR, "ferryfs", "bad option value", "option=%s value='%s'",
				   item, v);
			return -1;
		}
		if (item[0] == 'a')
			fs->attr_timeout = d;
		else if (item[0] == 'e')
			fs->entry_timeout = d;
		else
			fs->neg_timeout = d;
	} else if (!strcmp(item, "readahead_max") && eq) {
		if (ferry_parse_size(v, &fs->ra_max) || fs->ra_max < (1u << 20)) {
			ferry_logf(FERRY_ERROR, "ferryfs", "bad option value",
				   "option=readahead_max value='%s' want='>= 1MiB'", v);
			return -1;
		}
	} else if (!strcmp(item, "cache_max") && eq) {
		if (ferry_parse_size(v, &fs->cache_max) ||
		    (fs->cache_max && fs->cache_max < (4u << 20))) {
			ferry_logf(FERRY_ERROR, "ferryfs", "bad option value",
				   "option=cache_max value='%s' want='0 (no cap) or >= 4MiB'", v);
			return -1;
		}
	} else if (!strcmp(item, "put_max") && eq) {
		if (ferry_parse_size(v, &fs->put_max) || fs->put_max < FS_PART_SIZE ||
		    fs->put_max > FS_PUT_MAX) {
			ferry_logf(FERRY_ERROR, "ferryfs", "bad option value",
				   "option=put_max value='%s' want='8MiB .. 5GiB'", v);
			return -1;
		}
	} else if (!strcmp(item, "fetch_whole") && eq) {
		if (ferry_parse_size(v, &fs->whole_max)) {
			ferry_logf(FERRY_ERROR, "ferryfs", "bad option value",
				   "option=fetch_whole value='%s' want='a size, 0 = never'", v);
			return -1;
		}
	} else if (!strcmp(item, "copy_max") && eq) {
		/* for tests: renames above this size take the multipart copy path */
		if (ferry_parse_size(v, &fs->copy_max) || fs->copy_max < (5u << 20) ||
		    fs->copy_max > FS_COPY_MAX) {
			ferry_logf(FERRY_ERROR, "ferryfs", "bad option value",
				   "option=copy_max value='%s' want='5MiB .. 5GiB'", v);
			return -1;
		}
	} else if ((!strcmp(item, "uid") || !strcmp(item, "gid")) && eq) {
		long id = strtol(v, &end, 10);

		if (end == v || *end || id < 0) {
			ferry_logf(FERRY_ERROR, "ferryfs", "bad option value", "option=%s value='%s'",
				   item, v);
			return -1;
		}
		if (item[0] == 'u')
			fs->uid = (uid_t)id;
		else
			fs->gid = (gid_t)id;
	} else if (!strcmp(item, "bucket") || !strcmp(item, "access_key") ||
		   !strcmp(item, "secret_key") || !strcmp(item, "session_token")) {
		/* never take secrets on the command line: they would show in ps */
		ferry_logf(FERRY_ERROR, "ferryfs", "option not accepted here", "option=%s", item);
		return -1;
	} else if (ferry_s3_conf_is_key(item)) {
		if (ferry_s3_conf_set(conf, item, v, err, sizeof(err)) != 0) {
			ferry_logf(FERRY_ERROR, "ferryfs", "bad option value", "option=%s reason=\"%s\"",
				   item, err);
			return -1;
		}
	} else {
		if (eq)
			*eq = '=';
		if (append_opt(&o->fuse_opts, item))
			return -1;
	}
	return 0;
}

/* -v, -q and --log-format first, so that every line, option errors included, is in the
 * format asked for (ferry's mount stage passes its own). 0, or -1 on a bad format. */
static int log_args(int argc, char **argv)
{
	enum ferry_level lv = FERRY_INFO;
	enum ferry_log_format fmt = FERRY_LOG_PLAIN;
	const char *bad = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-o"))
			i++;                        /* its value is not an option */
		else if (!strcmp(a, "-v") || !strcmp(a, "-d"))
			lv = FERRY_DEBUG;
		else if (!strcmp(a, "-q"))
			lv = FERRY_WARN;
		else if (!strcmp(a, "--log-format=json"))
			fmt = FERRY_LOG_JSON;
		else if (!strcmp(a, "--log-format=plain"))
			fmt = FERRY_LOG_PLAIN;
		else if (!strncmp(a, "--log-format=", 13))
			bad = a + 13;
	}
	ferry_log_setup(lv, fmt);
	if (bad) {
		ferry_logf(FERRY_ERROR, "ferryfs", "unknown log format, want plain or json",
			   "format='%s'", bad);
		return -1;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct fs *fs, struct ferry_s3_conf *conf,
		      struct opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("ferryfs %s (libfuse %d)\n", FERRY_VERSION, fuse_version());
			exit(0);
		} else if (!strcmp(a, "-f")) {
			o->foreground = true;
		} else if (!strcmp(a, "-d")) {
			o->debug = true;
			o->foreground = true;
		} else if (!strcmp(a, "-v") || !strcmp(a, "-q") || !strncmp(a, "--log-format=", 13)) {
			/* taken by log_args before anything was logged */
		} else if (!strncmp(a, "-o", 2)) {
			char *list, *save = NULL, *item;
			const char *val = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);

			if (!val) {
				ferry_logf(FERRY_ERROR, "ferryfs", "option -o needs a value", NULL);
				return -1;
			}
			list = strdup(val);
			if (!list)
				return -1;
			for (item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
				if (apply_opt(fs, conf, o, item)) {
					free(list);
					return -1;
				}
			}
			free(list);
		} else if (a[0] == '-') {
			ferry_logf(FERRY_ERROR, "ferryfs", "unknown option", "option='%s'", a);
			return -1;
		} else if (!o->source) {
			o->source = (char *)a;
		} else if (!o->mountpoint) {
			o->mountpoint = (char *)a;
		} else {
			ferry_logf(FERRY_ERROR, "ferryfs", "too many arguments", "arg='%s'", a);
			return -1;
		}
	}
	if (!o->source || !o->mountpoint) {
		usage(stderr);
		return -1;
	}
	return 0;
}

static int mkdir_private(const char *dir)
{
	char tmp[PATH_MAX];
	struct stat st;

	if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp))
		return ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
			return errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		return errno;
	if (stat(tmp, &st) != 0)
		return errno;
	if (!S_ISDIR(st.st_mode))
		return ENOTDIR;
	/* cached data is the bucket's data: keep it private */
	if ((st.st_mode & 0777) != 0700 && chmod(tmp, 0700) != 0)
		return errno;
	return 0;
}

static void fuse_log_sink(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	ferry_logf(level <= FUSE_LOG_ERR ? FERRY_ERROR : level <= FUSE_LOG_WARNING ? FERRY_WARN :
		   level <= FUSE_LOG_INFO ? FERRY_INFO : FERRY_DEBUG, "ferryfs", msg, NULL);
}

static void log_stats(struct fs *fs, const char *why)
{
	char json[4096];
	size_t n;

	stats_json(fs, json, sizeof(json));
	n = strlen(json);
	while (n && json[n - 1] == '\n')
		json[--n] = '\0';
	ferry_logf(FERRY_INFO, "ferryfs", why, "stats=%s", json);
}

struct stats_thread {
	struct fs *fs;
	volatile bool stop;
	pthread_t th;
};

/* SIGUSR1 is blocked everywhere and taken here, so logging happens outside a handler. */
static void *stats_main(void *arg)
{
	struct stats_thread *st = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (st->stop)
			return NULL;
		log_stats(st->fs, "counters");
	}
}

int main(int argc, char **argv)
{
	struct fs fs = { 0 };
	struct ferry_s3_conf conf;
	struct opts o = { 0 };
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *lcfg = NULL;
	struct stats_thread st = { .fs = &fs };
	struct ferry_s3_list l = { 0 };
	struct ferry_s3_res res;
	char err[512], *colon, *fsname = NULL, *mopts = NULL;
	const char *tmp;
	sigset_t usr1;
	bool tables_busy = false;
	int rc = 1, r;

	if (log_args(argc, argv))
		return 1;
	fuse_set_log_func(fuse_log_sink);
	ferry_s3_conf_init(&conf);
	ferry_s3_conf_from_env(&conf);
	fs.attr_timeout = 1.0;
	fs.entry_timeout = 1.0;
	fs.neg_timeout = 1.0;
	fs.ra_max = 64ull << 20;
	fs.cache_max = 1ull << 30;
	fs.copy_max = FS_COPY_MAX;
	fs.put_max = FERRY_FS_PUT_MAX;
	fs.whole_max = 256ull << 20;
	fs.uid = getuid();
	fs.gid = getgid();
	if (parse_args(argc, argv, &fs, &conf, &o))
		goto out_conf;
	/* a window must fit the cap with room for the one before it and for other files */
	if (fs.cache_max && fs.ra_max > fs.cache_max / 4)
		fs.ra_max = fs.cache_max / 4 < (1u << 20) ? 1u << 20 : fs.cache_max / 4;
	/* and so must a file fetched whole */
	if (fs.cache_max && fs.whole_max > fs.cache_max / 4)
		fs.whole_max = fs.cache_max / 4;

	colon = strchr(o.source, ':');
	fs.bucket = colon ? strndup(o.source, (size_t)(colon - o.source)) : strdup(o.source);
	if (colon && colon[1])
		r = asprintf(&fs.prefix, "%s%s", colon + 1, colon[strlen(colon) - 1] == '/' ? "" : "/");
	else
		r = asprintf(&fs.prefix, "%s", "");
	if (!fs.bucket || r < 0 || !fs.bucket[0]) {
		ferry_logf(FERRY_ERROR, "ferryfs", "bad source, want BUCKET[:PREFIX]", "source='%s'",
			   o.source);
		goto out_conf;
	}
	free(conf.bucket);
	conf.bucket = strdup(fs.bucket);
	if (!fs.cache_dir) {
		tmp = getenv("TMPDIR");
		if (asprintf(&fs.cache_dir, "%s/ferryfs-%u", tmp && tmp[0] ? tmp : "/tmp",
			     (unsigned)getuid()) < 0)
			goto out_conf;
	}
	r = mkdir_private(fs.cache_dir);
	if (r) {
		ferry_logf(FERRY_ERROR, "ferryfs", "cannot prepare cache dir", "dir='%s' err='%s'",
			   fs.cache_dir, strerror(r));
		goto out_conf;
	}
	fs.s3 = ferry_s3_new(&conf, err, sizeof(err));
	if (!fs.s3) {
		ferry_logf(FERRY_ERROR, "ferryfs", "cannot set up S3 client", "reason=\"%s\"", err);
		goto out_conf;
	}
	/* fail here, on the caller's terminal, when the bucket is unreachable */
	STAT_ADD(&fs, list, 1);
	r = ferry_s3_list_page(fs.s3, fs.prefix, "/", NULL, 1, &l, &res);
	ferry_s3_list_release(&l);
	if (r != FERRY_S3_OK) {
		ferry_logf(FERRY_ERROR, "ferryfs", "cannot list bucket", "bucket='%s' msg=\"%s\"",
			   fs.bucket, res.msg);
		goto out_s3;
	}
	if (fs_init_tables(&fs))
		goto out_s3;

	if (asprintf(&fsname, "fsname=" FERRY_FS_SOURCE "%s", o.source) < 0 ||
	    asprintf(&mopts, "%s,subtype=ferryfs,max_read=%u,default_permissions%s%s", fsname,
		     FS_MAX_IO, o.fuse_opts ? "," : "", o.fuse_opts ? o.fuse_opts : "") < 0)
		goto out_tables;
	if (fuse_opt_add_arg(&args, argv[0]) || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, mopts) || (o.debug && fuse_opt_add_arg(&args, "-d")))
		goto out_args;
	fs.se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), &fs);
	if (!fs.se)
		goto out_args;
	if (fuse_set_signal_handlers(fs.se) != 0)
		goto out_session;
	if (fuse_session_mount(fs.se, o.mountpoint) != 0) {
		ferry_logf(FERRY_ERROR, "ferryfs", "cannot mount", "mountpoint='%s'", o.mountpoint);
		goto out_signals;
	}
	if (fuse_daemonize(o.foreground) != 0)
		goto out_unmount;

	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	if (pthread_create(&st.th, NULL, stats_main, &st) != 0)
		goto out_unmount;
	ferry_logf(FERRY_INFO, "ferryfs", "mounted",
		   "bucket=%s prefix='%s' mountpoint='%s' cache_dir='%s' cache_max=%llu pid=%d",
		   fs.bucket, fs.prefix, o.mountpoint, fs.cache_dir,
		   (unsigned long long)fs.cache_max, (int)getpid());

	lcfg = fuse_loop_cfg_create();
	if (!lcfg)
		goto out_stats;
	fuse_loop_cfg_set_clone_fd(lcfg, 0);
	fuse_loop_cfg_set_idle_threads(lcfg, 16);
	fuse_loop_cfg_set_max_threads(lcfg, 96);
	r = fuse_session_loop_mt(fs.se, lcfg);
	if (r < 0)
		ferry_logf(FERRY_ERROR, "ferryfs", "session ended with an error", "err='%s'",
			   strerror(-r));
	else
		rc = 0;
	fs_discard_dirty(&fs);
	if (!fetch_stop_background(&fs))
		tables_busy = true;
	log_stats(&fs, "unmounting");
	fuse_loop_cfg_destroy(lcfg);
out_stats:
	st.stop = true;
	pthread_kill(st.th, SIGUSR1);
	pthread_join(st.th, NULL);
out_unmount:
	fuse_session_unmount(fs.se);
out_signals:
	fuse_remove_signal_handlers(fs.se);
out_session:
	fuse_session_destroy(fs.se);
out_args:
	fuse_opt_free_args(&args);
	free(mopts);
	free(fsname);
out_tables:
	/* a whole-file fetch that did not stop still uses its node: leave the tables */
	if (!tables_busy)
		fs_release_tables(&fs);
out_s3:
	ferry_s3_free(fs.s3);
out_conf:
	ferry_s3_conf_release(&conf);
	free(fs.bucket);
	free(fs.prefix);
	free(fs.cache_dir);
	free(o.fuse_opts);
	return rc;
}
