/*
 * lib.c - string and memory helpers (lib/string.c), crc32.
 *
 * gcc may emit calls to memcpy/memset/memmove/memcmp for structure
 * copies even in freestanding code, so these must exist.  The loops are
 * kept opaque to the optimiser so it cannot turn them back into calls
 * to themselves.
 */
#include "kernel.h"

#define __lib __attribute__((noipa, used, optimize("no-tree-loop-distribute-patterns")))

__lib void *memset(void *s, int c, size_t n)
{
	unsigned char *p = s;
	unsigned long v = (unsigned char)c;

	v |= v << 8;
	v |= v << 16;
	v |= v << 32;
	while (n >= 8 && !((unsigned long)p & 7)) {
		*(unsigned long *)p = v;
		p += 8;
		n -= 8;
	}
	while (n--)
		*p++ = (unsigned char)c;
	return s;
}

__lib void *memcpy(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (!(((unsigned long)d | (unsigned long)s) & 7)) {
		while (n >= 8) {
			*(unsigned long *)d = *(const unsigned long *)s;
			d += 8;
			s += 8;
			n -= 8;
		}
	}
	while (n--)
		*d++ = *s++;
	return dst;
}

__lib void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d <= s || d >= s + n)
		return memcpy(dst, src, n);
	while (n--)
		d[n] = s[n];
	return dst;
}

__lib int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;

	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

__lib size_t strlen(const char *s)
{
	const char *p = s;

	while (*p)
		p++;
	return p - s;
}

__lib size_t strnlen(const char *s, size_t max)
{
	size_t n = 0;

	while (n < max && s[n])
		n++;
	return n;
}

__lib int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return (unsigned char)*a - (unsigned char)*b;
}

__lib int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (unsigned char)*a - (unsigned char)*b;
		if (!*a)
			break;
	}
	return 0;
}

__lib char *strcpy(char *dst, const char *src)
{
	char *d = dst;

	while ((*d++ = *src++))
		;
	return dst;
}

__lib size_t strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size) {
		size_t n = len >= size ? size - 1 : len;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

__lib const char *kbasename(const char *path)
{
	const char *tail = path;

	for (; *path; path++)
		if (*path == '/')
			tail = path + 1;
	return tail;
}

/* bitwise little-endian CRC32 (lib/crc32.c, CRC_LE_BITS == 1) */
__lib u32 crc32_le(u32 crc, const u8 *p, size_t len)
{
	int i;

	while (len--) {
		crc ^= *p++;
		for (i = 0; i < 8; i++)
			crc = (crc >> 1) ^ ((crc & 1) ? 0xedb88320 : 0);
	}
	return crc;
}
