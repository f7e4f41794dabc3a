/* sched_vfs.c: a VFS over SQLite's default one that gathers the writes of the rollback journal
 * and of the database file.
 *
 * SQLite writes each journal record as three writes (page number, page, checksum: 4 + 4096 +
 * 4 bytes), so none is page-aligned. Into a new file every such write is a partial block:
 * the kernel zeroes the rest of it first, and at 35,000 pages (the next day's run at 1M
 * contacts) the three writes a page cost about 0.4 s more than the bytes do. The commit
 * then writes each changed page of the database with a write of its own (35,000 system
 * calls), though the pages come in file order and mostly in runs. Here a file's writes that
 * follow each other are kept in one buffer and reach the file in large writes.
 *
 * Nothing is reordered across a sync: the buffer is written out before the file's xSync,
 * xTruncate, xFileSize, xRead, xFetch, xFileControl, xUnlock and xClose, and before any write
 * that does not follow it. SQLite syncs the journal before it writes a page of the database
 * (a commit or a cache spill), so the database is never ahead of the journal on disk, exactly
 * as without the buffer; the database's own writes reach the file before its sync, and
 * before its lock is released. Until that sync the records were not durable anyway. Each
 * gathered write of the journal also starts the kernel's writeback of those bytes
 * (sync_file_range), so the commit's sync of the journal finds most of it on disk already;
 * the sync itself is unchanged. Every other file (temporary files, a WAL) is the default
 * VFS's own, opened in place. */
#include "sched_db.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JB_SIZE (2u << 20)                  /* gathered before it is written out */

struct jb_file {
	sqlite3_file base;                  /* our methods */
	unsigned char *buf;
	sqlite3_int64 off;                  /* file offset of buf[0] */
	size_t len;
	int wb;                             /* the journal's own descriptor, to start writeback; -1 */
	sqlite3_file *real;                 /* the default VFS's file, after this struct */
};

static sqlite3_vfs *real_vfs(sqlite3_vfs *v)
{
	return v->pAppData;
}

/* The unix VFS writes at most 128 KiB - 1 bytes a call (it never needs more than a page):
 * the buffer goes out in aligned 64 KiB writes, so each covers whole blocks. */
#define JB_CHUNK ((sqlite3_int64)64 << 10)

static int jb_flush(struct jb_file *f)
{
	size_t done = 0;
	int rc = SQLITE_OK;

	if (!f->len)
		return SQLITE_OK;           /* no store: the fingerprint reads on two threads */

	while (done < f->len && rc == SQLITE_OK) {
		sqlite3_int64 off = f->off + (sqlite3_int64)done;
		size_t n = (size_t)(JB_CHUNK - off % JB_CHUNK);

		if (n > f->len - done)
			n = f->len - done;
		rc = f->real->pMethods->xWrite(f->real, f->buf + done, (int)n, off);
		done += n;
	}
	/* the kernel may write the journal out now, while the run goes on, instead of all of
	 * it in the commit's sync (which still comes: this only starts it) */
	if (rc == SQLITE_OK && f->wb >= 0)
		sync_file_range(f->wb, f->off, (off_t)f->len, SYNC_FILE_RANGE_WRITE);
	f->len = 0;
	return rc;
}

static int jb_close(sqlite3_file *sf)
{
	struct jb_file *f = (struct jb_file *)sf;
	int rc = jb_flush(f), rc2 = f->real->pMethods->xClose(f->real);

	free(f->buf);
	f->buf = NULL;
	if (f->wb >= 0)
		close(f->wb);
	f->wb = -1;
	return rc != SQLITE_OK ? rc : rc2;
}

static int jb_read(sqlite3_file *sf, void *p, int n, sqlite3_int64 off)
{
	struct jb_file *f = (struct jb_file *)sf;
	int rc = jb_flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, p, n, off);
}

static int jb_write(sqlite3_file *sf, const void *p, int n, sqlite3_int64 off)
{
	struct jb_file *f = (struct jb_file *)sf;
	int rc;

	if (f->len && off == f->off + (sqlite3_int64)f->len && f->len + (size_t)n <= JB_SIZE) {
		memcpy(f->buf + f->len, p, (size_t)n);
		f->len += (size_t)n;
		return SQLITE_OK;
	}
	rc = jb_flush(f);
	if (rc != SQLITE_OK)
		return rc;
	if (!f->buf)
		f->buf = malloc(JB_SIZE);
	if (!f->buf || (size_t)n > JB_SIZE / 2)
		return f->real->pMethods->xWrite(f->real, p, n, off);
	memcpy(f->buf, p, (size_t)n);
	f->off = off;
	f->len = (size_t)n;
	return SQLITE_OK;
}

static int jb_truncate(sqlite3_file *sf, sqlite3_int64 size)
{
	struct jb_file *f = (struct jb_file *)sf;
	int rc = jb_flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int jb_sync(sqlite3_file *sf, int flags)
{
	struct jb_file *f = (struct jb_file *)sf;
	int rc = jb_flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int jb_size(sqlite3_file *sf, sqlite3_int64 *size)
{
	struct jb_file *f = (struct jb_file *)sf;
	int rc = jb_flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int jb_lock(sqlite3_file *sf, int l)
{
	struct jb_file *f = (struct jb_file *)sf;

	return f->real->pMethods->xLock(f->real, l);
}

static int jb_unlock(sqlite3_file *sf, int l)
{
	struct jb_file *f = (struct jb_file *)sf;
	int rc = jb_flush(f), rc2 = f->real->pMethods->xUnlock(f->real, l);

	return rc != SQLITE_OK ? rc : rc2;
}

static int jb_check_lock(sqlite3_file *sf, int *out)
{
	struct jb_file *f = (struct jb_file *)sf;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int jb_fcntl(sqlite3_file *sf, int op, void *arg)
{
	struct jb_file *f = (struct jb_file *)sf;
	int rc = jb_flush(f);

	return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int jb_sector(sqlite3_file *sf)
{
	struct jb_file *f = (struct jb_file *)sf;

	return f->real->pMethods->xSectorSize(f->real);
}

static int jb_device(sqlite3_file *sf)
{
	struct jb_file *f = (struct jb_file *)sf;

	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int jb_shm_map(sqlite3_file *sf, int pg, int sz, int extend, void volatile **pp)
{
	struct jb_file *f = (struct jb_file *)sf;

	return f->real->pMethods->xShmMap(f->real, pg, sz, extend, pp);
}

static int jb_shm_lock(sqlite3_file *sf, int off, int n, int flags)
{
	struct jb_file *f = (struct jb_file *)sf;

	return f->real->pMethods->xShmLock(f->real, off, n, flags);
}

static void jb_shm_barrier(sqlite3_file *sf)
{
	struct jb_file *f = (struct jb_file *)sf;

	f->real->pMethods->xShmBarrier(f->real);
}

static int jb_shm_unmap(sqlite3_file *sf, int del)
{
	struct jb_file *f = (struct jb_file *)sf;

	return f->real->pMethods->xShmUnmap(f->real, del);
}

static int jb_fetch(sqlite3_file *sf, sqlite3_int64 off, int n, void **pp)
{
	struct jb_file *f = (struct jb_file *)sf;
	int rc = jb_flush(f);

	*pp = NULL;
	return rc != SQLITE_OK ? rc : f->real->pMethods->xFetch(f->real, off, n, pp);
}

static int jb_unfetch(sqlite3_file *sf, sqlite3_int64 off, void *p)
{
	struct jb_file *f = (struct jb_file *)sf;

	return f->real->pMethods->xUnfetch(f->real, off, p);
}

#define JB_METHODS \
	.xClose = jb_close, \
	.xRead = jb_read, \
	.xWrite = jb_write, \
	.xTruncate = jb_truncate, \
	.xSync = jb_sync, \
	.xFileSize = jb_size, \
	.xLock = jb_lock, \
	.xUnlock = jb_unlock, \
	.xCheckReservedLock = jb_check_lock, \
	.xFileControl = jb_fcntl, \
	.xSectorSize = jb_sector, \
	.xDeviceCharacteristics = jb_device

/* Version 1: a journal is never memory-mapped and has no shared memory. */
static const sqlite3_io_methods jb_methods = {
	.iVersion = 1,
	JB_METHODS,
};

/* The database: version 3, shared memory (a WAL database) and memory-mapped reads passed on. */
static const sqlite3_io_methods jb_db_methods = {
	.iVersion = 3,
	JB_METHODS,
	.xShmMap = jb_shm_map,
	.xShmLock = jb_shm_lock,
	.xShmBarrier = jb_shm_barrier,
	.xShmUnmap = jb_shm_unmap,
	.xFetch = jb_fetch,
	.xUnfetch = jb_unfetch,
};

static int v_open(sqlite3_vfs *v, const char *name, sqlite3_file *sf, int flags, int *out)
{
	sqlite3_vfs *rv = real_vfs(v);
	struct jb_file *f = (struct jb_file *)sf;
	int rc;

	if (!(flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_MAIN_DB)))
		return rv->xOpen(rv, name, sf, flags, out);     /* szOsFile covers it */
	memset(f, 0, sizeof(*f));
	f->wb = -1;
	f->real = (sqlite3_file *)(f + 1);
	rc = rv->xOpen(rv, name, f->real, flags, out);
	if (rc != SQLITE_OK || !f->real->pMethods)
		return rc;
	/* a second descriptor of the journal (never of the database: closing one would drop
	 * the process's POSIX locks on it) */
	if (flags & SQLITE_OPEN_MAIN_JOURNAL) {
		f->base.pMethods = &jb_methods;
		f->wb = name ? open(name, O_RDONLY | O_CLOEXEC) : -1;
	} else if (f->real->pMethods->iVersion >= 3)
		f->base.pMethods = &jb_db_methods;
	else {
		/* no shared memory to pass on: the database as the default VFS opens it */
		f->real->pMethods->xClose(f->real);
		return rv->xOpen(rv, name, sf, flags, out);
	}
	return rc;
}

static int v_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
	return real_vfs(v)->xDelete(real_vfs(v), name, sync_dir);
}

static int v_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	return real_vfs(v)->xAccess(real_vfs(v), name, flags, out);
}

static int v_fullpath(sqlite3_vfs *v, const char *name, int n, char *out)
{
	return real_vfs(v)->xFullPathname(real_vfs(v), name, n, out);
}

static int v_random(sqlite3_vfs *v, int n, char *out)
{
	return real_vfs(v)->xRandomness(real_vfs(v), n, out);
}

static int v_sleep(sqlite3_vfs *v, int us)
{
	return real_vfs(v)->xSleep(real_vfs(v), us);
}

static int v_time(sqlite3_vfs *v, double *out)
{
	return real_vfs(v)->xCurrentTime(real_vfs(v), out);
}

static int v_last_error(sqlite3_vfs *v, int n, char *out)
{
	return real_vfs(v)->xGetLastError(real_vfs(v), n, out);
}

static int v_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
	return real_vfs(v)->xCurrentTimeInt64(real_vfs(v), out);
}

static sqlite3_vfs jb_vfs = {
	.iVersion = 2,
	.zName = SCHED_VFS,
	.xOpen = v_open,
	.xDelete = v_delete,
	.xAccess = v_access,
	.xFullPathname = v_fullpath,
	.xRandomness = v_random,
	.xSleep = v_sleep,
	.xCurrentTime = v_time,
	.xGetLastError = v_last_error,
	.xCurrentTimeInt64 = v_time64,
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool registered;

static void vfs_register(void)
{
	sqlite3_vfs *rv = sqlite3_vfs_find(NULL);

	if (!rv || rv->iVersion < 2)
		return;
	jb_vfs.pAppData = rv;
	jb_vfs.mxPathname = rv->mxPathname;
	jb_vfs.szOsFile = (int)sizeof(struct jb_file) + rv->szOsFile;
	registered = sqlite3_vfs_register(&jb_vfs, 0) == SQLITE_OK;
}

const char *sched_vfs(void)
{
	pthread_once(&once, vfs_register);
	return registered ? SCHED_VFS : NULL;
}

/* SQLite outlives this plugin: its VFS list must not point into an unloaded .so. */
__attribute__((destructor)) static void vfs_unregister(void)
{
	if (registered)
		sqlite3_vfs_unregister(&jb_vfs);
}
