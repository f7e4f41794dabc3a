/* ferry_patch.h: crash-safe patching of a local database file through an undo file. */
#ifndef FERRY_PATCH_H
#define FERRY_PATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Crash-safe patching of a local file (the replica). Protocol:
 *   begin   writes PATH.ferry-undo with the old size, fsyncs it and the directory;
 *   save    appends a batch of old page contents to the undo file and fsyncs it; only
 *           then may those pages be overwritten;
 *   write / truncate   change the file;
 *   finish  fsyncs the file; commit removes the undo file (the new version is final);
 *   abort   rolls back now. ferry_patch_recover() rolls back after a crash.
 * Each undo record carries its own SHA-256; a torn last record was never acted on. */
struct ferry_patch;
struct ferry_patch *ferry_patch_begin(int fd, const char *path, uint32_t page_size,
				      char *err, size_t errlen);
/* Save the current content of these pages (those below the current size). A page must
 * be saved at most once per patch. */
int ferry_patch_save(struct ferry_patch *p, const uint64_t *pages, size_t n);
int ferry_patch_write(struct ferry_patch *p, uint64_t index, const void *data);
/* Set the final size; pages beyond it must have been saved before shrinking. */
int ferry_patch_truncate(struct ferry_patch *p, uint64_t size);
int ferry_patch_finish(struct ferry_patch *p);
int ferry_patch_commit(struct ferry_patch *p);
int ferry_patch_abort(struct ferry_patch *p);
/* Drop the handle without touching anything (tests: simulated crash). */
void ferry_patch_forget(struct ferry_patch *p);
const char *ferry_patch_error(const struct ferry_patch *p);
uint64_t ferry_patch_undo_bytes(const struct ferry_patch *p);
/* At start: roll back PATH from PATH.ferry-undo if present. *rolled_back tells whether
 * pages were restored (a torn undo file is just removed). 0, or -1 with err. */
int ferry_patch_recover(const char *path, bool *rolled_back, char *err, size_t errlen);
/* The same for a stage (pull and push both start with it): logs a rollback as who; 0, or
 * -1 with "cannot roll back the interrupted pull of 'REPLICA': why" in err. */
int ferry_pages_recover(const char *who, const char *replica, char *err, size_t errlen);

#endif
