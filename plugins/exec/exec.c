/* exec.c: the `exec` stage: run a command (no shell unless shell = true) as a stage. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry_ctx.h"
#include "ferry_stage.h"
#include "ferry_time.h"
#include "exec_split.h"

extern char **environ;

static const struct ferry_key exec_keys[] = {
	{ "command", FERRY_KEY_STRING, NULL, FERRY_KEY_REQUIRED, "command line of run" },
	{ "undo", FERRY_KEY_STRING, NULL, 0, "command line run when a later stage fails" },
	{ "cleanup", FERRY_KEY_STRING, NULL, 0, "command line run at the end of every run" },
	{ "shell", FERRY_KEY_BOOL, "false", 0, "run the command lines through /bin/sh -c" },
	{ "timeout", FERRY_KEY_DURATION, "0", 0, "kill the command after this long; 0 = never" },
	{ "kill_grace", FERRY_KEY_DURATION, "5s", 0, "SIGTERM to SIGKILL delay on timeout/cancel" },
	{ "cwd", FERRY_KEY_PATH, NULL, 0, "working directory of the command" },
	{ NULL, 0, NULL, 0, NULL },
};

/* The argv of one of the stage's command keys; NULL (after ferry_fail) on a bad line. */
static char **command_argv(struct ferry_ctx *c, const char *key)
{
	const char *line = ferry_cfg(c, key);
	char err[256];
	char **argv;

	if (!line)
		return NULL;
	if (ferry_cfg_bool(c, "shell")) {
		argv = calloc(4, sizeof(char *));
		if (!argv)
			abort();
		argv[0] = strdup("/bin/sh");
		argv[1] = strdup("-c");
		argv[2] = strdup(line);
		return argv;
	}
	argv = exec_split(line, err, sizeof(err));
	if (!argv)
		ferry_cfg_error(c, key, "%s", err);
	return argv;
}

/* Can the program of a command line be executed? A name without '/' is looked up in PATH
 * (as execvp does); a path is taken from the command's working directory. 0, or -1 with
 * the reason in why. */
static int program_ok(struct ferry_ctx *c, const char *prog, char *why, size_t n)
{
	char path[4096];

	if (strchr(prog, '/')) {
		char *cwd = ferry_cfg(c, "cwd") && prog[0] != '/' ? ferry_cfg_path(c, "cwd") : NULL;

		snprintf(path, sizeof(path), "%s%s%s", cwd ? cwd : "", cwd ? "/" : "", prog);
		free(cwd);
		if (access(path, X_OK) == 0)
			return 0;
		snprintf(why, n, "program '%s' %s", path, errno == ENOENT ? "does not exist" :
			 "is not executable");
		return -1;
	} else {
		const char *p = getenv("PATH") ? getenv("PATH") : "/usr/local/bin:/usr/bin:/bin";

		while (*p) {
			size_t len = strcspn(p, ":");

			snprintf(path, sizeof(path), "%.*s/%s", (int)len, len ? p : ".", prog);
			if (access(path, X_OK) == 0)
				return 0;
			p += len + (p[len] == ':');
		}
		snprintf(why, n, "program '%s' is not in PATH (%s)", prog,
			 getenv("PATH") ? getenv("PATH") : "unset");
		return -1;
	}
}

static int exec_check(struct ferry_ctx *c)
{
	static const char *const keys[] = { "command", "undo", "cleanup", NULL };
	const char *const *k;

	for (k = keys; *k; k++) {
		char **argv, why[4300];
		int bad;

		if (!ferry_cfg(c, *k))
			continue;
		argv = command_argv(c, *k);
		if (!argv)
			return FERRY_USAGE;
		/* with shell = true the shell finds the program; sh itself is there */
		bad = !ferry_cfg_bool(c, "shell") && argv[0] &&
		      program_ok(c, argv[0], why, sizeof(why)) != 0;
		exec_argv_free(argv);
		if (bad)
			return ferry_cfg_error(c, *k, "%s", why);
	}
	return FERRY_OK;
}

/* Environment of the command: ours plus FERRY_* and every fact as FERRY_FACT_<STAGE>_<KEY>. */
struct envb {
	char **v;
	size_t n;
	size_t cap;
};

static void env_add(struct envb *e, char *kv)
{
	if (e->n + 2 > e->cap) {
		e->cap = e->cap ? e->cap * 2 : 64;
		e->v = realloc(e->v, e->cap * sizeof(char *));
		if (!e->v)
			abort();
	}
	e->v[e->n++] = kv;
	e->v[e->n] = NULL;
}

static void env_addf(struct envb *e, const char *name, const char *value)
{
	char *kv;

	if (asprintf(&kv, "%s=%s", name, value ? value : "") < 0)
		abort();
	env_add(e, kv);
}

static int env_fact(void *arg, const char *stage, const char *key, const char *value)
{
	char name[256], *p;

	snprintf(name, sizeof(name), "FERRY_FACT_%s_%s", stage, key);
	for (p = name; *p; p++) {
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
		else if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
			*p = '_';
	}
	env_addf(arg, name, value);
	return 0;
}

static char **build_env(struct ferry_ctx *c, const char *op)
{
	struct envb e = { NULL, 0, 0 };
	char **p;

	for (p = environ; *p; p++)
		if (strncmp(*p, "FERRY_FACT_", 11) != 0)
			env_add(&e, strdup(*p));
	env_addf(&e, "FERRY_STAGE", ferry_stage_name(c));
	env_addf(&e, "FERRY_OP", op);
	env_addf(&e, "FERRY_STATE_DIR", ferry_state_dir(c));
	env_addf(&e, "FERRY_PIPELINE", ferry_cfg_global(c, "pipeline", "name"));
	if (ferry_config_file(c))
		env_addf(&e, "FERRY_CONFIG", ferry_config_file(c));
	ferry_fact_each(c, env_fact, &e);
	return e.v;
}

/* "ferry-fact KEY=VALUE" on stdout publishes a fact; other lines pass through. */
static void stdout_line(struct ferry_ctx *c, char *line)
{
	const char *kv, *eq;
	char key[128];
	size_t kl, i;

	if (strncmp(line, "ferry-fact ", 11) != 0) {
		fputs(line, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		return;
	}
	kv = line + 11;
	eq = strchr(kv, '=');
	kl = eq ? (size_t)(eq - kv) : 0;
	if (!eq || kl == 0 || kl >= sizeof(key)) {
		ferry_log(c, FERRY_WARN, "ignored malformed ferry-fact line", "line='%s'", line);
		return;
	}
	for (i = 0; i < kl; i++) {
		char ch = kv[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
			ferry_log(c, FERRY_WARN, "ignored ferry-fact with a bad key (a-z, 0-9, _)",
				  "line='%s'", line);
			return;
		}
	}
	memcpy(key, kv, kl);
	key[kl] = '\0';
	ferry_fact_set(c, key, eq + 1);
}

/* Hand every complete line of buf to stdout_line; keep the partial rest. */
static void take_lines(struct ferry_ctx *c, char *buf, size_t *held, size_t cap)
{
	char *nl;

	buf[*held] = '\0';
	while ((nl = memchr(buf, '\n', *held)) != NULL) {
		*nl = '\0';
		stdout_line(c, buf);
		*held -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, *held);
		buf[*held] = '\0';
	}
	if (*held == cap - 1) {             /* an overlong line: pass it on as it is */
		stdout_line(c, buf);
		*held = 0;
	}
}

/* Run one command line to completion (or timeout/cancel); FERRY_OK or a failure. */
static int run_command(struct ferry_ctx *c, const char *key, const char *op)
{
	char **argv = command_argv(c, key), **envp;
	const char *cwd_key = ferry_cfg(c, "cwd");
	char *cwd = cwd_key ? ferry_cfg_path(c, "cwd") : NULL;
	uint64_t timeout = ferry_cfg_ms(c, "timeout"), grace = ferry_cfg_ms(c, "kill_grace");
	int64_t start = ferry_mono_ms(), term_at = 0;
	char buf[8192];
	size_t held = 0;
	int out[2], status = 0, rc = FERRY_OK;
	bool eof = false, exited = false, timed_out = false, cancelled = false;
	pid_t pid;

	if (!argv)
		return FERRY_USAGE;
	if (pipe2(out, O_CLOEXEC) != 0) {
		rc = ferry_fail(c, FERRY_FAIL, "cannot create a pipe: %s", strerror(errno));
		goto out_argv;
	}
	envp = build_env(c, op);
	ferry_log(c, FERRY_INFO, "exec", "op=%s command='%s'", op, ferry_cfg(c, key));
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		rc = ferry_fail(c, FERRY_FAIL, "cannot fork: %s", strerror(errno));
		goto out_pipe;
	}
	if (pid == 0) {
		sigset_t none;

		setpgid(0, 0);              /* own group: a timeout kills its children too */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		dup2(out[1], STDOUT_FILENO);
		if (cwd && chdir(cwd) != 0) {
			dprintf(STDERR_FILENO, "exec: cannot chdir to '%s': %s\n", cwd, strerror(errno));
			_exit(126);
		}
		execvpe(argv[0], argv, envp);
		dprintf(STDERR_FILENO, "exec: cannot run '%s': %s\n", argv[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	setpgid(pid, pid);
	close(out[1]);
	out[1] = -1;
	while (!exited) {
		struct pollfd pf[2];
		int nfd = 0, cfd = ferry_cancel_fd(c);
		int64_t now = ferry_mono_ms();

		if (!eof) {
			pf[nfd].fd = out[0];
			pf[nfd].events = POLLIN;
			nfd++;
		}
		if (cfd >= 0 && !cancelled) {
			pf[nfd].fd = cfd;
			pf[nfd].events = POLLIN;
			nfd++;
		}
		if (!term_at && ((timeout && (uint64_t)(now - start) >= timeout) || ferry_cancelled(c))) {
			timed_out = !ferry_cancelled(c);
			cancelled = !timed_out;
			ferry_log(c, FERRY_WARN, timed_out ? "timeout: stopping the command" :
				  "cancelled: stopping the command", "pid=%d", (int)pid);
			kill(-pid, SIGTERM);
			term_at = now;
		}
		if (term_at && (uint64_t)(now - term_at) >= grace)
			kill(-pid, SIGKILL);
		if (poll(pf, (nfds_t)nfd, eof ? 5 : 100) > 0 && !eof && (pf[0].revents & (POLLIN | POLLHUP))) {
			ssize_t n = read(out[0], buf + held, sizeof(buf) - 1 - held);

			if (n <= 0 && !(n < 0 && errno == EINTR)) {
				eof = true;
			} else if (n > 0) {
				held += (size_t)n;
				take_lines(c, buf, &held, sizeof(buf));
			}
		}
		if (waitpid(pid, &status, WNOHANG) == pid)
			exited = true;
	}
	/* what it wrote just before exiting; children it left behind are not waited for */
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	while (!eof) {
		ssize_t n = read(out[0], buf + held, sizeof(buf) - 1 - held);

		if (n <= 0)
			break;
		held += (size_t)n;
		take_lines(c, buf, &held, sizeof(buf));
	}
	if (held) {
		buf[held] = '\0';
		stdout_line(c, buf);
	}
	kill(-pid, SIGKILL);                /* leftovers of its group */
	if (timed_out)
		rc = ferry_fail(c, FERRY_FAIL, "%s command timed out after %llums", op,
				(unsigned long long)timeout);
	else if (cancelled)
		rc = ferry_fail(c, FERRY_FAIL, "%s command cancelled", op);
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		rc = ferry_fail(c, FERRY_FAIL, "%s command '%s' exited with status %d", op, argv[0],
				WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		rc = ferry_fail(c, FERRY_FAIL, "%s command '%s' killed by signal %d", op, argv[0],
				WTERMSIG(status));
out_pipe:
	for (char **e = envp; e && *e; e++)
		free(*e);
	free(envp);
	close(out[0]);
	if (out[1] >= 0)
		close(out[1]);
out_argv:
	exec_argv_free(argv);
	free(cwd);
	return rc;
}

static int exec_run(struct ferry_ctx *c)
{
	return run_command(c, "command", "run");
}

static int exec_undo(struct ferry_ctx *c)
{
	if (ferry_cfg(c, "undo"))
		return run_command(c, "undo", "undo");
	ferry_fact_set(c, "undo", "kept: no undo command is set; what the command did stays");
	return FERRY_OK;
}

static int exec_cleanup(struct ferry_ctx *c)
{
	return ferry_cfg(c, "cleanup") ? run_command(c, "cleanup", "cleanup") : FERRY_OK;
}

static int exec_dry_run(struct ferry_ctx *c)
{
	static const char *const keys[] = { "command", "undo", "cleanup", NULL };
	const char *const *k;

	for (k = keys; *k; k++) {
		char **argv, line[4096] = "";
		size_t i;

		if (!ferry_cfg(c, *k))
			continue;
		argv = command_argv(c, *k);
		if (!argv)
			return FERRY_USAGE;
		for (i = 0; argv[i]; i++)
			snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s[%s]",
				 i ? " " : "", argv[i]);
		ferry_log(c, FERRY_INFO, "would run", "op=%s argv='%s' timeout=%llums", *k, line,
			  (unsigned long long)ferry_cfg_ms(c, "timeout"));
		exec_argv_free(argv);
	}
	return FERRY_OK;
}

FERRY_EXPORT const struct ferry_stage ferry_stage_v1 = {
	.abi = FERRY_STAGE_ABI, .size = sizeof(struct ferry_stage), .name = "exec",
	.check = exec_check, .dry_run = exec_dry_run, .run = exec_run,
	.undo = exec_undo, .cleanup = exec_cleanup, .keys = exec_keys,
	.summary = "run a command (with optional undo and cleanup commands)",
};
