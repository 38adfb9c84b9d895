/*
 * The instruction clock: the C hooks behind the guest's virtual clock (clock.py drives them;
 * struct icount is mirrored there with ctypes, its size checked against ICOUNT_SIZE).
 *
 * Unicorn has no icount mode, and `emu_start(count=N)` counts with a hidden hook on every
 * instruction whose counter cannot be read.  The clock must be exact (timer ticks land on
 * the same guest instruction in every run, with or without probes) and readable from
 * every probe hit (trace timestamps), and it must cost nearly nothing: no hook on every
 * guest instruction (a C callback per instruction made the guest ~2.5x slower than bare
 * unicorn; one per translated block costs a few percent).
 *
 * So the image's text is counted a block at a time.  block_hook is a UC_HOOK_BLOCK over
 * the text: at the start of each translated block it adds the block's instruction count,
 * decoded once with capstone and kept in a table keyed by (address, size).  That is exact
 * wherever a count is read, because every point where the tool reads or stops the clock
 * ends a translated block: an int3 (a trap), the `jmp` of a jump-optimized probe, sti,
 * popf and iretq (the only instructions that turn interrupts on).  What does not end a
 * block is settled by clock.py from the block's record (blk_*, InstructionClock.settle):
 * a fault in the middle of a block, an exact-address code hook (a breakpoint), an in/out
 * (the SMP startup IPI), a stop unicorn makes after an I/O hook.  A stop asked for by
 * another thread (Ctrl-C) is made by the hooks themselves, before a block starts
 * (stop_asked).
 *
 * A deadline (the next timer tick, the end of an instruction budget or of an SMP quantum)
 * that falls inside a block cannot be honoured from a block hook.  The hook has QEMU run
 * the block again as one of just the instructions before the deadline (limit_block: a
 * block QEMU caches beside the whole one, so a deadline that falls there again costs no
 * translation), and stops the run at the block after it.  Where it cannot, it stops
 * before the block and leaves its place in split_*, and InstructionClock.split_block does
 * the same from the run loop or (the fallback) drops the block from the translation cache
 * and runs again with `until` at the exact instruction.  A tick due at the start of a
 * block of user code with interrupts on is delivered by the hook itself
 * (deliver_user_tick), as UserSpace.enter_trap would: a program's ticks (every 5,000
 * instructions by default) never leave emu_start.
 *
 * A tick that finds interrupts off is held and retried every `retry` instructions until
 * they are on.  Interrupts can only come on at the end of a block (sti, popf, iretq and
 * sysretq end their block in QEMU), so when a block starts with them off every retry
 * point inside it would fail: the hook moves the tick past the block (the retry points stay where
 * stopping at each would have put them) instead of stopping.  It does not even read
 * EFLAGS for that unless they may have come on since it last knew them off: after a
 * block ending in one of those instructions, or anything else than a block of the text
 * (the tool's code, a trap, a stop: if_may_rise).
 *
 * Instructions run in the tool's own pages (instruction slots, trampolines) are not
 * counted: a probe costs the guest's clock nothing.  Detour buffers (jump-optimized
 * probes) are the exception: the relocated copies of the replaced instructions stand for
 * guest instructions, and they must be counted, with the deadline checked before each,
 * exactly as the originals would have been.  The tool's pages are small and run only on a
 * probe hit, so there tool_hook, a UC_HOOK_CODE, counts an instruction when a byte map says
 * it stands for a guest instruction (the first copy is not counted: the `jmp` planted at
 * the probed address already was; the jump back stands for nothing).  It also dispatches
 * to the engine's callbacks on the tool's own code, so that probes never lengthen
 * unicorn's hook list (walked on every hooked instruction).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef void (*code_cb)(void *uc, uint64_t address, uint32_t size, void *user_data);
typedef int (*uc_reg_fn)(void *uc, int regid, void *value);
typedef int (*uc_mem_read_fn)(void *uc, uint64_t address, void *bytes, uint64_t size);
/* capstone's cs_disasm_iter(csh, const uint8_t **code, size_t *size, uint64_t *address, cs_insn *) */
typedef bool (*cs_disasm_iter_fn)(size_t handle, const uint8_t **code, size_t *size, uint64_t *address, void *insn);

/* unicorn's uc_reg_read, uc_reg_write and uc_mem_read, and capstone's decoder: passed in
 * by init(). */
static uc_reg_fn p_reg_read;
static uc_reg_fn p_reg_write;
typedef int (*uc_mem_write_fn)(void *uc, uint64_t address, const void *bytes, uint64_t size);
static uc_mem_write_fn p_mem_write;
static uc_mem_read_fn p_mem_read;
/* uc_vmem_read(uc, address, prot, bytes, size): through the guest's page tables */
typedef int (*uc_vmem_read_fn)(void *uc, uint64_t address, int prot, void *bytes, size_t size);
static uc_vmem_read_fn p_vmem_read;
static cs_disasm_iter_fn p_disasm_iter;
static size_t cs_handle;
static void *cs_insn_buf;   /* one cs_insn from cs_malloc, reused */
static int eflags_regid;
static int rip_regid;
static int cs_regid;

#define MAX_TOOL_HOOKS 4
#define CF_COUNT_MASK 0x7FFF           /* QEMU's instruction limit in a block's cflags */
#define EFLAGS_IF 0x200
#define EFLAGS_TF 0x100
#define TIMER_VECTOR 0x20

/* Instruction counts of translated blocks, keyed by (address, size): open addressing,
 * linear probing; size 0 marks a free entry, BLOCK_GONE one whose code was rewritten.
 * The memory is a ctypes buffer clock.BlockTable owns (see BLOCK_TABLE_BYTES). */
#define BLOCK_TABLE_SIZE 8192          /* a power of two; the bundled kernel has ~1300 blocks */
#define BLOCK_GONE 0xFFFFFFFFu
#define MAY_SET_IF 0x80000000u         /* in n: the block ends with sti, popf, iret or sysret */
struct block_entry { uint64_t address; uint32_t size, n; };
struct block_table { uint64_t filled; struct block_entry e[BLOCK_TABLE_SIZE]; };
/* One callback on the tool's own code: see tool_hooks in struct icount.  cb gets data as
 * its user_data. */
struct tool_hook { uint64_t begin, end; code_cb cb; PyObject *py; void *data; };

struct icount {
    uint64_t retired;          /* guest instructions started */
    uint64_t deadline;         /* stop before the instruction that would pass this: min(tick, limit) */
    void (*emu_stop)(void *uc);/* uc_emu_stop, passed in from Python */
    /* Detour buffers: counted[a - detour_base] is 1 when the instruction at a is the
     * relocated copy of a guest instruction. */
    uint64_t detour_base;
    uint64_t detour_size;
    const uint8_t *counted;
    /* Callbacks on the tool's own code (detour entries, the kretprobe booster): rather
     * than one unicorn hook each, tool_hook dispatches to them.
     * py: the Python callable itself (a borrowed reference: Machine keeps it alive), called
     * through the C API rather than through cb, a ctypes thunk: the thunk's argument
     * conversion costs about as much as the rest of a booster or optimized-probe hit's
     * host transition.  cb stays as the way to call a C callback (py NULL). */
    uint64_t n_tool_hooks;
    struct tool_hook tool_hooks[MAX_TOOL_HOOKS];
    uint64_t tick;             /* the timer's next tick (or retry point) */
    uint64_t limit;            /* the other deadlines: end of the budget, of the quantum */
    uint64_t retry;            /* 0, or the retry period of a tick waiting for interrupts on */
    /* The last block counted: [blk_addr, blk_end), blk_n instructions, the count before it
     * blk_base.  blk_end 0: no block to settle against. */
    uint64_t blk_addr, blk_end, blk_base, blk_n;
    /* A deadline falls inside the block [split_addr, +split_size): run it to the exact
     * instruction (the machine does; split_size 0: nothing to do). */
    uint64_t split_addr, split_size;
    struct block_table *blocks;
    uint64_t if_may_rise;      /* interrupts may have come on since a block started with them off */
    /* Set by another thread (Ctrl-C) instead of calling uc_emu_stop: unicorn skips block
     * hooks once a stop is requested but a block may still start before the request takes
     * effect, and that block would run uncounted.  Stopping from the hooks themselves is
     * exact. */
    volatile uint64_t stop_asked;
    /* The guest runs with paging (user processes): decode blocks through its page tables. */
    uint64_t vmem;
    /* unicorn's CPUState.cflags_next_tb (NULL: not found, see clock.py): the block hook
     * splits a block at a deadline itself, without leaving emu_start.  limited_*: the
     * last split it made (made again at the same count, it was not honoured: the hook
     * stops instead).  split_stop: where the run stopped at the deadline of that split. */
    uint32_t *next_tb_cflags;
    uint64_t limited_retired, limited_addr, limited_k;
    uint64_t split_stop;
    /* A user-space machine: a tick due at the start of a block of user code, with
     * interrupts on, is delivered here as UserSpace.enter_trap does (the record at
     * trap_info, IF and TF off, rip to trap_gate), and the next one set `period` later,
     * without leaving emu_start (trap_info 0: the machine delivers every tick).
     * tick_log: when set, (clock, rip) of each of those ticks, for the tests. */
    uint64_t trap_info, trap_gate, period;
    uint64_t *tick_log;
    uint64_t tick_log_len, tick_log_cap;
    /* The end of the last block that started, never cleared: a stop with rip just past a
     * hlt came from that hlt only when the last block ran up to rip (machine.py,
     * _executed_hlt); a jump to the instruction after a hlt stops there too. */
    uint64_t last_end;
};

/* Call a tool hook's Python callable with the address alone (what the callbacks use: no
 * objects built for the rest), holding the GIL (uc_emu_start runs without it); an
 * exception cannot go anywhere (the callbacks catch their own): it is reported as
 * unraisable, as ctypes does. */
static void call_py_hook(PyObject *fn, uint64_t address)
{
    PyGILState_STATE st = PyGILState_Ensure();
    PyObject *arg = PyLong_FromUnsignedLongLong(address), *r = NULL;
    if (arg)
        r = PyObject_Vectorcall(fn, &arg, 1, NULL);
    if (r)
        Py_DECREF(r);
    else
        PyErr_WriteUnraisable(fn);
    Py_XDECREF(arg);
    PyGILState_Release(st);
}

/* Does the instruction at code turn interrupts on, or may it: sti, popf, iret (after any
 * operand-size or REX prefix)? */
static int may_set_if(const uint8_t *code, size_t len)
{
    size_t i = 0;
    while (i < len && (code[i] == 0x66 || (code[i] & 0xF0) == 0x40))
        i++;
    if (i < len && (code[i] == 0xFB || code[i] == 0x9D || code[i] == 0xCF))
        return 1;
    /* sysret: rflags from r11, so interrupts come on with the return to user mode */
    return i + 1 < len && code[i] == 0x0F && code[i + 1] == 0x07;
}

/* How many instructions the block [address, address+size) holds, as capstone decodes the
 * guest's memory, with MAY_SET_IF when the last one may turn interrupts on.  Bytes
 * capstone cannot decode end the block (the CPU raises #UD there): they count as one
 * instruction. */
static uint32_t decode_block(struct icount *c, void *uc, uint64_t address, uint32_t size)
{
    uint8_t buf[8192];
    const uint8_t *code = buf, *last = buf;
    size_t left = size;
    uint64_t at = address;
    uint32_t n = 0;
    if (size > sizeof(buf) || !p_disasm_iter)
        return 1 | MAY_SET_IF;
    if (c->vmem && p_vmem_read ? p_vmem_read(uc, address, 1 /* UC_PROT_READ */, buf, size)
                               : p_mem_read(uc, address, buf, size))
        return 1 | MAY_SET_IF;
    while (left) {
        last = code;
        if (!p_disasm_iter(cs_handle, &code, &left, &at, cs_insn_buf))
            return (n + 1) | MAY_SET_IF;
        n++;
    }
    return n | (may_set_if(last, (size_t)(buf + size - last)) ? MAY_SET_IF : 0);
}

/* nth_instruction(uc, address, size, k, vmem): the address of the k-th instruction (from
 * 0) of the block [address, address+size), decoded as decode_block decodes it (bytes that
 * do not decode are one last instruction); 0 when the block has no k-th one or cannot be
 * read.  The run loop's split of a block at a deadline (InstructionClock.split_block). */
static PyObject *nth_instruction(PyObject *self, PyObject *args)
{
    unsigned long long uch, address, k, vmem;
    unsigned int size;
    uint8_t buf[8192];
    const uint8_t *code = buf;
    size_t left;
    uint64_t at, n = 0, here;
    void *uc;
    if (!PyArg_ParseTuple(args, "KKIKK", &uch, &address, &size, &k, &vmem))
        return NULL;
    uc = (void *)(uintptr_t)uch;
    if (size > sizeof(buf) || !p_disasm_iter
        || (vmem && p_vmem_read ? p_vmem_read(uc, address, 1 /* UC_PROT_READ */, buf, size)
                                : p_mem_read(uc, address, buf, size)))
        return PyLong_FromLong(0);
    left = size;
    at = address;
    while (left) {
        here = at;
        if (n == k)
            return PyLong_FromUnsignedLongLong(here);
        if (!p_disasm_iter(cs_handle, &code, &left, &at, cs_insn_buf))
            break;
        n++;
    }
    return PyLong_FromLong(0);
}

static uint32_t block_insns(struct icount *c, void *uc, uint64_t address, uint32_t size)
{
    struct block_table *t = c->blocks;
    uint64_t i = (address * 0x9E3779B97F4A7C15ull ^ size) & (BLOCK_TABLE_SIZE - 1);
    struct block_entry *e, *reuse = NULL;
    uint32_t n;
    for (;; i = (i + 1) & (BLOCK_TABLE_SIZE - 1)) {
        e = &t->e[i];
        if (e->size == 0)
            break;
        if (e->size == size && e->address == address)
            return e->n;
        if (e->size == BLOCK_GONE && !reuse)
            reuse = e;
    }
    n = decode_block(c, uc, address, size);
    if (!reuse) {
        if (t->filled >= BLOCK_TABLE_SIZE * 3 / 4) {   /* full of old blocks: start over */
            memset(t, 0, sizeof(*t));
            return block_insns(c, uc, address, size);
        }
        t->filled++;
        reuse = e;
    }
    reuse->address = address;
    reuse->size = size;
    reuse->n = n;
    return n;
}

static int interrupts_on(void *uc)
{
    uint64_t eflags = 0;
    p_reg_read(uc, eflags_regid, &eflags);
    return (eflags & EFLAGS_IF) != 0;
}

/* A deadline falls inside the block at address: have QEMU run it again as a block of just
 * the instructions before the deadline (the next block looked up or translated takes its
 * cflags from cflags_next_tb; QEMU caches it beside the whole block).  Rewriting rip, to
 * the same address, makes unicorn leave this block before its first instruction and look
 * the next one up without leaving emu_start.  The block hook then stops the run at the
 * block after it, at the deadline.  Returns 0 when the split is the machine's to make. */
static int limit_block(struct icount *c, void *uc, uint64_t address)
{
    uint64_t k = c->deadline - c->retired;
    if (!c->next_tb_cflags || k > CF_COUNT_MASK
        || (c->limited_retired == c->retired && c->limited_addr == address && c->limited_k == k))
        return 0;
    c->limited_retired = c->retired;
    c->limited_addr = address;
    c->limited_k = k;
    *c->next_tb_cflags = (uint32_t)k;
    return p_reg_write(uc, rip_regid, &address) == 0;
}

/* The tick due now, before the block at address: deliver it here if it is a user-mode one
 * with interrupts on and no other deadline at the same instruction (see struct icount);
 * returns 0 when it is the machine's to deliver. */
static int deliver_user_tick(struct icount *c, void *uc, uint64_t address)
{
    uint64_t cs = 0, rflags = 0, record[5];
    if (!c->trap_info || c->retry || c->deadline != c->tick || c->tick >= c->limit || !c->period)
        return 0;
    if (p_reg_read(uc, cs_regid, &cs) || (cs & 3) != 3 || p_reg_read(uc, eflags_regid, &rflags)
        || !(rflags & EFLAGS_IF))
        return 0;
    record[0] = address;
    record[1] = rflags;
    record[2] = TIMER_VECTOR;
    record[3] = record[4] = 0;   /* no error code, no cr2 */
    if (p_mem_write(uc, c->trap_info, record, sizeof(record)))
        return 0;
    rflags &= ~(uint64_t)(EFLAGS_IF | EFLAGS_TF);
    p_reg_write(uc, eflags_regid, &rflags);
    p_reg_write(uc, rip_regid, &c->trap_gate);
    if (c->tick_log && c->tick_log_len < c->tick_log_cap) {
        c->tick_log[2 * c->tick_log_len] = c->retired;
        c->tick_log[2 * c->tick_log_len + 1] = address;
        c->tick_log_len++;
    }
    while (c->tick <= c->retired)
        c->tick += c->period;
    c->deadline = c->tick < c->limit ? c->tick : c->limit;
    c->if_may_rise = 1;
    return 1;
}

static void block_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct icount *c = user_data;
    uint32_t info;
    if (c->stop_asked) {
        c->blk_end = 0;
        c->emu_stop(uc);
        return;
    }
    info = block_insns(c, uc, address, size);
    uint64_t n = info & ~MAY_SET_IF, end = c->retired + n;
    if (end > c->deadline && c->retry && c->deadline == c->tick && c->tick < c->limit
        && !(c->if_may_rise && interrupts_on(uc))) {
        /* Interrupts stay off to this block's end: every retry point in it would fail. */
        c->if_may_rise = 0;
        c->tick += (end - c->tick + c->retry - 1) / c->retry * c->retry;
        c->deadline = c->tick < c->limit ? c->tick : c->limit;
    }
    if (end > c->deadline) {
        c->blk_end = 0;            /* this block does not start now */
        if (c->retired < c->deadline && limit_block(c, uc, address))
            return;
        if (c->retired < c->deadline) {
            c->split_addr = address;
            c->split_size = size;
        } else if (deliver_user_tick(c, uc, address)) {
            return;
        } else if (c->retired == c->limited_retired + c->limited_k) {
            c->split_stop = address;
        }
        c->emu_stop(uc);
        return;
    }
    c->blk_addr = address;
    c->blk_end = c->last_end = address + size;
    c->blk_base = c->retired;
    c->blk_n = n;
    c->retired = end;
    if (info & MAY_SET_IF)
        c->if_may_rise = 1;
}

static inline void count_one(struct icount *c, void *uc)
{
    if (c->retired >= c->deadline) {
        c->emu_stop(uc);
        return;
    }
    c->retired++;
}

static void tool_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct icount *c = user_data;
    uint64_t off = address - c->detour_base, i;
    c->if_may_rise = 1;   /* a copied sti or popf runs here too */
    if (c->stop_asked) {
        c->emu_stop(uc);
        return;
    }
    if (off < c->detour_size) {
        if (c->counted[off])
            count_one(c, uc);
        return;
    }
    for (i = 0; i < c->n_tool_hooks; i++) {
        if (c->tool_hooks[i].begin <= address && address <= c->tool_hooks[i].end) {
            if (c->tool_hooks[i].py)
                call_py_hook(c->tool_hooks[i].py, address);
            else
                c->tool_hooks[i].cb(uc, address, size, c->tool_hooks[i].data);
            return;
        }
    }
}

/* A block hook that does nothing: what unicorn itself charges for calling a C block hook
 * (the clock's floor), measured by scripts/bench.py beside block_hook. */
static void empty_block_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
}

static PyObject *empty_hook_address(PyObject *self, PyObject *unused)
{
    return PyLong_FromVoidPtr((void *)empty_block_hook);
}

static PyObject *hook_addresses(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("(NN)", PyLong_FromVoidPtr((void *)block_hook), PyLong_FromVoidPtr((void *)tool_hook));
}

/* init(cs_disasm_iter, csh, cs_insn, eflags_regid, uc_reg_read, uc_mem_read, rip_regid,
 * cs_regid, uc_reg_write, uc_mem_write): capstone's iterator, a handle (x86-64, detail
 * off) and an instruction from its cs_malloc; unicorn's EFLAGS id, its register and memory
 * readers, RIP's and CS's ids and its register and memory writers (function addresses). */
static PyObject *init(PyObject *self, PyObject *args)
{
    unsigned long long fn, handle, insn, rr, mr, rw, mw;
    int regid;
    if (!PyArg_ParseTuple(args, "KKKiKKiiKK", &fn, &handle, &insn, &regid, &rr, &mr, &rip_regid, &cs_regid,
                          &rw, &mw))
        return NULL;
    p_reg_write = (uc_reg_fn)(uintptr_t)rw;
    p_mem_write = (uc_mem_write_fn)(uintptr_t)mw;
    p_disasm_iter = (cs_disasm_iter_fn)(uintptr_t)fn;
    cs_handle = (size_t)handle;
    cs_insn_buf = (void *)(uintptr_t)insn;
    eflags_regid = regid;
    p_reg_read = (uc_reg_fn)(uintptr_t)rr;
    p_mem_read = (uc_mem_read_fn)(uintptr_t)mr;
    Py_RETURN_NONE;
}

/* forget_blocks(table, lo, hi): code in [lo, hi) was rewritten; drop the counts of the
 * blocks that overlap it. */
static PyObject *forget_blocks(PyObject *self, PyObject *args)
{
    unsigned long long table, lo, hi;
    struct block_table *t;
    uint64_t i;
    if (!PyArg_ParseTuple(args, "KKK", &table, &lo, &hi))
        return NULL;
    t = (struct block_table *)(uintptr_t)table;
    for (i = 0; i < BLOCK_TABLE_SIZE; i++) {
        struct block_entry *e = &t->e[i];
        if (e->size && e->size != BLOCK_GONE && e->address < hi && lo < e->address + e->size)
            e->size = BLOCK_GONE;
    }
    Py_RETURN_NONE;
}

/* init_vmem(uc_vmem_read): for machines whose guest turns paging on (see struct icount). */
static PyObject *init_vmem(PyObject *self, PyObject *args)
{
    unsigned long long fn;
    if (!PyArg_ParseTuple(args, "K", &fn))
        return NULL;
    p_vmem_read = (uc_vmem_read_fn)(uintptr_t)fn;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"hook_addresses", hook_addresses, METH_NOARGS,
     "(block_hook, tool_hook): the C callbacks that count guest instructions (see the top of _clock.c)."},
    {"empty_hook_address", empty_hook_address, METH_NOARGS,
     "A C code/block callback that does nothing (the benchmark's floor for the clock's block hook)."},
    {"init_vmem", init_vmem, METH_VARARGS, "init_vmem(uc_vmem_read): decode paged guests' blocks."},
    {"nth_instruction", nth_instruction, METH_VARARGS,
     "nth_instruction(uc, address, size, k, vmem): the address of a block's k-th instruction, or 0."},
    {"init", init, METH_VARARGS, "init(cs_disasm_iter, csh, cs_insn, eflags_regid, uc_reg_read, uc_mem_read)"},
    {"forget_blocks", forget_blocks, METH_VARARGS, "forget_blocks(table, lo, hi): code in [lo, hi) was rewritten."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_clock", "Exact guest instruction counting for the virtual clock.", -1, methods,
};

/* The sizes clock.py checks its ctypes mirror of struct icount against, and the size of
 * the block table a machine allocates. */
PyMODINIT_FUNC PyInit__clock(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddIntConstant(m, "MAX_TOOL_HOOKS", MAX_TOOL_HOOKS) < 0
        || PyModule_AddIntConstant(m, "TOOL_HOOK_SIZE", (long)sizeof(struct tool_hook)) < 0
        || PyModule_AddIntConstant(m, "ICOUNT_SIZE", (long)sizeof(struct icount)) < 0
        || PyModule_AddIntConstant(m, "ICOUNT_STOP_ASKED_OFFSET", (long)offsetof(struct icount, stop_asked)) < 0
        || PyModule_AddIntConstant(m, "BLOCK_TABLE_BYTES", (long)sizeof(struct block_table)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

