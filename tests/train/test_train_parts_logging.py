import json

import numpy as np
import pytest
import torch

from findvl.train.distributed import all_reduce_mean, get_world_size, is_main, shard_indices
from findvl.train.logging import JsonlLogger, ThroughputMeter, progress_bar, read_jsonl


def test_jsonl_logger_appends_and_flushes(tmp_path):
    path = tmp_path / "logs" / "train.jsonl"
    logger = JsonlLogger(path)
    logger.log(step=1, loss=torch.tensor(0.5), lr=1e-4)
    # flushed per line: readable while the logger is still open
    assert read_jsonl(path)[0]["loss"] == 0.5
    logger.log(step=2, loss=float("nan"))
    logger.close()
    with JsonlLogger(path) as again:  # a resumed run appends
        again.log(step=3, loss=0.25)
    records = read_jsonl(path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[1]["loss"] == "nan" and "time" in records[0]
    with pytest.raises(ValueError, match="scalar"):
        JsonlLogger(tmp_path / "x.jsonl").log(loss=torch.ones(2))


def test_disabled_logger_writes_nothing(tmp_path):
    logger = JsonlLogger(tmp_path / "off.jsonl", enabled=False)
    logger.log(step=1)
    assert not (tmp_path / "off.jsonl").exists()


def test_read_jsonl_names_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        read_jsonl(path)


def test_progress_bar_and_meter(capsys):
    bar = progress_bar(4, initial=1, desc="train")
    for _ in range(3):
        bar.set_postfix(loss=0.1)
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "4/4" in err and "loss=0.1" in err and "it/s" in err
    meter = ThroughputMeter(window=3)
    assert meter.rate == 0.0
    for _ in range(5):
        meter.update(8)
    assert meter.total == 40 and meter.rate > 0


def test_single_process_helpers():
    assert is_main() and get_world_size() == 1
    assert all_reduce_mean({"loss": 2, "acc": 0.5}) == {"loss": 2.0, "acc": 0.5}


def test_shard_indices_cover_and_resume():
    shards = [shard_indices(10, epoch=3, seed=7, rank=r, world_size=3) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    covered = np.concatenate(shards)
    assert set(covered.tolist()) == set(range(10)) and len(covered) == 12
    again = shard_indices(10, epoch=3, seed=7, rank=1, world_size=3)
    assert np.array_equal(again, shards[1])
    other_epoch = shard_indices(10, epoch=4, seed=7, rank=1, world_size=3)
    assert not np.array_equal(other_epoch, shards[1])
    resumed = shard_indices(10, epoch=3, seed=7, rank=1, world_size=3, start=2)
    assert np.array_equal(resumed, shards[1][2:])
    dropped = shard_indices(10, epoch=0, seed=0, rank=0, world_size=3, drop_last=True)
    assert len(dropped) == 3
    ordered = shard_indices(5, epoch=0, seed=0, rank=1, world_size=2, shuffle=False)
    assert ordered.tolist() == [1, 3, 0]
    with pytest.raises(ValueError, match="start"):
        shard_indices(10, epoch=0, seed=0, rank=0, world_size=2, start=6)
    with pytest.raises(ValueError, match="rank"):
        shard_indices(10, epoch=0, seed=0, rank=2, world_size=2)
