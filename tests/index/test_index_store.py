"""The shard store: committed shards reopen memory-mapped, a cut-short shard is dropped."""

from __future__ import annotations

import numpy as np
import pytest

from findvl.index.store import EmbeddingStore, Shard


def _shard(ids, seed):
    rng = np.random.default_rng(seed)
    n = len(ids)
    return Shard(
        list(ids),
        rng.standard_normal((n, 4)).astype(np.float32),
        rng.standard_normal((n, 3, 4)).astype(np.float32),
    )


def test_shards_reopen_and_an_uncommitted_one_is_removed(tmp_path) -> None:
    store = EmbeddingStore(tmp_path)
    first, second = _shard(["a", "b"], 0), _shard(["c", "d", "e"], 1)
    store.append(first)
    empty = Shard([], np.zeros((0, 4), np.float32), np.zeros((0, 3, 4), np.float32))
    empty.skipped = [{"path": "x.png", "error": "unreadable"}]
    store.append(empty)
    store.append(second)
    folder = tmp_path / "shards"
    (folder / "00000003.images.npy").write_bytes(b"half a file")  # killed before its JSON
    (folder / "00000003.objects.npy.tmp").write_bytes(b"")
    reopened = EmbeddingStore.open(tmp_path)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("00000003")) == []
    assert reopened.ids == ["a", "b", "c", "d", "e"] and len(reopened) == 5
    assert reopened.skipped == empty.skipped and "c" in reopened and "x.png" not in reopened
    assert isinstance(reopened.shards[0].images, np.memmap)
    np.testing.assert_array_equal(reopened.images(), np.concatenate([first.images, second.images]))
    rows = np.array([4, 0, 2])
    expected = np.stack([second.objects[2], first.objects[0], second.objects[0]])
    np.testing.assert_array_equal(reopened.objects(rows), expected)
    assert reopened.dims == (4, 3)
    with pytest.raises(ValueError, match="dims"):
        reopened.append(Shard(["f"], np.zeros((1, 5)), np.zeros((1, 3, 5))))
