/* data.c: ferryfs file contents: pinned ranged reads into a local cache file, random
 * writes, and the atomic, conditional commit (PUT or multipart with part copies). */
#include "ferryfs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry_failpoint.h"
#include "ferry_log.h"

#define RA_MIN        (1ull << 20)          /* first read-ahead window */
#define RANDOM_ALIGN  4096ull               /* a random read GETs its own pages, no more */
#define SEQ_SLACK     (4ull << 20)          /* reordered kernel read-ahead still counts as sequential */
#define MPU_THREADS   4
#define WHOLE_THREADS 4                     /* parallel GETs of a whole-file fetch */
#define WHOLE_CHUNK   (8ull << 20)          /* bytes per GET of a whole-file fetch */
#define RATE_MIN_GET  (4ull << 20)          /* GETs this large measure the transfer rate */
#define RATE_GUESS    (100ull << 20)        /* bytes/s assumed before any is measured */
#define WHOLE_RENT    2                     /* buy once random reads took 1/this of the fetch */
#define RAND_GAP_MAX  (100ull * 1000000)    /* a longer pause between random reads is idleness */

struct fetch {
	uint64_t gen;                       /* node state_gen at start */
	uint64_t a;                         /* first byte asked for */
	uint64_t b;                         /* one past the last */
	uint64_t pos;                       /* bytes before this have arrived */
	struct fetch *next;
};

/* A read request that the fetch answers as soon as its bytes are in. */
struct read_req {
	fuse_req_t req;
	uint64_t off;
	uint64_t end;
	bool replied;
};

/* A thread waiting for a GET in flight to bring byte `need` (on n->waiters). */
struct waiter {
	pthread_cond_t cv;
	uint64_t need;
	struct waiter *next;
};

static const struct ivl empty_ivl;

/*
 * Waits until the GET in flight that covers byte `need` has stored it, or any GET ended
 * (n->mu held). Each waiter has its own condition: a cold sequential read has dozens of
 * kernel read requests waiting at once, and waking all of them for every 256 KiB that
 * arrives cost more CPU than moving the bytes.
 */
static void wait_progress(struct node *n, uint64_t need)
{
	struct waiter w = { .need = need, .next = n->waiters };

	pthread_cond_init(&w.cv, NULL);
	n->waiters = &w;
	pthread_cond_wait(&w.cv, &n->mu);
	for (struct waiter **pp = &n->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == &w) {
			*pp = w.next;
			break;
		}
	}
	pthread_cond_destroy(&w.cv);
}

/* Wakes the waiters whose byte is in [a, b) (n->mu held); all of them when all is set. */
static void wake_progress(struct node *n, uint64_t a, uint64_t b, bool all)
{
	for (struct waiter *w = n->waiters; w; w = w->next)
		if (all || (w->need >= a && w->need < b))
			pthread_cond_signal(&w->cv);
}

int s3_errno(int rc)
{
	switch (rc) {
	case FERRY_S3_OK:
		return 0;
	case FERRY_S3_NOTFOUND:
		return ENOENT;
	case FERRY_S3_PRECONDITION:
	case FERRY_S3_CONFLICT:
		return ESTALE;
	case FERRY_S3_DENIED:
		return EACCES;
	case FERRY_S3_CANCELLED:
		return EINTR;
	default:
		return EIO;
	}
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Brings fs's cache_bytes in line with n's ranges (n->mu held). */
static void held_sync(struct fs *fs, struct node *n)
{
	uint64_t now = n->clean.sum + n->dirty.sum, total, peak;

	if (now == n->held)
		return;
	if (now > n->held) {
		total = __atomic_add_fetch(&fs->stats.cache_bytes, now - n->held, __ATOMIC_RELAXED);
		peak = __atomic_load_n(&fs->stats.cache_peak, __ATOMIC_RELAXED);
		while (total > peak && !__atomic_compare_exchange_n(&fs->stats.cache_peak, &peak, total,
								    true, __ATOMIC_RELAXED,
								    __ATOMIC_RELAXED))
			;
	} else {
		__atomic_sub_fetch(&fs->stats.cache_bytes, n->held - now, __ATOMIC_RELAXED);
	}
	n->held = now;
}

static bool cache_over(const struct fs *fs)
{
	return fs->cache_max &&
	       __atomic_load_n(&fs->stats.cache_bytes, __ATOMIC_RELAXED) > fs->cache_max;
}

/* Drops clean bytes [a, b) from n's cache file (n->mu held). */
static void evict_range(struct fs *fs, struct node *n, uint64_t a, uint64_t b)
{
	/* a hole gives the disk space back; if the filesystem cannot punch one the bytes stay
	 * on disk, but they are no longer trusted either way */
	if (fallocate(n->cache_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)a,
		      (off_t)(b - a)) != 0)
		ferry_logf(FERRY_DEBUG, "ferryfs", "cannot punch a hole in a cache file", "err='%s'",
			   strerror(errno));
	ivl_del(&n->clean, a, b);
	STAT_ADD(fs, cache_evicted, b - a);
	held_sync(fs, n);
}

/* Evicts up to *need clean bytes of n (n->mu held): first what lies behind the last read
 * (ascending), then what lies furthest ahead. Kept: ranges GETs in flight are filling, and
 * one read-ahead window past the last read, which the reader is about to consume (without
 * it, dirty data over the cap would make every fetched window go before it is read). */
static void evict_node(struct fs *fs, struct node *n, uint64_t *need)
{
	struct ivl cand;

	if (n->committing || n->cache_fd < 0 || !n->clean.sum)
		return;                     /* a commit uploads from the cache file */
	ivl_copy(&cand, &n->clean);
	for (struct fetch *f = n->fetches; f; f = f->next)
		ivl_del(&cand, f->a, f->b);
	ivl_del(&cand, n->last_off, n->last_off + fs->ra_max);
	for (size_t i = 0; i < cand.n && *need; i++) {
		uint64_t a = cand.r[i].a, b = cand.r[i].b < n->last_off ? cand.r[i].b : n->last_off;

		if (a >= b)
			break;
		if (b - a > *need)
			b = a + *need;
		evict_range(fs, n, a, b);
		*need -= b - a;
	}
	for (size_t i = cand.n; i > 0 && *need; i--) {
		uint64_t a = cand.r[i - 1].a, b = cand.r[i - 1].b;

		if (a < n->last_off)
			a = n->last_off;
		if (a >= b)
			continue;
		if (b - a > *need)
			a = b - *need;
		evict_range(fs, n, a, b);
		*need -= b - a;
	}
	ivl_release(&cand);
}

static int by_last_use(const void *x, const void *y)
{
	uint64_t a = __atomic_load_n(&(*(struct node *const *)x)->last_use, __ATOMIC_RELAXED);
	uint64_t b = __atomic_load_n(&(*(struct node *const *)y)->last_use, __ATOMIC_RELAXED);

	return a < b ? -1 : a > b;
}

/*
 * Keeps the cache files under cache_max by dropping clean (downloaded, unchanged) bytes,
 * least recently used files first, down to 7/8 of the cap so that it does not run on
 * every chunk. Dirty bytes are never dropped: they are the only copy until a commit.
 * No node lock may be held by the caller: the nodes' locks are only tried here (they are
 * taken before fs->cache_mu elsewhere), and a busy node is skipped this round.
 */
static void cache_trim(struct fs *fs)
{
	struct node **v = NULL;
	size_t nv = 0, cap = 0;
	uint64_t total, need;

	if (!cache_over(fs))
		return;
	pthread_mutex_lock(&fs->cache_mu);
	total = __atomic_load_n(&fs->stats.cache_bytes, __ATOMIC_RELAXED);
	if (total <= fs->cache_max)
		goto out;
	need = total - (fs->cache_max - fs->cache_max / 8);
	for (struct node *n = fs->cached; n; n = n->cnext) {
		if (nv == cap) {
			struct node **nvv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));

			if (!nvv)
				break;
			v = nvv;
			cap = cap ? cap * 2 : 16;
		}
		v[nv++] = n;
	}
	if (nv > 1)
		qsort(v, nv, sizeof(*v), by_last_use);
	for (size_t i = 0; i < nv && need; i++) {
		if (pthread_mutex_trylock(&v[i]->mu) != 0)
			continue;
		evict_node(fs, v[i], &need);
		pthread_mutex_unlock(&v[i]->mu);
	}
	if (cache_over(fs) && !fs->cache_over)
		ferry_logf(FERRY_WARN, "ferryfs", "cache over its cap: what is left is dirty or in use",
			   "cache_max=%llu cache_bytes=%llu", (unsigned long long)fs->cache_max,
			   (unsigned long long)__atomic_load_n(&fs->stats.cache_bytes, __ATOMIC_RELAXED));
	fs->cache_over = cache_over(fs);
out:
	pthread_mutex_unlock(&fs->cache_mu);
	free(v);
}

static void touch(struct node *n, uint64_t end)
{
	n->last_off = end;
	__atomic_store_n(&n->last_use, now_ns(), __ATOMIC_RELAXED);
}

static int cache_fd_ensure(struct fs *fs, struct node *n)
{
	char tmpl[4096];
	int fd;

	if (n->cache_fd >= 0)
		return 0;
	fd = open(fs->cache_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		/* O_TMPFILE needs filesystem support; fall back to create + unlink */
		snprintf(tmpl, sizeof(tmpl), "%s/ferryfs-XXXXXX", fs->cache_dir);
		fd = mkostemp(tmpl, O_CLOEXEC);
		if (fd < 0) {
			int e = errno;

			ferry_logf(FERRY_ERROR, "ferryfs", "cannot create cache file",
				   "dir='%s' err='%s'", fs->cache_dir, strerror(e));
			return e;
		}
		unlink(tmpl);
	}
	n->cache_fd = fd;
	pthread_mutex_lock(&fs->cache_mu);
	n->cprev = NULL;
	n->cnext = fs->cached;
	if (fs->cached)
		fs->cached->cprev = n;
	fs->cached = n;
	pthread_mutex_unlock(&fs->cache_mu);
	return 0;
}

void data_open_state(struct node *n)
{
	n->cache_fd = -1;
	ivl_clear(&n->dirty);
	ivl_clear(&n->clean);
	n->stale = false;
	n->fetches = NULL;
	n->fetch_ranged = false;
	n->whole_started = false;
	n->rand_ns = 0;
	n->rand_last = 0;
}

void data_quiesce(struct node *n)
{
	/* read-ahead and whole-file fetches still write into cache_fd: stop them, then wait */
	n->state_gen++;
	while (n->fetches || n->bg)
		pthread_cond_wait(&n->cv, &n->mu);
	/* an open that came in while this waited keeps the state: it may fetch whole again */
	n->whole_started = false;
}

void data_close_state(struct fs *fs, struct node *n)
{
	if (n->cache_fd >= 0) {
		pthread_mutex_lock(&fs->cache_mu);
		if (n->cprev)
			n->cprev->cnext = n->cnext;
		else
			fs->cached = n->cnext;
		if (n->cnext)
			n->cnext->cprev = n->cprev;
		n->cprev = n->cnext = NULL;
		pthread_mutex_unlock(&fs->cache_mu);
		close(n->cache_fd);
	}
	n->cache_fd = -1;
	ivl_release(&n->dirty);
	ivl_release(&n->clean);
	held_sync(fs, n);
	n->changed = false;
	n->stale = false;
	n->fsync_only = false;
	n->fetch_ranged = false;
	n->whole_started = false;
	n->base_etag[0] = '\0';
}

/* Copies [off, end) of the file's current content into buf (n->mu held). Bytes the
 * cache file does not hold (holes, past its end) read as zeros. */
static int fill_buf(struct node *n, char *buf, uint64_t off, uint64_t end)
{
	size_t want = end - off, got = 0;

	if (n->cache_fd < 0) {
		memset(buf, 0, want);
		return 0;
	}
	while (got < want) {
		ssize_t r = pread(n->cache_fd, buf + got, want - got, (off_t)(off + got));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	memset(buf + got, 0, want - got);
	return 0;
}

static bool range_ready(const struct node *n, uint64_t off, uint64_t end)
{
	uint64_t ga, gb, need = end < n->base_limit ? end : n->base_limit;

	return !ivl_first_gap2(&n->dirty, &n->clean, off, need, &ga, &gb);
}

/* Replies with [rr->off, rr->end) if all of it is available (n->mu held). */
static void try_reply(struct fs *fs, struct node *n, struct read_req *rr, bool hit)
{
	char *buf;
	int e;

	if (!rr || rr->replied || !range_ready(n, rr->off, rr->end))
		return;
	buf = malloc(rr->end - rr->off ? rr->end - rr->off : 1);
	if (!buf) {
		fuse_reply_err(rr->req, ENOMEM);
		rr->replied = true;
		return;
	}
	e = fill_buf(n, buf, rr->off, rr->end);
	if (e)
		fuse_reply_err(rr->req, e);
	else
		fuse_reply_buf(rr->req, buf, rr->end - rr->off);
	free(buf);
	rr->replied = true;
	if (hit)
		STAT_ADD(fs, cache_hits, 1);
}

struct sink_ctx {
	struct fs *fs;
	struct node *n;
	struct fetch *f;
	struct read_req *rr;
	char *buf;                          /* arrived bytes not stored yet (NULL: unbuffered) */
	size_t blen;                        /* bytes in buf */
	size_t bcap;                        /* its size */
	int err;                            /* local write error */
	bool dropped;                       /* the last handle went away: stop */
};

/* Stores arriving base bytes, except where newer local writes or a truncation win. */
static int sink_store(struct sink_ctx *sc, const void *data, size_t len)
{
	struct node *n = sc->n;
	uint64_t pos, end, ga, gb;

	pthread_mutex_lock(&n->mu);
	if (n->state_gen != sc->f->gen || n->cache_fd < 0 ||
	    __atomic_load_n(&sc->fs->stopping, __ATOMIC_RELAXED)) {
		/* read-ahead for a file nobody has open any more, or unmounting */
		sc->dropped = true;
		wake_progress(n, 0, 0, true);
		pthread_cond_broadcast(&n->cv);
		pthread_mutex_unlock(&n->mu);
		return 1;
	}
	pos = sc->f->pos;
	end = pos + len;
	if (end > sc->f->b)
		end = sc->f->b;
	if (end > n->base_limit)
		end = n->base_limit;
	while (pos < end && ivl_first_gap2(&n->dirty, &empty_ivl, pos, end, &ga, &gb)) {
		const char *p = (const char *)data + (ga - sc->f->pos);
		size_t left = gb - ga;
		uint64_t at = ga;

		while (left) {
			ssize_t w = pwrite(n->cache_fd, p, left, (off_t)at);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				sc->err = errno;
				pthread_mutex_unlock(&n->mu);
				return 1;
			}
			p += w;
			at += (uint64_t)w;
			left -= (size_t)w;
		}
		ivl_add(&n->clean, ga, gb);
		pos = gb;
	}
	wake_progress(n, sc->f->a, sc->f->pos + len, false);
	sc->f->pos += len;
	held_sync(sc->fs, n);
	try_reply(sc->fs, n, sc->rr, false);
	pthread_mutex_unlock(&n->mu);
	cache_trim(sc->fs);
	return 0;
}

/*
 * libcurl hands over a body in 16 KiB pieces; storing each one costs a lock, a pwrite and
 * a wake-up of every waiter, which is most of a cold read's CPU. Pieces are gathered into
 * SINK_BUF bytes first, and stored early when they complete the read this GET answers.
 */
#define SINK_BUF (256u << 10)

static int fetch_sink(void *arg, const void *data, size_t len)
{
	struct sink_ctx *sc = arg;
	const char *p = data;

	STAT_ADD(sc->fs, bytes_down, len);
	if (!sc->buf)
		return sink_store(sc, data, len);
	while (len) {
		size_t take = sc->bcap - sc->blen < len ? sc->bcap - sc->blen : len;
		bool answers;

		memcpy(sc->buf + sc->blen, p, take);
		sc->blen += take;
		p += take;
		len -= take;
		/* rr and f->pos belong to this thread: the GET runs in the reader's thread */
		answers = sc->rr && !sc->rr->replied && sc->f->pos + sc->blen >= sc->rr->end;
		if (sc->blen == sc->bcap || answers) {
			size_t n = sc->blen;

			sc->blen = 0;
			if (sink_store(sc, sc->buf, n))
				return 1;
		}
	}
	return 0;
}

static struct fetch *fetch_at(const struct node *n, uint64_t x)
{
	for (struct fetch *f = n->fetches; f; f = f->next)
		if (f->a <= x && x < f->b)
			return f;
	return NULL;
}

static uint64_t next_fetch_start(const struct node *n, uint64_t x)
{
	uint64_t best = UINT64_MAX;

	for (struct fetch *f = n->fetches; f; f = f->next)
		if (f->a > x && f->a < best)
			best = f->a;
	return best;
}

/* GETs [a, b) of the pinned base into the cache file. Called and returns with n->mu
 * held; drops it for the transfer. Returns an errno; EAGAIN (not for a commit's own
 * fetch) when this mount's commit replaced the pinned version meanwhile: fetch again. */
static int fetch_range(struct fs *fs, struct node *n, const char *key, uint64_t a, uint64_t b,
		       struct read_req *rr, bool for_commit)
{
	struct fetch f = { .gen = n->state_gen, .a = a, .b = b, .pos = a };
	struct sink_ctx sc = { .fs = fs, .n = n, .f = &f, .rr = rr };
	struct ferry_s3_cond cond = { 0 };
	struct ferry_s3_res res;
	char etag[FS_ETAG_MAX];
	uint64_t t0, dt;
	int e, rc;

	e = cache_fd_ensure(fs, n);
	if (e)
		return e;
	snprintf(etag, sizeof(etag), "%s", n->base_etag);
	cond.if_match = etag[0] ? etag : NULL;
	f.next = n->fetches;
	n->fetches = &f;
	pthread_mutex_unlock(&n->mu);

	t0 = now_ns();
	sc.bcap = b - a < SINK_BUF ? (size_t)(b - a) : SINK_BUF;
	if (sc.bcap > 16384)
		sc.buf = malloc(sc.bcap);   /* NULL: store piece by piece */
	STAT_ADD(fs, get, 1);
	STAT_ADD(fs, cache_misses, 1);
	ferry_logf(FERRY_DEBUG, "ferryfs", "fetch", "key='%s' from=%llu to=%llu for=%s", key,
		   (unsigned long long)a, (unsigned long long)b, rr ? "read" : "read-ahead");
	rc = ferry_s3_get(fs->s3, key, &cond, a, b - a, fetch_sink, &sc, &res);
	/* bytes of the pinned version that arrived before an end or an error */
	if (sc.blen && !sc.dropped && !sc.err)
		sink_store(&sc, sc.buf, sc.blen);
	free(sc.buf);
	dt = now_ns() - t0;
	if (rc == FERRY_S3_OK && f.pos - a >= RATE_MIN_GET && dt) {
		/* what a whole-file fetch would take: a moving average over large GETs */
		uint64_t rate = (f.pos - a) * 1000000000ull / dt;
		uint64_t old = __atomic_load_n(&fs->get_rate, __ATOMIC_RELAXED);

		__atomic_store_n(&fs->get_rate, old ? (old * 3 + rate) / 4 : rate, __ATOMIC_RELAXED);
	}

	pthread_mutex_lock(&n->mu);
	for (struct fetch **pp = &n->fetches; *pp; pp = &(*pp)->next) {
		if (*pp == &f) {
			*pp = f.next;
			break;
		}
	}
	wake_progress(n, 0, 0, true);       /* waiters look again: more to fetch, or an error */
	pthread_cond_broadcast(&n->cv);
	if (sc.dropped)
		return EINTR;
	if (sc.err) {
		ferry_logf(FERRY_ERROR, "ferryfs", "cannot write cache file", "key='%s' err='%s'",
			   key, strerror(sc.err));
		return sc.err;
	}
	if (rc == FERRY_S3_PRECONDITION && !for_commit) {
		/* A commit through this mount may have replaced the pinned version while the
		 * GET was on its way. The new version holds the same bytes wherever nothing
		 * was written, so that is no conflict: fetch again, pinned to the new ETag. */
		while (n->committing)
			pthread_cond_wait(&n->cv, &n->mu);
		if (n->state_gen != f.gen)
			return EINTR;
		if (strcmp(etag, n->base_etag) != 0) {
			ferry_logf(FERRY_DEBUG, "ferryfs", "fetching again after our own commit",
				   "key='%s' was=%s now=%s", key, etag, n->base_etag);
			return EAGAIN;
		}
	}
	if (rc == FERRY_S3_PRECONDITION) {
		/* pinned version gone: never mix two versions in one open */
		n->stale = true;
		STAT_ADD(fs, conflicts, 1);
		ferry_logf(FERRY_WARN, "ferryfs", "object replaced while open", "key='%s' etag=%s",
			   key, etag);
		return ESTALE;
	}
	if (rc != FERRY_S3_OK) {
		STAT_ADD(fs, errors, 1);
		ferry_logf(FERRY_ERROR, "ferryfs", "read failed", "msg=\"%s\"", res.msg);
		return s3_errno(rc) == ENOENT ? ESTALE : s3_errno(rc);
	}
	if (f.pos < b && b <= n->base_limit) {
		STAT_ADD(fs, errors, 1);
		ferry_logf(FERRY_ERROR, "ferryfs", "short read", "key='%s' want=%llu got=%llu", key,
			   (unsigned long long)(b - a), (unsigned long long)(f.pos - a));
		return EIO;
	}
	return 0;
}

/* Makes [a, b) of the base present in the cache file (n->mu held). */
static int ensure_present(struct fs *fs, struct node *n, const char *key, uint64_t a, uint64_t b)
{
	uint64_t ga, gb;

	for (;;) {
		uint64_t need = b < n->base_limit ? b : n->base_limit;
		uint64_t end, nf;
		int e;

		if (!ivl_first_gap2(&n->dirty, &n->clean, a, need, &ga, &gb))
			return 0;
		if (n->stale)
			return ESTALE;
		if (fetch_at(n, ga)) {
			wait_progress(n, ga);
			continue;
		}
		/* one GET for the whole span: the sink skips what is already here */
		end = ivl_last_gap_end2(&n->dirty, &n->clean, ga, need);
		nf = next_fetch_start(n, ga);
		if (end > nf)
			end = nf;
		e = fetch_range(fs, n, key, ga, end, NULL, true);
		if (e)
			return e;
	}
}

/*
 * Whole-file fetch. Random reads each cost a round trip. Once a reader has spent half as
 * long reading a file of at most whole_max bytes at random (the time its random reads took
 * and the time between them, pauses over RAND_GAP_MAX left out) as fetching the rest of
 * the file would take (at the rate large GETs ran lately), WHOLE_THREADS threads fetch the
 * rest of the pinned object in WHOLE_CHUNK GETs, in order, so that later reads are cache
 * hits. This is ski rental: a reader that stops early paid no more than it would have
 * anyway, a reader that goes on pays at most 1 + WHOLE_RENT times the better choice, and a
 * few random reads (an index lookup) never compete with a background transfer. Reads never
 * wait for the threads: a read whose bytes are in a chunk in flight takes them as they
 * arrive, any other read sends its own GET. The threads stop when the open state goes
 * (last close, data_quiesce) or at unmount; a file marked user.ferry.fetch=ranged (pull
 * and push know which pages they need) never starts one.
 */
struct whole_job {
	struct fs *fs;
	struct node *n;
	uint64_t gen;                       /* n->state_gen when started */
	char *key;
};

static void bg_done(struct fs *fs)
{
	pthread_mutex_lock(&fs->bg_mu);
	fs->bg_threads--;
	pthread_cond_broadcast(&fs->bg_cv);
	pthread_mutex_unlock(&fs->bg_mu);
}

static void *whole_worker(void *arg)
{
	struct whole_job *w = arg;
	struct fs *fs = w->fs;
	struct node *n = w->n;
	uint64_t x = 0, ga, gb;
	int e;

	pthread_mutex_lock(&n->mu);
	while (n->state_gen == w->gen && !n->stale &&
	       !__atomic_load_n(&fs->stopping, __ATOMIC_RELAXED) &&
	       ivl_first_gap2(&n->dirty, &n->clean, x, n->base_limit, &ga, &gb)) {
		struct fetch *f = fetch_at(n, ga);
		uint64_t end;

		if (f) {
			x = f->b;               /* another thread or a reader has it */
			continue;
		}
		end = ga + WHOLE_CHUNK < gb ? ga + WHOLE_CHUNK : gb;
		if (end > next_fetch_start(n, ga))
			end = next_fetch_start(n, ga);
		x = end;
		e = fetch_range(fs, n, w->key, ga, end, NULL, false);
		if (e == EAGAIN)
			x = ga;                 /* again, pinned to our own commit's version */
		else if (e)
			break;                  /* logged; a reader that needs it fails on its own */
	}
	n->bg--;
	pthread_cond_broadcast(&n->cv);
	pthread_mutex_unlock(&n->mu);
	free(w->key);
	free(w);
	bg_done(fs);
	return NULL;
}

/* Whether n's random readers have spent 1/WHOLE_RENT of what fetching the rest would take. */
static bool whole_pays(const struct fs *fs, const struct node *n)
{
	uint64_t rate = __atomic_load_n(&fs->get_rate, __ATOMIC_RELAXED);
	double left = n->base_limit > n->clean.sum ? (double)(n->base_limit - n->clean.sum) : 0;

	return (double)n->rand_ns * WHOLE_RENT >= left * 1e9 / (double)(rate ? rate : RATE_GUESS);
}

/* Starts the whole-file fetch of n if it qualifies (n->mu held). */
static void whole_start(struct fs *fs, struct node *n, const char *key)
{
	pthread_attr_t attr;

	if (n->whole_started || n->fetch_ranged || !fs->whole_max || !n->base_etag[0] ||
	    n->base_limit > fs->whole_max || n->stale || !whole_pays(fs, n) ||
	    __atomic_load_n(&fs->stopping, __ATOMIC_RELAXED))
		return;
	n->whole_started = true;
	if (pthread_attr_init(&attr) != 0)
		return;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < WHOLE_THREADS; i++) {
		struct whole_job *w = calloc(1, sizeof(*w));
		pthread_t th;

		if (!w || !(w->key = strdup(key))) {
			free(w);
			break;
		}
		w->fs = fs;
		w->n = n;
		w->gen = n->state_gen;
		pthread_mutex_lock(&fs->bg_mu);
		fs->bg_threads++;
		pthread_mutex_unlock(&fs->bg_mu);
		n->bg++;
		if (pthread_create(&th, &attr, whole_worker, w) != 0) {
			n->bg--;
			bg_done(fs);
			free(w->key);
			free(w);
			break;
		}
	}
	pthread_attr_destroy(&attr);
	if (n->bg)
		STAT_ADD(fs, whole_fetches, 1);
}

bool data_stop_background(struct fs *fs)
{
	struct timespec until;
	int left;

	__atomic_store_n(&fs->stopping, true, __ATOMIC_RELAXED);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;                 /* a GET stops at its next piece of data */
	pthread_mutex_lock(&fs->bg_mu);
	while (fs->bg_threads &&
	       pthread_cond_timedwait(&fs->bg_cv, &fs->bg_mu, &until) == 0)
		;
	left = fs->bg_threads;
	pthread_mutex_unlock(&fs->bg_mu);
	if (left)
		ferry_logf(FERRY_WARN, "ferryfs", "whole-file fetches still running at exit",
			   "threads=%d", left);
	return left == 0;
}

static bool is_seq(const struct handle *h, uint64_t off)
{
	return off + SEQ_SLACK >= h->ra_next && off <= h->ra_next + SEQ_SLACK;
}

void data_read(struct fs *fs, struct handle *h, fuse_req_t req, size_t size, off_t off_)
{
	struct node *n = h->n;
	struct read_req rr = { .req = req };
	uint64_t off = (uint64_t)off_, end, ga, gb, t_in = 0;
	bool fetched = false, seq;
	char *key;
	int err = 0;

	key = fs_node_key(fs, n);
	if (!key) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&n->mu);
	seq = is_seq(h, off);
	if (!seq || h->ra_win == 0)
		h->ra_win = RA_MIN;
	end = off + size;
	if (end > n->size)
		end = n->size;
	if (off >= end) {
		pthread_mutex_unlock(&n->mu);
		fuse_reply_buf(req, NULL, 0);
		free(key);
		return;
	}
	rr.off = off;
	rr.end = end;
	/* where the reader goes next, set now: the reply goes out as soon as the bytes are
	 * in, and the reader's next read can arrive while this GET is still finishing */
	h->ra_next = seq && h->ra_next > end ? h->ra_next : end;
	touch(n, end);
	if (!seq) {
		/* the reader's time between random reads, pauses of idleness left out */
		t_in = now_ns();
		if (n->rand_last && t_in - n->rand_last < RAND_GAP_MAX)
			n->rand_ns += t_in - n->rand_last;
	}
	for (;;) {
		uint64_t need = end < n->base_limit ? end : n->base_limit;
		uint64_t fb, nf;

		if (!ivl_first_gap2(&n->dirty, &n->clean, off, need, &ga, &gb))
			break;
		if (n->stale) {
			err = ESTALE;
			break;
		}
		if (fetch_at(n, ga)) {
			wait_progress(n, ga);
			continue;
		}
		if (seq) {
			fb = ga + h->ra_win;
			if (h->ra_win < fs->ra_max)
				h->ra_win *= 2;
		} else {
			/* a random read: one small GET of just its pages */
			fb = (end + RANDOM_ALIGN - 1) / RANDOM_ALIGN * RANDOM_ALIGN;
		}
		if (fb < end)
			fb = end;
		if (fb > n->base_limit)
			fb = n->base_limit;
		nf = next_fetch_start(n, ga);
		if (fb > nf)
			fb = nf;
		fetched = true;
		err = fetch_range(fs, n, key, ga, fb, &rr, false);
		if (err == EAGAIN) {
			err = 0;                /* pinned to our own commit's version now */
			continue;
		}
		if (err || rr.replied)
			break;
	}
	if (!rr.replied) {
		if (err)
			fuse_reply_err(req, err);
		else
			try_reply(fs, n, &rr, !fetched);
		rr.replied = true;
	}
	if (!seq) {
		/* and the time random reads take */
		n->rand_last = now_ns();
		n->rand_ns += n->rand_last - t_in;
		if (!err && fetched)
			whole_start(fs, n, key);
	}
	if (!err) {
		/* keep the next window coming while the reader consumes this one */
		if (seq && !n->stale) {
			uint64_t ahead = end + h->ra_win / 2, stop;

			if (ahead > n->base_limit)
				ahead = n->base_limit;
			if (ivl_first_gap2(&n->dirty, &n->clean, end, ahead, &ga, &gb) &&
			    !fetch_at(n, ga)) {
				stop = ga + h->ra_win;
				if (stop > n->base_limit)
					stop = n->base_limit;
				if (stop > next_fetch_start(n, ga))
					stop = next_fetch_start(n, ga);
				if (h->ra_win < fs->ra_max)
					h->ra_win *= 2;
				if (stop > ga)
					fetch_range(fs, n, key, ga, stop, NULL, false);
			}
		}
	}
	pthread_mutex_unlock(&n->mu);
	free(key);
}

int data_write(struct fs *fs, struct node *n, const char *buf, size_t size, off_t off_)
{
	uint64_t off = (uint64_t)off_;
	size_t done = 0;
	int e;

	pthread_mutex_lock(&n->mu);
	while (n->committing)
		pthread_cond_wait(&n->cv, &n->mu);
	e = cache_fd_ensure(fs, n);
	if (e)
		goto out;
	while (done < size) {
		ssize_t w = pwrite(n->cache_fd, buf + done, size - done, (off_t)(off + done));

		if (w < 0) {
			if (errno == EINTR)
				continue;
			e = errno;
			goto out;
		}
		done += (size_t)w;
	}
	ivl_add(&n->dirty, off, off + size);
	ivl_del(&n->clean, off, off + size);
	held_sync(fs, n);
	touch(n, off + size);
	if (off + size > n->size)
		n->size = off + size;
	n->changed = true;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
out:
	pthread_mutex_unlock(&n->mu);
	if (!e)
		cache_trim(fs);
	return e;
}

int data_truncate(struct fs *fs, struct node *n, uint64_t size)
{
	while (n->committing)
		pthread_cond_wait(&n->cv, &n->mu);
	if (size < n->size) {
		ivl_del(&n->dirty, size, UINT64_MAX);
		ivl_del(&n->clean, size, UINT64_MAX);
		held_sync(fs, n);
		if (n->base_limit > size)
			n->base_limit = size;
		if (n->cache_fd >= 0 && ftruncate(n->cache_fd, (off_t)size) != 0)
			return errno;
	}
	n->size = size;
	n->changed = true;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	return 0;
}

struct mpu_job {
	struct fs *fs;
	struct node *n;
	const char *key;
	const char *upload_id;
	const char *base_etag;              /* "" for a new object */
	uint64_t size;
	uint64_t base_limit;
	const struct ivl *dirty;            /* snapshot taken at commit start */
	int nparts;
	char **etags;
	int next;                           /* next part index to take */
	int err;                            /* first errno */
	pthread_mutex_t mu;
};

/* Whether part [off, off + len) of a commit can be copied server-side from the base. */
static bool part_copyable(const struct fs *fs, const char *base_etag, uint64_t base_limit,
			  const struct ivl *dirty, uint64_t off, uint64_t len)
{
	return base_etag[0] && off + len <= base_limit && !ivl_overlaps(dirty, off, off + len) &&
	       !__atomic_load_n(&fs->no_part_copy, __ATOMIC_RELAXED);
}

/* A commit with no part to copy uploads every byte anyway: up to put_max it is one PUT,
 * which spares the multipart round trips and the store's CompleteMultipartUpload (which
 * some stores pay for by reading every part again). */
static bool commit_as_put(const struct fs *fs, const char *base_etag, uint64_t size,
			  uint64_t base_limit, const struct ivl *dirty)
{
	if (size < FS_PART_SIZE)
		return true;
	if (size > fs->put_max)
		return false;
	for (uint64_t off = 0; off < size; off += FS_PART_SIZE)
		if (part_copyable(fs, base_etag, base_limit, dirty, off,
				  size - off < FS_PART_SIZE ? size - off : FS_PART_SIZE))
			return false;
	return true;
}

static int mpu_one(struct mpu_job *j, int i)
{
	struct fs *fs = j->fs;
	struct node *n = j->n;
	uint64_t off = (uint64_t)i * FS_PART_SIZE;
	uint64_t len = j->size - off < FS_PART_SIZE ? j->size - off : FS_PART_SIZE;
	struct ferry_s3_res res;
	int rc, e;

	if (part_copyable(fs, j->base_etag, j->base_limit, j->dirty, off, len)) {
		STAT_ADD(fs, mpu_part_copy, 1);
		rc = ferry_s3_mpu_part_copy(fs->s3, j->key, j->upload_id, i + 1, j->key, j->base_etag,
					    off, len, j->etags[i], &res);
		if (rc == FERRY_S3_OK) {
			STAT_ADD(fs, bytes_copied, len);
			return 0;
		}
		if (rc == FERRY_S3_NOTIMPL) {
			if (!__atomic_exchange_n(&fs->no_part_copy, true, __ATOMIC_RELAXED))
				ferry_logf(FERRY_WARN, "ferryfs",
					   "store lacks UploadPartCopy; uploading parts instead",
					   "msg=\"%s\"", res.msg);
		} else {
			if (rc == FERRY_S3_PRECONDITION)
				STAT_ADD(fs, conflicts, 1);
			ferry_logf(FERRY_ERROR, "ferryfs", "part copy failed", "part=%d msg=\"%s\"",
				   i + 1, res.msg);
			return rc == FERRY_S3_PRECONDITION ? ESTALE : s3_errno(rc);
		}
	}
	pthread_mutex_lock(&n->mu);
	e = ensure_present(fs, n, j->key, off, off + len);
	pthread_mutex_unlock(&n->mu);
	if (e)
		return e;
	STAT_ADD(fs, mpu_part, 1);
	rc = ferry_s3_mpu_part_fd(fs->s3, j->key, j->upload_id, i + 1, n->cache_fd, (off_t)off, len,
				  j->etags[i], &res);
	if (rc != FERRY_S3_OK) {
		ferry_logf(FERRY_ERROR, "ferryfs", "part upload failed", "part=%d msg=\"%s\"", i + 1,
			   res.msg);
		return s3_errno(rc);
	}
	STAT_ADD(fs, bytes_up, len);
	return 0;
}

static void *mpu_worker(void *arg)
{
	struct mpu_job *j = arg;

	for (;;) {
		int i, e;

		pthread_mutex_lock(&j->mu);
		if (j->err || j->next >= j->nparts) {
			pthread_mutex_unlock(&j->mu);
			return NULL;
		}
		i = j->next++;
		pthread_mutex_unlock(&j->mu);
		e = mpu_one(j, i);
		if (e) {
			pthread_mutex_lock(&j->mu);
			if (!j->err)
				j->err = e;
			pthread_mutex_unlock(&j->mu);
		}
	}
}

/* Multipart commit; returns an errno, new ETag in res->etag. */
static int commit_mpu(struct mpu_job *j, const struct ferry_s3_cond *cond,
		      struct ferry_s3_res *res)
{
	struct fs *fs = j->fs;
	pthread_t th[MPU_THREADS];
	char *upload_id = NULL;
	uint64_t t0 = now_ns(), t_parts;
	int nth, started = 0, rc, e = 0;

	STAT_ADD(fs, mpu_create, 1);
	rc = ferry_s3_mpu_create(fs->s3, j->key, &upload_id, res);
	if (rc != FERRY_S3_OK) {
		ferry_logf(FERRY_ERROR, "ferryfs", "cannot start upload", "msg=\"%s\"", res->msg);
		return s3_errno(rc);
	}
	j->upload_id = upload_id;
	j->etags = calloc((size_t)j->nparts, sizeof(*j->etags));
	if (!j->etags) {
		e = ENOMEM;
		goto out_abort;
	}
	for (int i = 0; i < j->nparts; i++) {
		j->etags[i] = calloc(1, FS_ETAG_MAX);
		if (!j->etags[i]) {
			e = ENOMEM;
			goto out_abort;
		}
	}
	pthread_mutex_init(&j->mu, NULL);
	nth = j->nparts < MPU_THREADS ? j->nparts : MPU_THREADS;
	for (int t = 0; t < nth; t++) {
		if (pthread_create(&th[t], NULL, mpu_worker, j) != 0)
			break;
		started++;
	}
	if (!started)
		mpu_worker(j);
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&j->mu);
	e = j->err;
	if (e)
		goto out_abort;
	t_parts = now_ns();
	/* crash matrix: every part is on S3, the object is not (FERRY_FAILPOINT=...:kill) */
	if (ferry_failpoint("fs.before_complete")) {
		e = EIO;
		goto out_abort;
	}
	STAT_ADD(fs, mpu_complete, 1);
	rc = ferry_s3_mpu_complete(fs->s3, j->key, upload_id, j->etags, j->nparts, cond, res);
	ferry_logf(FERRY_DEBUG, "ferryfs", "multipart commit", "key='%s' parts=%d parts_ms=%llu complete_ms=%llu",
		   j->key, j->nparts, (unsigned long long)((t_parts - t0) / 1000000),
		   (unsigned long long)((now_ns() - t_parts) / 1000000));
	if (rc != FERRY_S3_OK) {
		e = rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_CONFLICT ? ESTALE : s3_errno(rc);
		if (e == ESTALE)
			STAT_ADD(fs, conflicts, 1);
		ferry_logf(FERRY_ERROR, "ferryfs", "commit failed", "msg=\"%s\"", res->msg);
		goto out_abort;
	}
	goto out_free;
out_abort:
	{
		struct ferry_s3_res ares;

		STAT_ADD(fs, mpu_abort, 1);
		ferry_s3_mpu_abort(fs->s3, j->key, upload_id, &ares);
	}
out_free:
	if (j->etags)
		for (int i = 0; i < j->nparts; i++)
			free(j->etags[i]);
	free(j->etags);
	free(upload_id);
	return e;
}

int data_commit(struct fs *fs, struct node *n)
{
	struct ferry_s3_cond cond = { 0 };
	struct ferry_s3_res res = { 0 };
	char base_etag[FS_ETAG_MAX];
	struct ivl dirty;
	uint64_t size, base_limit;
	bool is_new;
	char *key;
	int e = 0, rc;

	key = fs_node_key(fs, n);
	if (!key)
		return ENOMEM;
	pthread_mutex_lock(&n->mu);
	while (n->committing)
		pthread_cond_wait(&n->cv, &n->mu);
	if (!n->changed || n->unlinked) {
		pthread_mutex_unlock(&n->mu);
		free(key);
		return 0;
	}
	e = cache_fd_ensure(fs, n);
	if (e) {
		pthread_mutex_unlock(&n->mu);
		free(key);
		return e;
	}
	n->committing = true;
	size = n->size;
	base_limit = n->base_limit;
	is_new = n->is_new;
	snprintf(base_etag, sizeof(base_etag), "%s", n->base_etag);
	ivl_copy(&dirty, &n->dirty);
	{
		struct stat st;

		/* holes past the cache file's end must read as zeros when uploaded */
		if (fstat(n->cache_fd, &st) == 0 && (uint64_t)st.st_size < size &&
		    ftruncate(n->cache_fd, (off_t)size) != 0)
			e = errno;
	}
	pthread_mutex_unlock(&n->mu);
	if (e)
		goto out;

	if (is_new || !base_etag[0])
		cond.if_none_match = "*";
	else
		cond.if_match = base_etag;
	STAT_ADD(fs, commits, 1);
	/* crash matrix: the commit is decided, nothing sent yet (FERRY_FAILPOINT=...:kill) */
	if (ferry_failpoint("fs.before_commit")) {
		e = EIO;
		goto out;
	}
	if (commit_as_put(fs, is_new ? "" : base_etag, size, base_limit, &dirty)) {
		pthread_mutex_lock(&n->mu);
		e = ensure_present(fs, n, key, 0, size < base_limit ? size : base_limit);
		pthread_mutex_unlock(&n->mu);
		if (e)
			goto out;
		STAT_ADD(fs, put, 1);
		if (size)
			rc = ferry_s3_put_fd(fs->s3, key, n->cache_fd, 0, size, &cond, &res);
		else
			rc = ferry_s3_put(fs->s3, key, "", 0, &cond, &res);
		if (rc != FERRY_S3_OK) {
			e = rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_CONFLICT ? ESTALE : s3_errno(rc);
			if (e == ESTALE)
				STAT_ADD(fs, conflicts, 1);
			ferry_logf(FERRY_ERROR, "ferryfs", "commit failed", "msg=\"%s\" if_match=%s",
				   res.msg, cond.if_match ? cond.if_match : "-");
			goto out;
		}
		STAT_ADD(fs, bytes_up, size);
	} else {
		struct mpu_job j = {
			.fs = fs, .n = n, .key = key, .base_etag = is_new ? "" : base_etag,
			.size = size, .base_limit = base_limit, .dirty = &dirty,
			.nparts = (int)((size + FS_PART_SIZE - 1) / FS_PART_SIZE),
		};

		e = commit_mpu(&j, &cond, &res);
		if (e)
			goto out;
	}
out:
	pthread_mutex_lock(&n->mu);
	if (!e) {
		snprintf(n->etag, sizeof(n->etag), "%s", res.etag);
		snprintf(n->base_etag, sizeof(n->base_etag), "%s", res.etag);
		n->base_limit = size;
		/* bytes written in this commit are the new version's bytes */
		ivl_union_into(&n->clean, &dirty);
		ivl_clear(&n->dirty);
		held_sync(fs, n);
		n->changed = n->size != size;   /* cannot differ: writes waited */
		n->is_new = false;
		clock_gettime(CLOCK_MONOTONIC, &n->attr_time);
		ferry_logf(FERRY_DEBUG, "ferryfs", "committed", "key='%s' size=%llu etag=%s", key,
			   (unsigned long long)size, res.etag);
	} else {
		STAT_ADD(fs, errors, 1);
		if (e == ESTALE)
			n->stale = true;
	}
	n->committing = false;
	pthread_cond_broadcast(&n->cv);
	pthread_mutex_unlock(&n->mu);
	cache_trim(fs);                     /* the bytes just committed are clean now */
	ivl_release(&dirty);
	free(key);
	return e;
}
