/*
 * mm.c - paging, the page allocator and user address spaces
 * (arch/x86_64/mm/init.c, mm/page_alloc.c, mm/memory.c, mm/mmap.c,
 * kernel/fork.c's dup_mmap shaped).  CONFIG_USERSPACE builds only.
 *
 * Every address space shares the kernel's identity mappings: PML4[0]
 * points at a per-mm PDPT whose entries 1-3 (the machine's pages at
 * 1 GiB, RAM at 2-4 GiB) are the kernel's, and whose entry 0 points at
 * a per-mm page directory whose entries 0-1 (the kernel image, below
 * 4 MiB) are the kernel's.  Everything else is the process's own.
 * The kernel's mappings are no-execute but for its text and the machine's
 * code pages (paging_init).
 */
#include "uspace.h"

/* In .data: the machine writes it before _start clears .bss. */
struct boot_params boot_params __attribute__((section(".data")));
struct user_trap_info user_trap_info[NR_CPUS] __aligned(64);

/* The kernel's own tables (swapper_pg_dir), used until a process runs. */
static unsigned long swapper_pg_dir[512] __aligned(4096);
static unsigned long level3_ident_pgt[512] __aligned(4096);
static unsigned long level2_kernel_pgt[512] __aligned(4096);
static unsigned long level1_kernel_pgt[512] __aligned(4096);
static unsigned long level2_ident_pgt[4][512] __aligned(4096);

/* The task state segment: rsp0 is where a gate switches to CPL 0. */
struct tss_struct {
	u32 reserved1;
	u64 rsp0, rsp1, rsp2;
	u64 reserved2;
	u64 ist[7];
	u32 reserved3, reserved4;
	u16 reserved5;
	u16 io_bitmap_base;
} __attribute__((packed));

/*
 * One TSS and one GDT per CPU, as 2.6's per-cpu init_tss and
 * cpu_gdt_table[NR_CPUS]: each CPU's rsp0 is the stack of the task it
 * runs, and ltr marks the TSS descriptor it loads busy, so two CPUs
 * cannot load the same one.
 */
struct tss_struct init_tss[NR_CPUS] __aligned(64);

/* null, kernel CS/DS, user DS/CS, TSS (2), syscall gate (2), trap gate (2) */
#define GDT_ENTRIES	11
u64 cpu_gdt_table[NR_CPUS][GDT_ENTRIES] __aligned(64);

static const u64 gdt_segments[5] = {
	0, 0x00af9a000000ffffUL, 0x00cf92000000ffffUL,
	0x00cff2000000ffffUL, 0x00affa000000ffffUL,
};

struct desc_ptr_gdt {
	u16 size;
	unsigned long address;
} __attribute__((packed));

/*
 * The PTE bits this CPU honours (include/asm-x86_64/pgtable.h): _PAGE_NX
 * stays only when the CPU has NX and EFER.NXE is on, as head.S and
 * check_efer() decide in 2.6.12; without it bit 63 would be reserved.
 */
unsigned long __supported_pte_mask = ~_PAGE_NX;

static unsigned long free_list, next_free_page, ram_end;
static spinlock_t page_lock = SPIN_LOCK_UNLOCKED;
unsigned long nr_free_pages_count;

#define MSR_EFER	0xc0000080
#define MSR_STAR	0xc0000081
#define MSR_LSTAR	0xc0000082
#define MSR_FMASK	0xc0000084
#define MSR_FS_BASE	0xc0000100
#define EFER_SCE	(1UL << 0)
#define EFER_NX		(1UL << 11)

static inline void wrmsrl(u32 msr, unsigned long val)
{
	__asm__ __volatile__("wrmsr" : : "c"(msr), "a"((u32)val), "d"((u32)(val >> 32)));
}

static inline unsigned long rdmsrl(u32 msr)
{
	u32 lo, hi;

	__asm__ __volatile__("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return lo | ((unsigned long)hi << 32);
}

static inline unsigned long read_cr3(void)
{
	unsigned long v;

	__asm__ __volatile__("mov %%cr3,%0" : "=r"(v));
	return v;
}

__kfunc void load_cr3(unsigned long *pgd)
{
	__asm__ __volatile__("mov %0,%%cr3" : : "r"(pgd) : "memory");
}

/* CPUID 0x80000001 EDX bit 20, the test arch/x86_64/kernel/head.S makes */
static int cpu_has_nx(void)
{
	unsigned int a = 0x80000001, b, c = 0, d;

	__asm__ __volatile__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
	return (d >> 20) & 1;
}

static void set_call_gate(u64 *gdt, int entry, void (*fn)(void))
{
	unsigned long a = (unsigned long)fn;

	gdt[entry] = (a & 0xffff) | ((u64)__KERNEL_CS << 16) |
		((u64)(0x80 | (3 << 5) | 0xc) << 40) | (((a >> 16) & 0xffff) << 48);
	gdt[entry + 1] = a >> 32;
}

/*
 * EFER as arch/x86_64/kernel/head.S sets it on every CPU before paging:
 * system calls, and no-execute pages when CPUID says the CPU has them.
 */
static void efer_setup(void)
{
	wrmsrl(MSR_EFER, rdmsrl(MSR_EFER) | EFER_SCE | (cpu_has_nx() ? EFER_NX : 0));
}

/* arch/x86_64/kernel/setup.c check_efer(): _PAGE_NX only if EFER.NXE took. */
static void check_efer(void)
{
	if (rdmsrl(MSR_EFER) & EFER_NX)
		__supported_pte_mask |= _PAGE_NX;
}

/* This CPU translates through swapper_pg_dir (each CPU turns paging on). */
__kfunc void enable_paging(void)
{
	unsigned long cr;

	efer_setup();	/* before CR3: the tables hold _PAGE_NX */
	load_cr3(swapper_pg_dir);
	__asm__ __volatile__("mov %%cr4,%0" : "=r"(cr));
	cr |= 0x20 | 0x200 | 0x400;		/* PAE, OSFXSR, OSXMMEXCPT */
	__asm__ __volatile__("mov %0,%%cr4" : : "r"(cr));
	__asm__ __volatile__("mov %%cr0,%0" : "=r"(cr));
	cr = (cr | 0x80000000UL | 0x2) & ~0x4UL;	/* PG, MP; no EM */
	__asm__ __volatile__("mov %0,%%cr0" : : "r"(cr));
}

/*
 * Identity-map the kernel: page 0 stays unmapped, the gate page is user.
 * Every kernel mapping is no-execute (_PAGE_NX, as __supported_pte_mask
 * allows) but where code runs: the kernel's text and the machine's code
 * pages.  Everything else is data: the kernel's rodata, data and bss (its
 * stacks, its own page tables), and the direct mapping of RAM (what the
 * page allocator hands out) and of the machine's files, as
 * arch/x86_64/mm/init.c phys_pud_init maps it.
 */
__kfunc void paging_init(void)
{
	unsigned long nx, pte_flags, pmd_flags, addr;

	efer_setup();
	check_efer();
	nx = _PAGE_NX & __supported_pte_mask;
	pte_flags = _PAGE_PRESENT | _PAGE_RW | nx;
	pmd_flags = pte_flags | _PAGE_PSE;
	for (int i = 1; i < 512; i++)
		level1_kernel_pgt[i] = ((unsigned long)i << 12) | pte_flags;
	for (addr = (unsigned long)_text & PAGE_MASK; addr < (unsigned long)_etext; addr += PAGE_SIZE)
		level1_kernel_pgt[(addr >> 12) & 511] &= ~_PAGE_NX;
	level1_kernel_pgt[((unsigned long)__gate_page >> 12) & 511] |= _PAGE_USER;
	level2_kernel_pgt[0] = (unsigned long)level1_kernel_pgt | 7;
	level2_kernel_pgt[1] = 0x200000 | pmd_flags;
	for (int g = 0; g < 4; g++) {
		for (int i = 0; i < 512; i++)
			level2_ident_pgt[g][i] = (((unsigned long)g << 30) | ((unsigned long)i << 21)) | pmd_flags;
		if (g)
			level3_ident_pgt[g] = (unsigned long)level2_ident_pgt[g] | 3;
	}
	for (addr = MACHINE_TEXT_START; addr < MACHINE_TEXT_END; addr += 1UL << 21)
		level2_ident_pgt[addr >> 30][(addr >> 21) & 511] &= ~_PAGE_NX;
	level3_ident_pgt[0] = (unsigned long)level2_kernel_pgt | 7;
	swapper_pg_dir[0] = (unsigned long)level3_ident_pgt | 7;
	enable_paging();

	next_free_page = boot_params.ram_start;
	ram_end = boot_params.ram_start + boot_params.ram_size;
	nr_free_pages_count = boot_params.ram_size / PAGE_SIZE;
	printk("mm: paging on, %lu KiB of RAM at %p, user space %p-%p\n",
	       boot_params.ram_size >> 10, (void *)boot_params.ram_start,
	       (void *)USER_LOW_START, (void *)TASK_SIZE);
}

/* This CPU's GDT with the user segments and gates, its TSS, the syscall
 * MSRs (the boot CPU from start_kernel, each AP from start_secondary). */
__kfunc void cpu_init_user(void)
{
	int cpu = smp_processor_id();
	u64 *gdt = cpu_gdt_table[cpu];
	struct tss_struct *t = &init_tss[cpu];
	unsigned long tss = (unsigned long)t;
	struct desc_ptr_gdt gdt_descr = { sizeof(cpu_gdt_table[0]) - 1, (unsigned long)gdt };

	memcpy(gdt, gdt_segments, sizeof(gdt_segments));
	t->io_bitmap_base = sizeof(*t);
	gdt[GDT_ENTRY_TSS] = (sizeof(*t) - 1) | ((tss & 0xffffff) << 16) |
		(0x89UL << 40) | (((tss >> 24) & 0xff) << 56);
	gdt[GDT_ENTRY_TSS + 1] = tss >> 32;
	set_call_gate(gdt, __SYSCALL_GATE >> 3, system_call);
	set_call_gate(gdt, __TRAP_GATE >> 3, user_trap_gate);
	__asm__ __volatile__("lgdt %0" : : "m"(gdt_descr));
	__asm__ __volatile__("ltr %w0" : : "r"(__TSS));
	t->rsp0 = (unsigned long)current->stack + THREAD_SIZE;
	wrmsrl(MSR_STAR, ((unsigned long)(__USER_DS - 8 - 3) << 48) | ((unsigned long)__KERNEL_CS << 32));
	wrmsrl(MSR_LSTAR, (unsigned long)system_call);
	wrmsrl(MSR_FMASK, X86_EFLAGS_IF | X86_EFLAGS_TF | X86_EFLAGS_DF);
}

/* ------------------------------------------------------------------ */
/* The page allocator: a free list in front of a never-used frontier. */

/* arch/x86_64/lib/clear_page.S, copy_page.S: a string instruction per page */
__kfunc void clear_page(void *page)
{
	unsigned long d0, d1;

	__asm__ __volatile__("rep stosq" : "=&c"(d0), "=&D"(d1) : "0"(PAGE_SIZE / 8), "1"(page), "a"(0UL) : "memory");
}

__kfunc void copy_page(void *to, void *from)
{
	unsigned long d0, d1, d2;

	__asm__ __volatile__("rep movsq" : "=&c"(d0), "=&D"(d1), "=&S"(d2)
			     : "0"(PAGE_SIZE / 8), "1"(to), "2"(from) : "memory");
}

__kfunc unsigned long get_zeroed_page(void)
{
	unsigned long flags, page = 0;

	spin_lock_irqsave(&page_lock, flags);
	if (free_list) {
		page = free_list;
		free_list = *(unsigned long *)page;
	} else if (next_free_page + PAGE_SIZE <= ram_end) {
		page = next_free_page;
		next_free_page += PAGE_SIZE;
	}
	if (page)
		nr_free_pages_count--;
	spin_unlock_irqrestore(&page_lock, flags);
	if (page)
		clear_page((void *)page);
	return page;
}

__kfunc void free_page(unsigned long addr)
{
	unsigned long flags;

	spin_lock_irqsave(&page_lock, flags);
	*(unsigned long *)addr = free_list;
	free_list = addr;
	nr_free_pages_count++;
	spin_unlock_irqrestore(&page_lock, flags);
}

/* ------------------------------------------------------------------ */
/* Page tables */

static int user_range(unsigned long addr)
{
	return (addr >= USER_LOW_START && addr < USER_LOW_END) ||
		(addr >= USER_HIGH_START && addr < TASK_SIZE);
}

/* The PTE for addr, allocating the tables on the way when alloc. */
static unsigned long *pte_offset(struct mm_struct *mm, unsigned long addr, int alloc)
{
	unsigned long *table = mm->pgd;
	int shift;

	for (shift = 39; shift > 12; shift -= 9) {
		unsigned long *e = &table[(addr >> shift) & 511];

		if (!(*e & _PAGE_PRESENT)) {
			unsigned long page;

			if (!alloc || !(page = get_zeroed_page()))
				return NULL;
			*e = page | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER;
		}
		if (*e & _PAGE_PSE)
			return NULL;
		table = (unsigned long *)(*e & PTE_ADDR_MASK);
	}
	return &table[(addr >> 12) & 511];
}

/*
 * mm/mmap.c's protection_map for a mapping's PROT_* bits: a page without
 * PROT_EXEC is no-execute, and READ_IMPLIES_EXEC (an executable without a
 * non-executable PT_GNU_STACK) makes PROT_READ executable, as 2.6.12's
 * do_mmap_pgoff, do_brk (VM_DATA_DEFAULT_FLAGS) and sys_mprotect do.
 * Every user page stays writable here: the minikernel keeps no VMAs, so
 * only the execute permission follows the protection.
 */
__kfunc unsigned long vm_get_page_prot(unsigned long prot)
{
	if ((prot & PROT_READ) && (current->personality & READ_IMPLIES_EXEC))
		prot |= PROT_EXEC;
	return (_PAGE_RW | (prot & PROT_EXEC ? 0 : _PAGE_NX)) & __supported_pte_mask;
}

/* Map a zeroed page at addr with pgprot (_PAGE_RW, _PAGE_NX) unless one is there. */
__kfunc int map_user_page(struct mm_struct *mm, unsigned long addr, unsigned long pgprot)
{
	unsigned long *pte, page;

	if (!user_range(addr))
		return -EFAULT;
	pte = pte_offset(mm, addr, 1);
	if (!pte)
		return -ENOMEM;
	if (*pte & _PAGE_PRESENT)
		return 0;
	page = get_zeroed_page();
	if (!page)
		return -ENOMEM;
	*pte = page | _PAGE_PRESENT | _PAGE_USER | (pgprot & (_PAGE_RW | _PAGE_NX));
	mm->nr_pages++;
	return 0;
}

/* A new address space in mm (a task's mm_store): the kernel's mappings only. */
__kfunc struct mm_struct *mm_alloc(struct mm_struct *mm)
{
	unsigned long *pgd = (unsigned long *)get_zeroed_page();
	unsigned long *pud, *pmd;

	if (!pgd)
		return NULL;
	pud = (unsigned long *)get_zeroed_page();
	pmd = (unsigned long *)get_zeroed_page();
	if (!pud || !pmd) {
		free_page((unsigned long)pgd);
		if (pud)
			free_page((unsigned long)pud);
		return NULL;
	}
	pgd[0] = (unsigned long)pud | 7;
	for (int i = 1; i < 4; i++)
		pud[i] = level3_ident_pgt[i];
	pud[0] = (unsigned long)pmd | 7;
	pmd[0] = level2_kernel_pgt[0];
	pmd[1] = level2_kernel_pgt[1];
	memset(mm, 0, sizeof(*mm));
	mm->users = 1;
	mm->pgd = pgd;
	mm->mmap_base = MMAP_BASE;
	return mm;
}

/* Free a table level; the kernel's shared entries are not ours to free. */
static void free_pgtable(unsigned long *table, int level, int is_low)
{
	for (int i = 0; i < 512; i++) {
		unsigned long e = table[i];

		if (!(e & _PAGE_PRESENT))
			continue;
		if (is_low && ((level == 3 && i > 0) || (level == 2 && i < 2)))
			continue;
		if (level > 1)
			free_pgtable((unsigned long *)(e & PTE_ADDR_MASK), level - 1, is_low && i == 0);
		free_page(e & PTE_ADDR_MASK);
	}
}

__kfunc void mmput(struct mm_struct *mm)
{
	if (!mm || !mm->pgd)
		return;
	if (read_cr3() == (unsigned long)mm->pgd)
		load_cr3(swapper_pg_dir);
	free_pgtable(mm->pgd, 4, 1);
	free_page((unsigned long)mm->pgd);
	mm->pgd = NULL;
}

/* fork: copy every user page (no copy-on-write in the minikernel). */
static int copy_level(struct mm_struct *mm, unsigned long *table, int level, unsigned long base, int is_low)
{
	for (int i = 0; i < 512; i++) {
		unsigned long e = table[i], addr = base + ((unsigned long)i << (12 + 9 * (level - 1)));

		if (!(e & _PAGE_PRESENT))
			continue;
		if (is_low && ((level == 3 && i > 0) || (level == 2 && i < 2)))
			continue;
		if (level > 1) {
			int err = copy_level(mm, (unsigned long *)(e & PTE_ADDR_MASK), level - 1, addr,
					     is_low && i == 0);
			if (err)
				return err;
			continue;
		}
		if (map_user_page(mm, addr, e & (_PAGE_RW | _PAGE_NX)))
			return -ENOMEM;
		copy_page((void *)(*pte_offset(mm, addr, 0) & PTE_ADDR_MASK), (void *)(e & PTE_ADDR_MASK));
	}
	return 0;
}

__kfunc int dup_mmap(struct mm_struct *mm, struct mm_struct *oldmm)
{
	unsigned long *pgd = mm->pgd;

	memcpy(mm, oldmm, sizeof(*mm));
	mm->pgd = pgd;
	mm->nr_pages = 0;
	return copy_level(mm, oldmm->pgd, 4, 0, 1);
}

/* ------------------------------------------------------------------ */
/* brk and anonymous mmap (mm/mmap.c) */

__kfunc unsigned long do_brk(unsigned long addr, unsigned long len)
{
	struct mm_struct *mm = current->mm;

	for (unsigned long a = addr & PAGE_MASK; a < addr + len; a += PAGE_SIZE)
		if (map_user_page(mm, a, vm_get_page_prot(PROT_READ | PROT_WRITE)))
			return -ENOMEM;
	return addr;
}

__kfunc unsigned long do_mmap_anon(unsigned long addr, unsigned long len, int prot, int flags)
{
	struct mm_struct *mm = current->mm;
	unsigned long start, pgprot = vm_get_page_prot(prot);

	len = PAGE_ALIGN(len);
	if (!len || len > (1UL << 36))
		return -ENOMEM;
	if ((flags & 0x10) && addr) {		/* MAP_FIXED */
		start = addr & PAGE_MASK;
	} else {
		mm->mmap_base -= len;
		start = mm->mmap_base;
	}
	for (unsigned long a = start; a < start + len; a += PAGE_SIZE) {
		if (map_user_page(mm, a, pgprot)) {
			do_munmap(mm, start, a - start);
			return -ENOMEM;
		}
	}
	if (flags & 0x10)		/* pages already there take the new protection */
		change_protection(mm, start, start + len, pgprot);
	return start;
}

/* Move the page table entries of [old, old+len) to new (a fresh range). */
static int move_ptes(struct mm_struct *mm, unsigned long old, unsigned long new, unsigned long len)
{
	for (unsigned long off = 0; off < len; off += PAGE_SIZE) {
		unsigned long *src = pte_offset(mm, old + off, 0), *dst;

		if (!src || !(*src & _PAGE_PRESENT))
			continue;
		dst = pte_offset(mm, new + off, 1);
		if (!dst)
			return -ENOMEM;
		*dst = *src;
		*src = 0;
	}
	return 0;
}

__kfunc long do_mremap(unsigned long addr, unsigned long old_len, unsigned long new_len, int may_move)
{
	struct mm_struct *mm = current->mm;
	unsigned long new, pgprot, *pte;

	if (!access_ok(addr, old_len, 0))
		return -EFAULT;
	pte = pte_offset(mm, addr, 0);		/* the grown part's protection */
	pgprot = pte && (*pte & _PAGE_PRESENT) ? *pte & (_PAGE_RW | _PAGE_NX)
		: vm_get_page_prot(PROT_READ | PROT_WRITE);
	if (new_len <= old_len) {
		do_munmap(mm, addr + new_len, old_len - new_len);
		return addr;
	}
	if (!may_move)
		return -ENOMEM;
	mm->mmap_base -= new_len;
	new = mm->mmap_base;
	if (move_ptes(mm, addr, new, old_len))
		return -ENOMEM;
	for (unsigned long a = new + old_len; a < new + new_len; a += PAGE_SIZE) {
		if (map_user_page(mm, a, pgprot)) {
			do_munmap(mm, new, a - new);
			return -ENOMEM;
		}
	}
	load_cr3(mm->pgd);		/* flush the TLB: the old addresses are gone */
	return new;
}

__kfunc long do_munmap(struct mm_struct *mm, unsigned long addr, unsigned long len)
{
	if (addr & ~PAGE_MASK)
		return -EINVAL;
	for (unsigned long a = addr; a < addr + PAGE_ALIGN(len); a += PAGE_SIZE) {
		unsigned long *pte;

		if (!user_range(a))
			continue;
		pte = pte_offset(mm, a, 0);
		if (pte && (*pte & _PAGE_PRESENT)) {
			free_page(*pte & PTE_ADDR_MASK);
			*pte = 0;
			mm->nr_pages--;
		}
	}
	load_cr3(mm->pgd);		/* flush the TLB */
	return 0;
}

/*
 * mm/mprotect.c: every page of [start, end) must be mapped (-ENOMEM, and
 * nothing changes); each then takes pgprot's execute permission.
 */
__kfunc long change_protection(struct mm_struct *mm, unsigned long start, unsigned long end,
			       unsigned long pgprot)
{
	unsigned long *pte;

	for (unsigned long a = start; a < end; a += PAGE_SIZE) {
		pte = user_range(a) ? pte_offset(mm, a, 0) : NULL;
		if (!pte || !(*pte & _PAGE_PRESENT))
			return -ENOMEM;
	}
	for (unsigned long a = start; a < end; a += PAGE_SIZE) {
		pte = pte_offset(mm, a, 0);
		*pte = (*pte & ~_PAGE_NX) | (pgprot & _PAGE_NX);
	}
	load_cr3(mm->pgd);		/* flush the TLB */
	return 0;
}

/* ------------------------------------------------------------------ */
/* uaccess: check the page tables first, so a bad pointer is -EFAULT. */

__kfunc int access_ok(unsigned long addr, unsigned long size, int write)
{
	struct mm_struct *mm = current->mm;
	unsigned long end = addr + size;

	if (!mm || !mm->pgd)
		return 1;		/* a kernel thread's own buffers */
	if (end < addr)
		return 0;
	for (unsigned long a = addr & PAGE_MASK; a < end; a += PAGE_SIZE) {
		unsigned long *pte;

		if (!user_range(a))
			return a < USER_LOW_START && a >= 0x100000;	/* kernel data */
		pte = pte_offset(mm, a, 0);
		if (!pte || !(*pte & _PAGE_PRESENT) || (write && !(*pte & _PAGE_RW)))
			return 0;
	}
	return 1;
}

__kfunc long copy_to_user(void *to, const void *from, unsigned long n)
{
	if (!access_ok((unsigned long)to, n, 1))
		return -EFAULT;
	memcpy(to, from, n);
	return 0;
}

__kfunc long copy_from_user(void *to, const void *from, unsigned long n)
{
	if (!access_ok((unsigned long)from, n, 0))
		return -EFAULT;
	memcpy(to, from, n);
	return 0;
}

__kfunc long strncpy_from_user(char *dst, const char *src, long count)
{
	long i;

	for (i = 0; i < count; i++) {
		if (!access_ok((unsigned long)(src + i), 1, 0))
			return -EFAULT;
		dst[i] = src[i];
		if (!dst[i])
			return i;
	}
	return -ENAMETOOLONG;
}

/* ------------------------------------------------------------------ */
/* Context switch: the address space, the FPU, FS base and TSS.rsp0. */

__kfunc void activate_mm(struct mm_struct *mm)
{
	if (mm && mm->pgd && read_cr3() != (unsigned long)mm->pgd)
		load_cr3(mm->pgd);
}

/*
 * Lazy FPU switching, as 2.6 does it (include/asm-x86_64/i387.h,
 * traps.c): a switch saves the FPU state only of a task that used it in
 * its time slice and sets CR0.TS; the next task's first FPU or SSE
 * instruction raises #NM, and math_state_restore() loads its state.
 */
static inline void clts(void)
{
	__asm__ __volatile__("clts");
}

static inline void stts(void)
{
	unsigned long cr0;

	__asm__ __volatile__("mov %%cr0,%0" : "=r"(cr0));
	__asm__ __volatile__("mov %0,%%cr0" : : "r"(cr0 | 8));	/* TS */
}

static inline void fxsave(struct task_struct *tsk)
{
	__asm__ __volatile__("fxsave %0" : "=m"(*(char (*)[512])tsk->i387));
}

static inline void fxrstor(struct task_struct *tsk)
{
	__asm__ __volatile__("fxrstor %0" : : "m"(*(char (*)[512])tsk->i387));
}

/* exec: the initial FPU state, loaded now. */
__kfunc void load_fpu_init(struct task_struct *tsk)
{
	memset(tsk->i387, 0, sizeof(tsk->i387));
	*(u16 *)&tsk->i387[0] = 0x37f;		/* fcw */
	*(u32 *)&tsk->i387[24] = 0x1f80;	/* mxcsr */
	tsk->used_math = 1;
	clts();
	fxrstor(tsk);
	tsk->usedfpu = 1;
}

/* #NM: the current task touches the FPU for the first time in this slice. */
__kfunc void math_state_restore(void)
{
	struct task_struct *me = current;

	clts();
	if (!me->used_math)
		load_fpu_init(me);
	else
		fxrstor(me);
	me->usedfpu = 1;
}

/* unlazy_fpu(): save the state of a task that used the FPU in its slice. */
__kfunc void unlazy_fpu(struct task_struct *tsk)
{
	if (tsk->usedfpu) {
		fxsave(tsk);
		tsk->usedfpu = 0;
		stts();
	}
}

/* Context switch (called from switch_to): the FPU (lazily), FS base,
 * TSS.rsp0 and the address space. */
__kfunc void __switch_to(struct task_struct *prev, struct task_struct *next)
{
	unlazy_fpu(prev);
	if (prev->used_math)
		prev->fs = rdmsrl(MSR_FS_BASE);
	if (next->used_math)
		wrmsrl(MSR_FS_BASE, next->fs);
	init_tss[smp_processor_id()].rsp0 = (unsigned long)next->stack + THREAD_SIZE;
	if (prev->flags & PF_EXITING)
		leave_mm(prev);
	activate_mm(next->mm);
}

/* An exiting task's CPU leaves its address space: the parent frees it
 * when it reaps the zombie, maybe from another CPU, and a CPU whose CR3
 * still pointed at those page tables would walk freed pages. */
__kfunc void leave_mm(struct task_struct *tsk)
{
	if (read_cr3() == (unsigned long)tsk->mm_store.pgd)
		load_cr3(swapper_pg_dir);
}

/* fork: the child copies the parent's saved FPU state and FS base (unlazy_fpu). */
__kfunc void prepare_to_copy(struct task_struct *tsk)
{
	if (tsk->usedfpu)
		fxsave(tsk);
	if (tsk->used_math)
		tsk->fs = rdmsrl(MSR_FS_BASE);
}

__kfunc long sys_arch_prctl(int code, unsigned long addr)
{
	if (code == 0x1002) {			/* ARCH_SET_FS */
		if (addr >= TASK_SIZE)
			return -EPERM;
		current->fs = addr;
		wrmsrl(MSR_FS_BASE, addr);
		return 0;
	}
	if (code == 0x1003)			/* ARCH_GET_FS */
		return copy_to_user((void *)addr, &current->fs, 8);
	return -EINVAL;
}

/* fork: the child p gets a copy of the parent's address space. */
__kfunc struct mm_struct *copy_user_mm(struct task_struct *p, struct task_struct *parent, struct mm_struct *mm)
{
	if (!mm_alloc(mm))
		return NULL;
	if (dup_mmap(mm, parent->mm)) {
		mmput(mm);
		return NULL;
	}
	p->mm = mm;
	p->usedfpu = 0;			/* its state is the copy in i387 */
	return mm;
}
