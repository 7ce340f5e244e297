variable "region" {
  description = "AWS region to create the resources in (where the launcher will rent GPUs)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region: an AWS region name like us-east-1."
  }
}

variable "operator_cidrs" {
  description = "Networks allowed on SSH, e.g. [\"203.0.113.7/32\"] (your public address)."
  type        = list(string)
}

variable "alert_email" {
  description = "E-mail address for alerts, or null."
  type        = string
  default     = null
}

variable "monthly_budget_usd" {
  description = "Monthly AWS budget in USD."
  type        = number
  default     = 50
}
