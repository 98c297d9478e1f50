"""Write docs/signatures.md: every SavedModel signature's inputs, outputs and row limit, per family.

The table is read from real exports, not typed by hand: the script exports one tiny
untrained model per family with `vaezoo.export.saved_model.export_saved_model` (default
options), loads each with `tf.saved_model.load` and lists each signature's named inputs and
outputs with their dtypes and shapes, and its row limit from the export's
`assets.extra/vaezoo_export.json`. The tiny models use distinct sizes (H=12, W=8, C=3, latent_dim=5,
condition_dim=7, VQ grid 6x4) so every dimension maps back to its symbol.

    python docs/make_signature_table.py            # rewrites docs/signatures.md (~1 minute on CPU)
    python docs/make_signature_table.py --check    # exit 1 if docs/signatures.md is out of date
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "signatures.md")
H, W, C, LATENT, CONDITION_DIM, DEPTH = 12, 8, 3, 5, 7, 9
SYMBOLS = {None: "batch", H: "H", W: "W", C: "C", LATENT: "latent_dim", CONDITION_DIM: "D", 6: "h", 4: "w",
           DEPTH: "depth"}
MLP = {"type": "mlp", "hidden": [8]}

#: what each named tensor means (by signature kind where it differs).
MEANING = {
    ("in", "images", "uint8"): "pixels in [0, 255], channels last",
    ("in", "images", "float32"): "pixels in [0, 1], channels last",
    ("in", "condition", "int32"): "class label per row, in [0, num_classes)",
    ("in", "condition", "float32"): "condition vector per row",
    ("in", "seed", "int32"): "one seed per image: row i = `model.sample(1, seed=seed[i])`",
    ("in", "z", "float32"): "latent vector (hierarchical: the top layer's)",
    ("in", "codes", "int32"): "code indices in [0, num_embeddings)",
    ("in", "depth", "int32"): "RQ-VAE: each image's quantizer depth in [1, depth]; later levels are ignored",
    ("out", "mean", "float32"): "posterior mean (hierarchical: top layer)",
    ("out", "stddev", "float32"): "posterior standard deviation",
    ("out", "codes", "int32"): "nearest-code indices",
    ("out", "quantization_error", "float32"): "mean squared distance of encoder output to its codes",
    ("out", "images", "float32"): "pixels in [0, 1]",
    ("out", "images_uint8", "uint8"): "`round(255 * images)`",
    ("out", "neg_elbo", "float32"): "negative ELBO in nats, posterior mean in place of a sample",
    ("out", "bits_per_dim", "float32"): "`neg_elbo / (H * W * C * ln 2)`",
    ("out", "nll", "float32"): "`-log p(x \\| z)` in nats",  # `\|`: a bare | would split the table cell
    ("out", "kl", "float32"): "KL(q ‖ p) in nats",
}


def tiny_models():
    import vaezoo

    shape = (H, W, C)
    return [
        ("VAE", vaezoo.VAE(input_shape=shape, latent_dim=LATENT, encoder=MLP, seed=0)),
        ("BetaVAE", vaezoo.BetaVAE(input_shape=shape, latent_dim=LATENT, encoder=MLP, seed=0)),
        ("CVAE (num_classes)", vaezoo.CVAE(input_shape=shape, latent_dim=LATENT, num_classes=10, encoder=MLP, seed=0)),
        ("CVAE (condition_dim)", vaezoo.CVAE(input_shape=shape, latent_dim=LATENT, condition_dim=CONDITION_DIM,
                                             encoder=MLP, seed=0)),
        ("VQVAE", vaezoo.VQVAE(input_shape=shape, num_embeddings=16, embedding_dim=2, hidden_channels=4,
                               residual_channels=2, num_residual_blocks=1, num_downsamples=1,
                               prior={"filters": 4, "layers": 1}, seed=0)),
        ("RQVAE", vaezoo.RQVAE(input_shape=shape, depth=DEPTH, num_embeddings=16, embedding_dim=2, hidden_channels=4,
                               residual_channels=2, num_residual_blocks=1, num_downsamples=1, seed=0)),
        ("HierarchicalVAE", vaezoo.HierarchicalVAE(input_shape=shape, num_latent_layers=2, latent_dim=LATENT,
                                                   hidden_dim=8, encoder=MLP, seed=0)),
    ]


def _shape(shape):
    return "(" + ", ".join(SYMBOLS.get(d, str(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _tensor(side, name, spec):
    dtype = spec.dtype.name
    meaning = MEANING.get((side, name, dtype), "")
    return f"`{name}` {dtype} `{_shape(tuple(spec.shape))}`" + (f": {meaning}" if meaning else "")


def signature_rows(path):
    """[(signature, inputs text, outputs text, rows per call)] of the SavedModel at `path`."""
    import json

    import tensorflow as tf

    from vaezoo.export.saved_model import FLOAT_SIGNATURES, MANIFEST, SIGNATURES

    signatures = tf.saved_model.load(path).signatures
    with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
        limits = json.load(f)["limits"]
    rows = []
    for name in SIGNATURES + FLOAT_SIGNATURES:
        fn = signatures[name]
        inputs = fn.structured_input_signature[1]
        order = ["images", "z", "codes", "depth", "seed", "condition"]
        ins = [_tensor("in", k, inputs[k]) for k in sorted(inputs, key=lambda k: order.index(k) if k in order else 9)]
        outs = [_tensor("out", k, v) for k, v in sorted(fn.structured_outputs.items())]
        bounded = limits["max_rows"] is not None and name in limits["applies_to"]
        rows.append((name, "<br>".join(ins), "<br>".join(outs), f"≤ {limits['max_rows']}" if bounded else "any"))
    return rows


def render():
    from vaezoo.export.saved_model import export_saved_model

    sections = []  # [(families, rows)], identical tables merged
    with tempfile.TemporaryDirectory() as out:
        for family, model in tiny_models():
            name = family.lower().replace(" ", "").replace("(", "-").replace(")", "").replace("_", "-")
            rows = signature_rows(export_saved_model(model, out, model_name=name))
            for section in sections:
                if section[1] == rows:
                    section[0].append(family)
                    break
            else:
                sections.append(([family], rows))
    lines = [
        "# SavedModel signatures",
        "",
        "<!-- generated by docs/make_signature_table.py from real exports; do not edit by hand -->",
        "",
        "Every export (`vaezoo export`, `vaezoo.export_model(...)`, "
        "`vaezoo.export.saved_model.export_saved_model`) has these signatures, all with the batch on",
        "axis 0 (so TF Serving's `--enable_batching` can merge requests). Symbols: `batch` is the",
        "batch size (-1 in `saved_model_cli`), `H, W, C` the image shape, `latent_dim` the latent size,",
        "`D` a CVAE's `condition_dim`, `h, w` a VQ-VAE's code grid (image size / 2**num_downsamples),",
        "`depth` an RQ-VAE's number of quantizer depths (its codes are stacks `(h, w, depth)`; the first d",
        "levels are the depth-d codes).",
        "Method name of every signature: `tensorflow/serving/predict`. How to serve and call them:",
        "[exports/README.md](../exports/README.md).",
        "",
        "- `serving_default` is `reconstruct` (RQ-VAE: `reconstruct` at the full depth, images only).",
        "- `*_float` signatures are the same computation on float32 images in [0, 1]; the uint8",
        "  ones divide by 255.",
        "- `score` is deterministic: the negative ELBO with the posterior mean in place of a posterior",
        "  sample (hierarchical: posterior means at every layer; VQ-VAE: exactly the model's ELBO). The",
        "  same image always gets the same score, whatever it is batched with: use it as an anomaly score.",
        "- `sample` takes one seed per image (a rank-0 `n` could not be batched by the server); the",
        "  same seed gives the same image. Temperature is 1.",
        "- Bad input is refused inside the graph with INVALID_ARGUMENT and a message naming what was",
        "  expected: a wrong image shape, float pixels outside [0, 1], labels outside [0, num_classes),",
        "  codes outside [0, num_embeddings), NaN/Inf latents.",
        "- Every signature refuses more rows per call than the export's `max_rows` (the last column:",
        "  the default, `vaezoo export --max-rows N` sets another, recorded in",
        "  `assets.extra/vaezoo_export.json` under `limits`) with INVALID_ARGUMENT naming the limit,",
        "  before any work is done. What else bounds a request on a server: [exports/README.md]"
        "(../exports/README.md#bounding-what-a-request-can-cost).",
        "",
    ]
    for families, rows in sections:
        lines += [f"## {', '.join(families)}", "", "| signature | inputs | outputs | rows per call |",
                  "|---|---|---|---|"]
        lines += [f"| `{name}` | {ins} | {outs} | {limit} |" for name, ins, outs, limit in rows]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/signatures.md is out of date")
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = open(args.output, encoding="utf-8").read() if os.path.exists(args.output) else ""
        if current != text:
            print(f"{args.output} is out of date; run python docs/make_signature_table.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
