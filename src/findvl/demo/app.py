"""The Gradio page: one tab per task over a :class:`~findvl.demo.service.DemoService`.

Named API endpoints (``api_name``): ``/segment``, ``/ground``, ``/click``, ``/interleave`` and
``/search``; each returns a picture (``/search``: a gallery) and a JSON object. A bad input is a
message in the page (``gr.Error``), never a stack trace.
"""

from __future__ import annotations

import functools

import gradio as gr

from findvl.demo.examples import Examples
from findvl.demo.parsing import DemoInputError, format_points, parse_points
from findvl.demo.search import search
from findvl.demo.service import DemoService

INTRO = (
    "# FIND: one interface for every task\n"
    "Upload any image or pick an example from the synthetic val split. Coordinates are image "
    "pixels `x,y`; boxes are `x0,y0,x1,y1`. Entities in interleaved text are `[id]<phrase>`."
)


def uploaded_image(**kwargs) -> gr.Image:
    """An image input handed over as the uploaded file's path, decoded by :mod:`findvl.images`.

    The stock component opens an upload with PIL before any handler runs, so a broken file
    ended in a processing error; this one passes the path on and the handler answers in one
    line. (Set on the instance: a subclass of a Gradio component writes a ``.pyi`` stub next
    to its module.)
    """
    image = gr.Image(
        type="filepath",
        height=kwargs.pop("height", 384),
        **kwargs,
    )
    stock = image.preprocess

    def preprocess(payload):
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)
        try:
            return stock(payload)
        except Exception as error:  # noqa: BLE001 - any decoding failure is the upload's
            message = f"image: the upload is not a readable image ({type(error).__name__})"
            raise gr.Error(message, print_exception=False) from None

    image.preprocess = preprocess
    return image


def _page_errors(fn):
    """Bad input -> a message in the page (``gr.Error``) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return fn(*args)
        except (DemoInputError, ValueError) as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper


def _examples(examples: Examples, inputs) -> None:
    if examples.images:
        gr.Examples([[str(path)] for _, path, _ in examples.images], inputs=inputs)


def _segment_tab(service: DemoService, examples: Examples) -> None:
    with gr.Row():
        image = uploaded_image(label="image", elem_id="segment-image")
        overlay = gr.Image(
            label="segments", height=440, type="pil", format="png", elem_id="segment-overlay"
        )
    vocabulary = gr.Textbox(
        label="vocabulary (class names or descriptions, one per line)",
        value="\n".join(service.class_names),
        lines=4,
    )
    threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="minimum class score")
    with gr.Accordion("visual exemplar: a region of another image as one more class", open=False):
        ex_image = uploaded_image(label="exemplar image")
        ex_box = gr.Textbox(label="exemplar box x0,y0,x1,y1")
        ex_points = gr.Textbox(label="exemplar clicks x,y; x,y")
    button = gr.Button("Segment", variant="primary", elem_id="segment-run")
    result = gr.JSON(label="masks (COCO RLE)")
    _examples(examples, [image])

    def run(img, vocab, thr, ex_img, box, points):
        answer = service.segment(img, vocab, thr, ex_img, box or "", points or "")
        return answer.picture, answer.result

    button.click(
        _page_errors(run),
        [image, vocabulary, threshold, ex_image, ex_box, ex_points],
        [overlay, result],
        api_name="segment",
    )


def _ground_tab(service: DemoService, examples: Examples) -> None:
    with gr.Row():
        image = uploaded_image(label="image", elem_id="ground-image")
        overlay = gr.Image(
            label="one colour per phrase", type="pil", format="png", elem_id="ground-overlay"
        )
    first = next(iter(examples.phrases.values()), ["the red circle"])
    phrases = gr.Textbox(
        label="phrases (one per line) or a paragraph",
        value="\n".join(first[:2]),
        lines=3,
        elem_id="ground-phrases",
    )
    button = gr.Button("Ground", variant="primary", elem_id="ground-run")
    result = gr.JSON(label="masks (COCO RLE)", elem_id="ground-json")
    _examples(examples, [image])

    def run(img, text):
        answer = service.ground(img, text)
        return answer.picture, answer.result

    button.click(_page_errors(run), [image, phrases], [overlay, result], api_name="ground")


def _click_tab(service: DemoService, examples: Examples) -> None:
    previous = gr.State(None)
    with gr.Row():
        image = uploaded_image(label="click on the image", elem_id="click-image")
        overlay = gr.Image(
            label="mask", height=440, type="pil", format="png", elem_id="click-overlay"
        )
    with gr.Row():
        mode = gr.Radio(["positive", "negative"], value="positive", label="a click adds")
        points = gr.Textbox(label="clicks x,y,label (1 positive, 0 negative)", elem_id="points")
        box = gr.Textbox(label="box x0,y0,x1,y1")
        use_previous = gr.Checkbox(value=True, label="correction round: feed the previous mask")
    with gr.Accordion("scribble: draw strokes over the image", open=False):
        scribble = gr.ImageEditor(label="scribble pad", type="numpy", layers=False)
        copy = gr.Button("put the image on the pad")
    with gr.Row():
        button = gr.Button("Segment", variant="primary", elem_id="click-run")
        reset = gr.Button("Reset clicks")
    result = gr.JSON(label="masks (COCO RLE)")
    _examples(examples, [image])

    def run(img, pts, bx, pad, again, prev):
        answer = service.click(img, pts or "", bx or "", pad, prev if again else None)
        return answer.picture, answer.result, answer.logits

    def add_click(img, pts, kind, evt: gr.SelectData):
        x, y = evt.index[0], evt.index[1]
        parsed = parse_points(pts) + [(x, y, 1 if kind == "positive" else 0)]
        return format_points(parsed)

    inputs = [image, points, box, scribble, use_previous, previous]
    outputs = [overlay, result, previous]
    button.click(_page_errors(run), inputs, outputs, api_name="click")
    image.select(_page_errors(add_click), [image, points, mode], [points], api_name=False).then(
        _page_errors(run), inputs, outputs, api_name=False
    )
    reset.click(lambda: ("", None, None), None, [points, previous, overlay], api_name=False)
    # a new image starts a new round: no clicks, no previous mask
    image.upload(lambda: ("", None), None, [points, previous], api_name=False)
    copy.click(lambda img: img, [image], [scribble], api_name=False)


def _reference_inputs(label: str):
    with gr.Accordion(label, open=False):
        ref_image = uploaded_image(label="reference image (click to mark the region)")
        entity = gr.Number(label="entity id replaced by the region", value=1, precision=0)
        ref_box = gr.Textbox(label="region box x0,y0,x1,y1")
        ref_points = gr.Textbox(label="region clicks x,y; x,y")

    def add(pts, evt: gr.SelectData):
        return format_points(parse_points(pts) + [(evt.index[0], evt.index[1], 1)])

    ref_image.select(_page_errors(add), [ref_points], [ref_points], api_name=False)
    return ref_image, entity, ref_box, ref_points


def _interleave_tab(service: DemoService, examples: Examples) -> None:
    with gr.Row():
        image = uploaded_image(label="image", elem_id="interleave-image")
        overlay = gr.Image(
            label="one colour per entity", type="pil", format="png", elem_id="interleave-overlay"
        )
    text = gr.Textbox(
        label="text with entities [id]<phrase>",
        value="a [1]<red circle> next to a [2]<blue square>",
    )
    reference = _reference_inputs("replace an entity by a region of a reference image")
    button = gr.Button("Segment entities", variant="primary")
    result = gr.JSON(label="masks (COCO RLE)")
    _examples(examples, [image])

    def run(img, markup, ref, entity, bx, pts):
        entity = None if entity is None else int(entity)
        answer = service.interleave(img, markup, ref, entity, bx or "", pts or "")
        return answer.picture, answer.result

    button.click(
        _page_errors(run), [image, text, *reference], [overlay, result], api_name="interleave"
    )


def _search_tab(service: DemoService) -> None:
    query = gr.Textbox(label="caption, or text with entities [id]<phrase>", value="a red circle")
    files = gr.File(label="images to search (besides the examples)", file_count="multiple")
    top_k = gr.Slider(1, 24, value=6, step=1, label="results")
    reference = _reference_inputs("replace an entity of the query by a region")
    button = gr.Button("Search", variant="primary")
    gallery = gr.Gallery(label="best matches", columns=6, height="auto", elem_id="search-gallery")
    result = gr.JSON(label="ranking")
    source = f"{len(service.gallery)} example images" + (" and an index" if service.index else "")
    gr.Markdown(f"Searching {source} plus your uploads.")

    def run(q, fs, k, ref, entity, bx, pts):
        entity = None if entity is None else int(entity)
        return search(service, q, fs, k, ref, entity, bx or "", pts or "")

    button.click(
        _page_errors(run), [query, files, top_k, *reference], [gallery, result], api_name="search"
    )


def build_app(service: DemoService, examples: Examples, *, max_queue: int = 16) -> gr.Blocks:
    """The page; call ``.launch(...)`` on it (or :func:`findvl.demo.serve`)."""
    with gr.Blocks(title="FIND demo") as app:
        gr.Markdown(INTRO)
        with gr.Tab("Generic segmentation"):
            _segment_tab(service, examples)
        with gr.Tab("Grounding"):
            _ground_tab(service, examples)
        with gr.Tab("Interactive"):
            _click_tab(service, examples)
        with gr.Tab("Interleaved"):
            _interleave_tab(service, examples)
        with gr.Tab("Retrieval"):
            _search_tab(service)
    app.queue(max_size=max_queue, default_concurrency_limit=2)
    return app
