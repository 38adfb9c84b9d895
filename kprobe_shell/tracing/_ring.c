/*
 * The trace buffer's ring: ftrace's per-CPU ring buffer (kernel/trace/ring_buffer.c) with
 * the event records in its pages, and the text of the records recorders wrote in C.
 *
 * Per CPU, nr_pages data pages of 4096 bytes, each a buffer_data_page (u64 time stamp of
 * its first event, local_t commit: the bytes used) then events in rb_event's encoding
 * (tracedat.rb_event: type_len:5/time_delta:27, a time extend first when the delta needs
 * more than 27 bits, type_len 0 with the length in array[0] past 112 bytes).  A full
 * buffer gives its oldest page to the writer (overwrite, its events counted as overrun)
 * or refuses the new event (counted as dropped), as ring_buffer.c does.
 *
 * Beside the pages, not in them, each event keeps what the pages cannot say: its
 * sequence number (the order events were recorded in across the CPUs, which a merge by
 * time alone cannot give back), its time stamp (for the merge), where it starts, a fault
 * mask, and whether its TraceEvent lives in Python (events the shell's Python handlers
 * recorded: their text is Python's) or the record is all there is (recorders in C: see
 * ringbuf.h; their text is made here, byte for byte as TraceEvent.ftrace makes it).
 *
 * The comm of each event is the task's as it was when the event was recorded: per pid,
 * the versions of its comm with the sequence number from which each held (ftrace's
 * saved_cmdlines keeps only the latest, and old events would take a later exec's name).
 *
 * Live output (shell/output.py) prints C records since its cursor (printed_seq).  A full
 * buffer must not overwrite records the live output has not printed: when a page switch
 * leaves no free page and unprinted records exist, the ring sets each CPU's stop word
 * (struct icount.stop_asked in machine/_clock.c) so that the run loop stops at the next
 * block, flushes the output and goes on (flush_wanted says why it stopped).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringbuf.h"

#define RB_PAGE_SIZE 4096
#define PAGE_HEADER 16
#define PAGE_DATA (RB_PAGE_SIZE - PAGE_HEADER)
#define TYPE_LEN_MAX 28
#define TYPE_TIME_EXTEND 30
#define DELTA_BITS 27
#define DELTA_MAX ((1ull << DELTA_BITS) - 1)
#define MAX_CPUS 256
#define FIRST_EVENT_ID 1500
#define TASK_COMM_LEN 16
#define LINE_WIDTH 22           /* TraceEvent.ftrace's {comm-pid:>22} */
#define SPILL_STOP (64u << 10)  /* refused records waiting: stop the run to print them */
#define SPILL_MAX (16u << 20)   /* and past this (no run to stop), drop them unprinted */

enum { E_PY = 1, E_CONT = 2, E_DONE = 4 };     /* rb_entry.flags */
enum { K_INT = 0, K_CHAR = 1, K_STRING = 2 };  /* arg_desc.kind */
/* arg_desc.style: how fetch.format_value prints an int field */
enum { S_HEX = 0, S_UNSIGNED = 1, S_SIGNED = 2, S_SYMBOL = 3, S_RETVAL = 4 };
/* where texts: the probed address, a probed function's name, an address (sym+off/size) */
enum { W_PROBE = 0, W_FUNC = 1, W_ADDR = 2 };

struct rb_entry {
    uint64_t seq, time_ns, faults;
    uint16_t off, len;       /* the record's offset in the page's data, its length */
    uint8_t flags;
};

struct rb_page {
    uint8_t *data;           /* RB_PAGE_SIZE bytes: header, then the events */
    uint32_t used, n, cap, entries;  /* data bytes used; rb_entry count; events (E_CONT apart) */
    struct rb_entry *e;
};

struct cpu_ring {
    struct rb_page *pages;   /* nr_pages slots: the full pages from head, then the tail page */
    uint32_t nr_pages, head, nfull;
    uint64_t last_ns;        /* the tail page's newest event time */
    uint64_t overrun, dropped, written, read, lost_unread;
    struct rb_entry *reserved;  /* the entry reserved last, until its commit */
};

struct comm_ver { uint64_t seq; char comm[TASK_COMM_LEN]; };
struct comm_hist { uint32_t n, cap; struct comm_ver *v; };

struct arg_desc { char *name; int kind, size, style; };
struct event_desc {
    char *name;
    int is_return, silent, nargs, defined;
    int kind;                /* TraceEvent.kind: 'k', 'r', 'u' ... */
    long probe;              /* the probe number, -1 none */
    struct arg_desc *args;
};

struct where_ent { uint64_t ip; int kind; char *text; };

struct trace_ring {
    uint32_t nr_pages;
    int overwrite;
    uint64_t seq;            /* the newest event's sequence number */
    int ncpus;
    struct cpu_ring *cpus[MAX_CPUS];
    struct comm_hist *comms; /* by pid + 1 (pid -1: no task) */
    uint32_t ncomms;
    struct event_desc *events;  /* by id - FIRST_EVENT_ID */
    uint32_t nevents;
    struct where_ent *where; /* open addressing by (kind, ip) */
    uint32_t where_cap, where_n;
    PyObject *symbolizer;    /* symbolizer(ip, kind) -> str, for a where text not set */
    /* live output */
    int live;
    uint64_t printed_seq, last_live_seq;
    volatile uint64_t *stop_words[MAX_CPUS];
    int nstop_words;
    int flush_wanted;
    /* Records a full buffer refused (overwrite off) while a live output prints: kept here
     * until printed, as the shell prints every event it records (spill_rec each). */
    uint8_t *spill;
    size_t spill_n, spill_cap;
    struct spill_rec *spill_reserved;
};

/* A refused record waiting to be printed; its bytes follow, the next one 8-aligned after. */
struct spill_rec { struct rb_entry e; int32_t cpu; uint32_t size; };

/* ---------------------------------------------------------------------- the pages */
static inline void put32(uint8_t *d, uint32_t v) { memcpy(d, &v, 4); }
static inline uint32_t get32(const uint8_t *d) { uint32_t v; memcpy(&v, d, 4); return v; }

/* A record's little-endian field of size bytes at off, 0 past its end. */
static uint64_t field_int(const uint8_t *rec, uint32_t len, uint32_t off, int size)
{
    uint64_t v = 0;
    if (off + (uint32_t)size <= len)
        memcpy(&v, rec + off, (size_t)size);  /* little endian, as the host */
    return v;
}

static uint32_t event_length(uint32_t len)
{
    uint32_t padded = (len + 3) & ~3u;
    return padded <= TYPE_LEN_MAX * 4 ? padded + 4 : padded + 8;
}

static struct rb_page *slot(struct cpu_ring *c, uint32_t i) { return &c->pages[(c->head + i) % c->nr_pages]; }
static struct rb_page *tail_page(struct cpu_ring *c) { return slot(c, c->nfull); }

static int page_ready(struct rb_page *p)
{
    if (!p->data && !(p->data = calloc(1, RB_PAGE_SIZE)))
        return 0;
    p->used = p->n = p->entries = 0;
    return 1;
}

static struct cpu_ring *cpu_ring(struct trace_ring *r, int cpu)
{
    if (cpu < 0 || cpu >= MAX_CPUS)
        return NULL;
    struct cpu_ring *c = r->cpus[cpu];
    if (c)
        return c;
    c = calloc(1, sizeof *c);
    if (!c || !(c->pages = calloc(r->nr_pages, sizeof *c->pages))) {
        free(c);
        return NULL;
    }
    c->nr_pages = r->nr_pages;
    r->cpus[cpu] = c;
    while (r->ncpus <= cpu)
        r->ncpus++;
    return c;
}

static void drop_oldest_page(struct cpu_ring *c)
{
    struct rb_page *p = slot(c, 0);
    c->overrun += p->entries;
    c->lost_unread += p->entries;
    p->used = p->n = p->entries = 0;
    c->head = (c->head + 1) % c->nr_pages;
    c->nfull--;
}

static void ask_stop(struct trace_ring *r)
{
    r->flush_wanted = 1;
    for (int i = 0; i < r->nstop_words; i++)
        *r->stop_words[i] = 1;
}

/* Close the tail page (ring_buffer.c's rb_move_tail): 0 when the buffer is full and keeps
 * its events (overwrite off). */
static int new_page(struct trace_ring *r, struct cpu_ring *c)
{
    if (c->nfull + 1 >= c->nr_pages) {
        if (!r->overwrite)
            return 0;
        drop_oldest_page(c);
    }
    c->nfull++;
    if (!page_ready(tail_page(c))) {
        c->nfull--;
        return 0;
    }
    /* The next switch gives up the oldest page: print it first if it holds unprinted lines. */
    struct rb_page *oldest = slot(c, 0);
    if (r->live && c->nfull + 1 >= c->nr_pages && r->last_live_seq > r->printed_seq && oldest->n
        && oldest->e[oldest->n - 1].seq > r->printed_seq)
        ask_stop(r);
    return 1;
}

/* One event header (and its time extend) at the tail; the record's room, zeroed. */
static uint8_t *put_event(struct rb_page *p, uint32_t len, uint64_t delta)
{
    uint8_t *d = p->data + PAGE_HEADER + p->used;
    uint32_t padded = (len + 3) & ~3u;
    if (delta >> DELTA_BITS) {
        put32(d, TYPE_TIME_EXTEND | (uint32_t)((delta & DELTA_MAX) << 5));
        put32(d + 4, (uint32_t)(delta >> DELTA_BITS));
        d += 8;
        p->used += 8;
        delta = 0;
    }
    if (padded <= TYPE_LEN_MAX * 4) {
        put32(d, padded / 4 | (uint32_t)(delta << 5));
        d += 4;
        p->used += 4;
    } else {
        put32(d, (uint32_t)(delta << 5));
        put32(d + 4, padded + 4);
        d += 8;
        p->used += 8;
    }
    memset(d, 0, padded);
    p->used += padded;
    return d;
}

static struct rb_entry *add_entry(struct rb_page *p, uint64_t seq, uint64_t t, uint8_t *rec, uint32_t len,
                                  uint8_t flags)
{
    if (p->n == p->cap) {
        uint32_t cap = p->cap ? 2 * p->cap : 64;
        struct rb_entry *e = realloc(p->e, cap * sizeof *e);
        if (!e)
            return NULL;
        p->e = e;
        p->cap = cap;
    }
    struct rb_entry *e = &p->e[p->n++];
    e->seq = seq;
    e->time_ns = t;
    e->faults = 0;
    e->off = (uint16_t)(rec - (p->data + PAGE_HEADER));
    e->len = (uint16_t)len;
    e->flags = flags;
    if (!(flags & E_CONT))
        p->entries++;
    put32(p->data + 8, p->used);  /* commit */
    return e;
}

static void note_comm(struct trace_ring *r, int32_t pid, const char *comm, uint64_t seq)
{
    uint32_t i = (uint32_t)pid + 1;
    if (pid < -1 || i >= (1u << 22))
        return;
    if (i >= r->ncomms) {
        uint32_t n = r->ncomms ? r->ncomms : 256;
        while (n <= i)
            n *= 2;
        struct comm_hist *h = realloc(r->comms, n * sizeof *h);
        if (!h)
            return;
        memset(h + r->ncomms, 0, (n - r->ncomms) * sizeof *h);
        r->comms = h;
        r->ncomms = n;
    }
    struct comm_hist *h = &r->comms[i];
    if (h->n && !strncmp(h->v[h->n - 1].comm, comm, TASK_COMM_LEN))
        return;
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? 2 * h->cap : 2;
        struct comm_ver *v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n].seq = seq;
    memcpy(h->v[h->n].comm, comm, TASK_COMM_LEN);
    h->n++;
}

/* Room for a record of len bytes, and when len2, a second one at the same time right
 * after it on the same page (the kernel_stack entry of an event taken with its stack).
 * *gave_page: a page was overwritten for it.  flags: E_PY for a record Python fills. */
static uint8_t *reserve2(struct trace_ring *r, int cpu, uint64_t t, uint32_t len, uint32_t len2, int32_t pid,
                         const char *comm, uint8_t flags, int *gave_page)
{
    struct cpu_ring *c = cpu_ring(r, cpu);
    if (!c)
        return NULL;
    c->written++;
    uint64_t seq = ++r->seq;
    uint32_t length = event_length(len) + (len2 ? event_length(len2) : 0);
    struct rb_page *p = tail_page(c);
    if (length > PAGE_DATA || (!p->data && !page_ready(p))) {
        c->dropped++;
        return NULL;
    }
    if (p->n) {
        uint32_t extend = t > c->last_ns && t - c->last_ns > DELTA_MAX ? 8 : 0;
        if (p->used + length + extend > PAGE_DATA) {
            uint64_t overrun = c->overrun;
            if (!new_page(r, c)) {
                c->dropped++;
                return NULL;
            }
            *gave_page = c->overrun != overrun;
            p = tail_page(c);
        }
    }
    if (!p->n) {
        c->last_ns = t;
        memcpy(p->data, &t, 8);
    }
    uint8_t *rec = put_event(p, len, t > c->last_ns ? t - c->last_ns : 0);
    struct rb_entry *e = add_entry(p, seq, t, rec, len, flags);
    if (!e)
        return NULL;
    if (len2) {
        uint8_t *rec2 = put_event(p, len2, 0);
        if (!add_entry(p, seq, t, rec2, len2, flags | E_CONT | E_DONE))
            return NULL;
        e = &p->e[p->n - 2];
    }
    if (t > c->last_ns)
        c->last_ns = t;
    c->reserved = e;
    note_comm(r, pid, comm, seq);
    return rec;
}

/* ---------------------------------------------------------------------- the C interface */
/* Room for a record the full buffer refused (already counted as dropped), for the live
 * output to print. */
static uint8_t *spill(struct trace_ring *r, int cpu, uint64_t t, uint32_t len, int32_t pid, const char *comm)
{
    size_t size = (sizeof(struct spill_rec) + len + 7) & ~(size_t)7;
    if (r->spill_n + size > SPILL_MAX)
        return NULL;
    if (r->spill_n + size > r->spill_cap) {
        size_t cap = r->spill_cap ? 2 * r->spill_cap : 16384;
        while (cap < r->spill_n + size)
            cap *= 2;
        uint8_t *grown = realloc(r->spill, cap);
        if (!grown)
            return NULL;
        r->spill = grown;
        r->spill_cap = cap;
    }
    struct spill_rec *x = (struct spill_rec *)(r->spill + r->spill_n);
    memset(x, 0, size);
    x->e.seq = r->seq;
    x->e.time_ns = t;
    x->e.len = (uint16_t)len;
    x->cpu = cpu;
    x->size = (uint32_t)size;
    r->spill_n += size;
    r->spill_reserved = x;
    note_comm(r, pid, comm, r->seq);
    if (r->spill_n > SPILL_STOP)
        ask_stop(r);
    return (uint8_t *)(x + 1);
}

static uint8_t *api_reserve(struct trace_ring *r, int cpu, uint64_t t, uint32_t len, int32_t pid, const char *comm)
{
    int gave = 0;
    uint8_t *rec = reserve2(r, cpu, t, len, 0, pid, comm, 0, &gave);
    if (!rec && r->live && !r->overwrite && cpu >= 0 && cpu < MAX_CPUS && r->cpus[cpu] && len <= PAGE_DATA)
        return spill(r, cpu, t, len, pid, comm);
    return rec;
}

static struct event_desc *desc_of(struct trace_ring *r, uint32_t id)
{
    if (id < FIRST_EVENT_ID || id - FIRST_EVENT_ID >= r->nevents)
        return NULL;
    struct event_desc *d = &r->events[id - FIRST_EVENT_ID];
    return d->defined ? d : NULL;
}

static void api_commit(struct trace_ring *r, int cpu)
{
    struct cpu_ring *c = cpu >= 0 && cpu < MAX_CPUS ? r->cpus[cpu] : NULL;
    struct rb_entry *e = c ? c->reserved : NULL;
    const uint8_t *rec = e ? tail_page(c)->data + PAGE_HEADER + e->off : NULL;
    if (r->spill_reserved) {
        e = &r->spill_reserved->e;
        rec = (const uint8_t *)(r->spill_reserved + 1);
        r->spill_reserved = NULL;
    } else if (c) {
        c->reserved = NULL;
    }
    if (!e)
        return;
    e->flags |= E_DONE;
    struct event_desc *d = desc_of(r, (uint16_t)field_int(rec, e->len, 0, 2));
    if (!d || !d->silent)
        r->last_live_seq = e->seq;
}

static void api_set_faults(struct trace_ring *r, int cpu, uint64_t mask)
{
    struct cpu_ring *c = cpu >= 0 && cpu < MAX_CPUS ? r->cpus[cpu] : NULL;
    if (r->spill_reserved)
        r->spill_reserved->e.faults = mask;
    else if (c && c->reserved)
        c->reserved->faults = mask;
}

static struct ring_api the_api = {api_reserve, api_commit, api_set_faults};

/* ---------------------------------------------------------------------- resize, clear */
static void empty_cpu(struct cpu_ring *c)
{
    for (uint32_t i = 0; i <= c->nfull && i < c->nr_pages; i++) {
        struct rb_page *p = slot(c, i);
        p->used = p->n = p->entries = 0;
    }
    c->nfull = 0;
    c->reserved = NULL;
}

static void free_cpu(struct cpu_ring *c)
{
    for (uint32_t i = 0; i < c->nr_pages; i++) {
        free(c->pages[i].data);
        free(c->pages[i].e);
    }
    free(c->pages);
    free(c);
}

/* buffer_size_kb written: a smaller buffer loses its oldest pages, counted as overrun
 * (rb_remove_pages). */
static int resize_cpu(struct cpu_ring *c, uint32_t nr_pages)
{
    while (c->nfull + 1 > nr_pages)
        drop_oldest_page(c);
    struct rb_page *pages = calloc(nr_pages, sizeof *pages);
    if (!pages)
        return -1;
    uint32_t kept = c->nfull + 1, n = 0;
    for (uint32_t i = 0; i < kept; i++)
        pages[n++] = *slot(c, i);
    for (uint32_t i = kept; i < c->nr_pages && n < nr_pages; i++)
        pages[n++] = *slot(c, i);   /* spare pages keep their memory */
    for (uint32_t i = n; i < c->nr_pages; i++) {
        free(slot(c, i)->data);
        free(slot(c, i)->e);
    }
    free(c->pages);
    c->pages = pages;
    c->nr_pages = nr_pages;
    c->head = 0;
    return 0;
}

/* ---------------------------------------------------------------------- text */
struct sbuf { char *b; size_t n, cap; int failed; };

static void sb_grow(struct sbuf *s, size_t more)
{
    if (s->n + more <= s->cap || s->failed)
        return;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->n + more)
        cap *= 2;
    char *b = realloc(s->b, cap);
    if (!b) {
        s->failed = 1;
        return;
    }
    s->b = b;
    s->cap = cap;
}

static void sb_put(struct sbuf *s, const char *text, size_t n)
{
    sb_grow(s, n);
    if (s->failed)
        return;
    memcpy(s->b + s->n, text, n);
    s->n += n;
}

static void sb_puts(struct sbuf *s, const char *text) { sb_put(s, text, strlen(text)); }

/* Decimal and hex without printf: a line takes a few of them and printf costs as much
 * as the rest of the line. */
static void sb_dec(struct sbuf *s, uint64_t v, int width, char fill)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_grow(s, (size_t)(n > width ? n : width));
    if (s->failed)
        return;
    for (; width > n; width--)
        s->b[s->n++] = fill;
    memcpy(s->b + s->n, tmp + sizeof tmp - n, (size_t)n);
    s->n += (size_t)n;
}

static void sb_signed(struct sbuf *s, int64_t v)
{
    if (v < 0) {
        sb_put(s, "-", 1);
        sb_dec(s, (uint64_t)0 - (uint64_t)v, 0, ' ');
    } else {
        sb_dec(s, (uint64_t)v, 0, ' ');
    }
}

static void sb_hex(struct sbuf *s, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[18];
    int n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = hex[v & 15];
        v >>= 4;
    } while (v);
    tmp[sizeof tmp - 1 - n++] = 'x';
    tmp[sizeof tmp - 1 - n++] = '0';
    sb_put(s, tmp + sizeof tmp - n, (size_t)n);
}

/* A byte as Python's latin-1 decode makes it, in UTF-8 (comm, char args). */
static void sb_latin1(struct sbuf *s, uint8_t ch)
{
    char two[2] = {(char)(0xC0 | ch >> 6), (char)(0x80 | (ch & 0x3F))};
    if (ch < 0x80)
        sb_put(s, (const char *)&ch, 1);
    else
        sb_put(s, two, 2);
}

/* The length of the well-formed UTF-8 character at d (Python's decoder's rules), 0 if none. */
static int utf8_char(const uint8_t *d, size_t n)
{
    uint8_t c = d[0];
    if (c < 0x80)
        return 1;
    int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || (size_t)len > n)
        return 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;   /* no surrogates */
    else if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
    if (d[1] < lo || d[1] > hi)
        return 0;
    for (int i = 2; i < len; i++)
        if ((d[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* fetch.decode_string: UTF-8, each byte that is not part of a character as \xNN. */
static void sb_string(struct sbuf *s, const uint8_t *d, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < n) {
        int len = utf8_char(d + i, n - i);
        if (len) {
            sb_put(s, (const char *)d + i, len);
            i += len;
        } else {
            char esc[4] = {'\\', 'x', hex[d[i] >> 4], hex[d[i] & 15]};
            sb_put(s, esc, 4);
            i++;
        }
    }
}

static char *where_text(struct trace_ring *r, int kind, uint64_t ip);

/* ---------------------------------------------------------------------- where texts */
static uint32_t where_hash(int kind, uint64_t ip)
{
    return (uint32_t)(((ip ^ ((uint64_t)kind << 61)) * 0x9E3779B97F4A7C15ull) >> 32);
}

static struct where_ent *where_slot(struct trace_ring *r, int kind, uint64_t ip)
{
    uint32_t mask = r->where_cap - 1;
    for (uint32_t i = where_hash(kind, ip) & mask;; i = (i + 1) & mask) {
        struct where_ent *w = &r->where[i];
        if (!w->text || (w->ip == ip && w->kind == kind))
            return w;
    }
}

static int where_set(struct trace_ring *r, int kind, uint64_t ip, const char *text, size_t n)
{
    if (2 * (r->where_n + 1) > r->where_cap) {
        uint32_t cap = r->where_cap ? 2 * r->where_cap : 256;
        struct where_ent *old = r->where, *w = calloc(cap, sizeof *w);
        uint32_t old_cap = r->where_cap;
        if (!w)
            return -1;
        r->where = w;
        r->where_cap = cap;
        for (uint32_t i = 0; i < old_cap; i++)
            if (old[i].text)
                *where_slot(r, old[i].kind, old[i].ip) = old[i];
        free(old);
    }
    char *copy = malloc(n + 1);
    if (!copy)
        return -1;
    memcpy(copy, text, n);
    copy[n] = 0;
    struct where_ent *w = where_slot(r, kind, ip);
    if (w->text)
        free(w->text);
    else
        r->where_n++;
    w->ip = ip;
    w->kind = kind;
    w->text = copy;
    return 0;
}

/* The text of ip as the shell shows it (set_where, else symbolizer(ip, kind) once, else
 * hex).  Called with the GIL: rendering runs from Python. */
static char *where_text(struct trace_ring *r, int kind, uint64_t ip)
{
    if (r->where_cap) {
        struct where_ent *w = where_slot(r, kind, ip);
        if (w->text)
            return w->text;
    }
    char hex[24];
    const char *text = hex;
    Py_ssize_t n = snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)ip);
    PyObject *got = NULL;
    if (r->symbolizer && r->symbolizer != Py_None) {
        got = PyObject_CallFunction(r->symbolizer, "Ki", (unsigned long long)ip, kind);
        const char *utf8 = got && PyUnicode_Check(got) ? PyUnicode_AsUTF8AndSize(got, &n) : NULL;
        if (utf8)
            text = utf8;
        else
            n = snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)ip);
        PyErr_Clear();
    }
    int failed = where_set(r, kind, ip, text, (size_t)n);
    Py_XDECREF(got);
    if (failed)
        return "?";
    return where_slot(r, kind, ip)->text;
}

/* ---------------------------------------------------------------------- records */
static const char *comm_at(struct trace_ring *r, int32_t pid, uint64_t seq)
{
    uint32_t i = (uint32_t)pid + 1;
    if (pid < -1 || i >= r->ncomms || !r->comms[i].n)
        return "<...>";
    struct comm_hist *h = &r->comms[i];
    uint32_t k = h->n;
    while (k > 1 && h->v[k - 1].seq > seq)
        k--;
    return h->v[k - 1].comm;
}

static int64_t sign_extend(uint64_t v, int size)
{
    int shift = 64 - 8 * size;
    return shift ? (int64_t)(v << shift) >> shift : (int64_t)v;
}

/* One argument's text (fetch.format_value) and, when values, its Python value
 * (fetch.python_value) under its name. */
static int render_arg(struct trace_ring *r, struct sbuf *s, const uint8_t *rec, uint32_t len, uint32_t off,
                      struct arg_desc *a, int faulted, PyObject *values)
{
    PyObject *v = NULL;
    if (faulted) {
        sb_puts(s, "(fault)");
        v = Py_NewRef(Py_None);
    } else if (a->kind == K_STRING) {
        uint32_t loc = (uint32_t)field_int(rec, len, off, 4), at = loc & 0xFFFF, n = loc >> 16;
        if (at + n > len)
            n = at < len ? len - at : 0, at = at < len ? at : 0;
        size_t text = n ? n - (rec[at + n - 1] == 0) : 0;   /* the NUL is not shown */
        sb_put(s, "\"", 1);
        sb_string(s, rec + at, text);
        sb_put(s, "\"", 1);
        if (values)
            v = PyUnicode_DecodeUTF8((const char *)rec + at, (Py_ssize_t)text, "backslashreplace");
    } else if (a->kind == K_CHAR) {
        uint8_t ch = (uint8_t)field_int(rec, len, off, 1);
        sb_put(s, "'", 1);
        sb_latin1(s, ch);
        sb_put(s, "'", 1);
        if (values)
            v = PyUnicode_FromOrdinal(ch);
    } else {
        uint64_t u = field_int(rec, len, off, a->size);
        int64_t i = sign_extend(u, a->size);
        if (a->style == S_HEX) {
            sb_hex(s, u);
        } else if (a->style == S_UNSIGNED) {
            sb_dec(s, u, 0, ' ');
        } else if (a->style == S_SIGNED) {
            sb_signed(s, i);
        } else if (a->style == S_SYMBOL) {
            sb_puts(s, where_text(r, W_ADDR, u));
        } else {
            sb_signed(s, i);
            sb_put(s, " (", 2);
            sb_hex(s, u);
            sb_put(s, ")", 1);
        }
        if (values)
            v = a->style == S_SIGNED || a->style == S_RETVAL ? PyLong_FromLongLong(i) : PyLong_FromUnsignedLongLong(u);
    }
    if (!values)
        return 0;
    if (!v || PyDict_SetItemString(values, a->name, v) < 0) {
        Py_XDECREF(v);
        return -1;
    }
    Py_DECREF(v);
    return 0;
}

static int render_args(struct trace_ring *r, struct sbuf *s, const uint8_t *rec, uint32_t len,
                       struct event_desc *d, uint64_t faults, PyObject *values)
{
    uint32_t off = d->is_return ? 24 : 16;
    for (int i = 0; i < d->nargs; i++) {
        struct arg_desc *a = &d->args[i];
        sb_put(s, " ", 1);
        sb_puts(s, a->name);
        sb_put(s, "=", 1);
        if (render_arg(r, s, rec, len, off, a, i < 64 && (faults >> i & 1), values) < 0)
            return -1;
        off += a->kind == K_STRING ? 4 : (uint32_t)a->size;
    }
    return 0;
}

static void render_where(struct trace_ring *r, struct sbuf *s, const uint8_t *rec, uint32_t len,
                         struct event_desc *d)
{
    if (d && d->is_return) {
        sb_puts(s, where_text(r, W_ADDR, field_int(rec, len, 16, 8)));
        sb_puts(s, " <- ");
        sb_puts(s, where_text(r, W_FUNC, field_int(rec, len, 8, 8)));
    } else {
        sb_puts(s, where_text(r, W_PROBE, field_int(rec, len, 8, 8)));
    }
}

/* TraceEvent.ftrace's line for a record written in C:
 * {comm-pid:>22} [{cpu:03d}] {secs:5d}.{nsec:09d}: {event}: ({where}){args} */
static int render_line(struct trace_ring *r, struct sbuf *s, int cpu, const uint8_t *rec, const struct rb_entry *e)
{
    uint16_t id = (uint16_t)field_int(rec, e->len, 0, 2);
    int32_t pid = (int32_t)field_int(rec, e->len, 4, 4);
    const char *comm = comm_at(r, pid, e->seq);
    size_t ncomm = strnlen(comm, TASK_COMM_LEN);
    struct sbuf pidtext = {0};
    char digits[16];
    pidtext.b = digits;
    pidtext.cap = sizeof digits;
    sb_put(&pidtext, "-", 1);
    sb_signed(&pidtext, pid);
    for (int pad = LINE_WIDTH - (int)ncomm - (int)pidtext.n; pad > 0; pad--)
        sb_put(s, " ", 1);
    for (size_t i = 0; i < ncomm; i++)
        sb_latin1(s, (uint8_t)comm[i]);
    sb_put(s, digits, pidtext.n);
    sb_put(s, " [", 2);
    sb_dec(s, (uint64_t)cpu, 3, '0');
    sb_put(s, "] ", 2);
    sb_dec(s, e->time_ns / 1000000000u, 5, ' ');
    sb_put(s, ".", 1);
    sb_dec(s, e->time_ns % 1000000000u, 9, '0');
    sb_put(s, ": ", 2);
    struct event_desc *d = desc_of(r, id);
    sb_puts(s, d ? d->name : "?");
    sb_puts(s, ": (");
    render_where(r, s, rec, e->len, d);
    sb_put(s, ")", 1);
    if (d && render_args(r, s, rec, e->len, d, e->faults, NULL) < 0)
        return -1;
    return s->failed ? -1 : 0;
}

/* (time_ns, comm, pid, cpu, event, where, args, kind, probe, values, seq): a TraceEvent's
 * fields, for trace.py to make one of a record written in C. */
static PyObject *decode_record(struct trace_ring *r, int cpu, const uint8_t *rec, const struct rb_entry *e)
{
    uint16_t id = (uint16_t)field_int(rec, e->len, 0, 2);
    int32_t pid = (int32_t)field_int(rec, e->len, 4, 4);
    const char *comm = comm_at(r, pid, e->seq);
    struct event_desc *d = desc_of(r, id);
    struct sbuf where = {0}, args = {0};
    PyObject *values = PyDict_New(), *out = NULL;
    render_where(r, &where, rec, e->len, d);
    if (values && (!d || render_args(r, &args, rec, e->len, d, e->faults, values) == 0) && !where.failed
        && !args.failed) {
        PyObject *probe = d && d->probe >= 0 ? PyLong_FromLong(d->probe) : Py_NewRef(Py_None);
        char kind = d ? (char)d->kind : 'k';
        out = Py_BuildValue("(KNiisNNNNOK)", (unsigned long long)e->time_ns,
                            PyUnicode_DecodeLatin1(comm, (Py_ssize_t)strnlen(comm, TASK_COMM_LEN), NULL), pid, cpu,
                            d ? d->name : "?", PyUnicode_DecodeUTF8(where.b ? where.b : "", (Py_ssize_t)where.n, "surrogateescape"),
                            PyUnicode_DecodeUTF8(args.b ? args.b : "", (Py_ssize_t)args.n, "surrogateescape"),
                            PyUnicode_FromStringAndSize(&kind, 1), probe, values, (unsigned long long)e->seq);
    }
    Py_XDECREF(values);
    free(where.b);
    free(args.b);
    return out;
}

/* ---------------------------------------------------------------------- walking the records */
struct ref { uint64_t time_ns, seq; int cpu; const uint8_t *rec; const struct rb_entry *e; };

static int by_seq(const void *a, const void *b)
{
    const struct ref *x = a, *y = b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* The kernel's iterator takes the earliest time stamp first, on a tie the lower CPU;
 * each CPU's own events stay in recording order. */
static int by_time_then_cpu(const void *a, const void *b)
{
    const struct ref *x = a, *y = b;
    if (x->time_ns != y->time_ns)
        return (x->time_ns > y->time_ns) - (x->time_ns < y->time_ns);
    if (x->cpu != y->cpu)
        return x->cpu - y->cpu;
    return by_seq(a, b);
}

/* The pages of c that may hold events with lo < seq < hi: [*first, *end). */
static void seq_span(struct cpu_ring *c, uint64_t lo, uint64_t hi, uint32_t *first, uint32_t *end)
{
    uint32_t a = 0, b = c->nfull + 1;
    while (a < b) {   /* the first page whose newest event is after lo */
        uint32_t mid = (a + b) / 2;
        struct rb_page *p = slot(c, mid);
        if (p->n && p->e[p->n - 1].seq <= lo)
            a = mid + 1;
        else
            b = mid;
    }
    *first = a;
    for (b = a; b <= c->nfull && !(hi && slot(c, b)->n && slot(c, b)->e[0].seq >= hi); b++)
        ;
    *end = b;
}

static int in_range(const struct rb_entry *e, uint64_t lo, uint64_t hi)
{
    return !(e->flags & E_CONT) && (e->flags & E_DONE) && e->seq > lo && (!hi || e->seq < hi);
}

/* The refused records waiting to be printed with lo < seq < hi, appended at refs + at. */
static size_t collect_spill(struct trace_ring *r, uint64_t lo, uint64_t hi, struct ref *refs, size_t at)
{
    for (size_t off = 0; off < r->spill_n;) {
        const struct spill_rec *x = (const struct spill_rec *)(r->spill + off);
        if (in_range(&x->e, lo, hi))
            refs[at++] = (struct ref){x->e.time_ns, x->e.seq, x->cpu, (const uint8_t *)(x + 1), &x->e};
        off += x->size;
    }
    return at;
}

/* The committed events with lo < seq < hi (hi 0: no bound), sorted, the refused ones
 * waiting to be printed too when live; NULL with *n 0 when none. */
static struct ref *collect(struct trace_ring *r, uint64_t lo, uint64_t hi, int by_time, int live, size_t *n)
{
    size_t count = live ? r->spill_n / sizeof(struct spill_rec) : 0, at = 0;
    uint32_t first, end;
    for (int cpu = 0; cpu < r->ncpus; cpu++) {
        struct cpu_ring *c = r->cpus[cpu];
        if (!c)
            continue;
        seq_span(c, lo, hi, &first, &end);
        for (uint32_t i = first; i < end; i++)
            count += slot(c, i)->entries;
    }
    *n = 0;
    struct ref *refs = count ? malloc(count * sizeof *refs) : NULL;
    if (!refs)
        return NULL;
    for (int cpu = 0; cpu < r->ncpus; cpu++) {
        struct cpu_ring *c = r->cpus[cpu];
        if (!c)
            continue;
        seq_span(c, lo, hi, &first, &end);
        for (uint32_t i = first; i < end; i++) {
            const struct rb_page *p = slot(c, i);
            for (uint32_t k = 0; k < p->n && at < count; k++) {
                const struct rb_entry *e = &p->e[k];
                if (in_range(e, lo, hi))
                    refs[at++] = (struct ref){e->time_ns, e->seq, cpu, p->data + PAGE_HEADER + e->off, e};
            }
        }
    }
    if (live)
        at = collect_spill(r, lo, hi, refs, at);
    int (*order)(const void *, const void *) = by_time ? by_time_then_cpu : by_seq;
    for (size_t i = 1; i < at; i++)
        if (order(&refs[i - 1], &refs[i]) > 0) {   /* one CPU's events are in order already */
            qsort(refs, at, sizeof *refs, order);
            break;
        }
    *n = at;
    return refs;
}

static int is_silent(struct trace_ring *r, const struct ref *x)
{
    uint16_t id = (uint16_t)field_int(x->rec, x->e->len, 0, 2);
    struct event_desc *d = desc_of(r, id);
    return d && d->silent;
}

/* The entry of seq on c, NULL if it is not kept. */
static struct rb_entry *find_seq(struct cpu_ring *c, uint64_t seq, struct rb_page **page)
{
    uint32_t lo = 0, hi = c->nfull + 1;
    while (hi - lo > 1) {   /* the last page whose first event is not after seq */
        uint32_t mid = (lo + hi) / 2;
        struct rb_page *p = slot(c, mid);
        if (p->n && p->e[0].seq <= seq)
            lo = mid;
        else
            hi = mid;
    }
    struct rb_page *p = slot(c, lo);
    for (uint32_t k = 0; k < p->n; k++)
        if (p->e[k].seq == seq && !(p->e[k].flags & E_CONT)) {
            *page = p;
            return &p->e[k];
        }
    return NULL;
}

/* ---------------------------------------------------------------------- the Python type */
typedef struct {
    PyObject_HEAD
    struct trace_ring *r;
} RingObject;

static void free_events(struct trace_ring *r)
{
    for (uint32_t i = 0; i < r->nevents; i++) {
        struct event_desc *d = &r->events[i];
        for (int k = 0; k < d->nargs; k++)
            free(d->args[k].name);
        free(d->args);
        free(d->name);
    }
    free(r->events);
}

static void Ring_dealloc(RingObject *self)
{
    struct trace_ring *r = self->r;
    if (r) {
        for (int i = 0; i < r->ncpus; i++)
            if (r->cpus[i])
                free_cpu(r->cpus[i]);
        for (uint32_t i = 0; i < r->ncomms; i++)
            free(r->comms[i].v);
        free(r->comms);
        free_events(r);
        for (uint32_t i = 0; i < r->where_cap; i++)
            free(r->where[i].text);
        free(r->where);
        Py_XDECREF(r->symbolizer);
        free(r->spill);
        free(r);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Ring_init(RingObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"nr_pages", "overwrite", NULL};
    unsigned int nr_pages;
    int overwrite = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "I|p", names, &nr_pages, &overwrite))
        return -1;
    if (nr_pages < 2) {
        PyErr_SetString(PyExc_ValueError, "a ring has at least two pages");
        return -1;
    }
    if (!self->r && !(self->r = calloc(1, sizeof *self->r))) {
        PyErr_NoMemory();
        return -1;
    }
    self->r->nr_pages = nr_pages;
    self->r->overwrite = overwrite;
    return 0;
}

static struct cpu_ring *existing_cpu(struct trace_ring *r, int cpu)
{
    return cpu >= 0 && cpu < r->ncpus ? r->cpus[cpu] : NULL;
}

static void comm_field(char out[TASK_COMM_LEN], const char *comm, Py_ssize_t n)
{
    memset(out, 0, TASK_COMM_LEN);
    memcpy(out, comm, n < TASK_COMM_LEN ? (size_t)n : TASK_COMM_LEN);
}

/* reserve(cpu, time_ns, length, pid, comm, stack_length=0) -> seq, -seq when a page was
 * overwritten for it (prune what lived on it), 0 when not kept.  The record (and its
 * kernel_stack record) is a Python event's: fill() writes it when the pages are saved. */
static PyObject *Ring_reserve(RingObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* every Python event comes here: METH_FASTCALL and no format string to parse */
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "reserve(cpu, time_ns, length, pid, comm, stack_length=0)");
        return NULL;
    }
    long cpu = PyLong_AsLong(args[0]);
    unsigned long long t = PyLong_AsUnsignedLongLong(args[1]);
    unsigned long len = PyLong_AsUnsignedLong(args[2]);
    long pid = PyLong_AsLong(args[3]);
    unsigned long len2 = nargs == 6 ? PyLong_AsUnsignedLong(args[5]) : 0;
    if (PyErr_Occurred())
        return NULL;
    if (!PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "comm must be bytes");
        return NULL;
    }
    char field[TASK_COMM_LEN];
    comm_field(field, PyBytes_AS_STRING(args[4]), PyBytes_GET_SIZE(args[4]));
    int gave = 0;
    if (len > PAGE_DATA || len2 > PAGE_DATA || cpu < 0 || cpu >= MAX_CPUS
        || !reserve2(self->r, (int)cpu, t, (uint32_t)len, (uint32_t)len2, (int32_t)pid, field, E_PY | E_DONE, &gave))
        return PyLong_FromLong(0);
    self->r->cpus[cpu]->reserved = NULL;
    long long seq = (long long)self->r->seq;
    return PyLong_FromLongLong(gave ? -seq : seq);
}

/* record(cpu, time_ns, pid, comm, data, faults=0) -> kept: a record through the C
 * interface (reserve, write, commit), as a recorder in C writes one. */
static PyObject *Ring_record(RingObject *self, PyObject *args)
{
    int cpu, pid;
    unsigned long long t, faults = 0;
    const char *comm, *data;
    Py_ssize_t ncomm, ndata;
    if (!PyArg_ParseTuple(args, "iKiy#y#|K", &cpu, &t, &pid, &comm, &ncomm, &data, &ndata, &faults))
        return NULL;
    char field[TASK_COMM_LEN];
    comm_field(field, comm, ncomm);
    uint8_t *rec = the_api.reserve(self->r, cpu, t, (uint32_t)ndata, pid, field);
    if (!rec)
        Py_RETURN_FALSE;
    memcpy(rec, data, (size_t)ndata);
    the_api.set_faults(self->r, cpu, faults);
    the_api.commit(self->r, cpu);
    Py_RETURN_TRUE;
}

/* fill(cpu, seq, record, stack_record=None): a Python event's record bytes, in place. */
static PyObject *Ring_fill(RingObject *self, PyObject *args)
{
    int cpu;
    unsigned long long seq;
    const char *data, *data2 = NULL;
    Py_ssize_t n, n2 = 0;
    if (!PyArg_ParseTuple(args, "iKy#|z#", &cpu, &seq, &data, &n, &data2, &n2))
        return NULL;
    struct cpu_ring *c = existing_cpu(self->r, cpu);
    struct rb_page *p = NULL;
    struct rb_entry *e = c ? find_seq(c, seq, &p) : NULL;
    if (!e)
        Py_RETURN_FALSE;
    if ((Py_ssize_t)e->len != n) {
        PyErr_Format(PyExc_ValueError, "record %llu takes %u bytes, not %zd", seq, e->len, n);
        return NULL;
    }
    memcpy(p->data + PAGE_HEADER + e->off, data, (size_t)n);
    struct rb_entry *next = e + 1;
    if (data2 && next < p->e + p->n && (next->flags & E_CONT) && next->len == n2)
        memcpy(p->data + PAGE_HEADER + next->off, data2, (size_t)n2);
    Py_RETURN_TRUE;
}

/* stats(cpu) -> (entries, overrun, bytes, oldest_ts, dropped, written, read, pages) */
static PyObject *Ring_stats(RingObject *self, PyObject *args)
{
    int cpu;
    if (!PyArg_ParseTuple(args, "i", &cpu))
        return NULL;
    struct cpu_ring *c = existing_cpu(self->r, cpu);
    unsigned long long entries = 0, bytes = 0, oldest = 0, pages = 0;
    if (!c)
        return Py_BuildValue("(KKKKKKKK)", 0ull, 0ull, 0ull, 0ull, 0ull, 0ull, 0ull, 0ull);
    for (uint32_t i = 0; i <= c->nfull; i++) {
        struct rb_page *p = slot(c, i);
        entries += p->entries;
        bytes += p->used;
        pages += i < c->nfull || p->n;
    }
    struct rb_page *first = slot(c, 0);
    if (first->n)
        oldest = first->e[0].time_ns;
    return Py_BuildValue("(KKKKKKKK)", entries, (unsigned long long)c->overrun, bytes, oldest,
                         (unsigned long long)c->dropped, (unsigned long long)c->written,
                         (unsigned long long)c->read, pages);
}

/* lost(cpu, reset=False) -> events lost since a consuming read last said so */
static PyObject *Ring_lost(RingObject *self, PyObject *args)
{
    int cpu, reset = 0;
    if (!PyArg_ParseTuple(args, "i|p", &cpu, &reset))
        return NULL;
    struct cpu_ring *c = existing_cpu(self->r, cpu);
    unsigned long long lost = c ? c->lost_unread : 0;
    if (c && reset)
        c->lost_unread = 0;
    return PyLong_FromUnsignedLongLong(lost);
}

/* oldest_seq(cpu) -> the sequence number of the oldest event kept on cpu (newer than
 * every event the buffer gave up), the next one when it keeps none. */
static PyObject *Ring_oldest_seq(RingObject *self, PyObject *args)
{
    int cpu;
    if (!PyArg_ParseTuple(args, "i", &cpu))
        return NULL;
    struct cpu_ring *c = existing_cpu(self->r, cpu);
    struct rb_page *p = c ? slot(c, 0) : NULL;
    return PyLong_FromUnsignedLongLong(p && p->n ? p->e[0].seq : self->r->seq + 1);
}

/* pages(cpu) -> bytes: the CPU's pages with events, oldest first, as ring_buffer.c lays
 * them (the rest of each page zeroed). */
static PyObject *Ring_pages(RingObject *self, PyObject *args)
{
    int cpu;
    if (!PyArg_ParseTuple(args, "i", &cpu))
        return NULL;
    struct cpu_ring *c = existing_cpu(self->r, cpu);
    uint32_t n = 0;
    for (uint32_t i = 0; c && i <= c->nfull; i++)
        n += slot(c, i)->n > 0;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n * RB_PAGE_SIZE);
    if (!out)
        return NULL;
    char *d = PyBytes_AS_STRING(out);
    for (uint32_t i = 0; c && i <= c->nfull; i++) {
        struct rb_page *p = slot(c, i);
        if (!p->n)
            continue;
        memcpy(d, p->data, PAGE_HEADER + p->used);
        memset(d + PAGE_HEADER + p->used, 0, PAGE_DATA - p->used);
        uint64_t commit = p->used;
        memcpy(d + 8, &commit, 8);
        d += RB_PAGE_SIZE;
    }
    return out;
}

static PyObject *Ring_clear(RingObject *self, PyObject *unused)
{
    struct trace_ring *r = self->r;
    for (int i = 0; i < r->ncpus; i++) {
        if (r->cpus[i])
            free_cpu(r->cpus[i]);
        r->cpus[i] = NULL;
    }
    r->ncpus = 0;
    Py_RETURN_NONE;
}

/* consumed(cpu): a consuming read took every event of cpu (trace_pipe). */
static PyObject *Ring_consumed(RingObject *self, PyObject *args)
{
    int cpu;
    if (!PyArg_ParseTuple(args, "i", &cpu))
        return NULL;
    struct cpu_ring *c = existing_cpu(self->r, cpu);
    if (c) {
        for (uint32_t i = 0; i <= c->nfull; i++)
            c->read += slot(c, i)->entries;
        empty_cpu(c);
    }
    Py_RETURN_NONE;
}

static PyObject *Ring_resize(RingObject *self, PyObject *args)
{
    unsigned int nr_pages;
    if (!PyArg_ParseTuple(args, "I", &nr_pages))
        return NULL;
    if (nr_pages < 2) {
        PyErr_SetString(PyExc_ValueError, "a ring has at least two pages");
        return NULL;
    }
    for (int i = 0; i < self->r->ncpus; i++)
        if (self->r->cpus[i] && resize_cpu(self->r->cpus[i], nr_pages) < 0)
            return PyErr_NoMemory();
    self->r->nr_pages = nr_pages;
    Py_RETURN_NONE;
}

static int parse_arg_desc(PyObject *item, struct arg_desc *a)
{
    const char *name;
    if (!PyArg_ParseTuple(item, "siii", &name, &a->kind, &a->size, &a->style))
        return -1;
    if (a->kind < K_INT || a->kind > K_STRING || (a->kind == K_INT && a->size != 1 && a->size != 2
                                                   && a->size != 4 && a->size != 8)) {
        PyErr_Format(PyExc_ValueError, "argument %s: kind %d of %d bytes", name, a->kind, a->size);
        return -1;
    }
    return (a->name = strdup(name)) ? 0 : -1;
}

/* define(id, name, is_return, kind, probe, silent, args): how records of event `id` read
 * and print; args: (name, kind K_INT/K_CHAR/K_STRING, size, style S_*) each. */
static PyObject *Ring_define(RingObject *self, PyObject *args)
{
    struct trace_ring *r = self->r;
    unsigned int id;
    const char *name, *kind;
    int is_return, silent;
    long probe;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "IspslpO!", &id, &name, &is_return, &kind, &probe, &silent, &PyList_Type, &list))
        return NULL;
    if (id < FIRST_EVENT_ID || id > 0xFFFF) {
        PyErr_Format(PyExc_ValueError, "event id %u is not a dynamic event's", id);
        return NULL;
    }
    uint32_t i = id - FIRST_EVENT_ID;
    if (i >= r->nevents) {
        struct event_desc *ev = realloc(r->events, (i + 1) * sizeof *ev);
        if (!ev)
            return PyErr_NoMemory();
        memset(ev + r->nevents, 0, (i + 1 - r->nevents) * sizeof *ev);
        r->events = ev;
        r->nevents = i + 1;
    }
    Py_ssize_t nargs = PyList_GET_SIZE(list);
    struct arg_desc *descs = calloc(nargs ? (size_t)nargs : 1, sizeof *descs);
    char *copy = strdup(name);
    if (!descs || !copy) {
        free(descs);
        free(copy);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < nargs; k++)
        if (parse_arg_desc(PyList_GET_ITEM(list, k), &descs[k]) < 0) {
            for (Py_ssize_t j = 0; j < k; j++)
                free(descs[j].name);
            free(descs);
            free(copy);
            return NULL;
        }
    struct event_desc *d = &r->events[i];
    for (int k = 0; k < d->nargs; k++)
        free(d->args[k].name);
    free(d->args);
    free(d->name);
    *d = (struct event_desc){copy, is_return, silent, (int)nargs, 1, kind[0] ? kind[0] : 'k', probe, descs};
    Py_RETURN_NONE;
}

/* set_silent(id, silent): gdb's `silent`: recorded, not printed live. */
static PyObject *Ring_set_silent(RingObject *self, PyObject *args)
{
    unsigned int id;
    int silent;
    if (!PyArg_ParseTuple(args, "Ip", &id, &silent))
        return NULL;
    struct event_desc *d = desc_of(self->r, id);
    if (d)
        d->silent = silent;
    Py_RETURN_NONE;
}

/* set_where(kind, ip, text): the text a record's address shows (W_PROBE: the probed
 * address of an entry event, W_FUNC: a return event's function, W_ADDR: an address). */
static PyObject *Ring_set_where(RingObject *self, PyObject *args)
{
    int kind;
    unsigned long long ip;
    const char *text;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "iKs#", &kind, &ip, &text, &n))
        return NULL;
    if (where_set(self->r, kind, ip, text, (size_t)n) < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* forget_where(): the where texts were another image's. */
static PyObject *Ring_forget_where(RingObject *self, PyObject *unused)
{
    struct trace_ring *r = self->r;
    for (uint32_t i = 0; i < r->where_cap; i++) {
        free(r->where[i].text);
        r->where[i].text = NULL;
    }
    r->where_n = 0;
    Py_RETURN_NONE;
}

/* One item of merged(): a C record's line, or a Python record's sequence number. */
static PyObject *merged_item(struct trace_ring *r, const struct ref *x, struct sbuf *s)
{
    if (x->e->flags & E_PY)
        return PyLong_FromUnsignedLongLong(x->seq);
    s->n = 0;
    if (render_line(r, s, x->cpu, x->rec, x->e) < 0)
        return PyErr_NoMemory();
    return PyUnicode_DecodeUTF8(s->b, (Py_ssize_t)s->n, "surrogateescape");
}

/* merged(by_time, lo=0, hi=0, with_cpu=False) -> the events with lo < seq < hi (hi 0: all
 * since lo) in the trace file's order (by time, then CPU) or recording order: a record
 * written in C as its line, a Python event's as its sequence number; (cpu, item) pairs
 * with_cpu. */
static PyObject *Ring_merged(RingObject *self, PyObject *args)
{
    int by_time, with_cpu = 0;
    unsigned long long lo = 0, hi = 0;
    if (!PyArg_ParseTuple(args, "p|KKp", &by_time, &lo, &hi, &with_cpu))
        return NULL;
    size_t n;
    struct ref *refs = collect(self->r, lo, hi, by_time, 0, &n);
    struct sbuf s = {0};
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; out && i < n; i++) {
        PyObject *item = merged_item(self->r, &refs[i], &s);
        if (item && with_cpu)
            item = Py_BuildValue("(iN)", refs[i].cpu, item);
        if (!item)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, (Py_ssize_t)i, item);
    }
    free(refs);
    free(s.b);
    return out;
}

/* events(lo=0, hi=0, live=False) -> recording order, each a Python event's sequence
 * number or a C record's TraceEvent fields (decode_record); live: only C records that
 * are printed (not silent). */
static PyObject *Ring_events(RingObject *self, PyObject *args)
{
    unsigned long long lo = 0, hi = 0;
    int live = 0;
    if (!PyArg_ParseTuple(args, "|KKp", &lo, &hi, &live))
        return NULL;
    size_t n;
    struct ref *refs = collect(self->r, lo, hi, 0, live, &n);
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out && i < n; i++) {
        const struct ref *x = &refs[i];
        if (live && ((x->e->flags & E_PY) || is_silent(self->r, x)))
            continue;
        PyObject *item = x->e->flags & E_PY ? PyLong_FromUnsignedLongLong(x->seq)
                                            : decode_record(self->r, x->cpu, x->rec, x->e);
        if (!item || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    free(refs);
    return out;
}

/* render_live(lo, hi=0) -> the lines, each ending in a newline, of the C records with
 * lo < seq < hi that are printed (not silent), in recording order. */
static PyObject *Ring_render_live(RingObject *self, PyObject *args)
{
    unsigned long long lo, hi = 0;
    if (!PyArg_ParseTuple(args, "K|K", &lo, &hi))
        return NULL;
    size_t n;
    struct ref *refs = collect(self->r, lo, hi, 0, 1, &n);
    struct sbuf s = {0};
    for (size_t i = 0; i < n; i++) {
        if ((refs[i].e->flags & E_PY) || is_silent(self->r, &refs[i]))
            continue;
        if (render_line(self->r, &s, refs[i].cpu, refs[i].rec, refs[i].e) < 0)
            break;
        sb_put(&s, "\n", 1);
    }
    free(refs);
    PyObject *out = s.failed ? PyErr_NoMemory() : PyUnicode_DecodeUTF8(s.b ? s.b : "", (Py_ssize_t)s.n, "surrogateescape");
    free(s.b);
    return out;
}

/* cmdlines() -> {pid: comm}: each pid's latest comm (saved_cmdlines). */
static PyObject *Ring_cmdlines(RingObject *self, PyObject *unused)
{
    struct trace_ring *r = self->r;
    PyObject *out = PyDict_New();
    for (uint32_t i = 0; out && i < r->ncomms; i++) {
        struct comm_hist *h = &r->comms[i];
        if (!h->n)
            continue;
        const char *comm = h->v[h->n - 1].comm;
        PyObject *k = PyLong_FromLong((long)i - 1);
        PyObject *v = PyUnicode_DecodeLatin1(comm, (Py_ssize_t)strnlen(comm, TASK_COMM_LEN), NULL);
        if (!k || !v || PyDict_SetItem(out, k, v) < 0)
            Py_CLEAR(out);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    return out;
}

/* set_stop_words([address, ...]): the words (struct icount.stop_asked) set to stop the
 * run when unprinted live lines would be overwritten. */
static PyObject *Ring_set_stop_words(RingObject *self, PyObject *args)
{
    PyObject *list;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &list))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    if (n > MAX_CPUS) {
        PyErr_SetString(PyExc_ValueError, "too many stop words");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long addr = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(list, i));
        if (PyErr_Occurred())
            return NULL;
        self->r->stop_words[i] = (volatile uint64_t *)(uintptr_t)addr;
    }
    self->r->nstop_words = (int)n;
    Py_RETURN_NONE;
}

static PyMethodDef Ring_methods[] = {
    {"reserve", (PyCFunction)(void (*)(void))Ring_reserve, METH_FASTCALL, "reserve(cpu, time_ns, length, pid, comm, stack_length=0) -> seq"},
    {"record", (PyCFunction)Ring_record, METH_VARARGS, "record(cpu, time_ns, pid, comm, data, faults=0) -> kept"},
    {"fill", (PyCFunction)Ring_fill, METH_VARARGS, "fill(cpu, seq, record, stack_record=None) -> found"},
    {"stats", (PyCFunction)Ring_stats, METH_VARARGS, "stats(cpu) -> (entries, overrun, bytes, oldest_ts, dropped, written, read, pages)"},
    {"lost", (PyCFunction)Ring_lost, METH_VARARGS, "lost(cpu, reset=False) -> events lost unsaid"},
    {"oldest_seq", (PyCFunction)Ring_oldest_seq, METH_VARARGS, "oldest_seq(cpu) -> seq"},
    {"pages", (PyCFunction)Ring_pages, METH_VARARGS, "pages(cpu) -> bytes"},
    {"clear", (PyCFunction)Ring_clear, METH_NOARGS, "clear(): no events, no counts"},
    {"consumed", (PyCFunction)Ring_consumed, METH_VARARGS, "consumed(cpu): a consuming read took its events"},
    {"resize", (PyCFunction)Ring_resize, METH_VARARGS, "resize(nr_pages)"},
    {"define", (PyCFunction)Ring_define, METH_VARARGS, "define(id, name, is_return, kind, probe, silent, args)"},
    {"set_silent", (PyCFunction)Ring_set_silent, METH_VARARGS, "set_silent(id, silent)"},
    {"set_where", (PyCFunction)Ring_set_where, METH_VARARGS, "set_where(kind, ip, text)"},
    {"forget_where", (PyCFunction)Ring_forget_where, METH_NOARGS, "forget_where(): drop every where text"},
    {"merged", (PyCFunction)Ring_merged, METH_VARARGS, "merged(by_time, lo=0, hi=0, with_cpu=False) -> [line | seq]"},
    {"events", (PyCFunction)Ring_events, METH_VARARGS, "events(lo=0, hi=0, live=False) -> [seq | fields]"},
    {"render_live", (PyCFunction)Ring_render_live, METH_VARARGS, "render_live(lo, hi=0) -> text"},
    {"cmdlines", (PyCFunction)Ring_cmdlines, METH_NOARGS, "cmdlines() -> {pid: comm}"},
    {"set_stop_words", (PyCFunction)Ring_set_stop_words, METH_VARARGS, "set_stop_words([address])"},
    {NULL, NULL, 0, NULL},
};

static PyObject *get_handle(RingObject *self, void *unused) { return PyLong_FromVoidPtr(self->r); }
static PyObject *get_seq(RingObject *self, void *unused) { return PyLong_FromUnsignedLongLong(self->r->seq); }
static PyObject *get_ncpus(RingObject *self, void *unused) { return PyLong_FromLong(self->r->ncpus); }
static PyObject *get_nr_pages(RingObject *self, void *unused) { return PyLong_FromUnsignedLong(self->r->nr_pages); }
static PyObject *get_overwrite(RingObject *self, void *unused) { return PyBool_FromLong(self->r->overwrite); }
static PyObject *get_live(RingObject *self, void *unused) { return PyBool_FromLong(self->r->live); }
static PyObject *get_flush_wanted(RingObject *self, void *unused) { return PyBool_FromLong(self->r->flush_wanted); }
static PyObject *get_printed_seq(RingObject *self, void *unused) { return PyLong_FromUnsignedLongLong(self->r->printed_seq); }
static PyObject *get_last_live_seq(RingObject *self, void *unused)
{
    return PyLong_FromUnsignedLongLong(self->r->last_live_seq);
}
static PyObject *get_symbolizer(RingObject *self, void *unused)
{
    return Py_NewRef(self->r->symbolizer ? self->r->symbolizer : Py_None);
}

static int set_flag(int *flag, PyObject *value)
{
    int v = value ? PyObject_IsTrue(value) : 0;
    if (v < 0)
        return -1;
    *flag = v;
    return 0;
}
static int set_overwrite(RingObject *self, PyObject *v, void *unused) { return set_flag(&self->r->overwrite, v); }
static int set_live(RingObject *self, PyObject *v, void *unused) { return set_flag(&self->r->live, v); }
static int set_flush_wanted(RingObject *self, PyObject *v, void *unused) { return set_flag(&self->r->flush_wanted, v); }
static int set_printed_seq(RingObject *self, PyObject *value, void *unused)
{
    unsigned long long seq = value ? PyLong_AsUnsignedLongLong(value) : 0;
    if (PyErr_Occurred())
        return -1;
    struct trace_ring *r = self->r;
    r->printed_seq = seq;
    if (r->spill_n && !r->spill_reserved) {   /* the refused records printed are gone */
        size_t off = 0;
        while (off < r->spill_n && ((struct spill_rec *)(r->spill + off))->e.seq <= seq)
            off += ((struct spill_rec *)(r->spill + off))->size;
        memmove(r->spill, r->spill + off, r->spill_n - off);
        r->spill_n -= off;
    }
    return 0;
}
static int set_symbolizer(RingObject *self, PyObject *value, void *unused)
{
    Py_XINCREF(value);
    Py_XSETREF(self->r->symbolizer, value);
    return 0;
}

static PyGetSetDef Ring_getset[] = {
    {"handle", (getter)get_handle, NULL, "the struct trace_ring * recorders in C are given", NULL},
    {"seq", (getter)get_seq, NULL, "the newest event's sequence number", NULL},
    {"ncpus", (getter)get_ncpus, NULL, "CPUs that have recorded", NULL},
    {"nr_pages", (getter)get_nr_pages, NULL, "data pages per CPU", NULL},
    {"overwrite", (getter)get_overwrite, (setter)set_overwrite, "a full buffer overwrites its oldest page", NULL},
    {"live", (getter)get_live, (setter)set_live, "a live output prints the records", NULL},
    {"flush_wanted", (getter)get_flush_wanted, (setter)set_flush_wanted, "the ring asked the run to stop", NULL},
    {"printed_seq", (getter)get_printed_seq, (setter)set_printed_seq, "the live output's cursor", NULL},
    {"last_live_seq", (getter)get_last_live_seq, NULL, "the newest printed C record's sequence number", NULL},
    {"symbolizer", (getter)get_symbolizer, (setter)set_symbolizer, "symbolizer(ip, kind) -> text", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kprobe_shell.tracing._ring.Ring",
    .tp_basicsize = sizeof(RingObject),
    .tp_dealloc = (destructor)Ring_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ring(nr_pages, overwrite=True): per-CPU ring buffers of trace event records (see _ring.c).",
    .tp_methods = Ring_methods,
    .tp_getset = Ring_getset,
    .tp_init = (initproc)Ring_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ring", "ftrace's ring buffer of trace event records (see ringbuf.h).", -1, NULL,
};

PyMODINIT_FUNC PyInit__ring(void)
{
    if (PyType_Ready(&RingType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    PyObject *api = PyCapsule_New(&the_api, RING_API_CAPSULE, NULL);
    if (PyModule_AddObjectRef(m, "Ring", (PyObject *)&RingType) < 0 || !api
        || PyModule_AddObject(m, "API", api) < 0
        || PyModule_AddIntConstant(m, "PAGE_DATA", PAGE_DATA) < 0
        || PyModule_AddIntConstant(m, "W_PROBE", W_PROBE) < 0 || PyModule_AddIntConstant(m, "W_FUNC", W_FUNC) < 0
        || PyModule_AddIntConstant(m, "W_ADDR", W_ADDR) < 0
        || PyModule_AddIntConstant(m, "K_INT", K_INT) < 0 || PyModule_AddIntConstant(m, "K_CHAR", K_CHAR) < 0
        || PyModule_AddIntConstant(m, "K_STRING", K_STRING) < 0
        || PyModule_AddIntConstant(m, "S_HEX", S_HEX) < 0 || PyModule_AddIntConstant(m, "S_UNSIGNED", S_UNSIGNED) < 0
        || PyModule_AddIntConstant(m, "S_SIGNED", S_SIGNED) < 0 || PyModule_AddIntConstant(m, "S_SYMBOL", S_SYMBOL) < 0
        || PyModule_AddIntConstant(m, "S_RETVAL", S_RETVAL) < 0) {
        Py_XDECREF(api);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
