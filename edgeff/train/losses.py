"""Layer-local FF losses on (n_layers, B) goodness of positive and negative samples; one loss per layer."""
import torch.nn.functional as F


def softplus_theta_loss(g_pos, g_neg, theta: float):
    """Hinton's loss (Ortiz Torres et al. eq. 1; Beigzad 2025 eq. 8 with its 1/2): push G+ above theta
    and G- below it."""
    return 0.5 * (F.softplus(theta - g_pos) + F.softplus(g_neg - theta)).mean(dim=-1)


def symba_loss(g_pos, g_neg, alpha: float):
    """SymBa (Ortiz Torres et al. sec. II-B): softplus(-alpha (G+ - G-)); no threshold, symmetric gradients."""
    return F.softplus(-alpha * (g_pos - g_neg)).mean(dim=-1)


def ff_loss(kind: str, g_pos, g_neg, theta: float, alpha: float):
    if kind == "symba":
        return symba_loss(g_pos, g_neg, alpha)
    return softplus_theta_loss(g_pos, g_neg, theta)
