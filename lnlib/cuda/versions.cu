// The book's earlier kernel versions, kept to be measured against the final ones in layernorm.cu.
// float32 only. Not used by lnlib.cuda.layer_norm_forward/backward.

// Version 0: the seed's unfused design, three launches that each read x from memory.
// Block reduction: each warp reduces its values with shuffles, lane 0 of each warp writes its partial
// to shared memory, and (the step the seed sketch left out) the first warp adds the partials of all
// warps. BROKEN = true reproduces the sketch: it reads partial[0], the first warp's sum only.
template <bool BROKEN>
__device__ float block_sum_v0(float v) {
    __shared__ float partial[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (!BROKEN && warp == 0) {
        v = lane < nwarps ? partial[lane] : 0.f;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) partial[0] = v;
    }
    __syncthreads();
    return partial[0];
}

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

__global__ void v0_normalize(const float* x, const float* gamma, const float* beta, const float* mean,
                             const float* rstd, float* y, int M, int D) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)M * D) {
        const int row = (int)(i / D), c = (int)(i % D);
        y[i] = (x[i] - mean[row]) * rstd[row] * gamma[c] + beta[c];
    }
}

// Version 0 of the backward: per-row sums, then dx, then dgamma/dbeta with atomicAdd.
// Three launches, x and dy read twice; the atomics make dgamma/dbeta depend on timing.
__global__ void v0_bwd_rowsums(const float* x, const float* dy, const float* gamma, const float* mean,
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

__global__ void v0_bwd_dx(const float* x, const float* dy, const float* gamma, const float* mean, const float* rstd,
                          const float* a, const float* b, float* dx, float* dgamma, float* dbeta, int M, int D) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)M * D) {
        const int row = (int)(i / D), c = (int)(i % D);
        const float xh = (x[i] - mean[row]) * rstd[row];
        dx[i] = rstd[row] * (dy[i] * gamma[c] - a[row] - xh * b[row]);
        atomicAdd(dgamma + c, dy[i] * xh);
        atomicAdd(dbeta + c, dy[i]);
    }
}
