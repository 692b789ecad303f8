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
        vf x[NV];
        for (int v = 0; v < NV; v++) {
            x[v] = E[cols[p] * NV + v];
            __asm__("" : "+v"(x[v])); /* in a register across the rows, as in mm_rows */
        }
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

/* acc[p] += w[p] (the lanes of dots[p] summed), p < n: one group's weight flows. */
static void sum_dots(float *acc, const float *w, const vf *dots, int64_t n) {
    for (int64_t p = 0; p < n; p++) {
        float s = 0.0f;
        for (int v = 0; v < VL; v++) s += dots[p][v];
        acc[p] += w[p] * s;
    }
}

/* The flows of a sparse partition. Each thread takes a range of samples (as the dense backward)
 * and keeps, for the group at hand, one vector per edge of sum_b a_r e_k over its tiles; their
 * horizontal sums (times w, into the thread's weight flows) wait for the group's last tile; the
 * flows go to grad at the edges' ids, and child flows are stored where `first` flags a row's
 * first, as in pc_sum_backward. */
void pc_sparse_backward(const float *mars, float *flows, int64_t B, int64_t g, int64_t G, int64_t K, int64_t F,
                        const int64_t *comp, const int64_t *nf, const int64_t *rows, const int64_t *group_start,
                        const int64_t *brows, const int64_t *count, const int64_t *col_start, const int64_t *cols,
                        const int64_t *w_start, const float *w, const float *logw, int64_t edges, int64_t group_edges,
                        float tiny, const uint8_t *first, const int64_t *ids, int64_t base, int64_t pad, int unique,
                        float *grad, int threads) {
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
                if (!any) {
                    zero_first_rows(flows, B, b0, nb, comp + j * K * F, nf + j * K, K, F, first ? first + j * K * F : NULL);
                    continue;
                }
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
                scatter_child_flows(flows, B, b0, nb, comp + j * K * F, nf + j * K, K, F, cf, t + 1 < t_hi,
                                    first ? first + j * K * F : NULL);
            }
            if (touched) sum_dots(my + e0, w + e0, dots, ne);
        }
        free(c);
        free(e);
        free(cf);
        free(dots);
    }
    reduce_thread_flows(acc_all, edges, threads, ids, NULL, 1, base, pad, unique, grad);
}
