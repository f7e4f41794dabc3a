/* stats.c: ferryfs's virtual file .ferryfs-stats: its name, attributes and JSON counters. */
#include "ferryfs.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

bool stats_is(const struct fs *fs, const struct node *parent, const char *name)
{
	return parent == &fs->root && strcmp(name, FERRY_FS_STATS_NAME) == 0;
}

void stats_attr(const struct fs *fs, struct stat *st)
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

int stats_json(struct fs *fs, char *out, size_t len)
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
