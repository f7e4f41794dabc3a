/* snapshot.c: the `snapshot` stage: server-side copy of the org DB object to a dated key, with retention. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry_ctx.h"
#include "ferry_s3.h"
#include "ferry_stage.h"

#define GIB (1024ull * 1024 * 1024)
#define MIB (1024ull * 1024)
#define COPY_MAX (5 * GIB)                  /* CopyObject's and UploadPartCopy's limit */
#define PART_MIN (5 * MIB)                  /* smallest part but the last */
#define PARTS_MAX 10000
#define TIME_LEN 16                         /* yyyymmddThhmmssZ */

static const struct ferry_key snapshot_keys[] = {
	{ "key", FERRY_KEY_OBJKEY, NULL, FERRY_KEY_REQUIRED,
	  "the object to snapshot, e.g. org-data/${ORG_ID}.db" },
	{ "dest", FERRY_KEY_OBJKEY, "{key}.snapshots/{time}.db", 0,
	  "snapshot key; {key} = key, {time} = UTC yyyymmddThhmmssZ (server time)" },
	{ "part_size", FERRY_KEY_SIZE, "5GiB", 0,
	  "objects above this are copied with UploadPartCopy in parts of this size (5MiB..5GiB)" },
	{ "keep", FERRY_KEY_INT, "0", 0, "keep the newest N snapshots, delete older ones (0 = all)" },
	{ "etag_from", FERRY_KEY_STRING, "pull", 0,
	  "stage whose 'etag' fact (pull: 'origin_etag') pins the source version: a snapshot of "
	  "exactly what that stage saw, or none (exit 4) when the object changed since; "
	  "empty: the version a HEAD finds" },
	{ NULL, 0, NULL, 0, NULL },
};

/* Split dest around {time}: pre/post with {key} substituted. -1 when {time} is missing. */
static int dest_parts(const char *pattern, const char *key, char *pre, size_t npre, char *post,
		      size_t npost)
{
	char buf[2048];
	const char *t;
	size_t o = 0;

	for (const char *p = pattern; *p && o + 1 < sizeof(buf);) {
		if (strncmp(p, "{key}", 5) == 0) {
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s", key);
			if (o >= sizeof(buf))
				return -1;
			p += 5;
		} else {
			buf[o++] = *p++;
		}
	}
	buf[o] = '\0';
	t = strstr(buf, "{time}");
	if (!t || strstr(t + 6, "{time}"))
		return -1;
	snprintf(pre, npre, "%.*s", (int)(t - buf), buf);
	snprintf(post, npost, "%s", t + 6);
	return 0;
}

static int snapshot_check(struct ferry_ctx *c)
{
	char pre[2048], post[2048];
	uint64_t part = ferry_cfg_bytes(c, "part_size");
	const char *key = ferry_cfg(c, "key");

	if (!key || !*key || key[0] == '/')
		return ferry_cfg_error(c, "key", "must be an object key (no leading '/')");
	if (dest_parts(ferry_cfg(c, "dest"), key, pre, sizeof(pre), post, sizeof(post)) != 0)
		return ferry_cfg_error(c, "dest", "must contain {time} exactly once");
	if (!pre[0] || pre[0] == '/')
		return ferry_cfg_error(c, "dest", "must give a key with something before {time}");
	if (strcmp(pre, key) == 0 && !post[0])
		return ferry_cfg_error(c, "dest", "must not be the source key itself");
	if (part < PART_MIN || part > COPY_MAX)
		return ferry_cfg_error(c, "part_size", "must be between 5MiB and 5GiB");
	if (ferry_cfg_int(c, "keep") < 0)
		return ferry_cfg_error(c, "keep", "must be 0 (keep all) or more");
	return FERRY_OK;
}

/* Is name "pre" + yyyymmddThhmmssZ + "post"? */
static bool is_snapshot(const char *name, const char *pre, const char *post)
{
	size_t lp = strlen(pre), ls = strlen(post), n = strlen(name);

	if (n != lp + TIME_LEN + ls || strncmp(name, pre, lp) != 0 || strcmp(name + lp + TIME_LEN, post))
		return false;
	for (int i = 0; i < TIME_LEN; i++) {
		char ch = name[lp + i];

		if (i == 8 ? ch != 'T' : i == 15 ? ch != 'Z' : (ch < '0' || ch > '9'))
			return false;
	}
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The existing snapshots (sorted oldest first, since the time sorts as text). */
static int list_snapshots(struct ferry_ctx *c, struct ferry_s3 *s3, const char *pre,
			  const char *post, char ***out, size_t *n)
{
	struct ferry_s3_list l = { 0 };
	struct ferry_s3_res res;
	char **v;

	*out = NULL;
	*n = 0;
	if (ferry_s3_list_all(s3, pre, NULL, &l, &res) != FERRY_S3_OK) {
		ferry_s3_list_release(&l);
		return ferry_fail(c, FERRY_FAIL, "cannot list snapshots: %s", res.msg);
	}
	v = calloc(l.n_entries + 1, sizeof(*v));
	if (!v) {
		ferry_s3_list_release(&l);
		return ferry_fail(c, FERRY_FAIL, "out of memory");
	}
	for (size_t i = 0; i < l.n_entries; i++)
		if (is_snapshot(l.entries[i].key, pre, post))
			v[(*n)++] = strdup(l.entries[i].key);
	ferry_s3_list_release(&l);
	for (size_t i = 0; i < *n; i++)
		if (!v[i]) {
			for (size_t j = 0; j < *n; j++)
				free(v[j]);
			free(v);
			*n = 0;
			return ferry_fail(c, FERRY_FAIL, "out of memory");
		}
	qsort(v, *n, sizeof(*v), cmp_str);
	*out = v;
	return FERRY_OK;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* The source's ETag and size: pinned by a fact when a stage recorded one, else HEAD. */
static int source_of(struct ferry_ctx *c, struct ferry_s3 *s3, const char *key, char *etag,
		     size_t n, uint64_t *size, time_t *now)
{
	const char *from = ferry_cfg(c, "etag_from");
	const char *fact = from && *from ? ferry_fact(c, from, "etag") : NULL;

	/* pull records the version it read as origin_etag (push's etag is the one it wrote) */
	if ((!fact || !*fact) && from && *from)
		fact = ferry_fact(c, from, "origin_etag");
	if (fact && !*fact)
		fact = NULL;                /* a plain file or a created object: no version */
	struct ferry_s3_cond cond = { .if_match = fact };
	struct ferry_s3_res res;
	int rc;

	/* the HEAD is made conditional on the fact, so a changed object fails here */
	rc = ferry_s3_head(s3, key, fact ? &cond : NULL, &res);
	if (rc == FERRY_S3_NOTFOUND)
		return ferry_fail(c, FERRY_FAIL, "cannot snapshot '%s': no such object", key);
	if (rc == FERRY_S3_PRECONDITION)
		return ferry_fail(c, FERRY_FENCED,
				  "cannot snapshot '%s': it changed since stage '%s' saw ETag %s", key,
				  from, fact);
	if (rc != FERRY_S3_OK)
		return ferry_fail(c, FERRY_FAIL, "cannot snapshot '%s': %s", key, res.msg);
	snprintf(etag, n, "%s", res.etag);
	*size = res.size;
	*now = res.date ? res.date : time(NULL);
	return FERRY_OK;
}

static int copy_multipart(struct ferry_ctx *c, struct ferry_s3 *s3, const char *src,
			  const char *etag, uint64_t size, uint64_t part, const char *dst)
{
	struct ferry_s3_cond create = { .if_none_match = "*" };
	struct ferry_s3_res res;
	uint64_t nparts = (size + part - 1) / part;
	char *upload = NULL, **etags;
	int rc = FERRY_FAIL;

	if (nparts > PARTS_MAX)
		return ferry_fail(c, FERRY_USAGE, "part_size too small: '%s' would take %" PRIu64
				  " parts (10000 at most)", src, nparts);
	etags = calloc(nparts, sizeof(*etags));
	if (!etags)
		return ferry_fail(c, FERRY_FAIL, "out of memory");
	if (ferry_s3_mpu_create(s3, dst, &upload, &res) != FERRY_S3_OK) {
		ferry_fail(c, FERRY_FAIL, "cannot start the snapshot upload: %s", res.msg);
		goto out_free;
	}
	for (uint64_t i = 0; i < nparts; i++) {
		uint64_t off = i * part, len = size - off < part ? size - off : part;

		etags[i] = malloc(80);
		if (!etags[i]) {
			ferry_fail(c, FERRY_FAIL, "out of memory");
			goto out_abort;
		}
		if (ferry_cancelled(c)) {
			ferry_fail(c, FERRY_FAIL, "cancelled during the snapshot copy");
			goto out_abort;
		}
		rc = ferry_s3_mpu_part_copy(s3, dst, upload, (int)i + 1, src, etag, off, len,
					    etags[i], &res);
		if (rc != FERRY_S3_OK) {
			ferry_fail(c, rc == FERRY_S3_PRECONDITION ? FERRY_FENCED : FERRY_FAIL,
				   "cannot copy part %" PRIu64 " of '%s': %s", i + 1, src, res.msg);
			rc = FERRY_FAIL;
			goto out_abort;
		}
	}
	rc = ferry_s3_mpu_complete(s3, dst, upload, etags, (int)nparts, &create, &res);
	if (rc != FERRY_S3_OK) {
		ferry_fail(c, FERRY_FAIL, "cannot complete snapshot '%s': %s", dst, res.msg);
		rc = FERRY_FAIL;
		goto out_abort;
	}
	rc = FERRY_OK;
	goto out_free;
out_abort:
	if (ferry_s3_mpu_abort(s3, dst, upload, &res) != FERRY_S3_OK)
		ferry_log(c, FERRY_WARN, "cannot abort the snapshot upload", "key=%s error=\"%s\"",
			  dst, res.msg);
out_free:
	for (uint64_t i = 0; i < nparts; i++)
		free(etags[i]);
	free(etags);
	free(upload);
	return rc;
}

static void dest_name(const char *pre, const char *post, time_t now, char *out, size_t n)
{
	char t[32];
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(t, sizeof(t), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(out, n, "%s%s%s", pre, t, post);
}

static int retention(struct ferry_ctx *c, struct ferry_s3 *s3, const char *pre, const char *post,
		     bool dry)
{
	int64_t keep = ferry_cfg_int(c, "keep");
	struct ferry_s3_res res;
	char **v;
	size_t n;
	int rc;

	if (keep <= 0)
		return FERRY_OK;
	rc = list_snapshots(c, s3, pre, post, &v, &n);
	if (rc != FERRY_OK)
		return rc;
	/* a dry run has not made its snapshot yet; it will be the newest */
	for (size_t i = 0; i + (size_t)keep < n + (dry ? 1 : 0) && i < n; i++) {
		if (dry) {
			ferry_log(c, FERRY_INFO, "would delete old snapshot", "request=\"DELETE %s\"",
				  v[i]);
			continue;
		}
		if (ferry_s3_delete(s3, v[i], NULL, &res) != FERRY_S3_OK) {
			rc = ferry_fail(c, FERRY_FAIL, "cannot delete old snapshot: %s", res.msg);
			break;
		}
		ferry_log(c, FERRY_INFO, "deleted old snapshot", "key=%s", v[i]);
	}
	free_list(v, n);
	return rc;
}

/* The part size of a multipart copy; none where a multipart completion cannot be fenced
 * (GCS): there one CopyObject of any size, fenced, does it. */
static uint64_t copy_part_size(struct ferry_ctx *c, const struct ferry_s3 *s3)
{
	return ferry_s3_multipart_fenced(s3) ? ferry_cfg_bytes(c, "part_size") : UINT64_MAX;
}

static int snapshot_run(struct ferry_ctx *c)
{
	const char *key = ferry_cfg(c, "key");
	uint64_t part, size;
	struct ferry_s3_cond create = { .if_none_match = "*" };
	struct ferry_s3_res res;
	struct ferry_s3 *s3;
	char pre[2048], post[2048], dst[4200], etag[80];
	time_t now;
	int rc;

	s3 = ferry_s3(c);
	if (!s3)
		return FERRY_FAIL;
	dest_parts(ferry_cfg(c, "dest"), key, pre, sizeof(pre), post, sizeof(post));
	rc = source_of(c, s3, key, etag, sizeof(etag), &size, &now);
	if (rc != FERRY_OK)
		return rc;
	dest_name(pre, post, now, dst, sizeof(dst));
	part = copy_part_size(c, s3);
	if (size > part) {
		rc = copy_multipart(c, s3, key, etag, size, part, dst);
		if (rc != FERRY_OK)
			return rc;
	} else {
		/* If-None-Match: never overwrite a snapshot (two runs in one second) */
		rc = ferry_s3_copy(s3, key, etag, dst, &create, &res);
		if (rc == FERRY_S3_PRECONDITION)
			return ferry_fail(c, FERRY_FAIL,
					  "cannot snapshot '%s' to '%s': the source changed or the "
					  "snapshot exists: %s", key, dst, res.msg);
		if (rc != FERRY_S3_OK)
			return ferry_fail(c, FERRY_FAIL, "cannot snapshot '%s' to '%s': %s", key, dst,
					  res.msg);
	}
	if (ferry_fact_set(c, "key", dst) || ferry_fact_set(c, "source_etag", etag) ||
	    ferry_fact_setf(c, "size", "%" PRIu64, size))
		return ferry_fail(c, FERRY_FAIL, "cannot record the snapshot's facts");
	ferry_log(c, FERRY_INFO, "snapshot made", "src=%s dst=%s bytes=%" PRIu64 " etag=%s parts=%" PRIu64,
		  key, dst, size, etag, size > part ? (size + part - 1) / part : 1);
	return retention(c, s3, pre, post, false);
}

static int snapshot_dry_run(struct ferry_ctx *c)
{
	const char *key = ferry_cfg(c, "key");
	uint64_t part, size;
	struct ferry_s3 *s3;
	char pre[2048], post[2048], dst[4200], etag[80];
	time_t now;
	int rc;

	s3 = ferry_s3(c);
	if (!s3)
		return FERRY_FAIL;
	dest_parts(ferry_cfg(c, "dest"), key, pre, sizeof(pre), post, sizeof(post));
	rc = source_of(c, s3, key, etag, sizeof(etag), &size, &now);
	if (rc != FERRY_OK)
		return rc;
	dest_name(pre, post, now, dst, sizeof(dst));
	part = copy_part_size(c, s3);
	if (size > part)
		ferry_log(c, FERRY_INFO, "would copy in parts",
			  "src=%s dst=%s bytes=%" PRIu64 " parts=%" PRIu64
			  " request=\"UploadPartCopy x-amz-copy-source-if-match: %s\"",
			  key, dst, size, (size + part - 1) / part, etag);
	else
		ferry_log(c, FERRY_INFO, "would copy",
			  "src=%s dst=%s bytes=%" PRIu64
			  " request=\"CopyObject source pinned to %s, %s\"",
			  key, dst, size, etag, ferry_s3_cond_spelling(s3, true));
	return retention(c, s3, pre, post, true);
}

/* A snapshot is a consistent copy of the DB as it was before this run: harmless to
 * keep and possibly the backup someone needs after the failure, so undo keeps it
 * (retention bounds their number). */
static int snapshot_undo(struct ferry_ctx *c)
{
	const char *dst = ferry_fact(c, NULL, "key");

	if (dst)
		ferry_log(c, FERRY_INFO, "keeping snapshot", "key=%s", dst);
	ferry_fact_set(c, "undo", "kept: the snapshot stays (a backup)");
	return FERRY_OK;
}

static int snapshot_cleanup(struct ferry_ctx *c)
{
	(void)c;
	return FERRY_OK;
}

FERRY_EXPORT const struct ferry_stage ferry_stage_v1 = {
	.abi = FERRY_STAGE_ABI,
	.size = sizeof(struct ferry_stage),
	.name = "snapshot",
	.check = snapshot_check,
	.dry_run = snapshot_dry_run,
	.run = snapshot_run,
	.undo = snapshot_undo,
	.cleanup = snapshot_cleanup,
	.keys = snapshot_keys,
	.summary = "server-side copy of the database object to a dated key, with retention",
};
