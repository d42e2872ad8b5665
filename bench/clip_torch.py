"""PyTorch peer for the CLIP encoder benchmark (bench/clip.ts): times refclip.encode, the independent
PyTorch math of the HF CLIP vision tower in ../shared/reference/refclip.py, on the same weights
directory and the same deterministic pixels as our run, and prints one JSON line.

    /usr/bin/python3 bench/clip_torch.py DIR --batch 8 --threads 2 --reps 5 [--reference ../shared/reference]

Pixels: x[i] = 1.5 sin(0.0073 i) over the flattened (B, 3, S, S) array, computed in float64 and
rounded to float32 (bench/clip.ts makes the same). `check` is image 0's pooled output
(post_layernorm of the last layer's CLS token), first 8 values, so the caller can see that both
sides computed the same thing.
"""
import argparse, json, os, sys, time

import numpy as np
import torch

DEFAULT_REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--budget", type=float, default=20.0, help="stop timing after this many seconds")
    ap.add_argument("--reference", default=DEFAULT_REFERENCE, help="folder of refclip.py (../shared/reference)")
    a = ap.parse_args()
    sys.path.insert(0, a.reference)
    import refclip
    torch.set_num_threads(a.threads)
    cfg, W = refclip.load_clip_vision(a.dir)
    S = cfg["image_size"]
    n = a.batch * 3 * S * S
    px = torch.from_numpy((1.5 * np.sin(0.0073 * np.arange(n, dtype=np.float64))).astype(np.float32)).reshape(a.batch, 3, S, S)
    with torch.no_grad():
        out = refclip.encode(cfg, W, px)  # warm-up
        times = []
        start = time.perf_counter()
        while len(times) < a.reps:
            t0 = time.perf_counter()
            out = refclip.encode(cfg, W, px)
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - start > a.budget:
                break
    med = sorted(times)[len(times) // 2]
    print(json.dumps({"backend": "pytorch", "torch": torch.__version__, "threads": a.threads, "kind": "image-encode",
                      "batch": a.batch, "reps": len(times), "batch_seconds": med, "images_per_s": a.batch / med,
                      "check": out["pooled"][0, :8].tolist()}))


if __name__ == "__main__":
    main()
