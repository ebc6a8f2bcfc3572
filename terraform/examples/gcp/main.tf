# An example root module: the Postern gateway on Cloud Run with Memorystore
# and Cloud SQL, in a VPC network of its own. Copy terraform.tfvars.example to
# terraform.tfvars, fill it in, then `terraform init && terraform apply`.

locals {
  services = [
    "compute.googleapis.com",
    "run.googleapis.com",
    "redis.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
  ]
}

resource "google_project_service" "this" {
  for_each = toset(local.services)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_compute_network" "postern" {
  project                 = var.project_id
  name                    = "${var.name}-vpc"
  auto_create_subnetworks = false

  depends_on = [google_project_service.this]
}

# Nothing in this network accepts connections from it: Cloud Run only dials
# out (to Memorystore and Cloud SQL, which sit behind the services peering).
resource "google_compute_firewall" "deny_ingress" {
  project   = var.project_id
  name      = "${var.name}-deny-ingress"
  network   = google_compute_network.postern.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Cloud Run instances take their addresses here (Direct VPC egress).
resource "google_compute_subnetwork" "run" {
  project                  = var.project_id
  region                   = var.region
  name                     = "${var.name}-run"
  network                  = google_compute_network.postern.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

module "postern" {
  source = "../../modules/gcp"

  project_id = var.project_id
  region     = var.region
  name       = var.name

  network                       = google_compute_network.postern.id
  subnetwork                    = google_compute_subnetwork.run.id
  create_private_service_access = true

  container_image = var.container_image
  min_instances   = 2
  max_instances   = 10

  # OIDC logins when an issuer is given; API tokens only otherwise.
  extra_environment = {
    for k, v in {
      POSTERN_OIDC_ISSUER   = var.oidc_issuer
      POSTERN_OIDC_AUDIENCE = var.oidc_audience
    } : k => v if v != null
  }

  labels = {
    project = "postern"
  }

  depends_on = [google_project_service.this]
}
