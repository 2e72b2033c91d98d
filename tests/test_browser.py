"""The MLflow UI as a user sees it: a small sweep's store served by a real `mlflow server`, browsed by
Debian's Chromium through Playwright (its own browser download cannot reach the internet here; `make test`
installs Chromium). Screenshots are left in the test's temporary folder."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NAMES = ["Mentor · split 0.2", "Mentor · split 0.5", "Student-A · split 0.2", "Student-A · split 0.5",
         "Student-B · split 0.2", "Student-B · split 0.5"]


@pytest.fixture(scope="module")
def ui(served_sweep, tmp_path_factory):
    """The model-training URL the sweep printed for its tracking server, and a folder for screenshots."""
    _, _, proc = served_sweep
    line = next(line for line in proc.stdout.splitlines() if "workflowType=machine_learning" in line)
    return line.rsplit(" ", 1)[1], tmp_path_factory.mktemp("browser")


def best_run(served_sweep, student: str) -> str:
    """The run name of `student`'s best trial (by relative accuracy): the one that carries figures and a model."""
    import csv

    _, root, _ = served_sweep
    rows = [r for r in csv.DictReader((root / "served" / "results.csv").open()) if r["student"] == student]
    best = max(rows, key=lambda r: (float(r["relative_accuracy"]), float(r["student_accuracy"])))
    return f"{student} · split {float(best['split.mentor_ratio']):g}"


@pytest.fixture
def page(ui):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Chromium is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def test_the_sweep_opens_in_the_model_training_view_with_its_runs_nested_and_named(ui, page):
    url, tmp = ui
    page.goto(url)
    parent = page.locator("[role=row]").filter(has=page.locator('a[href*="/runs/"]', has_text="served"))
    parent.locator('button[data-component-id*="runnamecellrenderer"]').click()  # the parent's [+]
    for name in NAMES:
        page.locator('a[href*="/runs/"]', has_text=name).wait_for()
    page.screenshot(path=tmp / "runs.png")
    assert page.get_by_text("7 matching runs").is_visible()
    assert page.get_by_role("link", name="Model registry").is_visible()  # the training view's side bar
    assert not page.get_by_text("Evaluation runs").is_visible()          # the GenAI view's side bar


def test_a_student_run_shows_its_learning_curve_chart_and_plots(ui, page, served_sweep):
    """The registered best trial's run: the runs a user opens carry the figures (`tracking.models: best`)."""
    url, tmp = ui
    page.goto(url)
    page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()
    page.locator('a[href*="/runs/"]', has_text=best_run(served_sweep, "Student-B")).click()
    page.get_by_role("tab", name="Model metrics").click()
    page.get_by_text("epoch_test_accuracy", exact=True).first.wait_for()
    page.screenshot(path=tmp / "student_metrics.png")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("plots", exact=True).first.click()
    page.get_by_text("learning_curves.png").first.click()
    page.get_by_text("plots/learning_curves.png").first.wait_for()
    assert page.get_by_text("confusion_matrices.png").first.is_visible()
    page.wait_for_function("[...document.images].some(i => i.complete && i.naturalWidth >= 500)")  # the plot, drawn
    page.screenshot(path=tmp / "student_plots.png")


def test_the_registered_student_shows_its_version_and_grid_values(ui, page):
    url, tmp = ui
    page.goto(url.split("#")[0] + "#/models/served-Student-B")
    page.get_by_text("Version 1").first.wait_for()
    page.screenshot(path=tmp / "registered.png")
    body = page.inner_text("body")
    assert "split.mentor_ratio" in body and "relative_accuracy" in body
