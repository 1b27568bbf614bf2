"""`findvl evaluate`'s retrieval numbers, computed through FindIndex, equal brute force."""

from __future__ import annotations

import json

import numpy as np

from findvl.evaluation.interleave import RetrievalBank
from findvl.evaluation.retrieval import RetrievalTask
from findvl.metrics.interleave import interleave_scores
from findvl.metrics.retrieval import retrieval_metrics


def _bank(seed: int = 0) -> RetrievalBank:
    rng = np.random.default_rng(seed)
    bank = RetrievalBank()
    gallery = [11, 12, 13, 14, 15, 16, 17, 18]
    images = rng.standard_normal((8, 6)).astype(np.float32)
    images[5] = images[2]  # an exact tie in the image term
    objects = rng.standard_normal((8, 4, 6)).astype(np.float32)
    bank.gallery_ids, bank.images, bank.objects = gallery, list(images), list(objects)
    for q in range(12):
        bank.query_images.append(gallery[q % 8])
        bank.legends.append(images[q % 8] + 0.8 * rng.standard_normal(6).astype(np.float32))
        bank.entities.append(rng.standard_normal((q % 3, 6)).astype(np.float32))
        bank.references.append([gallery[(q + 1) % 8]] if q % 2 else [])
    return bank


def _brute_force(bank: RetrievalBank, legend_only: bool) -> np.ndarray:
    """The evaluator's score matrix as computed before the index existed."""
    position = {g: j for j, g in enumerate(bank.gallery_ids)}
    q, g = len(bank.legends), len(bank.gallery_ids)
    width = max(1, max(e.shape[0] for e in bank.entities))
    dim = bank.images[0].shape[-1]
    entities = np.zeros((q, width, dim), np.float32)
    mask = np.zeros((q, width), bool)
    if not legend_only:
        for i, e in enumerate(bank.entities):
            entities[i, : e.shape[0]], mask[i, : e.shape[0]] = e, True
    references = np.zeros((q, g), bool)
    for i, refs in enumerate(bank.references):
        references[i, [position[r] for r in refs if r in position]] = True
    return interleave_scores(
        np.stack(bank.legends),
        np.stack(bank.images),
        entities,
        mask,
        np.stack(bank.objects),
        weight=0.5,
        references=references,
        reference_penalty=0.0 if legend_only else 1e-6,
    )


def test_interleave_retrieval_through_the_index_equals_brute_force() -> None:
    bank = _bank()
    for legend_only in (False, True):
        scores, qi, gi = bank.scores(legend_only=legend_only)
        expected = _brute_force(bank, legend_only)
        np.testing.assert_array_equal(scores, expected)  # bit for bit
        reference = retrieval_metrics(expected, qi, gi, text_retrieval=False)
        got = bank.metrics(legend_only=legend_only)
        assert {k: got[k] for k in reference.recall} == reference.recall
    assert bank.metrics(legend_only=False) != bank.metrics(legend_only=True)


def test_image_text_retrieval_through_the_index_equals_brute_force(tmp_path) -> None:
    rng = np.random.default_rng(3)
    task = RetrievalTask()
    task.image_ids = [5, 6, 7, 8, 9]
    task.images = list(rng.standard_normal((5, 8)).astype(np.float32))
    task.caption_images = [5, 5, 6, 7, 8, 9, 9]
    task.captions = list(rng.standard_normal((7, 8)).astype(np.float32))
    result = task.finish(tmp_path)
    captions, images = np.stack(task.captions), np.stack(task.images)

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    expected = unit(captions) @ unit(images).T
    with np.load(tmp_path / "retrieval_scores.npz") as data:
        np.testing.assert_array_equal(data["scores"], expected)
    gt = json.loads((tmp_path / "retrieval_gt.json").read_text())
    assert gt["c0"] == ["5"] and len(gt) == 7
    gallery = np.array([task.image_ids.index(i) for i in task.caption_images])
    reference = retrieval_metrics(expected, np.arange(7), gallery)
    assert {k: result[k] for k in reference.recall} == reference.recall


def test_evaluate_through_the_index_equals_the_brute_force_evaluator(
    tmp_path, monkeypatch, tiny_model, tiny_world
):
    import findvl.evaluation.retrieval as retrieval_module
    from findvl.evaluation.runner import evaluate_run

    root = tiny_world(tmp_path / "w", images=4)
    tasks = ("retrieval", "interleave")

    def run() -> dict:
        result = evaluate_run(
            tiny_model(), None, None, root, tasks=tasks, batch_size=4, threads=1, progress=False
        )
        return {
            k: result[k]
            for k in ("retrieval", "interleave_retrieval", "interleave_retrieval_legend")
        }

    through_index = run()

    class BruteForce:
        """The evaluator's formulas as they were before the index."""

        def __init__(self, images):
            self.images = np.stack(images)

        @classmethod
        def from_embeddings(cls, ids, images):
            return cls(images)

        def image_scores(self, captions):
            def unit(x):
                return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

            return unit(captions) @ unit(self.images).T

    def brute_scores(self, *, legend_only):
        position = {g: j for j, g in enumerate(self.gallery_ids)}
        gallery_index = np.array([position[i] for i in self.query_images], np.int64)
        return _brute_force(self, legend_only), np.arange(len(self.legends)), gallery_index

    monkeypatch.setattr(retrieval_module, "FindIndex", BruteForce)
    monkeypatch.setattr(RetrievalBank, "scores", brute_scores)
    brute = run()
    assert through_index == brute
    assert through_index["interleave_retrieval"]["num_queries"] > 0
