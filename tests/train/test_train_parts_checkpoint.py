import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from findvl.train.checkpoint import (
    find_latest,
    flatten_optimizer_state,
    is_complete,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from findvl.train.optim import OptimizerConfig, ScheduleConfig, build_optimizer, build_scheduler


class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.backbone = nn.Linear(4, width)  # stands in for a frozen encoder
        self.backbone.requires_grad_(False)
        self.body = nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width), nn.Linear(width, 1))


def _setup(seed=0):
    torch.manual_seed(seed)
    model = Net()
    opt = build_optimizer(model, OptimizerConfig(lr=1e-2, clip_grad_norm=0.0))
    sched = build_scheduler(opt, ScheduleConfig(total_steps=20, milestones=(0.5,)))
    return model, opt, sched


def _train(model, opt, sched, steps):
    for _ in range(steps):
        x = torch.randn(16, 4)  # uses the global torch RNG: restored from the checkpoint
        noise = float(np.random.rand()) + random.random()
        loss = (model.body(model.backbone(x)) - noise).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_round_trip_is_bit_identical(tmp_path):
    model, opt, sched = _setup()
    _train(model, opt, sched, 6)
    path = save_checkpoint(
        tmp_path,
        step=6,
        model=model,
        optimizer=opt,
        scheduler=sched,
        config={"lr": 1e-2},
        data_position={"epoch": 0, "index": 96},
    )
    _train(model, opt, sched, 8)  # the run that never stopped
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    random.seed(123)  # scramble every RNG before resuming
    np.random.seed(123)
    torch.manual_seed(123)
    model2, opt2, sched2 = _setup(seed=1)
    state = load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2)
    assert (state.step, state.data_position, state.config) == (
        6,
        {"epoch": 0, "index": 96},
        {"lr": 1e-2},
    )
    assert sched2.last_epoch == 6
    _train(model2, opt2, sched2, 8)
    for key, value in model2.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_skip_prefixes_and_validation_errors(tmp_path):
    model, opt, _ = _setup()
    path = save_checkpoint(tmp_path, step=1, model=model, skip_prefixes=("backbone.",))
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
    assert names and not any(k.startswith("backbone.") for k in names)
    load_checkpoint(path, model=Net())
    with pytest.raises(ValueError, match=r"body\.0\.weight.*\(16, 16\)"):
        load_checkpoint(path, model=Net(width=16))

    class Extra(Net):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 2)

    with pytest.raises(ValueError, match=r"missing keys \['head\.bias', 'head\.weight'\]"):
        load_checkpoint(path, model=Extra())
    extra_path = save_checkpoint(tmp_path / "extra", step=1, model=Extra())
    with pytest.raises(ValueError, match=r"unexpected keys \['head\.bias', 'head\.weight'\]"):
        load_checkpoint(extra_path, model=Net())
    with pytest.raises(ValueError, match="no optimizer"):
        load_checkpoint(path, model=Net(), optimizer=opt)


def test_optimizer_flatten_round_trip():
    model, opt, sched = _setup()
    _train(model, opt, sched, 2)
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    json.dumps(meta)
    restored = unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)))
    original = opt.state_dict()
    assert restored["state"].keys() == original["state"].keys()
    for pid, st in original["state"].items():
        for k, v in st.items():
            assert torch.equal(restored["state"][pid][k], v)


def test_find_latest_skips_incomplete_and_corrupt(tmp_path):
    model, _, _ = _setup()
    assert find_latest(tmp_path) is None
    first = save_checkpoint(tmp_path, step=1, model=model, keep_last=None)
    second = save_checkpoint(tmp_path, step=2, model=model, keep_last=None)
    third = save_checkpoint(tmp_path, step=3, model=model, keep_last=None)
    assert find_latest(tmp_path) == third
    assert (tmp_path / "latest").read_text().strip() == "step_00000003"
    (third / "state.json").unlink()  # incomplete: crash before the final write
    assert find_latest(tmp_path) == second
    data = (second / "model.safetensors").read_bytes()
    (second / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    assert not is_complete(second)
    assert find_latest(tmp_path) == first
    (first / "state.json").write_text("{not json")
    assert find_latest(tmp_path) is None
    (tmp_path / "step_00000009").mkdir()  # empty directory
    assert find_latest(tmp_path) is None
    with pytest.raises(ValueError, match="state.json"):
        load_checkpoint(first, model=model)


def test_keep_last_prunes_oldest(tmp_path):
    model, _, _ = _setup()
    for step in range(1, 6):
        save_checkpoint(tmp_path, step=step, model=model, keep_last=2)
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("step_"))
    assert names == ["step_00000004", "step_00000005"]
    again = save_checkpoint(tmp_path, step=5, model=model, keep_last=2)  # re-save replaces
    assert find_latest(tmp_path) == again and is_complete(again)
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def test_non_json_config_is_rejected_before_writing(tmp_path):
    model, _, _ = _setup()
    with pytest.raises(ValueError, match="config"):
        save_checkpoint(tmp_path, step=1, model=model, config={"x": object()})
    assert find_latest(tmp_path) is None
