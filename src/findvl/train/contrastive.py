"""Contrastive losses of FIND training: image-caption and interleaved-query InfoNCE, the
several-captions variant and FIND's token-level retrieval term; each returns a scalar tensor.

When ``torch.distributed`` is initialised the rows of every process are gathered, so each pair
is contrasted with the whole global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather ``[n_r,D]`` rows from every rank (sizes may differ); the local slice keeps
    its gradient, the others are constants.

    Returns the concatenated ``[sum n_r, D]`` tensor and the offset of the local slice.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = x.new_zeros(max(counts), x.shape[1])
    padded[: x.shape[0]] = x.detach()
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    parts = [g[:c] for g, c in zip(gathered, counts)]
    parts[rank] = x  # re-insert the local rows with their autograd history
    return torch.cat(parts), sum(counts[:rank])


def infonce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows of ``a`` and ``b`` (cosine similarity).

    When ``torch.distributed`` is initialised, the rows of every process are gathered, so each
    pair is contrasted with the whole global batch. Every process then gets the loss of the
    concatenated batch, and its gradient w.r.t. the local rows equals that loss's gradient
    w.r.t. them (the other processes' rows are constants here). Averaging parameter gradients
    over ``W`` processes (DDP) therefore yields the global-batch gradient divided by ``W``.

    Args:
        a: ``[N,D]`` embeddings (e.g. image queries).
        b: ``[N,D]`` paired embeddings (e.g. caption queries).
        logit_scale: scalar log temperature; the scale is ``exp(logit_scale).clamp(max=100)``.

    Returns:
        ``(CE(a->b) + CE(b->a)) / 2``, each CE averaged over the global batch.
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be [N,D], got {tuple(a.shape)} and {tuple(b.shape)}")
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        a, _ = _gather_rows(a)
        b, _ = _gather_rows(b)
    if a.shape[0] == 0:
        return (a.sum() + b.sum() + logit_scale) * 0.0
    scale = logit_scale.float().exp().clamp(max=100.0)
    logits = scale * a @ b.T  # NxN, row i = a_i against every b
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def caption_infonce(
    images: torch.Tensor,
    captions: torch.Tensor,
    owner: torch.Tensor,
    positive: torch.Tensor,
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """InfoNCE of images against several captions each, true ones and hard negatives.

    Image -> text: each true caption of an image is one cross-entropy row over every caption,
    with the image's other true captions left out of its denominator; text -> image: each
    true caption against every image. Hard negatives (``positive`` False, e.g. a caption with
    two attribute words swapped) are only further columns of image -> text. With one true
    caption per image and no negatives this is :func:`infonce`. When ``torch.distributed`` is
    initialised, images and captions of every process are gathered (as :func:`infonce`).

    Args:
        images: ``[B,D]`` image embeddings.
        captions: ``[C,D]`` caption embeddings.
        owner: ``[C]`` int64 index of each caption's image.
        positive: ``[C]`` bool, True for the image's own captions, False for hard negatives.
        logit_scale: scalar log temperature (as :func:`infonce`).

    Returns:
        ``(CE(image->text) + CE(text->image)) / 2``, each averaged over the true pairs.
    """
    if images.dim() != 2 or captions.dim() != 2 or owner.shape != positive.shape:
        raise ValueError(
            f"images [B,D], captions [C,D], owner and positive [C] expected, got "
            f"{tuple(images.shape)}, {tuple(captions.shape)}, {tuple(owner.shape)}, "
            f"{tuple(positive.shape)}"
        )
    images = F.normalize(images.float(), dim=-1)
    captions = F.normalize(captions.float(), dim=-1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        images, offset = _gather_rows(images)
        captions, _ = _gather_rows(captions)
        owner, _ = _gather_rows((owner + offset)[:, None].to(captions))
        positive, _ = _gather_rows(positive[:, None].to(captions))
        owner, positive = owner[:, 0].long(), positive[:, 0] > 0.5
    true = positive.nonzero()[:, 0]
    if images.shape[0] == 0 or true.numel() == 0:
        return (images.sum() + captions.sum() + logit_scale) * 0.0
    scale = logit_scale.float().exp().clamp(max=100.0)
    logits = scale * images @ captions.T  # [B,C]
    rows = logits[owner[true]]  # [T,C]: each true pair's image against every caption
    own = (owner[None, :] == owner[true][:, None]) & positive[None, :]
    own[torch.arange(true.numel(), device=own.device), true] = False  # keep the target itself
    image_to_text = F.cross_entropy(rows.masked_fill(own, float("-inf")), true)
    text_to_image = F.cross_entropy(logits.T[true], owner[true])
    return 0.5 * (image_to_text + text_to_image)


def token_infonce(
    objects: torch.Tensor,
    tokens: torch.Tensor,
    valid: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    image_to_text: float = 0.7,
) -> torch.Tensor:
    """Contrast images with the single tokens of every caption of the batch (FIND's
    fine-grained retrieval term).

    An image is scored against a token by the mean cosine of its object proposals with it
    (``scale * mean_n cos(o_n, t)``). Image to text: a softmax over every valid token of the
    batch, whose target spreads over the image's own caption with weight growing with the
    token's position (``1, 2, ...``: later tokens of a causal text tower have read more of
    the caption). Text to image: per token, a softmax over the images, target its own image,
    tokens weighted alike. Local to the process (no gathering across processes).

    Args:
        objects: ``[B,N,D]`` semantic embeddings of each image's object proposals.
        tokens: ``[B,L,D]`` projected token features of each image's caption.
        valid: ``[B,L]`` bool, True at tokens.
        logit_scale: scalar log temperature (``exp``, capped at 100).
        image_to_text: weight of the image-to-text direction (the rest goes to text-to-image).

    Returns:
        ``image_to_text * CE(i->t) + (1 - image_to_text) * CE(t->i)``, each averaged over images.
    """
    if objects.dim() != 3 or tokens.dim() != 3 or objects.shape[0] != tokens.shape[0]:
        raise ValueError(
            f"objects must be [B,N,D] and tokens [B,L,D], got {tuple(objects.shape)} and "
            f"{tuple(tokens.shape)}"
        )
    if valid.shape != tokens.shape[:2]:
        raise ValueError(f"valid must be {list(tokens.shape[:2])}, got {list(valid.shape)}")
    b = objects.shape[0]
    pooled = F.normalize(objects.float(), dim=-1).mean(1)  # BxD: mean cosine = dot with it
    words = F.normalize(tokens.float(), dim=-1)
    scale = logit_scale.float().exp().clamp(max=100.0)
    sim = scale * torch.einsum("bd,cld->bcl", pooled, words)  # image b vs token l of caption c
    weight = valid.float() * valid.float().cumsum(1)  # BxL: position weights, 0 at padding
    weight = weight / weight.sum(1, keepdim=True).clamp(min=1e-6)
    keep = valid.reshape(-1)
    # image -> text: every valid token of the batch is a candidate
    log_i2t = F.log_softmax(sim.reshape(b, -1)[:, keep], dim=-1)  # Bx(valid tokens)
    own = torch.eye(b, device=sim.device)[:, :, None] * weight[None]  # BxCxL
    i2t = -(own.reshape(b, -1)[:, keep] * log_i2t).sum(1).mean()
    # text -> image: per token, its own image among the batch
    log_t2i = F.log_softmax(sim, dim=0)  # BxCxL, normalised over images
    t2i = -(torch.diagonal(log_t2i, dim1=0, dim2=1).T * weight).sum(1).mean()
    return image_to_text * i2t + (1.0 - image_to_text) * t2i
