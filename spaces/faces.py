"""Faces: verification ("is this the claimed person?"), one-shot recognition with a gallery, triplet loss.

Thin panel: every handler calls ``core.faces``. Galleries are per browser session (a temp
SQLite file held in ``gr.State``, deleted with the session) unless the operator started the
app with ``--gallery PATH`` (:func:`use_shared_gallery`), because faces are biometric data.
"""

from __future__ import annotations

import io
import threading

import gradio as gr
import pandas as pd
from PIL import Image

from core.errors import UserError
from core.faces import gallery as gallery_db
from core.faces.pipeline import BACKENDS, DEFAULT_BACKEND, default_threshold, load_pipeline
from core.faces.recognition import enroll_images, identify_image
from core.faces.verification import verify_faces
from spaces.common import UploadImage, read_image, user_errors

TITLE = "Faces"
SUMMARY = ("Face verification (squared L2 distance against a threshold), one-shot recognition with an SQLite "
           "gallery, and the triplet-loss playground.")

#: Photos are shrunk to this longest side before detection (faces stay large enough; HOG time grows with pixels).
MAX_SIDE = 1600

_stores: dict[str, gallery_db.GalleryStore] = {}
_stores_lock = threading.Lock()


def use_shared_gallery(path) -> None:
    """The app's ``--gallery PATH``: one persistent gallery for every visitor (None: per-session galleries)."""
    gallery_db.set_shared_gallery(path)


def gallery_store(session_path: str | None) -> tuple[gallery_db.GalleryStore, str | None]:
    """The gallery this visitor uses and the session path to keep in ``gr.State`` (created on first use)."""
    shared = gallery_db.shared_gallery_path()
    path = str(shared) if shared is not None else (session_path or str(gallery_db.session_gallery_path()))
    with _stores_lock:
        store = _stores.get(path)
        if store is None:
            store = _stores[path] = gallery_db.GalleryStore(path)
    return store, (session_path if shared is not None else path)


def forget_session_gallery(session_path: str | None) -> None:
    """``gr.State`` delete callback: the session ended, its gallery goes."""
    if session_path and str(gallery_db.shared_gallery_path()) != session_path:
        with _stores_lock:
            _stores.pop(session_path, None)
        gallery_db.remove_gallery_file(session_path)


def _pipeline(backend: str):
    if backend not in BACKENDS:
        raise UserError(f"Please choose a backend among: {', '.join(BACKENDS)}.")
    return load_pipeline(backend)


def _backend_note(pipeline) -> str:
    device = getattr(pipeline.embedder, "device", "cpu")
    return f"Answered by the **{pipeline.name}** backend ({pipeline.description}) on {device}."


def _numbered(image: Image.Image, face_set, labels=None):
    """An AnnotatedImage value: the photo with each face's box and label."""
    labels = labels or [f"face {k + 1}" for k in range(len(face_set))]
    return image, [(box, label) for box, label in zip(face_set.boxes(), labels)]


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
    pipeline = _pipeline(backend)
    set1, set2 = pipeline.analyze(image1), pipeline.analyze(image2)
    result = verify_faces(set1, set2, threshold=float(threshold), face1=_face_index(face1, "first photo"),
                          face2=_face_index(face2, "second photo"), backend=pipeline.name)
    notes = []
    for what, s in (("first", set1), ("second", set2)):
        if len(s) > 1:
            notes.append(f"The {what} photo has {len(s)} faces; face 1 (the largest) is used unless you pick another.")
    v = result.as_dict()
    chips = [(set1.chip_image(result.faces_used[0]), "photo 1"), (set2.chip_image(result.faces_used[1]), "photo 2")]
    markdown = "\n\n".join([_verdict_markdown(v, float(threshold)), *notes, _backend_note(pipeline)])
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
def enroll(name, photos, backend, session_path):
    """A name and one or more photos -> the person (largest face of each photo) is in the gallery."""
    paths = _file_paths(photos)
    if not paths:
        raise UserError("Please upload at least one photo of the person to enroll.")
    images = [read_image(p, what=f"photo {k + 1}", max_side=MAX_SIDE).image for k, p in enumerate(paths)]
    store, session_path = gallery_store(session_path)
    added = enroll_images(_pipeline(backend), store, name, images)
    gr.Info(f"Enrolled {gallery_db.check_name(name)} with {added} face(s).")
    return (*_people_table(store), session_path)


@user_errors
def identify(photo, threshold, backend, session_path):
    """A photo -> every face boxed with a name and its distance, or "not recognized" above tau."""
    image = read_image(photo, what="photo", max_side=MAX_SIDE).image
    store, session_path = gallery_store(session_path)
    if not store.people():
        raise UserError("The gallery is empty; enroll at least one person first.")
    pipeline = _pipeline(backend)
    answers, face_set = identify_image(pipeline, store, image, threshold=float(threshold))
    if not answers:
        raise UserError("No face was found in the photo; please upload a photo where faces are clearly visible.")
    rows = pd.DataFrame({"face": list(range(1, len(answers) + 1)),
                         "answer": [a.match.name or "not recognized" for a in answers],
                         "nearest": [a.match.nearest or "" for a in answers],
                         "d (squared L2)": [round(a.match.distance, 3) for a in answers]})
    notes = " ".join(face_set.notes)
    return (_numbered(image, face_set, [f"{k + 1}: {a.label}" for k, a in enumerate(answers)]), rows,
            f"{_backend_note(pipeline)} τ = {float(threshold):.3f}. {notes}", session_path)


@user_errors
def list_people(session_path):
    store, session_path = gallery_store(session_path)
    return (*_people_table(store), session_path)


@user_errors
def rename_person(old, new, session_path):
    if not old:
        raise UserError("Please choose the person to rename.")
    store, session_path = gallery_store(session_path)
    store.rename(old, new)
    return (*_people_table(store), session_path)


@user_errors
def delete_person(name, session_path):
    if not name:
        raise UserError("Please choose the person to delete.")
    store, session_path = gallery_store(session_path)
    store.delete(name)
    return (*_people_table(store), session_path)


def build() -> None:
    from spaces import triplet

    gr.Markdown(
        "Pipeline: detect → align (5 landmarks) → embed f(x) → compare **d(x1, x2) = ||f(x1) − f(x2)||²**; "
        "\"same person\" when d ≤ τ. "
        + ("The gallery is **shared and persistent** (the app was started with `--gallery`)."
           if gallery_db.shared_gallery_path() else
           "Your gallery is **private to this browser session** and is deleted when the session ends."))
    tau0 = default_threshold(DEFAULT_BACKEND)
    backend = gr.Radio(list(BACKENDS), value=DEFAULT_BACKEND, label="Backend",
                       info="dlib ResNet (128-D, CPU) or FaceNet InceptionResnetV1 (512-D, torch, batched on GPU)")
    session = gr.State(None, delete_callback=forget_session_gallery)
    with gr.Tabs():
        with gr.Tab("Verification"):
            with gr.Row():
                photo1 = UploadImage(label="Photo 1")
                photo2 = UploadImage(label="Photo 2 (the claimed person)")
            with gr.Row():
                face1 = gr.Number(1, precision=0, minimum=1, label="Face in photo 1 (1 = largest)")
                face2 = gr.Number(1, precision=0, minimum=1, label="Face in photo 2 (1 = largest)")
                threshold = gr.Slider(0.0, 2.0, value=tau0, step=0.01, label="τ (threshold on d)",
                                      info="default: the backend's calibrated operating point")
            go = gr.Button("Verify", variant="primary")
            with gr.Row():
                boxes1 = gr.AnnotatedImage(label="Faces found in photo 1")
                boxes2 = gr.AnnotatedImage(label="Faces found in photo 2")
            with gr.Row():
                crops = gr.Gallery(label="Aligned crops compared", columns=2, height=220)
                verdict = gr.Markdown()
            last = gr.State(None)
            go.click(verify, [photo1, photo2, face1, face2, threshold, backend],
                     [boxes1, boxes2, crops, verdict, last], api_name="verify")
            threshold.release(reverdict, [last, threshold], verdict, api_name=False)
        with gr.Tab("Recognition"):
            with gr.Row():
                with gr.Column():
                    name = gr.Textbox(label="Name", max_length=gallery_db.MAX_NAME_LENGTH)
                    photos = gr.File(file_count="multiple", file_types=["image"], label="Photo(s) of this person")
                    enroll_btn = gr.Button("Enroll", variant="primary")
                with gr.Column():
                    query = UploadImage(label="Who is in this photo?")
                    rec_threshold = gr.Slider(0.0, 2.0, value=tau0, step=0.01, label="τ (not recognized above)")
                    identify_btn = gr.Button("Identify", variant="primary")
            answer_image = gr.AnnotatedImage(label="Faces and names")
            answer_table = gr.Dataframe(label="Answers", interactive=False)
            answer_note = gr.Markdown()
            gr.Markdown("### The gallery")
            with gr.Row():
                people = gr.Dataframe(label="People", interactive=False)
                thumbs = gr.Gallery(label="Enrolled faces", columns=6, height=200)
            with gr.Row():
                chosen = gr.Dropdown(label="Person", choices=[])
                new_name = gr.Textbox(label="New name")
                rename_btn = gr.Button("Rename")
                delete_btn = gr.Button("Delete", variant="stop")
                refresh_btn = gr.Button("Refresh")
            gallery_out = [people, thumbs, chosen, session]
            enroll_btn.click(enroll, [name, photos, backend, session], gallery_out, api_name="enroll",
                             concurrency_limit=4)
            identify_btn.click(identify, [query, rec_threshold, backend, session],
                               [answer_image, answer_table, answer_note, session], api_name="identify")
            rename_btn.click(rename_person, [chosen, new_name, session], gallery_out, api_name="rename_person")
            delete_btn.click(delete_person, [chosen, session], gallery_out, api_name="delete_person")
            refresh_btn.click(list_people, [session], gallery_out, api_name="list_people")
        with gr.Tab("Triplet loss"):
            triplet.build_playground(backend, session)
    backend.change(backend_changed, backend, [threshold, rec_threshold], api_name=False)

