#!/usr/bin/env python3
"""Cross-checks exported ONNX files with independent tools: onnx.checker (full check) and
onnxruntime, against tract's outputs recorded by the trainer.

Usage: check_onnx.py RUN_OUTPUT_DIR...   (folders holding model.onnx, model.int8.onnx, golden.json)
Exits non-zero, naming the file and the row, on the first disagreement.
"""
import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort

FLOAT_TOLERANCE = 1e-5
# Probabilities. onnxruntime fuses QDQ into integer kernels whose rounding differs from tract's
# (on AVX2 without VNNI its u8s8 kernels even saturate), so int8 outputs differ by a few 1e-3.
INT8_TOLERANCE = 0.05


def run(path: pathlib.Path, inputs: np.ndarray) -> np.ndarray:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: inputs})[0]


def check(folder: pathlib.Path) -> str:
    golden = json.loads((folder / "golden.json").read_text())
    inputs = np.asarray(golden["inputs"], dtype=np.float32)
    lines = []
    for kind, file in (("float", "model.onnx"), ("int8", "model.int8.onnx")):
        ours = run(folder / file, inputs)
        tract = np.asarray(golden[kind]["tract"], dtype=np.float32)
        diff = float(np.max(np.abs(ours - tract)))
        agree = ours.argmax(axis=1) == tract.argmax(axis=1)
        if kind == "float" and diff > FLOAT_TOLERANCE:
            sys.exit(f"{folder / file}: onnxruntime and tract differ by {diff:.3g} (> {FLOAT_TOLERANCE})")
        if kind == "int8":
            # A row may pick another class only when it is a near-tie: tract's margin between
            # its class and onnxruntime's is within what the two runtimes' outputs differ by.
            rows = np.nonzero(~agree)[0]
            margins = tract[rows, tract.argmax(axis=1)[rows]] - tract[rows, ours.argmax(axis=1)[rows]]
            row_diff = np.max(np.abs(ours - tract), axis=1)[rows]
            if diff > INT8_TOLERANCE or np.any(margins > 2 * row_diff):
                sys.exit(f"{folder / file}: onnxruntime and tract disagree (max diff {diff:.3g}, "
                         f"rows {rows.tolist()}, tract margins {margins.tolist()})")
            if len(rows):
                lines.append(f"{file}: checker ok, onnxruntime vs tract max |diff| {diff:.2e} on {len(inputs)} rows, "
                             f"argmax agree but for {len(rows)} near-tie row(s) (margin <= {margins.max():.2e})")
                continue
        lines.append(f"{file}: checker ok, onnxruntime vs tract max |diff| {diff:.2e} on {len(inputs)} rows, argmax agree")
    return f"{folder}: " + "; ".join(lines)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        print(check(pathlib.Path(arg)))


if __name__ == "__main__":
    main()
