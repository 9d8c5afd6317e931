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
 * ISA, ISAS, set_isa(name): the instruction set the loops use ("avx512", "avx2" or
 *     "generic", the best the CPU and the OS support at import), every one this machine can
 *     run, and a switch for the tests (returns the previous one). The vector loops' tails
 *     run the generic code.
 * The GIL is released during the loop: fc's pool threads run the epilogues of their tiles
 * at once.
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
    PyObject *yo, *bo, *ro, *dso = Py_None;
    int into, relu;
    if (!PyArg_ParseTuple(args, "OOOpp|O", &yo, &bo, &ro, &into, &relu, &dso)) return NULL;
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
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&yv);
    if (has_r) PyBuffer_Release(&rv);
    if (has_b) PyBuffer_Release(&bv);
    if (has_dst) PyBuffer_Release(&dv);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS,
     "run(y, bias, res, into, relu[, dst]): the conv epilogue on float32 rows (see the "
     "module docstring)"},
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
