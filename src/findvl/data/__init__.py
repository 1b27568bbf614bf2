"""Data: three sub-packages and the samplers that turn annotations into training prompts.

* :mod:`findvl.data.readers`: COCO / RefCOCO / FIND-Bench files read into typed records
  (:mod:`~findvl.data.readers.dataset` gathers everything known about each image of a split).
* :mod:`findvl.data.synth`: the synthetic world written in those same standard formats.
* :mod:`findvl.data.engine`: the FIND-Bench data engine (captions from a chat model) and the
  visual references of entity phrases.

Top-level modules: :mod:`.prompts` (visual prompts drawn from a mask), :mod:`.clicks` (the click
simulator of interactive evaluation) and :mod:`.training` (per-image training examples).
"""
