#!/usr/bin/env python3
"""Load a `bitgrok export KEY --format transformer-lens OUT/` folder into
TransformerLens 3.x or 4.x and check that it computes the cell's function.

Usage: python scripts/load_transformer_lens.py OUT/ [OUT2/ ...]

Builds the model for the installed TransformerLens (3.x: HookedTransformer; 4.x:
TransformerBridge.boot_native), loads OUT/model.safetensors strictly, adds the
forward hooks OUT/usage.json lists for that version (bitgrok's activation
quantizer, the attention mix of cells trained with an attention rate below 1),
runs all p^2 inputs [a, b, =] and compares the logits (relative to each input's
largest |logit|), the all-pairs loss and the accuracy with bitgrok's (OUT/logits.safetensors and usage.json "check", which
also gives the tolerances). Prints one line per folder; exits 1 when any does not
match or one of its hooks never ran, 2 on unusable input.

From Python: `model, hooks = load(Path("OUT"))`, then
`model.run_with_hooks(tokens, fwd_hooks=hooks)`.

Needs torch, safetensors and transformer_lens 3.x or 4.x.
"""
import importlib.metadata
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


class Unusable(Exception):
    """The folder or the installed TransformerLens cannot be used (exit status 2)."""


def tl_major() -> int:
    """The installed TransformerLens's major version, from its package metadata
    (neither 3.x nor 4.x defines transformer_lens.__version__)."""
    try:
        version = importlib.metadata.version("transformer_lens")
    except importlib.metadata.PackageNotFoundError:
        raise Unusable("transformer_lens is not installed") from None
    major = int(version.split(".")[0])
    if major not in (3, 4):
        raise Unusable(f"transformer_lens {version}: only 3.x and 4.x are supported")
    return major


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise Unusable(f"{path} is missing: is {path.parent} a bitgrok export folder?") from None
    except json.JSONDecodeError as e:
        raise Unusable(f"{path}: {e}") from None


def check_config(cfg_dict: dict, cfg: object, path: Path) -> None:
    """Every field of the config file must have reached the built config (4.x's
    from_dict drops fields it does not know without a word)."""
    for k, v in cfg_dict.items():
        got = getattr(cfg, k, "(absent)")
        if got != v:
            raise Unusable(f"{path}: {k} = {v!r} was not taken (the built config has {got!r})")


def build(out: Path, usage: dict, major: int) -> torch.nn.Module:
    """The model of the export, built for TransformerLens `major`, weights loaded strictly."""
    cfg_path = out / f"config.tl{major}.json"
    cfg_dict = read_json(cfg_path)
    state = load_file(out / "model.safetensors")
    if major == 3:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        cfg = HookedTransformerConfig(**cfg_dict)
        check_config(cfg_dict, cfg, cfg_path)
        model = HookedTransformer(cfg)
        for name in usage["block_norms_to_replace_by_identity_in_3x"]:
            _, layer, attr = name.split(".")
            setattr(model.blocks[int(layer)], attr, torch.nn.Identity())
        model.load_state_dict(state, strict=True)
    else:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

        cfg = TransformerBridgeConfig.from_dict(cfg_dict)
        check_config(cfg_dict, cfg, cfg_path)
        model = TransformerBridge.boot_native(cfg)
        model.load_state_dict(convert_tl_checkpoint(state, model.cfg), strict=True)
    model.eval()
    return model


def quantizer(bits: int, eps: float, token_axes: int):
    """bitgrok's per-token activation quantizer (usage.json "quantize"), with its
    float32 operations in its order, over the tensor's last `token_axes` axes."""
    qb = float(2 ** (bits - 1))
    dims = tuple(range(-token_axes, 0))

    def quantize(x: torch.Tensor) -> torch.Tensor:
        g = x.abs().amax(dim=dims, keepdim=True).clamp(min=eps)
        up, down = qb / g, g / qb
        return torch.round((x * up).clamp(-qb - 1, qb)).clamp(-qb, qb - 1) * down

    return quantize


def mixer(rate: float, uniform_part: list):
    """The attention mix (usage.json "mix_attention"): pattern -> rate * pattern +
    uniform_part, over [batch, head, query, key]."""
    u = torch.tensor(uniform_part, dtype=torch.float32)

    def mix(pattern: torch.Tensor) -> torch.Tensor:
        q, k = pattern.shape[-2:]
        return rate * pattern + u[:q, :k].to(pattern.dtype)

    return mix


def make_hooks(usage: dict, major: int, calls: dict = None) -> list:
    """(hook name, function) for every hook usage.json lists for `major`, for
    `model.run_with_hooks(tokens, fwd_hooks=...)`; each call is counted in `calls`."""
    calls = {} if calls is None else calls
    hooks = []
    for spec in usage["hooks"][str(major)]:
        name, apply = spec["hook"], spec["apply"]
        if apply == "quantize":
            f = quantizer(usage["act_bits"], usage["act_eps"], spec["token_axes"])
        elif apply == "mix_attention":
            f = mixer(usage["attention_rate"], usage["mix_attention"]["uniform_part"])
        else:
            raise Unusable(f"usage.json: hook {name} applies {apply!r}, which this script does not know")

        def hook(x, hook, f=f, name=name):
            calls[name] = calls.get(name, 0) + 1
            return f(x)

        calls[name] = 0
        hooks.append((name, hook))
    return hooks


def load(out: Path, calls: dict = None):
    """(model, hooks) for the installed TransformerLens: run the model with
    `model.run_with_hooks(tokens, fwd_hooks=hooks)` to compute the cell's function."""
    usage = read_json(out / "usage.json")
    major = tl_major()
    return build(out, usage, major), make_hooks(usage, major, calls)


def all_pairs_logits(model, hooks: list, usage: dict) -> torch.Tensor:
    """Logits at the read-out position for every input [a, b, =], row a * p + b."""
    p = usage["modulus"]
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    eq = torch.full((p * p,), usage["eq_token"])
    tokens = torch.stack([a.flatten(), b.flatten(), eq], dim=1)
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=hooks)[:, usage["readout_position"], :]


def loss_and_accuracy(logits: torch.Tensor, p: int) -> tuple:
    """Mean cross-entropy (in float64) and accuracy over all p^2 inputs."""
    labels = torch.arange(p * p) // p + torch.arange(p * p) % p
    labels = labels % p
    loss = torch.nn.functional.cross_entropy(logits.double(), labels).item()
    accuracy = (logits.argmax(-1) == labels).double().mean().item()
    return loss, accuracy


def check(out: Path) -> bool:
    """Load `out`, print its line, and say whether it computes the cell's function."""
    usage = read_json(out / "usage.json")
    major = tl_major()
    version = importlib.metadata.version("transformer_lens")
    model = build(out, usage, major)
    calls = {}
    hooks = make_hooks(usage, major, calls)
    logits = all_pairs_logits(model, hooks, usage)
    p = usage["modulus"]
    if tuple(logits.shape) != (p * p, p):
        raise Unusable(f"logits have shape {tuple(logits.shape)}, expected {(p * p, p)}")
    loss, accuracy = loss_and_accuracy(logits, p)
    want = usage["check"]
    want_loss, want_acc = want["all_pairs_loss"], want["all_pairs_accuracy"]
    want_logits = load_file(out / want["logits"])["logits"]
    # Each input's largest logit difference, relative to its largest |logit| (at least 1).
    scale = want_logits.abs().amax(dim=-1).clamp(min=1.0)
    off_by = (logits - want_logits).abs().amax(dim=-1) / scale
    inputs_off = int((~(off_by <= want["logit_tolerance"])).sum())
    problems = []
    never = [name for name, n in calls.items() if n == 0]
    if never:
        problems.append(f"hooks never ran: {', '.join(never)}")
    if inputs_off > want["inputs_off_allowed"]:
        problems.append(
            f"{inputs_off} inputs have a logit off by more than {want['logit_tolerance']} (relative) "
            f"(largest {float(off_by.max()):.3g}; allowed: {want['inputs_off_allowed']} inputs)"
        )
    if not abs(loss - want_loss) <= want["loss_tolerance"]:
        problems.append(f"loss off by {loss - want_loss:.3g} (tolerance {want['loss_tolerance']})")
    if not abs(accuracy - want_acc) <= want["accuracy_tolerance"] + 1e-12:
        problems.append(
            f"accuracy off by {accuracy - want_acc:.4f} (tolerance {want['accuracy_tolerance']:.4f})"
        )
    print(
        f"{out}: transformer_lens {version}, {usage['arch']} p={p} act_bits={usage['act_bits']} "
        f"attention_rate={usage['attention_rate']} ({usage['uniform_attention']}), "
        f"{len(hooks)} hooks: largest relative logit difference {float(off_by.max()):.2g} "
        f"({inputs_off} inputs over {want['logit_tolerance']}), "
        f"all-pairs loss {loss:.6f} (bitgrok {want_loss:.6f}), "
        f"accuracy {accuracy:.4f} (bitgrok {want_acc:.4f}): "
        + ("MISMATCH: " + "; ".join(problems) if problems else "match"),
        flush=True,
    )
    return not problems


if __name__ == "__main__":
    if len(sys.argv) < 2 or any(a.startswith("-") for a in sys.argv[1:]):
        sys.exit(__doc__)
    try:
        results = [check(Path(a)) for a in sys.argv[1:]]
    except Unusable as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if all(results) else 1)
