locals {
  labels = merge(var.labels, { "postern-deployment" = var.name })

  # Cloud Run sends SIGTERM, then SIGKILL 10 s later: drain within that.
  drain_grace_ms = var.drain_grace_seconds * 1000

  redis_scheme = var.redis_transit_encryption ? "rediss" : "redis"
}
