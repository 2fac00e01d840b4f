"""The intrusion-detection section of a run's report.md: data, per-class scores and confusion matrices."""
from __future__ import annotations

from typing import Any


def _f(value: float) -> str:
    return "n/a" if value != value else f"{value:.4f}"


def render_details(data: dict[str, Any], engines: dict[str, dict[str, Any]]) -> str:
    """Markdown for the data summary and, per evaluated engine, the per-class table and confusion matrix."""
    lines = ["## Data", "",
             f"Source `{data.get('source')}`; windows of {data.get('window')} frames ({data.get('context')} context, "
             f"{data.get('tokens_per_window')} tokens), labelled by their last frame; each capture split in time "
             "(train / val / test with a gap).", "",
             "| capture | attack | frames | injected | seconds | malformed skipped |", "|---|---|---:|---:|---:|---:|"]
    for c in data.get("captures", []):
        lines.append(f"| {c['name']} | {c['attack'] or 'none'} | {c['frames']:,} | {c['injected']:,} | "
                     f"{c['seconds']:.1f} | {c['malformed_skipped']} |")
    lines += ["", "| split | " + " | ".join(next(iter(data.get("splits", {}).values()), {})) + " |",
              "|---|" + "---:|" * len(next(iter(data.get("splits", {}).values()), {}))]
    for name, counts in data.get("splits", {}).items():
        lines.append(f"| {name} | " + " | ".join(f"{n:,}" for n in counts.values()) + " |")
    lines += ["", "## Detection by class (test split)", "",
              "Each attack class against the rest; `attack` is any attack against normal. Fuzzy is the hard "
              "case: DoS and spoofing are separable by ID and payload alone.", "",
              "| engine | class | precision | recall | F1 | FNR | FPR | support |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for engine, report in engines.items():
        rows = [(name, report["classes"][name]) for name in report["class_names"][1:]] + [("attack", report["attack"])]
        for name, s in rows:
            lines.append(f"| {engine} | {name} | {_f(s['precision'])} | {_f(s['recall'])} | {_f(s['f1'])} | "
                         f"{_f(s['fnr'])} | {_f(s['fpr'])} | {int(s['support']):,} |")
    lines += ["", "## Confusion matrices (rows: true class, columns: predicted)", ""]
    for engine, report in engines.items():
        names = report["class_names"]
        lines += [f"**{engine}** (error rate {_f(report['attack']['error_rate'])}, accuracy "
                  f"{_f(report['accuracy'])})", "", "| true \\ predicted | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        lines += [f"| {names[i]} | " + " | ".join(f"{n:,}" for n in row) + " |"
                  for i, row in enumerate(report["confusion"])]
        lines.append("")
    return "\n".join(lines) + "\n"
