/* mount.c: the `mount` stage: runs ferryfs as a child process and mounts the bucket. */
#include "mount.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry_ctx.h"
#include "ferry_failpoint.h"
#include "ferry_log.h"
#include "ferry_stage.h"
#include "ferry_time.h"

#define POLL_MS      5                      /* longest wait between two looks when nothing
						     * wakes us (see struct waiter) */
#define GRACE_MS     5000                   /* for ferryfs to exit after the unmount */
#define TERM_MS      3000                   /* after SIGTERM, before SIGKILL */

static const struct ferry_key mount_keys[] = {
	{ "mountpoint", FERRY_KEY_PATH, NULL, FERRY_KEY_REQUIRED,
	  "where to mount the bucket (created if missing)" },
	{ "prefix", FERRY_KEY_OBJKEY, NULL, 0, "mount only keys under this prefix" },
	{ "ferryfs", FERRY_KEY_PATH, NULL, 0,
	  "the ferryfs binary (default: ferryfs next to the running ferry)" },
	{ "cache_dir", FERRY_KEY_PATH, NULL, 0,
	  "ferryfs cache directory (default: ${state_dir}/cache)" },
	{ "options", FERRY_KEY_STRING, NULL, 0, "extra ferryfs -o options, comma separated" },
	{ "wait", FERRY_KEY_DURATION, "10s", 0, "how long to wait for the mount to answer" },
	{ NULL, 0, NULL, 0, NULL },
};

/* [s3] keys handed to ferryfs as -o options; credentials stay in the environment. */
static const char *const s3_keys[] = {
	"endpoint", "region", "path_style", "verify_tls", "ca_bundle", "connect_timeout",
	"low_speed_time", "low_speed_limit", "request_timeout", "max_retries", "retry_base",
	"retry_cap", "dialect", NULL,
};

struct mount_priv {
	pid_t pid;                          /* ferryfs, leader of its own process group */
	int exit_fd;                        /* hangs up when ferryfs exits (-1: none) */
	char *mountpoint;
};

/* Waiting for ferryfs to mount or to exit wakes on the event itself, not on a timer: its
 * exit (ferryfs holds the write end of a pipe whose read end, exit_fd, then hangs up), a
 * change of the mount table (/proc/self/mounts polls POLLPRI after every mount and
 * unmount), or a signal to ferry (ferry_cancel_fd). Each ms slept past the mount was lost
 * from a warm run of ~0.2 s; polling every POLL_MS stays as the fallback. */
struct waiter {
	struct pollfd fd[3];
	nfds_t n;
	int mounts_fd;                      /* ours to close */
};

static void waiter_open(struct waiter *w, struct ferry_ctx *c, int exit_fd, bool mounts,
			bool cancel)
{
	int cfd = cancel ? ferry_cancel_fd(c) : -1;

	w->n = 0;
	w->mounts_fd = mounts ? open("/proc/self/mounts", O_RDONLY | O_CLOEXEC) : -1;
	if (exit_fd >= 0)
		w->fd[w->n++] = (struct pollfd){ .fd = exit_fd, .events = POLLIN };
	if (w->mounts_fd >= 0)
		w->fd[w->n++] = (struct pollfd){ .fd = w->mounts_fd, .events = POLLPRI };
	if (cfd >= 0)
		w->fd[w->n++] = (struct pollfd){ .fd = cfd, .events = POLLIN };
}

/* Until something happened, or POLL_MS passed. */
static void waiter_wait(struct waiter *w)
{
	(void)poll(w->fd, w->n, POLL_MS);
}

static void waiter_close(struct waiter *w)
{
	if (w->mounts_fd >= 0)
		close(w->mounts_fd);
	w->mounts_fd = -1;
	w->n = 0;
}

bool mount_is_fuse_mounted(const char *mp)
{
	char line[PATH_MAX * 2 + 256], dev[256], dir[PATH_MAX], type[128];
	bool found = false;
	FILE *f;

	f = fopen("/proc/self/mounts", "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%255s %4095s %127s", dev, dir, type) != 3)
			continue;
		/* /proc/mounts escapes blanks as \040; mount points with blanks are refused in check */
		if (strcmp(dir, mp) == 0 && strncmp(type, "fuse", 4) == 0)
			found = true;
	}
	fclose(f);
	return found;
}

bool mount_is_stale(const char *mp)
{
	struct stat st;

	return stat(mp, &st) != 0 && errno == ENOTCONN;
}

/* A mount answers when its root is a different device from its parent directory. */
bool mount_is_live(const char *mp)
{
	char parent[PATH_MAX];
	struct stat a, b;
	char *slash;

	if (snprintf(parent, sizeof(parent), "%s", mp) >= (int)sizeof(parent))
		return false;
	slash = strrchr(parent, '/');
	if (!slash)
		return false;
	if (slash == parent)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (stat(mp, &a) != 0 || stat(parent, &b) != 0)
		return false;
	return a.st_dev != b.st_dev;
}

/* Runs argv, waits for it; returns its exit status (or -1). Output goes to our stderr. */
static int run_cmd(char *const argv[])
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);

		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int fusermount(const char *mp, bool lazy)
{
	char *argv[] = { "fusermount3", lazy ? "-uz" : "-u", (char *)mp, NULL };

	return run_cmd(argv);
}

/* Unmounts mp if a FUSE mount (live or dead) sits there. true when nothing is left. */
static bool unmount_any(struct ferry_ctx *c, const char *mp)
{
	if (!mount_is_fuse_mounted(mp) && !mount_is_stale(mp))
		return true;
	if (fusermount(mp, false) == 0 && !mount_is_fuse_mounted(mp))
		return true;
	/* busy or dead: detach it now, the kernel finishes when the last user goes */
	ferry_log(c, FERRY_WARN, "lazy unmount", "mountpoint=%s", mp);
	if (fusermount(mp, true) == 0 && !mount_is_fuse_mounted(mp))
		return true;
	return !mount_is_fuse_mounted(mp);
}

static int mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp))
		return ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
			return errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
		return errno;
	return 0;
}

char *mount_default_ferryfs(void)
{
	char exe[PATH_MAX], *slash, *out;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return strdup("ferryfs");
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return strdup("ferryfs");
	*slash = '\0';
	if (asprintf(&out, "%s/ferryfs", exe) < 0)
		return NULL;
	return out;
}

void mount_plan_release(struct mount_plan *p)
{
	free(p->mountpoint);
	free(p->ferryfs);
	free(p->cache_dir);
	free(p->source);
	free(p->opts);
}

static int opt_append(char **list, const char *k, const char *v)
{
	char *n;
	int r;

	if (v)
		r = asprintf(&n, "%s%s%s=%s", *list ? *list : "", *list && **list ? "," : "", k, v);
	else
		r = asprintf(&n, "%s%s%s", *list ? *list : "", *list && **list ? "," : "", k);
	if (r < 0)
		return -1;
	free(*list);
	*list = n;
	return 0;
}

int mount_plan_make(struct ferry_ctx *c, struct mount_plan *p)
{
	const char *bucket = ferry_cfg_global(c, "s3", "bucket");
	const char *prefix = ferry_cfg(c, "prefix"), *extra = ferry_cfg(c, "options");

	memset(p, 0, sizeof(*p));
	if (!bucket || !*bucket)
		bucket = getenv("BUCKET_NAME");
	if (!bucket || !*bucket)
		return ferry_fail(c, FERRY_USAGE, "no bucket: set [s3] bucket or BUCKET_NAME");
	p->mountpoint = ferry_cfg_path(c, "mountpoint");
	p->ferryfs = ferry_cfg_path(c, "ferryfs");
	if (!p->ferryfs)
		p->ferryfs = mount_default_ferryfs();
	p->cache_dir = ferry_cfg_path(c, "cache_dir");
	if (!p->cache_dir && asprintf(&p->cache_dir, "%s/cache", ferry_state_dir(c)) < 0)
		p->cache_dir = NULL;
	if (prefix && *prefix) {
		if (asprintf(&p->source, "%s:%s", bucket, prefix) < 0)
			p->source = NULL;
	} else {
		p->source = strdup(bucket);
	}
	if (!p->mountpoint || !p->ferryfs || !p->cache_dir || !p->source)
		goto out_nomem;
	p->opts = strdup("");
	if (!p->opts || opt_append(&p->opts, "cache_dir", p->cache_dir))
		goto out_nomem;
	for (int i = 0; s3_keys[i]; i++) {
		const char *v = ferry_cfg_global(c, "s3", s3_keys[i]);

		if (v && *v && opt_append(&p->opts, s3_keys[i], v))
			goto out_nomem;
	}
	if (extra && *extra && opt_append(&p->opts, extra, NULL))
		goto out_nomem;
	p->wait_ms = ferry_cfg_ms(c, "wait");
	return FERRY_OK;
out_nomem:
	mount_plan_release(p);
	return ferry_fail(c, FERRY_FAIL, "out of memory");
}

static int mount_check(struct ferry_ctx *c)
{
	const char *prefix = ferry_cfg(c, "prefix"), *extra = ferry_cfg(c, "options");
	const char *mp = ferry_cfg(c, "mountpoint");

	if (!mp || !*mp)
		return ferry_cfg_error(c, "mountpoint", "must not be empty");
	if (strpbrk(mp, " \t\n\\"))
		return ferry_cfg_error(c, "mountpoint", "must not contain blanks or backslashes");
	if (prefix && prefix[0] == '/')
		return ferry_cfg_error(c, "prefix", "must not start with '/'");
	if (extra && (strstr(extra, "secret") || strstr(extra, "access_key") ||
		      strstr(extra, "session_token")))
		return ferry_cfg_error(c, "options",
				       "credentials come from the environment, never from options");
	for (int i = 0; s3_keys[i]; i++) {
		const char *v = ferry_cfg_global(c, "s3", s3_keys[i]);

		if (v && strchr(v, ','))
			return ferry_cfg_error(c, "options", "[s3] %s must not contain ','",
					       s3_keys[i]);
	}
	return FERRY_OK;
}

static int mount_dry_run(struct ferry_ctx *c)
{
	struct mount_plan p;
	int rc = mount_plan_make(c, &p);

	if (rc != FERRY_OK)
		return rc;
	/* one template per case: a pair is never slipped in through a %s (log.c splits the
	 * template, not the text, into pairs) */
#define WOULD_MOUNT "source=%s mountpoint=%s ferryfs=%s options=%s wait_ms=%" PRIu64
	ferry_log(c, FERRY_INFO, "would mount",
		  mount_is_stale(p.mountpoint) ? WOULD_MOUNT " stale_mount=would_clean" : WOULD_MOUNT,
		  p.source, p.mountpoint, p.ferryfs, p.opts, p.wait_ms);
#undef WOULD_MOUNT
	/* facts of a dry run live only in memory: later stages' dry runs learn where the
	 * bucket would be mounted, so pull can count pages from S3 instead */
	ferry_fact_set(c, "mountpoint", p.mountpoint);
	ferry_fact_set(c, "source", p.source);
	mount_plan_release(&p);
	return FERRY_OK;
}

static void priv_free(struct mount_priv *m)
{
	if (!m)
		return;
	if (m->exit_fd >= 0)
		close(m->exit_fd);
	free(m->mountpoint);
	free(m);
}

/* Stops ferryfs (already unmounted, so it should be leaving) and reaps it. */
static void stop_child(struct ferry_ctx *c, pid_t pid, int exit_fd)
{
	int64_t until = ferry_mono_ms() + GRACE_MS;
	bool termed = false;
	struct waiter w;
	int st;

	waiter_open(&w, c, exit_fd, false, false);   /* stopping: after a signal too */
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid || (r < 0 && errno == ECHILD))
			break;
		if (ferry_mono_ms() >= until) {
			if (termed) {
				ferry_log(c, FERRY_WARN, "ferryfs ignored SIGTERM, killing", "pid=%d",
					  (int)pid);
				kill(-pid, SIGKILL);
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				break;
			}
			kill(-pid, SIGTERM);
			termed = true;
			until = ferry_mono_ms() + TERM_MS;
		}
		waiter_wait(&w);
	}
	waiter_close(&w);
}

static int mount_run(struct ferry_ctx *c)
{
	struct mount_priv *m;
	struct mount_plan p;
	struct waiter w = { .n = 0, .mounts_fd = -1 };
	int ep[2] = { -1, -1 };
	int64_t start, until;
	pid_t pid;
	int rc, e;

	rc = mount_plan_make(c, &p);
	if (rc != FERRY_OK)
		return rc;
	if (mount_is_stale(p.mountpoint) || mount_is_fuse_mounted(p.mountpoint)) {
		/* left by a killed run: "Transport endpoint is not connected" */
		ferry_log(c, FERRY_WARN, "cleaning stale mount", "mountpoint=%s", p.mountpoint);
		if (!unmount_any(c, p.mountpoint)) {
			rc = ferry_fail(c, FERRY_FAIL, "cannot clean stale mount at '%s'", p.mountpoint);
			goto out_plan;
		}
	}
	e = mkdir_p(p.mountpoint);
	if (e) {
		rc = ferry_fail(c, FERRY_FAIL, "cannot create mountpoint '%s': %s", p.mountpoint,
				strerror(e));
		goto out_plan;
	}
	if (access(p.ferryfs, X_OK) != 0) {
		rc = ferry_fail(c, FERRY_FAIL, "cannot run ferryfs '%s': %s", p.ferryfs,
				strerror(errno));
		goto out_plan;
	}
	m = calloc(1, sizeof(*m));
	if (!m || !(m->mountpoint = strdup(p.mountpoint))) {
		free(m);
		rc = ferry_fail(c, FERRY_FAIL, "out of memory");
		goto out_plan;
	}
	m->exit_fd = -1;
	if (pipe2(ep, O_CLOEXEC) != 0)
		ep[0] = ep[1] = -1;         /* no wake-up on exit: polled */
	start = ferry_mono_ms();
	pid = fork();
	if (pid < 0) {
		rc = ferry_fail(c, FERRY_FAIL, "cannot start ferryfs: %s", strerror(errno));
		if (ep[0] >= 0) {
			close(ep[0]);
			close(ep[1]);
		}
		priv_free(m);
		goto out_plan;
	}
	if (pid == 0) {
		char *argv[10] = { p.ferryfs, p.source, p.mountpoint, "-f", "-o", p.opts };
		int fd = open("/dev/null", O_RDONLY), n = 6;
		sigset_t none;

		/* ferryfs's lines join ours on stderr: same format, same -q/-v */
		if (ferry_log_format() == FERRY_LOG_JSON)
			argv[n++] = "--log-format=json";
		if (ferry_log_level() >= FERRY_WARN)
			argv[n++] = "-q";
		else if (ferry_log_level() <= FERRY_DEBUG)
			argv[n++] = "-v";
		argv[n] = NULL;

		/* its own group: our terminal's ^C reaches ferry, which unmounts in order */
		setpgid(0, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (fd >= 0)
			dup2(fd, 0);
		dup2(2, 1);
		if (ep[1] >= 0)
			(void)fcntl(ep[1], F_SETFD, 0);   /* ferryfs holds it until it exits */
		execv(p.ferryfs, argv);
		_exit(127);
	}
	setpgid(pid, pid);
	if (ep[1] >= 0)
		close(ep[1]);
	m->exit_fd = ep[0];
	m->pid = pid;
	*ferry_priv(c) = m;                 /* from here cleanup owns the child */
	if (ferry_failpoint("mount.after_spawn")) {
		rc = ferry_fail(c, FERRY_FAIL, "failpoint mount.after_spawn");
		goto out_plan;
	}

	until = start + (int64_t)p.wait_ms;
	waiter_open(&w, c, m->exit_fd, true, true);
	for (;;) {
		int st;

		if (mount_is_live(p.mountpoint))
			break;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			m->pid = 0;
			rc = ferry_fail(c, FERRY_FAIL, "ferryfs exited before mounting '%s' (%s %d)",
					p.mountpoint, WIFEXITED(st) ? "status" : "signal",
					WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			goto out_plan;
		}
		if (ferry_cancelled(c)) {
			rc = ferry_fail(c, FERRY_FAIL, "cancelled while mounting '%s'", p.mountpoint);
			goto out_plan;
		}
		if (ferry_mono_ms() >= until) {
			rc = ferry_fail(c, FERRY_FAIL, "mount at '%s' did not answer within %" PRIu64 " ms",
					p.mountpoint, p.wait_ms);
			goto out_plan;
		}
		waiter_wait(&w);
	}
	if (ferry_failpoint("mount.after_mount")) {
		rc = ferry_fail(c, FERRY_FAIL, "failpoint mount.after_mount");
		goto out_plan;
	}
	ferry_fact_set(c, "mountpoint", p.mountpoint);
	ferry_fact_set(c, "source", p.source);
	ferry_fact_setf(c, "pid", "%d", (int)pid);
	ferry_log(c, FERRY_INFO, "mounted", "source=%s mountpoint=%s pid=%d ms=%" PRId64, p.source,
		  p.mountpoint, (int)pid, ferry_mono_ms() - start);
	rc = FERRY_OK;
out_plan:
	waiter_close(&w);
	mount_plan_release(&p);
	return rc;
}

static int mount_undo(struct ferry_ctx *c)
{
	/* cleanup unmounts on every path */
	ferry_fact_set(c, "undo", "kept: nothing to undo (cleanup unmounts)");
	return FERRY_OK;
}

static int mount_cleanup(struct ferry_ctx *c)
{
	struct mount_priv *m = *ferry_priv(c);
	const char *mp = m ? m->mountpoint : ferry_fact(c, NULL, "mountpoint");
	int rc = FERRY_OK;

	if (mp) {
		if (!unmount_any(c, mp))
			rc = ferry_fail(c, FERRY_FAIL, "cannot unmount '%s'", mp);
		else
			ferry_log(c, FERRY_INFO, "unmounted", "mountpoint=%s", mp);
	}
	if (m && m->pid > 0)
		stop_child(c, m->pid, m->exit_fd);
	priv_free(m);
	*ferry_priv(c) = NULL;
	return rc;
}

FERRY_EXPORT const struct ferry_stage ferry_stage_v1 = {
	.abi = FERRY_STAGE_ABI,
	.size = sizeof(struct ferry_stage),
	.name = "mount",
	.check = mount_check,
	.dry_run = mount_dry_run,
	.run = mount_run,
	.undo = mount_undo,
	.cleanup = mount_cleanup,
	.keys = mount_keys,
	.provides = "mount",
	.summary = "mount the bucket with ferryfs (unmounted on cleanup)",
};
