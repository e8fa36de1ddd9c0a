#!/usr/bin/env python3
"""Load a `bitgrok export KEY --format transformer-lens OUT/` folder into
TransformerLens and report its loss and accuracy on all p^2 inputs [a, b, =].

Usage: python scripts/load_transformer_lens.py OUT/

Needs torch, safetensors and transformer_lens (3.x or 4.x). Not run by bitgrok's CI.
For cells trained with quantized activations (usage.json "act_bits" > 0) it adds
hooks that apply bitgrok's per-token activation quantizer where bitgrok applies it.
"""
import json
import sys
from pathlib import Path

import torch
import transformer_lens
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig


def quantizer(bits: int, eps: float):
    """bitgrok's activation quantizer: g = max(max|x|, eps) per token,
    x -> clip(round(x * (qb / g)), -qb, qb - 1) * (g / qb), qb = 2^(bits-1)."""
    qb = float(2 ** (bits - 1))

    def quantize(x: torch.Tensor) -> torch.Tensor:
        g = x.abs().amax(dim=-1, keepdim=True).clamp(min=eps)
        return torch.round(x * (qb / g)).clamp(-qb, qb - 1) * (g / qb)

    return quantize


def main(out: Path) -> None:
    usage = json.loads((out / "usage.json").read_text())
    version = getattr(transformer_lens, "__version__", "3")
    major = int(version.split(".")[0]) if version[0].isdigit() else 3
    cfg = json.loads((out / ("config.tl4.json" if major >= 4 else "config.tl3.json")).read_text())
    act_bits = usage["act_bits"]
    if act_bits > 0:
        cfg["use_split_qkv_input"] = True
        cfg["use_hook_mlp_in"] = True
    model = HookedTransformer(HookedTransformerConfig(**cfg))
    if major < 4:
        for name in usage["block_norms_to_replace_by_identity_in_3x"]:
            _, layer, attr = name.split(".")
            setattr(model.blocks[int(layer)], attr, torch.nn.Identity())
    model.load_state_dict(load_file(out / "model.safetensors"), strict=True)

    hooks = []
    if act_bits > 0:
        q = quantizer(act_bits, usage["act_eps"])

        def per_token(x, hook):  # [..., d]; for q/k/v inputs each head holds the same row
            return q(x)

        def z_hook(z, hook):  # [batch, pos, head, d_head]: one token spans all heads
            b, p, h, dh = z.shape
            return q(z.reshape(b, p, h * dh)).reshape(b, p, h, dh)

        hooks = [
            ("blocks.0.hook_q_input", per_token),
            ("blocks.0.hook_k_input", per_token),
            ("blocks.0.hook_v_input", per_token),
            ("blocks.0.attn.hook_z", z_hook),
            ("blocks.0.hook_mlp_in", per_token),
            ("blocks.0.mlp.hook_post", per_token),
        ]

    p = cfg["d_vocab_out"]
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], dim=1)
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)[:, 2, :]
    labels = (a.flatten() + b.flatten()) % p
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    acc = (logits.argmax(-1) == labels).float().mean().item()
    print(f"{usage['arch']} p={p} act_bits={act_bits}: all-pairs loss {loss:.6g}, accuracy {acc:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
