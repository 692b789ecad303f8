/* Input partitions of families over K values: the table lookup, the categorical M-step and the
 * EM counts. */

/* codes[r][b] = x[b][var[r]] for runs r < R, or K where the value is missing (negative): each
 * run's variable's column of the [B, V] batch as one row, which the lookup and counting kernels
 * read (a transposing gather in torch took 1.5-4 ms at MNIST's 784 x 512). */
void pc_run_codes(int64_t *codes, const int64_t *x, int64_t B, int64_t V, int64_t R, const int64_t *var, int64_t K,
                  int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const int64_t *col = x + var[r];
        int64_t *out = codes + r * B;
        for (int64_t b = 0; b < B; b++) {
            const int64_t v = col[b * V];
            out[b] = v < 0 ? K : v;
        }
    }
}

/* A run's codes split by its most frequent one (the mode): the rows of a run share their codes,
 * and one value usually dominates (most of an image's pixels are background, most binary
 * variables take one value), so the lookup fills a row with the mode's entry by whole vectors
 * and the counts sum the mode's samples the same way; only the other samples are taken one by
 * one. */
typedef struct {
    int64_t run, mode, n_rest;
    int32_t *hist;
    int64_t *rest; /* the samples whose code is not the mode */
    vi *at_mode;   /* lane masks over the batch's vectors: code == mode */
} run_codes_split;

static void split_run(run_codes_split *sp, const int64_t *code, int64_t B, int64_t K) {
    memset(sp->hist, 0, sizeof(int32_t) * (size_t)(K + 1));
    for (int64_t b = 0; b < B; b++) sp->hist[code[b]]++;
    int64_t mode = 0;
    for (int64_t k = 1; k <= K; k++) mode = sp->hist[k] > sp->hist[mode] ? k : mode;
    sp->mode = mode;
    sp->n_rest = 0;
    for (int64_t b = 0; b < B; b++)
        if (code[b] != mode) sp->rest[sp->n_rest++] = b;
    for (int64_t v = 0; v < B / VL; v++) {
        vi mk;
        for (int l = 0; l < VL; l++) mk[l] = code[v * VL + l] == mode ? -1 : 0;
        sp->at_mode[v] = mk;
    }
}

/* The sum of f[b] over the samples at the run's mode (whole vectors, then the batch's remainder). */
static float sum_at_mode(const run_codes_split *sp, const float *f, const int64_t *code, int64_t B) {
    vf acc = vsplat(0.0f);
    const int64_t BV = B / VL;
    for (int64_t v = 0; v < BV; v++) acc += pick(sp->at_mode[v], loadu(f + v * VL), vsplat(0.0f));
    float s = 0.0f;
    for (int l = 0; l < VL; l++) s += acc[l];
    for (int64_t b = BV * VL; b < B; b++) s += code[b] == sp->mode ? f[b] : 0.0f;
    return s;
}

static run_codes_split new_split(int64_t B, int64_t K) {
    run_codes_split sp = {-1, 0, 0, malloc(sizeof(int32_t) * (size_t)(K + 1)), malloc(sizeof(int64_t) * (size_t)B),
                          tile_alloc((B / VL + 1) * VL)};
    return sp;
}

static void free_split(run_codes_split *sp) {
    free(sp->hist);
    free(sp->rest);
    free(sp->at_mode);
}

/* The split of run `run` (codes its row of codes), formed when the thread reaches a new run. */
static void reach_run(run_codes_split *sp, int64_t run, const int64_t *code, int64_t B, int64_t K) {
    if (run == sp->run) return;
    split_run(sp, code, B, K);
    sp->run = run;
}

/* Input rows of a family over K values: out[r][b] = table[r][codes[run[r]][b]], 0 (log 1:
 * marginalised) where the code is K (missing). Rows come in runs per variable (an HCLT's node
 * vectors, of any lengths); codes [runs][B] holds each run's variable's values. */
void pc_table_inputs(float *out, int64_t B, int64_t m, const int64_t *run, int64_t K, const float *table,
                     const int64_t *codes, int threads) {
#pragma omp parallel num_threads(threads)
    {
        run_codes_split sp = new_split(B, K);
        const int64_t q = omp_get_thread_num(), nq = omp_get_num_threads();
        for (int64_t r = m * q / nq; r < m * (q + 1) / nq; r++) {
            const int64_t *code = codes + run[r] * B;
            reach_run(&sp, run[r], code, B, K);
            const float *t = table + r * K;
            float *o = out + r * B;
            const vf at_mode = vsplat(sp.mode >= K ? 0.0f : t[sp.mode]);
            int64_t b = 0;
            for (; b + VL <= B; b += VL) storeu(o + b, at_mode);
            for (; b < B; b++) o[b] = at_mode[0];
            for (int64_t i = 0; i < sp.n_rest; i++) {
                const int64_t rb = sp.rest[i], c = code[rb];
                o[rb] = c >= K ? 0.0f : t[c];
            }
        }
        free_split(&sp);
    }
}

/* l[k] = log th[k] for one row of K probabilities, each clamped at 0 first (in th): the vector
 * log, or libm's for the whole row where some theta is zero or subnormal (log 0 = -inf). */
static void store_log_probs(float *l, float *th, int64_t K) {
    const int64_t KV = K / VL * VL;
    vi vsmall = {0};
    for (int64_t k = 0; k < KV; k += VL) {
        const vf theta = loadu(th + k), t = pick(theta > 0.0f, theta, vsplat(0.0f));
        vsmall |= t < 1.17549435e-38f;
        storeu(th + k, t);
    }
    int small = any_lane(vsmall);
    for (int64_t k = KV; k < K; k++) {
        th[k] = th[k] > 0.0f ? th[k] : 0.0f;
        small |= th[k] < 1.17549435e-38f;
    }
    if (small) {
        for (int64_t k = 0; k < K; k++) l[k] = logf(th[k]);
        return;
    }
    for (int64_t k = 0; k < KV; k += VL) storeu(l + k, v_log(loadu(th + k)));
    for (int64_t k = KV; k < K; k++) l[k] = pc_log(th[k]);
}

/* The categorical M-step of one row of K logits l, in place: theta_k <- (1 - a) old_k + a (F_k +
 * pc / K + F_miss old_k) / (F + F_miss + pc), old = softmax(l), l <- log theta (the formula of
 * pccompile.statistics), from the row's counts c and missing count miss; th: K floats of
 * scratch. */
static void categorical_row_m_step(float *l, int64_t K, const float *c, float miss, float a, float pc, float *th) {
    const int64_t KV = K / VL * VL; /* the row's whole vectors; the rest lane by lane */
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
    const float denom = total + miss + pc, inv = 1.0f / z, prior = pc / (float)K;
    const float keep = denom > 0.0f ? 1.0f - a : 1.0f, scale = denom > 0.0f ? a / denom : 0.0f;
    /* theta = (1 - a) o + a (c + prior + miss o) / denom, o = th / z */
    for (int64_t k = 0; k < KV; k += VL) {
        const vf o = loadu(th + k) * inv;
        storeu(th + k, keep * o + scale * (loadu(c + k) + prior + miss * o));
    }
    for (int64_t k = KV; k < K; k++) {
        const float o = th[k] * inv;
        th[k] = keep * o + scale * (c[k] + prior + miss * o);
    }
    store_log_probs(l, th, K);
}

/* The categorical M-step of m rows over K values, in place on the logits, from counts (row
 * stride ld) and missing counts. */
void pc_categorical_m_step(float *logits, int64_t m, int64_t K, const float *counts, int64_t ld, const float *missing,
                           float a, float pc, int threads) {
#pragma omp parallel num_threads(threads)
    {
        float *th = tile_alloc(K);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < m; r++) categorical_row_m_step(logits + r * K, K, counts + r * ld, missing[r], a, pc, th);
        free(th);
    }
}

/* The counts h [n][K + 1] of n <= 4 rows of one run (flows f [n][B], the run's split sp and codes),
 * zeroed first: each row's flows at the mode summed by whole vectors, the other samples added one
 * by one, four rows at a time so that four additions are in flight. */
static void count_rows(float *h0, const float *f0, int64_t n, int64_t B, int64_t K, const run_codes_split *sp,
                       const int64_t *code) {
    memset(h0, 0, sizeof(float) * (size_t)(n * (K + 1)));
    for (int64_t i = 0; i < n; i++) h0[i * (K + 1) + sp->mode] += sum_at_mode(sp, f0 + i * B, code, B);
    const int64_t *rest = sp->rest, nr = sp->n_rest;
    if (n == 4) {
        float *h1 = h0 + (K + 1), *h2 = h1 + (K + 1), *h3 = h2 + (K + 1);
        const float *f1 = f0 + B, *f2 = f1 + B, *f3 = f2 + B;
        for (int64_t i = 0; i < nr; i++) {
            const int64_t b = rest[i], c = code[b];
            h0[c] += f0[b];
            h1[c] += f1[b];
            h2[c] += f2[b];
            h3[c] += f3[b];
        }
        return;
    }
    for (int64_t k = 0; k < n; k++)
        for (int64_t i = 0; i < nr; i++) h0[k * (K + 1) + code[rest[i]]] += f0[k * B + rest[i]];
}

/* How many rows from r0 (at most four, below hi) share r0's run: the rows count_rows takes. */
static int64_t run_rows(const int64_t *run, int64_t r0, int64_t hi) {
    int64_t n = 1;
    while (n < 4 && r0 + n < hi && run[r0 + n] == run[r0]) n++;
    return n;
}

/* EM counts of a family over K values: counts[r][code] += f[r][b] at the batch's code of the
 * row's variable (code K: missing; codes and runs as in pc_table_inputs), into counts [m][K + 1],
 * which need not be zeroed (each thread zeroes its rows as it reaches them, while they are in
 * cache, where a zeroed tensor of the caller's would be written once more). */
void pc_table_counts(float *counts, const float *f, int64_t B, int64_t m, const int64_t *run, int64_t K,
                     const int64_t *codes, int threads) {
#pragma omp parallel num_threads(threads)
    {
        run_codes_split sp = new_split(B, K);
        const int64_t q = omp_get_thread_num(), nq = omp_get_num_threads();
        const int64_t lo = m * q / nq, hi = m * (q + 1) / nq; /* this thread's rows */
        for (int64_t r0 = lo; r0 < hi;) {
            const int64_t *code = codes + run[r0] * B, n = run_rows(run, r0, hi);
            reach_run(&sp, run[r0], code, B, K);
            count_rows(counts + r0 * (K + 1), f + r0 * B, n, B, K, &sp, code);
            r0 += n;
        }
        free_split(&sp);
    }
}

/* The counts and the categorical M-step in one pass (a mini-batch EM step's, whose counts serve
 * nothing else): each thread counts up to four rows into scratch that stays in cache and updates
 * their logits from it at once, so the [m, K + 1] counts are never written and read back. The
 * same arithmetic, in the same order, as pc_table_counts then pc_categorical_m_step. */
void pc_categorical_em(float *logits, const float *f, int64_t B, int64_t m, const int64_t *run, int64_t K,
                       const int64_t *codes, float a, float pc, int threads) {
#pragma omp parallel num_threads(threads)
    {
        run_codes_split sp = new_split(B, K);
        float *h = tile_alloc(4 * (K + 1)), *th = tile_alloc(K);
        const int64_t q = omp_get_thread_num(), nq = omp_get_num_threads();
        const int64_t lo = m * q / nq, hi = m * (q + 1) / nq;
        for (int64_t r0 = lo; r0 < hi;) {
            const int64_t *code = codes + run[r0] * B, n = run_rows(run, r0, hi);
            reach_run(&sp, run[r0], code, B, K);
            count_rows(h, f + r0 * B, n, B, K, &sp, code);
            for (int64_t i = 0; i < n; i++)
                categorical_row_m_step(logits + (r0 + i) * K, K, h + i * (K + 1), h[i * (K + 1) + K], a, pc, th);
            r0 += n;
        }
        free(h);
        free(th);
        free_split(&sp);
    }
}

/* The M-step of the dense sum weights, in place on their logits: per row of k weights (blocks
 * [a, b) of the flat vector, [nb][3] = a, b, k), old = exp(logw) (normalised), theta <- (1 - s)
 * old + s (F + pc / k) / (F_row + pc), or old where F_row + pc is 0; logits <- log theta (the
 * runtime's SumRows.em_update, which does the masked rows), logged by store_log_probs; as
 * everywhere in the kernels, exp below -87.3 is 0, not subnormal. */
void pc_sum_m_step(float *logits, const float *logw, const float *flows, const int64_t *blocks, int64_t nb, float s,
                   float pc, int threads) {
#pragma omp parallel num_threads(threads)
    {
        float *th = NULL;
        int64_t cap = 0;
        for (int64_t q = 0; q < nb; q++) {
            const int64_t a = blocks[3 * q], k = blocks[3 * q + 2], rows = (blocks[3 * q + 1] - a) / k;
            if (k > cap) {
                free(th);
                th = tile_alloc(k);
                cap = k;
            }
            const int64_t KV = k / VL * VL;
#pragma omp for schedule(static) nowait
            for (int64_t r = 0; r < rows; r++) {
                const float *lw = logw + a + r * k, *f = flows + a + r * k;
                float *l = logits + a + r * k;
                vf vt = vsplat(0.0f);
                for (int64_t i = 0; i < KV; i += VL) vt += loadu(f + i);
                float total = 0.0f;
                for (int v = 0; v < VL; v++) total += vt[v];
                for (int64_t i = KV; i < k; i++) total += f[i];
                const float denom = total + pc, prior = pc / (float)k;
                const float keep = denom > 0.0f ? 1.0f - s : 1.0f, scale = denom > 0.0f ? s / denom : 0.0f;
                for (int64_t i = 0; i < KV; i += VL)
                    storeu(th + i, keep * v_exp(loadu(lw + i)) + scale * (loadu(f + i) + prior));
                for (int64_t i = KV; i < k; i++) th[i] = keep * pc_exp(lw[i]) + scale * (f[i] + prior);
                store_log_probs(l, th, k);
            }
        }
        free(th);
    }
}
