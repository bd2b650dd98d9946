"""bench.measure: how a row's measurement worker is judged from the parent's side."""

from bench.measure import worker_failure


def test_a_dead_worker_is_described_by_its_last_words_not_by_litert_notice() -> None:
    stderr = "Traceback (most recent call last):\nRuntimeError: tensor 3 has no data\nINFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    assert worker_failure(1, stderr) == "runtime process failed (exit code 1): RuntimeError: tensor 3 has no data"
    assert worker_failure(-11, "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n\n") == \
        "runtime process failed (killed by signal 11): no message"
