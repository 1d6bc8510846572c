"""Pixel metrics: precision / recall / F1 / IoU, dataset-wide and per image, and relaxed (slack) variants."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError


def _safe(num: float, den: float, empty: float) -> float:
    return float(num / den) if den > 0 else empty


def prf(tp: float, fp: float, fn: float) -> dict:
    """Precision, recall, F1, IoU from counts.  With no positives on either side every score is 1 (a correct
    empty prediction)."""
    empty = 1.0 if tp + fp + fn == 0 else 0.0
    p = _safe(tp, tp + fp, empty)
    r = _safe(tp, tp + fn, empty)
    f1 = _safe(2 * tp, 2 * tp + fp + fn, empty)
    iou = _safe(tp, tp + fp + fn, empty)
    return {"precision": p, "recall": r, "f1": f1, "iou": iou}


def relaxed_counts(pred: np.ndarray, gt: np.ndarray, slack: int) -> tuple[int, int, int]:
    """Relaxed precision/recall (Mnih 2013 style, symmetric): a predicted pixel is correct when a ground-truth pixel
    lies within ``slack`` px, a ground-truth pixel is found when a prediction lies within ``slack`` px.
    Returns (predicted pixels near the truth, predicted pixels not near it, truth pixels not found)."""
    d_gt = ndimage.distance_transform_edt(~gt) if gt.any() else np.full(gt.shape, np.inf)
    d_pr = ndimage.distance_transform_edt(~pred) if pred.any() else np.full(pred.shape, np.inf)
    tp_p = int(np.count_nonzero(pred & (d_gt <= slack)))
    fp = int(np.count_nonzero(pred)) - tp_p
    fn = int(np.count_nonzero(gt & (d_pr > slack)))
    return tp_p, fp, fn


@dataclass
class PixelCounts:
    """Accumulates TP/FP/FN over images (dataset-wide, micro) and keeps per-image scores (macro)."""

    slack: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    relaxed_found_pred: int = 0  # predicted pixels near the truth, summed over images
    relaxed_pred: int = 0  # predicted pixels
    relaxed_missed_gt: int = 0  # truth pixels with no prediction near them
    gt_pixels: int = 0
    per_image: list = field(default_factory=list)

    def add(self, pred: np.ndarray, gt: np.ndarray, name: str = "") -> dict:
        """Count one image pair; returns its per-image scores."""
        pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
        if pred.shape != gt.shape:
            raise InputError(f"{name or 'prediction'}: size {pred.shape[1]}x{pred.shape[0]} differs from the "
                            f"ground truth {gt.shape[1]}x{gt.shape[0]}")
        tp = int(np.count_nonzero(pred & gt))
        fp = int(np.count_nonzero(pred & ~gt))
        fn = int(np.count_nonzero(~pred & gt))
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
        row = {"name": name, **prf(tp, fp, fn)}
        if self.slack:
            rtp, rfp, rfn = relaxed_counts(pred, gt, self.slack)
            rel = prf(rtp, rfp, rfn)
            # relaxed recall uses the GT side: found GT pixels / all GT pixels
            n_gt = int(np.count_nonzero(gt))
            self.relaxed_found_pred += rtp
            self.relaxed_pred += rtp + rfp
            self.relaxed_missed_gt += rfn
            self.gt_pixels += n_gt
            rel_recall = (n_gt - rfn) / n_gt if n_gt else (1.0 if not pred.any() else 0.0)
            rp = rel["precision"]
            row.update({"relaxed_precision": rp, "relaxed_recall": rel_recall,
                        "relaxed_f1": 2 * rp * rel_recall / (rp + rel_recall) if rp + rel_recall else 0.0})
        self.per_image.append(row)
        return row

    def summary(self) -> dict:
        """Scores of both kinds, each named for what it is: pooled over the dataset (``precision``, ``f1``,
        ``relaxed_f1``... from the summed counts) and per-image means (``mean_precision``, ``mean_f1``,
        ``mean_relaxed_f1``...)."""
        out = prf(self.tp, self.fp, self.fn)
        if self.slack:
            rp = self.relaxed_found_pred / self.relaxed_pred if self.relaxed_pred else float(self.gt_pixels == 0)
            found = self.gt_pixels - self.relaxed_missed_gt
            rr = found / self.gt_pixels if self.gt_pixels else float(self.relaxed_pred == 0)
            out.update({"relaxed_precision": rp, "relaxed_recall": rr,
                        "relaxed_f1": 2 * rp * rr / (rp + rr) if rp + rr else 0.0})
        if self.per_image:
            keys = ["precision", "recall", "f1", "iou"]
            keys += ["relaxed_precision", "relaxed_recall", "relaxed_f1"] if self.slack else []
            for k in keys:
                out[f"mean_{k}"] = float(np.mean([r[k] for r in self.per_image]))
        return out
