variable "name_prefix" {
  description = "Prefix of every name this module creates (IAM role, KMS alias, rules). Lower case, digits and dashes."
  type        = string
  default     = "gpuhire"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix: 3 to 32 characters, lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket for data, checkpoints and models. null: <name_prefix>-<account id>-<region>."
  type        = string
  default     = null

  validation {
    condition = var.bucket_name == null || (
      can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) &&
      !can(regex("\\.\\.", var.bucket_name)) &&
      !can(regex("^\\d+\\.\\d+\\.\\d+\\.\\d+$", var.bucket_name)) &&
      !can(regex("^xn--", var.bucket_name))
    )
    error_message = "bucket_name: 3 to 63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit, no '..', not an IP address (S3 bucket naming rules)."
  }
}

variable "operator_cidrs" {
  description = "Networks allowed to reach the instances on SSH (port 22), e.g. [\"203.0.113.7/32\"]. Never the whole internet."
  type        = list(string)

  validation {
    condition     = length(var.operator_cidrs) > 0
    error_message = "operator_cidrs: give at least one network, e.g. your public address with /32."
  }

  validation {
    condition     = alltrue([for c in var.operator_cidrs : try(cidrhost(c, 0) == split("/", c)[0], false)])
    error_message = "operator_cidrs: every entry must be a network in CIDR form with its host bits zero, e.g. 203.0.113.7/32 or 198.51.100.0/24."
  }

  validation {
    condition     = alltrue([for c in var.operator_cidrs : try(tonumber(split("/", c)[1]) >= 8, false)])
    error_message = "operator_cidrs: 0.0.0.0/0, ::/0 and other networks wider than /8 are refused: SSH must not be open to the internet."
  }
}

variable "allowed_instance_types" {
  description = "Instance type patterns the user policy may launch (IAM StringLike). The launcher rents T4 (g4dn) and L4 (g6)."
  type        = list(string)
  default     = ["g4dn.*", "g6.*"]

  validation {
    condition     = length(var.allowed_instance_types) > 0 && alltrue([for t in var.allowed_instance_types : can(regex("^[a-z0-9-]+\\.[a-z0-9*]+$", t))])
    error_message = "allowed_instance_types: patterns like \"g4dn.*\" or \"g6.xlarge\"."
  }
}

variable "alert_email" {
  description = "E-mail address subscribed to the alerts topic (AWS sends a confirmation mail first). null: no subscription."
  type        = string
  default     = null

  validation {
    condition     = var.alert_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email: an address like me@example.org, or null."
  }
}

variable "monthly_budget_usd" {
  description = "Monthly AWS cost budget in USD for the whole account; alerts go to the topic at the thresholds below."
  type        = number
  default     = 50

  validation {
    condition     = var.monthly_budget_usd > 0
    error_message = "monthly_budget_usd must be greater than 0."
  }
}

variable "budget_thresholds_percent" {
  description = "Percentages of monthly_budget_usd at which the budget notifies the topic (actual spend)."
  type        = list(number)
  default     = [50, 80, 100]

  validation {
    condition     = length(var.budget_thresholds_percent) > 0 && alltrue([for p in var.budget_thresholds_percent : p > 0 && p <= 1000])
    error_message = "budget_thresholds_percent: one or more numbers in (0, 1000]."
  }
}

variable "fleet_retention_days" {
  description = "Days after which an inference fleet's pages, model and results (tagged gpuhire:kind=fleet, under jobs/) expire."
  type        = number
  default     = 14

  validation {
    condition     = var.fleet_retention_days >= 1 && floor(var.fleet_retention_days) == var.fleet_retention_days
    error_message = "fleet_retention_days: a whole number of days, at least 1."
  }
}

variable "checkpoint_retention_days" {
  description = "Days after which checkpoint objects (tagged gpuhire:kind=checkpoint, under jobs/) expire."
  type        = number
  default     = 30

  validation {
    condition     = var.checkpoint_retention_days >= 1 && floor(var.checkpoint_retention_days) == var.checkpoint_retention_days
    error_message = "checkpoint_retention_days: a whole number of days, at least 1."
  }
}

variable "data_retention_days" {
  description = "Days after which content-hashed training data under data/ expires (it is re-uploaded when needed)."
  type        = number
  default     = 90

  validation {
    condition     = var.data_retention_days >= 1 && floor(var.data_retention_days) == var.data_retention_days
    error_message = "data_retention_days: a whole number of days, at least 1."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days a replaced or deleted object version is kept (versioning guards against mistakes, not for archives)."
  type        = number
  default     = 7

  validation {
    condition     = var.noncurrent_version_retention_days >= 1 && floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days
    error_message = "noncurrent_version_retention_days: a whole number of days, at least 1."
  }
}

variable "ecr_keep_images" {
  description = "Number of tagged trainer images kept in the ECR repository; older ones expire."
  type        = number
  default     = 10

  validation {
    condition     = var.ecr_keep_images >= 1 && floor(var.ecr_keep_images) == var.ecr_keep_images
    error_message = "ecr_keep_images: a whole number, at least 1."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the KMS key is deleted after a destroy (7 to 30 days)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "vpc_id" {
  description = "VPC of the SSH security group. null: the region's default VPC."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id: an id like vpc-0123456789abcdef0, or null for the default VPC."
  }
}

variable "create_user_policy" {
  description = "Create the IAM policy a gpuhire user needs as a managed policy (it is also an output, as JSON)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource. Do not use gpuhire:job here: the launcher's gc removes what carries it."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains(keys(var.tags), "gpuhire:job")
    error_message = "tags: gpuhire:job is reserved for the launcher's per-job resources (gc deletes them)."
  }
}

variable "create_spot_service_linked_role" {
  description = "Create AWSServiceRoleForEC2Spot. Only for accounts that never requested a spot instance (it fails if the role exists)."
  type        = bool
  default     = false
}
