import json
import re

import numpy as np
import pytest
from PIL import Image

from vqcodec.cli import main
from vqcodec.viewer import Variant, compare, largest_under, page, viewer_html

from . import browser
from .conftest import smooth_image


def test_largest_under_finds_the_largest_setting_that_fits():
    def size(setting: float) -> bytes:
        return bytes(int(10 * setting))

    assert largest_under(size, 1, 95, 333, integer=True) == 33
    assert largest_under(size, 1, 95, 5, integer=True) == 1  # nothing fits: the smallest
    assert largest_under(size, 1, 95, 10_000, integer=True) == 95
    found = largest_under(size, 0.01, 8.0, 41, integer=False)
    assert len(size(found)) <= 41 and found > 4.0


@pytest.fixture(scope="module")
def variants(tiny_weights) -> list[Variant]:
    img = Image.fromarray(smooth_image(96, 128))
    return compare(img, ["vq", "webp", "jpeg", "avif", "jpeg2000"], model=tiny_weights)


def test_classical_codecs_are_at_or_under_the_vq_file_size(variants):
    original, vq, *classical = variants
    assert original.key == "original" and original.bytes is None and vq.key == "vq"
    assert [v.key for v in classical] == ["webp", "jpeg", "avif", "jpeg2000"]
    for v in classical:
        assert v.bytes <= vq.bytes or v.over_budget, v.label
        assert v.image.size == (128, 96) and 0 < v.ms_ssim <= 1 and v.psnr > 10
        assert v.bpp == pytest.approx(8 * v.bytes / (128 * 96))


def test_compare_refuses_unknown_codecs(tiny_weights):
    with pytest.raises(ValueError, match="unknown codec"):
        compare(Image.fromarray(smooth_image(16, 16)), ["vq", "gif"], model=tiny_weights)


def test_the_page_is_self_contained(variants):
    html = page(variants, "t")
    assert not re.search(r"(src|href)=\"(?!data:)", html)
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert html.count("data:image/png;base64,") == len(variants)
    data = json.loads(re.search(r'class="vqv-data">(.*?)</script>', html).group(1))
    assert [s["key"] for s in data["stats"]] == [v.key for v in variants]
    assert '<option value="webp" selected>' in viewer_html(variants)  # vq against the first classical codec


def test_compare_command_writes_one_page(capsys, tmp_path, tiny_weights):
    photo = tmp_path / "photo.png"
    Image.fromarray(smooth_image(64, 80)).save(photo)
    with pytest.raises(SystemExit) as done:
        main(["compare", str(photo), "--codecs", "vq,webp,jpeg", "--model", tiny_weights, "--out", str(tmp_path / "c")])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["photo.html"] and "WebP" in out


def browser_or_skip() -> None:
    why = browser.available()
    if why and __import__("os").environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {why}")
    if why:
        pytest.skip(why)


def test_the_viewer_in_a_real_browser(variants, tmp_path):
    browser_or_skip()
    path = tmp_path / "page.html"
    path.write_text(page(variants, "browser test"))
    with browser.chromium(1000, 800) as driver:
        driver.get(path.as_uri())
        widths = driver.execute_script("return [...document.images].map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == len(variants) + 2 and all(w == 128 for w in widths)

        view = driver.find_element("css selector", ".viewer")
        # a point right of the middle, on the image (centred in the viewer): the right image shows
        x = view.location["x"] + view.size["width"] / 2 + 40
        y = view.location["y"] + view.size["height"] / 2
        shown = "return document.elementFromPoint(arguments[0], arguments[1]).closest('.layer').className"
        assert driver.execute_script(shown, x, y) == "layer b"
        browser.drag_split(driver, 0.9)
        assert driver.execute_script(shown, x, y) == "layer a"

        transform = "return getComputedStyle(document.querySelector('.layer.a img')).transform"
        scale = driver.execute_script(transform)
        for zoom in ("4", "2", "1"):
            driver.find_element("css selector", f'button[data-zoom="{zoom}"]').click()
            assert view.get_attribute("data-zoom") == zoom
            matrix = driver.execute_script(transform)
            assert float(matrix.split("(")[1].split(",")[0]) == pytest.approx(float(zoom))
        assert scale.startswith("matrix(1,")

        driver.find_element("css selector", "select.b").send_keys("original")
        assert driver.find_element("css selector", ".tag.right").text == "original"
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors


def test_every_variant_decodes_to_the_original_size(variants):
    assert {np.asarray(v.image).shape for v in variants} == {(96, 128, 3)}
