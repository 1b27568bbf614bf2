"""Semantic segmentation metrics from PNGs of class indices: mIoU, fwIoU, pixel and mean accuracy.

The confusion matrix counts ground-truth class (rows) against predicted class (columns) over
pixels whose ground truth is not ``ignore``; a prediction equal to ``ignore`` (no class) gets an
extra column, so it counts against recall. Averages run over the classes that occur in the
ground truth or the prediction (a class only predicted has IoU 0); this is the value the
detectron2 evaluator used by FIND reports. Accuracies average over classes present in the
ground truth; fwIoU weights the IoU of each ground-truth class by its pixel frequency.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from findvl.metrics.io import percent, read_png

_INDEX_MODES = ("L", "P", "I", "I;16")
#: Most classes a confusion matrix is built for (4096^2 counts are 128 MiB).
MAX_CLASSES = 4096


@dataclass(frozen=True)
class SemanticMetrics:
    """Metrics in percent; ``per_class_iou[c]`` is ``None`` for classes absent from GT and pred."""

    mIoU: float
    fwIoU: float
    pixel_accuracy: float
    mean_accuracy: float
    per_class_iou: list[float | None]
    num_classes: int
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def confusion_matrix(
    gt: np.ndarray, pred: np.ndarray, *, num_classes: int, ignore: int, where: str = "prediction"
) -> np.ndarray:
    """``[N, N+1]`` counts of (GT class, predicted class or the no-class column ``N``).

    Args:
        gt: ``[H,W]`` integer class indices in ``[0, N)`` or ``ignore``.
        pred: ``[H,W]`` integer class indices in ``[0, N)`` or ``ignore``.
        num_classes: ``N``.
        ignore: label of pixels that are not evaluated (and of unlabeled predictions).
        where: name used in error messages.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"{where}: size {pred.shape} differs from the ground truth {gt.shape}")
    gt, pred = gt.astype(np.int64).ravel(), pred.astype(np.int64).ravel()
    valid = gt != ignore
    for name, labels in (("ground truth", gt[valid]), (where, pred)):
        bad = labels[((labels < 0) | (labels >= num_classes)) & (labels != ignore)]
        if bad.size:
            raise ValueError(
                f"{name}: class {int(bad[0])} outside [0, {num_classes}) and not ignore"
            )
    gt, pred = gt[valid], pred[valid]
    pred = np.where(pred == ignore, num_classes, pred)
    flat = np.bincount(gt * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return flat.reshape(num_classes, num_classes + 1)


def metrics_from_confusion(matrix: np.ndarray, num_images: int = 0) -> SemanticMetrics:
    """Metrics from a ``[N, N+1]`` confusion matrix (see :func:`confusion_matrix`)."""
    n = matrix.shape[0]
    tp = np.diag(matrix[:, :n]).astype(np.float64)
    gt_count = matrix.sum(axis=1).astype(np.float64)
    pred_count = matrix[:, :n].sum(axis=0).astype(np.float64)
    union = gt_count + pred_count - tp
    present = union > 0
    iou = np.divide(tp, union, out=np.zeros(n), where=present)
    in_gt = gt_count > 0
    accuracy = np.divide(tp, gt_count, out=np.zeros(n), where=in_gt)
    total = gt_count.sum()
    return SemanticMetrics(
        mIoU=percent(iou[present].mean()) if present.any() else 0.0,
        fwIoU=percent((gt_count[in_gt] / total * iou[in_gt]).sum()) if total else 0.0,
        pixel_accuracy=percent(tp.sum() / total) if total else 0.0,
        mean_accuracy=percent(accuracy[in_gt].mean()) if in_gt.any() else 0.0,
        per_class_iou=[percent(v) if p else None for v, p in zip(iou, present)],
        num_classes=n,
        num_images=num_images,
    )


def _read_labels(path: Path) -> np.ndarray:
    labels = read_png(path, modes=_INDEX_MODES)
    return labels


def evaluate_semantic(
    gt_dir: str | Path,
    pred_dir: str | Path,
    *,
    ignore: int = 255,
    num_classes: int | None = None,
    progress: bool = True,
) -> SemanticMetrics:
    """Compare every ``*.png`` of ``gt_dir`` with the PNG of the same name in ``pred_dir``.

    Args:
        gt_dir / pred_dir: folders of single-channel PNGs (modes L, P, I, I;16) of class indices.
        ignore: label of pixels not evaluated.
        num_classes: number of classes; by default 1 + the largest label seen (except ``ignore``).
        progress: show a progress bar on stderr.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{gt_dir}: no such folder")
    names = sorted(p.name for p in gt_dir.glob("*.png"))
    if not names:
        raise ValueError(f"{gt_dir}: no PNG files")
    missing = [n for n in names if not (pred_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{pred_dir / missing[0]}: no prediction for {gt_dir / missing[0]}")
    pairs = [
        (_read_labels(gt_dir / n), _read_labels(pred_dir / n), n)
        for n in tqdm(names, desc="reading", disable=not progress)
    ]
    if num_classes is None:
        largest = [
            (int(a[a != ignore].max()), folder / n)
            for g, p, n in pairs
            for a, folder in ((g, gt_dir), (p, pred_dir))
            if (a != ignore).any()
        ]
        label, where = max(largest, default=(0, gt_dir), key=lambda item: item[0])
        if label >= MAX_CLASSES:
            raise ValueError(
                f"{where}: label {label} implies {label + 1} classes, above the limit of "
                f"{MAX_CLASSES} (labels are class indices 0..N-1; {ignore} is ignored)"
            )
        num_classes = label + 1
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes: expected 1..{MAX_CLASSES}, got {num_classes}")
    matrix = np.zeros((num_classes, num_classes + 1), np.int64)
    for gt, pred, name in pairs:
        matrix += confusion_matrix(
            gt, pred, num_classes=num_classes, ignore=ignore, where=str(pred_dir / name)
        )
    return metrics_from_confusion(matrix, num_images=len(pairs))
