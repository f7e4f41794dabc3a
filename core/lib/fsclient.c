/* fsclient.c: the client side of ferryfs: .ferryfs-stats, mountinfo, the ETag and fetch xattrs. */
#include "ferry_fsclient.h"
#include "ferry_file.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ferry_fsproto.h"
#include "pages_internal.h"

bool ferry_fsstats_read(const char *mount_root, struct ferry_fsstats *out)
{
	char path[PATH_MAX], buf[65536];
	json_t *j;
	ssize_t got;
	int fd;

	memset(out, 0, sizeof(*out));
	if (!mount_root || (size_t)snprintf(path, sizeof(path), "%s/" FERRY_FS_STATS_NAME,
					    mount_root) >= sizeof(path))
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	got = ferry_pread_full(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	if (got <= 0)
		return false;
	j = json_loadb(buf, (size_t)got, 0, NULL);
	if (!j)
		return false;
	out->bytes_down = (uint64_t)json_integer_value(json_object_get(j, "bytes_down"));
	out->bytes_up = (uint64_t)json_integer_value(json_object_get(j, "bytes_up"));
	out->bytes_copied = (uint64_t)json_integer_value(json_object_get(j, "bytes_copied"));
	out->requests = (uint64_t)json_integer_value(json_object_get(j, "requests"));
	json_decref(j);
	return true;
}

char *ferry_fsstats_root(const char *path, const char *mountpoint_fact)
{
	char dir[PATH_MAX], probe[PATH_MAX + 20];
	struct stat st;
	char *slash;

	if (mountpoint_fact && *mountpoint_fact) {
		snprintf(probe, sizeof(probe), "%s/" FERRY_FS_STATS_NAME, mountpoint_fact);
		return stat(probe, &st) == 0 ? strdup(mountpoint_fact) : NULL;
	}
	if (!path || path[0] != '/' || strlen(path) >= sizeof(dir))
		return NULL;
	snprintf(dir, sizeof(dir), "%s", path);
	for (;;) {
		slash = strrchr(dir, '/');
		if (!slash)
			return NULL;
		*slash = '\0';
		snprintf(probe, sizeof(probe), "%s/" FERRY_FS_STATS_NAME, *dir ? dir : "");
		if (stat(probe, &st) == 0 && S_ISREG(st.st_mode))
			return strdup(*dir ? dir : "/");
		if (!*dir)
			return NULL;
	}
}

/* mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo */
static void unescape_octal(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

char *ferry_pages_ferryfs_key(const char *mountinfo, const char *path, char *bucket, size_t blen)
{
	char *line = NULL, *best_src = NULL, *key = NULL;
	size_t cap = 0, best_len = 0;
	FILE *f;

	if (!path || path[0] != '/')
		return NULL;
	f = fopen(mountinfo ? mountinfo : "/proc/self/mountinfo", "re");
	if (!f)
		return NULL;
	while (getline(&line, &cap, f) > 0) {
		char *fld[6] = { 0 }, *sep, *save = NULL, *fstype, *src;
		size_t ml;
		int k = 0;

		sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		for (char *t = strtok_r(line, " ", &save); t && k < 6;
		     t = strtok_r(NULL, " ", &save))
			fld[k++] = t;
		fstype = strtok_r(sep + 3, " \n", &save);
		src = strtok_r(NULL, " \n", &save);
		if (k < 5 || !fstype || !src || strcmp(fstype, FERRY_FS_TYPE) != 0)
			continue;
		unescape_octal(src);            /* '#' itself arrives as \043 */
		if (strncmp(src, FERRY_FS_SOURCE, strlen(FERRY_FS_SOURCE)) != 0)
			continue;
		unescape_octal(fld[4]);
		ml = strlen(fld[4]);
		if (strcmp(fld[4], "/") == 0)
			ml = 0;
		if (strncmp(path, fld[4], ml) != 0 || path[ml] != '/' ||
		    (best_src && ml <= best_len))
			continue;
		free(best_src);
		best_src = strdup(src + strlen(FERRY_FS_SOURCE));
		best_len = ml;
	}
	free(line);
	fclose(f);
	if (best_src) {
		char *colon = strchr(best_src, ':');
		const char *rel = path + best_len + 1, *prefix = "";
		bool slash = false;

		if (colon) {
			*colon = '\0';
			prefix = colon + 1;
			slash = *prefix && prefix[strlen(prefix) - 1] != '/';
		}
		snprintf(bucket, blen, "%s", best_src);
		if (asprintf(&key, "%s%s%s", prefix, slash ? "/" : "", rel) < 0)
			key = NULL;
		free(best_src);
	}
	return key;
}

static int etag_fix(ssize_t n, char *out, size_t outlen)
{
	if (n < 0)
		return -1;
	if (n == 0) {
		errno = ENODATA;
		return -1;
	}
	out[(size_t)n < outlen ? (size_t)n : outlen - 1] = '\0';
	return 0;
}

int ferry_pages_etag_fd(int fd, char *out, size_t outlen)
{
	return etag_fix(fgetxattr(fd, FERRY_XATTR_ETAG, out, outlen - 1), out, outlen);
}

int ferry_pages_etag_path(const char *path, char *out, size_t outlen)
{
	return etag_fix(getxattr(path, FERRY_XATTR_ETAG, out, outlen - 1), out, outlen);
}

int ferry_pages_ferryfs_ranged(int fd)
{
	return fsetxattr(fd, FERRY_XATTR_FETCH, FERRY_FETCH_RANGED, strlen(FERRY_FETCH_RANGED), 0);
}
