/*
 * The kretprobe instance table's interface for C code at a probe hit (see _kstate.c):
 * tracing/_hit.c's kretprobe booster takes the task's newest instance and recycles it
 * without Python.
 *
 *     const struct kstate_api *api = PyCapsule_Import(KSTATE_API_CAPSULE, 0);
 *     int32_t i = api->first(table, task, 1);          (-1: the bucket's head is not task's)
 *     const struct kretprobe_instance *ri = api->instance(table, i);
 *     ... ri->ret_addr, ri->rp ...
 *     api->recycle(table, i);
 *
 * and at a kretprobe's entry: take (or count nmissed), then add.
 *
 * table is a KretprobeManager's InstanceTable (its Python object, borrowed: the manager
 * keeps it).  None of these take the GIL or touch a Python object: they run from
 * unicorn's hooks, on the run's own thread, the only one that changes the table.  A
 * pointer from instance() is good until the next instance is made (Python only).
 */
#ifndef KPROBE_SHELL_KSTATE_H
#define KPROBE_SHELL_KSTATE_H

#include <stdint.h>

#define KSTATE_API_CAPSULE "kprobe_shell.kprobes._kstate.API"

/* struct kretprobe_instance: one call in flight (its lists are the table's). */
struct kretprobe_instance {
    int32_t rp;                   /* its kretprobe's number in the table, -1: none (unregistered in flight) */
    int32_t index;                /* which of its kretprobe's instances */
    uint64_t ret_addr;            /* the real return address */
    uint64_t task;                /* the task_struct pointer */
    uint64_t stack_slot;          /* where on the stack the return address was replaced */
};

struct kstate_api {
    /* The task's newest instance (-1: none); head_only: only when it is at the head of
     * the task's bucket of kretprobe_inst_table. */
    int32_t (*first)(void *table, uint64_t task, int head_only);
    const struct kretprobe_instance *(*instance)(void *table, int32_t i);
    /* recycle_rp_inst: out of its bucket, from its kretprobe's used list to its free list. */
    void (*recycle)(void *table, int32_t i);
    /* The head of kretprobe rp's free list, taken (-1: none free); untake puts it back. */
    int32_t (*take)(void *table, int32_t rp);
    void (*untake)(void *table, int32_t i);
    /* The instance's call (task, the real return address, where it was), then add_rp_inst:
     * to the head of its task's bucket and of its kretprobe's used list. */
    void (*add)(void *table, int32_t i, uint64_t task, uint64_t ret_addr, uint64_t stack_slot);
};

#endif
