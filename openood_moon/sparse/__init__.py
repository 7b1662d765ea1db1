"""Sparse training: exact-count masks, ERK/uniform densities, RigL/SET/static topology updates."""
from .density import INIT_CHOICES, erk_densities, layer_counts, maskable_parameters, uniform_densities
from .masking import METHOD_CHOICES, Masking, cosine_drop_fraction

__all__ = ["INIT_CHOICES", "METHOD_CHOICES", "Masking", "cosine_drop_fraction", "erk_densities",
           "layer_counts", "maskable_parameters", "uniform_densities"]
