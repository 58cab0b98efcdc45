// LayerNorm forward and backward for CuPy RawModule: the kernels lnlib.cuda runs.
//
// Self-contained (no CUDA headers), so NVRTC compiles it anywhere, also on a machine with no GPU.
// Storage types: float, half_t and bf16_t (raw 16-bit patterns); all arithmetic is float32.
//
// Notation as in the book: a row x of D elements, K = x[0] (the shift), d = x - K,
// mean_shift = mean(d), var = mean((d - mean_shift)^2), rstd = 1/sqrt(var + eps),
// x_hat = (d - mean_shift) * rstd, y = gamma * x_hat + beta.
// Subtracting K (an element of the row) is exact for nearby floats (Sterbenz), so the statistics
// do not lose digits when the row's mean is far from zero; the saved "mean" is mean_shift, which the
// backward combines with the same K to recompute x_hat exactly as the forward had it.
//
// Template parameters of the row kernels (lnlib.cuda.kernels.choose picks them per row length;
// lnlib/cuda/families.py describes every kernel's parameters and arguments, checked against this file):
//   T    storage type          VW  elements per vector load (16 bytes, or 1)
//   N    vectors per thread    TPR threads per row        RPB rows per block
//   C    blocks per row (a thread-block cluster on sm_90; 1 elsewhere)
// Only the parameters the chooser varies are here. Variants of these kernels (fewer barriers, gamma
// kept in registers, persistent grids, ...) live in benchmarks/experiments/, and one moves into this
// file only once it is measured faster.

struct half_t { unsigned short bits; };
struct bf16_t { unsigned short bits; };

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(half_t v) {
    float f;
    asm("{ .reg .b16 h; mov.b16 h, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "h"(v.bits));
    return f;
}
__device__ __forceinline__ float to_float(bf16_t v) { return __uint_as_float(((unsigned)v.bits) << 16); }

template <typename T> __device__ __forceinline__ T from_float(float f);
template <> __device__ __forceinline__ float from_float<float>(float f) { return f; }
template <> __device__ __forceinline__ half_t from_float<half_t>(float f) {
    half_t h;
    asm("{ .reg .b16 r; cvt.rn.f16.f32 r, %1; mov.b16 %0, r; }" : "=h"(h.bits) : "f"(f));
    return h;
}
template <> __device__ __forceinline__ bf16_t from_float<bf16_t>(float f) {
    // round to nearest even, NaN kept quiet (the same result as cvt.rn.bf16.f32 on sm_80+)
    unsigned u = __float_as_uint(f);
    bf16_t b;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        b.bits = (unsigned short)((u >> 16) | 0x40u);
    } else {
        b.bits = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    return b;
}

// VW raw elements, loaded with one 16-byte access when VW * sizeof(T) == 16 and converted at use:
// prefetching gamma, beta or x this way costs 4 registers per 16 bytes instead of VW floats.
template <typename T, int VW>
struct alignas(VW * sizeof(T) == 16 ? 16 : alignof(T)) Raw {
    T e[VW];
};

template <typename T, int VW>
__device__ __forceinline__ Raw<T, VW> load_raw(const T* p) {
    if constexpr (VW * sizeof(T) == 16) {
        return *reinterpret_cast<const Raw<T, VW>*>(p);
    } else {
        Raw<T, VW> r;
#pragma unroll
        for (int j = 0; j < VW; ++j) r.e[j] = p[j];
        return r;
    }
}

// VW elements at p, as floats; one 16-byte load when VW * sizeof(T) == 16.
template <typename T, int VW>
__device__ __forceinline__ void load_vec(const T* p, float (&v)[VW]) {
    if constexpr (VW * sizeof(T) == 16) {
        uint4 raw = *reinterpret_cast<const uint4*>(p);
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int j = 0; j < VW; ++j) v[j] = to_float(e[j]);
    } else {
#pragma unroll
        for (int j = 0; j < VW; ++j) v[j] = to_float(p[j]);
    }
}

template <typename A, typename B> struct same_type { static constexpr bool value = false; };
template <typename A> struct same_type<A, A> { static constexpr bool value = true; };

// Two floats to two 16-bit values in one instruction (sm_80+), lo at the lower address.
template <typename T>
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
    unsigned r;
    if constexpr (same_type<T, bf16_t>::value) {
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    } else {
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    }
    return r;
}

template <typename T, int VW>
__device__ __forceinline__ void store_vec(T* p, const float (&v)[VW]) {
    if constexpr (VW * sizeof(T) == 16) {
        uint4 raw;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        if constexpr (sizeof(T) == 2) {
            // the paired conversion: a third of the instructions of converting one value at a time,
            // which matters because 16-bit LayerNorm is close to instruction-bound on an H100
            unsigned* w = reinterpret_cast<unsigned*>(&raw);
#pragma unroll
            for (int j = 0; j < VW / 2; ++j) w[j] = pack2<T>(v[2 * j], v[2 * j + 1]);
            *reinterpret_cast<uint4*>(p) = raw;
            return;
        }
#endif
        T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
        for (int j = 0; j < VW; ++j) e[j] = from_float<T>(v[j]);
        *reinterpret_cast<uint4*>(p) = raw;
    } else {
#pragma unroll
        for (int j = 0; j < VW; ++j) p[j] = from_float<T>(v[j]);
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions. Every thread of a row group ends with the same, bit-identical sum: the butterfly
// adds the same two partials in every lane (a + b == b + a exactly), and the cross-warp and
// cross-block steps add the partials in a fixed order. So results never depend on timing.

template <int TPR>
__device__ __forceinline__ float2 warp_sum2(float2 v) {
#pragma unroll
    for (int o = (TPR < 32 ? TPR : 32) / 2; o > 0; o >>= 1) {
        v.x += __shfl_xor_sync(0xffffffffu, v.x, o);
        v.y += __shfl_xor_sync(0xffffffffu, v.y, o);
    }
    return v;
}

__device__ __forceinline__ unsigned cluster_rank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

__device__ __forceinline__ float2 cluster_load2(const float2* local, unsigned rank) {
    unsigned addr = (unsigned)__cvta_generic_to_shared(local), remote;
    float2 v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(addr), "r"(rank));
    asm volatile("ld.shared::cluster.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(remote) : "memory");
    return v;
}

// Sum of v over the TPR threads of each row group. red must hold RPB * max(1, TPR/32) float2.
// One slot is reused by every reduction, so each needs a barrier before it writes (the previous
// reduction's readers must be done) and one after (its own writers must be done).
template <int TPR, int RPB>
__device__ __forceinline__ float2 group_sum2(float2 v, float2* red) {
    v = warp_sum2<TPR>(v);
    if constexpr (TPR > 32) {
        constexpr int NW = TPR / 32;
        const int group = threadIdx.x / TPR, wig = (threadIdx.x % TPR) / 32;
        __syncthreads();  // the previous reduction's readers are done with red
        if ((threadIdx.x & 31) == 0) red[group * NW + wig] = v;
        __syncthreads();
        // every warp of the group adds the NW partials with the same butterfly: one shared-memory
        // load per thread, and bit-identical totals in all warps
        const int l = threadIdx.x & 31;
        v = l < NW ? red[group * NW + l] : make_float2(0.f, 0.f);
        v = warp_sum2<32>(v);  // full width: every lane gets the total (the zeros add exactly)
    }
    return v;
}

// The C blocks' values of v (one per block, the same in all its threads), gathered in every block
// in rank order through the blocks' shared memory (xchg, one float2 per block).
template <int C>
__device__ __forceinline__ void cluster_gather2(float2 v, float2 (&all)[C], float2* xchg) {
    if (threadIdx.x == 0) *xchg = v;
    cluster_sync();
#pragma unroll
    for (unsigned r = 0; r < C; ++r) all[r] = cluster_load2(xchg, r);
    // nobody overwrites the slot, and no block exits, before every block has read it
    cluster_sync();
}

// Sum of v over the TPR threads of each row group and, when C > 1, over the C blocks of the cluster.
template <int TPR, int RPB, int C>
__device__ __forceinline__ float2 row_sum2(float2 v, float2* red, float2* xchg) {
    v = group_sum2<TPR, RPB>(v, red);
    if constexpr (C > 1) {
        float2 all[C];
        cluster_gather2<C>(v, all, xchg);
        v = all[0];
#pragma unroll
        for (int r = 1; r < C; ++r) {  // the same order in every block: bit-identical sums
            v.x += all[r].x;
            v.y += all[r].y;
        }
    }
    return v;
}

// This thread's sum of (d - center)^2 over its elements of the row (columns below Dc), in .x.
template <int VW, int N, int TPR>
__device__ __forceinline__ float2 sum_sq_dev(const float (&d)[N][VW], float center, int lane, int Dc, bool active) {
    float2 q = make_float2(0.f, 0.f);
#pragma unroll
    for (int k = 0; k < N; ++k) {
        const int c = (k * TPR + lane) * VW;
        if (active && c < Dc) {
#pragma unroll
            for (int j = 0; j < VW; ++j) {
                const float t = d[k][j] - center;
                q.x += t * t;
            }
        }
    }
    return q;
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define LN_CLUSTER(C) __cluster_dims__(C, 1, 1)
#else
#define LN_CLUSTER(C)
#endif

// ---------------------------------------------------------------------------------------------
// Forward: one row group (TPR threads) per row, the row held in registers; C blocks per row.
// Rows are visited with a grid stride, so any grid size is correct.

template <typename T, int VW, int N, int TPR, int RPB, int C>
__device__ __forceinline__ void ln_fwd_body(const T* __restrict__ x, const T* __restrict__ gamma,
                                            const T* __restrict__ beta, T* __restrict__ y,
                                            float* __restrict__ mean_shift, float* __restrict__ rstd_out,
                                            int M, int D, float eps) {
    __shared__ float2 red[RPB * (TPR > 32 ? TPR / 32 : 1)];
    __shared__ float2 xchg[1];  // this block's value in a cluster exchange
    const int group = threadIdx.x / TPR, lane = threadIdx.x % TPR;
    const int rank = C > 1 ? (int)cluster_rank() : 0;
    const int Dc = D / C, col0 = rank * Dc;
    const int first = (blockIdx.x / C) * RPB, stride = (gridDim.x / C) * RPB;
    const float inv_D = 1.0f / (float)D;
    for (int base = first; base < M; base += stride) {
        const int row = base + group;
        const bool active = row < M;
        const T* xr = x + (size_t)row * D + col0;
        const float K = active ? to_float(x[(size_t)row * D]) : 0.0f;
        float d[N][VW];
        float2 s = make_float2(0.f, 0.f);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            const int c = (k * TPR + lane) * VW;
            if (active && c < Dc) {
                load_vec<T, VW>(xr + c, d[k]);
#pragma unroll
                for (int j = 0; j < VW; ++j) {
                    d[k][j] -= K;
                    s.x += d[k][j];
                }
            } else {
#pragma unroll
                for (int j = 0; j < VW; ++j) d[k][j] = 0.f;
            }
        }
        s = row_sum2<TPR, RPB, C>(s, red, xchg);
        const float m = s.x * inv_D;
        // the second pass, over the registers: the squared deviations from the mean
        const float var = row_sum2<TPR, RPB, C>(sum_sq_dev<VW, N, TPR>(d, m, lane, Dc, active), red, xchg).x * inv_D;
        const float rs = 1.0f / sqrtf(var + eps);
        if (active) {
#pragma unroll
            for (int k = 0; k < N; ++k) {
                const int c = (k * TPR + lane) * VW;
                if (c < Dc) {
                    float g[VW], b[VW], o[VW];
                    if (gamma) load_vec<T, VW>(gamma + col0 + c, g);
                    if (beta) load_vec<T, VW>(beta + col0 + c, b);
#pragma unroll
                    for (int j = 0; j < VW; ++j) {
                        float h = (d[k][j] - m) * rs;
                        if (gamma) h *= g[j];
                        if (beta) h += b[j];
                        o[j] = h;
                    }
                    store_vec<T, VW>(y + (size_t)row * D + col0 + c, o);
                }
            }
            if (lane == 0 && rank == 0) {
                mean_shift[row] = m;
                rstd_out[row] = rs;
            }
        }
    }
}

template <typename T, int VW, int N, int TPR, int RPB>
__global__ void __launch_bounds__(TPR * RPB)
ln_fwd(const T* x, const T* gamma, const T* beta, T* y, float* mean_shift, float* rstd, int M, int D, float eps) {
    ln_fwd_body<T, VW, N, TPR, RPB, 1>(x, gamma, beta, y, mean_shift, rstd, M, D, eps);
}

template <typename T, int VW, int N, int TPR, int C>
__global__ void LN_CLUSTER(C) __launch_bounds__(TPR)
ln_fwd_cluster(const T* x, const T* gamma, const T* beta, T* y, float* mean_shift, float* rstd, int M, int D, float eps) {
    ln_fwd_body<T, VW, N, TPR, 1, C>(x, gamma, beta, y, mean_shift, rstd, M, D, eps);
}

// ---------------------------------------------------------------------------------------------
// Backward, fused: per row, recompute x_hat from x, K = x[0], mean_shift and rstd; g = gamma * dy;
// two row sums; dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)). The grid is persistent: each
// row group keeps running dgamma/dbeta sums for its own columns in shared memory (each thread owns
// its addresses, so no atomics; in shared memory rather than registers, which leaves the registers
// to the row), and at the end the block adds its groups in a fixed order and writes one row of
// partial sums. ln_col_sum then adds the partial rows in a fixed order: dgamma and dbeta are
// bit-identical from run to run.

template <typename T, int VW, int N, int TPR, int RPB, int C>
__device__ __forceinline__ void ln_bwd_body(const T* __restrict__ x, const T* __restrict__ dy,
                                            const T* __restrict__ gamma, const float* __restrict__ mean_shift,
                                            const float* __restrict__ rstd, T* __restrict__ dx,
                                            float* __restrict__ part_dgamma, float* __restrict__ part_dbeta,
                                            int M, int D) {
    __shared__ float2 red[RPB * (TPR > 32 ? TPR / 32 : 1)];
    __shared__ float2 xchg[1];  // this block's value in a cluster exchange
    extern __shared__ float acc[];  // [RPB][2][Dc]: dgamma then dbeta of each row group
    const int group = threadIdx.x / TPR, lane = threadIdx.x % TPR;
    const int rank = C > 1 ? (int)cluster_rank() : 0;
    const int Dc = D / C, col0 = rank * Dc;
    const int first = (blockIdx.x / C) * RPB, stride = (gridDim.x / C) * RPB;
    const bool params = part_dgamma != nullptr;
    const float inv_D = 1.0f / (float)D;
    float* acc_g = acc + (size_t)group * 2 * Dc;
    float* acc_b = acc_g + Dc;
    if (params) {
        for (int i = threadIdx.x; i < RPB * 2 * Dc; i += blockDim.x) acc[i] = 0.f;
        __syncthreads();
    }
    for (int base = first; base < M; base += stride) {
        const int row = base + group;
        const bool active = row < M;
        const size_t off = (size_t)row * D + col0;
        float K = 0.f, m = 0.f, rs = 0.f;
        if (active) {
            K = to_float(x[(size_t)row * D]);
            m = mean_shift[row];
            rs = rstd[row];
        }
        float xh[N][VW], g[N][VW];
#pragma unroll
        for (int k = 0; k < N; ++k) {
            const int c = (k * TPR + lane) * VW;
            if (active && c < Dc) {
                load_vec<T, VW>(x + off + c, xh[k]);
                load_vec<T, VW>(dy + off + c, g[k]);
#pragma unroll
                for (int j = 0; j < VW; ++j) xh[k][j] = ((xh[k][j] - K) - m) * rs;
            } else {
#pragma unroll
                for (int j = 0; j < VW; ++j) xh[k][j] = g[k][j] = 0.f;
            }
        }
        float2 s = make_float2(0.f, 0.f);
#pragma unroll
        for (int k = 0; k < N; ++k) {
            const int c = (k * TPR + lane) * VW;
            if (active && c < Dc) {
                if (params) {
                    if constexpr (VW % 4 == 0) {
#pragma unroll
                        for (int j = 0; j < VW; j += 4) {
                            float4 ag = *reinterpret_cast<float4*>(acc_g + c + j);
                            float4 ab = *reinterpret_cast<float4*>(acc_b + c + j);
                            ag.x += g[k][j] * xh[k][j];         ab.x += g[k][j];
                            ag.y += g[k][j + 1] * xh[k][j + 1]; ab.y += g[k][j + 1];
                            ag.z += g[k][j + 2] * xh[k][j + 2]; ab.z += g[k][j + 2];
                            ag.w += g[k][j + 3] * xh[k][j + 3]; ab.w += g[k][j + 3];
                            *reinterpret_cast<float4*>(acc_g + c + j) = ag;
                            *reinterpret_cast<float4*>(acc_b + c + j) = ab;
                        }
                    } else {
#pragma unroll
                        for (int j = 0; j < VW; ++j) {
                            acc_g[c + j] += g[k][j] * xh[k][j];
                            acc_b[c + j] += g[k][j];
                        }
                    }
                }
                Raw<T, VW> graw;
                if (gamma) graw = load_raw<T, VW>(gamma + col0 + c);
#pragma unroll
                for (int j = 0; j < VW; ++j) {
                    if (gamma) g[k][j] *= to_float(graw.e[j]);
                    s.x += g[k][j];
                    s.y += g[k][j] * xh[k][j];
                }
            }
        }
        s = row_sum2<TPR, RPB, C>(s, red, xchg);
        const float a = s.x * inv_D, b = s.y * inv_D;
        if (active) {
#pragma unroll
            for (int k = 0; k < N; ++k) {
                const int c = (k * TPR + lane) * VW;
                if (c < Dc) {
                    float o[VW];
#pragma unroll
                    for (int j = 0; j < VW; ++j) o[j] = rs * (g[k][j] - a - xh[k][j] * b);
                    store_vec<T, VW>(dx + off + c, o);
                }
            }
        }
    }
    if (params) {
        __syncthreads();
        const size_t prow = (size_t)(blockIdx.x / C) * D + col0;
        for (int c = threadIdx.x; c < Dc; c += blockDim.x) {
            float sg = 0.f, sb = 0.f;
            for (int r = 0; r < RPB; ++r) {  // fixed order
                sg += acc[(size_t)r * 2 * Dc + c];
                sb += acc[(size_t)r * 2 * Dc + Dc + c];
            }
            part_dgamma[prow + c] = sg;
            part_dbeta[prow + c] = sb;
        }
    }
}

template <typename T, int VW, int N, int TPR, int RPB>
__global__ void __launch_bounds__(TPR * RPB)
ln_bwd(const T* x, const T* dy, const T* gamma, const float* mean_shift, const float* rstd, T* dx,
       float* part_dgamma, float* part_dbeta, int M, int D) {
    ln_bwd_body<T, VW, N, TPR, RPB, 1>(x, dy, gamma, mean_shift, rstd, dx, part_dgamma, part_dbeta, M, D);
}

template <typename T, int VW, int N, int TPR, int C>
__global__ void LN_CLUSTER(C) __launch_bounds__(TPR)
ln_bwd_cluster(const T* x, const T* dy, const T* gamma, const float* mean_shift, const float* rstd, T* dx,
               float* part_dgamma, float* part_dbeta, int M, int D) {
    ln_bwd_body<T, VW, N, TPR, 1, C>(x, dy, gamma, mean_shift, rstd, dx, part_dgamma, part_dbeta, M, D);
}

// Second stage: out[c] = sum over P partial rows of part[p][c], in a fixed order.
// Block (32, 32): 32 columns; the 32 threads of a column each add every 32nd row, then one adds those.
template <typename T>
__global__ void __launch_bounds__(1024)
ln_col_sum(const float* __restrict__ part, int P, int D, T* __restrict__ out) {
    __shared__ float s[32][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float t = 0.f;
    if (c < D)
        for (int p = threadIdx.y; p < P; p += 32) t += part[(size_t)p * D + c];
    s[threadIdx.y][threadIdx.x] = t;
    __syncthreads();
    if (threadIdx.y == 0 && c < D) {
        float total = 0.f;
        for (int i = 0; i < 32; ++i) total += s[i][threadIdx.x];
        out[c] = from_float<T>(total);
    }
}

// ---------------------------------------------------------------------------------------------
// Any D, no register limit: one block per row, the row read from memory on every pass. The fallback
// for rows too long for the register kernels, and the book's "one block per row" version.

template <int NT>
__device__ __forceinline__ float2 block_sum2(float2 v, float2* red) {
    v = warp_sum2<32>(v);
    constexpr int NW = NT / 32;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    v = red[0];
    for (int w = 1; w < NW; ++w) {
        v.x += red[w].x;
        v.y += red[w].y;
    }
    return v;
}

template <typename T, int NT>
__global__ void __launch_bounds__(NT)
ln_fwd_looped(const T* x, const T* gamma, const T* beta, T* y, float* mean_shift, float* rstd, int M, int D, float eps) {
    __shared__ float2 red[NT / 32];
    for (int row = blockIdx.x; row < M; row += gridDim.x) {
        const T* xr = x + (size_t)row * D;
        const float K = to_float(xr[0]);
        float2 s = make_float2(0.f, 0.f);
        for (int c = threadIdx.x; c < D; c += NT) s.x += to_float(xr[c]) - K;
        const float m = block_sum2<NT>(s, red).x / (float)D;
        float2 q = make_float2(0.f, 0.f);
        for (int c = threadIdx.x; c < D; c += NT) {
            const float t = (to_float(xr[c]) - K) - m;
            q.x += t * t;
        }
        const float rs = 1.0f / sqrtf(block_sum2<NT>(q, red).x / (float)D + eps);
        for (int c = threadIdx.x; c < D; c += NT) {
            float h = ((to_float(xr[c]) - K) - m) * rs;
            if (gamma) h *= to_float(gamma[c]);
            if (beta) h += to_float(beta[c]);
            y[(size_t)row * D + c] = from_float<T>(h);
        }
        if (threadIdx.x == 0) {
            mean_shift[row] = m;
            rstd[row] = rs;
        }
    }
}

template <typename T, int NT>
__global__ void __launch_bounds__(NT)
ln_bwd_looped(const T* x, const T* dy, const T* gamma, const float* mean_shift, const float* rstd, T* dx, int M, int D) {
    __shared__ float2 red[NT / 32];
    for (int row = blockIdx.x; row < M; row += gridDim.x) {
        const size_t off = (size_t)row * D;
        const float K = to_float(x[off]), m = mean_shift[row], rs = rstd[row];
        float2 s = make_float2(0.f, 0.f);
        for (int c = threadIdx.x; c < D; c += NT) {
            const float xh = ((to_float(x[off + c]) - K) - m) * rs;
            const float g = to_float(dy[off + c]) * (gamma ? to_float(gamma[c]) : 1.f);
            s.x += g;
            s.y += g * xh;
        }
        s = block_sum2<NT>(s, red);
        const float a = s.x / (float)D, b = s.y / (float)D;
        for (int c = threadIdx.x; c < D; c += NT) {
            const float xh = ((to_float(x[off + c]) - K) - m) * rs;
            const float g = to_float(dy[off + c]) * (gamma ? to_float(gamma[c]) : 1.f);
            dx[off + c] = from_float<T>(rs * (g - a - xh * b));
        }
    }
}

// dgamma/dbeta partials for the looped path: block (32, 32) owns 32 columns and a slice of rows;
// partial row blockIdx.y; each thread adds its rows in order, then the block adds its 32 threads in order.
template <typename T>
__global__ void __launch_bounds__(1024)
ln_bwd_params_looped(const T* x, const T* dy, const float* mean_shift, const float* rstd,
                     float* part_dgamma, float* part_dbeta, int M, int D) {
    __shared__ float sg[32][33], sb[32][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float tg = 0.f, tb = 0.f;
    if (c < D) {
        for (int row = blockIdx.y * 32 + threadIdx.y; row < M; row += gridDim.y * 32) {
            const size_t off = (size_t)row * D;
            const float xh = ((to_float(x[off + c]) - to_float(x[off])) - mean_shift[row]) * rstd[row];
            const float g = to_float(dy[off + c]);
            tg += g * xh;
            tb += g;
        }
    }
    sg[threadIdx.y][threadIdx.x] = tg;
    sb[threadIdx.y][threadIdx.x] = tb;
    __syncthreads();
    if (threadIdx.y == 0 && c < D) {
        float a = 0.f, b = 0.f;
        for (int i = 0; i < 32; ++i) {
            a += sg[i][threadIdx.x];
            b += sb[i][threadIdx.x];
        }
        part_dgamma[(size_t)blockIdx.y * D + c] = a;
        part_dbeta[(size_t)blockIdx.y * D + c] = b;
    }
}
