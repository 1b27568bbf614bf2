"""Report pictures: nearest-neighbour enlarging, legends, ground truth beside prediction."""

import numpy as np

from findvl import viz


def _has_color(image, color, tolerance: int = 0) -> bool:
    arr = np.asarray(image.convert("RGB")).astype(int)
    return bool((np.abs(arr - np.array(color)).max(-1) <= tolerance).any())


def test_scale_for_reaches_the_long_side_with_an_integer_factor():
    assert viz.scale_for(64, 64) == 4
    assert viz.scale_for(128, 96) == 2
    assert viz.scale_for(100, 60) == 3  # 300 >= 256
    assert viz.scale_for(512, 300) == 1  # never shrinks


def test_enlarge_is_nearest_neighbour():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    big = viz.enlarge_image(image, 4)
    assert big.shape == (8, 12, 3)
    assert (big[::4, ::4] == image).all() and (big[3, 5] == image[0, 1]).all()
    masks = np.zeros((2, 2, 3), bool)
    masks[1, 0, 2] = True
    assert viz.enlarge(masks, 3).shape == (2, 6, 9)
    assert viz.enlarge(masks, 3)[1, :3, 6:].all() and viz.enlarge(masks, 3).sum() == 9


def test_wrap_stays_within_the_width():
    text = "the large yellow square right of the yellow star " * 3
    lines = viz.wrap(text, 120)
    assert len(lines) > 1 and " ".join(lines).split() == text.split()
    assert all(viz.font(14).getlength(line) <= 120 for line in lines)
    assert viz.wrap("", 50) == [""]


def test_legend_shows_every_colour_next_to_its_text():
    entries = [("the red circle", (230, 20, 20)), ("a square", (20, 20, 230))]
    pic = viz.legend(entries, 400)
    assert pic.width == 400
    for _, color in entries:
        assert _has_color(pic, color)
    one_per_row = viz.legend(entries, 90)  # too narrow for two entries on a row
    assert one_per_row.height > pic.height


def test_compare_puts_ground_truth_beside_prediction_enlarged():
    image = np.full((64, 48, 3), 128, np.uint8)
    truth = np.zeros((2, 64, 48), bool)
    truth[0, :10, :10] = True
    truth[1, 40:, 30:] = True
    red, blue = (255, 0, 0), (0, 0, 255)
    pic = viz.compare(image, truth, truth[:1], [("a", red), ("b", blue)], truth_colors=[red, blue])
    f = viz.scale_for(64, 48)
    assert f == 4 and pic.height > 64 * f and pic.width >= 3 * 48 * f  # image | truth | pred
    arr = np.asarray(pic)

    def panel(c: int) -> np.ndarray:  # grid padding 4, title band above each panel
        return arr[4 : 4 + 64 * f + 20, 4 + c * (48 * f + 4) : 4 + c * (48 * f + 4) + 48 * f]

    def outlined(a: np.ndarray, color) -> bool:
        return bool(np.all(a == color, -1).any())

    assert not outlined(panel(0), red) and not outlined(panel(0), blue)  # the plain image
    assert outlined(panel(1), red) and outlined(panel(1), blue)  # ground truth: both masks
    assert outlined(panel(2), red) and not outlined(panel(2), blue)  # prediction: the first
    legend = arr[4 + 64 * f + 24 :]
    assert outlined(legend, blue) and outlined(legend, red)  # the missed mask keeps its entry
