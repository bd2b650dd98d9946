import pytest

from compress.chain import PassSyntaxError, parse_chain, parse_pass
from compress.registry import PASSES


@pytest.mark.parametrize("name", sorted(PASSES))
def test_every_registered_pass_parses_with_defaults(name):
    call = parse_pass(f"{name}()")
    assert call.spec.name == name
    assert set(call.params) == set(PASSES[name].params)
    assert parse_pass(str(call)).params == call.params  # str() round-trips: lineage is re-parsable


def test_parameters_and_chain_order():
    calls = parse_chain(["prune.structured(ratio=0.5, importance='l2')", "distill(width=0)",
                         "quantize.static(calibration='entropy')"])
    assert [c.spec.name for c in calls] == ["prune.structured", "distill", "quantize.static"]
    assert calls[0].params["ratio"] == 0.5 and calls[2].params["calibration"] == "entropy"


@pytest.mark.parametrize("text, message", [
    ("prune.structured(ratio=1.5)", "must be in [0, 1)"),
    ("prune.unstructured(sparsity=-0.1)", "must be in [0, 1)"),
    ("prune.structured(importance='fisher')", "not one of"),
    ("prune.structured(0.5)", "keyword arguments only"),
    ("prune.structured(ratio='half')", "expected float"),
    ("prune.structured(rate=0.5)", "no parameter 'rate'"),
    ("prune.structured(round_to=0)", "must be >= 1"),
    ("quantise.static()", "did you mean 'quantize.static'"),
    ("finetune(epochs=__import__('os'))", "must be a literal"),
    ("finetune(", "cannot parse"),
    ("distill(init='pretrained')", "not one of"),
    ("distill(width=0, init='teacher')", "needs a student width > 0"),
    ("prune.unstructured(sparsity=0.5, sparsity=0.9)", "given 'sparsity' twice"),
    ("finetune(lr=1e999)", "must be a finite number"),
    ("finetune(**{'lr': 0.1})", "not **mappings"),
    ("finetune(lr={[1]: 2})", "must be a literal"),
    ("prune.structured(recover_epochs=3)", "needs steps > 1"),  # literal_eval raises TypeError here
    ("finetune(lr=" + "9" * 400 + ")", "too large for a float"),  # float() raises OverflowError
])
def test_invalid_passes_name_the_problem(text, message):
    with pytest.raises(PassSyntaxError) as err:
        parse_pass(text)
    assert message in str(err.value)


def test_chain_rules():
    with pytest.raises(PassSyntaxError, match="would discard the passes before it"):
        parse_chain(["prune.structured(ratio=0.5)", "distill(width=0.5)"])
    assert parse_chain(["distill(width=0.5)", "prune.structured(ratio=0.5)"])  # a new student first, then pruned
    with pytest.raises(PassSyntaxError, match="must not be empty"):
        parse_chain([])
    with pytest.raises(PassSyntaxError, match="only one artifact"):
        parse_chain(["quantize.static()", "quantize.dynamic()"])


# Values each parameter's own check should refuse, tried in order: the table, not this list,
# decides which apply, so a pass added to the registry is covered without editing this file.
_CANDIDATES = {float: (-1.0, 0.0, 1.0, 1.5, 1e9), int: (-3, 0, 10**9)}


def _refused_by_check(param) -> object | None:
    return next((v for v in _CANDIDATES.get(param.type, ()) if param.check(v) is not None), None)


@pytest.mark.parametrize("name, key", [(n, k) for n in sorted(PASSES) for k, p in PASSES[n].params.items()
                                       if p.check is not None or p.choices is not None])
def test_every_checked_parameter_refuses_a_bad_value_by_name(name, key):
    param = PASSES[name].params[key]
    assert param.validate(param.default) is None, "the default must pass its own check"
    bad = f"'not-{param.default}'" if param.choices is not None else repr(_refused_by_check(param))
    assert bad != "None", f"{name}({key}=...): its check accepts every candidate value {_CANDIDATES.get(param.type)}"
    with pytest.raises(PassSyntaxError) as err:
        parse_pass(f"{name}({key}={bad})")
    assert name in str(err.value) and key in str(err.value), str(err.value)


@pytest.mark.parametrize("name, key", [(n, k) for n in sorted(PASSES) for k in PASSES[n].params])
def test_every_parameter_refuses_a_value_of_another_type(name, key):
    wrong = "[1]"  # a list literal: no parameter takes one
    with pytest.raises(PassSyntaxError, match="expected"):
        parse_pass(f"{name}({key}={wrong})")
