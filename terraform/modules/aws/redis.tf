# Routes (which replica holds which agent and session) in ElastiCache for
# Redis: one shard, a primary and var.redis_replicas replicas, TLS in transit
# with an AUTH token, encrypted at rest. Only the gateway tasks reach it.

resource "aws_elasticache_subnet_group" "routes" {
  name        = "postern-${var.name}"
  description = "Postern ${var.name} routes"
  subnet_ids  = var.private_subnet_ids
  tags        = local.tags
}

resource "aws_security_group" "redis" {
  name        = "postern-${var.name}-redis"
  description = "Postern ${var.name}: Redis, reached by the gateway tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "postern-${var.name}-redis" })
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from the gateway tasks"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_elasticache_replication_group" "routes" {
  replication_group_id = "postern-${var.name}"
  description          = "Postern ${var.name} routes"

  engine               = "redis"
  engine_version       = var.redis_engine_version
  parameter_group_name = var.redis_parameter_group_name
  node_type            = var.redis_node_type
  port                 = 6379

  num_cache_clusters         = var.redis_replicas + 1
  automatic_failover_enabled = var.redis_multi_az
  multi_az_enabled           = var.redis_multi_az

  subnet_group_name  = aws_elasticache_subnet_group.routes.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = local.kms_key_arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth.result

  snapshot_retention_limit   = var.redis_snapshot_retention_days
  maintenance_window         = var.redis_maintenance_window
  auto_minor_version_upgrade = true
  apply_immediately          = false

  tags = local.tags
}
