"""Instance segmentation panel: Mask R-CNN on your photo, and RoI Pool vs RoI Align on its feature map.

Thin panel: the detector, the drawing and the timing live in ``core.instances``.
"""

from __future__ import annotations

import time

import gradio as gr
import torch
from torchvision.transforms.functional import to_pil_image

import weights
from core import engines, runtime
from core.backbones.vgg import VGGEncoder
from core.errors import UserError
from core.images import to_tensor
from core.instances import roi, roi_figure
from core.instances.predict import default_model, detect, draw
from core.runtime import settings
from spaces.common import (
    WALL_TIME,
    UploadImage,
    fetch_note,
    first_use_download,
    grouped_batch,
    load_model_announced,
    read_image,
    shipped_example,
    street_examples,
    user_errors,
)
from weights.availability import availability

TITLE = "Instances"
SUMMARY = (
    "Mask R-CNN: a box, a class and a mask for every car, pedestrian and bicyclist (trained by the project on "
    "CamVid; torchvision's COCO Mask R-CNN and Keypoint R-CNN where the host has or may download their files), and "
    "RoI Pool vs RoI Align, the change that made its masks line up, on a feature map of your photo."
)

#: The lecture quotes Mask R-CNN at "about 5 frames per second" (200 ms per image, on a 2017 GPU).
LECTURE_MS = 200
#: Uploads are shrunk to this longest side: the detectors work at 540 (CamVid's) or 800 (COCO's) px short side anyway.
DETECT_MAX_SIDE = 1280
TABLE_HEADERS = ["#", "class", "score", "box x1, y1, x2, y2 (px)", "mask area (px)", "keypoints seen"]


def predicts_keypoints(name: str) -> bool:
    return "keypoint" in weights.get_record(name).builder


def _knows_road_scenes(record) -> bool:
    return str(record.metrics.get("dataset", "")).startswith("CamVid")


def model_label(name: str) -> str:
    """The model list's label: the name and what the model knows, so a visitor picks the right one for a photo, and
    whether a first use downloads it."""
    record = weights.get_record(name)
    if _knows_road_scenes(record):
        label = f"{name} (road scenes: {', '.join(record.class_names)})"
    elif len(record.class_names) > 5:
        label = f"{name} ({sum(c != 'N/A' for c in record.class_names)} kinds of everyday object)"
    else:
        label = f"{name} ({', '.join(record.class_names)})"
    download = first_use_download(record)
    return f"{label}, {download}" if download else label


def keypoints_howto() -> str:
    """One line on how to get a model that predicts keypoints, for a host that has none."""
    names = [n for n in weights.list_models("instances") if predicts_keypoints(n)]
    where = "; ".join(f"`{n}` needs {fetch_note(weights.get_record(n).source)}" for n in names)
    return (f"**Keypoints** (17 body landmarks per person) are off: {where}. Put it in the weights folder "
            "(--weights-dir) or torch's hub cache, or start the app with downloads on (CVHUB_OFFLINE and "
            "HF_HUB_OFFLINE unset).")


def offers_keypoints(name: str | None) -> bool:
    """The Keypoints checkbox is offered with a model that predicts keypoints, and hidden with the others."""
    return bool(name) and name in weights.list_models("instances") and predicts_keypoints(name)


def keypoint_choice(name: str | None):
    return gr.update(visible=offers_keypoints(name))


def _detect_group(name: str, loaded: list, scores: list[float], boxes: list[bool], masks: list[bool],
                  keypoints: list[bool], progress=None):
    """Same model: one batched forward for all requests (``loaded``: their LoadedImage) -> one (picture, table,
    info) per request."""
    if name not in weights.list_models("instances"):
        raise UserError(f"There is no instance segmentation model called '{name}'; pick one from the list.")
    found = availability(name)
    if not found.runnable:  # an API client may name a model the list does not offer
        raise UserError(f"The model '{name}' cannot run on this host: {found.note}.")
    record = weights.get_record(name)
    model = load_model_announced(name, progress)
    tensors = [to_tensor(image.image) for image in loaded]
    device = next(model.parameters()).device
    start = time.perf_counter()
    with runtime.gpu_memory_guard():
        found = detect(model, record.class_names, tensors, score=min(scores))
    if device.type == "cuda":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - start) * 1000 / len(loaded)
    cap = model.roi_heads.detections_per_img
    results = []
    for image, tensor, instances, score, show_boxes, show_masks, show_points in zip(loaded, tensors, found, scores,
                                                                                    boxes, masks, keypoints):
        instances = [i for i in instances if i.score >= score]
        picture = draw((tensor * 255).round().to(torch.uint8), instances, masks=show_masks, boxes=show_boxes,
                       keypoints=show_points)
        rows = [[k, i.label, round(i.score, 3), ", ".join(f"{v:.0f}" for v in i.box),
                 "—" if i.mask is None else i.mask_area,
                 "—" if i.keypoints is None else f"{int((i.keypoints[:, 2] > 0).sum())} of {len(i.keypoints)}"]
                for k, i in enumerate(instances, start=1)]
        h, w = tensor.shape[-2:]
        if instances:
            counts = {}
            for i in instances:
                counts[i.label] = counts.get(i.label, 0) + 1
            what = ", ".join(f"{n} {label}" for label, n in counts.items())
            head = f"**{len(instances)} instance{'s' if len(instances) > 1 else ''}** with score ≥ {score:.2f}: {what}."
        elif len(record.class_names) <= 5:
            road = " in road scenes (CamVid), so a photo that is not a street gives nothing" \
                if _knows_road_scenes(record) else ""
            head = (f"**No {', '.join(record.class_names)} found** with score ≥ {score:.2f}; this model knows only "
                    f"these classes{road}. Try another photo, a lower score threshold or a model that knows more.")
        else:
            head = f"**No objects found** with score ≥ {score:.2f}. Try a lower score threshold."
        if len(instances) >= cap:
            head += f" The model keeps at most {cap} detections per image: only the {cap} best are shown."
        timing = (f"{ms:.0f} ms per image for this {w}x{h} photo on {device.type} ({engines.described(name)})"
                  f"{f', batch of {len(loaded)}' if len(loaded) > 1 else ''} ({WALL_TIME}); the lecture quotes "
                  f"Mask R-CNN at about 5 frames per second ({LECTURE_MS} ms per image on a 2017 GPU). "
                  f"Model: `{name}`, {_quality(record)}.")
        results.append((to_pil_image(picture), rows, "\n\n".join(t for t in (head, timing, image.note) if t)))
    return results


def _quality(record) -> str:
    """The record's headline accuracy, saying on which data and who measured it."""
    metrics = record.metrics
    car = metrics.get("per_class", {}).get("car", {}).get("mask_AP50")
    if car is not None:
        return f"mask AP50 {car:.2f} on CamVid val cars (measured by the project)"
    published = [f"{what} AP {metrics[key]:.1f}" for key, what in (("box_map", "box"), ("mask_map", "mask"),
                                                                   ("kp_map", "keypoint")) if key in metrics]
    return ", ".join(published) + " on COCO val2017 (published by torchvision)" if published else "accuracy n/a"


@user_errors
def detect_batch(images: list, names: list, scores: list, boxes: list, masks: list, keypoints: list,
                 progress=gr.Progress()):  # Gradio injects its progress tracker through this default
    """Batched handler: requests for one model share a forward pass; a bad upload fails only its own request."""
    return grouped_batch(
        images, lambda k, _: names[k],
        lambda name, members, loaded: _detect_group(
            name, loaded, [float(scores[k]) for k in members], [bool(boxes[k]) for k in members],
            [bool(masks[k]) for k in members], [bool(keypoints[k]) for k in members], progress),
        what="photo", max_side=DETECT_MAX_SIDE, failed=lambda error: (None, [], f"⚠ {error}"))


def example_images() -> list[str]:
    """People and everyday objects for the COCO models (public domain or CC0: spaces/examples/README.md); the street
    photos (:func:`spaces.common.street_examples`) suit every model."""
    return [shipped_example(f) for f in ("person-astronaut-eileen-collins.jpg", "person-grace-hopper.jpg",
                                         "cup-coffee.jpg", "cat-chelsea.jpg")]

#: choice -> (VGG-19 layer or None for the image's own colours, stride in pixels)
FEATURE_MAPS = {
    "VGG-19 relu5_1 (stride 16, 512 channels)": ("relu5_1", 16),
    "VGG-19 relu4_1 (stride 8, 512 channels)": ("relu4_1", 8),
    "The photo's colours averaged over 16x16 cells (no model needed)": (None, 16),
}
MAX_SIDE = 1024  # the explainer needs a feature map, not a big photo


def feature_map(rgb01: torch.Tensor, layer: str | None, stride: int, progress=None) -> torch.Tensor:
    """``(1, 3, H, W)`` in [0, 1] -> ``(1, C, H / stride, W / stride)`` on the CPU, fp32. A first use fetches the
    VGG-19, announced, with its bytes on ``progress`` (Gradio's tracker, optional)."""
    if layer is None:
        return torch.nn.functional.avg_pool2d(rgb01, stride, ceil_mode=True)
    vgg = load_model_announced("vgg19-caffe", progress)
    record = weights.get_record("vgg19-caffe")
    param = next(vgg.parameters())
    with torch.inference_mode(), runtime.gpu_memory_guard():
        x = record.normalize(rgb01.to(param.device)).to(param.dtype)
        return VGGEncoder((layer,), layers=vgg)(x)[0].float().cpu()


def clip_box(box, size: tuple[int, int]) -> tuple[list[float], bool]:
    """``(x1, y1, x2, y2)`` in any corner order, clipped to the image; whether clipping changed it."""
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise UserError("The box needs four numbers: x1, y1, x2, y2 in pixels.") from None
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    width, height = size
    clipped = [min(max(x1, 0), width), min(max(y1, 0), height), min(max(x2, 0), width), min(max(y2, 0), height)]
    if clipped[2] - clipped[0] < 2 or clipped[3] - clipped[1] < 2:
        raise UserError(f"The box lies outside the {width}x{height} image (or is under 2 px); draw it on the photo.")
    return clipped, clipped != [x1, y1, x2, y2]


@user_errors
def compare(upload, x1, y1, x2, y2, feature_choice, bins, sampling_ratio,
            progress=gr.Progress()):  # Gradio injects its progress tracker through this default
    if upload is None:
        raise UserError("Upload a photo first.")
    if feature_choice not in FEATURE_MAPS:
        raise UserError("Pick one of the listed feature maps.")
    loaded = read_image(upload, what="photo", max_side=MAX_SIDE, inline_notes=True)
    image = loaded.image
    box, clipped = clip_box((x1, y1, x2, y2), image.size)
    notes = [*loaded.notes, *(["The box reached outside the photo; it was clipped to the photo's edges."]
                              if clipped else [])]
    layer, stride = FEATURE_MAPS[feature_choice]
    out, ratio = int(bins), int(sampling_ratio)
    features = feature_map(to_tensor(image).unsqueeze(0), layer, stride, progress)
    pooled, aligned = roi.pool_both(features, torch.tensor([[0.0, *box]]), spatial_scale=1 / stride, out=out,
                                    sampling_ratio=ratio)
    size = (features.shape[-2], features.shape[-1])
    pool_geometry = roi.pool_bins(box, spatial_scale=1 / stride, out=out, feature_size=size)
    align_geometry = roi.align_samples(box, spatial_scale=1 / stride, out=out, sampling_ratio=ratio)
    pictures = roi_figure.tiles(pooled[0], aligned[0])
    return (
        roi_figure.draw_roi_pool(image, box, pool_geometry, stride=stride),
        roi_figure.draw_roi_align(image, box, align_geometry, stride=stride),
        *pictures,
        "\n\n".join([summary(box, pool_geometry, align_geometry, pooled[0], aligned[0], stride), *notes]),
    )


def summary(box, pool: roi.PoolBins, align: roi.AlignSamples, pooled, aligned, stride: int) -> str:
    """What the pictures show, in numbers: how far RoI Pool moved the box, how unequal its bins are."""
    bx1, by1, bx2, by2 = pool.box_cells
    snapped = (bx1 * stride, by1 * stride, (bx2 + 1) * stride, (by2 + 1) * stride)
    shift = max(abs(a - b) for a, b in zip(snapped, box))
    areas = [(y1 - y0) * (x1 - x0) for row in pool.cells for (y0, y1, x0, x1) in row]
    n = align.points.shape[2]
    if pooled.shape[0] == 3:
        gap = (pooled - aligned).abs().mean().item()
    else:
        gap = (roi_figure.unit_range(pooled.mean(0)) - roi_figure.unit_range(aligned.mean(0))).abs().mean().item()
    return (
        f"**Your box** ({box[0]:.0f}, {box[1]:.0f}) – ({box[2]:.0f}, {box[3]:.0f}) px "
        f"on a grid of {stride} px cells.\n\n"
        f"**RoI Pool** (red) rounds it to whole cells, ({snapped[0]}, {snapped[1]}) – ({snapped[2]}, {snapped[3]}) px: "
        f"an edge moves by up to {shift:.0f} px. Its bins are widened to whole cells too, so they overlap and differ "
        f"in size ({min(areas)} to {max(areas)} cells each); each output is the max over its cells.\n\n"
        f"**RoI Align** (cyan) keeps the box exact, splits it into equal bins and averages {n} bilinear samples "
        f"(yellow) per bin, so the pooled grid follows the object to a fraction of a pixel.\n\n"
        f"Mean |difference| of the two {pooled.shape[-1]}x{pooled.shape[-1]} grids, each on a [0, 1] scale: {gap:.2f}."
    )


def default_box(upload):
    """A box in the middle third of a new upload, so the first press already shows something."""
    if upload is None:
        return [gr.update()] * 4
    try:
        # Its notes (downscaled, ...) are said by the Compare button's summary, not twice.
        width, height = read_image(upload, what="photo", max_side=MAX_SIDE, inline_notes=True).image.size
    except UserError:
        return [gr.update()] * 4  # the Compare button explains what is wrong with the file
    return [round(width * 0.33), round(height * 0.3), round(width * 0.67), round(height * 0.72)]


def set_corner(corner: int, evt: gr.SelectData):
    """Clicks on the photo set the box's corners in turn: first click one corner, then the other."""
    x, y = evt.index
    if corner == 0:
        return gr.update(value=x), gr.update(value=y), gr.update(), gr.update(), 1
    return gr.update(), gr.update(), gr.update(value=x), gr.update(value=y), 0


def build() -> None:
    gr.Markdown(
        "**Mask R-CNN** answers not just which pixels are \"car\" but *which* car: for every object a box, a class, "
        "a score and its own mask. A region proposal network suggests boxes on the feature map, RoI Align cuts a "
        "fixed grid of features out for each, and two heads predict the class and box, and a 28x28 mask. "
        "The project's own model was trained on CamVid's road scenes (cars, pedestrians, bicyclists): upload a "
        "street photo. torchvision's COCO Mask R-CNN (80 classes) and Keypoint R-CNN (17 body landmarks per "
        "person, the lecture's \"landmarks\") are in the list too where this host has their files or may "
        "download them: such a model says how much it downloads on first use. "
        "The street examples suit every model; the people, cup and cat come with the COCO models."
    )
    # Only models that run here are offered: their weights are on this host, or fetched on first use from a server
    # that answers (asked once), so a closed network gets the project's model, not an Error on its first click.
    found = [availability(n) for n in weights.list_models("instances")]
    models = [a.name for a in found if a.runnable]
    missing = [a for a in found if not a.runnable]
    if missing:
        gr.Markdown("Not offered on this host: " + "; ".join(f"`{a.name}`: {a.note}" for a in missing) + ".",
                    elem_id="det-missing-note")
    default = default_model(downloadable=True)
    default = default if default in models else (models[0] if models else None)
    with gr.Row():
        with gr.Column():
            # A fixed height: a tall example photo would push the result below the fold.
            det_photo = UploadImage(label="Street scene (or any photo)", height=320, elem_id="det-photo")
            # Right under the photo: the result at the top of the next column is then in view when it is clicked.
            det_button = gr.Button("Find instances", variant="primary", elem_id="det-button")
            det_model = gr.Dropdown([(model_label(n), n) for n in models], value=default, label="Model",
                                    elem_id="det-model")
            det_score = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Score threshold")
            with gr.Row():
                det_boxes = gr.Checkbox(value=True, label="Boxes")
                det_masks = gr.Checkbox(value=True, label="Masks")
                # Offered only where it can do something: with a model that predicts keypoints.
                det_points = gr.Checkbox(value=True, label="Keypoints", visible=offers_keypoints(default),
                                         info="17 body landmarks per person (Keypoint R-CNN)", elem_id="det-keypoints")
            if not any(predicts_keypoints(n) for n in models):
                gr.Markdown(keypoints_howto(), elem_id="det-keypoints-note")
        with gr.Column():
            det_view = gr.Image(label="Instances: each with its own colour", type="pil", format="png",
                                elem_id="det-view")
            det_info = gr.Markdown(elem_id="det-info")
            det_table = gr.Dataframe(headers=TABLE_HEADERS, label="Instances", interactive=False)
    # Below both columns: on a phone, where the columns stack, the result comes right after the button. Streets
    # first: every model here knows cars and people on a street.
    paths, captions = street_examples()
    gr.Examples(paths, inputs=det_photo, label="Streets of three other cities", elem_id="det-street-examples")
    gr.Markdown("Photos: " + " · ".join(captions) + ".", elem_id="det-example-credits")
    if any(not _knows_road_scenes(weights.get_record(n)) for n in models):
        gr.Examples(example_images(), inputs=det_photo, label="People and things (COCO models)")
    else:  # the road-scene model calls the astronaut's suit a car: the people-and-things examples would mislead
        gr.Markdown("The people, cup and cat examples come with the COCO models, which this host cannot fetch.",
                    elem_id="det-no-examples")
    batch = dict(batch=True, max_batch_size=settings().max_batch_size)
    det_inputs = [det_photo, det_model, det_score, det_boxes, det_masks, det_points]
    det_outputs = [det_view, det_table, det_info]
    det_model.change(keypoint_choice, det_model, det_points, queue=False, show_progress="hidden",
                     api_visibility="private")
    det_button.click(detect_batch, det_inputs, det_outputs, api_name="instances", **batch)
    for control in (det_boxes, det_masks, det_points):
        control.input(detect_batch, det_inputs, det_outputs, api_visibility="private", **batch)
    det_score.release(detect_batch, det_inputs, det_outputs, api_visibility="private", **batch)

    gr.Markdown("### RoI Pool vs RoI Align")
    gr.Markdown(
        "Detectors like Fast/Mask R-CNN cut a fixed 7x7 grid of features out of the map for every box. "
        "**RoI Pool** snaps the box and its bins to whole feature cells; **RoI Align** samples bilinearly at exact "
        "points. On a stride-16 map a snap can move an edge by 8 px: harmless for a class label, visible in a mask. "
        "Upload a photo, then click two corners of a box on it (or type them)."
    )
    corner = gr.State(0)
    with gr.Row():
        with gr.Column():
            photo = UploadImage(label="Photo (click two corners of a box)", elem_id="roi-photo")
            with gr.Row():
                x1, y1, x2, y2 = (gr.Number(label=n, precision=1, minimum=-10_000, maximum=10_000)
                                  for n in ("x1", "y1", "x2", "y2"))
            feature_choice = gr.Radio(list(FEATURE_MAPS), value=next(iter(FEATURE_MAPS)), label="Feature map")
            with gr.Row():
                bins = gr.Slider(2, 14, value=7, step=1, label="Output grid (n x n bins)")
                ratio = gr.Slider(1, 4, value=2, step=1, label="RoI Align samples per bin side")
            button = gr.Button("Compare RoI Pool and RoI Align", variant="primary", elem_id="roi-button")
        with gr.Column():
            with gr.Row():
                pool_view = gr.Image(label="RoI Pool: rounded box and bins", elem_id="roi-pool-view")
                align_view = gr.Image(label="RoI Align: exact bins and sample points", elem_id="roi-align-view")
            with gr.Row():
                pool_tile = gr.Image(label="RoI Pool output", height=160)
                align_tile = gr.Image(label="RoI Align output", height=160)
                diff_tile = gr.Image(label="|difference|", height=160)
            text = gr.Markdown(elem_id="roi-summary")
    photo.upload(default_box, photo, [x1, y1, x2, y2])
    photo.select(set_corner, corner, [x1, y1, x2, y2, corner])
    button.click(compare, [photo, x1, y1, x2, y2, feature_choice, bins, ratio],
                 [pool_view, align_view, pool_tile, align_tile, diff_tile, text], api_name="roi_pool_vs_align")
