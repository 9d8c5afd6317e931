/* fc.np_ops._gemm: the channels-last convolution's GEMM, on weights packed once.
 *
 *     c[r, j] = sum over k of a[r, k] * w[col0 + j, k]      (float32)
 *
 * Each sum is computed as OpenBLAS's level-3 driver computes it (numpy's np.matmul on this
 * machine's SkylakeX kernels, on more than one thread: tests/np_ops/test_gemm_kernel.py
 * checks the bits where numpy runs them): K is cut into blocks as its threaded driver cuts it
 * (Q = 448 while at least 2Q is left, then the rest in two halves, the first one rounded up;
 * its one-thread driver rounds that half up to 16, which differs for some K between Q and
 * 2Q, never for ResNet-50's, see the tests); within a block the
 * products are accumulated in order, one fused multiply-add each, from zero; each block's
 * partial sum is then added to the sum of the blocks before it. Every output is computed
 * alike whatever the rows and columns a call covers, so fc's thread pool may split a
 * convolution into any tiles (and on every instruction set, the generic loop included,
 * which is why the generic code calls fmaf: one rounding per product-sum like the FMA
 * instructions).
 *
 * Why not np.matmul: OpenBLAS packs the weight matrix on every call (~K*M*4 bytes read and
 * written), so each tile of fc's pool packed it once more; here the weights are packed once
 * per array (np_ops/conv.py caches the packing). The activations: a is any 2-D float32
 * buffer whose rows are contiguous, read in place; a convolution's im2col rows are gathered
 * from the channels-last input block by block (pack_rows: the rows of one row block and one
 * K block, ~256 KB, in L2 while every weight panel reads them), so there is neither a whole
 * im2col matrix nor a padded copy of the input.
 *
 * pack layout: float32 (P, K, 32), P = ceil(M / 32): packed[p, k, j] = w[32 p + j, k], zero
 *     for 32 p + j >= M (np_ops/conv.py builds it, 64-byte aligned).
 * gemm(a, packed, c, col0=0): c (rows, mc) = a (rows, K) @ w[col0:col0 + mc].T; a and c
 *     2-D float32 with contiguous rows (any row stride: a column slice of the output is
 *     fine), col0 a multiple of 32.
 * tiles(src, geometry, packed, out, (row_step, col_step), ticket, bias, res, dst, into, relu,
 *       threads=1, fq=None):
 *     a whole convolution or GEMM: geometry = (Ho, Wo, kh, kw, sh, sw, dh, dw, top, left)
 *     with src the (N, H, W, C) C-contiguous float32 input, whose im2col row r = (n, ho, wo)
 *     in C order has K = kh * kw * C columns (kernel row, tap, channel: conv.py's weight
 *     order), the taps in the zero padding (top, left, and whatever lies past the bottom
 *     and right edges) zeros: the same sums as on a zero-padded copy (each padded product
 *     is a zero operand's, as there); or geometry None and src = a, 2-D with contiguous
 *     rows. Out is (rows, M) with contiguous rows; the result is cut into tiles of row_step
 *     rows x col_step output channels (a multiple of 32, or all of them); with a ticket
 *     (a shared aligned int64, zero at first) each call draws tiles from it until none is
 *     left, so that one call per thread runs the whole
 *     convolution; without, the call runs every tile, on the calling thread and threads - 1
 *     of the module's worker threads (started on first use, at most 7; they spin a while
 *     after each job, yielding their core, then sleep: see pool_worker; a call that finds
 *     them busy with another caller's job runs alone). The epilogue, fused into each
 *     block's last micro-kernel call (on the AVX-512 kernel's registers before its one
 *     store; the other kernels run the row loops on the block just stored): + bias, + res
 *     (a fused residual Add), relu, as csrc/fc_epilogue.h's rows (numpy's conv._epilogue
 *     bit for bit); into: out is not used, the sum goes into res; dst: the sum goes there,
 *     out keeping conv + bias (conv_residual's keep_conv). fq = (s, z, lo, hi, lower): the
 *     value stored is then fake-quantized (the quantized simulation's QuantizeLinear ->
 *     DequantizeLinear of the output, fc.quant.qparams.fake_quant_step's float32 operations):
 *     t = rint(v / s) (to nearest even), + z, lo where t <= lo (with lower), hi where
 *     t >= hi, - z, * s (z 0: neither added nor subtracted; a NaN stays that NaN).
 * ISA, ISAS, set_isa(name): as fc's other kernels (csrc/fc_isa.h). "generic" is plain C
 *     (fmaf per product: many times slower than numpy's BLAS): conv.py uses the module only
 *     with avx512 or avx2.
 *
 * Loops (one thread per call; the GIL is released): K blocks outermost; in each, rows in
 * blocks of MC (MC_BYTES of one K block's A, ~144 rows: in L2 across the panels; a
 * convolution's block packed first), each 32-wide weight panel, and each sub-block of at
 * most KS columns (the K block in equal pieces; the rows past the last read a block of
 * zeros): the MR x 32 micro-kernel (MR = 12: 24 accumulators; a last group of up to 4 or 8
 * rows takes a 4- or 8-row kernel) over every group of MR rows, the panel's KS x 32
 * sub-block staying in L1 across the groups (or, when a K block's weights fit in L2, each
 * group of rows over every panel in turn: see drive). The first K block's sums go straight
 * into c; a later block's partial sums live in a small scratch tile until they are added to
 * c.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "float arithmetic must be evaluated in float (FLT_EVAL_METHOD 0) to match numpy's float32"
#endif

#include "fc_isa.h"      /* csrc/: FC_X86, the ISAs, set_isa */
#include "fc_epilogue.h" /* csrc/: the epilogue's row loops */

#define NR 32   /* output channels per packed weight panel */
#define MR 12 /* rows per micro-kernel call (a group) */
#define Q 448   /* OpenBLAS's K block (SkylakeX SGEMM_DEFAULT_Q) */
#ifndef KS
#define KS 224 /* columns per sub-block at most: the 32-wide panel's KS x 32 floats in L1 */
#endif
#ifndef MC_BYTES
#define MC_BYTES (256 << 10)
#endif
#define MC_MAX 512
/* a K block's weights up to this size stay in L2: rows outermost (see drive) */
#ifndef L2_WEIGHTS
#define L2_WEIGHTS (256 << 10)
#endif

static const float zeros[Q] __attribute__((aligned(64)));

/* The epilogue of a block's last micro-kernel call, on its sums v (row i < mr, column
 * j < nr): v + bias[j]; keep row i = v; v + res row i; relu; d row i = v (csrc/fc_epilogue.h's
 * row: the same operations), or with fq d row i = fq_one(v) (fc_epilogue.h). The AVX-512
 * kernel applies it to its registers before storing. */
typedef struct {
    const float *bias; /* at the block's first column, or NULL */
    const float *res;  /* the residual's rows, or NULL */
    Py_ssize_t ldr;
    float *d; /* where the result goes */
    Py_ssize_t ldd;
    float *keep; /* where v + bias goes too (conv_residual's keep_conv), or NULL */
    Py_ssize_t ldk;
    int relu;
    const fakequant *fq; /* the stored value fake-quantized, or NULL */
} fused;

/* The micro-kernel's contract (every ISA): for i < MR, j < NR,
 *   acc[i][j] = src ? src[i * lds + j] : 0;  for k < ks: acc[i][j] = fma(a[i][k], b[k][j], acc)
 *   v = add ? dst[i * ldd + j] + acc[i][j] : acc[i][j]     for i < mr, j < nr
 *   f ? f's epilogue on v (dst then holds v or nothing) : dst[i * ldd + j] = v
 * a[i]: row pointers (rows past mr point at zeros), b: (ks, NR) panel rows. */
typedef void (*kernel_fn)(const float *const *a, const float *b, Py_ssize_t ks,
                          const float *src, Py_ssize_t lds, float *dst, Py_ssize_t ldd,
                          int add, int mr, int nr, const fused *f);

/* f's epilogue on the block of v stored at y (ldy apart), with fc_epilogue.h's row loops
 * (the generic and AVX2 kernels, and a convolution with K = 0). */
static void fused_rows(const fused *f, const float *y, Py_ssize_t ldy, int mr, int nr) {
    for (int i = 0; i < mr; i++) {
        const float *r = f->res ? f->res + i * f->ldr : NULL;
        float *d = f->d + i * f->ldd, *keep = f->keep ? f->keep + i * f->ldk : NULL;
        Py_ssize_t j = 0;
#if FC_X86
        if (isa == ISA_AVX512) j = row_avx512(y + i * ldy, f->bias, r, d, keep, nr, f->relu);
        else if (isa == ISA_AVX2) j = row_avx2(y + i * ldy, f->bias, r, d, keep, nr, f->relu);
#endif
        row_generic(y + i * ldy, f->bias, r, d, keep, j, nr, f->relu);
        if (f->fq) fq_row(f->fq, d, nr);
    }
}

static void kern_generic(const float *const *a, const float *b, Py_ssize_t ks,
                         const float *src, Py_ssize_t lds, float *dst, Py_ssize_t ldd,
                         int add, int mr, int nr, const fused *f) {
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = src && i < mr && j < nr ? src[i * lds + j] : 0.0f;
    for (Py_ssize_t k = 0; k < ks; k++)
        for (int i = 0; i < MR; i++) {
            float x = a[i][k];
            for (int j = 0; j < NR; j++) acc[i][j] = fmaf(x, b[k * NR + j], acc[i][j]);
        }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++)
            dst[i * ldd + j] = add ? dst[i * ldd + j] + acc[i][j] : acc[i][j];
    if (f) fused_rows(f, dst, ldd, mr, nr);
}

#if FC_X86
/* R rows x 32 columns: 2R accumulators (R = 12: 24 of the 32 registers), the panel's two
 * vectors per k, one broadcast per row; the arrays stay in registers (constant indices once
 * the loops are unrolled). */
#define KERN_AVX512(NAME, R)                                                                  \
    __attribute__((target("avx512f,fma"))) static inline void NAME(                           \
        const float *const *a, const float *b, Py_ssize_t ks, const float *src,              \
        Py_ssize_t lds, float *dst, Py_ssize_t ldd, int add, int mr, __mmask16 m0,            \
        __mmask16 m1, const fused *f) {                                                       \
        const float *ar[R];                                                                   \
        __m512 c0[R], c1[R];                                                                  \
        _Pragma("GCC unroll 12") for (int i = 0; i < R; i++) {                                \
            ar[i] = a[i];                                                                     \
            c0[i] = c1[i] = _mm512_setzero_ps();                                              \
            if (src && i < mr) {                                                              \
                c0[i] = _mm512_maskz_loadu_ps(m0, src + i * lds);                             \
                c1[i] = _mm512_maskz_loadu_ps(m1, src + i * lds + 16);                        \
            }                                                                                 \
        }                                                                                     \
        for (Py_ssize_t k = 0; k < ks; k++) {                                                 \
            const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);               \
            _Pragma("GCC unroll 12") for (int i = 0; i < R; i++) {                            \
                const __m512 x = _mm512_set1_ps(ar[i][k]);                                    \
                c0[i] = _mm512_fmadd_ps(x, b0, c0[i]);                                        \
                c1[i] = _mm512_fmadd_ps(x, b1, c1[i]);                                        \
            }                                                                                 \
            b += NR;                                                                          \
        }                                                                                     \
        _Pragma("GCC unroll 12") for (int i = 0; i < R; i++) {                                \
            if (i < mr) {                                                                     \
                float *d = dst + i * ldd;                                                     \
                if (add) {                                                                    \
                    c0[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, d), c0[i]);               \
                    c1[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, d + 16), c1[i]);          \
                }                                                                             \
                if (f) {                                                                      \
                    fused_store_avx512(f, i, c0[i], c1[i], m0, m1);                           \
                } else {                                                                      \
                    _mm512_mask_storeu_ps(d, m0, c0[i]);                                      \
                    _mm512_mask_storeu_ps(d + 16, m1, c1[i]);                                 \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

/* Row i of f's epilogue on a block's sums (v0, v1: columns 0-15, 16-31), from registers. */
__attribute__((target("avx512f"))) static inline void fused_store_avx512(
    const fused *f, int i, __m512 v0, __m512 v1, __mmask16 m0, __mmask16 m1) {
    if (f->bias) {
        v0 = add_avx512(v0, _mm512_maskz_loadu_ps(m0, f->bias));
        v1 = add_avx512(v1, _mm512_maskz_loadu_ps(m1, f->bias + 16));
    }
    if (f->keep) {
        _mm512_mask_storeu_ps(f->keep + i * f->ldk, m0, v0);
        _mm512_mask_storeu_ps(f->keep + i * f->ldk + 16, m1, v1);
    }
    if (f->res) {
        v0 = add_avx512(v0, _mm512_maskz_loadu_ps(m0, f->res + i * f->ldr));
        v1 = add_avx512(v1, _mm512_maskz_loadu_ps(m1, f->res + i * f->ldr + 16));
    }
    if (f->relu) { /* v <= 0 (ordered: false for NaN) -> +0.0 */
        const __m512 zero = _mm512_setzero_ps();
        v0 = _mm512_mask_mov_ps(v0, _mm512_cmp_ps_mask(v0, zero, _CMP_LE_OQ), zero);
        v1 = _mm512_mask_mov_ps(v1, _mm512_cmp_ps_mask(v1, zero, _CMP_LE_OQ), zero);
    }
    if (f->fq) {
        v0 = fq_avx512(f->fq, v0);
        v1 = fq_avx512(f->fq, v1);
    }
    _mm512_mask_storeu_ps(f->d + i * f->ldd, m0, v0);
    _mm512_mask_storeu_ps(f->d + i * f->ldd + 16, m1, v1);
}

KERN_AVX512(rows4_avx512, 4)
KERN_AVX512(rows8_avx512, 8)
KERN_AVX512(rows12_avx512, 12)

/* The MR-row contract, with the rows a group really has: a last group of a few rows
 * (49 = 4 x 12 + 1) takes the 4- or 8-row kernel instead of computing 12. */
__attribute__((target("avx512f,fma"))) static void kern_avx512(
    const float *const *a, const float *b, Py_ssize_t ks, const float *src, Py_ssize_t lds,
    float *dst, Py_ssize_t ldd, int add, int mr, int nr, const fused *f) {
    const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    if (mr <= 4)
        rows4_avx512(a, b, ks, src, lds, dst, ldd, add, mr, m0, m1, f);
    else if (mr <= 8)
        rows8_avx512(a, b, ks, src, lds, dst, ldd, add, mr, m0, m1, f);
    else
        rows12_avx512(a, b, ks, src, lds, dst, ldd, add, mr, m0, m1, f);
}
#endif

#if FC_X86
/* AVX2 has 16 vector registers: the 12 x 32 block as 4 x 16 pieces, each with 8
 * accumulators (the panel's rows read once per quarter, from L1). */
__attribute__((target("avx2,fma"))) static void quarter_avx2(
    const float *const *a, const float *b, Py_ssize_t ks, const float *src, Py_ssize_t lds,
    float *dst, Py_ssize_t ldd, int add, int mr, int nr) {
    /* columns j < nr of 16 valid (nr may be <= 0: nothing to do) */
    if (mr <= 0 || nr <= 0) return;
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i k0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), idx);
    __m256i k1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), idx);
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00;
#define LD4(i)                                                    \
    if (src && i < mr) {                                          \
        c##i##0 = _mm256_maskload_ps(src + i * lds, k0);          \
        c##i##1 = _mm256_maskload_ps(src + i * lds + 8, k1);      \
    }
    LD4(0) LD4(1) LD4(2) LD4(3)
#undef LD4
    for (Py_ssize_t k = 0; k < ks; k++) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#define F4(i)                                                     \
    {                                                             \
        __m256 x = _mm256_broadcast_ss(a##i + k);                 \
        c##i##0 = _mm256_fmadd_ps(x, b0, c##i##0);                \
        c##i##1 = _mm256_fmadd_ps(x, b1, c##i##1);                \
    }
        F4(0) F4(1) F4(2) F4(3)
#undef F4
        b += NR;
    }
#define ST4(i)                                                                          \
    if (i < mr) {                                                                       \
        float *d = dst + i * ldd;                                                       \
        if (add) {                                                                      \
            c##i##0 = _mm256_add_ps(_mm256_maskload_ps(d, k0), c##i##0);                \
            c##i##1 = _mm256_add_ps(_mm256_maskload_ps(d + 8, k1), c##i##1);            \
        }                                                                               \
        _mm256_maskstore_ps(d, k0, c##i##0);                                            \
        _mm256_maskstore_ps(d + 8, k1, c##i##1);                                        \
    }
    ST4(0) ST4(1) ST4(2) ST4(3)
#undef ST4
}

__attribute__((target("avx2,fma"))) static void kern_avx2(
    const float *const *a, const float *b, Py_ssize_t ks, const float *src, Py_ssize_t lds,
    float *dst, Py_ssize_t ldd, int add, int mr, int nr, const fused *f) {
    for (int h = 0; h < MR / 4 && 4 * h < mr; h++)
        for (int q = 0; q < 2; q++)
            quarter_avx2(a + 4 * h, b + 16 * q, ks, src ? src + 4 * h * lds + 16 * q : NULL, lds,
                         dst + 4 * h * ldd + 16 * q, ldd, add, mr - 4 * h, nr - 16 * q);
    if (f) fused_rows(f, dst, ldd, mr, nr);
}
#endif

/* Where the A operand comes from: a matrix (gemm, or a block pack_rows gathered), or a
 * convolution's input, the padding implicit: taps outside the (H, W) image are zeros. */
typedef struct {
    const float *base; /* gemm: a; conv: the (N, H, W, C) C-contiguous input */
    Py_ssize_t lda;    /* gemm: a's row stride in floats */
    Py_ssize_t kofs;   /* gemm: the column a's first one is (a packed block's K block start) */
    int conv;
    Py_ssize_t ho, wo, kh, kw, c, sh, sw, dh, dw, pt, pl, h, w; /* conv geometry, pads */
} source;

/* One im2col row: its image's offset and its window's top-left corner (may be negative). */
typedef struct {
    Py_ssize_t off, y0, x0;
} rowinfo;

static inline rowinfo row_info(const source *s, Py_ssize_t r) {
    rowinfo ri;
    if (!s->conv) {
        ri.off = r * s->lda, ri.y0 = ri.x0 = 0;
        return ri;
    }
    Py_ssize_t hw = s->ho * s->wo, n = r / hw, q = r % hw;
    ri.off = n * s->h * s->w * s->c;
    ri.y0 = (q / s->wo) * s->sh - s->pt;
    ri.x0 = (q % s->wo) * s->sw - s->pl;
    return ri;
}

/* Columns from k0 readable as one contiguous run of A (conv: up to the end of a kernel
 * row's kw * C floats when dw == 1, else of one tap's C). */
static inline Py_ssize_t run_end(const source *s, Py_ssize_t k0, Py_ssize_t k) {
    if (!s->conv) return k;
    Py_ssize_t run = s->dw == 1 ? s->kw * s->c : s->c;
    return (k0 / run + 1) * run;
}

/* n floats from a to d (a NULL: zeros), in AVX-512 moves where the module runs them (the runs
 * are short: 21 floats in ResNet-50's stem, where a call to memcpy costs more than the copy). */
#if FC_X86
__attribute__((target("avx512f"))) static inline void copy_avx512(float *d, const float *a,
                                                                 Py_ssize_t n) {
    Py_ssize_t j = 0;
    if (a) {
        for (; j + 16 <= n; j += 16) _mm512_storeu_ps(d + j, _mm512_loadu_ps(a + j));
        if (j < n) {
            __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
            _mm512_mask_storeu_ps(d + j, m, _mm512_maskz_loadu_ps(m, a + j));
        }
    } else {
        for (; j + 16 <= n; j += 16) _mm512_storeu_ps(d + j, _mm512_setzero_ps());
        if (j < n)
            _mm512_mask_storeu_ps(d + j, (__mmask16)((1u << (n - j)) - 1), _mm512_setzero_ps());
    }
}
#endif
static inline void copy_floats(float *d, const float *a, Py_ssize_t n) {
#if FC_X86
    if (isa == ISA_AVX512) {
        copy_avx512(d, a, n);
        return;
    }
#endif
    if (a) memcpy(d, a, 4 * (size_t)n);
    else memset(d, 0, 4 * (size_t)n);
}

/* A K block's columns as runs of one kernel row's contiguous input (kw * C floats; one tap's C
 * when dilated): columns k0 .. k0 + n, kernel row ky, taps kx0 .. kx1, the first one from
 * channel c0. The same for every im2col row, so pack_rows finds them once per block. */
typedef struct {
    Py_ssize_t k0, n, ky, kx0, kx1, c0;
} segment;

static Py_ssize_t block_segments(const source *s, Py_ssize_t kq0, Py_ssize_t kq1, segment *seg) {
    Py_ssize_t ns = 0;
    for (Py_ssize_t k0 = kq0; k0 < kq1; ns++) {
        Py_ssize_t k1 = run_end(s, k0, kq1);
        if (k1 > kq1) k1 = kq1;
        Py_ssize_t t0 = k0 / s->c, t1 = (k1 - 1) / s->c;
        seg[ns] = (segment){k0, k1 - k0, t0 / s->kw, t0 % s->kw, t1 % s->kw, k0 - t0 * s->c};
        k0 = k1;
    }
    return ns;
}

/* The im2col block of a convolution: columns kq0 .. kq1 of the rows info[0 .. nrows) into p
 * (row i at p + i * ldp), the taps in the padding as zeros, so that the micro-kernel reads
 * every row of the block as one contiguous run (OpenBLAS packs its A operand alike): read in
 * place, a window's kernel row is only kw * C contiguous floats (the stem's 21), and a
 * window across the image's edge is taken tap by tap. Each block is packed once per K block
 * and read by every weight panel. */
static void pack_rows(const source *s, const rowinfo *info, Py_ssize_t nrows, Py_ssize_t kq0,
                      Py_ssize_t kq1, float *p, Py_ssize_t ldp, segment *seg) {
    Py_ssize_t ns = block_segments(s, kq0, kq1, seg);
    for (Py_ssize_t i = 0; i < nrows; i++) {
        const rowinfo *ri = &info[i];
        float *d = p + i * ldp - kq0;
        for (Py_ssize_t q = 0; q < ns; q++) {
            const segment *g = &seg[q];
            Py_ssize_t y = ri->y0 + g->ky * s->dh;
            Py_ssize_t xa = ri->x0 + g->kx0 * s->dw, xb = ri->x0 + g->kx1 * s->dw;
            if (y < 0 || y >= s->h || xb < 0 || xa >= s->w) {
                copy_floats(d + g->k0, NULL, g->n);
                continue;
            }
            const float *row = s->base + ri->off + y * s->w * s->c;
            if (xa >= 0 && xb < s->w) { /* one run (dw 1), or one tap */
                copy_floats(d + g->k0, row + xa * s->c + g->c0, g->n);
                continue;
            }
            /* across the left or right edge: tap by tap */
            for (Py_ssize_t kx = g->kx0, col = 0; col < g->n; kx++) {
                Py_ssize_t ch0 = kx == g->kx0 ? g->c0 : 0, x = ri->x0 + kx * s->dw;
                Py_ssize_t len = s->c - ch0 < g->n - col ? s->c - ch0 : g->n - col;
                copy_floats(d + g->k0 + col, x >= 0 && x < s->w ? row + x * s->c + ch0 : NULL,
                            len);
                col += len;
            }
        }
    }
}

/* The epilogue of a tiles() call (block_epilogue turns it into each block's fused one).
 * Pointers are at the first row and column of the call's output c. */
typedef struct {
    int on, relu, into;
    const float *bias;   /* or NULL; at c's first column */
    float *res;          /* residual rows or NULL (ldr floats apart); into: the sum goes there */
    Py_ssize_t ldr;
    float *dst;          /* or NULL: the sum goes there, c keeping conv + bias */
    Py_ssize_t ldd;
    const fakequant *fq; /* or NULL */
} epilogue;

/* One micro-kernel step over columns k0 .. k1 of a K block (first / last: whether they
 * start / end it): the first block's sums go straight into c, a later block's partial sums
 * into the scratch tile t until they are added to c. */
static inline void step(kernel_fn kern, const float *const *ap, const float *bp, Py_ssize_t ks,
                        int later, int first, int last, float *cg, Py_ssize_t ldc, float *tg,
                        int mr, int nr, const fused *f) {
    if (!later)
        kern(ap, bp, ks, first ? NULL : cg, ldc, cg, ldc, 0, mr, nr, last ? f : NULL);
    else
        kern(ap, bp, ks, first ? NULL : tg, NR, last ? cg : tg, last ? ldc : NR, last, mr, nr,
             last ? f : NULL);
}

/* The fused epilogue of the block at row, col of c (NULL: none, not the last K block). */
static inline const fused *block_epilogue(const epilogue *e, fused *f, float *c, Py_ssize_t ldc,
                                          Py_ssize_t row, Py_ssize_t col) {
    if (!e) return NULL;
    float *y = c + row * ldc + col;
    f->bias = e->bias ? e->bias + col : NULL;
    f->res = e->res ? e->res + row * e->ldr + col : NULL;
    f->ldr = e->ldr;
    f->keep = e->dst ? y : NULL; /* dst: c keeps conv + bias */
    f->ldk = ldc;
    if (e->dst) f->d = e->dst + row * e->ldd + col, f->ldd = e->ldd;
    else if (e->into) f->d = e->res + row * e->ldr + col, f->ldd = e->ldr;
    else f->d = y, f->ldd = ldc;
    f->relu = e->relu;
    f->fq = e->fq;
    return f;
}

/* The end of the sub-block from k0: the K block's columns in equal pieces of at most KS (a
 * K block of 256: 128 + 128, not 224 + 32). */
static inline Py_ssize_t sub_end(Py_ssize_t k0, Py_ssize_t kq1) {
    Py_ssize_t pieces = (kq1 - k0 + KS - 1) / KS;
    return k0 + (kq1 - k0 + pieces - 1) / pieces;
}

/* One group of mr rows (info: their offsets in the plain or packed A) over columns k0 .. k1
 * of one panel (bp); rows past mr read zeros. */
static inline void group_step(const source *s, const rowinfo *info, int mr, kernel_fn kern,
                              const float *bp, Py_ssize_t k0, Py_ssize_t k1, int later,
                              int first, int last, float *cg, Py_ssize_t ldc, float *tg,
                              int nr, const fused *f) {
    const float *ap[MR];
    const float *a = s->base + (k0 - s->kofs);
    for (int i = 0; i < MR; i++) ap[i] = i < mr ? a + info[i].off : zeros;
    step(kern, ap, bp + k0 * NR, k1 - k0, later, first, last, cg, ldc, tg, mr, nr, f);
}

static void drive(const source *src, const float *b, Py_ssize_t k, float *c, Py_ssize_t ldc,
                  Py_ssize_t rows, Py_ssize_t row0, Py_ssize_t m, kernel_fn kern,
                  rowinfo *src_info, float *scratch, Py_ssize_t mc, const epilogue *e,
                  float *apack, rowinfo *pack_info, Py_ssize_t ldp, segment *seg) {
    Py_ssize_t panels = (m + NR - 1) / NR;
    Py_ssize_t kb[64], nb = 0; /* K blocks: OpenBLAS's level-3 driver's cut */
    kb[nb++] = 0;
    for (Py_ssize_t ls = 0; ls < k && nb < 63;) {
        Py_ssize_t ml = k - ls;
        if (ml >= 2 * Q) ml = Q;
        else if (ml > Q) ml = (ml + 1) / 2;
        ls += ml;
        kb[nb++] = ls;
    }
    if (nb == 63 && kb[62] < k) kb[nb++] = k; /* K > 27K: no such conv; sums stay blocked */
    for (Py_ssize_t bi = 0; bi + 1 < nb; bi++) {
        Py_ssize_t kq0 = kb[bi], kq1 = kb[bi + 1];
        const epilogue *epi = e && e->on && bi + 2 == nb ? e : NULL; /* fused in the last */
        fused f;
        /* the K block's weights fit in L2: each group of rows takes every panel in turn and
           its epilogue right away, on whole rows (the output and residual rows streamed in
           order); else each panel's sub-block stays in L1 across the groups */
        int rows_outer = (kq1 - kq0) * m * 4 <= L2_WEIGHTS;
        for (Py_ssize_t r0 = 0; r0 < rows; r0 += mc) {
            Py_ssize_t nrows = rows - r0 < mc ? rows - r0 : mc;
            for (Py_ssize_t i = 0; i < nrows; i++) src_info[i] = row_info(src, row0 + r0 + i);
            /* the block's A operand: a matrix read in place, or a convolution's rows packed */
            const source *s = src;
            const rowinfo *info = src_info;
            source packed_src = {apack, ldp, kq0};
            if (apack) {
                pack_rows(src, src_info, nrows, kq0, kq1, apack, ldp, seg);
                s = &packed_src;
                info = pack_info;
            }
            float *cr = c + r0 * ldc;
            if (rows_outer) {
                for (Py_ssize_t g = 0; g < nrows; g += MR) {
                    int mr = nrows - g < MR ? (int)(nrows - g) : MR;
                    for (Py_ssize_t p = 0; p < panels; p++) {
                        int nr = m - p * NR < NR ? (int)(m - p * NR) : NR;
                        for (Py_ssize_t k0 = kq0; k0 < kq1;) {
                            Py_ssize_t k1 = sub_end(k0, kq1);
                            group_step(s, info + g, mr, kern, b + p * k * NR, k0, k1, bi > 0,
                                       k0 == kq0, k1 == kq1, cr + g * ldc + p * NR, ldc,
                                       scratch, nr,
                                       k1 == kq1 ? block_epilogue(epi, &f, c, ldc, r0 + g, p * NR)
                                                 : NULL);
                            k0 = k1;
                        }
                    }
                }
                continue;
            }
            for (Py_ssize_t p = 0; p < panels; p++) {
                int nr = m - p * NR < NR ? (int)(m - p * NR) : NR;
                for (Py_ssize_t k0 = kq0; k0 < kq1;) {
                    Py_ssize_t k1 = sub_end(k0, kq1);
                    for (Py_ssize_t g = 0; g < nrows; g += MR) {
                        int mr = nrows - g < MR ? (int)(nrows - g) : MR;
                        group_step(s, info + g, mr, kern, b + p * k * NR, k0, k1, bi > 0,
                                   k0 == kq0, k1 == kq1, cr + g * ldc + p * NR, ldc,
                                   scratch + g * NR, nr,
                                   k1 == kq1 ? block_epilogue(epi, &f, c, ldc, r0 + g, p * NR)
                                             : NULL);
                    }
                    k0 = k1;
                }
            }
        }
    }
}

static kernel_fn pick_kernel(void) {
#if FC_X86
    if (isa == ISA_AVX512) return kern_avx512;
    if (isa == ISA_AVX2) return kern_avx2;
#endif
    return kern_generic;
}

static int float_rows(PyObject *o, Py_buffer *v, const char *name, int ndim, int writable) {
    int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, v, flags) < 0) return -1;
    const char *f = v->format;
    if (f[0] == '<' || f[0] == '=') f++;
    if (v->ndim != ndim || v->itemsize != 4 || strcmp(f, "f") != 0 ||
        v->strides[ndim - 1] != 4 || (ndim > 1 && v->strides[0] % 4)) {
        PyBuffer_Release(v);
        PyErr_Format(PyExc_ValueError,
                     "_gemm: %s must be a %d-D float32 buffer with contiguous rows", name, ndim);
        return -1;
    }
    return 0;
}

/* The packed weights' buffer: (P, K, 32) float32, C-contiguous. */
static int packed_arg(PyObject *o, Py_buffer *v, Py_ssize_t k, Py_ssize_t col0, Py_ssize_t m) {
    if (PyObject_GetBuffer(o, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0) return -1;
    const char *err = NULL;
    if (v->ndim != 3 || v->itemsize != 4 || v->shape[2] != NR)
        err = "packed must be a (P, K, 32) float32 C-contiguous buffer";
    else if (v->shape[1] != k)
        err = "packed's K differs from the operand's";
    else if (col0 < 0 || col0 % NR || col0 + m > v->shape[0] * NR)
        err = "col0 must be a multiple of 32 and col0 + c's width at most 32 * P";
    if (err) {
        PyBuffer_Release(v);
        PyErr_Format(PyExc_ValueError, "_gemm: %s", err);
        return -1;
    }
    return 0;
}

static Py_ssize_t block_rows(Py_ssize_t rows, Py_ssize_t k) {
    Py_ssize_t mc = MC_BYTES / (4 * (k < Q ? (k > 0 ? k : 1) : Q));
    mc = mc / MR * MR;
    if (mc < MR) mc = MR;
    if (mc > MC_MAX) mc = MC_MAX;
    return rows < mc ? rows : mc;
}

/* Each thread's buffers for run_job, kept from one call to the next and grown when a call
 * needs more (freeing and allocating them per call cost page faults: a few MB in a
 * worker's arena went back to the system and came back zeroed, at every convolution); one
 * larger than WS_KEEP (a residual tile of a large batch) is freed after its call, so a
 * thread keeps a few MB at most. NULL when it cannot grow. */
#define WS_KEEP (8 << 20)
enum { WS_ROWS, WS_SCRATCH, WS_OUT, WS_PACK, WS_PACK_ROWS, WS_SEGMENTS, WS_COUNT };
static __thread struct {
    void *p;
    size_t size;
} ws[WS_COUNT];

static void *workspace(int i, size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (ws[i].size < bytes) {
        free(ws[i].p);
        ws[i].p = aligned_alloc(64, bytes);
        ws[i].size = ws[i].p ? bytes : 0;
    }
    return ws[i].p;
}

static void workspace_trim(void) {
    for (int i = 0; i < WS_COUNT; i++)
        if (ws[i].size > WS_KEEP) {
            free(ws[i].p);
            ws[i].p = NULL;
            ws[i].size = 0;
        }
}

/* One tiles() call's work, shared by the threads that draw its tiles. */
typedef struct {
    source s;
    const float *b; /* the packed weights */
    Py_ssize_t k, m, rows, row_step, col_step, nct, ntiles;
    float *out;
    Py_ssize_t ldo;
    const float *bias;
    float *res, *dst;
    Py_ssize_t ldr, ldd;
    int into, relu, on;
    fakequant fq;
    int fq_on;
    kernel_fn kern;
    int64_t *ticket; /* tiles are drawn from it */
    int64_t own_ticket;
} job;

/* Tiles drawn from the job's ticket until none is left, with this thread's scratch. 0, or -1
 * when the scratch could not be allocated (no tile drawn). */
static int run_job(job *j) {
    Py_ssize_t mc = block_rows(j->row_step, j->k), mc1 = mc > 0 ? mc : 1;
    Py_ssize_t cs = j->col_step < j->m ? j->col_step : j->m;
    /* a convolution's blocks are packed (pack_rows): mc rows of a K block at most Q wide */
    Py_ssize_t ldp = ((j->k < Q ? (j->k > 0 ? j->k : 1) : Q) + 15) / 16 * 16;
    int pack = j->s.conv;
    rowinfo *offs = workspace(WS_ROWS, sizeof(rowinfo) * mc1);
    float *scratch = workspace(WS_SCRATCH, sizeof(float) * NR * ((mc + MR - 1) / MR * MR + MR));
    float *scratch_out =
        j->into ? workspace(WS_OUT, sizeof(float) * ((j->row_step * cs + 15) / 16 * 16)) : NULL;
    float *apack = pack ? workspace(WS_PACK, sizeof(float) * mc1 * ldp) : NULL;
    rowinfo *pack_info = pack ? workspace(WS_PACK_ROWS, sizeof(rowinfo) * mc1) : NULL;
    segment *seg = pack ? workspace(WS_SEGMENTS, sizeof(segment) * (ldp + 1)) : NULL;
    for (Py_ssize_t i = 0; pack_info && i < mc; i++) pack_info[i].off = i * ldp;
    int ok = offs && scratch && (!j->into || scratch_out) &&
             (!pack || (apack && pack_info && seg));
    for (; ok;) {
        Py_ssize_t t = (Py_ssize_t)__atomic_fetch_add(j->ticket, 1, __ATOMIC_RELAXED);
        if (t >= j->ntiles) break;
        Py_ssize_t r0 = (t / j->nct) * j->row_step, c0 = (t % j->nct) * j->col_step;
        Py_ssize_t tr = j->rows - r0 < j->row_step ? j->rows - r0 : j->row_step;
        Py_ssize_t tc = j->m - c0 < j->col_step ? j->m - c0 : j->col_step;
        float *cc = j->into ? scratch_out : j->out + r0 * j->ldo + c0;
        Py_ssize_t ldc = j->into ? tc : j->ldo;
        epilogue e = {j->on, j->relu, j->into, j->bias ? j->bias + c0 : NULL,
                      j->res ? j->res + r0 * j->ldr + c0 : NULL, j->ldr,
                      j->dst ? j->dst + r0 * j->ldd + c0 : NULL, j->ldd,
                      j->fq_on ? &j->fq : NULL};
        const float *b = j->b + (c0 / NR) * j->k * NR;
        if (j->k == 0) {
            for (Py_ssize_t i = 0; i < tr; i++) memset(cc + i * ldc, 0, 4 * (size_t)tc);
            for (Py_ssize_t p = 0; j->on && p * NR < tc; p++) {
                fused f;
                fused_rows(block_epilogue(&e, &f, cc, ldc, 0, p * NR), cc + p * NR, ldc,
                           (int)tr, tc - p * NR < NR ? (int)(tc - p * NR) : NR);
            }
        } else {
            drive(&j->s, b, j->k, cc, ldc, tr, r0, tc, j->kern, offs, scratch, mc, &e, apack,
                  pack_info, ldp, seg);
        }
    }
    workspace_trim();
    return ok ? 0 : -1;
}

/* gemm(a, packed, c, col0=0): the job of one tile, on the calling thread. */
static PyObject *py_gemm(PyObject *self, PyObject *args) {
    PyObject *ao, *bo, *co;
    Py_ssize_t col0 = 0;
    if (!PyArg_ParseTuple(args, "OOO|n", &ao, &bo, &co, &col0)) return NULL;
    Py_buffer av, bv, cv;
    if (float_rows(ao, &av, "a", 2, 0) < 0) return NULL;
    if (float_rows(co, &cv, "c", 2, 1) < 0) {
        PyBuffer_Release(&av);
        return NULL;
    }
    PyObject *ret = NULL;
    if (av.shape[0] != cv.shape[0]) {
        PyErr_SetString(PyExc_ValueError, "_gemm.gemm: a and c must have as many rows");
    } else if (packed_arg(bo, &bv, av.shape[1], col0, cv.shape[1]) == 0) {
        job j = {0};
        j.s.base = av.buf;
        j.s.lda = av.strides[0] / 4;
        j.b = (const float *)bv.buf + (col0 / NR) * av.shape[1] * NR;
        j.k = av.shape[1], j.m = cv.shape[1], j.rows = av.shape[0];
        j.row_step = j.rows > 0 ? j.rows : 1, j.col_step = j.m > 0 ? j.m : 1, j.nct = 1;
        j.ntiles = j.rows > 0 && j.m > 0;
        j.out = cv.buf, j.ldo = cv.strides[0] / 4;
        j.kern = pick_kernel();
        j.ticket = &j.own_ticket;
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = run_job(&j);
        Py_END_ALLOW_THREADS
        if (r < 0) PyErr_NoMemory();
        else ret = Py_NewRef(Py_None);
        PyBuffer_Release(&bv);
    }
    PyBuffer_Release(&av);
    PyBuffer_Release(&cv);
    return ret;
}

/* The module's worker threads: each waits for a job, spinning a while after the last one
 * (a thread woken from sleep starts 0.1-0.3 ms late on this 2-core VM, most of a batch-1
 * convolution), yielding its core to any other runnable thread as it spins, then sleeping
 * on a condition variable. One job at a time: a tiles() call that finds the pool busy (a
 * second interpreter in another thread) runs alone. */
#define SPIN_NS 2000000L /* 2 ms */
#define MAX_POOL 7
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER, pool_left = PTHREAD_COND_INITIALIZER;
static job *pool_job;          /* the open job, or NULL */
static unsigned long pool_seq; /* incremented at each job */
static int pool_inside;        /* workers inside the open job */
static int pool_threads;       /* workers started */
static int pool_busy;          /* a caller owns the pool */

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void *pool_worker(void *arg) {
    (void)arg;
    unsigned long seen = __atomic_load_n(&pool_seq, __ATOMIC_ACQUIRE);
    for (;;) {
        long until = now_ns() + SPIN_NS;
        while (__atomic_load_n(&pool_seq, __ATOMIC_ACQUIRE) == seen && now_ns() < until)
            sched_yield();
        pthread_mutex_lock(&pool_mu);
        while (pool_seq == seen) pthread_cond_wait(&pool_wake, &pool_mu);
        seen = pool_seq;
        job *j = pool_job;
        if (j) __atomic_add_fetch(&pool_inside, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&pool_mu);
        if (!j) continue;
        run_job(j); /* without scratch it draws no tile: the caller's call takes them */
        pthread_mutex_lock(&pool_mu);
        if (__atomic_sub_fetch(&pool_inside, 1, __ATOMIC_RELEASE) == 0)
            pthread_cond_broadcast(&pool_left);
        pthread_mutex_unlock(&pool_mu);
    }
    return NULL;
}

static void pool_after_fork(void) { /* the child has none of the parent's threads */
    pthread_mutex_init(&pool_mu, NULL);
    pthread_cond_init(&pool_wake, NULL);
    pthread_cond_init(&pool_left, NULL);
    pool_job = NULL, pool_inside = pool_threads = pool_busy = 0;
}

/* The job on the caller and up to threads - 1 workers; -1 if the caller's scratch failed. */
static int run_pooled(job *j, int threads) {
    int pooled = 0;
    if (threads > 1) {
        pthread_mutex_lock(&pool_mu);
        if (!pool_busy) {
            pool_busy = pooled = 1;
            int want = threads - 1 < MAX_POOL ? threads - 1 : MAX_POOL;
            while (pool_threads < want) {
                pthread_t t;
                pthread_attr_t at;
                pthread_attr_init(&at);
                pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
                int err = pthread_create(&t, &at, pool_worker, NULL);
                pthread_attr_destroy(&at);
                if (err) break;
                pool_threads++;
            }
            pool_job = j;
            __atomic_add_fetch(&pool_seq, 1, __ATOMIC_RELEASE);
            pthread_cond_broadcast(&pool_wake);
        }
        pthread_mutex_unlock(&pool_mu);
    }
    int r = run_job(j);
    if (pooled) {
        pthread_mutex_lock(&pool_mu);
        pool_job = NULL; /* no worker enters it any more */
        pthread_mutex_unlock(&pool_mu);
        /* the workers still inside finish their last tile: wait for them spinning, as a
           sleeping thread wakes late (see pool_worker), then make sure under the lock */
        long until = now_ns() + SPIN_NS;
        while (__atomic_load_n(&pool_inside, __ATOMIC_ACQUIRE) > 0 && now_ns() < until)
            sched_yield();
        pthread_mutex_lock(&pool_mu);
        while (pool_inside > 0) pthread_cond_wait(&pool_left, &pool_mu);
        pool_busy = 0;
        pthread_mutex_unlock(&pool_mu);
    }
    return r;
}

/* Optional 2-D float32 rows argument (None -> v->buf NULL). */
static int opt_rows(PyObject *o, Py_buffer *v, const char *name, int writable,
                    Py_ssize_t rows, Py_ssize_t m) {
    v->buf = NULL;
    v->obj = NULL;
    if (o == Py_None) return 0;
    if (float_rows(o, v, name, 2, writable) < 0) return -1;
    if (v->shape[0] != rows || v->shape[1] != m) {
        PyBuffer_Release(v);
        v->buf = NULL;
        PyErr_Format(PyExc_ValueError, "_gemm.tiles: %s must be (%zd, %zd)", name, rows, m);
        return -1;
    }
    return 0;
}

static void release(Py_buffer *v) {
    if (v->obj) PyBuffer_Release(v);
}

/* tiles(src, geometry, packed, out, steps, ticket, bias, res, dst, into, relu[, threads, fq]) */
static PyObject *py_tiles(PyObject *self, PyObject *args) {
    PyObject *so, *go, *bo, *oo, *to, *biaso, *ro, *dso, *fqo = Py_None;
    Py_ssize_t row_step, col_step;
    int into, relu, threads = 1;
    if (!PyArg_ParseTuple(args, "OOOO(nn)OOOOpp|iO", &so, &go, &bo, &oo, &row_step, &col_step,
                          &to, &biaso, &ro, &dso, &into, &relu, &threads, &fqo))
        return NULL;
    fakequant fq = {1.0f, 0.0f, 0.0f, 0.0f, 0, 0};
    int fq_on = fq_arg(fqo, &fq);
    if (fq_on < 0) return NULL;
    source s = {0};
    Py_buffer sv, bv, ov = {0}, tv = {0}, biasv = {0}, rv = {0}, dv = {0};
    Py_ssize_t rows, k;
    if (go == Py_None) {
        if (float_rows(so, &sv, "a", 2, 0) < 0) return NULL;
        s.base = sv.buf;
        s.lda = sv.strides[0] / 4;
        rows = sv.shape[0];
        k = sv.shape[1];
    } else {
        Py_ssize_t g[10];
        if (!PyArg_ParseTuple(go, "nnnnnnnnnn", &g[0], &g[1], &g[2], &g[3], &g[4], &g[5], &g[6],
                              &g[7], &g[8], &g[9]))
            return NULL;
        if (PyObject_GetBuffer(so, &sv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0)
            return NULL;
        const char *f = sv.format;
        if (f[0] == '<' || f[0] == '=') f++;
        s.conv = 1;
        s.ho = g[0], s.wo = g[1], s.kh = g[2], s.kw = g[3], s.sh = g[4], s.sw = g[5];
        s.dh = g[6], s.dw = g[7], s.pt = g[8], s.pl = g[9];
        s.h = sv.ndim == 4 ? sv.shape[1] : 0, s.w = sv.ndim == 4 ? sv.shape[2] : 0;
        /* every window starts above the image's last row and left of its last column */
        if (sv.ndim != 4 || sv.itemsize != 4 || strcmp(f, "f") != 0 || s.ho <= 0 || s.wo <= 0 ||
            s.kh <= 0 || s.kw <= 0 || s.sh <= 0 || s.sw <= 0 || s.dh <= 0 || s.dw <= 0 ||
            s.pt < 0 || s.pl < 0 || (s.ho - 1) * s.sh - s.pt >= s.h ||
            (s.wo - 1) * s.sw - s.pl >= s.w) {
            PyBuffer_Release(&sv);
            PyErr_SetString(PyExc_ValueError,
                            "_gemm.tiles: src must be a C-contiguous (N, H, W, C) float32 "
                            "buffer the geometry (Ho, Wo, kh, kw, sh, sw, dh, dw, top, left) "
                            "fits");
            return NULL;
        }
        s.base = sv.buf;
        s.c = sv.shape[3];
        rows = sv.shape[0] * s.ho * s.wo;
        k = s.kh * s.kw * s.c;
    }
    PyObject *ret = NULL;
    if (packed_arg(bo, &bv, k, 0, 0) < 0) {
        PyBuffer_Release(&sv);
        return NULL;
    }
    Py_ssize_t m = bv.shape[0] * NR; /* refined from out / res below */
    /* out (not into) or res (into) gives M */
    if (!into) {
        if (float_rows(oo, &ov, "out", 2, 1) < 0) goto done;
        if (ov.shape[0] != rows || ov.shape[1] > m) {
            PyErr_SetString(PyExc_ValueError, "_gemm.tiles: out must be (rows, M)");
            goto done;
        }
        m = ov.shape[1];
    } else {
        if (ro == Py_None) {
            PyErr_SetString(PyExc_ValueError, "_gemm.tiles: into needs res");
            goto done;
        }
        Py_buffer probe;
        if (float_rows(ro, &probe, "res", 2, 1) < 0) goto done;
        Py_ssize_t mres = probe.shape[1];
        PyBuffer_Release(&probe);
        if (mres > m) {
            PyErr_SetString(PyExc_ValueError, "_gemm.tiles: res is wider than the packed weights");
            goto done;
        }
        m = mres;
    }
    if (opt_rows(ro, &rv, "res", into, rows, m) < 0 || opt_rows(dso, &dv, "dst", 1, rows, m) < 0)
        goto done;
    if (biaso != Py_None) {
        if (PyObject_GetBuffer(biaso, &biasv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
        if (biasv.itemsize != 4 || biasv.len != 4 * m) {
            PyErr_SetString(PyExc_ValueError, "_gemm.tiles: bias must be M contiguous float32");
            goto done;
        }
    }
    if (to != Py_None) {
        if (PyObject_GetBuffer(to, &tv, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) goto done;
        if (tv.len < 8 || ((uintptr_t)tv.buf & 7)) {
            PyErr_SetString(PyExc_ValueError, "_gemm.tiles: ticket must be an aligned int64");
            goto done;
        }
    }
    if ((dv.buf && into) || (dv.buf && !rv.buf) || row_step <= 0 || col_step <= 0 ||
        (col_step % NR && col_step < m)) {
        PyErr_SetString(PyExc_ValueError,
                        "_gemm.tiles: dst needs res and not into; steps > 0, col_step a "
                        "multiple of 32");
        goto done;
    }
    {
        job j = {0};
        j.s = s;
        j.b = bv.buf;
        j.k = k, j.m = m, j.rows = rows, j.row_step = row_step, j.col_step = col_step;
        j.nct = (m + col_step - 1) / col_step;
        j.ntiles = rows > 0 && m > 0 ? (rows + row_step - 1) / row_step * j.nct : 0;
        j.out = into ? NULL : ov.buf;
        j.ldo = into ? 0 : ov.strides[0] / 4;
        j.bias = biasv.buf;
        j.res = rv.buf, j.ldr = rv.buf ? rv.strides[0] / 4 : 0;
        j.dst = dv.buf, j.ldd = dv.buf ? dv.strides[0] / 4 : 0;
        j.into = into, j.relu = relu, j.fq = fq, j.fq_on = fq_on;
        j.on = biasv.buf || rv.buf || relu || j.fq_on;
        j.kern = pick_kernel();
        j.ticket = tv.buf ? (int64_t *)tv.buf : &j.own_ticket;
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = run_pooled(&j, tv.buf ? 1 : threads);
        Py_END_ALLOW_THREADS
        if (r < 0) { /* a worker without scratch draws no tile; the caller drew them all */
            PyErr_NoMemory();
            goto done;
        }
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&sv);
    PyBuffer_Release(&bv);
    release(&ov);
    release(&tv);
    release(&biasv);
    release(&rv);
    release(&dv);
    return ret;
}

static PyMethodDef methods[] = {
    {"gemm", py_gemm, METH_VARARGS,
     "gemm(a, packed, c, col0=0): c = a @ w[col0:col0 + c.shape[1]].T (see the module "
     "docstring)"},
    {"tiles", py_tiles, METH_VARARGS,
     "tiles(src, geometry, packed, out, (row_step, col_step), ticket, bias, res, dst, into, "
     "relu, threads=1, fq=None): a whole convolution's GEMM and epilogue by tiles (see the module "
     "docstring)"},
    {"set_isa", fc_set_isa, METH_O, "set_isa(name) -> previous: the loops to use (tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fc.np_ops._gemm",
    "The channels-last convolution's GEMM (source: np_ops/_gemm.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__gemm(void) {
    fc_detect_isa();
    pthread_atfork(NULL, NULL, pool_after_fork);
    PyObject *mod = PyModule_Create(&module);
    if (!mod) return NULL;
    if (fc_add_isa_attrs(mod) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
