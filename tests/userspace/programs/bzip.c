/* bzip.c - Debian's libbz2 (libbz2-dev's static archive): compress and decompress */
#include <bzlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	unsigned int n = 30000, clen = n + n / 100 + 600, dlen = n;
	char *text = malloc(n), *packed = malloc(clen), *back = malloc(n);
	unsigned long seed = 12345, sum = 0;
	static const char *words[] = { "kprobe ", "jprobe ", "kretprobe ", "trampoline ", "int3\n" };
	int err;

	for (unsigned int i = 0; i < n;) {
		const char *w;

		seed = seed * 6364136223846793005UL + 1442695040888963407UL;
		w = words[(seed >> 33) % 5];
		for (; *w && i < n; w++)
			text[i++] = *w;
	}
	err = BZ2_bzBuffToBuffCompress(packed, &clen, text, n, 9, 0, 30);
	printf("compress: %d, %u -> %u bytes\n", err, n, clen);
	err = BZ2_bzBuffToBuffDecompress(back, &dlen, packed, clen, 0, 0);
	for (unsigned int i = 0; i < clen; i++)
		sum = sum * 33 + (unsigned char)packed[i];
	printf("decompress: %d, %u bytes, %s, checksum %lx, libbz2 %s\n", err, dlen,
	       dlen == n && !memcmp(text, back, n) ? "identical" : "DIFFERENT", sum, BZ2_bzlibVersion());
	return 0;
}
