"""One helper for the user's data folder and the caches (core.paths), used by the app, the model library
and the just-in-time builds."""
from __future__ import annotations

import sys

from core import library, paths
from core.network import jit_build


def test_the_app_the_library_and_the_builds_share_one_data_folder_and_one_cache(monkeypatch, tmp_path):
    from musicapp.settings import AppPaths

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(jit_build.CACHE_ENV, raising=False)
    assert paths.user_data_dir() == tmp_path / "data" / "rwkv-music"
    assert library.default_user_dir() == AppPaths.default().user_data == paths.user_data_dir()
    assert paths.cache_dir("cuda") == tmp_path / "cache" / "rwkv-music" / "cuda"
    assert jit_build.cache_root("cpu-step") == paths.cache_dir("cpu-step").resolve()


def test_on_windows_user_data_is_where_the_app_always_kept_it(monkeypatch, tmp_path):
    """Qt's generic data location on Windows is %LOCALAPPDATA% (the library used to say %APPDATA%)."""
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    assert paths.user_data_dir() == library.default_user_dir() == tmp_path / "Local" / "rwkv-music"


def test_the_token_cache_is_in_the_one_cache_folder_where_it_always_was(monkeypatch, tmp_path):
    from core.training import data

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "rwkv-music" / "tokens"  # existing caches stay
    monkeypatch.setenv("XDG_CACHE_HOME", "~/caches")  # a home-relative setting means the same folder for both
    assert data.default_cache_dir() == paths.cache_dir("tokens") == tmp_path / "home" / "caches/rwkv-music/tokens"
