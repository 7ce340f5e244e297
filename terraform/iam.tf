# Two IAM documents: the role of the boxes (instance profile), and the policy a person needs to
# run gpuhire (output user_policy_json, optional managed policy). Both list only what is used.
# tests/terraform/test_tf_policy.py checks them against the calls in launcher/providers/aws/ops.py:
# the user policy against the launcher's (EC2, staging, the inference fleet), the role against the
# fleet worker's and the image pull: every call allowed, nothing else.

locals {
  ec2_arn     = "arn:${local.partition}:ec2:*:${local.account_id}"
  job_tag_key = "aws:ResourceTag/${local.tag_job}"
  job_req_key = "aws:RequestTag/${local.tag_job}"
  # The inference fleet's queues, gpuhire-<job>-work, -dead and -done (launcher/infer/queue.py).
  queue_arn = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:gpuhire-"
}

################################################################################
# Instance role: the training and inference boxes
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
  description          = "gpuhire boxes: the inference worker's queues and job prefixes, pulls the trainer image"
  assume_role_policy   = data.aws_iam_policy_document.assume_ec2.json
  max_session_duration = 3600
  tags                 = local.tags
}

resource "aws_iam_instance_profile" "this" {
  name = "${var.name_prefix}-instance"
  role = aws_iam_role.this.name
  tags = local.tags
}

# The training box needs no AWS access of its own: it fetches its data from presigned URLs and
# the launcher copies checkpoints to S3. The inference worker (jobs/fleet/worker.py) takes
# batches of pages from the job's work queue, reads the model and the pages, writes results and
# reports on the done queue. Every box shares this role, so a box can reach another job's
# prefix and queues: IAM cannot tie a role session to the instance's gpuhire:job tag.
data "aws_iam_policy_document" "instance" {
  # Without s3:ListBucket a missing key answers 403 instead of 404, and the worker asks whether a
  # page's result is there already (HeadObject on jobs/<job>/results/...).
  statement {
    sid       = "ListJobPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["jobs/*"]
    }
  }

  statement {
    sid     = "ReadModelPagesAndResults"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.this.arn}/jobs/*/model.pt",
      "${aws_s3_bucket.this.arn}/jobs/*/model.mlmodel",
      "${aws_s3_bucket.this.arn}/jobs/*/model.safetensors",
      "${aws_s3_bucket.this.arn}/jobs/*/segment/*",
      "${aws_s3_bucket.this.arn}/jobs/*/pages/*",
      "${aws_s3_bucket.this.arn}/jobs/*/results/*",
    ]
  }

  statement {
    sid       = "WriteResults"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:PutObjectTagging"]
    resources = ["${aws_s3_bucket.this.arn}/jobs/*/results/*"]
  }

  statement {
    sid       = "TakeWork"
    actions   = ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"]
    resources = ["${local.queue_arn}*-work"]
  }

  # -done: the batch reports; -work: a batch given back on a spot notice goes back as a new
  # message, so an interruption does not spend one of its tries (jobs/fleet/worker.py).
  statement {
    sid       = "ReportDoneAndRequeue"
    actions   = ["sqs:SendMessage"]
    resources = ["${local.queue_arn}*-done", "${local.queue_arn}*-work"]
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

  # Staging (launcher/providers/aws/staging.py): training data (data/<sha256>/), checkpoints
  # (jobs/<job>/checkpoints/); the inference fleet (launcher/infer/queue.py): jobs/<job>/model.pt
  # (or .mlmodel, .safetensors), segment/, pages/ and results/. Without s3:ListBucket a missing key answers 403 instead of 404, and
  # staging asks whether data/<sha256>/MANIFEST.json exists (HeadObject) before sending data.
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

  # GetObject: HeadObject, the presigned URLs the box fetches data with, fleet results.
  statement {
    sid       = "StageObjects"
    actions   = ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/jobs/*", "${aws_s3_bucket.this.arn}/data/*"]
  }

  # launcher/providers/aws/staging.py tags checkpoints (gpuhire:kind=checkpoint) and launcher/infer/queue.py the
  # fleet's model and pages (gpuhire:kind=fleet), so the lifecycle rules expire them.
  statement {
    sid     = "TagForLifecycle"
    actions = ["s3:PutObjectTagging"]
    resources = [
      "${aws_s3_bucket.this.arn}/jobs/*/checkpoints/*",
      "${aws_s3_bucket.this.arn}/jobs/*/model.pt",
      "${aws_s3_bucket.this.arn}/jobs/*/model.mlmodel",
      "${aws_s3_bucket.this.arn}/jobs/*/model.safetensors",
      "${aws_s3_bucket.this.arn}/jobs/*/segment/*",
      "${aws_s3_bucket.this.arn}/jobs/*/pages/*",
    ]
  }

  # `gpuhire gc` deletes what a dead fleet staged (its model and pages; its results stay for a
  # rerun to collect, and the lifecycle rule expires them).
  statement {
    sid     = "DeleteFleetInputs"
    actions = ["s3:DeleteObject"]
    resources = [
      "${aws_s3_bucket.this.arn}/jobs/*/model.pt",
      "${aws_s3_bucket.this.arn}/jobs/*/model.mlmodel",
      "${aws_s3_bucket.this.arn}/jobs/*/model.safetensors",
      "${aws_s3_bucket.this.arn}/jobs/*/segment/*",
      "${aws_s3_bucket.this.arn}/jobs/*/pages/*",
    ]
  }

  # The inference fleet's queues; CreateQueue with tags also needs sqs:TagQueue.
  statement {
    sid = "FleetQueues"
    actions = [
      "sqs:CreateQueue",
      "sqs:DeleteMessage",
      "sqs:DeleteQueue",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:ReceiveMessage",
      "sqs:SendMessage",
      "sqs:TagQueue",
    ]
    resources = ["${local.queue_arn}*"]
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
  description = "What a person needs to run gpuhire: spot GPU instances tagged gpuhire:job, staging in the bucket, inference queues, alerts"
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
