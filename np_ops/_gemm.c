/* fc.np_ops._gemm: the convolution's GEMM, out = a @ w.T in float32, on weights packed once.
 *
 * PROTOTYPE
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "float arithmetic must be evaluated in float (FLT_EVAL_METHOD 0)"
#endif

#include "fc_isa.h"

#define NR 32 /* output channels per packed weight panel */
#define MR 12 /* rows per packed row group */
#define KC 256

/* apack: (kc, MR) row group; bp: (kc, NR) panel block; c: MR rows of ldc, nr valid columns,
 * mr valid rows; first: start from zero, else continue from c. */
static void kern_generic(const float *ap, const float *bp, Py_ssize_t kc, float *c,
                         Py_ssize_t ldc, int mr, int nr, int first) {
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = (first == 0 && i < mr && j < nr) ? c[i * ldc + j] : 0.0f;
    for (Py_ssize_t k = 0; k < kc; k++)
        for (int i = 0; i < MR; i++) {
            float a = ap[k * MR + i];
            for (int j = 0; j < NR; j++) acc[i][j] = fmaf(a, bp[k * NR + j], acc[i][j]);
        }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) c[i * ldc + j] = first == 2 ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

#if FC_X86
#define R(i)                                                              \
    {                                                                     \
        __m512 a = _mm512_set1_ps(ap[i]);                                 \
        c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);                        \
        c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);                        \
    }
#define LD(i)                                                             \
    if (i < mr) {                                                         \
        c##i##0 = _mm512_maskz_loadu_ps(m0, c + i * ldc);                 \
        c##i##1 = _mm512_maskz_loadu_ps(m1, c + i * ldc + 16);            \
    }
#define ST(i)                                                             \
    if (i < mr) {                                                         \
        if (first == 2) {                                                 \
            c##i##0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c + i * ldc), c##i##0); \
            c##i##1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + i * ldc + 16), c##i##1); \
        }                                                                 \
        _mm512_mask_storeu_ps(c + i * ldc, m0, c##i##0);                  \
        _mm512_mask_storeu_ps(c + i * ldc + 16, m1, c##i##1);             \
    }

__attribute__((target("avx512f,fma"))) static void kern_avx512(
    const float *ap, const float *bp, Py_ssize_t kc, float *c, Py_ssize_t ldc, int mr, int nr,
    int first) {
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00,
           c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00, c90 = c00, c91 = c00;
    __m512 cA0 = c00, cA1 = c00, cB0 = c00, cB1 = c00;
#define c100 cA0
#define c101 cA1
#define c110 cB0
#define c111 cB1
    if (first == 0) {
        LD(0) LD(1) LD(2) LD(3) LD(4) LD(5) LD(6) LD(7) LD(8) LD(9)
        if (10 < mr) { cA0 = _mm512_maskz_loadu_ps(m0, c + 10 * ldc);
                       cA1 = _mm512_maskz_loadu_ps(m1, c + 10 * ldc + 16); }
        if (11 < mr) { cB0 = _mm512_maskz_loadu_ps(m0, c + 11 * ldc);
                       cB1 = _mm512_maskz_loadu_ps(m1, c + 11 * ldc + 16); }
    }
    for (Py_ssize_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        R(0) R(1) R(2) R(3) R(4) R(5) R(6) R(7) R(8) R(9)
        { __m512 a = _mm512_set1_ps(ap[10]); cA0 = _mm512_fmadd_ps(a, b0, cA0);
          cA1 = _mm512_fmadd_ps(a, b1, cA1); }
        { __m512 a = _mm512_set1_ps(ap[11]); cB0 = _mm512_fmadd_ps(a, b0, cB0);
          cB1 = _mm512_fmadd_ps(a, b1, cB1); }
        ap += MR;
        bp += NR;
    }
    ST(0) ST(1) ST(2) ST(3) ST(4) ST(5) ST(6) ST(7) ST(8) ST(9)
    ST(10) ST(11)
}
#endif

/* pack rows r0..r0+mr of a (lda), columns k0..k0+kc, into (kc, MR), zero rows past mr */
static void pack_a(const float *a, Py_ssize_t lda, int mr, Py_ssize_t kc, float *ap) {
    if (mr < MR) memset(ap, 0, sizeof(float) * kc * MR);
    for (int i = 0; i < mr; i++) {
        const float *row = a + i * lda;
        for (Py_ssize_t k = 0; k < kc; k++) ap[k * MR + i] = row[k];
    }
}

#define MC 192
static PyObject *py_gemm(PyObject *self, PyObject *args) {
    PyObject *ao, *bo, *co;
    Py_ssize_t col0 = 0;
    int mode = 2;
    if (!PyArg_ParseTuple(args, "OOO|n", &ao, &bo, &co, &col0)) return NULL;
    Py_buffer av, bv, cv;
    if (PyObject_GetBuffer(ao, &av, PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(bo, &bv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&av);
        return NULL;
    }
    if (PyObject_GetBuffer(co, &cv, PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&av);
        PyBuffer_Release(&bv);
        return NULL;
    }
    Py_ssize_t rows = av.shape[0], k = av.shape[1], lda = av.strides[0] / 4;
    Py_ssize_t ldc = cv.strides[0] / 4, m = cv.shape[1];
    const float *a = av.buf, *b = (const float *)bv.buf + (col0 / NR) * k * NR;
    float *c = cv.buf;
    Py_ssize_t panels = (m + NR - 1) / NR;
    /* K blocks: OpenBLAS's level-3 split (Q = 448, halves of what is left below 2Q, rounded
       up to 16) */
    Py_ssize_t kb[4096], nb = 1;
    kb[0] = 0;
    for (Py_ssize_t ls = 0; ls < k && nb < 4095;) {
        Py_ssize_t ml = k - ls;
        if (ml >= 2 * 448) ml = 448;
        else if (ml > 448) ml = ((ml / 2 + 15) / 16) * 16;
        ls += ml;
        kb[nb++] = ls;
    }
    int use = isa;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t kcmax = 0;
    for (Py_ssize_t i = 0; i + 1 < nb; i++) if (kb[i + 1] - kb[i] > kcmax) kcmax = kb[i + 1] - kb[i];
    float *ap = aligned_alloc(64, sizeof(float) * (MC / MR) * MR * kcmax + 64);
    for (Py_ssize_t r0 = 0; r0 < rows; r0 += MC) {
        Py_ssize_t r1 = rows - r0 < MC ? rows : r0 + MC;
        for (Py_ssize_t bi = 0; bi + 1 < nb; bi++) {
            Py_ssize_t k0 = kb[bi], kc = kb[bi + 1] - k0;
            int first = bi == 0 ? 1 : mode;
            for (Py_ssize_t r = r0; r < r1; r += MR) {
                int mr = r1 - r < MR ? (int)(r1 - r) : MR;
                pack_a(a + r * lda + k0, lda, mr, kc, ap + ((r - r0) / MR) * MR * kc);
            }
            for (Py_ssize_t p = 0; p < panels; p++) {
                const float *bp = b + p * k * NR + k0 * NR;
                int nr = m - p * NR < NR ? (int)(m - p * NR) : NR;
                for (Py_ssize_t r = r0; r < r1; r += MR) {
                    int mr = r1 - r < MR ? (int)(r1 - r) : MR;
                    float *cc = c + r * ldc + p * NR;
                    const float *g = ap + ((r - r0) / MR) * MR * kc;
#if FC_X86
                    if (use == ISA_AVX512) {
                        kern_avx512(g, bp, kc, cc, ldc, mr, nr, first);
                        continue;
                    }
#endif
                    kern_generic(g, bp, kc, cc, ldc, mr, nr, first);
                }
            }
        }
    }
    free(ap);
    Py_END_ALLOW_THREADS
    (void)k;
    PyBuffer_Release(&av);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&cv);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"gemm", py_gemm, METH_VARARGS, "gemm(a, packed, c, m)"},
    {"set_isa", fc_set_isa, METH_O, "set_isa(name) -> previous: the loops to use (tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fc.np_ops._gemm", "GEMM prototype", -1, methods,
};

PyMODINIT_FUNC PyInit__gemm(void) {
    fc_detect_isa();
    PyObject *mod = PyModule_Create(&module);
    if (!mod) return NULL;
    if (fc_add_isa_attrs(mod) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
