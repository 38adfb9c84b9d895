/*
 * The state of bpftrace-style maps (maps.py prints them; cmaps.h says how C updates them).
 *
 * A map is a hash table from the canonical key encoding of cmaps.h to the state its kind
 * keeps: a count; a sum, minimum or maximum; a count and a total (avg, stats); a row of
 * bucket counts (hist, lhist).  Sums and totals are 128-bit, so that they stay exact for
 * any run of 64-bit values, signed or unsigned, as the Python integers did.  A map takes
 * at most max_entries keys (bpftrace's max_map_keys, 4096 by default); an update that
 * would add one more is dropped and counted, as a BPF hash map refuses it.
 *
 * update() touches no Python object and allocates only with malloc, so a unicorn hook may
 * call it without the GIL.  The Python type Map owns one struct cmap; its `handle` is the
 * struct's address for C callers, valid while the Map is alive.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmaps.h"

typedef __int128 i128;

#define NKINDS 8
#define HIST_BUCKETS 66          /* (..., 0), [0], then [2^k, 2^(k+1)) for k = 0..63 */
static const char *const kind_names[NKINDS] = {"count", "sum", "min", "max", "avg", "stats", "hist", "lhist"};

struct cmap_entry {
    uint64_t hash;
    uint8_t *key;
    uint32_t keylen;
    uint64_t n;          /* count(); avg/stats' count; min/max: updates seen */
    i128 v;              /* sum; min; max; avg/stats' total */
    uint64_t *buckets;   /* hist, lhist: nbuckets counts */
};

struct cmap {
    int kind;
    int64_t lo, hi, step;        /* lhist */
    uint32_t nbuckets;
    uint32_t max_entries;
    uint32_t n;                  /* entries in use, in insertion order */
    uint32_t allocated;
    struct cmap_entry *entries;
    uint32_t *slots;             /* open addressing: entry index + 1, 0 free */
    uint32_t mask;               /* slots - 1 (a power of two minus one) */
    uint64_t dropped;
};

/* ---------------------------------------------------------------- the C side */
static uint64_t key_hash(const uint8_t *key, uint32_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
    uint32_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, key + i, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    uint64_t tail = 0;
    for (uint32_t s = 0; i < len; i++, s += 8)
        tail |= (uint64_t)key[i] << s;
    h = (h ^ tail) * 0x94d049bb133111ebull;
    return h ^ (h >> 29);
}

/* Double the slot table (or make the first) and put every entry back. */
static int grow_slots(struct cmap *m)
{
    uint32_t size = m->slots ? 2 * (m->mask + 1) : 16;
    uint32_t *slots = calloc(size, sizeof *slots);
    if (!slots)
        return -1;
    for (uint32_t e = 0; e < m->n; e++) {
        uint32_t i = (uint32_t)m->entries[e].hash & (size - 1);
        while (slots[i])
            i = (i + 1) & (size - 1);
        slots[i] = e + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->mask = size - 1;
    return 0;
}

static struct cmap_entry *add_entry(struct cmap *m, uint32_t slot, uint64_t h, const uint8_t *key, uint32_t keylen)
{
    if (m->n == m->allocated) {
        uint32_t want = m->allocated ? 2 * m->allocated : 8;
        struct cmap_entry *entries = realloc(m->entries, (size_t)want * sizeof *entries);
        if (!entries)
            return NULL;
        m->entries = entries;
        m->allocated = want;
    }
    struct cmap_entry *e = &m->entries[m->n];
    memset(e, 0, sizeof *e);
    e->key = malloc(keylen ? keylen : 1);
    if (!e->key)
        return NULL;
    if (m->nbuckets && !(e->buckets = calloc(m->nbuckets, sizeof *e->buckets))) {
        free(e->key);
        return NULL;
    }
    memcpy(e->key, key, keylen);
    e->keylen = keylen;
    e->hash = h;
    m->slots[slot] = ++m->n;
    return e;
}

/* The entry of key, made if new; NULL when the map is full (or out of memory). */
static struct cmap_entry *lookup(struct cmap *m, const uint8_t *key, uint32_t keylen)
{
    /* Keep the table at most half full, so that probes stay short. */
    if ((m->n + 1) * 2 > (m->slots ? m->mask + 1 : 0) && grow_slots(m) < 0)
        return NULL;
    uint64_t h = key_hash(key, keylen);
    uint32_t i = (uint32_t)h & m->mask;
    for (uint32_t s; (s = m->slots[i]) != 0; i = (i + 1) & m->mask) {
        struct cmap_entry *e = &m->entries[s - 1];
        if (e->hash == h && e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
            return e;
    }
    if (m->n >= m->max_entries)
        return NULL;
    return add_entry(m, i, h, key, keylen);
}

/* maps.hist_index: 0 for negatives, 1 for 0, then bit_length + 1. */
static uint32_t hist_index(i128 v)
{
    if (v < 0)
        return 0;
    if (v == 0)
        return 1;
    return (uint32_t)(64 - __builtin_clzll((uint64_t)v)) + 1;
}

/* maps.lhist_index */
static uint32_t lhist_index(const struct cmap *m, i128 v)
{
    if (v < m->lo)
        return 0;
    if (v >= m->hi)
        return m->nbuckets - 1;
    return (uint32_t)((v - m->lo) / m->step) + 1;
}

static int update128(struct cmap *m, const uint8_t *key, uint32_t keylen, i128 v)
{
    struct cmap_entry *e = lookup(m, key, keylen);
    if (!e) {
        m->dropped++;
        return -1;
    }
    switch (m->kind) {
    case CMAP_COUNT:
        e->n++;
        break;
    case CMAP_SUM:
        e->v += v;
        break;
    case CMAP_MIN:
        if (!e->n++ || v < e->v)
            e->v = v;
        break;
    case CMAP_MAX:
        if (!e->n++ || v > e->v)
            e->v = v;
        break;
    case CMAP_AVG:
    case CMAP_STATS:
        e->n++;
        e->v += v;
        break;
    case CMAP_HIST:
        e->buckets[hist_index(v)]++;
        break;
    default:
        e->buckets[lhist_index(m, v)]++;
        break;
    }
    return 0;
}

static int api_update(struct cmap *m, const uint8_t *key, uint32_t keylen, int64_t value)
{
    return update128(m, key, keylen, value);
}

static int api_update_unsigned(struct cmap *m, const uint8_t *key, uint32_t keylen, uint64_t value)
{
    return update128(m, key, keylen, (i128)value);
}

static int api_kind(const struct cmap *m)
{
    return m->kind;
}

static const struct cmaps_api api = {api_update, api_update_unsigned, api_kind};

static void clear_entries(struct cmap *m)
{
    for (uint32_t e = 0; e < m->n; e++) {
        free(m->entries[e].key);
        free(m->entries[e].buckets);
    }
    free(m->entries);
    free(m->slots);
    m->entries = NULL;
    m->slots = NULL;
    m->n = m->allocated = m->mask = 0;
    m->dropped = 0;
}

/* ---------------------------------------------------------------- Python: keys and values */
static PyObject *MapError;

/* Append a part of the key to buf (*len bytes used of cap); -1 with MapError set. */
static int put_key_part(PyObject *part, uint8_t *buf, Py_ssize_t cap, Py_ssize_t *len)
{
    PyObject *decoded = NULL;
    if (PyBytes_Check(part)) {
        decoded = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(part), PyBytes_GET_SIZE(part), "backslashreplace");
        if (!decoded)
            return -1;
        part = decoded;
    }
    int rc = -1;
    if (PyLong_Check(part)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(part, &overflow);
        uint8_t tag = CMAP_KEY_INT;
        uint64_t bits = (uint64_t)v;
        if (overflow > 0) {
            bits = PyLong_AsUnsignedLongLong(part);
            if (PyErr_Occurred())
                PyErr_Clear();
            else
                tag = CMAP_KEY_UINT, overflow = 0;
        }
        if (v == -1 && PyErr_Occurred())
            goto out;
        if (overflow) {
            PyErr_Format(MapError, "a map key must fit in 64 bits (from -2**63 to 2**64 - 1), not %S", part);
            goto out;
        }
        if (*len + 9 > cap) {
            PyErr_SetString(MapError, "a map key is too long");
            goto out;
        }
        cmap_key_u64(buf + *len, tag, bits);
        *len += 9;
        rc = 0;
    } else if (PyUnicode_Check(part)) {
        /* UTF-8 as it is ('s'); text with lone surrogates, which has none, by surrogatepass ('S') */
        Py_ssize_t n;
        const char *utf8 = PyUnicode_AsUTF8AndSize(part, &n);
        PyObject *passed = NULL;
        uint8_t tag = CMAP_KEY_STR;
        if (!utf8 && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            if (!(passed = PyUnicode_AsEncodedString(part, "utf-8", "surrogatepass")))
                goto out;
            utf8 = PyBytes_AS_STRING(passed), n = PyBytes_GET_SIZE(passed), tag = CMAP_KEY_SURROGATES;
        }
        if (!utf8)
            goto out;
        if (n > CMAP_KEY_STR_MAX || *len + 3 + n > cap)
            PyErr_Format(MapError, "a map key string must be at most %d bytes long (this one is %zd)",
                         CMAP_KEY_STR_MAX, n);
        else {
            cmap_key_str(buf + *len, utf8, (uint16_t)n);
            buf[*len] = tag;
            *len += 3 + n;
            rc = 0;
        }
        Py_XDECREF(passed);
    } else {
        PyErr_Format(MapError, "a map key must be a string or an integer, not %s", Py_TYPE(part)->tp_name);
    }
out:
    Py_XDECREF(decoded);
    return rc;
}

/* The key as maps.py takes it: None (no key), a tuple (several), anything else (one). */
static PyObject *encode_key(PyObject *key)
{
    Py_ssize_t parts = key == Py_None ? 0 : PyTuple_Check(key) ? PyTuple_GET_SIZE(key) : 1;
    Py_ssize_t cap = 0;
    for (Py_ssize_t i = 0; i < parts; i++) {
        PyObject *part = PyTuple_Check(key) ? PyTuple_GET_ITEM(key, i) : key;
        /* a string's UTF-8 is at most 4 bytes a character (3 with surrogatepass) */
        cap += 3 + (PyUnicode_Check(part) ? 4 * PyUnicode_GET_LENGTH(part)
                    : PyBytes_Check(part) ? 4 * PyBytes_GET_SIZE(part) : 9);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, cap);
    if (!out)
        return NULL;
    uint8_t *buf = (uint8_t *)PyBytes_AS_STRING(out);
    Py_ssize_t len = 0;
    for (Py_ssize_t i = 0; i < parts; i++) {
        if (put_key_part(PyTuple_Check(key) ? PyTuple_GET_ITEM(key, i) : key, buf, cap, &len) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    if (len > UINT32_MAX) {
        Py_DECREF(out);
        PyErr_SetString(MapError, "a map key is too long");
        return NULL;
    }
    _PyBytes_Resize(&out, len);
    return out;
}

static PyObject *decode_str(uint8_t tag, const uint8_t *s, Py_ssize_t n)
{
    if (tag == CMAP_KEY_SURROGATES)
        return PyUnicode_DecodeUTF8((const char *)s, n, "surrogatepass");
    PyObject *text = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (!text && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        /* raw bytes from a C caller that are not UTF-8: shown as fetch.py shows them */
        PyErr_Clear();
        text = PyUnicode_DecodeUTF8((const char *)s, n, "backslashreplace");
    }
    return text;
}

/* The key tuple back from its encoding. */
static PyObject *decode_key(const uint8_t *key, uint32_t keylen)
{
    PyObject *parts = PyList_New(0);
    if (!parts)
        return NULL;
    uint32_t at = 0;
    while (at < keylen) {
        uint8_t tag = key[at++];
        PyObject *part = NULL;
        if ((tag == CMAP_KEY_INT || tag == CMAP_KEY_UINT) && at + 8 <= keylen) {
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++)
                bits |= (uint64_t)key[at + i] << (8 * i);
            at += 8;
            part = tag == CMAP_KEY_INT ? PyLong_FromLongLong((int64_t)bits) : PyLong_FromUnsignedLongLong(bits);
        } else if ((tag == CMAP_KEY_STR || tag == CMAP_KEY_SURROGATES) && at + 2 <= keylen) {
            uint32_t n = key[at] | (uint32_t)key[at + 1] << 8;
            at += 2;
            if (at + n <= keylen) {
                part = decode_str(tag, key + at, n);
                at += n;
            } else
                PyErr_SetString(MapError, "a map key's string runs past its end");
        } else
            PyErr_Format(MapError, "a map key has a bad part (tag 0x%02x at byte %u)", tag, at - 1);
        if (!part || PyList_Append(parts, part) < 0) {
            Py_XDECREF(part);
            Py_DECREF(parts);
            return NULL;
        }
        Py_DECREF(part);
    }
    PyObject *tuple = PyList_AsTuple(parts);
    Py_DECREF(parts);
    return tuple;
}

/* A Python int in [-2^63, 2^64) as a 128-bit number; -1 with MapError set otherwise. */
static int value_of(PyObject *value, int kind, i128 *out)
{
    if (!PyLong_Check(value) || PyBool_Check(value)) {
        PyErr_Format(MapError, "%s() needs an integer value, not %s %R", kind_names[kind], Py_TYPE(value)->tp_name,
                     value);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (!overflow) {
        *out = v;
        return v == -1 && PyErr_Occurred() ? -1 : 0;
    }
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(value);
        if (!PyErr_Occurred()) {
            *out = (i128)u;
            return 0;
        }
        PyErr_Clear();
    }
    PyErr_Format(MapError, "%s() needs a 64-bit value (from -2**63 to 2**64 - 1), not %S", kind_names[kind], value);
    return -1;
}

static PyObject *from_i128(i128 v)
{
    if (v >= INT64_MIN && v <= INT64_MAX)
        return PyLong_FromLongLong((long long)v);
    PyObject *hi = PyLong_FromLongLong((long long)(v >> 64));
    PyObject *lo = PyLong_FromUnsignedLongLong((unsigned long long)(uint64_t)v);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *top = hi && shift ? PyNumber_Lshift(hi, shift) : NULL;
    PyObject *sum = top && lo ? PyNumber_Add(top, lo) : NULL;
    Py_XDECREF(hi);
    Py_XDECREF(lo);
    Py_XDECREF(shift);
    Py_XDECREF(top);
    return sum;
}

/* ---------------------------------------------------------------- Python: the Map type */
typedef struct {
    PyObject_HEAD
    struct cmap map;
} MapObject;

static int Map_init(MapObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"kind", "lo", "hi", "step", "max_entries", NULL};
    int kind;
    long long lo = 0, hi = 0, step = 1;
    unsigned int max_entries = CMAP_MAX_KEYS;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i|LLLI", names, &kind, &lo, &hi, &step, &max_entries))
        return -1;
    if (kind < 0 || kind >= NKINDS) {
        PyErr_Format(PyExc_ValueError, "no map kind %d", kind);
        return -1;
    }
    uint32_t nbuckets = 0;
    if (kind == CMAP_HIST)
        nbuckets = HIST_BUCKETS;
    else if (kind == CMAP_LHIST) {
        if (step <= 0 || hi <= lo || ((i128)hi - lo) / step > 1000) {
            PyErr_SetString(PyExc_ValueError, "lhist bounds: step > 0, max > min, at most 1000 buckets");
            return -1;
        }
        nbuckets = (uint32_t)(((i128)hi - lo) / step) + 2;
    }
    clear_entries(&self->map);
    self->map.kind = kind;
    self->map.lo = lo;
    self->map.hi = hi;
    self->map.step = step;
    self->map.nbuckets = nbuckets;
    self->map.max_entries = max_entries;
    return 0;
}

static void Map_dealloc(MapObject *self)
{
    clear_entries(&self->map);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* update(key, value): key as maps.py takes it; value ignored by count(). False if dropped. */
static PyObject *Map_update(MapObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "update(key, value)");
        return NULL;
    }
    i128 v = 0;
    if (self->map.kind != CMAP_COUNT && value_of(args[1], self->map.kind, &v) < 0)
        return NULL;
    uint8_t small[256];
    PyObject *key = args[0];
    int rc;
    Py_ssize_t len = 0;
    /* the common keys (none, or a few ints and short strings) are encoded on the stack */
    if (key == Py_None)
        rc = update128(&self->map, small, 0, v);
    else if (!PyTuple_Check(key) && !PyBytes_Check(key) &&
             !(PyUnicode_Check(key) && PyUnicode_GET_LENGTH(key) > 60)) {
        if (put_key_part(key, small, sizeof small, &len) < 0)
            return NULL;
        rc = update128(&self->map, small, (uint32_t)len, v);
    } else {
        PyObject *encoded = encode_key(key);
        if (!encoded)
            return NULL;
        rc = update128(&self->map, (const uint8_t *)PyBytes_AS_STRING(encoded), (uint32_t)PyBytes_GET_SIZE(encoded), v);
        Py_DECREF(encoded);
    }
    return PyBool_FromLong(rc == 0);
}

/* update_encoded(key_bytes, value): the C callers' update, for tests: 0 or -1. */
static PyObject *Map_update_encoded(MapObject *self, PyObject *args)
{
    Py_buffer key;
    long long value;
    if (!PyArg_ParseTuple(args, "y*L", &key, &value))
        return NULL;
    int rc = api.update(&self->map, key.buf, (uint32_t)key.len, value);
    PyBuffer_Release(&key);
    return PyLong_FromLong(rc);
}

static PyObject *encode_key_py(PyObject *module, PyObject *key)
{
    return encode_key(key);
}

/* guest_str_key(raw) / latin1_str_key(raw): cmaps.h's encodings of guest bytes, for tests. */
static PyObject *str_key(PyObject *raw, int latin1)
{
    if (!PyBytes_Check(raw)) {
        PyErr_SetString(PyExc_TypeError, "bytes expected");
        return NULL;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(raw);
    if (len > CMAP_KEY_STR_MAX) {
        PyErr_SetString(PyExc_ValueError, "too long");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 3 + 4 * len);
    if (!out)
        return NULL;
    uint8_t *start = (uint8_t *)PyBytes_AS_STRING(out), *raw_bytes = (uint8_t *)PyBytes_AS_STRING(raw);
    uint8_t *end = latin1 ? cmap_key_latin1_str(start, raw_bytes, (uint32_t)len)
                          : cmap_key_guest_str(start, raw_bytes, (uint32_t)len);
    _PyBytes_Resize(&out, end - start);
    return out;
}

static PyObject *guest_str_key(PyObject *module, PyObject *raw)
{
    return str_key(raw, 0);
}

static PyObject *latin1_str_key(PyObject *module, PyObject *raw)
{
    return str_key(raw, 1);
}

static PyObject *state_of(const struct cmap *m, const struct cmap_entry *e)
{
    switch (m->kind) {
    case CMAP_COUNT:
        return PyLong_FromUnsignedLongLong(e->n);
    case CMAP_SUM:
    case CMAP_MIN:
    case CMAP_MAX:
        return from_i128(e->v);
    case CMAP_AVG:
    case CMAP_STATS: {
        PyObject *total = from_i128(e->v);
        return total ? Py_BuildValue("(KN)", (unsigned long long)e->n, total) : NULL;
    }
    default: {
        PyObject *buckets = PyDict_New();
        for (uint32_t i = 0; buckets && i < m->nbuckets; i++) {
            if (!e->buckets[i])
                continue;
            PyObject *index = PyLong_FromUnsignedLong(i), *n = PyLong_FromUnsignedLongLong(e->buckets[i]);
            if (!index || !n || PyDict_SetItem(buckets, index, n) < 0)
                Py_CLEAR(buckets);
            Py_XDECREF(index);
            Py_XDECREF(n);
        }
        return buckets;
    }
    }
}

/* entries(): {key tuple: state} in the order the keys came, states as maps.py kept them:
 * an int (count, sum, min, max), (count, total) (avg, stats), {bucket index: count}. */
static PyObject *Map_entries(MapObject *self, PyObject *unused)
{
    PyObject *out = PyDict_New();
    for (uint32_t i = 0; out && i < self->map.n; i++) {
        const struct cmap_entry *e = &self->map.entries[i];
        PyObject *key = decode_key(e->key, e->keylen);
        PyObject *state = key ? state_of(&self->map, e) : NULL;
        if (!state || PyDict_SetItem(out, key, state) < 0)
            Py_CLEAR(out);
        Py_XDECREF(key);
        Py_XDECREF(state);
    }
    return out;
}

static PyObject *Map_clear(MapObject *self, PyObject *unused)
{
    clear_entries(&self->map);
    Py_RETURN_NONE;
}

static Py_ssize_t Map_len(MapObject *self)
{
    return self->map.n;
}

static PyObject *Map_get_handle(MapObject *self, void *closure)
{
    return PyLong_FromVoidPtr(&self->map);
}

static PyObject *Map_get_dropped(MapObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->map.dropped);
}

static PyObject *Map_get_max_entries(MapObject *self, void *closure)
{
    return PyLong_FromUnsignedLong(self->map.max_entries);
}

static PyMethodDef Map_methods[] = {
    {"update", (PyCFunction)(void (*)(void))Map_update, METH_FASTCALL,
     "update(key, value) -> False when the key is new and the map is full (dropped)"},
    {"update_encoded", (PyCFunction)Map_update_encoded, METH_VARARGS,
     "update_encoded(key_bytes, value) -> 0 or -1: cmaps_api.update, as C callers call it"},
    {"entries", (PyCFunction)Map_entries, METH_NOARGS, "{key tuple: state}, in insertion order"},
    {"clear", (PyCFunction)Map_clear, METH_NOARGS, "forget every key (and the dropped count)"},
    {NULL},
};

static PyGetSetDef Map_getset[] = {
    {"handle", (getter)Map_get_handle, NULL, "the struct cmap * for C callers (cmaps.h)", NULL},
    {"dropped", (getter)Map_get_dropped, NULL, "updates refused because the map was full", NULL},
    {"max_entries", (getter)Map_get_max_entries, NULL, "the most keys the map takes", NULL},
    {NULL},
};

static PySequenceMethods Map_as_sequence = {.sq_length = (lenfunc)Map_len};

static PyTypeObject MapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kprobe_shell.tracing._maps.Map",
    .tp_basicsize = sizeof(MapObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Map(kind, lo=0, hi=0, step=1, max_entries=4096): one map's entries, kept in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Map_init,
    .tp_dealloc = (destructor)Map_dealloc,
    .tp_methods = Map_methods,
    .tp_getset = Map_getset,
    .tp_as_sequence = &Map_as_sequence,
};

/* bench_update(map, key_bytes, value, n) -> nanoseconds for n updates through the API. */
static PyObject *bench_update(PyObject *module, PyObject *args)
{
    MapObject *map;
    Py_buffer key;
    long long value, n;
    if (!PyArg_ParseTuple(args, "O!y*LL", &MapType, &map, &key, &value, &n))
        return NULL;
    /* through a pointer the compiler cannot see through, as a caller in another module */
    const struct cmaps_api *volatile through = &api;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long long i = 0; i < n; i++)
        through->update(&map->map, key.buf, (uint32_t)key.len, value);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    PyBuffer_Release(&key);
    return PyLong_FromLongLong((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
}

static PyMethodDef module_methods[] = {
    {"encode_key", (PyCFunction)encode_key_py, METH_O, "the canonical encoding (cmaps.h) of a key"},
    {"guest_str_key", (PyCFunction)guest_str_key, METH_O, "cmap_key_guest_str of guest bytes"},
    {"latin1_str_key", (PyCFunction)latin1_str_key, METH_O, "cmap_key_latin1_str of guest bytes"},
    {"bench_update", bench_update, METH_VARARGS, "bench_update(map, key_bytes, value, n) -> ns"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_maps", "bpftrace-style maps kept in C (see cmaps.h)", -1, module_methods,
};

PyMODINIT_FUNC PyInit__maps(void)
{
    if (PyType_Ready(&MapType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    MapError = PyErr_NewExceptionWithDoc(
        "kprobe_shell.tracing.maps.MapError",
        "A map used inconsistently (another kind, other lhist bounds, a non-integer value).", NULL, NULL);
    PyObject *capsule = PyCapsule_New((void *)&api, CMAPS_CAPSULE, NULL);
    if (!MapError || !capsule || PyModule_AddObjectRef(m, "MapError", MapError) < 0 ||
        PyModule_AddObject(m, "API", capsule) < 0 || PyModule_AddObjectRef(m, "Map", (PyObject *)&MapType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_KEYS", CMAP_MAX_KEYS) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
