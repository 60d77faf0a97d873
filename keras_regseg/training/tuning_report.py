"""The report of a tuning run: a table of the trials, best first, and the best configuration.

Written by :func:`keras_regseg.training.tuning.tune` into ``<run>/tuning/``:
``results.md`` (the table and a sentence comparing the best trial with the
default configuration, trial 0), ``results.json`` (the same with every trial's
final metrics) and ``best_config.yaml`` (a full configuration that
``TrainConfig.from_yaml`` reads; ``output`` is left ``null``).
"""

import dataclasses
import json
import os

import yaml

from keras_regseg.utils.files import atomic_write

__all__ = ["collect_rows", "first_trial_id", "format_value", "results_table", "TuningResult",
           "verdict", "write_results"]


@dataclasses.dataclass
class TuningResult:
    """What :func:`~keras_regseg.training.tuning.tune` returns.

    ``rows`` are the trials, best first (failed trials last), each a dict with
    ``trial``, ``values``, ``objective`` (``None`` if it failed), ``status``,
    ``default``, ``output``, ``metrics`` and ``message``.
    """

    output: str
    objective: str
    rows: list
    best_config: object
    table: str


def first_trial_id(oracle):
    """The id of the oracle's first trial (the default configuration), or None."""
    return oracle.start_order[0] if oracle.start_order else None


def _final_metrics(output):
    path = os.path.join(output, "metrics.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("final", {})


def collect_rows(search):
    """The trials of ``search`` as dicts, best first, failed trials last."""
    default_id = first_trial_id(search.oracle)
    rows = []
    for trial_id, trial in search.oracle.trials.items():
        completed = trial.status == "COMPLETED" and trial.score is not None
        output = search.trial_output(trial_id)
        rows.append({
            "trial": trial_id,
            "values": dict(trial.hyperparameters.values),
            "objective": float(trial.score) if completed else None,
            "status": trial.status,
            "default": trial_id == default_id,
            "output": output,
            "metrics": _final_metrics(output) if completed else {},
            "message": None if completed else (trial.message or "").strip()[-2000:] or None,
        })
    rows.sort(key=lambda r: (r["objective"] is None, -(r["objective"] or 0.0), r["trial"]))
    return rows


def results_table(rows, objective, keys):
    """A Markdown table of ``rows`` (see :func:`collect_rows`) with one column per key.

    >>> rows = [{"trial": "1", "values": {"lr": 0.02}, "objective": 0.8, "default": False,
    ...          "metrics": {"wall_s": 12.0}},
    ...         {"trial": "0", "values": {"lr": 0.01}, "objective": 0.7, "default": True,
    ...          "metrics": {"wall_s": 11.0}}]
    >>> print(results_table(rows, "miou", ["lr"]))
    | rank | trial | lr | miou | wall (s) | note |
    | --- | --- | --- | --- | --- | --- |
    | 1 | 1 | 0.02 | 0.8000 | 12 |  |
    | 2 | 0 | 0.01 | 0.7000 | 11 | default |
    """
    lines = ["| rank | trial | " + " | ".join(keys) + f" | {objective} | wall (s) | note |",
             "| --- | --- | " + " | ".join("---" for _ in keys) + " | --- | --- | --- |"]
    for rank, row in enumerate(rows, start=1):
        score = "failed" if row["objective"] is None else f"{row['objective']:.4f}"
        wall = row["metrics"].get("wall_s")
        note = "default" if row["default"] else ""
        values = [format_value(row["values"].get(key)) for key in keys]
        cells = [str(rank), row["trial"], *values, score,
                 "" if wall is None else f"{wall:.0f}", note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(rows, objective):
    """One sentence: the best trial against the default configuration."""
    done = [r for r in rows if r["objective"] is not None]
    if not done:
        return "No trial finished."
    best = done[0]
    default = next((r for r in done if r["default"]), None)
    if default is None:
        return f"Best: trial {best['trial']}, {objective} {best['objective']:.4f} (the default " \
               "configuration did not finish)."
    if best["default"]:
        return (f"The default configuration (trial {best['trial']}, {objective} "
                f"{best['objective']:.4f}) was not beaten.")
    gain = best["objective"] - default["objective"]
    return (f"Best: trial {best['trial']}, {objective} {best['objective']:.4f}: {gain:+.4f} over "
            f"the default configuration's {default['objective']:.4f}.")


def write_results(search, run_dir, base_config, tuner, objective):
    """Write ``tuning/results.md``, ``results.json``, ``best_config.yaml``; a :class:`TuningResult`."""
    folder = os.path.join(run_dir, "tuning")
    os.makedirs(folder, exist_ok=True)
    rows = collect_rows(search)
    keys = [hp.name for hp in search.oracle.hyperparameters.space]
    table = results_table(rows, objective, keys)
    summary = verdict(rows, objective)
    header = (f"# Tuning {base_config.method} on {base_config.data.name}\n\n"
              f"{len(rows)} trials ({tuner} search; trial {first_trial_id(search.oracle)} is the "
              f"default configuration); objective: validation {objective}, maximized.\n\n")
    atomic_write(os.path.join(folder, "results.md"),
                 lambda p: _write_text(p, header + table + "\n\n" + summary + "\n"))
    atomic_write(os.path.join(folder, "results.json"), lambda p: _write_text(p, json.dumps(
        {"method": base_config.method, "tuner": tuner, "objective": objective,
         "direction": "max", "summary": summary, "trials": rows}, indent=2)))
    best_config = None
    done = [r for r in rows if r["objective"] is not None]
    if done:
        best = done[0]
        best_config = base_config.override(source="<best tuning trial>", **best["values"])
        best_config = dataclasses.replace(best_config, output=None)
        comment = (f"# Best of the tuning in {run_dir}: trial {best['trial']}, validation "
                   f"{objective} {best['objective']:.4f}.\n# {summary}\n")
        text = comment + yaml.safe_dump(best_config.to_dict(), sort_keys=False)
        atomic_write(os.path.join(folder, "best_config.yaml"), lambda p: _write_text(p, text))
    return TuningResult(output=run_dir, objective=objective, rows=rows, best_config=best_config,
                        table=table + "\n\n" + summary)


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def format_value(value):
    """Floats to 4 significant digits, anything else as ``str``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
