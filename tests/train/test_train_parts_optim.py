import math

import pytest
import torch
from torch import nn

from findvl.train.optim import (
    OptimizerConfig,
    ScheduleConfig,
    build_optimizer,
    build_scheduler,
    clip_grad_norm,
    lr_factor,
    param_groups,
)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.gn = nn.GroupNorm(2, 8)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.logit_scale = nn.Parameter(torch.zeros(()))


def _wd_by_name(groups):
    return {n: g["weight_decay"] for g in groups for n in g["names"]}


def test_norm_and_embedding_params_have_no_weight_decay():
    wd = _wd_by_name(param_groups(Toy(), weight_decay=0.05))
    for name in ("embed.weight", "norm.weight", "norm.bias", "gn.weight", "gn.bias"):
        assert wd[name] == 0.0, name
    assert wd["proj.weight"] == 0.05 and wd["proj.bias"] == 0.05  # official: biases decayed
    assert "frozen.weight" not in wd
    assert wd["logit_scale"] == 0.05
    no_bias = _wd_by_name(param_groups(Toy(), weight_decay=0.05, decay_biases=False))
    assert no_bias["proj.bias"] == 0.0 and no_bias["proj.weight"] == 0.05


def test_build_optimizer_covers_all_trainable_params_once():
    model = Toy()
    model.proj2 = model.proj  # shared module
    opt = build_optimizer(model, OptimizerConfig())
    params = [p for g in opt.param_groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(params) == len(trainable) == len({id(p) for p in params})
    assert all(g["lr"] == 1e-4 for g in opt.param_groups)


def test_multistep_schedule_key_steps():
    cfg = ScheduleConfig(total_steps=1000, warmup_steps=10, warmup_factor=0.001)
    assert lr_factor(0, config=cfg) == pytest.approx(0.001)
    assert lr_factor(5, config=cfg) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(10, config=cfg) == 1.0
    assert lr_factor(888, config=cfg) == 1.0
    assert lr_factor(889, config=cfg) == pytest.approx(0.1)
    assert lr_factor(962, config=cfg) == pytest.approx(0.1)
    assert lr_factor(963, config=cfg) == pytest.approx(0.01)
    official = ScheduleConfig(total_steps=1000)  # warm-up factor 1.0: flat start
    assert lr_factor(0, config=official) == 1.0


def test_cosine_schedule_key_steps():
    cfg = ScheduleConfig(total_steps=100, kind="cosine", warmup_steps=0, min_factor=0.1)
    assert lr_factor(0, config=cfg) == 1.0
    assert lr_factor(50, config=cfg) == pytest.approx(0.55)
    assert lr_factor(100, config=cfg) == pytest.approx(0.1)
    assert lr_factor(500, config=cfg) == pytest.approx(0.1)


def test_schedule_rejects_bad_config():
    with pytest.raises(ValueError, match="kind"):
        ScheduleConfig(total_steps=10, kind="linear")
    with pytest.raises(ValueError, match="milestones"):
        ScheduleConfig(total_steps=10, milestones=(1.5,))


def test_scheduler_drives_optimizer_lr():
    model = Toy()
    opt = build_optimizer(model, OptimizerConfig(lr=1.0))
    cfg = ScheduleConfig(total_steps=10, milestones=(0.5,), warmup_steps=0)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [1.0] * 5 + [pytest.approx(0.1)] * 5


def test_clip_grad_norm_full_model():
    a = nn.Parameter(torch.zeros(3))
    b = nn.Parameter(torch.zeros(4))
    a.grad = torch.full((3,), 3.0)
    b.grad = torch.full((4,), 4.0)
    expected = math.sqrt(9 * 3 + 16 * 4)
    norm = clip_grad_norm([a, b], 0.01)
    assert norm.item() == pytest.approx(expected)
    total = torch.cat([a.grad, b.grad]).norm().item()
    assert total == pytest.approx(0.01, rel=1e-4)
    a.grad = torch.full((3,), float("nan"))
    with pytest.raises(ValueError, match="not finite"):
        clip_grad_norm([a, b], 0.01, error_if_nonfinite=True)
    assert clip_grad_norm([nn.Parameter(torch.zeros(1))], 1.0).item() == 0.0


def test_multi_tensor_adamw_equals_one_tensor_at_a_time():
    models, opts = [], []
    for multi in (True, False):
        torch.manual_seed(0)
        model = Toy()
        models.append(model)
        opts.append(build_optimizer(model, OptimizerConfig(lr=0.01, multi_tensor=multi)))
    assert all(g["fused"] for g in opts[0].param_groups)  # CPU has fused kernels
    assert not any(g["foreach"] or g["fused"] for g in opts[1].param_groups)
    for step in range(3):
        for model, opt in zip(models, opts):
            torch.manual_seed(step)
            x = torch.randint(0, 10, (4,))
            loss = (model.gn(model.norm(model.proj(model.embed(x))).T[None]) ** 2).sum()
            (loss * model.logit_scale.exp()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for a, b in zip(*(m.state_dict().values() for m in models)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
