"""bench.environment through `edgebench compare`: differences between two runs' machines, data,
baseline weights and settings that can explain a change of their numbers on their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bench.compare import compare_runs
from tests.bench.test_compare import FIXTURE, copy_run


def test_machine_data_and_settings_differences_are_noted(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["environment"]["cpu"]["flags"] = [*doc["environment"]["cpu"].get("flags", []), "avx512_vnni"]
        doc["environment"]["cpu"]["int8_dot_product"] = True
        doc["dataset"]["test_size"] = 500
        doc["config"]["benchmark"]["min_seconds"] = 0.5

    notes = " | ".join(compare_runs(FIXTURE, copy_run(tmp_path / "b", edit=edit), []).notes)
    assert "only B ['avx512_vnni']" in notes and "int8 speed-ups are not comparable" in notes
    assert "dataset test_size differs" in notes and "min_seconds" in notes


def test_int8_dot_product_is_worked_out_from_the_flags_of_older_files(tmp_path: Path) -> None:
    """A file without the int8_dot_product field, on the same VNNI CPU as one with it: no note."""
    def older(doc: dict[str, Any]) -> None:
        doc["environment"]["cpu"].update(flags=["avx2", "avx512_vnni"])
        doc["environment"]["cpu"].pop("int8_dot_product", None)

    def newer(doc: dict[str, Any]) -> None:
        doc["environment"]["cpu"].update(flags=["avx2", "avx512_vnni"], int8_dot_product=True)

    notes = compare_runs(copy_run(tmp_path / "a", edit=older), copy_run(tmp_path / "b", edit=newer), []).notes
    assert not any("dot-product" in note for note in notes)


def test_other_baseline_weights_or_images_are_noted(tmp_path: Path) -> None:
    """A --checkpoint or --data-dir is not in the config: the recorded weights and image digests say it."""
    def with_digests(test: str) -> Callable[[dict[str, Any]], None]:
        def edit(doc: dict[str, Any]) -> None:
            doc["dataset"]["digests"] = {"train": "t0", "val": "v0", "test": test}
        return edit

    def from_checkpoint(doc: dict[str, Any]) -> None:
        with_digests("other")(doc)
        doc["dataset"]["source"] = "my-copy"
        doc["baseline_info"] = {"source": "checkpoint", "checkpoint": "good.pt", "cache_key": "abc123"}

    a = copy_run(tmp_path / "a", edit=with_digests("same"))
    notes = " | ".join(compare_runs(a, copy_run(tmp_path / "b", edit=from_checkpoint), []).notes)
    assert "the baseline weights differ: A trained (cache key 87cf48a0e19ea22b), B the checkpoint good.pt (sha256 abc123)" in notes
    assert "the test images differ (A from /usr/share/datasets/fashion-mnist, B from my-copy)" in notes
    assert "training or validation images differ" not in notes
    same = " | ".join(compare_runs(a, copy_run(tmp_path / "c", edit=with_digests("same")), []).notes)
    older = " | ".join(compare_runs(FIXTURE, a, []).notes)  # a run recorded before digests: nothing to compare
    assert "differ" not in same and "images differ" not in older and "weights differ" not in older


def test_config_differences_are_noted(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["config"]["baseline"]["seed"] = 1
        doc["config"]["output"]["dir"] = "elsewhere"  # where a run was written is no difference
        doc["config"]["variants"] = [*doc["config"].get("variants", []), {"name": "extra", "passes": ["finetune()"]}]

    notes = compare_runs(FIXTURE, copy_run(tmp_path / "b", edit=edit), []).notes
    (note,) = [n for n in notes if n.startswith("config differs")]
    assert "baseline.seed 0 -> 1" in note and "variants +extra" in note and "output" not in note
    assert not [n for n in compare_runs(FIXTURE, FIXTURE, []).notes if n.startswith("config differs")]


def test_the_order_of_thread_counts_and_batch_sizes_is_no_difference(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:  # both lists are measured sorted, whatever the config's order
        bench = doc["config"]["benchmark"]
        bench["threads"], bench["batch_sizes"] = [2, 1], [32, 1]

    def base(doc: dict[str, Any]) -> None:
        bench = doc["config"]["benchmark"]
        bench["threads"], bench["batch_sizes"] = [1, 2], [1, 32]

    notes = " | ".join(compare_runs(copy_run(tmp_path / "a", edit=base), copy_run(tmp_path / "b", edit=edit), []).notes)
    assert "benchmark settings differ" not in notes, notes

    def fewer_threads(doc: dict[str, Any]) -> None:
        doc["config"]["benchmark"]["threads"] = [2]

    notes = " | ".join(compare_runs(copy_run(tmp_path / "a2", edit=base), copy_run(tmp_path / "b2", edit=fewer_threads), []).notes)
    assert "threads [1, 2] -> [2]" in notes, notes
