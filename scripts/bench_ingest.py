#!/usr/bin/env python3
"""The Python peer of the ingestion benchmark: the same steps as exposr-trainer's vision crate,
with PIL and imagehash, on one core: read, SHA-256 the original, decode, check format, size and
aspect, composite alpha over white, resize the shorter side to 256 (bicubic), centre-crop,
SHA-256 the pixels, perceptual hash (imagehash.dhash, the 8x8 gradient hash), encode JPEG q90,
write the image and a metadata JSON. Prints one JSON line: images, seconds (best of 3), images/s.

Usage: bench_ingest.py DIR [DIR ...]
"""
import hashlib
import io
import json
import pathlib
import sys
import tempfile
import time

import imagehash
from PIL import Image

SIDE = 256


def ingest(path: pathlib.Path, out: pathlib.Path) -> bool:
    data = path.read_bytes()
    original = hashlib.sha256(data).hexdigest()
    img = Image.open(io.BytesIO(data))
    if img.format not in ("JPEG", "PNG", "WEBP"):
        return False
    w, h = img.size
    if min(w, h) < 256 or max(w, h) / min(w, h) > 3.0:
        return False
    img.load()
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    else:
        img = img.convert("RGB")
    scale = SIDE / min(w, h)
    nw, nh = max(SIDE, round(w * scale)), max(SIDE, round(h * scale))
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - SIDE) // 2, (nh - SIDE) // 2
    img = img.crop((left, top, left + SIDE, top + SIDE))
    pixels = hashlib.sha256(img.tobytes()).hexdigest()
    phash = str(imagehash.dhash(img))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    (out / f"{original}.jpg").write_bytes(buf.getvalue())
    meta = {"hash": original, "pixels_sha256": pixels, "phash": phash, "width": w, "height": h}
    (out / f"{original}.json").write_text(json.dumps(meta))
    return True


def main() -> None:
    files = sorted(p for d in sys.argv[1:] for p in pathlib.Path(d).rglob("*") if p.is_file())
    best = None
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            accepted = sum(ingest(p, pathlib.Path(tmp)) for p in files)
            took = time.perf_counter() - start
        best = took if best is None else min(best, took)
    print(json.dumps({"images": len(files), "accepted": accepted, "seconds": best, "per_second": len(files) / best}))


if __name__ == "__main__":
    main()
