"""MOON's learning-rate schedule (official code: ``lr_tmp`` + LambdaLR, stepped every iteration).

``lr(s) = lr · (lr_end + (lr_ini - lr_end)·(1 + cos(pi·s/S))/2)`` for ``s < S``, then ``lr·lr_end``,
where ``S`` is the number of steps before the vote (all steps when there is no vote).
"""
import math


def moon_lr(step: int, base_lr: float, lr_ini: float, lr_end: float, cosine_steps: int) -> float:
    if cosine_steps <= 0 or step >= cosine_steps:
        return base_lr * lr_end
    return base_lr * (lr_end + (lr_ini - lr_end) * 0.5 * (1 + math.cos(math.pi * step / cosine_steps)))
