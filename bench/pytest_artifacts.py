"""pytest-benchmark over the artifacts of a finished run: one benchmark per ok row, grouped by variant.

edgebench's own timings live in results.json; this entry point re-times every deployed artifact
with pytest-benchmark, so its history, comparison and regression tooling work on edgebench runs:

    EDGEBENCH_RUN=results/<run-id> .venv/bin/python -m pytest bench/pytest_artifacts.py --benchmark-autosave
    .venv/bin/pytest-benchmark compare            # the saved history in .benchmarks/
    .venv/bin/pytest-benchmark compare 0001 0002 --group-by=group

Each benchmark loads the row's artifact with bench.runtimes.load(runtime, artifact, threads=1)
and times predict() on one test image (batch 1) prepared by the row's input_spec from
<run>/work/test_images.npy. extra_info carries the row key and the run's own p50, so the two
measurements can be set side by side.

The file is deliberately outside tests/ and not named test_*.py, so a plain `pytest` never
collects it; given explicitly without EDGEBENCH_RUN it skips with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

RUN_ENV = "EDGEBENCH_RUN"


def ok_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run that have an artifact to time (status ok, artifact and input_spec present);
    a results.json that fails the schema is a collection error naming it."""
    from bench.errors import UserError
    from bench.results import read_run_document

    try:
        document = read_run_document(run_dir)
    except UserError as exc:
        pytest.fail(str(exc), pytrace=False)
    return [r for r in document.get("rows") or []
            if r.get("status") == "ok" and r.get("artifact") and r.get("input_spec")]


def _run_dir() -> Path | None:
    value = os.environ.get(RUN_ENV)
    if not value:
        return None
    run_dir = Path(value)
    if not (run_dir / "results.json").is_file():
        # a collection error, not a skip: the user asked for this run and would otherwise see "0 tests"
        pytest.fail(f"{RUN_ENV}={value} has no results.json (expected a run folder such as results/<run-id>)", pytrace=False)
    return run_dir


RUN_DIR = _run_dir()
if RUN_DIR is None:
    pytest.skip(f"set {RUN_ENV}=results/<run-id> to benchmark the artifacts of a run", allow_module_level=True)
ROWS = ok_rows(RUN_DIR)


def _row_id(row: dict[str, Any]) -> str:
    from bench.results import row_key

    return "-".join(row_key(row))


@pytest.fixture(scope="module")
def raw_image() -> np.ndarray:
    """The first test image of the run as uint8 (1, C, H, W): every row times the same input."""
    path = RUN_DIR / "work" / "test_images.npy"
    if not path.is_file():
        pytest.skip(f"{path} is missing (the run folder was copied without work/)")
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # truncated, not an .npy, or an object array (never unpickled)
        pytest.fail(f"{path} cannot be read as the run's test images ({exc})", pytrace=False)
    # one image the run's artifacts take (uint8, N x C x H x W): an edited file would time something else
    if images.ndim != 4 or not len(images) or images.dtype != np.uint8:
        pytest.fail(f"{path} holds {images.dtype} data of shape {images.shape}; expected the run's uint8 test images", pytrace=False)
    return np.ascontiguousarray(images[:1])


@pytest.mark.parametrize("row", ROWS, ids=[_row_id(r) for r in ROWS])
def test_artifact_latency(benchmark: Any, row: dict[str, Any], raw_image: np.ndarray) -> None:
    """Time predict() at batch 1, 1 thread, for one row; checks the output has one logit row."""
    from bench import runtimes
    from bench.artifacts import check_artifact
    from bench.inputs import prepare_input
    from bench.errors import UserError
    from bench.results import artifact_path, batch1_latency
    from bench.resume import artifact_changed

    spec = runtimes.RUNTIMES.get(row["runtime"])
    if spec is None or not runtimes.is_installed(spec):
        pytest.skip(f"runtime {row['runtime']} is not available here")
    device = row.get("device", "cpu")
    if device.startswith("cuda") and (why := runtimes.cuda_reason(row["runtime"])):
        pytest.skip(why)
    try:
        artifact = artifact_path(RUN_DIR, row)
    except UserError as exc:  # an edited results.json pointing outside the run folder
        pytest.fail(str(exc), pytrace=False)
    if not artifact.is_file():
        pytest.skip(f"{artifact} is missing (model files are not kept with copied runs)")
    check_artifact(artifact, row["format"])  # a damaged file fails in one line before a native loader sees it
    if artifact_changed(row, artifact):  # its timings would be filed under a row that measured another file
        pytest.fail(f"{artifact} is not the file the run measured (its sha256 changed)", pytrace=False)
    predict = runtimes.load(row["runtime"], artifact, threads=1, device=device)
    x = prepare_input(raw_image, row["input_spec"])
    predict(x)  # first call outside the timing: lazy init is not steady-state latency
    benchmark.group = row["variant"]
    own = batch1_latency(row) or {}
    benchmark.extra_info.update({"format": row["format"], "precision": row["precision"], "runtime": row["runtime"],
                                 "device": device, "artifact": row["artifact"], "threads": 1, "batch_size": 1,
                                 "edgebench_p50_ms": own.get("p50"), "edgebench_threads": own.get("threads")})
    out = benchmark(predict, x)
    assert np.asarray(out).shape[0] == 1
