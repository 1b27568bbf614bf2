"""Readers of the standard files: COCO instances / panoptic / captions, RefCOCO refs, FIND-Bench.

:mod:`.coco` and :mod:`.findbench` parse one file each into dataclasses; :mod:`.dataset` joins
them per image of a split; :mod:`.stats` counts FIND-Bench entities (the paper's Table 2).
"""
