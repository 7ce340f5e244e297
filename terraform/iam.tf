# Two IAM documents: the role of the training box (instance profile), and the policy a person
# needs to run gpuhire (output user_policy_json, optional managed policy). Both list only what
# is used. tests/terraform/test_tf_policy.py checks the user policy against the launcher's calls
# (launcher/providers/aws_ops.py): every call allowed, nothing else.

locals {
  ec2_arn     = "arn:${local.partition}:ec2:*:${local.account_id}"
  job_tag_key = "aws:ResourceTag/${local.tag_job}"
  job_req_key = "aws:RequestTag/${local.tag_job}"
}

################################################################################
# Instance role: the training box
################################################################################

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = "${var.name_prefix}-instance"
  description          = "gpuhire training box: its job prefixes in the bucket, pulls the trainer image"
  assume_role_policy   = data.aws_iam_policy_document.assume_ec2.json
  max_session_duration = 3600
  tags                 = local.tags
}

resource "aws_iam_instance_profile" "this" {
  name = "${var.name_prefix}-instance"
  role = aws_iam_role.this.name
  tags = local.tags
}

# Every box shares this role, so a box can read another job's prefix: IAM cannot tie a role
# session to the gpuhire:job tag of the instance. The bucket holds one user's (or team's) data.
data "aws_iam_policy_document" "instance" {
  statement {
    sid       = "ListJobAndDataPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["jobs/*", "data/*"]
    }
  }

  statement {
    sid       = "ReadJobsAndData"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.this.arn}/jobs/*", "${aws_s3_bucket.this.arn}/data/*"]
  }

  statement {
    sid       = "WriteJobOutputs"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.this.arn}/jobs/*"]
  }

  # Checkpoints are uploaded with the tag gpuhire:kind=checkpoint (the lifecycle rule expires
  # them by it) and older ones are pruned by the trainer.
  statement {
    sid       = "TagAndPruneCheckpoints"
    actions   = ["s3:PutObjectTagging", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.this.arn}/jobs/*/checkpoints/*"]
  }

  # GetAuthorizationToken has no resource-level permissions; the pulls below are per repository.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullTrainerImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.this.arn]
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "${var.name_prefix}-instance"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.instance.json
}

################################################################################
# User policy: exactly the calls gpuhire makes
################################################################################

data "aws_iam_policy_document" "user" {
  # Reads with no resource-level permissions in EC2/STS: "*" is the only possible resource.
  statement {
    sid = "ReadOnlyDescribe"
    actions = [
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypeOfferings",
      "ec2:DescribeInstances",
      "ec2:DescribeKeyPairs",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSpotPriceHistory",
      "ec2:DescribeSubnets",
      "sts:GetCallerIdentity",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "DeepLearningAmiParameter"
    actions   = ["ssm:GetParameter"]
    resources = ["arn:${local.partition}:ssm:*::parameter/aws/service/deeplearning/ami/x86_64/*"]
  }

  # RunInstances is authorised per resource it touches. The instance must carry gpuhire:job,
  # be one of the allowed types and require IMDSv2; its volumes must be tagged and encrypted.
  statement {
    sid       = "LaunchTaggedInstance"
    actions   = ["ec2:RunInstances"]
    resources = ["${local.ec2_arn}:instance/*"]
    condition {
      test     = "Null"
      variable = local.job_req_key
      values   = ["false"]
    }
    condition {
      test     = "StringLike"
      variable = "ec2:InstanceType"
      values   = var.allowed_instance_types
    }
    condition {
      test     = "StringEquals"
      variable = "ec2:MetadataHttpTokens"
      values   = ["required"]
    }
  }

  statement {
    sid       = "LaunchTaggedEncryptedVolume"
    actions   = ["ec2:RunInstances"]
    resources = ["${local.ec2_arn}:volume/*"]
    condition {
      test     = "Null"
      variable = local.job_req_key
      values   = ["false"]
    }
    condition {
      test     = "Bool"
      variable = "ec2:Encrypted"
      values   = ["true"]
    }
  }

  statement {
    sid     = "LaunchWithJobResources"
    actions = ["ec2:RunInstances"]
    resources = [
      "arn:${local.partition}:ec2:*::image/*",
      "${local.ec2_arn}:subnet/*",
      "${local.ec2_arn}:network-interface/*",
      "${local.ec2_arn}:spot-instances-request/*",
      "${local.ec2_arn}:key-pair/gpuhire-*",
    ]
  }

  statement {
    sid       = "LaunchWithJobSecurityGroup"
    actions   = ["ec2:RunInstances"]
    resources = ["${local.ec2_arn}:security-group/*"]
    condition {
      test     = "Null"
      variable = local.job_tag_key
      values   = ["false"]
    }
  }

  # Tags only as part of the create calls (TagSpecifications), never on existing resources.
  statement {
    sid     = "TagOnCreate"
    actions = ["ec2:CreateTags"]
    resources = [
      "${local.ec2_arn}:instance/*",
      "${local.ec2_arn}:volume/*",
      "${local.ec2_arn}:key-pair/gpuhire-*",
      "${local.ec2_arn}:security-group/*",
    ]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances", "ImportKeyPair", "CreateSecurityGroup"]
    }
  }

  statement {
    sid       = "TerminateJobInstances"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.ec2_arn}:instance/*"]
    condition {
      test     = "Null"
      variable = local.job_tag_key
      values   = ["false"]
    }
  }

  statement {
    sid       = "ImportJobKeyPair"
    actions   = ["ec2:ImportKeyPair"]
    resources = ["${local.ec2_arn}:key-pair/gpuhire-*"]
    condition {
      test     = "Null"
      variable = local.job_req_key
      values   = ["false"]
    }
  }

  statement {
    sid       = "DeleteJobKeyPair"
    actions   = ["ec2:DeleteKeyPair"]
    resources = ["${local.ec2_arn}:key-pair/gpuhire-*"]
  }

  statement {
    sid       = "CreateJobSecurityGroup"
    actions   = ["ec2:CreateSecurityGroup"]
    resources = ["${local.ec2_arn}:security-group/*"]
    condition {
      test     = "Null"
      variable = local.job_req_key
      values   = ["false"]
    }
  }

  statement {
    sid       = "CreateSecurityGroupInVpc"
    actions   = ["ec2:CreateSecurityGroup"]
    resources = ["${local.ec2_arn}:vpc/*"]
  }

  statement {
    sid       = "ManageJobSecurityGroup"
    actions   = ["ec2:AuthorizeSecurityGroupIngress", "ec2:DeleteSecurityGroup"]
    resources = ["${local.ec2_arn}:security-group/*"]
    condition {
      test     = "Null"
      variable = local.job_tag_key
      values   = ["false"]
    }
  }

  statement {
    sid       = "PassInstanceRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.this.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }

  # Staging: training data (data/<sha256>/) and job files (jobs/<job>/...).
  statement {
    sid       = "ListStagingPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["jobs/*", "data/*"]
    }
  }

  statement {
    sid       = "StageObjects"
    actions   = ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/jobs/*", "${aws_s3_bucket.this.arn}/data/*"]
  }

  # launcher/staging.py tags checkpoints (gpuhire:kind=checkpoint) so the lifecycle expires them.
  statement {
    sid       = "TagCheckpoints"
    actions   = ["s3:PutObjectTagging"]
    resources = ["${aws_s3_bucket.this.arn}/jobs/*/checkpoints/*"]
  }

  # The [alerts] SNS channel (ledger/alerts/channels.py) publishes to the topic.
  statement {
    sid       = "PublishAlerts"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.this.arn]
  }
}

resource "aws_iam_policy" "this" {
  count = var.create_user_policy ? 1 : 0

  name        = "${var.name_prefix}-user"
  description = "What a person needs to run gpuhire: spot GPU instances tagged gpuhire:job, staging in the bucket, alerts"
  policy      = data.aws_iam_policy_document.user.json
  tags        = local.tags
}

# The first spot request of an account creates AWSServiceRoleForEC2Spot, which needs
# iam:CreateServiceLinkedRole. Creating the role here keeps that action out of the user policy.
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/service-linked-roles-spot-instance-requests.html
resource "aws_iam_service_linked_role" "this" {
  count = var.create_spot_service_linked_role ? 1 : 0

  aws_service_name = "spot.amazonaws.com"
  description      = "EC2 Spot (created by gpuhire's terraform)"
}
