"""The official FIND decoder's side of ``benchmarks/inference.py --official DIR``.

The official head (pixel decoder, FIND decoder, UniCL text tower of ``focalt_unicl_lang``) is
built from the checkout with seeded random weights and run unmodified on CPU by the parity
tools (``tools/official_models.py``, ``tools/official_runner.py``); the same weights go through
``findvl convert`` into the findvl model the findvl paths run. Importing this module does
nothing; :func:`load` needs the checkout.

What one official timing holds, per request (:class:`OfficialSide`): the text tower on the
request's texts and one ``predictor`` forward (the FIND decoder, its heads at every layer and
the official output post-processing of ``official_runner``), from the pixel decoder's outputs
computed once per image (the findvl paths also start from them). Not inside: the pixel decoder
and the class table of the vocabulary (the official evaluation computes it once per dataset:
:func:`class_table` is timed apart).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "focalt_unicl_lang"


def _tools():
    """The parity tools (``tools/`` is not a package: put it on the path, as they expect)."""
    for path in (str(ROOT / "tools"), str(ROOT / "src")):
        if path not in sys.path:
            sys.path.insert(0, path)
    import official_models
    import official_runner
    import parity_findvl
    import parity_official

    return official_models, official_runner, parity_findvl, parity_official


def load(checkout: str | Path, seed: int = 0):
    """``(findvl model, official head, official config, backbone channels)`` with the same
    random weights.

    The official head is built and randomised as the parity check does, saved as a released
    checkpoint (with a random Focal-T backbone, which the timings never run) and converted with
    ``findvl convert``.
    """
    official_models, _, _, parity = _tools()
    official_models.install(checkout)
    cfg, head, model, channels = parity.converted_pair(
        checkout, CONFIG, parity.SHIPPED_TOKENIZER, seed
    )
    return model.eval(), head, cfg, channels


def random_features(channels: dict[str, int], size: int, seed: int) -> dict[str, torch.Tensor]:
    """Seeded backbone features ``{res2..res5: [1,C,size/s,size/s]}`` (the parity check's)."""
    return _tools()[3].random_features(channels, size, size, seed)


def fixed_vision(features: dict[str, torch.Tensor]):
    """A findvl vision encoder returning ``features`` (the parity check's stand-in)."""
    return _tools()[2].FixedFeatures(features)


def interleaved(region: torch.Tensor):
    """The parity check's interleaved text, its visual entity given by ``region [H,W]``."""
    return _tools()[2].interleaved(region)


def class_table(head, cfg: dict, classes: list[str]) -> tuple[torch.Tensor, float]:
    """The official class table ``[K+1,P]`` of ``classes`` (+ background) and its time in ms
    (one text-only decoder pass per class, as the official evaluation does once per
    vocabulary)."""
    from findvl.model.conventions import class_text

    runner = _tools()[1]
    names = [class_text(n, "describe") for n in [*classes, "background"]]
    start = time.perf_counter()
    with torch.no_grad():
        table = runner.class_embeddings(
            head, names, cfg["MODEL"]["DECODER"]["MASK"]["CLASS_TOKEN_LENGTH"]
        )
    return table, 1000 * (time.perf_counter() - start)


class OfficialSide:
    """The official head on one image's backbone ``features`` (see the module docstring).

    Args:
        head: the official ``sem_seg_head``.
        cfg: its official config (the context length).
        features: ``{res2..res5: [1,C,h,w]}``.
        table: the vocabulary's :func:`class_table`.
    """

    def __init__(self, head, cfg: dict, features: dict[str, torch.Tensor], table: torch.Tensor):
        from findvl.encoders.unicl_text import load_clip_tokenizer

        _, self.runner, _, _ = _tools()
        self.head, self.features, self.table = head, features, table
        lang = head.predictor.lang_encoder
        self.length = cfg["MODEL"]["TEXT"]["CONTEXT_LENGTH"]
        self.fast_tokenizer = load_clip_tokenizer(lang.tokenizer.name_or_path)
        lang.default_text_embeddings = table  # every official forward reads it
        with torch.no_grad():
            self.pixel = self.runner.pixel_features(head, features)
        self.joint_extra: dict | None = None

    @contextlib.contextmanager
    def _cached_pixel_decoder(self):
        """The runner's functions read the pixel decoder outputs computed once per image."""
        original = self.runner.pixel_features
        self.runner.pixel_features = lambda head, features: self.pixel
        try:
            yield
        finally:
            self.runner.pixel_features = original

    def generic(self) -> dict[str, torch.Tensor]:
        """``logits [1,N,K+1]``, ``masks [1,N,h,w]``."""
        with self._cached_pixel_decoder():
            return self.runner.generic(self.head, self.features, self.table)

    def grounding(self, phrases: list[str]) -> dict[str, torch.Tensor]:
        """``scores [N,T]``, ``masks [N,h,w]``."""
        with self._cached_pixel_decoder():
            return self.runner.grounding(self.head, self.features, phrases, self.length)

    def interactive(self, prompts: torch.Tensor) -> dict[str, torch.Tensor]:
        """``prompts [M,H,W]`` bool -> ``scores [M,N]``, ``masks [N,h,w]``."""
        with self._cached_pixel_decoder():
            return self.runner.interactive(self.head, self.features, prompts)

    def prepare_joint(self, phrases, prompts, caption, item) -> None:
        """Record the ``extra`` inputs each task's runner gives the decoder (grounding, click,
        caption retrieval, interleave), for :meth:`joint`'s one pass with all of them."""
        from findvl.model.slots import splice_visual_entities

        extras: dict = {}

        def record(module, args, kwargs):
            extras.update(kwargs["extra"])

        sentence, spans = splice_visual_entities(item, "interleave")
        regions = [None if e.reference is None else e.reference.prompt.positive
                   for e in item.entities]  # fmt: skip
        self.joint_texts = (phrases, [caption], [sentence])
        hook = self.head.predictor.register_forward_pre_hook(record, with_kwargs=True)
        try:
            with torch.no_grad(), self._cached_pixel_decoder():
                self.runner.grounding(self.head, self.features, phrases, self.length)
                self.runner.interactive(self.head, self.features, prompts)
                self.runner.retrieval(self.head, self.features, caption, self.length)
                self.runner.interleave(
                    self.head, self.features, sentence, spans, regions, self.length,
                    self.fast_tokenizer,
                )  # fmt: skip
        finally:
            hook.remove()
        self.joint_extra = extras

    def joint(self) -> dict[str, torch.Tensor]:
        """One official pass with the generic, grounding, click, retrieval and interleave
        inputs together (the official decoder reads every task present in ``extra``; its
        ``interleave`` output serves both interleaved tasks). The text tower runs on the
        phrases, the caption and the sentence inside the timing; the decoder reads the token
        embeddings recorded by :meth:`prepare_joint` (the same values).

        Returns generic ``logits [1,N,K+1]`` / ``masks [1,N,h,w]``, grounding ``gmasks``,
        click ``smasks`` (batch dim dropped)."""
        lang = self.head.predictor.lang_encoder
        for texts in self.joint_texts:
            self.runner.token_embeddings(lang, texts, self.length)
        mask_features, multi_scale = self.pixel
        out = self.head.predictor(multi_scale, mask_features, extra=self.joint_extra, task="seg")
        return {
            "logits": out["pred_logits"],
            "masks": out["pred_masks"],
            "gmasks": out["pred_gmasks"][0],
            "smasks": out["pred_smasks"][0],
        }
