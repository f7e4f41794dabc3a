/* journal.h: the run journal (STATE_DIR/journal.json): what ran, its facts and results, so
 * that a later `ferry run STAGE` and `ferry status` see them. Supervisor-internal. */
#ifndef FERRY_JOURNAL_H
#define FERRY_JOURNAL_H

#include <stddef.h>

struct run;

int journal_path(const struct run *r, char *buf, size_t len);
int journal_write(struct run *r);           /* atomic; logs and returns -1 on failure */
/* Load facts and last results of the previous journal into r's stages; 0, or -1 if
 * there is none (not an error), -2 if it is unreadable (message in err). */
int journal_load(struct run *r, char *err, size_t errlen);

#endif
