output "gateway_url" {
  description = "The URL agents dial (POSTERN_GATEWAY_URL) and people log in to (`postern login URL`): https://domain_name, or the ALB's DNS name when domain_name is null (which the certificate does not cover)."
  value       = local.gateway_url
}

output "agent_environment" {
  description = "Environment for a postern-agent in your private network (it runs there, not in this module), without its token: add POSTERN_AGENT_TOKEN from `postern agent add NAME`."
  value = {
    POSTERN_GATEWAY_URL = local.gateway_url
  }
}

output "alb_dns_name" {
  description = "DNS name of the ALB: point domain_name at it (CNAME or alias) when route53_zone_id is null."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Canonical hosted zone of the ALB, for an alias record of your own."
  value       = aws_lb.this.zone_id
}

output "alb_arn" {
  description = "ARN of the ALB."
  value       = aws_lb.this.arn
}

output "target_group_arn" {
  description = "ARN of the gateway's target group (HTTP2 to the tasks' public port)."
  value       = aws_lb_target_group.gateway.arn
}

output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "Name of the ECS service running the gateway."
  value       = aws_ecs_service.gateway.name
}

output "task_definition_arn" {
  description = "ARN of the gateway task definition (this revision)."
  value       = aws_ecs_task_definition.gateway.arn
}

output "task_role_arn" {
  description = "ARN of the gateway's task role (its own AWS identity: the policy table only)."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "ARN of the task execution role (image pull, logs, the gateway's secrets)."
  value       = aws_iam_role.execution.arn
}

output "task_security_group_id" {
  description = "Security group of the gateway tasks (e.g. to allow them through your VPC endpoints' security groups)."
  value       = aws_security_group.tasks.id
}

output "alb_security_group_id" {
  description = "Security group of the ALB."
  value       = aws_security_group.alb.id
}

output "dynamodb_table_name" {
  description = "Name of the policy store table."
  value       = aws_dynamodb_table.policy.name
}

output "dynamodb_table_arn" {
  description = "ARN of the policy store table."
  value       = aws_dynamodb_table.policy.arn
}

output "policy_store_url" {
  description = "The gateway's POSTERN_POLICY_STORE."
  value       = local.environment["POSTERN_POLICY_STORE"]
}

output "redis_primary_endpoint" {
  description = "Primary endpoint of the ElastiCache replication group (TLS, AUTH)."
  value       = aws_elasticache_replication_group.routes.primary_endpoint_address
}

output "redis_url_secret_arn" {
  description = "Secrets Manager secret holding POSTERN_REDIS_URL (with the AUTH token)."
  value       = aws_secretsmanager_secret.redis_url.arn
}

output "peer_secret_arn" {
  description = "Secrets Manager secret the module generated for POSTERN_PEER_SECRET (in use unless peer_secret_arn names another)."
  value       = aws_secretsmanager_secret.peer_secret.arn
}

output "bootstrap_admin_token_secret_arn" {
  description = "Secrets Manager secret holding the first admin's API key: `aws secretsmanager get-secret-value --secret-id <this> --query SecretString --output text`, then `postern login <gateway_url> --token …`."
  value       = aws_secretsmanager_secret.bootstrap_admin_token.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the gateway's JSON logs."
  value       = aws_cloudwatch_log_group.gateway.name
}

output "kms_key_arn" {
  description = "KMS key encrypting the logs, secrets, table and Redis (the module's own, or kms_key_arn)."
  value       = local.kms_key_arn
}
