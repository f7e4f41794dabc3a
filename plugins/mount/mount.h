/* mount.h: the mount stage's internals, reachable from tests/unit/test_mount.c. */
#ifndef FERRY_MOUNT_H
#define FERRY_MOUNT_H

#include <stdbool.h>

bool mount_is_fuse_mounted(const char *mp);  /* a fuse* entry at mp in /proc/self/mounts */
bool mount_is_stale(const char *mp);         /* stat gives ENOTCONN: its daemon is gone */
bool mount_is_live(const char *mp);          /* mp is on another device than its parent */
char *mount_default_ferryfs(void);           /* dirname(/proc/self/exe)/ferryfs, malloc'd */

#endif
