"""The torch backend (FaceNet-style InceptionResnetV1) through the real loader: tiny random weights
served by the stand-in Hub, downloaded by huggingface_hub, checked by sha256, loaded by the registry."""

import hashlib
import socket
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

import weights
import weights.records.faces  # noqa: F401  (registers the face records until the records index imports it)
from core.errors import UserError
from core.faces import pipeline as face_pipeline
from core.faces.inception_resnet import TorchFaceEmbedder, inception_resnet_v1
from core.images import load_image
from spaces import faces as panel
from tests.conftest import SHARED
from tests.hubstub import serve_hub
from weights.registry import HubFile, ModelRecord, register, unregister

FACES = SHARED / "data" / "faces"
TINY = {"embedding_dim": 16, "width": 0.125, "repeats": (1, 1, 1)}
REPO_ID, FILENAME = "cvhub-test/facenet-tiny", "model.safetensors"


def _tiny_weights() -> bytes:
    torch.manual_seed(0)
    model = inception_resnet_v1(**TINY)
    with torch.no_grad():  # BN statistics away from the identity, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = {f"model.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["logits.weight"] = torch.randn(7, 16)  # the VGGFace2 classifier, which the loader must drop
    return save_safetensors(state)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on one thread: on a shared 2-core CPU the default pool makes them ~30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny_facenet(tmp_path, monkeypatch):
    """``load_pipeline("facenet")`` answered by a tiny InceptionResnetV1 downloaded from the stand-in Hub."""
    data = _tiny_weights()
    with serve_hub({(REPO_ID, FILENAME): data}) as (endpoint, revision):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("CVHUB_OFFLINE", raising=False)
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
        real = weights.get_record("face-facenet-vggface2")
        record = register(ModelRecord(
            name="test-facenet-tiny", task="faces", description="a tiny random InceptionResnetV1 (tests)",
            builder=real.builder, builder_kwargs=TINY, state_loader=real.state_loader,
            source=HubFile(REPO_ID, FILENAME, revision), sha256=hashlib.sha256(data).hexdigest(), license="MIT",
            input_size=real.input_size, mean=real.mean, std=real.std, metrics=dict(real.metrics)))
        monkeypatch.setitem(face_pipeline.BACKENDS, "facenet", (record.name, "face-dlib-landmarks5"))
        try:
            yield face_pipeline.load_pipeline("facenet")
        finally:
            unregister(record.name)


def test_tiny_facenet_from_the_hub_embeds_a_batch_of_faces(tiny_facenet, tmp_path):
    assert any(p.is_file() for p in (tmp_path / "hub").rglob("*")), "the file must come through the Hub cache"
    assert isinstance(tiny_facenet.embedder, TorchFaceEmbedder) and tiny_facenet.name == "facenet"
    model = tiny_facenet.embedder.model
    assert not model.training
    face_set = tiny_facenet.analyze(load_image(FACES / "two_people.jpg").image)
    assert len(face_set) == 2 and face_set.chips.shape == (2, 3, 160, 160) and face_set.chips.dtype == torch.uint8
    e = face_set.embeddings
    assert e.shape == (2, 16) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    # Batched: the two faces in one call give what each gives alone (eval-mode BN, no cross-talk).
    one_by_one = torch.cat([tiny_facenet.embed_chips(face_set.chips[i:i + 1]) for i in range(2)])
    assert torch.allclose(e, one_by_one, atol=1e-5)
    # The record's normalisation, (x * 255 - 127.5) / 128, is what reaches the network.
    x = face_set.chips[:1].float() / 255
    expected = model((x * 255 - 127.5) / 128)
    assert torch.allclose(e[:1], expected, atol=1e-5)


def test_torch_alignment_matches_dlibs_chips():
    """The torch warp (affine_grid + grid_sample from 5 landmarks) cuts the same chip as dlib."""
    p = face_pipeline.load_pipeline("dlib")
    rgb = np.asarray(load_image(FACES / "gallery_and_queries" / "train" / "obama" / "obama.jpg").image)
    faces = p.detector.detect(rgb)
    dlib_chip = p.embedder.align(rgb, faces[:1]).float()
    torch_chip = TorchFaceEmbedder(torch.nn.Identity(), lambda x: x, chip_size=150).align(rgb, faces[:1]).float()
    assert torch_chip.shape == dlib_chip.shape == (1, 3, 150, 150)
    assert (torch_chip - dlib_chip).abs().mean() < 12  # of 255: same crop, only resampling differs
    shifted = torch.roll(dlib_chip, shifts=8, dims=3)
    assert (torch_chip - dlib_chip).abs().mean() < (shifted - dlib_chip).abs().mean()


def test_the_panel_says_which_backend_answered(tiny_facenet):
    photo = str(FACES / "gallery_and_queries" / "train" / "obama" / "obama.jpg")
    _, _, crops, markdown, result = panel.verify(photo, photo, 1, 1, 1.21, "facenet")
    assert "**facenet** backend" in markdown and result["backend"] == "facenet"
    assert result["squared_l2"] == pytest.approx(0.0, abs=1e-6) and result["verdict"] == "same"
    _, _, _, markdown, result = panel.verify(photo, photo, 1, 1, 0.36, "dlib")
    assert "**dlib** backend" in markdown


def test_facenet_with_the_hub_out_of_reach_fails_at_once(monkeypatch):
    """Downloads on but the Hub silent (a host without internet, no HF_HUB_OFFLINE): FaceNet is not offered and
    asking for it answers at once with how to enable it, where huggingface_hub's retries took ~25 s."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CVHUB_OFFLINE", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody answers there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert face_pipeline.available_backends() == ["dlib"]
    started = time.monotonic()
    with pytest.raises(UserError, match="cannot be reached from this host; put model.safetensors"):
        face_pipeline.load_pipeline("facenet")
    assert time.monotonic() - started < 2
