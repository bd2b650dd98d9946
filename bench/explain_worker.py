"""Explain artifacts in an isolated process: `python -m bench.explain_worker JOBS.json`.

Why a subprocess: a native runtime that crashes on an artifact (ORT, LiteRT) kills this process,
not the run, and shap (numba, ~6 s to import) stays out of the main process. Why one process for
many rows rather than one per row: that import would otherwise be paid ~30 times per run.

Protocol: the worker runs the jobs in order and prints `DONE <i>` after writing job i's result
file. The parent (`run_jobs`) reads those lines as they come; if the process dies or hangs, the
job it was on becomes a failure and a fresh worker takes the remaining jobs.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def make_proba(predict: Callable[[np.ndarray], np.ndarray], spec: dict[str, Any], one_at_a_time: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Class probabilities of float (N, H, W, C) pixels through an artifact's own input recipe.

    one_at_a_time: call the runtime with batch 1 only. Dynamic quantization computes activation
    scales over the whole input tensor, so a batched call would let masked images change each
    other's outputs; at batch 1 the artifact behaves as deployed (and SHAP stays additive).
    """
    from bench.inputs import prepare_input
    from explain.shap_explain import softmax

    def proba(x: np.ndarray) -> np.ndarray:
        prepared = prepare_input(np.asarray(x, dtype=np.float32).transpose(0, 3, 1, 2), spec)
        if one_at_a_time:
            logits = np.concatenate([predict(prepared[i:i + 1]) for i in range(len(prepared))])
        else:
            logits = predict(prepared)
        return softmax(logits)

    return proba


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Explain one row's artifact on its image sets; write the values files; return the summary."""
    from bench.runtimes import load
    from explain.faithfulness import deletion_scores, summary
    from explain.shap_explain import explain_images, save_array

    started = time.perf_counter()
    raw = np.load(job["images"], mmap_mode="r", allow_pickle=False)
    predict = load(job["runtime"], job["artifact"], job["threads"], job["device"])
    load_s = time.perf_counter() - started
    proba = make_proba(predict, job["input_spec"], job["one_at_a_time"])
    result: dict[str, Any] = {"status": "ok", "load_s": round(load_s, 3), "sets": {}}
    for name, spec in job["sets"].items():
        if not spec["indices"]:
            continue
        images = np.asarray(raw[np.asarray(spec["indices"])], dtype=np.float64).transpose(0, 2, 3, 1)
        out = explain_images(proba, images, spec["classes"], masker=job["masker"], max_evals=job["max_evals"],
                             batch_size=job["batch_size"], seed=job["seed"], image_ids=spec["indices"])
        save_array(spec["values_out"], out.values)
        entry: dict[str, Any] = {"seconds_per_image": [round(s, 4) for s in out.seconds_per_image],
                                 "base_values": out.base_values.tolist(), "outputs": out.outputs.tolist(),
                                 "predicted": out.predicted.tolist()}
        if spec.get("curves_out"):
            scores = deletion_scores(proba, images, out.values, spec["classes"], masker=job["masker"],
                                     steps=job["deletion_steps"], seed=job["seed"])
            save_array(spec["curves_out"], np.stack([scores["curves"], scores["random_curves"]]))
            entry["faithfulness"] = summary(scores, job["deletion_steps"])
        result["sets"][name] = entry
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def main(argv: list[str]) -> int:
    jobs = json.loads(Path(argv[0]).read_text())
    for i, job in enumerate(jobs):
        try:
            result = run_job(job)
        except Exception as exc:  # noqa: BLE001 - any failure of one row's explanation must become that row's status
            result = {"status": "failed", "reason": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
        Path(job["result_out"]).write_text(json.dumps(result))
        print(f"\nDONE {i}", flush=True)  # leading newline: a library's unterminated print can't swallow it
    return 0


def run_jobs(jobs: list[dict[str, Any]], work_dir: Path, log_file: Path, on_result: Callable[[int, dict[str, Any]], None],
             *, job_timeout_s: float = 600) -> None:
    """Run jobs in worker processes; call on_result(i, result) for each job as soon as it ends.

    A crash or a hang (no result within job_timeout_s) fails the job the worker was on; the
    remaining jobs go to a fresh worker. Never raises for a job's failure.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    pending = list(range(len(jobs)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    while pending:
        batch_file = work_dir / "explain_jobs.json"
        batch_file.write_text(json.dumps([jobs[i] for i in pending]))
        with open(log_file, "a") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bench.explain_worker", str(batch_file)],
                                    stdout=subprocess.PIPE, stderr=log, text=True, env=env)
            done, stalled = _follow(proc, pending, jobs, on_result, job_timeout_s)
        batch_file.unlink(missing_ok=True)
        if done < len(pending):  # the worker died or hung on pending[done]
            failed = pending[done]
            how = f"gave no result within {job_timeout_s:.0f} s" if stalled else _exit_text(proc.returncode)
            on_result(failed, {"status": "failed", "reason": f"explanation worker {how}: {_log_tail(log_file)}"})
            pending = pending[done + 1:]
        else:
            pending = []


def _follow(proc: subprocess.Popen, pending: list[int], jobs: list[dict[str, Any]],
            on_result: Callable[[int, dict[str, Any]], None], timeout_s: float) -> tuple[int, bool]:
    """Read DONE lines until the worker exits or stalls; returns (jobs ended, whether it stalled)."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    done, stalled = 0, False
    deadline = time.monotonic() + timeout_s
    while done < len(pending):
        if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
            proc.kill()  # stalled on one job: give up on that job only
            stalled = True
            break
        line = proc.stdout.readline()
        if not line:
            break  # EOF: the worker exited (crashed if jobs remain)
        if line.startswith("DONE "):  # other stdout (a library's chatter) is ignored
            job = jobs[pending[done]]
            on_result(pending[done], json.loads(Path(job["result_out"]).read_text()))
            Path(job["result_out"]).unlink(missing_ok=True)
            done += 1
            deadline = time.monotonic() + timeout_s
    selector.close()
    proc.wait()
    return done, stalled


def _exit_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"


def _log_tail(log_file: Path) -> str:
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return (lines[-1][:300] if lines else "no message")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
