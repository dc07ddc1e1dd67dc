"""ROC/AUC, bootstrap confidence intervals and paired comparisons. Failure is the positive class."""

from wif_core.metrics.auc import (
    AucResult,
    PairedResult,
    auc_ci,
    bootstrap_aucs,
    delong,
    paired_compare,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "AucResult",
    "PairedResult",
    "auc_ci",
    "bootstrap_aucs",
    "delong",
    "paired_compare",
    "roc_auc_score",
    "roc_curve",
]
