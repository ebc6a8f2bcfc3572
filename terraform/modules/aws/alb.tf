# The ALB terminates TLS and speaks HTTP/2 to the tasks (h2c): one listener
# and one target group carry gRPC (agents' tunnels, users' sessions) and the
# HTTP/JSON API alike. See the README for why HTTP2 and not GRPC.

resource "aws_lb" "this" {
  name               = "postern-${var.name}"
  internal           = var.alb_internal
  load_balancer_type = "application"
  security_groups    = [aws_security_group.alb.id]
  subnets            = var.public_subnet_ids

  enable_http2               = true
  idle_timeout               = var.idle_timeout_seconds
  client_keep_alive          = var.client_keep_alive_seconds
  drop_invalid_header_fields = true
  desync_mitigation_mode     = "strictest"
  enable_deletion_protection = var.alb_deletion_protection

  dynamic "access_logs" {
    for_each = var.access_logs_bucket != null ? [var.access_logs_bucket] : []
    content {
      enabled = true
      bucket  = access_logs.value
      prefix  = var.access_logs_prefix
    }
  }

  tags = local.tags
}

resource "aws_lb_target_group" "gateway" {
  name        = "postern-${var.name}"
  vpc_id      = var.vpc_id
  target_type = "ip" # awsvpc: each task is its own IP
  port        = var.public_port

  # HTTP/2 without TLS to the task (the gateway runs POSTERN_TLS_DISABLED=true
  # behind the ALB's HTTPS listener); HTTP2, not GRPC, so the JSON API works.
  protocol         = "HTTP"
  protocol_version = "HTTP2"

  # ECS waits for this before SIGTERM; the ALB lets streams in flight go on
  # meanwhile, as the gateway's own drain would.
  deregistration_delay = var.drain_grace_seconds

  # No stickiness: any replica reaches any agent through the peer link.
  load_balancing_algorithm_type = "round_robin"

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = tostring(var.internal_port)
    path                = var.health_check_path
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway.arn
  }

  tags = local.tags
}

resource "aws_wafv2_web_acl_association" "alb" {
  count = var.waf_web_acl_arn != null ? 1 : 0

  resource_arn = aws_lb.this.arn
  web_acl_arn  = var.waf_web_acl_arn
}

resource "aws_route53_record" "gateway" {
  count = var.route53_zone_id != null ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}
