"""The fine-tuning pass: it trains the model it is given, and with distill=true learns from the baseline."""

import copy

import torch

from bench.zoo import tinycnn
from compress.chain import parse_pass
from compress.registry import resolve
from tests.compress.tiny import tiny_context


def test_finetune_trains_the_model_it_is_given():
    torch.manual_seed(0)
    baseline = tinycnn().eval()
    model = copy.deepcopy(baseline)
    call = parse_pass("finetune(epochs=3, lr=0.05)")
    tuned, info = resolve(call.spec)(model, call.params, tiny_context(baseline))
    assert tuned is model and info["losses"][-1] < info["losses"][0]
    changed = [name for name, p in tuned.state_dict().items() if not torch.equal(p, baseline.state_dict()[name])]
    assert any(name.endswith("weight") for name in changed)


def test_finetune_with_distill_uses_the_unpruned_baseline_as_teacher():
    torch.manual_seed(0)
    baseline, pruned = tinycnn().eval(), tinycnn(width=0.5).eval()
    ctx = tiny_context(baseline)
    seen = []
    ctx.fit = lambda model, settings, teacher, what: (seen.append((model, teacher, settings)), [1.0])[1]
    for text in ("finetune(distill=true, temperature=2, alpha=0.5)", "finetune()"):
        call = parse_pass(text)
        _, info = resolve(call.spec)(pruned, call.params, ctx)
    (model, teacher, settings), (_, no_teacher, _) = seen
    assert model is pruned and teacher is baseline and no_teacher is None
    assert (settings.temperature, settings.alpha) == (2.0, 0.5)
    assert info["distill"] is False and "temperature" not in info
