"""Block-sparse interface attention equals the dense-mask attention."""

import torch

from findvl.build import build_preset
from findvl.layers import MultiheadAttention
from findvl.model.blocks import connected_groups, pack, plan_blocks


def test_groups_are_closed_and_packed_within_capacity():
    keys = ["a", "b", "c", "d", "e"]
    groups = connected_groups(keys, {("a", "c"), ("d", "e")})
    assert groups == [["a", "c"], ["b"], ["d", "e"]]
    sizes = {"a": 50, "c": 30, "b": 10, "d": 40, "e": 50}
    blocks = pack(groups, sizes, capacity=100)
    assert len(blocks) == 2 and sorted(k for b in blocks for k in b) == sorted(keys)
    assert ["a", "c"] in blocks  # groups stay whole
    assert all(sum(sizes[k] for k in b) <= 100 for b in blocks)


def test_block_attention_equals_dense_and_handles_blocked_rows():
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2)
    rows = [("p", 3), ("q", 2), ("t", 4)]
    keys = [("img", 5), ("t", 4)]
    pairs = {("p", "img"), ("q", "t")}
    plan = plan_blocks(rows, keys, pairs, capacity=4)
    x, mem = torch.randn(2, 9, 8), torch.randn(2, 9, 8)
    allowed = torch.zeros(2, 9, 9, dtype=torch.bool)
    allowed[:, :3, :5] = torch.rand(2, 3, 5) > 0.3
    allowed[:, 3:5, 5:] = True
    allowed[1, 4] = False  # a fully blocked row
    dense = attn(x, mem, mem, allowed)
    blocks = attn.forward_blocks(x, mem, mem, plan, plan.blocks_of(allowed))
    torch.testing.assert_close(blocks, dense, atol=1e-6, rtol=1e-5)


def test_model_outputs_do_not_depend_on_the_attention_layout(all_requests, images):
    torch.manual_seed(0)
    model = build_preset("find_tiny").eval()
    imgs = images([(64, 64), (48, 64)])
    requests = all_requests(imgs, previous=True)
    outs = []
    for flag in (True, False):
        model.interface.block_sparse = flag
        torch.manual_seed(1)
        with torch.no_grad():
            outs.append(model(imgs, requests, all_layer_masks=True))
    for name in ("generic_segmentation", "grounded_segmentation", "interactive_segmentation"):
        a, b = getattr(outs[0], name).final, getattr(outs[1], name).final
        torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.masks, b.masks, atol=1e-5, rtol=1e-4)
    for name in ("image_text_retrieval", "interleave_retrieval"):
        a, b = getattr(outs[0], name).final, getattr(outs[1], name).final
        torch.testing.assert_close(a.image, b.image, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.query, b.query, atol=1e-5, rtol=1e-4)
