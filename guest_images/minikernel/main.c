/*
 * main.c - start_kernel(), the idle task, init and the workload.
 *
 * init (pid 1) runs the kprobes smoke test and the fix-up self test,
 * then starts five tasks that interleave inside the probed functions:
 *
 *   opener1  opens/reads /etc/motd and /etc/passwd, then walks a path
 *            with path_lookup_recursive() (5 nested frames)
 *   opener2  opens /etc/passwd, /nonexistent (-ENOENT), /etc/hostname,
 *            then does O_DIRECT I/O on /dev/sda (__blockdev_direct_IO)
 *   netd     reads /etc/hosts and sends packets with ip_queue_xmit()
 *   execer   opens /etc/motd, then do_execve("/bin/hello") -- its comm
 *            becomes "hello"
 *   quitter  reads /dev/oops: vfs_read() calls do_exit() and never
 *            returns for it
 *
 * Every task's first open misses the dentry cache and sleeps inside
 * do_sys_open(), so several tasks are inside it at once.  init reaps
 * them all with sys_wait4() and halts.
 */
#include "sched.h"
#include "fs.h"
#include "net.h"
#include "fixups.h"

void smoke_test(void);
long sys_execve(const char *name, char **argv, char **envp, struct pt_regs *regs);
extern unsigned long dcache_hits, dcache_misses, path_walk_hash;
extern int nr_threads;

#define WNOWAIT 0x01000000

extern char _text[], _etext[], _end[];

/* ------------------------------------------------------------------ */
/* helpers shared by the tasks */

/* Print the first line of a buffer. */
static void print_first_line(const char *who, const char *what, const char *buf, long n)
{
	int len = 0;

	while (len < n && buf[len] != '\n')
		len++;
	printk("[%s] read %s: %ld bytes, \"%.*s\"\n", who, what, n, len, buf);
}

/* open + read + close, printing each step */
__kfunc long cat_file(const char *who, const char *path)
{
	char buf[160];
	long fd, n;

	fd = sys_open(path, O_RDONLY, 0);
	printk("[%s] open %s -> fd %ld\n", who, path, fd);
	if (fd < 0)
		return fd;
	n = sys_read(fd, buf, sizeof(buf));
	if (n >= 0)
		print_first_line(who, path, buf, n);
	else
		printk("[%s] read %s -> %ld\n", who, path, n);
	sys_close(fd);
	return n;
}

/* ------------------------------------------------------------------ */
/* the tasks */

__kfunc int opener1_main(void *arg)
{
	const char *path = arg;
	long depth;

	daemonize("opener1");
	cat_file("opener1", "/etc/motd");
	cat_file("opener1", "/etc/passwd");
	depth = path_lookup_recursive(path, 1);
	printk("[opener1] path_lookup_recursive(\"%s\") -> %ld components, hash 0x%08lx\n",
	       path, depth, path_walk_hash & 0xffffffffUL);
	cat_file("opener1", path);
	return 0;
}

static char dio_buf[4096] __aligned(512);

__kfunc int opener2_main(void *arg)
{
	long fd, n;

	(void)arg;
	daemonize("opener2");
	cat_file("opener2", "/etc/passwd");
	cat_file("opener2", "/nonexistent");
	cat_file("opener2", "/etc/hostname");

	fd = sys_open("/dev/sda", O_RDWR | O_DIRECT, 0);
	printk("[opener2] open /dev/sda O_DIRECT -> fd %ld\n", fd);
	if (fd < 0)
		return 1;
	for (int i = 0; i < (int)sizeof(dio_buf); i++)
		dio_buf[i] = "opener2 wrote this sector. "[i % 27];
	n = sys_pwrite64(fd, dio_buf, sizeof(dio_buf), 4096);
	printk("[opener2] O_DIRECT write %d bytes at offset 4096 -> %ld\n",
	       (int)sizeof(dio_buf), n);
	memset(dio_buf, 0, sizeof(dio_buf));
	n = sys_pread64(fd, dio_buf, sizeof(dio_buf), 4096);
	printk("[opener2] O_DIRECT read %d bytes at offset 4096 -> %ld: \"%.26s\"\n",
	       (int)sizeof(dio_buf), n, dio_buf);
	n = sys_pread64(fd, dio_buf, 512, 0);
	printk("[opener2] O_DIRECT read sector 0 -> %ld: \"%s\" signature %02x%02x\n",
	       n, dio_buf, (u8)dio_buf[510], (u8)dio_buf[511]);
	n = sys_pread64(fd, dio_buf, 100, 0);
	printk("[opener2] O_DIRECT read of 100 bytes -> %ld (must be sector aligned)\n", n);
	sys_close(fd);
	return 0;
}

static const char *const http_lines[] = {
	"GET /index.html HTTP/1.0\r\nHost: peer\r\n\r\n",
	"GET /kprobes.txt HTTP/1.0\r\nHost: peer\r\nUser-Agent: netd/2.6.12\r\n"
	"Accept: text/plain\r\nAccept-Language: en\r\nConnection: close\r\n\r\n",
	"POST /log HTTP/1.0\r\nHost: peer\r\nContent-Type: text/plain\r\n"
	"Content-Length: 96\r\n\r\n"
	"jprobe: do_fork, kretprobe: do_sys_open, kprobe: schedule; "
	"all handlers ran, no missed probes.\n",
	"GET /favicon.ico HTTP/1.0\r\nHost: peer\r\n\r\n",
};

__kfunc int send_packet(struct sock *sk, const char *payload)
{
	unsigned int len = strlen(payload);
	struct sk_buff *skb = alloc_skb(len + 64, 0);

	if (!skb)
		return -ENOMEM;
	skb_reserve(skb, 64);
	memcpy(skb_put(skb, len), payload, len);
	return tcp_transmit_skb(sk, skb);
}

__kfunc int netd_main(void *arg)
{
	struct sock peer = {
		.saddr = IPV4(10, 0, 0, 1), .daddr = IPV4(10, 0, 0, 2),
		.sport = 1024, .dport = 80, .protocol = IPPROTO_TCP, .id = 0x100,
	};
	struct sock local = {
		.saddr = IPV4(127, 0, 0, 1), .daddr = IPV4(127, 0, 0, 1),
		.sport = 1025, .dport = 25, .protocol = IPPROTO_TCP, .id = 0x200,
	};
	struct sock far = {
		.saddr = IPV4(10, 0, 0, 1), .daddr = IPV4(192, 168, 1, 1),
		.sport = 1026, .dport = 80, .protocol = IPPROTO_UDP, .id = 0x300,
	};
	int ret;

	(void)arg;
	daemonize("netd");
	cat_file("netd", "/etc/hosts");
	for (unsigned int round = 0; round < 2; round++) {
		for (unsigned int i = 0; i < ARRAY_SIZE(http_lines); i++) {
			ret = send_packet(&peer, http_lines[i]);
			printk("[netd] ip_queue_xmit to 10.0.0.2 (%u byte payload) -> %d\n",
			       (unsigned int)strlen(http_lines[i]), ret);
		}
	}
	ret = send_packet(&local, "HELO minikernel\r\n");
	printk("[netd] ip_queue_xmit to 127.0.0.1 -> %d\n", ret);
	ret = send_packet(&far, "ping");
	printk("[netd] ip_queue_xmit to 192.168.1.1 -> %d (no route)\n", ret);
	printk("[netd] eth0: %lu packets, %lu bytes, last fcs 0x%08x; lo: %lu packets\n",
	       eth0_dev.stats.tx_packets, eth0_dev.stats.tx_bytes, eth0_dev.fcs_last,
	       loopback_dev.stats.tx_packets);
	return 0;
}

/* The program behind /bin/hello: entered through exec, not called. */
__kfunc int hello_main(int argc, char **argv)
{
	char buf[96];
	long fd, n;
	int len;

	len = snprintf(buf, sizeof(buf), "[%s] pid %d: hello from /bin/hello, argc=%d argv[1]=%s\n",
		       current->comm, current->pid, argc, argc > 1 ? argv[1] : "(none)");
	sys_write(1, buf, len);
	fd = sys_open("/etc/hostname", O_RDONLY, 0);
	n = fd >= 0 ? sys_read(fd, buf, sizeof(buf)) : fd;
	if (n > 0)
		print_first_line(current->comm, "/etc/hostname", buf, n);
	if (fd >= 0)
		sys_close(fd);
	return 0;
}

__kfunc int execer_main(void *arg)
{
	char *argv[] = { "/bin/hello", "--from=execer", NULL };
	char *envp[] = { "HOME=/", "TERM=linux", NULL };
	struct pt_regs regs;
	long ret;

	(void)arg;
	daemonize("execer");
	cat_file("execer", "/etc/motd");
	printk("[execer] pid %d: execve(\"/bin/hello\")\n", current->pid);
	memset(&regs, 0, sizeof(regs));
	ret = sys_execve("/bin/hello", argv, envp, &regs);
	if (ret == 0)
		ret_from_execve(&regs);		/* into hello_main(); never returns */
	printk("[execer] execve failed: %ld\n", ret);
	return 1;
}

__kfunc int quitter_main(void *arg)
{
	char buf[16];
	long fd, n;

	(void)arg;
	daemonize("quitter");
	cat_file("quitter", "/etc/hostname");
	fd = sys_open("/dev/oops", O_RDONLY, 0);
	printk("[quitter] open /dev/oops -> fd %ld, reading it\n", fd);
	n = sys_read(fd, buf, sizeof(buf));	/* vfs_read() -> do_exit() */
	printk("[quitter] BUG: still alive after read -> %ld\n", n);
	return 0;
}

/* ------------------------------------------------------------------ */
/* init */

/* fork a kernel thread the way user space would: sys_clone() */
__kfunc long clone_thread(int (*fn)(void *), void *arg)
{
	struct pt_regs regs;

	memset(&regs, 0, sizeof(regs));
	regs.rdi = (unsigned long)fn;
	regs.rsi = (unsigned long)arg;
	regs.orig_rax = -1;
	regs.rip = (unsigned long)child_rip;
	regs.cs = __KERNEL_CS;
	regs.ss = __KERNEL_DS;
	regs.eflags = X86_EFLAGS_IF | 0x2;
	return sys_clone(CLONE_VM | CLONE_FS | SIGCHLD, 0, NULL, NULL, &regs);
}

static void list_tasks(const char *when)
{
	struct task_struct *p;
	unsigned long flags;
	char line[200];
	int n;

	n = snprintf(line, sizeof(line), "init: tasks %s:", when);
	spin_lock_irqsave(&tasklist_lock, flags);
	for (p = &init_task; p && n < (int)sizeof(line) - 24; p = p->next_task)
		n += snprintf(line + n, sizeof(line) - n, " %d/%s", p->pid, p->comm);
	spin_unlock_irqrestore(&tasklist_lock, flags);
	printk("%s\n", line);
}

__kfunc int init(void *unused)
{
	static const char walk_path[] = "/usr/lib/modules/2.6.12/modules.dep";
	int children = 0;
	long pid;

	(void)unused;
	daemonize("init");
	printk("init: pid %d running, jiffies %lu\n", current->pid, jiffies);

#ifdef CONFIG_USERSPACE
	if (boot_params.nr_programs && !boot_params.keep_workload) {
		run_user_programs();
		printk("minikernel: all tasks reaped, halting\n");
		machine_halt();
	}
#endif
	smoke_test();
	fixup_selftest();

	pid = kernel_thread(opener1_main, (void *)walk_path, CLONE_FS | CLONE_FILES | SIGCHLD);
	printk("init: kernel_thread opener1 -> pid %ld\n", pid);
	children += pid > 0;
	pid = kernel_thread(opener2_main, NULL, CLONE_FS | CLONE_FILES | SIGCHLD);
	printk("init: kernel_thread opener2 -> pid %ld\n", pid);
	children += pid > 0;
	pid = clone_thread(netd_main, NULL);
	printk("init: sys_clone netd -> pid %ld\n", pid);
	children += pid > 0;
	pid = kernel_thread(execer_main, NULL, CLONE_FS | SIGCHLD);
	printk("init: kernel_thread execer -> pid %ld\n", pid);
	children += pid > 0;
	pid = clone_thread(quitter_main, NULL);
	printk("init: sys_clone quitter -> pid %ld\n", pid);
	children += pid > 0;
	list_tasks("started");

	while (children > 0) {
		char comm[TASK_COMM_LEN] = "?";
		struct task_struct *p;
		int status = 0;

		pid = sys_wait4(-1, &status, WNOWAIT, NULL);	/* peek */
		if (pid < 0)
			break;
		p = find_task_by_pid(pid);
		if (p)
			strlcpy(comm, p->comm, sizeof(comm));
		pid = sys_wait4(pid, &status, 0, NULL);		/* reap */
		printk("init: reaped pid %ld (%s), exit code %d\n", pid, comm, status);
		children--;
	}
	list_tasks("left");
	printk("init: %lu ticks, %lu dcache hits, %lu misses\n",
	       jiffies, dcache_hits, dcache_misses);
	printk("minikernel: all tasks reaped, halting\n");
	machine_halt();
	return 0;
}

/* ------------------------------------------------------------------ */

__kfunc void rest_init(void)
{
	kernel_thread(init, NULL, CLONE_FS | CLONE_SIGHAND);
	preempt_enable_no_resched();
	cpu_idle();
}

__kfunc void start_kernel(void)
{
	struct thread_info *ti = &init_thread_union.thread_info;

	ti->task = &init_task;
	ti->flags = 0;
	ti->cpu = 0;
	ti->preempt_count = 1;		/* preemption off until rest_init() */
	init_files(init_task.files);

#ifdef CONFIG_SMP
	printk("minikernel 2.6.12-kprobe-shell: x86_64 SMP, %d of %d cpus, HZ by instruction count\n",
	       smp_detect_cpus(), NR_CPUS);
#else
	printk("minikernel 2.6.12-kprobe-shell: x86_64, 1 of %d cpus, HZ by instruction count\n",
	       NR_CPUS);
#endif
	printk("minikernel: image %p-%p, text %p-%p, task_struct %u bytes, stacks %u bytes\n",
	       _text, _end, _text, _etext, task_struct_layout.size, task_struct_layout.stack_size);
	trap_init();
#ifdef CONFIG_USERSPACE
	paging_init();
	cpu_init_user();
#endif
	sched_init();
	time_init();
	vfs_init();
	blkdev_init();
	net_init();
#ifdef CONFIG_SMP
	smp_boot_cpus();
#endif
	rest_init();
}
