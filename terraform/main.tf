# gpuhire's AWS account side: one bucket, one KMS key, one ECR repository, one instance role,
# one SSH security group. Alerts (SNS, EventBridge, Budgets) are in alerts.tf, the IAM policies
# in iam.tf. Names the launcher relies on (tags, S3 layout, ECR name) are in locals below.

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

data "aws_vpc" "default" {
  count   = var.vpc_id == null ? 1 : 0
  default = true
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  bucket_name = coalesce(var.bucket_name, "${var.name_prefix}-${local.account_id}-${local.region}")
  vpc_id      = var.vpc_id != null ? var.vpc_id : data.aws_vpc.default[0].id

  # Contract with launcher/providers (helper code reads the same names).
  tag_job             = "gpuhire:job"
  ecr_repository_name = "gpuhire-htr"
  sns_topic_name      = "gpuhire-alerts"

  tags = merge(var.tags, { "gpuhire:managed-by" = "terraform" })
}

################################################################################
# KMS: one customer-managed key for the bucket, the ECR repository and the SNS topic
################################################################################

resource "aws_kms_key" "this" {
  description             = "gpuhire: S3 data and checkpoints, ECR images, SNS alerts"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.this.key_id
}

# A key policy's "*" resource means this key only; the IAM-policy checks below read it as "all".
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:Key policy: resource "*" is this key; write access is the account's own administration of its key.
  #checkov:skip=CKV_AWS_356:Key policy: resource "*" is this key, the only resource a key policy can name.
  #checkov:skip=CKV_AWS_109:Key policy: the account root statement delegates key management to IAM (AWS's default key policy).
  # The account administers the key through IAM (the standard default statement).
  statement {
    sid       = "AccountAdministersKey"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # Like the AWS-managed aws/s3 key: principals of this account may use the key only through
  # S3, ECR and SNS in this region. Their access is decided by the bucket, repository and
  # topic permissions, so the user and instance policies need no kms:* action of their own.
  statement {
    sid       = "UseThroughServices"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "s3.${local.region}.amazonaws.com",
        "ecr.${local.region}.amazonaws.com",
        "sns.${local.region}.amazonaws.com",
      ]
    }
  }

  # EventBridge and AWS Budgets publish to the encrypted topic as services; which topic they may
  # publish to is decided by the topic policy (alerts.tf, with source conditions).
  # https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
  statement {
    sid       = "EventBridgePublishesToEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }

  statement {
    sid       = "BudgetsPublishesToEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["budgets.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

################################################################################
# S3: data (data/<sha256>/), jobs (jobs/<job>/{checkpoints/,model.*,segment/,pages/,results/})
################################################################################

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:Server access logs would need a second bucket per user; CloudTrail data events are the audit path if one is wanted (docs/terraform.md).
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage cost; the bucket holds re-creatable training data and checkpoints.
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications; the launcher polls what it uploads.
  bucket = local.bucket_name
  tags   = local.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# SSE-KMS with the module's key rather than SSE-S3: the key's use is logged and can be revoked,
# and the bucket key keeps the KMS request cost near zero.
resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

# S3 lifecycle filters match a key prefix, not a pattern: jobs/*/checkpoints/ cannot be named.
# Checkpoints are therefore expired by object tag (the uploader sets gpuhire:kind=checkpoint).
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_retention_days
    }
    # Delete markers left alone once their last old version expired.
    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "expire-old-checkpoints"
    status = "Enabled"
    filter {
      and {
        prefix = "jobs/"
        tags   = { "gpuhire:kind" = "checkpoint" }
      }
    }
    expiration {
      days = var.checkpoint_retention_days
    }
  }

  rule {
    id     = "expire-fleet-files"
    status = "Enabled"
    filter {
      and {
        prefix = "jobs/"
        tags   = { "gpuhire:kind" = "fleet" }
      }
    }
    expiration {
      days = var.fleet_retention_days
    }
  }

  rule {
    id     = "expire-staged-data"
    status = "Enabled"
    filter {
      prefix = "data/"
    }
    expiration {
      days = var.data_retention_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket     = aws_s3_bucket.this.id
  policy     = data.aws_iam_policy_document.bucket.json
  depends_on = [aws_s3_bucket_public_access_block.this]
}

################################################################################
# ECR: the HTR trainer image
################################################################################

resource "aws_ecr_repository" "this" {
  name                 = local.ecr_repository_name
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.this.arn
  }

  tags = local.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Untagged layers of failed pushes go after a day"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 1
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest ${var.ecr_keep_images} images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_keep_images
        }
        action = { type = "expire" }
      },
    ]
  })
}

################################################################################
# Security group: SSH from the operators only
################################################################################

# The launcher creates one group per job (gpuhire-<job>, tagged gpuhire:job, removed by gc).
# This long-lived group is for boxes started by hand; it is deliberately not tagged gpuhire:job.
resource "aws_security_group" "this" {
  #checkov:skip=CKV2_AWS_5:Attached at launch time to instances started outside terraform.
  name        = "${var.name_prefix}-operator-ssh"
  description = "gpuhire: SSH from the operator networks only"
  vpc_id      = local.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "this" {
  for_each = toset(var.operator_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "SSH from operator network ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = strcontains(each.value, ":") ? null : each.value
  cidr_ipv6         = strcontains(each.value, ":") ? each.value : null
  tags              = local.tags
}

# Egress: HTTPS (S3, ECR, PyPI, the AWS APIs) and HTTP (Ubuntu package mirrors) to anywhere.
# DNS to the VPC resolver and time from 169.254.169.123 are not subject to security groups.
resource "aws_vpc_security_group_egress_rule" "this" {
  for_each = { https = 443, http = 80 }

  security_group_id = aws_security_group.this.id
  description       = "Outbound ${upper(each.key)}: AWS APIs, S3, ECR, package mirrors"
  ip_protocol       = "tcp"
  from_port         = each.value
  to_port           = each.value
  cidr_ipv4         = "0.0.0.0/0"
  tags              = local.tags
}
