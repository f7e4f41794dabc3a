/* cmd_work_metrics.c: `ferry work`'s counters in Prometheus text format: written to
 * STATE_DIR/metrics.prom after every run, and served on GET /metrics by libmicrohttpd when
 * [work] metrics_port is set (Fly's and Prometheus's scrapers read it from there). */
#include "cmd_work.h"

#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_file.h"
#include "ferry_log.h"
#include "ferry_time.h"

struct stage_sum {
	char name[64];
	double seconds;
	uint64_t bytes;
	uint64_t runs;
	uint64_t failures;
};

struct work_metrics {
	char path[4200];
	int workers;
	uint64_t runs_ok, runs_failed, runs_cancelled;
	uint64_t lock_busy, done_elsewhere, passes;
	size_t orgs, due, done, given_up;
	int running;
	int64_t last_run_ms;
	struct stage_sum *st;
	size_t n_st;
	/* what the endpoint serves: the last rendered text, swapped under the mutex because
	 * libmicrohttpd answers from its own thread */
	pthread_mutex_t mu;
	char *served;
	struct MHD_Daemon *httpd;
};

struct work_metrics *cmd_work_metrics_new(const char *state_dir, int workers)
{
	struct work_metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	snprintf(m->path, sizeof(m->path), "%s/metrics.prom", state_dir);
	m->workers = workers;
	pthread_mutex_init(&m->mu, NULL);
	return m;
}

static struct stage_sum *stage_of(struct work_metrics *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->n_st; i++)
		if (strcmp(m->st[i].name, name) == 0)
			return &m->st[i];
	m->st = realloc(m->st, (m->n_st + 1) * sizeof(*m->st));
	if (!m->st)
		abort();
	memset(&m->st[m->n_st], 0, sizeof(*m->st));
	snprintf(m->st[m->n_st].name, sizeof(m->st[m->n_st].name), "%s", name);
	return &m->st[m->n_st++];
}

void cmd_work_metrics_run(struct work_metrics *m, const char *result,
			  const struct work_stage_rec *st, size_t n)
{
	size_t i;

	if (strcmp(result, "ok") == 0)
		m->runs_ok++;
	else if (strcmp(result, "cancelled") == 0)
		m->runs_cancelled++;
	else
		m->runs_failed++;
	m->last_run_ms = ferry_now_ms();
	for (i = 0; i < n; i++) {
		struct stage_sum *s = stage_of(m, st[i].name);

		s->runs++;
		s->seconds += (double)st[i].ms / 1000.0;
		s->bytes += st[i].bytes;
		if (strcmp(st[i].result, "failed") == 0 || strcmp(st[i].result, "undo-failed") == 0)
			s->failures++;
	}
}

void cmd_work_metrics_busy(struct work_metrics *m)
{
	m->lock_busy++;
}

void cmd_work_metrics_done_elsewhere(struct work_metrics *m)
{
	m->done_elsewhere++;
}

void cmd_work_metrics_pass(struct work_metrics *m, size_t orgs, size_t due, size_t done,
			   size_t given_up)
{
	m->passes++;
	m->orgs = orgs;
	m->due = due;
	m->done = done;
	m->given_up = given_up;
}

void cmd_work_metrics_running(struct work_metrics *m, int running)
{
	m->running = running;
}

/* printf into a growing buffer */
struct text {
	char *s;
	size_t n, cap;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int k;

	for (;;) {
		va_start(ap, fmt);
		k = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0)
			abort();
		if (t->s && t->n + (size_t)k < t->cap) {
			t->n += (size_t)k;
			return;
		}
		t->cap = (t->cap + (size_t)k + 1) * 2;
		t->s = realloc(t->s, t->cap);
		if (!t->s)
			abort();
	}
}

static void head(struct text *t, const char *name, const char *type, const char *help)
{
	add(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The per-stage counters, in the order render() prints their values. */
static const struct {
	const char *name, *help;
} per_stage[] = {
	{ "ferry_work_stage_seconds_total", "Time spent in each stage's run." },
	{ "ferry_work_stage_bytes_total", "Bytes each stage reported moving." },
	{ "ferry_work_stage_runs_total", "Runs of each stage." },
	{ "ferry_work_stage_failures_total", "Failed runs (or undos) of each stage." },
};

static char *render(const struct work_metrics *m)
{
	struct text t = { NULL, 0, 0 };
	size_t i, k;

	head(&t, "ferry_work_runs_total", "counter", "Org pipelines this worker ran, by result.");
	add(&t, "ferry_work_runs_total{result=\"ok\"} %" PRIu64 "\n", m->runs_ok);
	add(&t, "ferry_work_runs_total{result=\"failed\"} %" PRIu64 "\n", m->runs_failed);
	add(&t, "ferry_work_runs_total{result=\"cancelled\"} %" PRIu64 "\n", m->runs_cancelled);
	head(&t, "ferry_work_failures_total", "counter", "Org pipelines that failed (retried in a later pass).");
	add(&t, "ferry_work_failures_total %" PRIu64 "\n", m->runs_failed);
	head(&t, "ferry_work_lock_busy_total", "counter",
	     "Orgs skipped because another worker held their lock (no wait: lock.max_wait=0).");
	add(&t, "ferry_work_lock_busy_total %" PRIu64 "\n", m->lock_busy);
	head(&t, "ferry_work_done_elsewhere_total", "counter",
	     "Orgs found recorded by another worker once their lock was taken.");
	add(&t, "ferry_work_done_elsewhere_total %" PRIu64 "\n", m->done_elsewhere);
	for (k = 0; k < sizeof(per_stage) / sizeof(per_stage[0]); k++) {
		head(&t, per_stage[k].name, "counter", per_stage[k].help);
		for (i = 0; i < m->n_st; i++) {
			const struct stage_sum *s = &m->st[i];

			add(&t, "%s{stage=\"%s\"} ", per_stage[k].name, s->name);
			if (k == 0)
				add(&t, "%.3f\n", s->seconds);
			else
				add(&t, "%" PRIu64 "\n", k == 1 ? s->bytes : k == 2 ? s->runs : s->failures);
		}
	}
	head(&t, "ferry_work_passes_total", "counter", "Passes over the org list.");
	add(&t, "ferry_work_passes_total %" PRIu64 "\n", m->passes);
	head(&t, "ferry_work_orgs", "gauge", "Orgs seen by the last pass, by state.");
	add(&t, "ferry_work_orgs{state=\"listed\"} %zu\n", m->orgs);
	add(&t, "ferry_work_orgs{state=\"due\"} %zu\n", m->due);
	add(&t, "ferry_work_orgs{state=\"done\"} %zu\n", m->done);
	add(&t, "ferry_work_orgs{state=\"given_up\"} %zu\n", m->given_up);
	head(&t, "ferry_work_running", "gauge", "Org pipelines running now.");
	add(&t, "ferry_work_running %d\n", m->running);
	head(&t, "ferry_work_workers", "gauge", "Pipelines this worker may run at once.");
	add(&t, "ferry_work_workers %d\n", m->workers);
	head(&t, "ferry_work_last_run_timestamp_seconds", "gauge", "When the last org pipeline ended.");
	add(&t, "ferry_work_last_run_timestamp_seconds %.3f\n", (double)m->last_run_ms / 1000.0);
	return t.s;
}

int cmd_work_metrics_write(struct work_metrics *m)
{
	char *text = render(m), *old, err[4400];
	int rc;

	/* not durable: a crash loses at most the last counts, which restart from 0 anyway */
	rc = ferry_file_replace(m->path, text, strlen(text), 0644, 0, err, sizeof(err));
	if (rc != 0)
		ferry_logf(FERRY_WARN, "work", "cannot write the metrics file", "error='%s'", err);
	pthread_mutex_lock(&m->mu);
	old = m->served;
	m->served = text;
	pthread_mutex_unlock(&m->mu);
	free(old);
	return rc;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct work_metrics *m = cls;
	static const char not_found[] = "not found: try /metrics\n";
	struct MHD_Response *resp;
	enum MHD_Result ret;
	unsigned int status = MHD_HTTP_OK;

	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return MHD_NO;              /* closes the connection */
	if (strcmp(url, "/metrics") == 0) {
		pthread_mutex_lock(&m->mu);
		resp = MHD_create_response_from_buffer(m->served ? strlen(m->served) : 0,
						       m->served ? m->served : (char *)"",
						       MHD_RESPMEM_MUST_COPY);
		pthread_mutex_unlock(&m->mu);
		if (resp)
			MHD_add_response_header(resp, "Content-Type",
						"text/plain; version=0.0.4; charset=utf-8");
	} else {
		status = MHD_HTTP_NOT_FOUND;
		resp = MHD_create_response_from_buffer(sizeof(not_found) - 1, (char *)not_found,
						       MHD_RESPMEM_PERSISTENT);
	}
	if (!resp)
		return MHD_NO;
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

int cmd_work_metrics_serve(struct work_metrics *m, int port, char *err, size_t errlen)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;

	if (port <= 0 || port > 65535) {
		snprintf(err, errlen, "bad port %d", port);
		return -1;
	}
	/* dual stack first (Fly's scraper comes over IPv6), IPv4 alone where there is none */
	m->httpd = MHD_start_daemon(flags | MHD_USE_DUAL_STACK, (uint16_t)port, NULL, NULL, answer,
				    m, MHD_OPTION_CONNECTION_LIMIT, 16u,
				    MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	if (!m->httpd)
		m->httpd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, answer, m,
					    MHD_OPTION_CONNECTION_LIMIT, 16u,
					    MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	if (!m->httpd) {
		snprintf(err, errlen, "cannot listen on port %d (in use, or not allowed)", port);
		return -1;
	}
	return 0;
}

void cmd_work_metrics_free(struct work_metrics *m)
{
	if (!m)
		return;
	if (m->httpd)
		MHD_stop_daemon(m->httpd);
	pthread_mutex_destroy(&m->mu);
	free(m->served);
	free(m->st);
	free(m);
}
