"""Explain artifacts in isolated processes: `python -m bench.explain_worker --workers N --timeout S`.

Why not in the main process: a native runtime (ORT, LiteRT) that crashes on an artifact must fail
one row, not the run, and shap (numba) stays out of the main process.

Why a fork server: importing shap and JIT-compiling its numba kernels costs ~15 s of CPU per
process. This server pays it once, then forks one child per job (the children inherit the
compiled code), up to N at a time. A child that crashes, raises or overruns its time fails only
its own job, and the server goes on with the next.

Protocol: the parent writes every job as one JSON line {"id": k, "job": {...}} on stdin and closes
it; the server prints `RESULT {"id": k, "result": {...}}` on stdout as each job ends.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.errors import exception_line
from bench.worker import die_with_parent

OnResult = Callable[[int, dict[str, Any]], None]


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
            return softmax(np.concatenate([predict(prepared[i:i + 1]) for i in range(len(prepared))]))
        return softmax(predict(prepared))

    return proba


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Explain one artifact on its image sets; write the values files; return the summary."""
    from bench.runtimes import load
    from explain.faithfulness import deletion_scores, summary
    from explain.shap_explain import explain_images, save_array

    started = time.perf_counter()
    raw = np.load(job["images"], mmap_mode="r", allow_pickle=False)
    predict = load(job["runtime"], job["artifact"], job["threads"], job["device"])
    result: dict[str, Any] = {"status": "ok", "load_s": round(time.perf_counter() - started, 3), "sets": {}}
    proba = make_proba(predict, job["input_spec"], job["one_at_a_time"])
    for name, spec in job["sets"].items():
        images = np.asarray(raw[np.asarray(spec["indices"], dtype=np.int64)], dtype=np.float64).transpose(0, 2, 3, 1)
        out = explain_images(proba, images, spec["classes"], masker=job["masker"], max_evals=job["max_evals"],
                             batch_size=job["batch_size"], seed=job["seed"], image_ids=spec["indices"])
        save_array(spec["values_out"], out.values)
        entry: dict[str, Any] = {"seconds_per_image": [round(s, 4) for s in out.seconds_per_image],
                                 "cpu_seconds_per_image": [round(s, 4) for s in out.cpu_seconds_per_image],
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


def warm_up() -> None:
    """Import shap (and ONNX Runtime, the usual runtime) and compile shap's numba kernels on a
    dummy model, once, in the server: every forked child starts warm, and no row's timing
    includes this one-off cost."""
    import importlib.util

    from explain.shap_explain import explain_images

    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime  # noqa: F401 - import only: no session, no threads before fork

    explain_images(lambda x: np.stack([x.mean((1, 2, 3)), 255 - x.mean((1, 2, 3))], axis=1) / 255,
                   np.full((1, 8, 8, 1), 100.0), [0], max_evals=40, batch_size=10)


def _child(job: dict[str, Any], out_file: str) -> None:
    """Body of a forked child: run one job and write its result file (the server reads it once the
    child has exited with code 0; any other exit means the runtime crashed the child)."""
    die_with_parent()  # a killed server must not leave a child writing into the run folder
    os.dup2(2, 1)  # library chatter goes to the log, never into the server's RESULT stream
    try:
        result = run_job(job)
    except Exception as exc:  # noqa: BLE001 - any failure of one row's explanation must become that row's status
        result = {"status": "failed", "reason": exception_line(exc)}
    Path(out_file).write_text(json.dumps(result))


def serve(jobs: list[tuple[int, dict[str, Any]]], workers: int, timeout_s: float) -> None:
    """Run jobs in forked children, at most `workers` at a time; print one RESULT line per job."""
    import multiprocessing
    import multiprocessing.connection

    warm_up()
    context = multiprocessing.get_context("fork")
    pending = list(jobs)
    running: dict[int, tuple[int, Any, str, float]] = {}  # sentinel -> (id, process, result file, deadline)
    scratch = tempfile.mkdtemp(prefix="edgebench-explain-")
    while pending or running:
        while pending and len(running) < max(1, workers):
            k, job = pending.pop(0)
            out_file = os.path.join(scratch, f"{k}.json")
            process = context.Process(target=_child, args=(job, out_file), daemon=True)
            process.start()
            running[process.sentinel] = (k, process, out_file, time.monotonic() + timeout_s)
        nearest = min(deadline for *_, deadline in running.values())
        ready = multiprocessing.connection.wait(list(running), timeout=max(0.0, nearest - time.monotonic()))
        for sentinel in list(running):
            k, process, out_file, deadline = running[sentinel]
            if sentinel in ready:
                process.join()
                if process.exitcode == 0 and os.path.exists(out_file):
                    result = json.loads(Path(out_file).read_text())
                else:
                    result = {"status": "failed", "reason": f"explanation process {_exit_text(process.exitcode)}"}
            elif time.monotonic() > deadline:
                process.kill()
                process.join()
                result = {"status": "failed", "reason": f"explanation gave no result within {timeout_s:.0f} s (killed)"}
            else:
                continue
            del running[sentinel]
            Path(out_file).unlink(missing_ok=True)
            print("\nRESULT " + json.dumps({"id": k, "result": result}), flush=True)
    os.rmdir(scratch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.explain_worker")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    die_with_parent()  # the run process (or `edgebench explain`) died: stop explaining
    jobs = [(item["id"], item["job"]) for item in (json.loads(line) for line in sys.stdin.read().splitlines() if line.strip())]
    serve(jobs, args.workers, args.timeout)
    return 0


def run_jobs(jobs: list[dict[str, Any]], log_file: Path, on_result: OnResult, *, workers: int = 1,
             job_timeout_s: float = 600) -> None:
    """Run jobs on the fork server; on_result(k, result) in this process as soon as job k ends.

    Never raises for a job's failure: a failed, crashed or overrunning job is a failed result.
    If the server itself dies or stalls, every job without a result fails with its last log line.
    """
    if not jobs:
        return  # nothing to explain: don't pay the server's warm-up
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done: set[int] = set()
    with open(log_file, "a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bench.explain_worker", "--workers", str(workers),
                                 "--timeout", str(job_timeout_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write("".join(json.dumps({"id": k, "job": job}) + "\n" for k, job in enumerate(jobs)).encode())
            proc.stdin.close()
        except BrokenPipeError:  # it died at start; reported below like any other death
            pass
        # The server enforces each job's limit; this outer limit only catches a hung server.
        limit = time.monotonic() + 120 + job_timeout_s * (len(jobs) // max(1, workers) + 1)
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        buffer = b""
        try:
            while len(done) < len(jobs) and selector.select(timeout=max(0.0, limit - time.monotonic())):
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    if line.startswith(b"RESULT "):
                        message = json.loads(line[len(b"RESULT "):])
                        done.add(message["id"])
                        on_result(message["id"], message["result"])
        finally:  # also when on_result raises (or Ctrl-C): no server left writing into the run folder
            selector.close()
            if proc.poll() is None:
                proc.kill()
            code = proc.wait()
    for k in range(len(jobs)):
        if k not in done:
            on_result(k, {"status": "failed", "reason": f"explanation server {_exit_text(code)}: {_log_tail(log_file)}"})


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not finish"
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def _log_tail(log_file: Path) -> str:
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1][:300] if lines else "no message"


if __name__ == "__main__":
    sys.exit(main())
