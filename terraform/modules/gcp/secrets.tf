# Secrets the gateway reads from Secret Manager (Cloud Run resolves them at
# instance start): never in the service definition, never in logs.
#
# Their values are generated here (or, for the Redis AUTH string, by
# Memorystore) and so are also in the Terraform state: keep the state
# encrypted and access to it as narrow as to the secrets.

# Signs relay messages (and peer tokens): the same value on every instance.
resource "random_password" "peer_secret" {
  length  = 64
  special = false
}

# Registered (as a hash) as an admin API key at start: how the first admin
# gets in. Read it once with `gcloud secrets versions access latest --secret …`.
resource "random_password" "bootstrap_admin_token" {
  length  = 64
  special = false
}

locals {
  # The secrets' names, apart from their values: for_each may not be derived
  # from the (sensitive) values.
  secret_keys = toset(["peer-secret", "bootstrap-admin-token", "redis-url", "policy-store-url"])

  secret_values = {
    peer-secret           = random_password.peer_secret.result
    bootstrap-admin-token = random_password.bootstrap_admin_token.result
    # The whole URLs are secrets: they carry the Redis AUTH string and the
    # database password.
    redis-url = "${local.redis_scheme}://:${google_redis_instance.routes.auth_string}@${google_redis_instance.routes.host}:${google_redis_instance.routes.port}"
    policy-store-url = format(
      "postgres://%s:%s@%s:5432/%s?sslmode=require",
      google_sql_user.gateway.name,
      random_password.sql.result,
      google_sql_database_instance.policy.private_ip_address,
      google_sql_database.policy.name,
    )
  }

  # Environment variable -> secret key above.
  secret_env = {
    POSTERN_PEER_SECRET           = "peer-secret"
    POSTERN_BOOTSTRAP_ADMIN_TOKEN = "bootstrap-admin-token"
    POSTERN_REDIS_URL             = "redis-url"
    POSTERN_POLICY_STORE          = "policy-store-url"
  }

  # Every secret the service account may read: the module's own, the Redis
  # CA file and the caller's extra_secrets.
  secret_ids = merge(
    { for k, s in google_secret_manager_secret.gateway : k => s.id },
    { redis-ca = google_secret_manager_secret.redis_ca.id },
    { for k, v in var.extra_secrets : "extra-${k}" => v },
  )
}

resource "google_secret_manager_secret" "gateway" {
  for_each = local.secret_keys

  project   = var.project_id
  secret_id = "postern-${var.name}-${each.key}"
  labels    = local.labels

  replication {
    auto {
      dynamic "customer_managed_encryption" {
        for_each = var.kms_key_name != null ? [var.kms_key_name] : []
        content {
          kms_key_name = customer_managed_encryption.value
        }
      }
    }
  }
}

resource "google_secret_manager_secret_version" "gateway" {
  for_each = google_secret_manager_secret.gateway

  secret      = each.value.id
  secret_data = local.secret_values[each.key]
}

# Memorystore's per-instance server CA (not secret, but a file is what a TLS
# client takes): mounted at /etc/postern/redis-ca/ca.pem, which
# POSTERN_REDIS_CA_CERT names (cloud_run.tf).
resource "google_secret_manager_secret" "redis_ca" {
  project   = var.project_id
  secret_id = "postern-${var.name}-redis-ca"
  labels    = local.labels

  replication {
    auto {
      dynamic "customer_managed_encryption" {
        for_each = var.kms_key_name != null ? [var.kms_key_name] : []
        content {
          kms_key_name = customer_managed_encryption.value
        }
      }
    }
  }
}

resource "google_secret_manager_secret_version" "redis_ca" {
  secret = google_secret_manager_secret.redis_ca.id
  # Without transit encryption there is no CA; a placeholder keeps one shape.
  secret_data = var.redis_transit_encryption ? join("\n", [for c in google_redis_instance.routes.server_ca_certs : c.cert]) : "# no transit encryption: no CA\n"
}
