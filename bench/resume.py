"""What a resumed run (`edgebench run --resume`) keeps of the rows it finds.

A finished row stays only while the files behind it are still there and unchanged: its artifact
(byte for byte what it measured) and the logits its accuracy and robustness figures, the report
and the explanations are computed from. Anything else is measured again.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.results import Row, file_inside, key_slug, read_run_document, repeated_row, row_key, row_name
from bench.results_schema import first_errors, validate_results

log = logging.getLogger("edgebench")


def load_results(run_dir: Path) -> dict[str, Any]:
    """results.json of an existing (possibly interrupted) run folder; UserError when missing or unreadable."""
    document = read_run_document(run_dir, check_schema=False)
    path = Path(run_dir) / "results.json"
    if not isinstance(document.get("config"), dict):
        raise UserError(f"{path} is not an edgebench results file (expected an object with a 'config' object and a 'rows' list)")
    # what the run wrote so far must be well-formed: a damaged row or field would otherwise fail half-way
    # through the resumed run, after its folder was marked as running again
    if errors := validate_results(document, partial=True):
        raise UserError(f"{path} cannot be resumed: it does not meet the results schema: {first_errors(errors)}")
    if twice := repeated_row(document.get("rows", [])):
        raise UserError(f"{path} cannot be resumed: it lists row {twice} twice")
    return document


def check_same_data(document: dict[str, Any], digests: dict[str, str], source: str) -> None:
    """UserError when the images a resumed run loads (from `source`) are not those it started with
    (an image folder edited, another --data-dir): its new rows would be trained and measured on
    other data than its kept rows. Runs recorded before the digests cannot tell."""
    recorded = (document.get("dataset") or {}).get("digests") or {}
    changed = [split for split, digest in digests.items() if recorded.get(split) not in (None, digest)]
    if changed:
        splits = ", ".join(changed[:-1]) + (" and " if len(changed) > 1 else "") + changed[-1]
        started = (document.get("dataset") or {}).get("source")
        raise UserError(f"the {splits} images from {source} are not those the run started with (from {started}); "
                        "its rows would mix two datasets: start a new run instead of resuming")


def file_digest(path: Path) -> str | None:
    """sha256 of a file, None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def artifact_changed(row: dict[str, Any], path: Path) -> bool:
    """Whether the file at `path` is not the one the row measured (by its recorded sha256; rows of runs
    from before the digest was recorded cannot tell, and count as unchanged)."""
    return bool(row.get("artifact_sha256")) and file_digest(path) != row["artifact_sha256"]


def files_present(row: dict[str, Any], run_dir: Path) -> bool:
    """Whether the files a finished row was measured from are still in the run folder: its artifact,
    unchanged where the row recorded its sha256, and for an ok row its saved logits (a deleted or
    replaced file makes the row describe something that is not on disk)."""
    if row.get("artifact"):
        path = file_inside(run_dir, row["artifact"])
        if path is None or artifact_changed(row, path):
            return False
    return _logits_present(row, run_dir)


def _logits_present(row: dict[str, Any], run_dir: Path) -> bool:
    """An ok row's saved logits (and its robustness logits when it has robustness figures) are there."""
    if row.get("status") != "ok":
        return True
    slug = key_slug(row_key(row))
    needed = [f"{slug}.npy"] + ([f"{slug}__robustness.npy"] if row.get("robustness") else [])
    return all((run_dir / "logits" / name).is_file() for name in needed)


def still_valid(finished: dict[str, Any], digest: str | None, new: Row, run_dir: Path) -> bool:
    """A finished row of a resumed variant still describes the cell exported again as `new`: the same
    artifact file, unchanged (sha256), or, for a row without an artifact, the same status and reason;
    and its logits are still there."""
    if finished.get("status") == "run_failed":  # a crash, timeout or memory limit may not recur: try again
        return False
    if not finished.get("artifact") and not new.artifact:
        return finished.get("status") == new.status and finished.get("reason") == new.reason
    if finished.get("artifact") != new.artifact or digest is None or new.artifact is None:
        return False
    made = new.artifact_sha256 or file_digest(run_dir / new.artifact)  # the export has hashed it already
    return made == digest and _logits_present(finished, run_dir)


def finished_variants(document: dict[str, Any], run_dir: Path) -> set[str]:
    """The variants a resumed run skips: finished ones whose rows' files are all still there and none of
    whose rows failed to run. One that lost an artifact or logits since, or has a run_failed row,
    leaves document["variants_done"] and is exported and measured again."""
    done = set(document.setdefault("variants_done", []))
    for row in document.get("rows", []):
        if row["variant"] not in done:
            continue
        if row.get("status") == "run_failed":
            why = f"failed to run ({row.get('reason')}), which may not happen again"
        elif not files_present(row, run_dir):
            why = "lost its logits or its artifact (deleted or changed)"
        else:
            continue
        log.warning("resume: %s %s: variant %s is exported and measured again", row_name(row), why, row["variant"])
        done.discard(row["variant"])
        document["variants_done"].remove(row["variant"])
    return done


def measured_files(rows: list[dict[str, Any]], variant: str, run_dir: Path) -> dict[tuple[str, ...], tuple[dict[str, Any], str | None]]:
    """{row key: (finished row, sha256 of the file it measured)} for a variant about to be exported
    again: the row's recorded artifact_sha256, or for rows from before it was recorded, the file as it
    is now (read before the export rewrites it)."""
    return {row_key(r): (r, _measured_digest(run_dir, r)) for r in rows if r["variant"] == variant}


def _measured_digest(run_dir: Path, row: dict[str, Any]) -> str | None:
    if row.get("artifact_sha256"):
        return row["artifact_sha256"]
    path = file_inside(run_dir, row.get("artifact"))
    return file_digest(path) if path is not None else None


def record_digests(finished: list[dict[str, Any]], made: list[Row], kept: set[tuple[str, ...]]) -> None:
    """A kept row of a run from before artifact_sha256 was recorded takes its re-export's digest (the
    export came out byte for byte as its file), so that `explain` can check its artifact from now on."""
    digests = {row.key: row.artifact_sha256 for row in made if row.key in kept}
    for row in finished:
        if not row.get("artifact_sha256") and digests.get(row_key(row)):
            row["artifact_sha256"] = digests[row_key(row)]
