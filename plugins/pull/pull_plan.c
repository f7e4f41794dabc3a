/* pull_plan.c: which origin pages a pull reads, and how: runs, groups, ranged or in order. */
#include "pull.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_ctx.h"
#include "ferry_stage.h"
#include "ferry_time.h"

/* Hash the replica's pages (those a patch could keep). */
int pull_hash_replica(struct pull_job *j)
{
	char err[256];
	uint64_t n = j->rinfo.page_count;

	j->rhashes = calloc(n ? (size_t)n : 1, FERRY_PAGE_HASH_LEN);
	if (!j->rhashes)
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	/* unchanged since the last sync (its stamp holds): its pages are the state's */
	if (n && j->have_state && j->state.page_size == j->rinfo.page_size &&
	    j->state.page_count == n && ferry_replica_stamp_holds(j->replica, j->rfd, &j->state)) {
		memcpy(j->rhashes, j->state.hashes, (size_t)n * FERRY_PAGE_HASH_LEN);
		j->stamp_held = true;
		ferry_log(j->c, FERRY_INFO, "replica unchanged since the last sync: not hashed",
			  "pages=%" PRIu64, n);
		return 0;
	}
	if (n && j->rinfo.page_size) {
		int64_t t0 = ferry_mono_ms();
		uint64_t bytes = 0;

		j->cb.step = "hashing the replica";
		if (ferry_pages_hash_fd(j->rfd, j->rinfo.page_size, n, j->rhashes, &j->cb, &bytes, err,
					sizeof(err)) != 0)
			return ferry_fail(j->c, FERRY_FAIL, "replica '%s': %s", j->replica, err);
		ferry_log(j->c, FERRY_INFO, "hashed the replica", "pages=%" PRIu64 " bytes=%" PRIu64
			  " ms=%" PRId64, n, bytes, ferry_mono_ms() - t0);
	}
	return 0;
}

bool pull_page_differs(const struct pull_job *j, uint64_t i)
{
	if (i >= j->rinfo.page_count || j->rinfo.page_size != j->want.page_size)
		return true;
	return memcmp(j->rhashes + i * FERRY_PAGE_HASH_LEN, j->want.hashes + i * FERRY_PAGE_HASH_LEN,
		      FERRY_PAGE_HASH_LEN) != 0;
}

int pull_diff_list(struct pull_job *j, uint64_t **out, size_t *n)
{
	uint64_t keep = j->rinfo.page_size == j->want.page_size ? j->rinfo.page_count : 0;

	if (ferry_pages_diff(j->want.hashes, j->want.page_count, j->rhashes, keep,
			     j->want.page_size, out, n) != 0)
		return ferry_fail(j->c, FERRY_FAIL, "out of memory");
	return 0;
}

uint64_t pull_max_run(uint32_t ps)
{
	return PULL_RUN_BYTES / ps ? PULL_RUN_BYTES / ps : 1;
}

size_t pull_plan_run(const uint64_t *list, size_t n, size_t i, uint64_t max_run, uint64_t lock)
{
	size_t k = i + 1;

	while (k < n && list[k] - list[k - 1] <= PULL_MERGE_GAP + 1 &&
	       list[k] - list[i] < max_run && !(list[k - 1] < lock && list[k] > lock))
		k++;
	return k;
}

size_t pull_plan_group(const uint64_t *list, size_t n, size_t *i, uint32_t ps,
		       unsigned char *buf, struct pull_run *runs)
{
	uint64_t max_run = pull_max_run(ps), lock = ferry_pages_lock_index(ps);
	size_t nr = 0, used = 0;

	while (*i < n && nr < PULL_GROUP_RUNS && used < PULL_GROUP_BYTES) {
		struct pull_run *r = &runs[nr++];
		size_t k = pull_plan_run(list, n, *i, max_run, lock);

		memset(r, 0, sizeof(*r));
		r->first = list[*i];
		r->span = list[k - 1] - list[*i] + 1;
		r->i = *i;
		r->k = k;
		r->buf = buf + used;
		used += (size_t)(r->span * ps);
		*i = k;
	}
	return nr;
}

uint64_t pull_plan_span(const struct pull_job *j, const uint64_t *list, size_t n, uint64_t *runs)
{
	uint32_t ps = j->want.page_size;
	uint64_t max_run = pull_max_run(ps), lock = ferry_pages_lock_index(ps);
	uint64_t span = 0, nr = 0;

	for (size_t i = 0; i < n; nr++) {
		size_t k = pull_plan_run(list, n, i, max_run, lock);

		span += list[k - 1] - list[i] + 1;
		i = k;
	}
	if (runs)
		*runs = nr;
	return span;
}

bool pull_sequential_pays(const struct pull_job *j, const uint64_t *list, size_t n)
{
	return pull_plan_span(j, list, n, NULL) * 100 >= j->want.page_count * PULL_SEQ_PERCENT;
}

bool pull_read_in_order(struct pull_job *j, const uint64_t *list, size_t n, bool may_probe)
{
	return j->reads == READS_SEQUENTIAL ||
	       (j->reads == READS_AUTO && pull_cost_plan(j, list, n, may_probe));
}
