# Secrets the gateway reads from Secrets Manager at task start (the task
# definition's `secrets`): never in the task definition, never in logs.
#
# Their values are generated here and so are also in the Terraform state:
# keep the state encrypted and access to it as narrow as to the secrets.

# Signs peer tokens and relay messages: the same value on every replica.
resource "random_password" "peer_secret" {
  length  = 64
  special = false
}

# Registered (as a hash) as an admin API key at start: how the first admin
# gets in. Read it once with `aws secretsmanager get-secret-value`.
resource "random_password" "bootstrap_admin_token" {
  length  = 64
  special = false
}

# ElastiCache AUTH token: 16-128 printable characters without @, " or /;
# letters and digits keep it safe inside the rediss:// URL.
resource "random_password" "redis_auth" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "peer_secret" {
  name                    = "postern/${var.name}/peer-secret"
  description             = "POSTERN_PEER_SECRET of the ${var.name} gateway replicas"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "peer_secret" {
  secret_id     = aws_secretsmanager_secret.peer_secret.id
  secret_string = random_password.peer_secret.result
}

resource "aws_secretsmanager_secret" "bootstrap_admin_token" {
  name                    = "postern/${var.name}/bootstrap-admin-token"
  description             = "POSTERN_BOOTSTRAP_ADMIN_TOKEN of the ${var.name} gateway: the first admin's API key"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "bootstrap_admin_token" {
  secret_id     = aws_secretsmanager_secret.bootstrap_admin_token.id
  secret_string = random_password.bootstrap_admin_token.result
}

# The whole POSTERN_REDIS_URL is the secret: it carries the AUTH token.
resource "aws_secretsmanager_secret" "redis_url" {
  name                    = "postern/${var.name}/redis-url"
  description             = "POSTERN_REDIS_URL of the ${var.name} gateway (rediss:// with the ElastiCache AUTH token)"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${random_password.redis_auth.result}@${aws_elasticache_replication_group.routes.primary_endpoint_address}:${aws_elasticache_replication_group.routes.port}"
}

locals {
  # Environment variable -> secret, as the task definition reads them.
  secrets = merge(var.extra_secrets, {
    POSTERN_PEER_SECRET           = coalesce(var.peer_secret_arn, aws_secretsmanager_secret.peer_secret.arn)
    POSTERN_BOOTSTRAP_ADMIN_TOKEN = aws_secretsmanager_secret.bootstrap_admin_token.arn
    POSTERN_REDIS_URL             = aws_secretsmanager_secret.redis_url.arn
  })
}
