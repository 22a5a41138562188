"""Side-by-side comparison of vqcodec against classical codecs on one photo, at equal file size.

``compare`` codes a photo with vqcodec, then searches each classical codec's quality for the
largest file at or under the vq file's bytes, decodes everything and measures it (whole-file
rate, PSNR and MS-SSIM on the full image). ``page`` turns the result into one self-contained
HTML page, with no network access: every image is embedded, and the viewer (a draggable split
between any two images, zoom at 1x, 2x and 4x with panning) is inline CSS and JavaScript.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vqcodec.evaluation import CLASSICAL, ms_ssim, pillow_codec, psnr
from vqcodec.format import unpack

SEARCH_STEPS = 14  # bisection steps of JPEG 2000's continuous rate (1/16000 of the range)


@dataclass
class Variant:
    """One image of the comparison: the original or a codec's decoded file."""

    key: str  # a short identifier: "original", "vq", "webp", ...
    label: str  # what the page shows, e.g. "WebP q=37"
    image: Image.Image
    bytes: int | None = None
    bpp: float | None = None
    psnr: float | None = None
    ms_ssim: float | None = None
    over_budget: bool = False  # the codec cannot make a file as small as the budget

    def stats(self) -> dict:
        """The numbers the page shows (JSON-ready)."""
        keys = ("key", "label", "bytes", "bpp", "psnr", "ms_ssim", "over_budget")
        return {k: getattr(self, k) for k in keys}


def measured(key: str, label: str, original: Image.Image, data: bytes, decoded: Image.Image) -> Variant:
    """A decoded file, measured against the original (full image, whole-file rate)."""
    a, b = np.asarray(original), np.asarray(decoded.convert("RGB"))
    bpp = 8 * len(data) / (original.width * original.height)
    return Variant(key, label, decoded.convert("RGB"), len(data), bpp, psnr(a, b), ms_ssim(a, b))


def largest_under(encode: Callable[[float], bytes], lo: float, hi: float, budget: int, integer: bool) -> float:
    """The largest setting in [lo, hi] whose file is at most ``budget`` bytes, assuming the size
    grows with the setting (``lo`` when none fits). Bisection: integers exactly, floats to
    ``SEARCH_STEPS`` halvings."""
    if integer:
        lo, hi = int(lo), int(hi)
        best = lo
        while lo <= hi:
            mid = (lo + hi) // 2
            if len(encode(mid)) <= budget:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        return best
    if len(encode(lo)) > budget:
        return lo
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if len(encode(mid)) <= budget else (lo, mid)
    return lo


# codec -> (Pillow format, display name, setting range, integer setting?, options of a setting);
# the fixed options (WebP method 6, AVIF speed 6, ...) are the evaluation's, in CLASSICAL
SEARCHES: dict[str, tuple[str, str, tuple[float, float], bool, Callable[[float], dict]]] = {
    "jpeg": ("JPEG", "JPEG", (1, 95), True, lambda q: {"quality": int(q)}),
    "webp": ("WEBP", "WebP", (0, 100), True, lambda q: {"quality": int(q)}),
    "avif": ("AVIF", "AVIF", (0, 100), True, lambda q: {"quality": int(q)}),
    # JPEG 2000's rate control takes a compression ratio: search the rate, 24 bits per pixel / ratio
    "jpeg2000": ("JPEG2000", "JPEG 2000", (0.005, 8.0), False, lambda bpp: {"quality_layers": [24 / bpp]}),
}


def at_size(img: Image.Image, codec: str, budget: int) -> Variant:
    """A classical codec's decoded file at the largest quality whose file is at most ``budget`` bytes."""
    fmt, name, (lo, hi), integer, options = SEARCHES[codec]
    fixed = CLASSICAL[codec][3]

    def encode(setting: float) -> bytes:
        return pillow_codec(fmt, **fixed, **options(setting))[0](img)

    setting = largest_under(encode, lo, hi, budget, integer)
    data = encode(setting)
    decoded = pillow_codec(fmt)[1](data)
    label = f"{name} q={setting}" if integer else f"{name} {setting:.3f} bpp target"
    variant = measured(codec, label, img, data, decoded)
    variant.over_budget = len(data) > budget
    return variant


def compare(
    img: Image.Image,
    codecs: list[str],
    quality: int | None = None,
    target_bpp: float | None = None,
    model: str | None = None,
) -> list[Variant]:
    """The original, vqcodec's file (at ``quality`` or ``target_bpp``) and each classical codec
    at the largest quality whose file is at most as large as vqcodec's."""
    import vqcodec

    img = img.convert("RGB")
    data = vqcodec.compress(img, quality=quality, model=model, target_bpp=target_bpp)
    header = unpack(data)[0]
    decoded = vqcodec.decompress(data, model=model)
    variants = [
        Variant("original", "original", img),
        measured("vq", f"vqcodec {header.family} q{header.quality}", img, data, decoded),
    ]
    unknown = [c for c in codecs if c not in SEARCHES and c != "vq"]
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(unknown)} (choose from vq, {', '.join(SEARCHES)})")
    return variants + [at_size(img, c, len(data)) for c in codecs if c != "vq"]


def data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


VIEWER_CSS = """
.vqv{--accent:#5aa9ff;color:#e8e8e8;background:#121418;padding:10px 14px;border-radius:10px;
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
.vqv .controls{display:flex;flex-wrap:wrap;gap:10px 18px;align-items:center;margin:10px 0}
.vqv label{color:#aab}
.vqv select,.vqv button{background:#262a33;color:#eee;border:1px solid #3b4150;border-radius:6px;
  padding:5px 10px;font:inherit;cursor:pointer}
.vqv button.active{background:var(--accent);border-color:var(--accent);color:#081018;font-weight:600}
.vqv .viewer{position:relative;overflow:hidden;background:#000 repeating-conic-gradient(#1b1d22 0 25%,#15171b 0 50%)
  50%/24px 24px;border-radius:8px;cursor:grab;user-select:none;touch-action:none;max-width:100%}
.vqv .viewer.panning{cursor:grabbing}
.vqv .layer{position:absolute;top:0;left:0;height:100%;overflow:hidden}.vqv .layer.b{width:100%}
.vqv .layer img{position:absolute;top:0;left:0;transform-origin:0 0;max-width:none;pointer-events:none}
.vqv .viewer.zoomed .layer img{image-rendering:pixelated}
.vqv .handle{position:absolute;top:0;bottom:0;width:28px;margin-left:-14px;cursor:ew-resize;z-index:3}
.vqv .handle::before{content:"";position:absolute;left:13px;top:0;bottom:0;width:2px;background:#fff;
  box-shadow:0 0 6px rgba(0,0,0,.8)}
.vqv .handle::after{content:"\\2194";position:absolute;left:1px;top:50%;width:26px;height:26px;margin-top:-13px;
  border-radius:50%;background:#fff;color:#111;font-size:16px;line-height:26px;text-align:center;
  box-shadow:0 1px 6px rgba(0,0,0,.6)}
.vqv .tag{position:absolute;top:10px;z-index:2;padding:3px 9px;border-radius:5px;background:rgba(10,12,16,.72);
  pointer-events:none;font-size:13px;white-space:nowrap}
.vqv .tag.left{left:10px}.vqv .tag.right{right:10px}
.vqv table{border-collapse:collapse;margin:14px 0;font-size:13px;font-variant-numeric:tabular-nums}
.vqv td,.vqv th{padding:5px 12px;border:0;border-bottom:1px solid #2c313b;text-align:right}
.vqv td:first-child,.vqv th:first-child{text-align:left}
.vqv tr.shown td{color:#fff;background:#1e2633}
.vqv .note{color:#99a;font-size:12px}
.vqv .pool{display:none}
"""

VIEWER_JS = """
(function(){
const root=document.currentScript.parentElement, V=JSON.parse(root.querySelector('.vqv-data').textContent);
const $=s=>root.querySelector(s), view=$('.viewer'), la=$('.layer.a'), ia=$('.layer.a img'), ib=$('.layer.b img');
const handle=$('.handle'), pool={};
root.querySelectorAll('.pool img').forEach(im=>pool[im.dataset.key]=im);
const W=V.width, H=V.height;
let split=0.5, zoom=1, px=0, py=0, vw=0, vh=0;
function size(){
  vw=Math.min(root.clientWidth||W, Math.max(W, 480));
  vh=Math.max(160, Math.min(H, Math.round(window.innerHeight*0.72)));
  view.style.width=vw+'px'; view.style.height=vh+'px';
}
function clampPan(){
  const sw=W*zoom, sh=H*zoom;
  px = sw<=vw ? (vw-sw)/2 : Math.min(0, Math.max(vw-sw, px));
  py = sh<=vh ? (vh-sh)/2 : Math.min(0, Math.max(vh-sh, py));
}
function draw(){
  clampPan();
  const t='translate('+px+'px,'+py+'px) scale('+zoom+')';
  ia.style.transform=t; ib.style.transform=t;
  la.style.width=(split*vw)+'px'; handle.style.left=(split*vw)+'px';
  view.classList.toggle('zoomed', zoom>1); view.dataset.zoom=zoom;
}
function pick(){
  const a=$('select.a').value, b=$('select.b').value;
  ia.src=pool[a].src; ib.src=pool[b].src;
  $('.tag.left').textContent=V.names[a]; $('.tag.right').textContent=V.names[b];
  root.querySelectorAll('tr[data-key]').forEach(tr=>tr.classList.toggle('shown', [a,b].includes(tr.dataset.key)));
}
function setZoom(z){
  const cx=(vw/2-px)/zoom, cy=(vh/2-py)/zoom;
  zoom=z; px=vw/2-cx*z; py=vh/2-cy*z; draw();
  root.querySelectorAll('button[data-zoom]').forEach(b=>b.classList.toggle('active', +b.dataset.zoom===z));
}
let drag=null;
view.addEventListener('pointerdown', e=>{
  drag={mode: e.target===handle?'split':'pan', x:e.clientX, y:e.clientY, px:px, py:py};
  view.setPointerCapture(e.pointerId); if(drag.mode==='pan') view.classList.add('panning'); e.preventDefault();
});
view.addEventListener('pointermove', e=>{
  if(!drag) return;
  if(drag.mode==='split'){
    const r=view.getBoundingClientRect(); split=Math.min(1, Math.max(0, (e.clientX-r.left)/vw));
  } else { px=drag.px+e.clientX-drag.x; py=drag.py+e.clientY-drag.y; }
  draw();
});
const stop=()=>{drag=null; view.classList.remove('panning');};
view.addEventListener('pointerup', stop); view.addEventListener('pointercancel', stop);
root.querySelectorAll('button[data-zoom]').forEach(b=>b.addEventListener('click', ()=>setZoom(+b.dataset.zoom)));
root.querySelectorAll('select').forEach(s=>s.addEventListener('change', pick));
window.addEventListener('resize', ()=>{size(); draw();});
size(); pick(); setZoom(1);
})();
"""


def _fmt(value: float | int | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def viewer_html(variants: list[Variant], left: str = "vq", right: str | None = None) -> str:
    """The viewer as an HTML fragment (styles, images, script): a split between two images that
    the page's selects choose (at first ``left`` and ``right``, by default WebP, else the next
    classical codec there is), zoom 1x/2x/4x, panning by dragging, and each image's numbers."""
    keys = {v.key for v in variants}
    right = right or next((k for k in ("webp", "avif", "jpeg", "jpeg2000") if k in keys), "original")
    width, height = variants[0].image.size
    names = {v.key: v.label for v in variants}
    data = json.dumps({"width": width, "height": height, "names": names, "stats": [v.stats() for v in variants]})

    def options(selected: str) -> str:
        return "".join(
            f'<option value="{html.escape(v.key)}"{" selected" if v.key == selected else ""}>'
            f"{html.escape(v.label)}</option>"
            for v in variants
        )

    rows = "".join(
        f'<tr data-key="{html.escape(v.key)}"><td>{html.escape(v.label)}'
        f"{' (over budget: no smaller file possible)' if v.over_budget else ''}</td>"
        f"<td>{_fmt(v.bytes, ',')}</td><td>{_fmt(v.bpp, '.4f')}</td><td>{_fmt(v.psnr, '.2f')}</td>"
        f"<td>{_fmt(v.ms_ssim, '.4f')}</td></tr>"
        for v in variants
    )
    pool = "".join(
        f'<img data-key="{html.escape(v.key)}" alt="{html.escape(v.label)}" src="{data_uri(v.image)}">'
        for v in variants
    )
    first = next((v for v in variants if v.key == left), variants[1 % len(variants)])
    second = next((v for v in variants if v.key == right), variants[0])
    return f"""<div class="vqv"><style>{VIEWER_CSS}</style>
<div class="controls"><label>left <select class="a">{options(first.key)}</select></label>
<label>right <select class="b">{options(second.key)}</select></label>
<span><label>zoom</label> <button data-zoom="1">1x</button> <button data-zoom="2">2x</button>
<button data-zoom="4">4x</button></span>
<span class="note">drag the handle to move the split; drag the image to pan</span></div>
<div class="viewer"><div class="layer b"><img alt="right"></div><div class="layer a"><img alt="left"></div>
<div class="handle" title="drag to compare"></div><span class="tag left"></span><span class="tag right"></span></div>
<table><tr><th>image</th><th>bytes</th><th>bpp</th><th>PSNR (dB)</th><th>MS-SSIM</th></tr>{rows}</table>
<div class="pool">{pool}</div>
<script type="application/json" class="vqv-data">{data}</script>
<script>{VIEWER_JS}</script></div>"""


def page(variants: list[Variant], title: str, note: str = "") -> str:
    """A complete, self-contained HTML page around the viewer."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title>
<style>body{{margin:0;padding:18px 24px;background:#121418;color:#e8e8e8;font:14px/1.45 system-ui,sans-serif}}
h1{{font-size:20px;font-weight:600;margin:0 0 4px}}p{{color:#aab;margin:0 0 8px}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>
{viewer_html(variants)}
</body></html>"""
