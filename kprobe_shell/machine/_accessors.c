/*
 * The machine's C accessors: register and memory reads and writes for the probe engine's
 * hot paths (capi.py exports them as one object).
 *
 * unicorn's Python binding spends 2-4 microseconds per reg_read/mem_write (it picks a
 * register class, builds ctypes buffers, checks types): several times the cost of the
 * host transition itself.  These call the same uc_reg_read/uc_reg_write/uc_mem_read/
 * uc_mem_write (their addresses are passed in from Python by init()) with a stack buffer:
 * a plain C call.  Only for registers that fit in 64 bits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef int (*uc_reg_fn)(void *uc, int regid, void *value);
typedef int (*uc_mem_read_fn)(void *uc, uint64_t address, void *bytes, uint64_t size);
typedef int (*uc_mem_write_fn)(void *uc, uint64_t address, const void *bytes, uint64_t size);

static uc_reg_fn p_reg_read, p_reg_write;
static uc_mem_read_fn p_mem_read;
static uc_mem_write_fn p_mem_write;

static PyObject *UcAccessError;

static PyObject *init(PyObject *self, PyObject *args)
{
    unsigned long long rr, rw, mr, mw;
    if (!PyArg_ParseTuple(args, "KKKK", &rr, &rw, &mr, &mw))
        return NULL;
    p_reg_read = (uc_reg_fn)(uintptr_t)rr;
    p_reg_write = (uc_reg_fn)(uintptr_t)rw;
    p_mem_read = (uc_mem_read_fn)(uintptr_t)mr;
    p_mem_write = (uc_mem_write_fn)(uintptr_t)mw;
    Py_RETURN_NONE;
}

static PyObject *access_error(int err, const char *what, uint64_t where)
{
    PyObject *exc_args = Py_BuildValue("(isK)", err, what, (unsigned long long)where);
    if (exc_args) {
        PyErr_SetObject(UcAccessError, exc_args);
        Py_DECREF(exc_args);
    }
    return NULL;
}

/*
 * The accessors' arguments: the unicorn handle, then one or two integers (a register id,
 * an address, a value, an offset).  Integers are taken modulo 2**64, so a negative offset
 * wraps as the CPU's own address arithmetic does.  b may be NULL when the third argument
 * is not an integer (mem_write's data).  0 on success, -1 with the exception set.
 */
static int unpack(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *usage, void **uc,
                  uint64_t *a, uint64_t *b)
{
    if (nargs != want) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    *uc = PyLong_AsVoidPtr(args[0]);
    *a = PyLong_AsUnsignedLongLongMask(args[1]);
    if (b)
        *b = PyLong_AsUnsignedLongLongMask(args[2]);
    return PyErr_Occurred() ? -1 : 0;
}

/* reg_read(uch, regid) -> int */
static PyObject *fast_reg_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t regid, value = 0;
    void *uc;
    int err;
    if (unpack(args, nargs, 2, "reg_read(uch, regid)", &uc, &regid, NULL) < 0)
        return NULL;
    err = p_reg_read(uc, (int)regid, &value);
    if (err)
        return access_error(err, "reg_read", regid);
    return PyLong_FromUnsignedLongLong(value);
}

/* reg_write(uch, regid, value) */
static PyObject *fast_reg_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t regid, value;
    void *uc;
    int err;
    if (unpack(args, nargs, 3, "reg_write(uch, regid, value)", &uc, &regid, &value) < 0)
        return NULL;
    err = p_reg_write(uc, (int)regid, &value);
    if (err)
        return access_error(err, "reg_write", regid);
    Py_RETURN_NONE;
}

/* mem_read(uch, address, size) -> bytes */
static PyObject *fast_mem_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *uc;
    uint64_t address, size;
    PyObject *out;
    int err;
    if (unpack(args, nargs, 3, "mem_read(uch, address, size)", &uc, &address, &size) < 0)
        return NULL;
    if (size > (uint64_t)PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (!out)
        return NULL;
    err = p_mem_read(uc, address, PyBytes_AS_STRING(out), size);
    if (err) {
        Py_DECREF(out);
        return access_error(err, "mem_read", address);
    }
    return out;
}

/* mem_write(uch, address, data) */
static PyObject *fast_mem_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *uc;
    uint64_t address;
    Py_buffer view;
    int err;
    if (unpack(args, nargs, 3, "mem_write(uch, address, data)", &uc, &address, NULL) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[2], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    err = p_mem_write(uc, address, view.buf, (uint64_t)view.len);
    PyBuffer_Release(&view);
    if (err)
        return access_error(err, "mem_write", address);
    Py_RETURN_NONE;
}

/* read_u64(uch, address) -> int */
static PyObject *fast_read_u64(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *uc;
    uint64_t address, value = 0;
    int err;
    if (unpack(args, nargs, 2, "read_u64(uch, address)", &uc, &address, NULL) < 0)
        return NULL;
    err = p_mem_read(uc, address, &value, 8);  /* x86 is little-endian, as the host */
    if (err)
        return access_error(err, "mem_read", address);
    return PyLong_FromUnsignedLongLong(value);
}

/* write_u64(uch, address, value) */
static PyObject *fast_write_u64(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *uc;
    uint64_t address, value;
    int err;
    if (unpack(args, nargs, 3, "write_u64(uch, address, value)", &uc, &address, &value) < 0)
        return NULL;
    err = p_mem_write(uc, address, &value, 8);
    if (err)
        return access_error(err, "mem_write", address);
    Py_RETURN_NONE;
}

/* read_u64_at_reg(uch, regid, offset) -> int: *(u64 *)(reg + offset), e.g. %gs:0 (current) */
static PyObject *fast_read_u64_at_reg(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *uc;
    int err;
    uint64_t regid, offset, base = 0, value = 0;
    if (unpack(args, nargs, 3, "read_u64_at_reg(uch, regid, offset)", &uc, &regid, &offset) < 0)
        return NULL;
    err = p_reg_read(uc, (int)regid, &base);
    if (err)
        return access_error(err, "reg_read", regid);
    err = p_mem_read(uc, base + offset, &value, 8);
    if (err)
        return access_error(err, "mem_read", base + offset);
    return PyLong_FromUnsignedLongLong(value);
}

/*
 * exchange_top_of_stack(uch, rsp_regid, value) -> (rsp, old): the u64 at rsp is replaced
 * by value (arch_prepare_kretprobe: the return address becomes the trampoline's).
 */
static PyObject *fast_exchange_top_of_stack(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *uc;
    int err;
    uint64_t regid, rsp = 0, old = 0, value;
    if (unpack(args, nargs, 3, "exchange_top_of_stack(uch, rsp_regid, value)", &uc, &regid, &value) < 0)
        return NULL;
    err = p_reg_read(uc, (int)regid, &rsp);
    if (err)
        return access_error(err, "reg_read", regid);
    err = p_mem_read(uc, rsp, &old, 8);
    if (err)
        return access_error(err, "mem_read", rsp);
    err = p_mem_write(uc, rsp, &value, 8);
    if (err)
        return access_error(err, "mem_write", rsp);
    return Py_BuildValue("(KK)", (unsigned long long)rsp, (unsigned long long)old);
}

/* push_u64(uch, rsp_regid, value): rsp -= 8; *(u64 *)rsp = value (what a call leaves). */
static PyObject *fast_push_u64(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    void *uc;
    int err;
    uint64_t regid, rsp = 0, value;
    if (unpack(args, nargs, 3, "push_u64(uch, rsp_regid, value)", &uc, &regid, &value) < 0)
        return NULL;
    err = p_reg_read(uc, (int)regid, &rsp);
    if (err)
        return access_error(err, "reg_read", regid);
    rsp -= 8;
    err = p_mem_write(uc, rsp, &value, 8);
    if (err)
        return access_error(err, "mem_write", rsp);
    err = p_reg_write(uc, (int)regid, &rsp);
    if (err)
        return access_error(err, "reg_write", regid);
    Py_RETURN_NONE;
}

/* peek_u64(address) -> int: a u64 in this process (the clock's counter, read without ctypes). */
static PyObject *fast_peek_u64(PyObject *self, PyObject *arg)
{
    void *p = PyLong_AsVoidPtr(arg);
    if (!p)
        return PyErr_Occurred() ? NULL : PyLong_FromLong(0);
    return PyLong_FromUnsignedLongLong(*(volatile uint64_t *)p);
}

static PyMethodDef methods[] = {
    {"read_u64_at_reg", (PyCFunction)(void (*)(void))fast_read_u64_at_reg, METH_FASTCALL, "read_u64_at_reg(uch, regid, offset) -> int"},
    {"exchange_top_of_stack", (PyCFunction)(void (*)(void))fast_exchange_top_of_stack, METH_FASTCALL,
     "exchange_top_of_stack(uch, rsp_regid, value) -> (rsp, old)"},
    {"push_u64", (PyCFunction)(void (*)(void))fast_push_u64, METH_FASTCALL, "push_u64(uch, rsp_regid, value)"},
    {"peek_u64", fast_peek_u64, METH_O, "peek_u64(address) -> int"},
    {"init", init, METH_VARARGS, "init(uc_reg_read, uc_reg_write, uc_mem_read, uc_mem_write): function addresses."},
    {"reg_read", (PyCFunction)(void (*)(void))fast_reg_read, METH_FASTCALL, "reg_read(uch, regid) -> int"},
    {"reg_write", (PyCFunction)(void (*)(void))fast_reg_write, METH_FASTCALL, "reg_write(uch, regid, value)"},
    {"mem_read", (PyCFunction)(void (*)(void))fast_mem_read, METH_FASTCALL, "mem_read(uch, address, size) -> bytes"},
    {"mem_write", (PyCFunction)(void (*)(void))fast_mem_write, METH_FASTCALL, "mem_write(uch, address, data)"},
    {"read_u64", (PyCFunction)(void (*)(void))fast_read_u64, METH_FASTCALL, "read_u64(uch, address) -> int"},
    {"write_u64", (PyCFunction)(void (*)(void))fast_write_u64, METH_FASTCALL, "write_u64(uch, address, value)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_accessors", "Register and memory accessors that call unicorn directly.", -1, methods,
};

PyMODINIT_FUNC PyInit__accessors(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    UcAccessError = PyErr_NewException("_accessors.UcAccessError", NULL, NULL);
    if (!UcAccessError || PyModule_AddObject(m, "UcAccessError", UcAccessError) < 0) {
        Py_XDECREF(UcAccessError);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(UcAccessError);
    return m;
}
