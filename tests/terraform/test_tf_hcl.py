"""terraform/ parses, and follows the layout of terraform-aws-modules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.terraform.tfparse import TERRAFORM, TF_FILES, blocks, load

EXAMPLE = TERRAFORM / "examples" / "minimal"


def test_there_are_tf_files() -> None:
    names = {p.relative_to(TERRAFORM).as_posix() for p in TF_FILES}
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= names
    assert {"examples/minimal/main.tf", "examples/minimal/versions.tf"} <= names


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.relative_to(TERRAFORM).as_posix())
def test_every_tf_file_parses(path: Path) -> None:
    assert isinstance(load(path), dict)


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.relative_to(TERRAFORM).as_posix())
def test_fmt_style_by_hand(path: Path) -> None:
    """What `terraform fmt` would fix: tabs, odd indentation, trailing blanks (also where there
    is no terraform binary; with one, test_terraform_fmt_check runs the real thing)."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        where = f"{path.name}:{number}"
        assert "\t" not in line, f"{where}: tab"
        assert line == line.rstrip(), f"{where}: trailing blank"
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, f"{where}: indentation of {indent}"
    assert path.read_text().endswith("}\n"), f"{path.name}: must end with one newline"


@pytest.mark.skipif(shutil.which("terraform") is None,
                    reason="no terraform binary on PATH: only the by-hand fmt style check runs")
def test_terraform_fmt_check() -> None:
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    proc = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff", "-no-color", str(TERRAFORM)],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, f"run `terraform fmt -recursive terraform/`:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("directory", [TERRAFORM, EXAMPLE], ids=["module", "example"])
def test_every_variable_is_typed_and_described(directory: Path) -> None:
    variables = blocks("variable", directory)
    assert variables
    for (name,), body in variables.items():
        assert body.get("type") and body["type"] != "any", f"variable {name}: give a type"
        assert len(body.get("description", "")) > 10, f"variable {name}: describe it"


def test_variables_that_can_be_wrong_are_validated() -> None:
    variables = blocks("variable")
    must = {
        "name_prefix", "bucket_name", "operator_cidrs", "allowed_instance_types", "alert_email",
        "monthly_budget_usd", "budget_thresholds_percent", "checkpoint_retention_days",
        "data_retention_days", "noncurrent_version_retention_days", "ecr_keep_images",
        "kms_deletion_window_days", "vpc_id", "tags",
    }
    for name in must:
        assert variables[(name,)].get("validation"), f"variable {name}: add a validation block"
    cidr_rules = " ".join(v["condition"] for v in variables[("operator_cidrs",)]["validation"])
    assert "cidrhost" in cidr_rules and ">= 8" in cidr_rules  # CIDR, and never 0.0.0.0/0
    assert "default" not in variables[("operator_cidrs",)]  # no silent default for who gets SSH


def test_resources_are_named_this() -> None:
    for kind, name in blocks("resource"):
        assert name == "this", f"resource {kind}.{name}: name the one resource of a kind `this`"


def test_outputs_are_described() -> None:
    for directory in (TERRAFORM, EXAMPLE):
        for (name,), body in blocks("output", directory).items():
            assert body.get("description"), f"output {name} in {directory.name}: describe it"


def test_example_outputs_what_gpuhire_init_reads() -> None:
    from launcher.init_config import TerraformOutputs

    needed = set(TerraformOutputs.__dataclass_fields__)  # field names are the output names
    for directory in (TERRAFORM, EXAMPLE):
        names = {name for (name,) in blocks("output", directory)}
        assert needed <= names, f"{directory}: outputs missing {sorted(needed - names)}"


def test_example_warns_that_it_costs_money() -> None:
    text = (EXAMPLE / "main.tf").read_text()
    assert re.search(r"WARNING: .*billable", text)
    assert 'source = "../.."' in text


def test_names_shared_with_the_launcher() -> None:
    """Tags and names the AWS provider uses (launcher/providers) are the ones terraform uses."""
    from launcher.providers.aws.setup import TAG_JOB, TAG_OWNER

    main = (TERRAFORM / "main.tf").read_text()
    assert f'tag_job             = "{TAG_JOB}"' in main
    assert TAG_OWNER == "gpuhire:owner"
    assert 'ecr_repository_name = "gpuhire-htr"' in main
    assert 'sns_topic_name      = "gpuhire-alerts"' in main


def test_readme_lists_every_input_and_output() -> None:
    readme = (TERRAFORM / "README.md").read_text()
    for kind in ("variable", "output"):
        for (name,) in blocks(kind):
            assert f"| `{name}` |" in readme, f"terraform/README.md: add {kind} {name}"


def test_docs_name_the_commands_a_user_runs() -> None:
    docs = (TERRAFORM.parent / "docs" / "terraform.md").read_text()
    for command in ("terraform init", "terraform plan", "terraform apply",
                    "gpuhire init --from-terraform", "gpuhire init --outputs-file"):
        assert command in docs
    for kind, _name in blocks("resource"):
        assert f"`{kind}.this`" in docs, f"docs/terraform.md: say what {kind} is for"
