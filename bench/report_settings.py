"""The report's "Latency at every setting" section: each ok row's p50 (and images per second) at
every (batch size, threads) setting the run measured. The summary table shows batch 1 at the
fewest threads only; a run configured with more settings (`[benchmark] batch_sizes`, `threads`)
shows the rest here, and a run without batch 1 shows its latencies only here.
"""

from __future__ import annotations

from typing import Any

from bench import report_table
from bench.results import runtime_label


def _settings(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Every (batch size, threads) any ok row was timed at, fewest threads and smallest batch first."""
    found = {(e["batch_size"], e["threads"]) for r in rows if r.get("status") == "ok" for e in r.get("latency") or []
             if isinstance(e.get("batch_size"), int) and isinstance(e.get("threads"), int)}
    return sorted(found, key=lambda s: (s[1], s[0]))


def settings_table(document: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """(headings, cells) of the section, or None when the summary table already shows every latency
    (the run timed batch 1 at one thread count only)."""
    rows = [r for r in document.get("rows") or [] if r.get("status") == "ok" and r.get("latency")]
    settings = _settings(rows)
    if not settings or settings == [(1, settings[0][1])]:
        return None
    headings = ["row"] + [f"b{b} t{t} p50 ms" + ("" if b == 1 else " (img/s)") for b, t in settings]
    cells = []
    for row in rows:
        by_setting = {(e.get("batch_size"), e.get("threads")): e for e in row["latency"]}
        line = [f"{row.get('variant')} {row.get('format')}/{row.get('precision')} {runtime_label(row)}"]
        for b, t in settings:
            p50 = by_setting.get((b, t), {}).get("p50")
            if not isinstance(p50, (int, float)) or p50 <= 0:
                line.append("-")
            else:
                line.append(f"{p50:.3f}" if b == 1 else f"{p50:.3f} ({b / p50 * 1e3:,.0f})")
        cells.append(line)
    return headings, cells


INTRO = ("The batch-1 p50 at the fewest threads is the summary table's; these are every setting the run "
         "timed (batch size b, threads t), each from its own samples.")


TITLE = "Latency at every setting"


def markdown_section(document: dict[str, Any]) -> list[str]:
    table = settings_table(document)
    return [] if table is None else report_table.markdown_section(TITLE, INTRO, *table)


def html_section(document: dict[str, Any]) -> str:
    table = settings_table(document)
    return "" if table is None else report_table.html_section(TITLE, INTRO, *table)
