/* dir.c: ferryfs's names and directories: lookup, getattr, listings, mkdir, rmdir. */
#include "ferryfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ferry_log.h"
#include "ferry_time.h"

/* One entry of an open directory. */
struct dent {
	char *name;
	struct probe pr;
};
struct dirh {
	struct dent *e;                     /* sorted by name, no name twice */
	size_t n;                           /* entries in use */
	size_t cap;                         /* entries allocated */
	struct open_link link;              /* on fs->dirs */
};

/* Where the files created here and not committed yet are looked for (node_walk). */
struct below {
	const char *dir;                    /* directory path, "" for the root */
	size_t dirlen;                      /* its length */
	struct dirh *d;                     /* a listing to add the direct children to */
};

/* Seconds since a ferry_mono_ms() time; forever when there was none. */
static double since(int64_t ms)
{
	if (!ms)
		return 1e18;
	return (double)(ferry_mono_ms() - ms) / 1e3;
}

/* Whether n's attributes may be answered without asking S3 (n->mu held). */
static bool attrs_usable(struct fs *fs, const struct node *n)
{
	if (n == &fs->root || n->nopen > 0 || n->is_new || n->committing)
		return true;
	return since(n->attr_ms) < fs->attr_timeout;
}

/* ---- names ---- */

void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct probe pr;
	struct node *n;
	char *path;
	int err;

	if (strlen(name) > FS_NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	if (stats_is(fs, node_of(fs, parent), name)) {
		memset(&e, 0, sizeof(e));
		e.ino = FS_STATS_INO;
		e.generation = 1;
		stats_attr(fs, &e.attr);
		fuse_reply_entry(req, &e);
		return;
	}
	path = node_join(fs, node_of(fs, parent), name);
	if (!path) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	n = node_get(fs, path);
	if (n) {
		pthread_mutex_lock(&n->mu);
		if (attrs_usable(fs, n)) {
			pthread_mutex_unlock(&n->mu);
			n->nlookup++;
			pthread_mutex_unlock(&fs->mu);
			node_entry(fs, n, &e);
			fuse_reply_entry(req, &e);
			free(path);
			return;
		}
		pthread_mutex_unlock(&n->mu);
	}
	pthread_mutex_unlock(&fs->mu);

	err = node_probe(fs, path, &pr);
	if (err == ENOENT) {
		pthread_mutex_lock(&fs->mu);
		n = node_get(fs, path);
		if (n && n->nopen == 0 && !n->is_new)
			node_detach(fs, n);
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
	node_entry(fs, n, &e);
	fuse_reply_entry(req, &e);
}

void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node *n;
	struct probe pr;
	struct stat st;
	char *path;
	int err;

	(void)fi;
	if (ino == FS_STATS_INO) {
		stats_attr(fs, &st);
		fuse_reply_attr(req, &st, 0);
		return;
	}
	n = node_of(fs, ino);
	pthread_mutex_lock(&n->mu);
	if (attrs_usable(fs, n) || n->unlinked || !n->in_table) {
		node_attr(fs, n, &st);
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
	err = node_probe(fs, path, &pr);
	free(path);
	if (err) {
		if (err == ENOENT) {
			pthread_mutex_lock(&fs->mu);
			if (n->nopen == 0 && !n->is_new)
				node_detach(fs, n);
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
			node_detach(fs, n);
			n->size = pr.size;
			n->attr_ms = ferry_mono_ms();
		} else {
			node_set_from_probe(n, &pr);
		}
	}
	node_attr(fs, n, &st);
	pthread_mutex_unlock(&n->mu);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_attr(req, &st, fs->attr_timeout);
}

void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
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
	if (stats_is(fs, node_of(fs, parent), name)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	path = node_join(fs, node_of(fs, parent), name);
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
	node_entry(fs, n, &e);
	fuse_reply_entry(req, &e);
out:
	free(key);
	free(path);
}

/* The path below b->dir of a file created here and not committed yet, else NULL. */
static const char *new_below(const struct node *n, const struct below *b)
{
	if (!n->in_table || !n->is_new || n->unlinked)
		return NULL;
	if (b->dirlen && (strncmp(n->path, b->dir, b->dirlen) != 0 || n->path[b->dirlen] != '/'))
		return NULL;
	return n->path + (b->dirlen ? b->dirlen + 1 : 0);
}

static int any_new(struct node *n, void *arg)
{
	return new_below(n, arg) != NULL;
}

/* Any object or local new file below dir path? */
int dir_nonempty(struct fs *fs, const char *path, bool *nonempty)
{
	struct ferry_s3_list l = { 0 };
	struct ferry_s3_res res;
	struct below b = { .dir = path, .dirlen = strlen(path) };
	char *key;
	int rc;

	pthread_mutex_lock(&fs->mu);
	*nonempty = node_walk(fs, any_new, &b) != 0;
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

void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct node *n;
	bool nonempty;
	char *path;
	int err;

	path = node_join(fs, node_of(fs, parent), name);
	if (!path) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	err = dir_nonempty(fs, path, &nonempty);
	if (!err && nonempty)
		err = ENOTEMPTY;
	if (!err)
		err = fs_delete(fs, path, true, "rmdir failed");
	if (!err) {
		pthread_mutex_lock(&fs->mu);
		n = node_get(fs, path);
		if (n)
			node_detach(fs, n);
		pthread_mutex_unlock(&fs->mu);
	}
	fuse_reply_err(req, err);
	free(path);
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

static int dirh_add(struct dirh *d, const char *name, size_t len, const struct probe *pr)
{
	if (bad_name(name, len)) {
		ferry_logf(FERRY_WARN, "ferryfs", "skipped a key that is not a usable file name",
			   "name_len=%zu", len);
		return 0;
	}
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 64;
		struct dent *ne = realloc(d->e, nc * sizeof(*ne));

		if (!ne)
			return ENOMEM;
		d->e = ne;
		d->cap = nc;
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

/* Untracks and frees d. */
static void dirh_release(struct fs *fs, struct dirh *d)
{
	node_untrack_open(fs, &fs->dirs, &d->link);
	dirh_free(d);
}

/* Adds a file created here and not committed yet to the listing of b->dir. */
static int list_new(struct node *n, void *arg)
{
	const struct below *b = arg;
	const char *rest = new_below(n, b);
	struct probe pr = { .mtime = n->mtime.tv_sec };

	if (!rest || strchr(rest, '/'))
		return 0;
	return dirh_add(b->d, rest, strlen(rest), &pr);
}

void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node *n = node_of(fs, ino);
	struct ferry_s3_list l = { 0 };
	struct ferry_s3_res res;
	struct dirh *d;
	struct below b = { 0 };
	size_t plen, w;
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
			err = dirh_add(d, name, len - 1, &pr);
	}
	for (size_t i = 0; i < l.n_entries && !err; i++) {
		struct probe pr = { .size = l.entries[i].size, .mtime = l.entries[i].last_modified };
		const char *name = l.entries[i].key + plen;

		if (!name[0] || strchr(name, '/'))
			continue;           /* the directory's own marker */
		if (!dirpath[0] && strcmp(name, FERRY_FS_STATS_NAME) == 0)
			continue;           /* shadowed by the virtual file */
		snprintf(pr.etag, sizeof(pr.etag), "%s", l.entries[i].etag ? l.entries[i].etag : "");
		err = dirh_add(d, name, strlen(name), &pr);
	}
	/* files created here and not yet committed */
	b.dir = dirpath;
	b.dirlen = strlen(dirpath);
	b.d = d;
	if (!err) {
		pthread_mutex_lock(&fs->mu);
		err = node_walk(fs, list_new, &b);
		pthread_mutex_unlock(&fs->mu);
	}
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
	node_track_open(fs, &fs->dirs, &d->link);
	if (fuse_reply_open(req, fi) != 0)
		dirh_release(fs, d);
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
			e.attr.st_ino = i == 0 ? node_ino(fs, dn) : FUSE_ROOT_ID;
			e.attr.st_mode = S_IFDIR;
		} else {
			const struct dent *de = &d->e[i - 2];
			char *path;

			name = de->name;
			if (plus) {
				path = node_join(fs, dn, name);
				n = path ? node_found(fs, path, &de->pr) : NULL;
				free(path);
				if (!n)
					break;
				node_entry(fs, n, &e);
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

void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

/* At exit: directories still open (an `ls` killed mid-listing, a shell cd'd into one). */
void dir_release_handles(struct fs *fs)
{
	while (fs->dirs)
		dirh_release(fs, OPEN_OF(fs->dirs, struct dirh, link));
}

void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;

	(void)ino;
	dirh_release(fs_of(req), d);
	fuse_reply_err(req, 0);
}
