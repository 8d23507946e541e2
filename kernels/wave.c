/*
 * Fused leapfrog update of the 2D wave equation, one pass over memory.
 *
 *   u_next = 2 u - u_prev + cx (u[i+1,j] - 2u + u[i-1,j]) + cy (u[i,j+1] - 2u + u[i,j-1])
 *
 * with cx = (c dt / dx)^2, cy = (c dt / dy)^2. Arrays are row-major (C order) with
 * `stride` elements per row (first axis x, second axis y). The update covers the
 * half-open box [i0, i1) x [j0, j1). `u_next` may alias `u_prev` (in-place update:
 * each point of u_prev is read once, by its own update, before it is written), which
 * saves the write-allocate traffic of a third array. The NumPy backend evaluates the
 * same expression in the same order.
 */
#include <stddef.h>

#define WAVE_STEP(NAME, T)                                                              \
    void NAME(const T *u, const T *u_prev, T *u_next, ptrdiff_t stride,                 \
              ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1, T cx, T cy)       \
    {                                                                                   \
        for (ptrdiff_t i = i0; i < i1; ++i) {                                           \
            const T *row = u + i * stride;                                              \
            const T *up = row - stride;                                                 \
            const T *down = row + stride;                                               \
            const T *prev = u_prev + i * stride;                                        \
            T *next = u_next + i * stride;                                              \
            _Pragma("GCC ivdep")                                                        \
            for (ptrdiff_t j = j0; j < j1; ++j) {                                       \
                const T c = row[j];                                                     \
                const T lap_x = down[j] - (T)2 * c + up[j];                             \
                const T lap_y = row[j + 1] - (T)2 * c + row[j - 1];                     \
                next[j] = (T)2 * c - prev[j] + cx * lap_x + cy * lap_y;                 \
            }                                                                           \
        }                                                                               \
    }

WAVE_STEP(tc_wave_step_f32, float)
WAVE_STEP(tc_wave_step_f64, double)

/* Memory-bandwidth probes compiled with the same flags (for the stencil benchmark). */
#define STREAM(NAME_COPY, NAME_TRIAD, T)                                                \
    void NAME_COPY(const T *a, T *b, ptrdiff_t n)                                       \
    {                                                                                   \
        _Pragma("GCC ivdep")                                                            \
        for (ptrdiff_t k = 0; k < n; ++k) b[k] = a[k];                                  \
    }                                                                                   \
    void NAME_TRIAD(const T *a, const T *b, T *c, T s, ptrdiff_t n)                     \
    {                                                                                   \
        _Pragma("GCC ivdep")                                                            \
        for (ptrdiff_t k = 0; k < n; ++k) c[k] = a[k] + s * b[k];                       \
    }

STREAM(tc_copy_f32, tc_triad_f32, float)
STREAM(tc_copy_f64, tc_triad_f64, double)
