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


def _set_expression(text: str) -> Callable[[dict], None]:
    def change(program: dict) -> None:
        program["graph_module"]["graph"]["sym_int_values"] = {"s0": {"as_expr": {"expr_str": text}}}
    return change


def _set_signature(field: str, value: object) -> Callable[[dict], None]:
    def change(program: dict) -> None:
        program["graph_module"]["module_call_graph"][0]["signature"][field] = value
    return change


def _rename_input(new_name: str) -> Callable[[dict], None]:
    def change(program: dict) -> None:
        text = json.dumps(program).replace('"name": "x"', f'"name": "{new_name}"')
        program.clear()
        program.update(json.loads(text))
    return change


def _set_first_metadata(field: str, value: str) -> Callable[[dict], None]:
    def change(program: dict) -> None:
        program["graph_module"]["graph"]["nodes"][0]["metadata"][field] = value
    return change


def _sample_inputs(make: Callable[[], object]) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        name = next(n for n in members if n.endswith("data/sample_inputs/model.pt"))
        buffer = io.BytesIO()
        torch.save(make(), buffer)
        members[name] = buffer.getvalue()
    return edit


def _bad_sample_inputs(marker: Path) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        name = next(n for n in members if n.endswith("data/sample_inputs/model.pt"))
        buffer = io.BytesIO()
        torch.save(Payload(marker), buffer)  # a weights-only load refuses it; torch would retry without that
        members[name] = buffer.getvalue()
    return edit


class WithConstantsAndShapeArithmetic(torch.nn.Module):
    """A non-persistent buffer (stored as a constant), a batch doubled by cat (a shape expression 2*s)
    and a flatten by the batch size (shape arithmetic in the graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.register_buffer("scale", torch.tensor(0.5), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(torch.cat([x, x])) * self.scale
        return y.view(y.size(0), -1)[:, :10]


@pytest.mark.parametrize("model", ["tinycnn", "edgecnn", "mobilenet_v2", "resnet18", "custom"])
def test_edgebench_exports_pass(model: str, tmp_path: Path) -> None:
    from bench.export import export_torch
    from bench.models import build_model

    torch.manual_seed(0)
    module = WithConstantsAndShapeArithmetic() if model == "custom" else build_model(model)
    path = export_torch(module.eval(), tmp_path / "m.pt2", (1, 28, 28))
    check_pt2_safe(path)
    if model == "custom":  # the features the check must let through are really in the archive
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            program = archive.read(next(n for n in names if n.endswith("models/model.json"))).decode()
        assert any("data/constants/tensor_" in n for n in names) and "Mul(" in program, (names, program[:300])


@pytest.mark.parametrize("case, message", [
    ("pickled-weight", "stored as a pickled object"),
    ("os-system-target", "'torch.serialization.os.system', which edgebench does not load"),
    ("guards-code", "carries guard code"),
    ("eval-expression", "'expr_str' holds"),
    ("huge-power-expression", "'expr_str' holds"),
    ("attribute-of-an-aten-op", "'torch.ops.aten.conv2d.__call__', which edgebench does not load"),
    ("sympified-string-argument", "'expr_str' holds"),
    ("code-in-an-argument-name", "'forward_arg_names' holds"),
    ("code-in-a-treespec-key", "'in_spec' holds"),
    ("dunder-name", "'forward_arg_names' holds '__builtins__'"),
    ("not-an-operator", "'torch.ops.aten.name.format', which edgebench does not load"),
    ("sample-inputs-dict-key", "sample inputs are not a tuple of tensors"),
    ("dotted-node-name", "'name' holds 'math.pi'"),
    ("dunder-source-fn", "'source_fn_stack' holds"),
    ("treespec-naming-a-module", "'in_spec' holds"),
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
        "eval-expression": _json_edit("models/model.json", _set_expression("__import__('os').getcwd()")),
        "huge-power-expression": _json_edit("models/model.json", _set_expression("10**10**10")),
        "attribute-of-an-aten-op": _json_edit("models/model.json", _set_first_target("torch.ops.aten.conv2d.__call__")),
        # found by a review: sympy evaluates a string argument of Max, and FX writes argument names into the code it runs
        "sympified-string-argument": _json_edit("models/model.json", _set_expression(
            "Max(Symbol('s77', positive=True, integer=True), \"__import__('os').getcwd()\")")),
        "code-in-an-argument-name": _json_edit("models/model.json", _set_signature("forward_arg_names", ["x=__import__('os')"])),
        "dunder-name": _json_edit("models/model.json", _set_signature("forward_arg_names", ["__builtins__"])),
        # the aten pattern matches, but it names str.format of the namespace's name, not an operator
        "not-an-operator": _json_edit("models/model.json", _set_first_target("torch.ops.aten.name.format")),
        # found by a review: torch writes sample-input dict keys into the guard code it runs
        "sample-inputs-dict-key": _sample_inputs(lambda: (({"+str(__import__('os').getcwd())+": torch.zeros(1, 1, 28, 28)},), {})),
        # a node name FX would write into `def forward(...)` as is (a review's last probe)
        "dotted-node-name": _json_edit("models/model.json", _rename_input("math.pi")),
        # metadata torch resolves by getattr from the torch module
        "dunder-source-fn": _json_edit("models/model.json", _set_first_metadata("source_fn_stack", "conv2d,torch.__class__")),
        # a defaultdict spec names a module and a factory that pytree imports
        "treespec-naming-a-module": _json_edit("models/model.json", _set_signature("in_spec", json.dumps([1, {
            "type": "collections.defaultdict", "children_spec": [],
            "context": json.dumps({"default_factory_module": "os", "default_factory_name": "getcwd", "dict_context": []})}]))),
        "code-in-a-treespec-key": _json_edit("models/model.json", _set_signature(
            "in_spec", json.dumps([1, {"type": "builtins.dict", "context": json.dumps(["x=__import__('os')"]), "children_spec": []}]))),
        "compiled-library": lambda members: members.update({"m/data/aotinductor/model/model.so": b"\x7fELF"}),
        "legacy-weights": lambda members: members.update({"m/data/weights/model.pt": pickle.dumps(Payload(marker))}),
        "pickled-sample-inputs": _bad_sample_inputs(marker),
    }
    bad = _edited(exported, tmp_path / "bad.pt2", edits[case])
    with pytest.raises(ModelFileError, match=message):
        check_pt2_safe(bad)
    from bench.runtimes import load

    with pytest.raises(ModelFileError, match=message):  # the runtime refuses it before torch.export.load
        load("torch", bad, threads=1)
    assert not marker.exists()


def test_two_members_of_one_name_are_refused(exported: Path, tmp_path: Path) -> None:
    """torch looks members up case-blind: it could read a copy other than the one checked."""
    with zipfile.ZipFile(exported) as archive:
        members = [(name, archive.read(name)) for name in archive.namelist()]
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(bad, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        root, _, rest = members[0][0].partition("/")
        for name, data in members + [(f"{root}/{rest.upper()}", members[0][1]), members[0]]:
            archive.writestr(name, data)
    with pytest.raises(ModelFileError, match="two members of one name"):
        check_pt2_safe(bad)


def test_an_unedited_export_still_loads_and_runs(exported: Path) -> None:
    from bench.runtimes import load

    assert load("torch", exported, threads=1)(torch.zeros(2, 1, 28, 28).numpy()).shape == (2, 10)


def _two_faced_zip(benign: dict[str, bytes], evil: dict[str, bytes]) -> bytes:
    """One file, two archives: Python's zipfile finds the central directory just before the end
    record (and shifts offsets by the data in front), torch's miniz reader trusts the end record's
    offset field. Found by a review: each reader then sees the other archive's members."""
    import struct

    def parts(members: dict[str, bytes]) -> tuple[bytes, bytes, int]:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        raw = buffer.getvalue()
        eocd = raw.rindex(b"PK\x05\x06")
        count, size, offset = struct.unpack("<HII", raw[eocd + 10:eocd + 20])
        return raw[:offset], raw[offset:offset + size], count

    b_locals, b_cd, count = parts(benign)
    e_locals, e_cd, _ = parts(evil)
    pad = bytes(len(e_cd))  # what zipfile takes for data in front of B's archive
    shift = len(pad) + len(b_locals)
    shifted, i = bytearray(e_cd), 0
    while i < len(shifted):  # E's members now start after B's
        name_len, extra_len, comment_len = struct.unpack("<HHH", shifted[i + 28:i + 34])
        struct.pack_into("<I", shifted, i + 42, struct.unpack("<I", shifted[i + 42:i + 46])[0] + shift)
        i += 46 + name_len + extra_len + comment_len
    e_cd_at = shift + len(e_locals)
    eocd = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, count, count, len(b_cd), e_cd_at, 0)
    return pad + b_locals + e_locals + bytes(shifted) + b_cd + eocd


def test_an_archive_the_two_zip_readers_see_differently_is_refused(exported: Path, tmp_path: Path) -> None:
    import torch

    with zipfile.ZipFile(exported) as archive:
        benign = {name: archive.read(name) for name in archive.namelist()}
    evil = dict(benign)
    _json_edit("models/model.json", lambda program: program.update(guards_code=["__import__('os')"]))(evil)
    bad = tmp_path / "two-faced.pt2"
    bad.write_bytes(_two_faced_zip(benign, evil))
    with zipfile.ZipFile(bad) as archive:  # the construction works: Python sees the benign program...
        assert archive.read(next(n for n in archive.namelist() if n.endswith("models/model.json"))) == \
            benign[next(n for n in benign if n.endswith("models/model.json"))]
    reader = torch._C.PyTorchFileReader(str(bad))  # ...and torch the doctored one
    assert b"guards_code\": [\"__import__" in bytes(reader.get_record("models/model.json"))
    with pytest.raises(ModelFileError, match="zip readers see different contents"):
        check_pt2_safe(bad)
