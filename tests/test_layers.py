"""The core must run on a box without Ray or MLflow; a sweep's trial processes import only what trials use."""

import subprocess
import sys
from pathlib import Path

from .conftest import imported_by_fresh_python

CORE = Path(__file__).resolve().parents[1] / "platform" / "deepmimic" / "core"


def test_core_imports_neither_ray_nor_mlflow():
    modules = sorted(
        "deepmimic.core." + ".".join(p.relative_to(CORE).with_suffix("").parts).removesuffix(".__init__")
        for p in CORE.rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m.rstrip('.'))\n"
        "banned = ('ray', 'mlflow', 'torchvision', 'kornia', 'timm')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in banned)\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(modules) >= 10


def test_a_sweeps_trial_process_imports_neither_mlflow_nor_optuna():
    """A trial unpickles the sweep's trial functions and, for its handle on the tracker's actor, loads the
    module of `Tracker`'s class. Neither may import MLflow (0.5-1 s in every trial process) or Optuna (0.2 s),
    which only the tracker and a student search use."""
    assert imported_by_fresh_python("import deepmimic.distributed.sweep, deepmimic.tracking", "mlflow", "optuna") == []


def test_the_tracker_imports_no_pytorch_until_it_logs_a_model():
    """The sweep's tracker actor loads `deepmimic.tracking` (and through it the run labels): PyTorch, which only
    a logged MLflow model needs, is not imported with it (a sweep with `tracking.models: none` never pays it)."""
    assert imported_by_fresh_python("import deepmimic.tracking", "torch") == []


def test_a_sweeps_trial_process_imports_no_plotting_library():
    """Figures are drawn by the tracker, for the runs a user opens: a trial process, which loads the module of
    `Tracker`'s class for its handle, never pays matplotlib's import."""
    code = "import deepmimic.distributed.trials, deepmimic.tracking"
    assert imported_by_fresh_python(code, "matplotlib", "deepmimic.plots") == []


def test_a_sweep_of_the_paper_s_notation_never_imports_torchvision():
    """torchvision (seconds a process, with the torch._dynamo it imports), kornia and timm are imported where a
    library network or strong augmentation is built, not by the trial functions, the CLI or the config."""
    code = "import deepmimic.cli, deepmimic.distributed.sweep, deepmimic.tracking, deepmimic.config"
    assert imported_by_fresh_python(code, "torchvision", "kornia", "timm", "torch._dynamo") == []
