"""Pretraining of the tiny foundation models the quickstart runs FIND on.

FIND interfaces *frozen, pretrained* encoders. Nothing can be downloaded here, so a tiny CLIP
(vision and text towers trained from scratch) is pretrained on the synthetic train split and
exported as standard Hugging Face directories, loaded frozen through
:func:`findvl.encoders.loading.load_vision_encoder` and
:func:`~findvl.encoders.loading.load_language_encoder` like any CLIP.

Objectives: CLIP's symmetric InfoNCE between images and captions (learnable temperature) and,
as FIND's own vision weights come from X-Decoder (trained on COCO segmentation and captions), a
dense term: a linear head on the final patch tokens predicts each patch's panoptic category.
The head is discarded after training. By default each caption also gets two hard negatives
(NegCLIP: one shape word, one colour word swapped, :mod:`.negatives`), extra image->text
negatives of the InfoNCE, so that the towers must tell the shapes apart and not only the
colours and backgrounds (``ObjectiveConfig.hard_negatives``; off gives plain CLIP).

Parts: :mod:`.config` (settings), :mod:`.tokenizer` (BPE vocabulary), :mod:`.data` (a split in
memory), :mod:`.negatives` (hard negative captions), :mod:`.model` (CLIP + dense head),
:mod:`.losses`, :mod:`.metrics`, :mod:`.evaluate`, :mod:`.trainer` (the loop), :mod:`.export`
(Hugging Face directories), :mod:`.run` (end to end).
"""
