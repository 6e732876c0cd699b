#!/usr/bin/env python3
"""Training benchmark: exposr-trainer against scikit-learn on the same CSV files and the same
split, single-threaded, in one run. Prints fit time, test accuracy, peak memory and ratios.

Usage: scripts/bench_train.py TRAINER_BINARY   (run by scripts/bench)
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / ".cache" / "data"
SINGLE = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

MLP_CONFIG = """random_seed: 42
model: {type: mlp, hidden_layers: [64, 32], dropout_rate: 0.0}
training: {epochs: 200, batch_size: 200, patience: 10, learning_rate: 0.001, alpha: 0.0001, monitor: val_accuracy}
gate: {min_accuracy: 0.0, min_gain: -1.0}
quantization: {max_accuracy_drop: 1.0}
"""
LR_CONFIG = MLP_CONFIG.replace("type: mlp", "type: logistic_regression").replace(
    "learning_rate: 0.001", "learning_rate: 0.01")

SKLEARN_CHILD = r"""
import json, sys, time
import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
kind, csv_path, split_path = sys.argv[1:4]
import csv as _csv
with open(csv_path) as f:
    rows = list(_csv.reader(f))
header, rows = rows[0], rows[1:]
x = np.array([[float(v) for v in r[:-1]] for r in rows], dtype=np.float32)
labels = sorted(set(r[-1] for r in rows))
y = np.array([labels.index(r[-1]) for r in rows])
split = json.load(open(split_path))
fit_rows = np.array(sorted(split["train"] + split["val"]))
test_rows = np.array(split["test"])
t0 = time.perf_counter()
scaler = StandardScaler().fit(x[split["train"]])
xs = scaler.transform(x[fit_rows])
if kind == "mlp":
    model = MLPClassifier(hidden_layer_sizes=(64, 32), solver="adam", learning_rate_init=0.001,
        alpha=0.0001, batch_size=200, max_iter=200, early_stopping=True,
        validation_fraction=len(split["val"]) / len(fit_rows), n_iter_no_change=10, tol=1e-4,
        random_state=42)
else:
    model = LogisticRegression(max_iter=1000)
model.fit(xs, y[fit_rows])
fit = time.perf_counter() - t0
acc = float((model.predict(scaler.transform(x[test_rows])) == y[test_rows]).mean())
print(json.dumps({"fit_seconds": fit, "test_accuracy": acc}))
"""


def run_child(cmd, env=None):
    """Runs cmd, returns (stdout, peak RSS in MiB) of that child alone."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **SINGLE, **(env or {})})
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed: {err.decode()}")
    return out.decode(), usage.ru_maxrss / 1024


def synthetic(rows=100_000, features=10, classes=7, seed=42):
    out = DATA / "synthetic"
    if (out / "schema.json").exists():
        return
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=(features, classes))
    v = rng.normal(size=(features, classes))
    # Non-linear boundaries: sines of projections plus pairwise products.
    score = np.sin(x @ w) + 0.5 * (x[:, :classes] * x[:, 1:classes + 1]) + 0.3 * np.cos(x @ v) ** 2
    y = score.argmax(axis=1)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"x{i}" for i in range(features)]
    with open(out / "dataset.csv", "w") as f:
        f.write(",".join(names + ["label"]) + "\n")
        for row, label in zip(x, y):
            f.write(",".join(f"{v:.6f}" for v in row) + f",c{label}\n")
    schema = {"features": names, "label": "label", "classes": [f"c{i}" for i in range(classes)]}
    (out / "schema.json").write_text(json.dumps(schema))


def a3cp(trainer):
    """Per-user gesture models: fit time of users with 150 to 900 samples (goal < 0.5 s)."""
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for user, per_label in (("u150", 50), ("u450", 150), ("u900", 300)):
            for g, label in enumerate(["wave", "circle", "tap"]):
                folder = tmp / "sessions" / "gesture" / user / label
                folder.mkdir(parents=True)
                for i in range(per_label):
                    n = int(rng.integers(20, 120))
                    t = np.linspace(0, 2 * np.pi, n)
                    base = [np.sin(3 * t), np.sin(t) + np.cos(t), np.sign(np.sin(4 * t))][g]
                    frames = np.stack([base, np.roll(base, 5), base * 0.5], axis=1) + rng.normal(0, 0.3, (n, 3))
                    (folder / f"{i}.json").write_text(json.dumps({"frames": frames.round(4).tolist()}))
            out, mem = run_child([trainer, "--registry", str(tmp / "reg"), "--json", "train", "--modality",
                                  "gesture", "--sessions", str(tmp / "sessions"), "--user-id", user,
                                  "--runs-dir", str(tmp / "runs")])
            r = json.loads(out)
            print(f"A3CP gesture {user}: {per_label * 3} samples, fit {r['fit_seconds']:.3f} s, "
                  f"total {r['total_seconds']:.3f} s, test accuracy {r['test_accuracy']:.4f}, {mem:.1f} MiB")


def main():
    trainer = sys.argv[1]
    subprocess.run([sys.executable, str(ROOT / "scripts/data/fetch.py")], check=True,
                   stdout=subprocess.DEVNULL)
    synthetic()
    print(f"{'data':<15}{'model':<6}{'ours fit s':>11}{'sk fit s':>10}{'ratio':>8}"
          f"{'ours acc':>10}{'sk acc':>8}{'ours MiB':>10}{'sk MiB':>8}{'int8 acc':>10}{'int8/f32 size':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "mlp.yaml").write_text(MLP_CONFIG)
        (tmp / "lr.yaml").write_text(LR_CONFIG)
        (tmp / "sk.py").write_text(SKLEARN_CHILD)
        for name in ["digits", "wine", "breast_cancer", "synthetic"]:
            csv, schema = DATA / name / "dataset.csv", DATA / name / "schema.json"
            for kind, cfg in (("mlp", "mlp.yaml"), ("lr", "lr.yaml")):
                out, our_mem = run_child([trainer, "--registry", str(tmp / "reg"), "--json", "train",
                                          "--csv", str(csv), "--schema", str(schema), "--config",
                                          str(tmp / cfg), "--model", f"{name}-{kind}".replace("_", "-"),
                                          "--runs-dir", str(tmp / "runs")])
                ours = json.loads(out)
                split = pathlib.Path(ours["run_dir"]) / "split.json"
                out, sk_mem = run_child([sys.executable, str(tmp / "sk.py"), kind, str(csv), str(split)])
                sk = json.loads(out)
                print(f"{name:<15}{kind:<6}{ours['fit_seconds']:>11.3f}{sk['fit_seconds']:>10.3f}"
                      f"{ours['fit_seconds'] / sk['fit_seconds']:>7.3f}x"
                      f"{ours['test_accuracy']:>10.4f}{sk['test_accuracy']:>8.4f}"
                      f"{our_mem:>10.1f}{sk_mem:>8.1f}{ours['int8_accuracy']:>10.4f}"
                      f"{ours['int8_bytes'] / ours['float_bytes']:>14.2f}x")
    a3cp(trainer)
    print("fit times: ours include scaling, the fit and test evaluation; scikit-learn's scaling and fit."
          " Peak memory is each process's maxrss (scikit-learn's includes the Python interpreter).")


if __name__ == "__main__":
    main()
