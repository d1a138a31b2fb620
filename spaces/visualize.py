"""What a network learns: layer-1 filters, the nine patches that excite a unit, activation maps,
and an image optimised to excite a unit, for any registered conv net and any of its layers."""

from __future__ import annotations

import time

import gradio as gr

from core.errors import UserError
from core.images import to_pil, to_tensor
from core.visualize import activations as act
from core.visualize.filters import filter_grid
from core.visualize.layers import default_layer, first_conv, layer_catalog, pytorch_view, visualizable_models
from core.visualize.maximize import maximize
from core.visualize.top_patches import (
    SAMPLE_SET,
    build_index,
    find_index,
    load_index,
    page_sheet,
    sheet_unit,
)
from spaces.common import UploadImage, load_model_announced, read_image, user_errors
from weights import get_record
from weights.availability import availability

TITLE = "What a network learns"
SUMMARY = (
    "Layer-1 filters, the nine image patches that excite each unit of any layer (receptive fields computed "
    "from the architecture), an image's activation maps, and activation maximisation."
)

UNITS_PER_PAGE = 9  # the lecture's figure: 9 units x 9 patches
PATCH_SIDE = 40  # a page of 9 x 9 patches is then ~400 x 460 px: whole on a laptop screen and on a phone
MAPS_SHOWN = 16
ACTIVATION_MAX_SIDE = 512  # activation maps need no more; keeps deep layers fast on CPU
DEFAULT_MODEL = "vgg19-caffe"
#: Sample pictures are read at most this large when the panel builds an index itself: a deep layer's
#: index then takes well under a minute on CPU, and its patches still show whole objects.
SAMPLE_MAX_SIDE = 320


def _catalog(model: str) -> dict:
    if not model:
        raise UserError("Pick a model first.")
    catalog = layer_catalog(model)
    found = availability(model)
    if not found.runnable:  # an API client may name a model the list does not offer
        raise UserError(f"The model '{model}' cannot run on this host: {found.note}.")
    return catalog


def _layer(model: str, layer: str) -> tuple[str, object]:
    catalog = _catalog(model)
    if layer not in catalog:
        raise UserError(f"The model '{model}' has no layer '{layer}'; pick one from the list.")
    return catalog[layer]


def _network(model: str):
    """The model's network with every layer reachable by name (an engine that serves it faster is looked past)."""
    return pytorch_view(load_model_announced(model))


def _unit(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError("The unit must be a whole number.") from None


@user_errors
def choose_model(model: str):
    """Layers of the new model; the first instructive one (:func:`default_layer`) selected."""
    catalog = _catalog(model)
    return gr.update(choices=list(catalog), value=default_layer(catalog)), 0


@user_errors
def describe_layer(model: str, layer: str) -> str:
    path, rf = _layer(model, layer)
    return (f"**{layer}** (module `{path}`): each unit sees a {rf.size:g}x{rf.size:g}-pixel patch of the input; "
            f"neighbouring units are {rf.jump:g} pixels apart.")


@user_errors
def show_filters(model: str):
    """The first convolution's kernels, one colour square per filter."""
    net = _network(model)
    conv = first_conv(net)
    grid = filter_grid(conv.weight.float().cpu(), color_order=get_record(model).color_order,
                       scale=max(1, 48 // conv.kernel_size[0]))
    return to_pil(grid), (f"{conv.out_channels} filters of {conv.kernel_size[0]}x{conv.kernel_size[1]} pixels, "
                          "each stretched to its own range.")


def _index_for(model: str, layer: str):
    """The stored index of this layer; built over scikit-image's sample pictures the first time."""
    path = find_index(model, layer)
    if path is None:
        gr.Info(f"No patch index for {model} / {layer} yet: "
                "scanning scikit-image's sample pictures once (a minute at most).")
        path = build_index(model, [layer], SAMPLE_SET, max_side=SAMPLE_MAX_SIDE,
                           model=_network(model))[layer]
    return load_index(path)


@user_errors
def top_patches(model: str, layer: str, unit):
    """The page of units that holds ``unit`` as one picture: for each, its nine strongest patches as a 3x3 grid,
    captioned. Pages start at multiples of 9, so a click on the picture can tell which unit it hit."""
    _layer(model, layer)
    index = _index_for(model, layer)
    units = _page_units(index, layer, unit)
    index.prefetch(units)
    where = "scikit-image's sample pictures" if index.source == SAMPLE_SET else f"the images in {index.source}"
    note = (f"Units {units[0]}–{units[-1]} of {index.units}: the {index.value.shape[1]} patches of {where} "
            f"({len(index.names)} images) that excite each unit most, strongest top-left. Each patch is the unit's "
            f"{index.rf.size:g}-pixel receptive field; black is the layers' zero padding. Click a unit to pick it.")
    return page_sheet(index, units, size=PATCH_SIDE), note


def _page_of(unit) -> int:
    return (_unit(unit) // UNITS_PER_PAGE) * UNITS_PER_PAGE


def _page_units(index, layer: str, unit) -> range:
    """The units of the page that holds ``unit``."""
    if not 0 <= _unit(unit) < index.units:
        raise UserError(f"Layer {layer} has units 0 to {index.units - 1}; unit {_unit(unit)} does not exist.")
    first = _page_of(unit)
    return range(first, min(first + UNITS_PER_PAGE, index.units))


@user_errors
def turn_page(first_unit, step: int) -> int:
    return max(0, _page_of(first_unit) + step * UNITS_PER_PAGE)


def _activation_maps(upload, model: str, layer: str, unit) -> tuple[list, object, str]:
    path, _ = _layer(model, layer)
    unit = _unit(unit)
    image = to_tensor(read_image(upload, what="image", max_side=ACTIVATION_MAX_SIDE).image)
    net = _network(model)
    param = next(iter(net.parameters()))
    x = get_record(model).normalize(image[None].to(param.device)).to(param.dtype)
    maps = act.activations(net, path, x)[0].float().cpu()
    if not 0 <= unit < maps.shape[0]:
        raise UserError(f"Layer {layer} has units 0 to {maps.shape[0] - 1}; unit {unit} does not exist.")
    strongest = act.strongest_channels(maps, MAPS_SHOWN)
    gallery = [(to_pil(act.colormap(act.normalize_maps(maps[[c]]))[0]), f"unit {c}") for c in strongest]
    caption = f"**Unit {unit} of {layer}** over the image: bright where it responds."
    return gallery, to_pil(act.overlay(image, maps[unit])), caption


@user_errors
def activation_maps(upload, model: str, layer: str, unit):
    """The strongest channels' maps (click one for its patches), the chosen unit's overlay, and a caption naming
    that unit and its layer.

    Not a batched handler: uploads differ in size, so requests could not share a tensor anyway, and alone
    each request fails with its own sentence, never with a neighbour's bad upload.
    """
    if upload is None:
        raise UserError("Upload an image to see its activation maps.")
    return _activation_maps(upload, model, layer, unit)


def unit_from_caption(evt: gr.SelectData) -> int:
    """A click on a gallery item ("unit 17") selects that unit: the link from a map to its patches."""
    caption = evt.value.get("caption", "") if isinstance(evt.value, dict) else str(evt.value)
    return int(caption.rsplit(" ", 1)[-1])


@user_errors
def unit_from_sheet(model: str, layer: str, unit, evt: gr.SelectData):
    """A click on the page of patches (the page that holds ``unit``) selects the unit under it."""
    index = _index_for(model, layer)
    units = _page_units(index, layer, unit)
    x, y = evt.index if isinstance(evt.index, (list, tuple)) else (-1, -1)
    hit = sheet_unit(index, units, x, y, size=PATCH_SIDE)
    return gr.skip() if hit is None else hit


@user_errors
def dream(model: str, layer: str, unit, steps, progress=gr.Progress()):
    """Activation maximisation on the configured device (GPU when there is one)."""
    path, _ = _layer(model, layer)
    unit = _unit(unit)
    net = _network(model)
    device = next(iter(net.parameters())).device
    steps = int(steps)

    def report(done: int, total: int) -> None:
        progress((done, total), desc=f"optimising an image for unit {unit} of {layer}", unit="steps")

    started = time.perf_counter()
    image, history = maximize(net, path, unit, get_record(model).normalize, size=128 if device.type == "cpu" else 224,
                              steps=steps, device=device, on_step=report)
    where = "a shared CPU" if device.type == "cpu" else str(device)
    return to_pil(image), (f"Unit {unit} of {layer}: mean activation {history[0]:.3g} at the start, "
                           f"{history[-1]:.3g} after {len(history)} steps "
                           f"({time.perf_counter() - started:.0f} s wall time on {where}).")


def build() -> None:
    # Only models that run here are offered; the others are listed with how to enable them.
    found = [availability(name) for name in visualizable_models()]
    models = [a.name for a in found if a.runnable]
    model0 = DEFAULT_MODEL if DEFAULT_MODEL in models else (models[0] if models else None)
    catalog0 = layer_catalog(model0) if model0 else {}
    layer0 = default_layer(catalog0) if catalog0 else None
    gr.Markdown(
        "Pick a model and a layer and see what its units respond to. Patches come from a stored index "
        "(`python -m core.visualize index --model NAME --images DIR`); without one, scikit-image's sample "
        "pictures are scanned once."
    )
    with gr.Row():
        model = gr.Dropdown(models, value=model0, label="Model", elem_id="vis-model")
        layer = gr.Dropdown(list(catalog0), value=layer0, label="Layer", elem_id="vis-layer")
        unit = gr.Number(0, precision=0, minimum=0, label="Unit", elem_id="vis-unit",
                         info="its page of patches, its map over your image, the image that excites it")
    layer_note = gr.Markdown(describe_layer(model0, layer0) if layer0 else "")
    missing = [a for a in found if not a.runnable]
    if missing:
        with gr.Accordion(f"{len(missing)} more model(s) need weights this host lacks", open=False,
                          elem_id="vis-missing"):
            gr.Markdown("\n".join(f"- **{a.name}**: {a.note}." for a in missing))

    with gr.Accordion("Layer-1 filters", open=False):
        filters_btn = gr.Button("Show the first layer's filters", elem_id="vis-filters-button")
        filters_img = gr.Image(label="Filters (normalised per filter)", type="pil", interactive=False)
        filters_note = gr.Markdown()

    with gr.Accordion("Top-9 patches of 9 units", open=True):
        with gr.Row():
            prev_btn = gr.Button("◀ previous 9 units")
            patches_btn = gr.Button("Show the patches", variant="primary", elem_id="vis-patches-button")
            next_btn = gr.Button("next 9 units ▶")
        patches = gr.Image(label="Each unit's nine strongest patches (click a unit to pick it)", type="pil",
                           interactive=False, elem_id="vis-patches")
        patches_note = gr.Markdown()

    with gr.Accordion("Activation maps of your image", open=True):
        with gr.Row():
            upload = UploadImage(label="Your image", elem_id="vis-upload")
            with gr.Column():
                overlay_img = gr.Image(label="The chosen unit over the image", type="pil", interactive=False)
                overlay_note = gr.Markdown(elem_id="vis-overlay-note")
        maps_btn = gr.Button("Show activation maps", variant="primary", elem_id="vis-maps-button")
        maps = gr.Gallery(label=f"The {MAPS_SHOWN} most active units (click one to see its patches)", columns=8,
                          height="auto", elem_id="vis-maps")

    with gr.Accordion("Beyond the lecture: an image that excites the unit", open=False):
        steps = gr.Slider(16, 512, value=96, step=16, label="Optimisation steps")
        dream_btn = gr.Button("Optimise an image", elem_id="vis-dream-button")
        dream_img = gr.Image(label="Activation maximisation (jitter, scaling, decorrelated colour)", type="pil",
                             interactive=False)
        dream_note = gr.Markdown()

    model.change(choose_model, model, [layer, unit], api_visibility="private")
    layer.change(describe_layer, [model, layer], layer_note, api_name="describe_layer")
    filters_btn.click(show_filters, model, [filters_img, filters_note], api_name="filters")
    # Chained copies of the patches event stay off the API: /top_patches is the one entry point.
    patch_event = dict(fn=top_patches, inputs=[model, layer, unit], outputs=[patches, patches_note],
                       api_visibility="private")
    patches_btn.click(**{**patch_event, "api_visibility": "public"}, api_name="top_patches")
    prev_btn.click(lambda u: turn_page(u, -1), unit, unit, api_visibility="private").then(**patch_event)
    next_btn.click(lambda u: turn_page(u, 1), unit, unit, api_visibility="private").then(**patch_event)
    maps_btn.click(activation_maps, [upload, model, layer, unit], [maps, overlay_img, overlay_note],
                   api_name="activations")
    # The link from a unit to its patches: clicking a map shows that unit's page of patches.
    maps.select(unit_from_caption, None, unit, api_visibility="private").then(**patch_event)
    patches.select(unit_from_sheet, [model, layer, unit], unit, api_visibility="private")
    dream_btn.click(dream, [model, layer, unit, steps], [dream_img, dream_note], api_name="maximize",
                    concurrency_limit=1)
