"""DeepMimic Sweep: mentor-student training on unlabeled data, at sweep scale.

Layers, imported in one direction only:
  core/         pure PyTorch + NumPy + pyarrow; never imports Ray or MLflow
  distributed/  Ray Data, Ray Train and Ray Tune adapters around the core
  cli.py        the `deepmimic` command
"""

__version__ = "0.1.0"
