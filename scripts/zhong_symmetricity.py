#!/usr/bin/env python3
"""Gradient symmetricity of exported bitgrok cells measured as Zhong et al.'s released
evaluation notebook measures it (fjzzq2002/pizza, code/eval-main.ipynb, the
"Gradient Symmetricity" cell), beside the same measure on the inputs the model was
trained on.

Usage: python scripts/zhong_symmetricity.py OUT/ [OUT2/ ...]
where each OUT/ is `bitgrok export KEY --format transformer-lens OUT/` of a cell
trained with the `=` token (nanda2023 or li2024, any attention rate).

Their notebook shuffles all (a, b, c) with random.Random(42), keeps the first 100,
runs the input [[a, b]], takes the gradient of the last position's logit c with
respect to the two token embeddings, and averages the cosine of the two gradients.
It builds that input without the `=` token whatever the run's `eqn_sign`, so for
a run trained on [a, b, =] it reads the model out at b, on an input it never saw.
This script prints, per folder, the symmetricity on [a, b] (their notebook's) and on
[a, b, =] (the input as trained, which is what bitgrok's gradient_symmetricity
measures, there over 1,000 triples), with the same 100 triples.

Needs torch and transformer_lens 3.x or 4.x (the environments `make test-interop`
builds under target/interop-venvs/).
"""
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_transformer_lens import load, read_json  # noqa: E402


def symmetricity(model, hooks, triples, eq_token):
    """Mean cosine of d logit_c / d embed(a) and d logit_c / d embed(b), read out at
    the last position of [a, b] (eq_token None) or [a, b, eq_token]."""
    total = 0.0
    for a, b, c in triples:
        tokens = torch.tensor([[a, b] if eq_token is None else [a, b, eq_token]])
        kept = {}

        def keep(t, hook):
            t.retain_grad()
            kept["embed"] = t
            return t

        logits = model.run_with_hooks(tokens, fwd_hooks=hooks + [("hook_embed", keep)])
        model.zero_grad()
        logits[0, -1, c].backward()
        g = kept["embed"].grad[0]
        total += float(torch.dot(g[0], g[1]) / g[0].norm() / g[1].norm())
    return total / len(triples)


def main(folders):
    torch.set_grad_enabled(True)
    for folder in map(Path, folders):
        usage = read_json(folder / "usage.json")
        p, eq = usage["modulus"], usage["eq_token"]
        model, hooks = load(folder)
        triples = [(a, b, c) for a in range(p) for b in range(p) for c in range(p)]
        random.Random(42).shuffle(triples)
        triples = triples[:100]
        plain = symmetricity(model, hooks, triples, None)
        trained = symmetricity(model, hooks, triples, eq)
        print(f"{folder}: symmetricity on [a, b] (their notebook) {plain:.4f}, on [a, b, =] (as trained) {trained:.4f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
