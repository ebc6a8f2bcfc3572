# Routes and, on Cloud Run, the relay: Cloud Run instances cannot dial each
# other, so every session whose user and agent landed on different instances
# flows through Redis (sharded pub/sub, POSTERN_PEER_TRANSPORT=relay). AUTH
# on, TLS in transit, private address only.

resource "google_redis_instance" "routes" {
  project        = var.project_id
  region         = var.region
  name           = "postern-${var.name}"
  display_name   = "Postern ${var.name} routes and relay"
  tier           = var.redis_tier
  memory_size_gb = var.redis_memory_size_gb
  redis_version  = var.redis_version

  authorized_network = var.network
  connect_mode       = "PRIVATE_SERVICE_ACCESS"

  auth_enabled            = true
  transit_encryption_mode = var.redis_transit_encryption ? "SERVER_AUTHENTICATION" : "DISABLED"
  customer_managed_key    = var.kms_key_name

  # Every key has a TTL of seconds and replicas re-publish everything:
  # nothing here is worth persisting.
  persistence_config {
    persistence_mode = "DISABLED"
  }

  labels = local.labels

  depends_on = [google_service_networking_connection.private_services]
}
