"""How many sweep trials run at once: trials plus their training workers must fit."""

from deepmimic.config import SweepConfig, parse_experiment
from deepmimic.distributed.cluster import concurrency, trial_resources

BASE = {"mentor": {"name": "M", "architecture": "c-fc"}, "students": [{"name": "S", "architecture": "c-fc"}]}


def cfg(**resources) -> SweepConfig:
    return parse_experiment({**BASE, "trial_cpus": 0.25, "resources": resources}, "t", SweepConfig)


def test_a_single_worker_trial_holds_its_workers_resources():
    assert trial_resources(cfg(cpus_per_worker=0.5, gpus_per_worker=0.25)) == {"CPU": 0.5, "GPU": 0.25}
    assert concurrency(cfg(cpus_per_worker=0.5), {"CPU": 2.0}) == 4


def test_trials_with_worker_groups_leave_room_for_their_workers():
    # 64 trials would hold all 16 CPUs at 0.25 each and starve their workers: 0.25 + 2 each fits 7 times
    assert trial_resources(cfg(cpus_per_worker=1, num_workers=2)) == {"CPU": 0.25}
    assert concurrency(cfg(cpus_per_worker=1, num_workers=2), {"CPU": 16.0}) == 7


def test_gpus_and_custom_resources_bound_too():
    assert concurrency(cfg(cpus_per_worker=1, gpus_per_worker=0.25), {"CPU": 64.0, "GPU": 2.0}) == 8
    assert concurrency(cfg(cpus_per_worker=1, custom_per_worker={"accel": 1}), {"CPU": 8.0, "accel": 2.0}) == 2


def test_a_resource_the_cluster_lacks_today_sets_no_bound():
    # an autoscaling cluster with no GPU node yet: the autoscaler adds them
    assert concurrency(cfg(cpus_per_worker=1, gpus_per_worker=1), {"CPU": 8.0}) == 8
    assert concurrency(cfg(cpus_per_worker=4), {"CPU": 2.0}) == 1


def test_a_mentor_may_train_on_resources_of_its_own():
    # one mentor alone on a 2-CPU node takes both cores; its students train two at a time on one each
    both = cfg(cpus_per_worker=1, mentor={"cpus_per_worker": 2})
    assert trial_resources(both, "mentor") == {"CPU": 2.0} and concurrency(both, {"CPU": 2.0}, role="mentor") == 1
    assert trial_resources(both, "student") == {"CPU": 1.0} and concurrency(both, {"CPU": 2.0}) == 2
    assert both.resources.of("mentor").threads == 2 and both.resources.of("student").threads == 1
