"""Golden values for WeCoLoRA.Evaluation.Lars: MAE's util/lars.py (copied verbatim below) run for three steps.

Run: /usr/bin/python3 lars_golden.py > lars_golden.json   (PyTorch 1.13)
Parameters: a 2-D weight, a 1-D bias (no trust ratio) and an all-zero 2-D weight (trust ratio 1). Gradients and learning
rates differ per step; weight decay 0.05 exercises the decay path.
"""
import json
import torch


class LARS(torch.optim.Optimizer):
    """LARS optimizer, no rate scaling or weight decay for parameters <= 1D (MAE util/lars.py)."""
    def __init__(self, params, lr=0, weight_decay=0, momentum=0.9, trust_coefficient=0.001):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g['params']:
                dp = p.grad

                if dp is None:
                    continue

                if p.ndim > 1:  # if not normalization gamma/beta or bias
                    dp = dp.add(p, alpha=g['weight_decay'])
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.,
                                    torch.where(update_norm > 0,
                                                (g['trust_coefficient'] * param_norm / update_norm), one),
                                    one)
                    dp = dp.mul(q)

                param_state = self.state[p]
                if 'mu' not in param_state:
                    param_state['mu'] = torch.zeros_like(p)
                mu = param_state['mu']
                mu.mul_(g['momentum']).add_(dp)
                p.add_(mu, alpha=-g['lr'])


torch.manual_seed(0)
w = torch.randn(3, 4)
b = torch.randn(3)
z = torch.zeros(2, 2)
params = [w.clone().requires_grad_(), b.clone().requires_grad_(), z.clone().requires_grad_()]
opt = LARS(params, lr=0, weight_decay=0.05, momentum=0.9, trust_coefficient=0.001)
lrs = [0.5, 2.0, 7.0]
steps = []
for lr in lrs:
    grads = [torch.randn_like(p) for p in params]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    for group in opt.param_groups:
        group['lr'] = lr
    opt.step()
    steps.append({"lr": lr, "grads": [g.flatten().tolist() for g in grads],
                  "after": [p.detach().flatten().tolist() for p in params]})
print(json.dumps({"shapes": [list(p.shape) for p in params], "weight_decay": 0.05, "momentum": 0.9, "trust": 0.001,
                  "initial": [w.flatten().tolist(), b.flatten().tolist(), z.flatten().tolist()], "steps": steps}, indent=1))
