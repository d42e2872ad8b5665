"""PyTorch peer of `npm run bench -- --encoder vit-b16|roberta-base`: one adapter training step
(forward, backward, AdamW) of zero-init gated adaption prompts (tanh gate per head) and a task head
on a frozen, seeded random encoder of the same shape, timed the same way (one warm-up step, then the
mean of --steps steps). The math is ../shared/reference/refencoders.py's (HF ViT / RoBERTa eager
PyTorch); frozen weights do not require grad, so autograd computes input gradients only, as ours.

  python3 bench/peer_encoders.py vit-b16 --threads 2 --steps 3 --batch 8 --prompt-length 10 --layers 12
prints one JSON line: {"peer": "pytorch", "config", "kind": "train", "images_per_s" | "tokens_per_s", "step_s"}.
Needs Debian's /usr/bin/python3 (python3-torch) and ../shared/reference on the path (PYTHONPATH).
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from refencoders import (ROBERTA_DEFAULTS, VIT_DEFAULTS, classification_loss, qa_loss, random_roberta, random_vit,
                         roberta_forward, vit_forward)

SHAPES = {
    "vit-b16": dict(VIT_DEFAULTS, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                    image_size=224, patch_size=16),
    "roberta-base": dict(ROBERTA_DEFAULTS, vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config", choices=sorted(SHAPES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--prompt-length", type=int, default=10)
    ap.add_argument("--layers", type=int, default=12)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = SHAPES[a.config]
    C, H, N = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    vit = a.config.startswith("vit")
    if vit:
        W = {k[len("vit."):] if k.startswith("vit.") else k: v for k, v in random_vit(cfg, 0, 10).items()}
        head = ["classifier.weight", "classifier.bias"]
        x = torch.randn(a.batch, 3, cfg["image_size"], cfg["image_size"])
        labels = torch.randint(0, 10, (a.batch,))
    else:
        W = {k[len("roberta."):] if k.startswith("roberta.") else k: v for k, v in random_roberta(cfg, 0).items()}
        head = ["qa_outputs.weight", "qa_outputs.bias"]
        ids = torch.randint(3, cfg["vocab_size"], (a.batch, a.seq))
        ids[:, 0], ids[:, -1] = cfg["bos_token_id"], cfg["eos_token_id"]
        starts, ends = torch.randint(1, a.seq // 2, (a.batch,)), torch.randint(a.seq // 2, a.seq - 1, (a.batch,))
    for k in head:
        W[k] = W[k].clone().requires_grad_(True)
    prompts = torch.randn(a.layers, a.prompt_length, C, requires_grad=True)
    gates = torch.zeros(a.layers, H, requires_grad=True)
    opt = torch.optim.AdamW([prompts, gates] + [W[k] for k in head], lr=1e-3, weight_decay=0.0)

    def step():
        opt.zero_grad(set_to_none=True)
        if vit:
            out = vit_forward(cfg, W, x, prompts, gates, "tanh")
            loss = classification_loss(out["logits"], labels)
        else:
            out = roberta_forward(cfg, W, ids, None, prompts, gates, "tanh")
            loss = qa_loss(out["start_logits"], out["end_logits"], starts, ends)
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t0) / a.steps
    line = {"peer": "pytorch", "torch": torch.__version__, "config": a.config, "kind": "train", "threads": a.threads, "step_s": dt}
    if vit:
        line["images_per_s"] = a.batch / dt
    else:
        line["tokens_per_s"] = a.batch * a.seq / dt
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
