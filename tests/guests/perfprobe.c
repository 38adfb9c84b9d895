/* Probes placed by source: member chains, array elements, a loop line, a local that lives
 * in a register and then on the stack, and a variable the compiler optimized out.
 * Built with -O2 -g (tests/tracing/test_perf_probe.py reads its DWARF). */
#include "guest.h"

struct stats {
    u32 count;
    u32 flags;
    s64 sum;
};

struct item {
    long id;
    struct stats st;
    long vals[4];
    struct item *next;
};

struct item items[3];
long global_total;

__attribute__((noinline, noipa)) long weigh(struct item *it)
{
    return it->st.sum + it->vals[2];
}

__attribute__((noinline, noipa)) long sum_list(struct item *head)
{
    long total = 0;
    long seen = 0;
    for (struct item *it = head; it; it = it->next) {
        total += weigh(it);         /* LOOP_LINE */
        seen++;
    }
    global_total = total;
    return total + seen;
}

__attribute__((noinline, noipa)) long note(long v)
{
    return v + 1;
}

__attribute__((noinline, noipa)) long spill(long a, long b)
{
    long keep = a * 7 + b;
    long unused = a * b;            /* never read: the compiler drops it */
    long n = note(keep);
    /* Every callee-saved register is clobbered here: keep must wait on the stack. */
    __asm__ volatile("" : : : "rbx", "rbp", "r12", "r13", "r14", "r15", "memory");
    n += note(keep);
    return n + keep;
}

int main(void)
{
    for (int i = 0; i < 3; i++) {
        items[i].id = 100 + i;
        items[i].st.count = 10 * (i + 1);
        items[i].st.flags = 0x40 | i;
        items[i].st.sum = 1000 * (i + 1);
        for (int j = 0; j < 4; j++)
            items[i].vals[j] = i * 10 + j;
        items[i].next = i < 2 ? &items[i + 1] : 0;
    }
    show("sum_list", sum_list(&items[0]));
    show("spill", spill(5, 11));
    show("again", sum_list(&items[1]));
    return 0;
}
