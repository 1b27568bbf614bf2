"""``evaluate_run``: run a model on a dataset split and score every task of FIND's Tables 3-4.

Images are processed in batches; each batch is encoded once (:meth:`FindModel.encode_images`)
and every task runs its requests on the cached features. All randomness (prompt points, visual
reference choices) derives from ``seed``, so two runs give identical numbers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from findvl.data.dataset import DatasetPaths, Sample, load_dataset
from findvl.data.jsonio import load_json
from findvl.evaluation.baselines import EmbeddingAverage
from findvl.evaluation.common import SegmentMasks, Vocabulary, batches, generator, load_image
from findvl.evaluation.generic import GenericWriter, gt_panoptic_dir, predict_generic
from findvl.evaluation.grounding import GroundingWriter, run_refs
from findvl.evaluation.interactive import InteractiveTask
from findvl.evaluation.interleave import InterleaveTask
from findvl.evaluation.retrieval import RetrievalTask
from findvl.evaluation.tasks import TASKS


@dataclass(frozen=True)
class EvalSettings:
    """How to evaluate.

    Attributes:
        tasks: subset of :data:`TASKS` to run.
        seed: source of every random choice.
        batch_size: images encoded per forward.
        limit: evaluate only the first ``limit`` images of the split (None: all).
        interactive_objects: objects per image for interactive segmentation (None: all).
        max_clicks: clicks per interactive session.
        progress: show a progress bar on stderr.
    """

    tasks: tuple[str, ...] = TASKS
    seed: int = 0
    batch_size: int = 8
    limit: int | None = None
    interactive_objects: int | None = None
    max_clicks: int = 20
    progress: bool = True


def dataset_vocabulary(
    root: str | Path, split: str, class_names: list[str] | None, isthing: list[bool] | None
) -> tuple[Vocabulary, list[dict]]:
    """The model's vocabulary tied to the split's categories by name; and the raw categories.

    Without ``class_names`` the split's categories (sorted by id) are the vocabulary.
    """
    paths = DatasetPaths.standard(root, split)
    categories = load_json(paths.panoptic_json).get("categories", [])
    by_name = {c["name"]: c for c in categories}
    if not class_names:
        cats = sorted(categories, key=lambda c: c["id"])
        names = [c["name"] for c in cats]
        return Vocabulary(
            names, [bool(c.get("isthing", 1)) for c in cats], [c["id"] for c in cats]
        ), categories
    if isthing is None or len(isthing) != len(class_names):
        isthing = [bool(by_name.get(n, {}).get("isthing", 1)) for n in class_names]
    ids = [by_name[n]["id"] if n in by_name else None for n in class_names]
    return Vocabulary(list(class_names), list(isthing), ids), categories


def _check_tasks(tasks) -> tuple[str, ...]:
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"tasks: unknown task {unknown[0]!r}; expected some of {TASKS}")
    return tuple(tasks)


@torch.no_grad()
def evaluate_run(
    model,
    class_names: list[str] | None,
    isthing: list[bool] | None,
    root: str | Path,
    split: str = "val",
    tasks: tuple[str, ...] = TASKS,
    seed: int = 0,
    *,
    batch_size: int = 8,
    limit: int | None = None,
    interactive_objects: int | None = None,
    max_clicks: int = 20,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate ``model`` on ``root``/``split``; every value in percent (NoC in clicks).

    Returns a nested dict: ``panoptic``, ``instance``, ``semantic``, ``grounding``,
    ``interactive``, ``retrieval``, ``interleave_segmentation``, ``interleave_retrieval``,
    ``interleave_retrieval_legend``, ``interleave_grounding_long`` and ``baselines`` (those of
    the requested ``tasks``) plus ``meta``. Prediction and ground-truth files are written to
    ``out_dir`` (a temporary folder when None).
    """
    settings = EvalSettings(
        _check_tasks(tasks), seed, batch_size, limit, interactive_objects, max_clicks, progress
    )
    samples = load_dataset(root, split)[: limit if limit is not None else None]
    if not samples:
        raise ValueError(f"{root}: split {split!r} has no images to evaluate")
    vocab, categories = dataset_vocabulary(root, split, class_names, isthing)
    model.eval()
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="findvl-eval-") as tmp:
            return _evaluate(model, samples, vocab, categories, settings, Path(tmp))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _evaluate(model, samples, vocab, categories, settings, out)


def _evaluate(
    model, samples: list[Sample], vocab, categories, settings: EvalSettings, out: Path
) -> dict:
    tasks, seed = settings.tasks, settings.seed
    segments = SegmentMasks()
    by_id = {s.image_id: s for s in samples}
    generic = GenericWriter(out / "generic", vocab) if "generic" in tasks else None
    refs = GroundingWriter("grounding") if "grounding" in tasks else None
    retrieval = RetrievalTask() if "retrieval" in tasks else None
    interleave = InterleaveTask(seed, by_id, segments) if "interleave" in tasks else None
    long = (
        InterleaveTask(
            seed,
            by_id,
            segments,
            visual=False,
            long=True,
            writer=GroundingWriter("interleave_long"),
        )
        if "long" in tasks
        else None
    )
    text_only = (
        InterleaveTask(
            seed, by_id, segments, visual=False, writer=GroundingWriter("interleave_text_only")
        )
        if "baselines" in tasks
        else None
    )
    average = EmbeddingAverage(model, seed, by_id, segments) if "baselines" in tasks else None
    interactive = (
        InteractiveTask(seed, settings.interactive_objects, settings.max_clicks, segments)
        if "interactive" in tasks
        else None
    )
    for i, batch in enumerate(
        tqdm(
            list(batches(samples, settings.batch_size)),
            desc="evaluate",
            disable=not settings.progress,
        )
    ):
        features = model.encode_images([load_image(s) for s in batch])

        def gen(task: int, r: int = 0, i: int = i) -> torch.Generator:
            return generator(seed, task, i, r)

        if generic is not None:
            for sample, pred in zip(
                batch, predict_generic(model, features, vocab, gen(0)), strict=True
            ):
                generic.add(sample, pred, sample.panoptic.load_masks())
        if refs is not None:
            run_refs(model, features, batch, segments=segments, writer=refs, generator=gen(1))
        for k, task in enumerate((retrieval, interleave, long, text_only)):
            if task is not None:
                task.update(model, features, batch, lambda r, k=k: gen(2 + k, r))
        if interactive is not None:
            interactive.update(model, features, batch, lambda r: gen(6, r))
        if average is not None:
            average.update(features, batch)
    collected = _TaskSet(
        generic, refs, interactive, retrieval, interleave, long, text_only, average
    )
    return _results(collected, samples=samples, categories=categories, out=out, settings=settings)


@dataclass
class _TaskSet:
    """The collectors of one evaluation (None: the task is not run)."""

    generic: GenericWriter | None
    refs: GroundingWriter | None
    interactive: InteractiveTask | None
    retrieval: RetrievalTask | None
    interleave: InterleaveTask | None
    long: InterleaveTask | None
    text_only: InterleaveTask | None
    average: EmbeddingAverage | None


def _results(t: _TaskSet, *, samples, categories, out: Path, settings: EvalSettings) -> dict:
    result: dict = {}
    if t.generic is not None:
        result |= t.generic.finish(categories, gt_panoptic_dir(samples))
    if t.refs is not None:
        result["grounding"] = t.refs.finish(out)
    if t.interactive is not None:
        result["interactive"] = t.interactive.finish()
    if t.retrieval is not None:
        result["retrieval"] = t.retrieval.finish(out)
    if t.interleave is not None:
        result["interleave_segmentation"] = t.interleave.writer.finish(out)
        result["interleave_retrieval"] = t.interleave.bank.metrics(legend_only=False)
        result["interleave_retrieval_legend"] = t.interleave.bank.metrics(legend_only=True)
    if t.long is not None:
        result["interleave_grounding_long"] = t.long.writer.finish(out)
    if t.text_only is not None:
        result["baselines"] = {
            "text_only": t.text_only.bank.metrics(legend_only=False),
            "embedding_average": t.average.metrics(),
        }
    result["meta"] = {
        "num_images": len(samples),
        "seed": settings.seed,
        "tasks": list(settings.tasks),
        "grounding_sentences": "first",
    }
    return result
