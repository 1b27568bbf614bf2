"""The synthetic world: scenes of textured stuff and occluding shapes with their text.

:mod:`.world` (categories, colours, sizes), :mod:`.shapes` (rasterise one scene), :mod:`.text`
(captions, referring expressions, entity-marked captions), :mod:`.png` (fast PNG encoder) and
:mod:`.write` (a whole split in COCO / RefCOCO / FIND-Bench formats). This file imports nothing,
so ``findvl data synth`` starts without torch.
"""
