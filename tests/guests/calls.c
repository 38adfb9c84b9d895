/*
 * A loop of calls: hot() 20,000 times with a counter and a string, what the trace
 * buffer tests fill a small buffer with (overwritten pages, dropped events).
 */
#include "guest.h"

volatile long sink;
const char *const names[] = {"a", "bb", "ccc"};

__attribute__((noinline, noipa)) long hot(long i, const char *name)
{
    return i + name[0];
}

int main(void)
{
    long s = 0;
    for (long i = 0; i < 20000; i++)
        s += hot(i, names[i % 3]);
    sink = s;
    return 0;
}
