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
           "eval_batch": 4, "eval_threads": 3, "throughput_batch": 4, "settings": settings, "timing": timing,
           "throughput_timing": timing,
           "logits_out": str(tmp_path / "logits.npy"), "extra_images": None,
           "paired": {"rounds": 2, "calls_per_block": 3, "reference": "baseline/onnx/fp32/stub",
                      "artifact": "ref.onnx", "input_spec": spec}}
    result = worker.run_job(job)
    assert [entry["warmup"] for entry in result["latency"]] == [0, 0, 0]  # timing asks for none

    # loaded at 2 threads; a copy at 3 (eval_threads) computes the predictions on the 8 test
    # images (two batches of 4); (1, 1) reloads at 1, (4, 2) at 2 again; paired timing at 1; throughput at 2
    assert [t for name, t in loads if name == "own.onnx"] == [2, 3, 1, 2, 1, 2]
    assert [t for name, t in calls if t == 3] == [3, 3] and result["eval_threads"] == 3
    assert np.load(tmp_path / "logits.npy").shape == (8, 10)
    paired = result["paired"]
    # paired timing runs at the headline setting (smallest batch, fewest threads), both sides at 1 thread
    assert (paired["batch_size"], paired["threads"], paired["rounds"]) == (1, 1, 2)
    assert ("ref.onnx", 1) in loads and ("ref.onnx", 2) not in loads
    # throughput runs at the first setting's thread count (the last call of the job)
    assert calls[-1] == ("own.onnx", 2) and result["throughput"]["threads"] == 2


def _paired_with(monkeypatch, timings: list[tuple], rounds: int = 20) -> dict:
    """worker._paired_speedup with a stub runtime and paired_latency returning `timings` in turn."""
    from bench import abtest

    monkeypatch.setattr(worker, "load", lambda *args: (lambda x: np.zeros((len(x), 10), np.float32)))
    pending = iter(timings)

    def fake_paired_latency(call_a, call_b, **kwargs):  # noqa: ANN001, ANN202
        median, spread, *rounds_done = next(pending)  # a third item: rounds the timing got (max_seconds cut it)
        return abtest.PairedLatency(0.2, 0.2 / median, median, spread, rounds_done[0] if rounds_done else kwargs["rounds"],
                                    kwargs["calls_per_block"])

    monkeypatch.setattr(abtest, "paired_latency", fake_paired_latency)
    spec = make_input_spec((1, 28, 28), (0.3,), (0.3,))
    job = {"runtime": "stub", "device": "cpu", "input_spec": spec,
           "paired": {"rounds": rounds, "calls_per_block": 50, "reference": "baseline/onnx/fp32/stub",
                      "artifact": "ref.onnx", "input_spec": spec}}
    raw = np.zeros((2, 1, 28, 28), np.uint8)
    return worker._paired_speedup(job, lambda x: None, raw, {"batch_size": 1, "threads": 1}, 0.0)


def test_a_steady_paired_timing_is_taken_at_once(monkeypatch) -> None:
    paired = _paired_with(monkeypatch, [(3.2, (3.1, 3.3))])
    assert paired["speedup"] == 3.2 and len(paired["attempts"]) == 1 and paired["kept"] == 0


def test_a_disturbed_paired_timing_is_repeated_and_the_steadiest_kept(monkeypatch) -> None:
    # disturbed (ln(3.3/2.2) = 0.41), then steady: two attempts, the steady one kept, both recorded
    paired = _paired_with(monkeypatch, [(2.5, (2.2, 3.3)), (3.2, (3.15, 3.25))])
    assert paired["speedup"] == 3.2 and paired["speedup_p10_p90"] == [3.15, 3.25] and paired["kept"] == 1
    assert paired["attempts"] == [{"speedup": 2.5, "speedup_p10_p90": [2.2, 3.3], "rounds": 20},
                                  {"speedup": 3.2, "speedup_p10_p90": [3.15, 3.25], "rounds": 20}]
    # disturbed every time: PAIRED_ATTEMPTS timings, the smallest spread kept (not the fastest)
    paired = _paired_with(monkeypatch, [(3.0, (2.0, 3.5)), (2.6, (2.3, 2.9)), (3.4, (2.5, 3.6))])
    assert len(paired["attempts"]) == worker.PAIRED_ATTEMPTS and paired["speedup"] == 2.6 and paired["kept"] == 1


def test_too_few_rounds_are_never_judged(monkeypatch) -> None:
    paired = _paired_with(monkeypatch, [(2.5, (2.2, 3.3))], rounds=4)  # --quick: 4 rounds
    assert len(paired["attempts"]) == 1 and paired["speedup"] == 2.5
    # a later timing cut short by max_seconds has a narrow range of few ratios: never kept over a judged one
    paired = _paired_with(monkeypatch, [(2.6, (2.0, 3.2)), (2.7, (2.2, 3.0)), (1.6, (1.55, 1.62), 3)])
    assert paired["kept"] == 1 and paired["speedup"] == 2.7
    # nothing judged: the longest timing
    paired = _paired_with(monkeypatch, [(2.6, (2.0, 3.2), 6)], rounds=6)
    assert paired["kept"] == 0


def test_a_batch_larger_than_the_test_set_is_timed_on_that_many_images() -> None:
    raw = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 1, 2, 2)
    batch = worker.first_images(raw, 7)
    assert batch.shape == (7, 1, 2, 2)
    assert all((batch[i] == raw[i % 3]).all() for i in range(7))  # whole images, repeated in order
    assert worker.first_images(raw, 2).shape == (2, 1, 2, 2)


def test_the_warm_up_calls_made_are_recorded() -> None:
    made: dict = {}
    samples = worker.time_calls(lambda: None, warmup_calls=7, warmup_seconds=0.0, min_calls=5, min_seconds=0.0,
                                max_seconds=0.0, record=made)
    assert made == {"warmup": 7} and len(samples) == 5
