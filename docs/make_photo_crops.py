"""Make docs/photos/*.png: what each model does to the photos people actually have.

    pip install scikit-image      # only for its public-domain / CC0 sample photos
    python docs/make_photo_crops.py [--out docs/photos] [--paper finescale-asid-x4]
                                    [--photo finescale-asid-x4-photo]

Three inputs, none from the evaluation sets (Set5, Set14, B100) or the training sets:

* ``jpeg``  -- scikit-image's ``coffee`` (CC0), reduced to a quarter and saved as a JPEG at
  quality 35, as a web page or a messenger would send it;
* ``noisy`` -- ``astronaut`` (NASA, public domain), reduced to a quarter with Gaussian sensor
  noise of sigma 10/255, as from a phone in dim light;
* ``scan``  -- ``rocket`` (NASA, public domain), reduced to a quarter, slightly blurred, with
  grey film grain, faded and yellowed, saved as a JPEG at quality 60, like an old print scan.

Each row shows one crop four times at x4: the source enlarged pixel for pixel (nearest
neighbour), a Lanczos enlargement (what any image viewer does), the paper-exact model and the
photo model. The small inputs are kept beside the crops (``*_input.png`` / ``.jpg``) so
that anyone can run them through ``finescale upscale`` themselves.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sr_core import Upscaler

CROP = 72  # low-resolution crop side; x4 gives 288-pixel panels


_FILES: dict[str, bytes] = {}  # the JPEG inputs exactly as made (not re-encoded)


def _jpeg(img: Image.Image, quality: int, name: str) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    _FILES[name] = buf.getvalue()
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _quarter(a: np.ndarray) -> Image.Image:
    im = Image.fromarray(a)
    return im.resize((im.width // 4, im.height // 4), Image.LANCZOS)


def busiest_corner(img: Image.Image) -> tuple[int, int]:
    """The corner of the CROP x CROP window with the most edges (of a smoothed copy, so that
    noise does not count): where the models differ most."""
    from PIL import ImageFilter

    grey = np.asarray(img.convert("L").filter(ImageFilter.GaussianBlur(1.5)), np.float32)
    gy, gx = np.gradient(grey)
    energy = np.hypot(gx, gy)
    best, corner = -1.0, (0, 0)
    for y in range(0, img.height - CROP + 1, 4):
        for x in range(0, img.width - CROP + 1, 4):
            e = float(energy[y:y + CROP, x:x + CROP].mean())
            if e > best:
                best, corner = e, (x, y)
    return corner


def inputs() -> dict[str, tuple[Image.Image, tuple[int, int], str]]:
    """name -> (the small input photo, crop corner (x, y) in it, caption)."""
    import skimage.data as data

    rng = np.random.default_rng(0)
    coffee = _jpeg(_quarter(data.coffee()), 35, "jpeg")
    astro = np.asarray(_quarter(data.astronaut()), dtype=np.float32)
    noisy = Image.fromarray(np.clip(astro + rng.normal(0, 10, astro.shape), 0, 255)
                            .round().astype(np.uint8))
    rocket = np.asarray(_quarter(data.rocket()).filter(_blur()), dtype=np.float32)
    grain = rng.normal(0, 7, rocket.shape[:2])[..., None]
    faded = 40 + 0.75 * rocket + grain
    faded *= np.array([1.0, 0.94, 0.78], np.float32)  # yellowed paper
    scan = _jpeg(Image.fromarray(np.clip(faded, 0, 255).round().astype(np.uint8)), 60, "scan")
    return {
        "jpeg": (coffee, busiest_corner(coffee), "Web JPEG (quality 35)"),
        "noisy": (noisy, (40, 10), "Phone photo in dim light (noise sigma 10)"),
        "scan": (scan, busiest_corner(scan), "Old print scan (blur, grain, fading, JPEG 60)"),
    }


def _blur() -> object:
    from PIL import ImageFilter

    return ImageFilter.GaussianBlur(0.8)


def _label(panel: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (panel.width, panel.height + 22), (250, 250, 250))
    out.paste(panel, (0, 22))
    ImageDraw.Draw(out).text((6, 5), text, fill=(20, 20, 20))
    return out


def row(src: Image.Image, corner: tuple[int, int], paper: Upscaler,
        photo: Upscaler) -> Image.Image:
    """Nearest | Lanczos | paper-exact | photo model, for one crop of ``src``."""
    x, y = corner
    # The models see a margin around the crop so that its borders are not tile borders.
    pad = 16
    box = (max(0, x - pad), max(0, y - pad), min(src.width, x + CROP + pad),
           min(src.height, y + CROP + pad))
    region = src.crop(box)
    ox, oy = (x - box[0]) * 4, (y - box[1]) * 4
    out_box = (ox, oy, ox + CROP * 4, oy + CROP * 4)
    crop = src.crop((x, y, x + CROP, y + CROP))
    size = (CROP * 4, CROP * 4)
    arr = np.asarray(region, dtype=np.float32) / 255.0

    def run(up: Upscaler) -> Image.Image:
        y_ = np.clip(np.asarray(up.upscale(arr), dtype=np.float32), 0, 1)
        return Image.fromarray((y_ * 255).round().astype(np.uint8)).crop(out_box)

    panels = [
        _label(crop.resize(size, Image.NEAREST), "source (pixels)"),
        _label(crop.resize(size, Image.LANCZOS), "Lanczos"),
        _label(run(paper), f"paper-exact: {paper.model.name}"),
        _label(run(photo), f"photo model (clean-up {_default_clean_up(photo)})"),
    ]
    sheet = Image.new("RGB", (sum(p.width for p in panels) + 6 * 3, panels[0].height), "white")
    left = 0
    for p in panels:
        sheet.paste(p, (left, 0))
        left += p.width + 6
    return sheet


def _default_clean_up(up: Upscaler) -> str:
    from sr_core import catalog

    for e in catalog.entries():
        if e.kind == "photo" and e.clean_up is not None and e.scale == up.model.scale:
            return f"{e.clean_up:g}"
    return "1"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "photos"))
    ap.add_argument("--paper", default="finescale-asid-x4")
    ap.add_argument("--photo", default="finescale-asid-x4-photo")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paper = Upscaler(args.paper, device="cpu", precision="fp32", tile=0)
    photo = Upscaler(args.photo, device="cpu", precision="fp32", tile=0)  # its default clean-up
    for name, (src, corner, caption) in inputs().items():
        if name in _FILES:
            (out / f"{name}_input.jpg").write_bytes(_FILES[name])
        else:
            src.save(out / f"{name}_input.png")
        sheet = row(src, corner, paper, photo)
        titled = Image.new("RGB", (sheet.width, sheet.height + 24), "white")
        titled.paste(sheet, (0, 24))
        ImageDraw.Draw(titled).text((6, 6), caption, fill=(0, 0, 0))
        titled.save(out / f"{name}.png", optimize=True)
        print(f"{out / name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
