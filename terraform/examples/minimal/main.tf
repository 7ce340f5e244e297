# Minimal gpuhire account setup.
#
# WARNING: applying this creates billable AWS resources. Standing cost is small (a KMS key,
# about 1 USD/month, plus S3 and ECR storage you fill), but the budget and alerts exist to
# catch the real cost: GPU instances the launcher rents. `terraform destroy` removes it all
# (the bucket must be emptied first; the KMS key is deleted after its waiting period).
#
#   terraform init
#   terraform apply -var 'operator_cidrs=["203.0.113.7/32"]' -var 'alert_email=me@example.org'
#   gpuhire init --from-terraform .

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "gpuhire:stack" = "examples/minimal"
    }
  }
}

module "gpuhire" {
  source = "../.."

  operator_cidrs     = var.operator_cidrs
  alert_email        = var.alert_email
  monthly_budget_usd = var.monthly_budget_usd
}
