"""The triplet-loss playground (a sub-tab of the Faces panel, sharing its backend and gallery).

A, P, N from three photos -> d(A, P), d(A, N) and Loss = max(d(A, P) - d(A, N) + mu, 0);
the hardest positive and negative of an anchor in the gallery; a projection trained with
the triplet loss and online hard mining, beside a logistic same/different head.
"""

from __future__ import annotations

import io

import gradio as gr
import numpy as np
import pandas as pd
import torch
from PIL import Image

from core.errors import UserError
from core.faces.distances import squared_l2
from core.faces.pipeline import load_pipeline, pick_face
from core.faces.triplet import hardest_for_anchor, train_projection, train_same_different, triplet_loss
from core.faces.verification import best_threshold
from spaces.common import UploadImage, markdown_text, read_image, user_errors
from spaces.face_galleries import gallery_for

WHY_MARGIN = (
    "**Why μ > 0?** With μ = 0 the rule d(A, P) ≤ d(A, N) is met by the all-zeros encoding f(x) = 0: "
    "every distance is 0 and the loss is 0 without learning anything. The margin demands that the negative "
    "be at least μ farther than the positive, which the trivial encoding cannot satisfy.")


def _embed_one(pipeline, upload, what):
    image = read_image(upload, what=what, max_side=1600).image
    face_set = pipeline.analyze(image)
    i = pick_face(face_set, 0, what=what)
    return face_set.embeddings[i], face_set.chip_image(i)


@user_errors
def triplet_from_photos(anchor, positive, negative, margin, backend):
    """Three photos -> their crops and the triplet loss explained."""
    pipeline = load_pipeline(backend)
    (a, ca), (p, cp), (n, cn) = (_embed_one(pipeline, x, w) for x, w in
                                 ((anchor, "anchor photo"), (positive, "positive photo"), (negative, "negative photo")))
    d_ap, d_an = float(squared_l2(a, p)), float(squared_l2(a, n))
    loss = float(triplet_loss(a[None], p[None], n[None], float(margin))[0])
    text = (f"d(A, P) = **{d_ap:.3f}**, d(A, N) = **{d_an:.3f}**  \n"
            f"Loss = max(d(A,P) − d(A,N) + μ, 0) = max({d_ap:.3f} − {d_an:.3f} + {float(margin):.2f}, 0) = "
            f"**{loss:.3f}**  \n"
            + ("This triplet already satisfies the margin: it teaches nothing (an *easy* triplet)." if loss == 0 else
               "The loss is positive: training would pull P towards A and push N away."))
    return [(ca, "anchor"), (cp, "positive"), (cn, "negative")], text


def _gallery_faces(backend, request):
    store = gallery_for(request)
    embeddings, names = store.labelled_embeddings(backend)
    rows = store.face_rows(backend)
    if len(rows) != len(names):  # the gallery changed in between: read again
        embeddings, names = store.labelled_embeddings(backend)
        rows = store.face_rows(backend)
    return embeddings, names, rows


def _choices(names):
    counts: dict[str, int] = {}
    out = []
    for k, name in enumerate(names):
        counts[name] = counts.get(name, 0) + 1
        out.append((f"{name} #{counts[name]}", k))
    return out


@user_errors
def list_anchors(backend, request: gr.Request):
    _, names, _ = _gallery_faces(backend, request)
    return gr.Dropdown(choices=_choices(names), value=0 if names else None)


def _chip(blob):
    return Image.open(io.BytesIO(blob)).convert("RGB") if blob else Image.new("RGB", (150, 150), "gray")


@user_errors
def hardest(anchor, margin, backend, request: gr.Request):
    """The anchor's hardest positive (farthest same person) and hardest negative (nearest other person)."""
    embeddings, names, rows = _gallery_faces(backend, request)
    if len(set(names)) < 2:
        raise UserError("The gallery needs at least two people (for this backend) to find hard triplets.")
    if anchor is None or not 0 <= int(anchor) < len(names):
        raise UserError("Please choose an anchor face (press 'List gallery faces' first).")
    a = int(anchor)
    pos, neg, d = hardest_for_anchor(embeddings, names, a)
    shown = [(_chip(rows[a][2]), f"anchor: {names[a]}")]
    lines = []
    if pos is None:
        lines.append(f"{markdown_text(names[a])} has a single face in the gallery: "
                     "enroll another photo to get a positive.")
    else:
        shown.append((_chip(rows[pos][2]), f"hardest positive: {names[pos]} d={float(d[pos]):.3f}"))
    shown.append((_chip(rows[neg][2]), f"hardest negative: {names[neg]} d={float(d[neg]):.3f}"))
    if pos is not None:
        loss = max(float(d[pos]) - float(d[neg]) + float(margin), 0.0)
        lines.append(f"Hardest triplet: d(A,P) = {float(d[pos]):.3f}, d(A,N) = {float(d[neg]):.3f}, "
                     f"loss at μ = {float(margin):.2f}: **{loss:.3f}**.")
    return shown, "  \n".join(lines)


def _histogram(same: torch.Tensor, diff: torch.Tensor, bins: np.ndarray) -> pd.DataFrame:
    centers = (bins[1:] + bins[:-1]) / 2
    frames = []
    for kind, values in (("same person", same), ("different people", diff)):
        counts, _ = np.histogram(values.numpy(), bins=bins)
        share = counts / max(1, counts.sum())  # fractions: there are far more different than same pairs
        frames.append(pd.DataFrame({"d": np.round(centers, 3), "share of pairs": share, "pairs": kind}))
    return pd.concat(frames, ignore_index=True)


@user_errors
def train_demo(margin, steps, backend, request: gr.Request):
    """Train a projection (triplet loss, batch-hard mining) and a same/different head on the gallery's faces."""
    embeddings, names, _ = _gallery_faces(backend, request)
    counts = pd.Series(names).value_counts() if names else pd.Series(dtype=int)
    if len(counts) < 2 or counts.max() < 2:
        raise UserError("Training needs at least two people in the gallery and at least one of them with two or more "
                        "photos; enroll more photos first.")
    head, report = train_projection(embeddings, names, margin=float(margin), steps=int(steps))
    _, logistic = train_same_different(embeddings, names, steps=int(steps))
    all_d = torch.cat([report.same_before, report.diff_before, report.same_after, report.diff_after])
    bins = np.linspace(0.0, float(all_d.max()) + 1e-6, 21)

    def acc(same, diff):
        d = torch.cat([same, diff])
        return best_threshold(d, torch.cat([torch.ones(len(same)), torch.zeros(len(diff))]).bool())[1]

    text = (f"{len(names)} faces of {len(counts)} people, {int(steps)} steps, μ = {float(margin):.2f} "
            "(embeddings L2-normalised first).  \n"
            "Mean d, same / different pairs: "
            f"before {report.same_before.mean():.3f} / {report.diff_before.mean():.3f}, "
            f"after {report.same_after.mean():.3f} / {report.diff_after.mean():.3f}.  \n"
            f"Best-threshold pair accuracy: before {acc(report.same_before, report.diff_before):.1%}, "
            f"after {acc(report.same_after, report.diff_after):.1%}; logistic head on |f(x1) − f(x2)|: "
            f"{logistic.accuracy:.1%} (on the pairs it was trained on).")
    return (_loss_frame(report.losses), _loss_frame(logistic.losses),
            _histogram(report.same_before, report.diff_before, bins),
            _histogram(report.same_after, report.diff_after, bins), text)


def _loss_frame(losses) -> pd.DataFrame:
    """One loss curve, for a LinePlot of its own."""
    return pd.DataFrame({"step": np.arange(len(losses)), "loss": np.asarray(losses, dtype=float)})


def build_playground(backend: gr.Radio) -> None:
    """Lay out the playground; ``backend`` is the Faces panel's backend choice (the gallery is the visitor's)."""
    gr.Markdown("Loss = **max(d(A, P) − d(A, N) + μ, 0)** with d the squared L2 distance.  \n" + WHY_MARGIN)
    margin = gr.Slider(0.0, 1.0, value=0.2, step=0.01, label="margin μ")
    with gr.Accordion("Anchor, positive, negative from three photos", open=True):
        with gr.Row():
            anchor_photo = UploadImage(label="Anchor A", height=260, elem_id="triplet-anchor")
            positive_photo = UploadImage(label="Positive P (same person)", height=260, elem_id="triplet-positive")
            negative_photo = UploadImage(label="Negative N (someone else)", height=260, elem_id="triplet-negative")
        go = gr.Button("Compute the loss", variant="primary", elem_id="triplet-button")
        # A gallery's tiles are squares as wide as its columns: across the whole width three crops were ~385 px
        # high in a 240-px box, which showed their eye band. Beside the text they stay under 240 px, whole.
        with gr.Row(equal_height=False):
            crops = gr.Gallery(label="Aligned crops", columns=3, height=240, object_fit="contain",
                               elem_id="triplet-crops")
            explanation = gr.Markdown()
        go.click(triplet_from_photos, [anchor_photo, positive_photo, negative_photo, margin, backend],
                 [crops, explanation], api_name="triplet")
    with gr.Accordion("Hard triplets from the gallery", open=False):
        with gr.Row():
            list_btn = gr.Button("List gallery faces")
            anchor = gr.Dropdown(label="Anchor face", choices=[])
            hard_btn = gr.Button("Show hardest positive and negative", variant="primary")
        with gr.Row(equal_height=False):
            hard_gallery = gr.Gallery(label="Hardest triplet", columns=3, height=240, object_fit="contain")
            hard_text = gr.Markdown()
        list_btn.click(list_anchors, [backend], [anchor], api_name=False)
        hard_btn.click(hardest, [anchor, margin, backend], [hard_gallery, hard_text],
                       api_name="hard_triplets")
    with gr.Accordion("Training demo: a projection learnt with the triplet loss", open=False):
        steps = gr.Slider(20, 500, value=150, step=10, label="steps")
        train_btn = gr.Button("Train on the gallery's faces", variant="primary")
        with gr.Row():
            # One axis per loss, from 0 to its own largest value: on a shared axis the ~0.05 triplet loss looked
            # flat under the ~0.7 logistic loss.
            triplet_plot = gr.LinePlot(x="step", y="loss", y_lim=[0, None], title="Triplet loss (batch-hard mining)")
            logistic_plot = gr.LinePlot(x="step", y="loss", y_lim=[0, None],
                                        title="Logistic loss of the same/different head")
        with gr.Row():
            before = gr.BarPlot(x="d", y="share of pairs", color="pairs", title="Distances before")
            after = gr.BarPlot(x="d", y="share of pairs", color="pairs", title="Distances after")
        train_text = gr.Markdown()
        train_btn.click(train_demo, [margin, steps, backend], [triplet_plot, logistic_plot, before, after, train_text],
                        api_name="train_triplet", concurrency_limit=1)
