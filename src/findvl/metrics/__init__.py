"""Evaluation metrics over standard prediction files (pure NumPy / pycocotools, no model).

One module per metric family: :mod:`instances` (COCO AP), :mod:`panoptic` (PQ),
:mod:`semantic` (mIoU), :mod:`grounding` (cIoU / mIoU / P@t), :mod:`retrieval` (recall@K),
:mod:`interleave` (interleaved retrieval score) and :mod:`interactive` (NoC, mIoU@k).
Every reported value is in percent, except click counts.
"""
