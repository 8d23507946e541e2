// Fused leapfrog update of the 2D wave equation on the GPU: the same update rule,
// layout and argument order as kernels/wave.c, over the box [i0, i1) x [j0, j1);
// threadIdx.x runs along the contiguous y axis (coalesced). u_next may alias u_prev
// (in-place update), never u. Compiled at run time by CuPy's
// RawModule (the package ships this file) and by nvcc in CMake as a build check.

// Every operation is an explicit round-to-nearest PTX instruction with no .ftz: CuPy
// compiles with -ftz=true (float32 subnormals flushed to zero) and may contract a*b+c
// into one FMA; NumPy does neither. Explicitly rounded instructions are never contracted
// and keep subnormals, so the kernel rounds exactly as NumPy does in float32 and float64.
__device__ __forceinline__ float tc_add(float a, float b)
{ float r; asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r; }
__device__ __forceinline__ float tc_sub(float a, float b)
{ float r; asm("sub.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r; }
__device__ __forceinline__ float tc_mul(float a, float b)
{ float r; asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r; }
__device__ __forceinline__ double tc_add(double a, double b)
{ double r; asm("add.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b)); return r; }
__device__ __forceinline__ double tc_sub(double a, double b)
{ double r; asm("sub.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b)); return r; }
__device__ __forceinline__ double tc_mul(double a, double b)
{ double r; asm("mul.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b)); return r; }

// Rows per thread: each thread marches down TC_ROWS rows of one column, keeping u[i-1], u[i]
// and u[i+1] in registers, so u's row neighbours are loaded once, not three times. The
// host (tcoupled/sim/backends/cupy_backend.py) compiles with -DTC_ROWS=R and launches
// blocks of threads over columns (x) and row groups (y).
#ifndef TC_ROWS
#define TC_ROWS 8
#endif

// u is never written here (u_next aliases u_prev or another array, never u): __restrict__
// lets its loads take the read-only path.
template <typename T>
__device__ void wave_step(const T *__restrict__ u, const T *u_prev, T *u_next,
                          long long stride, long long i0, long long i1, long long j0,
                          long long j1, T cx, T cy)
{
    const long long j = j0 + (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long first = i0 + ((long long)blockIdx.y * blockDim.y + threadIdx.y) * TC_ROWS;
    if (first >= i1 || j >= j1) return;
    const long long last = first + TC_ROWS < i1 ? first + TC_ROWS : i1;
    long long k = first * stride + j;
    T up = u[k - stride], c = u[k];
    for (long long i = first; i < last; ++i, k += stride) {
        const T down = u[k + stride];
        const T two_c = tc_mul((T)2, c);
        // NumPy's order: lap = (u[+] - 2c) + u[-]; next = ((2c - prev) + cx lap_x) + cy lap_y
        const T lap_x = tc_add(tc_sub(down, two_c), up);
        const T lap_y = tc_add(tc_sub(u[k + 1], two_c), u[k - 1]);
        u_next[k] = tc_add(tc_add(tc_sub(two_c, u_prev[k]), tc_mul(cx, lap_x)),
                           tc_mul(cy, lap_y));
        up = c;
        c = down;
    }
}

extern "C" __global__ void tc_wave_step_f32(const float *__restrict__ u, const float *u_prev,
                                            float *u_next, long long stride, long long i0, long long i1,
                                            long long j0, long long j1, float cx, float cy)
{
    wave_step<float>(u, u_prev, u_next, stride, i0, i1, j0, j1, cx, cy);
}

extern "C" __global__ void tc_wave_step_f64(const double *__restrict__ u, const double *u_prev,
                                            double *u_next, long long stride, long long i0,
                                            long long i1, long long j0, long long j1,
                                            double cx, double cy)
{
    wave_step<double>(u, u_prev, u_next, stride, i0, i1, j0, j1, cx, cy);
}
