"""Explain artifacts in isolated processes: `python -m bench.explain_worker` (jobs on stdin).

Why subprocesses: a native runtime that crashes on an artifact (ORT, LiteRT) kills a worker, not
the run, and shap (numba, ~6 s to import) stays out of the main process. Why long-lived workers
fed one job at a time rather than one process per row: that import would otherwise be paid ~30
times per run, and a small pool (`workers`) keeps every core busy once measurement is over.

Protocol: the parent writes one JSON job per line to a worker's stdin; the worker answers each
with one line `RESULT <json>` on stdout and exits at end of input. If a worker dies or stalls,
its job fails (that row's explanation says why) and a fresh worker takes the remaining jobs.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

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
    """Import shap and compile its numba kernels on a dummy model, so that the first row's
    timing measures explaining, not a one-off ~10 s of imports and JIT compilation."""
    from explain.shap_explain import explain_images

    explain_images(lambda x: np.stack([x.mean((1, 2, 3)), 255 - x.mean((1, 2, 3))], axis=1) / 255,
                   np.full((1, 8, 8, 1), 100.0), [0], max_evals=40, batch_size=10)


def main() -> int:
    warm_up()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = run_job(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - any failure of one row's explanation must become that row's status
            message = str(exc).splitlines()[0][:300] if str(exc) else ""
            result = {"status": "failed", "reason": f"{exc.__class__.__name__}: {message}"}
        # Leading newline: a library's unterminated print on stdout can't swallow the marker.
        print("\nRESULT " + json.dumps(result), flush=True)
    return 0


class _Worker:
    """One worker process, the job it is on, and the partial line read from it."""

    def __init__(self, log: IO[str]) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.explain_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, env=env)
        self.job: int | None = None
        self.deadline = float("inf")
        self.buffer = b""

    def send(self, k: int, job: dict[str, Any], timeout_s: float) -> None:
        assert self.proc.stdin is not None
        self.job, self.deadline = k, time.monotonic() + timeout_s
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.flush()

    def lines(self) -> list[str] | None:
        """Complete lines available now; None at end of output (the process exited)."""
        assert self.proc.stdout is not None
        chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
        if not chunk:
            return None
        self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        return [line.decode(errors="replace") for line in complete]

    def stop(self, kill: bool = False) -> int:
        if kill:
            self.proc.kill()
        elif self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:  # it already exited; wait() below reports how
                pass
        return self.proc.wait()


def run_jobs(jobs: list[dict[str, Any]], log_file: Path, on_result: OnResult, *, workers: int = 1,
             job_timeout_s: float = 600) -> None:
    """Run jobs on a pool of worker processes; on_result(k, result) as soon as job k ends, in the
    parent. A crash or a stall (no result within job_timeout_s) fails only the job a worker was on."""
    queue = deque(range(len(jobs)))
    selector = selectors.DefaultSelector()
    pool: list[_Worker] = []
    with open(log_file, "a") as log:

        def feed(worker: _Worker) -> None:
            if not queue:
                retire(worker)
                return
            k = queue.popleft()
            try:
                worker.send(k, jobs[k], job_timeout_s)
            except BrokenPipeError:  # it died between two jobs: report it on the job it was handed
                retire(worker, failure="exited before taking the job")

        def start() -> None:
            worker = _Worker(log)
            pool.append(worker)
            selector.register(worker.proc.stdout, selectors.EVENT_READ, worker)  # type: ignore[arg-type]
            feed(worker)

        def retire(worker: _Worker, *, failure: str | None = None, kill: bool = False) -> None:
            selector.unregister(worker.proc.stdout)  # type: ignore[arg-type]
            pool.remove(worker)
            code = worker.stop(kill)
            if worker.job is not None:
                log.flush()
                on_result(worker.job, {"status": "failed", "reason": f"explanation worker {failure or _exit_text(code)}: {_log_tail(log_file)}"})
            if queue:
                start()

        for _ in range(min(max(1, workers), len(queue))):
            start()
        while pool:
            wait = min(w.deadline for w in pool) - time.monotonic()
            for key, _ in selector.select(timeout=max(0.0, min(wait, 3600.0))):
                worker: _Worker = key.data
                lines = worker.lines()
                if lines is None:
                    retire(worker)
                    continue
                for line in lines:
                    if line.startswith("RESULT ") and worker.job is not None:  # other stdout is a library's chatter
                        k, worker.job, worker.deadline = worker.job, None, float("inf")
                        on_result(k, json.loads(line[len("RESULT "):]))
                        feed(worker)
            for worker in [w for w in pool if time.monotonic() > w.deadline]:
                retire(worker, failure=f"gave no result within {job_timeout_s:.0f} s", kill=True)
    selector.close()


def _exit_text(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def _log_tail(log_file: Path) -> str:
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1][:300] if lines else "no message"


if __name__ == "__main__":
    sys.exit(main())
