/* fetch.c: ferryfs's reads: pinned ranged GETs into the cache file, read-ahead, whole fetches. */
#include "ferryfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "ferry_log.h"
#include "ferry_time.h"

#define RA_MIN        (1ull << 20)          /* first read-ahead window */
#define RANDOM_ALIGN  4096ull               /* a random read GETs its own pages, no more */
#define SEQ_SLACK     (4ull << 20)          /* reordered kernel read-ahead still counts as sequential */
#define WHOLE_THREADS 4                     /* parallel GETs of a whole-file fetch */
#define WHOLE_CHUNK   (8ull << 20)          /* bytes per GET of a whole-file fetch */
#define RATE_MIN_GET  (4ull << 20)          /* GETs this large measure the transfer rate */
#define RATE_GUESS    (100ull << 20)        /* bytes/s assumed before any is measured */
#define WHOLE_RENT    2                     /* buy once random reads took 1/this of the fetch */
#define RAND_GAP_MAX  (100ull * 1000000)    /* a longer pause between random reads is idleness */

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
	data_held_sync(sc->fs, n);
	try_reply(sc->fs, n, sc->rr, false);
	pthread_mutex_unlock(&n->mu);
	data_trim(sc->fs);
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

	e = data_cache_fd(fs, n);
	if (e)
		return e;
	snprintf(etag, sizeof(etag), "%s", n->base_etag);
	cond.if_match = etag[0] ? etag : NULL;
	f.next = n->fetches;
	n->fetches = &f;
	pthread_mutex_unlock(&n->mu);

	t0 = ferry_mono_ns();
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
	dt = ferry_mono_ns() - t0;
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
int fetch_present(struct fs *fs, struct node *n, const char *key, uint64_t a, uint64_t b)
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
	/* this detached thread's OpenSSL state is freed now: after bg_done the process may
	 * exit before the thread's own exit would free it (LeakSanitizer saw it, t2011) */
	OPENSSL_thread_stop();
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

bool fetch_stop_background(struct fs *fs)
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

void fetch_read(struct fs *fs, struct handle *h, fuse_req_t req, size_t size, off_t off_)
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
	data_touch(n, end);
	if (!seq) {
		/* the reader's time between random reads, pauses of idleness left out */
		t_in = ferry_mono_ns();
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
		n->rand_last = ferry_mono_ns();
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
