// LayerNorm written one idea at a time: the kernels of the book's chapter 10, each short enough to
// read in one go. float32 only; launched by versions.py. lnlib.cuda runs layernorm.cu, which
// combines these ideas (and adds clusters for long rows and 16-bit storage).
//
// Notation as in the book: a row x of D values, mean, var (population, divided by D),
// rstd = 1 / sqrt(var + eps), x_hat = (x - mean) * rstd, y = gamma * x_hat + beta.
// Version numbers match the chapter: v0 to v4 forward, b0 and b1 backward. The chapter shows the
// code between "// BEGIN name" and "// END name" lines, read from this file while the book builds.
//
// Supported row lengths: v0, v1 and b0 any D; the register kernels up to versions.py's MAX_D (16
// values a thread of a 1024-thread block; b1 8), v3 and v4 multiples of 4 (versions.py checks them).
// Blocks have a multiple of 32 threads. Every kernel's parameters and arguments are described in
// families.py (a test checks them against this file).

// BEGIN v0-reduction
// The block reduction of the unfused design found in typical tutorials. Each warp adds its 32
// values with shuffles; lane 0 of each warp writes the warp's sum to shared memory. The tutorial
// code stops there and returns partial[0], the first warp's sum only (BROKEN = true). The fix
// (BROKEN = false) is one more step: the first warp adds the sums of all warps.
template <bool BROKEN>
__device__ float block_sum_v0(float v) {
    __shared__ float partial[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    __syncthreads();  // a previous call's readers are done with partial
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (!BROKEN && warp == 0) {  // the fix
        v = lane < nwarps ? partial[lane] : 0.f;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) partial[0] = v;
    }
    __syncthreads();
    return partial[0];
}
// END v0-reduction

// BEGIN v0
// Version 0: the unfused design. Three launches, one block per row for the two statistics, then
// one thread per element; each kernel reads x from memory, so x is read three times.
template <bool BROKEN>
__global__ void v0_mean(const float* x, float* mean, int M, int D) {
    const int row = blockIdx.x;
    float s = 0.f;
    for (int c = threadIdx.x; c < D; c += blockDim.x) s += x[(size_t)row * D + c];
    s = block_sum_v0<BROKEN>(s);
    if (threadIdx.x == 0) mean[row] = s / D;
}

template <bool BROKEN>
__global__ void v0_rstd(const float* x, const float* mean, float* rstd, int M, int D, float eps) {
    const int row = blockIdx.x;
    const float m = mean[row];
    float s = 0.f;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        const float t = x[(size_t)row * D + c] - m;
        s += t * t;
    }
    s = block_sum_v0<BROKEN>(s);
    if (threadIdx.x == 0) rstd[row] = 1.0f / sqrtf(s / D + eps);
}

__global__ void v0_normalize(const float* x, const float* gamma, const float* beta,
                             const float* mean, const float* rstd, float* y, int M, int D) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)M * D) {
        const int row = (int)(i / D), c = (int)(i % D);
        y[i] = (x[i] - mean[row]) * rstd[row] * gamma[c] + beta[c];
    }
}
// END v0

// BEGIN block-sum
// The fixed reduction for two sums at once, used by every later kernel. As in version 0 each
// warp adds its values with shuffles (xor: every lane gets the warp's sum) and lane 0 writes it
// to shared memory; then every thread adds the warps' sums itself, in the same order, so all
// threads get the same total without a third barrier.
__device__ float2 block_sum2(float2 v) {
    __shared__ float2 partial[32];
    for (int o = 16; o > 0; o >>= 1) {
        v.x += __shfl_xor_sync(0xffffffffu, v.x, o);
        v.y += __shfl_xor_sync(0xffffffffu, v.y, o);
    }
    __syncthreads();  // a previous call's readers are done with partial
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    v = make_float2(0.f, 0.f);
    for (int w = 0; w < blockDim.x / 32; ++w) {
        v.x += partial[w].x;
        v.y += partial[w].y;
    }
    return v;
}
// END block-sum

// BEGIN v1
// Version 1: one fused kernel, one block per row, looping over the row in global memory. The
// statistics come from one pass, the sum and the sum of squares, var = mean(x^2) - mean^2: the
// shortcut many fast kernels take, one reduction instead of two. x is read twice: for the
// statistics, and again to write y.
__global__ void v1_forward(const float* x, const float* gamma, const float* beta, float* y,
                           float* mean, float* rstd, int D, float eps) {
    const size_t row0 = (size_t)blockIdx.x * D;
    float2 s = make_float2(0.f, 0.f);
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        const float v = x[row0 + c];
        s.x += v;
        s.y += v * v;
    }
    s = block_sum2(s);
    const float m = s.x / D;
    const float rs = 1.0f / sqrtf(s.y / D - m * m + eps);
    for (int c = threadIdx.x; c < D; c += blockDim.x)
        y[row0 + c] = (x[row0 + c] - m) * rs * gamma[c] + beta[c];
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = rs;
    }
}
// END v1

// BEGIN v2
// Version 2: the row held in registers. Each thread keeps N values of the row, at columns
// threadIdx.x + k * blockDim.x; the launcher sizes the block to D (blockDim.x * N >= D). x is read
// once. N is a template parameter so that the loops unroll and v[] lives in registers.
// __launch_bounds__(1024): blocks may have 1024 threads, so the compiler must keep to 64
// registers a thread (an SM has 65536), or the launch would fail.
template <int N>
__global__ void __launch_bounds__(1024)
v2_forward(const float* x, const float* gamma, const float* beta, float* y,
           float* mean, float* rstd, int D, float eps) {
    const size_t row0 = (size_t)blockIdx.x * D;
    float v[N];
    float2 s = make_float2(0.f, 0.f);
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const int c = threadIdx.x + k * blockDim.x;
        v[k] = c < D ? x[row0 + c] : 0.f;
        s.x += v[k];
        s.y += v[k] * v[k];
    }
    s = block_sum2(s);
    const float m = s.x / D;
    const float rs = 1.0f / sqrtf(s.y / D - m * m + eps);
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const int c = threadIdx.x + k * blockDim.x;
        if (c < D) y[row0 + c] = (v[k] - m) * rs * gamma[c] + beta[c];
    }
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = rs;
    }
}
// END v2

// BEGIN float4
// Four floats at a time, for versions 3 and 4.
__device__ float sum4(float4 a) { return (a.x + a.y) + (a.z + a.w); }
__device__ float dot4(float4 a, float4 b) {
    return (a.x * b.x + a.y * b.y) + (a.z * b.z + a.w * b.w);
}
__device__ float4 minus4(float4 a, float t) {
    return make_float4(a.x - t, a.y - t, a.z - t, a.w - t);
}
// gamma * (d - m) * rs + beta, element by element
__device__ float4 scale_shift4(float4 d, float m, float rs, float4 g, float4 b) {
    return make_float4((d.x - m) * rs * g.x + b.x, (d.y - m) * rs * g.y + b.y,
                       (d.z - m) * rs * g.z + b.z, (d.w - m) * rs * g.w + b.w);
}
// END float4

// BEGIN v3
// Version 3: version 2 with 16-byte loads and stores. The row is D / 4 float4 vectors; each thread
// keeps N of them, at vector indices threadIdx.x + k * blockDim.x. A float4 access must be 16-byte
// aligned: the launcher checks that D is a multiple of 4 (then every row starts on a 16-byte
// boundary, as CuPy's allocations do).
template <int N>
__global__ void __launch_bounds__(1024)
v3_forward(const float* x, const float* gamma, const float* beta, float* y,
           float* mean, float* rstd, int D, float eps) {
    const float4* xr = reinterpret_cast<const float4*>(x + (size_t)blockIdx.x * D);
    float4* yr = reinterpret_cast<float4*>(y + (size_t)blockIdx.x * D);
    const float4* g4 = reinterpret_cast<const float4*>(gamma);
    const float4* b4 = reinterpret_cast<const float4*>(beta);
    const int V = D / 4;
    float4 v[N];
    float2 s = make_float2(0.f, 0.f);
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const int c = threadIdx.x + k * blockDim.x;
        v[k] = c < V ? xr[c] : make_float4(0.f, 0.f, 0.f, 0.f);
        s.x += sum4(v[k]);
        s.y += dot4(v[k], v[k]);
    }
    s = block_sum2(s);
    const float m = s.x / D;
    const float rs = 1.0f / sqrtf(s.y / D - m * m + eps);
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const int c = threadIdx.x + k * blockDim.x;
        if (c < V) yr[c] = scale_shift4(v[k], m, rs, g4[c], b4[c]);
    }
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = rs;
    }
}
// END v3

// BEGIN v4
// Version 4: version 3 with the statistics of chapter 6. The row is shifted by its first element,
// K = x[0]: d = x - K loses nothing for the values near K, so the statistics keep their digits when
// the mean is far from zero. Then two passes over the registers: the mean of d, and the mean of the
// squared deviations (d - mean)^2. The second pass is a second reduction, not a second read of
// memory. Saved for the backward (as lnlib.cuda saves them): mean_shift = mean(d) and rstd.
template <int N>
__global__ void __launch_bounds__(1024)
v4_forward(const float* x, const float* gamma, const float* beta, float* y,
           float* mean_shift, float* rstd, int D, float eps) {
    const float4* xr = reinterpret_cast<const float4*>(x + (size_t)blockIdx.x * D);
    float4* yr = reinterpret_cast<float4*>(y + (size_t)blockIdx.x * D);
    const float4* g4 = reinterpret_cast<const float4*>(gamma);
    const float4* b4 = reinterpret_cast<const float4*>(beta);
    const int V = D / 4;
    const float K = x[(size_t)blockIdx.x * D];
    float4 d[N];
    float2 s = make_float2(0.f, 0.f);
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const int c = threadIdx.x + k * blockDim.x;
        d[k] = c < V ? minus4(xr[c], K) : make_float4(0.f, 0.f, 0.f, 0.f);
        s.x += sum4(d[k]);
    }
    const float m = block_sum2(s).x / D;
    float2 q = make_float2(0.f, 0.f);
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const int c = threadIdx.x + k * blockDim.x;
        if (c < V) {
            const float4 t = minus4(d[k], m);
            q.x += dot4(t, t);
        }
    }
    const float rs = 1.0f / sqrtf(block_sum2(q).x / D + eps);
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const int c = threadIdx.x + k * blockDim.x;
        if (c < V) yr[c] = scale_shift4(d[k], m, rs, g4[c], b4[c]);
    }
    if (threadIdx.x == 0) {
        mean_shift[blockIdx.x] = m;
        rstd[blockIdx.x] = rs;
    }
}
// END v4

// BEGIN b0
// Backward version 0, the unfused design: one kernel for the two row sums of g = gamma * dy and
// g * x_hat, then one thread per element for dx, adding each element's share of dgamma and dbeta
// with atomicAdd. x and dy are read twice; the atomics add in whatever order the threads arrive.
__global__ void b0_rowsums(const float* x, const float* dy, const float* gamma, const float* mean,
                           const float* rstd, float* a, float* b, int M, int D) {
    const int row = blockIdx.x;
    float sa = 0.f, sb = 0.f;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        const size_t i = (size_t)row * D + c;
        const float g = dy[i] * gamma[c];
        sa += g;
        sb += g * (x[i] - mean[row]) * rstd[row];
    }
    sa = block_sum_v0<false>(sa);
    sb = block_sum_v0<false>(sb);
    if (threadIdx.x == 0) {
        a[row] = sa / D;
        b[row] = sb / D;
    }
}

__global__ void b0_dx(const float* x, const float* dy, const float* gamma, const float* mean,
                      const float* rstd, const float* a, const float* b, float* dx, float* dgamma,
                      float* dbeta, int M, int D) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)M * D) {
        const int row = (int)(i / D), c = (int)(i % D);
        const float xh = (x[i] - mean[row]) * rstd[row];
        dx[i] = rstd[row] * (dy[i] * gamma[c] - a[row] - xh * b[row]);
        atomicAdd(dgamma + c, dy[i] * xh);
        atomicAdd(dbeta + c, dy[i]);
    }
}
// END b0

// BEGIN b1
// Backward version 1: one fused pass. A grid of P blocks (about as many as the GPU holds at once)
// visits the rows with a stride. Each row is read once into registers, as in version 2: x_hat is
// recomputed from x and version 4's statistics, g = gamma * dy, the two row means of g and
// g * x_hat are one reduction, and dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)) is written
// from the registers. A thread owns the same columns in every row, so it keeps its running sums of
// dy * x_hat (dgamma) and dy (dbeta) in registers, and at the end the block writes them as one row
// of partial sums: row blockIdx.x of part_dgamma and part_dbeta, each (P, D). No atomics.
template <int N>
__global__ void __launch_bounds__(1024)
b1_backward(const float* x, const float* dy, const float* gamma,
            const float* mean_shift, const float* rstd, float* dx,
            float* part_dgamma, float* part_dbeta, int M, int D) {
    float dg[N], db[N];
#pragma unroll
    for (int k = 0; k < N; ++k) dg[k] = db[k] = 0.f;
    for (int row = blockIdx.x; row < M; row += gridDim.x) {
        const size_t row0 = (size_t)row * D;
        const float K = x[row0], m = mean_shift[row], rs = rstd[row];
        float xh[N], g[N];
        float2 s = make_float2(0.f, 0.f);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            const int c = threadIdx.x + k * blockDim.x;
            xh[k] = g[k] = 0.f;
            if (c < D) {
                const float d = dy[row0 + c];
                xh[k] = ((x[row0 + c] - K) - m) * rs;
                g[k] = gamma[c] * d;
                dg[k] += d * xh[k];
                db[k] += d;
            }
            s.x += g[k];
            s.y += g[k] * xh[k];
        }
        s = block_sum2(s);
        const float a = s.x / D, b = s.y / D;
#pragma unroll
        for (int k = 0; k < N; ++k) {
            const int c = threadIdx.x + k * blockDim.x;
            if (c < D) dx[row0 + c] = rs * (g[k] - a - xh[k] * b);
        }
    }
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const int c = threadIdx.x + k * blockDim.x;
        if (c < D) {
            part_dgamma[(size_t)blockIdx.x * D + c] = dg[k];
            part_dbeta[(size_t)blockIdx.x * D + c] = db[k];
        }
    }
}

// The second stage: out[c] = the sum of the P partial rows, in the order p = 0, 1, ..., P - 1,
// one thread per column. The same additions in the same order on every run: the same bits.
__global__ void b1_sum_partials(const float* part, int P, int D, float* out) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < D) {
        float t = 0.f;
        for (int p = 0; p < P; ++p) t += part[(size_t)p * D + c];
        out[c] = t;
    }
}
// END b1
