import pytest
import torch

from findvl.build import build_model, build_preset, preset_config
from findvl.layers import MultiheadAttention
from findvl.model.requests import (
    GroundedSegmentation,
    ImageTextRetrieval,
    InteractiveSegmentation,
    VisualPrompt,
)
from findvl.model.sampler import rasterize


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_preset("find_tiny")
    return m.eval()


def _final_tensors(out):
    t = {}
    t["generic.logits"] = out.generic_segmentation.final.logits
    t["generic.masks"] = out.generic_segmentation.final.masks
    for name in ("grounded_segmentation", "interactive_segmentation", "interleave_segmentation"):
        o = getattr(out, name)
        t[f"{name}.logits"] = o.final.logits
        t[f"{name}.masks"] = o.final.masks
        t[f"{name}.queries"] = o.queries
    for name in ("image_text_retrieval", "interleave_retrieval"):
        o = getattr(out, name)
        t[f"{name}.image"] = o.final.image
        t[f"{name}.query"] = o.final.query
    return t


def test_fully_masked_rows_give_zero_and_finite_grads():
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2)
    q = torch.randn(2, 3, 8, requires_grad=True)
    k = torch.randn(2, 4, 8, requires_grad=True)
    allowed = torch.ones(2, 3, 4, dtype=torch.bool)
    allowed[0, 1] = False
    allowed[1] = False
    out = attn(q, k, k, allowed)
    bias = attn.out_proj.bias
    torch.testing.assert_close(out[0, 1], bias.expand(8))
    torch.testing.assert_close(out[1], bias.expand(3, 8))
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert q.grad[1].abs().sum() == 0


def test_joint_forward_gradients_reach_every_trainable_parameter_only(all_requests, images):
    torch.manual_seed(0)
    cfg = preset_config("find_tiny")
    cfg.vision.trainable = False
    cfg.language.trainable = False
    model = build_model(cfg).train()
    imgs = images([(64, 64), (64, 64)])
    out = model(imgs, all_requests(imgs, previous=True), all_layer_masks=True)
    loss = sum(v.float().pow(2).mean() for v in _final_tensors(out).values())
    for layer in out.grounded_segmentation.layers[:-1]:
        loss = loss + layer.logits.mean() + layer.masks.mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not missing, missing
    assert not frozen, frozen
    assert any(not p.requires_grad for p in model.vision.parameters())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_every_output_finite_and_shaped(model, all_requests, images):
    imgs = images([(64, 96), (80, 64)])
    out = model(imgs, all_requests(imgs))
    n = model.interface.num_proposals
    assert out.canvas == (96, 96)
    assert out.generic_segmentation.final.logits.shape == (2, n, 4)
    assert out.grounded_segmentation.final.logits.shape == (2, 2, n)
    assert out.grounded_segmentation.valid.tolist() == [[True, False], [True, True]]
    assert out.interleave_segmentation.is_visual.tolist() == [[True, False], [True, False]]
    for value in _final_tensors(out).values():
        assert torch.isfinite(value).all()
    assert len(out.grounded_segmentation.layers) == model.interface.num_layers + 1


def test_batched_equals_single(model, all_requests, images):
    imgs = images([(64, 64), (64, 64)], seed=3)
    with torch.no_grad():
        batched = _final_tensors(model(imgs, all_requests(imgs)))
        for b in range(2):
            single_req = all_requests([imgs[b]])
            # the per-image requests must be the ones image b gets in the batch
            single_req[1].phrases = [all_requests(imgs)[1].phrases[b]]
            single_req[2].prompts = [all_requests(imgs)[2].prompts[b]]
            single_req[3].captions = [f"caption number {b}"]
            single = _final_tensors(model([imgs[b]], single_req))
            for key, value in single.items():
                ref = batched[key][b : b + 1]
                if value.dim() == 3 and value.shape[1] != ref.shape[1]:  # padded targets
                    ref = ref[:, : value.shape[1]]
                torch.testing.assert_close(value, ref, atol=2e-5, rtol=1e-4, msg=key)


def test_query_side_embeddings_do_not_depend_on_the_image(model, all_requests, images):
    ref = images([(64, 64)], seed=9)[0]
    a, b = images([(64, 64)], seed=1), images([(64, 64)], seed=2)
    with torch.no_grad():
        out_a = model(a, all_requests(a, reference_image=ref))
        out_b = model(b, all_requests(b, reference_image=ref))
    torch.testing.assert_close(
        out_a.image_text_retrieval.final.query, out_b.image_text_retrieval.final.query
    )
    torch.testing.assert_close(
        out_a.interleave_retrieval.final.query, out_b.interleave_retrieval.final.query
    )
    torch.testing.assert_close(
        out_a.interleave_segmentation.queries, out_b.interleave_segmentation.queries
    )
    torch.testing.assert_close(
        out_a.generic_segmentation.class_embeddings, out_b.generic_segmentation.class_embeddings
    )
    assert not torch.allclose(
        out_a.image_text_retrieval.final.image, out_b.image_text_retrieval.final.image
    )


def test_outputs_unchanged_by_extra_sequence_padding(model, images):
    imgs = images([(64, 64)], seed=4)
    with torch.no_grad():
        short = model(imgs, [GroundedSegmentation([["red circle"]]), ImageTextRetrieval(["a cap"])])
        # a batch mate with more phrases and a longer caption pads image 0's sequences
        long = model(
            [imgs[0], imgs[0]],
            [
                GroundedSegmentation([["red circle"], ["red circle", "a much longer phrase here"]]),
                ImageTextRetrieval(["a cap", "a much much longer caption than the other one"]),
            ],
        )
    torch.testing.assert_close(
        short.grounded_segmentation.final.logits[0, :1],
        long.grounded_segmentation.final.logits[0, :1],
        atol=2e-5,
        rtol=1e-4,
    )
    torch.testing.assert_close(
        short.image_text_retrieval.final.query[0], long.image_text_retrieval.final.query[0]
    )


def test_captions_riding_with_an_image_are_embedded_as_if_alone(model, images):
    """Several captions of one image (``ImageTextRetrieval.more``) do not see each other: each
    gets the embedding it gets as the image's only caption, and the image's is unchanged."""
    imgs = images([(64, 64), (48, 64)], seed=5)
    captions = [["a red circle", "two shapes: a blue square", "a large star"], ["grass", "sand"]]
    with torch.no_grad():
        alone = [
            model(imgs, [ImageTextRetrieval([captions[0][k], captions[1][min(k, 1)]])])
            for k in range(3)
        ]
        together = model(
            imgs, [ImageTextRetrieval([c[0] for c in captions], [c[1:] for c in captions])]
        )
    final = together.image_text_retrieval.final
    assert final.more.shape[:2] == (2, 2)
    assert together.image_text_retrieval.more_valid.tolist() == [[True, True], [True, False]]
    torch.testing.assert_close(final.image, alone[0].image_text_retrieval.final.image)
    torch.testing.assert_close(final.query, alone[0].image_text_retrieval.final.query)
    for k in (1, 2):
        torch.testing.assert_close(
            final.more[0, k - 1], alone[k].image_text_retrieval.final.query[0]
        )
    torch.testing.assert_close(final.more[1, 0], alone[1].image_text_retrieval.final.query[1])
    with pytest.raises(ValueError, match="ImageTextRetrieval.more: 1 entries for 2 images"):
        model(imgs, [ImageTextRetrieval(["a", "b"], [["c"]])])


def test_interface_ignores_image_padding(model, images):
    """Padded image keys (marked invalid) never change the interface outputs."""
    from findvl.model.slots import query_slot, text_slot

    pad = torch.nn.functional.pad
    imgs = images([(64, 64)], seed=5)
    with torch.no_grad():
        feats = model.encode_images(imgs)
        pixel = feats.pixel
        padded = type(pixel)(
            # 64 more pixels of canvas: 2, 4, 8 cells at strides 32, 16, 8 and 16 at stride 4
            levels=[pad(x, (0, k, 0, k), value=7.0) for x, k in zip(pixel.levels, (2, 4, 8))],
            valid=[pad(v, (0, k, 0, k), value=False) for v, k in zip(pixel.valid, (2, 4, 8))],
            mask_features=pad(pixel.mask_features, (0, 16, 0, 16), value=3.0),
            mask_valid=pad(pixel.mask_valid, (0, 16, 0, 16), value=False),
        )
        from findvl.model.slots import proposal_slot
        from findvl.prototypes import prototype_set

        pset = prototype_set(["generic_segmentation", "image_text_retrieval"])
        text = model.encode_text(["a caption"])

        def run(p):
            slots = [
                proposal_slot(model.interface, "p.object", 1),
                query_slot(model.interface, "q.image", [1]),
                query_slot(model.interface, "image_text_retrieval/q.caption", [1]),
                text_slot("image_text_retrieval/t.caption", text, [[0]]),
            ]
            return model.interface(slots, pset=pset, pixel=p)

        a, b = run(pixel), run(padded)
    for key in ("p.object", "q.image"):
        torch.testing.assert_close(
            a.final[key].semantic, b.final[key].semantic, atol=1e-5, rtol=1e-4
        )
    h, w = pixel.mask_features.shape[-2:]
    torch.testing.assert_close(
        a.final["p.object"].masks, b.final["p.object"].masks[..., :h, :w], atol=1e-4, rtol=1e-4
    )


def test_bad_requests_name_the_field(model, images, point):
    imgs = images([(32, 32), (32, 32)])
    with pytest.raises(ValueError, match=r"GroundedSegmentation.phrases\[1\]"):
        model(imgs, [GroundedSegmentation([["a"], []])])
    with pytest.raises(ValueError, match="GroundedSegmentation.phrases: 1 entries for 2"):
        model(imgs, [GroundedSegmentation([["a"]])])
    with pytest.raises(ValueError, match=r"phrases\[0\]: empty text"):
        model(imgs, [GroundedSegmentation([[" "], ["b"]])])
    with pytest.raises(ValueError, match="outside"):
        rasterize((32, 32), points=[(40, 3)], field="prompt")
    bad = VisualPrompt(torch.zeros(32, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"prompts\[0\]\[0\].positive: the prompt marks no pixel"):
        model(imgs, [InteractiveSegmentation([[bad], [point((32, 32), 3, 3)]])])
    wrong = VisualPrompt(torch.ones(16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not match the image size"):
        model(imgs, [InteractiveSegmentation([[wrong], [wrong]])])
    with pytest.raises(ValueError, match="ImageTextRetrieval.captions"):
        model(imgs, [ImageTextRetrieval([])])
    with pytest.raises(ValueError, match=r"images\[0\]"):
        model([torch.zeros(4, 8, 8)], [ImageTextRetrieval(["x"])])


def test_focalt_preset_dimensions():
    cfg = preset_config("find_focalt")
    it = cfg.interface
    assert (it.hidden_dim, it.num_layers, it.num_heads, it.ffn_dim, it.num_proposals) == (
        512,
        9,
        8,
        2048,
        100,
    )
    assert it.num_levels == 3


def test_text_positions_carry_each_tokens_index_in_its_own_text():
    """``conventions.text_positions``: a token's interface position is its feature plus the
    sine code of its index in its text (restarting for every text of a row); FIND's position is
    the feature alone."""
    from findvl.config import ConventionsConfig
    from findvl.layers import sine_positions
    from findvl.model.slots import text_slot

    cfg = preset_config("find_tiny")
    cfg.conventions = ConventionsConfig(text_positions=True)
    torch.manual_seed(0)
    with_codes = build_model(cfg).eval()
    plain = build_preset("find_tiny").eval()
    texts = ["a red circle", "two blue squares left of it"]
    for model, coded in ((plain, False), (with_codes, True)):
        text = model.encode_text(texts)
        slot = text_slot("t", text, [[0, 1]])
        assert (text.positions is not None) == coded
        lengths = text.mask.sum(1).tolist()
        want = torch.cat(
            [sine_positions(n, slot.x.shape[-1])[0] if coded else torch.zeros(n, slot.x.shape[-1])
             for n in lengths]
        )  # fmt: skip
        torch.testing.assert_close(slot.pos[0] - slot.x[0], want)
        assert slot.ids[0].tolist() == [0] * lengths[0] + [1] * lengths[1]
