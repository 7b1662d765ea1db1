"""openood-moon: MOON (Lei et al., "Embracing Unknown Step by Step", TMLR 2024) for OpenOOD v1.5."""

__version__ = "0.1.0"
