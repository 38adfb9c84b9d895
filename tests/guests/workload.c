/*
 * A small but varied program: what the transparency test probes instruction by
 * instruction, and what the loader and machine tests load (built with -g for DWARF).
 * Loops, a dense switch (jump table), function pointers, recursion, division, string
 * handling, sorting, and a 7-argument function (the 7th on the stack).
 */
#include "guest.h"

struct item {
    int key;
    const char *name;
};

struct item items[8] = {
    {42, "delta"}, {7, "alpha"}, {19, "charlie"}, {3, "echo"},
    {25, "bravo"}, {11, "golf"}, {30, "foxtrot"}, {1, "hotel"},
};
const char *const words[] = {"kprobe", "jprobe", "kretprobe", "trampoline", "slot"};
u64 checksum;
int results[32];
char scratch[64];

__attribute__((noinline, noipa)) long score_word(int a, const char *s)
{
    long h = a;
    while (*s)
        h = h * 31 + (unsigned char)*s++;
    return h ^ (h >> 7);
}

__attribute__((noinline, noipa)) long seven(long a, long b, int c, unsigned d, short e, char f, long g)
{
    return a - b + c * d + e - f + g * 3;
}

__attribute__((noinline, noipa)) int classify(int v)
{
    switch (v & 7) {
    case 0: return v * 3;
    case 1: return v + 100;
    case 2: return -v;
    case 3: return v ^ 0x55;
    case 4: return v << 2;
    case 5: return v / 3;
    case 6: return v % 7;
    default: return 1;
    }
}

__attribute__((noinline, noipa)) long fib(int n)
{
    if (n < 2)
        return n;
    return fib(n - 1) + fib(n - 2);
}

static int add3(int x) { return x + 3; }
static int dbl(int x) { return x * 2; }
static int neg(int x) { return -x; }
int (*const ops[3])(int) = {add3, dbl, neg};

__attribute__((noinline, noipa)) int apply(int which, int x)
{
    return ops[which % 3](x);
}

__attribute__((noinline, noipa)) void sort_items(struct item *v, int n)
{
    for (int i = 1; i < n; i++) {
        struct item t = v[i];
        int j = i - 1;
        while (j >= 0 && v[j].key > t.key) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = t;
    }
}

__attribute__((noinline, noipa)) long divide(long a, long b)
{
    return a / b + a % b;
}

__attribute__((noinline, noipa)) int copy_upper(char *dst, const char *src, int cap)
{
    int n = 0;
    while (src[n] && n < cap - 1) {
        char c = src[n];
        dst[n] = (c >= 'a' && c <= 'z') ? c - 32 : c;
        n++;
    }
    dst[n] = 0;
    return n;
}

int main(void)
{
    puts_("workload start\n");
    for (int i = 0; i < 5; i++) {
        long s = score_word(i, words[i]);
        checksum += s;
        show(words[i], s);
    }
    for (int v = 0; v < 16; v++)
        results[v] = classify(v * 5 + 1);
    for (int i = 0; i < 9; i++)
        results[16 + i] = apply(i, i * 7 - 20);
    show("fib", fib(12));
    sort_items(items, 8);
    for (int i = 0; i < 8; i++) {
        puts_(items[i].name);
        putc_(' ');
    }
    putc_('\n');
    show("div", divide(1000003, 37) + divide(-77, 5));
    show("seven", seven(1, 2, 3, 4, 5, 6, 7));
    copy_upper(scratch, "return probes, 2005", sizeof scratch);
    puts_(scratch);
    putc_('\n');
    for (int i = 0; i < 25; i++)
        checksum = checksum * 1000003 + (u64)results[i];
    show("checksum", checksum);
    return 0;
}
