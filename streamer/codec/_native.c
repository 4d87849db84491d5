/* The Avro binary codec in C: the hot path of decode and encode, nothing else.
 *
 * ``native.py`` turns a schema into a *spec* (nested tuples; see there) and this module
 * turns the spec into a tree of ``Node``s once. A ``Codec`` is then called like the
 * generated Python function it stands in for (``decode(data, pos)``, ``encode(record,
 * header)``) and walks the tree for each datum.
 *
 * It handles the common case and only that: whenever a datum is anything but plainly
 * valid (bytes that are not a datum, a value of an unusual type, a number out of range, a
 * NaN) it calls the generated Python function, its ``fallback``, with the same arguments
 * and returns whatever that returns or raises. So the Python codec alone decides every
 * edge case and error, and this one must only agree with it where it succeeds, which the
 * differential tests check on generated and fuzzed input.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum {
    K_NULL, K_BOOLEAN, K_INT, K_LONG, K_FLOAT, K_DOUBLE, K_BYTES, K_STRING,
    K_FIXED, K_ENUM, K_RECORD, K_ARRAY, K_MAP, K_UNION, K_COUNT
};

typedef struct Node {
    int kind;
    Py_ssize_t n;           /* record fields, union branches, enum symbols, fixed size */
    struct Node **kids;     /* record fields, union branches; array items / map values: [0] */
    PyObject **names;       /* record: field names */
    unsigned char *absent_is_none; /* record (encoder): a missing field is encoded as None */
    PyObject *symbols;      /* enum: tuple of str */
    PyObject *index;        /* enum: dict str -> int */
} Node;

static void node_free(Node *node) {
    if (node == NULL) return;
    if (node->kids) {
        Py_ssize_t count = (node->kind == K_ARRAY || node->kind == K_MAP) ? 1 : node->n;
        for (Py_ssize_t i = 0; i < count; i++) node_free(node->kids[i]);
        PyMem_Free(node->kids);
    }
    if (node->names) {
        for (Py_ssize_t i = 0; i < node->n; i++) Py_XDECREF(node->names[i]);
        PyMem_Free(node->names);
    }
    PyMem_Free(node->absent_is_none);
    Py_XDECREF(node->symbols);
    Py_XDECREF(node->index);
    PyMem_Free(node);
}

static Node *node_new(PyObject *spec, int depth);

static int kids_from(Node *node, PyObject *specs, int depth) {
    if (!PyTuple_Check(specs)) {
        PyErr_SetString(PyExc_TypeError, "spec: expected a tuple of specs");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(specs);
    node->kids = PyMem_Calloc(count ? count : 1, sizeof(Node *));
    if (node->kids == NULL) return -1;
    node->n = count;
    for (Py_ssize_t i = 0; i < count; i++) {
        node->kids[i] = node_new(PyTuple_GET_ITEM(specs, i), depth + 1);
        if (node->kids[i] == NULL) return -1;
    }
    return 0;
}

/* spec: (kind,) | (K_FIXED, size) | (K_ENUM, symbols) | (K_ARRAY|K_MAP, spec)
 *     | (K_UNION, specs) | (K_RECORD, names, specs, absent_is_none flags) */
static Node *node_new(PyObject *spec, int depth) {
    if (depth > 64) {
        PyErr_SetString(PyExc_ValueError, "spec: nested too deeply");
        return NULL;
    }
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 1) {
        PyErr_SetString(PyExc_TypeError, "spec: expected a non-empty tuple");
        return NULL;
    }
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
    if (kind < 0 || kind >= K_COUNT) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "spec: unknown kind");
        return NULL;
    }
    Node *node = PyMem_Calloc(1, sizeof(Node));
    if (node == NULL) return (Node *)PyErr_NoMemory();
    node->kind = (int)kind;
    Py_ssize_t size = PyTuple_GET_SIZE(spec);
    switch (kind) {
    case K_FIXED:
        if (size != 2) goto bad;
        node->n = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
        if (node->n < 0) goto bad;
        break;
    case K_ENUM: {
        if (size != 2 || !PyTuple_Check(PyTuple_GET_ITEM(spec, 1))) goto bad;
        node->symbols = Py_NewRef(PyTuple_GET_ITEM(spec, 1));
        node->n = PyTuple_GET_SIZE(node->symbols);
        node->index = PyDict_New();
        if (node->index == NULL) goto fail;
        for (Py_ssize_t i = 0; i < node->n; i++) {
            PyObject *at = PyLong_FromSsize_t(i);
            if (at == NULL || PyDict_SetItem(node->index, PyTuple_GET_ITEM(node->symbols, i), at) < 0) {
                Py_XDECREF(at);
                goto fail;
            }
            Py_DECREF(at);
        }
        break;
    }
    case K_ARRAY:
    case K_MAP:
        if (size != 2) goto bad;
        node->kids = PyMem_Calloc(1, sizeof(Node *));
        if (node->kids == NULL) goto fail;
        node->kids[0] = node_new(PyTuple_GET_ITEM(spec, 1), depth + 1);
        if (node->kids[0] == NULL) goto fail;
        break;
    case K_UNION:
        if (size != 2 || kids_from(node, PyTuple_GET_ITEM(spec, 1), depth) < 0) goto fail;
        break;
    case K_RECORD: {
        if (size != 4) goto bad;
        PyObject *names = PyTuple_GET_ITEM(spec, 1), *flags = PyTuple_GET_ITEM(spec, 3);
        if (kids_from(node, PyTuple_GET_ITEM(spec, 2), depth) < 0) goto fail;
        if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) != node->n ||
            !PyTuple_Check(flags) || PyTuple_GET_SIZE(flags) != node->n) goto bad;
        node->names = PyMem_Calloc(node->n ? node->n : 1, sizeof(PyObject *));
        node->absent_is_none = PyMem_Calloc(node->n ? node->n : 1, 1);
        if (node->names == NULL || node->absent_is_none == NULL) goto fail;
        for (Py_ssize_t i = 0; i < node->n; i++) {
            PyObject *name = PyTuple_GET_ITEM(names, i);
            if (!PyUnicode_CheckExact(name)) goto bad;
            Py_INCREF(name);
            PyUnicode_InternInPlace(&name);
            node->names[i] = name;
            node->absent_is_none[i] = (unsigned char)PyObject_IsTrue(PyTuple_GET_ITEM(flags, i));
        }
        break;
    }
    default:
        if (size != 1) goto bad;
    }
    return node;
bad:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "spec: malformed");
fail:
    node_free(node);
    return NULL;
}

/* ---- decoding ------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p, *end;
} Reader;

/* 0 on success; -1 for anything the fallback must judge (no Python error is set). */
static inline int read_varint(Reader *r, int64_t *out, int max_bytes) {
    uint64_t acc = 0;
    int shift = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (r->p >= r->end) return -1;
        unsigned char b = *r->p++;
        if (i == 9 && (b & 0x7E)) return -1; /* beyond 64 bits */
        acc |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *out = (int64_t)((acc >> 1) ^ (~(acc & 1) + 1));
            return 0;
        }
        shift += 7;
    }
    return -1; /* too long */
}

static inline int read_long(Reader *r, int64_t *out) { return read_varint(r, out, 10); }

static inline int read_int(Reader *r, int64_t *out) {
    if (read_varint(r, out, 5) < 0 || *out < INT32_MIN || *out > INT32_MAX) return -1;
    return 0;
}

static inline int read_length(Reader *r, Py_ssize_t *out) {
    int64_t n;
    if (read_long(r, &n) < 0 || n < 0 || n > r->end - r->p) return -1;
    *out = (Py_ssize_t)n;
    return 0;
}

static PyObject *decode_node(const Node *node, Reader *r);

static PyObject *decode_record(const Node *node, Reader *r) {
    PyObject *record = _PyDict_NewPresized(node->n);
    if (record == NULL) return NULL;
    for (Py_ssize_t i = 0; i < node->n; i++) {
        PyObject *value = decode_node(node->kids[i], r);
        if (value == NULL || PyDict_SetItem(record, node->names[i], value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(record);
            return NULL;
        }
        Py_DECREF(value);
    }
    return record;
}

/* The next block's item count of an array or map (0: the end), or -1; ``size`` its size
   in bytes when the writer gave it (a negative count), else -1. */
static int64_t block_count(const Node *item, Reader *r, int64_t *size) {
    int64_t count;
    *size = -1;
    if (read_long(r, &count) < 0) return -1;
    if (count < 0) {
        if (count == INT64_MIN || read_long(r, size) < 0) return -1;
        count = -count;
    }
    /* every item but a null takes a byte at least; nulls: leave absurd counts to Python */
    if (count > (item->kind == K_NULL ? 1000000 : r->end - r->p)) return -1;
    return count;
}

/* A block given its size in bytes must take exactly that many: a reader skipping it by its
   size would land elsewhere than one reading its items (the bytes mean two things). */
static int block_fits(const Reader *r, const unsigned char *start, int64_t size) {
    if (size < 0 || r->p - start == size) return 1;
    PyErr_SetString(PyExc_ValueError, "block size disagrees with its items");
    return 0;
}

static PyObject *decode_array(const Node *node, Reader *r) {
    PyObject *list = PyList_New(0);
    if (list == NULL) return NULL;
    for (;;) {
        int64_t size, count = block_count(node->kids[0], r, &size);
        if (count <= 0) {
            if (count == 0) return list;
            break;
        }
        const unsigned char *start = r->p;
        for (int64_t i = 0; i < count; i++) {
            PyObject *item = decode_node(node->kids[0], r);
            if (item == NULL || PyList_Append(list, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(item);
        }
        if (!block_fits(r, start, size)) break;
    }
    Py_DECREF(list);
    return NULL;
}

static PyObject *decode_string(Reader *r) {
    Py_ssize_t n;
    if (read_length(r, &n) < 0) return NULL;
    PyObject *s = PyUnicode_DecodeUTF8((const char *)r->p, n, "strict");
    r->p += n;
    return s;
}

static PyObject *decode_map(const Node *node, Reader *r) {
    PyObject *map = PyDict_New();
    if (map == NULL) return NULL;
    for (;;) {
        int64_t size, count = block_count(node->kids[0], r, &size);
        if (count <= 0) {
            if (count == 0) return map;
            break;
        }
        const unsigned char *start = r->p;
        for (int64_t i = 0; i < count; i++) {
            PyObject *key = decode_string(r);
            PyObject *value = key ? decode_node(node->kids[0], r) : NULL;
            if (value == NULL || PyDict_SetItem(map, key, value) < 0) {
                Py_XDECREF(key);
                Py_XDECREF(value);
                Py_DECREF(map);
                return NULL;
            }
            Py_DECREF(key);
            Py_DECREF(value);
        }
        if (!block_fits(r, start, size)) break;
    }
    Py_DECREF(map);
    return NULL;
}

static PyObject *decode_node(const Node *node, Reader *r) {
    int64_t v;
    Py_ssize_t n;
    switch (node->kind) {
    case K_NULL:
        Py_RETURN_NONE;
    case K_BOOLEAN:
        if (r->p >= r->end || *r->p > 1) return NULL;
        return PyBool_FromLong(*r->p++);
    case K_INT:
        if (read_int(r, &v) < 0) return NULL;
        return PyLong_FromLongLong(v);
    case K_LONG:
        if (read_long(r, &v) < 0) return NULL;
        return PyLong_FromLongLong(v);
    case K_FLOAT: {
        float f;
        if (r->end - r->p < 4) return NULL;
        memcpy(&f, r->p, 4);
        r->p += 4;
        if (isnan(f)) return NULL; /* NaN payloads: as Python's struct unpacks them */
        return PyFloat_FromDouble((double)f);
    }
    case K_DOUBLE: {
        double d;
        if (r->end - r->p < 8) return NULL;
        memcpy(&d, r->p, 8);
        r->p += 8;
        return PyFloat_FromDouble(d);
    }
    case K_BYTES:
        if (read_length(r, &n) < 0) return NULL;
        r->p += n;
        return PyBytes_FromStringAndSize((const char *)r->p - n, n);
    case K_STRING:
        return decode_string(r);
    case K_FIXED:
        if (r->end - r->p < node->n) return NULL;
        r->p += node->n;
        return PyBytes_FromStringAndSize((const char *)r->p - node->n, node->n);
    case K_ENUM:
        if (read_int(r, &v) < 0 || v < 0 || v >= node->n) return NULL;
        return Py_NewRef(PyTuple_GET_ITEM(node->symbols, v));
    case K_UNION:
        if (read_long(r, &v) < 0 || v < 0 || v >= node->n) return NULL;
        return decode_node(node->kids[v], r);
    case K_RECORD:
        return decode_record(node, r);
    case K_ARRAY:
        return decode_array(node, r);
    case K_MAP:
        return decode_map(node, r);
    }
    return NULL;
}

/* ---- encoding ------------------------------------------------------------------------- */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
    char inline_[1024];
} Buffer;

static int reserve(Buffer *b, Py_ssize_t more) {
    if (b->len + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap * 2 > b->len + more ? b->cap * 2 : b->len + more;
    char *p = PyMem_Malloc(cap);
    if (p == NULL) return -1;
    memcpy(p, b->p, b->len);
    if (b->p != b->inline_) PyMem_Free(b->p);
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int put(Buffer *b, const void *data, Py_ssize_t n) {
    if (reserve(b, n) < 0) return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static inline int put_long(Buffer *b, int64_t n) {
    uint64_t z = ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
    if (reserve(b, 10) < 0) return -1;
    while (z > 0x7F) {
        b->p[b->len++] = (char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    b->p[b->len++] = (char)z;
    return 0;
}

/* -1 for anything the fallback must handle (any Python error is cleared by the caller). */
static int exact_long(PyObject *value, int64_t *out) {
    if (!PyLong_CheckExact(value) && !PyBool_Check(value)) return -1;
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (n == -1 && PyErr_Occurred())) return -1;
    *out = n;
    return 0;
}

static int exact_double(PyObject *value, double *out) {
    if (PyFloat_Check(value)) {
        *out = PyFloat_AS_DOUBLE(value);
    } else if (PyLong_CheckExact(value)) {
        *out = PyLong_AsDouble(value);
        if (*out == -1.0 && PyErr_Occurred()) return -1;
    } else {
        return -1;
    }
    return isnan(*out) ? -1 : 0;
}

static int put_text(Buffer *b, PyObject *value) {
    Py_ssize_t n;
    if (!PyUnicode_CheckExact(value)) return -1;
    const char *text = PyUnicode_AsUTF8AndSize(value, &n);
    if (text == NULL || put_long(b, n) < 0) return -1;
    return put(b, text, n);
}

static int encode_node(const Node *node, PyObject *value, Buffer *b);

/* Which branch the generated encoder picks for ``value``: 1 yes, 0 no, -1 cannot tell. */
static int branch_takes(const Node *branch, PyObject *value) {
    int is_bool = PyBool_Check(value);
    switch (branch->kind) {
    case K_NULL: return value == Py_None;
    case K_BOOLEAN: return is_bool;
    case K_INT: case K_LONG: return PyLong_Check(value) && !is_bool;
    case K_FLOAT: case K_DOUBLE: return (PyLong_Check(value) || PyFloat_Check(value)) && !is_bool;
    case K_STRING: return PyUnicode_Check(value);
    case K_BYTES: return PyBytes_Check(value) || PyByteArray_Check(value);
    case K_FIXED:  /* isinstance(value, bytes) and len(value) == size */
        if (PyBytes_Check(value) && !PyBytes_CheckExact(value)) return -1;
        return PyBytes_CheckExact(value) && PyBytes_GET_SIZE(value) == branch->n;
    case K_ARRAY: return PyList_Check(value) || PyTuple_Check(value);
    case K_RECORD: case K_MAP:  /* isinstance(value, Mapping) */
        if (PyDict_CheckExact(value)) return 1;
        if (value == Py_None || is_bool || PyLong_CheckExact(value) || PyFloat_CheckExact(value) ||
            PyUnicode_CheckExact(value) || PyBytes_CheckExact(value) || PyList_CheckExact(value) ||
            PyTuple_CheckExact(value)) return 0;
        return -1;
    case K_ENUM:  /* value in frozenset(symbols) */
        if (PyUnicode_CheckExact(value)) {
            PyObject *at = PyDict_GetItemWithError(branch->index, value);
            return at != NULL ? 1 : (PyErr_Occurred() ? -1 : 0);
        }
        if (value == Py_None || is_bool || PyLong_CheckExact(value) || PyFloat_CheckExact(value) ||
            PyBytes_CheckExact(value)) return 0;
        return -1;
    }
    return -1;
}

static int encode_record(const Node *node, PyObject *record, Buffer *b) {
    if (!PyDict_CheckExact(record)) return -1;
    for (Py_ssize_t i = 0; i < node->n; i++) {
        PyObject *value = PyDict_GetItemWithError(record, node->names[i]);
        if (value == NULL) {
            if (PyErr_Occurred() || !node->absent_is_none[i]) return -1;
            value = Py_None;
        }
        if (encode_node(node->kids[i], value, b) < 0) return -1;
    }
    return 0;
}

static int encode_node(const Node *node, PyObject *value, Buffer *b) {
    int64_t n;
    double d;
    switch (node->kind) {
    case K_NULL:
        return 0;
    case K_BOOLEAN:
        if (!PyBool_Check(value)) return -1;
        return put(b, value == Py_True ? "\x01" : "\x00", 1);
    case K_INT:
        if (exact_long(value, &n) < 0 || n < INT32_MIN || n > INT32_MAX) return -1;
        return put_long(b, n);
    case K_LONG:
        if (exact_long(value, &n) < 0) return -1;
        return put_long(b, n);
    case K_FLOAT: {
        if (exact_double(value, &d) < 0) return -1;
        float f = (float)d;
        if (isinf(f) && !isinf(d)) return -1; /* too large for a float: Python raises */
        return put(b, &f, 4);
    }
    case K_DOUBLE:
        if (exact_double(value, &d) < 0) return -1;
        return put(b, &d, 8);
    case K_STRING:
        return put_text(b, value);
    case K_BYTES:
        if (!PyBytes_CheckExact(value)) return -1;
        if (put_long(b, PyBytes_GET_SIZE(value)) < 0) return -1;
        return put(b, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
    case K_FIXED:
        if (!PyBytes_CheckExact(value) || PyBytes_GET_SIZE(value) != node->n) return -1;
        return put(b, PyBytes_AS_STRING(value), node->n);
    case K_ENUM: {
        if (!PyUnicode_CheckExact(value)) return -1;
        PyObject *at = PyDict_GetItemWithError(node->index, value);
        if (at == NULL) return -1;
        return put_long(b, PyLong_AsLongLong(at));
    }
    case K_UNION:
        for (Py_ssize_t i = 0; i < node->n; i++) {
            int takes = branch_takes(node->kids[i], value);
            if (takes < 0) return -1;
            if (takes) {
                if (put_long(b, i) < 0) return -1;
                return encode_node(node->kids[i], value, b);
            }
        }
        return -1; /* no branch: Python raises TypeError */
    case K_RECORD:
        return encode_record(node, value, b);
    case K_ARRAY: {
        if (!PyList_CheckExact(value) && !PyTuple_CheckExact(value)) return -1;
        PyObject *items = PySequence_Fast(value, "");
        if (items == NULL) return -1;
        Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
        int failed = count && put_long(b, count) < 0;
        for (Py_ssize_t i = 0; i < count && !failed; i++) {
            failed = encode_node(node->kids[0], PySequence_Fast_GET_ITEM(items, i), b) < 0;
        }
        Py_DECREF(items);
        return failed ? -1 : put(b, "\x00", 1);
    }
    case K_MAP: {
        if (!PyDict_CheckExact(value)) return -1;
        Py_ssize_t at = 0, count = PyDict_GET_SIZE(value);
        PyObject *key, *item;
        if (count && put_long(b, count) < 0) return -1;
        while (PyDict_Next(value, &at, &key, &item)) {
            if (put_text(b, key) < 0 || encode_node(node->kids[0], item, b) < 0) return -1;
        }
        return put(b, "\x00", 1);
    }
    }
    return -1;
}

/* ---- the Codec type ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Node *root;
    PyObject *fallback;
} Codec;

static PyObject *call_fallback(Codec *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    PyErr_Clear();
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

/* decode(data: bytes, pos: int) -> (record, next_pos) */
static PyObject *codec_decode(PyObject *obj, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Codec *self = (Codec *)obj;
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL || !PyBytes_CheckExact(args[0]))
        return call_fallback(self, args, nargsf, kwnames);
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]), size = PyBytes_GET_SIZE(args[0]);
    if (pos < 0 || pos > size) return call_fallback(self, args, nargsf, kwnames);
    const unsigned char *start = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Reader r = {start + pos, start + size};
    PyObject *record = decode_node(self->root, &r);
    if (record == NULL) return call_fallback(self, args, nargsf, kwnames);
    PyObject *next = PyLong_FromSsize_t((Py_ssize_t)(r.p - start));
    if (next == NULL) {
        Py_DECREF(record);
        return NULL;
    }
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(record);
        Py_DECREF(next);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, record);
    PyTuple_SET_ITEM(pair, 1, next);
    return pair;
}

/* encode(record, header: bytes) -> header + the record's Avro binary */
static PyObject *codec_encode(PyObject *obj, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Codec *self = (Codec *)obj;
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL || !PyBytes_CheckExact(args[1]))
        return call_fallback(self, args, nargsf, kwnames);
    Buffer b;
    b.p = b.inline_;
    b.len = 0;
    b.cap = sizeof b.inline_;
    PyObject *out = NULL;
    if (put(&b, PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1])) == 0 &&
        encode_node(self->root, args[0], &b) == 0) {
        out = PyBytes_FromStringAndSize(b.p, b.len);
    }
    if (b.p != b.inline_) PyMem_Free(b.p);
    return out != NULL ? out : call_fallback(self, args, nargsf, kwnames);
}

/* The value of field ``j`` in row ``i``: a list holds one per row, a 1-tuple one for all. */
static inline PyObject *column_value(PyObject *column, Py_ssize_t i) {
    return PyList_CheckExact(column) ? PyList_GET_ITEM(column, i) : PyTuple_GET_ITEM(column, 0);
}

/* Row ``i`` as the dict the generated encoder takes (for the fallback). */
static PyObject *row_dict(const Node *root, PyObject *columns, Py_ssize_t i) {
    PyObject *row = _PyDict_NewPresized(root->n);
    if (row == NULL) return NULL;
    for (Py_ssize_t j = 0; j < root->n; j++) {
        if (PyDict_SetItem(row, root->names[j], column_value(PyTuple_GET_ITEM(columns, j), i)) < 0) {
            Py_DECREF(row);
            return NULL;
        }
    }
    return row;
}

/* One step of writing a row: field ``j``'s value of the row, or (``j`` -1) bytes made once
 * for every row, ``shared[start:end]``: a run of 1-tuple columns in a row, encoded once. */
typedef struct {
    Py_ssize_t j, start, end;
} Step;

/* The steps of a row, into ``steps`` (room for ``root->n``); returns how many. A 1-tuple
 * column the C code does not answer is a per-row step: each row then goes the fallback,
 * as it would without the sharing. */
static Py_ssize_t row_steps(const Node *root, PyObject *columns, Buffer *shared, Step *steps) {
    Py_ssize_t count = 0;
    for (Py_ssize_t j = 0; j < root->n; j++) {
        PyObject *column = PyTuple_GET_ITEM(columns, j);
        Py_ssize_t start = shared->len;
        if (!PyList_CheckExact(column)) {
            if (encode_node(root->kids[j], PyTuple_GET_ITEM(column, 0), shared) == 0) {
                if (count && steps[count - 1].j < 0 && steps[count - 1].end == start) {
                    steps[count - 1].end = shared->len; /* the run goes on */
                } else {
                    steps[count++] = (Step){-1, start, shared->len};
                }
                continue;
            }
            PyErr_Clear();
            shared->len = start;
        }
        steps[count++] = (Step){j, 0, 0};
    }
    return count;
}

/* encode_columns(columns, n, header) -> [header + record's Avro binary for each row]
 *
 * ``columns`` holds one entry per field of the top record, in its order: a list of ``n``
 * values or a 1-tuple of the value of every row (encoded once, its bytes copied into
 * each row). A row the C code does not answer is built as a dict and given to the
 * generated encoder (which may raise). */
static PyObject *codec_encode_columns(PyObject *obj, PyObject *const *args, Py_ssize_t nargs) {
    Codec *self = (Codec *)obj;
    const Node *root = self->root;
    if (nargs != 3 || self->vectorcall != codec_encode || root->kind != K_RECORD ||
        !PyTuple_CheckExact(args[0]) ||
        PyTuple_GET_SIZE(args[0]) != root->n || !PyBytes_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_columns(columns: tuple, n: int, header: bytes) of a record codec");
        return NULL;
    }
    PyObject *columns = args[0], *header = args[2];
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (n < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "n must not be negative");
        return NULL;
    }
    for (Py_ssize_t j = 0; j < root->n; j++) {
        PyObject *column = PyTuple_GET_ITEM(columns, j);
        int ok = PyList_CheckExact(column) ? PyList_GET_SIZE(column) == n
                                           : PyTuple_CheckExact(column) && PyTuple_GET_SIZE(column) == 1;
        if (!ok) {
            PyErr_Format(PyExc_ValueError, "column %zd is neither a list of %zd values nor a 1-tuple", j, n);
            return NULL;
        }
    }
    PyObject *out = PyList_New(n);
    Step *steps = PyMem_Malloc((root->n ? root->n : 1) * sizeof(Step));
    Buffer b, shared;
    b.p = b.inline_;
    b.cap = sizeof b.inline_;
    shared.p = shared.inline_;
    shared.len = 0;
    shared.cap = sizeof shared.inline_;
    if (out == NULL || steps == NULL) goto fail;
    Py_ssize_t count = row_steps(root, columns, &shared, steps);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *bytes = NULL;
        b.len = 0;
        int failed = put(&b, PyBytes_AS_STRING(header), PyBytes_GET_SIZE(header)) < 0;
        for (Py_ssize_t k = 0; k < count && !failed; k++) {
            const Step *step = &steps[k];
            failed = step->j < 0
                ? put(&b, shared.p + step->start, step->end - step->start) < 0
                : encode_node(root->kids[step->j], column_value(PyTuple_GET_ITEM(columns, step->j), i), &b) < 0;
        }
        if (!failed) {
            bytes = PyBytes_FromStringAndSize(b.p, b.len);
        } else {
            PyErr_Clear();
            PyObject *row = row_dict(root, columns, i);
            if (row != NULL) {
                PyObject *call[2] = {row, header};
                bytes = PyObject_Vectorcall(self->fallback, call, 2, NULL);
                Py_DECREF(row);
            }
        }
        if (bytes == NULL) goto fail;
        PyList_SET_ITEM(out, i, bytes);
    }
    if (b.p != b.inline_) PyMem_Free(b.p);
    if (shared.p != shared.inline_) PyMem_Free(shared.p);
    PyMem_Free(steps);
    return out;
fail:
    if (b.p != b.inline_) PyMem_Free(b.p);
    if (shared.p != shared.inline_) PyMem_Free(shared.p);
    PyMem_Free(steps);
    Py_XDECREF(out);
    if (!PyErr_Occurred()) PyErr_NoMemory();
    return NULL;
}

/* decode_columns(payloads: list, prefix: bytes, max_bytes: int) -> tuple of lists | None
 *
 * A batch of payloads as columns: one list per field of the top record, in its order,
 * one value per payload. Only when every payload is plain: bytes, at most ``max_bytes``
 * long, starting with ``prefix`` (the framing header) and holding exactly one datum the
 * C code decodes. Otherwise None and nothing else: the caller then decodes the payloads
 * one by one (``decode``), which judges the others. No dict is made per record. */
static PyObject *codec_decode_columns(PyObject *obj, PyObject *const *args, Py_ssize_t nargs) {
    Codec *self = (Codec *)obj;
    const Node *root = self->root;
    if (nargs != 3 || self->vectorcall != codec_decode || root->kind != K_RECORD ||
        !PyList_CheckExact(args[0]) || !PyBytes_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "decode_columns(payloads: list, prefix: bytes, max_bytes: int) of a record decoder");
        return NULL;
    }
    PyObject *payloads = args[0];
    const char *prefix = PyBytes_AS_STRING(args[1]);
    Py_ssize_t prefix_size = PyBytes_GET_SIZE(args[1]);
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[2]);
    if (max_bytes == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(payloads);
    PyObject *columns = PyTuple_New(root->n);
    if (columns == NULL) return NULL;
    for (Py_ssize_t j = 0; j < root->n; j++) {
        PyObject *column = PyList_New(count); /* items NULL until set; freed safely */
        if (column == NULL) {
            Py_DECREF(columns);
            return NULL;
        }
        PyTuple_SET_ITEM(columns, j, column);
    }
    for (Py_ssize_t i = 0; i < count; i++) { /* no Python code runs: the list stays as is */
        PyObject *payload = PyList_GET_ITEM(payloads, i);
        if (!PyBytes_CheckExact(payload)) goto not_plain;
        Py_ssize_t size = PyBytes_GET_SIZE(payload);
        const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(payload);
        if (size == 0 || size > max_bytes || size < prefix_size ||
            memcmp(data, prefix, (size_t)prefix_size) != 0)
            goto not_plain;
        Reader r = {data + prefix_size, data + size};
        for (Py_ssize_t j = 0; j < root->n; j++) {
            PyObject *value = decode_node(root->kids[j], &r);
            if (value == NULL) goto not_plain;
            PyList_SET_ITEM(PyTuple_GET_ITEM(columns, j), i, value);
        }
        if (r.p != r.end) goto not_plain;
    }
    return columns;
not_plain:
    PyErr_Clear();
    Py_DECREF(columns);
    Py_RETURN_NONE;
}

/* The top record's field names (None for a codec of another type). */
static PyObject *codec_fields(PyObject *obj, void *closure) {
    const Node *root = ((Codec *)obj)->root;
    if (root->kind != K_RECORD) Py_RETURN_NONE;
    PyObject *names = PyTuple_New(root->n);
    if (names == NULL) return NULL;
    for (Py_ssize_t j = 0; j < root->n; j++) PyTuple_SET_ITEM(names, j, Py_NewRef(root->names[j]));
    return names;
}

static PyMethodDef codec_methods[] = {
    {"decode_columns", (PyCFunction)(void (*)(void))codec_decode_columns, METH_FASTCALL,
     "decode_columns(payloads, prefix, max_bytes) -> tuple of lists or None (a record decoder)"},
    {"encode_columns", (PyCFunction)(void (*)(void))codec_encode_columns, METH_FASTCALL,
     "encode_columns(columns, n, header) -> list of bytes (an encoder of a record)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef codec_getset[] = {
    {"fields", codec_fields, NULL, "the top record's field names, in order", NULL},
    {NULL},
};

static void codec_dealloc(PyObject *obj) {
    Codec *self = (Codec *)obj;
    node_free(self->root);
    Py_XDECREF(self->fallback);
    Py_TYPE(obj)->tp_free(obj);
}

static PyMemberDef codec_members[] = {
    {"fallback", T_OBJECT_EX, offsetof(Codec, fallback), READONLY,
     "the generated Python function this codec stands in for"},
    {NULL},
};

static PyTypeObject CodecType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streamer.codec._native.Codec",
    .tp_basicsize = sizeof(Codec),
    .tp_dealloc = codec_dealloc,
    .tp_vectorcall_offset = offsetof(Codec, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "An Avro decoder or encoder for one schema; see the module docstring.",
    .tp_members = codec_members,
    .tp_methods = codec_methods,
    .tp_getset = codec_getset,
};

static PyObject *codec_new(PyObject *spec, PyObject *fallback, vectorcallfunc call) {
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    Node *root = node_new(spec, 0);
    if (root == NULL) return NULL;
    Codec *self = PyObject_New(Codec, &CodecType);
    if (self == NULL) {
        node_free(root);
        return NULL;
    }
    self->vectorcall = call;
    self->root = root;
    self->fallback = Py_NewRef(fallback);
    return (PyObject *)self;
}

static PyObject *make_decoder(PyObject *module, PyObject *args) {
    PyObject *spec, *fallback;
    if (!PyArg_ParseTuple(args, "OO", &spec, &fallback)) return NULL;
    return codec_new(spec, fallback, codec_decode);
}

static PyObject *make_encoder(PyObject *module, PyObject *args) {
    PyObject *spec, *fallback;
    if (!PyArg_ParseTuple(args, "OO", &spec, &fallback)) return NULL;
    return codec_new(spec, fallback, codec_encode);
}

static PyMethodDef methods[] = {
    {"decoder", make_decoder, METH_VARARGS,
     "decoder(spec, fallback) -> decode(data, pos) -> (record, next_pos)"},
    {"encoder", make_encoder, METH_VARARGS,
     "encoder(spec, fallback) -> encode(record, header) -> bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "The Avro codec's hot path in C (see native.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&CodecType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&CodecType);
    if (PyModule_AddObject(m, "Codec", (PyObject *)&CodecType) < 0) {
        Py_DECREF(&CodecType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
