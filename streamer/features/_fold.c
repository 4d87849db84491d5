/* The velocity fold's common case in C: one card's NEW events folded into its stored state.
 *
 * ``velocity.fold`` (Python) is the definition. This is a shortcut for the case most of a
 * stream's events are: a card with a stored state and events that are all NEW (no replay,
 * no duplicate, no LATE event). For such a card ``fold_card`` returns exactly what the
 * Python fold gives (each event's values, the new state's bytes, entries moved into day
 * tiles and old tiles dropped alike); for anything else, or a value outside the range in
 * which its arithmetic is exact, it returns None and the Python fold does the card.
 * ``tests/unit/test_velocity_native.py`` holds the two to the same results, byte for byte.
 *
 * Layout (``velocity_state``): a 31-byte little-endian header (version u8, high u64,
 * newest i64, tiled_last i64, tiled_last_country u16, n_log u16, n_tiles u16), then the
 * log's columns (time i64, position u64, amount i64, txn u64, merchant u32, country u16),
 * then the tiles' (day u16, count u16, sum i64, max i64, sum of squares: low u64, high u32).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VERSION 1
#define HEADER 31
#define ENTRY 38
#define TILE 32
#define TILE_DAYS 30
#define LAST_DAY 0xFFFF
#define U32_MAX 0xFFFFFFFFLL
#define HOUR_MS 3600000LL
#define DAY_MS 86400000LL
#define LATENESS_MS HOUR_MS
#define HORIZON_MS (24 * HOUR_MS + LATENESS_MS)
#define NO_TIME (-1LL)
#define EXACT (1LL << 53)      /* integers below this are exact doubles */
#define AMOUNT_LIMIT (1LL << 40) /* velocity._AMOUNT_LIMIT */
#define MAX_POSITION (1LL << 62)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#define BIG_ENDIAN_HOST 1 /* the Python fold does every card */
#endif

typedef struct {
    int64_t t;
    int64_t p; /* position + 1 */
    int64_t a; /* thousandths */
    uint64_t h;
    uint32_t m;
    uint16_t c;
} Entry;

typedef struct {
    uint16_t day, count;
    int64_t sum, max;
    uint64_t sq_lo;
    uint32_t sq_hi;
} Tile;

typedef struct {
    int64_t high, newest, tiled_last;
    uint16_t tiled_country;
    Py_ssize_t n, m;
    Entry *log;  /* room for n + the card's events */
    Tile *tiles; /* room for m + every entry the log will have held */
} State;

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0)); }

static uint64_t get_u64(const char *at) { uint64_t v; memcpy(&v, at, 8); return v; }
static int64_t get_i64(const char *at) { int64_t v; memcpy(&v, at, 8); return v; }

/* The state in ``blob`` when it is one this shortcut takes (well-formed, every time and
 * amount in range), with room for ``extra`` more entries; 0 otherwise (or -1: no memory). */
static int parse(const char *blob, Py_ssize_t size, Py_ssize_t extra, State *s) {
    if (size < HEADER || (unsigned char)blob[0] != VERSION) return 0;
    uint16_t n, m;
    memcpy(&n, blob + 27, 2);
    memcpy(&m, blob + 29, 2);
    if (size != HEADER + (Py_ssize_t)n * ENTRY + (Py_ssize_t)m * TILE) return 0;
    uint64_t high = get_u64(blob + 1);
    s->newest = get_i64(blob + 9);
    s->tiled_last = get_i64(blob + 17);
    memcpy(&s->tiled_country, blob + 25, 2);
    if (high >= (uint64_t)MAX_POSITION || s->newest < NO_TIME || s->newest >= EXACT) return 0;
    if (s->tiled_last < NO_TIME || s->tiled_last >= EXACT) return 0;
    s->high = (int64_t)high;
    s->n = n;
    s->m = m;
    s->log = PyMem_Malloc(sizeof(Entry) * (size_t)(n + extra + 1));
    s->tiles = PyMem_Malloc(sizeof(Tile) * (size_t)(m + n + extra + 1));
    if (s->log == NULL || s->tiles == NULL) return -1;
    const char *col = blob + HEADER;
    for (Py_ssize_t j = 0; j < n; j++) {
        Entry *e = &s->log[j];
        e->t = get_i64(col + 8 * j);
        e->p = (int64_t)get_u64(col + 8 * (n + j));
        e->a = get_i64(col + 8 * (2 * n + j));
        e->h = get_u64(col + 8 * (3 * n + j));
        memcpy(&e->m, col + 32 * n + 4 * j, 4);
        memcpy(&e->c, col + 36 * n + 2 * j, 2);
        if (e->t < 0 || e->t >= EXACT || e->p < 0 || e->p >= MAX_POSITION ||
            e->a < -AMOUNT_LIMIT || e->a > AMOUNT_LIMIT || (j && e->t < s->log[j - 1].t))
            return 0;
    }
    const char *tiles = col + (Py_ssize_t)n * ENTRY;
    for (Py_ssize_t j = 0; j < m; j++) {
        Tile *x = &s->tiles[j];
        memcpy(&x->day, tiles + 2 * j, 2);
        memcpy(&x->count, tiles + 2 * m + 2 * j, 2);
        x->sum = get_i64(tiles + 4 * m + 8 * j);
        x->max = get_i64(tiles + 12 * m + 8 * j);
        x->sq_lo = get_u64(tiles + 20 * m + 8 * j);
        memcpy(&x->sq_hi, tiles + 28 * m + 4 * j, 4);
        if (j && x->day < s->tiles[j - 1].day) return 0;
    }
    return 1;
}

/* First index in [lo, hi) whose key is > x (``bisect_right``), or >= x (``bisect_left``):
 * over the log's times (``right``, ``left``) and the tiles' days (``right_day``, ``left_day``),
 * the same comparisons as Python's ``bisect``. */
#define BISECT(name, type, key, after)                                              \
    static Py_ssize_t name(const type *at, Py_ssize_t lo, Py_ssize_t hi, int64_t x) { \
        while (lo < hi) {                                                           \
            Py_ssize_t mid = lo + (hi - lo) / 2;                                    \
            if (after(x, (int64_t)at[mid].key)) hi = mid; else lo = mid + 1;        \
        }                                                                           \
        return lo;                                                                  \
    }
#define BEFORE(x, k) ((x) < (k))     /* x sorts before k: bisect_right */
#define NOT_AFTER(x, k) ((k) >= (x)) /* k is not below x: bisect_left */
BISECT(right, Entry, t, BEFORE)
BISECT(left, Entry, t, NOT_AFTER)
BISECT(right_day, Tile, day, BEFORE)
BISECT(left_day, Tile, day, NOT_AFTER)

static int by_value(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* ``velocity_windows.features`` at time t: 1 and out[9] filled, or 0 when its arithmetic
 * would leave the exact range (the Python fold then does the card). */
static int features(const State *s, int64_t t, uint32_t *scratch, double out[9]) {
    const Entry *log = s->log;
    Py_ssize_t b = right(log, 0, s->n, t);
    Py_ssize_t a24 = right(log, 0, b, t - 24 * HOUR_MS);
    Py_ssize_t c1 = b - right(log, a24, b, t - HOUR_MS);
    int64_t day = t / DAY_MS;
    Py_ssize_t c7 = b - left(log, 0, b, (day - 6) * DAY_MS);
    Py_ssize_t a30 = left(log, 0, b, (day - 29) * DAY_MS);
    __int128 count = b - a30, total = 0, squares = 0, top = 0;
    for (Py_ssize_t j = a30; j < b; j++) {
        int64_t a = log[j].a;
        total += a;
        squares += (__int128)a * a;
        if (j == a30 || a > top) top = a;
    }
    int has_top = count > 0;
    if (s->m) {
        const Tile *tiles = s->tiles;
        Py_ssize_t hi = right_day(tiles, 0, s->m, day);
        Py_ssize_t lo30 = right_day(tiles, 0, hi, day - 30);
        if (lo30 < hi) {
            for (Py_ssize_t j = right_day(tiles, lo30, hi, day - 7); j < hi; j++)
                c7 += tiles[j].count;
            int64_t tile_top = tiles[lo30].max;
            for (Py_ssize_t j = lo30; j < hi; j++) {
                count += tiles[j].count;
                total += tiles[j].sum;
                squares += (__int128)tiles[j].sq_lo + ((__int128)tiles[j].sq_hi << 64);
                if (tiles[j].max > tile_top) tile_top = tiles[j].max;
            }
            if (!has_top || tile_top > top) top = tile_top;
            has_top = 1;
        }
    }
    int64_t last_t = b ? log[b - 1].t : NO_TIME, last_c = b ? log[b - 1].c : 0;
    if (last_t < s->tiled_last && s->tiled_last <= t) {
        last_t = s->tiled_last;
        last_c = s->tiled_country;
    }
    Py_ssize_t k = b - a24, distinct = 0;
    for (Py_ssize_t j = 0; j < k; j++) scratch[j] = log[a24 + j].m;
    qsort(scratch, (size_t)k, sizeof(uint32_t), by_value);
    for (Py_ssize_t j = 0; j < k; j++) distinct += j == 0 || scratch[j] != scratch[j - 1];
    double mean = NAN, std = NAN;
    if (count) {
        if (count >= (1 << 24) || squares >= ((__int128)1 << 100)) return 0;
        if (total <= -EXACT || total >= EXACT) return 0;
        __int128 spread = count * squares - total * total, scale = count * count * 1000000;
        if (spread < 0) spread = 0;
        if (spread >= EXACT || scale >= EXACT) return 0;
        mean = (double)(int64_t)total / (double)(int64_t)(1000 * count);
        std = sqrt((double)(int64_t)spread / (double)(int64_t)scale);
    }
    if (has_top && (top <= -EXACT || top >= EXACT)) return 0;
    out[0] = (double)c1;
    out[1] = (double)(b - a24);
    out[2] = (double)c7;
    out[3] = (double)distinct;
    out[4] = mean;
    out[5] = std;
    out[6] = has_top ? (double)(int64_t)top / 1000.0 : NAN;
    out[7] = (double)last_c;
    out[8] = last_t != NO_TIME ? (double)last_t / 1000.0 : 0.0;
    return 1;
}

/* ``velocity_log._into_tile``: one amount into its day's tile, saturating as it does. */
static void into_tile(State *s, int64_t day, int64_t amount) {
    const __int128 u64 = ((__int128)1 << 64) - 1, i64 = INT64_MAX;
    __int128 square = (__int128)amount * amount;
    Py_ssize_t k = left_day(s->tiles, 0, s->m, day);
    Tile *x = &s->tiles[k];
    if (k < s->m && x->day == day) {
        x->count = x->count == 0xFFFF ? 0xFFFF : x->count + 1;
        __int128 sum = (__int128)x->sum + amount;
        x->sum = (int64_t)(sum > i64 ? i64 : sum < -i64 ? -i64 : sum);
        if (amount > x->max) x->max = amount;
        __int128 low = (__int128)x->sq_lo + (square & u64);
        x->sq_lo = (uint64_t)(low & u64);
        __int128 hi = (__int128)x->sq_hi + (square >> 64) + (low >> 64);
        x->sq_hi = (uint32_t)(hi > U32_MAX ? U32_MAX : hi);
        return;
    }
    memmove(x + 1, x, sizeof(Tile) * (size_t)(s->m - k));
    __int128 hi = square >> 64;
    *x = (Tile){(uint16_t)day, 1, amount, amount, (uint64_t)(square & u64),
                (uint32_t)(hi > U32_MAX ? U32_MAX : hi)};
    s->m += 1;
}

/* ``velocity_log.add`` then ``evict``. */
static void add(State *s, int64_t p, int64_t t, int64_t a, uint64_t h, uint32_t m, uint16_t c,
                Py_ssize_t log_cap, int64_t rewind_span) {
    Py_ssize_t j = right(s->log, 0, s->n, t);
    memmove(&s->log[j + 1], &s->log[j], sizeof(Entry) * (size_t)(s->n - j));
    s->log[j] = (Entry){t, p, a, h, m, c};
    s->n += 1;
    s->high = p;
    if (t > s->newest) s->newest = t;
    int64_t limit = s->newest - HORIZON_MS, settled = s->high - rewind_span;
    if (s->n > log_cap || (s->n && s->log[0].t <= limit)) {
        while (s->n) {
            Py_ssize_t front = 0; /* the lowest position, first of equals */
            for (Py_ssize_t i = 1; i < s->n; i++)
                if (s->log[i].p < s->log[front].p) front = i;
            const Entry e = s->log[front];
            if ((e.t > limit || e.p > settled) && s->n <= log_cap) break;
            int64_t day = e.t / DAY_MS;
            into_tile(s, day > LAST_DAY ? LAST_DAY : day, e.a);
            if (e.t >= s->tiled_last) {
                s->tiled_last = e.t;
                s->tiled_country = e.c;
            }
            memmove(&s->log[front], &s->log[front + 1],
                    sizeof(Entry) * (size_t)(s->n - front - 1));
            s->n -= 1;
        }
    }
    Py_ssize_t first =
        left_day(s->tiles, 0, s->m, floor_div(s->newest - LATENESS_MS, DAY_MS) - TILE_DAYS + 1);
    if (first) {
        memmove(s->tiles, s->tiles + first, sizeof(Tile) * (size_t)(s->m - first));
        s->m -= first;
    }
}

static PyObject *pack(const State *s) {
    Py_ssize_t n = s->n, m = s->m;
    PyObject *out = PyBytes_FromStringAndSize(NULL, HEADER + n * ENTRY + m * TILE);
    if (out == NULL) return NULL;
    char *at = PyBytes_AS_STRING(out);
    uint16_t n16 = (uint16_t)n, m16 = (uint16_t)m;
    at[0] = VERSION;
    memcpy(at + 1, &s->high, 8);
    memcpy(at + 9, &s->newest, 8);
    memcpy(at + 17, &s->tiled_last, 8);
    memcpy(at + 25, &s->tiled_country, 2);
    memcpy(at + 27, &n16, 2);
    memcpy(at + 29, &m16, 2);
    char *col = at + HEADER;
    for (Py_ssize_t j = 0; j < n; j++) {
        const Entry *e = &s->log[j];
        memcpy(col + 8 * j, &e->t, 8);
        memcpy(col + 8 * (n + j), &e->p, 8);
        memcpy(col + 8 * (2 * n + j), &e->a, 8);
        memcpy(col + 8 * (3 * n + j), &e->h, 8);
        memcpy(col + 32 * n + 4 * j, &e->m, 4);
        memcpy(col + 36 * n + 2 * j, &e->c, 2);
    }
    char *tiles = col + n * ENTRY;
    for (Py_ssize_t j = 0; j < m; j++) {
        const Tile *x = &s->tiles[j];
        memcpy(tiles + 2 * j, &x->day, 2);
        memcpy(tiles + 2 * m + 2 * j, &x->count, 2);
        memcpy(tiles + 4 * m + 8 * j, &x->sum, 8);
        memcpy(tiles + 12 * m + 8 * j, &x->max, 8);
        memcpy(tiles + 20 * m + 8 * j, &x->sq_lo, 8);
        memcpy(tiles + 28 * m + 4 * j, &x->sq_hi, 4);
    }
    return out;
}

/* An event's integer at ``i`` of a list, within [lo, hi]; 0 (an error set, or out of
 * range: *ok cleared) otherwise. */
static int64_t item(PyObject *list, Py_ssize_t i, int64_t lo, int64_t hi, int *ok) {
    if (!*ok) return 0;
    PyObject *v = PyList_GET_ITEM(list, i);
    int overflow = 0;
    long long x = PyLong_Check(v) ? PyLong_AsLongLongAndOverflow(v, &overflow) : lo - 1;
    if (overflow || x < lo || x > hi) {
        *ok = 0;
        return 0;
    }
    return x;
}

typedef struct {
    PyObject *idx, *pos, *times, *amounts, *txns, *merchants, *countries;
} Events;

/* Fold the events into the parsed state, their values into ``values``: 1 done, 0 not for
 * this shortcut, -1 error. */
static int fold_events(State *s, const Events *ev, Py_ssize_t log_cap, int64_t rewind_span,
                       PyObject *values, uint32_t *scratch) {
    Py_ssize_t k = PyList_GET_SIZE(ev->idx);
    for (Py_ssize_t e = 0; e < k; e++) {
        int ok = 1;
        Py_ssize_t i = (Py_ssize_t)item(ev->idx, e, 0, PY_SSIZE_T_MAX, &ok);
        if (ok && i >= PyList_GET_SIZE(ev->pos)) return 0;
        int64_t p = item(ev->pos, i, 1, MAX_POSITION - 1, &ok);
        int64_t t = item(ev->times, i, 0, EXACT - 1, &ok);
        int64_t a = item(ev->amounts, i, -AMOUNT_LIMIT, AMOUNT_LIMIT, &ok);
        int64_t c = item(ev->countries, i, 0, 0xFFFF, &ok);
        int64_t m = item(ev->merchants, e, 0, 0xFFFFFFFFLL, &ok);
        PyObject *hv = PyList_GET_ITEM(ev->txns, e);
        if (!PyLong_Check(hv)) return 0;
        uint64_t h = PyLong_AsUnsignedLongLong(hv);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (!ok || p <= s->high) return 0; /* a replay */
        if (s->newest != NO_TIME && t < s->newest - LATENESS_MS) return 0; /* LATE */
        for (Py_ssize_t j = 0; j < s->n; j++)
            if (s->log[j].h == h) return 0; /* a duplicate */
        double out[9];
        if (!features(s, t, scratch, out)) return 0;
        PyObject *row = PyTuple_New(9);
        if (row == NULL) return -1;
        for (int f = 0; f < 9; f++) {
            PyObject *x = PyFloat_FromDouble(out[f]);
            if (x == NULL) {
                Py_DECREF(row);
                return -1;
            }
            PyTuple_SET_ITEM(row, f, x);
        }
        int appended = PyList_Append(values, row);
        Py_DECREF(row);
        if (appended < 0) return -1;
        add(s, p, t, a, h, (uint32_t)m, (uint16_t)c, log_cap, rewind_span);
    }
    return 1;
}

static PyObject *fold_card(PyObject *self, PyObject *args) {
    const char *blob;
    Py_ssize_t size, log_cap;
    long long rewind_span;
    Events ev;
    if (!PyArg_ParseTuple(args, "y#O!O!O!O!O!O!O!nL", &blob, &size, &PyList_Type, &ev.idx,
                          &PyList_Type, &ev.pos, &PyList_Type, &ev.times, &PyList_Type,
                          &ev.amounts, &PyList_Type, &ev.txns, &PyList_Type, &ev.merchants,
                          &PyList_Type, &ev.countries, &log_cap, &rewind_span))
        return NULL;
#ifdef BIG_ENDIAN_HOST
    Py_RETURN_NONE;
#endif
    Py_ssize_t k = PyList_GET_SIZE(ev.idx);
    Py_ssize_t total = PyList_GET_SIZE(ev.pos);
    if (k == 0 || PyList_GET_SIZE(ev.txns) != k || PyList_GET_SIZE(ev.merchants) != k ||
        PyList_GET_SIZE(ev.times) != total || PyList_GET_SIZE(ev.amounts) != total ||
        PyList_GET_SIZE(ev.countries) != total || log_cap < 1 || log_cap > 0xFFFF ||
        rewind_span < 0 || rewind_span > MAX_POSITION)
        Py_RETURN_NONE;
    State s = {0};
    PyObject *result = NULL, *values = NULL;
    uint32_t *scratch = NULL;
    int parsed = parse(blob, size, k, &s);
    if (parsed < 0) {
        PyErr_NoMemory();
    } else if (parsed == 0) {
        result = Py_None;
        Py_INCREF(result);
    } else {
        scratch = PyMem_Malloc(sizeof(uint32_t) * (size_t)(s.n + k + 1));
        values = PyList_New(0);
        int done = scratch == NULL || values == NULL
                       ? (PyErr_NoMemory(), -1)
                       : fold_events(&s, &ev, log_cap, (int64_t)rewind_span, values, scratch);
        if (done == 0 || (done > 0 && s.m > 0xFFFF)) { /* more tiles than the header holds */
            result = Py_None;
            Py_INCREF(result);
        } else if (done > 0) {
            PyObject *bytes = pack(&s);
            if (bytes != NULL) result = Py_BuildValue("(NLO)", bytes, (long long)s.high, values);
        }
    }
    Py_XDECREF(values);
    PyMem_Free(scratch);
    PyMem_Free(s.log);
    PyMem_Free(s.tiles);
    return result;
}

static PyMethodDef methods[] = {
    {"fold_card", fold_card, METH_VARARGS,
     "fold_card(blob, idx, positions, times, amounts, txns, merchants, countries, log_cap, "
     "rewind_span) -> (state bytes, high, [values per event]) or None (see _fold.c)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fold", "The velocity fold's common case in C (see velocity.py).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__fold(void) { return PyModule_Create(&module); }
