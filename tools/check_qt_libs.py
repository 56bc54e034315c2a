"""Check that the system libraries Qt's xcb plugin (the X11 window system) needs are installed, and name
the packages that provide the missing ones. `make run` calls it before starting the app.

    python tools/check_qt_libs.py [--plugin PATH]

Qt aborts at start-up when one is missing, with a message that names only libxcb-cursor0 (even when that
one is installed and libxcb-icccm4 or libxcb-keysyms1 is missing). The dynamic loader is asked (`ldd` on
PySide6's libqxcb.so, which follows every dependency) rather than a fixed list, so the answer is true
for the installed Qt. Exit status: 1 when the app would use xcb and could not start; otherwise 0, with a
note when libraries are missing but xcb is not in use now (QT_QPA_PLATFORM=offscreen, no display).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora package)
PACKAGES = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libSM.so.6": ("libsm6", "libSM"),
    "libICE.so.6": ("libice6", "libICE"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
}


def xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin, found without importing Qt (which could abort)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.origin:
        return None
    plugin = Path(spec.origin).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(elf: Path) -> list[str] | None:
    """Sonames the dynamic loader cannot find for `elf` or anything it needs; None when ldd cannot tell."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        out = subprocess.run([ldd, str(elf)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    missing: list[str] = []
    for line in out.stdout.splitlines():
        name, _, where = line.strip().partition("=>")
        if where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def packages_for(sonames: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(Debian/Ubuntu packages, Fedora packages, sonames no table entry names), each without repeats."""
    debian: list[str] = []
    fedora: list[str] = []
    unknown: list[str] = []
    for soname in sonames:
        if soname not in PACKAGES:
            unknown.append(soname)
            continue
        deb, fed = PACKAGES[soname]
        debian += [deb] if deb not in debian else []
        fedora += [fed] if fed not in fedora else []
    return debian, fedora, unknown


def xcb_in_use(env) -> bool:
    """Would Qt start on xcb now? Not with another platform asked for, nor without an X display, nor in a
    Wayland session (Qt 6 tries its Wayland plugin first there)."""
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0].strip()
    if platform and platform != "xcb":
        return False
    if not env.get("DISPLAY"):
        return False
    if not platform and env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland":
        return False
    return True


def advice(missing: list[str]) -> str:
    debian, fedora, unknown = packages_for(missing)
    lines = [f"Qt's X11 (xcb) plugin needs system libraries that are missing: {', '.join(missing)}."]
    if debian:
        lines.append(f"  Debian/Ubuntu: sudo apt install {' '.join(debian)}")
    if fedora:
        lines.append(f"  Fedora:        sudo dnf install {' '.join(fedora)}")
    if unknown:
        lines.append(f"  (install the package that provides {', '.join(unknown)})")
    return "\n".join(lines)


def main(argv=None, env=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plugin", help="the Qt platform plugin to check (default: PySide6's libqxcb.so)")
    args = p.parse_args(argv)
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return 0  # xcb is Linux's; macOS and Windows use their own plugins
    plugin = Path(args.plugin) if args.plugin else xcb_plugin()
    if plugin is None:
        print("check_qt_libs: PySide6's xcb plugin was not found; skipping the check.", file=sys.stderr)
        return 0
    missing = missing_libraries(plugin)
    if not missing:
        return 0
    if xcb_in_use(env):
        print(advice(missing), file=sys.stderr)
        return 1
    print(advice(missing) + "\n  (not needed now: no X display, or QT_QPA_PLATFORM is not xcb)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
