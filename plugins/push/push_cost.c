/* push_cost.c: what part copies and part uploads cost on this store, as earlier pushes
 * measured them, kept per store in state_dir/push-costs-HASH.json (ferry_s3_state_path: no
 * URL on disk), as pull keeps its read costs (pull_cost.c).
 *
 * ferry_s3_upload weighs copies against uploads with copy_slack (s3_upload.c). Without
 * figures it learns them anew on every push by copying the smallest copyable part first:
 * on moto, whose UploadPartCopy reads the whole source object per part, that probe alone
 * cost a 916 MiB next-day push ~10 s (35.8 s against 24.9 s with every part uploaded).
 * With the figures kept here, a store whose copies are slow gets every part uploaded from
 * the start. A push that copies nothing never times a copy again, so the copy figure is
 * held back (and copies probed again) once PUSH_COST_RECHECK_PUSHES pushes have relied on
 * it or it is PUSH_COST_RECHECK_DAYS old; README.md, "Remembered part costs". */
#include "push_cost.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ferry_ctx.h"
#include "ferry_file.h"
#include "ferry_stage.h"

/* A figure read from the file: a number in (0, 1e9), or none (0). Anything else (a string,
 * a negative, an absurd value) makes the file corrupt: *bad. */
static double figure(json_t *o, const char *name, bool *bad)
{
	json_t *v = json_object_get(o, name);
	double x;

	if (!v)
		return 0;
	x = json_number_value(v);
	if (!json_is_number(v) || !(x >= 0 && x < 1e9)) {
		*bad = true;
		return 0;
	}
	return x;
}

void push_costs_decide(struct push_costs *pc, int64_t now_s)
{
	const int64_t age = now_s - pc->copy_at;

	pc->prior = (struct ferry_s3_up_costs){ .upload_ms_per_mib = pc->upload_ms_per_mib };
	pc->recheck = false;
	pc->copy_age_days = (double)(age > 0 ? age : 0) / 86400.0;
	if (!(pc->copy_ms_per_mib > 0))
		return;
	/* a timestamp a day ahead of the clock is no age to trust either */
	pc->recheck = pc->copy_pushes >= PUSH_COST_RECHECK_PUSHES || !pc->copy_at ||
		      age >= PUSH_COST_RECHECK_DAYS * 86400LL || age < -86400;
	if (!pc->recheck)
		pc->prior.copy_ms_per_mib = pc->copy_ms_per_mib;
}

void push_costs_load(struct ferry_ctx *c, struct ferry_s3 *s3, struct push_costs *pc,
		     int64_t now_s)
{
	json_error_t e;
	json_t *o, *v;
	bool bad = false;

	memset(pc, 0, sizeof(*pc));
	if (ferry_s3_state_path(s3, ferry_state_dir(c), "push-costs", pc->path,
				sizeof(pc->path)) != 0) {
		pc->path[0] = '\0';
		return;
	}
	o = json_load_file(pc->path, 0, &e);
	if (!o) {
		struct stat st;

		/* no file yet is the first push here; anything else is said, never fatal */
		if (stat(pc->path, &st) == 0 || errno != ENOENT)
			ferry_log(c, FERRY_INFO, "remembered part costs ignored: cannot read them; "
				  "timing copies and uploads afresh", "file='%s' err=\"%s\"", pc->path,
				  e.text);
		push_costs_decide(pc, now_s);
		return;
	}
	if (json_is_object(o)) {
		pc->copy_ms_per_mib = figure(o, "copy_ms_per_mib", &bad);
		pc->upload_ms_per_mib = figure(o, "upload_ms_per_mib", &bad);
		v = json_object_get(o, "copy_timed_at");
		if (v && !json_is_integer(v))
			bad = true;
		pc->copy_at = (int64_t)json_integer_value(v);
		v = json_object_get(o, "pushes_on_copy_figure");
		if (v && (!json_is_integer(v) || json_integer_value(v) < 0))
			bad = true;
		pc->copy_pushes = json_integer_value(v) > 1000000 ? 1000000 :
				  (int)json_integer_value(v);
	} else {
		bad = true;
	}
	json_decref(o);
	if (bad) {
		ferry_log(c, FERRY_INFO, "remembered part costs ignored: not what push writes; "
			  "timing copies and uploads afresh", "file='%s'", pc->path);
		pc->copy_ms_per_mib = pc->upload_ms_per_mib = 0;
		pc->copy_at = 0;
		pc->copy_pushes = 0;
	}
	push_costs_decide(pc, now_s);
	ferry_log(c, FERRY_DEBUG, "remembered part costs", "copy_ms_per_mib=%.1f "
		  "upload_ms_per_mib=%.1f copy_figure_age_days=%.1f earlier_pushes_on_it=%d "
		  "file='%s'", pc->copy_ms_per_mib, pc->upload_ms_per_mib, pc->copy_age_days,
		  pc->copy_pushes, pc->path);
	if (pc->recheck)
		ferry_log(c, FERRY_INFO, "remembered part copy figure held back: timing part copies "
			  "again", "copy_ms_per_mib=%.1f copy_figure_age_days=%.1f "
			  "earlier_pushes_on_it=%d recheck_after_days=%d recheck_after_pushes=%d "
			  "file='%s'", pc->copy_ms_per_mib, pc->copy_age_days, pc->copy_pushes,
			  PUSH_COST_RECHECK_DAYS, PUSH_COST_RECHECK_PUSHES, pc->path);
}

static double blend(double kept, double now)
{
	return kept > 0 ? (kept + now) / 2 : now;
}

bool push_costs_update(struct push_costs *pc, const struct ferry_s3_up_costs *m,
		       int prior_uploads, int64_t now_s)
{
	bool changed = false;

	if (m->upload_ms_per_mib > 0) {
		pc->upload_ms_per_mib = blend(pc->upload_ms_per_mib, m->upload_ms_per_mib);
		changed = true;
	}
	if (m->copy_ms_per_mib > 0) {
		/* held back as stale, the old figure is not averaged in: a store whose copies got
		 * fast would otherwise stay "slow" for several more rounds of rechecks */
		pc->copy_ms_per_mib = pc->recheck ? m->copy_ms_per_mib :
				      blend(pc->copy_ms_per_mib, m->copy_ms_per_mib);
		pc->copy_at = now_s;
		pc->copy_pushes = 0;
		pc->recheck = false;
		changed = true;
	} else if (prior_uploads > 0 && pc->prior.copy_ms_per_mib > 0) {
		pc->copy_pushes++;
		changed = true;
	}
	pc->dirty |= changed;
	return changed;
}

void push_costs_save(struct ferry_ctx *c, struct push_costs *pc)
{
	char *text, err[256];
	json_t *o;

	if (!pc->dirty || !pc->path[0])
		return;
	o = json_pack("{s:f, s:f, s:I, s:i}", "copy_ms_per_mib", pc->copy_ms_per_mib,
		      "upload_ms_per_mib", pc->upload_ms_per_mib, "copy_timed_at",
		      (json_int_t)pc->copy_at, "pushes_on_copy_figure", pc->copy_pushes);
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	/* no fsync: a lost file costs the next push one probe */
	if (text && ferry_file_replace(pc->path, text, strlen(text), 0600, 0, err, sizeof(err)) != 0)
		ferry_log(c, FERRY_INFO, "cannot save the part costs", "file='%s' err=\"%s\"",
			  pc->path, err);
	free(text);
	pc->dirty = false;
}
