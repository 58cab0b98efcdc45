// Experiments: variants of the row and cluster kernels of lnlib/cuda/layernorm.cu, with every
// parameter that has been tried. Measured by benchmarks/experiments/tune_variants.py against the
// production kernels; a variant moves into layernorm.cu only once it is measured faster (README.md).
//
// With every variant parameter at its default, each kernel here compiles to the same PTX as the
// production kernel of the same layout (tests/test_experiments.py compiles both and compares them),
// so a measured difference is the variant's.
// The helpers (storage types, vector loads, reductions) are copies of layernorm.cu's, so that this
// file compiles alone, as layernorm.cu does (no CUDA headers, NVRTC on any machine).
//
// Notation and the template parameters T, VW, N, TPR, RPB, C: as in layernorm.cu. The variant
// parameters, all defaulting to what the production kernels do:
//   ONEPASS   (ln_fwd_variant) statistics by E[x^2] - E[x]^2 in one reduction, without the shift:
//             kept to measure what the shifted two-pass statistics cost (chapter 10's recorded
//             "template: one-pass" row was this kernel, then in layernorm.cu)
//   BUFS      reduction slots: 2 alternates them, one barrier per reduction instead of two
//   MERGE     (cluster forward) each block's (mean, sum of squares) merged once per row (Chan et al.)
//   KEEP      gamma (and beta) loaded once per block and kept in registers
//   ACC_REGS  (backward) the running dgamma/dbeta sums in registers instead of shared memory

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

// Shared-memory slots of the reductions. With BUFS = 1 one slot is reused, so every reduction needs a
// barrier before it writes (the previous reduction's readers must be done) and, across a cluster, one
// after it reads (its slot must not be overwritten, and no block may exit, while others still read it).
// With BUFS = 2 consecutive reductions alternate between two slots and the first of those barriers
// goes: reduction k + 2 writes slot k % 2 only after its writer has passed reduction k + 1's barrier,
// which every reader of reduction k reaches only after reading. One barrier per reduction instead of
// two; a cluster kernel then needs one last cluster barrier before its blocks exit.
struct Phases {
    int red = 0, xchg = 0;
};

// Sum of v over the TPR threads of each row group.
// red must hold BUFS * RPB * max(1, TPR/32) float2.
template <int TPR, int RPB, int BUFS>
__device__ __forceinline__ float2 group_sum2(float2 v, float2* red, Phases& ph) {
    v = warp_sum2<TPR>(v);
    if constexpr (TPR > 32) {
        constexpr int NW = TPR / 32;
        float2* slot = red + (BUFS > 1 ? ph.red * RPB * NW : 0);
        const int group = threadIdx.x / TPR, wig = (threadIdx.x % TPR) / 32;
        if constexpr (BUFS == 1) __syncthreads();  // the previous reduction's readers are done with red
        if ((threadIdx.x & 31) == 0) slot[group * NW + wig] = v;
        __syncthreads();
        // every warp of the group adds the NW partials with the same butterfly: one shared-memory
        // load per thread, and bit-identical totals in all warps
        const int l = threadIdx.x & 31;
        v = l < NW ? slot[group * NW + l] : make_float2(0.f, 0.f);
        v = warp_sum2<32>(v);  // full width: every lane gets the total (the zeros add exactly)
        if constexpr (BUFS > 1) ph.red ^= 1;
    }
    return v;
}

// The C blocks' values of v (one per block, the same in all its threads), gathered in every block
// in rank order. xchg must hold BUFS float2.
template <int C, int BUFS>
__device__ __forceinline__ void cluster_gather2(float2 v, float2 (&all)[C], float2* xchg, Phases& ph) {
    float2* slot = xchg + (BUFS > 1 ? ph.xchg : 0);
    if (threadIdx.x == 0) *slot = v;
    cluster_sync();
#pragma unroll
    for (unsigned r = 0; r < C; ++r) all[r] = cluster_load2(slot, r);
    if constexpr (BUFS == 1) {
        cluster_sync();  // nobody overwrites the slot before every block has read it
    } else {
        ph.xchg ^= 1;
    }
}

// Sum of v over the TPR threads of each row group and, when C > 1, over the C blocks of the cluster.
template <int TPR, int RPB, int C, int BUFS>
__device__ __forceinline__ float2 row_sum2(float2 v, float2* red, float2* xchg, Phases& ph) {
    v = group_sum2<TPR, RPB, BUFS>(v, red, ph);
    if constexpr (C > 1) {
        float2 all[C];
        cluster_gather2<C, BUFS>(v, all, xchg, ph);
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
// Rows are visited with a grid stride, so any grid size is correct. ONEPASS computes
// E[x^2] - E[x]^2 without the shift: kept only to measure what the shift and the second pass cost.
// MERGE (C > 1): each block takes the two-pass statistics of its own part of the row, and the cluster
// combines the C (mean, sum of squares) pairs once (Chan et al.): one cluster exchange per row, not two.
// KEEP: gamma and beta for the thread's columns are loaded once, before the row loop, and kept (raw)
// in registers: with a persistent grid a block then reads them once instead of once a row.

template <typename T, int VW, int N, int TPR, int RPB, int C, bool ONEPASS, int BUFS, bool MERGE, bool KEEP>
__device__ __forceinline__ void ln_fwd_body(const T* __restrict__ x, const T* __restrict__ gamma,
                                            const T* __restrict__ beta, T* __restrict__ y,
                                            float* __restrict__ mean_shift, float* __restrict__ rstd_out,
                                            int M, int D, float eps) {
    static_assert(!(MERGE && (C == 1 || ONEPASS)), "MERGE combines the blocks of a cluster");
    __shared__ float2 red[BUFS * RPB * (TPR > 32 ? TPR / 32 : 1)];
    __shared__ float2 xchg[BUFS];
    Phases ph;
    const int group = threadIdx.x / TPR, lane = threadIdx.x % TPR;
    const int rank = C > 1 ? (int)cluster_rank() : 0;
    const int Dc = D / C, col0 = rank * Dc;
    const int first = (blockIdx.x / C) * RPB, stride = (gridDim.x / C) * RPB;
    const float inv_D = 1.0f / (float)D;
    Raw<T, VW> gk[KEEP ? N : 1], bk[KEEP ? N : 1];
    if constexpr (KEEP) {
#pragma unroll
        for (int k = 0; k < N; ++k) {
            const int c = (k * TPR + lane) * VW;
            if (c < Dc) {
                if (gamma) gk[k] = load_raw<T, VW>(gamma + col0 + c);
                if (beta) bk[k] = load_raw<T, VW>(beta + col0 + c);
            }
        }
    }
    for (int base = first; base < M; base += stride) {
        const int row = base + group;
        const bool active = row < M;
        const T* xr = x + (size_t)row * D + col0;
        const float K = (active && !ONEPASS) ? to_float(x[(size_t)row * D]) : 0.0f;
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
                    if (ONEPASS) s.y += d[k][j] * d[k][j];
                }
            } else {
#pragma unroll
                for (int j = 0; j < VW; ++j) d[k][j] = 0.f;
            }
        }
        float m, var;
        if constexpr (MERGE) {
            const float inv_Dc = 1.0f / (float)Dc;
            const float mb = group_sum2<TPR, RPB, BUFS>(s, red, ph).x * inv_Dc;
            const float qb = group_sum2<TPR, RPB, BUFS>(sum_sq_dev<VW, N, TPR>(d, mb, lane, Dc, active), red, ph).x;
            float2 all[C];
            cluster_gather2<C, BUFS>(make_float2(mb, qb), all, xchg, ph);
            m = 0.f;
#pragma unroll
            for (int r = 0; r < C; ++r) m += all[r].x;
            m *= 1.0f / (float)C;
            float m2 = 0.f;
#pragma unroll
            for (int r = 0; r < C; ++r) {  // every block's sum of squares about the row's mean
                const float t = all[r].x - m;
                m2 += all[r].y + (float)Dc * t * t;
            }
            var = m2 * inv_D;
        } else {
            s = row_sum2<TPR, RPB, C, BUFS>(s, red, xchg, ph);
            m = s.x * inv_D;
            if (ONEPASS) {
                var = s.y * inv_D - m * m;
            } else {
                var = row_sum2<TPR, RPB, C, BUFS>(sum_sq_dev<VW, N, TPR>(d, m, lane, Dc, active), red, xchg, ph).x * inv_D;
            }
        }
        const float rs = 1.0f / sqrtf(var + eps);
        if (active) {
#pragma unroll
            for (int k = 0; k < N; ++k) {
                const int c = (k * TPR + lane) * VW;
                if (c < Dc) {
                    float g[VW], b[VW], o[VW];
                    if constexpr (KEEP) {
#pragma unroll
                        for (int j = 0; j < VW; ++j) {
                            if (gamma) g[j] = to_float(gk[k].e[j]);
                            if (beta) b[j] = to_float(bk[k].e[j]);
                        }
                    } else {
                        if (gamma) load_vec<T, VW>(gamma + col0 + c, g);
                        if (beta) load_vec<T, VW>(beta + col0 + c, b);
                    }
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
    if constexpr (C > 1 && BUFS > 1) cluster_sync();  // our xchg slots may still be read: stay
}

template <typename T, int VW, int N, int TPR, int RPB, bool ONEPASS = false, int BUFS = 1, bool KEEP = false>
__global__ void __launch_bounds__(TPR * RPB)
ln_fwd_variant(const T* x, const T* gamma, const T* beta, T* y, float* mean_shift, float* rstd, int M, int D, float eps) {
    ln_fwd_body<T, VW, N, TPR, RPB, 1, ONEPASS, BUFS, false, KEEP>(x, gamma, beta, y, mean_shift, rstd, M, D, eps);
}

template <typename T, int VW, int N, int TPR, int C, int BUFS = 1, bool MERGE = false, bool KEEP = false>
__global__ void LN_CLUSTER(C) __launch_bounds__(TPR)
ln_fwd_cluster_variant(const T* x, const T* gamma, const T* beta, T* y, float* mean_shift, float* rstd, int M, int D, float eps) {
    ln_fwd_body<T, VW, N, TPR, 1, C, false, BUFS, MERGE, KEEP>(x, gamma, beta, y, mean_shift, rstd, M, D, eps);
}

// ---------------------------------------------------------------------------------------------
// Backward, fused: per row, recompute x_hat from x, K = x[0], mean_shift and rstd; g = gamma * dy;
// two row sums; dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)). The grid is persistent: each
// row group keeps running dgamma/dbeta sums for its own columns in shared memory (each thread owns
// its addresses, so no atomics), and at the end the block adds its groups in a fixed order and
// writes one row of partial sums. ln_col_sum then adds the partial rows in a fixed order: dgamma and
// dbeta are bit-identical from run to run.

template <typename T, int VW, int N, int TPR, int RPB, int C, bool ACC_REGS, int BUFS, bool KEEP>
__device__ __forceinline__ void ln_bwd_body(const T* __restrict__ x, const T* __restrict__ dy,
                                            const T* __restrict__ gamma, const float* __restrict__ mean_shift,
                                            const float* __restrict__ rstd, T* __restrict__ dx,
                                            float* __restrict__ part_dgamma, float* __restrict__ part_dbeta,
                                            int M, int D) {
    __shared__ float2 red[BUFS * RPB * (TPR > 32 ? TPR / 32 : 1)];
    __shared__ float2 xchg[BUFS];
    Phases ph;
    extern __shared__ float acc[];  // [RPB][2][Dc]: dgamma then dbeta of each row group
    const int group = threadIdx.x / TPR, lane = threadIdx.x % TPR;
    const int rank = C > 1 ? (int)cluster_rank() : 0;
    const int Dc = D / C, col0 = rank * Dc;
    const int first = (blockIdx.x / C) * RPB, stride = (gridDim.x / C) * RPB;
    const bool params = part_dgamma != nullptr;
    const float inv_D = 1.0f / (float)D;
    float* acc_g = acc + (size_t)group * 2 * Dc;
    float* acc_b = acc_g + Dc;
    float rg[ACC_REGS ? N : 1][VW], rb[ACC_REGS ? N : 1][VW];  // running sums when they fit in registers
    Raw<T, VW> gk[KEEP ? N : 1];  // KEEP: gamma for the thread's columns, loaded once (the grid is persistent)
    if constexpr (KEEP) {
#pragma unroll
        for (int k = 0; k < N; ++k) {
            const int c = (k * TPR + lane) * VW;
            if (gamma && c < Dc) gk[k] = load_raw<T, VW>(gamma + col0 + c);
        }
    }
    if (ACC_REGS) {
#pragma unroll
        for (int k = 0; k < N; ++k)
#pragma unroll
            for (int j = 0; j < VW; ++j) rg[k][j] = rb[k][j] = 0.f;
    } else if (params) {
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
                    if (ACC_REGS) {
#pragma unroll
                        for (int j = 0; j < VW; ++j) {
                            rg[ACC_REGS ? k : 0][j] += g[k][j] * xh[k][j];
                            rb[ACC_REGS ? k : 0][j] += g[k][j];
                        }
                    } else if constexpr (VW % 4 == 0) {
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
                if constexpr (KEEP) {
                    graw = gk[k];
                } else {
                    if (gamma) graw = load_raw<T, VW>(gamma + col0 + c);
                }
#pragma unroll
                for (int j = 0; j < VW; ++j) {
                    if (gamma) g[k][j] *= to_float(graw.e[j]);
                    s.x += g[k][j];
                    s.y += g[k][j] * xh[k][j];
                }
            }
        }
        s = row_sum2<TPR, RPB, C, BUFS>(s, red, xchg, ph);
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
    if constexpr (C > 1 && BUFS > 1) cluster_sync();  // our xchg slots may still be read: stay
    if (params) {
        if (ACC_REGS) {  // hand the register sums to shared memory for the fixed-order block sum
            __syncthreads();
#pragma unroll
            for (int k = 0; k < N; ++k) {
                const int c = (k * TPR + lane) * VW;
                if (c < Dc) {
#pragma unroll
                    for (int j = 0; j < VW; ++j) {
                        acc_g[c + j] = rg[ACC_REGS ? k : 0][j];
                        acc_b[c + j] = rb[ACC_REGS ? k : 0][j];
                    }
                }
            }
        }
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

template <typename T, int VW, int N, int TPR, int RPB, bool ACC_REGS = false, int BUFS = 1, bool KEEP = false>
__global__ void __launch_bounds__(TPR * RPB)
ln_bwd_variant(const T* x, const T* dy, const T* gamma, const float* mean_shift, const float* rstd, T* dx,
       float* part_dgamma, float* part_dbeta, int M, int D) {
    ln_bwd_body<T, VW, N, TPR, RPB, 1, ACC_REGS, BUFS, KEEP>(x, dy, gamma, mean_shift, rstd, dx, part_dgamma, part_dbeta, M, D);
}

template <typename T, int VW, int N, int TPR, int C, bool ACC_REGS = false, int BUFS = 1, bool KEEP = false>
__global__ void LN_CLUSTER(C) __launch_bounds__(TPR)
ln_bwd_cluster_variant(const T* x, const T* dy, const T* gamma, const float* mean_shift, const float* rstd, T* dx,
               float* part_dgamma, float* part_dbeta, int M, int D) {
    ln_bwd_body<T, VW, N, TPR, 1, C, ACC_REGS, BUFS, KEEP>(x, dy, gamma, mean_shift, rstd, dx, part_dgamma, part_dbeta, M, D);
}

