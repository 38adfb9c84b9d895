/* files.c - files a program creates: O_CREAT/O_TRUNC/O_APPEND/O_EXCL, write and read
 * back, holes, ftruncate, stat, rename, unlink (also while open), mkdir/rmdir,
 * and close-on-exec (O_CLOEXEC, fcntl, dup3, pipe2) checked across an exec of itself.
 * Usage: files SELF (SELF: the path to exec); "files --exec-check FD..." is the second half. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAME "kps-files-test.txt"

static void show(const char *what, long ret)
{
	printf("%s -> %ld%s%s\n", what, ret, ret < 0 ? " " : "", ret < 0 ? strerror(errno) : "");
}

static long file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		return -1;
	return st.st_size;
}

static void cat(const char *path)
{
	char buf[256];
	FILE *f = fopen(path, "r");

	if (!f) {
		printf("cat %s: %s\n", path, strerror(errno));
		return;
	}
	while (fgets(buf, sizeof(buf), f))
		printf("  | %s", buf);
	fclose(f);
}

static void create_write_read(void)
{
	FILE *f = fopen(NAME, "w");
	int fd;

	for (int i = 0; i < 3; i++)
		fprintf(f, "line %d of a new file\n", i);
	fclose(f);
	printf("size after 3 lines: %ld\n", file_size(NAME));
	cat(NAME);
	f = fopen(NAME, "a");
	fprintf(f, "appended\n");
	fclose(f);
	printf("size after append: %ld\n", file_size(NAME));
	cat(NAME);
	errno = 0;
	fd = open(NAME, O_CREAT | O_EXCL | O_WRONLY, 0644);
	show("O_EXCL on an existing file", fd);
	fd = open(NAME, O_WRONLY | O_APPEND);
	printf("F_GETFL: %#x\n", fcntl(fd, F_GETFL));
	lseek(fd, 0, SEEK_SET);
	write(fd, "tail\n", 5);		/* O_APPEND: at the end all the same */
	fcntl(fd, F_SETFL, 0);
	lseek(fd, 0, SEEK_SET);
	write(fd, "LINE", 4);		/* no O_APPEND now: over the start */
	printf("F_GETFL: %#x\n", fcntl(fd, F_GETFL));
	close(fd);
	cat(NAME);
	fd = open(NAME, O_RDWR | O_TRUNC);
	printf("size after O_TRUNC: %ld\n", file_size(NAME));
	close(fd);
}

static void holes_and_truncate(void)
{
	int fd = open("sparse.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
	unsigned char buf[16];
	unsigned long sum = 0;
	char big[5000];

	lseek(fd, 10000, SEEK_SET);
	write(fd, "end", 3);
	printf("sparse size: %ld\n", file_size("sparse.bin"));
	lseek(fd, 4090, SEEK_SET);
	read(fd, buf, sizeof(buf));
	for (unsigned i = 0; i < sizeof(buf); i++)
		sum += buf[i];
	printf("hole reads as zeros: %s\n", sum ? "no" : "yes");
	for (unsigned i = 0; i < sizeof(big); i++)
		big[i] = 'a' + i % 26;
	for (int i = 0; i < 40; i++)		/* 200 KB over page boundaries */
		write(fd, big, sizeof(big));
	printf("after 40 writes: %ld\n", file_size("sparse.bin"));
	ftruncate(fd, 4100);
	printf("after ftruncate: %ld\n", file_size("sparse.bin"));
	ftruncate(fd, 6000);
	lseek(fd, 4095, SEEK_SET);
	memset(buf, 0xff, sizeof(buf));
	{
		ssize_t n = read(fd, buf, 8);

		printf("read across the truncation point: %zd bytes, [%d %d %d]\n", n, buf[0], buf[4], buf[7]);
	}
	close(fd);
	unlink("sparse.bin");
}

static void rename_unlink_dirs(void)
{
	char buf[64];
	int fd, n;

	show("rename", rename(NAME, "renamed.txt"));
	show("stat of the old name", file_size(NAME));
	fd = open("renamed.txt", O_RDWR);
	write(fd, "still here after unlink\n", 24);
	show("unlink while open", unlink("renamed.txt"));
	show("open after unlink", open("renamed.txt", O_RDONLY));
	lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	printf("the open file reads: %s", buf);
	close(fd);
	show("mkdir", mkdir("kps-dir", 0755));
	show("mkdir again", mkdir("kps-dir", 0755));
	fd = open("kps-dir/inner.txt", O_WRONLY | O_CREAT, 0644);
	write(fd, "inner\n", 6);
	close(fd);
	show("rmdir of a full directory", rmdir("kps-dir"));
	show("open under a missing directory", open("kps-nodir/x", O_WRONLY | O_CREAT, 0644));
	cat("./kps-dir/../kps-dir/./inner.txt");
	show("unlink inner", unlink("kps-dir/inner.txt"));
	show("rmdir", rmdir("kps-dir"));
	show("unlink of a missing file", unlink("kps-dir/inner.txt"));
	fd = open("/tmp/kps-files-tmp", O_RDWR | O_CREAT | O_TRUNC, 0644);
	show("write in /tmp", write(fd, "tmp\n", 4));
	close(fd);
	show("unlink in /tmp", unlink("/tmp/kps-files-tmp"));
}

/* Names and pages are reused: many files come and go. */
static void many_files(void)
{
	char name[32];
	int ok = 0;

	for (int i = 0; i < 300; i++) {
		int fd;

		snprintf(name, sizeof(name), "kps-many-%d", i);
		fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd < 0)
			break;
		ok += write(fd, name, strlen(name)) == (ssize_t)strlen(name);
		close(fd);
		ok += file_size(name) == (long)strlen(name);
		ok += unlink(name) == 0;
	}
	printf("300 files created, checked and removed: %d of 900 steps\n", ok);
}

/* After exec: which descriptors survived? */
static int exec_check(int argc, char **argv)
{
	for (int i = 2; i < argc; i++) {
		int fd = atoi(argv[i]);

		printf("after exec: fd %d %s\n", fd, fcntl(fd, F_GETFD) < 0 ? "closed" : "open");
	}
	return 0;
}

static void close_on_exec(const char *self)
{
	int p[2], q[2], f, g, d, status;
	char a[5][8];

	pipe2(p, O_CLOEXEC);
	pipe(q);
	f = open("cloexec.txt", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	g = dup3(f, 12, 0);
	fcntl(g, F_SETFD, FD_CLOEXEC);
	d = fcntl(q[0], F_DUPFD_CLOEXEC, 13);
	printf("F_GETFD: pipe2 %d, pipe %d, open %d, dup3 %d, F_DUPFD_CLOEXEC %d (fd %d)\n",
	       fcntl(p[0], F_GETFD), fcntl(q[0], F_GETFD), fcntl(f, F_GETFD), fcntl(g, F_GETFD),
	       fcntl(d, F_GETFD), d);
	fcntl(g, F_SETFD, 0);
	show("dup3 of the same fd", dup3(f, f, 0));
	snprintf(a[0], 8, "%d", p[0]);
	snprintf(a[1], 8, "%d", q[1]);
	snprintf(a[2], 8, "%d", f);
	snprintf(a[3], 8, "%d", g);
	snprintf(a[4], 8, "%d", d);
	fflush(stdout);
	if (fork() == 0) {
		execl(self, "files", "--exec-check", a[0], a[1], a[2], a[3], a[4], (char *)NULL);
		_exit(127);
	}
	wait(&status);
	printf("exec child exited %d\n", WEXITSTATUS(status));
	unlink("cloexec.txt");
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--exec-check"))
		return exec_check(argc, argv);
	umask(022);
	create_write_read();
	holes_and_truncate();
	rename_unlink_dirs();
	many_files();
	if (argc > 1)
		close_on_exec(argv[1]);
	printf("done\n");
	return 0;
}
