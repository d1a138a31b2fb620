"""The whole path, browser or API -> panel -> core -> result, on the real app."""

import glob
import io
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

import app
import weights
from core.datasets.camvid import CAMVID_CLASSES, CAMVID_COLORS
from spaces import face_galleries, faces, lab
from spaces.common import UploadImage, read_image, street_examples, user_errors
from spaces.privacy import MAX_UPLOAD_MB
from tests.conftest import REPO, start_app

LECTURE = {"headers": ["1", "2", "3", "4"], "data": [[1, 3, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]}
VALUES = {"headers": ["1", "2"], "data": [[1, 2], [3, 4]]}
UNPOOLED = [["0", "0", "2", "0"], ["0", "1", "0", "0"], ["0", "0", "0", "0"], ["3", "0", "0", "4"]]


def _cells(html_grid: str) -> list[list[str]]:
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html_grid)]


def test_api_lab_unpool_and_errors(running_app):
    client = Client(running_app, verbose=False)
    _, pooled, unpooled, _, _ = client.predict(LECTURE, VALUES, api_name="/lab_unpool")
    assert _cells(pooled) == [["5", "6"], ["7", "8"]]
    assert _cells(unpooled) == UNPOOLED
    bad = {"headers": ["1", "2"], "data": [[1, "x"], [3, 4]]}
    with pytest.raises(AppError, match="Row 1 of the input grid has a cell that is not a number"):
        client.predict(bad, VALUES, api_name="/lab_unpool")
    # ... and the app keeps serving
    assert _cells(client.predict(LECTURE, VALUES, api_name="/lab_unpool")[2]) == UNPOOLED


def test_api_many_users_at_once(running_app):
    client = Client(running_app, verbose=False)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: client.predict(LECTURE, VALUES, api_name="/lab_unpool")[2], range(16)))
    assert all(_cells(r) == UNPOOLED for r in results)


def test_api_model_table_lists_the_registry(running_app):
    table = Client(running_app, verbose=False).predict(api_name="/models")
    assert [row[0] for row in table["data"]] == weights.list_models()
    vgg = next(row for row in table["data"] if row[0] == "vgg19-caffe")
    assert vgg[5] == "yes"  # the app was started with --weights-dir ../shared/weights


def test_bad_upload_gets_one_sentence_and_app_keeps_serving(tmp_path):
    """UploadImage hands the raw file to core.images, so a corrupt upload is explained, not crashed on."""

    @user_errors
    def size_of(upload):
        return "x".join(map(str, read_image(upload, what="photo").image.size))

    with gr.Blocks() as demo:
        inp, out = UploadImage(), gr.Textbox()
        gr.Button().click(size_of, inp, out, api_name="size")
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        corrupt = tmp_path / "photo.jpg"
        corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        with pytest.raises(AppError, match="could not be read as an image"):
            client.predict(handle_file(str(corrupt)), api_name="/size")
        Image.new("LA", (64, 48)).save(tmp_path / "ok.png")
        assert client.predict(handle_file(str(tmp_path / "ok.png")), api_name="/size") == "64x48"
    finally:
        demo.close()


def test_browser_visits_every_tab_and_reads_the_unpooling(running_app, tmp_path):
    """Headless Chromium, as a student would: open the app, visit each tab, run the lab."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(running_app)
        for title in [m.TITLE for m in app.panels()] + ["About", lab.TITLE]:
            page.get_by_role("tab", name=title, exact=True).click()
            page.wait_for_timeout(300)
        page.locator("#lab-unpool-button").click()
        page.locator("#lab-maxunpool table").wait_for(timeout=30_000)
        rows = page.locator("#lab-maxunpool tr").all()
        assert [[td.inner_text() for td in row.locator("td").all()] for row in rows] == UNPOOLED
        # An upload through the browser reaches a panel (UploadImage renders as an image box).
        Image.new("RGB", (320, 240), (200, 60, 30)).save(tmp_path / "photo.png")
        page.get_by_role("tab", name="Instances", exact=True).click()
        page.locator("#roi-photo input[type=file]").set_input_files(str(tmp_path / "photo.png"))
        page.wait_for_timeout(1500)  # the upload event fills in a default box
        page.locator("#roi-button").click()
        page.get_by_text("RoI Align (cyan) keeps the box exact").wait_for(timeout=60_000)
        browser.close()


def test_a_too_big_upload_is_refused_before_it_is_stored(running_app):
    limit = MAX_UPLOAD_MB * 1024**2
    with httpx.Client(base_url=running_app, timeout=60) as http:
        refused = http.post("gradio_api/upload", files={"files": ("huge.png", b"\0" * (limit + 1), "image/png")})
        assert refused.status_code == 413 and "maximum allowed size" in refused.text
        fine = http.post("gradio_api/upload", files={"files": ("small.png", b"\0" * 1000, "image/png")})
        assert fine.status_code == 200 and len(fine.json()) == 1


def test_uploads_results_and_session_galleries_do_not_outlive_the_hour():
    """Gradio deletes the app's cached files (uploads, result pictures: faces among them) older than the age,
    checked every sweep, so none is kept an hour; a closed tab runs the Faces panel's unload (its gallery)."""
    demo = app.build_app()
    sweep, age = demo.delete_cache
    assert sweep + age <= 3600
    unloads = [fn for fn in demo.fns.values() if any(target[1] == "unload" for target in fn.targets)]
    assert [fn.fn for fn in unloads] == [faces.unload] and faces.unload is face_galleries.end_session


def _files_under(folder) -> set[str]:
    return {os.path.join(root, f) for root, _, files in os.walk(folder) for f in files}


def test_sigterm_stops_the_app_cleanly_and_leaves_no_visitor_file(shared, tmp_path):
    """Spaces and containers stop an app with SIGTERM: the real app, asked to segment an upload and to enrol a
    face, must then exit with status 0 and leave neither the upload, the result nor the session gallery (0600 in
    a 0700 folder while it lives) in its temp folder, where the next instance would serve them."""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", TMPDIR=str(tmp_path))
    with open(tmp_path.parent / f"{tmp_path.name}-app.log", "w") as log:
        proc, url = start_app([sys.executable, "app.py", "--device", "cpu", "--weights-dir",
                               str(shared / "weights")], env, log)
        try:
            before = _files_under(tmp_path)
            client = Client(url, verbose=False)
            street = shared / "data" / "camvid" / "val" / "0016E5_07971.jpg"
            client.predict(handle_file(str(street)), "enet-camvid", 0.6, api_name="/segment")
            face = shared / "data" / "faces" / "gallery_and_queries" / "train" / "obama" / "obama.jpg"
            client.predict("Ada", [handle_file(str(face))], "dlib", api_name="/enroll")
            left = _files_under(tmp_path) - before
            galleries = tmp_path / "cvhub-galleries"
            assert [f for f in left if f.endswith(".db")] and os.stat(galleries).st_mode & 0o777 == 0o700
            assert all(os.stat(f).st_mode & 0o777 == 0o600 for f in left if str(galleries) in f)
            assert any("0016E5_07971" in f for f in left) and any(f.endswith(".png") for f in left), left
        finally:
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=60)
    assert status == 0
    assert not [f for f in left if os.path.exists(f)], (sorted(left), _files_under(tmp_path))


def _enrol(page, name: str, photo) -> None:
    """On the Faces tab: open Recognition, enrol ``photo`` as ``name`` and wait for the status to say so."""
    page.get_by_role("tab", name="Recognition", exact=True).click()
    page.locator("#faces-name textarea, #faces-name input").first.fill(name)
    page.locator("#faces-photos input[type=file]").set_input_files(str(photo))
    page.wait_for_timeout(1000)
    page.locator("#faces-enroll").click()
    page.locator("#faces-status").get_by_text("Enrolled").wait_for(timeout=120_000)


def test_browser_enrols_clears_the_form_keeps_the_gallery_on_failure_and_forgets_it_with_the_tab(running_app, shared):
    """The Faces panel as a student meets it: enrol a face, fail an enrolment, close the tab; the gallery's
    file lives exactly as long as the tab."""
    sessions = os.path.join(tempfile.gettempdir(), "cvhub-galleries", "session-*.db")
    before = set(glob.glob(sessions))
    photo = shared / "data" / "faces" / "gallery_and_queries" / "train" / "obama" / "obama.jpg"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(running_app)
        page.get_by_role("tab", name="Faces", exact=True).click()
        name = "Ada <b>L</b> http://2130706433:8765/x.y"  # markup and a web address: both must stay plain text
        _enrol(page, name, photo)
        assert page.locator("#faces-name textarea, #faces-name input").first.input_value() == ""  # a fresh form
        people = page.locator("#faces-people")
        assert name in people.inner_text()  # the name as typed: text, not markup
        status = page.locator("#faces-status")
        assert f"Enrolled {name} with 1 new face(s)." in status.inner_text()  # no stray backslash either
        assert status.locator("a").count() == 0  # no live link
        mine = set(glob.glob(sessions)) - before
        assert len(mine) == 1  # this tab's own gallery file
        page.locator("#faces-enroll").click()  # no name, no photo: fails with its sentence
        page.get_by_text("Please upload at least one photo").first.wait_for(timeout=60_000)
        page.wait_for_timeout(500)
        assert name in people.inner_text() and "Error" not in people.inner_text()
        assert "Enrolled" not in status.inner_text()  # the failure is not read as the last success
        page.close()  # the tab closes: demo.unload deletes its gallery
        deadline = time.monotonic() + 60
        while any(os.path.exists(f) for f in mine) and time.monotonic() < deadline:
            time.sleep(0.5)
        browser.close()
    assert not any(os.path.exists(f) for f in mine)


def test_browser_faces_and_visualize_answer_where_the_student_looks(running_app, shared):
    """At 1280 x 800: the verdict shows beside the Verify button without scrolling; a failed enrolment leaves the
    thumbnails and the person list as they were; FaceNet (no weights here) is named, not offered; the triplet's
    aligned crops show whole faces; the first layer shown is conv3_1 and the 9 units of a patch page show whole,
    in no scroll box; the About table's last column is on screen. At 390 x 844 the verdict sits right under the
    button."""
    faces_dir = shared / "data" / "faces" / "gallery_and_queries"
    obama, obama1 = faces_dir / "train" / "obama" / "obama.jpg", faces_dir / "test" / "obama1.jpg"
    biden = faces_dir / "train" / "biden" / "biden.jpg"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(running_app)
        page.get_by_role("tab", name="Faces", exact=True).click()
        assert "py-feat/facenet" in page.locator("#faces-facenet-missing").inner_text()
        assert page.get_by_role("radio", name="facenet").count() == 0
        page.locator("#faces-photo1 input[type=file]").set_input_files(str(obama))
        page.locator("#faces-photo2 input[type=file]").set_input_files(str(obama1))
        page.wait_for_timeout(1500)
        page.locator("#faces-verify").click()
        verdict = page.locator("#faces-verdict")
        verdict.get_by_text("Same person").wait_for(timeout=120_000)
        box = verdict.get_by_text("Same person").bounding_box()
        assert page.evaluate("window.scrollY") == 0 and box["y"] + box["height"] <= 800
        assert "wall time on a shared CPU" in verdict.inner_text()
        # A photo with no face: the error, and no longer the verdict it cannot stand for.
        page.locator("#faces-photo2 input[type=file]").set_input_files(str(REPO / "spaces/examples/cup-coffee.jpg"))
        page.wait_for_timeout(1500)
        page.locator("#faces-verify").click()
        page.get_by_text("No face", exact=False).first.wait_for(timeout=120_000)
        assert "Same person" not in verdict.inner_text()

        _enrol(page, "Barack", obama)
        page.locator("#faces-enroll").click()  # no name, no photo: fails with its sentence
        page.get_by_text("Please upload at least one photo").first.wait_for(timeout=60_000)
        page.wait_for_timeout(500)
        for untouched in ("#faces-people", "#faces-thumbs", "#faces-person"):
            assert "Error" not in page.locator(untouched).inner_text(), untouched
        assert page.locator("#faces-thumbs img").count() == 1

        page.get_by_role("tab", name="Triplet loss", exact=True).click()
        for name, photo in (("anchor", obama), ("positive", obama1), ("negative", biden)):
            page.locator(f"#triplet-{name} input[type=file]").set_input_files(str(photo))
        page.wait_for_timeout(1500)
        page.locator("#triplet-button").click()
        crops = page.locator("#triplet-crops img")
        crops.nth(2).wait_for(timeout=120_000)
        frame = page.locator("#triplet-crops").bounding_box()
        for k in range(3):  # each aligned crop shows whole, not its eye band
            crop = crops.nth(k).bounding_box()
            assert frame["y"] <= crop["y"] and crop["y"] + crop["height"] <= frame["y"] + frame["height"]

        page.get_by_role("tab", name="What a network learns", exact=True).click()
        assert page.locator("#vis-layer input").first.input_value() == "conv3_1"
        assert "4 more model(s)" in page.locator("#vis-missing").inner_text()
        page.locator("#vis-patches-button").click()
        sheet = page.locator("#vis-patches img")
        sheet.wait_for(timeout=180_000)
        page.wait_for_function("document.querySelector('#vis-patches img').complete")
        frame = page.locator("#vis-patches").bounding_box()
        shown = sheet.bounding_box()
        assert shown["y"] + shown["height"] <= frame["y"] + frame["height"]  # the whole page of units, no scroll
        assert page.locator("#vis-patches").evaluate("e => e.scrollHeight <= e.clientHeight + 1")

        page.get_by_role("tab", name="About", exact=True).click()
        last_header = page.locator("#about-models th").last
        last_header.wait_for()
        right = last_header.bounding_box()
        assert "available here" in last_header.inner_text() and right["x"] + right["width"] <= 1280

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(running_app)
        phone.get_by_role("button", name="More tabs").click()  # a phone shows two tabs, the rest in a menu
        phone.locator(".overflow-dropdown button", has_text="Faces").click()
        button = phone.locator("#faces-verify").bounding_box()
        under = phone.locator("#faces-verdict").bounding_box()
        assert 0 <= under["y"] - (button["y"] + button["height"]) < 40
        browser.close()


def test_browser_first_minutes_stop_keeps_the_result_and_results_are_in_view(running_app, shared, tmp_path):
    """A student's first minutes at 1280x800 and 390x844: Stop ends a style run with its image, curve and a
    "Stopped at step k" (no error pills); the result is large; the model comparison shows all four models with
    their times; on a phone the Segment result comes right after the button; no Keypoints box without its model."""
    street = tmp_path / "street.png"
    Image.open(shared / "data" / "camvid" / "val" / "0016E5_08143.jpg").save(street)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(running_app)
        page.get_by_role("tab", name="Style transfer", exact=True).click()
        page.locator("tbody tr:visible").first.click()  # the first example pair
        for label, value in (("steps", "300"), ("size (longest side, px)", "64")):
            number = page.get_by_label(f"number input for {label}")
            number.fill(value)
            number.press("Enter")
        page.locator("#style-run").click()
        page.locator("#style-status").get_by_text("Step ").wait_for(timeout=120_000)
        page.locator("#style-output img").wait_for(timeout=120_000)
        page.locator("#style-stop").click()
        page.locator("#style-status").get_by_text("Stopped at step").wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        assert page.locator("#style-output, #style-plot").get_by_text("Error").count() == 0
        shown = page.locator("#style-output img").bounding_box()
        assert shown["width"] >= 400 and shown["height"] >= 400  # a 64 px result, shown large
        ticks = page.evaluate("() => [...document.querySelectorAll('#style-plot text')].map(t => t.textContent)")
        steps = ticks[:ticks.index("step")]
        assert steps and all(re.fullmatch(r"\d+", t) for t in steps), ticks  # whole steps on the axis

        page.get_by_role("tab", name="Instances", exact=True).click()
        assert page.locator("#det-keypoints").count() == 0  # the tests run offline, without Keypoint R-CNN
        assert "Keypoints" in page.locator("#det-keypoints-note").inner_text()

        page.get_by_role("tab", name="Segmentation", exact=True).click()
        page.locator("#seg-photo input[type=file]").set_input_files(str(street))
        page.wait_for_timeout(1000)
        page.get_by_text("Compare models").click()
        for name in ("enet-camvid", "fcn8s-vgg19-camvid", "segnet-vgg19-camvid", "unet-vgg19-camvid"):
            page.get_by_label(name).check()
        page.locator("#seg-compare-button").click()
        page.locator("#seg-compare-note").get_by_text("wall time").wait_for(timeout=300_000)
        gallery = page.locator("#seg-compare-gallery")
        gallery.scroll_into_view_if_needed()
        captions = gallery.locator(".caption-label")
        assert sorted(c.split(":")[0] for c in captions.all_inner_texts()) == [
            "enet-camvid", "fcn8s-vgg19-camvid", "segnet-vgg19-camvid", "unet-vgg19-camvid"]
        assert all(re.search(r": \d+ ms / frame \(PyTorch fp32\)$", c) for c in captions.all_inner_texts())
        for caption in captions.all():  # all four in the window at once, none scrolled away inside the gallery
            box = caption.bounding_box()
            assert 0 <= box["y"] and box["y"] + box["height"] <= 800 and box["x"] + box["width"] <= 1280

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(running_app)
        button, result = phone.locator("#seg-button").bounding_box(), phone.locator("#seg-result").bounding_box()
        below = phone.get_by_text("Compare models").first.bounding_box()  # the accordion below both columns
        assert button["y"] < result["y"] < button["y"] + button["height"] + 100 and result["y"] < below["y"]
        browser.close()


#: Collects every error toast and error pill that Gradio shows, even one that fades before the test looks.
_WATCH_ERRORS = """
window.__cvhubErrors = [];
new MutationObserver(() => {
  for (const e of document.querySelectorAll('.toast-body.error, [data-testid="status-tracker"] span.error')) {
    const text = e.textContent.trim();
    if (text && !e.dataset.seen) { e.dataset.seen = '1'; window.__cvhubErrors.push(text); }
  }
}).observe(document, {childList: true, subtree: true, characterData: true});
"""

#: The tabs in order, with the id their content carries (app.build_app) and the element that shows their answer.
FIRST_ANSWERS = (("Segmentation", "segmentation", "#seg-result"), ("Building blocks", "lab", "#lab-maxunpool"),
                 ("Instances", "instances", "#det-view"), ("Faces", "faces", "#faces-verdict"),
                 ("Style transfer", "style", "#style-output"), ("What a network learns", "visualize", "#vis-patches"),
                 ("About", "about", "#about-models"))


def open_tab(page, title: str) -> None:
    """Click the tab ``title``; a narrow window keeps some tabs in the "More tabs" menu."""
    page.get_by_role("tab").first.wait_for()
    tab = page.get_by_role("tab", name=title, exact=True)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
    else:
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown button", has_text=title).first.click()
    page.wait_for_timeout(300)


def _press(button) -> None:
    """Click a tab's main button with the page scrolled to show it mid-window, the same wherever the page was."""
    button.evaluate("e => e.scrollIntoView({block: 'center'})")
    button.click()


def _first_example(page, shown: str) -> None:
    """Click the first example of the open tab and wait until the picture ``shown`` of its inputs shows."""
    page.locator("button.gallery-item:visible, tr.tr-body:visible").first.click()
    page.locator(shown).first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)


def first_answer(page, title: str, style: tuple[int, int] = (5, 64), timeout_ms: int = 120_000):
    """What a new student does first on the tab ``title`` (open it; click its first example where it has examples;
    press its main button) -> the locator of the answer,
    once it shows. ``style``: the style transfer's steps and size (px). Shared with docs/screenshots.py."""
    open_tab(page, title)
    if title == "Segmentation":
        _first_example(page, "#seg-photo img")
        _press(page.locator("#seg-button"))
        page.locator("#seg-result img").wait_for(timeout=timeout_ms)
        page.locator(".seg-legend").wait_for(timeout=timeout_ms)
    elif title == "Building blocks":
        _press(page.locator("#lab-unpool-button"))
        page.locator("#lab-maxunpool table").wait_for(timeout=timeout_ms)
    elif title == "Instances":
        _first_example(page, "#det-photo img")  # the Porlamar street: cars and people for every model
        _press(page.locator("#det-button"))
        page.locator("#det-info").get_by_text("ms per image").wait_for(timeout=timeout_ms)
        page.locator("#det-view img").wait_for(timeout=timeout_ms)
    elif title == "Faces":
        _first_example(page, "#faces-photo2 img")
        _press(page.locator("#faces-verify"))
        page.locator("#faces-verdict").get_by_text("wall time").wait_for(timeout=timeout_ms)
    elif title == "Style transfer":
        _first_example(page, ".block:has([data-testid=block-label]:text-is('Style image S')) img")
        for label, value in (("steps", style[0]), ("size (longest side, px)", style[1])):
            number = page.get_by_label(f"number input for {label}")
            number.fill(str(value))
            number.press("Enter")
        _press(page.locator("#style-run"))
        page.locator("#style-status").get_by_text("Done").wait_for(timeout=timeout_ms)
        page.locator("#style-output img").wait_for(timeout=timeout_ms)
    elif title == "What a network learns":
        _press(page.locator("#vis-patches-button"))
        page.locator("#vis-patches img").wait_for(timeout=timeout_ms)
        page.wait_for_function("document.querySelector('#vis-patches img').complete", timeout=timeout_ms)
    elif title == "About":
        _press(page.locator("button:visible", has_text="Refresh").first)
        page.locator("#about-models th").last.wait_for(timeout=timeout_ms)
    else:
        raise ValueError(f"no first steps for the tab {title!r}")
    page.wait_for_timeout(500)
    return page.locator(dict((t, r) for t, _, r in FIRST_ANSWERS)[title])


def _sky_above_the_roofs(page, answer) -> float:
    """The share of the clear sky above the shops of the Porlamar example (left of the dome, the box drawn by eye)
    that the shown overlay labels Sky. The overlay is opacity * class colour + (1 - opacity) * photo, so the class
    colour comes back exactly from the shown PNG and the example's own pixels."""
    src = answer.locator("img").get_attribute("src")
    shown = Image.open(io.BytesIO(httpx.get(urljoin(page.url, src), timeout=30).content)).convert("RGB")
    photo = Image.open(street_examples()[0][0]).convert("RGB")
    assert shown.size == photo.size, (shown.size, photo.size)
    w, h = photo.size
    box = (round(0.24 * w), round(0.03 * h), round(0.52 * w), round(0.28 * h))
    opacity = 0.6  # the panel's default
    colour = (np.asarray(shown.crop(box), float) - (1 - opacity) * np.asarray(photo.crop(box), float)) / opacity
    nearest = np.linalg.norm(colour[..., None, :] - np.asarray(CAMVID_COLORS, float), axis=-1).argmin(-1)
    return float((nearest == CAMVID_CLASSES.index("Sky")).mean())


def _check_first_answer(page, title: str, answer) -> str | None:
    """What is wrong with the answer ``first_answer`` gave on the tab ``title`` (None when it is right)."""
    if title == "Segmentation":
        shares = {row.locator("td").nth(1).inner_text(): row.locator("td").nth(2).inner_text()
                  for row in page.locator(".seg-legend tr").all()[1:]}
        if not all(re.fullmatch(r"\d+\.\d %", shares.get(c, "")) and float(shares[c][:-2]) > 0
                   for c in ("Road", "Car", "Sky")):
            return f"the legend lacks Road, Car or Sky with a share above 0: {shares}"
        sky = _sky_above_the_roofs(page, answer)
        if sky < 0.6:
            return f"only {100 * sky:.0f} % of the blue sky above Porlamar's roofs is labelled Sky"
        page.locator("#seg-flip input").check()  # ticking test-time flip segments again, and says so
        try:
            page.locator("#seg-info").get_by_text("with test-time flip").wait_for(timeout=60_000)
        except PlaywrightTimeout:
            return f"ticking test-time flip gave no new answer: {page.locator('#seg-info').inner_text()[:120]!r}"
        page.locator("#seg-scales input").check()  # and so does ticking test-time scales
        try:
            page.locator("#seg-info").get_by_text("with test-time scales").wait_for(timeout=60_000)
        except PlaywrightTimeout:
            return f"ticking test-time scales gave no new answer: {page.locator('#seg-info').inner_text()[:120]!r}"
    elif title == "Building blocks":
        cells = [[td.inner_text() for td in row.locator("td").all()] for row in answer.locator("tr").all()]
        if cells != UNPOOLED:
            return f"max-unpooled grid {cells}"
    elif title == "Instances":
        info = page.locator("#det-info").inner_text()
        if not re.search(r"\d+ car", info):
            return f"the model should find a car on the Porlamar street; it says: {info[:120]!r}"
    elif title == "Faces":
        if "Same person" not in answer.inner_text():
            return f"verdict {answer.inner_text()[:80]!r}"
    elif title == "Style transfer":
        if "Done" not in page.locator("#style-status").inner_text():
            return f"status {page.locator('#style-status').inner_text()[:80]!r}"
    elif title == "What a network learns":
        shown = answer.locator("img").bounding_box()
        if not (shown and shown["width"] > 100 and shown["height"] > 100):
            return f"the sheet of patches shows at {shown}"
    elif title == "About":
        if "available here" not in answer.locator("th").last.inner_text():
            return "the model table has no 'available here' column"
    return None


def test_browser_every_tab_first_example_answers_in_view(running_app):
    """At 1280x800, each tab as a new student meets it: its first example (or its defaults where it has none) and
    its main button give the right answer, on screen after the click (the answer's top in the window, with the
    button scrolled to mid-window), with no error toast or pill on the way. Segmentation and Instances start from
    the Porlamar street (Segmentation: Road, Car and Sky in the legend, the blue sky above the roofs labelled Sky;
    Instances, offline the road-scene Mask R-CNN alone: a car). Every tab is tried; the failures are listed
    together."""
    assert [t for t, _, _ in FIRST_ANSWERS] == [m.TITLE for m in app.panels()] + ["About"]
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.add_init_script(_WATCH_ERRORS)
        page.goto(running_app)
        for title, _, _ in FIRST_ANSWERS:
            answer = first_answer(page, title)
            box = answer.bounding_box()
            if not (box and 0 <= box["y"] <= 800 - 100):  # its top, and the first 100 px of it, in the window
                problems.append(f"{title}: the answer's top is out of view after the click: {box}")
            errors = page.evaluate("window.__cvhubErrors.splice(0)")
            if errors:
                problems.append(f"{title}: error toast or pill: {errors}")
            wrong = _check_first_answer(page, title, answer)
            if wrong:
                problems.append(f"{title}: {wrong}")
        browser.close()
    assert not problems, "\n".join(problems)
