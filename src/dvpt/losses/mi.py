"""Mutual-information estimators between the two text views (soft and hand-crafted).

Two estimators, because the paper does not say which one it uses (``options.mi``):

* ``infonce`` (feature level). For C classes with soft features ``a_c`` and hand-crafted
  features ``b_c`` (unit norm), ``S_ij = <a_i, b_j> / tau``; the loss is the symmetric
  cross-entropy with the diagonal as positives,

      L_nce = 1/2 [ CE(S, I) + CE(S^T, I) ],      I(A; B) >= log C - L_nce.

* ``iic`` (prediction level). For a batch of images, the two views' class posteriors
  ``p(x)`` (soft) and ``q(x)`` (hand-crafted) give a joint distribution over class pairs,
  as Invariant Information Clustering (Ji et al., 2019) estimates it,

      P = sym( mean_x p(x) q(x)^T ),   MI = sum_ij P_ij log( P_ij / (P_i P_j) ),

  which is maximal (log C) for agreeing, confident and class-balanced predictions.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: floor inside the logs only (0 log 0 = 0); IIC itself clamps P to sys.float_info.epsilon
EPS = 1e-8


def infonce_loss(soft: Tensor, hand: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE over classes: row c of ``soft`` is positive with row c of ``hand``.

    Both inputs are [C, E] and unit-norm; returns a scalar (minimised)."""
    sim = soft @ hand.t() / temperature
    target = torch.arange(sim.shape[0], device=sim.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.t(), target))


def infonce_mi_bound(loss: Tensor, num_classes: int) -> Tensor:
    """The lower bound on I(soft; hand) that an InfoNCE loss certifies: log C - L."""
    return math.log(num_classes) - loss


def joint_distribution(p: Tensor, q: Tensor) -> Tensor:
    """IIC's joint P [C, C] of two posteriors [B, C]: batch mean of outer products, symmetrised."""
    joint = p.t() @ q / p.shape[0]
    joint = 0.5 * (joint + joint.t())
    return joint / joint.sum()


def iic_mutual_information(p: Tensor, q: Tensor) -> Tensor:
    """MI (nats) of the two views' predictions ``p``, ``q`` ([B, C] probabilities)."""
    joint = joint_distribution(p, q)
    row = joint.sum(dim=1, keepdim=True)
    col = joint.sum(dim=0, keepdim=True)
    log = lambda t: t.clamp_min(EPS).log()  # noqa: E731 - 0 log 0 = 0, and finite gradients
    return (joint * (log(joint) - log(row) - log(col))).sum()
