/* patch.c: crash-safe patching of a local database file with an undo file, and its recovery. */
#include "ferry_patch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_file.h"
#include "ferry_log.h"
#include "ferry_pages.h"
#include "pages_internal.h"

/*
 * The undo file "<replica>.ferry-undo" (all integers little-endian):
 *   header: "FERRYUN1" | u32 page_size | u64 old_size | sha256[32] of those 20 bytes
 *   records: u32 'BATC' | u32 n | n x u64 index | n x page (old content) | sha256[32]
 * A record is fsynced before any of its pages is overwritten, so a record that fails its
 * checksum (torn by a crash) was never acted on. Rolling back = truncate to old_size and
 * write every saved page back; each page is saved at most once, so order is irrelevant.
 */

#define UNDO_MAGIC   "FERRYUN1"
#define UNDO_TAG     0x43544142u           /* "BATC" */
#define UNDO_HDR_LEN (8 + 4 + 8 + 32)

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t w = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}

struct ferry_patch {
	int fd;                             /* the file being patched (caller's) */
	int ufd;                            /* the undo file */
	char *path;                         /* its path, for messages */
	char *upath;                        /* PATH.ferry-undo */
	uint32_t page_size;                 /* the unit of saves and writes */
	uint64_t old_size;                  /* size before the patch; rollback truncates to it */
	uint64_t undo_bytes;                /* written to the undo file so far */
	char err[256];                      /* why the last call failed */
};

static char *undo_path(const char *path)
{
	return ferry_pages_concat(path, ".ferry-undo");
}

const char *ferry_patch_error(const struct ferry_patch *p)
{
	return p->err;
}

uint64_t ferry_patch_undo_bytes(const struct ferry_patch *p)
{
	return p->undo_bytes;
}

struct ferry_patch *ferry_patch_begin(int fd, const char *path, uint32_t page_size,
				      char *err, size_t errlen)
{
	unsigned char hdr[UNDO_HDR_LEN];
	struct ferry_patch *p;
	struct stat st;

	if (!pages_valid_size(page_size) || fstat(fd, &st) != 0) {
		pages_seterr(err, errlen, "cannot patch '%s': bad page size or stat failed", path);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		goto out_oom;
	p->fd = fd;
	p->page_size = page_size;
	p->old_size = (uint64_t)st.st_size;
	p->path = strdup(path);
	p->upath = undo_path(path);
	if (!p->path || !p->upath)
		goto out_free;
	p->ufd = open(p->upath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (p->ufd < 0) {
		pages_seterr(err, errlen, "cannot create undo file '%s': %s", p->upath,
			     strerror(errno));
		goto out_free_quiet;
	}
	memcpy(hdr, UNDO_MAGIC, 8);
	pages_put32(hdr + 8, page_size);
	pages_put64(hdr + 12, p->old_size);
	pages_sha256(hdr, 20, hdr + 20);
	if (ferry_write_full(p->ufd, hdr, sizeof(hdr)) != 0 || fsync(p->ufd) != 0 ||
	    ferry_fsync_dir(p->upath) != 0) {
		pages_seterr(err, errlen, "cannot write undo file '%s': %s", p->upath,
			     strerror(errno));
		close(p->ufd);
		unlink(p->upath);
		goto out_free_quiet;
	}
	p->undo_bytes = sizeof(hdr);
	return p;
out_free:
	pages_seterr(err, errlen, "out of memory");
out_free_quiet:
	free(p->path);
	free(p->upath);
	free(p);
	return NULL;
out_oom:
	pages_seterr(err, errlen, "out of memory");
	return NULL;
}

int ferry_patch_save(struct ferry_patch *p, const uint64_t *pages, size_t n)
{
	size_t m = 0, len;
	unsigned char *rec, *q;
	int rc = -1;

	for (size_t i = 0; i < n; i++)
		if (pages[i] * p->page_size < p->old_size)
			m++;                /* pages past the old end vanish on rollback anyway */
	if (m == 0)
		return 0;
	len = 8 + m * 8 + m * p->page_size + 32;
	rec = malloc(len);
	if (!rec) {
		snprintf(p->err, sizeof(p->err), "out of memory");
		return -1;
	}
	pages_put32(rec, UNDO_TAG);
	pages_put32(rec + 4, (uint32_t)m);
	q = rec + 8;
	for (size_t i = 0; i < n; i++)
		if (pages[i] * p->page_size < p->old_size) {
			pages_put64(q, pages[i]);
			q += 8;
		}
	for (size_t i = 0; i < n; i++) {
		ssize_t got;

		if (pages[i] * p->page_size >= p->old_size)
			continue;
		got = ferry_pread_full(p->fd, q, p->page_size, pages[i] * p->page_size);
		if (got < 0) {
			snprintf(p->err, sizeof(p->err), "cannot read '%s': %s", p->path,
				 strerror(errno));
			goto out_rec;
		}
		memset(q + got, 0, p->page_size - (size_t)got);
		q += p->page_size;
	}
	pages_sha256(rec, (size_t)(q - rec), q);
	if (ferry_write_full(p->ufd, rec, len) != 0 || fsync(p->ufd) != 0) {
		snprintf(p->err, sizeof(p->err), "cannot write undo file '%s': %s", p->upath,
			 strerror(errno));
		goto out_rec;
	}
	p->undo_bytes += len;
	rc = 0;
out_rec:
	free(rec);
	return rc;
}

int ferry_patch_write(struct ferry_patch *p, uint64_t index, const void *data)
{
	if (ferry_pages_is_lock_page(index, p->page_size)) {
		snprintf(p->err, sizeof(p->err), "refusing to write the lock-byte page %" PRIu64,
			 index);
		return -1;
	}
	if (pwrite_full(p->fd, data, p->page_size, index * p->page_size) != 0) {
		snprintf(p->err, sizeof(p->err), "cannot write '%s': %s", p->path, strerror(errno));
		return -1;
	}
	return 0;
}

int ferry_patch_truncate(struct ferry_patch *p, uint64_t size)
{
	if (ftruncate(p->fd, (off_t)size) != 0) {
		snprintf(p->err, sizeof(p->err), "cannot truncate '%s': %s", p->path,
			 strerror(errno));
		return -1;
	}
	return 0;
}

int ferry_patch_finish(struct ferry_patch *p)
{
	if (fsync(p->fd) != 0) {
		snprintf(p->err, sizeof(p->err), "cannot fsync '%s': %s", p->path, strerror(errno));
		return -1;
	}
	return 0;
}

static void patch_free(struct ferry_patch *p)
{
	if (p->ufd >= 0)
		close(p->ufd);
	free(p->path);
	free(p->upath);
	free(p);
}

int ferry_patch_commit(struct ferry_patch *p)
{
	int rc = 0;

	if (unlink(p->upath) != 0 || ferry_fsync_dir(p->upath) != 0)
		rc = -1;                    /* a leftover undo would roll back a good replica */
	patch_free(p);
	return rc;
}

void ferry_patch_forget(struct ferry_patch *p)
{
	patch_free(p);
}

/* Restore the file from a complete undo prefix. */
static int undo_apply(int fd, int ufd, const char *upath, bool *rolled_back, char *err,
		      size_t errlen)
{
	unsigned char hdr[UNDO_HDR_LEN], sum[32], *rec = NULL;
	uint64_t off = UNDO_HDR_LEN, old_size, usize;
	struct stat st;
	uint32_t ps;
	ssize_t got;
	int rc = -1;

	if (fstat(ufd, &st) != 0) {
		pages_seterr(err, errlen, "cannot stat undo file '%s': %s", upath, strerror(errno));
		return -1;
	}
	usize = (uint64_t)st.st_size;

	got = ferry_pread_full(ufd, hdr, sizeof(hdr), 0);
	if (got < 0) {
		pages_seterr(err, errlen, "cannot read undo file '%s': %s", upath, strerror(errno));
		return -1;
	}
	pages_sha256(hdr, 20, sum);
	if (got != sizeof(hdr) || memcmp(hdr, UNDO_MAGIC, 8) != 0 || memcmp(sum, hdr + 20, 32) != 0)
		return 0;                   /* torn header: nothing was patched yet */
	ps = pages_get32(hdr + 8);
	old_size = pages_get64(hdr + 12);
	if (!pages_valid_size(ps)) {
		pages_seterr(err, errlen, "corrupt undo file '%s' (page size %u)", upath, ps);
		return -1;
	}
	if (ftruncate(fd, (off_t)old_size) != 0) {
		pages_seterr(err, errlen, "cannot truncate: %s", strerror(errno));
		return -1;
	}
	*rolled_back = true;
	for (;;) {
		unsigned char head[8];
		uint32_t n;
		size_t len;

		if (ferry_pread_full(ufd, head, 8, off) != 8 || pages_get32(head) != UNDO_TAG)
			break;
		n = pages_get32(head + 4);
		if (n == 0 || n > (1u << 24) / (ps / 512))
			break;
		len = 8 + (size_t)n * 8 + (size_t)n * ps + 32;
		if (off + len > usize)
			break;              /* torn record: never acted on */
		free(rec);
		rec = malloc(len);
		if (!rec) {
			pages_seterr(err, errlen, "out of memory");
			goto out;
		}
		if (ferry_pread_full(ufd, rec, len, off) != (ssize_t)len)
			break;              /* torn record: never acted on */
		pages_sha256(rec, len - 32, sum);
		if (memcmp(sum, rec + len - 32, 32) != 0)
			break;
		for (uint32_t i = 0; i < n; i++) {
			uint64_t idx = pages_get64(rec + 8 + (size_t)i * 8);
			uint64_t at = idx * ps;
			size_t wl = ps;

			if (at >= old_size)
				continue;
			if (old_size - at < wl)
				wl = (size_t)(old_size - at);
			if (pwrite_full(fd, rec + 8 + (size_t)n * 8 + (size_t)i * ps, wl,
					at) != 0) {
				pages_seterr(err, errlen, "cannot restore page %" PRIu64 ": %s",
					     idx, strerror(errno));
				goto out;
			}
		}
		off += len;
	}
	if (fsync(fd) != 0) {
		pages_seterr(err, errlen, "cannot fsync: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(rec);
	return rc;
}

int ferry_patch_recover(const char *path, bool *rolled_back, char *err, size_t errlen)
{
	char *upath = undo_path(path);
	int fd, ufd, rc = -1;

	*rolled_back = false;
	if (!upath) {
		pages_seterr(err, errlen, "out of memory");
		return -1;
	}
	ufd = open(upath, O_RDONLY | O_CLOEXEC);
	if (ufd < 0) {
		rc = errno == ENOENT ? 0 : -1;
		if (rc)
			pages_seterr(err, errlen, "cannot open undo file '%s': %s", upath,
				     strerror(errno));
		goto out_path;
	}
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {      /* nothing left to restore: drop the stray undo */
			rc = unlink(upath);
			goto out_ufd;
		}
		pages_seterr(err, errlen, "cannot open '%s': %s", path, strerror(errno));
		goto out_ufd;
	}
	if (undo_apply(fd, ufd, upath, rolled_back, err, errlen) != 0)
		goto out_fd;
	if (unlink(upath) != 0 || ferry_fsync_dir(upath) != 0) {
		pages_seterr(err, errlen, "cannot remove undo file '%s': %s", upath,
			     strerror(errno));
		goto out_fd;
	}
	rc = 0;
out_fd:
	close(fd);
out_ufd:
	close(ufd);
out_path:
	free(upath);
	return rc;
}

int ferry_pages_recover(const char *who, const char *replica, char *err, size_t errlen)
{
	char why[256];
	bool rolled = false;

	if (ferry_patch_recover(replica, &rolled, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "cannot roll back the interrupted pull of '%s': %s", replica,
			 why);
		return -1;
	}
	if (rolled)
		ferry_logf(FERRY_WARN, who, "rolled back an interrupted pull", "replica='%s'",
			   replica);
	return 0;
}

int ferry_patch_abort(struct ferry_patch *p)
{
	bool rolled = false;
	int rc;

	close(p->ufd);
	p->ufd = -1;
	rc = ferry_patch_recover(p->path, &rolled, p->err, sizeof(p->err));
	patch_free(p);
	return rc;
}
