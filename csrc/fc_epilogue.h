/* fc_epilogue.h: the channels-last convolution's epilogue on one row segment, shared by
 * np_ops/_epilogue.c (after numpy's GEMM) and np_ops/_gemm.c (fused into fc's own GEMM):
 * the very same float32 operations on each element, in the same order, as numpy's
 * conv._epilogue (see np_ops/_epilogue.c's docstring for the NaN-payload rule they keep):
 *
 *     v = y[j];  v = v + bias[j];  keep[j] = v;  v = v + res[j];  v = v <= 0 ? +0.0 : v;  d[j] = v
 *
 * each step optional; and fq_row, the quantized simulation's fake quantization of a stored
 * row (both modules). Include it after fc_isa.h.
 */
#ifndef FC_EPILOGUE_H
#define FC_EPILOGUE_H

#include <math.h>

#define QUIET 0x00400000u

/* v + x, x's NaN (quieted) when x is a NaN (see the module docstring). */
static inline float add(float v, float x) {
    float s = v + x;
    if (x != x) {
        uint32_t u;
        memcpy(&u, &x, 4);
        u |= QUIET;
        memcpy(&s, &u, 4);
    }
    return s;
}

/* One row segment j0 <= j < m; keep: where y + bias is stored too (dst's y), or NULL. */
static void row_generic(const float *y, const float *b, const float *r, float *d, float *keep,
                        Py_ssize_t j0, Py_ssize_t m, int relu) {
    for (Py_ssize_t j = j0; j < m; j++) {
        float v = y[j];
        if (b) v = add(v, b[j]);
        if (keep) keep[j] = v;
        if (r) v = add(v, r[j]);
        if (relu && v <= 0.0f) v = 0.0f;
        d[j] = v;
    }
}

#if FC_X86
__attribute__((target("avx2"))) static inline __m256 add_avx2(__m256 v, __m256 x) {
    __m256 q = _mm256_or_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32((int)QUIET)));
    return _mm256_blendv_ps(_mm256_add_ps(v, x), q, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

__attribute__((target("avx512f"))) static inline __m512 add_avx512(__m512 v, __m512 x) {
    __m512 q = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)QUIET)));
    return _mm512_mask_mov_ps(_mm512_add_ps(v, x), _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), q);
}

__attribute__((target("avx2"))) static Py_ssize_t row_avx2(const float *y, const float *b,
                                                           const float *r, float *d,
                                                           float *keep, Py_ssize_t m,
                                                           int relu) {
    const __m256 zero = _mm256_setzero_ps();
    Py_ssize_t j = 0;
    for (; j + 8 <= m; j += 8) {
        __m256 v = _mm256_loadu_ps(y + j);
        if (b) v = add_avx2(v, _mm256_loadu_ps(b + j));
        if (keep) _mm256_storeu_ps(keep + j, v);
        if (r) v = add_avx2(v, _mm256_loadu_ps(r + j));
        /* v <= 0 (ordered: false for NaN) -> +0.0 */
        if (relu) v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(v, zero, _CMP_LE_OQ));
        _mm256_storeu_ps(d + j, v);
    }
    return j;
}

__attribute__((target("avx512f"))) static Py_ssize_t row_avx512(const float *y, const float *b,
                                                                const float *r, float *d,
                                                                float *keep, Py_ssize_t m,
                                                                int relu) {
    const __m512 zero = _mm512_setzero_ps();
    Py_ssize_t j = 0;
    for (; j + 16 <= m; j += 16) {
        __m512 v = _mm512_loadu_ps(y + j);
        if (b) v = add_avx512(v, _mm512_loadu_ps(b + j));
        if (keep) _mm512_storeu_ps(keep + j, v);
        if (r) v = add_avx512(v, _mm512_loadu_ps(r + j));
        if (relu) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LE_OQ), zero);
        _mm512_storeu_ps(d + j, v);
    }
    return j;
}
#endif

/* The quantized simulation's fake quantization of a stored value (a QuantizeLinear ->
 * DequantizeLinear pair, fc.quant.qparams.fake_quant_step's float32 operations in order):
 * t = rint(v / s) (to nearest even), + z, lo where t <= lo (with lower), hi where t >= hi,
 * - z, * s; z 0 is neither added nor subtracted, a NaN stays that NaN (every comparison is
 * ordered). Where a value in (-s/2, 0) rounds to -0.0 with lo = 0 and z = 0 this gives +0.0,
 * as np.clip and a real QuantizeLinear -> DequantizeLinear do. */
typedef struct {
    float s, z, lo, hi;
    int zero, lower; /* z != 0; the lower clamp is applied */
} fakequant;

/* fq's Python argument: None (0, q untouched) or (s, z, lo, hi, lower) (1, into q); -1 with
 * an error raised. The floats come from float32 values, so the casts are exact. */
static int fq_arg(PyObject *o, fakequant *q) {
    if (o == Py_None) return 0;
    double s, z, lo, hi;
    int lower;
    if (!PyArg_ParseTuple(o, "ddddp", &s, &z, &lo, &hi, &lower)) return -1;
    *q = (fakequant){(float)s, (float)z, (float)lo, (float)hi, z != 0.0, lower};
    return 1;
}

/* rintf rounds to nearest even in the default rounding mode, as np.rint. */
static inline float fq_one(const fakequant *q, float v) {
    float t = rintf(v / q->s);
    if (q->zero) t += q->z;
    if (q->lower && t <= q->lo) t = q->lo;
    if (t >= q->hi) t = q->hi;
    if (q->zero) t -= q->z;
    return t * q->s;
}

#if FC_X86
__attribute__((target("avx512f"))) static inline __m512 fq_avx512(const fakequant *q, __m512 v) {
    const __m512 s = _mm512_set1_ps(q->s), z = _mm512_set1_ps(q->z);
    const __m512 lo = _mm512_set1_ps(q->lo), hi = _mm512_set1_ps(q->hi);
    __m512 t = _mm512_roundscale_ps(_mm512_div_ps(v, s),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if (q->zero) t = _mm512_add_ps(t, z);
    if (q->lower) t = _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(t, lo, _CMP_LE_OQ), lo);
    t = _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(t, hi, _CMP_GE_OQ), hi);
    if (q->zero) t = _mm512_sub_ps(t, z);
    return _mm512_mul_ps(t, s);
}

__attribute__((target("avx512f"))) static Py_ssize_t fq_row_avx512(const fakequant *q, float *d,
                                                                   Py_ssize_t m) {
    Py_ssize_t j = 0;
    for (; j + 16 <= m; j += 16) _mm512_storeu_ps(d + j, fq_avx512(q, _mm512_loadu_ps(d + j)));
    return j;
}
#endif

/* d[0:m] fake-quantized in place (the AVX-512 loop where the module runs it). */
static void fq_row(const fakequant *q, float *d, Py_ssize_t m) {
    Py_ssize_t j = 0;
#if FC_X86
    if (isa == ISA_AVX512) j = fq_row_avx512(q, d, m);
#endif
    for (; j < m; j++) d[j] = fq_one(q, d[j]);
}

#endif /* FC_EPILOGUE_H */
