# The gateway on Cloud Run: HTTP/2 end to end (h2c to the container, Cloud
# Run terminates TLS), CPU always allocated (tunnels and sessions are
# long-lived streams, not short requests), replicas relaying through Redis.

locals {
  public_port   = 8080
  internal_port = 9090
  redis_ca_path = "/etc/postern/redis-ca/ca.pem"

  environment = merge(var.extra_environment, {
    # Public port: gRPC and the HTTP/JSON API over h2c.
    POSTERN_LISTEN_ADDR  = "0.0.0.0:${local.public_port}"
    POSTERN_TLS_DISABLED = "true"
    # /metrics, /healthz, /readyz. Cloud Run exposes one port only, so this
    # one is reachable from inside the instance alone (e.g. a collector sidecar).
    POSTERN_INTERNAL_ADDR = "0.0.0.0:${local.internal_port}"

    # Cloud Run instances have no address other instances can dial: sessions
    # that cross instances are relayed through Redis instead of a peer port.
    POSTERN_PEER_TRANSPORT = "relay"

    POSTERN_DRAIN_GRACE_MS = tostring(local.drain_grace_ms)
    POSTERN_LOG_FORMAT     = "json"
    RUST_LOG               = var.log_filter
    }, {
    # Memorystore signs its certificate with a per-instance CA (mounted below);
    # the gateway refuses a CA without a rediss:// URL, so only with TLS.
    for name, value in { POSTERN_REDIS_CA_CERT = local.redis_ca_path } : name => value
    if var.redis_transit_encryption
  })

  secret_environment = merge(
    { for env, key in local.secret_env : env => {
      secret  = google_secret_manager_secret.gateway[key].secret_id
      version = google_secret_manager_secret_version.gateway[key].version
    } },
    { for env, id in var.extra_secrets : env => { secret = id, version = "latest" } },
  )
}

resource "google_cloud_run_v2_service" "gateway" {
  project             = var.project_id
  location            = var.region
  name                = "postern-${var.name}"
  description         = "Postern ${var.name} gateway"
  ingress             = var.ingress
  deletion_protection = var.deletion_protection
  # The gateway authenticates every call itself (API keys, OIDC tokens);
  # agents and people carry no Google identity.
  invoker_iam_disabled = var.public_access
  labels               = local.labels

  template {
    service_account = google_service_account.gateway.email
    labels          = local.labels

    execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
    # Each agent tunnel and each session leg is one request (one HTTP/2 stream)
    # held open for its whole life; Cloud Run ends it at this timeout.
    timeout                          = "${var.request_timeout_seconds}s"
    max_instance_request_concurrency = var.max_concurrent_requests
    # Not relied on: any instance reaches any agent (through Redis).
    session_affinity = false

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    # Direct VPC egress to Memorystore and Cloud SQL; everything else (the
    # OIDC issuer, webhooks) leaves directly.
    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      # The network is the subnetwork's own.
      network_interfaces {
        subnetwork = var.subnetwork
      }
    }

    containers {
      name  = "gateway"
      image = var.container_image

      # "h2c": Cloud Run speaks HTTP/2 cleartext to the container, so gRPC
      # streams (both directions at once) reach the gateway unchanged.
      ports {
        name           = "h2c"
        container_port = local.public_port
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU stays allocated between requests: keepalives, heartbeats to
        # Redis and relayed bytes flow while no request is starting.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.environment
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.secret_environment
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value.secret
              version = env.value.version
            }
          }
        }
      }

      volume_mounts {
        name       = "redis-ca"
        mount_path = dirname(local.redis_ca_path)
      }

      # Ready once the policy store has been read: Cloud Run sends no request
      # before. Probes go to the public port, which serves /readyz too.
      startup_probe {
        period_seconds    = 1
        timeout_seconds   = 1
        failure_threshold = 30
        http_get {
          path = "/readyz"
        }
      }

      # Liveness only: a policy store outage must not restart instances whose
      # open sessions would otherwise carry on.
      liveness_probe {
        period_seconds    = 10
        timeout_seconds   = 2
        failure_threshold = 3
        http_get {
          path = "/healthz"
        }
      }
    }

    volumes {
      name = "redis-ca"
      secret {
        secret = google_secret_manager_secret.redis_ca.secret_id
        items {
          version = google_secret_manager_secret_version.redis_ca.version
          path    = "ca.pem"
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  depends_on = [google_secret_manager_secret_iam_member.gateway]
}
