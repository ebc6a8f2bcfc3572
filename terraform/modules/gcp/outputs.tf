output "gateway_url" {
  description = "The URL agents dial (POSTERN_GATEWAY_URL) and people log in to (`postern login URL`): the service's run.app URL (map a custom domain to it if you like)."
  value       = google_cloud_run_v2_service.gateway.uri
}

output "agent_environment" {
  description = "Environment for a postern-agent in your private network (it runs there, not in this module), without its token: add POSTERN_AGENT_TOKEN from `postern agent add NAME`. Agents re-open tunnels every 15 minutes, within Cloud Run's request timeout."
  value = {
    POSTERN_GATEWAY_URL = google_cloud_run_v2_service.gateway.uri
  }
}

output "service_name" {
  description = "Name of the Cloud Run service."
  value       = google_cloud_run_v2_service.gateway.name
}

output "service_account_email" {
  description = "The gateway's service account."
  value       = google_service_account.gateway.email
}

output "redis_host" {
  description = "Private address of the Memorystore instance."
  value       = google_redis_instance.routes.host
}

output "redis_port" {
  description = "Port of the Memorystore instance (6378 with transit encryption, 6379 without)."
  value       = google_redis_instance.routes.port
}

output "redis_ca_certificate" {
  description = "PEM of Memorystore's per-instance server CA (empty without transit encryption); also mounted in the container at /etc/postern/redis-ca/ca.pem."
  value       = var.redis_transit_encryption ? join("\n", [for c in google_redis_instance.routes.server_ca_certs : c.cert]) : ""
}

output "sql_instance_name" {
  description = "Name of the Cloud SQL instance (the policy store)."
  value       = google_sql_database_instance.policy.name
}

output "sql_private_ip" {
  description = "Private address of the Cloud SQL instance."
  value       = google_sql_database_instance.policy.private_ip_address
}

output "secret_ids" {
  description = "Secret Manager secrets of the gateway, by purpose (peer-secret, bootstrap-admin-token, redis-url, policy-store-url)."
  value       = { for k, s in google_secret_manager_secret.gateway : k => s.id }
}

output "bootstrap_admin_token_secret" {
  description = "Secret holding the first admin's API key: `gcloud secrets versions access latest --secret <this>`, then `postern login <gateway_url> --token …`."
  value       = google_secret_manager_secret.gateway["bootstrap-admin-token"].secret_id
}
