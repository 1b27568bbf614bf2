"""FindPredictor: encode an image once, answer any number of requests from cached features.

Habits of SAM's predictor: :meth:`FindPredictor.set_image` takes a PIL image, an ``HxWx3`` /
``HxWx4`` / ``HxW`` array or a ``[3,H,W]`` tensor; :meth:`FindPredictor.predict` takes clicks
and a box in pixel coordinates and the previous round's logits. Scores are probabilities.

* :mod:`findvl.predictor.core`: the predictor.
* :mod:`findvl.predictor.results`: its typed results and the encoded image.
* :mod:`findvl.predictor.batch`: several images and prompts in one forward.
* :mod:`findvl.predictor.inputs`: image, click, box and logit normalisation.
"""

from findvl.predictor.core import FindPredictor
from findvl.predictor.inputs import as_image_tensor, previous_logits, prompt_from_inputs
from findvl.predictor.results import EncodedImage, MaskResult, Prediction

__all__ = [
    "EncodedImage",
    "FindPredictor",
    "MaskResult",
    "Prediction",
    "as_image_tensor",
    "previous_logits",
    "prompt_from_inputs",
]
