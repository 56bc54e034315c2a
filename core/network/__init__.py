"""The network: the RWKV-7 model and everything that runs or stores it.

    model        the x070 network (parallel forward, prefill); its docstring: the maths and which code runs
    step         the one-token step behind one interface (prepare -> step): fused C++ or torch ops
    wkv          the WKV-7 operator: reference, C++ loop (train with backward, prefill), chunked fallback
    cpu_kernels  the C++ CPU kernels (cpu_kernels.cpp) and their just-in-time build; cuda/: the CUDA kernel
    jit_build    just-in-time builds with a per-source, per-toolchain cache
    checkpoint   model and state files (RWKV-LM layout plus our metadata), read with weights_only
    style        style files and StyledModel, the one owner of a loaded model's applied style

Nothing here knows of training runs (core.training) or of sampling (core.sampling, core.generate).
"""
