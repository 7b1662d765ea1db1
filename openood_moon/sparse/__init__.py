"""Sparse training: exact-count masks, ERK/uniform densities, RigL/SET/static topology updates."""
from .density import (INIT_CHOICES, BudgetLayer, budget_layers, erk_densities, layer_counts, layer_densities,
                      maskable_parameters, uniform_densities)
from .masking import METHOD_CHOICES, Masking, cosine_drop_fraction, drop_count, seeded_generator

__all__ = ["INIT_CHOICES", "METHOD_CHOICES", "BudgetLayer", "Masking", "budget_layers", "cosine_drop_fraction",
           "drop_count", "erk_densities", "layer_counts", "layer_densities", "maskable_parameters",
           "seeded_generator", "uniform_densities"]
