/* mmapfile.c - private file mappings: the file's bytes, an offset, the zeros past the end
 * of the file, writes that stay private, and the refusals (a pipe, a bad offset). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NAME "kps-mmap-test.bin"
#define SIZE 10000

static unsigned long checksum(const unsigned char *p, size_t n)
{
	unsigned long sum = 0;

	for (size_t i = 0; i < n; i++)
		sum = sum * 31 + p[i];
	return sum;
}

int main(void)
{
	unsigned char data[SIZE], back[SIZE];
	int fd, p[2];
	unsigned char *map, *map2;

	for (int i = 0; i < SIZE; i++)
		data[i] = (unsigned char)(i * 7 + i / 256);
	fd = open(NAME, O_RDWR | O_CREAT | O_TRUNC, 0644);
	write(fd, data, SIZE);
	map = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	printf("mapped: %s, same bytes: %s, checksum %lx\n", map == MAP_FAILED ? "no" : "yes",
	       memcmp(map, data, SIZE) ? "no" : "yes", checksum(map, SIZE));
	printf("past the end of the file: %d %d\n", map[SIZE], map[3 * 4096 - 1]);
	memset(map, 'X', 100);		/* private: the file does not change */
	pread(fd, back, SIZE, 0);
	printf("file after writing the mapping: %s\n", memcmp(back, data, SIZE) ? "changed" : "unchanged");
	map2 = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 8192);
	printf("at offset 8192: %s\n", memcmp(map2, data + 8192, SIZE - 8192) ? "wrong" : "right");
	munmap(map, 3 * 4096);
	munmap(map2, 4096);
	map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	printf("shared read-only mapping: %s\n", map != MAP_FAILED && !memcmp(map, data, 4096) ? "right" : "wrong");
	munmap(map, 4096);
	map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 100);
	printf("unaligned offset: %s (%s)\n", map == MAP_FAILED ? "refused" : "mapped", strerror(errno));
	pipe(p);
	map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, p[0], 0);
	printf("a pipe: %s (%s)\n", map == MAP_FAILED ? "refused" : "mapped", strerror(errno));
	close(fd);
	unlink(NAME);
	return 0;
}
