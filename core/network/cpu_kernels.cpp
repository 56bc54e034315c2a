// The one-token RWKV-7 step on the CPU in one call (float32, B streams at once), and the WKV-7
// recurrence over a sequence: forward (prefill, training) and backward (training).
//
// At one token per call the torch-op version spends most of its time on per-op overhead
// (about 45 small ops a layer); here every layer is a handful of loops over the weights, each
// weight row read once for all B streams, the big products split across torch's intra-op
// threads. The weights arrive packed in one float32 buffer by core/step.py (CppStepper), which also
// defines the order of the parts (kept in sync with the Part enum below; tests compare this
// step against the torch-op step on the real model).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

// One layer's parts in the packed buffer, in this order (see core/step.py LAYER_PARTS).
enum Part {
    LN1_W, LN1_B, MIX,          // MIX: [7,C] lerp weights for r, k, v, w, a, v-gate, g
    RKV,                        // [3C,C]: receptance, key, value weights stacked
    W1, W2, A1, A2, V1, V2, G1, G2,  // low-rank paths, each stored [out,in]
    W0, A0, V0, K_K, K_A, R_K, LNX_W, LNX_B,
    OUT, LN2_W, LN2_B, FFN_MIX, FFN_KEY, FFN_VALUE,
    DS,                         // [H,N,N] a style's state offset (empty without one)
    N_PARTS
};
enum GlobalPart { EMB, LN_OUT_W, LN_OUT_B, HEAD, N_GLOBAL };

// Dimensions, in the order core/step.py passes them; has_ds: the DS parts hold an offset.
struct Dims {
    int64_t L, C, H, N, V, F, Rw, Ra, Rv, Rg, has_ds;
};

#if defined(__GNUC__)
typedef float f8 __attribute__((vector_size(32)));

inline f8 load8(const float* p) {
    f8 v;
    std::memcpy(&v, p, sizeof(v));  // an unaligned vector load
    return v;
}

inline float sum8(f8 v) {
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// Four independent vector accumulators: the loop runs at load bandwidth, not add latency.
inline float dot(const float* a, const float* b, int64_t n) {
    f8 s0 = {}, s1 = {}, s2 = {}, s3 = {};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 += load8(a + i) * load8(b + i);
        s1 += load8(a + i + 8) * load8(b + i + 8);
        s2 += load8(a + i + 16) * load8(b + i + 16);
        s3 += load8(a + i + 24) * load8(b + i + 24);
    }
    for (; i + 8 <= n; i += 8) s0 += load8(a + i) * load8(b + i);
    float s = sum8((s0 + s1) + (s2 + s3));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}
#else
inline float dot(const float* a, const float* b, int64_t n) {
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    float s = (s0 + s1) + (s2 + s3);
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}
#endif

// Work below this many multiply-adds per thread is not worth waking another thread for.
constexpr int64_t kGrainMacs = 32768;

// y[g][b][o] = sum_i W[g*out + o][i] * x[g][b][i], for G stacked matrices of [out,in] each,
// B streams; x is [G][B][in], y is [G][B][out]. Rows are split across threads.
void matvec(const float* W, int64_t G, int64_t out, int64_t in, const float* x, int64_t B, float* y) {
    const int64_t rows = G * out;
    const int64_t grain = std::max<int64_t>(1, kGrainMacs / std::max<int64_t>(1, in * B));
    at::parallel_for(0, rows, grain, [&](int64_t lo, int64_t hi) {
        for (int64_t row = lo; row < hi; ++row) {
            const int64_t g = row / out, o = row % out;
            const float* w = W + row * in;
            for (int64_t b = 0; b < B; ++b)
                y[(g * B + b) * out + o] = dot(w, x + (g * B + b) * in, in);
        }
    });
}

void layer_norm(const float* x, const float* w, const float* b, int64_t n, float* out) {
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < n; ++i) mean += x[i];
    mean /= n;
    for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
    const float inv = static_cast<float>(1.0 / std::sqrt(var / n + 1e-5));  // F.layer_norm's eps
    const float m = static_cast<float>(mean);
    for (int64_t i = 0; i < n; ++i) out[i] = (x[i] - m) * inv * w[i] + b[i];
}

inline float sigmoid(float z) { return 1.f / (1.f + std::exp(-z)); }

// x = a + (b - a) * mu, elementwise (torch.lerp).
inline void lerp(const float* a, const float* b, const float* mu, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + (b[i] - a[i]) * mu[i];
}

at::Tensor as_float_input(const at::Tensor& t, const char* what) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat, what, " must be a float32 CPU tensor");
    return t.contiguous();
}

}  // namespace

// tokens [B] int64; weights: the packed float32 buffer; offsets [L*N_PARTS + N_GLOBAL] int64
// element offsets into it; dims: L, C, H, N, V, F, Rw, Ra, Rv, Rg, has_ds; decay_scale, group_norm_eps.
// att_x, ffn_x: L tensors [B,C]; wkv: L tensors [B,H,N,N]. The inputs are not modified.
// Returns logits [B,V], att_x [L,B,C], wkv [L,B,H,N,N], ffn_x [L,B,C].
std::vector<at::Tensor> step(const at::Tensor& tokens, const at::Tensor& weights, const at::Tensor& offsets,
                             const std::vector<int64_t>& dim_list, double decay_scale, double group_norm_eps,
                             const std::vector<at::Tensor>& att_x, const std::vector<at::Tensor>& wkv,
                             const std::vector<at::Tensor>& ffn_x) {
    TORCH_CHECK(dim_list.size() == 11, "dims: expected 11 values");
    const Dims d{dim_list[0], dim_list[1], dim_list[2], dim_list[3], dim_list[4], dim_list[5],
                 dim_list[6], dim_list[7], dim_list[8], dim_list[9], dim_list[10]};
    const int64_t L = d.L, C = d.C, H = d.H, N = d.N, V = d.V, F = d.F;
    TORCH_CHECK(H * N == C, "heads x head size must equal the width");
    TORCH_CHECK(weights.is_contiguous() && weights.scalar_type() == at::kFloat && weights.device().is_cpu(),
                "weights must be one contiguous float32 CPU buffer");
    TORCH_CHECK(offsets.numel() == L * N_PARTS + N_GLOBAL && offsets.scalar_type() == at::kLong,
                "offsets do not match the layer count");
    TORCH_CHECK((int64_t)att_x.size() == L && (int64_t)wkv.size() == L && (int64_t)ffn_x.size() == L,
                "the state must have one entry per layer");
    const at::Tensor tok = tokens.to(at::kLong).contiguous();
    const int64_t B = tok.numel();
    const int64_t* tk = tok.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) TORCH_CHECK(tk[b] >= 0 && tk[b] < V, "token ", tk[b], " out of range");

    const float* base = weights.data_ptr<float>();
    const int64_t* off = offsets.data_ptr<int64_t>();
    auto part = [&](int64_t layer, int p) { return base + off[layer * N_PARTS + p]; };
    auto global = [&](int p) { return base + off[L * N_PARTS + p]; };

    const auto opts = weights.options();
    at::Tensor logits = at::empty({B, V}, opts);
    at::Tensor att_out = at::empty({L, B, C}, opts);
    at::Tensor wkv_out = at::empty({L, B, H, N, N}, opts);
    at::Tensor ffn_out = at::empty({L, B, C}, opts);

    // scratch, [..][B][..] layouts as matvec wants them
    std::vector<float> x(B * C), mixed(7 * B * C), rkv(3 * B * C), v_first(B * C);
    std::vector<float> low_w(B * d.Rw), low_a(B * d.Ra), low_v(B * d.Rv), low_g(B * d.Rg);
    std::vector<float> wl(B * C), al(B * C), vl(B * C), gl(B * C);
    std::vector<float> y(B * C), att_y(B * C), xf_mix(B * C), hidden(B * F), ffn_y(B * C), xo(B * C);
    std::vector<float> kk(N), kmod(N), bb(N), decay(N);

    const float* emb = global(EMB);
    for (int64_t b = 0; b < B; ++b) std::memcpy(&x[b * C], emb + tk[b] * C, C * sizeof(float));

    for (int64_t l = 0; l < L; ++l) {
        const at::Tensor prev_att = as_float_input(att_x[l], "att_x");
        const at::Tensor prev_ffn = as_float_input(ffn_x[l], "ffn_x");
        const at::Tensor prev_wkv = as_float_input(wkv[l], "wkv");
        TORCH_CHECK(prev_att.numel() == B * C && prev_ffn.numel() == B * C && prev_wkv.numel() == B * H * N * N,
                    "state shapes do not match the batch");
        const float* pa = prev_att.data_ptr<float>();
        const float* pf = prev_ffn.data_ptr<float>();
        const float* ps = prev_wkv.data_ptr<float>();
        float* xa = att_out.data_ptr<float>() + l * B * C;
        float* xf = ffn_out.data_ptr<float>() + l * B * C;
        float* S_out = wkv_out.data_ptr<float>() + l * B * H * N * N;

        // time-mix: token shift, projections, low-rank paths
        const float* mix = part(l, MIX);
        for (int64_t b = 0; b < B; ++b) {
            layer_norm(&x[b * C], part(l, LN1_W), part(l, LN1_B), C, xa + b * C);
            for (int m = 0; m < 7; ++m) lerp(xa + b * C, pa + b * C, mix + m * C, C, &mixed[(m * B + b) * C]);
        }
        matvec(part(l, RKV), 3, C, C, mixed.data(), B, rkv.data());
        matvec(part(l, W1), 1, d.Rw, C, &mixed[3 * B * C], B, low_w.data());
        matvec(part(l, A1), 1, d.Ra, C, &mixed[4 * B * C], B, low_a.data());
        matvec(part(l, G1), 1, d.Rg, C, &mixed[6 * B * C], B, low_g.data());
        for (auto& z : low_w) z = std::tanh(z);
        for (auto& z : low_g) z = sigmoid(z);
        matvec(part(l, W2), 1, C, d.Rw, low_w.data(), B, wl.data());
        matvec(part(l, A2), 1, C, d.Ra, low_a.data(), B, al.data());
        matvec(part(l, G2), 1, C, d.Rg, low_g.data(), B, gl.data());
        float* r = rkv.data();
        float* k = r + B * C;
        float* v = k + B * C;
        if (l == 0) {
            std::copy(v, v + B * C, v_first.begin());
        } else {  // value residual: v moves towards layer 0's value by a learned gate
            matvec(part(l, V1), 1, d.Rv, C, &mixed[5 * B * C], B, low_v.data());
            matvec(part(l, V2), 1, C, d.Rv, low_v.data(), B, vl.data());
            const float* v0 = part(l, V0);
            for (int64_t i = 0; i < B * C; ++i) {
                const float gate = sigmoid(v0[i % C] + vl[i]);
                v[i] += (v_first[i] - v[i]) * gate;
            }
        }

        // WKV: per stream and head, S' = S diag(decay) - (S kk)(kk*a)^T + v k^T ; y = S' r
        const float *w0 = part(l, W0), *a0 = part(l, A0), *k_k = part(l, K_K), *k_a = part(l, K_A);
        const float *r_k = part(l, R_K), *lnx_w = part(l, LNX_W), *lnx_b = part(l, LNX_B);
        const float* ds = d.has_ds ? part(l, DS) : nullptr;  // y = (S + dS) r with a style's offset
        for (int64_t b = 0; b < B; ++b) {
            for (int64_t h = 0; h < H; ++h) {
                const int64_t c0 = b * C + h * N;  // this head's first channel in [B][C] scratch
                const int64_t ch = h * N;           // ... and in the per-channel weights
                double norm = 0.0;
                for (int64_t j = 0; j < N; ++j) {
                    kk[j] = k[c0 + j] * k_k[ch + j];
                    norm += static_cast<double>(kk[j]) * kk[j];
                }
                const float inv_norm = 1.f / std::max(static_cast<float>(std::sqrt(norm)), 1e-12f);
                float bonus = 0.f;
                for (int64_t j = 0; j < N; ++j) {
                    const float a = sigmoid(a0[ch + j] + al[c0 + j]);
                    kk[j] *= inv_norm;
                    bb[j] = kk[j] * a;
                    kmod[j] = k[c0 + j] * ((1.f - k_a[ch + j]) + a * k_a[ch + j]);
                    decay[j] = std::exp(sigmoid(w0[ch + j] + wl[c0 + j]) * static_cast<float>(-decay_scale));
                    bonus += r[c0 + j] * kmod[j] * r_k[ch + j];
                }
                const float* S = ps + (b * H + h) * N * N;
                float* Sn = S_out + (b * H + h) * N * N;
                float* yh = &y[c0];
                for (int64_t i = 0; i < N; ++i) {
                    const float sa = dot(S + i * N, kk.data(), N);
                    const float vi = v[c0 + i];
                    for (int64_t j = 0; j < N; ++j)
                        Sn[i * N + j] = S[i * N + j] * decay[j] - sa * bb[j] + vi * kmod[j];
                    yh[i] = dot(Sn + i * N, r + c0, N);
                    if (ds) yh[i] += dot(ds + (h * N + i) * N, r + c0, N);
                }
                // GroupNorm over the head, then the bonus term r.(k*r_k) v
                double mean = 0.0, var = 0.0;
                for (int64_t i = 0; i < N; ++i) mean += yh[i];
                mean /= N;
                for (int64_t i = 0; i < N; ++i) var += (yh[i] - mean) * (yh[i] - mean);
                const float inv = static_cast<float>(1.0 / std::sqrt(var / N + group_norm_eps));
                const float m = static_cast<float>(mean);
                for (int64_t i = 0; i < N; ++i) {
                    const float out = (yh[i] - m) * inv * lnx_w[ch + i] + lnx_b[ch + i] + bonus * v[c0 + i];
                    att_y[c0 + i] = out * gl[c0 + i];
                }
            }
        }
        matvec(part(l, OUT), 1, C, C, att_y.data(), B, y.data());
        for (int64_t i = 0; i < B * C; ++i) x[i] += y[i];

        // channel-mix: relu(key(shifted))^2 -> value
        for (int64_t b = 0; b < B; ++b) {
            layer_norm(&x[b * C], part(l, LN2_W), part(l, LN2_B), C, xf + b * C);
            lerp(xf + b * C, pf + b * C, part(l, FFN_MIX), C, &xf_mix[b * C]);
        }
        matvec(part(l, FFN_KEY), 1, F, C, xf_mix.data(), B, hidden.data());
        for (auto& z : hidden) {
            z = z > 0.f ? z * z : 0.f;
        }
        matvec(part(l, FFN_VALUE), 1, C, F, hidden.data(), B, ffn_y.data());
        for (int64_t i = 0; i < B * C; ++i) x[i] += ffn_y[i];
    }
    for (int64_t b = 0; b < B; ++b) layer_norm(&x[b * C], global(LN_OUT_W), global(LN_OUT_B), C, &xo[b * C]);
    matvec(global(HEAD), 1, V, C, xo.data(), B, logits.data_ptr<float>());
    return {logits, att_out, wkv_out, ffn_out};
}

// The WKV-7 recurrence over a whole sequence, forward only (prefill and scoring, no autograd):
// per token, S = S diag(exp(w)) + (S a) b^T + v k^T and y = S r, as core/wkv.py's reference.
// r, w, k, v, a, b: [B,T,H,N] float32 (w the log decay); state: [B,H,N,N] or an empty tensor
// for zeros. Returns y [B,T,H,N] and the final state. Heads run in parallel.
namespace {

// One token of the recurrence on one head's state S [N,N] (rows: value i, columns: key j), in place:
// sa_i = S_i . a, S_i = S_i * decay + sa_i b + v_i k. Returns nothing; writes sa (kept for backward).
inline void wkv_token(float* S, const float* decay, const float* kt, const float* vt, const float* aa,
                      const float* bb, int64_t N, float* sa) {
    for (int64_t i = 0; i < N; ++i) {
        float* Si = S + i * N;
        const float s = dot(Si, aa, N), vi = vt[i];
        sa[i] = s;
        for (int64_t j = 0; j < N; ++j) Si[j] = Si[j] * decay[j] + s * bb[j] + vi * kt[j];
    }
}

constexpr int64_t LANES = 8;  // wkv_backward's column block: one AVX register of float32

struct WkvInputs {
    at::Tensor r, w, k, v, a, b;
    int64_t B, T, H, N;
};

WkvInputs wkv_inputs(const at::Tensor& r_in, const at::Tensor& w_in, const at::Tensor& k_in,
                     const at::Tensor& v_in, const at::Tensor& a_in, const at::Tensor& b_in) {
    TORCH_CHECK(r_in.dim() == 4, "r must be [B,T,H,N]");
    WkvInputs x{as_float_input(r_in, "r"), as_float_input(w_in, "w"), as_float_input(k_in, "k"),
                as_float_input(v_in, "v"), as_float_input(a_in, "a"), as_float_input(b_in, "b"),
                r_in.size(0), r_in.size(1), r_in.size(2), r_in.size(3)};
    for (const at::Tensor* t : {&x.w, &x.k, &x.v, &x.a, &x.b})
        TORCH_CHECK(t->sizes() == x.r.sizes(), "r, w, k, v, a, b must share one shape [B,T,H,N]");
    return x;
}

}  // namespace

// The recurrence over a sequence, heads in parallel. keep_every > 0 (training): also the state before
// tokens 0, keep_every, 2 keep_every, ... as [B*H, ceil(T/keep_every), N, N], what wkv_backward starts
// its recomputation from; 0 (prefill): an empty tensor there.
std::vector<at::Tensor> wkv_forward(const at::Tensor& r_in, const at::Tensor& w_in, const at::Tensor& k_in,
                                    const at::Tensor& v_in, const at::Tensor& a_in, const at::Tensor& b_in,
                                    const at::Tensor& state, int64_t keep_every) {
    const WkvInputs x = wkv_inputs(r_in, w_in, k_in, v_in, a_in, b_in);
    const int64_t B = x.B, T = x.T, H = x.H, N = x.N;
    at::Tensor S_all = state.numel() ? as_float_input(state, "state").clone() : at::zeros({B, H, N, N}, x.r.options());
    TORCH_CHECK(S_all.numel() == B * H * N * N, "the state must be [B,H,N,N]");
    const int64_t n_kept = keep_every > 0 ? (T + keep_every - 1) / keep_every : 0;
    at::Tensor kept = at::empty({keep_every > 0 ? B * H : 0, n_kept, N, N}, x.r.options());
    at::Tensor y = at::empty({B, T, H, N}, x.r.options());
    const float *rp = x.r.data_ptr<float>(), *wp = x.w.data_ptr<float>(), *kp = x.k.data_ptr<float>();
    const float *vp = x.v.data_ptr<float>(), *ap = x.a.data_ptr<float>(), *bp = x.b.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    float* sp = S_all.data_ptr<float>();
    float* keptp = kept.data_ptr<float>();
    at::parallel_for(0, B * H, 1, [&](int64_t lo, int64_t hi) {
        std::vector<float> decay(N), sa(N);
        for (int64_t bh = lo; bh < hi; ++bh) {
            const int64_t bi = bh / H, h = bh % H;
            float* S = sp + bh * N * N;
            for (int64_t t = 0; t < T; ++t) {
                if (keep_every > 0 && t % keep_every == 0)
                    std::memcpy(keptp + (bh * n_kept + t / keep_every) * N * N, S, N * N * sizeof(float));
                const int64_t at_ = ((bi * T + t) * H + h) * N;
                for (int64_t j = 0; j < N; ++j) decay[j] = std::exp(wp[at_ + j]);
                wkv_token(S, decay.data(), kp + at_, vp + at_, ap + at_, bp + at_, N, sa.data());
                for (int64_t i = 0; i < N; ++i) yp[at_ + i] = dot(S + i * N, rp + at_, N);
            }
        }
    });
    return {y, S_all, kept};
}

// Gradients of wkv_forward (run with keep_every) for dy [B,T,H,N] and d_final [B,H,N,N] (or empty):
// {dr, dw, dk, dv, da, db, d_state}. Per head, the chunks are walked from the last: the chunk's states
// are recomputed from its kept start (the same code as the forward, so the same numbers), then its
// tokens are undone in reverse. With S' = S diag(d) + sa b^T + v k^T, sa = S a, y = S' r and G the
// gradient reaching S' (from later tokens, plus dy r^T):
//   dr = S'^T dy,  dd = sum_i G_i * S_i (dw = dd * d),  dsa = G b,  db = G^T sa,  dv = G k,
//   dk = G^T v,  da = S^T dsa,  and the gradient reaching S is G diag(d) + dsa a^T.
std::vector<at::Tensor> wkv_backward(const at::Tensor& r_in, const at::Tensor& w_in, const at::Tensor& k_in,
                                     const at::Tensor& v_in, const at::Tensor& a_in, const at::Tensor& b_in,
                                     const at::Tensor& kept_in, const at::Tensor& dy_in,
                                     const at::Tensor& d_final, int64_t keep_every) {
    const WkvInputs x = wkv_inputs(r_in, w_in, k_in, v_in, a_in, b_in);
    const int64_t B = x.B, T = x.T, H = x.H, N = x.N;
    TORCH_CHECK(keep_every > 0, "keep_every must be positive");
    TORCH_CHECK(N % LANES == 0, "the head size must be a multiple of ", LANES);
    const int64_t n_kept = (T + keep_every - 1) / keep_every;
    const at::Tensor kept = as_float_input(kept_in, "kept states");
    TORCH_CHECK(kept.numel() == B * H * n_kept * N * N, "kept states do not match the inputs");
    const at::Tensor dy = as_float_input(dy_in, "dy");
    TORCH_CHECK(dy.sizes() == x.r.sizes(), "dy must be [B,T,H,N]");
    at::Tensor G_all = d_final.numel() ? as_float_input(d_final, "d_final").clone()
                                       : at::zeros({B, H, N, N}, x.r.options());
    TORCH_CHECK(G_all.numel() == B * H * N * N, "d_final must be [B,H,N,N]");
    std::vector<at::Tensor> grads;
    for (int i = 0; i < 6; ++i) grads.push_back(at::empty({B, T, H, N}, x.r.options()));
    const float *rp = x.r.data_ptr<float>(), *wp = x.w.data_ptr<float>(), *kp = x.k.data_ptr<float>();
    const float *vp = x.v.data_ptr<float>(), *ap = x.a.data_ptr<float>(), *bp = x.b.data_ptr<float>();
    const float *keptp = kept.data_ptr<float>(), *dyp = dy.data_ptr<float>();
    float *drp = grads[0].data_ptr<float>(), *dwp = grads[1].data_ptr<float>(), *dkp = grads[2].data_ptr<float>();
    float *dvp = grads[3].data_ptr<float>(), *dap = grads[4].data_ptr<float>(), *dbp = grads[5].data_ptr<float>();
    float* gp = G_all.data_ptr<float>();
    at::parallel_for(0, B * H, 1, [&](int64_t lo, int64_t hi) {
        // states[s] is the state before token t0 + s of the current chunk; sa[s] that token's S a
        std::vector<float> states((keep_every + 1) * N * N), sa(keep_every * N), decay(keep_every * N);
        std::vector<float> dsa(N);
        for (int64_t bh = lo; bh < hi; ++bh) {
            const int64_t bi = bh / H, h = bh % H;
            float* G = gp + bh * N * N;
            for (int64_t c = n_kept - 1; c >= 0; --c) {
                const int64_t t0 = c * keep_every, len = std::min(keep_every, T - t0);
                std::memcpy(states.data(), keptp + (bh * n_kept + c) * N * N, N * N * sizeof(float));
                for (int64_t s = 0; s < len; ++s) {
                    const int64_t at_ = ((bi * T + t0 + s) * H + h) * N;
                    float* S = states.data() + (s + 1) * N * N;
                    std::memcpy(S, S - N * N, N * N * sizeof(float));
                    for (int64_t j = 0; j < N; ++j) decay[s * N + j] = std::exp(wp[at_ + j]);
                    wkv_token(S, decay.data() + s * N, kp + at_, vp + at_, ap + at_, bp + at_, N, sa.data() + s * N);
                }
                for (int64_t s = len - 1; s >= 0; --s) {
                    const int64_t at_ = ((bi * T + t0 + s) * H + h) * N;
                    const float *S_new = states.data() + (s + 1) * N * N, *S_old = states.data() + s * N * N;
                    const float *rt = rp + at_, *kt = kp + at_, *vt = vp + at_, *aa = ap + at_, *bb = bp + at_;
                    const float *dyt = dyp + at_, *d = decay.data() + s * N, *sat = sa.data() + s * N;
                    // G += dy r^T, then the row sums: dsa = G b, dv = G k
                    for (int64_t i = 0; i < N; ++i) {
                        float* Gi = G + i * N;
                        for (int64_t j = 0; j < N; ++j) Gi[j] += dyt[i] * rt[j];
                        dsa[i] = dot(Gi, bb, N);
                        dvp[at_ + i] = dot(Gi, kt, N);
                    }
                    // the column sums, LANES columns at a time so that their five sums stay in
                    // registers over all rows; G becomes the gradient reaching the previous state
                    for (int64_t j0 = 0; j0 < N; j0 += LANES) {
                        float dr[LANES] = {}, dd[LANES] = {}, db[LANES] = {}, dk[LANES] = {}, da[LANES] = {};
                        for (int64_t i = 0; i < N; ++i) {
                            float* Gi = G + i * N + j0;
                            const float *Ni = S_new + i * N + j0, *Oi = S_old + i * N + j0;
                            const float dyi = dyt[i], sai = sat[i], vi = vt[i], dsai = dsa[i];
                            for (int l = 0; l < LANES; ++l) {
                                const float g = Gi[l];
                                dr[l] += Ni[l] * dyi;
                                dd[l] += g * Oi[l];
                                db[l] += g * sai;
                                dk[l] += g * vi;
                                da[l] += Oi[l] * dsai;
                                Gi[l] = g * d[j0 + l] + dsai * aa[j0 + l];
                            }
                        }
                        for (int l = 0; l < LANES; ++l) {
                            drp[at_ + j0 + l] = dr[l];
                            dwp[at_ + j0 + l] = dd[l] * d[j0 + l];
                            dbp[at_ + j0 + l] = db[l];
                            dkp[at_ + j0 + l] = dk[l];
                            dap[at_ + j0 + l] = da[l];
                        }
                    }
                }
            }
        }
    });
    grads.push_back(G_all);
    return grads;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("step", &step, "one-token RWKV-7 step for B streams (float32, CPU)",
          py::call_guard<py::gil_scoped_release>());
    m.def("wkv_forward", &wkv_forward, "WKV-7 over a sequence (float32, CPU); keep_every > 0 keeps states "
          "for wkv_backward", py::call_guard<py::gil_scoped_release>());
    m.def("wkv_backward", &wkv_backward, "gradients of wkv_forward (float32, CPU)",
          py::call_guard<py::gil_scoped_release>());
    m.attr("WKV_LANES") = static_cast<int>(LANES);  // wkv_backward needs a head size that it divides
    m.attr("N_PARTS") = static_cast<int>(N_PARTS);
    m.attr("N_GLOBAL") = static_cast<int>(N_GLOBAL);
}
