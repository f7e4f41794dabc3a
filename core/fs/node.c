/* node.c: ferryfs's node table (path <-> inode), the S3 keys of paths, nodes' attributes. */
#include "ferryfs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_log.h"
#include "ferry_time.h"

struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* The inode number is the node's address; the root keeps FUSE's own number. */
struct node *node_of(struct fs *fs, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &fs->root : (struct node *)(uintptr_t)ino;
}

fuse_ino_t node_ino(const struct fs *fs, const struct node *n)
{
	return n == &fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

char *fs_key(const struct fs *fs, const char *path, bool dir)
{
	char *k;

	if (asprintf(&k, "%s%s%s", fs->prefix, path, dir && path[0] ? "/" : "") < 0)
		return NULL;
	return k;
}

char *fs_node_key(struct fs *fs, struct node *n)
{
	char *k;

	pthread_mutex_lock(&fs->mu);
	k = fs_key(fs, n->path, n->is_dir);
	pthread_mutex_unlock(&fs->mu);
	return k;
}

/* DELETEs the key of path, logging `failed` if that fails. Returns an errno. */
int fs_delete(struct fs *fs, const char *path, bool dir, const char *failed)
{
	struct ferry_s3_res res;
	char *key = fs_key(fs, path, dir);
	int rc;

	if (!key)
		return ENOMEM;
	STAT_ADD(fs, delete, 1);
	rc = ferry_s3_delete(fs->s3, key, NULL, &res);
	free(key);
	if (rc != FERRY_S3_OK) {
		ferry_logf(FERRY_ERROR, "ferryfs", failed, "msg=\"%s\"", res.msg);
		return s3_errno(rc);
	}
	return 0;
}

char *node_join(struct fs *fs, struct node *parent, const char *name)
{
	char *p;
	int r;

	pthread_mutex_lock(&fs->mu);
	r = parent->path[0] ? asprintf(&p, "%s/%s", parent->path, name) : asprintf(&p, "%s", name);
	pthread_mutex_unlock(&fs->mu);
	return r < 0 ? NULL : p;
}

/* ---- node table (fs->mu held) ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void tab_link(struct fs *fs, struct node *n)
{
	size_t i = hash_str(n->path) & (fs->tab_size - 1);

	n->hnext = fs->tab[i];
	fs->tab[i] = n;
}

static void tab_unlink(struct fs *fs, struct node *n)
{
	size_t i = hash_str(n->path) & (fs->tab_size - 1);

	for (struct node **pp = &fs->tab[i]; *pp; pp = &(*pp)->hnext) {
		if (*pp == n) {
			*pp = n->hnext;
			return;
		}
	}
}

static void tab_grow(struct fs *fs)
{
	struct node **old = fs->tab, **nt;
	size_t old_size = fs->tab_size;

	nt = calloc(old_size * 2, sizeof(*nt));
	if (!nt)
		return;                     /* longer chains, still correct */
	fs->tab = nt;
	fs->tab_size = old_size * 2;
	for (size_t i = 0; i < old_size; i++) {
		struct node *n = old[i], *next;

		for (; n; n = next) {
			next = n->hnext;
			tab_link(fs, n);
		}
	}
	free(old);
}

struct node *node_get(struct fs *fs, const char *path)
{
	size_t i = hash_str(path) & (fs->tab_size - 1);

	for (struct node *n = fs->tab[i]; n; n = n->hnext)
		if (n->in_table && strcmp(n->path, path) == 0)
			return n;
	return NULL;
}

/* The path no longer leads to n (replaced, unlinked); n lives on until forgotten. */
void node_detach(struct fs *fs, struct node *n)
{
	(void)fs;                           /* fs->mu held */
	n->in_table = false;
}

struct node *node_new(struct fs *fs, const char *path, bool is_dir)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->path = strdup(path);
	if (!n->path) {
		free(n);
		return NULL;
	}
	n->is_dir = is_dir;
	n->cache_fd = -1;
	n->in_table = true;
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->cv, NULL);
	if (fs->tab_count >= fs->tab_size * 2)
		tab_grow(fs);
	tab_link(fs, n);
	fs->tab_count++;
	return n;
}

bool node_move(struct fs *fs, struct node *n, const char *path)
{
	char *np = strdup(path);

	if (!np) {
		node_detach(fs, n);
		return false;
	}
	tab_unlink(fs, n);
	free(n->path);
	n->path = np;
	tab_link(fs, n);
	return true;
}

int node_walk(struct fs *fs, int (*fn)(struct node *n, void *arg), void *arg)
{
	int r;

	for (size_t i = 0; i < fs->tab_size; i++)
		for (struct node *n = fs->tab[i]; n; n = n->hnext)
			if ((r = fn(n, arg)) != 0)
				return r;
	return 0;
}

static void node_free(struct node *n)
{
	if (n->cache_fd >= 0)
		close(n->cache_fd);
	ivl_release(&n->dirty);
	ivl_release(&n->clean);
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->cv);
	free(n->path);
	free(n);
}

void node_unref(struct fs *fs, struct node *n, uint64_t k)
{
	if (n == &fs->root)
		return;
	pthread_mutex_lock(&fs->mu);
	n->nlookup = n->nlookup > k ? n->nlookup - k : 0;
	if (n->nlookup == 0 && n->nopen == 0) {
		tab_unlink(fs, n);
		fs->tab_count--;
		pthread_mutex_unlock(&fs->mu);
		node_free(n);
		return;
	}
	pthread_mutex_unlock(&fs->mu);
}

void node_track_open(struct fs *fs, struct open_link **list, struct open_link *l)
{
	pthread_mutex_lock(&fs->mu);
	l->prev = NULL;
	l->next = *list;
	if (*list)
		(*list)->prev = l;
	*list = l;
	pthread_mutex_unlock(&fs->mu);
}

void node_untrack_open(struct fs *fs, struct open_link **list, struct open_link *l)
{
	pthread_mutex_lock(&fs->mu);
	if (l->prev)
		l->prev->next = l->next;
	else if (*list == l)
		*list = l->next;
	if (l->next)
		l->next->prev = l->prev;
	pthread_mutex_unlock(&fs->mu);
}

int node_init_table(struct fs *fs)
{
	fs->tab_size = 1024;
	fs->tab = calloc(fs->tab_size, sizeof(*fs->tab));
	if (!fs->tab)
		return -1;
	pthread_mutex_init(&fs->mu, NULL);
	fs->root.path = strdup("");
	if (!fs->root.path)
		return -1;
	fs->root.is_dir = true;
	fs->root.cache_fd = -1;
	fs->root.nlookup = 1;
	pthread_mutex_init(&fs->root.mu, NULL);
	pthread_cond_init(&fs->root.cv, NULL);
	clock_gettime(CLOCK_REALTIME, &fs->root.mtime);
	return 0;
}

void node_release_table(struct fs *fs)
{
	for (size_t i = 0; fs->tab && i < fs->tab_size; i++) {
		struct node *n = fs->tab[i], *next;

		for (; n; n = next) {
			next = n->hnext;
			node_free(n);
		}
	}
	free(fs->tab);
	fs->tab = NULL;
	free(fs->root.path);
	pthread_mutex_destroy(&fs->root.mu);
	pthread_cond_destroy(&fs->root.cv);
	pthread_mutex_destroy(&fs->mu);
}

static int log_discarded(struct node *n, void *arg)
{
	(void)arg;
	if (n->changed && !n->unlinked)
		ferry_logf(FERRY_ERROR, "ferryfs", "discarding uncommitted changes at unmount",
			   "path='%s' size=%" PRIu64, n->path, n->size);
	return 0;
}

/* At exit: commits only happen on fsync/close, so whatever is still dirty is lost. */
void fs_discard_dirty(struct fs *fs)
{
	pthread_mutex_lock(&fs->mu);
	node_walk(fs, log_discarded, NULL);
	pthread_mutex_unlock(&fs->mu);
}

void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs *fs = fs_of(req);

	if (ino != FS_STATS_INO)
		node_unref(fs, node_of(fs, ino), nlookup);
	fuse_reply_none(req);
}

void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);

	for (size_t i = 0; i < count; i++)
		if (forgets[i].ino != FS_STATS_INO)
			node_unref(fs, node_of(fs, forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ---- what S3 says, what the kernel sees ---- */

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

void node_attr(struct fs *fs, const struct node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = node_ino(fs, n);
	st->st_mode = n->is_dir ? S_IFDIR | 0755 : S_IFREG | 0644;
	st->st_nlink = n->is_dir ? 2 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = n->is_dir ? 0 : (off_t)n->size;
	st->st_blksize = 128 * 1024;
	st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
	st->st_mtim = n->mtime;
	st->st_atim = n->mtime;
	st->st_ctim = n->mtime;
}

void node_set_from_probe(struct node *n, const struct probe *pr)
{
	if (!n->is_dir) {
		n->size = pr->size;
		snprintf(n->etag, sizeof(n->etag), "%s", pr->etag);
	}
	if (pr->mtime) {
		n->mtime.tv_sec = pr->mtime;
		n->mtime.tv_nsec = 0;
	} else if (!n->mtime.tv_sec) {
		clock_gettime(CLOCK_REALTIME, &n->mtime);
	}
	n->attr_ms = ferry_mono_ms();
}

/* HEAD the file key, else LIST under "path/" for a directory. Returns an errno. */
int node_probe(struct fs *fs, const char *path, struct probe *out)
{
	struct ferry_s3_list l = { 0 };
	struct ferry_s3_res res;
	char *key;
	int rc;

	memset(out, 0, sizeof(*out));
	key = fs_key(fs, path, false);
	if (!key)
		return ENOMEM;
	STAT_ADD(fs, head, 1);
	rc = ferry_s3_head(fs->s3, key, NULL, &res);
	free(key);
	if (rc == FERRY_S3_OK) {
		out->size = res.size;
		snprintf(out->etag, sizeof(out->etag), "%s", res.etag);
		out->mtime = res.last_modified;
		return 0;
	}
	if (rc != FERRY_S3_NOTFOUND) {
		STAT_ADD(fs, errors, 1);
		ferry_logf(FERRY_ERROR, "ferryfs", "lookup failed", "msg=\"%s\"", res.msg);
		return s3_errno(rc);
	}
	key = fs_key(fs, path, true);
	if (!key)
		return ENOMEM;
	STAT_ADD(fs, list, 1);
	rc = ferry_s3_list_page(fs->s3, key, NULL, NULL, 1, &l, &res);
	free(key);
	if (rc != FERRY_S3_OK) {
		STAT_ADD(fs, errors, 1);
		ferry_logf(FERRY_ERROR, "ferryfs", "lookup failed", "msg=\"%s\"", res.msg);
		return s3_errno(rc);
	}
	out->is_dir = l.n_entries > 0 || l.n_prefixes > 0;
	ferry_s3_list_release(&l);
	return out->is_dir ? 0 : ENOENT;
}

/* The node for path as S3 just described it, with one more kernel reference. A file
 * node stands for one object version: a different ETag gets a new node (new inode
 * number), so the kernel's page cache and size never outlive the version. */
struct node *node_found(struct fs *fs, const char *path, const struct probe *pr)
{
	struct node *n;

	pthread_mutex_lock(&fs->mu);
	n = node_get(fs, path);
	if (n) {
		pthread_mutex_lock(&n->mu);
		if (n->is_dir != pr->is_dir ||
		    (!n->is_dir && n->nopen == 0 && !n->committing && !n->is_new && n->etag[0] &&
		     pr->etag[0] && strcmp(n->etag, pr->etag) != 0)) {
			pthread_mutex_unlock(&n->mu);
			node_detach(fs, n);
			n = NULL;
		} else {
			if (n->nopen == 0 && !n->committing && !n->is_new)
				node_set_from_probe(n, pr);
			pthread_mutex_unlock(&n->mu);
		}
	}
	if (!n) {
		n = node_new(fs, path, pr->is_dir);
		if (!n) {
			pthread_mutex_unlock(&fs->mu);
			return NULL;
		}
		node_set_from_probe(n, pr);
	}
	n->nlookup++;
	pthread_mutex_unlock(&fs->mu);
	return n;
}

void node_entry(struct fs *fs, struct node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = node_ino(fs, n);
	e->generation = 1;
	e->attr_timeout = fs->attr_timeout;
	e->entry_timeout = fs->entry_timeout;
	pthread_mutex_lock(&n->mu);
	node_attr(fs, n, &e->attr);
	pthread_mutex_unlock(&n->mu);
}
