"""The longest functions of the packages (core, musicapp), as a table: where a newcomer will struggle first.

    python3 tools/longest_functions.py [--most N]
"""
from __future__ import annotations

import argparse
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def functions(root: pathlib.Path, packages=("core", "musicapp")) -> list[tuple[int, str, str]]:
    """(lines, qualified name, file:line) of every function and method, nested ones too."""
    rows = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            todo = [(ast.parse(path.read_text(), filename=str(path)), "")]
            while todo:
                node, prefix = todo.pop()
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        name = prefix + child.name
                        rows.append((child.end_lineno - child.lineno + 1, name,
                                     f"{path.relative_to(root)}:{child.lineno}"))
                        todo.append((child, name + "."))
                    elif isinstance(child, ast.ClassDef):
                        todo.append((child, prefix + child.name + "."))
    return sorted(rows, key=lambda r: (-r[0], r[2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--most", type=int, default=10)
    args = parser.parse_args()
    print("| lines | function | where |\n|---|---|---|")
    for lines, name, where in functions(ROOT)[:args.most]:
        print(f"| {lines} | `{name}` | {where} |")


if __name__ == "__main__":
    main()
