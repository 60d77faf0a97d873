"""Shared pieces of the benchmark scripts: arguments, timing, table printing, JSON."""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def parser(description):
    """An argument parser with the two flags every benchmark accepts."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--quick", action="store_true", help="reduced run (under a minute)")
    result.add_argument("--json", help="also write the figures to this JSON file")
    return result


def limit_threads(threads):
    """Run TensorFlow on ``threads`` cores (``None``: all); call before TensorFlow starts."""
    if threads:
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
            os.environ[name] = str(threads)


def median_time(function, repeats, warmup=1):
    """Median wall time of ``function()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def short_path(path, parts=3):
    """The last ``parts`` parts of a path: ``ccnn_tags/seed0/model.keras``."""
    return "/".join(os.path.normpath(path).split(os.sep)[-parts:])


def class_names(source):
    """A data source's class names, ``class 0, class 1, ...`` where it has none."""
    return list(getattr(source, "class_names", ()) or
                (f"class {k}" for k in range(source.num_classes)))


def print_table(headers, rows):
    """Print rows as an aligned text table."""
    cells = [[str(h) for h in headers]] + [[_format(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(value.rjust(width) for value, width in zip(row, widths)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def write_json(path, values):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2)
            f.write("\n")
        print(f"wrote {path}")


def _format(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)
