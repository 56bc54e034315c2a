"""The WKV-7 CUDA backend: kernels in wkv7.cu, built just in time with ninja (build.py), wrapped as
a differentiable operation (op.py). Nothing here needs a GPU to import."""
from core.cuda.build import load_extension
from core.cuda.op import WKV7Function, wkv7_cuda

__all__ = ["WKV7Function", "load_extension", "wkv7_cuda"]
