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
#include <stdint.h>

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

/* Rows of one step from cache (the temporal block's steps 2..k), several rows per
 * pass: `nr` consecutive rows starting at `row` (level n+s), `prev` (level n+s-1) and
 * `next` (level n+s+1). ROWS_PASS rows at a time share their loads: the rows above and
 * below are read once per column vector for all of them (nr + 2 row loads for nr
 * rows instead of 3 nr). With AVX-512 the columns are cut at the 64-byte lines of
 * `next`: the partial first and last vectors are masked, the others are whole, so
 * every load but j - 1 and j + 1 is aligned when the arrays share the line phase (as
 * the solver's do). Each lane does the operations of ROW_UPDATE in the same order (2 c
 * is exact, whichever way it is formed), so results are bitwise those of the portable
 * loop, which is the fallback. Zen 5 adds on two of its four FP pipes and multiplies
 * (and fuses) on the other two, and the update has seven additions to three products;
 * so the sums lap_x = (down - 2c) + up and lap_y = (right - 2c) + left are issued as
 * fma(x, 1, y), which rounds exactly as x + y (x * 1 is exact). `one` and `two` are
 * hidden from the compiler behind an empty asm, else it turns fma(x, 1, y) back into
 * x + y and 2 c into c + c. In L1 a pass of 8 rows takes about 3.2 cycles per 16 points
 * (one row: 4.0), bound by the loads (j - 1 and j + 1 straddle lines). */
#ifndef ROWS_PASS
#define ROWS_PASS 8
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#define VLOAD(SFX, m, masked, p) ((masked) ? _mm512_maskz_loadu_##SFX((m), (p)) : _mm512_loadu_##SFX(p))
#define CACHE_ROWS(NAME, T, V, M, SFX, VL)                                              \
    static inline __attribute__((always_inline)) void NAME##_vec(                       \
        M m, const int masked, const T *row, ptrdiff_t stride, const T *prev, T *next,  \
        ptrdiff_t j, const int nr, V one, V two, V vcx, V vcy)                                 \
    {                                                                                   \
        V c[ROWS_PASS + 2];                                                             \
        _Pragma("GCC unroll 16")                                                        \
        for (int q = 0; q < nr + 2; ++q)                                                \
            c[q] = VLOAD(SFX, m, masked, row + (q - 1) * stride + j);                   \
        _Pragma("GCC unroll 16")                                                        \
        for (int q = 0; q < nr; ++q) {                                                  \
            const T *rq = row + q * stride;                                             \
            const V t = _mm512_mul_##SFX(c[q + 1], two);                                \
            const V lx = _mm512_fmadd_##SFX(_mm512_sub_##SFX(c[q + 2], t), one, c[q]);  \
            const V ly = _mm512_fmadd_##SFX(                                            \
                _mm512_sub_##SFX(VLOAD(SFX, m, masked, rq + j + 1), t), one,            \
                VLOAD(SFX, m, masked, rq + j - 1));                                     \
            const V d = _mm512_sub_##SFX(t, VLOAD(SFX, m, masked, prev + q * stride + j)); \
            const V out = _mm512_add_##SFX(_mm512_add_##SFX(d, _mm512_mul_##SFX(vcx, lx)), \
                                           _mm512_mul_##SFX(vcy, ly));                  \
            if (masked)                                                                 \
                _mm512_mask_storeu_##SFX(next + q * stride + j, m, out);                \
            else                                                                        \
                _mm512_storeu_##SFX(next + q * stride + j, out);                        \
        }                                                                               \
    }                                                                                   \
    static inline __attribute__((always_inline)) void NAME##_span(                      \
        const T *row, ptrdiff_t stride, const T *prev, T *next, const int nr,           \
        ptrdiff_t j0, ptrdiff_t j1, T cx, T cy, const T *pfa, const T *pfb)             \
    {                                                                                   \
        V one = _mm512_set1_##SFX((T)1), two = _mm512_set1_##SFX((T)2);                 \
        __asm__("" : "+v"(one), "+v"(two)); /* opaque: see the comment above */         \
        const V vcx = _mm512_set1_##SFX(cx), vcy = _mm512_set1_##SFX(cy);              \
        ptrdiff_t j = j0 - (ptrdiff_t)(((uintptr_t)(next + j0) / sizeof(T)) % VL);      \
        if (j < j0) { /* the partial first vector: lanes j0 .. */                       \
            M m = (M)(~0u << (j0 - j));                                                 \
            if (j1 - j < VL) m &= (M)((1u << (j1 - j)) - 1);                            \
            NAME##_vec(m, 1, row, stride, prev, next, j, nr, one, two, vcx, vcy);            \
            j += VL;                                                                    \
        }                                                                               \
        if (pfa)                                                                        \
            for (; j + VL <= j1; j += VL) {                                             \
                __builtin_prefetch(pfa + j);                                            \
                __builtin_prefetch(pfb + j);                                            \
                NAME##_vec((M)0, 0, row, stride, prev, next, j, nr, one, two, vcx, vcy); \
            }                                                                           \
        for (; j + VL <= j1; j += VL)                                                   \
            NAME##_vec((M)0, 0, row, stride, prev, next, j, nr, one, two, vcx, vcy);    \
        if (j < j1) /* the partial last vector: lanes .. j1 - 1 */                      \
            NAME##_vec((M)((1u << (j1 - j)) - 1), 1, row, stride, prev, next, j, nr,    \
                       one, two, vcx, vcy);                                                  \
    }                                                                                   \
    static void NAME(const T *row, ptrdiff_t stride, const T *prev, T *next,            \
                     ptrdiff_t nr, ptrdiff_t j0, ptrdiff_t j1, T cx, T cy, const T *pfa, \
                     const T *pfb)                                                      \
    {                                                                                   \
        if (nr == ROWS_PASS) {                                                          \
            NAME##_span(row, stride, prev, next, ROWS_PASS, j0, j1, cx, cy, pfa, pfb);  \
            return;                                                                     \
        }                                                                               \
        for (ptrdiff_t q = 0; q < nr; ++q)                                              \
            NAME##_span(row + q * stride, stride, prev + q * stride, next + q * stride, \
                        1, j0, j1, cx, cy, 0, 0);                                       \
    }
CACHE_ROWS(cache_rows_f32, float, __m512, __mmask16, ps, 16)
CACHE_ROWS(cache_rows_f64, double, __m512d, __mmask8, pd, 8)
#else
#define CACHE_ROWS(NAME, T)                                                             \
    static void NAME(const T *row, ptrdiff_t stride, const T *prev, T *next,            \
                     ptrdiff_t nr, ptrdiff_t j0, ptrdiff_t j1, T cx, T cy, const T *pfa, \
                     const T *pfb)                                                      \
    {                                                                                   \
        (void)pfa, (void)pfb;                                                           \
        for (ptrdiff_t q = 0; q < nr; ++q) {                                            \
            const T *r = row + q * stride;                                              \
            ROW_UPDATE(T, r, r - stride, r + stride, prev + q * stride,                 \
                       next + q * stride, j0, j1, cx, cy)                               \
        }                                                                               \
    }
CACHE_ROWS(cache_rows_f32, float)
CACHE_ROWS(cache_rows_f64, double)
#endif

/* Tile and band sizes of the temporal block (see below); tuned on Zen 5 (48 KiB L1d,
 * 1 MiB L2) at 4096^2 float32; band height and prefetch changed the rate by a few %. */
#ifndef TILE_COLS
#define TILE_COLS 512
#endif
#ifndef BAND_ROWS
#define BAND_ROWS 32
#endif
#ifndef SKEW
#define SKEW 16
#endif
#ifndef PF_NEXT
#define PF_NEXT 1
#endif

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
 * Wavefront over rows, P = ROWS_PASS rows per pass: sweep b (b = first, first + P, ...)
 * runs s = 1..k in that order, step s updating rows [b - (s-1), b - (s-1) + P). Step s
 * there needs step s-1 at rows b - s + 1 .. b - s + P + 1: done earlier in the same
 * sweep (rows from b - s + 2) or in the sweeps before. In place it overwrites
 * u^{n+s-2} there, which step s-1 last read for the rows just above and below (done
 * by the same argument). So each step lags the one before by one row, and the rows in
 * flight per array are about k + P + 2, whatever P.
 *
 * Tiled in j too, so that the rows in flight are short (whole rows of 4 K float32 over
 * 2 (k + P) rows would fill L2): the columns are cut into tiles of TILE_COLS float32
 * (bytes alike for float64) skewed by SKEW columns per step (step s of tile t covers
 * [B_t - SKEW (s-1), B_t+1 - SKEW (s-1)), the first tile open to the left and the last
 * to the right), and the sweeps into bands of BAND_ROWS rows; bands run in order, and in
 * a band the tiles run left to right, each doing the band's sweeps. Point (s, i, j)
 * belongs to the tile of column j + SKEW (s-1) and to the sweep of row i + s - 1. With
 * SKEW >= 1 every point it reads (step s-1 at columns j-1..j+1, rows i-1..i+1) lies in
 * the same or an earlier tile and sweep, and so does every reader of the value it
 * overwrites in place (step s-1 at the same neighbours): each point is computed after
 * its inputs and before any of them is overwritten, so it gets the value of k separate
 * steps. SKEW = 16 (one 64-byte line of float32) keeps the tile edges on lines.
 * A pass reads P + 2 rows of one array and P of the other at the same columns; if the
 * two arrays start at the same offset in a 4 KiB page (large allocations all do) those
 * rows share L1 sets and evict each other, so c_backend.aligned_zeros starts successive
 * arrays half a page apart: at 4096^2 float32, K = 32, that took the block from about
 * 2.0 to 2.7 times the single-pass bound on Zen 5. Tiles of 512 float32 (32 lines, 8 KiB
 * per row across both arrays) were best with that colouring and no worse without it.
 *
 * Step 1 is the only step that reads memory, and it reads only u^{n-1} and u^n, so it
 * may run any distance ahead of step 2: each band first does step 1 on its rows whole,
 * with the streaming row of the single pass (long contiguous rows are what the memory
 * system and its prefetchers want; tiles of 4 KiB per row are not), and the tiles then
 * do steps 2..k from cache. Each pass of steps 2..k also prefetches the rows that the
 * next pass of the sweep reads (PF_NEXT). Each point is the same lane-wise expression
 * as in the single pass, so the results are bitwise equal (the loop order changes only
 * which values sit in cache); tests/test_time_block.py checks it across tiles.
 */
#define WAVE_LEVELS(NAME, STREAMFN, ROWSFN, T)                                          \
    void NAME(T *const *levels, ptrdiff_t k, ptrdiff_t stride, ptrdiff_t i0,            \
              ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1, const ptrdiff_t *ext,           \
              T cx, T cy)                                                               \
    {                                                                                   \
        if (k < 1) return;                                                              \
        const ptrdiff_t P = ROWS_PASS;                                                  \
        const ptrdiff_t first = i0 - ext[0] * (k - 1), end = i1 + (k - 1);          \
        const ptrdiff_t jmin = j0 - ext[2] * (k - 1), jmax = j1 + ext[3] * (k - 1);     \
        const ptrdiff_t line = 64 / (ptrdiff_t)sizeof(T);                               \
        const ptrdiff_t phase = (ptrdiff_t)(((uintptr_t)levels[1] / sizeof(T)) % line); \
        const ptrdiff_t width = TILE_COLS * 4 / (ptrdiff_t)sizeof(T);                   \
        const ptrdiff_t skew = SKEW * 4 / (ptrdiff_t)sizeof(T);                         \
        /* tile t spans [base + t width, base + (t+1) width) at step 1, base on a line */ \
        const ptrdiff_t base = jmin - ((jmin + phase) % line + line) % line;            \
        ptrdiff_t tiles = (jmax - base + skew * (k - 1) + width - 1) / width;           \
        if (tiles < 1) tiles = 1;                                                       \
        const ptrdiff_t last1 = i1 + ext[1] * (k - 1);                                  \
        const ptrdiff_t rows = (BAND_ROWS + P - 1) / P * P; /* whole sweeps */          \
        for (ptrdiff_t band = first; band < end; band += rows) {                        \
            const ptrdiff_t bend = band + rows < end ? band + rows : end;               \
            /* step 1, whole rows: the band's sweeps start rows [band, bend) */         \
            for (ptrdiff_t i = band; i < bend && i < last1; ++i)                        \
                STREAMFN(levels[1] + i * stride, stride, levels[0] + i * stride,        \
                         levels[2] + i * stride, jmin, jmax, cx, cy);                   \
            for (ptrdiff_t t = 0; t < tiles; ++t) {                                     \
                for (ptrdiff_t b = band; b < bend; b += P) {                            \
                    for (ptrdiff_t s = 2; s <= k; ++s) {                                \
                        const ptrdiff_t grow = k - s, a = b - (s - 1);                  \
                        const ptrdiff_t ilo = a > i0 - ext[0] * grow ? a                \
                                                                     : i0 - ext[0] * grow; \
                        const ptrdiff_t ihi = a + P < i1 + ext[1] * grow                \
                                                  ? a + P : i1 + ext[1] * grow;         \
                        if (ilo >= ihi) continue;                                       \
                        ptrdiff_t lo = j0 - ext[2] * grow, hi = j1 + ext[3] * grow;     \
                        const ptrdiff_t left = base + t * width - skew * (s - 1);       \
                        if (t > 0 && lo < left) lo = left;                              \
                        if (t + 1 < tiles && hi > left + width) hi = left + width;      \
                        if (lo >= hi) continue;                                         \
                        ROWSFN(levels[s] + ilo * stride, stride,                        \
                               levels[s - 1] + ilo * stride, levels[s + 1] + ilo * stride, \
                               ihi - ilo, lo, hi, cx, cy,                               \
                               PF_NEXT && s < k ? levels[s + 1] + (a - 2) * stride : 0, \
                               levels[s + 1] + (a - 1) * stride);                       \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }

WAVE_LEVELS(tc_wave_levels_f32, stream_row_f32, cache_rows_f32, float)
WAVE_LEVELS(tc_wave_levels_f64, stream_row_f64, cache_rows_f64, double)

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
