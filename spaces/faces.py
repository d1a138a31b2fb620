"""Faces: verification ("is this the claimed person?"), one-shot recognition with a gallery, triplet loss.

Thin panel: every handler calls ``core.faces``. Galleries are per browser session (a temp
SQLite file keyed by the session, deleted when it ends: :mod:`spaces.face_galleries`) unless
the operator started the app with ``--gallery PATH``, because faces are biometric data.
"""

from __future__ import annotations

import io

import gradio as gr
import pandas as pd
from PIL import Image

from core.errors import UserError
from core.faces import gallery as gallery_db
from core.faces.pipeline import (
    BACKENDS,
    DEFAULT_BACKEND,
    available_backends,
    backend_availability,
    default_threshold,
    load_pipeline,
)
from core.faces.recognition import enroll_images, identify_image
from core.faces.verification import verify_faces
from spaces import triplet
from spaces.common import UploadFiles, UploadImage, cleared, markdown_text, read_image, shipped_example, user_errors
from spaces.face_galleries import end_session, gallery_for, is_shared

TITLE = "Faces"
SUMMARY = ("Face verification (squared L2 distance against a threshold), one-shot recognition with an SQLite "
           "gallery, and the triplet-loss playground.")

#: Photos are shrunk to this longest side before detection (faces stay large enough; HOG time grows with pixels).
MAX_SIDE = 1600

#: ``demo.unload`` handler the app registers: a closed tab's gallery is deleted at once.
unload = end_session

#: What each backend is, for the backend choice.
BACKEND_INFO = {"dlib": "dlib ResNet (128-D, CPU)",
                "facenet": "FaceNet InceptionResnetV1 (512-D, torch, batched on GPU)"}


def _backend_note(pipeline, *face_sets) -> str:
    """Which backend answered, and how each photo's faces were found and in what time."""
    device = getattr(pipeline.embedder, "device", "cpu")
    found = [s.detection.describe() for s in face_sets]
    if len(found) > 1:
        found = [f"Photo {k + 1}: {line}" for k, line in enumerate(found)]
    return (f"Answered by the **{pipeline.name}** backend ({pipeline.description}) on {device}.  \n"
            + ".  \n".join(found) + " (wall time on a shared CPU).")


def _numbered(image: Image.Image, face_set, labels=None):
    """An AnnotatedImage value: the photo with each face's box (inside the photo) and label."""
    labels = labels or [f"face {k + 1}" for k in range(len(face_set))]
    return image, list(zip(face_set.boxes(), labels))


def _face_index(value, what: str) -> int:
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise UserError(f"Please give the face number in the {what} as a whole number (1 = largest).") from None
    if k < 1:
        raise UserError(f"Face numbers start at 1 (the largest face in the {what}).")
    return k - 1


def _verdict_markdown(v: dict, threshold: float) -> str:
    same = v["squared_l2"] <= threshold
    return (f"## {'Same person' if same else 'Different people'}\n"
            f"d = ||f(x1) - f(x2)||² = **{v['squared_l2']:.3f}** {'≤' if same else '>'} τ = {threshold:.3f}  \n"
            f"L2 = {v['l2']:.3f} · cosine distance = {v['cosine']:.3f}")


# ---- verification ---------------------------------------------------------------------------------
@user_errors
def verify(photo1, photo2, face1, face2, threshold, backend):
    """Two photos -> both photos with numbered faces, the two compared crops, the verdict, the distances."""
    image1 = read_image(photo1, what="first photo", max_side=MAX_SIDE).image
    image2 = read_image(photo2, what="second photo", max_side=MAX_SIDE).image
    pipeline = load_pipeline(backend)
    set1, set2 = pipeline.analyze(image1), pipeline.analyze(image2)
    result = verify_faces(set1, set2, threshold=float(threshold), face1=_face_index(face1, "first photo"),
                          face2=_face_index(face2, "second photo"), backend=pipeline.name)
    notes = []
    for what, s in (("first", set1), ("second", set2)):
        if len(s) > 1:
            notes.append(f"The {what} photo has {len(s)} faces; face 1 (the largest) is used unless you pick another.")
    v = result.as_dict()
    chips = [(set1.chip_image(result.faces_used[0]), "photo 1"), (set2.chip_image(result.faces_used[1]), "photo 2")]
    markdown = "\n\n".join([_verdict_markdown(v, float(threshold)), *notes, _backend_note(pipeline, set1, set2)])
    return _numbered(image1, set1), _numbered(image2, set2), chips, markdown, v


@user_errors
def reverdict(last, threshold):
    """The slider moved: the same distance against the new tau (no model call)."""
    if not last:
        return gr.skip()
    return _verdict_markdown(last, float(threshold))


def backend_changed(backend):
    tau = default_threshold(backend)
    return gr.Slider(value=tau, maximum=max(2.0, 2 * tau)), gr.Slider(value=tau, maximum=max(2.0, 2 * tau))


# ---- recognition -----------------------------------------------------------------------------------
def _people_table(store):
    people = store.people()
    table = pd.DataFrame({"name": [p.name for p in people], "faces": [p.faces for p in people]})
    thumbs = []
    for p in people:
        for blob in store.chips(p.name, limit=1):
            thumbs.append((Image.open(io.BytesIO(blob)).convert("RGB"), p.name))
    return table, thumbs, gr.Dropdown(choices=[p.name for p in people], value=None)


def _file_paths(files) -> list[str]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [getattr(f, "name", f) for f in files]


@user_errors
def enroll(name, photos, backend, request: gr.Request):
    """A name and one or more photos -> the person (largest face of each photo) is in the gallery.

    Returns the gallery view, then empty name and photo fields (so the next person starts afresh) and a
    status line. A retry of the same photos adds no face twice (the gallery keeps one digest per face)."""
    paths = _file_paths(photos)
    if not paths:
        raise UserError("Please upload at least one photo of the person to enroll.")
    name = gallery_db.check_name(name)
    images = [read_image(p, what=f"photo {k + 1}", max_side=MAX_SIDE).image for k, p in enumerate(paths)]
    store = gallery_for(request)
    added = enroll_images(load_pipeline(backend), store, name, images)
    again = len(images) - added
    status = (f"Enrolled **{markdown_text(name)}** with {added} new face(s)"
              + (f"; {again} photo(s) were already in the gallery." if again else "."))
    return (*_people_table(store), "", None, status)


@user_errors
def identify(photo, threshold, backend, request: gr.Request):
    """A photo -> every face boxed with a name and its distance, or "not recognized" above tau."""
    image = read_image(photo, what="photo", max_side=MAX_SIDE).image
    store = gallery_for(request)
    if not store.people():
        raise UserError("The gallery is empty; enroll at least one person first.")
    pipeline = load_pipeline(backend)
    answers, face_set = identify_image(pipeline, store, image, threshold=float(threshold))
    if not answers:
        raise UserError("No face was found in the photo; please upload a photo where faces are clearly visible.")
    rows = pd.DataFrame({"face": list(range(1, len(answers) + 1)),
                         "answer": [a.match.name or "not recognized" for a in answers],
                         "nearest": [a.match.nearest or "" for a in answers],
                         "d (squared L2)": [round(a.match.distance, 3) for a in answers]})
    notes = " ".join(face_set.notes)
    return (_numbered(image, face_set, [f"{k + 1}: {a.label}" for k, a in enumerate(answers)]), rows,
            f"{_backend_note(pipeline, face_set)} τ = {float(threshold):.3f}. {notes}")


@user_errors
def list_people(request: gr.Request):
    return (*_people_table(gallery_for(request)), "")


@user_errors
def rename_person(old, new, request: gr.Request):
    if not old:
        raise UserError("Please choose the person to rename.")
    store = gallery_for(request)
    store.rename(old, new)
    return (*_people_table(store), f"Renamed to **{markdown_text(gallery_db.check_name(new))}**.")


@user_errors
def delete_person(name, request: gr.Request):
    if not name:
        raise UserError("Please choose the person to delete.")
    store = gallery_for(request)
    store.delete(name)
    return (*_people_table(store), f"Deleted **{markdown_text(name)}** and all their faces.")


def build() -> None:
    gr.Markdown(
        "Pipeline: detect → align (5 landmarks) → embed f(x) → compare **d(x1, x2) = ||f(x1) − f(x2)||²**; "
        "\"same person\" when d ≤ τ. "
        + ("The gallery is **shared and persistent** (the app was started with `--gallery`)."
           if is_shared() else
           "Your gallery is **private to this browser session** and is deleted when you close the tab "
           "(or after an hour without use)."))
    tau0 = default_threshold(DEFAULT_BACKEND)
    offered = available_backends()
    # Only what runs here is offered; the others are named with how to enable them, and never waited for.
    backend = gr.Radio(offered, value=offered[0] if offered else None, label="Backend",
                       info=" or ".join(BACKEND_INFO[b] for b in offered))
    for name in BACKENDS:
        if name not in offered:
            gr.Markdown(f"*{BACKEND_INFO[name]}* is not offered: {backend_availability(name)}.",
                        elem_id=f"faces-{name}-missing")
    with gr.Tabs():
        with gr.Tab("Verification"):
            # The verdict sits under the button, beside the photos: at 1280 x 800 it shows without scrolling,
            # and on a phone the column stacks under the photos with the verdict right below the button.
            with gr.Row(equal_height=False):
                photo1 = UploadImage(label="Photo 1", height=300, elem_id="faces-photo1")
                photo2 = UploadImage(label="Photo 2 (the claimed person)", height=300, elem_id="faces-photo2")
                with gr.Column(min_width=300):
                    with gr.Row():
                        face1 = gr.Number(1, precision=0, minimum=1, label="Face in photo 1 (1 = largest)",
                                          min_width=120)
                        face2 = gr.Number(1, precision=0, minimum=1, label="Face in photo 2 (1 = largest)",
                                          min_width=120)
                    threshold = gr.Slider(0.0, 2.0, value=tau0, step=0.01, label="τ (threshold on d)",
                                          info="default: the backend's calibrated operating point")
                    go = gr.Button("Verify", variant="primary", elem_id="faces-verify")
                    verdict = gr.Markdown(elem_id="faces-verdict")
            with gr.Row():
                boxes1 = gr.AnnotatedImage(label="Faces found in photo 1")
                boxes2 = gr.AnnotatedImage(label="Faces found in photo 2")
                crops = gr.Gallery(label="Aligned crops compared", columns=2, height=240, object_fit="contain")
            # Public-domain White House photos (spaces/examples/README.md): one person twice, then two people.
            portrait = shipped_example("face-obama-2012-portrait.jpg")
            gr.Examples([[portrait, shipped_example("face-obama-2009-speech.jpg")],
                         [portrait, shipped_example("face-biden-2010.jpg")]],
                        [photo1, photo2], label="Examples: the same person in two photos; two different people")
            last = gr.State(None)
            # Progress and a failure show on the verdict, next to the button (the toast says the sentence too); a new
            # try first clears the last answer, so a failure is not read as the old verdict.
            answer = [boxes1, boxes2, crops, verdict, last]
            go.click(cleared(len(answer)), None, answer, queue=False, show_progress="hidden",
                     api_visibility="private").then(
                verify, [photo1, photo2, face1, face2, threshold, backend], answer, api_name="verify",
                show_progress_on=[verdict])
            threshold.release(reverdict, [last, threshold], verdict, api_name=False)
        with gr.Tab("Recognition"):
            with gr.Row():
                with gr.Column():
                    name = gr.Textbox(label="Name", max_length=gallery_db.MAX_NAME_LENGTH, elem_id="faces-name")
                    # No file_types: Gradio would refuse by extension with its own words; the loader reads the
                    # content and explains in one sentence what it cannot use.
                    photos = UploadFiles(file_count="multiple", label="Photo(s) of this person", elem_id="faces-photos")
                    enroll_btn = gr.Button("Enroll", variant="primary", elem_id="faces-enroll")
                with gr.Column():
                    query = UploadImage(label="Who is in this photo?")
                    rec_threshold = gr.Slider(0.0, 2.0, value=tau0, step=0.01, label="τ (not recognized above)")
                    identify_btn = gr.Button("Identify", variant="primary")
            answer_image = gr.AnnotatedImage(label="Faces and names")
            answer_table = gr.Dataframe(label="Answers", interactive=False)
            answer_note = gr.Markdown()
            gr.Markdown("### The gallery")
            with gr.Row():
                people = gr.Dataframe(label="People", interactive=False, elem_id="faces-people")
                thumbs = gr.Gallery(label="Enrolled faces", columns=6, height=200, object_fit="contain",
                                    elem_id="faces-thumbs")
            with gr.Row():
                chosen = gr.Dropdown(label="Person", choices=[], elem_id="faces-person")
                new_name = gr.Textbox(label="New name")
                rename_btn = gr.Button("Rename")
                delete_btn = gr.Button("Delete", variant="stop")
                refresh_btn = gr.Button("Refresh")
            gallery_status = gr.Markdown(elem_id="faces-status")
            gallery_view = [people, thumbs, chosen]
            # A failure shows its sentence on the status line alone (show_progress_on): the gallery view and
            # the form keep what they showed, and the handler's outputs change only on success.
            manage = dict(show_progress_on=[gallery_status])
            # The status line and the answers are cleared first: a failure must not sit under an old success.
            enroll_btn.click(cleared(1), None, gallery_status, queue=False, show_progress="hidden",
                             api_visibility="private").then(
                enroll, [name, photos, backend], [*gallery_view, name, photos, gallery_status], api_name="enroll",
                concurrency_limit=4, **manage)
            answers = [answer_image, answer_table, answer_note]
            identify_btn.click(cleared(len(answers)), None, answers, queue=False, show_progress="hidden",
                               api_visibility="private").then(
                identify, [query, rec_threshold, backend], answers, api_name="identify")
            rename_btn.click(rename_person, [chosen, new_name], [*gallery_view, gallery_status],
                             api_name="rename_person", **manage)
            delete_btn.click(delete_person, [chosen], [*gallery_view, gallery_status], api_name="delete_person",
                             **manage)
            refresh_btn.click(list_people, None, [*gallery_view, gallery_status], api_name="list_people", **manage)
        with gr.Tab("Triplet loss"):
            triplet.build_playground(backend)
    backend.change(backend_changed, backend, [threshold, rec_threshold], api_name=False)

