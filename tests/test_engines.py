"""Faster engines keep the answers: every engine a record lists, on this host, labels real CamVid val frames as
PyTorch fp32 does (>= 99.5 % of pixels), and Mask R-CNN finds the same objects; the choice is per host."""

import pytest
import torch
import torch.nn.functional as F

import weights
from core import engines
from core.instances.evaluate import QUALITY_CHECK_FRAMES, quality_check_score
from core.segmentation.data import load_camvid, load_pairs, pair_files
from core.segmentation.predict import segment_as_recorded
from weights.release import quality_check

FRAMES = 4
SEGMENTATION = [n for n in weights.list_models("segmentation") if weights.get_record(n).engines]


@pytest.fixture(autouse=True)
def engine_cache(tmp_path_factory, monkeypatch):
    """Converted models and choices in one folder for the session's tests, not in the user's cache; what each
    test installs stays in it (other tests load the models fp32 from a cache of their own)."""
    monkeypatch.setenv("CVHUB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cvhub-cache"))
    monkeypatch.setattr(engines, "_prepared", {})
    monkeypatch.setattr(engines, "_pending", set())
    monkeypatch.setattr(weights, "_cache", None)


@pytest.fixture(scope="module")
def frames(shared):
    camvid = shared / "data" / "camvid"
    return load_pairs(pair_files(camvid / "val", camvid / "valannot")[:FRAMES]).images.float() / 255  # Bx3x360x480


def _engines_here(name: str) -> list[str]:
    return [e for e in weights.get_record(name).engines if engines.supported(e, torch.device("cpu"))]


def test_every_engine_runs_on_this_host_and_bf16_only_with_bf16_hardware():
    """The host CI runs on has the packages and compiler the engines need, so the checks below are not vacuous; the
    bf16 engines are offered exactly where the CPU computes bf16 (AMX or AVX512-BF16: CI has run on both kinds of
    host, an Intel Xeon with AMX and an AMD EPYC with AVX2 alone, where emulated bf16 would be slower than fp32)."""
    cpu = torch.device("cpu")
    assert all(engines.supported(e, cpu) for e in engines.ENGINES if not e.endswith("bf16"))
    assert all(engines.supported(e, cpu) == engines.cpu_has_bf16() for e in engines.ENGINES if e.endswith("bf16"))


@pytest.mark.parametrize("name", SEGMENTATION)
def test_each_listed_engine_gives_the_same_labels_on_real_frames(name, frames, shared_weights):
    """What ``auto`` builds and times (the Inductor packages compiled side by side) keeps the labels."""
    record = weights.get_record(name)
    expected = segment_as_recorded(weights.create(name), record, frames)
    built = engines.build(name, weights.create(name), _engines_here(name))
    assert list(built) == _engines_here(name)  # every listed engine built here
    for engine, fast in built.items():
        assert isinstance(fast, engines.Accelerated) and fast.engine == engine
        same = (segment_as_recorded(fast, record, frames) == expected).float().mean().item()
        assert same >= 0.995, (name, engine, same)


def test_a_compiled_package_is_reused_not_compiled_again(monkeypatch, shared_weights):
    """Inductor compiles ENet once per host (about a minute); a restart loads the .pt2 from the cache."""
    name = "enet-camvid"
    first = engines.prepare(name, weights.create(name), "inductor")
    assert list(engines.cache_dir().glob(f"{name}-*-inductor-torch*.pt2"))

    def compile_again(*args, **kwargs):
        raise AssertionError("compiled a second time")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", compile_again)
    again = engines.prepare(name, weights.create(name), "inductor")
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(first(x), again(x))


def test_openvino_would_change_segnets_answers_so_its_record_leaves_it_out(frames, shared_weights):
    """Why SegNet lists no engine: converted for any size, OpenVINO's max-unpooling with indices labels a
    frame of another size than the conversion's example differently."""
    record = weights.get_record("segnet-vgg19-camvid")
    assert record.engines == ()
    eager = weights.create(record.name)
    fast = engines.accelerate(weights.create(record.name), "openvino", torch.rand(1, 3, 256, 320), key="segnet-test")
    x = record.normalize(F.interpolate(frames[:1], size=(384, 640), mode="bilinear"))
    with torch.no_grad():
        same = (fast(x).argmax(1) == eager(x).argmax(1)).float().mean().item()
    assert same < 0.995  # the bar every listed engine clears


def test_maskrcnn_encoder_engines_find_the_same_objects(frames, shared, shared_weights):
    """The record's listing rule for the detector: val AP50 within half a point of fp32's (here on the release's
    quality-check frames, against the fp32 score the release recorded), and on two frames as many confident
    detections of the same classes. Not box by box: one borderline box (two proposals of a car at near-equal scores)
    may go either way under bf16 rounding."""
    name = "maskrcnn-vgg19-camvid"
    record = weights.get_record(name)
    val = load_camvid(shared / "data" / "camvid", "val", limit=QUALITY_CHECK_FRAMES)
    expected_ap = quality_check(name)
    with torch.no_grad():
        expected = weights.create(name)(list(frames[:2]))
    assert sum(len(e["boxes"]) for e in expected) >= 3  # real objects to compare, not two empty lists
    for engine in _engines_here(name):
        model = engines.prepare(name, weights.create(name), engine)
        assert isinstance(model.backbone.encoder, engines.Accelerated)
        with torch.no_grad():
            got = model(list(frames[:2]))
            ap = quality_check_score(model, record, val)
        for e, g in zip(expected, got):
            keep_e, keep_g = e["scores"] > 0.5, g["scores"] > 0.5
            assert keep_e.sum() == keep_g.sum(), (engine, e["scores"], g["scores"])
            assert torch.equal(e["labels"][keep_e].sort().values, g["labels"][keep_g].sort().values)
        for metric in ("mask_AP50", "box_AP50"):
            assert abs(ap[metric] - expected_ap[metric]) <= 0.005, (engine, metric, ap, expected_ap)


def test_auto_measures_once_per_host_then_reuses_the_choice(monkeypatch, shared_weights):
    name = "enet-camvid"
    timed = []
    real = engines.fastest
    monkeypatch.setattr(engines, "fastest", lambda c, x, **k: timed.append(sorted(c)) or real(c, x, rounds=1))
    first = engines.prepare(name, weights.create(name), "auto")
    chosen = engines._prepared[name]
    assert timed == [sorted(["eager", *_engines_here(name)])]
    assert engines._load_choices()[name]["engine"] == chosen
    again = engines.prepare(name, weights.create(name), "auto")
    assert len(timed) == 1  # the saved choice, no second measurement
    assert type(first) is type(again) and engines.described(name) == engines.LABELS[chosen]


def test_auto_leaves_out_an_engine_that_fails_to_build_here(monkeypatch, tmp_path, shared_weights):
    """A host whose compiler fails (a Space image without Python headers, say) still gets the other engines."""
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(engines, "compile_inductor", broken)
    monkeypatch.setattr(engines, "_choices_path", lambda: tmp_path / "choices.json")  # a host not measured yet
    served = engines.prepare("enet-camvid", weights.create("enet-camvid"), "auto")
    chosen = engines._load_choices()["enet-camvid"]
    assert not chosen["engine"].startswith("inductor") and not any(e.startswith("inductor") for e in chosen["ms"])
    assert "eager" in chosen["ms"] and ("bf16" in chosen["ms"]) == engines.cpu_has_bf16()
    assert getattr(served, "engine", "eager") == chosen["engine"]


def test_the_serving_process_loads_engines_and_never_builds_one(monkeypatch, tmp_path, shared_weights):
    """What the app's process does (core.engines.load_prepared): with nothing built, it says so instead of exporting
    beside the requests it serves (the export is a child's job, weights.engine_builds)."""
    def export(*args, **kwargs):
        raise AssertionError("exported in the serving process")

    monkeypatch.setenv("CVHUB_CACHE_DIR", str(tmp_path))  # empty: a restart of a free Space
    monkeypatch.setattr(torch.export, "export", export)
    for runtime in ("auto", "inductor"):
        with pytest.raises(engines.NotBuilt):
            engines.load_prepared("enet-camvid", weights.create("enet-camvid"), runtime)
    assert not list(tmp_path.rglob("*.pt2"))


def test_a_forced_engine_the_record_leaves_out_serves_fp32(shared_weights):
    model = weights.create("segnet-vgg19-camvid")
    assert engines.prepare("segnet-vgg19-camvid", model, "openvino") is model
    assert engines.described("segnet-vgg19-camvid") == "PyTorch fp32"


def test_the_app_prepares_an_engine_and_serves_the_model_with_it(monkeypatch, shared_weights):
    """What the app's start-up thread does (weights.prepare_engines), then a request's weights.load."""
    from core import runtime  # noqa: PLC0415

    monkeypatch.setattr(runtime, "_settings", runtime.Settings.from_env({}, weights_dir=str(shared_weights)))
    weights.prepare_engines(["enet-camvid"])
    served = weights.load("enet-camvid")
    assert isinstance(served, engines.Accelerated) and served.engine == engines._prepared["enet-camvid"]
    assert engines.described("enet-camvid") == engines.LABELS[served.engine] != engines.LABELS["eager"]
