import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.training import build_optimizer, build_scheduler


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


def _lrs(name, epochs, **kw):
    opt = build_optimizer(_params(), "sgd", lr=1.0)
    sched = build_scheduler(opt, name, epochs=epochs, **kw)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_optimizers_by_name():
    sgd = build_optimizer(_params(), "sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 5e-4)
    assert isinstance(build_optimizer(_params(), "adam", lr=1e-3), torch.optim.Adam)
    assert isinstance(build_optimizer(_params(), "adamw", lr=1e-3), torch.optim.AdamW)


def test_bad_optimizer_name_lists_valid_ones():
    with pytest.raises(ConfigError, match="sgd, adam, adamw"):
        build_optimizer(_params(), "rmsprop")
    with pytest.raises(ConfigError, match="nesterov"):
        build_optimizer(_params(), "sgd", momentum=0.0, nesterov=True)


def test_multistep_milestones_are_fractions_of_training():
    # GraSP setting: lr/10 at 50% and 75% of training
    assert _lrs("multistep", 8) == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    opt = build_optimizer(_params(), "sgd", lr=0.1)
    sched = build_scheduler(opt, "multistep", epochs=160)
    assert sorted(sched.milestones) == [80, 120]
    with pytest.raises(ConfigError, match="fractions"):
        build_scheduler(opt, "multistep", epochs=10, milestones=(50, 75))


def test_other_schedules():
    assert _lrs("constant", 3) == [1.0, 1.0, 1.0]
    assert _lrs("step", 5, step_size=2, gamma=0.5) == pytest.approx([1, 1, 0.5, 0.5, 0.25])
    cosine = _lrs("cosine", 4)
    assert cosine[0] == 1.0 and cosine == sorted(cosine, reverse=True) and cosine[-1] < 0.2


def test_bad_scheduler_settings():
    opt = build_optimizer(_params(), "sgd")
    with pytest.raises(ConfigError, match="step, cosine, multistep, constant"):
        build_scheduler(opt, "linear", epochs=3)
    with pytest.raises(ConfigError, match="step_size"):
        build_scheduler(opt, "step", epochs=3, step_size=0)


def test_step_without_step_size_decays_every_third_of_training():
    assert _lrs("step", 6, gamma=0.5) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
