/*
 * A probe event's hit recorded in C: fetch programs, filters, and the jump-optimized
 * entry's dispatcher.
 *
 * The kernel compiles each fetch argument of a probe event into a few fetch instructions
 * when the event is defined (kernel/trace/trace_probe.c: FETCH_OP_REG, FETCH_OP_IMM,
 * FETCH_OP_DEREF, FETCH_OP_ST_MEM, FETCH_OP_ST_STRING, FETCH_OP_MOD_BF ...) and a hit only
 * interprets them (process_fetch_insn), writing the record straight into the ring buffer.
 * tracing/cfetch.py compiles a ProbeEventDef into such a program (an array of u64 words,
 * see enum op); run_args here interprets it.  tracing/fetch.py's evaluate stays the
 * reference: every value written here is the one it computes, and the record is the one
 * tracedat.EventFormat.record packs from its values (tests/tracing/test_cfetch.py checks
 * both on random fetch arguments).
 *
 * The hit: kprobes/optimize.py installs hit_hook as the clock's tool hook on the detour
 * entries (see _clock.c's tool_hook).  An entry whose probes the shell made C-recordable
 * (set_probe, set_kretprobe_entry: one probe, or an aggregate's children in order) is
 * handled here: the bookkeeping of KprobeEngine.kprobe_handler (hits; a hit while a probe
 * runs is left to the Python path, which counts nmissed), then for an event the fetch,
 * the filter, the record, and for a kretprobe's entry arch_prepare_kretprobe on the
 * instance table (kprobes/kstate.h).  Every other entry calls the Python callback
 * (optimized_callback).  The kretprobe booster's `ret` has booster_hook, the return side:
 * the return event and recycle_rp_inst, or the Python booster.
 *
 * What runs here takes no GIL (unicorn runs the guest without it): what it reads of the
 * kprobe state is in C words shared with Python (kprobes/_kstate.c: the kprobe_ctlblk's
 * current_kprobe and the kretprobe instances; the probes' C counts, Kprobe.c_hits,
 * Kretprobe.c_hits and c_nmissed), and the ring and the maps take none.  Only a map
 * line's `skipped` count, a Python attribute, and the calls to Python (the fallbacks, a
 * failure to report) take it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include("ringbuf.h")
#include "ringbuf.h"
#define HAVE_RINGBUF_H 1
#endif
#endif
#include "cmaps.h"
#include "kstate.h"

#ifndef HAVE_RINGBUF_H
/* The trace ring's interface (tracing/ringbuf.h): reserve room for one record, then
 * commit it; reserve returns NULL when the record is dropped. */
struct trace_ring;
struct ring_api {
    uint8_t *(*reserve)(struct trace_ring *ring, int cpu, uint64_t time_ns, uint32_t len, int32_t pid,
                        const char *comm);
    void (*commit)(struct trace_ring *ring, int cpu);
    void (*set_faults)(struct trace_ring *ring, int cpu, uint64_t arg_mask);
};
#endif

typedef int (*uc_reg_fn)(void *uc, int regid, void *value);
typedef int (*uc_mem_read_fn)(void *uc, uint64_t address, void *bytes, uint64_t size);
typedef int (*uc_vmem_read_fn)(void *uc, uint64_t address, int prot, void *bytes, size_t size);

typedef int (*uc_mem_write_fn)(void *uc, uint64_t address, const void *bytes, uint64_t size);

static uc_reg_fn p_reg_read, p_reg_write;
static uc_mem_read_fn p_mem_read;
static uc_mem_write_fn p_mem_write;
static uc_vmem_read_fn p_vmem_read;
static int rsp_regid;

/* Fetch and filter instructions: (op, operand) pairs of u64 words.  An argument's fetch
 * leaves a value in `val` (REG, IMM, ADD, LOAD8) and ends with one store (ST_*). */
enum op {
    OP_END = 0,
    OP_REG = 1,       /* val = register `operand` (unicorn's id) */
    OP_IMM = 2,       /* val = operand */
    OP_ADD = 3,       /* val += operand */
    OP_LOAD8 = 4,     /* val = the u64 at val (a fault faults the argument) */
    OP_ST_RAW = 5,    /* store val: operand = store_spec */
    OP_ST_MEM = 6,    /* store the value at val: operand = store_spec */
    OP_ST_STRING = 7, /* store the string at val (__data_loc) */
    OP_ST_COMM = 8,   /* store the current task's comm (__data_loc) */
    OP_ST_IMMSTR = 9, /* store the operand bytes that follow (__data_loc): operand = length */
    OP_FILTER = 16,   /* the filter's instructions follow */
    F_ARG = 17,       /* push argument `operand`'s value */
    F_COMM = 18,      /* push $comm */
    F_PID = 19,       /* push $pid */
    F_INT = 20,       /* push operand as a signed integer */
    F_UINT = 21,      /* push operand as an unsigned integer */
    F_STR = 22,       /* push the operand bytes that follow (UTF-8): operand = length */
    F_CMP = 23,       /* pop b, a; push a OP b (enum cmp); a fault on either side: false */
    F_AND = 24,
    F_OR = 25,
    F_NOT = 26,
};
enum cmp { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };

/* store_spec: bits 0-7 the size in bytes (the bitfield's container), bit 8 signed, bit 9
 * char, bits 16-23 a bitfield's offset, bits 24-31 its width (0: not a bitfield). */
#define SPEC_SIZE(s) ((unsigned)((s) & 0xFF))
#define SPEC_SIGNED(s) (((s) >> 8) & 1)
#define SPEC_CHAR(s) (((s) >> 9) & 1)
#define SPEC_BF_OFFSET(s) ((unsigned)(((s) >> 16) & 0xFF))
#define SPEC_BF_WIDTH(s) ((unsigned)(((s) >> 24) & 0xFF))

#define MAX_STRING_SIZE 256      /* fetch.py's MAX_STRING_SIZE: at most 255 bytes kept */
#define MAX_STRING_TEXT (4 * (MAX_STRING_SIZE - 1) + 1)  /* every byte shown as \xNN, the NUL */
#define MAX_ARGS 64
#define RECORD_MAX 32768
#define TASK_COMM_LEN 16
#define PAGE_SIZE 4096

/* What the filter sees of an argument (fetch.python_value): an integer, a string (the
 * UTF-8 text the record holds, without its NUL), or nothing (a fault). */
enum vkind { V_NONE, V_INT, V_STR, V_BOOL };
struct value {
    enum vkind kind;
    __int128 i;
    const uint8_t *s;
    uint32_t len;
};

/* Where a hit reads the guest: the CPU, and how its memory is read (Machine.read: the
 * physical view, then the page tables when the machine runs user programs). */
struct guest {
    void *uc;
    int vmem;
};

/* The current task as a trace line names it (TaskView.current_comm_pid). */
struct task_info {
    char comm[TASK_COMM_LEN];    /* NUL-padded; "?" when there is no current task */
    int32_t pid;                 /* -1 when there is none */
    int found;                   /* 0: no current task ($comm is empty then) */
};

static int guest_read(const struct guest *g, uint64_t address, void *out, uint64_t size)
{
    if (p_mem_read(g->uc, address, out, size) == 0)
        return 0;
    if (g->vmem && p_vmem_read)
        return p_vmem_read(g->uc, address, 1 /* UC_PROT_READ */, out, size) ? -1 : 0;
    return -1;
}

/* strncpy_from_kernel_nofault as fetch.read_string does it: page-sized chunks, and a byte
 * at a time near a hole; -1 when unmapped memory comes before the NUL. */
static int read_string(const struct guest *g, uint64_t address, uint8_t *out, uint32_t *len)
{
    uint32_t n = 0, limit = MAX_STRING_SIZE - 1, chunk, i;
    while (n < limit) {
        chunk = PAGE_SIZE - (uint32_t)(address % PAGE_SIZE);
        if (chunk > limit - n)
            chunk = limit - n;
        if (guest_read(g, address, out + n, chunk) == 0) {
            for (i = 0; i < chunk; i++)
                if (out[n + i] == 0) {
                    *len = n + i;
                    return 0;
                }
        } else {
            for (i = 0; i < chunk; i++) {
                if (guest_read(g, address + i, out + n + i, 1))
                    return -1;
                if (out[n + i] == 0) {
                    *len = n + i;
                    return 0;
                }
            }
        }
        n += chunk;
        address += chunk;
    }
    *len = n;
    return 0;
}

/* The length of the well-formed UTF-8 sequence at s (as Python's decoder accepts it), 0
 * when s[0] starts none. */
static uint32_t utf8_sequence(const uint8_t *s, uint32_t left)
{
    uint8_t c = s[0];
    uint32_t n, i;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;     /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* The text a string field's record holds: fetch.decode_string (UTF-8, each byte that
 * does not decode shown as \xNN) encoded back to UTF-8.  out holds MAX_STRING_TEXT. */
static uint32_t string_text(const uint8_t *raw, uint32_t len, uint8_t *out)
{
    static const char hex[] = "0123456789abcdef";
    uint32_t i = 0, o = 0, n;
    while (i < len) {
        n = utf8_sequence(raw + i, len - i);
        if (n) {
            memcpy(out + o, raw + i, n);
            o += n;
            i += n;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[raw[i] >> 4];
            out[o++] = hex[raw[i] & 15];
            i++;
        }
    }
    return o;
}

/* comm is decoded as latin-1 (tasks._comm) and encoded as UTF-8 ($comm's bytes). */
static uint32_t comm_text(const char *comm, uint8_t *out)
{
    uint32_t o = 0, i;
    for (i = 0; i < TASK_COMM_LEN && comm[i]; i++) {
        uint8_t c = (uint8_t)comm[i];
        if (c < 0x80)
            out[o++] = c;
        else {
            out[o++] = 0xC0 | (c >> 6);
            out[o++] = 0x80 | (c & 0x3F);
        }
    }
    return o;
}

/* A program: the record's fixed size and where its fixed part starts (after trace_entry
 * and the probe's ips), the number of arguments, then the instructions. */
struct program {
    uint32_t nwords;
    uint64_t w[];
};
#define PROG_FIXED_SIZE 0
#define PROG_ARGS_AT 1
#define PROG_NARGS 2
#define PROG_CODE 3

struct fetch_state {
    const struct guest *g;
    const struct task_info *task;
    uint8_t *rec;                 /* the record being built */
    uint32_t fixed_at, data_at;   /* where the next fixed field and the next string go */
    struct value values[MAX_ARGS];
    uint64_t faults;              /* bit i: argument i faulted (the first 64) */
};

static void put_int(uint8_t *at, uint64_t v, unsigned size)
{
    unsigned i;
    for (i = 0; i < size; i++)
        at[i] = (uint8_t)(v >> (8 * i));
}

/* A faulted argument: its field as tracedat.EventFormat.record packs a missing value (0,
 * or the empty string), and the bit that says it faulted (the ring's fault mask, see
 * ringbuf.h). */
static void store_fault(struct fetch_state *st, int arg, uint64_t spec, int is_string)
{
    st->values[arg].kind = V_NONE;
    if (arg < 64)
        st->faults |= 1ull << arg;
    if (is_string) {
        st->rec[st->data_at] = 0;
        put_int(st->rec + st->fixed_at, (1u << 16) | st->data_at, 4);
        st->fixed_at += 4;
        st->data_at += 1;
    } else {
        memset(st->rec + st->fixed_at, 0, SPEC_SIZE(spec));
        st->fixed_at += SPEC_SIZE(spec);
    }
}

static void store_text(struct fetch_state *st, int arg, const uint8_t *text, uint32_t len)
{
    memcpy(st->rec + st->data_at, text, len);
    st->rec[st->data_at + len] = 0;
    put_int(st->rec + st->fixed_at, ((len + 1) << 16) | st->data_at, 4);
    st->values[arg].kind = V_STR;
    st->values[arg].s = st->rec + st->data_at;
    st->values[arg].len = len;
    st->fixed_at += 4;
    st->data_at += len + 1;
}

static void store_number(struct fetch_state *st, int arg, uint64_t raw, uint64_t spec)
{
    unsigned size = SPEC_SIZE(spec), bits = 8 * size, w = SPEC_BF_WIDTH(spec);
    uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
    struct value *v = &st->values[arg];
    raw &= mask;
    if (w)
        raw = (raw >> SPEC_BF_OFFSET(spec)) & (w == 64 ? ~0ull : (1ull << w) - 1);
    put_int(st->rec + st->fixed_at, raw, size);
    st->fixed_at += size;
    if (SPEC_CHAR(spec)) {          /* chr(raw & 0xFF): compared as a one-character string */
        v->kind = V_STR;
        v->i = raw & 0xFF;
        v->s = NULL;
        v->len = 0;
        return;
    }
    v->kind = V_INT;
    if (SPEC_SIGNED(spec) && (raw >> (bits - 1)) & 1)
        v->i = (__int128)raw - ((__int128)1 << bits);
    else
        v->i = raw;
}

/* Run the fetch of every argument, building the record's fixed part and strings from
 * rec + args_at.  Returns the index of the first filter instruction (or of OP_END). */
static uint32_t run_args(const struct program *prog, struct fetch_state *st)
{
    const uint64_t *w = prog->w;
    uint32_t pc = PROG_CODE, nargs = (uint32_t)w[PROG_NARGS];
    uint8_t buf[MAX_STRING_SIZE], text[MAX_STRING_TEXT];
    uint32_t arg, len;
    st->fixed_at = (uint32_t)w[PROG_ARGS_AT];
    st->data_at = (uint32_t)w[PROG_FIXED_SIZE];
    st->faults = 0;
    for (arg = 0; arg < nargs; arg++) {
        uint64_t val = 0, tmp = 0;
        int faulted = 0;
        for (;; pc += 2) {
            uint64_t op = w[pc], operand = w[pc + 1];
            if (op == OP_REG) {
                val = 0;
                p_reg_read(st->g->uc, (int)operand, &val);
            } else if (op == OP_IMM) {
                val = operand;
            } else if (op == OP_ADD) {
                val += operand;
            } else if (op == OP_LOAD8) {
                if (!faulted && guest_read(st->g, val, &tmp, 8))
                    faulted = 1;
                val = tmp;
            } else if (op == OP_ST_RAW) {
                if (faulted)
                    store_fault(st, arg, operand, 0);
                else
                    store_number(st, arg, val, operand);
                pc += 2;
                break;
            } else if (op == OP_ST_MEM) {
                tmp = 0;
                if (faulted || guest_read(st->g, val, &tmp, SPEC_SIZE(operand)))
                    store_fault(st, arg, operand, 0);
                else
                    store_number(st, arg, tmp, operand);
                pc += 2;
                break;
            } else if (op == OP_ST_STRING) {
                if (faulted || read_string(st->g, val, buf, &len))
                    store_fault(st, arg, 0, 1);
                else
                    store_text(st, arg, text, string_text(buf, len, text));
                pc += 2;
                break;
            } else if (op == OP_ST_COMM) {
                store_text(st, arg, text, st->task->found ? comm_text(st->task->comm, text) : 0);
                pc += 2;
                break;
            } else if (op == OP_ST_IMMSTR) {
                store_text(st, arg, (const uint8_t *)&w[pc + 2], (uint32_t)operand);
                pc += 2 + (uint32_t)((operand + 7) / 8);
                break;
            } else {
                return pc;       /* a malformed program: cfetch.py never makes one */
            }
        }
    }
    return pc;
}

/* A char's value as the filter compares it: chr(c) in UTF-8. */
static uint32_t char_text(uint8_t c, uint8_t *out)
{
    if (c < 0x80) {
        out[0] = c;
        return 1;
    }
    out[0] = 0xC0 | (c >> 6);
    out[1] = 0x80 | (c & 0x3F);
    return 2;
}

static int compare(const struct value *a, const struct value *b, uint64_t how)
{
    int c;
    if (a->kind == V_NONE || b->kind == V_NONE)
        return 0;                 /* a faulted fetch matches nothing */
    if (a->kind == V_STR) {       /* strings: == and != only (the parser refuses the rest) */
        uint8_t ca[2], cb[2];
        const uint8_t *sa = a->s, *sb = b->s;
        uint32_t la = a->len, lb = b->len;
        if (!sa)
            la = char_text((uint8_t)a->i, ca), sa = ca;
        if (!sb)
            lb = char_text((uint8_t)b->i, cb), sb = cb;
        c = la == lb && memcmp(sa, sb, la) == 0;
        return how == CMP_NE ? !c : c;
    }
    switch (how) {
    case CMP_EQ: return a->i == b->i;
    case CMP_NE: return a->i != b->i;
    case CMP_LT: return a->i < b->i;
    case CMP_LE: return a->i <= b->i;
    case CMP_GT: return a->i > b->i;
    default: return a->i >= b->i;
    }
}

/* The filter (probe_events.Filter.evaluate) on the values fetched; 1 without one. */
static int run_filter(const struct program *prog, uint32_t pc, const struct fetch_state *st, uint8_t *comm_buf)
{
    const uint64_t *w = prog->w;
    struct value stack[32];
    int sp = 0;
    if (pc >= prog->nwords || w[pc] != OP_FILTER)
        return 1;
    for (pc += 2; pc < prog->nwords && w[pc] != OP_END; pc += 2) {
        uint64_t op = w[pc], operand = w[pc + 1];
        struct value *v = &stack[sp];
        if (sp >= 31 && op >= F_ARG && op <= F_STR)
            return 1;
        switch (op) {
        case F_ARG: *v = st->values[operand]; sp++; break;
        case F_COMM:
            v->kind = V_STR;
            v->len = st->task->found ? comm_text(st->task->comm, comm_buf) : 0;
            v->s = comm_buf;
            sp++;
            break;
        case F_PID: v->kind = V_INT; v->i = st->task->pid; sp++; break;
        case F_INT: v->kind = V_INT; v->i = (int64_t)operand; sp++; break;
        case F_UINT: v->kind = V_INT; v->i = operand; sp++; break;
        case F_STR:
            v->kind = V_STR;
            v->s = (const uint8_t *)&w[pc + 2];
            v->len = (uint32_t)operand;
            sp++;
            pc += (uint32_t)((operand + 7) / 8);
            break;
        case F_CMP:
            sp--;
            stack[sp - 1].i = compare(&stack[sp - 1], &stack[sp], operand);
            stack[sp - 1].kind = V_BOOL;
            break;
        case F_AND: sp--; stack[sp - 1].i = stack[sp - 1].i && stack[sp].i; break;
        case F_OR: sp--; stack[sp - 1].i = stack[sp - 1].i || stack[sp].i; break;
        case F_NOT: stack[sp - 1].i = !stack[sp - 1].i; break;
        default: return 1;
        }
    }
    return sp > 0 && stack[sp - 1].i != 0;
}

/* The record's head: trace_entry {common_type, flags, preempt_count, pid}, then the ips. */
static void put_head(uint8_t *rec, uint16_t type, int32_t pid, const uint64_t *ips, int nips)
{
    int i;
    put_int(rec, type, 2);
    rec[2] = rec[3] = 0;
    put_int(rec + 4, (uint32_t)pid, 4);
    for (i = 0; i < nips; i++)
        put_int(rec + 8 + 8 * i, ips[i], 8);
}

/* ------------------------------------------------------------------ the hit */

/* Where a map line's key part or value comes from: an argument (its index), or the
 * task and CPU of the hit (the shell's map fields comm, pid, cpu). */
#define SRC_COMM (-1)
#define SRC_PID (-2)
#define SRC_CPU (-3)
#define SRC_NONE (-100)
#define MAX_KEY_PARTS 8

/* One shell map line on the probe (`@name[keys] = func(value) on EVENT`). */
struct map_line {
    struct cmap *map;
    PyObject *agg;                /* the Aggregation (borrowed, see struct hit_probe): its `skipped` */
    int nkeys;
    int key[MAX_KEY_PARTS];
    int value;                    /* SRC_NONE: count() */
};

/* One C-recordable probe: the Kprobe object and its C hit count, its event, its program,
 * and the map lines it feeds.  The Python objects are borrowed: chits.CHits keeps them (and the
 * maps the handles point into) alive while they are in the table, where the garbage
 * collector sees the references (a strong one from C would hide a cycle through the
 * probe's handler, the session and this table, and keep a replaced machine alive). */
struct hit_probe {
    PyObject *kp;
    int64_t *hits;                /* Kprobe.c_hits: its hits are this plus its Python paths' */
    int kretprobe;                /* 1: a kretprobe's entry (rp, nmissed), 0: an event (the rest) */
    int32_t rp;                   /* the kretprobe's number in the InstanceTable */
    int64_t *nmissed;             /* Kretprobe.c_nmissed: no free instance */
    uint64_t ip;                  /* __probe_ip */
    uint16_t type;                /* the event's id (common_type) */
    struct trace_ring *ring;
    struct program *prog;
    int nmaps;
    struct map_line *maps;
    /* The next probe at the same address (an aggregate's children, in their order), and
     * whether any of the chain is a kretprobe's entry (kept on its first). */
    struct hit_probe *next;
    int any_kretprobe;
};

/* What a hit reads of the machine besides the CPU: the clock, and where the current task
 * is. */
struct hit_env {
    const uint64_t *retired;      /* the clock's retired count: time_ns = retired * ns_per_insn */
    uint64_t ns_per_insn;
    const uint64_t *vmem;         /* the machine runs user programs */
    /* The current task (TaskView): gs_base's u64 at 0 is current; comm and pid at their
     * offsets in task_struct; no layout: the pseudo task. */
    int gs_base_regid;
    int has_layout;
    uint32_t off_comm, off_pid;
    struct task_info pseudo;
    uint64_t pseudo_addr;         /* the pseudo task's task_struct pointer (TaskView.current_address) */
};

struct hit_table {
    struct hit_env env;
    PyObject *fallback;           /* the Python hook (borrowed: the optimizer keeps it) */
    /* Kretprobes' entries: the manager's InstanceTable (borrowed), the booster planted as
     * the return address, and what reports a stack that cannot be written (borrowed). */
    void *instances;
    uint64_t booster;
    PyObject *entry_failed;
    PyObject *const *current_kprobe; /* CPU 0's kprobe_ctlblk.current_kprobe (_kstate.c) */
    uint64_t entry_base, entry_size;
    uint64_t nentries;
    struct hit_probe **by_entry;  /* (entry - entry_base) / entry_size */
    int force_python;
};

/* A return probe whose return event records in C (the kretprobe booster's). */
struct ret_probe {
    int64_t *hits;                /* Kretprobe.c_hits: returns handled in C */
    uint64_t func;                /* __probe_func: the probed function */
    uint16_t type;                /* the event's id */
    struct trace_ring *ring;
    struct program *prog;
    struct hit_probe *lines;      /* its map lines (only their maps are used), or NULL */
};

/* The kretprobe booster's table: its instances (kstate.h), and the return probes whose
 * events record in C, by their number in that table. */
struct ret_table {
    struct hit_env env;
    PyObject *fallback;           /* the Python booster (borrowed: the manager keeps it) */
    PyObject *push_failed;        /* called with the address when the push faults (borrowed) */
    void *instances;              /* the manager's InstanceTable (borrowed) */
    uint64_t trampoline, booster;
    struct ret_probe **by_rp;
    int32_t nrps;
};

static const struct ring_api *ring_api;

/* TaskView.current_address: the current task_struct pointer, 0: none. */
static uint64_t current_address(const struct hit_env *t, void *uc)
{
    uint64_t current = 0;
    if (!t->has_layout)
        return t->pseudo_addr;
    if (p_reg_read(uc, t->gs_base_regid, &current) || p_mem_read(uc, current, &current, 8))
        return 0;
    return current;
}

static void current_task(const struct hit_env *t, const struct guest *g, struct task_info *task)
{
    uint64_t current = 0;
    uint32_t lo, hi;
    uint8_t raw[TASK_COMM_LEN + 8 + 4096];
    if (!t->has_layout) {
        *task = t->pseudo;
        return;
    }
    memset(task->comm, 0, sizeof(task->comm));
    task->comm[0] = '?';
    task->pid = -1;
    task->found = 0;
    lo = t->off_comm < t->off_pid ? t->off_comm : t->off_pid;
    hi = t->off_comm + TASK_COMM_LEN > t->off_pid + 4 ? t->off_comm + TASK_COMM_LEN : t->off_pid + 4;
    if (hi - lo > sizeof(raw))
        return;
    if (p_reg_read(g->uc, t->gs_base_regid, &current) || p_mem_read(g->uc, current, &current, 8) || !current)
        return;
    if (guest_read(g, current + lo, raw, hi - lo))
        return;
    memcpy(&task->pid, raw + (t->off_pid - lo), 4);
    memcpy(task->comm, raw + (t->off_comm - lo), TASK_COMM_LEN);
    task->found = 1;
    /* tasks._comm: up to the first NUL */
    {
        int i, end = 0;
        for (i = 0; i < TASK_COMM_LEN; i++)
            if (!task->comm[i]) { end = 1; }
            else if (end) task->comm[i] = 0;
    }
}

static const struct cmaps_api *cmaps_api;
static PyObject *str_skipped;

/* The value a map field names at this hit (Aggregation's _field): an argument's, or the
 * task's comm and pid, or the CPU. */
static void map_field(int src, const struct fetch_state *st, uint8_t *comm_buf, struct value *v)
{
    if (src >= 0) {
        *v = st->values[src];
    } else if (src == SRC_COMM) {
        v->kind = V_STR;
        v->s = comm_buf;
        v->len = comm_text(st->task->comm, comm_buf);
    } else {
        v->kind = V_INT;
        v->i = src == SRC_PID ? st->task->pid : 0;
    }
}

static int add_skipped(PyObject *agg)
{
    PyObject *n = PyObject_GetAttr(agg, str_skipped), *more;
    long long k;
    if (!n)
        return -1;
    k = PyLong_AsLongLong(n);
    Py_DECREF(n);
    if (k == -1 && PyErr_Occurred())
        return -1;
    more = PyLong_FromLongLong(k + 1);
    if (!more)
        return -1;
    k = PyObject_SetAttr(agg, str_skipped, more);
    Py_DECREF(more);
    return (int)k;
}

/* The line's `skipped` += 1 (a Python attribute: with the GIL). */
static void count_skipped(PyObject *agg)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    if (add_skipped(agg) < 0)
        PyErr_WriteUnraisable(agg);
    PyGILState_Release(gil);
}

/* Aggregation.apply for each map line: the key in cmaps.h's encoding, a hit whose key or
 * value was not fetched is skipped (counted on the line). */
static void update_maps(const struct hit_probe *hp, const struct fetch_state *st)
{
    uint8_t key[MAX_KEY_PARTS * (3 + MAX_STRING_TEXT)], comm_buf[2 * TASK_COMM_LEN], ch[2];
    int i, k;
    for (i = 0; i < hp->nmaps; i++) {
        const struct map_line *ml = &hp->maps[i];
        uint8_t *p = key;
        struct value v;
        int skip = 0;
        for (k = 0; k < ml->nkeys && !skip; k++) {
            map_field(ml->key[k], st, comm_buf, &v);
            if (v.kind == V_NONE)
                skip = 1;
            else if (v.kind == V_STR && v.s)
                p = cmap_key_str(p, v.s, (uint16_t)v.len);
            else if (v.kind == V_STR)
                p = cmap_key_str(p, ch, (uint16_t)char_text((uint8_t)v.i, ch));
            else if (v.i < 0)
                p = cmap_key_int(p, (int64_t)v.i);
            else
                p = cmap_key_uint(p, (uint64_t)v.i);
        }
        v.kind = V_INT;
        v.i = 0;
        if (!skip && ml->value != SRC_NONE) {
            map_field(ml->value, st, comm_buf, &v);
            skip = v.kind != V_INT;
        }
        if (skip) {
            count_skipped(ml->agg);
            continue;
        }
        if (v.i > INT64_MAX)
            cmaps_api->update_unsigned(ml->map, key, (uint32_t)(p - key), (uint64_t)v.i);
        else
            cmaps_api->update(ml->map, key, (uint32_t)(p - key), (int64_t)v.i);
    }
}

/* Record one event of prog (type, into ring) now, with ips as its __probe_ip (or
 * __probe_func, __probe_ret_ip), then feed hp's map lines (hp NULL: none); without the
 * GIL (see the top). */
static void record_event(const struct hit_env *e, const struct program *prog, uint16_t type,
                         struct trace_ring *ring, const uint64_t *ips, int nips, const struct hit_probe *hp,
                         void *uc)
{
    struct guest g = {uc, e->vmem && *e->vmem};
    struct task_info task;
    struct fetch_state st;
    uint8_t rec[RECORD_MAX], comm_buf[2 * TASK_COMM_LEN];
    uint32_t pc;
    current_task(e, &g, &task);
    st.g = &g;
    st.task = &task;
    st.rec = rec;
    pc = run_args(prog, &st);
    if (!run_filter(prog, pc, &st, comm_buf))
        return;
    put_head(rec, type, task.pid, ips, nips);
    if (ring_api && ring) {
        uint8_t *at = ring_api->reserve(ring, 0, *e->retired * e->ns_per_insn, st.data_at, task.pid, task.comm);
        if (at) {
            memcpy(at, rec, st.data_at);
            if (st.faults)
                ring_api->set_faults(ring, 0, st.faults);
            ring_api->commit(ring, 0);
        }
    }
    if (hp && hp->nmaps)
        update_maps(hp, &st);
}

static void call_fallback(PyObject *fn, uint64_t address)
{
    PyObject *arg = PyLong_FromUnsignedLongLong(address), *r = NULL;
    if (arg)
        r = PyObject_Vectorcall(fn, &arg, 1, NULL);
    if (r)
        Py_DECREF(r);
    else
        PyErr_WriteUnraisable(fn);
    Py_XDECREF(arg);
}

static const struct kstate_api *kstate_api;

/* Can the return address at rsp be read?  A kretprobe's entry that cannot is the Python
 * path's (it reports the failure), decided before anything of the hit is done. */
static int stack_readable(void *uc)
{
    uint64_t rsp = 0, word;
    return p_reg_read(uc, rsp_regid, &rsp) == 0 && p_mem_read(uc, rsp, &word, 8) == 0;
}

/* arch_prepare_kretprobe, as fastpath.make_lone_kretprobe_entry does it: a free instance
 * (or nmissed), the task, and the return address exchanged for the booster's. */
static void kretprobe_entry(struct hit_table *t, struct hit_probe *hp, void *uc)
{
    uint64_t rsp = 0, ret = 0;
    int32_t i = kstate_api->take(t->instances, hp->rp);
    if (i < 0) {
        (*hp->nmissed)++;
        return;
    }
    if (p_reg_read(uc, rsp_regid, &rsp) || p_mem_read(uc, rsp, &ret, 8)
        || p_mem_write(uc, rsp, &t->booster, 8)) {
        PyGILState_STATE gil = PyGILState_Ensure();
        kstate_api->untake(t->instances, i);
        call_fallback(t->entry_failed, hp->ip);
        PyGILState_Release(gil);
        return;
    }
    kstate_api->add(t->instances, i, current_address(&t->env, uc), ret, rsp);
}

/* The clock's tool hook on the detour entries (data: the machine's hit_table).
 * kprobe_handler: a hit while a probe runs (a jprobe's handler, say) only counts
 * nmissed: on the Python path.  A stop already asked for (Machine.stop_guest) never
 * reaches here: it is the CPU's stop word, on which the clock's tool_hook stops the CPU
 * before any callback. */
static void hit_hook(void *uc, uint64_t address, uint32_t size, void *data)
{
    struct hit_table *t = data;
    uint64_t i = (address - t->entry_base) / t->entry_size;
    struct hit_probe *hp = i < t->nentries && !t->force_python ? t->by_entry[i] : NULL;
    PyGILState_STATE gil;
    if (hp && *t->current_kprobe == Py_None && (!hp->any_kretprobe || stack_readable(uc))) {
        for (; hp; hp = hp->next) {
            (*hp->hits)++;
            if (hp->kretprobe)
                kretprobe_entry(t, hp, uc);
            else
                record_event(&t->env, hp->prog, hp->type, hp->ring, &hp->ip, 1, hp, uc);
        }
        return;
    }
    gil = PyGILState_Ensure();
    call_fallback(t->fallback, address);
    PyGILState_Release(gil);
}

/* ------------------------------------------------------------------ the kretprobe booster */

/* push_u64: the real return address back where the function popped the booster's, for
 * the `ret` to take.  -1: the stack is not mapped. */
static int push_return(void *uc, uint64_t value)
{
    uint64_t rsp = 0;
    if (p_reg_read(uc, rsp_regid, &rsp))
        return -1;
    rsp -= 8;
    if (p_mem_write(uc, rsp, &value, 8) || p_reg_write(uc, rsp_regid, &rsp))
        return -1;
    return 0;
}

/* The clock's tool hook on the booster's `ret` (data: the manager's ret_table): the
 * common case of fastpath.make_kretprobe_booster in C.  When the task's bucket has the
 * task's instance at its head, returning to a real address, and its kretprobe's return
 * event records in C: hits, the event, recycle_rp_inst, the push.  Anything else (no
 * table entries, which is how SMP, narration and the Python paths leave it) is the
 * Python booster's.  The handlers' current_kprobe and regs->ip of the Python booster are
 * not set: nothing that could see them runs here. */
static void booster_hook(void *uc, uint64_t address, uint32_t size, void *data)
{
    struct ret_table *t = data;
    PyGILState_STATE gil;
    if (t->nrps) {
        uint64_t task = current_address(&t->env, uc);
        int32_t i = kstate_api->first(t->instances, task, 1);
        if (i >= 0) {
            const struct kretprobe_instance *ri = kstate_api->instance(t->instances, i);
            uint64_t ret = ri->ret_addr, ips[2];
            struct ret_probe *rr = ri->rp >= 0 && ri->rp < t->nrps ? t->by_rp[ri->rp] : NULL;
            if (rr && ret != t->trampoline && ret != t->booster) {
                (*rr->hits)++;
                ips[0] = rr->func;
                ips[1] = ret;
                record_event(&t->env, rr->prog, rr->type, rr->ring, ips, 2, rr->lines, uc);
                kstate_api->recycle(t->instances, i);
                if (push_return(uc, ret) == 0)
                    return;
                gil = PyGILState_Ensure();
                call_fallback(t->push_failed, ret);
                PyGILState_Release(gil);
                return;
            }
        }
    }
    gil = PyGILState_Ensure();
    call_fallback(t->fallback, address);
    PyGILState_Release(gil);
}

/* ------------------------------------------------------------------ Python interface */

static struct program *program_of(PyObject *words)
{
    Py_buffer view;
    struct program *prog;
    if (PyObject_GetBuffer(words, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len % 8 || view.len < 8 * (PROG_CODE)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "a fetch program is a whole number of u64 words");
        return NULL;
    }
    prog = malloc(sizeof(*prog) + (size_t)view.len + 16);
    if (!prog) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return NULL;
    }
    prog->nwords = (uint32_t)(view.len / 8);
    memcpy(prog->w, view.buf, (size_t)view.len);
    prog->w[prog->nwords] = OP_END;
    prog->w[prog->nwords + 1] = 0;
    PyBuffer_Release(&view);
    return prog;
}

static void free_probe(struct hit_probe *hp)
{
    while (hp) {
        struct hit_probe *next = hp->next;
        free(hp->maps);
        free(hp->prog);
        free(hp);
        hp = next;
    }
}

static void table_free(PyObject *capsule)
{
    struct hit_table *t = PyCapsule_GetPointer(capsule, "hit_table");
    uint64_t i;
    if (!t)
        return;
    for (i = 0; i < t->nentries; i++)
        if (t->by_entry[i])
            free_probe(t->by_entry[i]);
    free(t->by_entry);
    free(t);
}

/* env: (retired_addr, ns_per_insn, vmem_addr, gs_base_regid, off_comm, off_pid,
 * pseudo_comm, pseudo_pid, pseudo_addr), off_comm < 0: no task layout (the pseudo task). */
static int env_of(PyObject *tuple, struct hit_env *e)
{
    unsigned long long retired, ns_per_insn, vmem, pseudo_addr;
    int regid, off_comm, off_pid, pseudo_pid;
    const char *pseudo_comm;
    Py_ssize_t comm_len;
    if (!PyArg_ParseTuple(tuple, "KKKiiiy#iK", &retired, &ns_per_insn, &vmem, &regid, &off_comm, &off_pid,
                          &pseudo_comm, &comm_len, &pseudo_pid, &pseudo_addr))
        return -1;
    e->retired = (const uint64_t *)(uintptr_t)retired;
    e->ns_per_insn = ns_per_insn;
    e->vmem = (const uint64_t *)(uintptr_t)vmem;
    e->gs_base_regid = regid;
    e->has_layout = off_comm >= 0;
    e->off_comm = (uint32_t)off_comm;
    e->off_pid = (uint32_t)off_pid;
    memset(&e->pseudo, 0, sizeof(e->pseudo));
    memcpy(e->pseudo.comm, pseudo_comm, comm_len < TASK_COMM_LEN ? comm_len : TASK_COMM_LEN - 1);
    e->pseudo.pid = pseudo_pid;
    e->pseudo.found = 1;
    e->pseudo_addr = pseudo_addr;
    return 0;
}

/* new_table(entry_base, entry_size, nentries, env, current_kprobe_addr, fallback) ->
 * (capsule, address): env as env_of reads it. */
static PyObject *new_table(PyObject *self, PyObject *args)
{
    unsigned long long base, esize, n, current_kprobe;
    PyObject *env, *fallback, *capsule;
    struct hit_table *t;
    if (!PyArg_ParseTuple(args, "KKKO!KO", &base, &esize, &n, &PyTuple_Type, &env, &current_kprobe, &fallback))
        return NULL;
    t = calloc(1, sizeof(*t));
    if (!t || !(t->by_entry = calloc(n ? n : 1, sizeof(*t->by_entry)))) {
        free(t);
        return PyErr_NoMemory();
    }
    if (env_of(env, &t->env) < 0) {
        free(t->by_entry);
        free(t);
        return NULL;
    }
    t->entry_base = base;
    t->entry_size = esize ? esize : 1;
    t->nentries = n;
    t->current_kprobe = (PyObject *const *)(uintptr_t)current_kprobe;
    t->fallback = fallback;
    capsule = PyCapsule_New(t, "hit_table", table_free);
    if (!capsule) {
        free(t->by_entry);
        free(t);
        return NULL;
    }
    return Py_BuildValue("(NK)", capsule, (unsigned long long)(uintptr_t)t);
}

static struct hit_table *table_of(PyObject *capsule)
{
    return PyCapsule_GetPointer(capsule, "hit_table");
}

static void drop_entry(struct hit_table *t, uint64_t i)
{
    if (t->by_entry[i]) {
        free_probe(t->by_entry[i]);
        t->by_entry[i] = NULL;
    }
}

/* The map lines of set_probe: each (BpfMap, handle, Aggregation, key sources, value
 * source). */
static int parse_maps(PyObject *lines, struct hit_probe *hp)
{
    Py_ssize_t n, i, k;
    if (!PyTuple_Check(lines) || (n = PyTuple_GET_SIZE(lines)) == 0)
        return 0;
    if (!cmaps_api && !(cmaps_api = PyCapsule_Import(CMAPS_CAPSULE, 0)))
        return -1;
    if (!(hp->maps = calloc((size_t)n, sizeof(*hp->maps)))) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++) {
        struct map_line *ml = &hp->maps[hp->nmaps];
        PyObject *owner, *agg, *keys;
        unsigned long long handle;
        int value;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(lines, i), "OKOO!i", &owner, &handle, &agg, &PyTuple_Type, &keys,
                              &value))
            return -1;
        if (PyTuple_GET_SIZE(keys) > MAX_KEY_PARTS) {
            PyErr_SetString(PyExc_ValueError, "too many key parts");
            return -1;
        }
        for (k = 0; k < PyTuple_GET_SIZE(keys); k++)
            if ((ml->key[k] = (int)PyLong_AsLong(PyTuple_GET_ITEM(keys, k))) == -1 && PyErr_Occurred())
                return -1;
        ml->nkeys = (int)PyTuple_GET_SIZE(keys);
        ml->value = value;
        (void)owner;              /* kept alive by chits.CHits with the line */
        ml->map = (struct cmap *)(uintptr_t)handle;
        ml->agg = agg;
        hp->nmaps++;
    }
    return 0;
}

/* The index of detour entry `entry` in t (-1 and an error: not one). */
static int64_t entry_index(struct hit_table *t, unsigned long long entry)
{
    uint64_t i = (entry - t->entry_base) / t->entry_size;
    if (entry < t->entry_base || i >= t->nentries) {
        PyErr_SetString(PyExc_ValueError, "not a detour entry");
        return -1;
    }
    return (int64_t)i;
}

/* hp after the probes already at entry i (an aggregate's next child). */
static void append_probe(struct hit_table *t, uint64_t i, struct hit_probe *hp)
{
    struct hit_probe **at = &t->by_entry[i];
    while (*at)
        at = &(*at)->next;
    *at = hp;
    t->by_entry[i]->any_kretprobe |= hp->kretprobe;
}

/* set_probe(table, entry, kp, hits_addr, ip, type, ring, program, maps): the hits of kp
 * at detour entry `entry` record its event in C from now on, after what the entry already
 * does (hits_addr: where kp's C hit count is, an int64; ring: the trace ring's handle;
 * maps: see parse_maps). */
static PyObject *set_probe(PyObject *self, PyObject *args)
{
    PyObject *capsule, *kp, *words, *maps;
    unsigned long long entry, hits, ip, ring;
    unsigned int type;
    struct hit_table *t;
    struct hit_probe *hp;
    int64_t i;
    if (!PyArg_ParseTuple(args, "OKOKKIKOO", &capsule, &entry, &kp, &hits, &ip, &type, &ring, &words, &maps))
        return NULL;
    if (!(t = table_of(capsule)) || (i = entry_index(t, entry)) < 0)
        return NULL;
    if (ring && !ring_api) {
        ring_api = PyCapsule_Import("kprobe_shell.tracing._ring.API", 0);
        if (!ring_api)
            return NULL;
    }
    hp = calloc(1, sizeof(*hp));
    if (!hp)
        return PyErr_NoMemory();
    hp->kp = kp;
    hp->hits = (int64_t *)(uintptr_t)hits;
    if (!(hp->prog = program_of(words)) || parse_maps(maps, hp) < 0) {
        free_probe(hp);
        return NULL;
    }
    hp->ip = ip;
    hp->type = (uint16_t)type;
    hp->ring = (struct trace_ring *)(uintptr_t)ring;
    append_probe(t, (uint64_t)i, hp);
    Py_RETURN_NONE;
}

/* set_kretprobe_entry(table, entry, kp, hits_addr, rp_number, nmissed_addr, ip): the
 * hits of kretprobe rp_number's kprobe kp at detour entry `entry` take its instances in C
 * from now on, after what the entry already does (see set_kretprobes). */
static PyObject *set_kretprobe_entry(PyObject *self, PyObject *args)
{
    PyObject *capsule, *kp;
    unsigned long long entry, hits, nmissed, ip;
    int rp;
    struct hit_table *t;
    struct hit_probe *hp;
    int64_t i;
    if (!PyArg_ParseTuple(args, "OKOKiKK", &capsule, &entry, &kp, &hits, &rp, &nmissed, &ip))
        return NULL;
    if (!(t = table_of(capsule)) || (i = entry_index(t, entry)) < 0)
        return NULL;
    if (!t->instances || rp < 0) {
        PyErr_SetString(PyExc_ValueError, "no kretprobe instances for this table (set_kretprobes)");
        return NULL;
    }
    if (!(hp = calloc(1, sizeof(*hp))))
        return PyErr_NoMemory();
    hp->kp = kp;
    hp->hits = (int64_t *)(uintptr_t)hits;
    hp->kretprobe = 1;
    hp->rp = rp;
    hp->nmissed = (int64_t *)(uintptr_t)nmissed;
    hp->ip = ip;
    append_probe(t, (uint64_t)i, hp);
    Py_RETURN_NONE;
}

/* set_kretprobes(table, instances, booster, entry_failed): where kretprobes' entries take
 * their instances (the manager's InstanceTable), the return address they plant, and what
 * reports a return address that cannot be replaced (called with the probed address). */
static PyObject *set_kretprobes(PyObject *self, PyObject *args)
{
    PyObject *capsule, *instances, *entry_failed;
    unsigned long long booster;
    struct hit_table *t;
    if (!PyArg_ParseTuple(args, "OOKO", &capsule, &instances, &booster, &entry_failed) || !(t = table_of(capsule)))
        return NULL;
    if (!kstate_api && !(kstate_api = PyCapsule_Import(KSTATE_API_CAPSULE, 0)))
        return NULL;
    t->instances = instances;
    t->booster = booster;
    t->entry_failed = entry_failed;
    Py_RETURN_NONE;
}

/* clear(table): every entry back to the Python hook. */
static PyObject *clear(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    struct hit_table *t;
    uint64_t i;
    if (!PyArg_ParseTuple(args, "O", &capsule) || !(t = table_of(capsule)))
        return NULL;
    for (i = 0; i < t->nentries; i++)
        drop_entry(t, i);
    Py_RETURN_NONE;
}

/* drop(table, entry): that detour entry back to the Python hook. */
static PyObject *drop(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    unsigned long long entry;
    struct hit_table *t;
    int64_t i;
    if (!PyArg_ParseTuple(args, "OK", &capsule, &entry) || !(t = table_of(capsule)) || (i = entry_index(t, entry)) < 0)
        return NULL;
    drop_entry(t, (uint64_t)i);
    Py_RETURN_NONE;
}

/* run_program(program, uch, vmem, comm, pid) -> (record's argument bytes, faults, accepted):
 * one fetch and filter as a hit makes them, for the tests: the record from its fixed
 * part on (what follows trace_entry and the ips). */
static PyObject *run_program(PyObject *self, PyObject *args)
{
    PyObject *words;
    unsigned long long uch;
    int vmem, pid;
    const char *comm;
    Py_ssize_t comm_len;
    struct program *prog;
    struct guest g;
    struct task_info task;
    struct fetch_state st;
    static uint8_t rec[RECORD_MAX];
    uint8_t comm_buf[2 * TASK_COMM_LEN];
    uint32_t pc, start;
    int ok;
    if (!PyArg_ParseTuple(args, "OKiy#i", &words, &uch, &vmem, &comm, &comm_len, &pid))
        return NULL;
    if (!(prog = program_of(words)))
        return NULL;
    g.uc = (void *)(uintptr_t)uch;
    g.vmem = vmem;
    memset(&task, 0, sizeof(task));
    memcpy(task.comm, comm, comm_len < TASK_COMM_LEN ? comm_len : TASK_COMM_LEN - 1);
    task.pid = pid;
    task.found = pid != -1;
    st.g = &g;
    st.task = &task;
    st.rec = rec;
    pc = run_args(prog, &st);
    ok = run_filter(prog, pc, &st, comm_buf);
    start = (uint32_t)prog->w[PROG_ARGS_AT];
    free(prog);
    return Py_BuildValue("(y#Ki)", rec + start, (Py_ssize_t)(st.data_at - start), (unsigned long long)st.faults, ok);
}

static PyObject *set_force_python(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    int force;
    struct hit_table *t;
    if (!PyArg_ParseTuple(args, "Op", &capsule, &force) || !(t = table_of(capsule)))
        return NULL;
    t->force_python = force;
    Py_RETURN_NONE;
}

static void free_ret_probe(struct ret_probe *rr)
{
    free_probe(rr->lines);
    free(rr->prog);
    free(rr);
}

static void free_rets(struct ret_table *t)
{
    int32_t i;
    for (i = 0; i < t->nrps; i++)
        if (t->by_rp[i])
            free_ret_probe(t->by_rp[i]);
    free(t->by_rp);
    t->by_rp = NULL;
    t->nrps = 0;
}

static void ret_table_free(PyObject *capsule)
{
    struct ret_table *t = PyCapsule_GetPointer(capsule, "ret_table");
    if (!t)
        return;
    free_rets(t);
    free(t);
}

/* new_ret_table(env, instances, trampoline, booster, fallback, push_failed) -> (capsule,
 * address): the kretprobe booster's table (instances: the manager's InstanceTable). */
static PyObject *new_ret_table(PyObject *self, PyObject *args)
{
    unsigned long long trampoline, booster;
    PyObject *env, *instances, *fallback, *push_failed, *capsule;
    struct ret_table *t;
    if (!PyArg_ParseTuple(args, "O!OKKOO", &PyTuple_Type, &env, &instances, &trampoline, &booster, &fallback,
                          &push_failed))
        return NULL;
    if (!kstate_api && !(kstate_api = PyCapsule_Import(KSTATE_API_CAPSULE, 0)))
        return NULL;
    if (!(t = calloc(1, sizeof(*t))))
        return PyErr_NoMemory();
    if (env_of(env, &t->env) < 0) {
        free(t);
        return NULL;
    }
    t->instances = instances;
    t->trampoline = trampoline;
    t->booster = booster;
    t->fallback = fallback;
    t->push_failed = push_failed;
    if (!(capsule = PyCapsule_New(t, "ret_table", ret_table_free))) {
        free(t);
        return NULL;
    }
    return Py_BuildValue("(NK)", capsule, (unsigned long long)(uintptr_t)t);
}

/* set_ret(table, rp_number, hits_addr, func, type, ring, program, maps): the return
 * events of the kretprobe numbered rp_number in the InstanceTable record in C from now
 * on, feeding the map lines `maps` (as set_probe's). */
static PyObject *set_ret(PyObject *self, PyObject *args)
{
    PyObject *capsule, *words, *maps;
    int rp;
    unsigned long long hits, func, ring;
    unsigned int type;
    struct ret_table *t;
    struct ret_probe *rr;
    if (!PyArg_ParseTuple(args, "OiKKIKOO", &capsule, &rp, &hits, &func, &type, &ring, &words, &maps))
        return NULL;
    if (!(t = PyCapsule_GetPointer(capsule, "ret_table")))
        return NULL;
    if (rp < 0) {
        PyErr_SetString(PyExc_ValueError, "not a registered kretprobe");
        return NULL;
    }
    if (ring && !ring_api && !(ring_api = PyCapsule_Import("kprobe_shell.tracing._ring.API", 0)))
        return NULL;
    if (rp >= t->nrps) {
        struct ret_probe **grown = realloc(t->by_rp, (size_t)(rp + 1) * sizeof(*grown));
        if (!grown)
            return PyErr_NoMemory();
        memset(grown + t->nrps, 0, (size_t)(rp + 1 - t->nrps) * sizeof(*grown));
        t->by_rp = grown;
        t->nrps = rp + 1;
    }
    if (!(rr = calloc(1, sizeof(*rr))))
        return PyErr_NoMemory();
    if (!(rr->prog = program_of(words)) || !(rr->lines = calloc(1, sizeof(*rr->lines)))
        || parse_maps(maps, rr->lines) < 0) {
        free_ret_probe(rr);
        return NULL;
    }
    if (!rr->lines->nmaps) {
        free_probe(rr->lines);
        rr->lines = NULL;
    }
    rr->hits = (int64_t *)(uintptr_t)hits;
    rr->func = func;
    rr->type = (uint16_t)type;
    rr->ring = (struct trace_ring *)(uintptr_t)ring;
    if (t->by_rp[rp])
        free_ret_probe(t->by_rp[rp]);
    t->by_rp[rp] = rr;
    Py_RETURN_NONE;
}

/* clear_rets(table): every return back to the Python booster. */
static PyObject *clear_rets(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    struct ret_table *t;
    if (!PyArg_ParseTuple(args, "O", &capsule) || !(t = PyCapsule_GetPointer(capsule, "ret_table")))
        return NULL;
    free_rets(t);
    Py_RETURN_NONE;
}

static PyObject *booster_hook_address(PyObject *self, PyObject *unused)
{
    return PyLong_FromVoidPtr((void *)booster_hook);
}

static PyObject *hook_address(PyObject *self, PyObject *unused)
{
    return PyLong_FromVoidPtr((void *)hit_hook);
}

/* init(uc_reg_read, uc_mem_read, uc_vmem_read or 0, uc_reg_write, uc_mem_write, rsp_regid) */
static PyObject *init(PyObject *self, PyObject *args)
{
    unsigned long long rr, mr, vr, rw, mw;
    if (!PyArg_ParseTuple(args, "KKKKKi", &rr, &mr, &vr, &rw, &mw, &rsp_regid))
        return NULL;
    p_reg_read = (uc_reg_fn)(uintptr_t)rr;
    p_mem_read = (uc_mem_read_fn)(uintptr_t)mr;
    p_vmem_read = (uc_vmem_read_fn)(uintptr_t)vr;
    p_reg_write = (uc_reg_fn)(uintptr_t)rw;
    p_mem_write = (uc_mem_write_fn)(uintptr_t)mw;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"init", init, METH_VARARGS,
     "init(uc_reg_read, uc_mem_read, uc_vmem_read or 0, uc_reg_write, uc_mem_write, rsp_regid)"},
    {"hook_address", hook_address, METH_NOARGS, "The C tool hook of the detour entries (see the top of _hit.c)."},
    {"new_table", new_table, METH_VARARGS, "A machine's table of C-recordable detour entries: (capsule, address)."},
    {"set_probe", set_probe, METH_VARARGS, "set_probe(table, entry, kp, hits_addr, ip, type, ring, program, maps)"},
    {"set_kretprobe_entry", set_kretprobe_entry, METH_VARARGS,
     "set_kretprobe_entry(table, entry, kp, hits_addr, rp_number, nmissed_addr, ip)"},
    {"set_kretprobes", set_kretprobes, METH_VARARGS, "set_kretprobes(table, instances, booster, entry_failed)"},
    {"clear", clear, METH_VARARGS, "clear(table): every entry back to the Python hook."},
    {"drop", drop, METH_VARARGS, "drop(table, entry): that entry back to the Python hook."},
    {"set_force_python", set_force_python, METH_VARARGS, "set_force_python(table, on)"},
    {"booster_hook_address", booster_hook_address, METH_NOARGS, "The C tool hook of the kretprobe booster."},
    {"new_ret_table", new_ret_table, METH_VARARGS,
     "new_ret_table(env, instances, trampoline, booster, fallback, push_failed) -> (capsule, address)"},
    {"set_ret", set_ret, METH_VARARGS, "set_ret(table, rp_number, hits_addr, func, type, ring, program, maps)"},
    {"clear_rets", clear_rets, METH_VARARGS, "clear_rets(table): every return back to the Python booster."},
    {"run_program", run_program, METH_VARARGS,
     "run_program(program, uch, vmem, comm, pid) -> (argument bytes, faults, accepted)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hit", "Probe events' fetch programs and hits, in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__hit(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    str_skipped = PyUnicode_InternFromString("skipped");
    if (!str_skipped) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
