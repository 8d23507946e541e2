// Fused leapfrog update of the 2D wave equation on the GPU: the same update rule,
// layout and argument order as kernels/wave.c, over the box [i0, i1) x [j0, j1);
// threadIdx.x runs along the contiguous y axis (coalesced). u_next may alias u_prev
// (in-place update), never u. Compiled at run time by CuPy's
// RawModule (the package ships this file) and by nvcc in CMake as a build check.

// Every operation is an explicit round-to-nearest PTX instruction with no .ftz: CuPy
// compiles with -ftz=true (float32 subnormals flushed to zero) and may contract a*b+c
// into one FMA; NumPy does neither. Explicitly rounded instructions are never contracted
// and keep subnormals, so the kernel rounds exactly as NumPy does in float32 and float64.
#define TC_IEEE_OP(T, C, PTX, NAME, OP)                                                  \
    __device__ __forceinline__ T NAME(T a, T b)                                         \
    {                                                                                   \
        T r;                                                                            \
        asm(OP ".rn." PTX " %0, %1, %2;" : "=" C(r) : C(a), C(b));                      \
        return r;                                                                       \
    }
#define TC_IEEE_OPS(T, C, PTX)                                                           \
    TC_IEEE_OP(T, C, PTX, tc_add, "add") TC_IEEE_OP(T, C, PTX, tc_sub, "sub")           \
    TC_IEEE_OP(T, C, PTX, tc_mul, "mul")
TC_IEEE_OPS(float, "f", "f32")
TC_IEEE_OPS(double, "d", "f64")

// Rows per thread: each thread updates TC_ROWS rows of one column. It loads everything
// first -- the TC_ROWS + 2 values of u down its column, each row's left and right
// neighbours and u_prev -- and only then computes and stores, so 4 TC_ROWS + 2 independent
// loads are in flight per thread and u's rows are read once, not three times. The host
// (tcoupled/sim/backends/cupy_backend.py) compiles with -DTC_ROWS=R and launches blocks of
// threads over columns (x) and row groups (y).
#ifndef TC_ROWS
#define TC_ROWS 8
#endif

template <typename T>
__device__ void wave_step(const T *u, const T *u_prev, T *u_next,
                          long long stride, long long i0, long long i1, long long j0,
                          long long j1, T cx, T cy)
{
    const long long j = j0 + (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long first = i0 + ((long long)blockIdx.y * blockDim.y + threadIdx.y) * TC_ROWS;
    if (first >= i1 || j >= j1) return;
    const long long rows = i1 - first < TC_ROWS ? i1 - first : TC_ROWS;
    const long long k0 = first * stride + j;
    T col[TC_ROWS + 2], left[TC_ROWS], right[TC_ROWS], prev[TC_ROWS];
#pragma unroll
    for (int t = 0; t < TC_ROWS + 2; ++t)
        if (t <= rows + 1) col[t] = u[k0 + (t - 1) * stride];
#pragma unroll
    for (int t = 0; t < TC_ROWS; ++t)
        if (t < rows) {
            const long long k = k0 + t * stride;
            left[t] = u[k - 1];
            right[t] = u[k + 1];
            prev[t] = u_prev[k];
        }
#pragma unroll
    for (int t = 0; t < TC_ROWS; ++t)
        if (t < rows) {
            const T two_c = tc_mul((T)2, col[t + 1]);
            // NumPy's order: lap = (u[+] - 2c) + u[-]; next = ((2c - prev) + cx lap_x) + cy lap_y
            const T lap_x = tc_add(tc_sub(col[t + 2], two_c), col[t]);
            const T lap_y = tc_add(tc_sub(right[t], two_c), left[t]);
            u_next[k0 + t * stride] = tc_add(tc_add(tc_sub(two_c, prev[t]), tc_mul(cx, lap_x)),
                                             tc_mul(cy, lap_y));
        }
}

extern "C" __global__ void tc_wave_step_f32(const float *u,
                                            const float *u_prev, float *u_next, long long stride, long long i0, long long i1,
                                            long long j0, long long j1, float cx, float cy)
{
    wave_step<float>(u, u_prev, u_next, stride, i0, i1, j0, j1, cx, cy);
}

extern "C" __global__ void tc_wave_step_f64(const double *u, const double *u_prev,
                                            double *u_next, long long stride, long long i0,
                                            long long i1, long long j0, long long j1,
                                            double cx, double cy)
{
    wave_step<double>(u, u_prev, u_next, stride, i0, i1, j0, j1, cx, cy);
}
