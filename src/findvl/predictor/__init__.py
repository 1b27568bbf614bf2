"""FindPredictor: encode an image once, answer any number of requests from cached features.

Habits of SAM's predictor: :meth:`FindPredictor.set_image` takes a PIL image, an ``HxWx3`` /
``HxWx4`` / ``HxW`` array or a ``[3,H,W]`` tensor; :meth:`FindPredictor.predict` takes clicks
and a box in pixel coordinates and the previous round's logits. Scores are probabilities.

* :mod:`findvl.predictor.core`: the predictor and its typed results.
* :mod:`findvl.predictor.inputs`: image, click, box and logit normalisation.
"""

from findvl.predictor.core import EncodedImage, FindPredictor, MaskResult, Prediction
from findvl.predictor.inputs import as_image_tensor, previous_logits, prompt_from_inputs

__all__ = [
    "EncodedImage",
    "FindPredictor",
    "MaskResult",
    "Prediction",
    "as_image_tensor",
    "previous_logits",
    "prompt_from_inputs",
]
