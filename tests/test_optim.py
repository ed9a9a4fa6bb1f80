"""Optimisers and schedules: PyTorch's update rules, step by step on the same gradients."""
import math

import numpy as np
import pytest

from runtime import Tensor
from runtime import optim, schedule


def _params(seed=0, shapes=((3, 4), (4,))):
    rng = np.random.default_rng(seed)
    return {f"p{i}": Tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
            for i, s in enumerate(shapes)}


def _grads(seed, params):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(p.shape).astype(np.float32) for k, p in params.items()}


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, betas=(0.85, 0.995), weight_decay=0.1)),
]


@pytest.mark.parametrize("name,kw", CASES)
def test_matches_torch_step_by_step(name, kw):
    torch = pytest.importorskip("torch")
    ours = _params()
    theirs = {k: torch.tensor(p.data.copy(), requires_grad=True) for k, p in ours.items()}
    opt = getattr(optim, name)(ours, **kw)
    topt = getattr(torch.optim, name)(list(theirs.values()), **kw)
    for step in range(6):
        g = _grads(100 + step, ours)
        for k in ours:
            ours[k].grad = g[k].copy()
            theirs[k].grad = torch.tensor(g[k])
        opt.step()
        topt.step()
        for k in ours:
            np.testing.assert_allclose(ours[k].data, theirs[k].detach().numpy(), rtol=2e-6, atol=2e-7,
                                       err_msg=f"{name} {kw} step {step} {k}")


def test_sgd_momentum_nesterov_by_hand():
    p = Tensor(np.array([1.0], np.float32), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.1)
    p.grad = np.array([2.0], np.float32)
    opt.step()          # d = 2 + 0.1·1 = 2.1; b = 2.1; d = 2.1 + 0.5·2.1 = 3.15; p = 1 − 0.315
    assert p.data[0] == pytest.approx(0.685, abs=1e-6)
    p.grad = np.array([1.0], np.float32)
    opt.step()          # d = 1 + 0.0685 = 1.0685; b = 1.05 + 1.0685 = 2.1185; d = 1.0685 + 1.05925; p −= 0.212775
    assert p.data[0] == pytest.approx(0.685 - 0.212775, abs=1e-6)


def test_adam_and_adamw_by_hand():
    # the first Adam step moves each weight by lr (times the sign of its gradient), whatever the scale
    p = Tensor(np.array([1.0, -2.0], np.float32), requires_grad=True)
    opt = optim.Adam([p], lr=0.01)
    p.grad = np.array([3.0, -1e-3], np.float32)
    opt.step()
    np.testing.assert_allclose(p.data, [0.99, -1.99], atol=1e-5)
    # L2 weight decay in Adam is part of the gradient: a zero gradient still moves the weight by lr
    q = Tensor(np.array([2.0], np.float32), requires_grad=True)
    opt = optim.Adam([q], lr=0.1, weight_decay=0.5)
    q.grad = np.zeros(1, np.float32)
    opt.step()
    assert q.data[0] == pytest.approx(1.9, abs=1e-5)
    # AdamW decays the weight directly: w·(1 − lr·wd), and the Adam step of a zero gradient is zero
    r = Tensor(np.array([2.0], np.float32), requires_grad=True)
    opt = optim.AdamW([r], lr=0.1, weight_decay=0.5)
    r.grad = np.zeros(1, np.float32)
    opt.step()
    assert r.data[0] == pytest.approx(2.0 * (1 - 0.05), abs=1e-6)


def test_skips_params_without_grad_and_zero_grad():
    ps = _params()
    before = ps["p1"].data.copy()
    opt = optim.SGD(ps, lr=0.1)
    ps["p0"].grad = np.ones_like(ps["p0"].data)
    opt.step()
    np.testing.assert_array_equal(ps["p1"].data, before)
    opt.zero_grad()
    assert all(p.grad is None for p in ps.values())


def test_lr_scale_groups_and_state_round_trip():
    ps = _params()
    groups = optim.grouped(ps, {"p1": 0.1})
    opt = optim.Adam(groups, lr=0.01)
    again = optim.Adam(optim.grouped({k: Tensor(v.data.copy(), requires_grad=True) for k, v in ps.items()},
                                     {"p1": 0.1}), lr=0.01)
    for step in range(3):
        g = _grads(step, ps)
        for k in ps:
            ps[k].grad = g[k]
        opt.step()
    start = {k: p.data.copy() for k, p in ps.items()}
    for k, t in again.named_parameters().items():
        t.data = ps[k].data.copy()
    again.load_state_dict(opt.state_dict())
    g = _grads(9, ps)
    for k in ps:
        ps[k].grad = g[k]
        again.named_parameters()[k].grad = g[k]
    opt.step()
    again.step()
    for k in ps:
        np.testing.assert_array_equal(again.named_parameters()[k].data, ps[k].data)
    # the scaled group moved by a tenth of the lr
    plain = optim.Adam({"x": Tensor(start["p1"].copy(), requires_grad=True)}, lr=0.01)
    assert opt.param_groups[1]["lr_scale"] == 0.1 and plain.param_groups[0]["lr_scale"] == 1.0


def test_clip_grad_norm_and_value_match_torch():
    torch = pytest.importorskip("torch")
    ps = _params(3)
    g = _grads(4, ps)
    tp = [torch.tensor(p.data, requires_grad=True) for p in ps.values()]
    for p, t, k in zip(ps.values(), tp, g):
        p.grad = g[k] * 10
        t.grad = torch.tensor(g[k] * 10)
    total = optim.clip_grad_norm(list(ps.values()), 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(tp, 1.0)
    assert total == pytest.approx(float(ttotal), rel=1e-5)
    for p, t in zip(ps.values(), tp):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-5)
    optim.clip_grad_value(list(ps.values()), 0.01)
    assert max(np.abs(p.grad).max() for p in ps.values()) <= 0.01


def _sched_pair(kind, torch, **kw):
    p = Tensor(np.zeros(1, np.float32), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.1)
    if kind == "step":
        return schedule.StepLR(opt, kw["step_size"], kw["gamma"]), torch.optim.lr_scheduler.StepLR(topt, **kw), opt, topt
    if kind == "cosine":
        return (schedule.CosineAnnealingLR(opt, kw["T_max"], kw["eta_min"]),
                torch.optim.lr_scheduler.CosineAnnealingLR(topt, **kw), opt, topt)
    return (schedule.ReduceLROnPlateau(opt, **{k: v for k, v in kw.items()}),
            torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw), opt, topt)


@pytest.mark.parametrize("kind,kw", [("step", dict(step_size=3, gamma=0.5)),
                                     ("cosine", dict(T_max=7, eta_min=1e-3))])
def test_schedules_match_torch(kind, kw):
    torch = pytest.importorskip("torch")
    ours, theirs, opt, topt = _sched_pair(kind, torch, **kw)
    for epoch in range(10):
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], rel=1e-9, abs=1e-12), epoch
        topt.step()
        ours.step()
        theirs.step()


def test_plateau_matches_torch():
    torch = pytest.importorskip("torch")
    ours, theirs, opt, topt = _sched_pair("plateau", torch, mode="min", factor=0.5, patience=2, min_lr=0.01)
    losses = [1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.95, 0.97, 0.99, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    for v in losses:
        ours.step(v)
        topt.step()
        theirs.step(v)
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"])
    assert opt.param_groups[0]["lr"] < 0.1


def test_schedules_by_hand():
    p = Tensor(np.zeros(1, np.float32), requires_grad=True)
    opt = optim.SGD(optim.grouped({"a": p, "b": Tensor(np.zeros(1, np.float32), requires_grad=True)},
                                  {"b": 0.1}), lr=1.0)
    s = schedule.CosineAnnealingLR(opt, t_max=4)
    lrs = []
    for _ in range(4):
        s.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([(1 + math.cos(math.pi * k / 4)) / 2 for k in range(1, 5)])
    assert opt.param_groups[1]["lr"] == opt.param_groups[0]["lr"] and opt.param_groups[1]["lr_scale"] == 0.1
    st = schedule.StepLR(opt, 2, 0.1)
    st.load_state_dict({"last_epoch": 3})
    st.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert schedule.monitor_mode("val.accuracy") == "max" and schedule.monitor_mode("val.loss") == "min"


def test_bad_arguments():
    p = Tensor(np.zeros(1, np.float32), requires_grad=True)
    with pytest.raises(ValueError):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.Adam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError):
        optim.SGD([], lr=0.1)
