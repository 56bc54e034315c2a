// WKV-7 forward and backward on the GPU, with an initial state in and a final state out.
//
//   S_t = S_{t-1} diag(d_t) + (S_{t-1} a_t) b_t^T + v_t k_t^T,   d_t = exp(w_t),   y_t = S_t r_t
//
// Tensors r, w, k, v, a, b, y and their gradients are [B, T, H, N] (contiguous, element type F);
// states are [B, H, N, N] float32, indexed S[value_i, key_j]. One block per (head, batch), one thread
// per value row i (N = 64 threads). The state lives in float32 registers.
//
// The forward pass saves sa_t = S_{t-1} a_t per token and a snapshot of the state before every
// 16th token (unless given null pointers: inference needs neither). The backward pass walks t = T-1 .. 0 and recovers S_{t-1} from S_t by undoing the
// update (subtract the rank-1 terms, divide by the decay), restarting from a snapshot at every
// chunk boundary so that rounding errors of the inversion never build up over more than 16 steps.
// Any T works: the snapshot buffer holds ceil(T / 16) states.
//
// This file includes no torch header: the host launchers take raw pointers and a stream, so it
// compiles with plain nvcc for any architecture (tests/test_cuda.py does so without a GPU).

#include <cuda_runtime.h>
#include <cuda_bf16.h>

namespace {

constexpr int kHeadSize = 64;  // N: RWKV-7 heads are 64 wide
constexpr int kChunk = 16;     // tokens between state snapshots

__device__ __forceinline__ float load_f32(const float* p) { return *p; }
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store_f32(float* p, float x) { *p = x; }
__device__ __forceinline__ void store_f32(__nv_bfloat16* p, float x) { *p = __float2bfloat16(x); }

template <typename F>
__global__ void __launch_bounds__(kHeadSize)
wkv7_forward_kernel(int T, int H,
                    const F* __restrict__ r, const F* __restrict__ w, const F* __restrict__ k,
                    const F* __restrict__ v, const F* __restrict__ a, const F* __restrict__ b,
                    const float* __restrict__ state_in, F* __restrict__ y,
                    float* __restrict__ state_out, float* __restrict__ sa_out,
                    float* __restrict__ snapshots) {
    constexpr int N = kHeadSize;
    const int h = blockIdx.x, batch = blockIdx.y, i = threadIdx.x;
    const int chunks = (T + kChunk - 1) / kChunk;
    const long long head = (long long)batch * H + h;      // index of this (batch, head) state

    __shared__ float r_s[N], d_s[N], k_s[N], a_s[N], b_s[N];

    float s[N];  // row i of the state: S[i, :]
    const float* s0 = state_in + (head * N + i) * N;
#pragma unroll
    for (int j = 0; j < N; ++j) s[j] = s0[j];

    for (int t = 0; t < T; ++t) {
        const long long at = (((long long)batch * T + t) * H + h) * N + i;  // element (batch, t, h, i)
        if (snapshots != nullptr && t % kChunk == 0) {
            float* snap = snapshots + ((head * chunks + t / kChunk) * N + i) * N;
#pragma unroll
            for (int j = 0; j < N; ++j) snap[j] = s[j];
        }
        __syncthreads();  // everyone is done reading the previous token's vectors
        r_s[i] = load_f32(r + at);
        d_s[i] = expf(load_f32(w + at));
        k_s[i] = load_f32(k + at);
        a_s[i] = load_f32(a + at);
        b_s[i] = load_f32(b + at);
        __syncthreads();

        float sa = 0.f;
#pragma unroll
        for (int j = 0; j < N; ++j) sa += s[j] * a_s[j];
        if (sa_out != nullptr) sa_out[at] = sa;

        const float vi = load_f32(v + at);
        float yi = 0.f;
#pragma unroll
        for (int j = 0; j < N; ++j) {
            s[j] = s[j] * d_s[j] + sa * b_s[j] + vi * k_s[j];
            yi += s[j] * r_s[j];
        }
        store_f32(y + at, yi);
    }

    float* s_end = state_out + (head * N + i) * N;
#pragma unroll
    for (int j = 0; j < N; ++j) s_end[j] = s[j];
}

// Backward. Thread i keeps three length-N float32 vectors:
//   sT[m]    = S[m, i]    column i of the state (key i), stepped back in time by inversion;
//   ds_row[j] = dS[i, j]  row i of the state's gradient (what value i receives);
//   ds_col[m] = dS[m, i]  column i of the same gradient (what key i receives).
// Holding the gradient both ways makes every reduction thread-local: per-value sums (dv, dsa)
// run along a row, per-key sums (dr, dk, db, da, dw) along a column.
template <typename F>
__global__ void __launch_bounds__(kHeadSize)
wkv7_backward_kernel(int T, int H,
                     const F* __restrict__ r, const F* __restrict__ w, const F* __restrict__ k,
                     const F* __restrict__ v, const F* __restrict__ a, const F* __restrict__ b,
                     const float* __restrict__ sa_in, const float* __restrict__ snapshots,
                     const float* __restrict__ state_out, const F* __restrict__ dy,
                     const float* __restrict__ dstate_out,
                     F* __restrict__ dr, F* __restrict__ dw, F* __restrict__ dk,
                     F* __restrict__ dv, F* __restrict__ da, F* __restrict__ db,
                     float* __restrict__ dstate_in) {
    constexpr int N = kHeadSize;
    const int h = blockIdx.x, batch = blockIdx.y, i = threadIdx.x;
    const int chunks = (T + kChunk - 1) / kChunk;
    const long long head = (long long)batch * H + h;

    __shared__ float r_s[N], d_s[N], k_s[N], v_s[N], a_s[N], b_s[N], sa_s[N], dy_s[N], dsa_s[N];

    float sT[N], ds_row[N], ds_col[N];
    const float* s_end = state_out + head * N * N;
    const float* ds_end = dstate_out + head * N * N;
#pragma unroll
    for (int m = 0; m < N; ++m) {
        sT[m] = s_end[m * N + i];
        ds_col[m] = ds_end[m * N + i];
        ds_row[m] = ds_end[i * N + m];
    }

    for (int t = T - 1; t >= 0; --t) {
        const long long at = (((long long)batch * T + t) * H + h) * N + i;
        __syncthreads();
        const float wi = load_f32(w + at);
        const float di = expf(wi);
        const float ri = load_f32(r + at), ki = load_f32(k + at);
        const float ai = load_f32(a + at), bi = load_f32(b + at);
        const float dyi = load_f32(dy + at);
        r_s[i] = ri; d_s[i] = di; k_s[i] = ki; a_s[i] = ai; b_s[i] = bi;
        v_s[i] = load_f32(v + at);
        sa_s[i] = sa_in[at];
        dy_s[i] = dyi;
        __syncthreads();

        // y_t = S_t r_t: dr_t[i] = sum_m dy[m] S_t[m, i]; then dS_t gains dy r^T.
        float dri = 0.f;
#pragma unroll
        for (int m = 0; m < N; ++m) dri += dy_s[m] * sT[m];
#pragma unroll
        for (int j = 0; j < N; ++j) ds_row[j] += dyi * r_s[j];
#pragma unroll
        for (int m = 0; m < N; ++m) ds_col[m] += dy_s[m] * ri;

        // S_{t-1}: from the snapshot at a chunk start, otherwise by undoing this token's update.
        if (t % kChunk == 0) {
            const float* snap = snapshots + (head * chunks + t / kChunk) * N * N;
#pragma unroll
            for (int m = 0; m < N; ++m) sT[m] = snap[m * N + i];
        } else {
            const float inv_di = expf(-wi);
#pragma unroll
            for (int m = 0; m < N; ++m) sT[m] = (sT[m] - sa_s[m] * bi - v_s[m] * ki) * inv_di;
        }

        // Per value i (row sums): dv = dS k, dsa = dS b.
        float dvi = 0.f, dsai = 0.f;
#pragma unroll
        for (int j = 0; j < N; ++j) {
            dvi += ds_row[j] * k_s[j];
            dsai += ds_row[j] * b_s[j];
        }
        dsa_s[i] = dsai;

        // Per key i (column sums): dk = dS^T v, db = dS^T sa, dd = sum_m dS[m,i] S_{t-1}[m,i].
        float dki = 0.f, dbi = 0.f, ddi = 0.f;
#pragma unroll
        for (int m = 0; m < N; ++m) {
            dki += ds_col[m] * v_s[m];
            dbi += ds_col[m] * sa_s[m];
            ddi += ds_col[m] * sT[m];
        }
        __syncthreads();  // dsa_s complete

        // sa = S_{t-1} a: da[i] = sum_m dsa[m] S_{t-1}[m, i].
        float dai = 0.f;
#pragma unroll
        for (int m = 0; m < N; ++m) dai += dsa_s[m] * sT[m];

        // dS_{t-1} = dS_t diag(d) + dsa a^T, kept both ways.
#pragma unroll
        for (int j = 0; j < N; ++j) ds_row[j] = ds_row[j] * d_s[j] + dsai * a_s[j];
#pragma unroll
        for (int m = 0; m < N; ++m) ds_col[m] = ds_col[m] * di + dsa_s[m] * ai;

        store_f32(dr + at, dri);
        store_f32(dw + at, ddi * di);  // d = exp(w): dL/dw = dL/dd * d
        store_f32(dk + at, dki);
        store_f32(dv + at, dvi);
        store_f32(da + at, dai);
        store_f32(db + at, dbi);
    }

    float* ds_start = dstate_in + (head * N + i) * N;
#pragma unroll
    for (int j = 0; j < N; ++j) ds_start[j] = ds_row[j];
}

template <typename F>
int launch_forward(int B, int T, int H, const void* r, const void* w, const void* k,
                   const void* v, const void* a, const void* b, const float* state_in, void* y,
                   float* state_out, float* sa, float* snapshots, cudaStream_t stream) {
    if (B <= 0 || H <= 0) return 0;  // T == 0 still runs: state_out = state_in
    wkv7_forward_kernel<F><<<dim3(H, B), kHeadSize, 0, stream>>>(
        T, H, static_cast<const F*>(r), static_cast<const F*>(w), static_cast<const F*>(k),
        static_cast<const F*>(v), static_cast<const F*>(a), static_cast<const F*>(b), state_in,
        static_cast<F*>(y), state_out, sa, snapshots);
    return static_cast<int>(cudaGetLastError());
}

template <typename F>
int launch_backward(int B, int T, int H, const void* r, const void* w, const void* k,
                    const void* v, const void* a, const void* b, const float* sa,
                    const float* snapshots, const float* state_out, const void* dy,
                    const float* dstate_out, void* dr, void* dw, void* dk, void* dv, void* da,
                    void* db, float* dstate_in, cudaStream_t stream) {
    if (B <= 0 || H <= 0) return 0;  // T == 0 still runs: dstate_in = dstate_out
    wkv7_backward_kernel<F><<<dim3(H, B), kHeadSize, 0, stream>>>(
        T, H, static_cast<const F*>(r), static_cast<const F*>(w), static_cast<const F*>(k),
        static_cast<const F*>(v), static_cast<const F*>(a), static_cast<const F*>(b), sa,
        snapshots, state_out, static_cast<const F*>(dy), dstate_out, static_cast<F*>(dr),
        static_cast<F*>(dw), static_cast<F*>(dk), static_cast<F*>(dv), static_cast<F*>(da),
        static_cast<F*>(db), dstate_in);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace

// ---- C interface used by wkv7_bind.cpp. `is_bf16` picks the element type of the [B,T,H,N]
// tensors (bfloat16 or float32); the return value is a cudaError_t (0 = success).
extern "C" {

int wkv7_head_size() { return kHeadSize; }
int wkv7_chunk_len() { return kChunk; }

const char* wkv7_error_string(int code) {
    return cudaGetErrorString(static_cast<cudaError_t>(code));
}

int wkv7_forward(int is_bf16, int B, int T, int H, const void* r, const void* w, const void* k,
                 const void* v, const void* a, const void* b, const float* state_in, void* y,
                 float* state_out, float* sa, float* snapshots, void* stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    return is_bf16 ? launch_forward<__nv_bfloat16>(B, T, H, r, w, k, v, a, b, state_in, y,
                                                    state_out, sa, snapshots, s)
                   : launch_forward<float>(B, T, H, r, w, k, v, a, b, state_in, y, state_out,
                                           sa, snapshots, s);
}

int wkv7_backward(int is_bf16, int B, int T, int H, const void* r, const void* w, const void* k,
                  const void* v, const void* a, const void* b, const float* sa,
                  const float* snapshots, const float* state_out, const void* dy,
                  const float* dstate_out, void* dr, void* dw, void* dk, void* dv, void* da,
                  void* db, float* dstate_in, void* stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    return is_bf16 ? launch_backward<__nv_bfloat16>(B, T, H, r, w, k, v, a, b, sa, snapshots,
                                                     state_out, dy, dstate_out, dr, dw, dk, dv,
                                                     da, db, dstate_in, s)
                   : launch_backward<float>(B, T, H, r, w, k, v, a, b, sa, snapshots,
                                            state_out, dy, dstate_out, dr, dw, dk, dv, da, db,
                                            dstate_in, s);
}

}  // extern "C"
