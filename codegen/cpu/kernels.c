/* The CPU target's kernels: a lowered Program's product and sum partitions over a value buffer
 * `mars [rows, B]` (float32, row-major, log space), forward and backward (flows), with OpenMP.
 *
 * A sum partition is g groups of G nodes that read the same K children. Child k of group j is
 * the sum of its nf[j][k] factor rows comp[j][k][0..nf-1] (one row when the children are stored;
 * the factors of a product that fusion removed otherwise; the padding to F columns is skipped),
 * formed in a tile of TB samples and never stored. Per group and tile: the max over the children m, e = exp(c - m), then for every node
 * out = m + log(sum_k w_k e_k). A node whose sum falls below `tiny` is recomputed exactly in log
 * space (the same rule as the torch backend). The backward pass recomputes the same tiles and
 * gives each child flow e_k sum_i w_ik f_i / s_i, and each weight w_ik sum_b e_k f_i / s_i.
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

/* Tiles are vectors of TB floats: NV vectors of 16 (GCC vector types; on a CPU without 512-bit
 * registers the compiler splits each into narrower ones). */
typedef float vf __attribute__((vector_size(64)));
#define NV (TB / 16)

static void *tile_alloc(int64_t floats) { return aligned_alloc(64, (size_t)((floats + 15) / 16) * 64); }

/* The K children of one group in one tile: c[k][b] (b < nb; -inf beyond), their max m[b] (0 where
 * all are -inf) and e[k][b] = exp(c - m) (0 beyond nb). */
static void child_tile(const float *mars, int64_t B, const int64_t *comp, const int64_t *nf, int64_t K, int64_t F,
                       int64_t b0, int64_t nb, float *c, float *e, float *m) {
    for (int64_t b = 0; b < TB; b++) m[b] = -INFINITY;
    for (int64_t k = 0; k < K; k++) {
        float *ck = c + k * TB;
        const int64_t *rows = comp + k * F, n = nf[k];
        const float *r0 = mars + rows[0] * B + b0; /* n >= 1: a child of no factor reads ONE_ROW */
        for (int64_t f = 0; f < n && b0 + TB < B; f++) { /* the next tile of each row: random rows defeat the prefetcher */
            __builtin_prefetch(mars + rows[f] * B + b0 + TB);
            __builtin_prefetch(mars + rows[f] * B + b0 + TB + 16);
        }
        for (int64_t b = 0; b < nb; b++) ck[b] = r0[b];
        for (int64_t f = 1; f < n; f++) {
            const float *rf = mars + rows[f] * B + b0;
            for (int64_t b = 0; b < nb; b++) ck[b] += rf[b];
        }
        for (int64_t b = nb; b < TB; b++) ck[b] = -INFINITY;
        for (int64_t b = 0; b < TB; b++) m[b] = ck[b] > m[b] ? ck[b] : m[b];
    }
    for (int64_t b = 0; b < TB; b++) m[b] = m[b] == -INFINITY ? 0.0f : m[b];
    for (int64_t k = 0; k < K; k++) {
        const float *ck = c + k * TB;
        float *ek = e + k * TB;
        for (int64_t b = 0; b < TB; b++) ek[b] = pc_exp(ck[b] - m[b]);
    }
}

/* out[i] = sum_l W[i][l] X[l] for i < M: rows of W (stride ldw) times a [L][TB] tile, four rows
 * at a time so that each loaded tile vector feeds four multiply-adds held in registers. */
static void mm_tile(const float *W, int64_t ldw, int64_t M, int64_t L, const vf *X, vf *out) {
    int64_t i = 0;
    for (; i + 4 <= M; i += 4) {
        const float *w0 = W + i * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
        vf a0[NV] = {0}, a1[NV] = {0}, a2[NV] = {0}, a3[NV] = {0};
        for (int64_t l = 0; l < L; l++) {
            for (int v = 0; v < NV; v++) {
                const vf x = X[l * NV + v];
                a0[v] += w0[l] * x;
                a1[v] += w1[l] * x;
                a2[v] += w2[l] * x;
                a3[v] += w3[l] * x;
            }
        }
        for (int v = 0; v < NV; v++) {
            out[i * NV + v] = a0[v];
            out[(i + 1) * NV + v] = a1[v];
            out[(i + 2) * NV + v] = a2[v];
            out[(i + 3) * NV + v] = a3[v];
        }
    }
    for (; i < M; i++) {
        const float *w0 = W + i * ldw;
        vf a0[NV] = {0};
        for (int64_t l = 0; l < L; l++)
            for (int v = 0; v < NV; v++) a0[v] += w0[l] * X[l * NV + v];
        for (int v = 0; v < NV; v++) out[i * NV + v] = a0[v];
    }
}

/* acc[i][k] += w[i][k] sum_b A[i][b] E[k][b] for i < M, k < K: the weight flows of one tile.
 * et is E transposed, [TB][KP] with KP = K rounded up to 32 (zeros beyond K): four rows of A by
 * 32 columns at a time, accumulated in registers over the tile's samples. */
static void weight_flow_tile(const float *w, int64_t M, int64_t K, int64_t KP, const float *A, const float *et,
                             float *acc) {
    for (int64_t i0 = 0; i0 < M; i0 += 4) {
        const int64_t rows = min64(4, M - i0);
        for (int64_t k0 = 0; k0 < KP; k0 += 32) {
            vf s[4][2] = {{0}};
            for (int64_t b = 0; b < TB; b++) {
                const vf x0 = *(const vf *)(et + b * KP + k0), x1 = *(const vf *)(et + b * KP + k0 + 16);
                for (int r = 0; r < 4; r++) {
                    const float ab = r < rows ? A[(i0 + r) * TB + b] : 0.0f;
                    s[r][0] += ab * x0;
                    s[r][1] += ab * x1;
                }
            }
            for (int64_t r = 0; r < rows; r++) {
                const int64_t i = i0 + r;
                for (int64_t k = k0; k < min64(K, k0 + 32); k++)
                    acc[i * K + k] += w[i * K + k] * s[r][(k - k0) / 16][(k - k0) % 16];
            }
        }
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

void pc_sum_forward(float *mars, int64_t B, int64_t g, int64_t G, int64_t K, int64_t F, const int64_t *comp,
                    const int64_t *nf, const int64_t *rows, const float *w, const float *logw, float tiny, int threads) {
    const int64_t tiles = (B + TB - 1) / TB;
#pragma omp parallel num_threads(threads)
    {
        float *c = tile_alloc(K * TB), *e = tile_alloc(K * TB), *s = tile_alloc(G * TB);
        float m[TB];
#pragma omp for collapse(2) schedule(static)
        for (int64_t j = 0; j < g; j++) {
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t b0 = t * TB, nb = min64(TB, B - b0);
                child_tile(mars, B, comp + j * K * F, nf + j * K, K, F, b0, nb, c, e, m);
                mm_tile(w + j * G * K, K, G, K, (const vf *)e, (vf *)s);
                for (int64_t i = 0; i < G; i++) {
                    const int64_t node = j * G + i;
                    const float *si = s + i * TB;
                    float *out = mars + rows[node] * B + b0, lg[TB];
                    float low = si[0];
                    for (int64_t b = 0; b < TB; b++) low = si[b] < low ? si[b] : low;
                    const int under = low < tiny;
                    for (int64_t b = 0; b < TB; b++) lg[b] = si[b] < tiny ? 1.0f : si[b];
                    for (int64_t b = 0; b < TB; b++) lg[b] = pc_log(lg[b]) + m[b]; /* whole tiles: vectorised */
                    for (int64_t b = 0; b < nb; b++) out[b] = lg[b];
                    for (int64_t b = 0; under && b < nb; b++)
                        if (si[b] < tiny) out[b] = exact_node(logw + node * K, c, K, b);
                }
            }
        }
        free(c);
        free(e);
        free(s);
    }
}

/* wt is w transposed per group ([g][K][G]): the child flows are wt times the nodes' f / s. */
void pc_sum_backward(const float *mars, float *flows, int64_t B, int64_t g, int64_t G, int64_t K, int64_t F,
                     const int64_t *comp, const int64_t *nf, const int64_t *rows, const float *w, const float *wt, const float *logw,
                     float tiny, float *wflow, int threads) {
    const int64_t tiles = (B + TB - 1) / TB, P = g * G * K;
    float *acc = calloc((size_t)threads * P, sizeof(float));
#pragma omp parallel num_threads(threads)
    {
        float *my = acc + (int64_t)omp_get_thread_num() * P;
        float *c = tile_alloc(K * TB), *e = tile_alloc(K * TB), *cf = tile_alloc(K * TB);
        float *s = tile_alloc(G * TB), *a = tile_alloc(G * TB);
        const int64_t KP = (K + 31) / 32 * 32;
        float *et = tile_alloc(KP * TB);
        memset(et, 0, sizeof(float) * KP * TB);
        float m[TB];
        const int64_t q = omp_get_thread_num(), nq = omp_get_num_threads();
        const int64_t t_lo = tiles * q / nq, t_hi = tiles * (q + 1) / nq; /* this thread's samples */
        for (int64_t j = 0; j < g; j++) {
            for (int64_t t = t_lo; t < t_hi; t++) { /* a group's rows read in order: prefetchable */
                const int64_t b0 = t * TB, nb = min64(TB, B - b0);
                int any = 0;
                for (int64_t i = 0; i < G && !any; i++) {
                    const float *f = flows + rows[j * G + i] * B + b0;
                    for (int64_t b = 0; b < nb; b++) any |= f[b] != 0.0f;
                }
                if (!any) continue;
                child_tile(mars, B, comp + j * K * F, nf + j * K, K, F, b0, nb, c, e, m);
                mm_tile(w + j * G * K, K, G, K, (const vf *)e, (vf *)s);
                int bad = 0;
                for (int64_t i = 0; i < G; i++) {
                    const float *f = flows + rows[j * G + i] * B + b0, *si = s + i * TB;
                    float *ai = a + i * TB;
                    for (int64_t b = 0; b < TB; b++) ai[b] = 0.0f;
                    for (int64_t b = 0; b < nb; b++) {
                        ai[b] = si[b] < tiny ? 0.0f : f[b] / si[b];
                        bad |= si[b] < tiny && f[b] != 0.0f;
                    }
                }
                mm_tile(wt + j * G * K, G, K, G, (const vf *)a, (vf *)cf);
                for (int64_t k = 0; k < K; k++)
                    for (int64_t b = 0; b < TB; b++) et[b * KP + k] = e[k * TB + b];
                weight_flow_tile(w + j * G * K, G, K, KP, a, et, my + j * G * K);
                for (int64_t k = 0; k < K; k++)
                    for (int64_t b = 0; b < TB; b++) cf[k * TB + b] *= e[k * TB + b];
                for (int64_t i = 0; bad && i < G; i++) { /* the exact path of underflowed sums */
                    const int64_t node = j * G + i;
                    const float *f = flows + rows[node] * B + b0, *n = mars + rows[node] * B + b0, *si = s + i * TB;
                    for (int64_t b = 0; b < nb; b++) {
                        if (!(si[b] < tiny && f[b] != 0.0f && isfinite(n[b]))) continue;
                        for (int64_t k = 0; k < K; k++) {
                            float ef = f[b] * expf(logw[node * K + k] + c[k * TB + b] - n[b]);
                            cf[k * TB + b] += ef;
                            my[node * K + k] += ef;
                        }
                    }
                }
                const int64_t *cj = comp + j * K * F, *nj = nf + j * K;
                for (int64_t k = 0; k < K; k++) {
                    const float *cfk = cf + k * TB;
                    for (int64_t q = 0; q < nj[k]; q++) {
                        float *dst = flows + cj[k * F + q] * B + b0;
                        if (t + 1 < t_hi) {
                            __builtin_prefetch(dst + TB, 1);
                            __builtin_prefetch(dst + TB + 16, 1);
                        }
                        for (int64_t b = 0; b < nb; b++) dst[b] += cfk[b];
                    }
                }
            }
        }
        free(c);
        free(e);
        free(cf);
        free(s);
        free(a);
        free(et);
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t p = 0; p < P; p++) {
        float v = 0.0f;
        for (int q = 0; q < threads; q++) v += acc[(int64_t)q * P + p];
        wflow[p] += v;
    }
    free(acc);
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

/* Input rows of a family over K values whose rows come in runs of L per variable: out[r][b] =
 * table[r][codes[r / L][b]], 0 (log 1: marginalised) where the code is K (missing). */
void pc_table_inputs(float *out, int64_t B, int64_t m, int64_t L, int64_t K, const float *table,
                     const int64_t *codes, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < m; r++) {
        const float *t = table + r * K;
        const int64_t *code = codes + (r / L) * B;
        float *o = out + r * B;
        for (int64_t b = 0; b < B; b++) o[b] = code[b] >= K ? 0.0f : t[code[b]];
    }
}

/* The categorical M-step of m rows over K values, in place on the logits: theta_k <- (1 - a) old_k
 * + a (F_k + pc / K + F_miss old_k) / (F + F_miss + pc), old = softmax(logits), logits <- log theta
 * (the formula of pccompile.statistics). counts has row stride ld. */
void pc_categorical_m_step(float *logits, int64_t m, int64_t K, const float *counts, int64_t ld, const float *missing,
                           float a, float pc, int threads) {
#pragma omp parallel num_threads(threads)
    {
        float *old = tile_alloc(K);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < m; r++) {
            float *restrict l = logits + r * K, *restrict th = old;
            const float *restrict c = counts + r * ld;
            float mx = -INFINITY, z = 0.0f, total = 0.0f;
            int small = 0;
            /* every loop below vectorises: reductions are declared as such (no -ffast-math) */
#pragma omp simd reduction(max : mx)
            for (int64_t k = 0; k < K; k++) mx = l[k] > mx ? l[k] : mx;
#pragma omp simd
            for (int64_t k = 0; k < K; k++) th[k] = pc_exp(l[k] - mx);
#pragma omp simd reduction(+ : z, total)
            for (int64_t k = 0; k < K; k++) {
                z += th[k];
                total += c[k];
            }
            const float miss = missing[r], denom = total + miss + pc, inv = 1.0f / z, prior = pc / (float)K;
            const float keep = denom > 0.0f ? 1.0f - a : 1.0f, scale = denom > 0.0f ? a / denom : 0.0f;
#pragma omp simd
            for (int64_t k = 0; k < K; k++) { /* (1 - a) o + a (c + prior + miss o) / denom */
                const float o = th[k] * inv;
                const float theta = keep * o + scale * (c[k] + prior + miss * o);
                th[k] = theta > 0.0f ? theta : 0.0f;
            }
#pragma omp simd reduction(| : small)
            for (int64_t k = 0; k < K; k++) small |= th[k] < 1.17549435e-38f;
            if (small) { /* a zero or subnormal probability: libm's log (log 0 = -inf) for the row */
                for (int64_t k = 0; k < K; k++) l[k] = logf(th[k]);
                continue;
            }
#pragma omp simd
            for (int64_t k = 0; k < K; k++) l[k] = pc_log(th[k]);
        }
        free(old);
    }
}

/* EM counts of a family over K values whose rows come in runs of L per variable: counts[r][code]
 * += f[r][b] at the batch's code of the row's variable (code K: missing). counts [m][K + 1] is
 * zeroed by the caller. Four rows at a time, so that four additions per sample are in flight
 * instead of one chain through the same counter (most pixels share one value). */
void pc_table_counts(float *counts, const float *f, int64_t B, int64_t m, int64_t L, int64_t K, const int64_t *codes,
                     int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r0 = 0; r0 < m; r0 += 4) {
        if (r0 + 4 <= m) {
            const int64_t *c0 = codes + (r0 / L) * B, *c1 = codes + ((r0 + 1) / L) * B;
            const int64_t *c2 = codes + ((r0 + 2) / L) * B, *c3 = codes + ((r0 + 3) / L) * B;
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
            const int64_t *c = codes + (r / L) * B;
            float *h = counts + r * (K + 1);
            for (int64_t b = 0; b < B; b++) h[c[b]] += f[r * B + b];
        }
    }
}
