/* fc_isa.h: what fc's C kernels (quant/_histogram.c, np_ops/_epilogue.c) share: the x86
 * check, the instruction sets their loops come in, the choice of the best one this machine
 * runs (at import), and the module attributes and switch the tests use:
 *
 * ISA, ISAS, set_isa(name): the instruction set the loops use ("avx512", "avx2" or
 *     "generic"), every one this machine can run, and a switch (returns the previous one).
 *
 * Include it after Python.h, once per extension module (its state is the module's).
 */
#ifndef FC_ISA_H
#define FC_ISA_H

#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define FC_X86 1
#else
#define FC_X86 0
#endif

enum { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
static const char *ISA_NAMES[] = {"generic", "avx2", "avx512"};
static int isa = ISA_GENERIC;      /* the loops in use */
static int best_isa = ISA_GENERIC; /* the best this machine runs */

/* best_isa from the CPU (and the OS's saving of its registers), isa set to it. */
static void fc_detect_isa(void) {
#if FC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) best_isa = ISA_AVX2;
    if (__builtin_cpu_supports("avx512f")) best_isa = ISA_AVX512;
#endif
    isa = best_isa;
}

/* set_isa(name) -> previous, for the module's method table (METH_O). */
static PyObject *fc_set_isa(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    for (int k = 0; k <= best_isa; k++) {
        if (strcmp(name, ISA_NAMES[k]) == 0) {
            int prev = isa;
            isa = k;
            if (PyObject_SetAttrString(self, "ISA", arg) < 0) return NULL;
            return PyUnicode_FromString(ISA_NAMES[prev]);
        }
    }
    PyErr_Format(PyExc_ValueError, "%s.set_isa: %R is not one of this machine's ISAS",
                 PyModule_GetName(self), arg);
    return NULL;
}

/* The module's ISA and ISAS attributes; -1 with an exception set on failure. */
static int fc_add_isa_attrs(PyObject *m) {
    PyObject *isas = PyTuple_New(best_isa + 1);
    if (!isas) return -1;
    for (int k = 0; k <= best_isa; k++) {
        PyObject *s = PyUnicode_FromString(ISA_NAMES[k]);
        if (!s) {
            Py_DECREF(isas);
            return -1;
        }
        PyTuple_SET_ITEM(isas, k, s);
    }
    if (PyModule_AddObject(m, "ISAS", isas) < 0) {
        Py_DECREF(isas);
        return -1;
    }
    return PyModule_AddStringConstant(m, "ISA", ISA_NAMES[isa]);
}

#endif /* FC_ISA_H */
