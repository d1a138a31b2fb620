"""What a network learns: layer-1 filters, the nine patches that excite a unit, activation maps,
and an image optimised to excite a unit, for any registered conv net and any of its layers."""

from __future__ import annotations

import gradio as gr

from core.errors import UserError
from core.images import to_pil, to_tensor
from core.visualize import activations as act
from core.visualize.filters import filter_grid
from core.visualize.layers import first_conv, layer_catalog, visualizable_models
from core.visualize.maximize import maximize
from core.visualize.top_patches import SAMPLE_SET, build_index, find_index, load_index
from spaces.common import UploadImage, load_model_announced, read_image, user_errors
from weights import get_record

TITLE = "What a network learns"
SUMMARY = (
    "Layer-1 filters, the nine image patches that excite each unit of any layer (receptive fields computed "
    "from the architecture), an image's activation maps, and activation maximisation."
)

UNITS_PER_PAGE = 9  # the lecture's figure: 9 units x 9 patches
PATCH_SIDE = 48
MAPS_SHOWN = 16
ACTIVATION_MAX_SIDE = 512  # activation maps need no more; keeps deep layers fast on CPU
DEFAULT_MODEL = "vgg19-caffe"
#: Sample pictures are read at most this large when the panel builds an index itself: a deep layer's
#: index then takes well under a minute on CPU, and its patches still show whole objects.
SAMPLE_MAX_SIDE = 320


def _catalog(model: str) -> dict:
    if not model:
        raise UserError("Pick a model first.")
    return layer_catalog(model)


def _layer(model: str, layer: str) -> tuple[str, object]:
    catalog = _catalog(model)
    if layer not in catalog:
        raise UserError(f"The model '{model}' has no layer '{layer}'; pick one from the list.")
    return catalog[layer]


def _unit(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError("The unit must be a whole number.") from None


@user_errors
def choose_model(model: str):
    """Layers of the new model; the first one selected."""
    names = list(_catalog(model))
    return gr.update(choices=names, value=names[0]), 0


@user_errors
def describe_layer(model: str, layer: str) -> str:
    path, rf = _layer(model, layer)
    return (f"**{layer}** (module `{path}`): each unit sees a {rf.size:g}x{rf.size:g}-pixel patch of the input; "
            f"neighbouring units are {rf.jump:g} pixels apart.")


@user_errors
def show_filters(model: str):
    """The first convolution's kernels, one colour square per filter."""
    net = load_model_announced(model)
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
                           model=load_model_announced(model))[layer]
    return load_index(path)


@user_errors
def top_patches(model: str, layer: str, first_unit):
    """A page of units: for each, its nine strongest patches as a 3x3 grid."""
    _layer(model, layer)
    index = _index_for(model, layer)
    first = _unit(first_unit)
    if not 0 <= first < index.units:
        raise UserError(f"Layer {layer} has units 0 to {index.units - 1}; unit {first} does not exist.")
    units = range(first, min(first + UNITS_PER_PAGE, index.units))
    index.prefetch(units)
    gallery = [(index.unit_grid(u, size=PATCH_SIDE), f"unit {u}") for u in units]
    where = "scikit-image's sample pictures" if index.source == SAMPLE_SET else f"the images in {index.source}"
    note = (f"Units {units[0]}–{units[-1]} of {index.units}: the {index.value.shape[1]} patches of {where} "
            f"({len(index.names)} images) that excite each unit most, strongest top-left. Each patch is the unit's "
            f"{index.rf.size:g}-pixel receptive field; black is the layers' zero padding.")
    return gallery, note


def _page_of(unit) -> int:
    return (_unit(unit) // UNITS_PER_PAGE) * UNITS_PER_PAGE


@user_errors
def turn_page(first_unit, step: int) -> int:
    return max(0, _page_of(first_unit) + step * UNITS_PER_PAGE)


def _activation_maps(upload, model: str, layer: str, unit) -> tuple[list, object]:
    path, _ = _layer(model, layer)
    unit = _unit(unit)
    image = to_tensor(read_image(upload, what="image", max_side=ACTIVATION_MAX_SIDE).image)
    net = load_model_announced(model)
    param = next(iter(net.parameters()))
    x = get_record(model).normalize(image[None].to(param.device)).to(param.dtype)
    maps = act.activations(net, path, x)[0].float().cpu()
    if not 0 <= unit < maps.shape[0]:
        raise UserError(f"Layer {layer} has units 0 to {maps.shape[0] - 1}; unit {unit} does not exist.")
    strongest = act.strongest_channels(maps, MAPS_SHOWN)
    gallery = [(to_pil(act.colormap(act.normalize_maps(maps[[c]]))[0]), f"unit {c}") for c in strongest]
    return gallery, to_pil(act.overlay(image, maps[unit]))


@user_errors
def activation_maps(upload, model: str, layer: str, unit):
    """The strongest channels' maps (click one for its patches) and the chosen unit's overlay.

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
def dream(model: str, layer: str, unit, steps, progress=gr.Progress()):
    """Activation maximisation on the configured device (GPU when there is one)."""
    path, _ = _layer(model, layer)
    unit = _unit(unit)
    net = load_model_announced(model)
    device = next(iter(net.parameters())).device
    progress(0, desc="optimising the image")
    image, history = maximize(net, path, unit, get_record(model).normalize, size=128 if device.type == "cpu" else 224,
                              steps=int(steps), device=device)
    return to_pil(image), (f"Mean activation of unit {unit}: {history[0]:.3g} at the start, "
                           f"{history[-1]:.3g} after {len(history)} steps.")


def build() -> None:
    models = visualizable_models()
    model0 = DEFAULT_MODEL if DEFAULT_MODEL in models else (models[0] if models else None)
    layers0 = list(layer_catalog(model0)) if model0 else []
    gr.Markdown(
        "Pick a model and a layer and see what its units respond to. Patches come from a stored index "
        "(`python -m core.visualize index --model NAME --images DIR`); without one, scikit-image's sample "
        "pictures are scanned once."
    )
    with gr.Row():
        model = gr.Dropdown(models, value=model0, label="Model", elem_id="vis-model")
        layer = gr.Dropdown(layers0, value=layers0[0] if layers0 else None, label="Layer", elem_id="vis-layer")
        unit = gr.Number(0, precision=0, minimum=0, label="Unit (first of the page)", elem_id="vis-unit")
    layer_note = gr.Markdown(describe_layer(model0, layers0[0]) if layers0 else "")

    with gr.Accordion("Layer-1 filters", open=False):
        filters_btn = gr.Button("Show the first layer's filters", elem_id="vis-filters-button")
        filters_img = gr.Image(label="Filters (normalised per filter)", type="pil", interactive=False)
        filters_note = gr.Markdown()

    with gr.Accordion("Top-9 patches of 9 units", open=True):
        with gr.Row():
            prev_btn = gr.Button("◀ previous 9 units")
            patches_btn = gr.Button("Show the patches", variant="primary", elem_id="vis-patches-button")
            next_btn = gr.Button("next 9 units ▶")
        patches = gr.Gallery(label="Each tile: one unit's nine strongest patches", columns=3, height="auto",
                             elem_id="vis-patches")
        patches_note = gr.Markdown()

    with gr.Accordion("Activation maps of your image", open=True):
        with gr.Row():
            upload = UploadImage(label="Your image", elem_id="vis-upload")
            overlay_img = gr.Image(label="The chosen unit over the image", type="pil", interactive=False)
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
    maps_btn.click(activation_maps, [upload, model, layer, unit], [maps, overlay_img], api_name="activations")
    # The link from a unit to its patches: clicking a map shows that unit's page of patches.
    maps.select(unit_from_caption, None, unit, api_visibility="private").then(**patch_event)
    patches.select(unit_from_caption, None, unit, api_visibility="private")
    dream_btn.click(dream, [model, layer, unit, steps], [dream_img, dream_note], api_name="maximize",
                    concurrency_limit=1)
