"""Key mapping between released FIND checkpoints and findvl models, and the ignore list.

A released checkpoint is the official model's ``state_dict``: ``backbone.*`` (vision),
``sem_seg_head.pixel_decoder.*`` (pixel decoder), ``sem_seg_head.predictor.*`` (the FIND
decoder, with the language encoder under ``sem_seg_head.predictor.lang_encoder.*``) and a few
training-only buffers. :data:`RULES` rewrites prefixes (first match wins); :data:`RENAMES`
then fixes the names that differ inside the decoder.
"""

from __future__ import annotations

import re

PREDICTOR = "sem_seg_head.predictor."
LANGUAGE = PREDICTOR + "lang_encoder."
LANGUAGE_MODEL = LANGUAGE + "lang_encoder."

#: (official prefix, findvl prefix), first match wins.
RULES: tuple[tuple[str, str], ...] = (
    ("backbone.", "vision.backbone."),
    ("sem_seg_head.pixel_decoder.", "pixel_decoder."),
    (LANGUAGE_MODEL, "language."),
    (LANGUAGE + "lang_proj", "lang_proj"),
    (LANGUAGE + "logit_scale", "logit_scale"),
    (PREDICTOR + "class_embed", "interface.heads.class_embed"),
    (PREDICTOR + "decoder_norm.", "interface.heads.decoder_norm."),
    (PREDICTOR + "mask_embed.", "interface.heads.mask_embed."),
    (PREDICTOR, "interface."),
)

_LAYERED = r"^interface\.(content|condition)_attention\.layers\.(\d+)\."

#: Regular-expression renames applied after :data:`RULES` (official spelling -> findvl).
RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(_LAYERED), r"interface.\1_attention.\2."),
    (re.compile(r"^interface\.mask_sptial_embed\."), "interface.mask_spatial_embed."),
)

#: Checkpoint keys that are deliberately not loaded, with the reason (exact names).
IGNORED_KEYS: dict[str, str] = {
    "criterion.empty_weight": "training loss buffer (no-object class weight)",
    "dilation_kernel": "fixed 3x3 kernel of the training click simulator",
    "pixel_mean": "fixed ImageNet mean (findvl's preprocessing has it)",
    "pixel_std": "fixed ImageNet std (findvl's preprocessing has it)",
    "backbone_proj": "retrieval-ensemble projection, unused (RETRIEVAL.ENSEMBLE false)",
}

#: Checkpoint key prefixes that are not loaded, with the reason.
IGNORED_PREFIXES: dict[str, str] = {
    "sem_seg_head.predictor.bbox_embed.": "box head, unused (DETECTION false)",
}

#: Checkpoint key prefix not loaded when the language model comes from its own directory
#: (LLaMA configs: ``--language PATH``).
EXTERNAL_LANGUAGE_PREFIX = LANGUAGE_MODEL

#: findvl model keys that no checkpoint holds, left at their identity defaults.
FINDVL_ONLY: dict[str, str] = {
    "text_shift": "text standardisation, identity (zeros) for released weights",
    "text_scale": "text standardisation, identity (ones) for released weights",
}


def findvl_key(key: str) -> str | None:
    """The findvl name of official checkpoint key ``key`` (None if no rule applies)."""
    for old, new in RULES:
        if key.startswith(old):
            out = new + key[len(old) :]
            for pattern, repl in RENAMES:
                out = pattern.sub(repl, out)
            return out
    return None


def ignore_reason(key: str, *, external_language: bool) -> str | None:
    """Why ``key`` is not loaded, or None when it must be."""
    if key in IGNORED_KEYS:
        return IGNORED_KEYS[key]
    for prefix, reason in IGNORED_PREFIXES.items():
        if key.startswith(prefix):
            return reason
    if external_language and key.startswith(EXTERNAL_LANGUAGE_PREFIX):
        return "language model weights, loaded from the --language directory"
    return None


_UNLAYERED = r"^interface\.(content|condition)_attention\.(\d+)\."
_INVERSE_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(_UNLAYERED), r"interface.\1_attention.layers.\2."),
    (re.compile(r"^interface\.mask_spatial_embed\."), "interface.mask_sptial_embed."),
)


def official_key(key: str) -> str | None:
    """The released-checkpoint name of findvl key ``key`` (inverse of :func:`findvl_key`;
    None for findvl-only tensors)."""
    if key in FINDVL_ONLY:
        return None
    for pattern, repl in _INVERSE_RENAMES:
        key = pattern.sub(repl, key)
    for old, new in RULES:
        if key.startswith(new):
            return old + key[len(new) :]
    return None
