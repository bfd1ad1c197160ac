"""The two MI estimators of dvpt against values computed by hand."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dvpt.losses.mi import iic_mutual_information, infonce_loss, infonce_mi_bound, joint_distribution


def manual_infonce(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    """Symmetric InfoNCE written out with loops and math.log/exp."""
    n = a.shape[0]
    sim = [[float(a[i] @ b[j]) / tau for j in range(n)] for i in range(n)]
    rows = sum(-sim[i][i] + math.log(sum(math.exp(sim[i][j]) for j in range(n))) for i in range(n)) / n
    cols = sum(-sim[j][j] + math.log(sum(math.exp(sim[i][j]) for i in range(n))) for j in range(n)) / n
    return 0.5 * (rows + cols)


def test_infonce_equals_manual_computation():
    torch.manual_seed(0)
    a = F.normalize(torch.randn(5, 8, dtype=torch.float64), dim=-1)
    b = F.normalize(torch.randn(5, 8, dtype=torch.float64), dim=-1)
    for tau in (0.07, 0.5, 1.0):
        assert float(infonce_loss(a, b, tau)) == pytest.approx(manual_infonce(a, b, tau), rel=1e-10)


def test_infonce_is_symmetric_and_bounded():
    torch.manual_seed(1)
    a = F.normalize(torch.randn(6, 4), dim=-1)
    b = F.normalize(torch.randn(6, 4), dim=-1)
    assert float(infonce_loss(a, b, 0.1)) == pytest.approx(float(infonce_loss(b, a, 0.1)), rel=1e-6)
    # identical views at a small temperature: loss -> 0, bound -> log C
    same = torch.eye(6)
    loss = infonce_loss(same, same, 0.01)
    assert float(loss) < 1e-6
    assert float(infonce_mi_bound(loss, 6)) == pytest.approx(math.log(6), abs=1e-5)
    # the bound never exceeds log C
    assert float(infonce_mi_bound(infonce_loss(a, b, 0.1), 6)) <= math.log(6)


@pytest.mark.parametrize("num_classes", [2, 5, 10])
def test_iic_of_identical_balanced_one_hot_is_log_c(num_classes):
    labels = torch.arange(num_classes).repeat(3)
    p = F.one_hot(labels, num_classes).double()
    assert float(iic_mutual_information(p, p)) == pytest.approx(math.log(num_classes), abs=1e-5)


def test_iic_of_independent_predictions_is_zero():
    torch.manual_seed(2)
    p = torch.randn(16, 4, dtype=torch.float64).softmax(-1)
    q = p.mean(0, keepdim=True).expand(16, 4)  # the same for every image: independent of p
    assert float(iic_mutual_information(p, q)) == pytest.approx(0.0, abs=1e-9)
    uniform = torch.full((8, 3), 1 / 3, dtype=torch.float64)
    assert float(iic_mutual_information(uniform, uniform)) == pytest.approx(0.0, abs=1e-9)


def test_iic_equals_manual_formula_on_a_small_joint():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    q = torch.tensor([[0.7, 0.3], [0.1, 0.9], [0.5, 0.5]], dtype=torch.float64)
    joint = [[sum(float(p[x, i] * q[x, j]) for x in range(3)) / 3 for j in range(2)] for i in range(2)]
    sym = [[0.5 * (joint[i][j] + joint[j][i]) for j in range(2)] for i in range(2)]
    row = [sum(sym[i]) for i in range(2)]
    col = [sum(sym[i][j] for i in range(2)) for j in range(2)]
    expected = sum(sym[i][j] * math.log(sym[i][j] / (row[i] * col[j])) for i in range(2) for j in range(2))
    assert torch.allclose(joint_distribution(p, q), torch.tensor(sym, dtype=torch.float64))
    assert float(iic_mutual_information(p, q)) == pytest.approx(expected, rel=1e-6)
    assert expected > 0


def test_iic_gradient_pushes_towards_agreement():
    torch.manual_seed(3)
    logits = torch.randn(12, 3, requires_grad=True)
    q = F.one_hot(torch.arange(3).repeat(4), 3).float()
    before = float(iic_mutual_information(logits.detach().softmax(-1), q))
    (-iic_mutual_information(logits.softmax(-1), q)).backward()
    with torch.no_grad():
        after = float(iic_mutual_information((logits - 1.0 * logits.grad).softmax(-1), q))
    assert after > before
