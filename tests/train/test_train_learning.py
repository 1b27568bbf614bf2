"""Each defect that kept FIND from learning, with the test that catches it.

* Text tokens were projected with the official ``lang_proj`` std 0.02, calibrated for ~4k-wide
  LLM features: with a 64-wide encoder every projected token was ~8x smaller than the learned
  queries, so caption, phrase and legend queries started as one vector.
* The initial predictions (layer 0) are input-independent: their InfoNCE is exactly ln(B) with
  no gradient, and were summed into the retrieval terms.
* Interactive training never showed a correction click or a previous mask, which evaluation
  feeds from the second click on.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from findvl.build import build_preset
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.model.requests import GroundedSegmentation, ImageTextRetrieval
from findvl.train.config import train_config
from findvl.train.contrastive import infonce
from findvl.train.corrections import correction_round, wants_correction
from findvl.train.requests import build_requests
from findvl.train.trainer import Trainer

CAPTIONS = [
    "a red circle",
    "two blue squares over grass",
    "a large green star left of a ring",
    "one shape: a white hexagon",
    "sand and water",
    "a purple cross",
    "three triangles",
    "an orange diamond below a black ring",
]


def _off_diagonal_cos(x: torch.Tensor) -> float:
    x = F.normalize(x.detach(), dim=-1)
    n = x.shape[0]
    return float(((x @ x.T).sum() - n) / (n * n - n))


def test_lang_proj_makes_unit_scale_tokens() -> None:
    model = build_preset("find_tiny")
    text = model.encode_text(CAPTIONS)
    tokens = text.features[text.mask]
    assert 0.5 < float(tokens.detach().std()) < 2.0  # as large as the learned queries (N(0,1) rows)


def _trainer(tmp_path: Path, images: int, overrides: list[str]) -> Trainer:
    data = tmp_path / "data"
    write_synth(SynthConfig(out=data, images=images, seed=0, size=64), progress=False)
    config = train_config(
        "find_tiny",
        [
            f'data.root="{data}"',
            "data.flip=false",
            'loss={"num_points": 256}',
            "optim.lr=1e-3",
            "optim.clip_grad_norm=1.0",
            "optim.warmup_steps=0",
            *overrides,
        ],
        steps=1000,
        batch_size=8,
        seed=0,
    )
    return Trainer(config, tmp_path / "run", progress=False)


def _train_retrieval(model, batches) -> None:
    """AdamW at lr 1e-3 on the image-caption InfoNCE of every layer that sees the input."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    for batch in batches:
        out = model([e.image for e in batch], [ImageTextRetrieval([e.caption for e in batch])])
        loss = sum(
            infonce(p.image, p.query, model.logit_scale)
            for p in out.image_text_retrieval.layers[1:]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_retrieval_training_separates_images_and_captions(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trainer = _trainer(tmp_path, 16, [])
    model = trainer.model
    examples = [e for s in range(2) for e in trainer.source.batch(s, 0, 0, 1)]
    g = torch.Generator().manual_seed(0)
    batches = ([examples[i] for i in torch.randperm(16, generator=g)[:8]] for _ in range(60))
    _train_retrieval(model, batches)
    with torch.no_grad():
        batch = examples[:8]
        out = model([e.image for e in batch], [ImageTextRetrieval([e.caption for e in batch])])
    final = out.image_text_retrieval.layers[-1]
    assert float(infonce(final.image, final.query, model.logit_scale).detach()) < 0.6 * math.log(8)
    assert _off_diagonal_cos(final.image) < 0.8  # different images, different embeddings
    assert _off_diagonal_cos(final.query) < 0.8


@pytest.mark.slow  # end to end, over 10 s on 2 busy cores
def test_frozen_pretrained_encoders_keep_retrieval_out_of_the_collapse(tmp_path: Path) -> None:
    """Over many images InfoNCE has a zero-gradient fixed point at constant embeddings; random
    encoders give the interface nothing to match, and it falls there within ~20 steps (image
    cos 1.000, loss exactly ln B per layer). The shipped pretrained encoders do not.

    At the official temperature e^1: the quickstart's 1/0.07 learns slower in these 40 steps
    (loss 2.04 against 1.68) and better over a quickstart run (IR@1 12.3 against 6.3)."""
    torch.manual_seed(0)
    data = tmp_path / "data"
    write_synth(SynthConfig(out=data, images=96, seed=0, size=64), progress=False)
    config = train_config(
        "find_synth_vit",
        [
            f'data.root="{data}"',
            "data.flip=false",
            "optim.lr=1e-3",
            "data.workers=0",
            "model.language.logit_scale_init=1.0",
        ],
        steps=1000,
        batch_size=8,
        seed=0,
    )
    trainer = Trainer(config, tmp_path / "run", progress=False)
    model = trainer.model
    _train_retrieval(model, (trainer.source.batch(step, 0, 0, 1) for step in range(40)))
    losses, image_cos = [], []
    with torch.no_grad():
        for step in range(100, 104):  # batches in new compositions
            batch = trainer.source.batch(step, 0, 0, 1)
            out = model([e.image for e in batch], [ImageTextRetrieval([e.caption for e in batch])])
            final = out.image_text_retrieval.layers[-1]
            losses.append(float(infonce(final.image, final.query, model.logit_scale)))
            image_cos.append(_off_diagonal_cos(final.image))
    assert sum(losses) / len(losses) < 0.9 * math.log(8)
    assert max(image_cos) < 0.95


def test_retrieval_terms_leave_out_the_input_independent_layer(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, 8, [])
    examples = trainer.source.batch(0, 0, 0, 1)
    requests = build_requests(examples, trainer.vocab.names)
    out = trainer.model([e.image for e in examples], requests, all_layer_masks=True)
    first = out.image_text_retrieval.layers[0]
    assert _off_diagonal_cos(first.image) > 0.9999  # layer 0: the same for every input
    terms = trainer.criterion(out, examples, torch.Generator().manual_seed(0))
    expected = sum(
        infonce(p.image, p.query, out.logit_scale) for p in out.image_text_retrieval.layers[1:]
    )
    assert torch.allclose(terms["retrieval"], expected)


def test_grounding_learns_one_mask_per_phrase(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trainer = _trainer(tmp_path, 4, [])
    model = trainer.model
    examples = trainer.source.batch(0, 0, 0, 1)[:4]
    examples = [e for e in examples if len(set(e.phrase_segments)) >= 2]
    assert examples
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    for _ in range(80):
        out = model(
            [e.image for e in examples],
            [GroundedSegmentation([list(e.phrases) for e in examples])],
            all_layer_masks=True,
        )
        terms = trainer.criterion(out, examples, torch.Generator().manual_seed(0))
        loss = terms["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = model(
            [e.image for e in examples], [GroundedSegmentation([list(e.phrases) for e in examples])]
        )
    masks = out.grounded_segmentation.best_masks() > 0  # BxTxhxw
    distinct = 0
    for b, ex in enumerate(examples):
        t = len(ex.phrases)
        rows = masks[b, :t].flatten(1)
        for i in range(t):
            for j in range(i + 1, t):
                if ex.phrase_segments[i] != ex.phrase_segments[j]:
                    distinct += int(not torch.equal(rows[i], rows[j]))
    assert distinct > 0  # phrases of different objects get different masks


def test_correction_round_adds_a_click_and_the_previous_mask(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, 8, [])
    examples = trainer.source.batch(0, 0, 0, 1)
    corrected = correction_round(trainer.model, examples, generator=torch.Generator())
    for before, after in zip(examples, corrected):
        assert len(after.prompts) == 1 and after.prompt_segments == before.prompt_segments[:1]
        assert after.previous is not None and after.previous.shape == before.masks.shape[-2:]
        gt = before.masks[before.prompt_segments[0]]
        added = after.prompts[0] & ~before.prompts[0]
        negative = after.prompt_negatives[0]
        assert added.any() or negative is not None  # a click on the larger error region
        assert not (added & ~gt).any()  # positive clicks on the object
        if negative is not None:
            assert not (negative & gt).any()  # negative clicks off it
    request = build_requests(corrected, trainer.vocab.names)
    interactive = [r for r in request if type(r).__name__ == "InteractiveSegmentation"][0]
    assert interactive.previous is not None
    out = trainer.model([e.image for e in corrected], request, all_layer_masks=True)
    terms = trainer.criterion(out, corrected, torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["total"])


def test_correction_round_on_the_batch_encoding_equals_its_own(tmp_path: Path) -> None:
    """The trainer encodes a correction batch once for both passes: the round's result is
    the one it gets encoding the images itself."""
    trainer = _trainer(tmp_path, 8, [])
    examples = trainer.source.batch(0, 0, 0, 1)
    own = correction_round(trainer.model, examples, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        features = trainer.model.encode_images([ex.image for ex in examples])
    shared = correction_round(
        trainer.model, examples, generator=torch.Generator().manual_seed(3), features=features
    )
    for a, b in zip(own, shared):
        assert torch.equal(a.prompts[0], b.prompts[0])
        torch.testing.assert_close(a.previous, b.previous)


def test_correction_rounds_are_a_pure_function_of_the_step() -> None:
    picks = [wants_correction(0, s, 0, 0.5) for s in range(200)]
    assert picks == [wants_correction(0, s, 0, 0.5) for s in range(200)]
    assert 60 < sum(picks) < 140
    assert not any(wants_correction(0, s, 0, 0.0) for s in range(50))


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / max(1, int((a | b).sum())))


@pytest.mark.slow
@pytest.mark.xfail(
    reason="open: corrections add little (quickstart mIoU@1 / @5 62.6 / 59.0 with FIND's "
    "choice, 71.0 / 71.9 with the click agreement; this model has none)",
    strict=False,
)
def test_a_correction_click_raises_iou_after_training(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, 8, ["data.correction_prob=0.5"])
    trainer.config.steps = 300
    trainer.fit()
    model = trainer.model.eval()
    examples = trainer.source.batch(0, 0, 0, 1)
    first = correction_round(model, examples, generator=torch.Generator().manual_seed(0))
    requests = build_requests(first, trainer.vocab.names)
    interactive = [r for r in requests if type(r).__name__ == "InteractiveSegmentation"]
    with torch.no_grad():
        out = model([e.image for e in first], interactive)
    best = out.interactive_segmentation.best_masks()[:, 0] > 0  # Bxhxw
    better = 0
    for b, ex in enumerate(first):
        gt = ex.masks[ex.prompt_segments[0]]
        after = F.interpolate(best[b][None, None].float(), size=gt.shape)[0, 0] > 0.5
        better += int(_iou(after, gt) >= _iou(ex.previous > 0, gt))
    assert better > len(first) // 2  # the second click helps on most objects


def test_text_standardisation_separates_phrase_queries() -> None:
    """The CLIP-style tower's final LayerNorm gives every token a shared offset (the mean token
    is ~84% of a token's norm): projected as is, different phrases give alike queries."""
    from findvl.build import build_model, preset_config

    config = preset_config("find_synth_vit")
    config.language.whiten = False  # standardisation alone (whitening: the next test)
    with torch.random.fork_rng():  # the same weights whatever ran before
        torch.manual_seed(0)
        model = build_model(config).eval()
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 64, 64), generator=g, dtype=torch.uint8)]

    def phrase_cos() -> float:
        with torch.no_grad():
            out = model(images, [GroundedSegmentation([CAPTIONS[:6]])])
        return _off_diagonal_cos(out.grounded_segmentation.queries[0])

    def token_cos() -> float:
        text = model.encode_text(CAPTIONS)
        mean = (text.features * text.mask[..., None]).sum(1) / text.mask.sum(1, keepdim=True)
        return _off_diagonal_cos(mean.detach())

    tokens_before, queries_before = token_cos(), phrase_cos()
    model.calibrate_text(CAPTIONS * 4)
    tokens_after, queries_after = token_cos(), phrase_cos()
    assert tokens_after < tokens_before - 0.1
    assert queries_after < queries_before - 0.05
    assert torch.count_nonzero(model.text_shift) > 0


def test_whitening_tells_shape_words_apart(tmp_path: Path) -> None:
    """The shipped tower keeps shape words in directions of little variance: after per-dim
    standardisation 'circle', 'star', ... project to near-identical tokens (so every shape class
    embedding was the same and no thing was classified); whitening separates them."""
    from findvl.build import build_model, preset_config

    data = tmp_path / "data"
    write_synth(SynthConfig(out=data, images=40, seed=0, size=64), progress=False)
    from findvl.data.readers.dataset import load_dataset

    shapes = ["circle", "square", "triangle", "star", "hexagon", "cross", "ring", "diamond"]
    texts = shapes + [c for s in load_dataset(data, "train") for c in s.captions]
    cos = {}
    for whiten in (False, True):
        config = preset_config("find_synth_vit")
        config.language.whiten = whiten
        model = build_model(config).eval()
        model.calibrate_text(texts)
        with torch.no_grad():
            words = model.encode_text(shapes).features[:, 1]  # BOS, word, EOT
        cos[whiten] = _off_diagonal_cos(words)
    assert cos[False] > 0.8 and cos[True] < cos[False] - 0.2, cos
