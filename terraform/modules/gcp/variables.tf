# ---------------------------------------------------------------- general

variable "project_id" {
  description = "The Google Cloud project to deploy to."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service, Memorystore and Cloud SQL (e.g. europe-west1)."
  type        = string
}

variable "name" {
  description = "Name of this deployment: prefixes every resource. Lower-case letters, digits and hyphens, 3 to 20 characters (service account ids allow 30 with the prefix)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name must be 3-20 characters of a-z, 0-9 and '-', start with a letter and not end with '-'."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels (a `postern-deployment = <name>` label is always added)."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Deletion protection on the Cloud Run service and the Cloud SQL instance (it holds the audit trail). Set false before `terraform destroy`."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------- network

variable "network" {
  description = "The VPC network (id or self link) that Memorystore and Cloud SQL get private addresses in."
  type        = string
}

variable "subnetwork" {
  description = "Subnetwork of `network` in `region` that Cloud Run's Direct VPC egress takes addresses from (a /26 or larger: Cloud Run uses about two addresses per instance)."
  type        = string
}

variable "create_private_service_access" {
  description = "Create the private services access range and peering (servicenetworking) that Memorystore and Cloud SQL use. false (default) when the network already has one: a second connection would replace its ranges."
  type        = bool
  default     = false
}

variable "private_service_access_prefix_length" {
  description = "Prefix length of the private services access range, when this module creates it."
  type        = number
  default     = 20

  validation {
    condition     = var.private_service_access_prefix_length >= 8 && var.private_service_access_prefix_length <= 24
    error_message = "private_service_access_prefix_length must be between 8 and 24."
  }
}

# ---------------------------------------------------------------- Cloud Run

variable "container_image" {
  description = "The gateway image (postern-gateway) in Artifact Registry, by tag or better by digest. It must carry the CA certificates that verify your identity provider."
  type        = string

  validation {
    condition     = length(trimspace(var.container_image)) > 0
    error_message = "container_image must not be empty."
  }
}

variable "min_instances" {
  description = "Fewest instances kept running (billed while idle, since CPU is always allocated). At least 1: agents hold their tunnels on a running instance, and a cold start would make the first session wait. 2 lets an instance go without every agent reconnecting at once."
  type        = number
  default     = 2

  validation {
    condition     = var.min_instances >= 1
    error_message = "min_instances must be at least 1: agents keep tunnels open to a running instance."
  }
}

variable "max_instances" {
  description = "Most instances Cloud Run may start."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= var.min_instances
    error_message = "max_instances must be at least min_instances."
  }
}

variable "max_concurrent_requests" {
  description = "Requests (HTTP/2 streams) one instance serves at once before Cloud Run starts another: every agent tunnel and every session leg is one long request. 1 to 1000, Cloud Run's maximum."
  type        = number
  default     = 1000

  validation {
    condition     = var.max_concurrent_requests >= 1 && var.max_concurrent_requests <= 1000
    error_message = "max_concurrent_requests must be between 1 and 1000."
  }
}

variable "request_timeout_seconds" {
  description = "Cloud Run's request timeout, at most 3600 s (60 minutes). Every stream is a request, so this is the longest a session can last on Cloud Run: Cloud Run ends a psql session, or any other, after this long whatever it is doing, and the user reconnects (`postern connect` keeps listening; the client opens a new session). Agents re-open their tunnels every 15 minutes (POSTERN_AGENT_TUNNEL_REFRESH_MS) and so never reach it. For sessions of hours, run the gateway on ECS/GKE instead."
  type        = number
  default     = 3600

  validation {
    condition     = var.request_timeout_seconds >= 60 && var.request_timeout_seconds <= 3600
    error_message = "request_timeout_seconds must be between 60 and 3600 (Cloud Run's maximum)."
  }
}

variable "cpu" {
  description = "vCPUs of an instance (Cloud Run limit syntax: \"1\", \"2\", \"4\"…). Relayed sessions cost CPU on both instances and in Redis."
  type        = string
  default     = "2"
}

variable "memory" {
  description = "Memory of an instance (Cloud Run limit syntax, e.g. \"1Gi\", \"2Gi\")."
  type        = string
  default     = "1Gi"
}

variable "drain_grace_seconds" {
  description = "POSTERN_DRAIN_GRACE_MS in seconds. Cloud Run kills an instance 10 s after SIGTERM, so the drain (agents told to move, GOAWAY, open sessions given this long) must fit in that: 1 to 8."
  type        = number
  default     = 8

  validation {
    condition     = var.drain_grace_seconds >= 1 && var.drain_grace_seconds <= 8 && floor(var.drain_grace_seconds) == var.drain_grace_seconds
    error_message = "drain_grace_seconds must be a whole number from 1 to 8 (Cloud Run sends SIGKILL 10 s after SIGTERM)."
  }
}

variable "ingress" {
  description = "Who may reach the service: INGRESS_TRAFFIC_ALL (default; agents and people connect from outside Google Cloud), INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "public_access" {
  description = "Let requests without a Google identity through Cloud Run (invoker IAM check off). Agents and the CLI authenticate to the gateway itself with Postern API keys or OIDC tokens, not with Google identities, so this must stay true unless something in front adds Google authentication."
  type        = bool
  default     = true
}

variable "log_filter" {
  description = "RUST_LOG of the gateway (e.g. info, or info,postern_gateway=debug)."
  type        = string
  default     = "info"
}

variable "extra_environment" {
  description = "More plain environment variables for the gateway, e.g. POSTERN_OIDC_ISSUER, POSTERN_OIDC_AUDIENCE. Variables this module sets itself cannot be overridden here; secrets go in extra_secrets."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k in keys(var.extra_environment) : can(regex("^(POSTERN_|RUST_|OTEL_)[A-Z0-9_]+$", k)) && !contains([
      "POSTERN_LISTEN_ADDR", "POSTERN_INTERNAL_ADDR", "POSTERN_TLS_DISABLED", "POSTERN_TLS_CERT", "POSTERN_TLS_KEY",
      "POSTERN_POLICY_STORE", "POSTERN_SQLITE_PATH", "POSTERN_REDIS_URL", "POSTERN_PEER_SECRET", "POSTERN_PEER_TRANSPORT",
      "POSTERN_PEER_ADDR", "POSTERN_PEER_ADVERTISE_ADDR", "POSTERN_PEER_TLS_DISABLED", "POSTERN_PEER_CONNECTIONS",
      "POSTERN_DRAIN_GRACE_MS", "POSTERN_BOOTSTRAP_ADMIN_TOKEN", "POSTERN_LOG_FORMAT", "RUST_LOG",
    ], k)])
    error_message = "extra_environment keys must be POSTERN_*, RUST_* or OTEL_* variables that this module does not set itself (the POSTERN_PEER_* settings of direct peering are refused in relay mode)."
  }
}

variable "extra_secrets" {
  description = "More environment variables read from Secret Manager, name -> secret id (projects/P/secrets/S, e.g. POSTERN_REVIEW_WEBHOOK_URL); the latest version is read at instance start. The service account gets secretAccessor on exactly these secrets besides the module's own."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.extra_secrets : can(regex("^POSTERN_[A-Z0-9_]+$", k)) && can(regex("^projects/[^/]+/secrets/[^/]+$", v))])
    error_message = "extra_secrets must map POSTERN_* names to secret ids of the form projects/P/secrets/S."
  }
}

# ---------------------------------------------------------------- Memorystore (routes and relay)

variable "redis_tier" {
  description = "Memorystore tier: STANDARD_HA (default: a replica in another zone and automatic failover) or BASIC. On Cloud Run relayed sessions flow through Redis, so an outage ends them."
  type        = string
  default     = "STANDARD_HA"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.redis_tier)
    error_message = "redis_tier must be BASIC or STANDARD_HA."
  }
}

variable "redis_memory_size_gb" {
  description = "Memorystore capacity in GB. Routes are small; relay messages pass through and are not stored. Network throughput of a Memorystore instance grows with its size, and relayed sessions use it."
  type        = number
  default     = 5

  validation {
    condition     = var.redis_memory_size_gb >= 1 && var.redis_memory_size_gb <= 300
    error_message = "redis_memory_size_gb must be between 1 and 300."
  }
}

variable "redis_version" {
  description = "Memorystore Redis version: REDIS_7_0 or later (the route store and relay use sharded pub/sub)."
  type        = string
  default     = "REDIS_7_2"

  validation {
    condition     = can(regex("^REDIS_[7-9]_[0-9]+$", var.redis_version))
    error_message = "redis_version must be REDIS_7_0 or later (sharded pub/sub)."
  }
}

variable "redis_transit_encryption" {
  description = "TLS between the gateway and Memorystore (SERVER_AUTHENTICATION, port 6378). Memorystore signs its server certificate with a per-instance CA that is not in any system trust store: the module mounts that CA in the container and sets POSTERN_REDIS_CA_CERT to it, so the gateway verifies Memorystore against it. false sends relayed session bytes across the VPC unencrypted (still sealed with an HMAC, so they cannot be altered)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------- Cloud SQL (policy and audit)

variable "sql_database_version" {
  description = "Cloud SQL Postgres version. The test suite runs the Postgres adapter on PostgreSQL 15; it uses no feature newer than that."
  type        = string
  default     = "POSTGRES_17"

  validation {
    condition     = can(regex("^POSTGRES_[0-9]+$", var.sql_database_version))
    error_message = "sql_database_version must be POSTGRES_<major>."
  }
}

variable "sql_tier" {
  description = "Cloud SQL machine tier. The policy store sees a few reads per session (cached by every replica) and one write per session start, end and audit batch."
  type        = string
  default     = "db-custom-1-3840"
}

variable "sql_availability_type" {
  description = "REGIONAL (default: a standby in another zone, automatic failover) or ZONAL."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.sql_availability_type)
    error_message = "sql_availability_type must be REGIONAL or ZONAL."
  }
}

variable "sql_disk_size_gb" {
  description = "Initial Cloud SQL disk size in GB (it grows automatically; the audit trail is what grows)."
  type        = number
  default     = 20
}

variable "sql_backup_start_time" {
  description = "Daily backup start (HH:MM, UTC). Point-in-time recovery is always on."
  type        = string
  default     = "03:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.sql_backup_start_time))
    error_message = "sql_backup_start_time must be HH:MM."
  }
}

variable "sql_retained_backups" {
  description = "Daily backups kept."
  type        = number
  default     = 14
}

variable "grant_cloudsql_client" {
  description = "Give the service account roles/cloudsql.client. Not needed by default: the gateway connects to the instance's private IP with a password over TLS; the role is for the Cloud SQL Auth Proxy, the language connectors and IAM database authentication, none of which the gateway uses."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- encryption

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K, in `region`) for customer-managed encryption of the secrets, Memorystore and Cloud SQL. null: Google-managed keys. The Secret Manager, Memorystore and Cloud SQL service agents need roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}
