"""The files the runner adds to a configuration, and the engine's environment."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from terrapod.runner.spec import JobSpec
from terrapod.runner.workdir import (
    ENFORCED_VARIABLES_FILE,
    RUN_VARIABLES_FILE,
    WORKSPACE_VARIABLES_FILE,
    InvalidJob,
    JobDirectory,
    engine_environment,
    hcl_string,
    write_variable_files,
)
from tests.unit.runner.conftest import variable

SPEC = JobSpec(
    job_id="job-1",
    run_id="run-1",
    phase="plan",
    organization_name="acme",
    workspace_name="web",
    terraform_version="latest",
    working_directory=None,
)


def test_hcl_string_escapes_quotes_control_characters_and_templates() -> None:
    assert hcl_string('a "b" \\ \n\t\x01 ${x} %{y} $${z}') == (
        '"a \\"b\\" \\\\ \\n\\t\\u0001 $${x} %%{y} $$${z}"'
    )


def test_variable_files_are_private_and_sort_after_the_configurations(tmp_path: Path) -> None:
    spec = dataclasses.replace(
        SPEC,
        variables=(variable("a", "1"), variable("b", "[1]", hcl=True)),
        run_variables=(("a", '"2"'),),
    )

    write_variable_files(tmp_path, spec)

    assert (tmp_path / WORKSPACE_VARIABLES_FILE).read_text() == 'a = "1"\nb = [1]\n'
    assert (tmp_path / RUN_VARIABLES_FILE).read_text() == 'a = "2"\n'
    assert stat.S_IMODE((tmp_path / RUN_VARIABLES_FILE).stat().st_mode) == 0o600
    assert not (tmp_path / ENFORCED_VARIABLES_FILE).exists()
    assert sorted(["zzzz.auto.tfvars", WORKSPACE_VARIABLES_FILE, RUN_VARIABLES_FILE])[1:] == [
        WORKSPACE_VARIABLES_FILE,
        RUN_VARIABLES_FILE,
    ]


def test_enforced_variables_are_written_last_so_they_beat_the_runs(tmp_path: Path) -> None:
    enforced = dataclasses.replace(variable("a", "3"), enforced=True)
    spec = dataclasses.replace(
        SPEC, variables=(variable("a", "1"), enforced), run_variables=(("a", '"2"'),)
    )

    write_variable_files(tmp_path, spec)

    assert (tmp_path / WORKSPACE_VARIABLES_FILE).read_text() == 'a = "1"\n'
    assert (tmp_path / ENFORCED_VARIABLES_FILE).read_text() == 'a = "3"\n'
    files = [ENFORCED_VARIABLES_FILE, RUN_VARIABLES_FILE, WORKSPACE_VARIABLES_FILE]
    assert sorted(files) == [WORKSPACE_VARIABLES_FILE, RUN_VARIABLES_FILE, ENFORCED_VARIABLES_FILE]


def test_engine_environment_is_isolated_from_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", "/nonexistent/terraformrc")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "machine credentials")
    directory = JobDirectory(tmp_path, "run-1")
    spec = dataclasses.replace(
        SPEC, debugging_mode=True, variables=(variable("X", "1", category="env"),)
    )

    env = engine_environment(spec, directory)

    assert env == {
        "PATH": os.environ["PATH"],
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(tmp_path / "run-1" / "home"),
        "TF_CLI_CONFIG_FILE": str(tmp_path / "run-1" / "terraformrc"),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "TF_LOG": "TRACE",
        "TFC_RUN_ID": "run-1",
        "TFC_WORKSPACE_NAME": "web",
        "X": "1",
    }


def test_environment_variable_that_cannot_be_passed_is_refused(tmp_path: Path) -> None:
    spec = dataclasses.replace(SPEC, variables=(variable("A=B", "1", category="env"),))

    with pytest.raises(InvalidJob, match="cannot be passed"):
        engine_environment(spec, JobDirectory(tmp_path, "run-1"))


@pytest.mark.parametrize("run_id", ["", ".", "..", "run/../../x"])
def test_run_id_must_name_one_directory(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(ValueError, match="cannot name a directory"):
        JobDirectory(tmp_path, run_id)
