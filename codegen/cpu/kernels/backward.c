/* The backward passes of sum and product partitions: each node's f / s from its stored value,
 * the child flows into their factor rows (each row's first stored, see first_touch.py), and
 * the weight flows, added into the gradient at the weights' ids. */

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

/* Whether the node value n at one sample came from the exact path: its sum was under tiny. */
static inline int underflowed(float n, float m, float logtiny) { return !(n - m >= logtiny); }

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
        const int under = underflowed(n[b], m[b], logtiny);
        af[b] = under ? 0.0f : f[b] * pc_exp(m[b] - n[b]);
        bad |= under && f[b] != 0.0f;
    }
    return bad;
}

/* dst[b] += src[b] for b < nb (dst[b] = src[b] where `store`: the row's first flow, see
 * first_touch.py), with the next tile of dst prefetched when there is one. */
static void add_tile(float *dst, const vf *src, int64_t nb, int prefetch, int store) {
    if (prefetch) {
        __builtin_prefetch(dst + TB, 1);
        __builtin_prefetch(dst + TB + 16, 1);
    }
    if (nb == TB) {
        for (int v = 0; v < NV; v++) storeu(dst + v * VL, store ? src[v] : loadu(dst + v * VL) + src[v]);
        return;
    }
    const float *sf = (const float *)src;
    for (int64_t b = 0; b < nb; b++) dst[b] = store ? sf[b] : dst[b] + sf[b];
}

/* The child flows of one tile into the factor rows they came from: flows[row] += cf[k], stored
 * instead where first[k][q] is set (first: shaped as cj; NULL: add everywhere). */
static void scatter_child_flows(float *flows, int64_t B, int64_t b0, int64_t nb, const int64_t *cj, const int64_t *nj,
                                int64_t K, int64_t F, const float *cf, int prefetch, const uint8_t *first) {
    for (int64_t k = 0; k < K; k++)
        for (int64_t q = 0; q < nj[k]; q++)
            add_tile(flows + cj[k * F + q] * B + b0, (const vf *)(cf + k * TB), nb, prefetch, first && first[k * F + q]);
}

/* A tile no flow reaches still writes the rows it is the first to reach: zeros. */
static void zero_first_rows(float *flows, int64_t B, int64_t b0, int64_t nb, const int64_t *cj, const int64_t *nj,
                            int64_t K, int64_t F, const uint8_t *first) {
    for (int64_t k = 0; first && k < K; k++)
        for (int64_t q = 0; q < nj[k]; q++)
            if (first[k * F + q]) memset(flows + cj[k * F + q] * B + b0, 0, sizeof(float) * (size_t)nb);
}

/* Group j's child flows cf [K][TB] into the rows they came from. An outer product's child i Kb + l
 * sends its flow to a_i and to b_l: a's flows are cf's row sums, b's its column sums, formed in ab
 * (whose values are no longer needed). first, first_b: the first-flow flags of comp and comp_b
 * (NULL: none); cf NULL: a tile no flow reaches, which only zeroes the rows it is first in. */
static void scatter_group_flows(const children *kd, float *flows, int64_t B, int64_t j, int64_t b0, int64_t nb,
                                const float *cf, float *ab, int prefetch, const uint8_t *first,
                                const uint8_t *first_b) {
    const int64_t Ka = kd->Ka, Kb = kd->Kb, F = kd->F, Fb = kd->Fb;
    const int64_t *ca = kd->comp + j * Ka * F, *na = kd->nf + j * Ka, *cb = kd->comp_b + j * Kb * Fb;
    const uint8_t *fa = first ? first + j * Ka * F : NULL, *fb = first_b ? first_b + j * Kb * Fb : NULL;
    if (cf == NULL) {
        zero_first_rows(flows, B, b0, nb, ca, na, Ka, F, fa);
        if (Kb > 0) zero_first_rows(flows, B, b0, nb, cb, kd->nf_b + j * Kb, Kb, Fb, fb);
        return;
    }
    if (Kb == 0) {
        scatter_child_flows(flows, B, b0, nb, ca, na, Ka, F, cf, prefetch, fa);
        return;
    }
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
    scatter_child_flows(flows, B, b0, nb, ca, na, Ka, F, (const float *)FA, prefetch, fa);
    scatter_child_flows(flows, B, b0, nb, cb, kd->nf_b + j * Kb, Kb, Fb, (const float *)FB, prefetch, fb);
}

/* cf[k] *= e[k] over K tiles. */
static void scale_tiles(float *cf, const float *e, int64_t K) {
    vf *C = (vf *)cf;
    const vf *E = (const vf *)e;
    for (int64_t k = 0; k < K * NV; k++) C[k] *= E[k];
}

/* The weight flows' products of one tile: ut[k][i] += sum_b A[i][b] E[k][b], a matrix product
 * over the tile's samples, whose vectors run along the nodes: A is transposed into at [TB][GP]
 * (G rounded up to whole vectors, zeros beyond G), a G x TB tile where E is K x TB (4096 x 32 for
 * a Tucker layer at K = 64, which a transpose of E would move every tile), and each of E's
 * entries is broadcast. R vectors of nodes by NR children add up in registers over the tile's
 * samples; ut [K][GP] holds a group's sums over the thread's tiles. (Per-lane dot products
 * accumulated across tiles, G K VL floats, were as fast only for the smallest groups.) */
#define NR 4
static void transpose_rows(const float *a, int64_t G, int64_t GP, float *at) {
    for (int64_t b = 0; b < TB; b++) {
        for (int64_t i = 0; i < G; i++) at[b * GP + i] = a[i * TB + b];
        for (int64_t i = G; i < GP; i++) at[b * GP + i] = 0.0f;
    }
}

static inline __attribute__((always_inline)) void flow_block(const int R, const int C, const float *at, int64_t GP,
                                                            const float *e, float *ut) {
    vf s[MR][NR];
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) s[r][c] = loadu(ut + c * GP + r * VL);
    for (int64_t b = 0; b < TB; b++) {
        vf x[MR];
        for (int r = 0; r < R; r++) x[r] = loadu(at + b * GP + r * VL);
        for (int c = 0; c < C; c++) {
            const float eb = e[c * TB + b];
            for (int r = 0; r < R; r++) s[r][c] += x[r] * eb;
        }
    }
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) storeu(ut + c * GP + r * VL, s[r][c]);
}

static void weight_flow_tile(int64_t GP, int64_t K, const float *at, const float *e, float *ut) {
    const int64_t nv = GP / VL;
    for (int64_t k = 0; k < K; k += NR) {
        const int64_t c = min64(NR, K - k);
        const float *ek = e + k * TB;
        float *uk = ut + k * GP;
        int64_t v = 0;
        if (c == NR) {
            for (; v + MR <= nv; v += MR) flow_block(MR, NR, at + v * VL, GP, ek, uk + v * VL);
            for (; v < nv; v++) flow_block(1, NR, at + v * VL, GP, ek, uk + v * VL);
        } else {
            for (int64_t q = 0; q < c; q++)
                for (v = 0; v < nv; v++) flow_block(1, 1, at + v * VL, GP, ek + q * TB, uk + q * GP + v * VL);
        }
    }
}

/* acc[i K + k] += w[i K + k] ut[k GP + i] over one group's G x K edges. */
static void add_weighted(float *acc, const float *w, const float *ut, int64_t G, int64_t K, int64_t GP) {
    for (int64_t i = 0; i < G; i++)
        for (int64_t k = 0; k < K; k++) acc[i * K + k] += w[i * K + k] * ut[k * GP + i];
}

/* grad[id] += the threads' own weight flows acc[q][p] (q < threads), summed, where the id of
 * weight p is ids[p]; where ids is NULL, woff[p / n] + p % n (groups of n weights at offsets
 * woff), or base + p where woff is NULL too; except at the padding slot `pad`. Frees acc. Ids
 * repeat only where weights are tied (`unique` = 0), and then one thread adds them all. */
static void reduce_thread_flows(float *acc, int64_t P, int threads, const int64_t *ids, const int64_t *woff, int64_t n,
                                int64_t base, int64_t pad, int unique, float *grad) {
#pragma omp parallel for num_threads(unique ? threads : 1) schedule(static)
    for (int64_t p = 0; p < P; p++) {
        float v = 0.0f;
        for (int q = 0; q < threads; q++) v += acc[(int64_t)q * P + p];
        const int64_t id = ids ? ids[p] : woff ? woff[p / n] + p % n : base + p;
        if (id != pad) grad[id] += v;
    }
    free(acc);
}

/* The exact path of one group's underflowed sums in one tile: each edge's flow f exp(logw + c -
 * node) in libm precision, into the child flows cf (after their scaling by e) and the weight
 * flows accj (lwj, accj: the group's log-weights and weight flows, G x K). */
static void exact_group_flows(const float *mars, const float *flows, int64_t B, int64_t j, int64_t G, int64_t K,
                              const int64_t *rows, const float *lwj, const float *c, const float *m, int64_t b0,
                              int64_t nb, float logtiny, float *cf, float *accj) {
    for (int64_t i = 0; i < G; i++) {
        const int64_t node = j * G + i;
        const float *f = flows + rows[node] * B + b0, *n = mars + rows[node] * B + b0;
        for (int64_t b = 0; b < nb; b++) {
            if (!(underflowed(n[b], m[b], logtiny) && f[b] != 0.0f && isfinite(n[b]))) continue;
            for (int64_t k = 0; k < K; k++) {
                float ef = f[b] * expf(lwj[i * K + k] + c[k * TB + b] - n[b]);
                cf[k * TB + b] += ef;
                accj[i * K + k] += ef;
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
            __builtin_prefetch(flows + r + TB, 0, 2);
            __builtin_prefetch(flows + r + TB + 16, 0, 2);
            __builtin_prefetch(mars + r + TB, 0, 2);
            __builtin_prefetch(mars + r + TB + 16, 0, 2);
        }
        bad |= flow_scale(flows + r, mars + r, m, (vf *)(a + i * TB), nb, logtiny);
    }
    return bad;
}

/* The child flows are w transposed times the nodes' f / s, stored into a row where first (and
 * first_b, for comp_b) flags the row's first flow, else added; each weight's flow goes to grad at
 * its id (ids [g G K]; where ids is NULL, the weight's place in logw, woff[j] + p; `pad` the
 * padding slot, `unique`: no id repeats). The children and weights are read as by
 * pc_sum_forward (Kb > 0: an outer product; group j's log-weights at logw + woff[j]). */
void pc_sum_backward(const float *mars, float *flows, int64_t B, int64_t g, int64_t G, int64_t K, int64_t F,
                     const int64_t *comp, const int64_t *nf, int64_t Kb, int64_t Fb, const int64_t *comp_b,
                     const int64_t *nf_b, const int64_t *rows, const float *logw, const int64_t *woff, float tiny,
                     const uint8_t *first, const uint8_t *first_b, const int64_t *ids, int64_t pad, int unique,
                     float *grad, int threads) {
    const children kd = make_children(comp, nf, K, F, comp_b, nf_b, Kb, Fb);
    const int64_t KK = kd.K, tiles = (B + TB - 1) / TB, P = g * G * KK;
    float *acc = calloc((size_t)threads * P, sizeof(float));
#pragma omp parallel num_threads(threads)
    {
        float *my = acc + (int64_t)omp_get_thread_num() * P;
        float *c = tile_alloc(KK * TB), *e = tile_alloc(KK * TB), *cf = tile_alloc(KK * TB), *ab = outer_scratch(&kd);
        float *a = tile_alloc(G * TB), *w = tile_alloc(G * KK);
        const int64_t GP = (G + VL - 1) / VL * VL; /* the weight flows' product: at [TB][GP], un [KK][GP] */
        float *at = tile_alloc(TB * GP), *un = tile_alloc(KK * GP);
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
                if (!any) {
                    scatter_group_flows(&kd, flows, B, j, b0, nb, NULL, ab, 0, first, first_b);
                    continue;
                }
                if (!touched) {
                    memset(un, 0, sizeof(float) * (size_t)(KK * GP));
                    group_weights(logw, woff, j, G * KK, w);
                }
                touched = 1;
                group_tile(&kd, mars, B, j, b0, nb, c, e, m, ab);
                const int bad = group_flow_scale(mars, flows, B, j, G, rows, m, b0, nb, logtiny, t + 1 < t_hi, a);
                mm_tile(w, 1, KK, KK, G, (const vf *)a, (vf *)cf); /* w transposed */
                transpose_rows(a, G, GP, at);
                weight_flow_tile(GP, KK, at, e, un);
                scale_tiles(cf, e, KK);
                if (bad) {
                    outer_values(&kd, ab, c);
                    exact_group_flows(mars, flows, B, j, G, KK, rows, logw + woff[j], c, m, b0, nb, logtiny, cf,
                                      my + j * G * KK);
                }
                scatter_group_flows(&kd, flows, B, j, b0, nb, cf, ab, t + 1 < t_hi, first, first_b);
            }
            if (touched) add_weighted(my + j * G * KK, w, un, G, KK, GP);
        }
        free(c);
        free(e);
        free(cf);
        free(ab);
        free(a);
        free(at);
        free(un);
        free(w);
    }
    reduce_thread_flows(acc, P, threads, ids, woff, G * KK, 0, pad, unique, grad);
}

/* Every factor row gets its product's flow (stored where first [m][F] flags the row's first; NULL:
 * added everywhere); each thread takes a range of samples (factors may be shared between rows, so
 * rows cannot be split). */
void pc_product_backward(float *flows, int64_t B, int64_t m, int64_t F, const int64_t *child, const int64_t *rows,
                         const uint8_t *first, int threads) {
#pragma omp parallel num_threads(threads)
    {
        const int64_t q = omp_get_thread_num(), nq = omp_get_num_threads();
        const int64_t lo = B * q / nq, hi = B * (q + 1) / nq;
        for (int64_t r = 0; r < m; r++) {
            const float *src = flows + rows[r] * B;
            for (int64_t f = 0; f < F; f++) {
                float *dst = flows + child[r * F + f] * B;
                if (first && first[r * F + f])
                    for (int64_t b = lo; b < hi; b++) dst[b] = src[b];
                else
                    for (int64_t b = lo; b < hi; b++) dst[b] += src[b];
            }
        }
    }
}
