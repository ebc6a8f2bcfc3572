# The policy store and audit sink: Cloud SQL for PostgreSQL on a private IP
# only, TLS required, backups with point-in-time recovery. The gateway
# migrates the schema itself at start (advisory lock, once for all replicas).

resource "random_password" "sql" {
  length  = 40
  special = false # it goes into the POSTERN_POLICY_STORE URL as is
}

resource "google_sql_database_instance" "policy" {
  project             = var.project_id
  region              = var.region
  name                = "postern-${var.name}"
  database_version    = var.sql_database_version
  encryption_key_name = var.kms_key_name
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.sql_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.sql_availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.sql_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = local.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.network
      # TLS required; no client certificates (the gateway logs in with a
      # password, sslmode=require).
      ssl_mode = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = var.sql_backup_start_time
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7
      backup_retention_settings {
        retained_backups = var.sql_retained_backups
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    # Connection, lock and DDL logging for incident review. People's
    # statements never reach this database (they go to the agents' targets);
    # the gateway's own queries are logged only when they fail.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    # Schema changes (the gateway's own migrations, or anyone else's).
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    # pgAudit for DDL and role changes made behind the gateway's back. It
    # logs once the extension exists: `CREATE EXTENSION pgaudit;` in the
    # postern database, once, as the postern user (the gateway does not).
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = "ddl,role"
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "policy" {
  project  = var.project_id
  instance = google_sql_database_instance.policy.name
  name     = "postern"
}

resource "google_sql_user" "gateway" {
  project  = var.project_id
  instance = google_sql_database_instance.policy.name
  name     = "postern"
  password = random_password.sql.result
}
