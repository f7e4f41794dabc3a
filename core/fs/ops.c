/* ops.c: ferryfs's FUSE low-level operations and its node table (path <-> inode). */
#include "ferryfs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_log.h"

#define NAME_MAX_S3 1024

/* What S3 says about one path. */
struct probe {
	bool is_dir;
	uint64_t size;
	char etag[FS_ETAG_MAX];
	time_t mtime;
};

/* One entry of an open directory. */
struct dent {
	char *name;
	struct probe pr;
};
struct dirh {
	struct dent *e;
	size_t n;
	struct dirh *prev, *next;           /* fs->dirs: freed at exit if never released */
};

static void dirh_free(struct dirh *d);

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct node *node_of(struct fs *fs, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &fs->root : (struct node *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(struct fs *fs, const struct node *n)
{
	return n == &fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static double since(const struct timespec *t)
{
	struct timespec now;

	if (!t->tv_sec && !t->tv_nsec)
		return 1e18;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
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

static char *join(struct fs *fs, struct node *parent, const char *name)
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

static struct node *tab_get(struct fs *fs, const char *path)
{
	size_t i = hash_str(path) & (fs->tab_size - 1);

	for (struct node *n = fs->tab[i]; n; n = n->hnext)
		if (n->in_table && strcmp(n->path, path) == 0)
			return n;
	return NULL;
}

/* The path no longer leads to n (replaced, unlinked); n lives on until forgotten. */
static void tab_detach(struct fs *fs, struct node *n)
{
	(void)fs;                           /* fs->mu held */
	n->in_table = false;
}

static struct node *node_new(struct fs *fs, const char *path, bool is_dir)
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

static void node_unref(struct fs *fs, struct node *n, uint64_t k)
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

static void handle_track(struct fs *fs, struct handle *h)
{
	pthread_mutex_lock(&fs->mu);
	h->prev = NULL;
	h->next = fs->handles;
	if (fs->handles)
		fs->handles->prev = h;
	fs->handles = h;
	pthread_mutex_unlock(&fs->mu);
}

static void handle_free(struct fs *fs, struct handle *h)
{
	pthread_mutex_lock(&fs->mu);
	if (h->prev)
		h->prev->next = h->next;
	else if (fs->handles == h)
		fs->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->mu);
	free(h->text);
	free(h);
}

int fs_init_tables(struct fs *fs)
{
	fs->tab_size = 1024;
	fs->tab = calloc(fs->tab_size, sizeof(*fs->tab));
	if (!fs->tab)
		return -1;
	pthread_mutex_init(&fs->mu, NULL);
	pthread_mutex_init(&fs->cache_mu, NULL);
	pthread_mutex_init(&fs->bg_mu, NULL);
	pthread_cond_init(&fs->bg_cv, NULL);
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

void fs_release_tables(struct fs *fs)
{
	/* handles the kernel never released (unmounted while files were open) */
	while (fs->handles) {
		struct handle *h = fs->handles;

		fs->handles = h->next;
		free(h->text);
		free(h);
	}
	/* and directories still open (an `ls` killed mid-listing, a shell cd'd into one) */
	while (fs->dirs) {
		struct dirh *d = fs->dirs;

		fs->dirs = d->next;
		dirh_free(d);
	}
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
	pthread_mutex_destroy(&fs->cache_mu);
	pthread_cond_destroy(&fs->bg_cv);
	pthread_mutex_destroy(&fs->bg_mu);
	pthread_mutex_destroy(&fs->mu);
}

/* At exit: commits only happen on fsync/close, so whatever is still dirty is lost. */
void fs_discard_dirty(struct fs *fs)
{
	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->tab_size; i++) {
		for (struct node *n = fs->tab[i]; n; n = n->hnext) {
			if (n->changed && !n->unlinked)
				ferry_logf(FERRY_ERROR, "ferryfs",
					   "discarding uncommitted changes at unmount",
					   "path='%s' size=%" PRIu64, n->path, n->size);
		}
	}
	pthread_mutex_unlock(&fs->mu);
}

/* ---- attributes ---- */

static void fill_attr(struct fs *fs, const struct node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino_of(fs, n);
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

static void stats_attr(struct stat *st, struct fs *fs)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = FS_STATS_INO;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	clock_gettime(CLOCK_REALTIME, &st->st_mtim);
	st->st_ctim = st->st_mtim;
	st->st_atim = st->st_mtim;
}

static void set_from_probe(struct node *n, const struct probe *pr)
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
	clock_gettime(CLOCK_MONOTONIC, &n->attr_time);
}

/* Whether n's attributes may be answered without asking S3 (n->mu held). */
static bool attrs_usable(struct fs *fs, const struct node *n)
{
	if (n == &fs->root || n->nopen > 0 || n->is_new || n->committing)
		return true;
	return since(&n->attr_time) < fs->attr_timeout;
}

static bool is_stats(struct fs *fs, fuse_ino_t parent, const char *name)
{
	return node_of(fs, parent) == &fs->root && strcmp(name, FERRY_FS_STATS_NAME) == 0;
}

/* HEAD the file key, else LIST under "path/" for a directory. Returns an errno. */
static int probe(struct fs *fs, const char *path, struct probe *out)
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
static struct node *node_found(struct fs *fs, const char *path, const struct probe *pr)
{
	struct node *n;

	pthread_mutex_lock(&fs->mu);
	n = tab_get(fs, path);
	if (n) {
		pthread_mutex_lock(&n->mu);
		if (n->is_dir != pr->is_dir ||
		    (!n->is_dir && n->nopen == 0 && !n->committing && !n->is_new && n->etag[0] &&
		     pr->etag[0] && strcmp(n->etag, pr->etag) != 0)) {
			pthread_mutex_unlock(&n->mu);
			tab_detach(fs, n);
			n = NULL;
		} else {
			if (n->nopen == 0 && !n->committing && !n->is_new)
				set_from_probe(n, pr);
			pthread_mutex_unlock(&n->mu);
		}
	}
	if (!n) {
		n = node_new(fs, path, pr->is_dir);
		if (!n) {
			pthread_mutex_unlock(&fs->mu);
			return NULL;
		}
		set_from_probe(n, pr);
	}
	n->nlookup++;
	pthread_mutex_unlock(&fs->mu);
	return n;
}

static void entry_of(struct fs *fs, struct node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino_of(fs, n);
	e->generation = 1;
	e->attr_timeout = fs->attr_timeout;
	e->entry_timeout = fs->entry_timeout;
	pthread_mutex_lock(&n->mu);
	fill_attr(fs, n, &e->attr);
	pthread_mutex_unlock(&n->mu);
}

/* ---- namespace ---- */

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct probe pr;
	struct node *n;
	char *path;
	int err;

	if (strlen(name) > NAME_MAX_S3) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (is_stats(fs, parent, name)) {
		memset(&e, 0, sizeof(e));
		e.ino = FS_STATS_INO;
		e.generation = 1;
		stats_attr(&e.attr, fs);
		fuse_reply_entry(req, &e);
		return;
	}
	path = join(fs, node_of(fs, parent), name);
	if (!path) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = tab_get(fs, path);
	if (n) {
		pthread_mutex_lock(&n->mu);
		if (attrs_usable(fs, n)) {
			pthread_mutex_unlock(&n->mu);
			n->nlookup++;
			pthread_mutex_unlock(&fs->mu);
			entry_of(fs, n, &e);
			fuse_reply_entry(req, &e);
			free(path);
			return;
		}
		pthread_mutex_unlock(&n->mu);
	}
	pthread_mutex_unlock(&fs->mu);

	err = probe(fs, path, &pr);
	if (err == ENOENT) {
		pthread_mutex_lock(&fs->mu);
		n = tab_get(fs, path);
		if (n && n->nopen == 0 && !n->is_new)
			tab_detach(fs, n);
		pthread_mutex_unlock(&fs->mu);
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->neg_timeout;
		fuse_reply_entry(req, &e);
		free(path);
		return;
	}
	if (err) {
		fuse_reply_err(req, err);
		free(path);
		return;
	}
	n = node_found(fs, path, &pr);
	free(path);
	if (!n) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	entry_of(fs, n, &e);
	fuse_reply_entry(req, &e);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fs *fs = fs_of(req);

	if (ino != FS_STATS_INO)
		node_unref(fs, node_of(fs, ino), nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);

	for (size_t i = 0; i < count; i++)
		if (forgets[i].ino != FS_STATS_INO)
			node_unref(fs, node_of(fs, forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node *n;
	struct probe pr;
	struct stat st;
	char *path;
	int err;

	(void)fi;
	if (ino == FS_STATS_INO) {
		stats_attr(&st, fs);
		fuse_reply_attr(req, &st, 0);
		return;
	}
	n = node_of(fs, ino);
	pthread_mutex_lock(&n->mu);
	if (attrs_usable(fs, n) || n->unlinked || !n->in_table) {
		fill_attr(fs, n, &st);
		pthread_mutex_unlock(&n->mu);
		fuse_reply_attr(req, &st, fs->attr_timeout);
		return;
	}
	pthread_mutex_unlock(&n->mu);
	pthread_mutex_lock(&fs->mu);
	path = strdup(n->path);
	pthread_mutex_unlock(&fs->mu);
	if (!path) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	err = probe(fs, path, &pr);
	free(path);
	if (err) {
		if (err == ENOENT) {
			pthread_mutex_lock(&fs->mu);
			if (n->nopen == 0 && !n->is_new)
				tab_detach(fs, n);
			pthread_mutex_unlock(&fs->mu);
		}
		fuse_reply_err(req, err);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	pthread_mutex_lock(&n->mu);
	if (!attrs_usable(fs, n)) {
		if (!n->is_dir && n->etag[0] && strcmp(n->etag, pr.etag) != 0) {
			/* another version: later lookups get a fresh node */
			tab_detach(fs, n);
			n->size = pr.size;
			clock_gettime(CLOCK_MONOTONIC, &n->attr_time);
		} else {
			set_from_probe(n, &pr);
		}
	}
	fill_attr(fs, n, &st);
	pthread_mutex_unlock(&n->mu);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_attr(req, &st, fs->attr_timeout);
}

/* Opens n's data state (n->nopen++), pinning the current object version. */
static int node_open(struct fs *fs, struct node *n, bool trunc)
{
	struct ferry_s3_res res;
	char *key;
	int rc, err = 0;

	key = fs_node_key(fs, n);
	if (!key)
		return ENOMEM;
	pthread_mutex_lock(&n->mu);
	if (n->nopen > 0 && n->stale && !n->is_new) {
		/* Its pinned version is gone (a GET or a commit got 412) while other handles
		 * are still open, e.g. the RELEASE of a close(2) not yet in. Sharing their
		 * state would fail every read: ESTALE makes the kernel look the name up again,
		 * and the detached node makes that lookup find the new version. */
		err = ESTALE;
		goto out_unlock;
	}
	if (n->nopen == 0 && !n->is_new) {
		pthread_mutex_unlock(&n->mu);
		STAT_ADD(fs, head, 1);
		rc = ferry_s3_head(fs->s3, key, NULL, &res);
		pthread_mutex_lock(&n->mu);
		if (n->nopen == 0) {
			if (rc != FERRY_S3_OK) {
				err = s3_errno(rc);
				if (rc != FERRY_S3_NOTFOUND) {
					STAT_ADD(fs, errors, 1);
					ferry_logf(FERRY_ERROR, "ferryfs", "open failed", "msg=\"%s\"",
						   res.msg);
				}
				goto out_unlock;
			}
			if (n->etag[0] && strcmp(n->etag, res.etag) != 0) {
				/* ESTALE makes the kernel redo the lookup (LOOKUP_REVAL), which
				 * then finds the new version under a new node */
				err = ESTALE;
				goto out_unlock;
			}
			snprintf(n->etag, sizeof(n->etag), "%s", res.etag);
			snprintf(n->base_etag, sizeof(n->base_etag), "%s", res.etag);
			n->size = res.size;
			n->base_limit = res.size;
			if (res.last_modified) {
				n->mtime.tv_sec = res.last_modified;
				n->mtime.tv_nsec = 0;
			}
			clock_gettime(CLOCK_MONOTONIC, &n->attr_time);
			data_open_state(n);
			n->changed = false;
		}
	} else if (n->nopen == 0) {
		/* a local new file whose first commit failed: still nothing on S3 */
		data_open_state(n);
		n->base_etag[0] = '\0';
		n->base_limit = 0;
		n->changed = true;
	}
	if (trunc && n->size) {
		err = data_truncate(fs, n, 0);
		if (err)
			goto out_unlock;
	}
	n->nopen++;
out_unlock:
	pthread_mutex_unlock(&n->mu);
	if (err == ESTALE || err == ENOENT) {
		pthread_mutex_lock(&fs->mu);
		if (n->nopen == 0 || err == ESTALE)
			tab_detach(fs, n);
		pthread_mutex_unlock(&fs->mu);
	}
	free(key);
	return err;
}

static void node_close(struct fs *fs, struct node *n)
{
	bool detach = false;

	pthread_mutex_lock(&n->mu);
	/* waiting drops n->mu: an open may come in meanwhile and keep the state alive */
	if (n->nopen == 1)
		data_quiesce(n);
	if (--n->nopen == 0) {
		if (n->changed && !n->unlinked) {
			ferry_logf(FERRY_ERROR, "ferryfs", "discarding uncommitted changes",
				   "path='%s' size=%" PRIu64, n->path, n->size);
			/* The kernel's page cache and size of this inode now hold bytes S3 never
			 * got: retire the inode. The next lookup makes a new one from S3, and an
			 * open through a cached dentry gets ESTALE, which makes the kernel look
			 * the name up again. */
			n->discarded = true;
			detach = true;
		}
		data_close_state(fs, n);
	}
	pthread_mutex_unlock(&n->mu);
	if (detach) {
		pthread_mutex_lock(&fs->mu);
		tab_detach(fs, n);
		pthread_mutex_unlock(&fs->mu);
	}
	/* the kernel may have forgotten n while it was open */
	node_unref(fs, n, 0);
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node *n;
	struct stat st;
	int err = 0;

	(void)fi;
	if (ino == FS_STATS_INO) {
		fuse_reply_err(req, EACCES);
		return;
	}
	n = node_of(fs, ino);
	/* S3 keeps no modes or owners: accept only what we already report */
	if ((to_set & FUSE_SET_ATTR_MODE) &&
	    (attr->st_mode & 07777) != (unsigned)(n->is_dir ? 0755 : 0644)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != fs->uid) ||
	    ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != fs->gid)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		bool internal;

		if (n->is_dir) {
			fuse_reply_err(req, EISDIR);
			return;
		}
		pthread_mutex_lock(&n->mu);
		internal = n->nopen == 0;
		pthread_mutex_unlock(&n->mu);
		/* truncate(2) by path has no close to commit at: open, apply, commit here */
		if (internal) {
			err = node_open(fs, n, false);
			if (err) {
				fuse_reply_err(req, err);
				return;
			}
		}
		pthread_mutex_lock(&n->mu);
		if ((uint64_t)attr->st_size != n->size)
			err = data_truncate(fs, n, (uint64_t)attr->st_size);
		pthread_mutex_unlock(&n->mu);
		if (internal) {
			if (!err)
				err = data_commit(fs, n);
			node_close(fs, n);
		}
		if (err) {
			fuse_reply_err(req, err);
			return;
		}
	}
	pthread_mutex_lock(&n->mu);
	/* kept in memory only: S3's LastModified wins once the node is refreshed */
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		clock_gettime(CLOCK_REALTIME, &n->mtime);
	else if (to_set & FUSE_SET_ATTR_MTIME)
		n->mtime = attr->st_mtim;
	fill_attr(fs, n, &st);
	pthread_mutex_unlock(&n->mu);
	fuse_reply_attr(req, &st, fs->attr_timeout);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs *fs = fs_of(req);
	struct ferry_s3_cond cond = { .if_none_match = "*" };
	struct probe pr = { .is_dir = true };
	struct fuse_entry_param e;
	struct ferry_s3_res res;
	struct node *n;
	char *path, *key;
	int rc;

	(void)mode;
	if (is_stats(fs, parent, name)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	path = join(fs, node_of(fs, parent), name);
	key = path ? fs_key(fs, path, true) : NULL;
	if (!key) {
		free(path);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	STAT_ADD(fs, put, 1);
	rc = ferry_s3_put(fs->s3, key, "", 0, &cond, &res);
	if (rc != FERRY_S3_OK) {
		if (rc != FERRY_S3_PRECONDITION)
			ferry_logf(FERRY_ERROR, "ferryfs", "mkdir failed", "msg=\"%s\"", res.msg);
		fuse_reply_err(req, rc == FERRY_S3_PRECONDITION ? EEXIST : s3_errno(rc));
		goto out;
	}
	pr.mtime = time(NULL);
	n = node_found(fs, path, &pr);
	if (!n) {
		fuse_reply_err(req, ENOMEM);
		goto out;
	}
	entry_of(fs, n, &e);
	fuse_reply_entry(req, &e);
out:
	free(key);
	free(path);
}

/* Any object or local new file below dir path? */
static int dir_nonempty(struct fs *fs, const char *path, bool *nonempty)
{
	struct ferry_s3_list l = { 0 };
	struct ferry_s3_res res;
	size_t plen = strlen(path);
	char *key;
	int rc;

	*nonempty = false;
	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->tab_size && !*nonempty; i++)
		for (struct node *n = fs->tab[i]; n; n = n->hnext)
			if (n->in_table && n->is_new && !n->unlinked &&
			    strncmp(n->path, path, plen) == 0 && n->path[plen] == '/')
				*nonempty = true;
	pthread_mutex_unlock(&fs->mu);
	if (*nonempty)
		return 0;
	key = fs_key(fs, path, true);
	if (!key)
		return ENOMEM;
	STAT_ADD(fs, list, 1);
	rc = ferry_s3_list_page(fs->s3, key, "/", NULL, 2, &l, &res);
	if (rc == FERRY_S3_OK) {
		*nonempty = l.n_prefixes > 0;
		for (size_t i = 0; i < l.n_entries; i++)
			if (strcmp(l.entries[i].key, key) != 0)
				*nonempty = true;
	} else {
		ferry_logf(FERRY_ERROR, "ferryfs", "listing failed", "msg=\"%s\"", res.msg);
	}
	ferry_s3_list_release(&l);
	free(key);
	return s3_errno(rc);
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct ferry_s3_res res;
	struct node *n;
	bool nonempty;
	char *path, *key = NULL;
	int err, rc;

	path = join(fs, node_of(fs, parent), name);
	if (!path) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	err = dir_nonempty(fs, path, &nonempty);
	if (!err && nonempty)
		err = ENOTEMPTY;
	if (err)
		goto out;
	key = fs_key(fs, path, true);
	if (!key) {
		err = ENOMEM;
		goto out;
	}
	STAT_ADD(fs, delete, 1);
	rc = ferry_s3_delete(fs->s3, key, NULL, &res);
	if (rc != FERRY_S3_OK) {
		ferry_logf(FERRY_ERROR, "ferryfs", "rmdir failed", "msg=\"%s\"", res.msg);
		err = s3_errno(rc);
		goto out;
	}
	pthread_mutex_lock(&fs->mu);
	n = tab_get(fs, path);
	if (n)
		tab_detach(fs, n);
	pthread_mutex_unlock(&fs->mu);
out:
	fuse_reply_err(req, err);
	free(key);
	free(path);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct ferry_s3_res res;
	struct node *n;
	bool local_only = false;
	char *path, *key = NULL;
	int err = 0, rc;

	if (is_stats(fs, parent, name)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	path = join(fs, node_of(fs, parent), name);
	if (!path) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = tab_get(fs, path);
	if (n) {
		pthread_mutex_lock(&n->mu);
		local_only = n->is_new;
		n->unlinked = true;
		pthread_mutex_unlock(&n->mu);
		tab_detach(fs, n);
	}
	pthread_mutex_unlock(&fs->mu);
	if (local_only)
		goto out;
	key = fs_key(fs, path, false);
	if (!key) {
		err = ENOMEM;
		goto out;
	}
	STAT_ADD(fs, delete, 1);
	rc = ferry_s3_delete(fs->s3, key, NULL, &res);
	if (rc != FERRY_S3_OK) {
		ferry_logf(FERRY_ERROR, "ferryfs", "unlink failed", "msg=\"%s\"", res.msg);
		err = s3_errno(rc);
	}
out:
	fuse_reply_err(req, err);
	free(key);
	free(path);
}

static int rename_dir(struct fs *fs, const char *src, const char *dst, unsigned int flags)
{
	struct ferry_s3_cond cond = { 0 };
	struct ferry_s3_res res;
	struct probe pr;
	bool nonempty;
	char *skey = NULL, *dkey = NULL;
	int err, rc;

	err = dir_nonempty(fs, src, &nonempty);
	if (err)
		return err;
	if (nonempty)
		return EXDEV;               /* no tree moves: mv(1) falls back to copy + delete */
	err = probe(fs, dst, &pr);
	if (!err) {
		if (!pr.is_dir)
			return ENOTDIR;
		if (flags & RENAME_NOREPLACE)
			return EEXIST;
		err = dir_nonempty(fs, dst, &nonempty);
		if (err)
			return err;
		if (nonempty)
			return ENOTEMPTY;
	} else if (err != ENOENT) {
		return err;
	}
	skey = fs_key(fs, src, true);
	dkey = fs_key(fs, dst, true);
	err = ENOMEM;
	if (!skey || !dkey)
		goto out;
	STAT_ADD(fs, put, 1);
	rc = ferry_s3_put(fs->s3, dkey, "", 0, &cond, &res);
	err = s3_errno(rc);
	if (err)
		goto out;
	STAT_ADD(fs, delete, 1);
	rc = ferry_s3_delete(fs->s3, skey, NULL, &res);
	err = s3_errno(rc);
out:
	if (err && err != ENOMEM)
		ferry_logf(FERRY_ERROR, "ferryfs", "rename failed", "msg=\"%s\"", res.msg);
	free(skey);
	free(dkey);
	return err;
}

/*
 * CopyObject stops at 5 GiB (copy_max lowers the limit for tests): a larger object is
 * copied by a multipart upload of UploadPartCopy ranges of the source pinned by its ETag,
 * completed under the same condition a CopyObject would carry. Returns an errno; a store
 * without UploadPartCopy gives EXDEV, so mv(1) copies through the mount instead.
 */
static int copy_in_parts(struct fs *fs, const char *skey, const char *etag, const char *dkey,
			 uint64_t size, const struct ferry_s3_cond *cond, struct ferry_s3_res *res)
{
	uint64_t part = fs->copy_max;
	char *upload_id = NULL, **etags = NULL;
	int nparts, rc, e = 0;

	if ((size + part - 1) / part > 10000)
		part = ((size + 9999) / 10000 + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
	if (part > FS_COPY_MAX)
		return EFBIG;
	nparts = (int)((size + part - 1) / part);
	etags = calloc((size_t)nparts, sizeof(*etags));
	if (!etags)
		return ENOMEM;
	STAT_ADD(fs, mpu_create, 1);
	rc = ferry_s3_mpu_create(fs->s3, dkey, &upload_id, res);
	if (rc != FERRY_S3_OK) {
		e = s3_errno(rc);
		goto out;
	}
	for (int i = 0; i < nparts && !e; i++) {
		uint64_t off = (uint64_t)i * part, len = size - off < part ? size - off : part;

		etags[i] = calloc(1, FS_ETAG_MAX);
		if (!etags[i]) {
			e = ENOMEM;
			break;
		}
		STAT_ADD(fs, mpu_part_copy, 1);
		rc = ferry_s3_mpu_part_copy(fs->s3, dkey, upload_id, i + 1, skey, etag, off, len,
					    etags[i], res);
		if (rc == FERRY_S3_OK)
			STAT_ADD(fs, bytes_copied, len);
		else if (rc == FERRY_S3_NOTIMPL)
			e = EXDEV;
		else
			e = s3_errno(rc) == ENOENT ? ESTALE : s3_errno(rc);
	}
	if (!e) {
		STAT_ADD(fs, mpu_complete, 1);
		rc = ferry_s3_mpu_complete(fs->s3, dkey, upload_id, etags, nparts, cond, res);
		if (rc != FERRY_S3_OK)
			e = rc == FERRY_S3_PRECONDITION && cond->if_none_match ? EEXIST : s3_errno(rc);
	}
	if (e) {
		struct ferry_s3_res ares;

		STAT_ADD(fs, mpu_abort, 1);
		ferry_s3_mpu_abort(fs->s3, dkey, upload_id, &ares);
	}
out:
	for (int i = 0; i < nparts; i++)
		free(etags[i]);
	free(etags);
	free(upload_id);
	return e;
}

static int rename_file(struct fs *fs, struct node *n, const char *src, const char *dst,
		       unsigned int flags, char *new_etag)
{
	struct ferry_s3_cond cond = { 0 }, dcond = { 0 };
	struct ferry_s3_res res = { 0 };
	char etag[FS_ETAG_MAX] = "";
	char *skey = NULL, *dkey = NULL;
	uint64_t size = 0;
	int err, rc;

	if (n) {
		/* the copy must carry what was written through open handles */
		err = data_commit(fs, n);
		if (err)
			return err;
		pthread_mutex_lock(&n->mu);
		snprintf(etag, sizeof(etag), "%s", n->etag);
		size = n->size;
		pthread_mutex_unlock(&n->mu);
	}
	skey = fs_key(fs, src, false);
	dkey = fs_key(fs, dst, false);
	err = ENOMEM;
	if (!skey || !dkey)
		goto out;
	if (!etag[0]) {
		/* pin the version that gets copied, and learn its size */
		STAT_ADD(fs, head, 1);
		rc = ferry_s3_head(fs->s3, skey, NULL, &res);
		if (rc != FERRY_S3_OK) {
			err = s3_errno(rc);
			goto out_log;
		}
		snprintf(etag, sizeof(etag), "%s", res.etag);
		size = res.size;
	}
	if (flags & RENAME_NOREPLACE)
		cond.if_none_match = "*";
	if (size > fs->copy_max) {
		err = copy_in_parts(fs, skey, etag, dkey, size, &cond, &res);
		if (err)
			goto out_log;
	} else {
		STAT_ADD(fs, copy, 1);
		rc = ferry_s3_copy(fs->s3, skey, etag[0] ? etag : NULL, dkey, &cond, &res);
		if (rc != FERRY_S3_OK) {
			err = rc == FERRY_S3_PRECONDITION && (flags & RENAME_NOREPLACE) ? EEXIST :
			      s3_errno(rc);
			goto out_log;
		}
		STAT_ADD(fs, bytes_copied, res.size);
	}
	snprintf(new_etag, FS_ETAG_MAX, "%s", res.etag);
	/* delete only the version we copied; a newer one is someone else's */
	dcond.if_match = etag[0] ? etag : NULL;
	STAT_ADD(fs, delete, 1);
	rc = ferry_s3_delete(fs->s3, skey, &dcond, &res);
	if (rc != FERRY_S3_OK)
		ferry_logf(FERRY_WARN, "ferryfs", "rename left the source in place", "msg=\"%s\"",
			   res.msg);
	err = 0;
	goto out;
out_log:
	if (err != EEXIST)
		ferry_logf(FERRY_ERROR, "ferryfs", "rename failed", "msg=\"%s\" err='%s'", res.msg,
			   strerror(err));
out:
	free(skey);
	free(dkey);
	return err;
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	char new_etag[FS_ETAG_MAX] = "";
	struct node *n, *d;
	struct probe pr;
	char *src, *dst;
	bool is_dir;
	int err = 0;

	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (is_stats(fs, parent, name) || is_stats(fs, newparent, newname)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	src = join(fs, node_of(fs, parent), name);
	dst = join(fs, node_of(fs, newparent), newname);
	if (!src || !dst) {
		err = ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&fs->mu);
	n = tab_get(fs, src);
	pthread_mutex_unlock(&fs->mu);
	if (n) {
		is_dir = n->is_dir;
	} else {
		err = probe(fs, src, &pr);
		if (err)
			goto out;
		is_dir = pr.is_dir;
	}
	err = is_dir ? rename_dir(fs, src, dst, flags) : rename_file(fs, n, src, dst, flags, new_etag);
	if (err)
		goto out;
	pthread_mutex_lock(&fs->mu);
	d = tab_get(fs, dst);
	if (d && d != n) {
		pthread_mutex_lock(&d->mu);
		d->unlinked = true;         /* replaced: its handles must not commit over n */
		pthread_mutex_unlock(&d->mu);
		tab_detach(fs, d);
	}
	if (n) {
		char *np = strdup(dst);

		if (np) {
			tab_unlink(fs, n);
			free(n->path);
			n->path = np;
			tab_link(fs, n);
			pthread_mutex_lock(&n->mu);
			if (!is_dir && new_etag[0]) {
				snprintf(n->etag, sizeof(n->etag), "%s", new_etag);
				if (n->nopen)
					snprintf(n->base_etag, sizeof(n->base_etag), "%s", new_etag);
			}
			pthread_mutex_unlock(&n->mu);
		} else {
			tab_detach(fs, n);
		}
	}
	pthread_mutex_unlock(&fs->mu);
out:
	fuse_reply_err(req, err);
	free(src);
	free(dst);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EPERM);         /* hard links: not on S3 */
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	fuse_reply_err(req, EPERM);         /* devices, fifos, sockets */
}

/* ---- files ---- */

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ferry_s3_cond cond = { .if_none_match = "*" };
	struct ferry_s3_res res = { 0 };
	struct fuse_entry_param e;
	bool excl = fi->flags & O_EXCL;
	struct handle *h = NULL;
	struct node *n, *old;
	char *path, *key = NULL;
	int err = 0, rc;

	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (is_stats(fs, parent, name)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	path = join(fs, node_of(fs, parent), name);
	key = path ? fs_key(fs, path, false) : NULL;
	h = calloc(1, sizeof(*h));
	if (!key || !h) {
		err = ENOMEM;
		goto out;
	}
	if (excl) {
		/* O_EXCL is a conditional create on S3, decided now */
		STAT_ADD(fs, put, 1);
		rc = ferry_s3_put(fs->s3, key, "", 0, &cond, &res);
		if (rc != FERRY_S3_OK) {
			err = rc == FERRY_S3_PRECONDITION ? EEXIST : s3_errno(rc);
			if (rc != FERRY_S3_PRECONDITION)
				ferry_logf(FERRY_ERROR, "ferryfs", "create failed", "msg=\"%s\"", res.msg);
			goto out;
		}
	}
	pthread_mutex_lock(&fs->mu);
	old = tab_get(fs, path);
	if (old)
		tab_detach(fs, old);
	n = node_new(fs, path, false);
	if (!n) {
		pthread_mutex_unlock(&fs->mu);
		err = ENOMEM;
		goto out;
	}
	n->nlookup++;
	pthread_mutex_lock(&n->mu);
	n->is_new = !excl;
	snprintf(n->etag, sizeof(n->etag), "%s", excl ? res.etag : "");
	snprintf(n->base_etag, sizeof(n->base_etag), "%s", n->etag);
	n->size = 0;
	n->base_limit = 0;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	clock_gettime(CLOCK_MONOTONIC, &n->attr_time);
	data_open_state(n);
	n->changed = !excl;
	n->nopen = 1;
	pthread_mutex_unlock(&n->mu);
	pthread_mutex_unlock(&fs->mu);
	h->n = n;
	fi->fh = (uintptr_t)h;
	fi->keep_cache = 1;
	entry_of(fs, n, &e);
	handle_track(fs, h);
	if (fuse_reply_create(req, &e, fi) != 0) {
		node_close(fs, n);
		node_unref(fs, n, 1);
		handle_free(fs, h);
	}
	h = NULL;
out:
	if (err)
		fuse_reply_err(req, err);
	free(h);
	free(key);
	free(path);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct handle *h;
	struct node *n;
	int err;

	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (ino == FS_STATS_INO) {
		if ((fi->flags & O_ACCMODE) != O_RDONLY) {
			free(h);
			fuse_reply_err(req, EACCES);
			return;
		}
		h->text = malloc(4096);
		if (!h->text) {
			free(h);
			fuse_reply_err(req, ENOMEM);
			return;
		}
		h->text_len = (size_t)fs_stats_json(fs, h->text, 4096);
		fi->direct_io = 1;
		fi->fh = (uintptr_t)h;
		handle_track(fs, h);
		if (fuse_reply_open(req, fi) != 0)
			handle_free(fs, h);
		return;
	}
	n = node_of(fs, ino);
	if (n->is_dir) {
		free(h);
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (n->discarded) {
		free(h);
		fuse_reply_err(req, ESTALE);
		return;
	}
	err = node_open(fs, n, fi->flags & O_TRUNC);
	if (err) {
		free(h);
		fuse_reply_err(req, err);
		return;
	}
	h->n = n;
	fi->fh = (uintptr_t)h;
	fi->keep_cache = 1;                 /* a node is one object version (see node_found) */
	handle_track(fs, h);
	if (fuse_reply_open(req, fi) != 0) {
		node_close(fs, n);
		handle_free(fs, h);
	}
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)ino;
	if (!h->n) {
		size_t o = (size_t)off < h->text_len ? (size_t)off : h->text_len;
		size_t len = h->text_len - o < size ? h->text_len - o : size;
		char copy[4096];

		/* Reply from our own stack: the kernel may finish this read, and the reader
		 * close the file (RELEASE frees h on another thread), while writev is still
		 * returning; ASan checks the iovec after the call (t3003 caught it). */
		if (len > sizeof(copy))
			len = sizeof(copy);
		memcpy(copy, h->text + o, len);
		fuse_reply_buf(req, copy, len);
		return;
	}
	data_read(fs_of(req), h, req, size, off);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	int err;

	(void)ino;
	if (!h->n) {
		fuse_reply_err(req, EACCES);
		return;
	}
	err = data_write(fs_of(req), h->n, buf, size, off);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, size);
}

/* close(2): commits, unless a writer asked for fsync-only commits (see fs_setxattr). */
static void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	bool skip = false;

	(void)ino;
	if (h->n) {
		pthread_mutex_lock(&h->n->mu);
		skip = h->n->fsync_only;
		pthread_mutex_unlock(&h->n->mu);
	}
	fuse_reply_err(req, h->n && !skip ? data_commit(fs_of(req), h->n) : 0);
}

static void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)ino, (void)datasync;
	fuse_reply_err(req, h->n ? data_commit(fs_of(req), h->n) : 0);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)ino;
	if (h->n)
		node_close(fs_of(req), h->n);
	handle_free(fs_of(req), h);
	fuse_reply_err(req, 0);
}

/* ---- directories ---- */

static int dent_cmp(const void *a, const void *b)
{
	const struct dent *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	/* same name as file and directory: the directory sorts first and wins */
	return c ? c : (int)y->pr.is_dir - (int)x->pr.is_dir;
}

/* A key component that cannot be a file name here: empty, "." or "..", or holding a
 * control character. S3 allows such keys; listing them would let a name walk out of its
 * directory or mangle a terminal, so they are left out with a warning. */
static bool bad_name(const char *name, size_t len)
{
	size_t i;

	if (len == 0 || (len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return true;
	for (i = 0; i < len; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return true;
	return false;
}

static int dirh_add(struct dirh *d, size_t *cap, const char *name, size_t len,
		    const struct probe *pr)
{
	if (bad_name(name, len)) {
		ferry_logf(FERRY_WARN, "ferryfs", "skipped a key that is not a usable file name",
			   "name_len=%zu", len);
		return 0;
	}
	if (d->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct dent *ne = realloc(d->e, nc * sizeof(*ne));

		if (!ne)
			return ENOMEM;
		d->e = ne;
		*cap = nc;
	}
	d->e[d->n].name = strndup(name, len);
	if (!d->e[d->n].name)
		return ENOMEM;
	d->e[d->n].pr = *pr;
	d->n++;
	return 0;
}

static void dirh_free(struct dirh *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	free(d->e);
	free(d);
}

static void dirh_track(struct fs *fs, struct dirh *d)
{
	pthread_mutex_lock(&fs->mu);
	d->prev = NULL;
	d->next = fs->dirs;
	if (fs->dirs)
		fs->dirs->prev = d;
	fs->dirs = d;
	pthread_mutex_unlock(&fs->mu);
}

static void dirh_untrack(struct fs *fs, struct dirh *d)
{
	pthread_mutex_lock(&fs->mu);
	if (d->prev)
		d->prev->next = d->next;
	else if (fs->dirs == d)
		fs->dirs = d->next;
	if (d->next)
		d->next->prev = d->prev;
	pthread_mutex_unlock(&fs->mu);
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	struct ferry_s3_list l = { 0 };
	struct ferry_s3_res res;
	struct dirh *d;
	size_t cap = 0, plen, dirlen, w;
	char *key = NULL, *dirpath = NULL;
	int err = 0, rc;

	if (!n->is_dir) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	d = calloc(1, sizeof(*d));
	key = fs_node_key(fs, n);
	pthread_mutex_lock(&fs->mu);
	dirpath = strdup(n->path);
	pthread_mutex_unlock(&fs->mu);
	if (!d || !key || !dirpath) {
		err = ENOMEM;
		goto out;
	}
	STAT_ADD(fs, list, 1);
	rc = ferry_s3_list_all(fs->s3, key, "/", &l, &res);
	if (rc != FERRY_S3_OK) {
		ferry_logf(FERRY_ERROR, "ferryfs", "listing failed", "msg=\"%s\"", res.msg);
		err = s3_errno(rc) == ENOENT ? EIO : s3_errno(rc);
		goto out;
	}
	plen = strlen(key);
	for (size_t i = 0; i < l.n_prefixes && !err; i++) {
		struct probe pr = { .is_dir = true };
		const char *name = l.prefixes[i] + plen;
		size_t len = strlen(name);

		if (len > 1 && name[len - 1] == '/')
			err = dirh_add(d, &cap, name, len - 1, &pr);
	}
	for (size_t i = 0; i < l.n_entries && !err; i++) {
		struct probe pr = { .size = l.entries[i].size, .mtime = l.entries[i].last_modified };
		const char *name = l.entries[i].key + plen;

		if (!name[0] || strchr(name, '/'))
			continue;           /* the directory's own marker */
		if (!dirpath[0] && strcmp(name, FERRY_FS_STATS_NAME) == 0)
			continue;           /* shadowed by the virtual file */
		snprintf(pr.etag, sizeof(pr.etag), "%s", l.entries[i].etag ? l.entries[i].etag : "");
		err = dirh_add(d, &cap, name, strlen(name), &pr);
	}
	/* files created here and not yet committed */
	dirlen = strlen(dirpath);
	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < fs->tab_size && !err; i++) {
		for (struct node *c = fs->tab[i]; c && !err; c = c->hnext) {
			const char *rest;

			if (!c->in_table || !c->is_new || c->unlinked)
				continue;
			if (dirlen && (strncmp(c->path, dirpath, dirlen) != 0 || c->path[dirlen] != '/'))
				continue;
			rest = c->path + (dirlen ? dirlen + 1 : 0);
			if (!strchr(rest, '/')) {
				struct probe pr = { .mtime = c->mtime.tv_sec };

				err = dirh_add(d, &cap, rest, strlen(rest), &pr);
			}
		}
	}
	pthread_mutex_unlock(&fs->mu);
	if (err)
		goto out;
	if (d->n)
		qsort(d->e, d->n, sizeof(*d->e), dent_cmp);
	w = 0;
	for (size_t i = 0; i < d->n; i++) {
		if (w && strcmp(d->e[w - 1].name, d->e[i].name) == 0) {
			free(d->e[i].name);
			continue;
		}
		d->e[w++] = d->e[i];
	}
	d->n = w;
	fi->fh = (uintptr_t)d;
	dirh_track(fs, d);
	if (fuse_reply_open(req, fi) != 0) {
		dirh_untrack(fs, d);
		dirh_free(d);
	}
	d = NULL;
out:
	if (err)
		fuse_reply_err(req, err);
	if (d)
		dirh_free(d);
	ferry_s3_list_release(&l);
	free(key);
	free(dirpath);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct fs *fs = fs_of(req);
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	struct node *dn = node_of(fs, ino);
	size_t used = 0;
	char *buf;

	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* offsets: 1 = ".", 2 = "..", 3 + i = entry i */
	for (size_t i = (size_t)off; i < d->n + 2; i++) {
		struct fuse_entry_param e;
		struct node *n = NULL;
		const char *name;
		size_t len;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			name = i == 0 ? "." : "..";
			e.attr.st_ino = i == 0 ? ino_of(fs, dn) : FUSE_ROOT_ID;
			e.attr.st_mode = S_IFDIR;
		} else {
			const struct dent *de = &d->e[i - 2];
			char *path;

			name = de->name;
			if (plus) {
				path = join(fs, dn, name);
				n = path ? node_found(fs, path, &de->pr) : NULL;
				free(path);
				if (!n)
					break;
				entry_of(fs, n, &e);
			} else {
				e.attr.st_ino = 0;
				e.attr.st_mode = de->pr.is_dir ? S_IFDIR : S_IFREG;
			}
		}
		if (plus)
			len = fuse_add_direntry_plus(req, buf + used, size - used, name, &e,
						     (off_t)(i + 1));
		else
			len = fuse_add_direntry(req, buf + used, size - used, name, &e.attr,
						(off_t)(i + 1));
		if (len > size - used) {
			if (n)
				node_unref(fs, n, 1);
			break;
		}
		used += len;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;

	(void)ino;
	dirh_untrack(fs_of(req), d);
	dirh_free(d);
	fuse_reply_err(req, 0);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	memset(&sv, 0, sizeof(sv));
	/* S3 has no capacity to report: a large, constant, honest-looking figure */
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = 1ull << 32;           /* 16 TiB */
	sv.f_bfree = sv.f_blocks;
	sv.f_bavail = sv.f_blocks;
	sv.f_files = 1ull << 30;
	sv.f_ffree = sv.f_files;
	sv.f_favail = sv.f_files;
	sv.f_namemax = NAME_MAX_S3;
	fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes: user.ferry.etag (read-only), user.ferry.commit (write-only) ---- */


static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = fs_of(req);
	char etag[FS_ETAG_MAX] = "";
	struct node *n;
	size_t len;

	if (ino == FS_STATS_INO || strcmp(name, FERRY_XATTR_ETAG) != 0) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	n = node_of(fs, ino);
	pthread_mutex_lock(&n->mu);
	if (!n->is_dir && !n->is_new)
		snprintf(etag, sizeof(etag), "%s", n->nopen ? n->base_etag : n->etag);
	pthread_mutex_unlock(&n->mu);
	len = strlen(etag);
	if (!len)
		fuse_reply_err(req, ENODATA);
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, etag, len);
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = fs_of(req);
	static const char list[] = FERRY_XATTR_ETAG;
	bool has = false;
	struct node *n;

	if (ino != FS_STATS_INO) {
		n = node_of(fs, ino);
		pthread_mutex_lock(&n->mu);
		has = !n->is_dir && !n->is_new && (n->nopen ? n->base_etag[0] : n->etag[0]);
		pthread_mutex_unlock(&n->mu);
	}
	if (!has)
		fuse_reply_xattr(req, 0);
	else if (size == 0)
		fuse_reply_xattr(req, sizeof(list));
	else if (size < sizeof(list))
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, list, sizeof(list));
}

/*
 * user.ferry.commit on an open file chooses when its changes are committed:
 *   "close" (default)  every close(2) and fsync(2) commits;
 *   "fsync"            only fsync(2) commits; changes not committed when the last handle
 *                      is released are discarded.
 * A writer that patches a file in place (push) sets "fsync": if it dies half-way, the
 * kernel's close of its descriptors must not commit a half-written object. The setting
 * lasts until the last handle of the file is released.
 * user.ferry.fetch on an open file chooses what a random read fetches:
 *   "auto" (default)   its own pages, then (files up to fetch_whole) the rest of the file
 *                      in the background;
 *   "ranged"           its own pages only. pull and push set it: they know which pages
 *                      they need, and bytes moved are what they report.
 * It also lasts until the last handle is released. Other names: ENOTSUP.
 */

/* An xattr value (not NUL-terminated, size bytes) equals the protocol word w. */
static bool value_is(const char *value, size_t size, const char *w)
{
	return size == strlen(w) && memcmp(value, w, size) == 0;
}

static void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct fs *fs = fs_of(req);
	struct node *n;
	bool commit = strcmp(name, FERRY_XATTR_COMMIT) == 0, on;

	(void)flags;
	if (ino == FS_STATS_INO || (!commit && strcmp(name, FERRY_XATTR_FETCH) != 0)) {
		fuse_reply_err(req, ENOTSUP);
		return;
	}
	/* on: fsync-only commits, or ranged-only fetches */
	if (commit && (value_is(value, size, FERRY_COMMIT_FSYNC) ||
		       value_is(value, size, FERRY_COMMIT_CLOSE))) {
		on = value_is(value, size, FERRY_COMMIT_FSYNC);
	} else if (!commit && (value_is(value, size, FERRY_FETCH_RANGED) ||
			       value_is(value, size, FERRY_FETCH_AUTO))) {
		on = value_is(value, size, FERRY_FETCH_RANGED);
	} else {
		fuse_reply_err(req, EINVAL);
		return;
	}
	n = node_of(fs, ino);
	pthread_mutex_lock(&n->mu);
	if (n->is_dir || n->nopen == 0) {
		pthread_mutex_unlock(&n->mu);
		fuse_reply_err(req, n->is_dir ? EISDIR : EBADF);   /* only for an open file */
		return;
	}
	if (commit)
		n->fsync_only = on;
	else
		n->fetch_ranged = on;
	pthread_mutex_unlock(&n->mu);
	fuse_reply_err(req, 0);
}

static void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	fuse_reply_err(req, ENOTSUP);
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->max_write = FS_MAX_IO;
	conn->max_read = FS_MAX_IO;
	conn->max_readahead = FS_MAX_IO;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->time_gran = 1;
	if (conn->capable & FUSE_CAP_WRITEBACK_CACHE)
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
}

int fs_stats_json(struct fs *fs, char *out, size_t len)
{
	struct fs_stats s;
	int n;

	memcpy(&s, &fs->stats, sizeof(s));  /* counters are independent; a torn set is fine */
	n = snprintf(out, len,
		     "{\"get\":%" PRIu64 ",\"put\":%" PRIu64 ",\"head\":%" PRIu64 ",\"list\":%" PRIu64
		     ",\"delete\":%" PRIu64 ",\"copy\":%" PRIu64 ",\"mpu_create\":%" PRIu64
		     ",\"mpu_part\":%" PRIu64 ",\"mpu_part_copy\":%" PRIu64
		     ",\"mpu_complete\":%" PRIu64 ",\"mpu_abort\":%" PRIu64
		     ",\"bytes_down\":%" PRIu64 ",\"bytes_up\":%" PRIu64 ",\"bytes_copied\":%" PRIu64
		     ",\"cache_hits\":%" PRIu64 ",\"cache_misses\":%" PRIu64 ",\"commits\":%" PRIu64
		     ",\"conflicts\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"part_copy\":%s"
		     ",\"cache_bytes\":%" PRIu64 ",\"cache_peak\":%" PRIu64
		     ",\"cache_evicted\":%" PRIu64 ",\"cache_max\":%" PRIu64
		     ",\"whole_fetches\":%" PRIu64 "}\n",
		     s.get, s.put, s.head, s.list, s.delete, s.copy, s.mpu_create, s.mpu_part,
		     s.mpu_part_copy, s.mpu_complete, s.mpu_abort, s.bytes_down, s.bytes_up,
		     s.bytes_copied, s.cache_hits, s.cache_misses, s.commits, s.conflicts, s.errors,
		     __atomic_load_n(&fs->no_part_copy, __ATOMIC_RELAXED) ? "false" : "true",
		     s.cache_bytes, s.cache_peak, s.cache_evicted, fs->cache_max, s.whole_fetches);
	if (n < 0)
		return 0;
	return (size_t)n >= len ? (int)len - 1 : n;
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.setattr = fs_setattr,
	.mknod = fs_mknod,
	.mkdir = fs_mkdir,
	.unlink = fs_unlink,
	.rmdir = fs_rmdir,
	.symlink = fs_symlink,
	.rename = fs_rename,
	.link = fs_link,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	.flush = fs_flush,
	.release = fs_release,
	.fsync = fs_fsync,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.statfs = fs_statfs,
	.setxattr = fs_setxattr,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.removexattr = fs_removexattr,
	.create = fs_create,
};
