/* ferry_file.h: whole-file writes that readers never see half done; full reads and writes. */
#ifndef FERRY_FILE_H
#define FERRY_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Flags of ferry_file_replace. */
#define FERRY_FILE_DURABLE 0x1u             /* fsync the file and its directory: it must
					     * survive a crash (journal, manifest); without it a
					     * crash may lose the new file but never tears it */

/* Replace path with len bytes of data: written to "PATH.tmp.PID" with mode, renamed over
 * path. 0, or -1 with "cannot write 'TMP': why" (or rename) in err; the temporary file is
 * removed on every failure. */
int ferry_file_replace(const char *path, const void *data, size_t len, mode_t mode,
		       unsigned int flags, char *err, size_t errlen);
/* Write all of buf at the fd's offset, retrying short writes and EINTR: 0 or -1 (errno). */
int ferry_write_full(int fd, const void *buf, size_t len);
/* pread until len bytes, the end of the file or an error: the bytes read, or -1 (errno). */
ssize_t ferry_pread_full(int fd, void *buf, size_t len, uint64_t off);
/* fsync the directory holding path, so a rename or create in it is durable: 0 or -1. */
int ferry_fsync_dir(const char *path);

#endif
