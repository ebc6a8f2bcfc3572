terraform {
  required_version = ">= 1.9"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.14, < 8.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }

  # The state holds the generated secrets (peer secret, admin token, database
  # password, Redis AUTH string): keep it in an encrypted, access-controlled
  # backend, e.g.
  #
  # backend "gcs" {
  #   bucket = "my-terraform-state"
  #   prefix = "postern"
  # }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
