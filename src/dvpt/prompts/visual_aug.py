"""Class-wise augmentation of prompts from the visual modality (dvpt's ``visual_aug``).

``proto``: prototype-conditioned prompts. A small network ``h`` maps a class embedding
``e_c`` (unit norm, in the joint image-text space) to a shift of the context vectors, so
class c's prompt is ``[v_1 + h(e_c), ..., v_M + h(e_c), w(c)]``. Its last layer starts at
zero: before training the prompts are exactly CoOp's. ``e_c`` is

* the visual prototype ``p_c`` (running mean of every training feature of class c seen so
  far, augmented views included) for a class that has training images;
* the hand-crafted text feature ``t^h_c`` (the *proxy*) for a class without images (novel
  classes, new names at predict time).

Because ``h`` must accept both, training feeds it the proxy instead of the prototype for each
class with probability ``proxy_prob`` and adds ``L_align = mean_c |h(p_c) - h(t^h_c)|^2``,
so proxies and prototypes become interchangeable inputs.

Optionally the shift is norm-bounded (``bound_shift``): ``h(e)`` is squashed to
``b(h) = h * rho * tanh(|h| / rho) / |h|`` with ``rho = r * mean_m |v_m|``, so it can never move
a prompt further than ``r`` times the size of the context it shifts, while small shifts pass
unchanged (``tanh(x) ~ x``). Without it the learned shift outgrows the context and the text
proxies of novel classes move their prompts as far as prototypes move base prompts; the
bound is an option, off by default: on held-out runs it did not win novel accuracy back
(docs/results.md).

``mixup``: class-wise feature mixup. Same-class pairs are mixed (new views of a class), and
pairs of different classes become *virtual classes* whose text feature is the same
interpolation of the two classes' soft text features; both are classified with CE.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.base import match_by_name


class ProtoShift(nn.Module):
    """``h``: class embedding [C, E] -> context shift [C, D]; plus the prototype bank."""

    def __init__(self, embed_dim: int, text_width: int, classnames: Sequence[str], hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, text_width))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)
        #: the classes that can have prototypes: those the method was trained on
        self.bank_classnames = list(classnames)
        self.register_buffer("proto_sum", torch.zeros(len(classnames), embed_dim))
        self.register_buffer("proto_count", torch.zeros(len(classnames)))

    def forward(self, embeddings: Tensor, limit: Tensor | None = None) -> Tensor:
        """Shift [C, D] of each class embedding; norm-bounded by ``limit`` when given."""
        shift = self.net(embeddings)
        return shift if limit is None else bound_shift(shift, limit)

    @torch.no_grad()
    def observe(self, feats: Tensor, labels: Tensor) -> None:
        """Add a training batch (unit-norm features, labels into the bank classes) to the bank."""
        self.proto_sum.index_add_(0, labels, feats.to(self.proto_sum.dtype))
        self.proto_count.index_add_(0, labels, torch.ones_like(labels, dtype=self.proto_count.dtype))

    def prototypes(self) -> Tensor:
        """[C_bank, E] unit-norm class means (zero rows for classes never seen)."""
        return F.normalize(self.proto_sum / self.proto_count.clamp_min(1).unsqueeze(1), dim=-1)

    def train_embeddings(self, proxies: Tensor, proxy_prob: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(e [C, E], has_proto [C]): prototype, or proxy with prob ``proxy_prob`` / when unseen."""
        seen = self.proto_count > 0
        draw = torch.rand(len(seen), generator=generator).to(seen.device)
        use_proto = seen & (draw >= proxy_prob)
        emb = torch.where(use_proto.unsqueeze(1), self.prototypes().to(proxies.dtype), proxies)
        return emb, seen

    def eval_embeddings(self, classnames: Sequence[str], proxies: Tensor, use_bank: bool) -> Tensor:
        """e [C, E] for any class list: the prototype of a trained class (``use_bank``), else its proxy."""
        if not use_bank:
            return proxies
        protos = self.prototypes().to(proxies.dtype)
        out = proxies.clone()
        # by position for the trained list itself, by name for others: two "crane" classes keep
        # their own prototypes (a dict keyed by name gave both the second one's)
        for c, i in enumerate(match_by_name(classnames, self.bank_classnames)):
            if i is not None and self.proto_count[i] > 0:
                out[c] = protos[i]
        return out

    def alignment(self, proxies: Tensor, seen: Tensor, limit: Tensor | None = None) -> Tensor:
        """L_align = mean over seen classes of |h(p_c) - h(t^h_c)|^2 (0 before any prototype)."""
        if not bool(seen.any()):
            return proxies.new_zeros(())
        protos = self.prototypes().to(proxies.dtype)[seen]
        return (self(protos, limit) - self(proxies[seen], limit)).pow(2).sum(-1).mean()


def bound_shift(shift: Tensor, limit: Tensor | float) -> Tensor:
    """Row-wise ``shift * limit * tanh(|shift| / limit) / |shift|``: norm < ``limit``, ~identity when small.

    A smooth clip (not a hard one) so that a shift at the bound still receives gradients."""
    norm = shift.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return shift * (limit * torch.tanh(norm / limit) / norm)


# ---- mixup ---------------------------------------------------------------------------
def beta_draws(alpha: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` draws of Beta(alpha, alpha), reproducible from ``generator`` (CPU)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.distributions.Beta(alpha, alpha).sample((n,))


def random_partner(labels: Tensor, same: bool, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """For each sample, a random partner of the same (or another) class; (partner, has_one)."""
    n = len(labels)
    mask = (labels.unsqueeze(0) == labels.unsqueeze(1)) if same else (labels.unsqueeze(0) != labels.unsqueeze(1))
    if same:
        mask &= ~torch.eye(n, dtype=torch.bool, device=labels.device)
    scores = torch.rand(n, n, generator=generator).to(labels.device).masked_fill(~mask, -1.0)
    partner = scores.argmax(dim=1)
    return partner, mask.any(dim=1)


def mix(a: Tensor, b: Tensor, lam: Tensor) -> Tensor:
    """normalise(lam a + (1 - lam) b), row-wise."""
    lam = lam.to(a.device, a.dtype).unsqueeze(1)
    return F.normalize(lam * a + (1 - lam) * b, dim=-1)


def same_class_mixup(feats: Tensor, labels: Tensor, alpha: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Mixed features of same-class pairs and their labels (samples alone in their class drop out)."""
    partner, ok = random_partner(labels, True, generator)
    lam = beta_draws(alpha, len(labels), generator)
    return mix(feats, feats[partner], lam)[ok], labels[ok]


def virtual_classes(
    feats: Tensor, labels: Tensor, text: Tensor, alpha: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Virtual samples and their class features: (x_v [K, E], t_v [K, E]) for K cross-class pairs.

    x_v = mix(x_i, x_j), t_v = mix(t_{y_i}, t_{y_j}) with the same lambda; sample k belongs to
    virtual class k."""
    partner, ok = random_partner(labels, False, generator)
    lam = beta_draws(alpha, len(labels), generator)
    x_v = mix(feats, feats[partner], lam)[ok]
    t_v = mix(text[labels], text[labels[partner]], lam)[ok]
    return x_v, t_v


# ---- feature: virtual features around class prototypes (training only) ----------------
class FeatureBank(nn.Module):
    """Class-conditional Gaussian feature augmentation, used only in training.

    Running per-class sums give the prototype ``p_c = mean_i x_i`` and the pooled
    within-class covariance ``S = sum_c sum_{i in c} (x_i - p_c)(x_i - p_c)' / (N - C_seen)``,
    shrunk towards isotropy (few shots make ``S`` rank-deficient):

        Sigma = (1 - s) S + s * tr(S) / E * I

    Virtual features of class c are ``x~ = norm(p_c + z)``, ``z ~ N(0, Sigma)``: directions of
    spread shared by all classes (semantic directions), so the soft prompt learns to cover a
    class's spread rather than its few shots. ``L_aug = CE(s <x~, t^s>, c)``. Nothing here
    reaches the test-time classifier: novel classes are scored by ``t^s`` alone.
    """

    def __init__(self, embed_dim: int, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("feat_sum", torch.zeros(n_classes, embed_dim, dtype=torch.float64))
        self.register_buffer("outer_sum", torch.zeros(embed_dim, embed_dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros(n_classes, dtype=torch.float64))

    @torch.no_grad()
    def observe(self, feats: Tensor, labels: Tensor) -> None:
        """Add a batch of unit-norm features with their labels."""
        x = feats.detach().to(self.feat_sum.dtype)
        self.feat_sum.index_add_(0, labels, x)
        self.outer_sum += x.t() @ x
        self.count.index_add_(0, labels, torch.ones_like(labels, dtype=self.count.dtype))

    def prototypes(self) -> Tensor:
        """[C, E] unit-norm class means p_c (zero rows for classes never seen)."""
        return F.normalize(self.feat_sum / self.count.clamp_min(1).unsqueeze(1), dim=-1)

    def covariance(self, shrink: float) -> Tensor:
        """Sigma [E, E]: pooled within-class covariance, shrunk by ``shrink`` towards tr/E * I."""
        seen = self.count > 0
        n = float(self.count.sum())
        means = self.feat_sum[seen] / self.count[seen].unsqueeze(1)
        # sum_i x x' - sum_c n_c p_c p_c'  =  within-class scatter
        scatter = self.outer_sum - (means * self.count[seen].unsqueeze(1)).t() @ means
        s = scatter / max(n - int(seen.sum()), 1.0)
        dim = s.shape[0]
        iso = torch.eye(dim, dtype=s.dtype, device=s.device) * (torch.trace(s) / dim)
        return (1 - shrink) * s + shrink * iso

    def sample(self, n_per_class: int, shrink: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(x~ [K, E] unit-norm, labels [K]) for ``n_per_class`` draws of each seen class."""
        seen = torch.nonzero(self.count > 0).flatten()
        if len(seen) == 0 or n_per_class <= 0:
            return self.feat_sum.new_zeros(0, self.feat_sum.shape[1]), seen.new_zeros(0)
        means = self.feat_sum / self.count.clamp_min(1).unsqueeze(1)  # rows of unseen classes unused
        sigma = self.covariance(shrink)
        evals, evecs = torch.linalg.eigh(sigma)
        root = evecs * evals.clamp_min(0).sqrt().unsqueeze(0)  # root @ root' = Sigma
        labels = seen.repeat_interleave(n_per_class)
        z = torch.randn(len(labels), sigma.shape[0], generator=generator, dtype=sigma.dtype) @ root.t().cpu()
        return F.normalize(means[labels.to(means.device)] + z.to(means.device), dim=-1), labels
