"""Evaluation of vaezoo models: likelihood bounds, reconstruction, codebook use, latents, anomalies.

`evaluate(model, data, metrics=...)` plans the named metrics (each one `Metric` record in
`METRICS`: description, protocol, when it applies, its computation), validates everything
first (metric names, that each applies to the model, the data's shape and dtype, `k`,
outliers, the anomaly score, the classifier) and only then runs the records over the data in
batches; it returns a flat, JSON-safe dict. Every metric is also a function of its own, with
its protocol in its docstring, in the module of its concern:

| module | metric names | functions |
|---|---|---|
| `likelihood` | `elbo`, `iwae` | `elbo_per_example`, `iwae_per_example` |
| `reconstruction` | `mse`, `nmse`, `psnr` | `mse`, `normalized_mse`, `psnr`, `per_image_mse` |
| `codebook` | `perplexity`, `codebook_usage`, `prior_bits_per_code`, `codec_bits_per_code` | `codebook_stats`, `prior_bits_per_code`, `codec_bits_per_code` |
| `compression` | `vqz_rate` (per quality: `vqz_bytes_per_image`, `vqz_bits_per_pixel`, `vqz_psnr`, `vqz_ssim`) | `quality_curve`, `ssim` |
| `latents` | `active_units`, `kl_per_dim`, `kl_per_layer` | `active_units`, `posterior_means`, `kl_per_dim`, `kl_per_layer` |
| `anomaly` | `auroc`, `auprc` | `auroc`, `average_precision`, `anomaly_scores` |
| `samples` | `conditional_accuracy` | `conditional_accuracy` |
| `factors` | `mig`, `beta_vae_score`, `factor_vae_score` | (maths in `vaezoo.disentanglement`) |

`records` defines the `Metric` record; `runner` plans and runs them. Adding a metric is one
record in the module of its concern (and its entry in that module's `RECORDS`) and one test.

Example:
    >>> from vaezoo.evaluation import evaluate
    >>> results = evaluate(model, x_test, metrics=("elbo", "iwae", "mse", "psnr"), k=1000)
    >>> results["iwae"], results["iwae_bits_per_dim"]
    >>> evaluate(model, x_inliers, metrics=("auroc", "auprc"), outliers=x_outliers, score="elbo")
"""

from vaezoo.evaluation.anomaly import SCORES, anomaly_scores, auprc, auroc, average_precision
from vaezoo.evaluation.codebook import codebook_stats, codec_bits_per_code, encode_codes, prior_bits_per_code
from vaezoo.evaluation.compression import quality_curve, ssim
from vaezoo.evaluation.latents import active_units, kl_per_dim, kl_per_layer, posterior_means
from vaezoo.evaluation.likelihood import elbo_per_example, iwae_per_example
from vaezoo.evaluation.reconstruction import (
    mse,
    normalized_mse,
    per_image_mse,
    psnr,
    reconstruction_errors,
    reconstructions,
)
from vaezoo.evaluation.records import Metric
from vaezoo.evaluation.runner import (
    DEFAULT_METRICS,
    DISENTANGLEMENT_METRICS,
    METRICS,
    as_arrays,
    check_metric_names,
    evaluate,
    format_table,
    plan,
    seeded,
)
from vaezoo.evaluation.samples import conditional_accuracy

__all__ = [
    "METRICS", "DEFAULT_METRICS", "DISENTANGLEMENT_METRICS", "SCORES", "Metric", "evaluate", "plan", "seeded",
    "as_arrays", "check_metric_names", "format_table", "elbo_per_example", "iwae_per_example", "reconstructions",
    "reconstruction_errors", "per_image_mse", "mse", "normalized_mse", "psnr", "encode_codes",
    "codebook_stats", "prior_bits_per_code", "codec_bits_per_code", "active_units", "posterior_means", "kl_per_dim", "kl_per_layer",
    "auroc", "average_precision", "auprc", "anomaly_scores", "conditional_accuracy", "quality_curve", "ssim",
]
