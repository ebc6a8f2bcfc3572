# Memorystore and Cloud SQL get private addresses through private services
# access (a peering with Google's service producer network). Cloud Run
# reaches them with Direct VPC egress (cloud_run.tf): no connector VMs.

resource "google_compute_global_address" "private_services" {
  count = var.create_private_service_access ? 1 : 0

  project       = var.project_id
  name          = "postern-${var.name}-psa"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_service_access_prefix_length
  network       = var.network
}

resource "google_service_networking_connection" "private_services" {
  count = var.create_private_service_access ? 1 : 0

  network                 = var.network
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services[0].name]
}
