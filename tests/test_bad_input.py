"""User mistakes through the CLI: exit code 2, one line naming the culprit, no traceback.

Each case is a file, override or data folder a user could really get wrong;
all of them are caught before any Ray or MLflow work starts.
"""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from .conftest import DEEPMIMIC, broken_image_folder, cifar_batch, free_port, idx_bytes, parquet_images

GOOD = {
    "name": "bad", "dataset": {"name": "digits"}, "training": {"epochs": 1},
    "mentor": {"name": "Mentor", "architecture": "c-mp-fc2", "width": 4},
    "students": [{"name": "A", "architecture": "c-fc", "width": 4}],
}


def with_(path: str, value) -> dict:
    """GOOD with one dotted key set."""
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return raw


def mnist(root: Path, side: int = 28, magic: bytes = b"\x00\x00\x08", truncate: bool = False) -> Path:
    root.mkdir(parents=True)
    for split, n in (("train", 20), ("t10k", 10)):
        (root / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((n, side, side)), magic)))
        (root / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(n) % 10)))
    if truncate:
        data = gzip.decompress((root / "train-images-idx3-ubyte.gz").read_bytes())
        (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(data[: len(data) // 2]))
    return root


def cifar10(root: Path, row: int = 3072, corrupt: bool = False) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = cifar_batch(10, "labels", 10, row)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"\x80\x04garbage" if corrupt else pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [str(i).encode() for i in range(10)]}))
    return root


def tiny_imagenet(root: Path, side: int) -> Path:
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    (folder / "train" / "n01" / "images").mkdir(parents=True)
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("n01\n")
    Image.new("RGB", (side, side)).save(folder / "train" / "n01" / "images" / "a.JPEG")
    Image.new("RGB", (side, side)).save(folder / "val" / "images" / "v.JPEG")
    (folder / "val" / "val_annotations.txt").write_text("v.JPEG\tn01\t0\t0\t1\t1\n")
    return root


def store(folder: Path, content: bytes | None = None) -> Path:
    """A sweep folder whose mlflow.db is `content`, or an SQLite database of someone else's."""
    import sqlite3

    folder.mkdir()
    if content is not None:
        (folder / "mlflow.db").write_bytes(content)
    else:
        with sqlite3.connect(folder / "mlflow.db") as db:
            db.execute("CREATE TABLE invoices (id INTEGER)")
    return folder


def cases(tmp: Path) -> list[tuple[str, list[str], str, dict]]:
    """(id, CLI arguments, fragment the one error line must contain, extra environment)."""
    def space(name: str, raw=None, text: str | None = None) -> str:
        path = tmp / f"{name}.yaml"
        path.write_text(text if text is not None else yaml.safe_dump(raw))
        return str(path)

    def data(name: str, dataset: str, root: Path) -> str:
        return space(name, with_("dataset", {"name": dataset, "root": str(root)}))

    def own(name: str, how: str, **extra) -> str:
        root = broken_image_folder(tmp / f"own-{name}", how)
        return space(name, with_("dataset", {"name": "image_folder", "root": str(root),
                                             "unlabeled": str(root / "unlabeled"), **extra}))

    def parquet(name: str, labels, **extra) -> str:
        path = parquet_images(tmp / name / "train.parquet", np.zeros((6, 8, 8), np.uint8), labels)
        return space(name, with_("dataset", {"name": "parquet", "train": str(path), **extra}))

    def cells(name: str, images: list) -> str:  # a Parquet file of PNG cells, some of them null
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = parquet_images(tmp / name / "png.parquet", np.zeros((1, 8, 8), np.uint8), [0])
        png = pq.read_table(path).column("image")[0].as_py()
        table = pa.table({"image": pa.array([png if i else None for i in images], pa.binary()),
                          "label": pa.array([k % 2 for k in range(len(images))], pa.int64())})
        pq.write_table(table, tmp / name / "train.parquet")
        return space(name, with_("dataset", {"name": "parquet", "train": str(tmp / name / "train.parquet")}))

    good = space("good", GOOD)
    junk = str(tmp / "junk.pth")
    Path(junk).write_bytes(b"not a pickle")
    sweep = lambda raw: with_("grid", raw)  # noqa: E731
    return [
        ("missing file", ["run", str(tmp / "nowhere.yaml")], "nowhere.yaml: no such file", {}),
        ("malformed yaml", ["run", space("malformed", text="name: [unclosed\n")], "malformed.yaml", {}),
        ("yaml not a mapping", ["run", space("list", text="- a\n- b\n")], "list.yaml", {}),
        ("unknown key", ["run", space("unknown", with_("epochz", 3))], "epochz", {}),
        ("unknown nested key", ["run", space("nested", with_("mentor.archtecture", "c-fc"))], "mentor.archtecture", {}),
        ("ratio above 1", ["run", space("ratio", with_("split.mentor_ratio", 1.5))], "split.mentor_ratio", {}),
        ("ratio negative via --set", ["run", good, "--set", "split.mentor_ratio=-0.1"], "split.mentor_ratio", {}),
        ("removal bound 1.2", ["sweep", space("bound", sweep({"variant.removal_bound": [0.3, 1.2]}))],
         "variant.removal_bound", {}),
        ("ood ratio negative", ["sweep", space("ood", with_("variant", {"ood_ratio": -0.1}))], "variant.ood_ratio", {}),
        ("supervised with out-of-domain images", ["sweep", space("supervised", {**with_("variant", {"ood_ratio": 0.2}),
         "method": "supervised", "ood": {"source": "held_out", "classes": ["9"]}})], "no true labels", {}),
        ("unknown method", ["sweep", space("method", sweep({"method": ["deepmimic", "magic"]}))], "method", {}),
        ("ood without source", ["sweep", space("nosource", with_("variant", {"ood_ratio": 0.2}))], "ood", {}),
        ("unknown data set", ["run", space("dataset", with_("dataset.name", "imagenet"))], "dataset.name", {}),
        ("bad architecture token", ["run", good, "--set", "mentor.architecture=c-xx-fc"], "unknown token 'xx'", {}),
        ("unbalanced parenthesis", ["run", good, "--set", "students.0.architecture=(c-bn-fc"],
         "students.0.architecture", {}),
        ("too many poolings", ["run", good, "--set", "mentor.architecture=c-mp-c-mp-c-mp-c-mp-fc"],
         "mentor.architecture", {}),
        ("zero epochs", ["run", good, "--set", "training.epochs=0"], "epochs", {}),
        ("batch size not a number", ["run", good, "--set", "training.batch_size=big"], "batch_size", {}),
        ("no students", ["run", space("nostudents", with_("students", []))], "students", {}),
        ("duplicate students", ["run", space("dup", with_("students", GOOD["students"] * 2))], "repeated: A", {}),
        ("unknown grid axis", ["sweep", space("axis", sweep({"foo.bar": [1, 2]}))], "foo", {}),
        ("grid names unknown student", ["sweep", space("who", sweep({"student": ["Z"]}))], "Z", {}),
        ("empty grid axis", ["sweep", space("emptyaxis", sweep({"seed": []}))], "grid.seed", {}),
        ("--set without =", ["run", good, "--set", "training.epochs"], "expected KEY=VALUE", {}),
        ("--set unknown path", ["run", good, "--set", "training.epochz=3"], "epochz", {}),
        ("--set bad yaml value", ["run", good, "--set", "training.epochs=[1,"], "not valid YAML", {}),
        ("zero workers", ["run", good, "--set", "resources.num_workers=0"], "resources.num_workers", {}),
        ("data folder missing", ["run", data("nofolder", "mnist", tmp / "absent")], "absent does not exist", {}),
        ("mnist files missing", ["run", data("empty", "mnist", (tmp / "empty").resolve())],
         "missing train-images-idx3-ubyte", {}),
        ("corrupt idx magic", ["run", data("magic", "mnist", mnist(tmp / "magic", magic=b"\x00\x00\x0d"))],
         "bad magic number", {}),
        ("truncated idx", ["run", data("short", "mnist", mnist(tmp / "short", truncate=True))], "IDX header says", {}),
        ("wrong image shape", ["run", data("shape", "mnist", mnist(tmp / "shape", side=32))],
         "images are 1×32×32, expected 1×28×28", {}),
        ("corrupt cifar pickle", ["run", data("pickle", "cifar10", cifar10(tmp / "pickle", corrupt=True))],
         "corrupt CIFAR pickle", {}),
        ("cifar rows of wrong length", ["run", data("rows", "cifar10", cifar10(tmp / "rows", row=1000))],
         "expected N×3072", {}),
        ("tiny imagenet 32×32", ["run", data("tiny", "tiny_imagenet", tiny_imagenet(tmp / "tiny", 32))],
         "expected 64×64", {}),
        ("unreachable tracking uri", ["sweep", good, "--out", str(tmp / "out")], "127.0.0.1:9: unreachable",
         {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
        ("black-box file missing", ["sweep", space("nobox", with_("mentor", {"name": "M", "black_box": {
            "kind": "onnx", "location": str(tmp / "none.onnx")}}))], "none.onnx: no such file", {}),
        ("http black box not answering", ["sweep", space("down", with_("mentor", {"name": "M", "black_box": {
            "kind": "http", "location": f"http://127.0.0.1:{free_port()}/invocations"}}))],
         "/invocations: not answering (Connection refused); is its server up?", {}),
        ("http black box with a file path", ["sweep", space("http", with_("mentor", {"name": "M", "black_box": {
            "kind": "http", "location": "model.onnx"}}))], "expected an http(s):// URL", {}),
        ("consistent teaching by a black box", ["sweep", space("askbox", {**with_("mentor", {"name": "M", "black_box": {
            "kind": "onnx", "location": "m.onnx"}}), "method": "consistent"})], "a black box has no network here", {}),
        ("ensemble of one mentor", ["sweep", space("one", with_("mentor", {"name": "E", "members": [GOOD["mentor"]]}))],
         "mentor.members", {}),
        ("export of a folder that is no checkpoint", ["export", str(tmp), "--out", str(tmp / "m.onnx")],
         "no manifest", {}),
        ("report of no sweep", ["report", str(tmp)], str(tmp), {}),
        ("unknown torchvision model", ["run", good, "--set", "mentor.architecture=torchvision/resnet19"],
         "mentor.architecture: architecture 'torchvision/resnet19': not a torchvision classifier", {}),
        ("vit on 8×8 images", ["run", good, "--set", "students.0.architecture=torchvision/vit_b_16"],
         "does not build for 1×8×8 images (Wrong image height! Expected 224", {}),
        ("weights for the paper's notation", ["run", good, "--set", "mentor.weights=w.pt"],
         "weights: only a library network", {}),
        ("weights file missing", ["run", space("noweights", with_("mentor", {
            "name": "M", "architecture": "torchvision/resnet18", "weights": str(tmp / "none.pth")}))],
         "mentor.weights: weights " + str(tmp / "none.pth") + ": no such file", {}),
        ("weights file not a state dict", ["run", space("badweights", with_("mentor", {
            "name": "M", "architecture": "torchvision/resnet18", "weights": junk}))], "not a PyTorch state dict", {}),
        ("unknown weights name", ["run", space("weightsname", with_("mentor", {
            "name": "M", "architecture": "torchvision/resnet18", "weights": "IMAGENET9K"}))],
         "neither a file nor one of resnet18's weights (IMAGENET1K_V1)", {}),
        ("augment policy unknown", ["run", good, "--set", "training.augment={policy: autoaugment}"],
         "training.augment.policy", {}),
        ("augment magnitude 30", ["run", good, "--set", "training.augment={policy: randaugment, magnitude: 30}"],
         "training.augment.magnitude", {}),
        ("experiment name with a path", ["run", good, "--set", "name=../../evil"], "name: '../../evil': a name", {}),
        ("student name with a path", ["run", good, "--set", "students.0.name=../../../tmp/evil"],
         "students.0.name: '../../../tmp/evil': a name becomes a folder name", {}),
        ("mentor name with a separator", ["run", good, "--set", "mentor.name=a/b"], "mentor.name: 'a/b'", {}),
        ("ensemble name with a path", ["sweep", space("ens", with_("mentor", {"name": "../evil", "members": [
            GOOD["mentor"], {**GOOD["mentor"], "name": "M2", "seed": 1}]}))], "mentor.name: '../evil'", {}),
        ("black-box mentor name with a path", ["sweep", space("boxname", with_("mentor", {"name": "../../evil",
            "black_box": {"kind": "http", "location": "http://127.0.0.1:9/invocations"}}))],
         "mentor.name: '../../evil'", {}),
        ("name with a control character", ["run", good, "--set", "students.0.name=\"a\\tb\""],
         "students.0.name: 'a\\tb'", {}),
        ("name of 101 characters", ["run", good, "--set", f"name={'n' * 101}"], "name: a name has 1 to 100", {}),
        ("repeated grid value", ["sweep", space("repeat", sweep({"student": ["A", "A"]}))],
         "grid.student: repeated value \"A\"", {}),
        ("ensemble members of one name", ["sweep", space("members", with_("mentor", {"name": "E", "members": [
            GOOD["mentor"], {**GOOD["mentor"], "seed": 1}]}))], "ensemble member names must be unique", {}),
        ("--out is a file", ["sweep", good, "--out", str(tmp / "good.yaml")], "good.yaml: is a file, not a folder", {}),
        ("--out of run under a file", ["run", good, "--out", str(tmp / "good.yaml" / "out")],
         "good.yaml is a file, not a folder", {}),
        ("--cache not writable", ["sweep", good, "--out", str(tmp / "out"), "--cache", "/proc/deepmimic-cache"],
         "--cache /proc/deepmimic-cache: not writable", {}),
        ("--storage not writable", ["sweep", good, "--storage", "/proc/deepmimic"],
         "--storage /proc/deepmimic: not writable", {}),
        ("corrupt mlflow.db", ["sweep", good, "--out", str(store(tmp / "corrupt", b"\x00garbage" * 200))],
         "mlflow.db: not a readable MLflow store (file is not a database): move it aside", {}),
        ("foreign mlflow.db", ["sweep", good, "--out", str(store(tmp / "foreign"))],
         "mlflow.db: an SQLite database, but not an MLflow store", {}),
        ("run on a search space with a grid", ["run", space("grid", sweep({"seed": [0, 1]}))],
         "grid: search-space keys, but `deepmimic run` runs one experiment", {}),
        ("a root for a bundled data set", ["run", good, "--set", f"dataset.root={tmp}"],
         "data set 'digits' is bundled and reads no files", {}),
        ("unknown key in training", ["run", good, "--set", "mentor.training.lrate=0.1"],
         "mentor.training.lrate: unknown key", {}),
        ("unknown command", ["fly"], "invalid choice: 'fly'", {}),
        ("corrupt image", ["run", own("corrupt", "corrupt")], "class0/0.png: not a readable image", {}),
        ("truncated image", ["run", own("truncated", "truncated")], "class1/1.png: not a readable image", {}),
        ("a file that is not an image", ["run", own("csv", "not an image")], "labels.csv: not an image file", {}),
        ("empty class folder", ["run", own("emptyclass", "empty class")], "class3: empty class folder", {}),
        ("images of different sizes", ["run", own("sizes", "sizes")], "large.png is 16×16", {}),
        ("a pool file that is not an image", ["run", own("poolfile", "pool not an image")],
         "notes.txt: not an image file", {}),
        ("a 16-bit image", ["run", own("deep", "16-bit")], "class0/0.png: an image of mode I;16; 8-bit", {}),
        ("a decompression bomb", ["run", own("bomb", "enormous")], "class0/0.png: too large to decode", {}),
        ("a link out of the folder", ["run", own("link", "link out")],
         f"class0/0.png: a link to {os.path.realpath(tmp)}/outside.png, outside", {}),
        ("a pool's link to a folder", ["run", own("poollink", "pool link to a folder")],
         "unlabeled/batch-b: a link to a folder, not followed", {}),
        ("a pool inside train/", ["run", space("inside", with_("dataset", {
            "name": "image_folder", "root": str(broken_image_folder(tmp / "inside", "")),
            "unlabeled": str(tmp / "inside" / "train" / "class0")}))], "keep the pool in a folder of its own", {}),
        ("pool glob matching nothing", ["run", space("noglob", with_("dataset", {
            "name": "image_folder", "root": str(broken_image_folder(tmp / "noglob", "")),
            "unlabeled": str(tmp / "nowhere" / "*.parquet")}))], "matches no file", {}),
        ("label column of floats", ["run", parquet("floats", [0.5] * 6)], "is double: expected integers or strings",
         {}),
        ("a null image cell", ["run", cells("nullcell", [1, 0, 1, 1, 1, 1])],
         "train.parquet row 1 (null): not a readable image (no image format Pillow knows)", {}),
        ("a Parquet file with no rows", ["run", cells("norows", [])], "train.parquet: no rows", {}),
        ("missing label column", ["run", parquet("nolabel", None)], "no column 'label'", {}),
        ("renamed image column", ["run", parquet("column", [0, 1] * 3, image_column="pixels")], "no column 'pixels'",
         {}),
        ("train glob matching nothing", ["run", space("trainglob", with_("dataset", {
            "name": "parquet", "train": str(tmp / "none-*.parquet")}))], "none-*.parquet' matches no file", {}),
        ("a split with a separate pool", ["run", space("split", {**with_("dataset", {
            "name": "image_folder", "root": str(tmp), "unlabeled": str(tmp)}), "split": {"mentor_ratio": 0.3}})],
         "split: does not apply with dataset.unlabeled", {}),
        ("removal bounds on a pool", ["sweep", space("removal", {**with_("dataset", {
            "name": "image_folder", "root": str(tmp), "unlabeled": str(tmp)}),
            "grid": {"variant.removal_bound": [0.0, 0.5]}})], "an unlabelled pool has no classes", {}),
        ("test_ratio on an academic data set", ["run", good, "--set", "dataset.test_ratio=0.2"],
         "test_ratio: applies to your own images", {}),
        ("in_memory_limit not a size", ["run", good, "--set", "data.in_memory_limit=lots"],
         "data.in_memory_limit: 'lots': expected a size", {}),
    ]


def in_process(args: list[str], env: dict, monkeypatch) -> tuple[int, str]:
    """The CLI's entry point (`deepmimic` is `sys.exit(main())`) in this process: (exit code, stderr)."""
    import contextlib
    import io

    from deepmimic.cli import main

    err = io.StringIO()
    with monkeypatch.context() as m:
        m.delenv("RAY_ADDRESS", raising=False)
        for k, v in env.items():
            m.setenv(k, v)
        with contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except BaseException as e:  # a traceback is a failure of this test, not a crash of it
                return -1, f"Traceback: {type(e).__name__}: {e}"
    return code, err.getvalue()


def one_error_line(code: int, stderr: str, fragment: str) -> bool:
    lines = stderr.strip().splitlines()
    return (code == 2 and len(lines) == 1 and lines[0].startswith("deepmimic: error: ") and fragment in lines[0]
            and "Traceback" not in stderr)


def test_every_user_mistake_gets_one_line_and_exit_2(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    table = cases(tmp_path)
    assert len({name for name, *_ in table}) == len(table) >= 30
    wrong = []
    for name, args, fragment, env in table:
        code, stderr = in_process(args, env, monkeypatch)
        if not one_error_line(code, stderr, fragment):
            wrong.append(f"{name}: exit {code}, stderr {stderr[-600:]!r}")
    assert not wrong, "\n".join(wrong)
    assert not (tmp_path / "out").exists()  # no half-written sweep folder for a refused sweep
    assert not list(tmp_path.parent.glob("evil*")) and not Path("/tmp/evil").exists()  # no name led outside
    assert sorted(p.name for p in (tmp_path / "corrupt").iterdir()) == ["mlflow.db"]  # the store left as it was


def test_the_installed_command_exits_2_with_one_line(tmp_path):
    """A few of the cases through a real `deepmimic` process: exit status and stderr as a shell sees them."""
    (tmp_path / "empty").mkdir()
    picked = [c for c in cases(tmp_path) if c[0] in ("malformed yaml", "bad architecture token", "unknown command")]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with ThreadPoolExecutor(len(picked)) as pool:
        procs = list(pool.map(lambda c: subprocess.run([*DEEPMIMIC, *c[1]], capture_output=True, text=True, env=env,
                                                       timeout=120), picked))
    for (name, _, fragment, _), proc in zip(picked, procs):
        assert one_error_line(proc.returncode, proc.stderr, fragment), \
            f"{name}: {proc.returncode} {proc.stderr[-600:]!r}"
