"""Layering rules that keep the app testable headless."""
import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "pytestqt", "pyqtgraph")


def _imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_sources_never_import_qt():
    offenders = {str(p.relative_to(ROOT)): sorted(_imported_modules(p) & set(QT_MODULES))
                 for p in (ROOT / "core").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def _loaded_by_importing(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """The `watched` modules (or packages) that a fresh interpreter has loaded after importing `modules`."""
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m in {watched!r} or m.split('.')[0] in {watched!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout)


def test_importing_every_core_module_loads_no_qt():
    modules = sorted(p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
                     for p in (ROOT / "core").rglob("*.py") if p.name != "__main__.py")
    assert _loaded_by_importing(modules, QT_MODULES) == []


def test_the_real_time_layer_never_loads_the_model_layer():
    """core.live's timing, ports, scheduler, player, capture and clock run beside a generator (and in the
    scheduler's child process): importing them must not pull in torch or the model. Only a jam that answers
    imports core.generate, at that moment."""
    modules = [f"core.live.{m}" for m in ("ports", "timing", "scheduler", "process", "player", "capture", "clock",
                                          "jam")] + ["core.live", "core.channels"]
    heavy = ("torch", "numpy", "core.model", "core.generate", "core.tokenizer", "core.wkv")
    assert _loaded_by_importing(modules, heavy) == []


# What users run: the two commands pyproject.toml installs and the modules run with `python -m` (torchrun).
ENTRY_POINTS = ("core.cli", "musicapp.__main__", "core.paths", "core.train")
LIBRARY_ONLY = ("core.evaluate",)  # model evaluation: used by tests and bench/ today, a module of the project


def _product_imports(name: str, path: pathlib.Path, modules: dict) -> set[str]:
    """The project modules `name` imports (relative imports resolved; importing a module loads its packages)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            named.add(base)
            named.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    for m in named:
        while m:
            if m in modules:
                found.add(m)
            m = m.rpartition(".")[0]
    return found


def test_what_users_install_is_what_the_product_runs():
    """Test and benchmark tooling (a jackd launcher, GPU training helpers) lives in tools/, not in the packages
    that `pip install .` installs: every module of core and musicapp is reached from an entry point."""
    modules = {}
    for package in ("core", "musicapp"):
        for p in (ROOT / package).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    reached, todo = set(), list(ENTRY_POINTS)
    while todo:
        m = todo.pop()
        if m not in reached and m in modules:
            reached.add(m)
            todo += _product_imports(m, modules[m], modules)
    unused = sorted(m for m in set(modules) - reached if not m.startswith(LIBRARY_ONLY))
    assert unused == [], f"installed but never run by the product: {unused}"
