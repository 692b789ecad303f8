/* The CPU target's kernels: a lowered Program's product and sum partitions over a value buffer
 * `mars [rows, B]` (float32, row-major, log space), forward and backward (flows), with OpenMP.
 *
 * A sum partition is g groups of G nodes that read the same K children. Child k of group j is
 * the sum of its nf[j][k] factor rows comp[j][k][0..nf-1] (one row when the children are stored;
 * the factors of a product that fusion removed otherwise; the padding to F columns is skipped),
 * formed in a tile of TB samples and never stored. Per group and tile: the max over the children m, e = exp(c - m), then for every node
 * out = m + log(sum_k w_k e_k). A node whose sum falls below `tiny` is recomputed exactly in log
 * space (the same rule as the torch backend). The backward pass recomputes the children's tiles
 * (m and e), reads each node's s back from its stored value (s = exp(n - m)), and gives each child
 * flow e_k sum_i w_ik f_i / s_i, and each weight w_ik sum_b e_k f_i / s_i.
 *
 * Forward work is split over (group, tile) pairs; backward work over ranges of samples only, so
 * that two threads never add into the same flow entry (groups may share factor rows), and each
 * thread accumulates its weight flows apart, summed at the end. Within a thread a group's tiles
 * follow each other, so its rows are read in order.
 *
 * The kernels are the files of codegen/cpu/kernels/, joined into one source in the order of
 * build.KERNEL_FILES: this one (the tiles' vector types, exp and log), sums.c, backward.c,
 * inputs.c, sparse.c, signed.c.
 */
#include <math.h>
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TB 32 /* samples per tile: the unit every inner loop is vectorised over */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Tiles are vectors of TB floats: NV vectors of VL lanes, as wide as the machine's registers
 * (GCC vector types: a type wider than the registers is lowered lane by lane through memory, at
 * a tenth of the speed). MR rows of a matrix product share each loaded vector: as many as keep
 * their accumulators, MR * NV vectors, within half of the register file. */
#if defined(__AVX512F__)
#define VL 16
#define MR 4
#elif defined(__AVX__)
#define VL 8
#define MR 2
#else
#define VL 4
#define MR 1
#endif
typedef float vf __attribute__((vector_size(VL * 4)));
#define NV (TB / VL)

/* exp and log on whole vectors, written with vector operations so that they do not depend on the
 * compiler's auto-vectoriser (which leaves scalar loops of them scalar on some targets).
 * Comparisons give lane masks of all ones or zeros; `pick` selects by them. */
typedef int32_t vi __attribute__((vector_size(VL * 4)));

static inline vf vsplat(float x) { return (vf){0} + x; }
static inline vf pick(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }
static inline vf vmax(vf a, vf b) { return pick(a > b, a, b); }
static inline vf loadu(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void storeu(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline int any_lane(vi mask) {
    int32_t any = 0;
    for (int l = 0; l < VL; l++) any |= mask[l];
    return any != 0;
}

/* exp(x): x = n ln 2 + r, |r| <= ln 2 / 2, a degree-6 polynomial for exp(r) (Cephes' expf
 * coefficients), scaled by 2^n. Below -87.3 the result would be subnormal and is 0; -inf gives
 * 0, NaN NaN. With AVX-512 the rounding, the scaling and the zeroing are one instruction each
 * (vrndscaleps, vscalefps, a zeroing mask); elsewhere they go through the exponent bits. */
static inline vf exp_poly(vf r) {
    vf p = vsplat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
}
#if VL == 16
static inline vf v_exp(vf x) {
    const __mmask16 keep = _mm512_cmp_ps_mask((__m512)x, _mm512_set1_ps(-87.3f), _CMP_NLT_UQ); /* NaN kept */
    x = (vf)_mm512_min_ps(_mm512_set1_ps(88.7f), (__m512)x);                                      /* NaN passes */
    const vf n = (vf)_mm512_roundscale_ps((__m512)(x * 1.44269504088896341f), _MM_FROUND_TO_NEAREST_INT);
    const vf r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    return (vf)_mm512_maskz_scalef_ps(keep, (__m512)exp_poly(r), (__m512)n);
}
#else
static inline vf v_exp(vf x) {
    const vi under = x < -87.3f;
    x = pick(x < -87.3f, vsplat(-87.3f), x);
    x = pick(x > 88.7f, vsplat(88.7f), x);
    const float round = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
    vf n = (x * 1.44269504088896341f + round) - round;
    vf r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    const vi scale = (__builtin_convertvector(n, vi) + 127) << 23;
    return (vf)((vi)(exp_poly(r) * (vf)scale) & ~under);
}
#endif

/* log(x) for a normal positive x (the sums reach it only when >= tiny): x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)), a polynomial in m - 1 (Cephes' logf coefficients). With AVX-512 the
 * exponent and the mantissa in [1/2, 1) come from one instruction each (vgetexpps, vgetmantps);
 * elsewhere from the bits. */
static inline vf v_log(vf x) {
#if VL == 16
    vf fe = (vf)_mm512_getexp_ps((__m512)x) + 1.0f;
    vf m = (vf)_mm512_getmant_ps((__m512)x, _MM_MANT_NORM_p5_1, _MM_MANT_SIGN_src);
#else
    vi u = (vi)x;
    vf fe = __builtin_convertvector(((u >> 23) & 0xff) - 126, vf);
    u = (u & 0x807fffff) | 0x3f000000;
    vf m = (vf)u;
#endif
    const vf small = (vf)((m < 0.707106781186547524f) & (vi)vsplat(1.0f));
    fe -= small;
    m = m + small * m - 1.0f;
    const vf z = m * m;
    vf y = vsplat(7.0376836292e-2f);
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return m + y + 0.693359375f * fe;
}

/* The same on one value (a partial tile's lanes, a row's remainder): the vector forms on a
 * splatted lane, so that each polynomial is written once. */
static inline float pc_exp(float x) { return v_exp(vsplat(x))[0]; }
static inline float pc_log(float x) { return v_log(vsplat(x))[0]; }

static void *tile_alloc(int64_t floats) { return aligned_alloc(64, (size_t)((floats + 15) / 16) * 64); } /* 64-byte lines */
