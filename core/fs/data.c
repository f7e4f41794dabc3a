/* data.c: an open file's cache file, its bytes under cache_max, its writes and truncation. */
#include "ferryfs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry_log.h"
#include "ferry_time.h"

/* Brings fs's cache_bytes in line with n's ranges (n->mu held). */
void data_held_sync(struct fs *fs, struct node *n)
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
	data_held_sync(fs, n);
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
void data_trim(struct fs *fs)
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

void data_touch(struct node *n, uint64_t end)
{
	n->last_off = end;
	__atomic_store_n(&n->last_use, ferry_mono_ns(), __ATOMIC_RELAXED);
}

int data_cache_fd(struct fs *fs, struct node *n)
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
	data_held_sync(fs, n);
	n->changed = false;
	n->stale = false;
	n->fsync_only = false;
	n->fetch_ranged = false;
	n->whole_started = false;
	n->base_etag[0] = '\0';
}

int data_write(struct fs *fs, struct node *n, const char *buf, size_t size, off_t off_)
{
	uint64_t off = (uint64_t)off_;
	size_t done = 0;
	int e;

	pthread_mutex_lock(&n->mu);
	while (n->committing)
		pthread_cond_wait(&n->cv, &n->mu);
	e = data_cache_fd(fs, n);
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
	data_held_sync(fs, n);
	data_touch(n, off + size);
	if (off + size > n->size)
		n->size = off + size;
	n->changed = true;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
out:
	pthread_mutex_unlock(&n->mu);
	if (!e)
		data_trim(fs);
	return e;
}

int data_truncate(struct fs *fs, struct node *n, uint64_t size)
{
	while (n->committing)
		pthread_cond_wait(&n->cv, &n->mu);
	if (size < n->size) {
		ivl_del(&n->dirty, size, UINT64_MAX);
		ivl_del(&n->clean, size, UINT64_MAX);
		data_held_sync(fs, n);
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

