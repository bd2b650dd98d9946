"""bench.pt2_safety: a .pt2 whose loading would unpickle an object or run code is refused before
torch.export.load sees it; edgebench's own exports pass."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch

from bench.errors import ModelFileError
from bench.pt2_safety import check_pt2_safe

MARKER = "edgebench-pt2-payload-ran"


class Payload:
    """Unpickling this runs code: it writes a marker file (the test's proof that nothing ran)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "ran"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bench.export import export_torch
    from bench.zoo import tinycnn

    torch.manual_seed(0)
    return export_torch(tinycnn().eval(), tmp_path_factory.mktemp("pt2") / "m.pt2", (1, 28, 28))


def _edited(source: Path, target: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    edit(members)
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def _json_edit(member: str, change: Callable[[dict], None]) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        (name,) = [n for n in members if n.endswith(member)]
        document = json.loads(members[name])
        change(document)
        members[name] = json.dumps(document).encode()
    return edit


def _pickled_weight(marker: Path) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        def to_pickle(table: dict) -> None:
            entry = next(iter(table["config"].values()))
            entry["use_pickle"] = True
            payload_name = next(n for n in members if n.endswith("data/weights/" + entry["path_name"]))
            members[payload_name] = pickle.dumps(Payload(marker))
        _json_edit("model_weights_config.json", to_pickle)(members)
    return edit


def _set_first_target(target: str) -> Callable[[dict], None]:
    def change(program: dict) -> None:
        program["graph_module"]["graph"]["nodes"][0]["target"] = target
    return change


def _set_expression(program: dict) -> None:
    program["graph_module"]["graph"]["sym_int_values"] = {"s0": {"as_expr": {"expr_str": "__import__('os').getcwd()"}}}


def _bad_sample_inputs(marker: Path) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        name = next(n for n in members if n.endswith("data/sample_inputs/model.pt"))
        buffer = io.BytesIO()
        torch.save(Payload(marker), buffer)  # a weights-only load refuses it; torch would retry without that
        members[name] = buffer.getvalue()
    return edit


def test_edgebench_exports_pass(exported: Path) -> None:
    check_pt2_safe(exported)


@pytest.mark.parametrize("case, message", [
    ("pickled-weight", "stored as a pickled object"),
    ("os-system-target", "calls 'torch.serialization.os.system'"),
    ("guards-code", "carries guard code"),
    ("eval-expression", "not a plain sympy expression"),
    ("compiled-library", "which edgebench does not load"),
    ("legacy-weights", "which edgebench does not load"),
    ("pickled-sample-inputs", "sample inputs are not plain tensors"),
])
def test_archives_that_would_run_code_are_refused(exported: Path, tmp_path: Path, case: str, message: str) -> None:
    marker = tmp_path / MARKER
    edits = {
        "pickled-weight": _pickled_weight(marker),
        "os-system-target": _json_edit("models/model.json", _set_first_target("torch.serialization.os.system")),
        "guards-code": _json_edit("models/model.json", lambda program: program.update(guards_code=["__import__('os')"])),
        "eval-expression": _json_edit("models/model.json", _set_expression),
        "compiled-library": lambda members: members.update({"m/data/aotinductor/model/model.so": b"\x7fELF"}),
        "legacy-weights": lambda members: members.update({"m/data/weights/model.pt": pickle.dumps(Payload(marker))}),
        "pickled-sample-inputs": _bad_sample_inputs(marker),
    }
    bad = _edited(exported, tmp_path / "bad.pt2", edits[case])
    with pytest.raises(ModelFileError, match=message):
        check_pt2_safe(bad)
    assert not marker.exists()


def test_the_torch_runtime_refuses_them_before_loading(exported: Path, tmp_path: Path) -> None:
    from bench.runtimes import load

    marker = tmp_path / MARKER
    bad = _edited(exported, tmp_path / "bad.pt2", _pickled_weight(marker))
    with pytest.raises(ModelFileError, match="pickled object"):
        load("torch", bad, threads=1)
    assert not marker.exists()
    # the unedited program still loads and runs
    assert load("torch", exported, threads=1)(torch.zeros(2, 1, 28, 28).numpy()).shape == (2, 10)
