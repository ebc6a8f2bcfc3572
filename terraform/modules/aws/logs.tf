locals {
  log_group_name = "/ecs/postern/${var.name}"
}

# The gateway logs JSON lines (POSTERN_LOG_FORMAT=json) to stdout; secrets are
# never logged.
resource "aws_cloudwatch_log_group" "gateway" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}
