/*
 * binfmt_elf.c - loading static x86_64 Linux executables into a new
 * address space (fs/binfmt_elf.c shaped).  CONFIG_USERSPACE builds only.
 * ET_EXEC is loaded at its own addresses, a static-pie (ET_DYN without
 * PT_INTERP) at ELF_ET_DYN_BASE; a PT_INTERP (dynamic) is refused.
 */
#include "uspace.h"
#include "fs.h"

#define PT_LOAD		1
#define PT_INTERP	3
#define PT_PHDR		6
#define PT_GNU_STACK	0x6474e551
#define PF_X		0x1
#define PF_W		0x2
#define PF_R		0x4
#define ET_EXEC		2
#define ET_DYN		3
#define MAX_PHDRS	16
#define ARG_MAX_BYTES	3072
#define MAX_ARG_STRINGS	64

#define AT_NULL 0
#define AT_PHDR 3
#define AT_PHENT 4
#define AT_PHNUM 5
#define AT_PAGESZ 6
#define AT_BASE 7
#define AT_FLAGS 8
#define AT_ENTRY 9
#define AT_UID 11
#define AT_EUID 12
#define AT_GID 13
#define AT_EGID 14
#define AT_PLATFORM 15
#define AT_HWCAP 16
#define AT_CLKTCK 17
#define AT_SECURE 23
#define AT_RANDOM 25
#define AT_EXECFN 31

struct elf64_hdr {
	unsigned char e_ident[16];
	u16 e_type, e_machine;
	u32 e_version;
	u64 e_entry, e_phoff, e_shoff;
	u32 e_flags;
	u16 e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx;
};

struct elf64_phdr {
	u32 p_type, p_flags;
	u64 p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align;
};

/* The first part of struct linux_binprm (exec.c) this loader reads. */
struct linux_binprm_head {
	char buf[128];
	struct file *file;
	const char *filename;
	const char *interp;
	int argc, envc;
	char **argv, **envp;
};

int flush_old_exec(struct linux_binprm *bprm);
int kernel_read(struct file *file, unsigned long offset, char *addr, unsigned long count);

/* A user ELF: anything but the kernel's own /bin/hello image. */
__kfunc int elf_is_user(const void *ehdr)
{
	const struct elf64_hdr *e = ehdr;

	return !memcmp(e->e_ident, "\177ELF", 4) &&
		!(e->e_entry >= 0x100000 && e->e_entry < USER_LOW_START && e->e_phnum == 1);
}

/* The argument strings, copied out before the old address space goes. */
struct arg_strings {
	int argc, envc;
	unsigned long len;
	char buf[ARG_MAX_BYTES];
};

static int copy_arg_strings(struct arg_strings *a, char **argv, char **envp)
{
	char **vec[2] = { argv, envp };

	a->argc = a->envc = 0;
	a->len = 0;
	for (int v = 0; v < 2; v++) {
		for (int i = 0; vec[v]; i++) {
			char *s;
			long n;

			if (copy_from_user(&s, &vec[v][i], sizeof(s)))
				return -EFAULT;
			if (!s)
				break;
			if (a->argc + a->envc >= MAX_ARG_STRINGS)
				return -7;		/* E2BIG */
			n = strncpy_from_user(a->buf + a->len, s, ARG_MAX_BYTES - a->len);
			if (n < 0)
				return n == -ENAMETOOLONG ? -7 : n;
			a->len += n + 1;
			if (v == 0)
				a->argc++;
			else
				a->envc++;
		}
	}
	return 0;
}

static unsigned long push_bytes(unsigned long sp, const void *data, unsigned long n)
{
	sp -= n;
	memcpy((void *)sp, data, n);
	return sp;
}

/* create_elf_tables(): argc, argv, envp and the auxiliary vector. */
static unsigned long create_elf_tables(struct arg_strings *a, const char *execfn, unsigned long phdr,
				       int phnum, unsigned long entry)
{
	static const char platform[] = "x86_64";
	unsigned long sp = STACK_TOP, strings, u_execfn, u_platform, u_random, *p;
	unsigned char rnd[16];
	int nwords, n = a->argc + a->envc, i;
	unsigned long auxv[][2] = {
		{ AT_HWCAP, 0x178bfbff }, { AT_PAGESZ, PAGE_SIZE }, { AT_CLKTCK, 100 },
		{ AT_PHDR, phdr }, { AT_PHENT, sizeof(struct elf64_phdr) }, { AT_PHNUM, phnum },
		{ AT_BASE, 0 }, { AT_FLAGS, 0 }, { AT_ENTRY, entry }, { AT_UID, 0 }, { AT_EUID, 0 },
		{ AT_GID, 0 }, { AT_EGID, 0 }, { AT_SECURE, 0 }, { AT_RANDOM, 0 },
		{ AT_EXECFN, 0 }, { AT_PLATFORM, 0 }, { AT_NULL, 0 },
	};
	int nauxv = ARRAY_SIZE(auxv);

	/* AT_RANDOM: deterministic bytes, so runs repeat exactly */
	for (i = 0; i < 16; i++)
		rnd[i] = (unsigned char)(0x5a + 17 * i + current->pid);
	u_execfn = sp = push_bytes(sp, execfn, strlen(execfn) + 1);
	u_platform = sp = push_bytes(sp, platform, sizeof(platform));
	u_random = sp = push_bytes(sp & ~15UL, rnd, sizeof(rnd));
	strings = sp = push_bytes(sp, a->buf, a->len);
	auxv[nauxv - 4][1] = u_random;
	auxv[nauxv - 3][1] = u_execfn;
	auxv[nauxv - 2][1] = u_platform;

	nwords = 1 + (a->argc + 1) + (a->envc + 1) + 2 * nauxv;
	sp = (sp - nwords * 8) & ~15UL;
	p = (unsigned long *)sp;
	*p++ = a->argc;
	for (i = 0; i < n; i++) {
		if (i == a->argc)
			*p++ = 0;
		*p++ = strings;
		strings += strlen((char *)strings) + 1;
	}
	if (n == a->argc)
		*p++ = 0;
	*p++ = 0;
	memcpy(p, auxv, sizeof(auxv));
	return sp;
}

/* include/linux/binfmts.h: what PT_GNU_STACK says of the stack */
#define EXSTACK_DEFAULT		0	/* no PT_GNU_STACK */
#define EXSTACK_DISABLE_X	1
#define EXSTACK_ENABLE_X	2

/*
 * A PT_LOAD's pages take its p_flags (elf_map's elf_prot); the .bss
 * pages past the file's last page are set_brk's, data pages (do_brk).
 */
static int map_segment(struct linux_binprm_head *bprm, struct elf64_phdr *ph, unsigned long bias)
{
	struct mm_struct *mm = current->mm;
	unsigned long start = (ph->p_vaddr + bias) & PAGE_MASK, end = ph->p_vaddr + bias + ph->p_memsz;
	unsigned long file_end = PAGE_ALIGN(ph->p_vaddr + bias + ph->p_filesz);
	unsigned long prot = (ph->p_flags & PF_R ? PROT_READ : 0) | (ph->p_flags & PF_W ? PROT_WRITE : 0) |
		(ph->p_flags & PF_X ? PROT_EXEC : 0);
	int err;

	for (unsigned long a = start; a < end; a += PAGE_SIZE)
		if ((err = map_user_page(mm, a, vm_get_page_prot(a < file_end ? prot : PROT_READ | PROT_WRITE))))
			return err;
	if (ph->p_filesz &&
	    kernel_read(bprm->file, ph->p_offset, (char *)(ph->p_vaddr + bias), ph->p_filesz) != (long)ph->p_filesz)
		return -EIO;
	return 0;
}

static int check_elf(struct linux_binprm_head *bprm, struct elf64_hdr *e, struct elf64_phdr *ph)
{
	int retval;

	if (e->e_ident[4] != 2 || e->e_machine != 62) {
		printk("exec: %s: not an x86_64 (64-bit) executable\n", bprm->filename);
		return -ENOEXEC;
	}
	if ((e->e_type != ET_EXEC && e->e_type != ET_DYN) || e->e_phentsize != sizeof(*ph) ||
	    !e->e_phnum || e->e_phnum > MAX_PHDRS)
		return -ENOEXEC;
	retval = kernel_read(bprm->file, e->e_phoff, (char *)ph, e->e_phnum * sizeof(*ph));
	if (retval != (int)(e->e_phnum * sizeof(*ph)))
		return -ENOEXEC;
	for (int i = 0; i < e->e_phnum; i++) {
		if (ph[i].p_type == PT_INTERP) {
			printk("exec: %s: dynamically linked (it asks for an ELF interpreter); "
			       "only static executables run here (gcc -static)\n", bprm->filename);
			return -ENOEXEC;
		}
	}
	return 0;
}

/* Map every PT_LOAD; the program headers' address and the end of the image. */
static int map_elf_segments(struct linux_binprm_head *bprm, struct elf64_hdr *e, struct elf64_phdr *ph,
			    unsigned long bias, unsigned long *phdr, unsigned long *brk)
{
	for (int i = 0; i < e->e_phnum; i++) {
		int retval;

		if (ph[i].p_type == PT_PHDR)
			*phdr = ph[i].p_vaddr + bias;
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (!*phdr && ph[i].p_offset == 0)
			*phdr = ph[i].p_vaddr + bias + e->e_phoff;
		retval = map_segment(bprm, &ph[i], bias);
		if (retval)
			return retval;
		if (ph[i].p_vaddr + bias + ph[i].p_memsz > *brk)
			*brk = ph[i].p_vaddr + bias + ph[i].p_memsz;
	}
	return 0;
}

/*
 * PT_GNU_STACK: a program that does not ask for a non-executable stack
 * gets READ_IMPLIES_EXEC (include/asm-x86_64/elf.h's elf_read_implies_exec;
 * the flag is not cleared at exec, as in 2.6.12), and its stack's
 * protection is setup_arg_pages'.  Returns the stack pages' pgprot.
 */
static unsigned long elf_set_personality(struct elf64_hdr *e, struct elf64_phdr *ph)
{
	int executable_stack = EXSTACK_DEFAULT;

	for (int i = 0; i < e->e_phnum; i++)
		if (ph[i].p_type == PT_GNU_STACK)
			executable_stack = ph[i].p_flags & PF_X ? EXSTACK_ENABLE_X : EXSTACK_DISABLE_X;
	if (executable_stack != EXSTACK_DISABLE_X)
		current->personality |= READ_IMPLIES_EXEC;
	if (executable_stack == EXSTACK_ENABLE_X)
		return vm_get_page_prot(PROT_READ | PROT_WRITE | PROT_EXEC);
	if (executable_stack == EXSTACK_DISABLE_X)
		return vm_get_page_prot(PROT_READ | PROT_WRITE) | (_PAGE_NX & __supported_pte_mask);
	return vm_get_page_prot(PROT_READ | PROT_WRITE);
}

/* arch/x86_64/kernel/process.c: start_thread() for a user program, with
 * the initial FPU state and FS base 0. */
__kfunc void start_thread_user(struct pt_regs *regs, unsigned long new_rip, unsigned long new_rsp)
{
	current->fs = 0;
	load_fpu_init(current);
	__asm__ __volatile__("wrmsr" : : "c"(0xc0000100), "a"(0), "d"(0));
	memset(regs, 0, sizeof(*regs));
	regs->orig_rax = -1;
	regs->rip = new_rip;
	regs->rsp = new_rsp;
	regs->cs = __USER_CS;
	regs->ss = __USER_DS;
	regs->eflags = X86_EFLAGS_IF | 0x2;
}

__kfunc int load_elf_user_binary(struct linux_binprm *bprm_, struct pt_regs *regs)
{
	struct linux_binprm_head *bprm = (struct linux_binprm_head *)bprm_;
	struct elf64_hdr *e = (struct elf64_hdr *)bprm->buf;
	struct elf64_phdr ph[MAX_PHDRS];
	struct arg_strings *a;
	struct mm_struct *mm;
	unsigned long bias = 0, phdr = 0, brk = 0, sp, stack_prot;
	int retval, i, committed = 0;

	retval = check_elf(bprm, e, ph);
	if (retval)
		return retval;
	a = (struct arg_strings *)get_zeroed_page();
	if (!a)
		return -ENOMEM;
	retval = copy_arg_strings(a, bprm->argv, bprm->envp);
	if (retval) {
		free_page((unsigned long)a);
		return retval;
	}

	/* point of no return: drop the old address space */
	mm = current->mm;
	committed = 1;
	flush_old_exec(bprm_);
	mm_release(current, mm);
	if (mm && mm->pgd && mm == &current->mm_store)
		mmput(mm);		/* not a vfork parent's, which it goes back to */
	mm = mm_alloc(&current->mm_store);
	if (!mm) {
		retval = -ENOMEM;
		goto out;
	}
	current->mm = mm;
	activate_mm(mm);

	stack_prot = elf_set_personality(e, ph);
	if (e->e_type == ET_DYN)
		bias = ELF_ET_DYN_BASE;
	retval = map_elf_segments(bprm, e, ph, bias, &phdr, &brk);
	if (retval)
		goto out;
	mm->start_brk = mm->brk = PAGE_ALIGN(brk);
	for (i = 1; i <= STACK_PAGES; i++) {
		retval = map_user_page(mm, STACK_TOP - i * PAGE_SIZE, stack_prot);
		if (retval)
			goto out;
	}
	mm->start_stack = STACK_TOP;
	strlcpy(mm->exe, bprm->filename, sizeof(mm->exe));
	sp = create_elf_tables(a, bprm->filename, phdr, e->e_phnum, e->e_entry + bias);

	start_thread_user(regs, e->e_entry + bias, sp);
	retval = 0;
out:
	free_page((unsigned long)a);
	if (retval && committed) {
		/* past the point of no return: the process cannot go on */
		printk("exec: %s: cannot load (error %d), killing %s[%d]\n",
		       bprm->filename, retval, current->comm, current->pid);
		do_exit(SIGKILL);
	}
	return retval;
}
_Static_assert(sizeof(struct arg_strings) <= PAGE_SIZE, "args page");
