"""bench.worker.run_job in-process, with a stub runtime: which thread count each timing runs at."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import worker
from bench.inputs import make_input_spec


def test_settings_paired_timing_and_throughput_use_their_own_thread_counts(tmp_path: Path, monkeypatch) -> None:
    loads: list[tuple[str, int]] = []
    calls: list[tuple[str, int]] = []

    def fake_load(runtime: str, artifact: str, threads: int, device: str):  # noqa: ANN202
        loads.append((Path(artifact).name, threads))
        return lambda x: calls.append((Path(artifact).name, threads)) or np.zeros((len(x), 10), np.float32)

    monkeypatch.setattr(worker, "load", fake_load)
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((8, 1, 28, 28), np.uint8))
    spec = make_input_spec((1, 28, 28), (0.3,), (0.3,))
    settings = [{"batch_size": b, "threads": t, "samples_out": str(tmp_path / f"s{i}.npy")}
                for i, (b, t) in enumerate([(1, 2), (1, 1), (4, 2)])]
    timing = {"warmup_calls": 0, "warmup_seconds": 0.0, "min_calls": 3, "min_seconds": 0.0, "max_seconds": 0.0}
    job = {"runtime": "stub", "device": "cpu", "artifact": "own.onnx", "input_spec": spec, "images": str(images),
           "eval_batch": 4, "throughput_batch": 4, "settings": settings, "timing": timing,
           "logits_out": str(tmp_path / "logits.npy"), "extra_images": None,
           "paired": {"rounds": 2, "calls_per_block": 3, "reference": "baseline/onnx/fp32/stub",
                      "artifact": "ref.onnx", "input_spec": spec}}
    result = worker.run_job(job)

    # loaded at 2 threads; (1, 1) reloads at 1, (4, 2) at 2 again; paired timing at 1; throughput at 2
    assert [t for name, t in loads if name == "own.onnx"] == [2, 1, 2, 1, 2]
    paired = result["paired"]
    # paired timing runs at the headline setting (smallest batch, fewest threads), both sides at 1 thread
    assert (paired["batch_size"], paired["threads"], paired["rounds"]) == (1, 1, 2)
    assert ("ref.onnx", 1) in loads and ("ref.onnx", 2) not in loads
    # throughput runs at the first setting's thread count (the last call of the job)
    assert calls[-1] == ("own.onnx", 2) and result["throughput"]["threads"] == 2
