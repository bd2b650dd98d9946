"""report.html and report.md of a run, from results.json alone (plus the files it references).

report.html is self-contained and works offline: inline CSS, no scripts, every image embedded
as a base64 data URI, every string from results.json HTML-escaped. The charts are also written
to <run>/plots/*.png, which report.md links to (so the Markdown renders on GitHub too).

Example:
    >>> from bench.report import write_report
    >>> html_path, md_path = write_report(Path("results/20260101T000000Z-abcd1234"))
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any, Iterator

from bench import report_charts as charts
from bench import report_deploy, report_passes, report_settings
from bench.environment import int8_dot_product
from bench.report_notes import run_notes
from bench.report_table import STATUS_LABELS, Line, columns_for, explanation_failures, markdown_table, reasons, summary_lines
from bench.files import atomic_write_bytes
from bench.results import batch1_latency, file_inside, read_run_document

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1500px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12.5px}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;position:sticky;top:0}th.t{text-align:left}td.t{text-align:left}.wrap{overflow-x:auto}
tr.ref td{font-weight:600}.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:11.5px;cursor:help}
.ok{background:#d8f3dc}.export_failed,.run_failed{background:#ffd6d6}.validation_failed{background:#ffe8c2}.skipped{background:#e6e6e6}
.note{background:#fff6d5;border-left:4px solid #e0b100;padding:6px 10px;margin:8px 0}
img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}figcaption{color:#555;font-size:12px}
dl.cols{columns:2;font-size:12px}dl.cols dt{font-weight:600;display:inline}dl.cols dd{display:inline;margin:0 0 0 .3em}
dl.cols dd:after{content:"";display:block}code{font-size:12px}
table.passes td.steps{white-space:normal;max-width:760px}table.passes ol{margin:0;padding-left:1.3em}
"""


def write_report(run_dir: Path, *, check_schema: bool = False, document: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write <run_dir>/report.html and report.md (and plots/*.png) from results.json; return both paths.

    Tolerant of malformed blocks by default (the end of a run); `edgebench report` passes
    check_schema=True so a hand-edited or foreign file is refused in one line instead, or the
    `document` it has already read (and checked)."""
    run_dir = Path(run_dir)
    document = document if document is not None else read_run_document(run_dir, check_schema=check_schema)
    lines = summary_lines(document)
    classes = [str(c) for c in (document.get("dataset") or {}).get("classes") or []]
    with charts.names_as_written():
        figures = {
            "accuracy_latency": charts.accuracy_latency_chart(lines),
            "size_accuracy": charts.size_accuracy_chart(lines),
            "latency_distributions": charts.latency_distribution_chart(lines, run_dir),
            "per_class_delta": charts.per_class_delta_chart(lines, classes),
        }
    kept = None
    if figures["latency_distributions"] is None:
        figures["latency_distributions"] = kept = _latency_chart_drawn_earlier(lines, run_dir)
    for name, png in figures.items():
        if png is None:  # nothing to draw from (e.g. no ok rows any more): no stale chart beside the report
            (run_dir / "plots" / f"{name}.png").unlink(missing_ok=True)
        elif png is not kept:  # a kept chart is on disk as it is
            atomic_write_bytes(run_dir / "plots" / f"{name}.png", png)
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    atomic_write_bytes(html_path, render_html(document, lines, figures, run_dir).encode())
    atomic_write_bytes(md_path, render_markdown(document, lines, figures, run_dir).encode())
    return html_path, md_path


def _latency_chart_drawn_earlier(lines: list[Line], run_dir: Path) -> bytes | None:
    """The latency chart already in plots/, when the raw samples of every ok row that recorded them
    were removed (e.g. a committed example keeps only the results) and the chart says it was drawn
    from exactly those rows as they are now; else None (a chart of other rows is not shown)."""
    recorded = [(line, entry["samples_file"]) for line in lines if line.status == "ok"
                if (entry := batch1_latency(line.row) or {}).get("samples_file")]
    path = run_dir / "plots" / "latency_distributions.png"
    if not recorded or not path.is_file() or any((run_dir / samples).is_file() for _, samples in recorded):
        return None
    png = path.read_bytes()
    return png if charts.drawn_from(png) == charts.latency_rows_fingerprint([line for line, _ in recorded]) else None


def explanation_figures(document: dict[str, Any], lines: list[Line]) -> list[tuple[str, str]]:
    """(caption, path relative to the run) of every PNG the explanation/robustness stages recorded.

    Walks the blocks instead of naming keys, so a new plot field shows up without a change here.
    """
    found: list[tuple[str, str]] = []
    for block in ("explanation_set", "robustness"):
        found += [(f"{block}: {key}", path) for key, path in _png_fields(document.get(block), "")]
    for line in lines:
        block = line.row.get("explanation") or {}
        if block.get("shared_from"):  # the same figure is already shown for the row it is shared from
            continue
        found += [(f"{line.label}: {key}", path) for key, path in _png_fields(block, "")]
    seen: set[str] = set()
    return [(caption, path) for caption, path in found if not (path in seen or seen.add(path))]


def _png_fields(block: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(block, dict):
        for key, value in block.items():
            yield from _png_fields(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(block, list):
        for i, value in enumerate(block):
            yield from _png_fields(value, f"{prefix}[{i}]")
    elif isinstance(block, str) and block.lower().endswith(".png"):
        yield prefix, block


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _figure_html(png: bytes | None, caption: str) -> str:
    if png is None:
        return f"<p><em>{escape(caption)}: nothing to draw for this run.</em></p>"
    return f"<figure>{_img(png, caption)}<figcaption>{escape(caption)}</figcaption></figure>"


def _status_badge(line: Line) -> str:
    label, symbol = STATUS_LABELS.get(line.status, (line.status, "?"))
    title = "ok" if line.status == "ok" else f"{label}: {line.row.get('reason') or 'no reason recorded'}"
    return f'<span class="badge {escape(line.status)}" title="{escape(title)}">{escape(symbol)} {escape(label)}</span>'


def _table_html(lines: list[Line]) -> str:
    columns = columns_for(lines)
    text_columns = ("variant", "format", "precision", "runtime")
    head = '<th class="t">status</th>' + "".join(
        f'<th{" class=t" if h in text_columns else ""} title="{escape(help_)}">{escape(h)}</th>' for h, help_, _ in columns)
    body = []
    for line in lines:
        cells = []
        for header, _, fn in columns:
            text = escape(fn(line))
            if header == "variant":
                lineage = " → ".join(line.row.get("lineage") or []) or "baseline (no passes)"
                cells.append(f'<td class="t" title="{escape(lineage)}">{text}</td>')
            else:
                cells.append(f'<td class="t">{text}</td>' if header in text_columns else f"<td>{text}</td>")
        body.append(f'<tr class="{"ref" if line.is_reference else ""}"><td class="t">{_status_badge(line)}</td>{"".join(cells)}</tr>')
    legend = " ".join(f'<span class="badge {s}">{escape(sym)} {escape(label)}</span>' for s, (label, sym) in STATUS_LABELS.items())
    columns_help = "".join(f"<dt>{escape(h)}</dt><dd>{escape(help_)}</dd>" for h, help_, _ in columns)
    return (f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
            f"<p>Status: {legend} (hover a status for its reason; bold: the reference baseline row)</p>"
            f'<dl class="cols">{columns_help}</dl>')


def _reasons_html(lines: list[Line]) -> str:
    items = [f"<li><b>{escape(STATUS_LABELS.get(line.status, (line.status, ''))[0])}</b>: {escape(line.label)}: "
             f"<code>{escape(reason)}</code></li>" for line, reason in reasons(lines)]
    html = f"<h3>Rows that are not ok</h3><ul>{''.join(items)}</ul>" if items else "<p>Every row is ok.</p>"
    failed = [f"<li>{escape(line.label)}: <code>{escape(reason)}</code></li>" for line, reason in explanation_failures(lines)]
    return html + (f"<h3>Explanations that failed</h3><ul>{''.join(failed)}</ul>" if failed else "")


def _environment(document: dict[str, Any]) -> list[tuple[str, str]]:
    env = document.get("environment") or {}
    cpu, git = env.get("cpu") or {}, env.get("git") or {}
    bench_cfg = (document.get("config") or {}).get("benchmark") or {}
    threads = sorted({e.get("threads") for line in document.get("rows") or [] for e in line.get("latency") or [] if e.get("threads")})
    gpu = env.get("gpu")
    items = [("CPU", f"{cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} logical cores"),
             ("ISA flags", " ".join(cpu.get("flags") or []) or "-"),
             ("int8 dot product", {True: "yes", False: "no", None: "unknown"}[int8_dot_product(cpu)]),
             ("threads measured", ", ".join(map(str, threads or bench_cfg.get("threads") or [])) or "-"),
             ("GPU", f"{gpu.get('name')} ×{gpu.get('count')} (CUDA {gpu.get('cuda')})" if isinstance(gpu, dict) else "none"),
             ("Python / platform", f"{env.get('python', '?')} on {env.get('platform', '?')}"),
             ("git", f"{git.get('commit', '?')}{' (dirty)' if git.get('dirty') else ''}" if git else "unknown")]
    items += [(name, str(version)) for name, version in sorted((env.get("packages") or {}).items())]
    return items


def _run_facts(document: dict[str, Any]) -> str:
    data = document.get("dataset") or {}
    return (f"run {document.get('run_id', '?')}, created {document.get('created', '?')}; dataset {data.get('name', '?')} "
            f"({data.get('test_size', '?')} test images, {len(data.get('classes') or [])} classes); "
            f"baseline variant '{document.get('baseline', '?')}'")


def render_html(document: dict[str, Any], lines: list[Line], figures: dict[str, bytes | None], run_dir: Path) -> str:
    """The whole report.html as a string."""
    parts = [f"<h1>edgebench report: {escape(str(document.get('run_id', '?')))}</h1>",
             f"<p>{escape(_run_facts(document))}</p>"]
    parts += [f'<div class="note">{escape(note)}</div>' for note in run_notes(document)]
    parts += ["<h2>Summary</h2>", _table_html(lines), _reasons_html(lines), report_settings.html_section(document),
              report_deploy.html_section(document), report_passes.html_section(document),
              "<h2>Trade-offs</h2>",
              _figure_html(figures.get("accuracy_latency"), "Accuracy vs p50 latency at batch 1, Pareto frontier in red"),
              _figure_html(figures.get("size_accuracy"), "Accuracy vs artifact size, Pareto frontier in red"),
              "<h2>Latency distributions</h2>",
              _figure_html(figures.get("latency_distributions"), "Raw batch-1 latency samples per row"),
              "<h2>Per-class accuracy vs the baseline</h2>",
              _figure_html(figures.get("per_class_delta"), "Per-class top-1 minus the reference baseline, pt")]
    explained, missing = [], []
    for caption, relative in explanation_figures(document, lines):
        path = file_inside(run_dir, relative)
        if path is None:
            missing.append(f"{caption}: {relative}")
        else:
            explained.append(_figure_html(path.read_bytes(), caption))
    if explained or missing:
        parts += ["<h2>Explanations</h2>", *explained]
        if missing:
            parts.append("<p>Listed in results.json but not found:</p><ul>"
                         + "".join(f"<li><code>{escape(m)}</code></li>" for m in missing) + "</ul>")
    parts += ["<h2>Environment</h2>", "<table>" + "".join(f'<tr><td class="t">{escape(k)}</td><td class="t">{escape(v)}</td></tr>'
                                                         for k, v in _environment(document)) + "</table>"]
    title = escape(f"edgebench {document.get('run_id', '')}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def render_markdown(document: dict[str, Any], lines: list[Line], figures: dict[str, bytes | None], run_dir: Path) -> str:
    """report.md: the same summary table as GitHub Markdown, the status reasons, links to the plots."""
    out = [f"# edgebench report: {document.get('run_id', '?')}", "", _run_facts(document), ""]
    for note in run_notes(document):
        out += [f"> **Note:** {note}", ""]  # the blank line keeps each note its own quote
    out += ["## Summary", "", *markdown_table(lines), ""]
    out += ["Status: " + ", ".join(f"{sym} {label}" for label, sym in STATUS_LABELS.values()) + ". Columns: "
            + "; ".join(f"**{h}**: {help_}" for h, help_, _ in columns_for(lines)) + ".", ""]
    not_ok = reasons(lines)
    if not_ok:
        out += ["### Rows that are not ok", ""]
        for line, reason in not_ok:
            code = reason.replace("`", "'")  # a backtick would end the inline code span
            out.append(f"- **{STATUS_LABELS.get(line.status, (line.status, ''))[0]}** {line.label}: `{code}`")
        out.append("")
    failed = explanation_failures(lines)
    if failed:
        out += ["### Explanations that failed", ""]
        out += [f"- {line.label}: `{reason.replace('`', chr(39))}`" for line, reason in failed] + [""]
    out += report_settings.markdown_section(document)
    out += report_deploy.markdown_section(document)
    out += report_passes.markdown_section(document)
    drawn = [(name, caption) for name, caption in (("accuracy_latency", "Accuracy vs latency"), ("size_accuracy", "Accuracy vs size"),
                                                   ("latency_distributions", "Latency distributions"),
                                                   ("per_class_delta", "Per-class accuracy vs the baseline")) if figures.get(name)]
    if drawn:
        out += ["## Charts", ""] + [f"![{caption}](plots/{name}.png)" for name, caption in drawn] + [""]
    shown = [(c, r) for c, r in explanation_figures(document, lines) if file_inside(run_dir, r)]
    if shown:
        out += ["## Explanations", ""] + [f"![{caption}]({relative})" for caption, relative in shown] + [""]
    out += ["## Environment", ""] + [f"- {k}: {v}" for k, v in _environment(document)]
    return "\n".join(out) + "\n"
