/*
 * The instruction counter behind the guest's virtual clock.
 *
 * Unicorn has no icount mode, and `emu_start(count=N)` counts with a hidden hook whose
 * counter cannot be read.  The clock must be exact (timer ticks land on the same guest
 * instruction in every run, with or without probes) and readable from every probe hit
 * (trace timestamps), so we register this C callback as a UC_HOOK_CODE limited to the
 * image's text.  Instructions run in the tool's own pages (instruction slots,
 * detour buffers) fall outside that range and are never counted: a probe costs the
 * guest's clock nothing.
 *
 * Detour buffers (jump-optimized probes) are the exception: the relocated copies of the
 * replaced instructions stand for guest instructions, and they must be counted, with the
 * deadline checked before each, exactly as the originals would have been.  A second hook,
 * detour_hook, covers the detour pages and counts an instruction only when a byte map says
 * it stands for a guest instruction (the first copy is not counted: the `jmp` planted at
 * the probed address already was; the jump back is not counted: it stands for nothing).
 *
 * The hook runs before each instruction.  When the count has reached the deadline it
 * asks unicorn to stop before that instruction runs, which is where the machine
 * delivers a timer tick or ends an instruction budget.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

struct icount {
    uint64_t retired;          /* guest instructions started in the image's text */
    uint64_t deadline;         /* stop before the instruction that would pass this */
    void (*emu_stop)(void *uc);/* uc_emu_stop, passed in from Python */
};

static void icount_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct icount *c = user_data;
    (void)address;
    (void)size;
    if (c->retired >= c->deadline) {
        c->emu_stop(uc);
        return;
    }
    c->retired++;
}

struct detour_count {
    struct icount *clock;      /* the same counter as the image's text */
    uint64_t base;             /* first address of the detour pages */
    uint64_t size;             /* bytes covered by `counted` */
    const uint8_t *counted;    /* counted[a - base]: 1 when the insn at a is a guest insn */
};

static void detour_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct detour_count *d = user_data;
    uint64_t off = address - d->base;
    if (off >= d->size || !d->counted[off])
        return;
    icount_hook(uc, address, size, d->clock);
}

static PyObject *detour_hook_address(PyObject *self, PyObject *unused)
{
    return PyLong_FromVoidPtr((void *)detour_hook);
}

static PyObject *hook_address(PyObject *self, PyObject *unused)
{
    return PyLong_FromVoidPtr((void *)icount_hook);
}

static PyMethodDef methods[] = {
    {"hook_address", hook_address, METH_NOARGS,
     "Address of the C UC_HOOK_CODE callback that counts guest instructions."},
    {"detour_hook_address", detour_hook_address, METH_NOARGS,
     "Address of the C UC_HOOK_CODE callback that counts relocated guest instructions in detour buffers."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_icount", "Exact guest instruction counting for the virtual clock.", -1, methods,
};

PyMODINIT_FUNC PyInit__icount(void)
{
    return PyModule_Create(&module);
}
