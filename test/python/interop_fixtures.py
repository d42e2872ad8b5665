"""Independent writer and checker for the adapter interop tests (test/interop.test.ts).

Runs on Debian's python3-torch (/usr/bin/python3), with ../shared/reference/refllama.py as the model.

  python3 interop_fixtures.py make OUT REFERENCE_DIR ASSETS_DIR
      For stories260K and tinystories-656k, writes adapter files the way each project does
      (torch.save of the official v1 flat state dict and of litgpt's {"model": ...}; PEFT's
      safetensors layout in F32 and BF16, and its legacy torch.save'd adapter_model.bin) under
      OUT/<model>/, and OUT/<model>/reference.safetensors: `tokens` and the reference logits of
      every case under that format's own gate semantics (refllama.forward), plus litgpt's
      mis-split prompt K/V (a litgpt-style forward written here from litgpt's adapter.py).

  python3 interop_fixtures.py check SPEC.json REFERENCE_DIR ASSETS_DIR OUT.safetensors
      Loads files written by llama-adapter's converter as PEFT and torch would: the official
      .pth with torch.load(weights_only=True), the PEFT directory's config fields and safetensors
      header as PEFT writes them; computes their logits with refllama under that format's
      semantics and writes them to OUT.safetensors (one tensor per spec entry).
"""
import json, math, os, struct, sys

import torch
import torch.nn.functional as F

B, T = 2, 16


def st_write(path, tensors, meta=None):
    """safetensors layout (as the safetensors library writes it): F32 / BF16 / F16 / I32."""
    names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int32: "I32"}
    header, blobs, off = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, t in tensors.items():
        t = t.detach().contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_read(path):
    b = open(path, "rb").read()
    n = struct.unpack_from("<Q", b, 0)[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", None)
    dt = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    out = {}
    for name, e in header.items():
        s, t = e["data_offsets"]
        raw = bytearray(b[8 + n + s:8 + n + t])
        x = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if e["dtype"] == "BF16" else torch.frombuffer(raw, dtype=dt[e["dtype"]])
        out[name] = (x.reshape(e["shape"]), e["dtype"])
    return meta, out


MODELS = {"stories260K": "models/stories260K/stories260K.bin", "tinystories656k": "models/tinystories-656k"}


def hf_rows(w, heads):
    """Meta (interleaved) q/k rows -> HF rotate-half rows (HF's conversion script's permute)."""
    rows, cols = w.shape
    return w.view(heads, rows // heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def forward_litgpt(cfg, W, tokens, prompts, gates, split):
    """A litgpt-style forward (litgpt/adapter.py): fused qkv = [Q; K; V] in HF row order, rotate-half
    RoPE, prompt branch y + gating_factor * sdpa(q, ak, av) with ak/av taken from the prompt's fused
    projection viewed as (G, q_per_kv + 2, hs) ('litgpt') or from its K and V rows ('correct')."""
    dim, nh, G, nl = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"], cfg["n_layers"]
    hs, qpk = dim // nh, nh // G
    L, K = prompts.shape[0], prompts.shape[1]
    meta = cfg["rope"] == "interleaved"
    x = W["emb"][tokens]
    Bn, Tn = tokens.shape
    pos = torch.arange(Tn)
    causal = torch.full((Tn, Tn), float("-inf")).triu(1)
    for l in range(nl):
        wq = hf_rows(W["wq"][l], nh) if meta else W["wq"][l]
        wk = hf_rows(W["wk"][l], G) if meta else W["wk"][l]
        fused = torch.cat([wq, wk, W["wv"][l]])
        h = R.rmsnorm(x, W["att_norm"][l], cfg["eps"])
        q, k, v = F.linear(h, fused).split((nh * hs, G * hs, G * hs), dim=-1)
        q = R.rope(q.view(Bn, Tn, nh, hs), pos, cfg["theta"], "half").transpose(1, 2)
        k = R.rope(k.view(Bn, Tn, G, hs), pos, cfg["theta"], "half").repeat_interleave(qpk, dim=2).transpose(1, 2)
        v = v.view(Bn, Tn, G, hs).repeat_interleave(qpk, dim=2).transpose(1, 2)
        y = F.softmax(q @ k.transpose(-1, -2) / math.sqrt(hs) + causal, dim=-1) @ v  # (B, nh, T, hs)
        a = l - (nl - L)
        if a >= 0:
            aqkv = F.linear(prompts[a].reshape(1, K, dim), fused)
            if split == "litgpt":
                aqkv = aqkv.view(1, K, G, qpk + 2, hs).permute(0, 2, 3, 1, 4)
                _, ak, av = aqkv.split((qpk, 1, 1), dim=2)
            else:
                _, ak, av = aqkv.split((nh * hs, G * hs, G * hs), dim=-1)
                ak, av = (z.view(1, K, G, 1, hs).permute(0, 2, 3, 1, 4) for z in (ak, av))
            ak = ak.repeat_interleave(qpk, dim=2).reshape(1, nh, K, hs)
            av = av.repeat_interleave(qpk, dim=2).reshape(1, nh, K, hs)
            ay = F.softmax(q @ ak.transpose(-1, -2) / math.sqrt(hs), dim=-1) @ av
            y = y + gates[a].view(1, nh, 1, 1) * ay
        x = x + F.linear(y.transpose(1, 2).reshape(Bn, Tn, dim), W["wo"][l])
        h = R.rmsnorm(x, W["ffn_norm"][l], cfg["eps"])
        x = x + F.linear(F.silu(F.linear(h, W["w1"][l])) * F.linear(h, W["w3"][l]), W["w2"][l])
    return F.linear(R.rmsnorm(x, W["fnorm"], cfg["eps"]), W["wcls"])


def fwd(cfg, W, tokens, prompts, gates, gate_fn):
    with torch.no_grad():
        return R.forward(cfg, W, tokens, dict(prompts=prompts, gates=gates), gate_fn=gate_fn)


class Evil:
    """torch.save of an object whose unpickling runs a shell command (creating OUT/pwned)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def make(out, assets):
    os.makedirs(out, exist_ok=True)
    torch.save({"adapter_query.weight": torch.zeros(20, 8), "evil": Evil(os.path.join(out, "pwned"))}, os.path.join(out, "evil.pth"))
    for mi, (name, rel) in enumerate(MODELS.items()):
        cfg, W = R.load(os.path.join(assets, rel))
        torch.manual_seed(100 + mi)
        N, D, H, G = cfg["n_layers"], cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"]
        L = 2
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        tokens = torch.cat([torch.ones(B, 1, dtype=torch.long), torch.randint(3, cfg["vocab"], (B, T - 1))], 1)
        ref = {"tokens": tokens.int()}

        # official v1 (alpaca_finetuning_v1 + extract_adapter_from_checkpoint.py): K=10, gates (1, H, 1, 1) on every layer
        K = 10
        P, Gt = torch.randn(L, K, D) * 0.5, torch.randn(L, H) * 0.5
        sd = {"adapter_query.weight": P.reshape(L * K, D).clone()}
        for i in range(N):
            sd[f"layers.{i}.attention.gate"] = (Gt[i - (N - L)] if i >= N - L else torch.zeros(H)).view(1, H, 1, 1).clone()
        torch.save(sd, os.path.join(d, "official.pth"))
        ref["official_tanh"] = fwd(cfg, W, tokens, P, Gt, "tanh")
        ref["official_raw"] = fwd(cfg, W, tokens, P, Gt, "raw")

        # official v1 as of the April 2023 release code: gates (1,), one raw scalar per layer; here K=4
        P2, g2 = torch.randn(L, 4, D) * 0.5, torch.randn(L) * 0.5
        sd = {"adapter_query.weight": P2.reshape(L * 4, D).clone()}
        for i in range(N - L, N):
            sd[f"layers.{i}.attention.gate"] = g2[i - (N - L)].reshape(1).clone()
        torch.save(sd, os.path.join(d, "official-scalar.pth"))
        ref["official_scalar"] = fwd(cfg, W, tokens, P2, g2[:, None].expand(L, H), "raw")

        # litgpt finetune_adapter: {"model": {...}}, adapter_start_layer = N - L, model_config.yaml beside;
        # stories260K gets the older (1, H, 1, 1) gating_factor layout
        P3, g3 = torch.randn(L, 10, D) * 0.5, torch.randn(L, H) * 0.5
        old = name == "stories260K"
        sd = {}
        for a in range(L):
            i = N - L + a
            sd[f"transformer.h.{i}.attn.adapter_wte.weight"] = P3[a].clone()
            sd[f"transformer.h.{i}.attn.gating_factor"] = g3[a].view(1, H, 1, 1).clone() if old else g3[a].view(1, 1, H, 1).clone()
        os.makedirs(os.path.join(d, "litgpt"), exist_ok=True)
        torch.save({"model": sd}, os.path.join(d, "litgpt", "lit_model.pth.adapter"))
        import yaml
        with open(os.path.join(d, "litgpt", "model_config.yaml"), "w") as f:
            yaml.safe_dump(dict(name=name, block_size=cfg["seq_len"], n_layer=N, n_embd=D, n_head=H, n_query_groups=G,
                                head_size=D // H, adapter_prompt_length=10, adapter_start_layer=N - L,
                                rope_adjustments=None, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP"), f)
        ref["litgpt"] = fwd(cfg, W, tokens, P3, g3, "raw")
        with torch.no_grad():
            ref["litgpt_split"] = forward_litgpt(cfg, W, tokens, P3, g3, "litgpt")
            # the litgpt-style forward with the correct split is the method itself: a check on forward_litgpt
            same = forward_litgpt(cfg, W, tokens, P3, g3, "correct")
        assert (same - ref["litgpt"]).abs().max() < 1e-4, "litgpt-style forward disagrees with refllama"
        assert (ref["litgpt_split"] - ref["litgpt"]).abs().max() > 1e-3, "the mis-split changes nothing here"

        # PEFT adaption_prompt (save_pretrained): F32 and BF16 safetensors, and the legacy adapter_model.bin
        K4 = 6
        P4, g4 = torch.randn(L, K4, D) * 0.5, torch.randn(L) * 0.5
        for kind, dtype in (("peft-f32", torch.float32), ("peft-bf16", torch.bfloat16), ("peft-bin", torch.float32)):
            pd = os.path.join(d, kind)
            os.makedirs(pd, exist_ok=True)
            cfgj = {"adapter_layers": L, "adapter_len": K4, "auto_mapping": None, "base_model_name_or_path": None,
                    "inference_mode": True, "peft_type": "ADAPTION_PROMPT", "revision": None,
                    "target_modules": "self_attn", "task_type": "CAUSAL_LM", "peft_version": "0.19.2.dev0@UNKNOWN"}
            with open(os.path.join(pd, "adapter_config.json"), "w") as f:
                f.write(json.dumps(cfgj, indent=2, sort_keys=True))
            t = {}
            for a in range(L):
                i = N - L + a
                t[f"base_model.model.model.layers.{i}.self_attn.adaption_prompt"] = P4[a].view(1, K4, D).to(dtype)
                t[f"base_model.model.model.layers.{i}.self_attn.adaption_gate"] = g4[a].view(1).to(dtype)
            if kind == "peft-bin":
                torch.save({k: v.clone() for k, v in t.items()}, os.path.join(pd, "adapter_model.bin"))
            else:
                st_write(os.path.join(pd, "adapter_model.safetensors"), t, {"format": "pt"})
            Pq, gq = P4.to(dtype).float(), g4.to(dtype).float()
            ref[kind.replace("-", "_")] = fwd(cfg, W, tokens, Pq, gq[:, None].expand(L, H), "raw")

        st_write(os.path.join(d, "reference.safetensors"), {k: v.float() if v.dtype != torch.int32 else v for k, v in ref.items()})


def check(spec_path, assets, out):
    """Load our converter's files as PEFT / torch would and compute their logits."""
    spec = json.load(open(spec_path))
    results = {}
    for e in spec:
        cfg, W = R.load(os.path.join(assets, MODELS[e["model"]]))
        N, D, H = cfg["n_layers"], cfg["dim"], cfg["n_heads"]
        tokens = torch.tensor(e["tokens"], dtype=torch.long)
        if e["kind"] == "peft":
            d = e["path"]
            text = open(os.path.join(d, "adapter_config.json")).read()
            c = json.loads(text)
            assert text == json.dumps(c, indent=2, sort_keys=True), "adapter_config.json is not written as PEFT writes it"
            want = {"adapter_layers", "adapter_len", "auto_mapping", "base_model_name_or_path", "inference_mode",
                    "peft_type", "revision", "target_modules", "task_type"}
            assert want <= set(c), f"adapter_config.json lacks {want - set(c)}"
            assert c["peft_type"] == "ADAPTION_PROMPT" and c["target_modules"] == "self_attn"
            meta, t = st_read(os.path.join(d, "adapter_model.safetensors"))
            assert meta == {"format": "pt"}, meta
            Lc, K = c["adapter_layers"], c["adapter_len"]
            layers = list(range(N - Lc, N))  # PEFT: the top adapter_layers layers
            keys = {f"base_model.model.model.layers.{i}.self_attn.adaption_{p}" for i in layers for p in ("prompt", "gate")}
            assert set(t) == keys, sorted(t)
            P = torch.stack([t[f"base_model.model.model.layers.{i}.self_attn.adaption_prompt"][0][0].float() for i in layers])
            g = torch.stack([t[f"base_model.model.model.layers.{i}.self_attn.adaption_gate"][0].float() for i in layers])
            assert P.shape == (Lc, K, D) and all(t[k][0].shape == (1,) and t[k][1] == "F32" for k in keys if k.endswith("gate"))
            results[e["name"]] = fwd(cfg, W, tokens, P, g.view(-1)[:, None].expand(Lc, H), "raw")
        else:
            sd = torch.load(e["path"], weights_only=True)  # refuses anything but tensors and plain containers
            K = e["K"]
            q = sd["adapter_query.weight"]
            Lq = q.shape[0] // K
            gates = [sd[f"layers.{i}.attention.gate"] for i in range(N - Lq, N)]
            assert set(sd) == {"adapter_query.weight"} | {f"layers.{i}.attention.gate" for i in range(N)}, sorted(sd)
            g = torch.stack([x.reshape(-1).float().expand(H) for x in gates])
            results[e["name"]] = fwd(cfg, W, tokens, q.reshape(Lq, K, D).float(), g, e["gate"])
    st_write(out, results)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        sys.path.insert(0, sys.argv[3])
        import refllama as R
        make(sys.argv[2], sys.argv[4])
    elif cmd == "check":
        sys.path.insert(0, sys.argv[3])
        import refllama as R
        check(sys.argv[2], sys.argv[4], sys.argv[5])
    else:
        sys.exit(__doc__)
