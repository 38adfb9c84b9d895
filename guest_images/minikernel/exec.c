/*
 * exec.c - program execution (fs/exec.c, fs/binfmt_elf.c,
 * fs/binfmt_script.c, arch/x86_64/kernel/process.c shaped).
 *
 * "/bin/hello" on the in-memory disk is a small ELF64 header whose
 * entry point is hello_main() in the kernel image.  load_elf_binary()
 * checks it, flush_old_exec() renames the task and calls flush_thread()
 * (-> kprobe_flush_task(current)), and start_thread() points the
 * caller's pt_regs at the new entry point with a fresh stack.
 */
#include "sched.h"
#include "fs.h"

#define EI_NIDENT	16
#define ET_EXEC		2
#define EM_X86_64	62
#define PT_LOAD		1
#define BINPRM_BUF_SIZE	128

struct elf64_hdr {
	unsigned char e_ident[EI_NIDENT];
	u16 e_type;
	u16 e_machine;
	u32 e_version;
	u64 e_entry;
	u64 e_phoff;
	u64 e_shoff;
	u32 e_flags;
	u16 e_ehsize;
	u16 e_phentsize;
	u16 e_phnum;
	u16 e_shentsize;
	u16 e_shnum;
	u16 e_shstrndx;
};

struct elf64_phdr {
	u32 p_type;
	u32 p_flags;
	u64 p_offset;
	u64 p_vaddr;
	u64 p_paddr;
	u64 p_filesz;
	u64 p_memsz;
	u64 p_align;
};

struct linux_binprm {
	char buf[BINPRM_BUF_SIZE];
	struct file *file;
	const char *filename;
	const char *interp;
	int argc, envc;
	char **argv, **envp;
	char page[256];			/* copied argv strings */
	unsigned long p;		/* bytes used in page */
};

struct linux_binfmt {
	const char *name;
	int (*load_binary)(struct linux_binprm *, struct pt_regs *);
};

int hello_main(int argc, char **argv);
int load_elf_binary(struct linux_binprm *bprm, struct pt_regs *regs);
int load_script(struct linux_binprm *bprm, struct pt_regs *regs);

/* The image of /bin/hello */
static const struct {
	struct elf64_hdr ehdr;
	struct elf64_phdr phdr;
	char note[32];
} hello_image = {
	.ehdr = {
		.e_ident = { 0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* LSB */, 1 },
		.e_type = ET_EXEC,
		.e_machine = EM_X86_64,
		.e_version = 1,
		.e_entry = (u64)hello_main,
		.e_phoff = sizeof(struct elf64_hdr),
		.e_ehsize = sizeof(struct elf64_hdr),
		.e_phentsize = sizeof(struct elf64_phdr),
		.e_phnum = 1,
	},
	.phdr = {
		.p_type = PT_LOAD,
		.p_flags = 5,
		.p_vaddr = (u64)hello_main,
		.p_filesz = 0x100,
		.p_memsz = 0x100,
		.p_align = 0x1000,
	},
	.note = "minikernel /bin/hello",
};

const void *const hello_elf_image = &hello_image;
const unsigned long hello_elf_size = sizeof(hello_image);

static const struct linux_binfmt formats[] = {
	{ "script", load_script },
	{ "elf", load_elf_binary },
};

/* arch/x86_64/kernel/process.c: called on exec */
__kfunc void flush_thread(void)
{
	struct task_struct *tsk = current;

	/*
	 * Remove function-return probe instances associated with this task
	 * and put them back on the free list.
	 */
	kprobe_flush_task(tsk);
	tsk->thread.rip = 0;
}

__kfunc void start_thread(struct pt_regs *regs, unsigned long new_rip, unsigned long new_rsp)
{
	memset(regs, 0, sizeof(*regs));
	regs->orig_rax = -1;
	regs->rip = new_rip;
	regs->rsp = new_rsp;
	regs->cs = __KERNEL_CS;
	regs->ss = __KERNEL_DS;
	regs->eflags = X86_EFLAGS_IF | 0x2;
}

/* fs/exec.c: the point of no return */
__kfunc int flush_old_exec(struct linux_binprm *bprm)
{
	char tcomm[TASK_COMM_LEN];
	const char *name = bprm->filename;
	int i = 0;
	char ch;

	current->mm = NULL;		/* exec_mmap(): drop the old image */

	while ((ch = *name++) != '\0') {
		if (ch == '/')
			i = 0;
		else if (i < TASK_COMM_LEN - 1)
			tcomm[i++] = ch;
	}
	tcomm[i] = '\0';
	set_task_comm(current, tcomm);

	flush_thread();
#ifdef CONFIG_USERSPACE
	flush_signal_handlers(current);
	flush_old_files(current->files);
#endif
	return 0;
}

__kfunc int load_script(struct linux_binprm *bprm, struct pt_regs *regs)
{
	(void)regs;
	if (bprm->buf[0] != '#' || bprm->buf[1] != '!')
		return -ENOEXEC;
	return -ENOEXEC;		/* no interpreters in the minikernel */
}

__kfunc int load_elf_binary(struct linux_binprm *bprm, struct pt_regs *regs)
{
	struct elf64_hdr *elf_ex = (struct elf64_hdr *)bprm->buf;
	struct elf64_phdr phdr;
	struct mm_struct *mm;
	unsigned long top, new_sp, off;
	int retval, i;

#ifdef CONFIG_USERSPACE
	if (elf_is_user(elf_ex))
		return load_elf_user_binary(bprm, regs);
#endif
	if (memcmp(elf_ex->e_ident, "\177ELF", 4) || elf_ex->e_ident[4] != 2)
		return -ENOEXEC;
	if (elf_ex->e_type != ET_EXEC || elf_ex->e_machine != EM_X86_64)
		return -ENOEXEC;
	if (elf_ex->e_phnum != 1 || elf_ex->e_phentsize != sizeof(phdr))
		return -ENOEXEC;
	retval = kernel_read(bprm->file, elf_ex->e_phoff, (char *)&phdr, sizeof(phdr));
	if (retval != sizeof(phdr))
		return retval < 0 ? retval : -EIO;
	if (phdr.p_type != PT_LOAD)
		return -ENOEXEC;

	retval = flush_old_exec(bprm);
	if (retval)
		return retval;

	/* the new "address space" */
	mm = &current->mm_store;
	memset(mm, 0, sizeof(*mm));
	mm->users = 1;
	mm->start_code = phdr.p_vaddr;
	mm->end_code = phdr.p_vaddr + phdr.p_memsz;
	mm->entry = elf_ex->e_entry;

	/* create_elf_tables(): argv pointers into the arg page */
	memcpy(mm->arg_page, bprm->page, bprm->p);
	off = 0;
	for (i = 0; i < bprm->argc && i < (int)ARRAY_SIZE(mm->argv) - 1; i++) {
		mm->argv[i] = mm->arg_page + off;
		off += strlen(mm->arg_page + off) + 1;
	}
	mm->argv[i] = NULL;
	mm->arg_start = (unsigned long)mm->arg_page;
	mm->arg_end = mm->arg_start + bprm->p;
	current->mm = mm;

	/*
	 * The new program gets the whole kernel stack: it starts at the top
	 * with ret_from_program as its return address.  Everything above the
	 * caller's live frames there is the dead pt_regs copy of fork.
	 */
	top = (unsigned long)current->stack + THREAD_SIZE;
	new_sp = top - 24;
	*(unsigned long *)new_sp = (unsigned long)ret_from_program;
	start_thread(regs, elf_ex->e_entry, new_sp);
	regs->rdi = bprm->argc;
	regs->rsi = (unsigned long)mm->argv;
	return 0;
}

__kfunc int search_binary_handler(struct linux_binprm *bprm, struct pt_regs *regs)
{
	int retval = -ENOEXEC;

	for (unsigned int i = 0; i < ARRAY_SIZE(formats); i++) {
		retval = formats[i].load_binary(bprm, regs);
		if (retval >= 0)
			return retval;
		if (retval != -ENOEXEC)
			break;
	}
	return retval;
}

__kfunc int prepare_binprm(struct linux_binprm *bprm)
{
	memset(bprm->buf, 0, BINPRM_BUF_SIZE);
	return kernel_read(bprm->file, 0, bprm->buf, BINPRM_BUF_SIZE);
}

static int count(char **argv, int max)
{
	int i = 0;

	if (argv)
		while (argv[i] && i < max)
			i++;
	return i;
}

__kfunc int copy_strings(int argc, char **argv, struct linux_binprm *bprm)
{
	for (int i = 0; i < argc; i++) {
		size_t len = strlen(argv[i]) + 1;

		if (bprm->p + len > sizeof(bprm->page))
			return -7 /* E2BIG */;
		memcpy(bprm->page + bprm->p, argv[i], len);
		bprm->p += len;
	}
	return 0;
}

__kfunc int do_execve(char *filename, char **argv, char **envp, struct pt_regs *regs)
{
	struct linux_binprm bprm;
	struct file *file;
	int retval;

	memset(&bprm, 0, sizeof(bprm));
	file = open_exec(filename);
	if (IS_ERR(file))
		return PTR_ERR(file);

	bprm.file = file;
	bprm.filename = filename;
	bprm.interp = filename;
	bprm.argc = count(argv, 8);
	bprm.envc = count(envp, 8);
	bprm.argv = argv;
	bprm.envp = envp;

	retval = prepare_binprm(&bprm);
	if (retval < 0)
		goto out;
#ifdef CONFIG_USERSPACE
	if (!elf_is_user(bprm.buf))	/* a user ELF copies its own (binfmt_elf.c) */
#endif
	retval = copy_strings(bprm.argc, argv, &bprm);
	if (retval < 0)
		goto out;
	retval = search_binary_handler(&bprm, regs);
out:
	fput(file);
	return retval < 0 ? retval : 0;
}

__kfunc long sys_execve(const char *name, char **argv, char **envp, struct pt_regs *regs)
{
	char *filename = getname(name);
	long error = PTR_ERR(filename);

	if (IS_ERR(filename))
		return error;
	error = do_execve(filename, argv, envp, regs);
	putname(filename);
	return error;
}
