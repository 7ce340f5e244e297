"""The variables' validation blocks refuse bad values (needs the terraform binary: skipped without).

Only variables.tf is copied into a scratch directory: with no resources it needs no provider,
so `terraform init` and `plan` run offline and evaluate exactly the module's validation rules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.terraform.tfparse import TERRAFORM

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary")

OK_CIDRS = '["203.0.113.7/32"]'
CASES = [
    ({"operator_cidrs": OK_CIDRS}, None),
    ({"operator_cidrs": '["2001:db8:42::/48", "198.51.100.0/24"]'}, None),
    ({"operator_cidrs": '["0.0.0.0/0"]'}, "wider than /8"),
    ({"operator_cidrs": '["::/0"]'}, "wider than /8"),
    ({"operator_cidrs": '["10.0.0.1/24"]'}, "host bits zero"),
    ({"operator_cidrs": '["my laptop"]'}, "CIDR form"),
    ({"operator_cidrs": "[]"}, "at least one network"),
    ({"operator_cidrs": OK_CIDRS, "bucket_name": "My_Bucket"}, "bucket_name:"),
    ({"operator_cidrs": OK_CIDRS, "bucket_name": "192.168.0.1"}, "bucket_name:"),
    ({"operator_cidrs": OK_CIDRS, "monthly_budget_usd": "0"}, "greater than 0"),
    ({"operator_cidrs": OK_CIDRS, "alert_email": "me-at-example.org"}, "alert_email:"),
    ({"operator_cidrs": OK_CIDRS, "tags": '{"gpuhire:job" = "x"}'}, "gpuhire:job is reserved"),
    ({"operator_cidrs": OK_CIDRS, "vpc_id": "default"}, "vpc_id:"),
    ({"operator_cidrs": OK_CIDRS, "kms_deletion_window_days": "3"}, "between 7 and 30"),
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tfvars")
    shutil.copy(TERRAFORM / "variables.tf", directory)
    _terraform(directory, "init", "-input=false", check=True)
    return directory


def _terraform(directory: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    proc = subprocess.run(["terraform", f"-chdir={directory}", *args, "-no-color"],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize(("variables", "error"), CASES, ids=[str(c[1] or c[0]) for c in CASES])
def test_validation(scratch: Path, variables: dict[str, str], error: str | None) -> None:
    args = [f"-var={name}={value}" for name, value in variables.items()]
    proc = _terraform(scratch, "plan", "-input=false", *args)
    if error is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0
        assert error in " ".join(proc.stderr.split()), proc.stderr
