"""tools/check_qt_libs.py (called by `make run`): the libraries Qt's xcb plugin lacks, found by the dynamic
loader, named with their Debian/Ubuntu and Fedora packages; it blocks only when xcb would be used."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_qt_libs  # noqa: E402

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                                reason="the xcb plugin and ldd are Linux's")
ABSENT = "librwkvmusic-absent-test.so.7"


def plugin_needing(tmp_path: Path, soname: str) -> Path:
    """A real shared library linked against `soname`, whose file is then removed (as on a fresh desktop)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the test library")
    libs = tmp_path / "libs"
    libs.mkdir()
    (tmp_path / "dep.c").write_text("int rwkv_dep(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text("int rwkv_dep(void);\nint rwkv_plugin(void) { return rwkv_dep(); }\n")
    subprocess.run([cc, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(libs / soname),
                    str(tmp_path / "dep.c")], check=True)
    plugin = tmp_path / "libqfake.so"
    subprocess.run([cc, "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", str(plugin), str(tmp_path / "plugin.c"),
                    f"-L{libs}", f"-l:{soname}"], check=True)
    (libs / soname).unlink()
    return plugin


def run_check(plugin: Path, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM",
                                                             "XDG_SESSION_TYPE")}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "check_qt_libs.py"), "--plugin", str(plugin)],
                          capture_output=True, text=True, env={**base, **env}, timeout=60)


@linux_only
def test_a_missing_library_blocks_only_when_xcb_would_be_used(tmp_path):
    plugin = plugin_needing(tmp_path, ABSENT)
    assert check_qt_libs.missing_libraries(plugin) == [ABSENT]
    on_x11 = run_check(plugin, DISPLAY=":0")
    assert on_x11.returncode == 1 and ABSENT in on_x11.stderr
    assert run_check(plugin, DISPLAY=":0", QT_QPA_PLATFORM="offscreen").returncode == 0
    assert run_check(plugin).returncode == 0  # headless: a note, never a stop
    assert run_check(plugin, DISPLAY=":0", WAYLAND_DISPLAY="wayland-0", XDG_SESSION_TYPE="wayland").returncode == 0


def test_the_libraries_of_the_report_map_to_their_packages():
    debian, fedora, unknown = check_qt_libs.packages_for(
        ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0", "libxkbcommon-x11.so.0",
         "libxcb-shape.so.0", "libxcb-xfixes.so.0", ABSENT])
    assert debian == ["libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0", "libxkbcommon-x11-0",
                      "libxcb-shape0", "libxcb-xfixes0"]
    assert fedora == ["xcb-util-wm", "xcb-util-keysyms", "xcb-util-cursor", "libxkbcommon-x11", "libxcb"]
    assert unknown == [ABSENT]
    text = check_qt_libs.advice(["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1" in text
    assert "sudo dnf install xcb-util-wm xcb-util-keysyms" in text


@linux_only
def test_the_real_plugin_check_agrees_with_the_dynamic_loader():
    plugin = check_qt_libs.xcb_plugin()
    if plugin is None:
        pytest.skip("this PySide6 has no xcb plugin")
    missing = check_qt_libs.missing_libraries(plugin)
    assert missing is not None
    for soname in check_qt_libs.PACKAGES:
        try:
            ctypes.CDLL(soname)
            loadable = True
        except OSError:
            loadable = False
        if soname in missing:
            assert not loadable, soname
    text = check_qt_libs.advice(missing) if missing else ""
    for soname in missing:
        for package in check_qt_libs.PACKAGES.get(soname, ()):
            assert package in text
