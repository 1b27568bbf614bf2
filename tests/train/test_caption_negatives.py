"""Several captions per image and colour-swapped hard negatives in the image-caption term."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from findvl.data.hard_negatives import colour_swaps, swap_colours
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.model.requests import ImageTextRetrieval
from findvl.train.config import train_config
from findvl.train.contrastive import caption_infonce, infonce
from findvl.train.requests import build_requests, caption_rows
from findvl.train.trainer import Trainer


# ---- hard negatives ------------------------------------------------------------------------
def test_swap_colours_binds_each_colour_to_the_other_object() -> None:
    assert swap_colours("Two shapes: a red circle and an orange cross.") == (
        "Two shapes: an orange circle and a red cross."
    )
    assert swap_colours("White cat on a black sofa") == "Black cat on a white sofa"
    assert swap_colours("A picture of two circles over grass.") is None  # no colour
    assert swap_colours("a red circle and a red square") is None  # one colour
    assert swap_colours("a red circle and a blue circle") is None  # the same caption again


def test_hard_negatives_are_never_one_of_the_true_captions() -> None:
    true = ["a red circle and a blue square", "a blue circle and a red square", "two shapes"]
    assert colour_swaps(true) == []  # each swap is the other true caption
    got = colour_swaps(["a small red star", "a red star left of a green cross"])
    assert got == ["a green star left of a red cross"]


# ---- the loss ------------------------------------------------------------------------------
def _rows(n: int, seed: int, d: int = 8) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_one_caption_per_image_is_infonce() -> None:
    images, captions, scale = _rows(5, 0), _rows(5, 1), torch.tensor(1.3)
    got = caption_infonce(images, captions, torch.arange(5), torch.ones(5, dtype=torch.bool), scale)
    torch.testing.assert_close(got, infonce(images, captions, scale))


def test_other_true_captions_leave_the_denominator_and_negatives_are_columns_only() -> None:
    images, captions, scale = _rows(2, 0), _rows(5, 1), torch.tensor(0.7)
    owner = torch.tensor([0, 1, 0, 0, 1])
    positive = torch.tensor([True, True, True, False, False])  # captions 3, 4: hard negatives
    got = caption_infonce(images, captions, owner, positive, scale)
    logits = scale.exp() * F.normalize(images, dim=-1) @ F.normalize(captions, dim=-1).T
    # image -> text: image 0 has true captions 0 and 2, each without the other
    i2t = [
        -(logits[0, 0] - torch.logsumexp(logits[0, [0, 1, 3, 4]], 0)),
        -(logits[1, 1] - torch.logsumexp(logits[1, [0, 1, 2, 3, 4]], 0)),
        -(logits[0, 2] - torch.logsumexp(logits[0, [1, 2, 3, 4]], 0)),
    ]
    # text -> image: the true captions only
    t2i = [-(logits[o, c] - torch.logsumexp(logits[:, c], 0)) for c, o in ((0, 0), (1, 1), (2, 0))]
    want = 0.5 * (torch.stack(i2t).mean() + torch.stack(t2i).mean())
    torch.testing.assert_close(got, want)


# ---- requests and training -----------------------------------------------------------------
@pytest.fixture(scope="module")
def trainer(tmp_path_factory) -> Trainer:
    root = tmp_path_factory.mktemp("synth")
    write_synth(SynthConfig(out=root, images=4, seed=4, size=64), progress=False)
    config = train_config(
        "find_tiny",
        [
            f'data.root="{root}"',
            "model.interface.num_layers=1",
            'loss={"num_points": 256, "retrieval_captions": 3, "retrieval_negatives": 2}',
        ],
        steps=2,
        batch_size=2,
        seed=5,
    )
    return Trainer(config, tmp_path_factory.mktemp("run"), progress=False)


def test_requests_carry_the_other_captions_then_the_negatives(trainer: Trainer) -> None:
    examples = trainer.source.batch(0, 0, 0, 1)
    for ex in examples:  # the synthetic world writes three captions, two with colours
        assert len(ex.more_captions) == 2 and ex.caption not in ex.more_captions
        assert ex.caption_negatives and not set(ex.caption_negatives) & {
            ex.caption,
            *ex.more_captions,
        }
    rows, true = caption_rows(examples, captions=3, negatives=2)
    assert true == [2, 2]
    assert rows[0] == [*examples[0].more_captions, *examples[0].caption_negatives[:2]]
    retrieval = next(
        r for r in build_requests(examples, trainer.vocab.names, captions=3, negatives=2)
        if isinstance(r, ImageTextRetrieval)
    )  # fmt: skip
    assert retrieval.more == rows
    plain = next(
        r for r in build_requests(examples, trainer.vocab.names)
        if isinstance(r, ImageTextRetrieval)
    )  # fmt: skip
    assert plain.more == []  # FIND: one caption per image


def test_the_negatives_receive_gradient_and_a_training_step_runs(trainer: Trainer) -> None:
    examples = trainer.source.batch(0, 0, 0, 1)
    requests = build_requests(examples, trainer.vocab.names, captions=3, negatives=2)
    out = trainer.model([ex.image for ex in examples], requests)
    final = out.image_text_retrieval.final
    final.more.retain_grad()
    trainer.criterion(out, examples)["retrieval"].backward()
    valid = out.image_text_retrieval.more_valid
    grads = final.more.grad.norm(dim=-1)  # [B,K]: the other captions, then the negatives
    assert (grads[valid] > 0).all() and (grads[~valid] == 0).all()
    trainer.model.zero_grad(set_to_none=True)
    terms = trainer.train_step()
    assert torch.isfinite(torch.tensor(terms["total"])) and terms["retrieval"] > 0
