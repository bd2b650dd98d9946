"""bench.measure: how a row's measurement worker is judged from the parent's side."""

from bench.measure import worker_failure


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
