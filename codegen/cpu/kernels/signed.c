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
                mm_tile(w + j * G * K, K, 1, G, K, (const vf *)e, (vf *)s);
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
