/*
 * Fused leapfrog update of the 2D wave equation.
 *
 *   u_next = 2 u - u_prev + cx (u[i+1,j] - 2u + u[i-1,j]) + cy (u[i,j+1] - 2u + u[i,j-1])
 *
 * with cx = (c dt / dx)^2, cy = (c dt / dy)^2. Arrays are row-major (C order) with
 * `stride` elements per row (first axis x, second axis y). A box is the half-open
 * range [i0, i1) x [j0, j1). `u_next` may alias `u_prev` (in-place update: each point
 * of u_prev is read once, by its own update, before it is written), so a step streams
 * two arrays: three memory transfers per cell (read u, read u_prev, write u_prev).
 * The NumPy backend evaluates the same expression in the same order; the library is
 * built with -ffp-contract=off, so every path rounds alike and results are bitwise
 * reproducible whichever loop (single step, rim, temporal block) computed a point.
 */
#include <stddef.h>

/* One row of one step: next[j] for j in [j0, j1). */
#define ROW_UPDATE(T, row, up, down, prev, next, j0, j1, cx, cy)                        \
    _Pragma("GCC ivdep")                                                                \
    for (ptrdiff_t j = (j0); j < (j1); ++j) {                                           \
        const T c = (row)[j];                                                           \
        const T lap_x = (down)[j] - (T)2 * c + (up)[j];                                 \
        const T lap_y = (row)[j + 1] - (T)2 * c + (row)[j - 1];                         \
        (next)[j] = (T)2 * c - (prev)[j] + (cx) * lap_x + (cy) * lap_y;                 \
    }

/* The single pass streams u and u_prev from memory; on the development machine (Zen 4
 * under KVM) it ran at about 0.4 of the in-place stream with 512-bit vectors and no
 * software prefetch, and at about 0.75 with 256-bit vectors and the two memory streams
 * (the row below, and u_prev) prefetched 8 KiB ahead. The temporal block uses the same
 * row function for its first step (the one that reads memory) and keeps the wider
 * vectors for the steps that work in cache. Vector width does not change any result. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define STREAMING __attribute__((target("prefer-vector-width=256")))
#else
#define STREAMING
#endif
#define PREFETCH_BYTES 8192
#define CHUNK_BYTES 256

/* One row of one step, read from memory: the row below and u_prev prefetched ahead. */
#define STREAM_ROW(NAME, T)                                                             \
    STREAMING static void NAME(const T *row, ptrdiff_t stride, const T *prev, T *next,  \
                               ptrdiff_t j0, ptrdiff_t j1, T cx, T cy)                  \
    {                                                                                   \
        const ptrdiff_t chunk = CHUNK_BYTES / (ptrdiff_t)sizeof(T);                     \
        for (ptrdiff_t jb = j0; jb < j1; jb += chunk) {                                 \
            const ptrdiff_t je = jb + chunk < j1 ? jb + chunk : j1;                     \
            for (int b = 0; b < CHUNK_BYTES; b += 64) {                                 \
                __builtin_prefetch((const char *)(row + stride + jb) + PREFETCH_BYTES   \
                                   + b);                                                \
                __builtin_prefetch((const char *)(prev + jb) + PREFETCH_BYTES + b, 1);  \
            }                                                                           \
            ROW_UPDATE(T, row, row - stride, row + stride, prev, next, jb, je, cx, cy)  \
        }                                                                               \
    }

STREAM_ROW(stream_row_f32, float)
STREAM_ROW(stream_row_f64, double)

#define WAVE_STEP(NAME, ROWFN, T)                                                       \
    void NAME(const T *u, const T *u_prev, T *u_next, ptrdiff_t stride,                 \
              ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1, T cx, T cy)       \
    {                                                                                   \
        for (ptrdiff_t i = i0; i < i1; ++i)                                             \
            ROWFN(u + i * stride, stride, u_prev + i * stride, u_next + i * stride,     \
                  j0, j1, cx, cy);                                                      \
    }

WAVE_STEP(tc_wave_step_f32, stream_row_f32, float)
WAVE_STEP(tc_wave_step_f64, stream_row_f64, double)

/* Several boxes of one step in one call (the rim strips around an inner box):
 * `boxes` holds 4 * nboxes indices (i0, i1, j0, j1 per box). */
#define WAVE_BOXES(NAME, STEP, T)                                                       \
    void NAME(const T *u, const T *u_prev, T *u_next, ptrdiff_t stride,                 \
              const ptrdiff_t *boxes, ptrdiff_t nboxes, T cx, T cy)                     \
    {                                                                                   \
        for (ptrdiff_t b = 0; b < nboxes; ++b) {                                        \
            const ptrdiff_t *x = boxes + 4 * b;                                         \
            if (x[0] < x[1] && x[2] < x[3])                                             \
                STEP(u, u_prev, u_next, stride, x[0], x[1], x[2], x[3], cx, cy);        \
        }                                                                               \
    }

WAVE_BOXES(tc_wave_boxes_f32, tc_wave_step_f32, float)
WAVE_BOXES(tc_wave_boxes_f64, tc_wave_step_f64, double)

/*
 * Temporal block: advance `k` leapfrog steps in one pass over memory.
 *
 * `levels` holds k + 2 arrays: levels[0] = u^{n-1}, levels[1] = u^n, and step s
 * (1..k) reads levels[s] and levels[s-1] and writes u^{n+s} into levels[s+1]. In place
 * (the solver's two buffers) the list alternates b, a, b, a, ... so each step
 * overwrites the level it reads last; out of place (a channel's slot) every level is
 * its own frame and each one is written once, straight from cache.
 * Step s updates the box grown by ext[side] * (k - s) on each side (ext = 1 towards a
 * neighbour whose halo is k deep, 0 at the global boundary), so the last step covers
 * exactly [i0, i1) x [j0, j1) and every point it needs was computed by the step before.
 *
 * Wavefront over rows: in sweep r, step s updates row r - (s - 1), for s = 1..k in
 * that order. Step s at row i needs step s-1 rows i-1..i+1 (row i+1 was done earlier
 * in the same sweep); in place it overwrites level n+s-1's predecessor at row i,
 * which step s-1 last read when it updated row i+1 (also earlier in the sweep). So
 * each row is loaded from memory once per block and reused k times while the last
 * k+2 rows of each level stay in cache (in place: about 2 (k+2) rows, 0.6 MiB at
 * k = 16 and 4 K float32 per row). Whole rows, not tiles: rows are long and
 * contiguous, the pipeline needs no skewed tile shapes, and each step of each row is
 * the same vectorised loop as the single-pass kernel, so results are bitwise equal.
 */
#define WAVE_LEVELS(NAME, ROWFN, T)                                                            \
    void NAME(T *const *levels, ptrdiff_t k, ptrdiff_t stride, ptrdiff_t i0,            \
              ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1, const ptrdiff_t *ext,           \
              T cx, T cy)                                                               \
    {                                                                                   \
        if (k < 1) return;                                                              \
        const ptrdiff_t first = i0 - ext[0] * (k - 1);                                  \
        const ptrdiff_t last = i1 + ext[1] * (k - 1) + (k - 1);                         \
        for (ptrdiff_t r = first; r < last; ++r) {                                      \
            for (ptrdiff_t s = 1; s <= k; ++s) {                                        \
                const ptrdiff_t grow = k - s;                                           \
                const ptrdiff_t i = r - (s - 1);                                        \
                if (i < i0 - ext[0] * grow || i >= i1 + ext[1] * grow) continue;        \
                const ptrdiff_t lo = j0 - ext[2] * grow, hi = j1 + ext[3] * grow;       \
                if (lo >= hi) continue;                                                 \
                const T *row = levels[s] + i * stride;                                  \
                if (s == 1) { /* the only step that reads memory */                     \
                    ROWFN(row, stride, levels[0] + i * stride, levels[2] + i * stride,  \
                          lo, hi, cx, cy);                                              \
                    continue;                                                           \
                }                                                                       \
                ROW_UPDATE(T, row, row - stride, row + stride,                          \
                           levels[s - 1] + i * stride, levels[s + 1] + i * stride,      \
                           lo, hi, cx, cy)                                              \
            }                                                                           \
        }                                                                               \
    }

WAVE_LEVELS(tc_wave_levels_f32, stream_row_f32, float)
WAVE_LEVELS(tc_wave_levels_f64, stream_row_f64, double)

/* Memory-bandwidth probes compiled with the same flags (for the stencil benchmark).
 * `update` has the traffic of a leapfrog step: read two arrays, write one of them in
 * place (b = a + s b: three transfers per element, no write-allocate of a third). */
#define STREAM(NAME_COPY, NAME_TRIAD, NAME_UPDATE, T)                                   \
    void NAME_COPY(const T *a, T *b, ptrdiff_t n)                                       \
    {                                                                                   \
        _Pragma("GCC ivdep")                                                            \
        for (ptrdiff_t k = 0; k < n; ++k) b[k] = a[k];                                  \
    }                                                                                   \
    void NAME_TRIAD(const T *a, const T *b, T *c, T s, ptrdiff_t n)                     \
    {                                                                                   \
        _Pragma("GCC ivdep")                                                            \
        for (ptrdiff_t k = 0; k < n; ++k) c[k] = a[k] + s * b[k];                       \
    }                                                                                   \
    void NAME_UPDATE(const T *a, T *b, T s, ptrdiff_t n)                                \
    {                                                                                   \
        _Pragma("GCC ivdep")                                                            \
        for (ptrdiff_t k = 0; k < n; ++k) b[k] = a[k] + s * b[k];                       \
    }

STREAM(tc_copy_f32, tc_triad_f32, tc_update_f32, float)
STREAM(tc_copy_f64, tc_triad_f64, tc_update_f64, double)
