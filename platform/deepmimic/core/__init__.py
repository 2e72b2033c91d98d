"""The pure-PyTorch core: data formats, architectures, training and evaluation.

Nothing under this package may import Ray or MLflow, so it runs on any box
with PyTorch (a test enforces it).
"""
