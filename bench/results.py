"""Result rows, the run folder and its files: results.json, results.csv, raw latency samples.

Every file is written atomically (temp file, fsync, rename), and results.json is rewritten as
soon as a row finishes, so an interrupted run never loses a finished row or leaves half a file.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import UserError
from bench.files import atomic_write_bytes
from bench.results_schema import first_errors, validate_results

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 1
STATUSES = ("ok", "export_failed", "validation_failed", "run_failed", "skipped")


_FILE_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
KEY_FIELDS = ("variant", "format", "precision", "runtime", "device")  # what makes a row one cell


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """Row.key of a row read from results.json (rows written before devices existed are on the CPU)."""
    return tuple(str(row.get(k, "cpu" if k == "device" else "")) for k in KEY_FIELDS)


def key_slug(key: tuple[str, ...]) -> str:
    """A file-name-safe id of a row from its key: how its logits, samples and plots are named.

    The config only allows such names; a results.json edited by hand (a variant named '../x') is
    refused here rather than made to write outside the run folder."""
    parts = [part.replace(":", "") for part in key]  # cuda:0 -> cuda0
    if unsafe := [part for part in parts if not _FILE_NAME_PART.fullmatch(part)]:
        raise UserError(f"row {'/'.join(key)}: {unsafe[0]!r} cannot be part of a file name (letters, digits, '-', '_' "
                        "and '.' only, not first); was results.json edited?")
    return "__".join(parts)


def _inside_run(run_dir: Path, relative: Any) -> Path | None:
    """The absolute path a results.json path names, or None when it lies outside the run folder."""
    path = (Path(run_dir) / str(relative)).resolve()
    return path if path.is_relative_to(Path(run_dir).resolve()) else None


def file_inside(run_dir: Path, relative: Any) -> Path | None:
    """The file a results.json path names, only if it exists inside the run folder (None otherwise:
    an edited path that points elsewhere reads as a missing file, never as someone else's)."""
    path = _inside_run(run_dir, relative) if relative else None
    return path if path is not None and path.is_file() else None


def artifact_path(run_dir: Path, row: dict[str, Any]) -> Path:
    """The row's artifact file, which must lie inside the run folder (results.json may have been edited)."""
    path = _inside_run(run_dir, row.get("artifact"))
    if path is None:
        raise UserError(f"row {row_name(row)}: its artifact {row.get('artifact')!r} lies outside the run folder")
    return path


@dataclass
class Row:
    """One (variant, format, precision, runtime, device) cell. A failure is a row with a status and reason."""

    variant: str
    lineage: list[str]
    format: str
    precision: str
    runtime: str
    device: str = "cpu"
    status: str = "ok"
    reason: str | None = None
    artifact: str | None = None
    artifact_sha256: str | None = None  # of the file this row measured: `explain` refuses a changed one
    input_spec: dict[str, Any] | None = None
    size_bytes: int | None = None
    size_gzip_bytes: int | None = None
    params: int | None = None
    macs: int | None = None
    accuracy: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    latency: list[dict[str, Any]] = field(default_factory=list)
    throughput: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    speedup_paired: dict[str, Any] | None = None  # interleaved timing against the baseline's row (bench.abtest)
    compression: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(getattr(self, k) for k in KEY_FIELDS)

    @property
    def slug(self) -> str:
        """A file-name-safe id of the row."""
        return key_slug(self.key)

    def fail(self, status: str, reason: str) -> "Row":
        assert status in STATUSES and status != "ok"
        self.status, self.reason = status, reason
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.input_spec is None:
            data.pop("input_spec")  # the schema wants an object when present
        return data


CSV_COLUMNS = ("variant", "format", "precision", "runtime", "device", "status", "reason", "size_bytes", "size_gzip_bytes",
               "params", "macs", "top1", "top1_ci_low", "top1_ci_high", "f1_macro", "agreement_with_baseline",
               "parity_max_abs_diff", "p50_ms_b1", "p99_ms_b1", "speedup_paired", "throughput_ips", "peak_rss_mb", "load_ms",
               "first_inference_ms", "lineage")


def row_name(row: dict[str, Any]) -> str:
    """'variant/format/precision/runtime': how `edgebench ab` and `speedup_paired.reference` name a row."""
    return "/".join(str(row.get(k)) for k in ("variant", "format", "precision", "runtime"))


def runtime_label(row: dict[str, Any]) -> str:
    """'runtime', or 'runtime/device' off the CPU: how the tables name where a row ran."""
    device = row.get("device", "cpu")
    return str(row.get("runtime")) + ("" if device in ("cpu", None) else f"/{device}")


def read_latency_samples(run_dir: Path, entry: dict[str, Any]) -> np.ndarray | None:
    """The raw per-call latencies (ms) a latency entry's `samples_file` names, as a flat float64 array;
    None when the entry names none, or the file is missing, unreadable or holds anything but positive,
    finite real numbers (a damaged or hand-made file is treated as absent, never as measurements)."""
    import numpy as np

    path = file_inside(run_dir, entry.get("samples_file"))
    if path is None:
        return None
    try:
        samples = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # truncated or not an .npy file
        return None
    if not isinstance(samples, np.ndarray) or samples.ndim != 1 or samples.dtype.kind not in "fiu" or not samples.size:
        return None
    samples = samples.astype(np.float64)
    return samples if bool(np.isfinite(samples).all() and (samples > 0).all()) else None


def batch1_latency(row: dict[str, Any]) -> dict[str, Any] | None:
    """The batch-1 entry with the fewest threads: the headline latency of a row."""
    entries = [e for e in row.get("latency") or [] if e["batch_size"] == 1]
    return min(entries, key=lambda e: e["threads"]) if entries else None


def csv_line(row: dict[str, Any]) -> dict[str, Any]:
    acc, lat = row.get("accuracy") or {}, batch1_latency(row) or {}
    ci = acc.get("top1_ci95") or [None, None]
    return {
        **{k: row.get(k) for k in ("variant", "format", "precision", "runtime", "device", "status", "reason",
                                   "size_bytes", "size_gzip_bytes", "params", "macs", "load_ms", "first_inference_ms")},
        "top1": acc.get("top1"), "top1_ci_low": ci[0], "top1_ci_high": ci[1], "f1_macro": acc.get("f1_macro"),
        "agreement_with_baseline": acc.get("agreement_with_baseline"),
        "parity_max_abs_diff": (row.get("parity") or {}).get("max_abs_diff"),
        "p50_ms_b1": lat.get("p50"), "p99_ms_b1": lat.get("p99"),
        "speedup_paired": (row.get("speedup_paired") or {}).get("speedup"),
        "throughput_ips": (row.get("throughput") or {}).get("images_per_s"),
        "peak_rss_mb": (row.get("memory") or {}).get("peak_rss_mb"),
        "lineage": " -> ".join(row.get("lineage") or []) or "baseline",
    }


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(csv_line(row))
    atomic_write_bytes(path, buffer.getvalue().encode())


def _loads_shallow(text: str) -> Any:
    """json.loads under Python's default recursion limit: absurdly deep nesting (a damaged or hostile
    file) is a RecursionError, never a C-stack overflow in a process where a library raised the limit."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(min(limit, 1000))
    try:
        return json.loads(text)
    finally:
        sys.setrecursionlimit(limit)


def read_run_document(run_dir: str | Path, *, check_schema: bool = True) -> dict[str, Any]:
    """results.json of a run folder, for every command that reads one (report, compare, explain, ab, --resume).

    UserError, in one line, when the folder or file is missing, not JSON, or (with check_schema) does not
    meet the results schema: a hand-edited or foreign file is named here instead of failing deep
    inside a report with a traceback. --resume reads an interrupted run, which may have no rows yet,
    so it checks only the outline.
    """
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if run_dir.is_file():
        raise UserError(f"{run_dir} is a file; pass the run folder that holds it ({run_dir.parent})")
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a file: not an edgebench run folder")
    if not path.is_file():
        raise UserError(f"{run_dir} is not an edgebench run folder: it has no results.json")
    try:
        document = _loads_shallow(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise UserError(f"{path} cannot be read as JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("rows", []), list):
        raise UserError(f"{path} is not an edgebench results file (expected an object with a 'rows' list)")
    if isinstance(version := document.get("schema_version"), int) and version > SCHEMA_VERSION:
        raise UserError(f"{path} has schema version {version}, newer than this edgebench reads ({SCHEMA_VERSION}); update edgebench")
    if check_schema and not document.get("rows") and (why := _no_rows_yet(run_dir, document)):
        raise UserError(why)
    if check_schema and (errors := validate_results(document)):
        raise UserError(f"{path} does not meet the results schema: {first_errors(errors)}")
    if check_schema and (twice := repeated_row(document["rows"])):  # a run writes each row once: a hand edit
        raise UserError(f"{path} lists row {twice} twice; reports and comparisons need each row once")
    return document


def _no_rows_yet(run_dir: Path, document: dict[str, Any]) -> str | None:
    """Why a run folder has no rows, in one line: it failed, is still running, or was interrupted
    before its first row (a schema error about an empty list would not say which). None for a file
    that says none of these: the schema check names what is wrong with it."""
    from bench.rundir import in_use  # bench.rundir writes through this module

    status = document.get("status")
    if status == "failed":
        return f"{run_dir}: the run failed before its first row ({document.get('error') or 'no error recorded'}); nothing to read"
    if in_use(run_dir):
        return f"{run_dir}: the run is still going and has no rows yet (its folder is in use by another edgebench process)"
    if status in ("running", "incomplete"):
        return f"{run_dir}: the run stopped before its first row; finish it with: edgebench run --resume {run_dir}"
    return None


def repeated_row(rows: list[dict[str, Any]]) -> str | None:
    """The name of the first row that appears twice (same variant, format, precision, runtime, device)."""
    seen: set[tuple[str, ...]] = set()
    for row in rows:
        key = row_key(row)
        if key in seen:
            return row_name(row)
        seen.add(key)
    return None
