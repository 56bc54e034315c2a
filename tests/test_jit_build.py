"""Just-in-time builds (core/network/jit_build.py): a killed process never makes later loads wait forever,
and builds that differ (another checkout, another Python, other flags) never share a folder.

The lock tests build a one-function C++ library through the same compile_extension that loads
the fused CPU step and the CUDA kernel (torch's real ninja build, well under a second of
compiling), so they are quick; the key tests use the real CPU-kernel and CUDA build plans.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest
import torch

from core.network import cpu_kernels, jit_build
from core.network.cuda import build as cuda_build

ROOT = Path(__file__).resolve().parents[1]
TINY_SOURCE = 'extern "C" int tiny_answer() { return 42; }\n'
needs_posix = pytest.mark.skipif(sys.platform == "win32", reason="uses a shell script as the compiler and killpg")


def tiny_kwargs(tmp_path: Path, folder: str = "src") -> dict:
    source = tmp_path / folder / "tiny.cpp"
    if not source.exists():   # rewriting it would make ninja rebuild
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(TINY_SOURCE)
    return dict(name="rwkv_music_tiny", sources=[str(source)], build_directory=str(tmp_path / "build"),
                is_python_module=False, verbose=False)


LOAD_TWICE = """
import ctypes, json, sys, warnings
from core.network import jit_build
kwargs = json.loads(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    results = [jit_build.compile_extension(kwargs, what="test library") for _ in range(2)]
for path, why in results:
    assert path is not None, why
    assert ctypes.CDLL(path).tiny_answer() == 42
print(json.dumps([str(w.message) for w in caught]))
"""


def run_python(code: str, *args: str, env: dict | None = None, timeout: float = 120, **kw):
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, **kw)


@needs_posix
def test_a_load_killed_inside_the_build_lock_does_not_hang_the_next_one(tmp_path):
    """A child is SIGKILLed while it holds torch's `lock` (its compiler hangs, so it is inside the
    build for sure); the next load removes the stale lock, builds again and returns in seconds,
    saying so once. Before the fix it waited on the lock forever (here: the timeout)."""
    import json
    kwargs = tiny_kwargs(tmp_path)
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    marker = tmp_path / "compiling"
    hanging = tmp_path / "hanging-cxx"
    hanging.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        # compiles hang (until killed); other calls (version checks) go to the real compiler
        case " $* " in *" -c "*) touch "{marker}"; while :; do sleep 0.1; done;; esac
        exec "{compiler}" "$@"
        """))
    hanging.chmod(0o755)
    child = subprocess.Popen(
        [sys.executable, "-c", "import json, sys; from core.network import jit_build; "
         "print(jit_build.compile_extension(json.loads(sys.argv[1])))", json.dumps(kwargs)],
        cwd=ROOT, env={**os.environ, "CXX": str(hanging)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the child ended before it started compiling"
            assert time.monotonic() < deadline, "the child never reached its compiler"
            time.sleep(0.05)
        assert (Path(kwargs["build_directory"]) / jit_build.TORCH_LOCK_NAME).exists()
    finally:
        os.killpg(child.pid, signal.SIGKILL)   # the child and ninja
        child.wait()
        # ninja runs each command in a process group of its own: the hanging compiler goes by its unique path
        if shutil.which("pkill"):
            subprocess.run(["pkill", "-KILL", "-f", str(hanging)], check=False)
    assert (Path(kwargs["build_directory"]) / jit_build.TORCH_LOCK_NAME).exists()  # left behind

    started = time.monotonic()
    try:
        done = run_python(LOAD_TWICE, json.dumps(kwargs), timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the load after a killed build waited on the stale lock (no answer in 120 s)")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    messages = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(messages) == 1, messages   # one message, and the second load is quiet
    assert "stale lock" in messages[0] and kwargs["build_directory"] in messages[0]
    assert not (Path(kwargs["build_directory"]) / jit_build.TORCH_LOCK_NAME).exists()
    print(f"load after the killed build: {elapsed:.1f} s (a fresh interpreter, torch import included)")


def test_a_live_builder_is_waited_for_and_its_lock_left_alone(tmp_path, monkeypatch):
    """While another holder has the folder's OS lock, torch's `lock` is its own: a load waits
    (here up to 1 s), then gives up with a clear reason and removes nothing. Once the holder is
    gone, the same `lock` is stale and the load goes through."""
    kwargs = tiny_kwargs(tmp_path)
    folder = Path(kwargs["build_directory"])
    monkeypatch.setenv(jit_build.WAIT_ENV, "1")
    with jit_build.build_folder_lock(folder):
        (folder / jit_build.TORCH_LOCK_NAME).write_text("")   # the holder is inside torch's build
        started = time.monotonic()
        module, why = jit_build.compile_extension(kwargs, what="test library")
        assert module is None and "another process" in why and jit_build.WAIT_ENV in why
        assert 0.9 < time.monotonic() - started < 30
        assert (folder / jit_build.TORCH_LOCK_NAME).exists()
    with pytest.warns(RuntimeWarning, match="stale lock"):
        path, why = jit_build.compile_extension(kwargs, what="test library")
    assert path is not None, why
    assert ctypes.CDLL(path).tiny_answer() == 42


LOAD_ONCE = """
import json, sys
from core.network import jit_build
kwargs = json.loads(sys.argv[1])
kwargs["name"], kwargs["build_directory"] = jit_build.build_location(
    "tiny", "rwkv_music_tiny", kwargs["sources"], kwargs["extra_cflags"])
path, why = jit_build.compile_extension(kwargs, what="test library")
assert path is not None, why
print(json.dumps([kwargs["name"], path]))
"""


def test_two_checkouts_sharing_the_cache_do_not_rebuild_each_other(tmp_path):
    """Checkouts a/ and b/ hold the same source; processes loading a, b, then a again must reuse
    a's library (before, both used one folder and each process rebuilt it for its own path)."""
    import json
    built = {}
    for checkout in ("a", "b", "a"):
        kwargs = {**tiny_kwargs(tmp_path, checkout), "extra_cflags": ["-O2"]}
        done = run_python(LOAD_ONCE, json.dumps(kwargs), env={jit_build.CACHE_ENV: str(tmp_path / "cache")})
        assert done.returncode == 0, done.stderr[-3000:]
        name, path = json.loads(done.stdout.strip().splitlines()[-1])
        assert Path(path).name == name + ".so"            # never renamed "<name>_v1"
        stamp = Path(path).stat().st_mtime_ns
        if checkout in built:
            assert built[checkout] == (path, stamp), "a's library was rebuilt"
        built[checkout] = (path, stamp)
    assert Path(built["a"][0]).parent != Path(built["b"][0]).parent


def test_step_and_kernel_build_folders_separate_what_makes_builds_differ(tmp_path, monkeypatch):
    def locations():
        kwargs, plan = cpu_kernels.load_kwargs(), cuda_build.build_plan((8, 9))
        return (kwargs["name"], kwargs["build_directory"]), (plan.name, plan.build_directory)

    here = locations()
    assert locations() == here   # stable

    def check(what):
        for (name, folder), (here_name, here_folder) in zip(locations(), here):
            assert folder != here_folder and name != here_name, what

    # another checkout: the same bytes at another path
    other = tmp_path / "checkout" / "core"
    (other / "cuda").mkdir(parents=True)
    shutil.copy(cpu_kernels.SOURCE, other / "cpu_kernels.cpp")
    for name in cuda_build.SOURCE_NAMES:
        shutil.copy(cuda_build.SOURCE_DIR / name, other / "cuda" / name)
    with monkeypatch.context() as m:
        m.setattr(cpu_kernels, "SOURCE", str(other / "cpu_kernels.cpp"))
        m.setattr(cuda_build, "SOURCE_DIR", other / "cuda")
        check("another checkout")
    # another Python ABI, another torch, another compiler
    real_config_var = sysconfig.get_config_var
    with monkeypatch.context() as m:
        m.setattr(sysconfig, "get_config_var",
                  lambda name: ".cpython-399-x86_64-linux-gnu.so" if name == "EXT_SUFFIX" else real_config_var(name))
        check("another extension suffix")
    with monkeypatch.context() as m:
        m.setattr(sys.implementation, "cache_tag", "cpython-399")
        check("another Python")
    with monkeypatch.context() as m:
        m.setattr(torch, "__version__", "0.0.1")
        check("another torch")
    with monkeypatch.context() as m:
        m.setenv("CXX", "clang++")
        check("another compiler")
    # and the flags
    with monkeypatch.context() as m:
        m.setattr(cpu_kernels, "compiler_flags", lambda: ["-O2"])
        assert locations()[0][1] != here[0][1]


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl")
def test_where_the_file_system_cannot_lock_a_left_lock_is_waited_for_a_bounded_time(tmp_path, monkeypatch):
    """Some network file systems refuse flock (ENOLCK): a torch `lock` then cannot be told stale
    from live, so it is waited for up to the limit and then removed, never forever."""
    import errno
    import fcntl

    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    kwargs = tiny_kwargs(tmp_path)
    folder = Path(kwargs["build_directory"])
    folder.mkdir(parents=True)
    (folder / jit_build.TORCH_LOCK_NAME).write_text("")
    monkeypatch.setattr(fcntl, "flock", refuse)
    monkeypatch.setenv(jit_build.WAIT_ENV, "1")
    started = time.monotonic()
    with pytest.warns(RuntimeWarning, match="stale lock"):
        path, why = jit_build.compile_extension(kwargs, what="test library")
    assert path is not None, why
    assert 0.9 < time.monotonic() - started < 60
