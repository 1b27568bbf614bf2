"""``evaluate_run``: run a model on a dataset split and score every task of FIND's Tables 3-4.

Images are encoded in batches of ``batch_size`` (:meth:`FindModel.encode_images`) and every
task runs its requests on the cached features. Each task plans its forwards as one batch at a
time would (rounds of captions, clicks...); consecutive batches form a chunk whose planned
forwards share actual forwards when their padded shapes agree (:mod:`findvl.evaluation.batching`),
which changes the speed but not the numbers. All randomness (prompt points, visual reference
choices) derives from ``seed`` and the batch index, so two runs give identical numbers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from findvl.data.readers.dataset import Sample, load_dataset
from findvl.data.readers.vocabulary import dataset_categories, vocabulary_of
from findvl.evaluation.baselines import EmbeddingAverage
from findvl.evaluation.batching import Chunk, ImageCanvas, TokenCounts, chunks
from findvl.evaluation.common import SegmentMasks, batches, load_image, torch_threads
from findvl.evaluation.generic import GenericWriter, gt_panoptic_dir, run_generic
from findvl.evaluation.grounding import GroundingWriter, run_refs
from findvl.evaluation.interactive import InteractiveTask
from findvl.evaluation.interleave import InterleaveTask
from findvl.evaluation.retrieval import RetrievalTask
from findvl.evaluation.tasks import TASKS
from findvl.postprocess import OBJECT_THRESHOLD

#: Canvas pixels per forward: eight 1024x1024 images.
FORWARD_PIXELS = 8 * 1024 * 1024


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
        forward_pixels: canvas pixels in one forward (rows x H x W), and in the features kept
            for a chunk of consecutive batches; bounds memory, never changes the numbers.
        threads: torch intra-op CPU threads during the evaluation (None: leave as set). One
            thread is much faster for small models on shared CPUs; numbers are bitwise
            reproducible at a given thread count.
        object_threshold: minimum class score of a proposal kept by panoptic inference.
    """

    tasks: tuple[str, ...] = TASKS
    seed: int = 0
    batch_size: int = 8
    limit: int | None = None
    interactive_objects: int | None = None
    max_clicks: int = 20
    progress: bool = True
    forward_pixels: int = FORWARD_PIXELS
    threads: int | None = None
    object_threshold: float = OBJECT_THRESHOLD


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
    forward_pixels: int = FORWARD_PIXELS,
    threads: int | None = None,
    object_threshold: float = OBJECT_THRESHOLD,
) -> dict:
    """Evaluate ``model`` on ``root``/``split``; every value in percent (NoC in clicks).

    Returns a nested dict: ``panoptic``, ``instance``, ``semantic``, ``grounding``,
    ``interactive``, ``retrieval``, ``interleave_segmentation``, ``interleave_retrieval``,
    ``interleave_retrieval_legend``, ``interleave_grounding_long`` and ``baselines`` (those of
    the requested ``tasks``) plus ``meta``. Prediction and ground-truth files are written to
    ``out_dir`` (a temporary folder when None). The other keywords are those of
    :class:`EvalSettings`.
    """
    if forward_pixels < 1:
        raise ValueError(f"forward_pixels must be positive, got {forward_pixels}")
    if not 0.0 <= object_threshold <= 1.0:
        raise ValueError(f"object_threshold: must lie in [0, 1], got {object_threshold}")
    settings = EvalSettings(
        _check_tasks(tasks),
        seed,
        batch_size,
        limit,
        interactive_objects,
        max_clicks,
        progress,
        forward_pixels,
        threads,
        object_threshold,
    )
    samples = load_dataset(root, split)[: limit if limit is not None else None]
    if not samples:
        raise ValueError(f"{root}: split {split!r} has no images to evaluate")
    categories = dataset_categories(root, split)
    vocab = vocabulary_of(categories, class_names, isthing)
    model.eval()
    with torch_threads(threads):
        if out_dir is None:
            with tempfile.TemporaryDirectory(prefix="findvl-eval-") as tmp:
                return _evaluate(model, samples, vocab, categories, settings, Path(tmp))
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return _evaluate(model, samples, vocab, categories, settings, out)


def _evaluate(
    model, samples: list[Sample], vocab, categories, settings: EvalSettings, out: Path
) -> dict:
    segments = SegmentMasks()
    t = _task_set(model, samples, vocab, settings, segments, out)
    tokens, canvases = TokenCounts(model), ImageCanvas(model)
    numbered = list(enumerate(batches(samples, settings.batch_size)))
    with tqdm(total=len(samples), desc="evaluate", disable=not settings.progress) as bar:
        for chunk in chunks(model, numbered, load_image, settings.forward_pixels):
            _run_chunk(
                model,
                chunk,
                t,
                seed=settings.seed,
                segments=segments,
                tokens=tokens,
                canvases=canvases,
                forward_pixels=settings.forward_pixels,
            )
            bar.update(sum(len(b.samples) for b in chunk.batches))
    return _results(t, samples=samples, categories=categories, out=out, settings=settings)


def _task_set(model, samples, vocab, settings: EvalSettings, segments, out: Path) -> _TaskSet:
    """The collectors of the requested tasks. Generator keys (as one batch at a time draws
    them): generic 0, grounding 1, retrieval 2, interleave 3, long 4, text-only 5, interactive 6.
    """
    tasks, seed = settings.tasks, settings.seed
    by_id = {s.image_id: s for s in samples}

    def interleave(name: str, key: int, **kwargs) -> InterleaveTask:
        writer = GroundingWriter(name)
        return InterleaveTask(seed, by_id, segments, writer=writer, task_key=key, **kwargs)

    baselines = "baselines" in tasks
    return _TaskSet(
        generic=(
            GenericWriter(out / "generic", vocab, settings.object_threshold)
            if "generic" in tasks
            else None
        ),
        refs=GroundingWriter("grounding") if "grounding" in tasks else None,
        interactive=(
            InteractiveTask(seed, settings.interactive_objects, settings.max_clicks, segments)
            if "interactive" in tasks
            else None
        ),
        retrieval=RetrievalTask() if "retrieval" in tasks else None,
        interleave=interleave("interleave", 3) if "interleave" in tasks else None,
        long=(
            interleave("interleave_long", 4, visual=False, long=True) if "long" in tasks else None
        ),
        text_only=interleave("interleave_text_only", 5, visual=False) if baselines else None,
        average=EmbeddingAverage(model, seed, by_id, segments) if baselines else None,
    )


def _run_chunk(
    model, chunk: Chunk, t: _TaskSet, *, seed, segments, tokens, canvases, forward_pixels
) -> None:
    """Every task on the images of one chunk."""
    if t.generic is not None:
        run_generic(model, chunk, t.generic.vocab, t.generic, seed)
    if t.refs is not None:
        run_refs(model, chunk, segments=segments, writer=t.refs, seed=seed, tokens=tokens)
    if t.retrieval is not None:
        t.retrieval.run(model, chunk, seed, tokens)
    for task in (t.interleave, t.long, t.text_only):
        if task is not None:
            task.run(model, chunk, tokens, canvases)
    if t.interactive is not None:
        t.interactive.run(model, chunk)
    if t.average is not None:
        t.average.run([b.samples for b in chunk.batches], forward_pixels, tokens)


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
        "object_threshold": settings.object_threshold,
    }
    return result
