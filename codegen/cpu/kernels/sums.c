/* Sum and product partitions, forward: a group's children in tiles (plain factor rows or an outer
 * product), the matrix products, and the forward passes (backward.c builds on them). */

/* The K children of one group in one tile: c[k][b] (b < nb; -inf beyond), their max m[b] (0 where
 * all are -inf) and e[k][b] = exp(c - m) (0 beyond nb). */
static void child_tile(const float *mars, int64_t B, const int64_t *comp, const int64_t *nf, int64_t K, int64_t F,
                       int64_t b0, int64_t nb, float *c, float *e, float *m) {
    vf *C = (vf *)c, *E = (vf *)e, M[NV];
    for (int v = 0; v < NV; v++) M[v] = vsplat(-INFINITY);
    for (int64_t k = 0; k < K; k++) {
        const int64_t *rows = comp + k * F, n = nf[k];
        const float *r0 = mars + rows[0] * B + b0; /* n >= 1: a child of no factor reads ONE_ROW */
        /* the next tile of each row, into L2 (measured faster than into L1, where a tile's 70-odd
         * rows are more lines than the misses it keeps in flight): random rows defeat the hardware
         * prefetcher */
        for (int64_t f = 0; f < n && b0 + TB < B; f++) {
            __builtin_prefetch(mars + rows[f] * B + b0 + TB, 0, 2);
            __builtin_prefetch(mars + rows[f] * B + b0 + TB + 16, 0, 2);
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

/* out[i] (+)= sum_l W[i][l] X[l] for i < M: W's element (i, l) at W[i rs + l cs] (a row-major
 * block, or its transpose without a copy), times a [L][TB] tile, MR rows at a time so that each
 * loaded tile vector feeds MR multiply-adds held in registers; `add` accumulates into out
 * instead of overwriting it. */
static inline __attribute__((always_inline)) void mm_rows(const int R, const float *W, int64_t rs, int64_t cs,
                                                          int64_t L, const vf *X, vf *out, int add) {
    vf a[MR][NV] = {{0}};
    if (add)
        for (int r = 0; r < R; r++)
            for (int v = 0; v < NV; v++) a[r][v] = out[r * NV + v];
    for (int64_t l = 0; l < L; l++, W += cs) {
        vf x[NV];
        for (int v = 0; v < NV; v++) {
            x[v] = X[l * NV + v];
            __asm__("" : "+v"(x[v])); /* held in a register: GCC would load it again for every row */
        }
        for (int r = 0; r < R; r++) {
            const float wr = W[r * rs];
            for (int v = 0; v < NV; v++) a[r][v] += wr * x[v];
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) out[r * NV + v] = a[r][v];
}

/* The tile's children in blocks of LC, every row block passing over one block while it is in
 * cache (16 KB): a group of Ka Kb = 4096 children (a Tucker layer at K = 64) has a 512 KB tile,
 * which each of the G / MR row blocks would otherwise stream from memory again. */
#define LC 128
static void mm_tile(const float *W, int64_t rs, int64_t cs, int64_t M, int64_t L, const vf *X, vf *out) {
    for (int64_t l0 = 0; l0 < L; l0 += LC) {
        const int64_t lc = min64(LC, L - l0);
        const float *Wl = W + l0 * cs;
        int64_t i = 0;
        for (; i + MR <= M; i += MR) mm_rows(MR, Wl + i * rs, rs, cs, lc, X + l0 * NV, out + i * NV, l0 > 0);
        for (; i < M; i++) mm_rows(1, Wl + i * rs, rs, cs, lc, X + l0 * NV, out + i * NV, l0 > 0);
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

/* Group j's weights: its G x K block of the flat log-weights, at woff[j], exponentiated into w.
 * The kernels read the weights where they lie (one block, or blocks scattered over the vector, as
 * a Tucker layer's are) and each thread forms the weights of the groups it reaches: K exps per
 * node, against the K B multiply-adds that use them. */
static void group_weights(const float *logw, const int64_t *woff, int64_t j, int64_t n, float *w) {
    const float *l = logw + woff[j];
    int64_t p = 0;
    for (; p + VL <= n; p += VL) storeu(w + p, v_exp(loadu(l + p)));
    for (; p < n; p++) w[p] = pc_exp(l[p]);
}

/* Kb > 0: the children are an outer product (see `children`); K and F are then a's, Kb and Fb
 * b's, and comp_b, nf_b b's factor rows. Group j's log-weights are logw[woff[j]..] (G x K K_b). */
void pc_sum_forward(float *mars, int64_t B, int64_t g, int64_t G, int64_t K, int64_t F, const int64_t *comp,
                    const int64_t *nf, int64_t Kb, int64_t Fb, const int64_t *comp_b, const int64_t *nf_b,
                    const int64_t *rows, const float *logw, const int64_t *woff, float tiny, int threads) {
    const int64_t tiles = (B + TB - 1) / TB;
    const children kd = make_children(comp, nf, K, F, comp_b, nf_b, Kb, Fb);
    const int64_t KK = kd.K;
#pragma omp parallel num_threads(threads)
    {
        float *c = tile_alloc(KK * TB), *e = tile_alloc(KK * TB), *s = tile_alloc(G * TB), *ab = outer_scratch(&kd);
        float *w = tile_alloc(G * KK), m[TB];
        int64_t have_w = -1; /* the group whose weights w holds: a thread's (group, tile) pairs are consecutive */
#pragma omp for collapse(2) schedule(static)
        for (int64_t j = 0; j < g; j++) {
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t b0 = t * TB, nb = min64(TB, B - b0);
                if (have_w != j) group_weights(logw, woff, j, G * KK, w);
                have_w = j;
                group_tile(&kd, mars, B, j, b0, nb, c, e, m, ab);
                mm_tile(w, KK, 1, G, KK, (const vf *)e, (vf *)s);
                int have_values = kd.Kb == 0;
                for (int64_t i = 0; i < G; i++) {
                    const int64_t node = j * G + i;
                    const float *si = s + i * TB;
                    float *out = mars + rows[node] * B + b0;
                    if (!write_node(out, (const vf *)si, m, nb, tiny)) continue;
                    if (!have_values) outer_values(&kd, ab, c);
                    have_values = 1;
                    for (int64_t b = 0; b < nb; b++)
                        if (si[b] < tiny) out[b] = exact_node(logw + woff[j] + i * KK, c, KK, b);
                }
            }
        }
        free(c);
        free(e);
        free(s);
        free(ab);
        free(w);
    }
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
