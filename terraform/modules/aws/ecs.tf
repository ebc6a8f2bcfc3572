# The gateway as an ECS Fargate service: stateless replicas behind the ALB,
# routes in Redis, policy in DynamoDB, proxy peering between tasks.

resource "aws_ecs_cluster" "this" {
  name = "postern-${var.name}"

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }

  tags = local.tags
}

locals {
  environment = merge(var.extra_environment, {
    # Public port: gRPC and the HTTP/JSON API. h2c: the ALB's HTTPS listener
    # terminates TLS (see the README for why the target is not re-encrypted).
    POSTERN_LISTEN_ADDR  = "0.0.0.0:${var.public_port}"
    POSTERN_TLS_DISABLED = "true"
    # Metrics and health, on a port of their own the ALB health-checks.
    POSTERN_INTERNAL_ADDR = "0.0.0.0:${var.internal_port}"

    POSTERN_POLICY_STORE = "dynamodb://${aws_dynamodb_table.policy.name}?region=${local.region}"

    # Replicas dial each other directly (the tasks' security group lets them).
    # POSTERN_PEER_ADVERTISE_ADDR is left unset on purpose: the gateway then
    # advertises the local address its traffic to Redis leaves from, which on
    # awsvpc is the task's own ENI address, with the peer port.
    POSTERN_PEER_TRANSPORT = "direct"
    POSTERN_PEER_ADDR      = "0.0.0.0:${var.peer_port}"

    POSTERN_DRAIN_GRACE_MS = tostring(local.drain_grace_ms)
    POSTERN_LOG_FORMAT     = "json"
    RUST_LOG               = var.log_filter
  })

  container_definition = {
    name      = local.container_name
    image     = var.container_image
    essential = true

    portMappings = [
      { name = "public", containerPort = var.public_port, protocol = "tcp" },
      { name = "internal", containerPort = var.internal_port, protocol = "tcp" },
      { name = "peer", containerPort = var.peer_port, protocol = "tcp" },
    ]

    environment = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    secrets     = [for k in sort(keys(local.secrets)) : { name = k, valueFrom = local.secrets[k] }]

    # The gateway writes nothing to disk with a DynamoDB policy store (the
    # peer port's certificate is made in memory at start).
    readonlyRootFilesystem = true
    privileged             = false

    # Every agent tunnel, session leg and peer connection is a socket.
    ulimits = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]

    stopTimeout = local.stop_timeout

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.gateway.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "gateway"
      }
    }
  }
}

resource "aws_ecs_task_definition" "gateway" {
  family                   = "postern-${var.name}-gateway"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([local.container_definition])

  tags = local.tags
}

resource "aws_ecs_service" "gateway" {
  name             = "gateway"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.gateway.arn
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  desired_count    = var.min_tasks

  # Rolling deploys start new tasks before old ones stop, so agents always
  # have a replica to move to; a deploy whose tasks never get healthy rolls back.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  health_check_grace_period_seconds = 30
  enable_execute_command            = false
  propagate_tags                    = "SERVICE"
  enable_ecs_managed_tags           = true

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.gateway.arn
    container_name   = local.container_name
    container_port   = var.public_port
  }

  tags = local.tags

  # Autoscaling owns the task count after the first apply.
  lifecycle {
    ignore_changes = [desired_count]
  }

  # Tasks read the secrets' values at start, and the policy table with the
  # task role's policy.
  depends_on = [
    aws_lb_listener.https,
    aws_iam_role_policy.task,
    aws_iam_role_policy.execution,
    aws_secretsmanager_secret_version.peer_secret,
    aws_secretsmanager_secret_version.bootstrap_admin_token,
    aws_secretsmanager_secret_version.redis_url,
  ]
}
