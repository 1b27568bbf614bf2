"""Fixed standardisation (and whitening) of frozen text features before ``lang_proj``.

Pretrained text towers end in a LayerNorm whose learned bias gives every token a large shared
offset (the shipped CLIP-style tower: the mean token is 84% of a token's norm; 99.7% in a
shorter pretraining run). Projected as is, that offset dominates: caption, phrase and class
queries start alike (cos 0.94-1.0) and the contrastive and grounding losses have little to
separate. Subtracting the mean token and dividing by the per-dimension spread (measured once on
the training texts and saved with the model) gives ``lang_proj`` unit-variance, centred inputs.

Whitening goes further: a small tower can keep the words that matter in directions of little
variance. The shipped tower's shape words ("circle", "star", ...) have cos 0.93 after
standardisation and 0.50 after ZCA whitening; without it every shape class embedding came out
the same and no thing was ever classified. The eigenvalues are shrunk by :data:`WHITEN_SHRINK`
so that directions of pure noise are not blown up. Released weights use neither (identity).
"""

from __future__ import annotations

import torch

#: Added to the eigenvalues of the standardised covariance (mean eigenvalue 1) before whitening.
WHITEN_SHRINK = 0.01


def text_calibration(
    tokens: torch.Tensor, *, whiten: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``tokens [N,C]`` -> ``(shift [C], scale [C], whitening [C,C] or None)``.

    The model computes ``((x - shift) / scale) @ whitening``.
    """
    shift = tokens.mean(0)
    scale = tokens.std(0).clamp(min=1e-4)
    if not whiten:
        return shift, scale, None
    z = ((tokens - shift) / scale).double()
    eigenvalues, vectors = torch.linalg.eigh(torch.cov(z.T))
    inverse_root = (eigenvalues.clamp(min=0) + WHITEN_SHRINK) ** -0.5
    return shift, scale, ((vectors * inverse_root) @ vectors.T).to(tokens.dtype)
