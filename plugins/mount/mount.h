/* mount.h: the mount stage's internals, reachable from tests/unit/test_mount.c. */
#ifndef FERRY_MOUNT_H
#define FERRY_MOUNT_H

#include <stdbool.h>
#include <stdint.h>

struct ferry_ctx;

/* Everything run needs, resolved from config; all malloc'd. */
struct mount_plan {
	char *mountpoint;                   /* relative: to the INI's directory */
	char *ferryfs;                      /* the binary to run (mount_default_ferryfs) */
	char *cache_dir;                    /* ferryfs's cache (default: STATE_DIR/cache) */
	char *source;                       /* BUCKET[:PREFIX] */
	char *opts;                         /* the -o list */
	uint64_t wait_ms;                   /* how long the mount may take to answer */
};

bool mount_is_fuse_mounted(const char *mp);  /* a fuse* entry at mp in /proc/self/mounts */
bool mount_is_stale(const char *mp);         /* stat gives ENOTCONN: its daemon is gone */
bool mount_is_live(const char *mp);          /* mp is on another device than its parent */
char *mount_default_ferryfs(void);           /* dirname(/proc/self/exe)/ferryfs, malloc'd */
/* The plan from the stage's keys and [s3]: FERRY_OK, or a ferry_fail code (nothing to
 * release then). The -o list holds cache_dir, the [s3] keys ferryfs knows, then options. */
int mount_plan_make(struct ferry_ctx *c, struct mount_plan *p);
void mount_plan_release(struct mount_plan *p);

#endif
