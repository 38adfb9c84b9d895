/* stdin.c - read, fstat and lseek on stdin (a file), write to stdout and stderr */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
	char line[256];
	struct stat st;
	int n = 0, fd;

	if (fstat(0, &st) == 0)
		printf("stdin: %ld bytes, regular %d\n", (long)st.st_size, S_ISREG(st.st_mode));
	while (fgets(line, sizeof(line), stdin)) {
		for (char *p = line; *p; p++)
			*p = toupper((unsigned char)*p);
		printf("%d: %s", ++n, line);
	}
	printf("lseek back to 6 -> %ld\n", (long)lseek(0, 6, SEEK_SET));
	n = read(0, line, 10);
	printf("read %d bytes: %.*s\n", n, n, line);
	fd = open("/nonexistent/file", O_RDONLY);
	printf("open /nonexistent/file -> %d (%s)\n", fd, strerror(errno));
	fflush(stdout);
	fprintf(stderr, "done on stderr\n");
	return 0;
}
