/* lockrace.c: N processes race R rounds on one S3 lock through core/lock.c; checks one holder per round and no overlaps. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry_lock.h"
#include "ferry_log.h"
#include "ferry_s3.h"
#include "ferry_stage.h"

/* Modes:
 *   round     every round all N try once (max_wait 0) on a free lock: exactly one wins
 *   takeover  the same, but each round starts from an expired lock: exactly one takes it over
 *   wait      each process acquires R times, waiting as long as it takes: no overlaps, N*R holds
 *   solo      one process, R uncontended acquire+release pairs: requests and ms per acquire
 *   handoff   two processes pass the lock R times: ms from release to the waiter holding it */
struct opts {
	const char *mode;
	const char *key;
	const char *out;                    /* the shared interval file */
	int procs;
	int rounds;
	long hold_ms;
	uint64_t base_ms, cap_ms, ttl_ms;
	unsigned int timeout_s;             /* children give up (SIGALRM) after this */
	uint64_t max_wait_ms;               /* wait/solo: max_wait of each acquire */
};

struct shared {
	pthread_barrier_t bar;
	volatile int stop;                  /* a child hit an error: everyone skip to the end */
};

static struct opts O = {
	.mode = "round", .key = "lockrace/lock", .out = NULL, .procs = 4, .rounds = 20,
	.hold_ms = 2, .base_ms = 50, .cap_ms = 500, .ttl_ms = 60000,
	.timeout_s = 600,
	.max_wait_ms = 300000,
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void out_line(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_line(int fd, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0 && write(fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1) < 0)
		_exit(3);
}

static struct ferry_s3 *open_s3(void)
{
	struct ferry_s3_conf conf;
	struct ferry_s3 *s3;
	char err[512];

	ferry_s3_conf_init(&conf);
	ferry_s3_conf_from_env(&conf);
	s3 = ferry_s3_new(&conf, err, sizeof(err));
	ferry_s3_conf_release(&conf);
	if (!s3)
		ferry_logf(FERRY_ERROR, "lockrace", "cannot open S3 client", "error=\"%s\"", err);
	return s3;
}

static void opts_for(struct ferry_lock_opts *lo, uint64_t max_wait)
{
	memset(lo, 0, sizeof(*lo));
	lo->key = O.key;
	lo->owner = "lockrace";
	lo->ttl_ms = O.ttl_ms;
	lo->max_wait_ms = max_wait;
	lo->backoff_base_ms = O.base_ms;
	lo->backoff_cap_ms = O.cap_ms;
	lo->margin_ms = 0;
	lo->log_who = "lockrace";
}

static int release(struct ferry_s3 *s3, int fd, int round, const char *nonce)
{
	enum ferry_lock_outcome oc;
	char err[1024];

	if (ferry_lock_release(s3, O.key, nonce, &oc, NULL, err, sizeof(err)) != 0) {
		out_line(fd, "E %d %ld release: %s\n", round, (long)getpid(), err);
		return -1;
	}
	if (oc != FERRY_LOCK_RELEASED) {
		out_line(fd, "E %d %ld release found the lock %s\n", round, (long)getpid(),
			 oc == FERRY_LOCK_GONE ? "gone" : "taken over");
		return -1;
	}
	return 0;
}

/* An expired lock for the takeover rounds (local clock: moto runs on this machine). */
static int plant_expired(struct ferry_s3 *s3, int round)
{
	struct ferry_lock_body b = { 0 };
	struct ferry_s3_res res;
	char *text;
	int rc;

	snprintf(b.owner, sizeof(b.owner), "lockrace dead holder");
	snprintf(b.instance_id, sizeof(b.instance_id), "nowhere");
	b.pid = 1;
	ferry_lock_nonce(b.nonce);
	b.generation = 1000 + (uint64_t)round;
	b.ttl_s = 1;
	b.acquired_at = time(NULL) - 3600;
	b.expires_at = b.acquired_at + 1;
	text = ferry_lock_format(&b);
	rc = ferry_s3_put(s3, O.key, text, strlen(text), NULL, &res);
	free(text);
	return rc == FERRY_S3_OK ? 0 : -1;
}

static void child_stats(struct ferry_s3 *s3, int fd, int id)
{
	struct ferry_s3_stats st;

	ferry_s3_stats_get(s3, &st);
	out_line(fd, "S %d %" PRIu64 "\n", id, st.requests);
}

/* round / takeover: barrier, one try each, barrier, the winner releases. */
static int child_rounds(struct shared *sh, int fd, int id, bool takeover)
{
	struct ferry_s3 *s3 = open_s3();
	struct ferry_lock_opts lo;
	struct ferry_lock_held h;
	char err[1024];
	int rc, bad = 0;

	if (!s3)
		sh->stop = 1;
	opts_for(&lo, 0);
	for (int r = 0; r < O.rounds; r++) {
		if (takeover && id == 0 && !sh->stop && plant_expired(s3, r) != 0) {
			out_line(fd, "E %d %ld cannot plant an expired lock\n", r, (long)getpid());
			sh->stop = 1;
		}
		pthread_barrier_wait(&sh->bar);
		if (sh->stop) {
			pthread_barrier_wait(&sh->bar);
			pthread_barrier_wait(&sh->bar);
			continue;
		}
		rc = ferry_lock_acquire(s3, &lo, &h, err, sizeof(err));
		int64_t t_acq = mono_ns();
		if (rc == FERRY_OK)
			sleep_ms(O.hold_ms);
		int64_t t_rel = mono_ns();
		pthread_barrier_wait(&sh->bar);
		if (rc == FERRY_OK) {
			out_line(fd, "H %d %d %" PRId64 " %" PRId64 " %" PRIu64 " %u\n", r, id, t_acq,
				 t_rel, h.body.generation, h.requests);
			if (release(s3, fd, r, h.body.nonce) != 0)
				bad = 1;
		} else if (rc != FERRY_NOLOCK) {
			out_line(fd, "E %d %ld %s\n", r, (long)getpid(), err);
			bad = 1;
		}
		pthread_barrier_wait(&sh->bar);     /* released before the next round starts */
	}
	if (s3) {
		child_stats(s3, fd, id);
		ferry_s3_free(s3);
	}
	return bad;
}

/* wait / solo: acquire (waiting), hold, release, R times. */
static int child_wait(struct shared *sh, int fd, int id, uint64_t max_wait)
{
	struct ferry_s3 *s3 = open_s3();
	struct ferry_lock_opts lo;
	struct ferry_lock_held h;
	char err[1024];
	int bad = 0;

	if (!s3)
		sh->stop = 1;
	pthread_barrier_wait(&sh->bar);
	if (!s3)
		return 1;
	opts_for(&lo, max_wait);
	for (int r = 0; r < O.rounds && !sh->stop; r++) {
		int64_t t0 = mono_ns();
		int rc = ferry_lock_acquire(s3, &lo, &h, err, sizeof(err));
		int64_t t_acq = mono_ns();

		if (rc != FERRY_OK) {
			out_line(fd, "E %d %ld %s\n", r, (long)getpid(), err);
			bad = 1;
			break;
		}
		sleep_ms(O.hold_ms);
		int64_t t_rel = mono_ns();
		out_line(fd, "H %d %d %" PRId64 " %" PRId64 " %" PRIu64 " %u %" PRId64 "\n", r, id,
			 t_acq, t_rel, h.body.generation, h.requests, t_acq - t0);
		int64_t t1 = mono_ns();
		if (release(s3, fd, r, h.body.nonce) != 0) {
			bad = 1;
			break;
		}
		out_line(fd, "R %d %d %" PRId64 "\n", r, id, mono_ns() - t1);
	}
	child_stats(s3, fd, id);
	ferry_s3_free(s3);
	return bad;
}

/* handoff: the holder releases at t_rel while the other waits; the waiter notes t_acq. */
static int child_handoff(struct shared *sh, int fd, int id)
{
	struct ferry_s3 *s3 = open_s3();
	struct ferry_lock_opts lo;
	struct ferry_lock_held h;
	char err[1024];
	int bad = 0;

	if (!s3)
		sh->stop = 1;
	opts_for(&lo, 60000);
	for (int r = 0; r < O.rounds; r++) {
		bool holder = (r % 2) == id;
		int rc = FERRY_OK;

		if (holder && !sh->stop)
			rc = ferry_lock_acquire(s3, &lo, &h, err, sizeof(err));
		if (rc != FERRY_OK) {
			out_line(fd, "E %d %ld %s\n", r, (long)getpid(), err);
			sh->stop = 1;
		}
		pthread_barrier_wait(&sh->bar);     /* the holder holds; the waiter starts */
		if (sh->stop) {
			pthread_barrier_wait(&sh->bar);
			continue;
		}
		if (holder) {
			/* let the waiter get into its backoff at a varying phase */
			sleep_ms(100 + (r * 37) % 700);
			out_line(fd, "L %d %d %" PRId64 "\n", r, id, mono_ns());
			if (release(s3, fd, r, h.body.nonce) != 0)
				bad = 1;
		} else {
			rc = ferry_lock_acquire(s3, &lo, &h, err, sizeof(err));
			int64_t t_acq = mono_ns();

			if (rc == FERRY_OK) {
				out_line(fd, "A %d %d %" PRId64 "\n", r, id, t_acq);
				if (release(s3, fd, r, h.body.nonce) != 0)
					bad = 1;
			} else {
				out_line(fd, "E %d %ld %s\n", r, (long)getpid(), err);
				bad = 1;
			}
		}
		pthread_barrier_wait(&sh->bar);
	}
	if (s3) {
		child_stats(s3, fd, id);
		ferry_s3_free(s3);
	}
	return bad;
}

/* ---- verdict -------------------------------------------------------------------------- */

struct hold {
	int round, id;
	int64_t acq, rel;
	uint64_t gen;
	unsigned int requests;
	int64_t wait_ns;
};

static int cmp_hold(const void *a, const void *b)
{
	const struct hold *x = a, *y = b;

	return x->acq < y->acq ? -1 : x->acq > y->acq;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_ms(int64_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_i64);
	return (double)v[(size_t)(p * (double)(n - 1) + 0.5)] / 1e6;
}

static int verdict(const char *path, double elapsed_s)
{
	FILE *f = fopen(path, "r");
	struct hold *h = calloc((size_t)O.procs * (size_t)O.rounds + 1, sizeof(*h));
	int64_t *a = calloc((size_t)O.rounds + 1, sizeof(int64_t));
	int64_t *l = calloc((size_t)O.rounds + 1, sizeof(int64_t));
	int64_t *v = calloc((size_t)O.procs * (size_t)O.rounds + 1, sizeof(int64_t));
	int64_t *rel = calloc((size_t)O.procs * (size_t)O.rounds + 1, sizeof(int64_t));
	int *per_round = calloc((size_t)O.rounds, sizeof(int));
	size_t nh = 0, nrel = 0, cap = (size_t)O.procs * (size_t)O.rounds;
	uint64_t requests = 0, r64;
	unsigned long errors = 0, overlaps = 0, bad_rounds = 0, bad_gen = 0;
	char line[1200];
	int fail = 0;

	if (!f || !h || !a || !l || !v || !rel || !per_round) {
		ferry_logf(FERRY_ERROR, "lockrace", "cannot read the interval file", "path=%s", path);
		fail = 1;
		goto out;
	}
	while (fgets(line, sizeof(line), f)) {
		struct hold x = { 0 };
		int r, id;
		int64_t t;

		if (line[0] == 'H' && nh < cap &&
		    sscanf(line, "H %d %d %" SCNd64 " %" SCNd64 " %" SCNu64 " %u %" SCNd64, &x.round,
			   &x.id, &x.acq, &x.rel, &x.gen, &x.requests, &x.wait_ns) >= 6) {
			h[nh++] = x;
			if (x.round >= 0 && x.round < O.rounds)
				per_round[x.round]++;
		} else if (line[0] == 'S' && sscanf(line, "S %d %" SCNu64, &id, &r64) == 2) {
			requests += r64;
		} else if (line[0] == 'R' && sscanf(line, "R %d %d %" SCNd64, &r, &id, &t) == 3) {
			rel[nrel++] = t;
		} else if (line[0] == 'A' && sscanf(line, "A %d %d %" SCNd64, &r, &id, &t) == 3 &&
			   r >= 0 && r < O.rounds) {
			a[r] = t;
		} else if (line[0] == 'L' && sscanf(line, "L %d %d %" SCNd64, &r, &id, &t) == 3 &&
			   r >= 0 && r < O.rounds) {
			l[r] = t;
		} else if (line[0] == 'E') {
			errors++;
			fprintf(stdout, "error: %s", line + 2);
		}
	}
	qsort(h, nh, sizeof(*h), cmp_hold);
	for (size_t i = 1; i < nh; i++)
		if (h[i].acq <= h[i - 1].rel)
			overlaps++;

	if (!strcmp(O.mode, "round") || !strcmp(O.mode, "takeover")) {
		for (int r = 0; r < O.rounds; r++)
			if (per_round[r] != 1)
				bad_rounds++;
		for (size_t i = 0; i < nh; i++) {
			uint64_t want = !strcmp(O.mode, "takeover") ? 1001 + (uint64_t)h[i].round : 1;

			if (h[i].gen != want)
				bad_gen++;
		}
		printf("lockrace mode=%s procs=%d rounds=%d holds=%zu rounds_not_one_holder=%lu "
		       "overlaps=%lu bad_generation=%lu errors=%lu requests=%" PRIu64 " elapsed_s=%.2f\n",
		       O.mode, O.procs, O.rounds, nh, bad_rounds, overlaps, bad_gen, errors, requests,
		       elapsed_s);
		fail = bad_rounds || overlaps || bad_gen || errors;
	} else if (!strcmp(O.mode, "handoff")) {
		size_t n = 0;

		for (int r = 0; r < O.rounds; r++)
			if (a[r] && l[r])
				v[n++] = a[r] - l[r];
		printf("lockrace mode=handoff rounds=%d measured=%zu handoff_ms_min=%.1f median=%.1f "
		       "p90=%.1f max=%.1f base_ms=%" PRIu64 " cap_ms=%" PRIu64 " errors=%lu\n",
		       O.rounds, n, pct_ms(v, n, 0), pct_ms(v, n, 0.5), pct_ms(v, n, 0.9),
		       pct_ms(v, n, 1), O.base_ms, O.cap_ms, errors);
		fail = errors || n != (size_t)O.rounds;
	} else {
		uint64_t reqs = 0;

		for (size_t i = 0; i < nh; i++) {
			v[i] = h[i].wait_ns;
			reqs += h[i].requests;
		}
		printf("lockrace mode=%s procs=%d rounds=%d holds=%zu overlaps=%lu errors=%lu "
		       "requests=%" PRIu64 " acquire_requests_avg=%.2f acquire_ms_median=%.2f p90=%.2f "
		       "max=%.2f release_ms_median=%.2f elapsed_s=%.2f\n",
		       O.mode, O.procs, O.rounds, nh, overlaps, errors, requests,
		       nh ? (double)reqs / (double)nh : 0.0, pct_ms(v, nh, 0.5), pct_ms(v, nh, 0.9),
		       pct_ms(v, nh, 1), pct_ms(rel, nrel, 0.5), elapsed_s);
		fail = overlaps || errors || nh != (size_t)O.procs * (size_t)O.rounds;
	}
out:
	if (f)
		fclose(f);
	free(h);
	free(a);
	free(l);
	free(v);
	free(rel);
	free(per_round);
	return fail;
}

static void usage(void)
{
	printf("usage: lockrace [-m round|takeover|wait|solo|handoff] [-n PROCS] [-r ROUNDS]\n"
	       "                [-k KEY] [-o FILE] [-H HOLD_MS] [-b BASE_MS] [-c CAP_MS] [-t TTL_MS]\n"
	       "                [-T TIMEOUT_S] [-w MAX_WAIT_MS]\n"
	       "S3 endpoint, credentials and bucket from AWS_* and BUCKET_NAME.\n"
	       "Exit 0 when every check held, 1 when one failed, 2 on usage errors.\n");
}

int main(int argc, char **argv)
{
	struct shared *sh;
	pthread_barrierattr_t ba;
	char tmpl[] = "/tmp/lockrace.XXXXXX";
	const char *path;
	int opt, fd, bad = 0;
	int64_t t0;

	while ((opt = getopt(argc, argv, "m:n:r:k:o:H:b:c:t:T:w:h")) != -1) {
		switch (opt) {
		case 'm': O.mode = optarg; break;
		case 'n': O.procs = atoi(optarg); break;
		case 'r': O.rounds = atoi(optarg); break;
		case 'k': O.key = optarg; break;
		case 'o': O.out = optarg; break;
		case 'H': O.hold_ms = atol(optarg); break;
		case 'b': O.base_ms = strtoull(optarg, NULL, 10); break;
		case 'c': O.cap_ms = strtoull(optarg, NULL, 10); break;
		case 't': O.ttl_ms = strtoull(optarg, NULL, 10); break;
		case 'w': O.max_wait_ms = strtoull(optarg, NULL, 10); break;
		case 'T': O.timeout_s = (unsigned int)atoi(optarg); break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if (!strcmp(O.mode, "solo"))
		O.procs = 1;
	if (!strcmp(O.mode, "handoff"))
		O.procs = 2;
	if (O.procs < 1 || O.procs > 256 || O.rounds < 1 ||
	    (strcmp(O.mode, "round") && strcmp(O.mode, "takeover") && strcmp(O.mode, "wait") &&
	     strcmp(O.mode, "solo") && strcmp(O.mode, "handoff"))) {
		usage();
		return 2;
	}
	ferry_log_setup(FERRY_ERROR, FERRY_LOG_PLAIN);    /* takeovers are expected here */
	if (O.out) {
		path = O.out;
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	} else {
		fd = mkstemp(tmpl);
		path = tmpl;
		if (fd >= 0)
			close(fd);
		fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	}
	if (fd < 0) {
		ferry_logf(FERRY_ERROR, "lockrace", "cannot open the interval file", "path=%s", path);
		return 2;
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 2;
	memset(sh, 0, sizeof(*sh));
	pthread_barrierattr_init(&ba);
	pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
	pthread_barrier_init(&sh->bar, &ba, (unsigned int)O.procs);
	pthread_barrierattr_destroy(&ba);

	t0 = mono_ns();
	for (int i = 0; i < O.procs; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			/* the barrier counts on every child: without them nobody can proceed */
			ferry_logf(FERRY_ERROR, "lockrace", "cannot fork", "error=\"%s\"", strerror(errno));
			kill(0, SIGTERM);
			return 2;
		}
		if (pid == 0) {
			int rc;

			/* a child that dies leaves the others at a barrier: bound everything */
			alarm(O.timeout_s);
			if (!strcmp(O.mode, "round") || !strcmp(O.mode, "takeover"))
				rc = child_rounds(sh, fd, i, !strcmp(O.mode, "takeover"));
			else if (!strcmp(O.mode, "handoff"))
				rc = child_handoff(sh, fd, i);
			else
				rc = child_wait(sh, fd, i, O.max_wait_ms);
			_exit(rc);
		}
	}
	for (int i = 0; i < O.procs; i++) {
		int st;

		if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bad = 1;
	}
	close(fd);
	if (verdict(path, (double)(mono_ns() - t0) / 1e9) != 0)
		bad = 1;
	if (!O.out)
		unlink(path);
	pthread_barrier_destroy(&sh->bar);
	munmap(sh, sizeof(*sh));
	return bad;
}
