/* s3_upload.c: an object written whole from a file (ferry_s3_upload): one conditional PUT,
 * or a multipart upload whose unchanged parts are copied server-side. ferryfs commits its
 * cache files with it in ferry_fsproto.h's fixed layout; push writes the replica with it in
 * a layout around the changed pages (ferry_s3_plan_around). Copies that measure dearer than
 * uploads turn into uploads (copy_slack_ms, s3up_prefer_upload), from the start when the
 * figures of earlier uploads (u->prior, push's remembered costs) already say so. */
#include "ferry_s3.h"
#include "s3_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_failpoint.h"
#include "ferry_fsproto.h"
#include "ferry_log.h"
#include "ferry_time.h"

#define UP_THREADS_MAX 16
#define UP_ETAG_MAX    80               /* ferry_s3_mpu_part*: etag_out holds 80 bytes */
#define PART_MIN       (5ull << 20)     /* S3's smallest part (but the last) */
#define PART_MAX       (5ull << 30)     /* and its largest */
#define PARTS_MAX      10000            /* parts of one upload */
#define PLAN_PARTS     9000             /* ferry_s3_plan_around stays under this */
#define PLAN_COPY      (64ull << 20)    /* its copied parts: at most (a store that turns
					 * copies into uploads, copy_slack, sends them whole) */

struct up_job {
	struct ferry_s3 *s3;
	struct ferry_s3_upload *u;
	const struct ferry_s3_part *plan;   /* u->plan, or the fixed layout */
	const char *upload_id;
	int nparts;
	char **etags;
	int *order;                         /* the parts in the order they are taken */
	int next;                           /* next index into order */
	int rc;                             /* first failure (FERRY_S3_*) */
	struct ferry_s3_res fail;           /* its answer */
	bool unproven;                      /* an uploaded part's ETag was not its MD5 */
	int uploads, started;               /* parts planned to upload; uploads begun */
	int nthreads;                       /* parts at a time */
	struct s3up_cost cost;              /* what the parts done so far took */
	int probe;                          /* the part copied first (take_order); -1: none */
	uint64_t probe_t0;                  /* when it was sent (ns); 0: not yet, or done */
	uint64_t copy_left;                 /* bytes of the copyable parts not yet taken */
	int switched;                       /* copyable parts uploaded instead */
	pthread_mutex_t mu;
};

static void count(const struct ferry_s3_upload *u, enum ferry_s3_upload_ev ev, uint64_t off,
		  uint64_t bytes)
{
	if (u->count)
		u->count(u->arg, ev, off, bytes);
}

static bool no_copy(const struct ferry_s3_upload *u)
{
	return u->no_copy && __atomic_load_n(u->no_copy, __ATOMIC_RELAXED);
}

/* Whether part p can be copied server-side from the base. */
static bool copyable(const struct ferry_s3_upload *u, const struct ferry_s3_part *p)
{
	return p->copy && u->base && u->base[0] && p->off + p->len <= u->base_size && !no_copy(u);
}

static uint64_t up_round(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

struct plan {
	struct ferry_s3_part *p;
	size_t n, cap;
};

static int plan_add(struct plan *pl, uint64_t off, uint64_t len, bool copy)
{
	if (pl->n == pl->cap) {
		size_t cap = pl->cap ? pl->cap * 2 : 64;
		struct ferry_s3_part *p = realloc(pl->p, cap * sizeof(*p));

		if (!p)
			return -1;
		pl->p = p;
		pl->cap = cap;
	}
	pl->p[pl->n++] = (struct ferry_s3_part){ .off = off, .len = len, .copy = copy };
	return 0;
}

/* [off, end) as parts of about `target` bytes, each at least `min` (fewer parts when the
 * range is short), on `align` boundaries: one part when it is shorter than min (only the
 * object's last part may be). */
static int plan_split(struct plan *pl, uint64_t off, uint64_t end, uint64_t target,
		      uint64_t min, uint64_t align, bool copy)
{
	const uint64_t len = end - off;
	uint64_t k = (len + target - 1) / target, at = off;

	while (k > 1 && len / k < min + align)
		k--;
	for (uint64_t i = 1; i <= k; i++) {
		uint64_t to = i == k ? end : off + len * i / k / align * align;

		if (plan_add(pl, at, to - at, copy))
			return -1;
		at = to;
	}
	return 0;
}

/* The first new byte at or after pos (size: none), and where the run of new bytes holding
 * it ends. d[*i] is the first range that may hold it; past `fresh` every byte is new. */
static uint64_t next_new(const struct ferry_s3_range *d, size_t n, size_t *i, uint64_t pos,
			 uint64_t fresh, uint64_t size, uint64_t align, uint64_t *run_end)
{
	while (*i < n && up_round(d[*i].end, align) <= pos)
		(*i)++;
	if (*i < n) {
		uint64_t off = d[*i].off / align * align;

		if (off < pos)
			off = pos;
		if (off < fresh) {
			*run_end = up_round(d[*i].end, align);
			if (*run_end >= fresh)   /* runs on into the bytes past the base */
				*run_end = size;
			return off;
		}
	}
	*run_end = size;
	return pos > fresh ? pos : fresh;
}

long ferry_s3_plan_around(const struct ferry_s3_range *dirty, size_t ndirty, uint64_t size,
			  uint64_t base_size, uint64_t align, struct ferry_s3_part **out)
{
	struct plan pl = { 0 };
	uint64_t min, up, cmax, fresh, pos = 0;
	size_t i = 0;

	*out = NULL;
	align = align ? align : 1;
	min = up_round(size / PLAN_PARTS + 1 > PART_MIN ? size / PLAN_PARTS + 1 : PART_MIN, align);
	up = min > FERRY_FS_PART_SIZE ? min : up_round(FERRY_FS_PART_SIZE, align);
	cmax = min > PLAN_COPY ? min : up_round(PLAN_COPY, align);
	fresh = (base_size < size ? base_size : size) / align * align;   /* new from here on */
	while (pos < size) {
		uint64_t run_end, start = next_new(dirty, ndirty, &i, pos, fresh, size, align, &run_end);
		uint64_t end;

		if (start >= size) {                /* the rest is the base's */
			if (plan_split(&pl, pos, size, cmax, min, align, true))
				goto oom;
			break;
		}
		if (start - pos < min)              /* too little between to copy */
			start = pos;
		else if (plan_split(&pl, pos, start, cmax, min, align, true))
			goto oom;
		end = start + min > run_end ? start + min : run_end;
		if (end > size)
			end = size;
		/* new bytes closer than min after the part's end go in it too */
		while (end < size) {
			uint64_t nx = next_new(dirty, ndirty, &i, end, fresh, size, align, &run_end);

			if (nx >= size || nx - end >= min)
				break;
			end = run_end;
		}
		if (plan_split(&pl, start, end, up, min, align, false))
			goto oom;
		pos = end;
	}
	*out = pl.p;
	return (long)pl.n;
oom:
	free(pl.p);
	return -1;
}

/* ferry_fsproto.h's layout, a part copied where `changed` says it holds no new byte. */
static long plan_fixed(const struct ferry_s3_upload *u, bool copies, struct ferry_s3_part **out)
{
	const uint64_t n = ferry_fs_nparts(u->size);
	struct ferry_s3_part *p = calloc(n, sizeof(*p));

	*out = p;
	if (!p)
		return -1;
	for (uint64_t i = 0; i < n; i++) {
		p[i].off = ferry_fs_part_start(i);
		p[i].len = ferry_fs_part_len(i, u->size);
		p[i].copy = copies && u->changed && !u->changed(u->arg, p[i].off, p[i].len);
	}
	return (long)n;
}

/* A caller's plan covers [0, size) in order with parts S3 takes. */
static bool plan_valid(const struct ferry_s3_part *p, size_t n, uint64_t size)
{
	uint64_t at = 0;

	if (!n || n > PARTS_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i].off != at || !p[i].len || p[i].len > PART_MAX ||
		    (i + 1 < n && p[i].len < PART_MIN))
			return false;
		at += p[i].len;
	}
	return at == size;
}

/* With no part to copy every byte is uploaded anyway: up to put_max one PUT spares the
 * multipart round trips and the store's completion (which some stores pay for by reading
 * every part again). Where a multipart completion cannot be fenced (GCS), always one PUT. */
static bool as_put(struct ferry_s3 *s3, const struct ferry_s3_upload *u,
		   const struct ferry_s3_part *plan, size_t n)
{
	if (n < 2 || u->size < FERRY_FS_PART_SIZE || !ferry_s3_multipart_fenced(s3))
		return true;
	if (u->size > u->put_max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (copyable(u, &plan[i]))
			return false;
	return true;
}

bool s3up_prefer_upload(const struct s3up_cost *m, uint64_t left, int threads, int64_t slack_ms)
{
	double copy, up;

	if (slack_ms <= 0 || !m->copy_bytes || !m->up_bytes || threads < 1)
		return false;
	copy = (double)m->copy_ns / (double)m->copy_bytes;
	up = (double)m->up_ns / (double)m->up_bytes;
	return copy > up && (double)left * (copy - up) / threads / 1e6 > (double)slack_ms;
}

/* A prior figure in ms per MiB as ns over 1 MiB, when it is one (a file may say anything:
 * 0, negative, NaN and absurd values are no figure). */
static bool prior_figure(double ms, uint64_t *ns, uint64_t *bytes)
{
	if (!(ms > 0 && ms < 1e9))
		return false;
	*ns = (uint64_t)(ms * 1e6 + 0.5);
	*bytes = 1ull << 20;
	return *ns > 0;
}

bool s3up_figures(const struct s3up_cost *live, const struct ferry_s3_up_costs *prior,
		  uint64_t run_ns, uint64_t run_bytes, struct s3up_cost *out)
{
	bool from_prior = false;

	*out = *live;
	if (!out->up_bytes && prior)
		prior_figure(prior->upload_ms_per_mib, &out->up_ns, &out->up_bytes);
	if (out->copy_bytes)
		return false;
	if (prior && prior_figure(prior->copy_ms_per_mib, &out->copy_ns, &out->copy_bytes))
		from_prior = true;
	/* run_ns / run_bytes > copy_ns / copy_bytes, without the division */
	if (run_bytes && (!out->copy_bytes ||
			  (double)run_ns * (double)out->copy_bytes >
			  (double)out->copy_ns * (double)run_bytes)) {
		out->copy_ns = run_ns;
		out->copy_bytes = run_bytes;
		from_prior = false;
	}
	return from_prior;
}

static double ms_per_mib(uint64_t ns, uint64_t bytes)
{
	return bytes ? (double)ns / (double)bytes * 1048576 / 1e6 : 0;
}

/* The info line of the switch to uploads: the figures, and where the copy figure came
 * from (this upload's copies, or the prior: then its file, age and uses). */
static void switch_line(const struct ferry_s3_upload *u, const struct s3up_cost *m,
			uint64_t left, bool remembered)
{
	if (!remembered)
		ferry_logf(FERRY_INFO, "s3", "part copies are slower than uploads here: uploading "
			   "the copyable parts left", "key='%s' copy_ms_per_mib>=%.1f "
			   "upload_ms_per_mib=%.1f left_mib=%llu copy_figure=timed_now", u->key,
			   ms_per_mib(m->copy_ns, m->copy_bytes), ms_per_mib(m->up_ns, m->up_bytes),
			   (unsigned long long)(left >> 20));
	else
		ferry_logf(FERRY_INFO, "s3", "part copies are slower than uploads here: uploading "
			   "the copyable parts left", "key='%s' copy_ms_per_mib=%.1f "
			   "upload_ms_per_mib=%.1f left_mib=%llu copy_figure=remembered "
			   "costs_file='%s' copy_figure_age_days=%.1f earlier_uploads_on_it=%d", u->key,
			   ms_per_mib(m->copy_ns, m->copy_bytes), ms_per_mib(m->up_ns, m->up_bytes),
			   (unsigned long long)(left >> 20), u->prior_file ? u->prior_file : "-",
			   u->prior_age_days, u->prior_uses);
}

/* Parts sent at a time for n parts: u->threads within [1, UP_THREADS_MAX], at most n. */
static int up_threads(const struct ferry_s3_upload *u, size_t n)
{
	int t = u->threads < 1 ? 1 : u->threads > UP_THREADS_MAX ? UP_THREADS_MAX : u->threads;

	return (size_t)t > n ? (int)n : t;
}

/* Figures of earlier uploads (u->prior) that already say the plan's copies would cost more
 * than uploading their bytes: then none is sent, not even the probe (the caller decides
 * when copies are timed again: it passes no copy figure), and the object goes up as if
 * nothing were copyable: in the fixed layout's parts, not in the plan's (its gaps are laid
 * out for copies, up to 64 MiB a part), or as one PUT up to put_max (as_put). */
static bool prior_skips(struct ferry_s3_upload *u, const struct ferry_s3_part *plan, size_t n)
{
	struct s3up_cost m, none = { 0 };
	uint64_t left = 0;
	int copies = 0;

	if (!u->prior)
		return false;
	for (size_t i = 0; i < n; i++)
		if (copyable(u, &plan[i])) {
			left += plan[i].len;
			copies++;
		}
	s3up_figures(&none, u->prior, 0, 0, &m);
	if (!left || !s3up_prefer_upload(&m, left, up_threads(u, n), u->copy_slack_ms))
		return false;
	switch_line(u, &m, left, true);
	u->prior_uploads = copies;
	return true;
}

/* Copy part i server-side? Asked once per copyable part: with copy_slack_ms, not once the
 * timings say the copies left cost more than uploading them (when the prior said so before
 * the first part, no part is copyable: prior_skips). Until a copy has ended, the first one
 * (the probe) counts with the time it has taken so far, a lower bound of its cost: on a
 * store whose copies are slow the others are weighed before it ends. A figure this upload
 * has not measured yet is the prior's (s3up_figures). t0: now (ns). */
static bool take_copy(struct up_job *j, int i, uint64_t t0)
{
	struct ferry_s3_upload *u = j->u;
	const struct ferry_s3_part *p = &j->plan[i];
	uint64_t run_ns = 0, run_bytes = 0;
	struct s3up_cost m;
	bool upload, remembered;

	if (!copyable(u, p))
		return false;
	pthread_mutex_lock(&j->mu);
	if (!j->cost.copy_bytes && j->probe_t0 && t0 > j->probe_t0) {
		run_ns = t0 - j->probe_t0;
		run_bytes = j->plan[j->probe].len;
	}
	remembered = s3up_figures(&j->cost, u->prior, run_ns, run_bytes, &m);
	upload = s3up_prefer_upload(&m, j->copy_left, j->nthreads, u->copy_slack_ms);
	j->copy_left -= p->len;
	if (upload && remembered)
		u->prior_uploads++;
	if (upload && !j->switched++)
		switch_line(u, &m, j->copy_left + p->len, remembered);
	if (!upload && i == j->probe)
		j->probe_t0 = t0;
	pthread_mutex_unlock(&j->mu);
	return !upload;
}

/* Part i, sent at t0, is done: what it took is counted when it succeeded. */
static void took(struct up_job *j, int i, bool copy, bool ok, uint64_t t0)
{
	const uint64_t ns = ferry_mono_ns() - t0, len = j->plan[i].len;

	pthread_mutex_lock(&j->mu);
	if (i == j->probe)
		j->probe_t0 = 0;
	if (ok && copy) {
		j->cost.copy_ns += ns;
		j->cost.copy_bytes += len;
	} else if (ok) {
		j->cost.up_ns += ns;
		j->cost.up_bytes += len;
	}
	pthread_mutex_unlock(&j->mu);
}

/* Before bytes [off, off + len) are read from the fd: the halfway fault point when mid says
 * this read passes it, then the caller's before_read. */
static int before_read(struct ferry_s3_upload *u, uint64_t off, uint64_t len, bool mid,
		       struct ferry_s3_res *res)
{
	int e;

	if (mid && u->failpoint_mid && ferry_failpoint(u->failpoint_mid)) {
		snprintf(res->msg, sizeof(res->msg), "'%s': failpoint %s", u->key, u->failpoint_mid);
		return FERRY_S3_ERROR;
	}
	e = u->before_read ? u->before_read(u->arg, off, len) : 0;
	if (!e)
		return FERRY_S3_OK;
	u->err = e;
	snprintf(res->msg, sizeof(res->msg), "'%s': cannot read bytes %llu..%llu to upload: %s",
		 u->key, (unsigned long long)off, (unsigned long long)(off + len), strerror(e));
	return FERRY_S3_ERROR;
}

static int one_part(struct up_job *j, int i, struct ferry_s3_res *res)
{
	struct ferry_s3_upload *u = j->u;
	const uint64_t off = j->plan[i].off, len = j->plan[i].len;
	uint64_t t0 = ferry_mono_ns();
	bool mid;
	int rc;

	if (take_copy(j, i, t0)) {
		rc = ferry_s3_mpu_part_copy(j->s3, u->key, j->upload_id, i + 1, u->key, u->base, off,
					    len, j->etags[i], res);
		took(j, i, true, rc == FERRY_S3_OK, t0);
		if (rc == FERRY_S3_OK) {
			count(u, FERRY_S3_UP_COPY, off, len);
			return rc;
		}
		if (rc != FERRY_S3_NOTIMPL)
			return rc;
		if (u->no_copy && !__atomic_exchange_n(u->no_copy, true, __ATOMIC_RELAXED))
			ferry_logf(FERRY_WARN, "s3", "store lacks UploadPartCopy; uploading parts instead",
				   "msg=\"%s\"", res->msg);
	}
	pthread_mutex_lock(&j->mu);
	mid = ++j->started == j->uploads / 2 + 1;
	pthread_mutex_unlock(&j->mu);
	rc = before_read(u, off, len, mid, res);
	if (rc != FERRY_S3_OK)
		return rc;
	t0 = ferry_mono_ns();
	rc = ferry_s3_mpu_part_fd(j->s3, u->key, j->upload_id, i + 1, u->fd, (off_t)off, len,
				  j->etags[i], res);
	if (rc != FERRY_S3_OK)
		return rc;
	if (!res->verified)
		__atomic_store_n(&j->unproven, true, __ATOMIC_RELAXED);
	took(j, i, false, true, t0);
	count(u, FERRY_S3_UP_PART, off, len);
	return rc;
}

static void *worker(void *arg)
{
	struct up_job *j = arg;

	for (;;) {
		struct ferry_s3_res res;
		int i, rc;

		pthread_mutex_lock(&j->mu);
		if (j->rc || j->next >= j->nparts) {
			pthread_mutex_unlock(&j->mu);
			return NULL;
		}
		i = j->order[j->next++];
		pthread_mutex_unlock(&j->mu);
		memset(&res, 0, sizeof(res));
		rc = one_part(j, i, &res);
		if (rc != FERRY_S3_OK) {
			pthread_mutex_lock(&j->mu);
			if (!j->rc) {
				j->rc = rc;
				j->fail = res;
			}
			pthread_mutex_unlock(&j->mu);
		}
	}
}

/* The parts to upload, the bytes to copy, and the order the parts are taken in: the smallest
 * part to copy first (the probe: its time is the first figure of a copy, soonest), then the
 * parts to upload (those of an upload), then the other parts to copy, weighed by then
 * against both figures (take_copy) rather than sent on no figure at all. In plan order, a
 * store whose copies are slow (moto's take O(object) each) had every thread in a copy
 * before the first copy's time was known. 0, or -1 out of memory. */
static int take_order(struct up_job *j)
{
	bool *copy = calloc((size_t)j->nparts, sizeof(*copy));
	int k = 0, probe = -1;

	if (!copy)
		return -1;
	for (int i = 0; i < j->nparts; i++) {   /* once: no_copy may change meanwhile */
		copy[i] = copyable(j->u, &j->plan[i]);
		if (copy[i])
			j->copy_left += j->plan[i].len;
		else
			j->uploads++;
		if (copy[i] && (probe < 0 || j->plan[i].len < j->plan[probe].len))
			probe = i;
	}
	j->probe = probe;
	if (probe >= 0)
		j->order[k++] = probe;
	for (int i = 0; i < j->nparts; i++)
		if (!copy[i])
			j->order[k++] = i;
	for (int i = 0; i < j->nparts; i++)
		if (copy[i] && i != probe)
			j->order[k++] = i;
	free(copy);
	return 0;
}

/* Every part, `threads` at a time: FERRY_S3_OK or the first failure (in j->fail). */
static int all_parts(struct up_job *j)
{
	pthread_t th[UP_THREADS_MAX];
	int nth = j->nthreads, started = 0;

	pthread_mutex_init(&j->mu, NULL);
	for (int t = 0; t < nth; t++) {
		if (pthread_create(&th[t], NULL, worker, j) != 0)
			break;
		started++;
	}
	if (!started)
		worker(j);
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&j->mu);
	return j->rc;
}

/* Is the object still the version the condition names? Asked right before completing:
 * S3 enforces If-Match on CompleteMultipartUpload and pins copies by
 * x-amz-copy-source-if-match, but some stores do neither (moto 5.2.1; R2 ignores the copy
 * pin), and there the completion would replace a newer object. A HEAD leaves them only the
 * few ms between it and the completion. */
static int still_current(struct ferry_s3 *s3, const char *key, const struct ferry_s3_cond *cond,
			 struct ferry_s3_res *res)
{
	struct ferry_s3_res h;
	int rc;

	if (!cond || (!cond->if_match && !cond->if_none_match))
		return FERRY_S3_OK;
	rc = ferry_s3_head(s3, key, NULL, &h);
	if (cond->if_none_match && rc == FERRY_S3_NOTFOUND)
		return FERRY_S3_OK;
	if (cond->if_match && rc == FERRY_S3_OK && strcmp(h.etag, cond->if_match) == 0)
		return FERRY_S3_OK;
	*res = h;
	if (rc != FERRY_S3_OK && rc != FERRY_S3_NOTFOUND)
		return rc;
	res->status = 412;
	snprintf(res->msg, sizeof(res->msg), "COMPLETE-MULTIPART '%s': not sent: the object is %s "
		 "now, the write was conditional on %s", key, rc == FERRY_S3_OK ? h.etag : "gone",
		 cond->if_match ? cond->if_match : "its absence");
	return FERRY_S3_PRECONDITION;
}

static int multipart(struct ferry_s3 *s3, struct ferry_s3_upload *u,
		     const struct ferry_s3_part *plan, size_t n, const struct ferry_s3_cond *cond,
		     struct ferry_s3_res *res)
{
	struct up_job j = { .s3 = s3, .u = u, .plan = plan, .nparts = (int)n };
	int64_t t0 = ferry_mono_ms(), t_parts;
	char *upload_id = NULL;
	int rc;

	count(u, FERRY_S3_UP_CREATE, 0, 0);
	rc = ferry_s3_mpu_create(s3, u->key, &upload_id, res);
	if (rc != FERRY_S3_OK)
		return rc;
	j.upload_id = upload_id;
	j.etags = calloc((size_t)j.nparts, sizeof(*j.etags));
	j.order = calloc((size_t)j.nparts, sizeof(*j.order));
	for (int i = 0; j.etags && i < j.nparts; i++)
		if (!(j.etags[i] = calloc(1, UP_ETAG_MAX)))
			rc = FERRY_S3_ERROR;
	j.nthreads = up_threads(u, (size_t)j.nparts);
	if (!j.etags || !j.order || rc || take_order(&j)) {
		snprintf(res->msg, sizeof(res->msg), "'%s': out of memory", u->key);
		rc = FERRY_S3_ERROR;
		goto out_abort;
	}
	rc = all_parts(&j);
	u->measured.copy_ms_per_mib = ms_per_mib(j.cost.copy_ns, j.cost.copy_bytes);
	u->measured.upload_ms_per_mib = ms_per_mib(j.cost.up_ns, j.cost.up_bytes);
	if (rc != FERRY_S3_OK) {
		*res = j.fail;
		goto out_abort;
	}
	t_parts = ferry_mono_ms();
	/* crash matrix: every part is on the store, the object is not */
	if (u->failpoint && ferry_failpoint(u->failpoint)) {
		snprintf(res->msg, sizeof(res->msg), "'%s': failpoint %s", u->key, u->failpoint);
		rc = FERRY_S3_ERROR;
		goto out_abort;
	}
	rc = still_current(s3, u->key, cond, res);
	if (rc != FERRY_S3_OK)
		goto out_abort;
	count(u, FERRY_S3_UP_COMPLETE, 0, 0);
	rc = ferry_s3_mpu_complete(s3, u->key, upload_id, j.etags, j.nparts, cond, res);
	if (j.unproven)
		res->verified = false;
	ferry_logf(FERRY_DEBUG, "s3", "multipart upload", "key='%s' parts=%d parts_ms=%lld "
		   "complete_ms=%lld copies_uploaded=%d", u->key, j.nparts,
		   (long long)(t_parts - t0), (long long)(ferry_mono_ms() - t_parts), j.switched);
	if (rc == FERRY_S3_OK)
		goto out_free;
out_abort:
	{
		struct ferry_s3_res ares;

		count(u, FERRY_S3_UP_ABORT, 0, 0);
		ferry_s3_mpu_abort(s3, u->key, upload_id, &ares);
	}
out_free:
	for (int i = 0; j.etags && i < j.nparts; i++)
		free(j.etags[i]);
	free(j.etags);
	free(j.order);
	free(upload_id);
	return rc;
}

int ferry_s3_upload(struct ferry_s3 *s3, struct ferry_s3_upload *u,
		    const struct ferry_s3_cond *cond, struct ferry_s3_res *res)
{
	struct ferry_s3_res local, h;
	struct ferry_s3_part *fixed = NULL;
	const struct ferry_s3_part *plan = u->plan;
	long n = (long)u->nplan;
	int rc;

	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	u->err = 0;
	u->measured = (struct ferry_s3_up_costs){ 0 };
	u->prior_uploads = 0;
	if (!plan) {
		n = plan_fixed(u, true, &fixed);
		plan = fixed;
	}
	if (n < 0) {
		snprintf(res->msg, sizeof(res->msg), "'%s': out of memory", u->key);
		return FERRY_S3_ERROR;
	}
	if (u->size && !plan_valid(plan, (size_t)n, u->size)) {
		free(fixed);
		snprintf(res->msg, sizeof(res->msg), "'%s': the %ld parts planned do not make an "
			 "upload S3 takes", u->key, n);
		return FERRY_S3_ERROR;
	}
	if (prior_skips(u, plan, (size_t)n)) {
		free(fixed);
		n = plan_fixed(u, false, &fixed);
		plan = fixed;
		if (n < 0) {
			snprintf(res->msg, sizeof(res->msg), "'%s': out of memory", u->key);
			return FERRY_S3_ERROR;
		}
	}
	if (as_put(s3, u, plan, (size_t)n)) {
		rc = before_read(u, 0, u->size, true, res);
		if (rc == FERRY_S3_OK)
			rc = u->size ? ferry_s3_put_fd(s3, u->key, u->fd, 0, u->size, cond, res) :
				       ferry_s3_put(s3, u->key, "", 0, cond, res);
		if (rc == FERRY_S3_OK)
			count(u, FERRY_S3_UP_PUT, 0, u->size);
	} else {
		rc = multipart(s3, u, plan, (size_t)n, cond, res);
	}
	free(fixed);
	if (rc == FERRY_S3_PRECONDITION || rc == FERRY_S3_CONFLICT)
		count(u, FERRY_S3_UP_CONFLICT, 0, 0);
	if (rc != FERRY_S3_OK)
		return rc;
	/* the object as the store now describes it: our ETag and size, or it was not our
	 * write that the ETag proved */
	if (ferry_s3_head(s3, u->key, NULL, &h) != FERRY_S3_OK) {
		ferry_logf(FERRY_WARN, "s3", "cannot HEAD the object just written", "msg=\"%s\"",
			   h.msg);
		res->verified = false;
	} else if (strcmp(h.etag, res->etag) != 0) {
		ferry_logf(FERRY_WARN, "s3", "the object changed right after our write",
			   "key='%s' written=%s now=%s", u->key, res->etag, h.etag);
		res->verified = false;
	} else if (h.size != u->size) {
		snprintf(res->msg, sizeof(res->msg), "'%s': the object written has %llu bytes, "
			 "expected %llu", u->key, (unsigned long long)h.size,
			 (unsigned long long)u->size);
		return FERRY_S3_ERROR;
	}
	return FERRY_S3_OK;
}
