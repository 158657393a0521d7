"""Experiments: scripts that train and evaluate to answer one question, each printing what it measured (installed
as ``corrbench.experiments``; see the README for what each found)."""
