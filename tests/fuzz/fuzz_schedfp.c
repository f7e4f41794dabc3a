/* fuzz_schedfp.c: the schedule stage's fingerprint sidecar parser (plugins/schedule/sched_fp.c).
 * The sidecar ends with a SHA-256 of everything before it, so the harness wraps each input as
 * MAGIC, "key <K>", the input, then a correct sum line: the fields past the checksum are what
 * gets fuzzed. What loads must save and load again to the same fields. */
#include "../../plugins/schedule/sched_fp.c"

#include <stdio.h>
#include <unistd.h>

static const unsigned char fuzz_key[SCHED_FP_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };

static char *tmp_path(char *buf, size_t n, const char *tag)
{
	snprintf(buf, n, "/tmp/fuzz_schedfp.%d.%s", (int)getpid(), tag);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fp_buf b = { 0 };
	char kh[2 * SCHED_FP_LEN + 1], sh[2 * SCHED_FP_LEN + 1], p1[64], p2[64], err[256];
	unsigned char sum[SCHED_FP_LEN];
	struct sched_fp fp, again;
	FILE *f;

	hex(fuzz_key, SCHED_FP_LEN, kh);
	put(&b, FP_MAGIC, strlen(FP_MAGIC));
	putf(&b, "key %s", kh);
	put(&b, data, size);
	if (b.oom || sha256(b.p, b.n, sum) != 0) {
		free(b.p);
		return 0;
	}
	hex(sum, SCHED_FP_LEN, sh);
	putf(&b, "sum %s\n", sh);
	f = fopen(tmp_path(p1, sizeof(p1), "in"), "wb");
	if (!f || fwrite(b.p, 1, b.n, f) != b.n || fclose(f) != 0)
		abort();
	free(b.p);
	if (sched_fp_load(p1, fuzz_key, &fp) != 0)
		return 0;
	if (memcmp(fp.key, fuzz_key, SCHED_FP_LEN) || strlen(fp.warn) > fp.nwarn)
		abort();
	if (sched_fp_save(tmp_path(p2, sizeof(p2), "out"), &fp, err, sizeof(err)) != 0 ||
	    sched_fp_load(p2, fuzz_key, &again) != 0)
		abort();
	if (memcmp(fp.fkey, again.fkey, sizeof(fp.fkey)) || memcmp(fp.file, again.file, sizeof(fp.file)) ||
	    fp.size != again.size || memcmp(&fp.rep, &again.rep, sizeof(fp.rep)) ||
	    fp.nwarn != again.nwarn || memcmp(fp.warn, again.warn, fp.nwarn))
		abort();
	free(fp.warn);
	free(again.warn);
	unlink(p1);
	unlink(p2);
	return 0;
}
