# `gpuhire init --from-terraform DIR` reads these (launcher/init_config.py): keep names and types.

output "region" {
  description = "Region the resources live in ([aws] region)."
  value       = local.region
}

output "bucket" {
  description = "S3 bucket for data/<sha256>/ and jobs/<job>/{checkpoints/,model.*,segment/,pages/,results/} ([aws] bucket)."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = aws_s3_bucket.this.arn
}

output "instance_profile" {
  description = "Instance profile name attached to the training and inference boxes ([aws] instance_profile)."
  value       = aws_iam_instance_profile.this.name
}

output "instance_role_arn" {
  description = "ARN of the boxes' role (the user policy may pass only this role)."
  value       = aws_iam_role.this.arn
}

output "security_group_id" {
  description = "Long-lived SSH group for boxes started by hand (the launcher makes one per job)."
  value       = aws_security_group.this.id
}

output "operator_cidrs" {
  description = "Networks allowed on SSH ([aws] operator_cidrs: the launcher's per-job groups use them too)."
  value       = var.operator_cidrs
}

output "sns_topic_arn" {
  description = "Alerts topic ([alerts.channels.sns] topic_arn)."
  value       = aws_sns_topic.this.arn
}

output "ecr_repository_url" {
  description = "ECR repository of the HTR trainer image ([aws] ecr_repository_url)."
  value       = aws_ecr_repository.this.repository_url
}

output "kms_key_arn" {
  description = "KMS key encrypting the bucket, the repository and the topic."
  value       = aws_kms_key.this.arn
}

output "budget_name" {
  description = "Name of the monthly AWS Budgets budget."
  value       = aws_budgets_budget.this.name
}

output "user_policy_json" {
  description = "IAM policy a person needs to run gpuhire (attach it to a user, group or SSO permission set)."
  value       = data.aws_iam_policy_document.user.json
}

output "user_policy_arn" {
  description = "ARN of the managed user policy, or null when create_user_policy is false."
  value       = var.create_user_policy ? aws_iam_policy.this[0].arn : null
}
