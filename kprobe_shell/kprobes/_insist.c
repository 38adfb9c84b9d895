/* A trace function in C for the handler guard (guard.py): while a handler that caught
 * the guard's exception runs on, raise that exception again at every line it runs.
 *
 * It has to be C: Python drops a trace function written in Python as soon as it raises
 * (sys.settrace's trampoline unsets it), so such a function could raise only once, and a
 * handler that catches at two levels would run on.  A C trace function that returns -1
 * with an exception set raises it in the traced frame and stays installed.
 *
 * insist(exc_type, callers, still_running) installs it on the calling thread: on each
 * line event outside the frames of `callers` (code objects: the engine's function that
 * called the handler) it raises exc_type while still_running() is true.
 * stop_insisting() removes it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

static int insist_trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)arg;
    if (what != PyTrace_LINE)
        return 0;
    PyObject *exc_type = PyTuple_GET_ITEM(obj, 0);
    PyObject *callers = PyTuple_GET_ITEM(obj, 1);
    PyObject *still_running = PyTuple_GET_ITEM(obj, 2);
    PyCodeObject *code = PyFrame_GetCode(frame);
    int is_caller = PySet_Contains(callers, (PyObject *)code);
    Py_DECREF(code);
    if (is_caller != 0)
        return is_caller < 0 ? -1 : 0;
    PyObject *running = PyObject_CallNoArgs(still_running);
    if (running == NULL)
        return -1;
    int yes = PyObject_IsTrue(running);
    Py_DECREF(running);
    if (yes <= 0)
        return yes;
    PyErr_SetNone(exc_type);
    return -1;
}

static PyObject *insist(PyObject *self, PyObject *args)
{
    PyObject *exc_type, *callers, *still_running;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!O:insist", &exc_type, &PySet_Type, &callers, &still_running))
        return NULL;
    PyObject *obj = PyTuple_Pack(3, exc_type, callers, still_running);
    if (obj == NULL)
        return NULL;
    PyEval_SetTrace(insist_trace, obj);  /* keeps its own reference */
    Py_DECREF(obj);
    Py_RETURN_NONE;
}

static PyObject *stop_insisting(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyEval_SetTrace(NULL, NULL);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"insist", insist, METH_VARARGS, "insist(exc_type, callers, still_running): raise at every line"},
    {"stop_insisting", stop_insisting, METH_NOARGS, "remove the trace function of insist()"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_insist", NULL, -1, methods};

PyMODINIT_FUNC PyInit__insist(void) { return PyModule_Create(&module); }
