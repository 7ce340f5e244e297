# The same names as the module's outputs, so `gpuhire init --from-terraform .` works here.

output "region" {
  description = "Region the resources live in."
  value       = module.gpuhire.region
}

output "bucket" {
  description = "S3 bucket for data, checkpoints and models."
  value       = module.gpuhire.bucket
}

output "instance_profile" {
  description = "Instance profile of the training boxes."
  value       = module.gpuhire.instance_profile
}

output "security_group_id" {
  description = "SSH security group for boxes started by hand."
  value       = module.gpuhire.security_group_id
}

output "operator_cidrs" {
  description = "Networks allowed on SSH."
  value       = module.gpuhire.operator_cidrs
}

output "sns_topic_arn" {
  description = "Alerts topic."
  value       = module.gpuhire.sns_topic_arn
}

output "ecr_repository_url" {
  description = "ECR repository of the trainer image."
  value       = module.gpuhire.ecr_repository_url
}

output "user_policy_json" {
  description = "IAM policy a person needs to run gpuhire."
  value       = module.gpuhire.user_policy_json
}

output "user_policy_arn" {
  description = "ARN of the managed user policy."
  value       = module.gpuhire.user_policy_arn
}
