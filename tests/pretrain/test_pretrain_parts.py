"""Encoder pretraining parts: tokenizer, pixels and labels, model, losses, metrics, training."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import AutoTokenizer, CLIPVisionModel

from findvl.encoders.hf_vision import resample_to_patch_grid
from findvl.encoders.loading import CLIP_MEAN, CLIP_STD
from findvl.encoders.preprocess import ImageNorm, preprocess_images
from findvl.pretrain.config import (
    ObjectiveConfig,
)
from findvl.pretrain.data import (
    adapter_longest_side,
    adapter_pixels,
    patch_class_counts,
)
from findvl.pretrain.losses import balanced_class_weight, clip_loss, dense_loss
from findvl.pretrain.metrics import dense_accuracy, retrieval_recall
from findvl.pretrain.model import sincos_position_table
from findvl.pretrain.tokenizer import BOS_TOKEN, EOS_TOKEN, save_tokenizer, train_tokenizer
from findvl.pretrain.trainer import Budget, lr_factor, param_groups, random_keep, train, train_step

CAPTIONS = [
    "A picture of two hexagons, a cross and a star over water, grass and sand.",
    "Four shapes: a white hexagon, an orange cross, a blue star and an orange hexagon.",
    "A large white hexagon below a small orange cross.",
    "A picture of a ring over brick wall.",
    "One shape: a red ring alone on the background.",
] * 4
NORM = ImageNorm(mean=CLIP_MEAN, std=CLIP_STD, longest_side=64)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CAPTIONS, vocab_size=1024)


def test_tokenizer_specials_are_the_last_ids_and_it_round_trips(tokenizer, tmp_path) -> None:
    vocab = tokenizer.get_vocab()
    assert tokenizer.is_fast and len(vocab) == len(tokenizer)
    assert vocab[EOS_TOKEN] == len(vocab) - 1 and vocab[BOS_TOKEN] == len(vocab) - 2
    assert tokenizer.pad_token == tokenizer.eos_token == EOS_TOKEN
    batch = tokenizer(["a white hexagon", "Zebra!"], padding="longest")
    assert batch["input_ids"][0][0] == tokenizer.bos_token_id
    assert max(batch["input_ids"][1]) == tokenizer.eos_token_id  # unseen word: bytes, no unk
    assert tokenizer.convert_ids_to_tokens(batch["input_ids"][0])[1:4] == [
        "a</w>", "white</w>", "hexagon</w>",
    ]  # fmt: skip
    save_tokenizer(tokenizer, tmp_path)
    assert {"tokenizer.json", "vocab.json", "merges.txt"} <= {p.name for p in tmp_path.iterdir()}
    loaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert loaded.is_fast and loaded.eos_token_id == tokenizer.eos_token_id
    text = "A large white hexagon below a small orange cross."
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_vocabulary_learning_is_deterministic(tokenizer) -> None:
    again = train_tokenizer(list(reversed(CAPTIONS)), vocab_size=1024)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert len(tokenizer) > 512 + 2  # the byte alphabet (with and without </w>) + merges
    small = train_tokenizer(CAPTIONS, vocab_size=520)
    assert len(small) == 520 + 2


def test_pixels_are_what_the_clip_adapter_feeds_its_backbone() -> None:
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    for stride in (4, 16):  # native pixels, and a stride-16 grid of the image upscaled 4x
        norm = replace(NORM, longest_side=adapter_longest_side(64, 4, stride))
        reference = resample_to_patch_grid(preprocess_images([image], norm).pixels, 4, stride)
        ours = adapter_pixels([image], norm=norm, patch=4, grid_stride=stride)
        assert ours.shape == (1, 3, 64, 64) and torch.allclose(ours, reference, atol=1e-5)
    assert adapter_longest_side(64, 4, 4) == 64 and adapter_longest_side(64, 4, 16) == 256
    with pytest.raises(ValueError, match="whole number of patches"):
        adapter_longest_side(64, 3, 3)


def testpatch_class_counts_follow_the_row_major_patch_grid() -> None:
    classes = torch.zeros(64, 64, dtype=torch.long)
    classes[8:12, 20:24] = 2  # exactly patch (row 2, column 5)
    counts = patch_class_counts(classes, side=64, patch=4, num_classes=3)
    assert counts.shape == (256, 3) and (counts.sum(1) == 16).all()
    assert counts[2 * 16 + 5].tolist() == [0, 0, 16]
    assert counts[:, 2].sum() == 16
    half = patch_class_counts(
        classes[:32], side=64, patch=4, num_classes=3
    )  # 32x64: scaled, padded
    assert half[16 * 8 :, 0].eq(16).all()  # the padded bottom half is void


def test_encode_images_matches_clip_vision_model_and_drops_patches(tokenizer, build_tiny) -> None:
    model = build_tiny(tokenizer).eval()
    pixels = torch.randn(2, 3, 32, 32)
    vision = CLIPVisionModel(model.clip.config.vision_config).eval()
    vision.load_state_dict(model.clip.vision_model.state_dict())
    with torch.no_grad():
        embeds, patches = model.encode_images(pixels)
        reference = vision(pixel_values=pixels)
        keep = torch.tensor([[3, 0, 7], [1, 2, 63]])
        _, kept = model.encode_images(pixels, keep)
    assert torch.allclose(patches, reference.last_hidden_state[:, 1:], atol=1e-5)
    expected = model.clip.visual_projection(reference.pooler_output)
    assert torch.allclose(embeds, torch.nn.functional.normalize(expected, dim=-1), atol=1e-5)
    assert kept.shape == (2, 3, 32) and embeds.shape == (2, 16)
    assert random_keep(2, 64, 0.5, torch.Generator().manual_seed(0)).shape == (2, 32)
    assert random_keep(2, 64, 0.0, torch.Generator()) is None


def test_position_table_starts_as_sine_cosine_codes(tokenizer, build_tiny) -> None:
    table = sincos_position_table(8, 32)
    assert table.shape == (65, 32) and table[0].abs().sum() == 0
    model = build_tiny(tokenizer)
    weight = model.clip.vision_model.embeddings.position_embedding.weight
    assert torch.allclose(weight, 0.2 * table)


def test_every_trainable_parameter_gets_a_gradient(tokenizer, build_tiny, tiny_data) -> None:
    model, data = build_tiny(tokenizer), tiny_data(tokenizer)
    images = torch.arange(6)
    keep = random_keep(6, 64, 0.5, torch.Generator().manual_seed(0))
    loss, parts = train_step(model, data, images, images, ObjectiveConfig(), keep=keep)
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"loss", "clip", "dense"}
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    groups = param_groups(model, 0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_losses() -> None:
    embeds = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    aligned = clip_loss(embeds, embeds, torch.tensor(100.0))
    shuffled = clip_loss(embeds, embeds.roll(1, 0), torch.tensor(100.0))
    assert aligned < 0.1 < shuffled
    counts = torch.tensor([[[16, 0], [8, 8]]])
    perfect = dense_loss(torch.tensor([[[50.0, -50.0], [0.0, 0.0]]]), counts)
    assert perfect == pytest.approx(0.5 * torch.log(torch.tensor(2.0)).item(), abs=1e-4)
    weight = balanced_class_weight(torch.tensor([[[30, 2, 0]]]), power=0.5)
    frequency = torch.tensor([30 / 32, 2 / 32, 0])
    assert (weight * frequency).sum() == pytest.approx(1.0) and weight[2] == 0
    assert weight[1] / weight[0] == pytest.approx(15**0.5, rel=1e-4)


def test_retrieval_recall_matches_a_brute_force_reference() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(15, 5, generator=g), dim=-1)
    owner = torch.randint(0, 7, (15,), generator=g)
    for k in (1, 3):
        recall = retrieval_recall(images, texts, owner, k=k)
        sim = (images @ texts.T).tolist()
        i2t = [
            any(owner[j] == i for j in sorted(range(15), key=lambda j: -sim[i][j])[:k])
            for i in range(7)
        ]
        t2i = [owner[j] in sorted(range(7), key=lambda i: -sim[i][j])[:k] for j in range(15)]
        assert recall.image_to_text == pytest.approx(100 * sum(i2t) / 7)
        assert recall.text_to_image == pytest.approx(100 * sum(t2i) / 15)


def test_dense_accuracy_counts_majority_classes() -> None:
    counts = torch.tensor([[[10, 6, 0], [0, 4, 12], [0, 16, 0], [16, 0, 0]]])
    logits = torch.tensor([[[1.0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]]])
    accuracy = dense_accuracy(logits, counts, torch.tensor([False, True, True]))
    assert accuracy.all_patches == pytest.approx(50.0)
    assert accuracy.thing_patches == pytest.approx(50.0)  # patches 1 (right) and 2 (wrong)


def test_schedule_and_budget() -> None:
    assert lr_factor(0.0, 0.1) == pytest.approx(0.01, abs=1e-3)
    assert lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor(1.0, 0.1) == pytest.approx(0.0, abs=1e-9)
    assert Budget(steps=10, minutes=None).progress(5) == pytest.approx(0.5)
    assert Budget(steps=None, minutes=60).progress(10**6) < 0.01
    with pytest.raises(ValueError):
        Budget(steps=None, minutes=None)


def test_training_decreases_the_loss_on_a_tiny_set(
    tokenizer, build_tiny, tiny_data, tiny_config
) -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model, data = build_tiny(tokenizer, cfg), tiny_data(tokenizer, count=16)
    records: list[dict] = []
    summary = train(
        model, data, holdout=data.subset(torch.arange(8)), optim=cfg.optim,
        objective=cfg.objective, log=records.append, progress=False,
    )  # fmt: skip
    assert summary.steps == 60 and [r["step"] for r in records] == [30, 60]
    batch = torch.arange(8)
    with torch.no_grad():
        after = train_step(model, data, batch, batch, cfg.objective)[1]
        before = train_step(build_tiny(tokenizer, cfg), data, batch, batch, cfg.objective)[1]
    assert records[-1]["loss"] < records[0]["loss"]
    assert after["loss"] < 0.6 * before["loss"], (before, after)
    assert records[-1]["holdout_dense_acc"] > 80  # the class is the patch colour


def test_counts_pool_to_coarser_grids_and_levels_share_one_loss() -> None:
    from findvl.pretrain.losses import dense_loss, multilevel_dense_loss, pool_counts

    counts = torch.randint(0, 5, (2, 16, 3), dtype=torch.int16)  # a 4x4 grid
    pooled = pool_counts(counts, 2)
    assert pooled.shape == (2, 4, 3)
    assert torch.equal(pooled[:, 0], counts[:, [0, 1, 4, 5]].sum(1, dtype=torch.int16))
    assert torch.equal(pool_counts(counts, 4)[:, 0], counts.sum(1, dtype=torch.int16))
    fine, coarse = torch.randn(2, 16, 3), torch.randn(2, 4, 3)
    assert torch.allclose(multilevel_dense_loss((fine,), counts), dense_loss(fine, counts))
    both = multilevel_dense_loss((fine, coarse), counts)
    expected = 0.5 * (dense_loss(fine, counts) + dense_loss(coarse, pooled))
    assert torch.allclose(both, expected)


def test_a_hierarchical_tower_gives_one_dense_level_per_stage_from_stride_4() -> None:

    model = _tiny_hierarchical()
    embeds, levels = model.encode_dense(torch.randn(3, 3, 64, 64))
    assert embeds.shape == (3, 8) and torch.allclose(embeds.norm(dim=-1), torch.ones(3))
    assert [tuple(level.shape) for level in levels] == [(3, 256, 5), (3, 64, 5), (3, 16, 5)]
    with pytest.raises(ValueError, match="every pixel"):
        model.encode_dense(torch.randn(1, 3, 64, 64), torch.zeros(1, 4, dtype=torch.long))
    ids = torch.tensor([[48, 3, 4, 49], [48, 5, 49, 49]])
    out = model(torch.randn(2, 3, 64, 64), ids, ids != 49)
    assert out.text_embeds.shape == (2, 8) and len(out.patch_logits) == 3


def test_colour_heads_predict_each_cells_thing_colours_on_every_level() -> None:
    from dataclasses import replace

    from findvl.pretrain.config import ObjectiveConfig
    from findvl.pretrain.data import ClassTable, PretrainData, colour_map, patch_class_counts
    from findvl.pretrain.losses import multilevel_dense_loss
    from findvl.pretrain.trainer import train_step

    palette = torch.tensor([[220, 40, 40], [40, 70, 220]])
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    image[:, :4, :4] = torch.tensor([200, 30, 50]).view(3, 1, 1)  # reddish thing
    image[:, 4:, 4:] = torch.tensor([30, 60, 250]).view(3, 1, 1)  # bluish thing
    classes = torch.full((8, 8), 3)  # stuff (class 3) ...
    classes[:4, :4], classes[4:, 4:] = 1, 2  # ... and two things
    isthing = torch.tensor([False, True, True, False])
    colours = colour_map(image, classes, isthing, palette)
    assert colours[:4, :4].eq(1).all() and colours[4:, 4:].eq(2).all()
    assert colours[:4, 4:].eq(0).all() and colours[4:, :4].eq(0).all()  # stuff: no colour
    counts = patch_class_counts(colours, side=8, patch=4, num_classes=3)
    assert counts.tolist() == [[0, 16, 0], [16, 0, 0], [16, 0, 0], [0, 0, 16]]

    model = _tiny_hierarchical(num_colours=2)
    pixels = torch.randn(2, 3, 64, 64)
    _, levels, colour_levels = model.encode_all(pixels)
    assert [tuple(c.shape) for c in colour_levels] == [(2, 256, 3), (2, 64, 3), (2, 16, 3)]
    assert all(torch.equal(a, b) for a, b in zip(levels, model.encode_dense(pixels)[1]))
    ids = torch.tensor([[48, 3, 4, 49], [48, 5, 49, 49]])
    data = PretrainData(
        pixels=pixels, patch_counts=torch.randint(0, 5, (2, 256, 4), dtype=torch.int16),
        caption_ids=ids, caption_mask=ids != 49, caption_image=torch.arange(2),
        classes=ClassTable(("void", "a", "b", "c"), (1, 2, 3), (False, True, True, False)),
        image_ids=[1, 2],
        patch_colours=torch.randint(0, 5, (2, 256, 3), dtype=torch.int16),
    )  # fmt: skip
    images = torch.arange(2)
    on = ObjectiveConfig(colour_weight=0.5)
    loss, parts = train_step(model, data, images, images, on)
    _, plain = train_step(model, data, images, images, replace(on, colour_weight=0.0))
    with torch.no_grad():
        expected = multilevel_dense_loss(model.encode_all(pixels)[2], data.patch_colours)
    assert "colour" not in plain and parts["colour"] == pytest.approx(expected.item(), rel=1e-4)
    assert parts["loss"] == pytest.approx(plain["loss"] + 0.5 * parts["colour"], rel=1e-4)


def _tiny_hierarchical(num_colours: int = 0):
    """A tiny RegNet + CLIP text pair with dense (and colour) heads, seeded."""
    from transformers import CLIPTextConfig, RegNetConfig

    from findvl.pretrain.hierarchical_model import build_dense_hierarchical_clip

    torch.manual_seed(0)
    vision = RegNetConfig(
        embedding_size=8, hidden_sizes=[16, 16, 32], depths=[1, 1, 1], groups_width=8,
        layer_type="x", downsample_in_first_stage=True,
    )  # fmt: skip
    text = CLIPTextConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=16, bos_token_id=48, eos_token_id=49,
        pad_token_id=49,
    )  # fmt: skip
    return build_dense_hierarchical_clip(
        vision, text, projection_dim=8, num_classes=5 if not num_colours else 4,
        init_logit_scale=2.0, max_logit_scale=100.0, num_colours=num_colours,
    )  # fmt: skip
