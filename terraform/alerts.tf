# Alerts: one encrypted SNS topic that spot notices and the monthly budget publish to. The
# launcher's [alerts] SNS channel (written by `gpuhire init`) publishes to it as well.

resource "aws_sns_topic" "this" {
  name              = local.sns_topic_name
  kms_master_key_id = aws_kms_key.this.arn
  tags              = local.tags
}

data "aws_iam_policy_document" "topic" {
  statement {
    sid       = "AccountPublishesAndSubscribes"
    actions   = ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes"]
    resources = [aws_sns_topic.this.arn]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sns-permissions
  statement {
    sid       = "SpotNoticeRulePublishes"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.this.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.this.arn]
    }
  }

  # https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-sns-policy.html
  statement {
    sid       = "BudgetsPublishes"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.this.arn]
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

resource "aws_sns_topic_policy" "this" {
  arn    = aws_sns_topic.this.arn
  policy = data.aws_iam_policy_document.topic.json
}

resource "aws_sns_topic_subscription" "this" {
  count = var.alert_email == null ? 0 : 1

  topic_arn = aws_sns_topic.this.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

################################################################################
# EventBridge: spot interruption warnings and rebalance recommendations
################################################################################

# These events carry the instance id but not its tags, and EventBridge rules cannot look tags
# up, so the rule matches every instance of the account in this region. The message names the
# instance; `gpuhire status` shows whether it is a gpuhire job. Filtering by tag would need a
# Lambda between the rule and the topic (not done: one more thing to run and secure).
# Rules are regional: apply this module once per region you launch in.
resource "aws_cloudwatch_event_rule" "this" {
  name        = "${var.name_prefix}-spot-notices"
  description = "EC2 spot interruption warnings and rebalance recommendations to ${local.sns_topic_name}"
  event_pattern = jsonencode({
    source      = ["aws.ec2"]
    detail-type = ["EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"]
  })
  tags = local.tags
}

resource "aws_cloudwatch_event_target" "this" {
  rule      = aws_cloudwatch_event_rule.this.name
  target_id = "sns"
  arn       = aws_sns_topic.this.arn

  input_transformer {
    input_paths = {
      kind     = "$.detail-type"
      instance = "$.detail.instance-id"
      region   = "$.region"
      time     = "$.time"
    }
    input_template = "\"<kind> for <instance> in <region> at <time>. If it is a gpuhire job, the box checkpoints on its own; see gpuhire status.\""
  }
}

################################################################################
# AWS Budgets: the account's monthly cost
################################################################################

# Budgets sees the whole account's cost (a tag filter would need the cost allocation tag
# gpuhire:job activated in the Billing console first, and only counts from then on).
resource "aws_budgets_budget" "this" {
  name         = "${var.name_prefix}-monthly"
  budget_type  = "COST"
  limit_amount = format("%.2f", var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  dynamic "notification" {
    for_each = toset(var.budget_thresholds_percent)
    content {
      comparison_operator       = "GREATER_THAN"
      threshold                 = notification.value
      threshold_type            = "PERCENTAGE"
      notification_type         = "ACTUAL"
      subscriber_sns_topic_arns = [aws_sns_topic.this.arn]
    }
  }

  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 100
    threshold_type            = "PERCENTAGE"
    notification_type         = "FORECASTED"
    subscriber_sns_topic_arns = [aws_sns_topic.this.arn]
  }

  depends_on = [aws_sns_topic_policy.this]
}
