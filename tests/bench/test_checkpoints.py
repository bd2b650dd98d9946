import os
import pickle

import pytest
import torch

from bench.checkpoints import load_state_dict_file, save_state_dict
from bench.errors import ModelFileError
from bench.zoo import tinycnn


class _Evil:
    """Unpickling runs `touch marker`: the test's own file, so parallel runs never share it."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip(tmp_path):
    model = tinycnn()
    save_state_dict(model, tmp_path / "w.pt")
    state = load_state_dict_file(tmp_path / "w.pt", tinycnn())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_a_state_dict_without_batchnorm_step_counters_loads_as_torch_loads_it(tmp_path):
    model = tinycnn()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "w.pt")
    loaded = load_state_dict_file(tmp_path / "w.pt", tinycnn())
    assert set(loaded) == set(model.state_dict())
    tinycnn().load_state_dict(loaded)  # strict: every key there
    del state["features.0.0.weight"]  # a real weight missing is still refused
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ModelFileError, match="missing \\['features.0.0.weight'\\]"):
        load_state_dict_file(tmp_path / "w.pt", tinycnn())


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"weight": _Evil(marker)}, path)
    with pytest.raises(ModelFileError, match="refused"):
        load_state_dict_file(path, tinycnn())
    assert not os.path.exists(marker)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(ModelFileError):
        load_state_dict_file(raw, tinycnn())
    assert not os.path.exists(marker)


def test_weights_saved_from_a_wrapped_model_load_and_other_names_are_listed(tmp_path):
    """nn.DataParallel and torch.compile save every key under their prefix ('module.', '_orig_mod.')."""
    model = tinycnn()
    for wrapped in (torch.nn.DataParallel(model), torch.compile(model), torch.compile(torch.nn.DataParallel(model))):
        torch.save(wrapped.state_dict(), tmp_path / "w.pt")
        loaded = load_state_dict_file(tmp_path / "w.pt", tinycnn())
        assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    renamed = {f"net.{k}": v for k, v in model.state_dict().items()}  # another prefix: both sides named
    torch.save(renamed, tmp_path / "w.pt")
    with pytest.raises(ModelFileError, match="missing \\['features.0.0.weight'.*; unexpected \\['net.features.0.0.weight'"):
        load_state_dict_file(tmp_path / "w.pt", tinycnn())


def test_truncated_wrong_shape_and_not_a_state_dict(tmp_path):
    save_state_dict(tinycnn(), tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_state_dict_file(tmp_path / "cut.pt", tinycnn())
    save_state_dict(tinycnn(width=2.0), tmp_path / "wide.pt")
    with pytest.raises(ModelFileError, match="has shape"):
        load_state_dict_file(tmp_path / "wide.pt", tinycnn())
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ModelFileError, match="expected a state_dict"):
        load_state_dict_file(tmp_path / "list.pt", tinycnn())
    with pytest.raises(ModelFileError, match="not found"):
        load_state_dict_file(tmp_path / "none.pt", tinycnn())


@pytest.mark.parametrize("content", [b"hello not weights\n", b"a,b\n1,2\n", b"(lp0\nI1\na.", b"\x89PNG\r\n\x1a\n" + b"\0" * 64])
def test_files_torch_save_cannot_have_written_are_named_not_unpickled(tmp_path, content):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="not a PyTorch weight file"):
        load_state_dict_file(path, tinycnn())


def test_a_zip_that_is_not_a_torch_save_file_is_named(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "m.pt2", "w") as archive:
        archive.writestr("m/archive_format", "pt2")
    with pytest.raises(ModelFileError, match="not a torch.save file"):
        load_state_dict_file(tmp_path / "m.pt2", tinycnn())


def test_safetensors_checkpoints_load_and_a_damaged_one_is_named(tmp_path):
    from safetensors.torch import save_file

    model = tinycnn()
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    loaded = load_state_dict_file(tmp_path / "w.safetensors", tinycnn())
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:100])
    with pytest.raises(ModelFileError, match="not a valid safetensors file"):
        load_state_dict_file(tmp_path / "cut.safetensors", tinycnn())
