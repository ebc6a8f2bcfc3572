# ---------------------------------------------------------------- general

variable "name" {
  description = "Name of this deployment: prefixes every resource (ALB, target group, cluster, table, secrets). Lower-case letters, digits and hyphens, 3 to 20 characters, so derived names stay within AWS limits (32 for an ALB or target group, 40 for an ElastiCache replication group)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters of a-z, 0-9 and '-', start with a letter and not end with '-'."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags (a `postern:deployment = <name>` tag is always added)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------- network

variable "vpc_id" {
  description = "The VPC the gateway, Redis and the ALB live in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123abcd."
  }
}

variable "private_subnet_ids" {
  description = "Subnets of the gateway tasks and of Redis, in at least two Availability Zones. They need outbound HTTPS to ECR, CloudWatch Logs, Secrets Manager and DynamoDB (a NAT gateway, or VPC endpoints for those services) and to your identity provider when OIDC is used. Tasks get no public IP."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "Give at least two private subnets (two Availability Zones)."
  }
}

variable "public_subnet_ids" {
  description = "Subnets of the ALB, in at least two Availability Zones: public subnets for an internet-facing ALB, private ones when alb_internal is true."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "An ALB needs subnets in at least two Availability Zones."
  }
}

variable "alb_internal" {
  description = "true for an internal ALB (agents and users reach it over a VPN, Direct Connect or peering); false (default) for an internet-facing one. Agents only dial out, so an internet-facing gateway is the usual set-up."
  type        = bool
  default     = false
}

variable "alb_ingress_cidrs" {
  description = "IPv4 ranges allowed to reach the ALB's HTTPS port: where agents and people connect from. Every request is still authenticated by the gateway (API key or OIDC token)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.alb_ingress_cidrs) > 0 && alltrue([for c in var.alb_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "alb_ingress_cidrs must be a non-empty list of IPv4 CIDR blocks."
  }
}

variable "metrics_scraper_security_group_ids" {
  description = "Security groups (e.g. a Prometheus or ADOT collector's) allowed to scrape /metrics on the tasks' internal port."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------- image and task size

variable "container_image" {
  description = "The gateway image (postern-gateway), by tag or better by digest, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/postern-gateway@sha256:…. It must carry the CA certificates that verify ElastiCache, DynamoDB and your identity provider."
  type        = string

  validation {
    condition     = length(trimspace(var.container_image)) > 0
    error_message = "container_image must not be empty."
  }
}

variable "ecr_repository_arns" {
  description = "ARNs of the ECR repositories the image is pulled from: the task execution role may pull from these only. Empty when the image lives in a public registry."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.ecr_repository_arns : can(regex("^arn:aws[a-z-]*:ecr:[a-z0-9-]+:[0-9]{12}:repository/.+$", a))])
    error_message = "ecr_repository_arns must be ECR repository ARNs."
  }
}

variable "task_cpu" {
  description = "Fargate task CPU units (1024 = 1 vCPU). Sessions are byte copies and TLS is terminated by the ALB, so CPU follows session throughput."
  type        = number
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.task_cpu)
    error_message = "task_cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "task_memory" {
  description = "Fargate task memory in MiB; must be a size Fargate allows with task_cpu. Idle agent tunnels and open sessions cost memory (HTTP/2 windows are 4 MiB a stream at most)."
  type        = number
  default     = 2048

  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 122880
    error_message = "task_memory must be between 512 and 122880 MiB."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the image: X86_64 or ARM64 (Graviton, cheaper per vCPU)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

# ---------------------------------------------------------------- ports

variable "public_port" {
  description = "Container port of POSTERN_LISTEN_ADDR: gRPC and the HTTP/JSON API, h2c behind the ALB."
  type        = number
  default     = 8443
}

variable "internal_port" {
  description = "Container port of POSTERN_INTERNAL_ADDR: /metrics, /healthz and /readyz. Only the ALB (health checks) and the tasks' own security group reach it."
  type        = number
  default     = 9090
}

variable "peer_port" {
  description = "Container port of POSTERN_PEER_ADDR: replica-to-replica splicing (TLS with pinned per-start certificates). Open only between the gateway tasks, never on the ALB."
  type        = number
  default     = 8444

  validation {
    condition     = length(distinct([var.public_port, var.internal_port, var.peer_port])) == 3 && alltrue([for p in [var.public_port, var.internal_port, var.peer_port] : p >= 1024 && p <= 65535])
    error_message = "public_port, internal_port and peer_port must be three different ports from 1024 to 65535 (the image runs as non-root)."
  }
}

# ---------------------------------------------------------------- TLS, DNS and the ALB

variable "certificate_arn" {
  description = "ACM certificate of the ALB's HTTPS listener, for domain_name."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener. The default allows TLS 1.3 and 1.2 only."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "domain_name" {
  description = "The name agents and people use, covered by certificate_arn (e.g. postern.example.com). null: the gateway URL output is the ALB's own DNS name, which the certificate does not cover."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone in which to create an alias record domain_name -> ALB. null: manage DNS yourself."
  type        = string
  default     = null

  validation {
    condition     = var.route53_zone_id == null || var.domain_name != null
    error_message = "route53_zone_id needs domain_name."
  }
}

variable "idle_timeout_seconds" {
  description = "ALB idle timeout: a connection with no bytes either way for this long is closed. Agents and `postern connect` send keepalive frames every POSTERN_KEEPALIVE_INTERVAL_MS (20 s) because the ALB does not forward HTTP/2 PINGs, so the AWS default of 60 s would do; 3600 s (the default here) adds margin for a client whose keepalives are delayed or longer, and costs only an idle connection's memory on the ALB. 60 to 4000."
  type        = number
  default     = 3600

  validation {
    condition     = var.idle_timeout_seconds >= 60 && var.idle_timeout_seconds <= 4000
    error_message = "idle_timeout_seconds must be between 60 (3 keepalives) and 4000 (the ALB's maximum)."
  }
}

variable "client_keep_alive_seconds" {
  description = "ALB client keepalive: the longest a client's connection to the ALB lives, active or not, before the ALB closes it gracefully (GOAWAY on HTTP/2). Agents re-open their tunnels every 15 minutes anyway; the default, 24 hours, keeps a long psql session's connection from being recycled under it. 60 to 604800."
  type        = number
  default     = 86400

  validation {
    condition     = var.client_keep_alive_seconds >= 60 && var.client_keep_alive_seconds <= 604800
    error_message = "client_keep_alive_seconds must be between 60 and 604800."
  }
}

variable "alb_deletion_protection" {
  description = "Deletion protection on the ALB (turn it off before `terraform destroy`)."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "S3 bucket for the ALB's access logs (SSE-S3, with a bucket policy that lets the region's ELB service write). null: no access logs; the gateway's own audit trail records every session and statement either way."
  type        = string
  default     = null
}

variable "access_logs_prefix" {
  description = "Key prefix of the ALB's access logs in access_logs_bucket."
  type        = string
  default     = "postern-alb"
}

variable "waf_web_acl_arn" {
  description = "Regional AWS WAF web ACL to associate with the ALB (rate limits, IP reputation). null: none."
  type        = string
  default     = null
}

variable "health_check_path" {
  description = "Path the ALB (and so ECS) checks on the internal port: /healthz (default, liveness) or /readyz (503 while the policy store has been unreachable past POSTERN_POLICY_STALE_LIMIT_MS). /readyz would make ECS replace every task during a DynamoDB outage, cutting sessions that would otherwise carry on; see the README."
  type        = string
  default     = "/healthz"

  validation {
    condition     = contains(["/healthz", "/readyz"], var.health_check_path)
    error_message = "health_check_path must be /healthz or /readyz."
  }
}

# ---------------------------------------------------------------- gateway settings

variable "drain_grace_seconds" {
  description = "POSTERN_DRAIN_GRACE_MS in seconds: how long open sessions get to finish when a task stops. Also the target group's deregistration delay (ECS waits for it before sending SIGTERM) and, plus 15 s, the container's stopTimeout, which Fargate caps at 120 s: at most 105."
  type        = number
  default     = 30

  validation {
    condition     = var.drain_grace_seconds >= 1 && var.drain_grace_seconds <= 105 && floor(var.drain_grace_seconds) == var.drain_grace_seconds
    error_message = "drain_grace_seconds must be a whole number from 1 to 105 (stopTimeout = grace + 15 s, at most 120 s on Fargate)."
  }
}

variable "log_filter" {
  description = "RUST_LOG of the gateway (e.g. info, or info,postern_gateway=debug)."
  type        = string
  default     = "info"
}

variable "extra_environment" {
  description = "More plain environment variables for the gateway, e.g. POSTERN_OIDC_ISSUER, POSTERN_OIDC_AUDIENCE, POSTERN_POLICY_POLL_MS. Variables this module sets itself cannot be overridden here; secrets go in extra_secrets."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k in keys(var.extra_environment) : can(regex("^(POSTERN_|RUST_|OTEL_)[A-Z0-9_]+$", k)) && !contains([
      "POSTERN_LISTEN_ADDR", "POSTERN_INTERNAL_ADDR", "POSTERN_TLS_DISABLED", "POSTERN_TLS_CERT", "POSTERN_TLS_KEY",
      "POSTERN_POLICY_STORE", "POSTERN_SQLITE_PATH", "POSTERN_REDIS_URL", "POSTERN_PEER_SECRET", "POSTERN_PEER_TRANSPORT",
      "POSTERN_PEER_ADDR", "POSTERN_PEER_ADVERTISE_ADDR", "POSTERN_DRAIN_GRACE_MS", "POSTERN_BOOTSTRAP_ADMIN_TOKEN",
      "POSTERN_LOG_FORMAT", "RUST_LOG",
    ], k)])
    error_message = "extra_environment keys must be POSTERN_*, RUST_* or OTEL_* variables that this module does not set itself."
  }
}

variable "peer_secret_arn" {
  description = "Secrets Manager secret to use as POSTERN_PEER_SECRET instead of the module's generated one: for rotating it without failed sessions, together with POSTERN_PEER_SECRET_ACCEPTED in extra_secrets (see the README). null (default): the module's own secret."
  type        = string
  default     = null

  validation {
    condition     = var.peer_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.peer_secret_arn))
    error_message = "peer_secret_arn must be a Secrets Manager secret ARN, or null."
  }
}

variable "extra_secrets" {
  description = "More environment variables read from Secrets Manager at task start, name -> secret ARN (e.g. POSTERN_REVIEW_WEBHOOK_URL). The task execution role may read exactly these secrets besides the module's own; a secret encrypted with another KMS key than kms_key_arn also needs kms:Decrypt granted on that key."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.extra_secrets : can(regex("^POSTERN_[A-Z0-9_]+$", k)) && can(regex("^arn:aws[a-z-]*:secretsmanager:", v))])
    error_message = "extra_secrets must map POSTERN_* names to Secrets Manager secret ARNs."
  }
}

# ---------------------------------------------------------------- scaling

variable "min_tasks" {
  description = "Fewest gateway tasks. At least 2: agents keep tunnels to two replicas, and one task can then stop (deploy, scale-in, AZ loss) without an agent going offline."
  type        = number
  default     = 2

  validation {
    condition     = var.min_tasks >= 1
    error_message = "min_tasks must be at least 1."
  }
}

variable "max_tasks" {
  description = "Most gateway tasks autoscaling may run."
  type        = number
  default     = 10

  validation {
    condition     = var.max_tasks >= var.min_tasks
    error_message = "max_tasks must be at least min_tasks."
  }
}

variable "cpu_target_percent" {
  description = "Target tracking on the service's average CPU utilisation (percent)."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target_percent > 0 && var.cpu_target_percent <= 100
    error_message = "cpu_target_percent must be in (0, 100]."
  }
}

variable "requests_per_target" {
  description = "Target tracking on ALBRequestCountPerTarget (new requests a minute per task; each session is two or three HTTP/2 streams). null: no such policy."
  type        = number
  default     = null

  validation {
    condition     = var.requests_per_target == null || try(var.requests_per_target > 0, false)
    error_message = "requests_per_target must be positive or null."
  }
}

variable "active_connections_per_task" {
  description = "Target tracking on the ALB's ActiveConnectionCount divided by its healthy targets (client connections: one per agent tunnel and per CLI). null: no such policy."
  type        = number
  default     = null

  validation {
    condition     = var.active_connections_per_task == null || try(var.active_connections_per_task > 0, false)
    error_message = "active_connections_per_task must be positive or null."
  }
}

variable "scale_in_cooldown_seconds" {
  description = "Seconds between two scale-ins. Every scale-in stops a task, which drains its sessions: keep it slow."
  type        = number
  default     = 600
}

variable "scale_out_cooldown_seconds" {
  description = "Seconds between two scale-outs."
  type        = number
  default     = 60
}

variable "container_insights" {
  description = "CloudWatch Container Insights on the ECS cluster (per-task CPU, memory and network metrics; billed as custom metrics)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------- Redis (routes)

variable "redis_node_type" {
  description = "ElastiCache node type. Routes are small (a record per replica, agent and opening session); on AWS sessions go over the peer link, not through Redis."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_engine_version" {
  description = "Redis engine version: 7.0 or later (the route store uses sharded pub/sub)."
  type        = string
  default     = "7.1"

  validation {
    condition     = can(regex("^[7-9]\\.[0-9]+$", var.redis_engine_version))
    error_message = "redis_engine_version must be 7.x or later (sharded pub/sub)."
  }
}

variable "redis_parameter_group_name" {
  description = "ElastiCache parameter group; its family must match redis_engine_version."
  type        = string
  default     = "default.redis7"
}

variable "redis_replicas" {
  description = "Read replicas besides the primary (0 to 5). With at least one and redis_multi_az, a failed primary is replaced automatically; replicas re-publish their routes when Redis answers again."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_replicas >= 0 && var.redis_replicas <= 5
    error_message = "redis_replicas must be between 0 and 5."
  }
}

variable "redis_multi_az" {
  description = "Multi-AZ with automatic failover (needs redis_replicas >= 1)."
  type        = bool
  default     = true

  validation {
    condition     = !var.redis_multi_az || var.redis_replicas >= 1
    error_message = "redis_multi_az needs redis_replicas >= 1."
  }
}

variable "redis_snapshot_retention_days" {
  description = "Days of daily Redis snapshots. 0 (default): none; every key has a TTL of seconds and replicas re-publish everything, so a snapshot has nothing worth restoring."
  type        = number
  default     = 0
}

variable "redis_maintenance_window" {
  description = "Weekly ElastiCache maintenance window (ddd:hh24:mi-ddd:hh24:mi, UTC). null: AWS picks one."
  type        = string
  default     = null
}

# ---------------------------------------------------------------- DynamoDB (policy and audit)

variable "dynamodb_table_name" {
  description = "Name of the policy store table. null: <name>-policy."
  type        = string
  default     = null
}

variable "dynamodb_deletion_protection" {
  description = "Deletion protection on the policy store table (it holds the audit trail)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------- logs, encryption, secrets

variable "log_retention_days" {
  description = "Retention of the gateway's CloudWatch log group, in days (a value CloudWatch accepts)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch's retention values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key encrypting the log group, the secrets, the DynamoDB table and Redis at rest. null: the module creates one (with rotation). Your own key's policy must let CloudWatch Logs use it for this log group."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (not an alias)."
  }
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can still be restored (0 deletes at once, 7 to 30 otherwise)."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}
