# Target tracking on CPU (always) and, when asked, on ALB requests per task
# and on client connections per task. Each policy may scale out on its own;
# the service scales in only when every policy agrees.

resource "aws_appautoscaling_target" "gateway" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.gateway.name}"
  min_capacity       = var.min_tasks
  max_capacity       = var.max_tasks
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "postern-${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.gateway.service_namespace
  scalable_dimension = aws_appautoscaling_target.gateway.scalable_dimension
  resource_id        = aws_appautoscaling_target.gateway.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = var.scale_in_cooldown_seconds
    scale_out_cooldown = var.scale_out_cooldown_seconds

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "requests" {
  count = var.requests_per_target != null ? 1 : 0

  name               = "postern-${var.name}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.gateway.service_namespace
  scalable_dimension = aws_appautoscaling_target.gateway.scalable_dimension
  resource_id        = aws_appautoscaling_target.gateway.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.requests_per_target
    scale_in_cooldown  = var.scale_in_cooldown_seconds
    scale_out_cooldown = var.scale_out_cooldown_seconds

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.this.arn_suffix}/${aws_lb_target_group.gateway.arn_suffix}"
    }
  }
}

# There is no predefined "connections per target": the ALB's
# ActiveConnectionCount divided by its healthy targets, by metric math.
resource "aws_appautoscaling_policy" "connections" {
  count = var.active_connections_per_task != null ? 1 : 0

  name               = "postern-${var.name}-connections"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.gateway.service_namespace
  scalable_dimension = aws_appautoscaling_target.gateway.scalable_dimension
  resource_id        = aws_appautoscaling_target.gateway.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.active_connections_per_task
    scale_in_cooldown  = var.scale_in_cooldown_seconds
    scale_out_cooldown = var.scale_out_cooldown_seconds

    customized_metric_specification {
      metrics {
        id          = "connections"
        label       = "Client connections to the ALB"
        return_data = false
        metric_stat {
          stat = "Sum"
          metric {
            namespace   = "AWS/ApplicationELB"
            metric_name = "ActiveConnectionCount"
            dimensions {
              name  = "LoadBalancer"
              value = aws_lb.this.arn_suffix
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "Healthy gateway tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "AWS/ApplicationELB"
            metric_name = "HealthyHostCount"
            dimensions {
              name  = "LoadBalancer"
              value = aws_lb.this.arn_suffix
            }
            dimensions {
              name  = "TargetGroup"
              value = aws_lb_target_group.gateway.arn_suffix
            }
          }
        }
      }

      metrics {
        id          = "per_task"
        label       = "Client connections per healthy task"
        expression  = "connections / IF(tasks > 0, tasks, 1)"
        return_data = true
      }
    }
  }
}
