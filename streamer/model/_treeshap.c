/* LightGBM's TreeSHAP, the same arithmetic per leaf, with each tree's sums remembered.
 *
 * ``treeshap.py`` reads the trees out of LightGBM's model text and hands them here as flat
 * arrays. ``contributions`` then computes what ``LGBM_BoosterPredictForMat`` with
 * ``C_API_PREDICT_CONTRIB`` computes (LightGBM's ``GBDT::PredictContrib`` and
 * ``Tree::TreeSHAP``) up to rounding. The terms a leaf adds to the contributions
 * (``w * (one - zero) * leaf_value`` per input on the leaf's path) depend only on which
 * way the row goes at each of the leaf's ancestors (its "hot" child or not), so what a
 * whole tree adds depends only on which way the row goes at each of its nodes: its
 * pattern, one bit per node. Two memories:
 *
 * - per (tree, pattern), the tree's sums over the inputs it splits on, and likewise per
 *   (tree, node, the pattern's bits at the node's ancestors and in its subtree) for each
 *   subtree of SMALL_LEAVES leaves or fewer: a tree first seen with a pattern is summed
 *   from its small subtrees (most of them seen before) and the leaves above them, hot
 *   child before cold, each to zeros. A row adds the trees' sums to its contributions,
 *   trees in order. Every value is a function of what it is remembered by, so a row's
 *   bytes are a function of the row: not of the batch, nor of what is remembered.
 *   LightGBM adds the terms to the row one by one; the difference is rounding
 *   (``treeshap.py``'s bound). The slots and sums are fetched for every tree of the row
 *   (for every small subtree of a tree not found) before the first is added.
 * - per (tree, leaf, pattern of its ancestors), the leaf's terms, computed as LightGBM
 *   computes them (the path's weights, O(depth^2) per leaf). Their values in one arena (a
 *   leaf's inputs are the same for every pattern, kept once per leaf), found through a
 *   table per leaf indexed by the pattern (leaves up to DIRECT_DEPTH deep, DIRECT_BUDGET
 *   bytes of tables) or a hash for the rest.
 *
 * Each memory is bounded (about 115 MB with the defaults below: the trees' sums for about
 * 14,000 flagged rows of a drain need most of it): when full, it is forgotten and filled
 * again. ``contributions`` runs without the GIL (the model's lock keeps one call at a time
 * in its memory). Only plain numerical trees are taken (``treeshap.py`` refuses the rest and LightGBM
 * serves them). ``tests/unit/test_treeshap.py`` compares with LightGBM on generated rows.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#ifndef MEMO_BITS
#define MEMO_BITS 16                       /* hash slots (leaves deeper than DIRECT_DEPTH) */
#endif
#define MEMO_SLOTS (1u << MEMO_BITS)
#ifndef ARENA_BITS
#define ARENA_BITS 20
#endif
#define ARENA_TERMS (1u << ARENA_BITS)     /* remembered terms before the memory is reset */
#define MAX_MEMO_DEPTH 32                  /* deeper leaves are computed every time */
#define DIRECT_DEPTH 12                    /* leaves this shallow: a table per leaf, */
#define DIRECT_BUDGET (8u << 20)           /* indexed by the pattern, up to these bytes */
#define TREE_SLOTS (1u << 21)              /* whole trees: slots (half of them used at most) */
#define TREE_VALUES (1u << 23)             /* and their sums before that memory is reset */
#ifndef SMALL_LEAVES
#define SMALL_LEAVES 8                     /* subtrees this small remembered too */
#endif

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
    int32_t nf;                             /* its distinct split inputs */
    int32_t fr0, frn;                       /* its largest kept subtrees: frontier[fr0..] */
    int32_t whole;                          /* remembered whole (nodes <= 64: a 64-bit pattern) */
    double expected;                        /* Tree::ExpectedValue() */
} Tree;

typedef struct {
    uint64_t bits;                          /* the pattern (bit n: node n sends left), masked */
    uint32_t tree;                          /* tree + 1, node << 17; 0: empty */
    uint32_t start;                         /* its sums in tree_values */
} TreeSlot;

#define NOT_FOUND 0xffffffffu

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
    uint32_t **direct;                      /* per leaf of the model, taken when used */
    uint32_t *direct_pool;                  /* from here (direct_budget bytes) */
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
    /* the whole trees' memory: (tree, pattern) -> the tree's sums over its inputs */
    uint64_t *node_mask;                    /* per node: its ancestors and its subtree's nodes */
    int8_t *node_kept;                      /* per node: its sums remembered (root, small) */
    int32_t *node_f0, *node_nf;             /* per kept node: the inputs split on in its mask, */
    int32_t *node_features;                 /* node_features[node_f0..], in input order */
    int32_t *frontier;                      /* per tree: the kept nodes below unkept ones */
    double base;                            /* the expected values' sum, in LightGBM's order */
    TreeSlot *tree_slots;
    uint32_t tree_slots_n, tree_used;       /* slots (a power of 2), taken */
    double *tree_values;
    uint32_t tree_values_n, tree_values_used;
    uint32_t epoch;                         /* bumped at each reset of that memory */
    uint64_t *patterns;                     /* per tree: the current row's pattern */
    uint32_t *found;                        /* per tree: its sums' start, or NOT_FOUND */
    double *level_sums;                     /* [depth][features]: nodes' sums as computed */
    uint64_t tree_hits, tree_misses;
    PyThread_type_lock lock;                /* one call at a time (the GIL is released) */
} Model;

static void model_free(Model *m) {
    if (m == NULL) return;
    PyMem_RawFree(m->trees);
    PyMem_RawFree(m->split_feature);
    PyMem_RawFree(m->left);
    PyMem_RawFree(m->right);
    PyMem_RawFree(m->internal_count);
    PyMem_RawFree(m->leaf_count);
    PyMem_RawFree(m->decision_type);
    PyMem_RawFree(m->threshold);
    PyMem_RawFree(m->leaf_value);
    PyMem_RawFree(m->direct);
    PyMem_RawFree(m->direct_pool);
    PyMem_RawFree(m->leaf_depth);
    PyMem_RawFree(m->slots);
    PyMem_RawFree(m->terms);
    PyMem_RawFree(m->hot);
    PyMem_RawFree(m->order);
    PyMem_RawFree(m->pending);
    PyMem_RawFree(m->stack_node);
    PyMem_RawFree(m->stack_child);
    PyMem_RawFree(m->path);
    PyMem_RawFree(m->scratch);
    PyMem_RawFree(m->scratch_features);
    PyMem_RawFree(m->leaf_unique);
    PyMem_RawFree(m->leaf_feature0);
    PyMem_RawFree(m->leaf_features);
    PyMem_RawFree(m->node_mask);
    PyMem_RawFree(m->node_kept);
    PyMem_RawFree(m->node_f0);
    PyMem_RawFree(m->node_nf);
    PyMem_RawFree(m->node_features);
    PyMem_RawFree(m->frontier);
    PyMem_RawFree(m->tree_slots);
    PyMem_RawFree(m->tree_values);
    PyMem_RawFree(m->patterns);
    PyMem_RawFree(m->found);
    PyMem_RawFree(m->level_sums);
    if (m->lock) PyThread_free_lock(m->lock);
    PyMem_RawFree(m);
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
            table = m->direct[g] = m->direct_pool + m->direct_bytes / sizeof(uint32_t);
            m->direct_bytes += direct_size(depth);
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

/* Tree::TreeSHAP's visiting order: depth first, the hot child before the cold one.
 * ``absolute``: each term's |value| added, computed afresh (``magnitudes``). */
static void visit(Model *m, int ti, const Tree *t, int node, int depth, uint64_t bits,
                  int absolute, double *phi) {
    if (node < 0 && absolute) {
        const int n = leaf_terms(m, t, ~node, depth, m->scratch, m->scratch_features);
        for (int i = 0; i < n; i++) phi[m->scratch_features[i]] += fabs(m->scratch[i]);
        return;
    }
    if (node < 0) {
        add_leaf(m, ti, t, ~node, depth, bits, 1, phi);
        return;
    }
    const int hot = m->hot[node];
    const int left = m->left[t->node0 + node];
    const int cold = (hot == left ? m->right[t->node0 + node] : left);
    m->stack_node[depth] = node;
    m->stack_child[depth] = hot;
    const uint64_t hot_bits = depth < 64 ? bits | ((uint64_t)1 << depth) : bits;
    visit(m, ti, t, hot, depth + 1, hot_bits, absolute, phi);
    m->stack_node[depth] = node;
    m->stack_child[depth] = cold;
    visit(m, ti, t, cold, depth + 1, bits, absolute, phi);
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
        visit(m, ti, t, 0, 0, 0, 0, phi);
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

/* The row's inputs as LightGBM's C API reads them (``features``), and as a split without
 * missing-value handling reads them (``plain``). */
static void row_inputs(const Model *m, const float *row, double *features, double *plain) {
    for (int j = 0; j < m->features; j++) {
        const double v = (double)row[j];
        /* the C API keeps a value only when |v| > kZeroThreshold or NaN; others read 0 */
        features[j] = (fabs(v) > ZERO_THRESHOLD || isnan(v)) ? v : 0.0;
        plain[j] = isnan(features[j]) ? 0.0f : features[j];
    }
}

/* The way the row goes at each node of the tree, into m->hot (the hot child). */
static void hot_children(Model *m, const Tree *t, const double *features, const double *plain) {
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
}

/* The tree's whole pattern (nodes <= 64): bit n set when node n sends the row left. */
static inline uint64_t tree_pattern(const Model *m, const Tree *t, const double *features,
                                    const double *plain) {
    uint64_t bits = 0;
    const int32_t *split = m->split_feature + t->node0;
    const int32_t *left = m->left + t->node0;
    if (t->plain) {
        const double *threshold = m->threshold + t->node0;
        for (int node = 0; node < t->nodes; node++) {
            bits |= (uint64_t)(plain[split[node]] <= threshold[node]) << node;
        }
    } else {
        for (int node = 0; node < t->nodes; node++) {
            const int hot = decision(m, t, node, features[split[node]]);
            bits |= (uint64_t)(hot == left[node]) << node;
        }
    }
    return bits;
}

static inline uint32_t tree_hash(const Model *m, uint32_t id, uint64_t bits) {
    return (uint32_t)mix(bits + (uint64_t)id * 0x9e3779b97f4a7c15ULL) & (m->tree_slots_n - 1);
}

/* The slot holding (id: tree + 1 and node, pattern), or the empty one where it would go. */
static inline uint32_t tree_probe(const Model *m, uint32_t id, uint64_t bits) {
    uint32_t s = tree_hash(m, id, bits);
    for (;;) {
        const TreeSlot *x = &m->tree_slots[s];
        if (x->tree == 0 || (x->tree == id && x->bits == bits)) return s;
        s = (s + 1) & (m->tree_slots_n - 1);
    }
}

static void tree_memo_reset(Model *m) {
    memset(m->tree_slots, 0, sizeof(TreeSlot) * m->tree_slots_n);
    m->tree_used = 0;
    m->tree_values_used = 0;
    m->epoch++;
}

/* Room for ``n`` sums and a slot, the memory reset when there is none. */
static uint32_t tree_room(Model *m, int32_t n) {
    if (m->tree_values_used + (uint32_t)n > m->tree_values_n ||
        (m->tree_used + 1) * 2 > m->tree_slots_n) {
        tree_memo_reset(m);
    }
    const uint32_t start = m->tree_values_used;
    m->tree_values_used += (uint32_t)n;
    return start;
}

static inline void add_sums(const Model *m, int at, const double *values, double *acc) {
    const int32_t *inputs = m->node_features + m->node_f0[at];
    for (int k = 0; k < m->node_nf[at]; k++) acc[inputs[k]] += values[k];
}

/* The memory of the tree's largest kept subtrees for the pattern, fetched before it is
 * read: their slots, then their sums (lookups that wait on each other otherwise). */
static void fetch_frontier(const Model *m, int ti, const Tree *t, uint64_t bits) {
    const int32_t *nodes = m->frontier + t->fr0;
    for (int k = 0; k < t->frn; k++) {
        const uint32_t id = ((uint32_t)ti + 1) | ((uint32_t)nodes[k] << 17);
        __builtin_prefetch(&m->tree_slots[tree_hash(m, id, bits & m->node_mask[t->node0 + nodes[k]])]);
    }
    for (int k = 0; k < t->frn; k++) {
        const uint32_t id = ((uint32_t)ti + 1) | ((uint32_t)nodes[k] << 17);
        const uint64_t key = bits & m->node_mask[t->node0 + nodes[k]];
        const TreeSlot *x = &m->tree_slots[tree_probe(m, id, key)];
        if (x->tree) __builtin_prefetch(m->tree_values + x->start);
    }
}

/* Add to ``acc`` the terms of the leaves under ``node`` (at ``depth``; ``path``: the
 * per-leaf memory's pattern of its path, bit k: hot at ancestor k; stack[0..depth) its
 * path) for the tree's pattern ``bits`` (m->hot set from it), in a fixed order: the hot
 * child's, then the cold child's. A kept node's (the root, a subtree of SMALL_LEAVES or
 * fewer) are summed to zeros first and remembered per (tree, node, the pattern's bits at
 * the node's ancestors and in its subtree: all they depend on), then added from there; a
 * leaf's terms come from the per-leaf memory. So what is added is a function of (tree,
 * pattern), whatever was remembered. Returns a kept node's start in tree_values. */
static uint32_t add_subtree(Model *m, int ti, const Tree *t, int node, int depth,
                            uint64_t path, uint64_t bits, double *acc) {
    const int at = t->node0 + node;
    const int kept = m->node_kept[at];
    const uint64_t key = bits & m->node_mask[at];
    const uint32_t id = ((uint32_t)ti + 1) | ((uint32_t)node << 17);
    if (kept) {
        const TreeSlot *found = &m->tree_slots[tree_probe(m, id, key)];
        if (found->tree) {
            m->tree_hits++;
            add_sums(m, at, m->tree_values + found->start, acc);
            return found->start;
        }
        m->tree_misses++;
    }
    double *sums = acc;
    if (kept) {
        sums = m->level_sums + (size_t)depth * (size_t)m->features;
        memset(sums, 0, sizeof(double) * (size_t)m->features);
    }
    const int hot = m->hot[node];
    const int left = m->left[at];
    const int children[2] = {hot, hot == left ? m->right[at] : left};
    for (int c = 0; c < 2; c++) {
        const int child = children[c];
        const uint64_t child_path = c == 0 ? path | ((uint64_t)1 << depth) : path;
        m->stack_node[depth] = node;
        m->stack_child[depth] = child;
        if (child < 0) {
            add_leaf(m, ti, t, ~child, depth + 1, child_path, 1, sums);
        } else {
            add_subtree(m, ti, t, child, depth + 1, child_path, bits, sums);
        }
    }
    if (!kept) return NOT_FOUND;
    const uint32_t start = tree_room(m, m->node_nf[at]); /* may reset: nothing held from it */
    const int32_t *inputs = m->node_features + m->node_f0[at];
    for (int k = 0; k < m->node_nf[at]; k++) m->tree_values[start + k] = sums[inputs[k]];
    TreeSlot *slot = &m->tree_slots[tree_probe(m, id, key)];
    slot->bits = key;
    slot->tree = id;
    slot->start = start;
    m->tree_used++;
    add_sums(m, at, m->tree_values + start, acc);
    return start;
}

/* One row: phi = base, then each tree's sums added in tree order. A tree's sums are a
 * function of (tree, pattern) alone, so a row's bytes do not depend on what is remembered.
 * The patterns' slots and sums are fetched for every tree before the first is added. */
static void row_contributions(Model *m, const float *row, double *features, double *phi) {
    double *plain = features + m->features;
    row_inputs(m, row, features, plain);
    memset(phi, 0, sizeof(double) * (size_t)m->features);
    phi[m->features] = m->base;
    for (int ti = 0; ti < m->trees_n; ti++) {
        const Tree *t = &m->trees[ti];
        if (!t->whole) continue;
        const uint64_t bits = tree_pattern(m, t, features, plain);
        m->patterns[ti] = bits;
        __builtin_prefetch(&m->tree_slots[tree_hash(m, (uint32_t)ti + 1, bits)]);
    }
    for (int ti = 0; ti < m->trees_n; ti++) {
        if (!m->trees[ti].whole) continue;
        const TreeSlot *x = &m->tree_slots[tree_probe(m, (uint32_t)ti + 1, m->patterns[ti])];
        m->found[ti] = x->tree ? x->start : NOT_FOUND;
        if (x->tree) __builtin_prefetch(m->tree_values + x->start);
    }
    const uint32_t epoch = m->epoch;
    for (int ti = 0; ti < m->trees_n; ti++) {
        const Tree *t = &m->trees[ti];
        if (t->leaves <= 1) continue;
        if (!t->whole) { /* too many nodes for a pattern word: leaf by leaf, into phi */
            hot_children(m, t, features, plain);
            tree_contributions(m, ti, t, phi);
            continue;
        }
        uint32_t start = m->found[ti];
        if (m->epoch != epoch) { /* a reset since the lookups above: look again */
            const TreeSlot *x = &m->tree_slots[tree_probe(m, (uint32_t)ti + 1, m->patterns[ti])];
            start = x->tree ? x->start : NOT_FOUND;
        }
        if (start != NOT_FOUND) {
            m->tree_hits++;
            add_sums(m, t->node0, m->tree_values + start, phi);
            continue;
        }
        const uint64_t bits = m->patterns[ti]; /* from its subtrees' and leaves' memory */
        const int32_t *left = m->left + t->node0, *right = m->right + t->node0;
        for (int node = 0; node < t->nodes; node++) {
            m->hot[node] = ((bits >> node) & 1) ? left[node] : right[node];
        }
        fetch_frontier(m, ti, t, bits);
        add_subtree(m, ti, t, 0, 0, 0, bits, phi);
    }
}

/* Each input's sum of |term| over the row's leaves (no memory: a load-time check's bound),
 * the base column 0. */
static void row_magnitudes(Model *m, const float *row, double *features, double *out) {
    double *plain = features + m->features;
    row_inputs(m, row, features, plain);
    memset(out, 0, sizeof(double) * (size_t)(m->features + 1));
    for (int ti = 0; ti < m->trees_n; ti++) {
        const Tree *t = &m->trees[ti];
        if (t->leaves <= 1) continue;
        hot_children(m, t, features, plain);
        visit(m, ti, t, 0, 0, 0, 1, out);
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
    *dest = PyMem_RawMalloc(view.len > 0 ? (size_t)view.len : 1);
    if (*dest == NULL) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(*dest, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return 0;
}

/* node_mask of the nodes under ``node`` (whose ancestors are ``above``), and whether they
 * are small enough to be kept; returns the nodes of its subtree (64 nodes at most). */
static uint64_t node_masks(Model *m, const Tree *t, int node, uint64_t above) {
    if (node < 0) return 0;
    const uint64_t here = above | ((uint64_t)1 << node);
    const uint64_t below = ((uint64_t)1 << node) |
                           node_masks(m, t, m->left[t->node0 + node], here) |
                           node_masks(m, t, m->right[t->node0 + node], here);
    m->node_mask[t->node0 + node] = above | below;
    m->node_kept[t->node0 + node] = node == 0 || __builtin_popcountll(below) + 1 <= SMALL_LEAVES;
    return below;
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
    unsigned int tree_slots = TREE_SLOTS, tree_values = TREE_VALUES;
    if (!PyArg_ParseTuple(args, "iOOOOOOOOOO|IkII", &features, &node_counts, &leaf_counts,
                          &split, &threshold, &dtype, &left, &right, &icount, &lvalue, &lcount,
                          &arena_terms, &direct_budget, &tree_slots, &tree_values)) {
        return NULL;
    }
    Py_buffer nodes_view, leaves_view;
    if (PyObject_GetBuffer(node_counts, &nodes_view, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(leaf_counts, &leaves_view, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&nodes_view);
        return NULL;
    }
    Model *m = PyMem_RawCalloc(1, sizeof(Model));
    if (m == NULL) {
        PyBuffer_Release(&nodes_view);
        PyBuffer_Release(&leaves_view);
        return PyErr_NoMemory();
    }
    m->features = features;
    m->trees_n = (int32_t)(nodes_view.len / 4);
    int ok = features > 0 && nodes_view.len == leaves_view.len && nodes_view.len % 4 == 0 &&
             m->trees_n < 65535;
    m->trees = PyMem_RawCalloc((size_t)m->trees_n + 1, sizeof(Tree));
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
    m->leaf_depth = PyMem_RawCalloc((size_t)total_leaves + 1, sizeof(int32_t));
    m->direct = PyMem_RawCalloc((size_t)total_leaves + 1, sizeof(uint32_t *));
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
    m->slots = PyMem_RawCalloc(MEMO_SLOTS, sizeof(Slot));
    /* room for the longest path at least: a reset must make room for any leaf */
    m->arena_terms = arena_terms > deep + 1 ? arena_terms : (uint32_t)deep + 1;
    m->direct_budget = direct_budget;
    m->direct_pool = PyMem_RawCalloc(m->direct_budget + 1, 1);
    m->terms = PyMem_RawCalloc(m->arena_terms, sizeof(double));
    m->leaf_unique = PyMem_RawCalloc((size_t)m->leaves_total + 1, sizeof(int32_t));
    m->leaf_feature0 = PyMem_RawCalloc((size_t)m->leaves_total + 1, sizeof(int32_t));
    size_t paths = 0;
    for (int g = 0; m->leaf_feature0 && g < m->leaves_total; g++) {
        m->leaf_feature0[g] = (int32_t)paths;
        paths += (size_t)m->leaf_depth[g] + 1;
    }
    m->leaf_features = PyMem_RawCalloc(paths + 1, sizeof(int32_t));
    m->hot = PyMem_RawCalloc((size_t)widest, sizeof(int32_t));
    m->order = PyMem_RawCalloc((size_t)widest + 2, sizeof(Visit));
    m->pending = PyMem_RawCalloc(deep + 1, sizeof(Visit));
    m->stack_node = PyMem_RawCalloc(deep, sizeof(int32_t));
    m->stack_child = PyMem_RawCalloc(deep, sizeof(int32_t));
    m->path = PyMem_RawCalloc(deep, sizeof(PathElement));
    m->scratch = PyMem_RawCalloc(deep, sizeof(double));
    m->scratch_features = PyMem_RawCalloc(deep, sizeof(int32_t));
    /* the whole trees' memory: the kept nodes, their masks and inputs; the base */
    int32_t widest_inputs = 1;
    m->node_mask = PyMem_RawCalloc((size_t)total_nodes + 1, sizeof(uint64_t));
    m->node_kept = PyMem_RawCalloc((size_t)total_nodes + 1, sizeof(int8_t));
    m->node_f0 = PyMem_RawCalloc((size_t)total_nodes + 1, sizeof(int32_t));
    m->node_nf = PyMem_RawCalloc((size_t)total_nodes + 1, sizeof(int32_t));
    m->node_features = PyMem_RawCalloc((size_t)total_nodes * (size_t)features + 1,
                                       sizeof(int32_t));
    int32_t listed = 0, frontier_n = 0;
    m->frontier = PyMem_RawCalloc((size_t)total_nodes + 1, sizeof(int32_t));
    for (int ti = 0; m->node_features && m->node_nf && m->node_kept && m->frontier &&
                     ti < m->trees_n;
         ti++) {
        Tree *t = &m->trees[ti];
        m->base += t->expected; /* Tree::PredictContrib: output[features] += ExpectedValue() */
        t->whole = t->leaves > 1 && t->nodes <= 64;
        if (!t->whole) continue;
        node_masks(m, t, 0, 0);
        for (int n = 0; n < t->nodes; n++) {
            const int at = t->node0 + n;
            if (!m->node_kept[at]) continue;
            m->node_f0[at] = listed;
            for (int j = 0; j < features; j++) { /* in input order */
                for (int k = 0; k < t->nodes; k++) {
                    if (((m->node_mask[at] >> k) & 1) && m->split_feature[t->node0 + k] == j) {
                        m->node_features[listed + m->node_nf[at]++] = j;
                        break;
                    }
                }
            }
            listed += m->node_nf[at];
        }
        t->nf = m->node_nf[t->node0];
        if (t->nf > widest_inputs) widest_inputs = t->nf;
        t->fr0 = frontier_n;
        for (int n = 0; n < t->nodes; n++) { /* kept, below the root or an unkept node */
            const int l = m->left[t->node0 + n], r = m->right[t->node0 + n];
            const int up = n == 0 || !m->node_kept[t->node0 + n];
            if (up && l > 0 && m->node_kept[t->node0 + l]) m->frontier[frontier_n++] = l;
            if (up && r > 0 && m->node_kept[t->node0 + r]) m->frontier[frontier_n++] = r;
        }
        t->frn = frontier_n - t->fr0;
    }
    uint32_t slots_n = 4;
    while (slots_n < tree_slots && slots_n < (1u << 30)) slots_n <<= 1;
    m->tree_slots_n = slots_n;
    /* room for the widest tree at least: a reset must make room for any tree */
    m->tree_values_n = tree_values > (uint32_t)widest_inputs ? tree_values : (uint32_t)widest_inputs;
    m->tree_slots = PyMem_RawCalloc(slots_n, sizeof(TreeSlot));
    m->tree_values = PyMem_RawCalloc(m->tree_values_n, sizeof(double));
    m->patterns = PyMem_RawCalloc((size_t)m->trees_n + 1, sizeof(uint64_t));
    m->found = PyMem_RawCalloc((size_t)m->trees_n + 1, sizeof(uint32_t));
    m->level_sums = PyMem_RawCalloc(deep * (size_t)features, sizeof(double));
    m->lock = PyThread_allocate_lock();
    if (!m->node_mask || !m->node_kept || !m->frontier || !m->node_f0 || !m->node_nf || !m->node_features ||
        !m->tree_slots || !m->tree_values || !m->patterns || !m->found || !m->level_sums ||
        !m->lock) {
        model_free(m);
        return PyErr_NoMemory();
    }
    if (!m->slots || !m->terms || !m->direct_pool || !m->hot || !m->order || !m->pending || !m->leaf_unique ||
        !m->leaf_feature0 || !m->leaf_features || !m->scratch_features || !m->stack_node || !m->stack_child || !m->path ||
        !m->scratch) {
        model_free(m);
        return PyErr_NoMemory();
    }
    PyObject *capsule = PyCapsule_New(m, "treeshap.Model", capsule_free);
    if (capsule == NULL) model_free(m);
    return capsule;
}

typedef void (*RowFunction)(Model *, const float *, double *, double *);

/* ``each`` for every row of ``matrix`` (float32 [rows, features], C order) into ``out``
 * (float64 [rows, features + 1]), the GIL released: no Python object is touched in the
 * loop and its memory is the C allocator's (PyMem_Raw*); the model's lock keeps its memory
 * to one call at a time. */
static PyObject *each_row(PyObject *args, RowFunction each) {
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
    double *features = PyMem_RawMalloc(sizeof(double) * 2 * (size_t)width);
    if (features == NULL) {
        PyBuffer_Release(&in_view);
        PyBuffer_Release(&out_view);
        return PyErr_NoMemory();
    }
    const float *in = in_view.buf;
    double *phi = out_view.buf;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(m->lock, WAIT_LOCK);
    for (Py_ssize_t r = 0; r < rows; r++) {
        each(m, in + r * width, features, phi + r * (width + 1));
    }
    PyThread_release_lock(m->lock);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(features);
    PyBuffer_Release(&in_view);
    PyBuffer_Release(&out_view);
    Py_RETURN_NONE;
}

/* A ``contributions`` call run by a thread of its own (``start``), waited for by ``finish``:
 * the thread touches no Python object, so it never takes the GIL, and the caller's Python
 * thread runs on beside it with no hand-over of the GIL either way. The job keeps the model
 * capsule and both buffers until ``finish`` (or its capsule's destructor) joins it. */
typedef struct {
    Model *m;
    PyObject *capsule;
    Py_buffer in_view, out_view;
    Py_ssize_t rows;
    double *features;
    pthread_t thread;
    int running;
} Job;

static void *job_run(void *arg) {
    Job *job = arg;
    Model *m = job->m;
    const Py_ssize_t width = m->features;
    const float *in = job->in_view.buf;
    double *phi = job->out_view.buf;
    PyThread_acquire_lock(m->lock, WAIT_LOCK);
    for (Py_ssize_t r = 0; r < job->rows; r++) {
        row_contributions(m, in + r * width, job->features, phi + r * (width + 1));
    }
    PyThread_release_lock(m->lock);
    return NULL;
}

/* With the GIL held: join the thread if it runs (it never needs the GIL, so this cannot
 * deadlock), then let go of what the job kept. */
static void job_end(Job *job, int release_gil) {
    if (job->running) {
        if (release_gil) {
            Py_BEGIN_ALLOW_THREADS
            pthread_join(job->thread, NULL);
            Py_END_ALLOW_THREADS
        } else {
            pthread_join(job->thread, NULL);
        }
        job->running = 0;
        PyMem_RawFree(job->features);
        job->features = NULL;
        PyBuffer_Release(&job->in_view);
        PyBuffer_Release(&job->out_view);
        Py_CLEAR(job->capsule);
    }
}

static void job_free(PyObject *capsule) {
    Job *job = PyCapsule_GetPointer(capsule, "treeshap.Job");
    if (job != NULL) {
        job_end(job, 0);
        PyMem_RawFree(job);
    }
}

/* start(model, matrix, rows, out) -> job: ``contributions`` into ``out`` from now on, in a
 * thread of its own; ``finish(job)`` waits for it. */
static PyObject *start(PyObject *self, PyObject *args) {
    PyObject *capsule, *matrix, *out;
    Py_ssize_t rows;
    if (!PyArg_ParseTuple(args, "OOnO", &capsule, &matrix, &rows, &out)) return NULL;
    Model *m = PyCapsule_GetPointer(capsule, "treeshap.Model");
    if (m == NULL) return NULL;
    Job *job = PyMem_RawCalloc(1, sizeof(Job));
    if (job == NULL) return PyErr_NoMemory();
    if (PyObject_GetBuffer(matrix, &job->in_view, PyBUF_SIMPLE) < 0) {
        PyMem_RawFree(job);
        return NULL;
    }
    if (PyObject_GetBuffer(out, &job->out_view, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&job->in_view);
        PyMem_RawFree(job);
        return NULL;
    }
    const Py_ssize_t width = m->features;
    job->features = PyMem_RawMalloc(sizeof(double) * 2 * (size_t)width);
    const char *problem = NULL;
    if (rows < 0 || job->in_view.len != rows * width * 4 ||
        job->out_view.len != rows * (width + 1) * 8) {
        problem = "matrix or output of the wrong size";
    } else if (job->features == NULL) {
        problem = "out of memory";
    }
    if (problem == NULL) {
        job->m = m;
        job->rows = rows;
        job->capsule = capsule;
        Py_INCREF(capsule);
        if (pthread_create(&job->thread, NULL, job_run, job) != 0) {
            Py_CLEAR(job->capsule);
            problem = "could not start a thread";
        }
    }
    if (problem != NULL) {
        PyMem_RawFree(job->features);
        PyBuffer_Release(&job->in_view);
        PyBuffer_Release(&job->out_view);
        PyMem_RawFree(job);
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    job->running = 1;
    PyObject *handle = PyCapsule_New(job, "treeshap.Job", job_free);
    if (handle == NULL) {
        job_end(job, 1);
        PyMem_RawFree(job);
    }
    return handle;
}

/* finish(job): wait for ``start``'s thread (the GIL released meanwhile); again: nothing. */
static PyObject *finish(PyObject *self, PyObject *handle) {
    Job *job = PyCapsule_GetPointer(handle, "treeshap.Job");
    if (job == NULL) return NULL;
    job_end(job, 1);
    Py_RETURN_NONE;
}

/* contributions(model, matrix, rows, out): LightGBM's pred_contrib, up to rounding. */
static PyObject *contributions(PyObject *self, PyObject *args) {
    return each_row(args, row_contributions);
}

/* magnitudes(model, matrix, rows, out): each input's sum of |term| (base column 0). */
static PyObject *magnitudes(PyObject *self, PyObject *args) {
    return each_row(args, row_magnitudes);
}

/* stats(model) -> (leaf hits, leaf misses, leaves remembered, tree hits, tree misses, trees
 * remembered): how well the memory serves. */
static PyObject *stats(PyObject *self, PyObject *capsule) {
    Model *m = PyCapsule_GetPointer(capsule, "treeshap.Model");
    if (m == NULL) return NULL;
    return Py_BuildValue("KKIKKI", (unsigned long long)m->hits, (unsigned long long)m->misses,
                         m->used, (unsigned long long)m->tree_hits,
                         (unsigned long long)m->tree_misses, m->tree_used);
}

static PyMethodDef methods[] = {
    {"model", model_new, METH_VARARGS, "A TreeSHAP model from flat tree arrays."},
    {"contributions", contributions, METH_VARARGS, "LightGBM's pred_contrib, up to rounding."},
    {"magnitudes", magnitudes, METH_VARARGS, "Each input's sum of |term|, per row."},
    {"stats", stats, METH_O, "(hits, misses, remembered leaves)."},
    {"start", start, METH_VARARGS, "contributions in a thread of its own; a job."},
    {"finish", finish, METH_O, "Wait for a job start began."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_treeshap", "LightGBM's TreeSHAP with memory (see treeshap.py).",
    -1, methods,
};

/* FORMAT: what ``treeshap.py`` expects of this module (an extension built from another
 * version of this file is not used). */
PyMODINIT_FUNC PyInit__treeshap(void) {
    PyObject *mod = PyModule_Create(&module);
    if (mod != NULL && PyModule_AddIntConstant(mod, "FORMAT", 3) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
