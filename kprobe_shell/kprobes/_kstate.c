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
#include <structmember.h>

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
    if (PyType_Ready(&CtlblkStateType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&CtlblkStateType);
    if (PyModule_AddObject(m, "CtlblkState", (PyObject *)&CtlblkStateType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
