/* fc.np_ops._epilogue: the channels-last convolution's epilogue in one pass, in C.
 *
 * np_ops/conv.py's numpy _epilogue is the definition and the tests' oracle; this module
 * computes the very same float32 operations on each element, in the same order:
 *
 *     v = y[r, j];  v = v + bias[j];  v = v + res[r, j];  v = v <= 0 ? +0.0 : v  (relu)
 *
 * each step optional, each add one IEEE single-precision add with the GEMM output as its
 * first operand (numpy's `yy += b`, `yy += rr` and `np.add(yy, rr, out=rr)`), and relu
 * numpy's maximum(v, 0): NaN stays NaN (its payload), -0.0 becomes +0.0. NaN payloads: when
 * both operands of an add are NaN, the result is the second one's, quieted, as numpy 1.26's
 * SIMD add loops give (measured on rows of 8 or more floats: vaddps with the operands
 * swapped; its scalar loop, on rows of fewer than 8, keeps the first one's); the loops set
 * that explicitly rather than leave it to the compiler's operand order. One NaN operand:
 * that NaN, quieted, either way. Built with
 * -ffp-contract=off, never -ffast-math, and it refuses to build where float arithmetic is not
 * evaluated in float (FLT_EVAL_METHOD). numpy takes 3 passes over an in-cache chunk (~0.64 ns
 * per element for bias + relu, one core); this takes one.
 *
 * run(y, bias, res, into, relu)
 *     y: 2-D float32 buffer (rows, m) whose rows are contiguous (any row stride: a column
 *     slice), writable unless into; bias: None or a C-contiguous float32 buffer of m values;
 *     res: None or a 2-D float32 buffer of y's shape with contiguous rows; into: the result
 *     goes into res (writable) instead of y (then y is only read); relu: apply it.
 *     dst (optional, not with into): a 2-D float32 buffer of y's shape with contiguous rows
 *     that gets the result, y keeping y + bias (the convolution's own output, which an
 *     observer of the executor must see beside the sum: conv_residual(keep_conv=True)).
 *     fq (optional): (s, z, lo, hi, lower), the result then fake-quantized as it is stored
 *     (csrc/fc_epilogue.h's fq_row: fc.quant.qparams.fake_quant_step's operations; the
 *     quantized simulation's residual Add and its output pair).
 * ISA, ISAS, set_isa(name): the instruction set the loops use ("avx512", "avx2" or
 *     "generic", the best the CPU and the OS support at import), every one this machine can
 *     run, and a switch for the tests (returns the previous one). The vector loops' tails
 *     run the generic code.
 * The GIL is released during the loop: fc's pool threads run the epilogues of their tiles
 * at once.
 *
 * max_pool(x, y, htab, wtab, low, r0, r1)
 *     A 2-D max pooling of channels-last float32 maps (fc.np_ops.nn's MaxPool), output rows
 *     r0 <= r < r1 of the flattened (N * Ho) row index. x: C-contiguous (N, H, W, C); y:
 *     C-contiguous (N, Ho, Wo, C), written; htab: C-contiguous int64 (Ho, kh), the input row
 *     each tap of output row o reads, in the order the taps are taken, -1 where that tap
 *     falls in the padding; wtab: the same along W, (Wo, kw). Separably, as nn.py's numpy
 *     code: each output row's taps along H over whole input rows (W * C values), into a row
 *     buffer, then the taps along W on it. Along an axis the first tap copies (or gives
 *     `low` where it reads padding) and each further one takes maxn(acc, v) =
 *     isnan(acc) ? acc : (acc > v ? acc : v): numpy 1.26's maximum (its SIMD loops, and
 *     its scalar ones on these operands: a tie of -0.0 and +0.0 gives v, two NaNs acc, no
 *     NaN is quieted), so the same bits as numpy's maximum taken in that order.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <stdint.h>
#include <string.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "float arithmetic must be evaluated in float (FLT_EVAL_METHOD 0) to match numpy's float32"
#endif

#include "fc_isa.h" /* csrc/: FC_X86, the ISAs, set_isa */

#include "fc_epilogue.h" /* csrc/: add, row_generic, row_avx2, row_avx512 */

static int get_rows(PyObject *o, Py_buffer *v, const char *name, int writable) {
    if (PyObject_GetBuffer(o, v, PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *f = v->format ? v->format : "B";
    if (*f == '=' || *f == '<' || *f == '@') f++;
    if (strcmp(f, "f") != 0 || v->itemsize != 4 || v->ndim != 2 || v->strides[1] != 4 ||
        v->strides[0] % 4) {
        PyBuffer_Release(v);
        PyErr_Format(PyExc_ValueError, "_epilogue.run: %s must be a 2-D float32 buffer with "
                     "contiguous rows", name);
        return -1;
    }
    return 0;
}

static PyObject *py_run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *yo, *bo, *ro, *dso = Py_None, *fqo = Py_None;
    int into, relu;
    if (!PyArg_ParseTuple(args, "OOOpp|OO", &yo, &bo, &ro, &into, &relu, &dso, &fqo))
        return NULL;
    fakequant fq;
    int has_fq = fq_arg(fqo, &fq);
    if (has_fq < 0) return NULL;
    if (into && ro == Py_None) {
        PyErr_SetString(PyExc_ValueError, "_epilogue.run: into needs res");
        return NULL;
    }
    int has_dst = dso != Py_None;
    if (has_dst && (into || ro == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "_epilogue.run: dst needs res and not into");
        return NULL;
    }
    Py_buffer yv, bv, rv, dv;
    int has_b = bo != Py_None, has_r = ro != Py_None;
    if (get_rows(yo, &yv, "y", !into) < 0) return NULL;
    if (has_r && get_rows(ro, &rv, "res", into) < 0) {
        PyBuffer_Release(&yv);
        return NULL;
    }
    if (has_dst && get_rows(dso, &dv, "dst", 1) < 0) {
        PyBuffer_Release(&yv);
        PyBuffer_Release(&rv);
        return NULL;
    }
    if (has_b) {
        if (PyObject_GetBuffer(bo, &bv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            PyBuffer_Release(&yv);
            if (has_r) PyBuffer_Release(&rv);
            return NULL;
        }
    }
    Py_ssize_t rows = yv.shape[0], m = yv.shape[1];
    const char *err = NULL;
    if (has_r && (rv.shape[0] != rows || rv.shape[1] != m))
        err = "res must have y's shape";
    else if (has_dst && (dv.shape[0] != rows || dv.shape[1] != m))
        err = "dst must have y's shape";
    else if (has_b && (bv.itemsize != 4 || bv.len != 4 * m ||
                       strcmp(bv.format[0] == '<' || bv.format[0] == '=' ? bv.format + 1
                                                                        : bv.format, "f")))
        err = "bias must be a contiguous float32 buffer of y's row length";
    if (err) {
        PyBuffer_Release(&yv);
        if (has_r) PyBuffer_Release(&rv);
        if (has_b) PyBuffer_Release(&bv);
        if (has_dst) PyBuffer_Release(&dv);
        PyErr_Format(PyExc_ValueError, "_epilogue.run: %s", err);
        return NULL;
    }
    const float *b = has_b ? (const float *)bv.buf : NULL;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < rows; i++) {
        float *y = (float *)((char *)yv.buf + i * yv.strides[0]);
        float *r = has_r ? (float *)((char *)rv.buf + i * rv.strides[0]) : NULL;
        float *d = has_dst ? (float *)((char *)dv.buf + i * dv.strides[0]) : into ? r : y;
        float *keep = has_dst ? y : NULL;
        Py_ssize_t j = 0;
#if FC_X86
        if (isa == ISA_AVX512) j = row_avx512(y, b, r, d, keep, m, relu);
        else if (isa == ISA_AVX2) j = row_avx2(y, b, r, d, keep, m, relu);
#endif
        row_generic(y, b, r, d, keep, j, m, relu);
        if (has_fq) fq_row(&fq, d, m); /* the row just stored, in L1 */
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&yv);
    if (has_r) PyBuffer_Release(&rv);
    if (has_b) PyBuffer_Release(&bv);
    if (has_dst) PyBuffer_Release(&dv);
    Py_RETURN_NONE;
}

/* -- max pooling ------------------------------------------------------------------------- */

/* numpy's maximum(a, v): a when a is NaN, else vmaxps's (a > v ? a : v). */
static inline float maxn(float a, float v) { return (a != a) ? a : (a > v ? a : v); }

static void maxn_generic(float *acc, const float *v, Py_ssize_t j0, Py_ssize_t n) {
    for (Py_ssize_t j = j0; j < n; j++) acc[j] = maxn(acc[j], v[j]);
}

#if FC_X86
__attribute__((target("avx2"))) static Py_ssize_t maxn_avx2(float *acc, const float *v,
                                                            Py_ssize_t n) {
    Py_ssize_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 a = _mm256_loadu_ps(acc + j);
        __m256 m = _mm256_max_ps(a, _mm256_loadu_ps(v + j));
        _mm256_storeu_ps(acc + j, _mm256_blendv_ps(m, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q)));
    }
    return j;
}

__attribute__((target("avx512f"))) static Py_ssize_t maxn_avx512(float *acc, const float *v,
                                                                 Py_ssize_t n) {
    Py_ssize_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 a = _mm512_loadu_ps(acc + j);
        __m512 m = _mm512_mask_max_ps(a, _mm512_cmp_ps_mask(a, a, _CMP_ORD_Q), a,
                                      _mm512_loadu_ps(v + j));
        _mm512_storeu_ps(acc + j, m);
    }
    return j;
}
#endif

/* acc[j] = maxn(acc[j], v[j]) for j < n. */
static inline void maxn_row(float *acc, const float *v, Py_ssize_t n) {
    Py_ssize_t j = 0;
#if FC_X86
    if (isa == ISA_AVX512) j = maxn_avx512(acc, v, n);
    else if (isa == ISA_AVX2) j = maxn_avx2(acc, v, n);
#endif
    maxn_generic(acc, v, j, n);
}

/* acc = the taps of one output position along an axis: the first copies src + tab[0] * step
 * (or fills low), each further valid one takes maxn. */
static inline void taps(float *acc, const float *src, const int64_t *tab, Py_ssize_t k,
                        Py_ssize_t step, Py_ssize_t n, float low) {
    if (tab[0] >= 0) {
        memcpy(acc, src + tab[0] * step, (size_t)n * sizeof(float));
    } else {
        for (Py_ssize_t j = 0; j < n; j++) acc[j] = low;
    }
    for (Py_ssize_t t = 1; t < k; t++)
        if (tab[t] >= 0) maxn_row(acc, src + tab[t] * step, n);
}

static int get_float4(PyObject *o, Py_buffer *v, const char *name, int writable) {
    if (PyObject_GetBuffer(o, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT |
                                     (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *f = v->format ? v->format : "B";
    if (*f == '=' || *f == '<' || *f == '@') f++;
    if (strcmp(f, "f") != 0 || v->itemsize != 4 || v->ndim != 4) {
        PyBuffer_Release(v);
        PyErr_Format(PyExc_ValueError, "_epilogue.max_pool: %s must be a C-contiguous 4-D "
                     "float32 buffer", name);
        return -1;
    }
    return 0;
}

static int get_tab(PyObject *o, Py_buffer *v, const char *name) {
    if (PyObject_GetBuffer(o, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *f = v->format ? v->format : "B";
    if (*f == '=' || *f == '<' || *f == '@') f++;
    if ((strcmp(f, "q") != 0 && strcmp(f, "l") != 0) || v->itemsize != 8 || v->ndim != 2) {
        PyBuffer_Release(v);
        PyErr_Format(PyExc_ValueError, "_epilogue.max_pool: %s must be a C-contiguous 2-D "
                     "int64 buffer", name);
        return -1;
    }
    return 0;
}

static PyObject *py_max_pool(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *yo, *ho, *wo;
    float low;
    Py_ssize_t r0, r1;
    if (!PyArg_ParseTuple(args, "OOOOfnn", &xo, &yo, &ho, &wo, &low, &r0, &r1)) return NULL;
    Py_buffer xv, yv, hv, wv;
    if (get_float4(xo, &xv, "x", 0) < 0) return NULL;
    if (get_float4(yo, &yv, "y", 1) < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    if (get_tab(ho, &hv, "htab") < 0) {
        PyBuffer_Release(&xv);
        PyBuffer_Release(&yv);
        return NULL;
    }
    if (get_tab(wo, &wv, "wtab") < 0) {
        PyBuffer_Release(&xv);
        PyBuffer_Release(&yv);
        PyBuffer_Release(&hv);
        return NULL;
    }
    Py_ssize_t n = xv.shape[0], h = xv.shape[1], w = xv.shape[2], c = xv.shape[3];
    Py_ssize_t oh = yv.shape[1], ow = yv.shape[2], kh = hv.shape[1], kw = wv.shape[1];
    const int64_t *htab = (const int64_t *)hv.buf, *wtab = (const int64_t *)wv.buf;
    const char *err = NULL;
    if (yv.shape[0] != n || yv.shape[3] != c) err = "y must be (N, Ho, Wo, C) of x's N and C";
    else if (hv.shape[0] != oh || wv.shape[0] != ow || kh < 1 || kw < 1)
        err = "htab must be (Ho, kh) and wtab (Wo, kw)";
    else if (r0 < 0 || r1 > n * oh || r0 > r1) err = "rows out of range";
    for (Py_ssize_t i = 0; !err && i < oh * kh; i++)
        if (htab[i] < -1 || htab[i] >= h) err = "htab reads outside x";
    for (Py_ssize_t i = 0; !err && i < ow * kw; i++)
        if (wtab[i] < -1 || wtab[i] >= w) err = "wtab reads outside x";
    float *row = NULL;
    if (!err && !(row = (float *)PyMem_RawMalloc((size_t)(w * c > 0 ? w * c : 1) * sizeof(float))))
        err = "out of memory";
    if (err) {
        PyBuffer_Release(&xv);
        PyBuffer_Release(&yv);
        PyBuffer_Release(&hv);
        PyBuffer_Release(&wv);
        PyErr_Format(PyExc_ValueError, "_epilogue.max_pool: %s", err);
        return NULL;
    }
    const float *x = (const float *)xv.buf;
    float *y = (float *)yv.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = r0; r < r1; r++) {
        Py_ssize_t i = r / oh, o = r % oh;
        /* the H taps over whole input rows of W * C values, then the W taps on that row */
        taps(row, x + i * h * w * c, htab + o * kh, kh, w * c, w * c, low);
        float *out = y + r * ow * c;
        for (Py_ssize_t q = 0; q < ow; q++) taps(out + q * c, row, wtab + q * kw, kw, c, c, low);
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(row);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&yv);
    PyBuffer_Release(&hv);
    PyBuffer_Release(&wv);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS,
     "run(y, bias, res, into, relu[, dst, fq]): the conv epilogue on float32 rows (see the "
     "module docstring)"},
    {"max_pool", py_max_pool, METH_VARARGS,
     "max_pool(x, y, htab, wtab, low, r0, r1): 2-D max pooling of channels-last float32 "
     "maps, output rows r0:r1 (see the module docstring)"},
    {"set_isa", fc_set_isa, METH_O, "set_isa(name) -> previous: the loops to use (tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fc.np_ops._epilogue",
    "The channels-last convolution's epilogue (source: np_ops/_epilogue.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__epilogue(void) {
    fc_detect_isa();
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (fc_add_isa_attrs(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
