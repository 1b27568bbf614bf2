"""Pretraining of the tiny foundation models the quickstart runs FIND on.

FIND interfaces *frozen, pretrained* encoders. Nothing can be downloaded here, so a tiny CLIP
(vision and text towers trained from scratch) is pretrained on the synthetic train split and
exported as standard Hugging Face directories, loaded frozen through
:func:`findvl.encoders.loading.load_vision_encoder` and
:func:`~findvl.encoders.loading.load_language_encoder` like any CLIP.

Objectives: CLIP's symmetric InfoNCE between images and captions (learnable temperature) and,
as FIND's own vision weights come from X-Decoder (trained on COCO segmentation and captions), a
dense term: a linear head on the final patch tokens predicts each patch's panoptic category.
The head is discarded after training.

Parts: :mod:`.config` (settings), :mod:`.tokenizer` (BPE vocabulary), :mod:`.data` (a split in
memory), :mod:`.model` (CLIP + dense head), :mod:`.losses`, :mod:`.metrics`, :mod:`.evaluate`,
:mod:`.trainer` (the loop), :mod:`.export` (Hugging Face directories), :mod:`.run` (end to end).
"""
