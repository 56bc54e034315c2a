"""Plain-text tables and JSON output for the benchmark scripts (bench/)."""
from __future__ import annotations

import math
import sys

import numpy as np


def cell(value, fmt: str) -> str:
    """One table cell: "-" for a missing or non-finite value; a "%" format prints a reduction as a change."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if fmt == "s":
        return str(value)
    if fmt.endswith("%"):  # a reduction in bits shows as a negative change
        return format(-value, fmt)
    return format(int(value) if fmt.endswith("d") else value, fmt)


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print `rows` under `title`; columns are (header, key in the row, format)."""
    cells = [[cell(r.get(key), fmt) for _, key, fmt in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, (h, _, _) in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, ((h, _, _), w) in enumerate(zip(columns, widths))))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths))))
    sys.stdout.flush()


def jsonable(obj):
    """`obj` with numpy values as Python ones and non-finite floats as None, ready for json.dumps."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, np.integer)):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
