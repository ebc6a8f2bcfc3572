# The gateway's identity on Google Cloud: it reads its own secrets and
# nothing else. Logs go to Cloud Logging through Cloud Run itself (stdout),
# which needs no role.

resource "google_service_account" "gateway" {
  project      = var.project_id
  account_id   = "postern-${var.name}"
  display_name = "Postern ${var.name} gateway"
  description  = "Runs the Postern ${var.name} gateway on Cloud Run: reads its secrets only"
}

# secretAccessor on each of the gateway's secrets, not on the project.
resource "google_secret_manager_secret_iam_member" "gateway" {
  for_each = local.secret_ids

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.gateway.member
}

resource "google_project_iam_member" "cloudsql_client" {
  count = var.grant_cloudsql_client ? 1 : 0

  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = google_service_account.gateway.member
}
