/* fsx.c: randomised file operations on a file under test, checked against a reference file
 * on local disk (in the spirit of fsx); reproducible from a seed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_KEEP 64

enum op { OP_WRITE, OP_READ, OP_TRUNC, OP_FSYNC, OP_REOPEN, OP_CHECK };
static const char *const op_name[] = { "write", "read", "truncate", "fsync", "reopen", "check" };

struct logent {
	long n;
	enum op op;
	uint64_t off;
	uint64_t len;
};

struct fsx {
	const char *test_path;
	const char *ref_path;
	int tfd;
	int rfd;
	uint64_t max_len;
	uint64_t max_io;
	uint64_t size;                      /* reference size */
	uint64_t rng;
	bool drop_cache;                    /* drop the page cache on reopen */
	struct logent log[LOG_KEEP];
	long nlog;
	char *buf1;
	char *buf2;
};

static uint64_t rnd(struct fsx *f)
{
	/* xorshift64*: small, fast and the same on every machine */
	f->rng ^= f->rng >> 12;
	f->rng ^= f->rng << 25;
	f->rng ^= f->rng >> 27;
	return f->rng * 2685821657736338717ull;
}

static uint64_t rnd_below(struct fsx *f, uint64_t n)
{
	return n ? rnd(f) % n : 0;
}

static void record(struct fsx *f, long n, enum op op, uint64_t off, uint64_t len)
{
	struct logent *e = &f->log[f->nlog++ % LOG_KEEP];

	e->n = n;
	e->op = op;
	e->off = off;
	e->len = len;
}

static void dump_log(const struct fsx *f)
{
	long first = f->nlog > LOG_KEEP ? f->nlog - LOG_KEEP : 0;

	fprintf(stderr, "last operations:\n");
	for (long i = first; i < f->nlog; i++) {
		const struct logent *e = &f->log[i % LOG_KEEP];

		fprintf(stderr, "  #%ld %s off=%" PRIu64 " len=%" PRIu64 "\n", e->n, op_name[e->op],
			e->off, e->len);
	}
}

static int die(struct fsx *f, const char *what, long n)
{
	fprintf(stderr, "fsx: op #%ld: %s\n", n, what);
	dump_log(f);
	return 1;
}

static int full_pread(int fd, char *buf, size_t len, uint64_t off, size_t *got)
{
	*got = 0;
	while (*got < len) {
		ssize_t r = pread(fd, buf + *got, len - *got, (off_t)(off + *got));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		*got += (size_t)r;
	}
	return 0;
}

static int full_pwrite(int fd, const char *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t w = pwrite(fd, buf + done, len - done, (off_t)(off + done));

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)w;
	}
	return 0;
}

static int compare(struct fsx *f, uint64_t off, uint64_t len, long n)
{
	size_t g1, g2;
	char msg[256];

	if (full_pread(f->tfd, f->buf1, len, off, &g1) != 0) {
		snprintf(msg, sizeof(msg), "read of test file failed at %" PRIu64 ": %s", off,
			 strerror(errno));
		return die(f, msg, n);
	}
	if (full_pread(f->rfd, f->buf2, len, off, &g2) != 0)
		return die(f, "read of reference failed", n);
	if (g1 != g2) {
		snprintf(msg, sizeof(msg), "short read at %" PRIu64 ": got %zu bytes, want %zu", off,
			 g1, g2);
		return die(f, msg, n);
	}
	if (memcmp(f->buf1, f->buf2, g1) != 0) {
		size_t i = 0;

		while (f->buf1[i] == f->buf2[i])
			i++;
		snprintf(msg, sizeof(msg),
			 "mismatch at byte %" PRIu64 ": got 0x%02x, want 0x%02x (read off=%" PRIu64
			 " len=%" PRIu64 ")", off + i, (unsigned char)f->buf1[i],
			 (unsigned char)f->buf2[i], off, len);
		return die(f, msg, n);
	}
	return 0;
}

static int check_all(struct fsx *f, long n)
{
	struct stat st;
	char msg[128];

	if (fstat(f->tfd, &st) != 0)
		return die(f, "fstat failed", n);
	if ((uint64_t)st.st_size != f->size) {
		snprintf(msg, sizeof(msg), "size %lld, want %" PRIu64, (long long)st.st_size, f->size);
		return die(f, msg, n);
	}
	for (uint64_t off = 0; off < f->size; off += f->max_io) {
		uint64_t len = f->size - off < f->max_io ? f->size - off : f->max_io;

		if (compare(f, off, len, n))
			return 1;
	}
	return 0;
}

static int reopen(struct fsx *f, long n)
{
	char msg[256];

	if (close(f->tfd) != 0) {
		snprintf(msg, sizeof(msg), "close (commit) failed: %s", strerror(errno));
		return die(f, msg, n);
	}
	f->tfd = open(f->test_path, O_RDWR);
	if (f->tfd < 0) {
		snprintf(msg, sizeof(msg), "reopen failed: %s", strerror(errno));
		return die(f, msg, n);
	}
	if (f->drop_cache)
		posix_fadvise(f->tfd, 0, 0, POSIX_FADV_DONTNEED);
	return 0;
}

static void usage(void)
{
	printf("usage: fsx [-s SEED] [-n OPS] [-l MAXLEN] [-i MAXIO] [-F N] [-R N] [-k] TESTFILE REFFILE\n"
	       "  -s SEED    random seed (default 1)\n"
	       "  -n OPS     operations (default 10000)\n"
	       "  -l MAXLEN  largest file size in bytes (default 1048576)\n"
	       "  -i MAXIO   largest read/write in bytes (default 65536)\n"
	       "  -F N       fsyncs per 1000 operations (default 50)\n"
	       "  -R N       close+reopens per 1000 operations (default 50)\n"
	       "  -k         keep the page cache on reopen (default: drop it)\n"
	       "Both files are created/truncated. Exit 0 when every check passed.\n");
}

int main(int argc, char **argv)
{
	struct fsx f = { .max_len = 1 << 20, .max_io = 64 << 10, .drop_cache = true };
	uint64_t seed = 1, counts[6] = { 0 }, pm_sync = 50, pm_reopen = 50;
	long ops = 10000;
	char msg[256];
	int c, rc = 1;

	while ((c = getopt(argc, argv, "s:n:l:i:F:R:kh")) != -1) {
		switch (c) {
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'n': ops = strtol(optarg, NULL, 0); break;
		case 'l': f.max_len = strtoull(optarg, NULL, 0); break;
		case 'i': f.max_io = strtoull(optarg, NULL, 0); break;
		case 'k': f.drop_cache = false; break;
		case 'F': pm_sync = strtoull(optarg, NULL, 0); break;
		case 'R': pm_reopen = strtoull(optarg, NULL, 0); break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if (argc - optind != 2 || !f.max_len || !f.max_io || pm_sync + pm_reopen > 500) {
		usage();
		return 2;
	}
	f.test_path = argv[optind];
	f.ref_path = argv[optind + 1];
	f.rng = seed * 0x9E3779B97F4A7C15ull + 1;
	f.buf1 = malloc(f.max_io);
	f.buf2 = malloc(f.max_io);
	if (!f.buf1 || !f.buf2)
		return 2;
	f.tfd = open(f.test_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	f.rfd = open(f.ref_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f.tfd < 0 || f.rfd < 0) {
		fprintf(stderr, "fsx: cannot open '%s' or '%s': %s\n", f.test_path, f.ref_path,
			strerror(errno));
		return 2;
	}
	for (long n = 1; n <= ops; n++) {
		/* per mille: check 20, fsync and reopen as asked, the rest 4:4:1 write:read:trunc */
		uint64_t r = rnd_below(&f, 1000), off, len, rest = 980 - pm_sync - pm_reopen;
		enum op op = r < 20 ? OP_CHECK : r < 20 + pm_sync ? OP_FSYNC :
			     r < 20 + pm_sync + pm_reopen ? OP_REOPEN :
			     r < 20 + pm_sync + pm_reopen + rest * 4 / 9 ? OP_WRITE :
			     r < 20 + pm_sync + pm_reopen + rest * 8 / 9 ? OP_READ : OP_TRUNC;

		counts[op]++;
		switch (op) {
		case OP_WRITE:
			off = rnd_below(&f, f.max_len);
			len = 1 + rnd_below(&f, f.max_io);
			if (off + len > f.max_len)
				len = f.max_len - off;
			for (uint64_t i = 0; i < len; i++)
				f.buf2[i] = (char)(rnd(&f) >> 56);
			record(&f, n, op, off, len);
			if (full_pwrite(f.tfd, f.buf2, len, off) != 0) {
				snprintf(msg, sizeof(msg), "write failed: %s", strerror(errno));
				goto out_die;
			}
			if (full_pwrite(f.rfd, f.buf2, len, off) != 0)
				goto out_die_ref;
			if (off + len > f.size)
				f.size = off + len;
			break;
		case OP_READ:
			off = rnd_below(&f, f.size + 4096);
			len = 1 + rnd_below(&f, f.max_io);
			record(&f, n, op, off, len);
			if (compare(&f, off, len, n))
				goto out;
			break;
		case OP_TRUNC:
			len = rnd_below(&f, f.max_len + 1);
			record(&f, n, op, 0, len);
			if (ftruncate(f.tfd, (off_t)len) != 0) {
				snprintf(msg, sizeof(msg), "ftruncate failed: %s", strerror(errno));
				goto out_die;
			}
			if (ftruncate(f.rfd, (off_t)len) != 0)
				goto out_die_ref;
			f.size = len;
			break;
		case OP_FSYNC:
			record(&f, n, op, 0, f.size);
			if (fsync(f.tfd) != 0) {
				snprintf(msg, sizeof(msg), "fsync failed: %s", strerror(errno));
				goto out_die;
			}
			break;
		case OP_REOPEN:
			record(&f, n, op, 0, f.size);
			if (reopen(&f, n))
				goto out;
			break;
		case OP_CHECK:
			record(&f, n, op, 0, f.size);
			if (check_all(&f, n))
				goto out;
			break;
		}
		continue;
out_die_ref:
		snprintf(msg, sizeof(msg), "reference file failed: %s", strerror(errno));
out_die:
		die(&f, msg, n);
		goto out;
	}
	if (reopen(&f, ops + 1) || check_all(&f, ops + 1))
		goto out;
	printf("fsx: seed=%" PRIu64 " ops=%ld ok: write=%" PRIu64 " read=%" PRIu64
	       " truncate=%" PRIu64 " fsync=%" PRIu64 " reopen=%" PRIu64 " check=%" PRIu64
	       " final_size=%" PRIu64 "\n", seed, ops, counts[0], counts[1], counts[2], counts[3],
	       counts[4], counts[5], f.size);
	rc = 0;
out:
	close(f.tfd);
	close(f.rfd);
	free(f.buf1);
	free(f.buf2);
	return rc;
}
