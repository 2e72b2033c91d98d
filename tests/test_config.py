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
    ({"method": "distil"},
     "method: unknown method 'distil': one of deepmimic, hinton, hard, supervised, confident, consistent"),
    ({"method": {"name": "confident", "threshold": 1.5}}, "method.threshold: Input should be less than 1"),
    ({"method": {"name": "hinton", "temprature": 2}}, "method.temprature: unknown key"),
    ({"method": {"temperature": 2}}, "method: expected a method's name, or a mapping of its name and knobs"),
    ({"temperature": -1}, "temperature: -1 is not a positive number"),
    ({"mentor": {"name": "E", "members": [{"name": "A", "architecture": "c-fc"},
                                          {"name": "F", "members": [{"name": "B", "architecture": "c-fc"}]}]}},
     "mentor.members: members.1: an ensemble's member cannot be of the kind 'ensemble'"),
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
    cfg = parse_experiment({**BASE, "method": {"name": "hinton", "temperature": 3}, "variant": {"removal_bound": 0.5}})
    assert (cfg.method.name, cfg.method.temperature, cfg.variant.removal_bound) == ("hinton", 3, 0.5)


def test_the_flat_temperature_is_the_default_of_methods_that_take_one():
    assert parse_experiment({**BASE, "method": "hinton", "temperature": 3}).method.temperature == 3
    assert parse_experiment({**BASE, "method": {"name": "hinton", "temperature": 2}, "temperature": 3}
                            ).method.temperature == 2  # its own wins, as a model's own training does
    assert parse_experiment({**BASE, "temperature": 3}).method.knobs() == {}  # deepmimic takes none
    assert parse_experiment({**BASE, "method": "hinton"}).method.temperature == 4.0


def test_a_mentor_is_resolved_to_its_kind_once():
    from deepmimic.mentors import KINDS

    trained = parse_experiment(BASE).mentor
    box = parse_experiment({**BASE, "mentor": {"name": "B", "black_box": {"kind": "onnx", "location": "b.onnx"}}})
    both = parse_experiment({**BASE, "mentor": {"name": "E", "members": [BASE["mentor"], box.mentor.model_dump()]}})
    assert [type(m) for m in (trained, box.mentor, both.mentor)] == [KINDS["trained"], KINDS["black box"],
                                                                   KINDS["ensemble"]]
    assert both.mentor.members[0].training.epochs == 9 and both.mentor.members[0].training.lr == 0.1  # inherited
    assert [where for where, _ in both.mentor.models()] == ["members.0"] and both.mentor.black_boxes()


# Each shipped search space's planned mentors (ensemble members and cached mentors counted once) and student
# trials, from its grid: a space whose grid or planning changes must change this table.
PLANNED = {"cifar10_deeper": (1, 3), "cifar10_fig1_split": (9, 18), "cifar10_table2": (3, 9),
           "cifar10_table3_unbalanced": (1, 30), "cifar10_table4_ood": (1, 21), "cifar10_table6_inference": (1, 2),
           "digits_student_search": (1, 0), "fashion_mnist_mentors": (3, 3), "fashion_mnist_methods": (1, 4),
           "fashion_mnist_student_search": (1, 0), "fashion_mnist_table1": (3, 6), "fashion_mnist_table3": (3, 24),
           "fashion_mnist_table4": (3, 24), "mnist_table1": (3, 6), "own_images_pretrained": (3, 6),
           "quickstart": (6, 12), "tiny_imagenet_table5": (1, 3), "digits_pool_worth": (72, 72),
           "fashion_mnist_pool_worth": (72, 72), "digits_budget": (63, 63), "fashion_mnist_budget": (63, 63),
           "fashion_mnist_beyond": (24, 24), "fashion_mnist_generations": (9, 9),
           "fashion_mnist_generations_ensemble": (24, 12)}


@pytest.mark.parametrize("path", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_search_space_plans_its_mentors_and_trials(path):
    from deepmimic.distributed.planning import plan

    planned = plan(load_sweep(path)[1])
    assert (len(planned.mentors), len(planned.trials)) == PLANNED[path.stem]


def test_an_ensemble_of_generations_plans_each_member_and_its_teachers(tmp_path):
    """A generation may be an ensemble's member: the plan makes its teacher, it, the other member and the
    ensemble, four mentors for one student."""
    from deepmimic.distributed.planning import plan

    m = {"name": "M", "architecture": "c-fc"}
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({**BASE, "mentor": {"name": "E", "members": [
        {"name": "G", "architecture": "c-fc", "teacher": m}, {"name": "W", "architecture": "c-fc", "width": 16}]}}))
    planned = plan(load_sweep(path)[1])
    assert sorted(c.mentor.name for c in planned.mentors.values()) == ["E", "G", "M", "W"]
    assert len(planned.trials) == len(BASE["students"])


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


def test_generations_write_the_mentor_as_a_chain_of_noisy_generations():
    from deepmimic.distributed.keys import mentor_key, with_mentor

    cfg = parse_experiment({**BASE, "generations": 2})
    g2 = cfg.mentor
    assert [g2.name, g2.teacher.name, g2.teacher.teacher.name] == ["M-g2", "M-g1", "M"]
    assert (g2.generation, g2.teacher.generation) == (2, 1) and not hasattr(g2.teacher.teacher, "teacher")
    assert g2.training.augment.policy == "randaugment" and g2.teacher.teacher.training.augment is None  # the noise
    assert g2.training.epochs == 9 and g2.training.lr == 0.1  # the mentor's own recipe, the defaults under it
    assert g2.architecture == g2.teacher.teacher.architecture and g2.needs() == [g2.teacher]
    # generation 0 is the plain mentor's cache entry: a sweep over `generations` trains it once
    assert mentor_key(with_mentor(cfg, g2.teacher.teacher)) == mentor_key(parse_experiment(BASE))


def test_a_grid_over_generations_is_a_point_per_generation_sharing_generation_0(tmp_path):
    from deepmimic.distributed.keys import mentor_key, with_mentor

    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({**BASE, "grid": {"generations": [0, 1]}}))
    _, ((_, zero), (_, one)) = load_sweep(path)
    assert (zero.mentor.name, one.mentor.name, one.mentor.teacher.name) == ("M", "M-g1", "M")
    assert mentor_key(with_mentor(one, one.mentor.teacher)) == mentor_key(zero)  # trained once for both points


@pytest.mark.parametrize("change, message", [
    ({"generations": 1, "mentor": {"name": "B", "black_box": {"kind": "onnx", "location": "b.onnx"}}},
     "generations: needs a mentor with a network"),
    ({"generations": 11}, "generations"),
    ({"generations": 1, "mentor": {"name": "C", "architecture": "c-fc", "ceiling": True}},
     "generations: repeats a plain trained mentor, not one with `ceiling:`"),
    ({"mentor": {"name": "G", "architecture": "c-fc", "teacher": {"name": "M", "architecture": "c-fc"}},
      "dataset": {"name": "image_folder", "root": "x", "unlabeled": "y"}}, "a generation learns from the paper's"),
    ({"mentor": {"name": "F", "architecture": "c-fc", "fixmatch": {}},
      "dataset": {"name": "image_folder", "root": "x", "unlabeled": "y"}}, "a FixMatch mentor learns from the paper"),
    ({"mentor": {"name": "F", "architecture": "c-fc", "fixmatch": {"threshold": 1.5}}}, "fixmatch.threshold"),
    ({"mentor": {"name": "G", "architecture": "c-fc", "width": 4, "teacher": {"name": "M", "architecture": "c-fc"}}},
     "a generation's network is its teacher's size or larger; c-fc has 2,610 parameters, M's 20,810"),
    ({"mentor": {"name": "C", "architecture": "c-fc", "ceiling": True},
      "dataset": {"name": "image_folder", "root": "x", "unlabeled": "y"}}, "the supervised ceiling needs the pool's"),
    ({"mentor": {"name": "C", "architecture": "c-fc", "ceiling": False}}, "ceiling"),
    ({"mentor": {"name": "E", "members": [{"name": "C", "architecture": "c-fc", "ceiling": True}, BASE["mentor"]]}},
     "members"),
])
def test_generations_fixmatch_and_ceilings_that_cannot_be_are_refused(change, message):
    with pytest.raises((UserError, ValueError), match=message):
        parse_experiment({**BASE, **change})


BOX = {"kind": "http", "location": "http://127.0.0.1:1/invocations"}


@pytest.mark.parametrize("box, message", [
    ({"selection": "entropy"}, "selection: chooses pool images within a budget: set budget"),
    ({"budget": 0}, "budget 0: a number of images"),
    ({"budget": 1.5}, "budget 1.5: a number of images"),
    ({"budget": True}, "budget True"),
    ({"budget": 10, "selection": "smart"}, "selection"),
    ({"budget": 10, "rounds": 0}, "rounds"),
])
def test_a_budget_that_cannot_be_is_refused_in_one_line(box, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        parse_experiment({**BASE, "mentor": {"name": "B", "black_box": {**BOX, **box}}}, "x")


@pytest.mark.parametrize("change, message", [
    ({"ood": {"source": "held_out", "classes": ["9"]}}, "ood: a query budget asks about pool images only"),
    ({"dataset": {"name": "image_folder", "root": "x", "unlabeled": "y"}}, "a query budget chooses from the paper"),
])
def test_a_budget_beside_what_it_cannot_serve_is_refused(change, message):
    with pytest.raises(UserError, match=message):
        parse_experiment({**BASE, "mentor": {"name": "B", "black_box": {**BOX, "budget": 10}}, **change}, "x")


@pytest.mark.parametrize("mentor, message", [
    ({"name": "E", "members": [{"name": "B", "black_box": {**BOX, "budget": 10}}, BASE["mentor"]]}, "members.0: a "
     "budgeted black box answers part of the pool"),
    ({"name": "G", "architecture": "c-fc", "teacher": {"name": "B", "black_box": {**BOX, "budget": 10}}},
     "a generation learns from its answers for all of it"),
])
def test_a_budgeted_black_box_cannot_teach_what_needs_the_whole_pool(mentor, message):
    with pytest.raises(UserError, match=message):
        parse_experiment({**BASE, "mentor": mentor}, "x")


def test_a_budgets_selector_is_the_spaces_first_student_at_every_point_of_a_student_axis(tmp_path):
    from deepmimic.distributed.keys import mentor_key

    path = tmp_path / "b.yaml"
    students = [{"name": "A", "architecture": "c-fc"}, {"name": "B", "architecture": "c-mp-fc2"}]
    path.write_text(yaml.safe_dump({**BASE, "students": students, "grid": {"student": ["A", "B"]},
                                    "mentor": {"name": "M", "black_box": {**BOX, "budget": 10}}}))
    points = load_sweep(path)[1]
    assert [p.mentor.black_box.selector.name for _, p in points] == ["A", "A"]
    assert points[0][1].mentor.black_box.selector.training.epochs == 7  # the shared training defaults
    assert mentor_key(points[0][1]) == mentor_key(points[1][1])  # one budget spent for both students


def test_every_way_of_asking_the_whole_pool_is_one_mentor_and_an_unbudgeted_key_is_unchanged():
    from deepmimic.distributed.keys import mentor_key

    def key(**box):
        return mentor_key(parse_experiment({**BASE, "mentor": {"name": "B", "black_box": {**BOX, **box}}}))

    assert key(budget=1.0, selection="entropy") == key(budget=1.0, selection="kcenter") == key()
    assert key(budget=10, selection="entropy") != key(budget=10, selection="kcenter") != key(budget=20)
    unbudgeted = parse_experiment({**BASE, "mentor": {"name": "B", "black_box": BOX}}).mentor
    assert unbudgeted.identity() == unbudgeted.model_dump(exclude={"black_box": {"budget", "rounds", "selection",
                                                                                 "seed_fraction", "selector",
                                                                                 "version"}})


def test_a_grid_axis_whose_name_holds_dots_is_set_whole():
    path = ROOT / "search_spaces" / "digits_budget.yaml"
    base, points = load_sweep(path, ["grid.mentor.black_box.budget=[50, 100]", "grid.seed=[0]"])
    assert base.grid["mentor.black_box.budget"] == [50, 100] and "mentor" not in base.grid
    assert sorted({values["mentor.black_box.budget"] for values, _ in points}) == [50, 100]
    assert len(points) == 2 * len(base.grid["mentor.black_box.selection"])
