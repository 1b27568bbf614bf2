"""Report pictures on a tiny synthetic split: enlarged, ground truth beside prediction."""

import ast
import inspect

import numpy as np
import pytest
import torch
from PIL import Image

from findvl import report_pictures, viz
from findvl.data.readers.dataset import load_dataset
from findvl.data.readers.vocabulary import dataset_vocabulary
from findvl.data.synth.write import SynthConfig, write_synth
from findvl.images import read_image_tensor
from findvl.postprocess import PanopticResult
from findvl.predictor import MaskResult


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_pictures")
    write_synth(SynthConfig(root, 3, seed=1, size=64, split="val"), progress=False)
    return root, load_dataset(root, "val"), dataset_vocabulary(str(root), "val")


class OraclePredictor:
    """Answers with the ground truth of the image that was set (a perfect model)."""

    def __init__(self, samples, vocab):
        self.by_image = {read_image_tensor(s.image_path).numpy().tobytes(): s for s in samples}
        self.vocab = vocab
        self.thresholds = []

    def set_image(self, image):
        self.sample = self.by_image[image.numpy().tobytes()]

    def segment(self, classes, *, isthing, object_threshold):
        self.thresholds.append(object_threshold)
        pan = self.sample.panoptic
        segments = [{"id": g.id, "category": self.vocab.index[g.category_id]} for g in pan.segments]
        return PanopticResult(torch.from_numpy(pan.segment_ids()), segments)

    def ground(self, phrases):
        refs = {r.sentences[0].sent: r.ann_id for r in self.sample.refs if r.sentences}
        masks = report_pictures._segment_masks(self.sample, [refs[p] for p in phrases])
        return MaskResult(
            torch.from_numpy(masks), torch.zeros(masks.shape), torch.zeros(len(masks))
        )


def _panel(picture: Image.Image, column: int, side: int) -> np.ndarray:
    """Pixels of panel ``column`` (image, truth, prediction) of the first tile of a picture."""
    x = 12 + 4 + column * (side + 4)  # picture grid padding, then the tile's row padding
    y = 12 + 4 + 20  # and the panel title
    return np.asarray(picture)[y : y + side, x : x + side]


def test_panoptic_pictures_color_truth_and_prediction_alike(split, tmp_path):
    root, samples, vocab = split
    oracle = OraclePredictor(samples, vocab)
    path = report_pictures.panoptic_pictures(oracle, samples, vocab, tmp_path, threshold=0.3)
    assert oracle.thresholds == [0.3] * len(samples)
    picture = Image.open(path).convert("RGB")
    side = 64 * viz.scale_for(64, 64, report_pictures.LONG_SIDE)
    assert side >= 256 and picture.width > 2 * 3 * side  # two tiles a row, three panels each
    truth, predicted = _panel(picture, 1, side), _panel(picture, 2, side)
    assert (truth == predicted).all()  # a perfect prediction looks like the ground truth
    assert not (truth == _panel(picture, 0, side)).all()  # and is drawn over the image


def test_grounding_pictures_show_each_phrase_in_its_own_color(split, tmp_path):
    _, samples, vocab = split
    path = report_pictures.grounding_pictures(OraclePredictor(samples, vocab), samples, tmp_path)
    picture = Image.open(path).convert("RGB")
    side = 64 * viz.scale_for(64, 64, report_pictures.LONG_SIDE)
    truth, predicted = _panel(picture, 1, side), _panel(picture, 2, side)
    assert (truth == predicted).all()
    first = next(s for s in samples if any(r.sentences for r in s.refs))
    refs = [r for r in first.refs if r.sentences][:3]
    for color in viz.palette(len(refs)):  # mask outlines are drawn in the legend's colours
        assert np.all(truth == color, -1).any()


def test_pictures_do_not_import_the_report():
    tree = ast.parse(inspect.getsource(report_pictures))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "findvl.report" not in names
