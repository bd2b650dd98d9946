"""bench.measure: how a row's measurement worker is judged from the parent's side."""

from pathlib import Path

from bench.config import config_from_dict
from bench.measure import latency_settings, worker_failure


def test_a_dead_worker_is_described_by_its_last_words_not_by_litert_notice() -> None:
    stderr = "Traceback (most recent call last):\nRuntimeError: tensor 3 has no data\nINFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    assert worker_failure(1, stderr) == "runtime process failed (exit code 1): RuntimeError: tensor 3 has no data"
    assert worker_failure(-11, "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n\n") == \
        "runtime process failed (killed by signal 11): no message"


def test_nan_outputs_are_wrong_in_every_accuracy_metric_not_class_0() -> None:
    import numpy as np

    from bench.measure import accuracy_block

    labels = np.array([0] * 5 + [1] * 5)
    logits = np.zeros((10, 2), dtype=np.float32)
    logits[:5] = np.nan  # five class-0 images without a valid output
    logits[5:, 1] = 1.0  # five class-1 images right
    block = accuracy_block(logits, labels, 2, baseline_predictions=np.zeros(10, dtype=np.int64))
    assert block["top1"] == 0.5 and block["nonfinite"] == 5
    assert block["top1_ci95"][0] < 0.5 < block["top1_ci95"][1]
    assert block["per_class_top1"] == [0.0, 1.0] and block["confusion_matrix"] == [[0, 0], [0, 5]]
    assert block["agreement_with_baseline"] == 0.0


def test_the_first_latency_setting_is_the_fewest_threads_whatever_the_config_order(tmp_path: Path) -> None:
    cfg = config_from_dict({"benchmark": {"threads": [2, 1], "batch_sizes": [8, 1]}}).benchmark
    settings = latency_settings(cfg, "row", tmp_path)
    assert [(s["threads"], s["batch_size"]) for s in settings] == [(1, 1), (1, 8), (2, 1), (2, 8)]
    assert settings[0]["samples_out"] == str(tmp_path / "row__b1_t1.npy")
