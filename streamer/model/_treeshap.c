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
 * Where the terms are kept: their values in one arena (a leaf's inputs are the same for
 * every pattern, kept once per leaf), found through a table per leaf indexed by the
 * pattern (leaves up to DIRECT_DEPTH deep, DIRECT_BUDGET bytes of tables) or a hash for
 * the rest. When the arena is full everything is forgotten and filled again. A tree's
 * leaves are listed in visiting order first and their memory fetched for all of them
 * before the first is added: looking up 4,650 leaves a row (fraud-gbt 2) is bound by the
 * memory's latency, not by the arithmetic.
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
#define MEMO_BITS 16                       /* hash slots (leaves deeper than DIRECT_DEPTH) */
#endif
#define MEMO_SLOTS (1u << MEMO_BITS)
#ifndef ARENA_BITS
#define ARENA_BITS 21
#endif
#define ARENA_TERMS (1u << ARENA_BITS)     /* remembered terms before the memory is reset */
#define MAX_MEMO_DEPTH 32                  /* deeper leaves are computed every time */
#define DIRECT_DEPTH 12                    /* leaves this shallow: a table per leaf, */
#define DIRECT_BUDGET (16u << 20)          /* indexed by the pattern, up to these bytes */

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
    uint64_t bits;                          /* the pattern: bit k, hot at ancestor k */
    int32_t leaf, depth;
} Visit;

typedef struct {
    int32_t nodes, leaves;                  /* internal nodes, leaves */
    int32_t node0, leaf0;                   /* offsets into the flat arrays */
    int32_t depth;                          /* the deepest leaf's depth */
    int32_t plain;                          /* every split: no missing-value handling */
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
    /* memory: a table per shallow leaf (pattern -> 1 + its terms' start in the arena, 0:
       not seen), and open addressing (key -> terms) for the others */
    uint32_t **direct;                      /* per leaf of the model, allocated when used */
    int32_t leaves_total;
    int32_t *leaf_depth;                    /* per leaf of the model: its ancestors */
    size_t direct_bytes;
    Slot *slots;
    uint32_t used;
    double *terms;                          /* the arena: a leaf's term values, in path order */
    int32_t *leaf_unique;                   /* per leaf: how many terms (-1: not yet known) */
    int32_t *leaf_feature0;                 /* per leaf: where its terms' inputs start in */
    int32_t *leaf_features;                 /* these: the same for every pattern */
    uint32_t arena_used;
    uint32_t arena_terms;                   /* the arena's size (ARENA_TERMS) */
    size_t direct_budget;                   /* DIRECT_BUDGET */
    /* per-call scratch */
    int32_t *hot;                           /* per internal node of the current tree */
    int32_t *stack_node, *stack_child;
    Visit *order;                           /* the current tree's leaves, in visiting order */
    Visit *pending;                         /* (order_leaves' stack) */
    PathElement *path;
    double *scratch;
    int32_t *scratch_features;
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
    if (m->direct) {
        for (int g = 0; g < m->leaves_total; g++) PyMem_Free(m->direct[g]);
        PyMem_Free(m->direct);
    }
    PyMem_Free(m->leaf_depth);
    PyMem_Free(m->slots);
    PyMem_Free(m->terms);
    PyMem_Free(m->hot);
    PyMem_Free(m->order);
    PyMem_Free(m->pending);
    PyMem_Free(m->stack_node);
    PyMem_Free(m->stack_child);
    PyMem_Free(m->path);
    PyMem_Free(m->scratch);
    PyMem_Free(m->scratch_features);
    PyMem_Free(m->leaf_unique);
    PyMem_Free(m->leaf_feature0);
    PyMem_Free(m->leaf_features);
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
 * one path (its copies of the path change no value). Returns how many were written: the
 * values, and the inputs they belong to (which depend on the tree alone: unwinding and
 * extending move inputs whatever the fractions). */
static int leaf_terms(Model *m, const Tree *t, int leaf, int depth, double *out,
                      int32_t *features) {
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
        features[i - 1] = p[i].feature;
        out[i - 1] = w * (p[i].one - p[i].zero) * leaf_value;
    }
    return unique;
}

static inline size_t direct_size(int depth) { return sizeof(uint32_t) << depth; }

static void memo_reset(Model *m) {
    for (int ti = 0; ti < m->trees_n; ti++) {
        const Tree *t = &m->trees[ti];
        for (int l = 0; l < t->leaves; l++) {
            uint32_t *table = m->direct[t->leaf0 + l];
            if (table) memset(table, 0, direct_size(m->leaf_depth[t->leaf0 + l]));
        }
    }
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

/* Add the remembered terms at ``start`` of global leaf ``g`` to phi, one by one. */
static inline void add_terms(const Model *m, int g, uint32_t start, double *phi) {
    const double *values = m->terms + start;
    const int32_t *features = m->leaf_features + m->leaf_feature0[g];
    const int n = m->leaf_unique[g];
    for (int i = 0; i < n; i++) phi[features[i]] += values[i];
}

/* The leaf's terms computed into the arena (reset first when full): their start. */
static uint32_t remember(Model *m, const Tree *t, int leaf, int depth) {
    if (m->arena_used + (uint32_t)depth + 1 > m->arena_terms) memo_reset(m);
    const int g = t->leaf0 + leaf;
    const uint32_t start = m->arena_used;
    m->leaf_unique[g] = leaf_terms(m, t, leaf, depth, m->terms + start,
                                   m->leaf_features + m->leaf_feature0[g]);
    m->arena_used += (uint32_t)m->leaf_unique[g];
    return start;
}

/* The path to the leaf of pattern ``bits`` into stack[0..depth), for ``leaf_terms``. */
static void fill_stack(Model *m, const Tree *t, uint64_t bits, int depth) {
    int node = 0;
    for (int k = 0; k < depth; k++) {
        const int hot = m->hot[node];
        const int left = m->left[t->node0 + node];
        const int cold = (hot == left ? m->right[t->node0 + node] : left);
        const int child = ((bits >> k) & 1) ? hot : cold;
        m->stack_node[k] = node;
        m->stack_child[k] = child;
        node = child;
    }
}

/* Add leaf ``leaf``'s terms to phi, from memory when this pattern was seen; ``stacked``:
 * stack[0..depth) already holds its path (else it is rebuilt from ``bits`` when needed). */
static void add_leaf(Model *m, int ti, const Tree *t, int leaf, int depth, uint64_t bits,
                     int stacked, double *phi) {
    if (depth <= DIRECT_DEPTH) {
        const int g = t->leaf0 + leaf;
        uint32_t *table = m->direct[g];
        if (table == NULL && m->direct_bytes + direct_size(depth) <= m->direct_budget) {
            table = m->direct[g] = PyMem_Calloc(1, direct_size(depth));
            if (table) m->direct_bytes += direct_size(depth);
        }
        if (table) {
            const uint32_t at = table[bits];
            if (at) {
                m->hits++;
                add_terms(m, g, at - 1, phi);
                return;
            }
            m->misses++;
            if (!stacked) fill_stack(m, t, bits, depth);
            const uint32_t start = remember(m, t, leaf, depth); /* may reset the table */
            table[bits] = start + 1;
            add_terms(m, g, start, phi);
            return;
        }
    }
    if (!stacked) fill_stack(m, t, bits, depth); /* (cheap: no more lookups below) */
    if (depth > MAX_MEMO_DEPTH) {
        const int n = leaf_terms(m, t, leaf, depth, m->scratch, m->scratch_features);
        for (int i = 0; i < n; i++) phi[m->scratch_features[i]] += m->scratch[i];
        return;
    }
    const uint64_t key = (((uint64_t)ti << 48) | ((uint64_t)leaf << 32) | bits) + 1;
    uint32_t slot = (uint32_t)(mix(key) & (MEMO_SLOTS - 1));
    while (m->slots[slot].key != 0) {
        if (m->slots[slot].key == key) {
            m->hits++;
            add_terms(m, t->leaf0 + leaf, m->slots[slot].start, phi);
            return;
        }
        slot = (slot + 1) & (MEMO_SLOTS - 1);
    }
    m->misses++;
    if (m->used * 2 >= MEMO_SLOTS) memo_reset(m);
    const uint32_t start = remember(m, t, leaf, depth); /* may reset the memory */
    slot = (uint32_t)(mix(key) & (MEMO_SLOTS - 1));
    while (m->slots[slot].key != 0) slot = (slot + 1) & (MEMO_SLOTS - 1);
    m->slots[slot].key = key;
    m->slots[slot].start = start;
    m->used++;
    add_terms(m, t->leaf0 + leaf, start, phi);
}

/* Tree::TreeSHAP's visiting order: depth first, the hot child before the cold one. */
static void visit(Model *m, int ti, const Tree *t, int node, int depth, uint64_t bits,
                  double *phi) {
    if (node < 0) {
        add_leaf(m, ti, t, ~node, depth, bits, 1, phi);
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

/* The same order without recursion's work at the leaves: the leaves' patterns, so that
 * their memory can be fetched for all of them before the first is added (trees of depth
 * 63 at most: the pattern is a 64-bit word). */
static int order_leaves(Model *m, const Tree *t) {
    int k = 0, top = 0;
    Visit *pending = m->pending;             /* cold children still to visit */
    int node = 0, depth = 0;
    uint64_t bits = 0;
    for (;;) {
        while (node >= 0) {
            const int hot = m->hot[node];
            const int left = m->left[t->node0 + node];
            pending[top].leaf = (hot == left ? m->right[t->node0 + node] : left);
            pending[top].depth = depth + 1;
            pending[top].bits = bits;
            top++;
            bits |= (uint64_t)1 << depth;
            node = hot;
            depth++;
        }
        m->order[k].leaf = ~node;
        m->order[k].depth = depth;
        m->order[k].bits = bits;
        k++;
        if (top == 0) return k;
        top--;
        node = pending[top].leaf; /* here: a node, not a leaf */
        depth = pending[top].depth;
        bits = pending[top].bits;
    }
}

static void tree_contributions(Model *m, int ti, const Tree *t, double *phi) {
    if (t->depth > 63) {
        visit(m, ti, t, 0, 0, 0, phi);
        return;
    }
    const int n = order_leaves(m, t);
    for (int k = 0; k < n; k++) { /* the tables' entries, all at once */
        const Visit *v = &m->order[k];
        const uint32_t *table = v->depth <= DIRECT_DEPTH ? m->direct[t->leaf0 + v->leaf] : NULL;
        if (table) __builtin_prefetch(&table[v->bits]);
    }
    for (int k = 0; k < n; k++) { /* then the terms they point to */
        const Visit *v = &m->order[k];
        const uint32_t *table = v->depth <= DIRECT_DEPTH ? m->direct[t->leaf0 + v->leaf] : NULL;
        if (table && table[v->bits]) __builtin_prefetch(m->terms + (table[v->bits] - 1));
    }
    for (int k = 0; k < n; k++) {
        const Visit *v = &m->order[k];
        add_leaf(m, ti, t, v->leaf, v->depth, v->bits, 0, phi);
    }
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
    double *plain = features + m->features; /* as a split without missing handling reads it */
    for (int j = 0; j < m->features; j++) {
        const double v = (double)row[j];
        /* the C API keeps a value only when |v| > kZeroThreshold or NaN; others read 0 */
        features[j] = (fabs(v) > ZERO_THRESHOLD || isnan(v)) ? v : 0.0;
        plain[j] = isnan(features[j]) ? 0.0f : features[j];
    }
    memset(phi, 0, sizeof(double) * (size_t)(m->features + 1));
    for (int ti = 0; ti < m->trees_n; ti++) {
        const Tree *t = &m->trees[ti];
        phi[m->features] += t->expected;
        if (t->leaves <= 1) continue;
        if (t->plain) {
            const int32_t *split = m->split_feature + t->node0;
            const double *threshold = m->threshold + t->node0;
            const int32_t *left = m->left + t->node0, *right = m->right + t->node0;
            for (int node = 0; node < t->nodes; node++) {
                m->hot[node] = plain[split[node]] <= threshold[node] ? left[node] : right[node];
            }
        } else {
            for (int node = 0; node < t->nodes; node++) {
                m->hot[node] = decision(m, t, node, features[m->split_feature[t->node0 + node]]);
            }
        }
        tree_contributions(m, ti, t, phi);
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

static int tree_depth(Model *m, const Tree *t, int node, int depth) {
    if (node < 0) {
        m->leaf_depth[t->leaf0 + ~node] = depth;
        return depth;
    }
    if (depth > t->nodes) return -1; /* a cycle: not a tree */
    int a = tree_depth(m, t, m->left[t->node0 + node], depth + 1);
    int b = tree_depth(m, t, m->right[t->node0 + node], depth + 1);
    if (a < 0 || b < 0) return -1;
    return a > b ? a : b;
}

/* model(features, node_counts, leaf_counts, split_feature, threshold, decision_type, left,
 *       right, internal_count, leaf_value, leaf_count[, arena_terms, direct_budget]): arrays
 *       as bytes (int32, float64, int8), trees concatenated; the memory's sizes (tests make
 *       them small, to reset it often). */
static PyObject *model_new(PyObject *self, PyObject *args) {
    int features;
    PyObject *node_counts, *leaf_counts, *split, *threshold, *dtype, *left, *right, *icount,
        *lvalue, *lcount;
    unsigned int arena_terms = ARENA_TERMS;
    unsigned long direct_budget = DIRECT_BUDGET;
    if (!PyArg_ParseTuple(args, "iOOOOOOOOOO|Ik", &features, &node_counts, &leaf_counts, &split,
                          &threshold, &dtype, &left, &right, &icount, &lvalue, &lcount,
                          &arena_terms, &direct_budget)) {
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
    m->leaves_total = total_leaves;
    m->leaf_depth = PyMem_Calloc((size_t)total_leaves + 1, sizeof(int32_t));
    m->direct = PyMem_Calloc((size_t)total_leaves + 1, sizeof(uint32_t *));
    if (m->leaf_depth == NULL || m->direct == NULL) {
        model_free(m);
        return PyErr_NoMemory();
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
        t->plain = 1;
        for (int n = 0; n < t->nodes; n++) {
            if ((m->decision_type[t->node0 + n] >> 2) & 3) t->plain = 0;
        }
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
    /* room for the longest path at least: a reset must make room for any leaf */
    m->arena_terms = arena_terms > deep + 1 ? arena_terms : (uint32_t)deep + 1;
    m->direct_budget = direct_budget;
    m->terms = PyMem_Calloc(m->arena_terms, sizeof(double));
    m->leaf_unique = PyMem_Calloc((size_t)m->leaves_total + 1, sizeof(int32_t));
    m->leaf_feature0 = PyMem_Calloc((size_t)m->leaves_total + 1, sizeof(int32_t));
    size_t paths = 0;
    for (int g = 0; m->leaf_feature0 && g < m->leaves_total; g++) {
        m->leaf_feature0[g] = (int32_t)paths;
        paths += (size_t)m->leaf_depth[g] + 1;
    }
    m->leaf_features = PyMem_Calloc(paths + 1, sizeof(int32_t));
    m->hot = PyMem_Calloc((size_t)widest, sizeof(int32_t));
    m->order = PyMem_Calloc((size_t)widest + 2, sizeof(Visit));
    m->pending = PyMem_Calloc(deep + 1, sizeof(Visit));
    m->stack_node = PyMem_Calloc(deep, sizeof(int32_t));
    m->stack_child = PyMem_Calloc(deep, sizeof(int32_t));
    m->path = PyMem_Calloc(deep, sizeof(PathElement));
    m->scratch = PyMem_Calloc(deep, sizeof(double));
    m->scratch_features = PyMem_Calloc(deep, sizeof(int32_t));
    if (!m->slots || !m->terms || !m->hot || !m->order || !m->pending || !m->leaf_unique ||
        !m->leaf_feature0 || !m->leaf_features || !m->scratch_features || !m->stack_node || !m->stack_child || !m->path ||
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
    double *features = PyMem_Malloc(sizeof(double) * 2 * (size_t)width);
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
