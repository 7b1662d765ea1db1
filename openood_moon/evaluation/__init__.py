"""Evaluation pieces shared by both engines: network outputs, ID metrics, OOD metrics, plots."""
