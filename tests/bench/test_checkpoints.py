import os
import pickle

import pytest
import torch

from bench.checkpoints import load_state_dict_file, save_state_dict
from bench.errors import ModelFileError
from bench.zoo import tinycnn


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/edgebench-pwned",))


def test_round_trip(tmp_path):
    model = tinycnn()
    save_state_dict(model, tmp_path / "w.pt")
    state = load_state_dict_file(tmp_path / "w.pt", tinycnn())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = "/tmp/edgebench-pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    path = tmp_path / "evil.pt"
    torch.save({"weight": _Evil()}, path)
    with pytest.raises(ModelFileError, match="refused"):
        load_state_dict_file(path, tinycnn())
    assert not os.path.exists(marker)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ModelFileError):
        load_state_dict_file(raw, tinycnn())
    assert not os.path.exists(marker)


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
