/* pages_internal.h: helpers the page engine's files share (pages, manifest, patch, fsclient). */
#ifndef FERRY_PAGES_INTERNAL_H
#define FERRY_PAGES_INTERNAL_H

/* libferry-internal: named pages_*, not exported (libferry.map), reachable from unit tests. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PAGES_SHA256_LEN 32                /* whole SHA-256: checksums of the file formats */

/* Fills err (when there is one) the printf way; the error convention of every page function. */
void pages_seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The manifest and undo formats store integers little-endian, whatever the host. */
static inline void pages_put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline void pages_put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t pages_get32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t pages_get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* A page size SQLite can use: a power of two from 512 to 65536. */
bool pages_valid_size(uint32_t ps);
/* SHA-256 of n bytes; all zeros if OpenSSL fails, which no stored checksum then matches. */
void pages_sha256(const void *a, size_t n, unsigned char out[PAGES_SHA256_LEN]);

#endif
