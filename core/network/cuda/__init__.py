"""The WKV-7 CUDA backend: kernels in wkv7.cu, built just in time with ninja (build.py), wrapped as
a differentiable operation (op.py). Nothing here needs a GPU to import."""
from core.network.cuda.build import load_extension
from core.network.cuda.op import WKV7Function, wkv7_cuda
from core.network.wkv import register_backend, wkv7_chunked


def _cuda_backend(r, w, k, v, a, b, state=None):
    """core.network.wkv's backend for CUDA tensors: the kernel, or the chunked path for what it declines (float64,
    head size != 64, a failed build or self-test: it warns once)."""
    out = wkv7_cuda(r, w, k, v, a, b, state)
    return out if out is not None else wkv7_chunked(r, w, k, v, a, b, state)


register_backend("cuda", _cuda_backend)  # core.network.model imports this package: the network always has it

__all__ = ["WKV7Function", "load_extension", "wkv7_cuda"]
