/*
 * uspace.h - user processes (CONFIG_USERSPACE builds only): address
 * spaces (include/asm-x86_64/pgtable.h, mm/memory.c shaped), the user
 * entry gates and the boot parameters the machine fills in.
 */
#ifndef _MK_USPACE_H
#define _MK_USPACE_H

#include "sched.h"

#define PAGE_SIZE	4096UL
#define PAGE_MASK	(~(PAGE_SIZE - 1))
#define PAGE_ALIGN(x)	(((x) + PAGE_SIZE - 1) & PAGE_MASK)

#define _PAGE_PRESENT	0x001UL
#define _PAGE_RW	0x002UL
#define _PAGE_USER	0x004UL
#define _PAGE_PSE	0x080UL
#define _PAGE_NX	(1UL << 63)	/* no instruction fetch (EFER.NXE on) */
#define PTE_ADDR_MASK	0x000ffffffffff000UL

/* mmap/mprotect protections, and the personality flag that adds PROT_EXEC
 * to PROT_READ (include/linux/personality.h) */
#define PROT_READ	0x1
#define PROT_WRITE	0x2
#define PROT_EXEC	0x4
#define PROT_SEM	0x8
#define PROT_GROWSDOWN	0x01000000
#define PROT_GROWSUP	0x02000000
#define READ_IMPLIES_EXEC	0x0400000

/*
 * User virtual addresses.  The kernel lives low and identity-mapped
 * (its image below 4 MiB, the machine's pages at 1 GiB, RAM at 2 GiB),
 * so user space is [4 MiB, 1 GiB) and [4 GiB, 128 TiB).
 */
#define USER_LOW_START	0x400000UL
#define USER_LOW_END	0x40000000UL
#define USER_HIGH_START	0x100000000UL
#define TASK_SIZE	0x800000000000UL
#define STACK_TOP	0x7ffffffff000UL
#define STACK_PAGES	64		/* 256 KiB, mapped at exec */
#define MMAP_BASE	0x7f0000000000UL
#define ELF_ET_DYN_BASE	0x555555554000UL

/*
 * The machine's code pages (kprobe_shell/machine/layout.py, RESERVED_BASE
 * to DETOUR_END): its kretprobe stub, the probes' instruction slots and
 * the optimized probes' detours.  The only part of the direct mapping
 * (1-4 GiB) the CPU runs code from; 2 MiB aligned, one PMD entry each.
 */
#define MACHINE_TEXT_START	0x40000000UL
#define MACHINE_TEXT_END	0x40400000UL

#define GDT_ENTRY_TSS	5
#define __TSS		(GDT_ENTRY_TSS * 8)

/* Filled in by the machine before the first instruction (.data). */
struct boot_program {
	char name[32];			/* /bin/NAME */
	unsigned long image, size;	/* the file's bytes, machine RAM */
	unsigned long stdin_image, stdin_size;	/* ~0 when no stdin file */
	unsigned long argv_image;	/* NUL-separated arguments, argc of them */
	unsigned long argc;
};

#define MAX_BOOT_PROGRAMS	16

struct boot_params {
	unsigned long ram_start, ram_size;
	unsigned long ns_per_tick;
	unsigned long nr_programs;
	unsigned long keep_workload;
	struct boot_program programs[MAX_BOOT_PROGRAMS];
};
extern struct boot_params boot_params;

/* Where the machine parks an interrupt or fault taken in user mode. */
struct user_trap_info {
	unsigned long rip, rflags, vector, error_code, cr2, unused[3];	/* 64 bytes */
};
extern struct user_trap_info user_trap_info[NR_CPUS];

/* mm.c */
void paging_init(void);
void enable_paging(void);
void cpu_init_user(void);
void leave_mm(struct task_struct *tsk);
unsigned long get_zeroed_page(void);
void free_page(unsigned long addr);
struct mm_struct *mm_alloc(struct mm_struct *mm);
struct mm_struct *copy_user_mm(struct task_struct *p, struct task_struct *parent, struct mm_struct *mm);
void prepare_to_copy(struct task_struct *tsk);
void mmput(struct mm_struct *mm);
int dup_mmap(struct mm_struct *mm, struct mm_struct *oldmm);
int map_user_page(struct mm_struct *mm, unsigned long addr, unsigned long pgprot);
unsigned long vm_get_page_prot(unsigned long prot);
extern unsigned long __supported_pte_mask;
long change_protection(struct mm_struct *mm, unsigned long start, unsigned long end, unsigned long pgprot);
unsigned long do_brk(unsigned long addr, unsigned long len);
unsigned long do_mmap_anon(unsigned long addr, unsigned long len, int prot, int flags);
long do_munmap(struct mm_struct *mm, unsigned long addr, unsigned long len);
long do_mremap(unsigned long addr, unsigned long old_len, unsigned long new_len, int may_move);
int access_ok(unsigned long addr, unsigned long size, int write);
long copy_to_user(void *to, const void *from, unsigned long n);
long copy_from_user(void *to, const void *from, unsigned long n);
long strncpy_from_user(char *dst, const char *src, long count);
void __switch_to(struct task_struct *prev, struct task_struct *next);
void activate_mm(struct mm_struct *mm);
void load_fpu_init(struct task_struct *tsk);
void math_state_restore(void);

/* binfmt_elf.c */
struct linux_binprm;
int load_elf_user_binary(struct linux_binprm *bprm, struct pt_regs *regs);
int elf_is_user(const void *ehdr);

/* fs.c, pipe.c */
void copy_files(struct task_struct *p);
long do_pipe(int *fd, int flags);

/* fork.c */
#define CLONE_VFORK	0x00004000
#define CLONE_THREAD	0x00010000
#define CLONE_CLEAR_SIGHAND 0x100000000UL
void mm_release(struct task_struct *tsk, struct mm_struct *mm);
void wait_for_completion(struct completion *x);
void complete(struct completion *x);

/* fs.c: files programs create (ramfs) */
long sys_openat(int dfd, const char *filename, int flags, int mode);
long sys_unlink(const char *pathname);
long sys_unlinkat(int dfd, const char *pathname, int flag);
long sys_rmdir(const char *pathname);
long sys_mkdir(const char *pathname, int mode);
long sys_mkdirat(int dfd, const char *pathname, int mode);
long sys_rename(const char *oldname, const char *newname);
long sys_renameat(int olddfd, const char *oldname, int newdfd, const char *newname);
long sys_renameat2(int olddfd, const char *oldname, int newdfd, const char *newname, unsigned int flags);
long sys_truncate(const char *path, long length);
long sys_ftruncate(unsigned int fd, long length);
long sys_umask(int mask);
long sys_access(const char *filename, int mode);
long sys_faccessat(int dfd, const char *filename, int mode);

/* fcntl.c */
void set_close_on_exec(unsigned int fd, int flag);
void flush_old_files(struct files_struct *files);
long sys_dup(unsigned int oldfd);
long sys_dup2(unsigned int oldfd, unsigned int newfd);
long sys_dup3(unsigned int oldfd, unsigned int newfd, int flags);
long sys_fcntl(unsigned int fd, unsigned int cmd, unsigned long arg);

/* syscall.c */
int run_user_programs(void);
void do_user_trap(struct pt_regs *regs);

/* signal.c */
int signal_pending(struct task_struct *p);
void recalc_sigpending_tsk(struct task_struct *t);
int send_sig(int sig, struct task_struct *p, int priv);
void do_notify_parent(struct task_struct *tsk, int sig);
void forget_original_parent(struct task_struct *father);
void do_trap_signal(struct pt_regs *regs, unsigned long vector, unsigned long error, unsigned long cr2);
void flush_signal_handlers(struct task_struct *t);
void copy_sighand(struct task_struct *p);
long sys_rt_sigaction(int sig, const struct sigaction *act, struct sigaction *oact, size_t sigsetsize);
long sys_rt_sigprocmask(int how, const sigset_t *set, sigset_t *oset, size_t sigsetsize);
long sys_rt_sigreturn(void);
long sys_rt_sigpending(sigset_t *set, size_t sigsetsize);
long sys_rt_sigsuspend(const sigset_t *unewset, size_t sigsetsize);
long sys_pause(void);
long sys_kill(int pid, int sig);
long sys_tkill(int pid, int sig);
long sys_tgkill(int tgid, int pid, int sig);
long sys_setpgid(int pid, int pgid);
long sys_getpgid(int pid);
long sys_getpgrp(void);
long sys_sigaltstack(const void *uss, void *uoss);
long sys_alarm(unsigned int seconds);
long sys_setitimer(int which, const void *value, void *ovalue);
long sys_getitimer(int which, void *value);
#define ERESTARTSYS	512
#define EINTR		4

/* entry.S */
void system_call(void);
void user_trap_gate(void);
extern char syscall_gate[], trap_gate[], __gate_page[];
extern char _text[], _etext[];

static inline struct pt_regs *task_pt_regs(struct task_struct *p)
{
	return (struct pt_regs *)((unsigned long)p->stack + THREAD_SIZE) - 1;
}

static inline int user_mode(struct pt_regs *regs)
{
	return (regs->cs & 3) == 3;
}

#endif
