import pytest
import yaml

from deepmimic.config import apply_overrides, load_experiment, load_sweep, parse_experiment
from deepmimic.errors import UserError

from .conftest import ROOT

BASE = {
    "dataset": {"name": "digits"},
    "training": {"epochs": 7, "lr": 0.1},
    "mentor": {"name": "M", "architecture": "c-mp-fc2", "training": {"epochs": 9}},
    "students": [{"name": "A", "architecture": "c-fc"}],
}


def test_models_inherit_top_level_training_key_by_key():
    cfg = parse_experiment(BASE)
    assert cfg.mentor.training.epochs == 9 and cfg.mentor.training.lr == 0.1
    assert cfg.students[0].training.epochs == 7


def test_a_mentors_resources_override_the_shared_ones_key_by_key():
    cfg = parse_experiment({**BASE, "resources": {"cpus_per_worker": 1, "threads_per_worker": 1,
                                                  "mentor": {"cpus_per_worker": 2}}})
    assert cfg.resources.of("mentor").cpus_per_worker == 2 and cfg.resources.of("mentor").threads == 1
    assert cfg.resources.of("student").cpus_per_worker == 1


def test_a_stream_reads_128_mib_ahead_unless_told_otherwise():
    assert parse_experiment(BASE).data.read_ahead == 128 * 2**20
    assert parse_experiment({**BASE, "data": {"read_ahead": "1GiB"}}).data.read_ahead == 2**30
    assert parse_experiment({**BASE, "data": {"read_ahead": None}}).data.read_ahead is None  # Ray Data's budget


def test_overrides_reach_nested_and_list_items():
    raw = apply_overrides({**BASE, "students": [dict(BASE["students"][0])]},
                          ["students.0.width=8", "split.mentor_ratio=0.5"])
    cfg = parse_experiment(raw)
    assert cfg.students[0].width == 8 and cfg.split.mentor_ratio == 0.5


@pytest.mark.parametrize("change,fragment", [
    ({"split": {"mentor_ratio": 1.5}}, "split.mentor_ratio: Input should be less than 1"),
    ({"mentorr": {}}, "mentorr: unknown key"),
    ({"dataset": {"name": "imagenet"}}, "dataset.name: Input should be"),
    ({"students": [{"name": "A", "architecture": "c-zz"}]},
     "students.0.architecture: architecture 'c-zz': unknown token 'zz'"),
    ({"students": [{"name": "A", "architecture": "c"}, {"name": "A", "architecture": "c"}]},
     "student names must be unique"),
    ({"dataset": {"name": "cifar10"}}, "needs dataset.root"),
    ({"dataset": {"name": "digits", "root": "/data"}}, "dataset: data set 'digits' is bundled"),
    ({"training": {"epochz": 3}}, "training.epochz: unknown key"),
    ({"training": {"label_smoothing": 0.1}}, "students.0.training.label_smoothing: a student's targets are"),
    ({"training": {"lr": 0}}, "training.lr: Input should be greater than 0"),
    ({"method": "distil"}, "method: Input should be 'deepmimic', 'hinton', 'hard' or 'supervised'"),
    ({"resources": {"mentor": {"cpus_per_worker": 0}}}, "resources.mentor.cpus_per_worker: Input should be greater"),
    ({"resources": {"mentor": {"mentor": {}}}}, "resources: mentor.mentor: a mentor's resources hold no mentor"),
])
def test_bad_configs_name_the_field(change, fragment):
    with pytest.raises(UserError) as err:
        parse_experiment({**BASE, **change}, "x.yaml")
    assert str(err.value).startswith("x.yaml: ") and fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("item", ["noequals", "=3", "students.5.width=3"])
def test_bad_overrides(item):
    with pytest.raises(UserError, match="--set"):
        apply_overrides({"students": [{}]}, [item])


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("mentor:\n  name: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml: malformed YAML at line \d"):
        load_experiment(path)


def test_run_refuses_a_search_spaces_grid_instead_of_ignoring_it():
    with pytest.raises(UserError, match="grid: search-space keys, but `deepmimic run` runs one experiment"):
        load_experiment(ROOT / "search_spaces" / "quickstart.yaml")
    cfg = load_experiment(ROOT / "search_spaces" / "quickstart.yaml", ["grid=null"])
    assert cfg.dataset.name == "digits" and len(cfg.students) >= 2


def test_an_experiment_carries_its_variant_and_method():
    cfg = parse_experiment({**BASE, "method": "hinton", "temperature": 3, "variant": {"removal_bound": 0.5}})
    assert (cfg.method, cfg.loss_temperature, cfg.variant.removal_bound) == ("hinton", 3, 0.5)
    assert parse_experiment({**BASE, "temperature": 3}).loss_temperature == 1.0  # deepmimic takes none


@pytest.mark.parametrize("path", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_search_space_validates(path):
    base, points = load_sweep(path)
    assert points and all(p.students or p.search for _, p in points)


SEARCH = {"name": "s", "mentor": {"name": "M", "architecture": "c-mp-fc2"}, "search": {"num_samples": 4}}


@pytest.mark.parametrize("change, message", [
    ({"grid": {"seed": [0, 1]}}, "search: runs against one mentor"),
    ({"resources": {"num_workers": 2}}, "resources.num_workers must be 1"),
    ({"students": [{"name": "Smallest", "architecture": "c-fc"}]}, "'Smallest' is also a student's name"),
    ({"search": {"student_space": {"conv_blocks": [3, 1]}}}, "conv_blocks: [3, 1] is not a range"),
    ({"search": {"grace_period": 20}, "training": {"epochs": 20}}, "leaves nothing to stop early"),
    ({"search": {"objective": "flops"}}, "search.objective"),
    ({"search": None}, "students: at least one, or a `search:` section"),
])
def test_a_search_that_cannot_run_is_refused_in_one_line(tmp_path, change, message):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SEARCH, **change}))
    with pytest.raises(UserError) as e:
        load_sweep(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_search_takes_the_shared_training_defaults_and_counts_its_space(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SEARCH, "training": {"epochs": 27, "lr": 0.1}}))
    base, points = load_sweep(path)
    assert base.search.training.epochs == 27 and base.search.training.lr == 0.1
    assert base.search.grace() == 3 and base.search.student_space.size == 3 * 2 * 4 * 2 * 2
    assert len(points) == 1 and points[0][1].students == []
