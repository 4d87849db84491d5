/* LightGBM's TreeSHAP, the same arithmetic, with each leaf's terms remembered.
 *
 * ``treeshap.py`` reads the trees out of LightGBM's model text and hands them here as flat
 * arrays. ``contributions`` then computes what ``LGBM_BoosterPredictForMat`` with
 * ``C_API_PREDICT_CONTRIB`` computes (LightGBM's ``GBDT::PredictContrib`` and
 * ``Tree::TreeSHAP``), bit for bit: the same operations on the same doubles in the same
 * order. What it adds is memory. In LightGBM's recursion the terms a leaf adds to the
 * contributions (``w * (one - zero) * leaf_value`` per input on the leaf's path) depend
 * only on which way the row goes at each of the leaf's ancestors (its "hot" child or not);
 * the costly part, the path's weights (O(depth^2) per leaf), is the same for every row
 * with the same pattern. So each (tree, leaf, pattern) is computed once, exactly as
 * LightGBM computes it, and its terms are kept; every row still adds them to its own
 * contributions one by one, in LightGBM's order (trees in order; in a tree, the leaves
 * depth first, hot child before cold), so each sum rounds as LightGBM's does.
 *
 * Only plain numerical trees are taken (``treeshap.py`` refuses the rest and LightGBM
 * serves them). ``tests/unit/test_treeshap.py`` compares the bytes with LightGBM's on
 * generated rows.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef MEMO_BITS
#define MEMO_BITS 18                       /* table slots: 2^18 */
#endif
#define MEMO_SLOTS (1u << MEMO_BITS)
#ifndef ARENA_BITS
#define ARENA_BITS 20
#endif
#define ARENA_TERMS (1u << ARENA_BITS)     /* remembered terms before the memory is reset */
#define MAX_MEMO_DEPTH 32                  /* deeper leaves are computed every time */

static const double ZERO_THRESHOLD = (double)1e-35f; /* LightGBM's kZeroThreshold */

typedef struct {
    double zero, one, pweight;
    int feature;
} PathElement;

typedef struct {
    uint64_t key;                           /* (tree, leaf, pattern) + 1; 0: empty */
    uint32_t start;                         /* its terms in the arena */
} Slot;

typedef struct {
    double value;
    int32_t feature;                        /* the first of a leaf's: how many follow */
} Term;

typedef struct {
    int32_t nodes, leaves;                  /* internal nodes, leaves */
    int32_t node0, leaf0;                   /* offsets into the flat arrays */
    int32_t depth;                          /* the deepest leaf's depth */
    double expected;                        /* Tree::ExpectedValue() */
} Tree;

typedef struct {
    int32_t features;
    int32_t trees_n;
    int32_t max_depth;
    Tree *trees;
    int32_t *split_feature, *left, *right, *internal_count, *leaf_count;
    int8_t *decision_type;
    double *threshold, *leaf_value;
    /* memory: open addressing (key -> terms in the arena) */
    Slot *slots;
    uint32_t used;
    Term *terms;
    uint32_t arena_used;
    /* per-call scratch */
    int32_t *hot;                           /* per internal node of the current tree */
    int32_t *stack_node, *stack_child;
    PathElement *path;
    Term *scratch;
    uint64_t hits, misses;
} Model;

static void model_free(Model *m) {
    if (m == NULL) return;
    PyMem_Free(m->trees);
    PyMem_Free(m->split_feature);
    PyMem_Free(m->left);
    PyMem_Free(m->right);
    PyMem_Free(m->internal_count);
    PyMem_Free(m->leaf_count);
    PyMem_Free(m->decision_type);
    PyMem_Free(m->threshold);
    PyMem_Free(m->leaf_value);
    PyMem_Free(m->slots);
    PyMem_Free(m->terms);
    PyMem_Free(m->hot);
    PyMem_Free(m->stack_node);
    PyMem_Free(m->stack_child);
    PyMem_Free(m->path);
    PyMem_Free(m->scratch);
    PyMem_Free(m);
}

static void capsule_free(PyObject *capsule) {
    model_free((Model *)PyCapsule_GetPointer(capsule, "treeshap.Model"));
}

/* --- LightGBM's path arithmetic (src/io/tree.cpp), operation for operation ----------- */

static void extend_path(PathElement *p, int depth, double zero, double one, int feature) {
    p[depth].feature = feature;
    p[depth].zero = zero;
    p[depth].one = one;
    p[depth].pweight = (depth == 0 ? 1 : 0);
    for (int i = depth - 1; i >= 0; i--) {
        p[i + 1].pweight += one * p[i].pweight * (i + 1) / (double)(depth + 1);
        p[i].pweight = zero * p[i].pweight * (depth - i) / (double)(depth + 1);
    }
}

static void unwind_path(PathElement *p, int depth, int index) {
    const double one = p[index].one;
    const double zero = p[index].zero;
    double next_one_portion = p[depth].pweight;
    for (int i = depth - 1; i >= 0; --i) {
        if (one != 0) {
            const double tmp = p[i].pweight;
            p[i].pweight = next_one_portion * (depth + 1) / (double)((i + 1) * one);
            next_one_portion = tmp - p[i].pweight * zero * (depth - i) / (double)(depth + 1);
        } else {
            p[i].pweight = (p[i].pweight * (depth + 1)) / (double)(zero * (depth - i));
        }
    }
    for (int i = index; i < depth; ++i) {
        p[i].feature = p[i + 1].feature;
        p[i].zero = p[i + 1].zero;
        p[i].one = p[i + 1].one;
    }
}

static double unwound_path_sum(const PathElement *p, int depth, int index) {
    const double one = p[index].one;
    const double zero = p[index].zero;
    double next_one_portion = p[depth].pweight;
    double total = 0;
    for (int i = depth - 1; i >= 0; --i) {
        if (one != 0) {
            const double tmp = next_one_portion * (depth + 1) / (double)((i + 1) * one);
            total += tmp;
            next_one_portion = p[i].pweight - tmp * zero * ((depth - i) / (double)(depth + 1));
        } else {
            total += (p[i].pweight / zero) / ((depth - i) / (double)(depth + 1));
        }
    }
    return total;
}

static inline double data_count(const Model *m, const Tree *t, int node) {
    return node >= 0 ? m->internal_count[t->node0 + node] : m->leaf_count[t->leaf0 + ~node];
}

/* The terms of ``leaf``, reached through stack[0..depth): LightGBM's recursion along that
 * one path (its copies of the path change no value). Returns how many were written. */
static int leaf_terms(Model *m, const Tree *t, int leaf, int depth, Term *out) {
    PathElement *p = m->path;
    int unique = 0;
    extend_path(p, 0, 1, 1, -1);
    for (int k = 0; k < depth; k++) {
        const int node = m->stack_node[k];
        const int child = m->stack_child[k];
        const int hot = m->hot[node];
        const int split = m->split_feature[t->node0 + node];
        const double w = data_count(m, t, node);
        const double child_zero = data_count(m, t, child) / w;
        double incoming_zero = 1;
        double incoming_one = 1;
        int index = 0;
        for (; index <= unique; ++index) {
            if (p[index].feature == split) break;
        }
        if (index != unique + 1) {
            incoming_zero = p[index].zero;
            incoming_one = p[index].one;
            unwind_path(p, unique, index);
            unique -= 1;
        }
        unique += 1;
        if (child == hot) {
            extend_path(p, unique, child_zero * incoming_zero, incoming_one, split);
        } else {
            extend_path(p, unique, child_zero * incoming_zero, 0, split);
        }
    }
    const double leaf_value = m->leaf_value[t->leaf0 + leaf];
    for (int i = 1; i <= unique; ++i) {
        const double w = unwound_path_sum(p, unique, i);
        out[i - 1].feature = p[i].feature;
        out[i - 1].value = w * (p[i].one - p[i].zero) * leaf_value;
    }
    return unique;
}

static void memo_reset(Model *m) {
    memset(m->slots, 0, sizeof(Slot) * MEMO_SLOTS);
    m->used = 0;
    m->arena_used = 0;
}

static inline uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Add leaf ``leaf``'s terms to phi, from memory when this pattern was seen. */
static void add_leaf(Model *m, int ti, const Tree *t, int leaf, int depth, uint64_t bits,
                     double *phi) {
    if (depth > MAX_MEMO_DEPTH) {
        const int n = leaf_terms(m, t, leaf, depth, m->scratch);
        for (int i = 0; i < n; i++) phi[m->scratch[i].feature] += m->scratch[i].value;
        return;
    }
    const uint64_t key = (((uint64_t)ti << 48) | ((uint64_t)leaf << 32) | bits) + 1;
    uint32_t slot = (uint32_t)(mix(key) & (MEMO_SLOTS - 1));
    while (m->slots[slot].key != 0) {
        if (m->slots[slot].key == key) {
            const Term *terms = m->terms + m->slots[slot].start;
            const int n = terms[0].feature;
            for (int i = 1; i <= n; i++) phi[terms[i].feature] += terms[i].value;
            m->hits++;
            return;
        }
        slot = (slot + 1) & (MEMO_SLOTS - 1);
    }
    m->misses++;
    if (m->used * 2 >= MEMO_SLOTS || m->arena_used + (uint32_t)depth + 2 > ARENA_TERMS) {
        memo_reset(m);
        slot = (uint32_t)(mix(key) & (MEMO_SLOTS - 1));
    }
    const uint32_t start = m->arena_used;
    Term *terms = m->terms + start;
    const int n = leaf_terms(m, t, leaf, depth, terms + 1);
    terms[0].feature = n;
    terms[0].value = 0;
    m->arena_used += (uint32_t)n + 1;
    m->slots[slot].key = key;
    m->slots[slot].start = start;
    m->used++;
    for (int i = 1; i <= n; i++) phi[terms[i].feature] += terms[i].value;
}

/* Tree::TreeSHAP's visiting order: depth first, the hot child before the cold one. */
static void visit(Model *m, int ti, const Tree *t, int node, int depth, uint64_t bits,
                  double *phi) {
    if (node < 0) {
        add_leaf(m, ti, t, ~node, depth, bits, phi);
        return;
    }
    const int hot = m->hot[node];
    const int left = m->left[t->node0 + node];
    const int cold = (hot == left ? m->right[t->node0 + node] : left);
    m->stack_node[depth] = node;
    m->stack_child[depth] = hot;
    visit(m, ti, t, hot, depth + 1, depth < 64 ? bits | ((uint64_t)1 << depth) : bits, phi);
    m->stack_node[depth] = node;
    m->stack_child[depth] = cold;
    visit(m, ti, t, cold, depth + 1, bits, phi);
}

/* Tree::NumericalDecision */
static inline int decision(const Model *m, const Tree *t, int node, double fval) {
    const int at = t->node0 + node;
    const int8_t type = m->decision_type[at];
    const int missing = (type >> 2) & 3;
    if (isnan(fval) && missing != 2) fval = 0.0f;
    if ((missing == 1 && fval >= -ZERO_THRESHOLD && fval <= ZERO_THRESHOLD) ||
        (missing == 2 && isnan(fval))) {
        return (type & 2) ? m->left[at] : m->right[at];
    }
    return fval <= m->threshold[at] ? m->left[at] : m->right[at];
}

static void row_contributions(Model *m, const float *row, double *features, double *phi) {
    for (int j = 0; j < m->features; j++) {
        const double v = (double)row[j];
        /* the C API keeps a value only when |v| > kZeroThreshold or NaN; others read 0 */
        features[j] = (fabs(v) > ZERO_THRESHOLD || isnan(v)) ? v : 0.0;
    }
    memset(phi, 0, sizeof(double) * (size_t)(m->features + 1));
    for (int ti = 0; ti < m->trees_n; ti++) {
        const Tree *t = &m->trees[ti];
        phi[m->features] += t->expected;
        if (t->leaves <= 1) continue;
        for (int node = 0; node < t->nodes; node++) {
            m->hot[node] = decision(m, t, node, features[m->split_feature[t->node0 + node]]);
        }
        visit(m, ti, t, 0, 0, 0, phi);
    }
}

/* --- Python interface ------------------------------------------------------------------ */

static int copy_buffer(PyObject *obj, void **dest, Py_ssize_t item, Py_ssize_t count,
                       const char *what) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) return -1;
    if (view.len != item * count) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, %zd due", what, view.len, item * count);
        return -1;
    }
    *dest = PyMem_Malloc(view.len > 0 ? (size_t)view.len : 1);
    if (*dest == NULL) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(*dest, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return 0;
}

static int tree_depth(const Model *m, const Tree *t, int node, int depth) {
    if (node < 0) return depth;
    if (depth > t->nodes) return -1; /* a cycle: not a tree */
    int a = tree_depth(m, t, m->left[t->node0 + node], depth + 1);
    int b = tree_depth(m, t, m->right[t->node0 + node], depth + 1);
    if (a < 0 || b < 0) return -1;
    return a > b ? a : b;
}

/* model(features, node_counts, leaf_counts, split_feature, threshold, decision_type, left,
 *       right, internal_count, leaf_value, leaf_count): arrays as bytes (int32, float64,
 *       int8), trees concatenated. */
static PyObject *model_new(PyObject *self, PyObject *args) {
    int features;
    PyObject *node_counts, *leaf_counts, *split, *threshold, *dtype, *left, *right, *icount,
        *lvalue, *lcount;
    if (!PyArg_ParseTuple(args, "iOOOOOOOOOO", &features, &node_counts, &leaf_counts, &split,
                          &threshold, &dtype, &left, &right, &icount, &lvalue, &lcount)) {
        return NULL;
    }
    Py_buffer nodes_view, leaves_view;
    if (PyObject_GetBuffer(node_counts, &nodes_view, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(leaf_counts, &leaves_view, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&nodes_view);
        return NULL;
    }
    Model *m = PyMem_Calloc(1, sizeof(Model));
    if (m == NULL) {
        PyBuffer_Release(&nodes_view);
        PyBuffer_Release(&leaves_view);
        return PyErr_NoMemory();
    }
    m->features = features;
    m->trees_n = (int32_t)(nodes_view.len / 4);
    int ok = features > 0 && nodes_view.len == leaves_view.len && nodes_view.len % 4 == 0 &&
             m->trees_n < 65535;
    m->trees = PyMem_Calloc((size_t)m->trees_n + 1, sizeof(Tree));
    int32_t total_nodes = 0, total_leaves = 0, widest = 1;
    if (ok && m->trees) {
        const int32_t *nc = nodes_view.buf, *lc = leaves_view.buf;
        for (int i = 0; i < m->trees_n; i++) {
            if (lc[i] < 1 || lc[i] > 65535 || nc[i] != lc[i] - 1) ok = 0;
            m->trees[i].nodes = nc[i];
            m->trees[i].leaves = lc[i];
            m->trees[i].node0 = total_nodes;
            m->trees[i].leaf0 = total_leaves;
            total_nodes += nc[i];
            total_leaves += lc[i];
            if (nc[i] > widest) widest = nc[i];
        }
    }
    PyBuffer_Release(&nodes_view);
    PyBuffer_Release(&leaves_view);
    if (!ok || m->trees == NULL) {
        model_free(m);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "not a set of trees");
        return NULL;
    }
    if (copy_buffer(split, (void **)&m->split_feature, 4, total_nodes, "split_feature") < 0 ||
        copy_buffer(threshold, (void **)&m->threshold, 8, total_nodes, "threshold") < 0 ||
        copy_buffer(dtype, (void **)&m->decision_type, 1, total_nodes, "decision_type") < 0 ||
        copy_buffer(left, (void **)&m->left, 4, total_nodes, "left_child") < 0 ||
        copy_buffer(right, (void **)&m->right, 4, total_nodes, "right_child") < 0 ||
        copy_buffer(icount, (void **)&m->internal_count, 4, total_nodes, "internal_count") < 0 ||
        copy_buffer(lvalue, (void **)&m->leaf_value, 8, total_leaves, "leaf_value") < 0 ||
        copy_buffer(lcount, (void **)&m->leaf_count, 4, total_leaves, "leaf_count") < 0) {
        model_free(m);
        return NULL;
    }
    for (int i = 0; i < m->trees_n && ok; i++) {
        Tree *t = &m->trees[i];
        for (int n = 0; n < t->nodes; n++) {
            const int at = t->node0 + n;
            const int l = m->left[at], r = m->right[at];
            if (m->split_feature[at] < 0 || m->split_feature[at] >= features ||
                (m->decision_type[at] & 1) || l >= t->nodes || r >= t->nodes ||
                ~l >= t->leaves || ~r >= t->leaves || l == 0 || r == 0) {
                ok = 0;
            }
        }
        if (!ok) break;
        if (t->leaves == 1) {
            t->depth = 0;
            t->expected = m->leaf_value[t->leaf0];
            continue;
        }
        t->depth = tree_depth(m, t, 0, 0);
        if (t->depth < 0) {
            ok = 0;
            break;
        }
        if (t->depth > m->max_depth) m->max_depth = t->depth;
        /* Tree::ExpectedValue */
        const double total = m->internal_count[t->node0];
        double value = 0.0;
        for (int l = 0; l < t->leaves; l++) {
            value += (m->leaf_count[t->leaf0 + l] / total) * m->leaf_value[t->leaf0 + l];
        }
        t->expected = value;
    }
    if (!ok) {
        model_free(m);
        PyErr_SetString(PyExc_ValueError, "trees this TreeSHAP does not take");
        return NULL;
    }
    const size_t deep = (size_t)m->max_depth + 2;
    m->slots = PyMem_Calloc(MEMO_SLOTS, sizeof(Slot));
    m->terms = PyMem_Calloc(ARENA_TERMS, sizeof(Term));
    m->hot = PyMem_Calloc((size_t)widest, sizeof(int32_t));
    m->stack_node = PyMem_Calloc(deep, sizeof(int32_t));
    m->stack_child = PyMem_Calloc(deep, sizeof(int32_t));
    m->path = PyMem_Calloc(deep, sizeof(PathElement));
    m->scratch = PyMem_Calloc(deep, sizeof(Term));
    if (!m->slots || !m->terms || !m->hot || !m->stack_node || !m->stack_child || !m->path ||
        !m->scratch) {
        model_free(m);
        return PyErr_NoMemory();
    }
    PyObject *capsule = PyCapsule_New(m, "treeshap.Model", capsule_free);
    if (capsule == NULL) model_free(m);
    return capsule;
}

/* contributions(model, matrix, rows, out): ``matrix`` float32 [rows, features] C order,
 * ``out`` a writable float64 [rows, features + 1] buffer. */
static PyObject *contributions(PyObject *self, PyObject *args) {
    PyObject *capsule, *matrix, *out;
    Py_ssize_t rows;
    if (!PyArg_ParseTuple(args, "OOnO", &capsule, &matrix, &rows, &out)) return NULL;
    Model *m = PyCapsule_GetPointer(capsule, "treeshap.Model");
    if (m == NULL) return NULL;
    Py_buffer in_view, out_view;
    if (PyObject_GetBuffer(matrix, &in_view, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(out, &out_view, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&in_view);
        return NULL;
    }
    const Py_ssize_t width = m->features;
    if (rows < 0 || in_view.len != rows * width * 4 || out_view.len != rows * (width + 1) * 8) {
        PyBuffer_Release(&in_view);
        PyBuffer_Release(&out_view);
        PyErr_SetString(PyExc_ValueError, "matrix or output of the wrong size");
        return NULL;
    }
    double *features = PyMem_Malloc(sizeof(double) * (size_t)width);
    if (features == NULL) {
        PyBuffer_Release(&in_view);
        PyBuffer_Release(&out_view);
        return PyErr_NoMemory();
    }
    const float *in = in_view.buf;
    double *phi = out_view.buf;
    for (Py_ssize_t r = 0; r < rows; r++) {
        row_contributions(m, in + r * width, features, phi + r * (width + 1));
    }
    PyMem_Free(features);
    PyBuffer_Release(&in_view);
    PyBuffer_Release(&out_view);
    Py_RETURN_NONE;
}

/* stats(model) -> (hits, misses, remembered leaves): how well the memory serves. */
static PyObject *stats(PyObject *self, PyObject *capsule) {
    Model *m = PyCapsule_GetPointer(capsule, "treeshap.Model");
    if (m == NULL) return NULL;
    return Py_BuildValue("KKI", (unsigned long long)m->hits, (unsigned long long)m->misses,
                         m->used);
}

static PyMethodDef methods[] = {
    {"model", model_new, METH_VARARGS, "A TreeSHAP model from flat tree arrays."},
    {"contributions", contributions, METH_VARARGS, "LightGBM's pred_contrib, exactly."},
    {"stats", stats, METH_O, "(hits, misses, remembered leaves)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_treeshap", "LightGBM's TreeSHAP with memory (see treeshap.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__treeshap(void) { return PyModule_Create(&module); }
