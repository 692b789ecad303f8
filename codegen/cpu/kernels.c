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
 */
#include <math.h>
#include <omp.h>
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

/* exp(x) for a vectorising compiler: x = n ln 2 + r, |r| <= ln 2 / 2, a degree-6 polynomial for
 * exp(r) (Cephes' expf coefficients), scaled by 2^n through the exponent bits. Below -87.3 the
 * result would be subnormal and is 0; -inf gives 0. */
static inline float pc_exp(float x) {
    float under = x < -87.3f ? 0.0f : 1.0f;
    x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f * under;
}

/* log(x) for a normal positive x (the sums reach it only when >= tiny): x = 2^e m with
 * m in [sqrt(1/2), sqrt(2)), a polynomial in m - 1 (Cephes' logf coefficients). */
static inline float pc_log(float x) {
    union { int32_t i; float f; } u;
    u.f = x;
    float fe = (float)(((u.i >> 23) & 0xff) - 126);
    u.i = (u.i & 0x807fffff) | 0x3f000000; /* m in [0.5, 1) */
    float m = u.f;
    float small = m < 0.707106781186547524f ? 1.0f : 0.0f;
    fe -= small;
    m = m + small * m - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
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

/* The same two functions on whole vectors, written with vector operations so that they do not
 * depend on the compiler's auto-vectoriser (which leaves the scalar forms' loops scalar on some
 * targets). Comparisons give lane masks of all ones or zeros; `pick` selects by them. */
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

static inline vf v_exp(vf x) {
    const vi under = x < -87.3f;
    x = pick(x < -87.3f, vsplat(-87.3f), x);
    x = pick(x > 88.7f, vsplat(88.7f), x);
    const float round = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
    vf n = (x * 1.44269504088896341f + round) - round;
    vf r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    vf p = vsplat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const vi scale = (__builtin_convertvector(n, vi) + 127) << 23;
    return (vf)((vi)(p * (vf)scale) & ~under);
}

static inline vf v_log(vf x) {
    vi u = (vi)x;
    vf fe = __builtin_convertvector(((u >> 23) & 0xff) - 126, vf);
    u = (u & 0x807fffff) | 0x3f000000;
    vf m = (vf)u;
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

static void *tile_alloc(int64_t floats) { return aligned_alloc(64, (size_t)((floats + 15) / 16) * 64); } /* 64-byte lines */

/* The K children of one group in one tile: c[k][b] (b < nb; -inf beyond), their max m[b] (0 where
 * all are -inf) and e[k][b] = exp(c - m) (0 beyond nb). */
static void child_tile(const float *mars, int64_t B, const int64_t *comp, const int64_t *nf, int64_t K, int64_t F,
                       int64_t b0, int64_t nb, float *c, float *e, float *m) {
    vf *C = (vf *)c, *E = (vf *)e, M[NV];
    for (int v = 0; v < NV; v++) M[v] = vsplat(-INFINITY);
    for (int64_t k = 0; k < K; k++) {
        const int64_t *rows = comp + k * F, n = nf[k];
        const float *r0 = mars + rows[0] * B + b0; /* n >= 1: a child of no factor reads ONE_ROW */
        for (int64_t f = 0; f < n && b0 + TB < B; f++) { /* the next tile of each row: random rows defeat the prefetcher */
            __builtin_prefetch(mars + rows[f] * B + b0 + TB);
            __builtin_prefetch(mars + rows[f] * B + b0 + TB + 16);
        }
        vf *ck = C + k * NV;
        if (nb == TB) {
            for (int v = 0; v < NV; v++) ck[v] = loadu(r0 + v * VL);
            for (int64_t f = 1; f < n; f++) {
                const float *rf = mars + rows[f] * B + b0;
                for (int v = 0; v < NV; v++) ck[v] += loadu(rf + v * VL);
            }
        } else { /* the batch's last, partial tile */
            float *cs = c + k * TB;
            for (int64_t b = 0; b < nb; b++) cs[b] = r0[b];
            for (int64_t f = 1; f < n; f++) {
                const float *rf = mars + rows[f] * B + b0;
                for (int64_t b = 0; b < nb; b++) cs[b] += rf[b];
            }
            for (int64_t b = nb; b < TB; b++) cs[b] = -INFINITY;
        }
        for (int v = 0; v < NV; v++) M[v] = vmax(M[v], ck[v]);
    }
    for (int v = 0; v < NV; v++) M[v] = pick(M[v] == -INFINITY, vsplat(0.0f), M[v]);
    for (int64_t k = 0; k < K; k++)
        for (int v = 0; v < NV; v++) E[k * NV + v] = v_exp(C[k * NV + v] - M[v]);
    memcpy(m, M, sizeof M);
}

/* The K children of a sum partition's groups, as the kernels read them. Plain (Kb = 0): child k
 * of group j is the sum of its nf[j][k] factor rows comp[j][k][..] (F columns). Outer (Kb > 0,
 * Tucker and RAT-SPN layers): the K = Ka Kb children are the outer product of two vectors, child
 * i Kb + l = a_i + b_l, with a's Ka children read as above from comp and nf and b's Kb from comp_b
 * and nf_b (Fb columns). Only Ka + Kb rows are read and exponentiated instead of Ka Kb. */
typedef struct {
    const int64_t *comp, *nf, *comp_b, *nf_b;
    int64_t Ka, F, Kb, Fb, K;
} children;

static children make_children(const int64_t *comp, const int64_t *nf, int64_t K, int64_t F, const int64_t *comp_b,
                              const int64_t *nf_b, int64_t Kb, int64_t Fb) {
    children kd = {comp, nf, comp_b, nf_b, K, F, Kb, Fb, Kb > 0 ? K * Kb : K};
    return kd;
}

/* Scratch of an outer product's two vectors in one tile: values and exponentials of a and b. */
static float *outer_scratch(const children *kd) { return kd->Kb > 0 ? tile_alloc(2 * (kd->Ka + kd->Kb) * TB) : NULL; }

/* Group j's children in one tile: e[k] = exp(c_k - m) and m (0 where all are -inf), as
 * child_tile. Plain children also leave their values in c; an outer product leaves its two
 * vectors' in ab, and outer_values forms c from them when an underflowed sum needs it. */
static void group_tile(const children *kd, const float *mars, int64_t B, int64_t j, int64_t b0, int64_t nb, float *c,
                       float *e, float *m, float *ab) {
    if (kd->Kb == 0) {
        child_tile(mars, B, kd->comp + j * kd->K * kd->F, kd->nf + j * kd->K, kd->K, kd->F, b0, nb, c, e, m);
        return;
    }
    const int64_t Ka = kd->Ka, Kb = kd->Kb;
    float *ca = ab, *ea = ab + Ka * TB, *cb = ea + Ka * TB, *eb = cb + Kb * TB;
    float mb[TB];
    child_tile(mars, B, kd->comp + j * Ka * kd->F, kd->nf + j * Ka, Ka, kd->F, b0, nb, ca, ea, m);
    child_tile(mars, B, kd->comp_b + j * Kb * kd->Fb, kd->nf_b + j * Kb, Kb, kd->Fb, b0, nb, cb, eb, mb);
    for (int64_t b = 0; b < TB; b++) m[b] += mb[b];
    const vf *EA = (const vf *)ea, *EB = (const vf *)eb;
    vf *E = (vf *)e;
    for (int64_t i = 0; i < Ka; i++)
        for (int64_t l = 0; l < Kb; l++)
            for (int v = 0; v < NV; v++) E[(i * Kb + l) * NV + v] = EA[i * NV + v] * EB[l * NV + v];
}

/* c[i Kb + l] = a_i + b_l over the tile: an outer product's children's values (plain children
 * have them already). */
static void outer_values(const children *kd, const float *ab, float *c) {
    if (kd->Kb == 0) return;
    const vf *A = (const vf *)ab, *Bv = (const vf *)(ab + 2 * kd->Ka * TB);
    vf *C = (vf *)c;
    for (int64_t i = 0; i < kd->Ka; i++)
        for (int64_t l = 0; l < kd->Kb; l++)
            for (int v = 0; v < NV; v++) C[(i * kd->Kb + l) * NV + v] = A[i * NV + v] + Bv[l * NV + v];
}

/* A node's output for one tile: out[b] = m[b] + log s[b] for b < nb, where the sum s is at least
 * tiny; returns whether some s fell under it (the caller recomputes those exactly). */
static int write_node(float *out, const vf *s, const float *m, int64_t nb, float tiny) {
    vi low = {0};
    float lg[TB];
    for (int v = 0; v < NV; v++) {
        const vi under = s[v] < tiny;
        low |= under;
        storeu(lg + v * VL, v_log(pick(under, vsplat(1.0f), s[v])) + loadu(m + v * VL));
    }
    if (nb == TB)
        memcpy(out, lg, sizeof lg);
    else
        for (int64_t b = 0; b < nb; b++) out[b] = lg[b];
    return any_lane(low);
}

/* Whether one of a tile's nb flows is nonzero (a tile no flow reaches is skipped). */
static int any_flow(const float *f, int64_t nb) {
    if (nb == TB) {
        vi nz = {0};
        for (int v = 0; v < NV; v++) nz |= loadu(f + v * VL) != 0.0f;
        return any_lane(nz);
    }
    for (int64_t b = 0; b < nb; b++)
        if (f[b] != 0.0f) return 1;
    return 0;
}

/* a = f / s for one node's tile, with s read back from the node's stored value n = m + log s
 * (a = f exp(m - n): one exp per node where recomputing s would take the group's matrix product
 * again); 0 where n - m < log tiny (the sum underflowed, and the exact path takes the node) and
 * beyond nb. Returns whether a nonzero flow met such a node. */
static int flow_scale(const float *f, const float *n, const float *m, vf *a, int64_t nb, float logtiny) {
    if (nb == TB) {
        vi bad = {0};
        for (int v = 0; v < NV; v++) {
            const vf fv = loadu(f + v * VL), d = loadu(n + v * VL) - loadu(m + v * VL);
            const vi under = ~(d >= logtiny); /* NaN-free: d is -inf where the node is 0 */
            a[v] = pick(under, vsplat(0.0f), fv * v_exp(-d));
            bad |= under & (fv != 0.0f);
        }
        return any_lane(bad);
    }
    float *af = (float *)a;
    int bad = 0;
    for (int64_t b = 0; b < TB; b++) af[b] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const float d = n[b] - m[b];
        const int under = !(d >= logtiny);
        af[b] = under ? 0.0f : f[b] * pc_exp(-d);
        bad |= under && f[b] != 0.0f;
    }
    return bad;
}

/* Whether the node value n at one sample came from the exact path: its sum was under tiny. */
static inline int underflowed(float n, float m, float logtiny) { return !(n - m >= logtiny); }

/* dst[b] += src[b] for b < nb, with the next tile of dst prefetched when there is one. */
static void add_tile(float *dst, const vf *src, int64_t nb, int prefetch) {
    if (prefetch) {
        __builtin_prefetch(dst + TB, 1);
        __builtin_prefetch(dst + TB + 16, 1);
    }
    if (nb == TB) {
        for (int v = 0; v < NV; v++) storeu(dst + v * VL, loadu(dst + v * VL) + src[v]);
        return;
    }
    const float *sf = (const float *)src;
    for (int64_t b = 0; b < nb; b++) dst[b] += sf[b];
}

/* The child flows of one tile into the factor rows they came from: flows[row] += cf[k]. */
static void scatter_child_flows(float *flows, int64_t B, int64_t b0, int64_t nb, const int64_t *cj, const int64_t *nj,
                                int64_t K, int64_t F, const float *cf, int prefetch) {
    for (int64_t k = 0; k < K; k++)
        for (int64_t q = 0; q < nj[k]; q++) add_tile(flows + cj[k * F + q] * B + b0, (const vf *)(cf + k * TB), nb, prefetch);
}

/* Group j's child flows cf [K][TB] into the rows they came from. An outer product's child i Kb + l
 * sends its flow to a_i and to b_l: a's flows are cf's row sums, b's its column sums, formed in ab
 * (whose values are no longer needed). */
static void scatter_group_flows(const children *kd, float *flows, int64_t B, int64_t j, int64_t b0, int64_t nb,
                                const float *cf, float *ab, int prefetch) {
    if (kd->Kb == 0) {
        scatter_child_flows(flows, B, b0, nb, kd->comp + j * kd->K * kd->F, kd->nf + j * kd->K, kd->K, kd->F, cf, prefetch);
        return;
    }
    const int64_t Ka = kd->Ka, Kb = kd->Kb;
    vf *FA = (vf *)ab, *FB = (vf *)(ab + Ka * TB);
    const vf *CF = (const vf *)cf;
    for (int64_t k = 0; k < (Ka + Kb) * NV; k++) FA[k] = vsplat(0.0f);
    for (int64_t i = 0; i < Ka; i++)
        for (int64_t l = 0; l < Kb; l++)
            for (int v = 0; v < NV; v++) {
                const vf x = CF[(i * Kb + l) * NV + v];
                FA[i * NV + v] += x;
                FB[l * NV + v] += x;
            }
    scatter_child_flows(flows, B, b0, nb, kd->comp + j * Ka * kd->F, kd->nf + j * Ka, Ka, kd->F, (const float *)FA, prefetch);
    scatter_child_flows(flows, B, b0, nb, kd->comp_b + j * Kb * kd->Fb, kd->nf_b + j * Kb, Kb, kd->Fb, (const float *)FB,
                        prefetch);
}

/* cf[k] *= e[k] over K tiles. */
static void scale_tiles(float *cf, const float *e, int64_t K) {
    vf *C = (vf *)cf;
    const vf *E = (const vf *)e;
    for (int64_t k = 0; k < K * NV; k++) C[k] *= E[k];
}

/* out[i] (+)= sum_l W[i][l] X[l] for i < M: rows of W (stride ldw) times a [L][TB] tile, MR rows
 * at a time so that each loaded tile vector feeds MR multiply-adds held in registers; `add`
 * accumulates into out instead of overwriting it. */
static inline __attribute__((always_inline)) void mm_rows(const int R, const float *W, int64_t ldw, int64_t L,
                                                          const vf *X, vf *out, int add) {
    vf a[MR][NV] = {{0}};
    if (add)
        for (int r = 0; r < R; r++)
            for (int v = 0; v < NV; v++) a[r][v] = out[r * NV + v];
    for (int64_t l = 0; l < L; l++)
        for (int v = 0; v < NV; v++) {
            const vf x = X[l * NV + v];
            for (int r = 0; r < R; r++) a[r][v] += W[r * ldw + l] * x;
        }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) out[r * NV + v] = a[r][v];
}

/* The tile's children in blocks of LC, every row block passing over one block while it is in
 * cache (16 KB): a group of Ka Kb = 4096 children (a Tucker layer at K = 64) has a 512 KB tile,
 * which each of the G / MR row blocks would otherwise stream from memory again. */
#define LC 128
static void mm_tile(const float *W, int64_t ldw, int64_t M, int64_t L, const vf *X, vf *out) {
    for (int64_t l0 = 0; l0 < L; l0 += LC) {
        const int64_t lc = min64(LC, L - l0);
        int64_t i = 0;
        for (; i + MR <= M; i += MR) mm_rows(MR, W + i * ldw + l0, ldw, lc, X + l0 * NV, out + i * NV, l0 > 0);
        for (; i < M; i++) mm_rows(1, W + i * ldw + l0, ldw, lc, X + l0 * NV, out + i * NV, l0 > 0);
    }
}

/* dots[i][k] += A[i] E[k], lane by lane, for i < M, k < K: the weight flows' products of one tile
 * as VL partial sums per edge, summed across lanes once per group (sum_dots). MR rows of A stay
 * in registers while every child's tile streams past them. */
static inline __attribute__((always_inline)) void dot_rows(const int R, int64_t K, const vf *A, const vf *E, vf *dots) {
    vf a[MR][NV];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) a[r][v] = A[r * NV + v];
    for (int64_t k = 0; k < K; k++) {
        const vf *ek = E + k * NV;
        for (int r = 0; r < R; r++) {
            vf d = a[r][0] * ek[0];
            for (int v = 1; v < NV; v++) d += a[r][v] * ek[v];
            dots[r * K + k] += d;
        }
    }
}

static void weight_dots(int64_t M, int64_t K, const vf *A, const vf *E, vf *dots) {
    int64_t i = 0;
    for (; i + MR <= M; i += MR) dot_rows(MR, K, A + i * NV, E, dots + i * K);
    for (; i < M; i++) dot_rows(1, K, A + i * NV, E, dots + i * K);
}

/* The weight flows' products of one tile for groups too large for per-lane dots (G K VL floats
 * over DOTS_MAX, which would stream through memory every tile: 8 MB for a Tucker layer at
 * K = 64): un[i][k] += sum_b A[i][b] E[k][b], with E transposed into et [TB][KP] (KP: K rounded
 * up to KC, zeros beyond K) so that MR rows of A by KC children add up in registers over the
 * tile's samples, and each tile adds G K sums into un instead of G K VL lanes into dots. KP is
 * padded by 16 more: with a power-of-two stride every row of et falls into the same cache sets. */
#define DOTS_MAX (1 << 16)
#define KC 32
static void transpose_tile(const float *e, int64_t K, int64_t KP, float *et) {
    for (int64_t k = 0; k < K; k++)
        for (int64_t b = 0; b < TB; b++) et[b * KP + k] = e[k * TB + b];
}

static void weight_flow_tile(int64_t M, int64_t K, int64_t KP, const float *A, const float *et, float *un) {
    for (int64_t k0 = 0; k0 < K; k0 += KC) { /* one block of et (TB x KC) in cache for every row block */
        for (int64_t i0 = 0; i0 < M; i0 += MR) {
            const int64_t rows = min64(MR, M - i0);
            vf s[MR][KC / VL] = {{0}};
            for (int64_t b = 0; b < TB; b++)
                for (int r = 0; r < MR; r++) {
                    const float ab = r < rows ? A[(i0 + r) * TB + b] : 0.0f;
                    for (int u = 0; u < KC / VL; u++) s[r][u] += ab * loadu(et + b * KP + k0 + u * VL);
                }
            for (int64_t r = 0; r < rows; r++) {
                float *dst = un + (i0 + r) * K + k0;
                if (k0 + KC <= K)
                    for (int u = 0; u < KC / VL; u++) storeu(dst + u * VL, loadu(dst + u * VL) + s[r][u]);
                else
                    for (int64_t k = k0; k < K; k++) dst[k - k0] += s[r][(k - k0) / VL][(k - k0) % VL];
            }
        }
    }
}

/* acc[p] += w[p] un[p], p < n. */
static void add_weighted(float *acc, const float *w, const float *un, int64_t n) {
    for (int64_t p = 0; p < n; p++) acc[p] += w[p] * un[p];
}

/* acc[p] += w[p] (the lanes of dots[p] summed), p < n: one group's weight flows. */
static void sum_dots(float *acc, const float *w, const vf *dots, int64_t n) {
    for (int64_t p = 0; p < n; p++) {
        float s = 0.0f;
        for (int v = 0; v < VL; v++) s += dots[p][v];
        acc[p] += w[p] * s;
    }
}

/* log sum_k exp(logw[k] + c[k][b]), in libm precision: the few nodes whose sum underflowed. */
static float exact_node(const float *logw, const float *c, int64_t K, int64_t b) {
    float mx = -INFINITY;
    for (int64_t k = 0; k < K; k++) {
        float v = logw[k] + c[k * TB + b];
        mx = v > mx ? v : mx;
    }
    if (mx == -INFINITY) return -INFINITY;
    double s = 0.0;
    for (int64_t k = 0; k < K; k++) s += exp((double)(logw[k] + c[k * TB + b] - mx));
    return (float)log(s) + mx;
}

/* Kb > 0: the children are an outer product (see `children`); K and F are then a's, Kb and Fb
 * b's, and comp_b, nf_b b's factor rows. */
void pc_sum_forward(float *mars, int64_t B, int64_t g, int64_t G, int64_t K, int64_t F, const int64_t *comp,
                    const int64_t *nf, int64_t Kb, int64_t Fb, const int64_t *comp_b, const int64_t *nf_b,
                    const int64_t *rows, const float *w, const float *logw, float tiny, int threads) {
    const int64_t tiles = (B + TB - 1) / TB;
    const children kd = make_children(comp, nf, K, F, comp_b, nf_b, Kb, Fb);
    const int64_t KK = kd.K;
#pragma omp parallel num_threads(threads)
    {
        float *c = tile_alloc(KK * TB), *e = tile_alloc(KK * TB), *s = tile_alloc(G * TB), *ab = outer_scratch(&kd);
        float m[TB];
#pragma omp for collapse(2) schedule(static)
        for (int64_t j = 0; j < g; j++) {
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t b0 = t * TB, nb = min64(TB, B - b0);
                group_tile(&kd, mars, B, j, b0, nb, c, e, m, ab);
                mm_tile(w + j * G * KK, KK, G, KK, (const vf *)e, (vf *)s);
                int have_values = kd.Kb == 0;
                for (int64_t i = 0; i < G; i++) {
                    const int64_t node = j * G + i;
                    const float *si = s + i * TB;
                    float *out = mars + rows[node] * B + b0;
                    if (!write_node(out, (const vf *)si, m, nb, tiny)) continue;
                    if (!have_values) outer_values(&kd, ab, c);
                    have_values = 1;
                    for (int64_t b = 0; b < nb; b++)
                        if (si[b] < tiny) out[b] = exact_node(logw + node * KK, c, KK, b);
                }
            }
        }
        free(c);
        free(e);
        free(s);
        free(ab);
    }
}

/* wflow[p] += the threads' own weight flows acc[q][p] (q < threads), summed; frees acc. */
static void reduce_thread_flows(float *acc, int64_t P, int threads, float *wflow) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t p = 0; p < P; p++) {
        float v = 0.0f;
        for (int q = 0; q < threads; q++) v += acc[(int64_t)q * P + p];
        wflow[p] += v;
    }
    free(acc);
}

/* The exact path of one group's underflowed sums in one tile: each edge's flow f exp(logw + c -
 * node) in libm precision, into the child flows cf (after their scaling by e) and the weight
 * flows acc. */
static void exact_group_flows(const float *mars, const float *flows, int64_t B, int64_t j, int64_t G, int64_t K,
                              const int64_t *rows, const float *logw, const float *c, const float *m, int64_t b0,
                              int64_t nb, float logtiny, float *cf, float *acc) {
    for (int64_t i = 0; i < G; i++) {
        const int64_t node = j * G + i;
        const float *f = flows + rows[node] * B + b0, *n = mars + rows[node] * B + b0;
        for (int64_t b = 0; b < nb; b++) {
            if (!(underflowed(n[b], m[b], logtiny) && f[b] != 0.0f && isfinite(n[b]))) continue;
            for (int64_t k = 0; k < K; k++) {
                float ef = f[b] * expf(logw[node * K + k] + c[k * TB + b] - n[b]);
                cf[k * TB + b] += ef;
                acc[node * K + k] += ef;
            }
        }
    }
}

/* a[i] = f_i / s_i for group j's G nodes in one tile (flow_scale), with each node's next tile
 * prefetched when the thread has one; returns whether some nonzero flow met an underflowed sum. */
static int group_flow_scale(const float *mars, const float *flows, int64_t B, int64_t j, int64_t G, const int64_t *rows,
                            const float *m, int64_t b0, int64_t nb, float logtiny, int prefetch, float *a) {
    int bad = 0;
    for (int64_t i = 0; i < G; i++) {
        const int64_t r = rows[j * G + i] * B + b0;
        if (prefetch) { /* the node's next tile, as child_tile does for the children */
            __builtin_prefetch(flows + r + TB);
            __builtin_prefetch(flows + r + TB + 16);
            __builtin_prefetch(mars + r + TB);
            __builtin_prefetch(mars + r + TB + 16);
        }
        bad |= flow_scale(flows + r, mars + r, m, (vf *)(a + i * TB), nb, logtiny);
    }
    return bad;
}

/* wt is w transposed per group ([g][K][G]): the child flows are wt times the nodes' f / s. The
 * children are read as by pc_sum_forward (Kb > 0: an outer product). */
void pc_sum_backward(const float *mars, float *flows, int64_t B, int64_t g, int64_t G, int64_t K, int64_t F,
                     const int64_t *comp, const int64_t *nf, int64_t Kb, int64_t Fb, const int64_t *comp_b,
                     const int64_t *nf_b, const int64_t *rows, const float *w, const float *wt, const float *logw,
                     float tiny, float *wflow, int threads) {
    const children kd = make_children(comp, nf, K, F, comp_b, nf_b, Kb, Fb);
    const int64_t KK = kd.K, tiles = (B + TB - 1) / TB, P = g * G * KK;
    float *acc = calloc((size_t)threads * P, sizeof(float));
#pragma omp parallel num_threads(threads)
    {
        float *my = acc + (int64_t)omp_get_thread_num() * P;
        float *c = tile_alloc(KK * TB), *e = tile_alloc(KK * TB), *cf = tile_alloc(KK * TB), *ab = outer_scratch(&kd);
        float *a = tile_alloc(G * TB);
        const int big = G * KK * VL > DOTS_MAX; /* weight flows: per-lane dots, or sums through et */
        const int64_t KP = (KK + KC - 1) / KC * KC + 16; /* +16: et's rows off a power-of-two stride (cache sets) */
        vf *dots = big ? NULL : tile_alloc(G * KK * VL);
        float *et = big ? tile_alloc(KP * TB) : NULL, *un = big ? tile_alloc(G * KK) : NULL;
        if (big) memset(et, 0, sizeof(float) * (size_t)(KP * TB));
        const float logtiny = logf(tiny);
        float m[TB];
        const int64_t q = omp_get_thread_num(), nq = omp_get_num_threads();
        const int64_t t_lo = tiles * q / nq, t_hi = tiles * (q + 1) / nq; /* this thread's samples */
        for (int64_t j = 0; j < g; j++) {
            int touched = 0;
            for (int64_t t = t_lo; t < t_hi; t++) { /* a group's rows read in order: prefetchable */
                const int64_t b0 = t * TB, nb = min64(TB, B - b0);
                int any = 0;
                for (int64_t i = 0; i < G && !any; i++) any = any_flow(flows + rows[j * G + i] * B + b0, nb);
                if (!any) continue;
                if (!touched && big) memset(un, 0, sizeof(float) * (size_t)(G * KK));
                if (!touched && !big) memset(dots, 0, sizeof(vf) * (size_t)(G * KK));
                touched = 1;
                group_tile(&kd, mars, B, j, b0, nb, c, e, m, ab);
                const int bad = group_flow_scale(mars, flows, B, j, G, rows, m, b0, nb, logtiny, t + 1 < t_hi, a);
                mm_tile(wt + j * G * KK, G, KK, G, (const vf *)a, (vf *)cf);
                if (big) {
                    transpose_tile(e, KK, KP, et);
                    weight_flow_tile(G, KK, KP, a, et, un);
                } else {
                    weight_dots(G, KK, (const vf *)a, (const vf *)e, dots);
                }
                scale_tiles(cf, e, KK);
                if (bad) {
                    outer_values(&kd, ab, c);
                    exact_group_flows(mars, flows, B, j, G, KK, rows, logw, c, m, b0, nb, logtiny, cf, my);
                }
                scatter_group_flows(&kd, flows, B, j, b0, nb, cf, ab, t + 1 < t_hi);
            }
            if (touched && big) add_weighted(my + j * G * KK, w + j * G * KK, un, G * KK);
            if (touched && !big) sum_dots(my + j * G * KK, w + j * G * KK, dots, G * KK);
        }
        free(c);
        free(e);
        free(cf);
        free(ab);
        free(a);
        free(dots);
        free(et);
        free(un);
    }
    reduce_thread_flows(acc, P, threads, wflow);
}

/* out row r = sum of its F factor rows (log space). */
void pc_product_forward(float *mars, int64_t B, int64_t m, int64_t F, const int64_t *child, const int64_t *rows,
                        int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < m; r++) {
        float *out = mars + rows[r] * B;
        const float *r0 = mars + child[r * F] * B;
        for (int64_t b = 0; b < B; b++) out[b] = r0[b];
        for (int64_t f = 1; f < F; f++) {
            const float *rf = mars + child[r * F + f] * B;
            for (int64_t b = 0; b < B; b++) out[b] += rf[b];
        }
    }
}

/* Every factor row gets its product's flow; each thread takes a range of samples (factors may be
 * shared between rows, so rows cannot be split). */
void pc_product_backward(float *flows, int64_t B, int64_t m, int64_t F, const int64_t *child, const int64_t *rows,
                         int threads) {
#pragma omp parallel num_threads(threads)
    {
        const int64_t q = omp_get_thread_num(), nq = omp_get_num_threads();
        const int64_t lo = B * q / nq, hi = B * (q + 1) / nq;
        for (int64_t r = 0; r < m; r++) {
            const float *src = flows + rows[r] * B;
            for (int64_t f = 0; f < F; f++) {
                float *dst = flows + child[r * F + f] * B;
                for (int64_t b = lo; b < hi; b++) dst[b] += src[b];
            }
        }
    }
}

/* Input rows of a family over K values: out[r][b] = table[r][codes[run[r]][b]], 0 (log 1:
 * marginalised) where the code is K (missing). Rows come in runs per variable (an HCLT's node
 * vectors, of any lengths); codes [runs][B] holds each run's variable's values. */
void pc_table_inputs(float *out, int64_t B, int64_t m, const int64_t *run, int64_t K, const float *table,
                     const int64_t *codes, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < m; r++) {
        const float *t = table + r * K;
        const int64_t *code = codes + run[r] * B;
        float *o = out + r * B;
        for (int64_t b = 0; b < B; b++) o[b] = code[b] >= K ? 0.0f : t[code[b]];
    }
}

/* The categorical M-step of m rows over K values, in place on the logits: theta_k <- (1 - a) old_k
 * + a (F_k + pc / K + F_miss old_k) / (F + F_miss + pc), old = softmax(logits), logits <- log theta
 * (the formula of pccompile.statistics). counts has row stride ld. */
void pc_categorical_m_step(float *logits, int64_t m, int64_t K, const float *counts, int64_t ld, const float *missing,
                           float a, float pc, int threads) {
    const int64_t KV = K / VL * VL; /* the row's whole vectors; the rest lane by lane */
#pragma omp parallel num_threads(threads)
    {
        float *old = tile_alloc(K);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < m; r++) {
            float *l = logits + r * K, *th = old;
            const float *c = counts + r * ld;
            vf vmx = vsplat(-INFINITY), vz = vsplat(0.0f), vt = vsplat(0.0f);
            for (int64_t k = 0; k < KV; k += VL) vmx = vmax(vmx, loadu(l + k));
            float mx = -INFINITY;
            for (int v = 0; v < VL; v++) mx = vmx[v] > mx ? vmx[v] : mx;
            for (int64_t k = KV; k < K; k++) mx = l[k] > mx ? l[k] : mx;
            for (int64_t k = 0; k < KV; k += VL) {
                const vf o = v_exp(loadu(l + k) - mx);
                storeu(th + k, o);
                vz += o;
                vt += loadu(c + k);
            }
            float z = 0.0f, total = 0.0f;
            for (int v = 0; v < VL; v++) {
                z += vz[v];
                total += vt[v];
            }
            for (int64_t k = KV; k < K; k++) {
                th[k] = pc_exp(l[k] - mx);
                z += th[k];
                total += c[k];
            }
            const float miss = missing[r], denom = total + miss + pc, inv = 1.0f / z, prior = pc / (float)K;
            const float keep = denom > 0.0f ? 1.0f - a : 1.0f, scale = denom > 0.0f ? a / denom : 0.0f;
            /* theta = (1 - a) o + a (c + prior + miss o) / denom, o = th / z; a zero or subnormal
             * theta sends the row to libm's log (log 0 = -inf) */
            vi vsmall = {0};
            for (int64_t k = 0; k < KV; k += VL) {
                const vf o = loadu(th + k) * inv;
                vf theta = keep * o + scale * (loadu(c + k) + prior + miss * o);
                theta = pick(theta > 0.0f, theta, vsplat(0.0f));
                vsmall |= theta < 1.17549435e-38f;
                storeu(th + k, theta);
            }
            int small = any_lane(vsmall);
            for (int64_t k = KV; k < K; k++) {
                const float o = th[k] * inv;
                const float theta = keep * o + scale * (c[k] + prior + miss * o);
                th[k] = theta > 0.0f ? theta : 0.0f;
                small |= th[k] < 1.17549435e-38f;
            }
            if (small) {
                for (int64_t k = 0; k < K; k++) l[k] = logf(th[k]);
                continue;
            }
            for (int64_t k = 0; k < KV; k += VL) storeu(l + k, v_log(loadu(th + k)));
            for (int64_t k = KV; k < K; k++) l[k] = pc_log(th[k]);
        }
        free(old);
    }
}

/* EM counts of a family over K values: counts[r][code] += f[r][b] at the batch's code of the
 * row's variable (code K: missing; codes and runs as in pc_table_inputs). counts [m][K + 1] is
 * zeroed by the caller. Four rows at a time, so that four additions per sample are in flight
 * instead of one chain through the same counter (most pixels share one value). */
void pc_table_counts(float *counts, const float *f, int64_t B, int64_t m, const int64_t *run, int64_t K,
                     const int64_t *codes, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r0 = 0; r0 < m; r0 += 4) {
        if (r0 + 4 <= m) {
            const int64_t *c0 = codes + run[r0] * B, *c1 = codes + run[r0 + 1] * B;
            const int64_t *c2 = codes + run[r0 + 2] * B, *c3 = codes + run[r0 + 3] * B;
            float *h0 = counts + r0 * (K + 1), *h1 = h0 + (K + 1), *h2 = h1 + (K + 1), *h3 = h2 + (K + 1);
            const float *f0 = f + r0 * B, *f1 = f0 + B, *f2 = f1 + B, *f3 = f2 + B;
            for (int64_t b = 0; b < B; b++) {
                h0[c0[b]] += f0[b];
                h1[c1[b]] += f1[b];
                h2[c2[b]] += f2[b];
                h3[c3[b]] += f3[b];
            }
            continue;
        }
        for (int64_t r = r0; r < m; r++) {
            const int64_t *c = codes + run[r] * B;
            float *h = counts + r * (K + 1);
            for (int64_t b = 0; b < B; b++) h[c[b]] += f[r * B + b];
        }
    }
}

/* Sparse sums: a masked partition's live edges only (codegen/cpu/sparse.py lays them out). The
 * nodes of group j are blocks of R <= 4 rows that read the same columns; edge w_start[b] + p R + r
 * is row r's weight on the block's column p. Child tiles are formed as in the dense kernels. */

/* acc[r] = sum_p w[p S + r] e[cols[p]] for R rows of a block whose weights have stride S: each
 * loaded child tile feeds R multiply-adds. Where R * NV accumulators are fewer than 8 (too few
 * additions in flight to hide their latency), two sets alternate columns. R is a literal at
 * every call: the loops unroll. */
static inline __attribute__((always_inline)) void block_rows(const int R, int64_t S, const float *w,
                                                             const int64_t *cols, int64_t n, const vf *E,
                                                             vf acc[][NV]) {
    vf a[MR][NV] = {{0}}, z[MR][NV] = {{0}};
    const int two = R * NV < 8;
    int64_t p = 0;
    for (; two && p + 2 <= n; p += 2) {
        const vf *x0 = E + cols[p] * NV, *x1 = E + cols[p + 1] * NV;
        for (int r = 0; r < R; r++)
            for (int v = 0; v < NV; v++) {
                a[r][v] += w[p * S + r] * x0[v];
                z[r][v] += w[(p + 1) * S + r] * x1[v];
            }
    }
    for (; p < n; p++) {
        const vf *x = E + cols[p] * NV;
        for (int r = 0; r < R; r++)
            for (int v = 0; v < NV; v++) a[r][v] += w[p * S + r] * x[v];
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = a[r][v] + z[r][v];
}

/* All R (<= 4) rows of a block, MR at a time. */
static void block_sums(int64_t R, const float *w, const int64_t *cols, int64_t n, const vf *E, vf acc[4][NV]) {
    int64_t r = 0;
    for (; r + MR <= R; r += MR) block_rows(MR, R, w + r, cols, n, E, acc + r);
    for (; r < R; r++) block_rows(1, R, w + r, cols, n, E, acc + r);
}

/* log sum_p exp(logw[p R + r] + c[cols[p]][b]) in libm precision: an underflowed sparse node. */
static float exact_block_node(const float *logw, int64_t R, int64_t r, const int64_t *cols, int64_t n, const float *c,
                              int64_t b) {
    float mx = -INFINITY;
    for (int64_t p = 0; p < n; p++) {
        float v = logw[p * R + r] + c[cols[p] * TB + b];
        mx = v > mx ? v : mx;
    }
    if (mx == -INFINITY) return -INFINITY;
    double s = 0.0;
    for (int64_t p = 0; p < n; p++) s += exp((double)(logw[p * R + r] + c[cols[p] * TB + b] - mx));
    return (float)log(s) + mx;
}

void pc_sparse_forward(float *mars, int64_t B, int64_t g, int64_t G, int64_t K, int64_t F, const int64_t *comp,
                       const int64_t *nf, const int64_t *rows, const int64_t *group_start, const int64_t *brows,
                       const int64_t *count, const int64_t *col_start, const int64_t *cols, const int64_t *w_start,
                       const float *w, const float *logw, float tiny, int threads) {
    const int64_t tiles = (B + TB - 1) / TB;
#pragma omp parallel num_threads(threads)
    {
        float *c = tile_alloc(K * TB), *e = tile_alloc(K * TB);
        float m[TB];
#pragma omp for collapse(2) schedule(static)
        for (int64_t j = 0; j < g; j++) {
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t b0 = t * TB, nb = min64(TB, B - b0);
                child_tile(mars, B, comp + j * K * F, nf + j * K, K, F, b0, nb, c, e, m);
                for (int64_t k = group_start[j]; k < group_start[j + 1]; k++) {
                    const int64_t R = count[k], n = col_start[k + 1] - col_start[k], *bc = cols + col_start[k];
                    vf acc[4][NV];
                    block_sums(R, w + w_start[k], bc, n, (const vf *)e, acc);
                    for (int64_t r = 0; r < R; r++) {
                        const float *si = (const float *)acc[r];
                        float *out = mars + rows[j * G + brows[k * 4 + r]] * B + b0;
                        if (!write_node(out, acc[r], m, nb, tiny)) continue;
                        for (int64_t b = 0; b < nb; b++)
                            if (si[b] < tiny) out[b] = exact_block_node(logw + w_start[k], R, r, bc, n, c, b);
                    }
                }
            }
        }
        free(c);
        free(e);
    }
}

/* How many edges group j has: from its first block's first to its last block's last. */
static int64_t group_edge_count(const int64_t *group_start, const int64_t *count, const int64_t *col_start,
                                const int64_t *w_start, int64_t j) {
    const int64_t last = group_start[j + 1] - 1;
    return w_start[last] + count[last] * (col_start[last + 1] - col_start[last]) - w_start[group_start[j]];
}

/* The flows of a sparse partition. Each thread takes a range of samples (as the dense backward)
 * and keeps, for the group at hand, one vector per edge of sum_b a_r e_k over its tiles; their
 * horizontal sums (times w, into the thread's weight flows) wait for the group's last tile. */
void pc_sparse_backward(const float *mars, float *flows, int64_t B, int64_t g, int64_t G, int64_t K, int64_t F,
                        const int64_t *comp, const int64_t *nf, const int64_t *rows, const int64_t *group_start,
                        const int64_t *brows, const int64_t *count, const int64_t *col_start, const int64_t *cols,
                        const int64_t *w_start, const float *w, const float *logw, int64_t edges, int64_t group_edges,
                        float tiny, float *wflow, int threads) {
    const int64_t tiles = (B + TB - 1) / TB;
    float *acc_all = calloc((size_t)threads * edges, sizeof(float));
#pragma omp parallel num_threads(threads)
    {
        float *my = acc_all + (int64_t)omp_get_thread_num() * edges;
        float *c = tile_alloc(K * TB), *e = tile_alloc(K * TB), *cf = tile_alloc(K * TB);
        vf *dots = tile_alloc((group_edges > 0 ? group_edges : 1) * VL);
        const float logtiny = logf(tiny);
        float m[TB];
        const int64_t q = omp_get_thread_num(), nq = omp_get_num_threads();
        const int64_t t_lo = tiles * q / nq, t_hi = tiles * (q + 1) / nq;
        for (int64_t j = 0; j < g; j++) {
            const int64_t e0 = w_start[group_start[j]], ne = group_edge_count(group_start, count, col_start, w_start, j);
            int touched = 0;
            for (int64_t t = t_lo; t < t_hi; t++) {
                const int64_t b0 = t * TB, nb = min64(TB, B - b0);
                int any = 0;
                for (int64_t i = 0; i < G && !any; i++) any = any_flow(flows + rows[j * G + i] * B + b0, nb);
                if (!any) continue;
                if (!touched) memset(dots, 0, sizeof(vf) * (size_t)ne);
                touched = 1;
                child_tile(mars, B, comp + j * K * F, nf + j * K, K, F, b0, nb, c, e, m);
                memset(cf, 0, sizeof(float) * K * TB);
                int bad = 0;
                for (int64_t k = group_start[j]; k < group_start[j + 1]; k++) {
                    const int64_t R = count[k], n = col_start[k + 1] - col_start[k], *bc = cols + col_start[k];
                    const float *wk = w + w_start[k];
                    vf a[4][NV];
                    for (int64_t r = 0; r < R; r++) {
                        const int64_t at = rows[j * G + brows[k * 4 + r]] * B + b0;
                        bad |= flow_scale(flows + at, mars + at, m, a[r], nb, logtiny);
                    }
                    vf *dk = dots + (w_start[k] - e0);
                    for (int64_t p = 0; p < n; p++) {
                        const vf *x = (const vf *)e + bc[p] * NV;
                        vf *cfk = (vf *)cf + bc[p] * NV;
                        for (int64_t r = 0; r < R; r++) {
                            vf d = a[r][0] * x[0];
                            for (int v = 1; v < NV; v++) d += a[r][v] * x[v];
                            dk[p * R + r] += d;
                            for (int v = 0; v < NV; v++) cfk[v] += wk[p * R + r] * a[r][v];
                        }
                    }
                }
                scale_tiles(cf, e, K);
                for (int64_t k = group_start[j]; bad && k < group_start[j + 1]; k++) {
                    /* the exact path of underflowed sums: each edge's flow f exp(logw + c - node)
                     * in libm precision, added after the scaling by e */
                    const int64_t R = count[k], n = col_start[k + 1] - col_start[k], *bc = cols + col_start[k];
                    for (int64_t r = 0; r < R; r++) {
                        const int64_t row = rows[j * G + brows[k * 4 + r]];
                        const float *f = flows + row * B + b0, *nv = mars + row * B + b0;
                        for (int64_t b = 0; b < nb; b++) {
                            if (!(underflowed(nv[b], m[b], logtiny) && f[b] != 0.0f && isfinite(nv[b]))) continue;
                            for (int64_t p = 0; p < n; p++) {
                                const int64_t ei = w_start[k] + p * R + r;
                                const float ef = f[b] * expf(logw[ei] + c[bc[p] * TB + b] - nv[b]);
                                cf[bc[p] * TB + b] += ef;
                                my[ei] += ef;
                            }
                        }
                    }
                }
                scatter_child_flows(flows, B, b0, nb, comp + j * K * F, nf + j * K, K, F, cf, t + 1 < t_hi);
            }
            if (touched) sum_dots(my + e0, w + e0, dots, ne);
        }
        free(c);
        free(e);
        free(cf);
        free(dots);
    }
    reduce_thread_flows(acc_all, edges, threads, wflow);
}

/* Signed circuits (pccompile.signed): a value is (log|v|, sign v), in two buffers `mags` and
 * `signs` [rows, B]. A product adds its factors' log-magnitudes and multiplies their signs; a sum
 * group shifts its K children by their largest log-magnitude per sample (0 where all are -inf),
 * takes the signed exponentials e, and gives each of its G nodes log|w e| + shift and the sign of
 * w e. Exact zeros (cancellations) come out as -inf with sign 0 (logf for the sums below the
 * smallest normal float, pc_log for the rest). Work is split over (group, tile) pairs as in
 * pc_sum_forward. */
/* One group's K children in one tile, staged: log-magnitudes into lm and signs into sg (-inf and 0
 * beyond nb), then e = sg exp(lm - top) with top their max per sample (0 where all are -inf). */
static void signed_children(const float *mags, const float *signs, int64_t B, const int64_t *child, int64_t K,
                            int64_t b0, int64_t nb, float *lm, float *sg, vf *E, vf *top) {
    for (int v = 0; v < NV; v++) top[v] = vsplat(-INFINITY);
    for (int64_t k = 0; k < K; k++) {
        const float *rm = mags + child[k] * B + b0, *rs = signs + child[k] * B + b0;
        float *ml = lm + k * TB, *sl = sg + k * TB;
        if (nb == TB) {
            memcpy(ml, rm, TB * sizeof(float));
            memcpy(sl, rs, TB * sizeof(float));
        } else { /* the batch's last, partial tile */
            for (int64_t b = 0; b < nb; b++) {
                ml[b] = rm[b];
                sl[b] = rs[b];
            }
            for (int64_t b = nb; b < TB; b++) {
                ml[b] = -INFINITY;
                sl[b] = 0.0f;
            }
        }
        for (int v = 0; v < NV; v++) top[v] = vmax(top[v], loadu(ml + v * VL));
    }
    for (int v = 0; v < NV; v++) top[v] = pick(top[v] == -INFINITY, vsplat(0.0f), top[v]);
    for (int64_t k = 0; k < K; k++)
        for (int v = 0; v < NV; v++)
            E[k * NV + v] = loadu(sg + k * TB + v * VL) * v_exp(loadu(lm + k * TB + v * VL) - top[v]);
}

void pc_signed_sum_forward(float *mags, float *signs, int64_t B, int64_t g, int64_t G, int64_t K,
                           const int64_t *child, const int64_t *rows, const float *w, int threads) {
    const int64_t tiles = (B + TB - 1) / TB;
    const float normal = 1.17549435e-38f; /* v_log takes normal numbers; below, logf (0: a cancellation) */
#pragma omp parallel num_threads(threads)
    {
        float *lm = tile_alloc(K * TB), *sg = tile_alloc(K * TB), *e = tile_alloc(K * TB), *s = tile_alloc(G * TB);
        vf top[NV];
#pragma omp for collapse(2) schedule(static)
        for (int64_t j = 0; j < g; j++) {
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t b0 = t * TB, nb = min64(TB, B - b0);
                signed_children(mags, signs, B, child + j * K, K, b0, nb, lm, sg, (vf *)e, top);
                mm_tile(w + j * G * K, K, G, K, (const vf *)e, (vf *)s);
                for (int64_t i = 0; i < G; i++) {
                    const int64_t row = rows[j * G + i];
                    float om[TB], os[TB];
                    vi low = {0};
                    for (int v = 0; v < NV; v++) {
                        const vf a = ((const vf *)s)[i * NV + v];
                        const vf mag = (vf)((vi)a & 0x7fffffff);
                        const vi under = mag < normal;
                        low |= under;
                        storeu(om + v * VL, v_log(pick(under, vsplat(1.0f), mag)) + top[v]);
                        storeu(os + v * VL, pick(a > 0.0f, vsplat(1.0f), pick(a < 0.0f, vsplat(-1.0f), vsplat(0.0f))));
                    }
                    if (any_lane(low))
                        for (int64_t b = 0; b < nb; b++)
                            if (fabsf(s[i * TB + b]) < normal) om[b] = logf(fabsf(s[i * TB + b])) + ((float *)top)[b];
                    memcpy(mags + row * B + b0, om, nb * sizeof(float));
                    memcpy(signs + row * B + b0, os, nb * sizeof(float));
                }
            }
        }
        free(lm);
        free(sg);
        free(e);
        free(s);
    }
}

void pc_signed_product_forward(float *mags, float *signs, int64_t B, int64_t m, int64_t F, const int64_t *child,
                               const int64_t *rows, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < m; r++) {
        float *om = mags + rows[r] * B, *os = signs + rows[r] * B;
        const float *m0 = mags + child[r * F] * B, *s0 = signs + child[r * F] * B;
        for (int64_t b = 0; b < B; b++) {
            om[b] = m0[b];
            os[b] = s0[b];
        }
        for (int64_t f = 1; f < F; f++) {
            const float *mf = mags + child[r * F + f] * B, *sf = signs + child[r * F + f] * B;
            for (int64_t b = 0; b < B; b++) {
                om[b] += mf[b];
                os[b] *= sf[b];
            }
        }
    }
}
