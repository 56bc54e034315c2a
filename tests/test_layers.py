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
    heavy = ("torch", "numpy", "core.network.model", "core.generate", "core.tokenizer", "core.network.wkv")
    assert _loaded_by_importing(modules, heavy) == []


# What users run: the two commands pyproject.toml installs and the modules run with `python -m` (torchrun).
ENTRY_POINTS = ("core.cli", "musicapp.__main__", "core.paths", "core.training.train")
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


def _import_graph() -> dict[str, set[str]]:
    """Every module of core and musicapp -> the project modules it imports anywhere (lazy imports too), less its
    own packages (importing core.midi.pairing from core.midi.reader loads core.midi, which is already loading)."""
    modules = {}
    for package in ("core", "musicapp"):
        for p in (ROOT / package).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return {m: {d for d in _product_imports(m, p, modules) if d != m and not m.startswith(d + ".")}
            for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_through_others():
    """No import cycle in core or musicapp, counting the imports made inside functions: each package reads
    from the bottom up."""
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_network_never_imports_training():
    """core.network is the model and its files: inference loads it without the training code."""
    graph = _import_graph()
    assert {m: sorted(d for d in deps if d.startswith("core.training"))
            for m, deps in graph.items() if m.startswith("core.network") and any(
                d.startswith("core.training") for d in deps)} == {}


def test_no_test_module_imports_another():
    """Shared test helpers live in helper modules (tests/folders.py, tests/small_models.py...) or conftest: a
    test module imported by another would run its tests twice and tie the two together."""
    offenders = {}
    for p in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):  # "from tests.test_x import y" and "from tests import test_x"
                module = ("." * node.level) + (node.module or "")
                names = [module] + [f"{module}.{a.name}" for a in node.names]
            bad = [n for n in names if n.rpartition(".")[2].startswith("test_")]
            if bad:
                offenders[str(p.relative_to(ROOT))] = bad
    assert offenders == {}
