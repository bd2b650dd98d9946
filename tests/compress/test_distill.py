"""Knowledge distillation: the KD loss, teacher-initialised students and the no-teacher controls."""

import copy

import pytest
import torch

from bench.models import count_params
from bench.zoo import edgecnn, mobilenet_v2, tinycnn
from compress.chain import parse_pass
from compress.distill import gap_recovered, teacher_initialised
from compress.prune import prunable_channels
from compress.registry import resolve
from compress.train import FitSettings, fit, kd_loss
from tests.compress.tiny import tiny_context, tiny_data


def test_kd_loss_decreases_and_is_zero_for_identical_logits():
    torch.manual_seed(0)
    teacher, student = tinycnn(width=2.0), tinycnn(width=0.5)
    x, y = tiny_data()
    losses = fit(student, lambda e: [(x, y)], 1, FitSettings(epochs=8, lr=0.05, alpha=1.0), teacher=teacher)
    assert losses[-1] < losses[0]
    logits = torch.randn(4, 10)
    assert float(kd_loss(logits, logits, torch.zeros(4, dtype=torch.long), 4.0, 1.0)) == pytest.approx(0, abs=1e-6)


def test_kd_loss_is_hintons_formula_computed_by_hand():
    """alpha * T^2 * KL(teacher || student) on the T-softened outputs + (1 - alpha) * CE, in numbers."""
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    teacher = torch.tensor([[-1.0, 4.0, -2.0], [3.0, -3.0, 1.0]])
    labels = torch.tensor([0, 1])
    t, alpha = 2.0, 0.75
    p_teacher, p_student = torch.softmax(teacher / t, 1), torch.softmax(student / t, 1)
    kl = float((p_teacher * (p_teacher.log() - p_student.log())).sum(1).mean())  # KL(teacher || student)
    ce = float(-torch.log_softmax(student, 1)[[0, 1], labels].mean())
    expected = alpha * t**2 * kl + (1 - alpha) * ce
    assert float(kd_loss(student, teacher, labels, t, alpha)) == pytest.approx(expected, rel=1e-6)
    reverse = float((p_student * (p_student.log() - p_teacher.log())).sum(1).mean())  # the other direction
    assert abs(reverse - kl) > 1e-3, "this example must tell the two directions of the KL term apart"


def test_distill_records_how_well_each_model_fits_the_training_images():
    torch.manual_seed(0)
    baseline = tinycnn().eval()
    call = parse_pass("distill(width=0.5, epochs=1)")
    ctx = tiny_context(baseline)
    _, info = resolve(call.spec)(baseline, call.params, ctx)
    assert "teacher_train_top1" not in info  # a context without a training-split evaluation
    ctx.evaluate_train = lambda m: float(count_params(m))  # tells the teacher from the students
    _, info = resolve(call.spec)(baseline, call.params, ctx)
    assert info["teacher_train_top1"] == count_params(baseline)
    assert info["student_kd_train_top1"] == info["student_scratch_train_top1"] == count_params(tinycnn(width=0.5))


def test_distilling_into_the_current_model_leaves_it_as_the_controls_starting_point():
    torch.manual_seed(0)
    model = tinycnn().eval()
    before = copy.deepcopy(model.state_dict())
    starts = []
    ctx = tiny_context(model)
    plain_fit = ctx.fit
    ctx.fit = lambda m, settings, teacher, what: (starts.append(copy.deepcopy(m.state_dict())), plain_fit(m, settings, teacher, what))[1]
    call = parse_pass("distill(width=0, epochs=1)")
    student, _ = resolve(call.spec)(model, call.params, ctx)
    assert len(starts) == 2  # the KD fit, then the no-teacher control
    for start in starts:  # both start from the model as it came in
        assert all(torch.equal(start[k], before[k]) for k in before)
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)
    assert not all(torch.equal(student.state_dict()[k], before[k]) for k in before)


def test_teacher_initialised_student_starts_from_the_teachers_strongest_channels():
    torch.manual_seed(0)
    teacher = edgecnn().eval()  # 24-48-48-64 channels
    student = teacher_initialised(edgecnn(width=0.25), teacher, tiny_data()[0])  # 6-12-12-16
    stem_t, stem_s = teacher.features[0], student.features[0]
    # L2 importance of the stem's channels (its conv filters and BN scales): each kept filter is one of the teacher's
    kept = [next(i for i in range(24) if torch.equal(stem_t[0].weight[i], w)) for w in stem_s[0].weight]
    assert len(set(kept)) == 6 and torch.equal(stem_s[1].running_var, stem_t[1].running_var[kept])
    assert torch.equal(student.classifier.bias, teacher.classifier.bias)
    assert prunable_channels(student, tiny_data()[0]) == [6, 12, 12, 16]


def test_teacher_initialised_student_must_be_a_narrower_teacher():
    with pytest.raises(ValueError, match="prunable layers"):
        teacher_initialised(edgecnn(), mobilenet_v2(), tiny_data()[0])
    with pytest.raises(ValueError, match="cannot keep 48 of 24"):
        teacher_initialised(edgecnn(width=2.0), edgecnn(), tiny_data()[0])


def test_distill_with_teacher_init_records_both_controls():
    """Three fits (KD student, random-init control, teacher-init control without the KD loss), and
    each share of the gap is worked out from what evaluate() said of the right model."""
    torch.manual_seed(0)
    baseline = tinycnn().eval()
    call = parse_pass("distill(width=0.5, epochs=1, init='teacher')")
    ctx = tiny_context(baseline)
    calls, fit_ = [], ctx.fit

    def recording_fit(model, settings, teacher, description):
        calls.append(teacher is not None)
        model.tag = description
        return fit_(model, settings, teacher, description)

    scores = {None: 0.10, "distill (T=4)": 0.86, "same student, no teacher": 0.80, "teacher init, no KD loss": 0.84}
    ctx.fit = recording_fit
    ctx.evaluate = lambda m: 0.90 if m is baseline else scores[getattr(m, "tag", None)]
    student, info = resolve(call.spec)(copy.deepcopy(baseline), call.params, ctx)
    assert calls == [True, False, False]  # KD student, random-init control, init-only control
    assert info["init"] == "teacher" and info["init_top1"] == 0.10  # scored before any training
    assert info["student_kd_top1"] == 0.86 and info["student_scratch_top1"] == 0.80 and info["student_init_only_top1"] == 0.84
    assert info["gap_recovered"] == pytest.approx(0.6)  # (0.86 - 0.80) / (0.90 - 0.80)
    assert info["gap_recovered_by_kd_loss"] == pytest.approx(1 / 3)  # (0.86 - 0.84) / (0.90 - 0.84)
    x = tiny_data()[0]
    assert prunable_channels(student, x) == prunable_channels(tinycnn(width=0.5), x)


def test_students_of_one_width_share_their_no_teacher_control():
    torch.manual_seed(0)
    baseline = tinycnn().eval()
    ctx = tiny_context(baseline)
    fit_, controls = ctx.fit, []
    ctx.fit = lambda model, settings, teacher, description: (teacher is None and controls.append(description)) or fit_(model, settings, teacher, description)
    infos = [resolve(call.spec)(copy.deepcopy(baseline), call.params, ctx)[1] for call in map(parse_pass, [
        "distill(width=0.5, epochs=1)", "distill(width=0.5, epochs=1, temperature=2, init='teacher')",
        "distill(width=0.5, epochs=2)"])]
    # the second reuses the first's control (the KD settings and init do not change it); a new budget trains a new one
    assert controls == ["same student, no teacher", "teacher init, no KD loss", "same student, no teacher"]
    assert infos[0]["student_scratch_top1"] == infos[1]["student_scratch_top1"]


def test_gap_recovered():
    assert gap_recovered(0.9, 0.9, 0.8) == pytest.approx(1.0)
    assert gap_recovered(0.9, 0.8, 0.8) == pytest.approx(0.0)
    assert gap_recovered(0.8, 0.85, 0.85) is None


def test_a_student_from_another_zoo_model_and_its_control_are_that_model():
    torch.manual_seed(0)
    baseline = tinycnn().eval()
    ctx = tiny_context(baseline)
    fit_, trained = ctx.fit, []
    ctx.fit = lambda model, settings, teacher, what: (trained.append((type(model).__name__, teacher is None)), fit_(model, settings, teacher, what))[1]
    call = parse_pass("distill(width=0.25, student='mobilenet_v2', epochs=1)")
    student, info = resolve(call.spec)(baseline, call.params, ctx)
    assert type(student).__name__ == "MobileNetV2" and info["student_model"] == "mobilenet_v2"
    assert trained == [("MobileNetV2", False), ("MobileNetV2", True)]  # the KD student, then its no-teacher control
    assert count_params(student) == count_params(mobilenet_v2(width=0.25))
    # a different model gets its own control: the baseline-architecture student at the same width does not reuse it
    _, same_width = resolve(parse_pass("distill(width=0.25, epochs=1)").spec)(baseline, parse_pass("distill(width=0.25, epochs=1)").params, ctx)
    assert trained[2:] == [("EdgeCNN", False), ("EdgeCNN", True)] and same_width["student_model"] is None


@pytest.mark.parametrize("text, message", [
    ("distill(width=0, student='mobilenet_v2')", "needs a width > 0"),
    ("distill(student='mobilenet_v2', init='teacher')", "leave student at 'baseline'"),
])
def test_student_model_rules(text, message):
    from compress.chain import PassSyntaxError

    with pytest.raises(PassSyntaxError, match=message):
        parse_pass(text)


def test_the_teacher_is_the_baseline_and_the_gap_share_is_recorded():
    """distill(width=0.5) after other passes: the teacher is ctx.baseline, not the model it is given,
    and the row's share of the gap is gap_recovered of what evaluate() said."""
    torch.manual_seed(0)
    baseline, incoming = tinycnn().eval(), tinycnn().eval()  # e.g. the output of a pruning pass
    ctx = tiny_context(baseline)
    teachers, scores = [], {"kd": 0.85, "scratch": 0.80}

    def recording_fit(model, settings, teacher, what):
        teachers.append(teacher)
        model.tag = "kd" if teacher is not None else "scratch"
        return [1.0]

    ctx.fit = recording_fit
    ctx.evaluate = lambda m: 0.90 if m is baseline else scores[m.tag]
    call = parse_pass("distill(width=0.5, epochs=1)")
    _, info = resolve(call.spec)(incoming, call.params, ctx)
    assert teachers[0] is baseline and teachers[1:] == [None]
    assert info["teacher_top1"] == 0.90 and info["student_kd_top1"] == 0.85 and info["student_scratch_top1"] == 0.80
    assert info["gap_recovered"] == pytest.approx(0.5)
