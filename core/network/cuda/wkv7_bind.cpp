// Torch binding of the WKV-7 kernels in wkv7.cu: checks tensors, allocates outputs, launches.
//
// It includes only the generic torch extension header (no CUDA or ATen/cuda header): the CUDA
// stream arrives from Python as an integer (torch.cuda.current_stream().cuda_stream), so this
// file compiles against any torch build and is syntax-checked by the CPU test suite.

#include <torch/extension.h>

#include <cstdint>
#include <vector>

extern "C" {
int wkv7_head_size();
int wkv7_chunk_len();
const char* wkv7_error_string(int code);
int wkv7_forward(int is_bf16, int B, int T, int H, const void* r, const void* w, const void* k,
                 const void* v, const void* a, const void* b, const float* state_in, void* y,
                 float* state_out, float* sa, float* snapshots, void* stream);
int wkv7_backward(int is_bf16, int B, int T, int H, const void* r, const void* w, const void* k,
                  const void* v, const void* a, const void* b, const float* sa,
                  const float* snapshots, const float* state_out, const void* dy,
                  const float* dstate_out, void* dr, void* dw, void* dk, void* dv, void* da,
                  void* db, float* dstate_in, void* stream);
}

namespace {

void check_sequence(const torch::Tensor& x, const torch::Tensor& like, const char* name) {
    TORCH_CHECK(x.is_cuda(), name, " must be a CUDA tensor");
    TORCH_CHECK(x.is_contiguous(), name, " must be contiguous");
    TORCH_CHECK(x.scalar_type() == like.scalar_type(), name, " must have the dtype of r");
    TORCH_CHECK(x.sizes() == like.sizes(), name, " must have the shape of r [B,T,H,N]");
    TORCH_CHECK(x.device() == like.device(), name, " must be on the device of r");
}

void check_state(const torch::Tensor& s, const torch::Tensor& r, const char* name) {
    TORCH_CHECK(s.is_cuda() && s.is_contiguous(), name, " must be a contiguous CUDA tensor");
    TORCH_CHECK(s.scalar_type() == torch::kFloat32, name, " must be float32");
    TORCH_CHECK(s.device() == r.device(), name, " must be on the device of r");
    TORCH_CHECK(s.dim() == 4 && s.size(0) == r.size(0) && s.size(1) == r.size(2) &&
                    s.size(2) == r.size(3) && s.size(3) == r.size(3),
                name, " must be [B,H,N,N]");
}

int element_is_bf16(const torch::Tensor& r) {
    TORCH_CHECK(r.dim() == 4, "r must be [B,T,H,N]");
    TORCH_CHECK(r.size(3) == wkv7_head_size(), "head size must be ", wkv7_head_size());
    TORCH_CHECK(r.scalar_type() == torch::kBFloat16 || r.scalar_type() == torch::kFloat32,
                "WKV-7 kernel takes bfloat16 or float32 inputs");
    return r.scalar_type() == torch::kBFloat16 ? 1 : 0;
}

void check_launch(int code) {
    TORCH_CHECK(code == 0, "WKV-7 kernel launch failed: ", wkv7_error_string(code));
}

void* as_stream(int64_t stream) { return reinterpret_cast<void*>(static_cast<intptr_t>(stream)); }

// Returns y, final state, and the saved tensors for backward: sa [B,T,H,N] and state snapshots
// [B,H,ceil(T/16),N,N], all float32 but y. Without `for_backward` those two are empty and the
// kernel does not write them.
std::vector<torch::Tensor> forward(torch::Tensor r, torch::Tensor w, torch::Tensor k,
                                   torch::Tensor v, torch::Tensor a, torch::Tensor b,
                                   torch::Tensor state_in, bool for_backward, int64_t stream) {
    const int is_bf16 = element_is_bf16(r);
    check_sequence(w, r, "w"); check_sequence(k, r, "k"); check_sequence(v, r, "v");
    check_sequence(a, r, "a"); check_sequence(b, r, "b"); check_sequence(r, r, "r");
    check_state(state_in, r, "state");
    const int64_t B = r.size(0), T = r.size(1), H = r.size(2), N = r.size(3);
    const int64_t chunks = (T + wkv7_chunk_len() - 1) / wkv7_chunk_len();
    auto f32 = r.options().dtype(torch::kFloat32);
    auto y = torch::empty_like(r);
    auto state_out = torch::empty_like(state_in);
    auto sa = torch::empty({for_backward ? B : 0, T, H, N}, f32);
    auto snapshots = torch::empty({for_backward ? B : 0, H, chunks, N, N}, f32);
    check_launch(wkv7_forward(is_bf16, B, T, H, r.data_ptr(), w.data_ptr(), k.data_ptr(),
                              v.data_ptr(), a.data_ptr(), b.data_ptr(),
                              state_in.data_ptr<float>(), y.data_ptr(),
                              state_out.data_ptr<float>(),
                              for_backward ? sa.data_ptr<float>() : nullptr,
                              for_backward ? snapshots.data_ptr<float>() : nullptr,
                              as_stream(stream)));
    return {y, state_out, sa, snapshots};
}

// Returns dr, dw, dk, dv, da, db (dtype of r) and the gradient of the initial state (float32).
std::vector<torch::Tensor> backward(torch::Tensor r, torch::Tensor w, torch::Tensor k,
                                    torch::Tensor v, torch::Tensor a, torch::Tensor b,
                                    torch::Tensor sa, torch::Tensor snapshots,
                                    torch::Tensor state_out, torch::Tensor dy,
                                    torch::Tensor dstate_out, int64_t stream) {
    const int is_bf16 = element_is_bf16(r);
    check_sequence(w, r, "w"); check_sequence(k, r, "k"); check_sequence(v, r, "v");
    check_sequence(a, r, "a"); check_sequence(b, r, "b"); check_sequence(r, r, "r");
    check_sequence(dy, r, "dy");
    check_state(state_out, r, "final state");
    check_state(dstate_out, r, "final state gradient");
    TORCH_CHECK(sa.is_contiguous() && sa.scalar_type() == torch::kFloat32 &&
                    sa.sizes() == r.sizes(), "sa must be float32 [B,T,H,N]");
    const int64_t chunks = (r.size(1) + wkv7_chunk_len() - 1) / wkv7_chunk_len();
    TORCH_CHECK(snapshots.is_contiguous() && snapshots.scalar_type() == torch::kFloat32 &&
                    snapshots.sizes() == torch::IntArrayRef({r.size(0), r.size(2), chunks,
                                                             r.size(3), r.size(3)}),
                "snapshots must be float32 [B,H,ceil(T/16),N,N] (was the forward run for backward?)");
    const int64_t B = r.size(0), T = r.size(1), H = r.size(2);
    std::vector<torch::Tensor> grads;
    for (int g = 0; g < 6; ++g) grads.push_back(torch::empty_like(r));
    auto dstate_in = torch::empty_like(state_out);
    check_launch(wkv7_backward(
        is_bf16, B, T, H, r.data_ptr(), w.data_ptr(), k.data_ptr(), v.data_ptr(), a.data_ptr(),
        b.data_ptr(), sa.data_ptr<float>(), snapshots.data_ptr<float>(),
        state_out.data_ptr<float>(), dy.data_ptr(), dstate_out.data_ptr<float>(),
        grads[0].data_ptr(), grads[1].data_ptr(), grads[2].data_ptr(), grads[3].data_ptr(),
        grads[4].data_ptr(), grads[5].data_ptr(), dstate_in.data_ptr<float>(),
        as_stream(stream)));
    grads.push_back(dstate_in);
    return grads;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "WKV-7 CUDA kernels (forward, backward) with initial and final state";
    m.def("forward", &forward, "WKV-7 forward: y, final state, sa, snapshots");
    m.def("backward", &backward, "WKV-7 backward: dr, dw, dk, dv, da, db, dstate");
    m.def("head_size", &wkv7_head_size, "head size N the kernels are compiled for");
}
