"""The README's Python snippet runs as written (on a tiny run laid out as the quickstart's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from findvl.build import build_model
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.train.checkpoint import save_checkpoint
from findvl.train.config import train_config

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet() -> str:
    text = README.read_text()
    section = text[text.index("## Using it") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_runs_as_written(tmp_path, monkeypatch):
    root = tmp_path / "runs" / "quickstart"
    write_synth(
        SynthConfig(out=root / "data", images=1, seed=1, size=64, split="val"), progress=False
    )
    torch.manual_seed(0)
    config = train_config("find_tiny", [], steps=1, batch_size=1)
    vocabulary = {"names": ["circle", "square", "grass"], "isthing": [True, True, False]}
    saved = {"train": json.loads(config.to_json()), "vocabulary": vocabulary}
    save_checkpoint(root / "run", step=1, model=build_model(config.model), config=saved)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_snippet(), str(README), "exec"), scope)  # noqa: S102 - our own README
    assert scope["masks"].shape == (1, 64, 64) and scope["scores"].shape == (1,)
    assert scope["out"].grounded_segmentation.best_masks().shape[:2] == (2, 1)
