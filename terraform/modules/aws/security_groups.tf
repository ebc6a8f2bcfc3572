# Who may talk to whom: clients -> ALB :443 -> tasks (public port, and the
# internal port for health checks); tasks <-> tasks on the peer port only;
# tasks -> Redis :6379 and HTTPS out (AWS APIs, the identity provider).

resource "aws_security_group" "alb" {
  name        = "postern-${var.name}-alb"
  description = "Postern ${var.name}: the ALB"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "postern-${var.name}-alb" })
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.alb_ingress_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from agents and people (${each.value})"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_public_port" {
  security_group_id            = aws_security_group.alb.id
  description                  = "h2c to the gateway tasks' public port"
  ip_protocol                  = "tcp"
  from_port                    = var.public_port
  to_port                      = var.public_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "alb_to_internal_port" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Health checks on the gateway tasks' internal port"
  ip_protocol                  = "tcp"
  from_port                    = var.internal_port
  to_port                      = var.internal_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_security_group" "tasks" {
  name        = "postern-${var.name}-tasks"
  description = "Postern ${var.name}: the gateway tasks"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "postern-${var.name}-tasks" })
}

resource "aws_vpc_security_group_ingress_rule" "tasks_public_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "gRPC and the HTTP API from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = var.public_port
  to_port                      = var.public_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_internal_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Health checks from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = var.internal_port
  to_port                      = var.internal_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_internal_from_scrapers" {
  for_each = toset(var.metrics_scraper_security_group_ids)

  security_group_id            = aws_security_group.tasks.id
  description                  = "Prometheus scrapes of /metrics"
  ip_protocol                  = "tcp"
  from_port                    = var.internal_port
  to_port                      = var.internal_port
  referenced_security_group_id = each.value
}

# Proxy peering: the replica holding an agent's tunnel and the replica the
# agent's stream landed on splice over this port, replica to replica.
resource "aws_vpc_security_group_ingress_rule" "tasks_peer_from_tasks" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Peer links from the other gateway replicas"
  ip_protocol                  = "tcp"
  from_port                    = var.peer_port
  to_port                      = var.peer_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_peer_to_tasks" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Peer links to the other gateway replicas"
  ip_protocol                  = "tcp"
  from_port                    = var.peer_port
  to_port                      = var.peer_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_redis" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Routes in Redis (TLS)"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to ECR, Logs, Secrets Manager, DynamoDB and the OIDC issuer"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}
