/* fc.quant._histogram: the calibration histogram's counting loop in C.
 *
 * quant/calibration.py's numpy path (TensorStats._bin_sequential, _indices, _place) is the
 * definition and the tests' oracle; this module counts the very same bins, faster:
 *
 *     bin(x) = clamp(n/2 + floor(float32(x * inv)), 0, n - 1)
 *
 * for a histogram of n (even) int64 bins and inv = float32(1 / width). The product is one
 * IEEE single-precision multiply (no FMA can follow it: floor comes next, and the module is
 * built with -ffp-contract=off, never -ffast-math), floor is exact, and the clamp to the end
 * bins is _place's (a value rounded past +A counts in the last bin, below -A in the first).
 *
 * count(x, hist, inv, half_range, chunk) -> (stop, lo, hi)
 *     x: C-contiguous float32 buffer; hist: C-contiguous writable int64 buffer (added to).
 *     chunk > 0: x is taken in chunks of `chunk` values (from x[0]); the pass that counts
 *     a chunk also takes its min and max (and whether it holds a NaN): a chunk with a NaN or
 *     a value outside [-half_range, half_range] is taken back out (its bins counted again
 *     with -1, which restores the uint32 counts exactly) and stops the call, so that the
 *     caller grows the range by whole bins (or raises on a non-finite value) and calls
 *     again from `stop`, exactly as the numpy path decides per chunk. lo, hi: min and max
 *     of the counted chunks (inf, -inf when none).
 *     chunk == 0: no min, max or range check (the caller knows the range holds x).
 * minmax(x) -> (lo, hi): min and max of a float32 buffer, both NaN when it holds a NaN
 *     (as x.min() and x.max() are).
 * ISA, ISAS, set_isa(name): the instruction set the loops use ("avx512", "avx2" or
 *     "generic", the best the CPU and the OS support at import), every one this machine
 *     can run, and a switch for the tests (returns the previous one). "generic" is plain
 *     scalar C (~5 ns per value, slower than numpy's loop): calibration.py uses the module
 *     only with a vector ISA; the scalar code also counts the vector loops' tails.
 *
 * Cost per value (one core, Xeon @ 2.8 GHz, see calibration.py's docstring for the figures):
 * the bins of 16 (avx512) or 8 (avx2) values are computed in vector registers; the values in
 * the bin holding zero (ReLU outputs: about half of them) are only counted (popcount of a
 * compare mask), the others are packed (vpcompressd, or a permutation table for avx2) into a
 * block buffer in L1 and incremented one by one into NSUB interleaved uint32
 * sub-histograms, so that repeated increments of one bin do not wait on each other's store
 * (store-to-load forwarding; the sub-histograms' stride avoids 4K aliasing); the next
 * block is prefetched while one is packed (the hardware prefetcher stops at each page); the
 * sub-histograms are added into hist at the end of the call (and every FLUSH values, before
 * a uint32 could overflow). The GIL is released while counting, so fc's thread pool can
 * count the parts of one array on every core.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "float arithmetic must be evaluated in float (FLT_EVAL_METHOD 0) to match numpy's float32"
#endif

#include "fc_isa.h" /* csrc/: FC_X86, the ISAs, set_isa */
#if FC_X86 && !defined(PF_HINT)
#define PF_HINT _MM_HINT_T0
#endif

#define NSUB 8                      /* interleaved sub-histograms (a power of two) */
#define BLOCK 2048                  /* values whose bins are packed at a time (8 KiB, L1) */
#define FLUSH ((Py_ssize_t)1 << 30) /* values counted before the sub-histograms are flushed */
#define MAX_NB ((Py_ssize_t)1 << 26) /* bins, so that a packed entry fits a uint32 */

/* One call's bin grid and sub-histograms. A packed entry is the bin plus its sub-histogram's
 * offset: entry k of a block goes to sub-histogram k % NSUB, so consecutive increments of
 * one bin (the bins next to zero) go to different addresses. */
typedef struct {
    float inv, flo, fhi; /* 1 / width; the clamp of floor(x * inv): [-half, half - 1] */
    int32_t half, ilo, ihi; /* half; the clamp as integers */
    Py_ssize_t stride;           /* between two sub-histograms (sub_stride) */
    uint32_t *sub;               /* NSUB * stride uint32 counts */
    uint32_t *buf;               /* BLOCK + 16 packed entries */
    uint32_t offs[NSUB][16];     /* offs[r][i]: half + ((r + i) % NSUB) * stride */
} grid;

/* A chunk's min, max and whether it holds a NaN. */
typedef struct {
    float lo, hi;
    int nan;
} range;

/* A multiple of 1024 bins plus one cache line: the same bin of two sub-histograms never
 * shares an address's low 12 bits (a load would wait on the other's store, "4K aliasing":
 * 3x slower when every value is in one bin). */
static Py_ssize_t sub_stride(Py_ssize_t nb) { return ((nb + 1023) & ~(Py_ssize_t)1023) + 16; }

/* sub[buf[j]] += delta (1, or 2^32 - 1 to take a chunk's counts back out exactly). The
 * entries are read in pairs (one 8-byte load for two): the loop is bound by its loads. */
static inline void increment(const uint32_t *buf, Py_ssize_t k, uint32_t *sub, uint32_t delta) {
    Py_ssize_t j = 0;
    for (; j + 4 <= k; j += 4) {
        uint64_t p, q;
        memcpy(&p, buf + j, 8);
        memcpy(&q, buf + j + 2, 8);
        sub[(uint32_t)p] += delta;
        sub[p >> 32] += delta;
        sub[(uint32_t)q] += delta;
        sub[q >> 32] += delta;
    }
    for (; j < k; j++) sub[buf[j]] += delta;
}

/* The bin of one value, relative to the middle: floor(x * inv) clamped to [-half, half-1]
 * (NaN to -half: a chunk with a NaN is taken back out, but it must not index out of bounds).
 * floor by truncation and a correction, exact inside the clamps (|f| < 2^30), so that a
 * build for plain x86-64, which has no floor instruction, does not call floorf per value. */
static inline int32_t rel_bin(float x, const grid *g) {
    float f = x * g->inv;
    if (!(f >= g->flo)) return g->ilo; /* floor(f) < -half, or NaN */
    if (f >= g->fhi) return g->ihi;    /* floor(f) >= half - 1 */
    int32_t t = (int32_t)f;
    return t - (f < (float)t);
}

/* Packs the bins of x[0:m] other than the middle one into g->buf from entry k (branch-free:
 * the middle bin holds half the values of a ReLU output), the range into *r; returns the
 * new number of entries and adds the middle bin's count to *mid. */
static Py_ssize_t pack_scalar(const float *x, Py_ssize_t m, const grid *g, Py_ssize_t k,
                              int64_t *mid, range *r) {
    const grid gl = *g; /* locals: a store into buf may alias g's int32 fields */
    uint32_t *buf = g->buf;
    float lo = r->lo, hi = r->hi;
    int nan = r->nan;
    Py_ssize_t k0 = k;
    for (Py_ssize_t i = 0; i < m; i++) {
        float v = x[i];
        nan |= v != v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        int32_t b = rel_bin(v, &gl);
        buf[k] = (uint32_t)b + gl.offs[(size_t)k % NSUB][0];
        k += b != 0;
    }
    r->lo = lo;
    r->hi = hi;
    r->nan = nan;
    *mid += m - (k - k0);
    return k;
}

static int64_t chunk_generic(const float *x, Py_ssize_t m, const grid *g, uint32_t delta,
                             range *r) {
    int64_t mid = 0;
    for (Py_ssize_t b0 = 0; b0 < m; b0 += BLOCK) {
        Py_ssize_t bm = m - b0 < BLOCK ? m - b0 : BLOCK;
        increment(g->buf, pack_scalar(x + b0, bm, g, 0, &mid, r), g->sub, delta);
    }
    return mid;
}

static inline void merge_range(range *r, float lo, float hi, int nan) {
    r->lo = lo < r->lo ? lo : r->lo;
    r->hi = hi > r->hi ? hi : r->hi;
    r->nan |= nan;
}

#if FC_X86
/* ---- AVX2: 8 values at a time, packed through a table of vpermd indices ---- */
static uint32_t pack_table[256][8];

static void init_pack_table(void) {
    for (int mask = 0; mask < 256; mask++) {
        int k = 0;
        for (int lane = 0; lane < 8; lane++)
            if (mask >> lane & 1) pack_table[mask][k++] = (uint32_t)lane;
        while (k < 8) pack_table[mask][k++] = 0;
    }
}

__attribute__((target("avx2"))) static int64_t chunk_avx2(const float *x, Py_ssize_t m,
                                                            const grid *g, uint32_t delta,
                                                            range *r) {
    const __m256 inv = _mm256_set1_ps(g->inv), flo = _mm256_set1_ps(g->flo),
                 fhi = _mm256_set1_ps(g->fhi);
    const __m256i zero = _mm256_setzero_si256();
    __m256 lo = _mm256_set1_ps(INFINITY), hi = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
    int64_t mid = 0;
    for (Py_ssize_t b0 = 0; b0 < m; b0 += BLOCK) {
        Py_ssize_t bm = m - b0 < BLOCK ? m - b0 : BLOCK, i = 0, k = 0;
        const float *xb = x + b0;
        for (; i + 8 <= bm; i += 8) {
            if (i % 16 == 0) _mm_prefetch((const char *)(xb + i + BLOCK), PF_HINT);
            __m256 v = _mm256_loadu_ps(xb + i);
            lo = _mm256_min_ps(lo, v);
            hi = _mm256_max_ps(hi, v);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            __m256 f = _mm256_floor_ps(_mm256_mul_ps(v, inv));
            f = _mm256_min_ps(_mm256_max_ps(f, flo), fhi); /* max(NaN, flo) is flo */
            __m256i b = _mm256_cvttps_epi32(f);
            int off = ~_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(b, zero))) & 0xFF;
            __m256i p = _mm256_permutevar8x32_epi32(
                b, _mm256_loadu_si256((const __m256i *)pack_table[off]));
            p = _mm256_add_epi32(p, _mm256_loadu_si256((const __m256i *)g->offs[k % NSUB]));
            _mm256_storeu_si256((__m256i *)(g->buf + k), p);
            k += __builtin_popcount((unsigned)off);
            mid += 8 - __builtin_popcount((unsigned)off);
        }
        k = pack_scalar(xb + i, bm - i, g, k, &mid, r);
        increment(g->buf, k, g->sub, delta);
    }
    float l[8], h[8];
    _mm256_storeu_ps(l, lo);
    _mm256_storeu_ps(h, hi);
    for (int j = 0; j < 8; j++) merge_range(r, l[j], h[j], 0);
    r->nan |= _mm256_movemask_ps(nan) != 0;
    return mid;
}

/* ---- AVX-512: 16 values at a time, packed with vpcompressd ---- */
__attribute__((target("avx512f"))) static int64_t chunk_avx512(const float *x, Py_ssize_t m,
                                                                const grid *g, uint32_t delta,
                                                                range *r) {
    const __m512 inv = _mm512_set1_ps(g->inv), flo = _mm512_set1_ps(g->flo),
                 fhi = _mm512_set1_ps(g->fhi);
    const __m512i zero = _mm512_setzero_si512();
    __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
    __mmask16 nan = 0;
    int64_t mid = 0;
    for (Py_ssize_t b0 = 0; b0 < m; b0 += BLOCK) {
        Py_ssize_t bm = m - b0 < BLOCK ? m - b0 : BLOCK, i = 0, k = 0;
        const float *xb = x + b0;
        for (; i + 16 <= bm; i += 16) {
            _mm_prefetch((const char *)(xb + i + BLOCK), PF_HINT); /* the next block */
            __m512 v = _mm512_loadu_ps(xb + i);
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
            nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            __m512 f = _mm512_roundscale_ps(_mm512_mul_ps(v, inv),
                                            _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
            f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi); /* max(NaN, flo) is flo */
            __m512i b = _mm512_cvttps_epi32(f);
            __mmask16 off = _mm512_cmpneq_epi32_mask(b, zero);
            __m512i p = _mm512_add_epi32(_mm512_maskz_compress_epi32(off, b),
                                         _mm512_loadu_si512(g->offs[k % NSUB]));
            _mm512_storeu_si512(g->buf + k, p);
            int c = __builtin_popcount((unsigned)off);
            k += c;
            mid += 16 - c;
        }
        k = pack_scalar(xb + i, bm - i, g, k, &mid, r);
        increment(g->buf, k, g->sub, delta);
    }
    merge_range(r, _mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi), nan != 0);
    return mid;
}
#endif

/* Counts x[0:m] into g's sub-histograms (delta 1), or takes the same counts back out
 * (delta 2^32 - 1); returns the middle bin's count, the range of x[0:m] into *r. */
static int64_t count_chunk(const float *x, Py_ssize_t m, const grid *g, uint32_t delta, range *r) {
    r->lo = INFINITY;
    r->hi = -INFINITY;
    r->nan = 0;
#if FC_X86
    if (isa == ISA_AVX512) return chunk_avx512(x, m, g, delta, r);
    if (isa == ISA_AVX2) return chunk_avx2(x, m, g, delta, r);
#endif
    return chunk_generic(x, m, g, delta, r);
}

/* hist += the sub-histograms and the middle bin's count; they restart from 0 if `more`. */
static void flush(int64_t *hist, Py_ssize_t nb, const grid *g, int64_t *mid, int more) {
    for (Py_ssize_t b = 0; b < nb; b++) {
        int64_t s = 0;
        for (int j = 0; j < NSUB; j++) s += g->sub[j * g->stride + b];
        hist[b] += s;
    }
    hist[nb / 2] += *mid;
    if (more) memset(g->sub, 0, sizeof(uint32_t) * NSUB * (size_t)g->stride);
    *mid = 0;
}

/* ---- min and max alone (the first batch, calibration method max) ---- */
static int minmax_generic(const float *x, Py_ssize_t m, float *lo, float *hi) {
    range r = {INFINITY, -INFINITY, 0};
    for (Py_ssize_t i = 0; i < m; i++) {
        float v = x[i];
        r.nan |= v != v;
        r.lo = v < r.lo ? v : r.lo;
        r.hi = v > r.hi ? v : r.hi;
    }
    *lo = r.lo;
    *hi = r.hi;
    return r.nan;
}

#if FC_X86
__attribute__((target("avx2"))) static int minmax_avx2(const float *x, Py_ssize_t m, float *lo,
                                                         float *hi) {
    __m256 a0 = _mm256_set1_ps(INFINITY), a1 = a0, b0 = _mm256_set1_ps(-INFINITY), b1 = b0;
    __m256 nan = _mm256_setzero_ps();
    Py_ssize_t i = 0;
    for (; i + 16 <= m; i += 16) {
        __m256 v = _mm256_loadu_ps(x + i), w = _mm256_loadu_ps(x + i + 8);
        a0 = _mm256_min_ps(a0, v);
        b0 = _mm256_max_ps(b0, v);
        a1 = _mm256_min_ps(a1, w);
        b1 = _mm256_max_ps(b1, w);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, w, _CMP_UNORD_Q)); /* a NaN in v or w */
    }
    range r;
    r.nan = minmax_generic(x + i, m - i, &r.lo, &r.hi);
    float l[8], h[8];
    _mm256_storeu_ps(l, _mm256_min_ps(a0, a1));
    _mm256_storeu_ps(h, _mm256_max_ps(b0, b1));
    for (int j = 0; j < 8; j++) merge_range(&r, l[j], h[j], 0);
    *lo = r.lo;
    *hi = r.hi;
    return r.nan | (_mm256_movemask_ps(nan) != 0);
}

__attribute__((target("avx512f"))) static int minmax_avx512(const float *x, Py_ssize_t m,
                                                             float *lo, float *hi) {
    __m512 a0 = _mm512_set1_ps(INFINITY), a1 = a0, b0 = _mm512_set1_ps(-INFINITY), b1 = b0;
    __mmask16 nan = 0;
    Py_ssize_t i = 0;
    for (; i + 32 <= m; i += 32) {
        __m512 v = _mm512_loadu_ps(x + i), w = _mm512_loadu_ps(x + i + 16);
        a0 = _mm512_min_ps(a0, v);
        b0 = _mm512_max_ps(b0, v);
        a1 = _mm512_min_ps(a1, w);
        b1 = _mm512_max_ps(b1, w);
        nan |= _mm512_cmp_ps_mask(v, w, _CMP_UNORD_Q); /* a NaN in v or w */
    }
    range r;
    r.nan = minmax_generic(x + i, m - i, &r.lo, &r.hi);
    merge_range(&r, _mm512_reduce_min_ps(_mm512_min_ps(a0, a1)),
                _mm512_reduce_max_ps(_mm512_max_ps(b0, b1)), nan != 0);
    *lo = r.lo;
    *hi = r.hi;
    return r.nan;
}
#endif

static int minmax_any(const float *x, Py_ssize_t m, float *lo, float *hi) {
#if FC_X86
    if (isa == ISA_AVX512) return minmax_avx512(x, m, lo, hi);
    if (isa == ISA_AVX2) return minmax_avx2(x, m, lo, hi);
#endif
    return minmax_generic(x, m, lo, hi);
}

/* A native float32 (numpy: "f") or int64 ("l" or "q") buffer format. */
static int format_is(const Py_buffer *v, const char *codes, Py_ssize_t itemsize) {
    const char *f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=' || *f == '<') f++;
    return v->itemsize == itemsize && f[0] && !f[1] && strchr(codes, f[0]) != NULL;
}

static int get_floats(PyObject *obj, Py_buffer *v, const char *what) {
    if (PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (!format_is(v, "f", 4)) {
        PyErr_Format(PyExc_TypeError, "_histogram: %s must be a contiguous float32 buffer", what);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

static PyObject *py_count(PyObject *self, PyObject *args) {
    PyObject *xo, *ho;
    double inv_d, half_range;
    Py_ssize_t chunk;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOddn:count", &xo, &ho, &inv_d, &half_range, &chunk)) return NULL;
    Py_buffer xv, hv;
    if (get_floats(xo, &xv, "x") < 0) return NULL;
    if (PyObject_GetBuffer(ho, &hv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    Py_ssize_t n = xv.len / 4, nb = hv.len / 8;
    float inv = (float)inv_d;
    const char *err = NULL;
    if (!format_is(&hv, "lq", 8))
        err = "hist must be a contiguous, writable int64 buffer";
    else if (nb < 2 || nb % 2 || nb > MAX_NB)
        err = "hist must have an even number of bins, 2 to 2^26";
    else if (chunk < 0)
        err = "chunk must be >= 0";
    else if (!((double)inv == inv_d && isfinite(inv) && inv > 0))
        err = "inv must be a finite, positive float32";
    if (err) {
        PyBuffer_Release(&xv);
        PyBuffer_Release(&hv);
        PyErr_Format(PyExc_ValueError, "_histogram.count: %s", err);
        return NULL;
    }
    grid g;
    g.inv = inv;
    g.half = (int32_t)(nb / 2);
    g.flo = -(float)g.half;
    g.fhi = (float)(g.half - 1);
    g.ilo = -g.half;
    g.ihi = g.half - 1;
    g.stride = sub_stride(nb);
    for (int r = 0; r < NSUB; r++)
        for (int i = 0; i < 16; i++)
            g.offs[r][i] = (uint32_t)g.half + (uint32_t)(((r + i) % NSUB) * g.stride);
    g.sub = calloc((size_t)NSUB * (size_t)g.stride, sizeof(uint32_t));
    g.buf = malloc((BLOCK + 16) * sizeof(uint32_t));
    if (!g.sub || !g.buf) {
        free(g.sub);
        free(g.buf);
        PyBuffer_Release(&xv);
        PyBuffer_Release(&hv);
        return PyErr_NoMemory();
    }
    const float *x = (const float *)xv.buf;
    int64_t *hist = (int64_t *)hv.buf;
    Py_ssize_t pos = 0, pending = 0, step = chunk ? chunk : FLUSH;
    float lo = INFINITY, hi = -INFINITY;
    int64_t mid = 0;
    Py_BEGIN_ALLOW_THREADS
    while (pos < n) {
        Py_ssize_t m = n - pos < step ? n - pos : step;
        if (pending + m > FLUSH) {
            flush(hist, nb, &g, &mid, 1);
            pending = 0;
        }
        range r;
        int64_t c = count_chunk(x + pos, m, &g, 1, &r);
        /* a NaN, or a value outside the range: the chunk's counts go back out (the same
         * bins, decremented: exact in uint32), the caller grows the range and calls again */
        if (chunk && (r.nan || !((double)r.lo >= -half_range) || !((double)r.hi <= half_range))) {
            count_chunk(x + pos, m, &g, UINT32_MAX, &r);
            break;
        }
        mid += c;
        lo = r.lo < lo ? r.lo : lo;
        hi = r.hi > hi ? r.hi : hi;
        pending += m;
        pos += m;
    }
    flush(hist, nb, &g, &mid, 0);
    Py_END_ALLOW_THREADS
    free(g.sub);
    free(g.buf);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&hv);
    return Py_BuildValue("ndd", pos, (double)lo, (double)hi);
}

static PyObject *py_minmax(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer xv;
    if (get_floats(arg, &xv, "x") < 0) return NULL;
    Py_ssize_t n = xv.len / 4;
    if (n == 0) {
        PyBuffer_Release(&xv);
        PyErr_SetString(PyExc_ValueError, "_histogram.minmax: an empty buffer has no min or max");
        return NULL;
    }
    float lo, hi;
    int nan;
    Py_BEGIN_ALLOW_THREADS
    nan = minmax_any((const float *)xv.buf, n, &lo, &hi);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv);
    if (nan) lo = hi = NAN;
    return Py_BuildValue("dd", (double)lo, (double)hi);
}

static PyMethodDef methods[] = {
    {"count", py_count, METH_VARARGS,
     "count(x, hist, inv, half_range, chunk) -> (stop, lo, hi): add the bins of float32 x "
     "into int64 hist (see the module docstring)"},
    {"minmax", py_minmax, METH_O, "minmax(x) -> (lo, hi) of a float32 buffer (NaN, NaN with a NaN)"},
    {"set_isa", fc_set_isa, METH_O, "set_isa(name) -> previous: the loops to use (tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fc.quant._histogram",
    "The calibration histogram's counting kernel (source: quant/_histogram.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__histogram(void) {
#if FC_X86
    init_pack_table();
#endif
    fc_detect_isa();
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (fc_add_isa_attrs(m) < 0 || PyModule_AddIntConstant(m, "NSUB", NSUB) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
