/* Return probes on a truly recursive function (the call is not a tail call). */
#include "guest.h"

u64 depth_max;

__attribute__((noinline, noipa)) long rec(long n)
{
    if (n <= 0)
        return 0;
    long r = rec(n - 1);
    __asm__ volatile("" : "+r"(r) : : "memory");
    if ((u64)n > depth_max)
        depth_max = n;
    return r + n;
}

__attribute__((noinline, noipa)) long leaf(long a, long b)
{
    return a * 3 + b;
}

int main(void)
{
    for (long i = 0; i < 3; i++) {
        show("rec", rec(4));
        show("leaf", leaf(i, 5));
    }
    return 0;
}
