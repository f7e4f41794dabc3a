/* ferryfs.h: ferryfs internals shared by its source files (not part of libferry). */
#ifndef FERRYFS_H
#define FERRYFS_H

#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ferry_fsproto.h"
#include "ferry_s3.h"

#define FS_PART_SIZE     FERRY_FS_PART_SIZE /* multipart part size, and the PUT/MPU threshold */
#define FS_MAX_IO        (1u << 20)        /* max_read / max_write */
#define FS_STATS_INO     2                 /* never a node address */
#define FS_ETAG_MAX      80
#define FS_COPY_MAX      (5ull << 30)      /* CopyObject's limit: larger renames copy in parts */
#define FS_PUT_MAX       (5ull << 30)      /* PutObject's limit */
#define FS_NAME_MAX      1024              /* an S3 key's length limit */

/* A set of disjoint, non-adjacent byte ranges [a, b), kept sorted. */
struct ivl_range {
	uint64_t a;                         /* first byte */
	uint64_t b;                         /* one past the last byte */
};
struct ivl {
	struct ivl_range *r;                /* sorted ranges */
	size_t n;                           /* ranges in use */
	size_t cap;                         /* ranges allocated */
	uint64_t sum;                       /* bytes covered */
};
void ivl_add(struct ivl *s, uint64_t a, uint64_t b);
void ivl_del(struct ivl *s, uint64_t a, uint64_t b);
bool ivl_overlaps(const struct ivl *s, uint64_t a, uint64_t b);
/* First part of [a, b) covered by neither s nor t; false when all of it is covered. */
bool ivl_first_gap2(const struct ivl *s, const struct ivl *t, uint64_t a, uint64_t b,
		    uint64_t *ga, uint64_t *gb);
/* Last byte + 1 of [a, b) covered by neither s nor t (0 if none). */
uint64_t ivl_last_gap_end2(const struct ivl *s, const struct ivl *t, uint64_t a, uint64_t b);
void ivl_union_into(struct ivl *dst, const struct ivl *src);
int ivl_copy(struct ivl *dst, const struct ivl *src);
void ivl_clear(struct ivl *s);
void ivl_release(struct ivl *s);

/* Request counters, shown in .ferryfs-stats, on SIGUSR1 and at unmount. */
struct fs_stats {
	uint64_t get, put, head, list, delete, copy;
	uint64_t mpu_create, mpu_part, mpu_part_copy, mpu_complete, mpu_abort;
	uint64_t bytes_down, bytes_up, bytes_copied;
	uint64_t cache_hits, cache_misses;
	uint64_t commits, conflicts, errors;
	uint64_t cache_evicted;             /* clean bytes dropped to keep cache_max */
	uint64_t cache_bytes;               /* bytes held in cache files now (clean + dirty) */
	uint64_t cache_peak;                /* the most cache_bytes has been */
	uint64_t whole_fetches;             /* files fetched whole after random reads */
};
#define STAT_ADD(fs, field, v) __atomic_fetch_add(&(fs)->stats.field, (uint64_t)(v), __ATOMIC_RELAXED)

struct dirh;
struct waiter;

/* A place on one of the fs's lists of open handles (fs->mu): fs->handles for files,
 * fs->dirs for directories. What the kernel never released is freed at exit. */
struct open_link {
	struct open_link *prev;             /* NULL first on the list */
	struct open_link *next;
};
/* The struct of type holding the open_link p as its member. */
#define OPEN_OF(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

/* A GET in flight into a node's cache file (on n->fetches, n->mu). */
struct fetch {
	uint64_t gen;                       /* node state_gen at start */
	uint64_t a;                         /* first byte asked for */
	uint64_t b;                         /* one past the last */
	uint64_t pos;                       /* bytes before this have arrived */
	struct fetch *next;
};

/* One open file handle (fi->fh). */
struct handle {
	struct node *n;                     /* NULL for the stats file */
	uint64_t ra_next;                   /* where a sequential reader goes next */
	uint64_t ra_win;                    /* current read-ahead window */
	char *text;                         /* stats file snapshot */
	size_t text_len;
	struct open_link link;              /* on fs->handles */
};

/* One file or directory the kernel knows (ino = its address; root is FUSE_ROOT_ID). */
struct node {
	uint64_t nlookup;                   /* kernel references (lookup count) */
	char *path;                         /* relative path, "" for the root */
	bool is_dir;
	bool in_table;                      /* reachable by path (false once replaced/unlinked) */
	bool unlinked;                      /* removed through this mount: never commit */
	bool is_new;                        /* created here, no object on S3 yet */
	bool discarded;                     /* uncommitted changes were dropped: the kernel's
					     * pages and size for this inode are not the object's */
	struct node *hnext;                 /* hash chain */

	pthread_mutex_t mu;                 /* guards everything below */
	pthread_cond_t cv;                  /* fetch progress, commit end */
	uint64_t size;                      /* current size (local view while open) */
	struct timespec mtime;
	char etag[FS_ETAG_MAX];             /* committed ETag this node stands for, "" unknown */
	int64_t attr_ms;                    /* ferry_mono_ms() when attrs came from S3, 0 never */
	int nopen;                          /* open handles */
	int cache_fd;                       /* local cache file (unlinked), -1 none */
	struct ivl dirty;                   /* bytes written since the last commit */
	struct ivl clean;                   /* bytes of the base object held in cache_fd */
	uint64_t base_limit;                /* base bytes below this are still visible */
	char base_etag[FS_ETAG_MAX];        /* ETag pinned at open ("" = no base object) */
	bool changed;                       /* a commit is needed */
	bool fsync_only;                    /* user.ferry.commit=fsync: close never commits */
	bool stale;                         /* the base object was replaced underneath */
	int verified;                       /* last commit: 0 none yet, 1 proven by MD5 ETags,
					     * -1 not provable (see FERRY_XATTR_VERIFIED) */
	bool committing;                    /* a commit is running: writes wait */
	struct fetch *fetches;              /* GETs in flight into cache_fd */
	struct waiter *waiters;             /* readers waiting for bytes of those GETs */
	uint64_t state_gen;                 /* +1 when the open state is dropped */
	uint64_t held;                      /* clean.sum + dirty.sum, as counted in cache_bytes */
	uint64_t last_off;                  /* end of the last read or write: eviction keeps
					     * what lies ahead of it */
	uint64_t last_use;                  /* CLOCK_MONOTONIC ns of the last read or write */
	bool fetch_ranged;                  /* user.ferry.fetch=ranged: never fetch it whole */
	bool whole_started;                 /* a whole-file fetch ran in this open state */
	uint64_t rand_ns;                   /* time spent reading at random (see fetch.c) */
	uint64_t rand_last;                 /* CLOCK_MONOTONIC ns of the last random read */
	int bg;                             /* whole-file fetch threads on this node */
	struct node *cprev, *cnext;         /* fs->cached, while cache_fd >= 0 (fs->cache_mu) */
};

struct fs {
	struct ferry_s3 *s3;
	char *bucket;
	char *prefix;                       /* "" or "dir/" */
	char *cache_dir;
	double attr_timeout;                /* seconds */
	double entry_timeout;
	double neg_timeout;
	uint64_t ra_max;                    /* largest read-ahead window */
	uint64_t cache_max;                 /* cap on cache file bytes (clean + dirty), 0 none */
	uint64_t copy_max;                  /* larger objects are renamed by multipart copy */
	uint64_t put_max;                   /* commits with no part to copy: one PUT up to this */
	uint64_t whole_max;                 /* random reads fetch files up to this whole, 0 never */
	uint64_t get_rate;                  /* bytes/s of large GETs lately (atomic, 0 unknown) */
	uid_t uid;
	gid_t gid;
	bool no_part_copy;                  /* the store answered UploadPartCopy with 501 */
	struct fuse_session *se;
	pthread_mutex_t mu;                 /* node table */
	struct node **tab;
	size_t tab_size;
	size_t tab_count;
	struct node root;
	struct open_link *handles;          /* open file handles (fs->mu) */
	struct open_link *dirs;             /* open directory handles (fs->mu) */
	pthread_mutex_t cache_mu;           /* fs->cached; taken after a node's mu, or by trylock */
	struct node *cached;                /* nodes with a cache file */
	bool cache_over;                    /* over cache_max with nothing left to evict (logged) */
	struct fs_stats stats;
	pthread_mutex_t bg_mu;              /* bg_threads */
	pthread_cond_t bg_cv;
	int bg_threads;                     /* whole-file fetch threads running */
	bool stopping;                      /* unmounting: background fetches stop */
};

/* What S3 says about one path. */
struct probe {
	bool is_dir;                        /* a key below it, or its marker */
	uint64_t size;                      /* files: the object's size */
	char etag[FS_ETAG_MAX];             /* files: the object's ETag, "" unknown */
	time_t mtime;                       /* LastModified, 0 unknown */
};

/*
 * Who calls whom, declared below in that order; no call goes the other way, so no two files
 * call each other. ivl.c and stats.c call nothing of ferryfs. node.c (the node table) calls
 * ivl.c, and so does data.c (the cache file). fetch.c (reads) calls data.c and node.c;
 * commit.c also calls fetch.c. dir.c, file.c, rename.c and xattr.c answer the kernel's
 * requests through node.c, stats.c and the data files (rename.c also through dir.c).
 * ops.c (the operations table) and main.c sit on top.
 */

/* stats.c: the virtual .ferryfs-stats file */
bool stats_is(const struct fs *fs, const struct node *parent, const char *name);
void stats_attr(const struct fs *fs, struct stat *st);
int stats_json(struct fs *fs, char *out, size_t len);

/* node.c: the node table (fs->mu), paths and keys, attributes */
struct fs *fs_of(fuse_req_t req);
struct node *node_of(struct fs *fs, fuse_ino_t ino);
fuse_ino_t node_ino(const struct fs *fs, const struct node *n);
int node_init_table(struct fs *fs);
void node_release_table(struct fs *fs);
char *fs_key(const struct fs *fs, const char *path, bool dir);            /* malloc'd */
char *fs_node_key(struct fs *fs, struct node *n);         /* takes fs->mu; malloc'd */
int fs_delete(struct fs *fs, const char *path, bool dir, const char *failed);  /* an errno */
char *node_join(struct fs *fs, struct node *parent, const char *name);   /* the same */
struct node *node_get(struct fs *fs, const char *path);                  /* fs->mu held */
struct node *node_new(struct fs *fs, const char *path, bool is_dir);     /* fs->mu held */
void node_detach(struct fs *fs, struct node *n);                         /* fs->mu held */
/* Moves n to path (fs->mu held); on ENOMEM it is detached instead, and false returned. */
bool node_move(struct fs *fs, struct node *n, const char *path);
/* Calls fn on every node of the table, reachable or not, until it returns nonzero
 * (returned); fs->mu held throughout. */
int node_walk(struct fs *fs, int (*fn)(struct node *n, void *arg), void *arg);
void node_unref(struct fs *fs, struct node *n, uint64_t k);               /* takes fs->mu */
void node_track_open(struct fs *fs, struct open_link **list, struct open_link *l);
void node_untrack_open(struct fs *fs, struct open_link **list, struct open_link *l);
void fs_discard_dirty(struct fs *fs);
int node_probe(struct fs *fs, const char *path, struct probe *out);       /* an errno */
struct node *node_found(struct fs *fs, const char *path, const struct probe *pr);
void node_set_from_probe(struct node *n, const struct probe *pr);         /* n->mu held */
void node_attr(struct fs *fs, const struct node *n, struct stat *st);     /* n->mu held */
void node_entry(struct fs *fs, struct node *n, struct fuse_entry_param *e);
int s3_errno(int rc);
void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);

/* data.c: an open file's cache file, its bytes under cache_max, writes and truncation */
void data_open_state(struct node *n);                             /* n->mu held */
void data_close_state(struct fs *fs, struct node *n);             /* n->mu held, quiesced */
void data_quiesce(struct node *n);       /* stop and wait for read-ahead (n->mu held) */
int data_write(struct fs *fs, struct node *n, const char *buf, size_t size, off_t off);
int data_truncate(struct fs *fs, struct node *n, uint64_t size);  /* n->mu held */
int data_cache_fd(struct fs *fs, struct node *n);                 /* n->mu held; an errno */
void data_held_sync(struct fs *fs, struct node *n);               /* n->mu held */
void data_touch(struct node *n, uint64_t end);                    /* n->mu held */
void data_trim(struct fs *fs);                                    /* no node lock held */

/* fetch.c: pinned reads into the cache file */
/* Reply to a read request (n->mu not held). */
void fetch_read(struct fs *fs, struct handle *h, fuse_req_t req, size_t size, off_t off);
/* Makes [a, b) of the base present in the cache file (n->mu held). */
int fetch_present(struct fs *fs, struct node *n, const char *key, uint64_t a, uint64_t b);
/* At unmount: stops the whole-file fetches; false if some did not end within the wait. */
bool fetch_stop_background(struct fs *fs);

/* commit.c: the conditional PUT or multipart upload of an open file's changes */
int commit_node(struct fs *fs, struct node *n);                   /* n->mu not held */

/* dir.c: names and directories */
int dir_nonempty(struct fs *fs, const char *path, bool *nonempty);        /* an errno */
void dir_release_handles(struct fs *fs);
void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi);
void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* file.c: open files */
void file_release_handles(struct fs *fs);
void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi);
void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	      struct fuse_file_info *fi);
void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		struct fuse_file_info *fi);
void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);

/* rename.c */
void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags);

/* xattr.c: the user.ferry.* attributes */
void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		 size_t size, int flags);
void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* ops.c: the operations table; the fs's tables, set up before the session, freed after */
extern const struct fuse_lowlevel_ops fs_ops;
int fs_init_tables(struct fs *fs);
void fs_release_tables(struct fs *fs);

#endif
