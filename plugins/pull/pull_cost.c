/* pull_cost.c: what reading from this store costs, as earlier pulls measured it, and the
 * read plan chosen with it (pull.c, "How the origin is read").
 *
 * Two figures, kept per store in state_dir/pull-costs-HASH.json (ferry_s3_state_path: no
 * URL on disk): the effective time of one ranged GET of a run of pages, parallelism included
 * (a ranged pass's time over its requests), and the rate of one pass in order (bytes over
 * time of a sequential read of 4 MiB or more). Each new measurement is averaged with the one
 * kept (half each). A store whose ranged GETs cost O(object size), as moto's do, then reads
 * in order; one whose requests are cheap reads just the pages that differ. With no figure
 * for a ranged GET yet, one ranged GET of the first run is timed before deciding; with no
 * rate yet (no pass in order so far: a first pull is always one), the share rule decides
 * (PULL_SEQ_PERCENT). */
#include "pull.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_ctx.h"
#include "ferry_file.h"
#include "ferry_s3.h"
#include "ferry_stage.h"
#include "ferry_time.h"

#define COST_MIN_SEQ_BYTES (4u << 20)      /* a pass in order shorter than this measures latency */

static int costs_path(const struct pull_job *j, char *out, size_t n)
{
	return j->s3 ? ferry_s3_state_path(j->s3, ferry_state_dir(j->c), "pull-costs", out, n) : -1;
}

void pull_costs_load(struct pull_job *j)
{
	char path[4096];
	json_t *o;

	memset(&j->costs, 0, sizeof(j->costs));
	if (costs_path(j, path, sizeof(path)) != 0 || !(o = json_load_file(path, 0, NULL)))
		return;
	j->costs.req_ms = json_number_value(json_object_get(o, "ranged_get_ms"));
	j->costs.bytes_per_ms = json_number_value(json_object_get(o, "in_order_bytes_per_ms"));
	json_decref(o);
	if (!(j->costs.req_ms > 0))
		j->costs.req_ms = 0;
	if (!(j->costs.bytes_per_ms > 0))
		j->costs.bytes_per_ms = 0;
}

static double blend(double kept, double now)
{
	return kept > 0 ? (kept + now) / 2 : now;
}

void pull_costs_measured(struct pull_job *j, bool in_order, uint64_t bytes, uint64_t requests,
			 int64_t ms)
{
	if (!j->s3key || ms <= 0)
		return;
	if (in_order && bytes >= COST_MIN_SEQ_BYTES)
		j->costs.bytes_per_ms = blend(j->costs.bytes_per_ms, (double)bytes / (double)ms);
	else if (!in_order && requests)
		j->costs.req_ms = blend(j->costs.req_ms, (double)ms / (double)requests);
	else
		return;
	j->costs.dirty = true;
}

void pull_costs_save(struct pull_job *j)
{
	char path[4096], *text;
	json_t *o;

	if (!j->costs.dirty || costs_path(j, path, sizeof(path)) != 0)
		return;
	o = json_pack("{s:f, s:f}", "ranged_get_ms", j->costs.req_ms, "in_order_bytes_per_ms",
		      j->costs.bytes_per_ms);
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	/* no fsync: a lost file costs the next pull one timed GET */
	if (text) {
		char err[256];

		if (ferry_file_replace(path, text, strlen(text), 0600, 0, err, sizeof(err)) != 0)
			ferry_log(j->c, FERRY_DEBUG, "cannot save the read costs", "err=\"%s\"", err);
	}
	free(text);
	j->costs.dirty = false;
}

/* One ranged GET of the first run, timed: what a request costs here, when nothing says. */
static void probe_request(struct pull_job *j, const uint64_t *list, size_t n)
{
	uint32_t ps = j->want.page_size;
	size_t k = pull_plan_run(list, n, 0, pull_max_run(ps), ferry_pages_lock_index(ps));
	uint64_t span = list[k - 1] - list[0] + 1;
	struct ferry_s3_cond cond = { .if_match = j->etag };
	struct ferry_s3_res res;
	unsigned char *buf = malloc((size_t)(span * ps));
	int64_t t0 = ferry_mono_ms();
	size_t got = 0;

	if (!buf)
		return;
	if (ferry_s3_get_into(j->s3, j->s3key, &cond, list[0] * ps, (size_t)(span * ps), buf, &got,
			      &res) == FERRY_S3_OK) {
		int64_t ms = ferry_mono_ms() - t0;

		j->costs.req_ms = ms > 0 ? (double)ms : 0.5;
		j->costs.probed = true;
		j->bytes_s3 += got;
	}
	free(buf);
}

bool pull_cost_plan(struct pull_job *j, const uint64_t *list, size_t n, bool may_probe)
{
	uint64_t runs = 0;
	double est_ranged, est_order;

	if (!j->s3key || !(j->costs.bytes_per_ms > 0) || !n)
		return pull_sequential_pays(j, list, n);
	if (!(j->costs.req_ms > 0) && may_probe)
		probe_request(j, list, n);
	if (!(j->costs.req_ms > 0))
		return pull_sequential_pays(j, list, n);
	pull_plan_span(j, list, n, &runs);
	est_ranged = (double)runs * j->costs.req_ms;
	est_order = (double)pull_want_size(j) / j->costs.bytes_per_ms;
	snprintf(j->plan_why, sizeof(j->plan_why),
		 "ranged_gets=%" PRIu64 " est_ranged_ms=%.0f in_order_bytes=%" PRIu64
		 " est_in_order_ms=%.0f ranged_get_ms=%.1f ranged_get_timed_now=%s"
		 " in_order_mb_per_s=%.0f", runs, est_ranged, pull_want_size(j), est_order,
		 j->costs.req_ms, j->costs.probed ? "yes" : "no", j->costs.bytes_per_ms / 1000.0);
	return est_order < est_ranged;
}
