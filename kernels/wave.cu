// Fused leapfrog update of the 2D wave equation on the GPU: the same update rule,
// layout and argument order as kernels/wave.c. One thread per point of the box
// [i0, i1) x [j0, j1); threadIdx.x runs along the contiguous y axis (coalesced).
// u_next may alias u_prev (in-place update). Compiled at run time by CuPy's
// RawModule (the package ships this file) and by nvcc in CMake as a build check.

template <typename T>
__device__ void wave_step(const T *u, const T *u_prev, T *u_next, long long stride,
                          long long i0, long long i1, long long j0, long long j1,
                          T cx, T cy)
{
    const long long j = j0 + (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long i = i0 + (long long)blockIdx.y * blockDim.y + threadIdx.y;
    if (i >= i1 || j >= j1) return;
    const long long k = i * stride + j;
    const T c = u[k];
    const T lap_x = u[k + stride] - (T)2 * c + u[k - stride];
    const T lap_y = u[k + 1] - (T)2 * c + u[k - 1];
    u_next[k] = (T)2 * c - u_prev[k] + cx * lap_x + cy * lap_y;
}

extern "C" __global__ void tc_wave_step_f32(const float *u, const float *u_prev, float *u_next,
                                            long long stride, long long i0, long long i1,
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
