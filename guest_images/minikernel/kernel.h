/*
 * kernel.h - basic types, compiler helpers, irq/port/spinlock primitives
 * and list helpers for the kprobe-shell minikernel.
 *
 * The minikernel is a deliberately small kernel shaped like Linux 2.6.12
 * x86_64.  Function names, prototypes and call chains mirror their Linux
 * namesakes so that kprobes/jprobes/kretprobes behave as they would on
 * the real thing.
 */
#ifndef _MK_KERNEL_H
#define _MK_KERNEL_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long s64;

typedef unsigned long size_t;
typedef long ssize_t;
typedef long long loff_t;
typedef int pid_t;
typedef unsigned int umode_t;
typedef unsigned long sector_t;
typedef unsigned int dev_t;
typedef unsigned int gfp_t;

#define NULL ((void *)0)
#define offsetof(t, m) __builtin_offsetof(t, m)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/*
 * Every kernel function that the host may probe is a real, out-of-line
 * symbol: never inlined, never cloned (.isra/.constprop), never folded
 * into another identical function, and never optimised across calls
 * (-fipa-ra).  "noipa" implies all of that.
 */
#define __kfunc		__attribute__((noipa, used))
#define __used		__attribute__((used))
#define __noreturn	__attribute__((noreturn))
#define __aligned(x)	__attribute__((aligned(x)))
#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)
#define barrier()	__asm__ __volatile__("" ::: "memory")
#define cpu_relax()	__asm__ __volatile__("pause" ::: "memory")
#define ACCESS_ONCE(x)	(*(volatile __typeof__(x) *)&(x))

/* errno values (Linux numbering) */
#define EPERM		1
#define ENOENT		2
#define ESRCH		3
#define EIO		5
#define EBADF		9
#define ECHILD		10
#define EAGAIN		11
#define ENOMEM		12
#define EFAULT		14
#define EBUSY		16
#define ENOTDIR		20
#define EISDIR		21
#define EINVAL		22
#define ENFILE		23
#define EMFILE		24
#define ENAMETOOLONG	36
#define ENOEXEC		8
#define EHOSTUNREACH	113

#define SIGKILL		9
#define SIGSEGV		11
#define SIGCHLD		17

#define MAX_ERRNO	4095
#define IS_ERR_VALUE(x)	((unsigned long)(x) >= (unsigned long)-MAX_ERRNO)
static inline void *ERR_PTR(long error) { return (void *)error; }
static inline long PTR_ERR(const void *ptr) { return (long)ptr; }
static inline int IS_ERR(const void *ptr) { return IS_ERR_VALUE((unsigned long)ptr); }

/* ------------------------------------------------------------------ */
/* Port I/O: only 0x3f8 (THR), 0x3fd (LSR) and 0x20 (PIC EOI) are used. */

#define SERIAL_PORT	0x3f8
#define SERIAL_LSR	0x3fd
#define LSR_THRE	0x20
#define PIC_MASTER_CMD	0x20
#define PIC_EOI		0x20

static inline void outb(u8 value, u16 port)
{
	__asm__ __volatile__("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ __volatile__("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* ------------------------------------------------------------------ */
/* Interrupt flag helpers (asm/system.h) */

#define X86_EFLAGS_TF	0x00000100
#define X86_EFLAGS_IF	0x00000200
#define X86_EFLAGS_DF	0x00000400

static inline unsigned long __save_flags(void)
{
	unsigned long flags;
	__asm__ __volatile__("pushfq ; popq %0" : "=rm"(flags) : : "memory");
	return flags;
}

static inline void local_irq_restore(unsigned long flags)
{
	__asm__ __volatile__("pushq %0 ; popfq" : : "g"(flags) : "memory", "cc");
}

static inline void local_irq_disable(void)
{
	__asm__ __volatile__("cli" : : : "memory");
}

static inline void local_irq_enable(void)
{
	__asm__ __volatile__("sti" : : : "memory");
}

static inline unsigned long __local_irq_save(void)
{
	unsigned long flags = __save_flags();
	local_irq_disable();
	return flags;
}
#define local_irq_save(flags)	((flags) = __local_irq_save())
#define local_save_flags(flags)	((flags) = __save_flags())

static inline int irqs_disabled(void)
{
	return !(__save_flags() & X86_EFLAGS_IF);
}

/* "sti; hlt": the idle instruction pair (interrupt shadow covers hlt) */
static inline void safe_halt(void)
{
	__asm__ __volatile__("sti ; hlt" : : : "memory");
}

/* ------------------------------------------------------------------ */
/* Doubly linked lists (linux/list.h) */

struct list_head {
	struct list_head *next, *prev;
};

#define LIST_HEAD_INIT(name) { &(name), &(name) }
#define LIST_HEAD(name) struct list_head name = LIST_HEAD_INIT(name)

static inline void INIT_LIST_HEAD(struct list_head *list)
{
	list->next = list;
	list->prev = list;
}

static inline void __list_add(struct list_head *new, struct list_head *prev,
			      struct list_head *next)
{
	next->prev = new;
	new->next = next;
	new->prev = prev;
	prev->next = new;
}

static inline void list_add(struct list_head *new, struct list_head *head)
{
	__list_add(new, head, head->next);
}

static inline void list_add_tail(struct list_head *new, struct list_head *head)
{
	__list_add(new, head->prev, head);
}

static inline void list_del_init(struct list_head *entry)
{
	entry->next->prev = entry->prev;
	entry->prev->next = entry->next;
	INIT_LIST_HEAD(entry);
}

static inline void list_move_tail(struct list_head *list, struct list_head *head)
{
	list->next->prev = list->prev;
	list->prev->next = list->next;
	list_add_tail(list, head);
}

static inline int list_empty(const struct list_head *head)
{
	return head->next == head;
}

#define list_entry(ptr, type, member) container_of(ptr, type, member)
#define list_for_each(pos, head) \
	for (pos = (head)->next; pos != (head); pos = pos->next)
#define list_for_each_safe(pos, n, head) \
	for (pos = (head)->next, n = pos->next; pos != (head); pos = n, n = pos->next)

/* ------------------------------------------------------------------ */
/* Spinlocks: xchg based, usable on SMP.  The out-of-line entry points
 * live in spinlock.c (like kernel/spinlock.c). */

typedef struct {
	volatile unsigned int slock;
} spinlock_t;

#define SPIN_LOCK_UNLOCKED	{ 0 }
#define spin_lock_init(l)	((l)->slock = 0)

static inline unsigned int __xchg32(volatile unsigned int *ptr, unsigned int v)
{
	__asm__ __volatile__("xchgl %0, %1" : "+r"(v), "+m"(*ptr) : : "memory");
	return v;
}

static inline void _raw_spin_lock(spinlock_t *lock)
{
	while (__xchg32(&lock->slock, 1) != 0) {
		while (lock->slock)
			cpu_relax();
	}
}

static inline int _raw_spin_trylock(spinlock_t *lock)
{
	return __xchg32(&lock->slock, 1) == 0;
}

static inline void _raw_spin_unlock(spinlock_t *lock)
{
	barrier();
	lock->slock = 0;
	barrier();
}

void _spin_lock(spinlock_t *lock);
void _spin_unlock(spinlock_t *lock);
unsigned long _spin_lock_irqsave(spinlock_t *lock);
void _spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);

#define spin_lock(l)			_spin_lock(l)
#define spin_unlock(l)			_spin_unlock(l)
#define spin_lock_irqsave(l, f)		((f) = _spin_lock_irqsave(l))
#define spin_unlock_irqrestore(l, f)	_spin_unlock_irqrestore(l, f)

/* ------------------------------------------------------------------ */
/* lib.c / printk.c */

void *memset(void *s, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strcpy(char *dst, const char *src);
size_t strlcpy(char *dst, const char *src, size_t size);
const char *kbasename(const char *path);
u32 crc32_le(u32 crc, const u8 *p, size_t len);

int vsnprintf(char *buf, size_t size, const char *fmt, __builtin_va_list args);
int snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void early_serial_write(const char *s, size_t n);

void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2))) __noreturn;
void machine_halt(void) __noreturn;

#define BUG() panic("kernel BUG in %s() line %d", __func__, __LINE__)
#define BUG_ON(c) do { if (unlikely(c)) BUG(); } while (0)

#endif /* _MK_KERNEL_H */
