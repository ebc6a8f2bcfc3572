data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  # `name` in provider 5, `region` (its replacement) in provider 6.
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition

  tags = merge(var.tags, { "postern:deployment" = var.name })

  container_name = "gateway"

  # The one KMS key every encrypted resource of this module uses.
  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : one(aws_kms_key.this[*].arn)

  drain_grace_ms = var.drain_grace_seconds * 1000
  # ECS sends SIGTERM, then SIGKILL after stopTimeout (at most 120 s on
  # Fargate): the drain grace plus time to withdraw from Redis and exit.
  stop_timeout = min(var.drain_grace_seconds + 15, 120)

  gateway_host = var.domain_name != null ? var.domain_name : aws_lb.this.dns_name
  gateway_url  = "https://${local.gateway_host}"
}
