"""Python, NumPy and torch RNG states as JSON and tensors (no pickle)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_json() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {**np_state["state"]}}
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    return {"python": [version, list(internal), gauss], "numpy": np_state}


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    return tensors


def restore_rng(rng: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = {**rng["numpy"], "state": {**rng["numpy"]["state"]}}
    np_state["state"]["key"] = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(np_state)
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[f"cuda.{i}"] for i in range(sum(k.startswith("cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
