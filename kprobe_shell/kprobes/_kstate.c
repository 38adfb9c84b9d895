/*
 * The kprobe state that C code at the probe hit reads without Python: a CPU's
 * kprobe_ctlblk's current_kprobe and kprobe_status.
 *
 * CtlblkState is the base type of percpu.KprobeCtlblk, whose attributes they are:
 * Python reads and writes them as it did its __slots__ (T_OBJECT_EX members get the
 * interpreter's same specialized access), and the C hit (tracing/_hit.c) reads the same
 * word through its address (current_kprobe_address), without the GIL: the word is only
 * ever written from the run's own thread (from hooks, or from Python while the guest does
 * not run), which is the thread the hit runs on.
 *
 * (A probe's hit count is not here: a C base type would cost Kprobe the interpreter's
 * fast instance attributes; see types.Kprobe.hits.)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <structmember.h>

#include "kstate.h"

/* ------------------------------------------------------------------ struct kprobe_ctlblk */
typedef struct {
    PyObject_HEAD
    PyObject *current_kprobe;   /* None: no probe running (NULL only once deleted) */
    PyObject *kprobe_status;
} CtlblkState;

static int ctlblk_traverse(CtlblkState *self, visitproc visit, void *arg)
{
    Py_VISIT(self->current_kprobe);
    Py_VISIT(self->kprobe_status);
    return 0;
}

static int ctlblk_clear(CtlblkState *self)
{
    Py_CLEAR(self->current_kprobe);
    Py_CLEAR(self->kprobe_status);
    return 0;
}

static void ctlblk_dealloc(CtlblkState *self)
{
    PyObject_GC_UnTrack(self);
    ctlblk_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Both start as None.  T_OBJECT_EX members: the interpreter's specialized slot access,
 * as fast as a __slots__ attribute (the hot Python paths read and write them). */
static PyObject *ctlblk_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    CtlblkState *self = (CtlblkState *)type->tp_alloc(type, 0);
    if (self) {
        Py_INCREF(Py_None);
        self->current_kprobe = Py_None;
        Py_INCREF(Py_None);
        self->kprobe_status = Py_None;
    }
    return (PyObject *)self;
}

static PyMemberDef ctlblk_members[] = {
    {"current_kprobe", T_OBJECT_EX, offsetof(CtlblkState, current_kprobe), 0, "the probe this CPU is handling"},
    {"kprobe_status", T_OBJECT_EX, offsetof(CtlblkState, kprobe_status), 0, "where in its handling"},
    {NULL},
};

static PyTypeObject CtlblkStateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kprobe_shell.kprobes._kstate.CtlblkState",
    .tp_doc = "A CPU's kprobe_ctlblk.current_kprobe and kprobe_status, where the C hit reads them.",
    .tp_basicsize = sizeof(CtlblkState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = ctlblk_new,
    .tp_traverse = (traverseproc)ctlblk_traverse,
    .tp_clear = (inquiry)ctlblk_clear,
    .tp_dealloc = (destructor)ctlblk_dealloc,
    .tp_members = ctlblk_members,
};


/* ------------------------------------------------------------------ kretprobe instances */
/*
 * A KretprobeManager's return-probe instances (struct kretprobe_instance), each
 * kretprobe's free and used lists, and kretprobe_inst_table's 64 buckets by
 * hash_ptr(task): the one home of that bookkeeping, kept here so that C code at a probe
 * hit can take and recycle instances.  kretprobes.py's KretprobeInstance, a kretprobe's
 * free_instances/used_instances and kretprobe_inst_table are views over it.
 *
 * An instance is on at most one list of each kind (a free list, a used list, a bucket),
 * each a doubly linked list of instance ids, newest first where the kernel adds at the
 * head.  The kinds are independent, as three list_heads are: a broken state (an instance
 * in use but in no bucket) can be made and is seen by the invariants.
 */
#define NBUCKETS 64
enum { L_FREE, L_USED, L_BUCKET, NKINDS };

struct kri {
    struct kretprobe_instance f;        /* its fields (kstate.h) */
    int32_t owner[NKINDS];              /* the list of each kind it is on: a kretprobe's id, a bucket; -1 */
    int32_t prev[NKINDS], next[NKINDS];
};

struct ilist {
    int32_t head, tail, n;
};

struct krp {
    struct ilist free, used;
};

typedef struct {
    PyObject_HEAD
    struct kri *ri;
    int32_t nri, cap_ri;
    struct krp *rps;
    int32_t nrps, cap_rps;
    struct ilist buckets[NBUCKETS];
} InstanceTable;

static uint32_t hash_task(uint64_t task)
{
    return (uint32_t)((task * 0x9E37FFFFFFFC0001ull) >> (64 - 6));
}

static struct ilist *list_of(InstanceTable *t, int kind, int32_t owner)
{
    if (kind == L_BUCKET)
        return owner >= 0 && owner < NBUCKETS ? &t->buckets[owner] : NULL;
    if (owner < 0 || owner >= t->nrps || kind < 0 || kind > L_USED)
        return NULL;
    return kind == L_FREE ? &t->rps[owner].free : &t->rps[owner].used;
}

static void unlink_ri(InstanceTable *t, int kind, int32_t i)
{
    struct kri *r = &t->ri[i];
    struct ilist *l = list_of(t, kind, r->owner[kind]);
    if (!l)
        return;
    if (r->prev[kind] >= 0)
        t->ri[r->prev[kind]].next[kind] = r->next[kind];
    else
        l->head = r->next[kind];
    if (r->next[kind] >= 0)
        t->ri[r->next[kind]].prev[kind] = r->prev[kind];
    else
        l->tail = r->prev[kind];
    l->n--;
    r->owner[kind] = r->prev[kind] = r->next[kind] = -1;
}

/* Put i on list (kind, owner) before the instance `before` (-1: at the tail). */
static void link_ri(InstanceTable *t, int kind, int32_t owner, int32_t i, int32_t before)
{
    struct ilist *l = list_of(t, kind, owner);
    struct kri *r = &t->ri[i];
    unlink_ri(t, kind, i);
    r->owner[kind] = owner;
    r->next[kind] = before;
    r->prev[kind] = before >= 0 ? t->ri[before].prev[kind] : l->tail;
    if (r->prev[kind] >= 0)
        t->ri[r->prev[kind]].next[kind] = i;
    else
        l->head = i;
    if (before >= 0)
        t->ri[before].prev[kind] = i;
    else
        l->tail = i;
    l->n++;
}

/* take: the head of rp's free list off it (-1: none free), now rp's. */
static int32_t kri_take(InstanceTable *t, int32_t rp)
{
    int32_t i = rp >= 0 && rp < t->nrps ? t->rps[rp].free.head : -1;
    if (i >= 0) {
        unlink_ri(t, L_FREE, i);
        t->ri[i].f.rp = rp;
    }
    return i;
}

/* add_rp_inst: to the head of its task's bucket and of its kretprobe's used list. */
static void kri_add(InstanceTable *t, int32_t i)
{
    struct kri *r = &t->ri[i];
    link_ri(t, L_BUCKET, (int32_t)hash_task(r->f.task), i, t->buckets[hash_task(r->f.task)].head);
    if (r->f.rp >= 0)
        link_ri(t, L_USED, r->f.rp, i, t->rps[r->f.rp].used.head);
}

/* recycle_rp_inst: out of its bucket, and from its kretprobe's used list to the tail of
 * its free list (an instance without a kretprobe is only dropped from its bucket). */
static void kri_recycle(InstanceTable *t, int32_t i)
{
    struct kri *r = &t->ri[i];
    unlink_ri(t, L_BUCKET, i);
    if (r->f.rp >= 0) {
        unlink_ri(t, L_USED, i);
        link_ri(t, L_FREE, r->f.rp, i, -1);
    }
}

/* The first instance of task in its bucket (-1: none); head_only: only if it is the head. */
static int32_t kri_first(InstanceTable *t, uint64_t task, int head_only)
{
    int32_t i = t->buckets[hash_task(task)].head;
    for (; i >= 0; i = t->ri[i].next[L_BUCKET]) {
        if (t->ri[i].f.task == task)
            return i;
        if (head_only)
            return -1;
    }
    return -1;
}

static int32_t api_first(void *table, uint64_t task, int head_only)
{
    return kri_first(table, task, head_only);
}

static const struct kretprobe_instance *api_instance(void *table, int32_t i)
{
    return &((InstanceTable *)table)->ri[i].f;
}

static void api_recycle(void *table, int32_t i)
{
    kri_recycle(table, i);
}

static int32_t api_take(void *table, int32_t rp)
{
    return kri_take(table, rp);
}

static void api_untake(void *table, int32_t i)
{
    InstanceTable *t = table;
    if (t->ri[i].f.rp >= 0)
        link_ri(t, L_FREE, t->ri[i].f.rp, i, t->rps[t->ri[i].f.rp].free.head);
}

static void api_add(void *table, int32_t i, uint64_t task, uint64_t ret_addr, uint64_t stack_slot)
{
    InstanceTable *t = table;
    t->ri[i].f.task = task;
    t->ri[i].f.ret_addr = ret_addr;
    t->ri[i].f.stack_slot = stack_slot;
    kri_add(t, i);
}

static const struct kstate_api the_api = {api_first, api_instance, api_recycle, api_take, api_untake, api_add};

static int table_grow(void **p, int32_t *cap, int32_t need, size_t size)
{
    int32_t n = *cap ? *cap : 16;
    void *q;
    if (need <= *cap)
        return 0;
    while (n < need)
        n *= 2;
    q = realloc(*p, (size_t)n * size);
    if (!q) {
        PyErr_NoMemory();
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

static PyObject *itable_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    InstanceTable *t = (InstanceTable *)type->tp_alloc(type, 0);
    int b;
    if (t)
        for (b = 0; b < NBUCKETS; b++)
            t->buckets[b].head = t->buckets[b].tail = -1;
    return (PyObject *)t;
}

static void itable_dealloc(InstanceTable *t)
{
    free(t->ri);
    free(t->rps);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static int check_ri(InstanceTable *t, long long i)
{
    if (i < 0 || i >= t->nri) {
        PyErr_Format(PyExc_IndexError, "no kretprobe instance %lld", i);
        return -1;
    }
    return 0;
}

/* new_kretprobe() -> its id, with empty lists. */
static PyObject *it_new_kretprobe(InstanceTable *t, PyObject *unused)
{
    struct krp *k;
    if (table_grow((void **)&t->rps, &t->cap_rps, t->nrps + 1, sizeof(*t->rps)) < 0)
        return NULL;
    k = &t->rps[t->nrps];
    k->free.head = k->free.tail = k->used.head = k->used.tail = -1;
    k->free.n = k->used.n = 0;
    return PyLong_FromLong(t->nrps++);
}

/* new_instance(rp, index) -> its id, on no list. */
static PyObject *it_new_instance(InstanceTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    struct kri *r;
    int k;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "new_instance(rp, index)");
        return NULL;
    }
    if (table_grow((void **)&t->ri, &t->cap_ri, t->nri + 1, sizeof(*t->ri)) < 0)
        return NULL;
    r = &t->ri[t->nri];
    memset(r, 0, sizeof(*r));
    r->f.rp = (int32_t)PyLong_AsLong(args[0]);
    r->f.index = (int32_t)PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    for (k = 0; k < NKINDS; k++)
        r->owner[k] = r->prev[k] = r->next[k] = -1;
    return PyLong_FromLong(t->nri++);
}

/* Arguments that are all integers: a C long long each (an address of 2**63 or more
 * keeps its 64 bits). */
static int int_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, long long *out, const char *usage)
{
    Py_ssize_t k;
    int overflow;
    if (nargs != want) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    for (k = 0; k < want; k++) {
        out[k] = PyLong_AsLongLongAndOverflow(args[k], &overflow);
        if (overflow > 0)
            out[k] = (long long)PyLong_AsUnsignedLongLong(args[k]);
        else if (overflow < 0)
            PyErr_SetString(PyExc_OverflowError, "a negative number too big");
        if (out[k] == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* An instance's fields as get and set name them (the module's F_* constants). */
enum { F_RP, F_INDEX, F_RET_ADDR, F_TASK, F_STACK_SLOT, F_BUCKET };

/* get(i, field) -> int: field F_RP, F_INDEX, F_RET_ADDR, F_TASK, F_STACK_SLOT, or F_BUCKET
 * (the bucket it is on, -1: none). */
static PyObject *it_get(InstanceTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    long long a[2];
    struct kri *r;
    if (int_args(args, nargs, 2, a, "get(i, field)") < 0 || check_ri(t, a[0]) < 0)
        return NULL;
    r = &t->ri[a[0]];
    switch (a[1]) {
    case F_RP: return PyLong_FromLong(r->f.rp);
    case F_INDEX: return PyLong_FromLong(r->f.index);
    case F_RET_ADDR: return PyLong_FromUnsignedLongLong(r->f.ret_addr);
    case F_TASK: return PyLong_FromUnsignedLongLong(r->f.task);
    case F_STACK_SLOT: return PyLong_FromUnsignedLongLong(r->f.stack_slot);
    case F_BUCKET: return PyLong_FromLong(r->owner[L_BUCKET]);
    }
    PyErr_SetString(PyExc_ValueError, "no such field");
    return NULL;
}

/* set(i, field, value): fields as get's, but F_BUCKET (the lists change by link). */
static PyObject *it_set(InstanceTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    long long a[3];
    struct kri *r;
    if (int_args(args, nargs, 3, a, "set(i, field, value)") < 0 || check_ri(t, a[0]) < 0)
        return NULL;
    r = &t->ri[a[0]];
    switch (a[1]) {
    case F_RP: r->f.rp = (int32_t)a[2]; break;
    case F_INDEX: r->f.index = (int32_t)a[2]; break;
    case F_RET_ADDR: r->f.ret_addr = (uint64_t)a[2]; break;
    case F_TASK: r->f.task = (uint64_t)a[2]; break;
    case F_STACK_SLOT: r->f.stack_slot = (uint64_t)a[2]; break;
    default:
        PyErr_SetString(PyExc_ValueError, "no such field");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* items(kind, owner) -> the ids on that list, head first. */
static PyObject *it_items(InstanceTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    long long a[2];
    struct ilist *l;
    PyObject *out;
    int32_t i, n = 0;
    int kind;
    if (int_args(args, nargs, 2, a, "items(kind, owner)") < 0)
        return NULL;
    if (a[0] < 0 || a[0] >= NKINDS || !(l = list_of(t, (int)a[0], (int32_t)a[1])))
        return PyTuple_New(0);
    kind = (int)a[0];
    if (!(out = PyTuple_New(l->n)))
        return NULL;
    for (i = l->head; i >= 0 && n < l->n; i = t->ri[i].next[kind])
        PyTuple_SET_ITEM(out, n++, PyLong_FromLong(i));
    return out;
}

static PyObject *it_length(InstanceTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    long long a[2];
    struct ilist *l;
    if (int_args(args, nargs, 2, a, "length(kind, owner)") < 0)
        return NULL;
    l = list_of(t, (int)a[0], (int32_t)a[1]);
    return PyLong_FromLong(l ? l->n : 0);
}

/* link(kind, owner, i, before): i onto that list before instance `before` (-1: at the
 * tail), off the list of that kind it was on. */
static PyObject *it_link(InstanceTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    long long a[4];
    if (int_args(args, nargs, 4, a, "link(kind, owner, i, before)") < 0 || check_ri(t, a[2]) < 0)
        return NULL;
    if (a[0] < 0 || a[0] >= NKINDS || !list_of(t, (int)a[0], (int32_t)a[1]) || (a[3] >= 0 && check_ri(t, a[3]) < 0)) {
        PyErr_SetString(PyExc_ValueError, "no such list");
        return NULL;
    }
    if (a[3] >= 0 && t->ri[a[3]].owner[a[0]] != a[1]) {
        PyErr_SetString(PyExc_ValueError, "link before an instance that is not on the list");
        return NULL;
    }
    link_ri(t, (int)a[0], (int32_t)a[1], (int32_t)a[2], (int32_t)a[3]);
    Py_RETURN_NONE;
}

/* unlink(kind, i): off its list of that kind (nothing if on none). */
static PyObject *it_unlink(InstanceTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    long long a[2];
    if (int_args(args, nargs, 2, a, "unlink(kind, i)") < 0 || check_ri(t, a[1]) < 0)
        return NULL;
    if (a[0] < 0 || a[0] >= NKINDS) {
        PyErr_SetString(PyExc_ValueError, "no such kind");
        return NULL;
    }
    unlink_ri(t, (int)a[0], (int32_t)a[1]);
    Py_RETURN_NONE;
}

/* owner(kind, i): the list of that kind i is on, -1: none. */
static PyObject *it_owner(InstanceTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    long long a[2];
    if (int_args(args, nargs, 2, a, "owner(kind, i)") < 0 || check_ri(t, a[1]) < 0)
        return NULL;
    if (a[0] < 0 || a[0] >= NKINDS) {
        PyErr_SetString(PyExc_ValueError, "no such kind");
        return NULL;
    }
    return PyLong_FromLong(t->ri[a[1]].owner[a[0]]);
}

/* take(rp) -> the id of the free instance taken (-1: none free). */
static PyObject *it_take(InstanceTable *t, PyObject *arg)
{
    long rp = PyLong_AsLong(arg);
    if (rp == -1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(kri_take(t, (int32_t)rp));
}

/* untake(i): back to the head of its kretprobe's free list (a take that failed). */
static PyObject *it_untake(InstanceTable *t, PyObject *arg)
{
    long i = PyLong_AsLong(arg);
    if ((i == -1 && PyErr_Occurred()) || check_ri(t, i) < 0)
        return NULL;
    api_untake(t, (int32_t)i);
    Py_RETURN_NONE;
}

/* add(i, task, ret_addr, stack_slot): the instance's call, then add_rp_inst. */
static PyObject *it_add(InstanceTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    long long a[4];
    struct kri *r;
    if (int_args(args, nargs, 4, a, "add(i, task, ret_addr, stack_slot)") < 0 || check_ri(t, a[0]) < 0)
        return NULL;
    r = &t->ri[a[0]];
    r->f.task = (uint64_t)a[1];
    r->f.ret_addr = (uint64_t)a[2];
    r->f.stack_slot = (uint64_t)a[3];
    kri_add(t, (int32_t)a[0]);
    Py_RETURN_NONE;
}

/* add_rp_inst(i): add with the fields it has. */
static PyObject *it_add_rp_inst(InstanceTable *t, PyObject *arg)
{
    long i = PyLong_AsLong(arg);
    if ((i == -1 && PyErr_Occurred()) || check_ri(t, i) < 0)
        return NULL;
    kri_add(t, (int32_t)i);
    Py_RETURN_NONE;
}

static PyObject *it_recycle(InstanceTable *t, PyObject *arg)
{
    long i = PyLong_AsLong(arg);
    if ((i == -1 && PyErr_Occurred()) || check_ri(t, i) < 0)
        return NULL;
    kri_recycle(t, (int32_t)i);
    Py_RETURN_NONE;
}

/* first(task, head_only) -> the id of task's newest instance (-1: none); head_only: only
 * when it is at the head of its bucket. */
static PyObject *it_first(InstanceTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    long long a[2];
    if (int_args(args, nargs, 2, a, "first(task, head_only)") < 0)
        return NULL;
    return PyLong_FromLong(kri_first(t, (uint64_t)a[0], (int)a[1]));
}

/* flush(task) -> the ids recycled: kprobe_flush_task, every instance of task (its bucket's
 * order, newest first) recycled. */
static PyObject *it_flush(InstanceTable *t, PyObject *arg)
{
    uint64_t task;
    int32_t i, next, n = 0;
    PyObject *out;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (overflow > 0)
        v = (long long)PyLong_AsUnsignedLongLong(arg);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    task = (uint64_t)v;
    for (i = t->buckets[hash_task(task)].head; i >= 0; i = t->ri[i].next[L_BUCKET])
        n += t->ri[i].f.task == task;
    if (!(out = PyTuple_New(n)))
        return NULL;
    n = 0;
    for (i = t->buckets[hash_task(task)].head; i >= 0; i = next) {
        next = t->ri[i].next[L_BUCKET];
        if (t->ri[i].f.task == task) {
            PyTuple_SET_ITEM(out, n++, PyLong_FromLong(i));
            kri_recycle(t, i);
        }
    }
    return out;
}

static PyMethodDef itable_methods[] = {
    {"flush", (PyCFunction)it_flush, METH_O, "flush(task) -> ids recycled (kprobe_flush_task)"},
    {"new_kretprobe", (PyCFunction)it_new_kretprobe, METH_NOARGS, "new_kretprobe() -> its id"},
    {"new_instance", (PyCFunction)(void (*)(void))it_new_instance, METH_FASTCALL, "new_instance(rp, index) -> id"},
    {"get", (PyCFunction)(void (*)(void))it_get, METH_FASTCALL, "get(i, field)"},
    {"set", (PyCFunction)(void (*)(void))it_set, METH_FASTCALL, "set(i, field, value)"},
    {"items", (PyCFunction)(void (*)(void))it_items, METH_FASTCALL, "items(kind, owner) -> ids, head first"},
    {"length", (PyCFunction)(void (*)(void))it_length, METH_FASTCALL, "length(kind, owner)"},
    {"link", (PyCFunction)(void (*)(void))it_link, METH_FASTCALL, "link(kind, owner, i, before)"},
    {"unlink", (PyCFunction)(void (*)(void))it_unlink, METH_FASTCALL, "unlink(kind, i)"},
    {"owner", (PyCFunction)(void (*)(void))it_owner, METH_FASTCALL, "owner(kind, i)"},
    {"take", (PyCFunction)it_take, METH_O, "take(rp) -> id or -1"},
    {"untake", (PyCFunction)it_untake, METH_O, "untake(i): back to the head of its free list"},
    {"add", (PyCFunction)(void (*)(void))it_add, METH_FASTCALL, "add(i, task, ret_addr, stack_slot)"},
    {"add_rp_inst", (PyCFunction)it_add_rp_inst, METH_O, "add_rp_inst(i)"},
    {"recycle", (PyCFunction)it_recycle, METH_O, "recycle(i): recycle_rp_inst"},
    {"first", (PyCFunction)(void (*)(void))it_first, METH_FASTCALL, "first(task, head_only) -> id or -1"},
    {NULL},
};

static PyTypeObject InstanceTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kprobe_shell.kprobes._kstate.InstanceTable",
    .tp_doc = "A KretprobeManager's kretprobe instances, free/used lists and kretprobe_inst_table.",
    .tp_basicsize = sizeof(InstanceTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = itable_new,
    .tp_dealloc = (destructor)itable_dealloc,
    .tp_methods = itable_methods,
};

/* ------------------------------------------------------------------ an instance's view */
/* The base of kretprobes.KretprobeInstance: the table and the instance's number, and its
 * fields read and written in place (getsets: a handler reads ri.ret_addr at the cost of a
 * slot, not of a Python property). */
typedef struct {
    PyObject_HEAD
    PyObject *table;            /* its InstanceTable (set once, by the subclass) */
    int id;
    PyObject *owner;            /* the kretprobe it belongs to while its rp number is >= 0 */
} InstanceView;

static struct kretprobe_instance *view_fields(InstanceView *v)
{
    InstanceTable *t = (InstanceTable *)v->table;
    if (!t || !PyObject_TypeCheck(v->table, &InstanceTableType) || v->id < 0 || v->id >= t->nri) {
        PyErr_SetString(PyExc_AttributeError, "an instance not bound to its table");
        return NULL;
    }
    return &t->ri[v->id].f;
}

static PyObject *view_get(InstanceView *v, void *field)
{
    struct kretprobe_instance *f = view_fields(v);
    if (!f)
        return NULL;
    switch ((int)(intptr_t)field) {
    case F_RP: return PyLong_FromLong(f->rp);
    case F_INDEX: return PyLong_FromLong(f->index);
    case F_RET_ADDR: return PyLong_FromUnsignedLongLong(f->ret_addr);
    case F_TASK: return PyLong_FromUnsignedLongLong(f->task);
    default: return PyLong_FromUnsignedLongLong(f->stack_slot);
    }
}

static int view_set(InstanceView *v, PyObject *value, void *field)
{
    struct kretprobe_instance *f = view_fields(v);
    long long n;
    int overflow;
    if (!f)
        return -1;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "an instance's fields cannot be deleted");
        return -1;
    }
    n = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow > 0)
        n = (long long)PyLong_AsUnsignedLongLong(value);
    if (n == -1 && PyErr_Occurred())
        return -1;
    switch ((int)(intptr_t)field) {
    case F_RP: f->rp = (int32_t)n; break;
    case F_INDEX: f->index = (int32_t)n; break;
    case F_RET_ADDR: f->ret_addr = (uint64_t)n; break;
    case F_TASK: f->task = (uint64_t)n; break;
    default: f->stack_slot = (uint64_t)n; break;
    }
    return 0;
}

/* rp: its kretprobe (an instance only ever belongs to the kretprobe it was made for, or
 * to none once that one is unregistered); setting it sets its number in the table too. */
static PyObject *view_get_rp(InstanceView *v, void *unused)
{
    struct kretprobe_instance *f = view_fields(v);
    if (!f)
        return NULL;
    if (f->rp < 0 || !v->owner)
        Py_RETURN_NONE;
    Py_INCREF(v->owner);
    return v->owner;
}

static int view_set_rp(InstanceView *v, PyObject *value, void *unused)
{
    struct kretprobe_instance *f = view_fields(v);
    PyObject *number;
    long n;
    if (!f)
        return -1;
    if (!value || value == Py_None) {
        f->rp = -1;
        return 0;
    }
    if (!(number = PyObject_GetAttrString(value, "_rp_id")))
        return -1;
    n = PyLong_AsLong(number);
    Py_DECREF(number);
    if (n == -1 && PyErr_Occurred())
        return -1;
    Py_INCREF(value);
    Py_XSETREF(v->owner, value);
    f->rp = (int32_t)n;
    return 0;
}

static PyGetSetDef view_getset[] = {
    {"rp", (getter)view_get_rp, (setter)view_set_rp, "its kretprobe, None once unregistered in flight", NULL},
    {"rp_number", (getter)view_get, (setter)view_set, "its kretprobe's number in the table, -1: none",
     (void *)(intptr_t)F_RP},
    {"index", (getter)view_get, (setter)view_set, "which of its kretprobe's instances (for display)",
     (void *)(intptr_t)F_INDEX},
    {"ret_addr", (getter)view_get, (setter)view_set, "the real return address", (void *)(intptr_t)F_RET_ADDR},
    {"task", (getter)view_get, (setter)view_set, "the task_struct pointer", (void *)(intptr_t)F_TASK},
    {"stack_slot", (getter)view_get, (setter)view_set, "where on the stack the return address was replaced",
     (void *)(intptr_t)F_STACK_SLOT},
    {NULL},
};

static PyMemberDef view_members[] = {
    {"_table", T_OBJECT_EX, offsetof(InstanceView, table), 0, "its InstanceTable"},
    {"_id", T_INT, offsetof(InstanceView, id), 0, "its number in the table"},
    {NULL},
};

static int view_traverse(InstanceView *v, visitproc visit, void *arg)
{
    Py_VISIT(v->table);
    Py_VISIT(v->owner);
    return 0;
}

static int view_clear(InstanceView *v)
{
    Py_CLEAR(v->table);
    Py_CLEAR(v->owner);
    return 0;
}

static void view_dealloc(InstanceView *v)
{
    PyObject_GC_UnTrack(v);
    view_clear(v);
    Py_TYPE(v)->tp_free((PyObject *)v);
}

static PyTypeObject InstanceViewType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kprobe_shell.kprobes._kstate.InstanceView",
    .tp_doc = "A kretprobe instance's fields, kept in its InstanceTable.",
    .tp_basicsize = sizeof(InstanceView),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)view_traverse,
    .tp_clear = (inquiry)view_clear,
    .tp_dealloc = (destructor)view_dealloc,
    .tp_getset = view_getset,
    .tp_members = view_members,
};

/* ------------------------------------------------------------------ addresses */
static PyObject *current_kprobe_address(PyObject *self, PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, &CtlblkStateType)) {
        PyErr_SetString(PyExc_TypeError, "current_kprobe_address needs a KprobeCtlblk");
        return NULL;
    }
    return PyLong_FromVoidPtr(&((CtlblkState *)obj)->current_kprobe);
}

static PyMethodDef methods[] = {
    {"current_kprobe_address", current_kprobe_address, METH_O,
     "current_kprobe_address(kcb): where its current_kprobe is (a PyObject *, NULL or None: none)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kstate", "The kprobe state the C hit shares with Python.", -1, methods,
};

PyMODINIT_FUNC PyInit__kstate(void)
{
    PyObject *m;
    if (PyType_Ready(&CtlblkStateType) < 0 || PyType_Ready(&InstanceTableType) < 0
        || PyType_Ready(&InstanceViewType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&CtlblkStateType);
    Py_INCREF(&InstanceTableType);
    Py_INCREF(&InstanceViewType);
    if (PyModule_AddObject(m, "CtlblkState", (PyObject *)&CtlblkStateType) < 0
        || PyModule_AddObject(m, "InstanceTable", (PyObject *)&InstanceTableType) < 0
        || PyModule_AddObject(m, "InstanceView", (PyObject *)&InstanceViewType) < 0
        || PyModule_AddIntConstant(m, "L_FREE", L_FREE) < 0 || PyModule_AddIntConstant(m, "L_USED", L_USED) < 0
        || PyModule_AddIntConstant(m, "L_BUCKET", L_BUCKET) < 0
        || PyModule_AddIntConstant(m, "F_RP", F_RP) < 0 || PyModule_AddIntConstant(m, "F_INDEX", F_INDEX) < 0
        || PyModule_AddIntConstant(m, "F_RET_ADDR", F_RET_ADDR) < 0 || PyModule_AddIntConstant(m, "F_TASK", F_TASK) < 0
        || PyModule_AddIntConstant(m, "F_STACK_SLOT", F_STACK_SLOT) < 0
        || PyModule_AddIntConstant(m, "F_BUCKET", F_BUCKET) < 0
        || PyModule_AddObject(m, "API", PyCapsule_New((void *)&the_api, KSTATE_API_CAPSULE, NULL)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
